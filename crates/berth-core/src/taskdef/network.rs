//! Network-mode rules for containers: what `portMappings`, `links` and
//! `hostname` may look like under `bridge`, `host`, `awsvpc` and `none`.

use berth_types::{ContainerDefinition, EcsError, NetworkMode};

use super::{Ctx, container_name};

/// Per-container cap on `containerPortRange` mappings.
pub const MAX_PORT_RANGES: usize = 100;
const MAX_PORT: i32 = 65_535;

pub(crate) fn check(ctx: &Ctx<'_>) -> Result<(), EcsError> {
    let mode = ctx.network_mode;
    for c in ctx.containers {
        let name = container_name(c);
        if mode != NetworkMode::Bridge && c.links.as_deref().is_some_and(|l| !l.is_empty()) {
            return Err(EcsError::client(format!(
                "Links are not supported when networkMode={}.",
                mode.as_str()
            )));
        }
        // The task's network namespace owns the hostname in these modes.
        if matches!(mode, NetworkMode::Awsvpc | NetworkMode::Host) && c.hostname.is_some() {
            return Err(EcsError::client(format!(
                "hostname is not supported on container when networkMode={}.",
                mode.as_str()
            )));
        }
        check_port_mappings(mode, name, c)?;
    }
    Ok(())
}

fn check_port_mappings(
    mode: NetworkMode,
    name: &str,
    c: &ContainerDefinition,
) -> Result<(), EcsError> {
    let mappings = c.port_mappings.as_deref().unwrap_or_default();
    if mappings.is_empty() {
        return Ok(());
    }
    if mode == NetworkMode::None {
        return Err(EcsError::client(
            "Port mappings are not supported when networkMode=none.",
        ));
    }
    let invalid_range = |detail: &str| {
        EcsError::client(format!(
            "Invalid 'containerPortRange' setting for container '{name}'.{detail}"
        ))
    };
    // (first, last, is_range): single ports are one-port intervals so one
    // overlap scan catches duplicates of both kinds.
    let mut claimed: Vec<(i32, i32, bool)> = Vec::new();
    let mut ranges = 0usize;
    for m in mappings {
        if let Some(range) = &m.container_port_range {
            if !matches!(mode, NetworkMode::Bridge | NetworkMode::Awsvpc) {
                return Err(EcsError::client(format!(
                    "Container port ranges are not supported when networkMode={}.",
                    mode.as_str()
                )));
            }
            if m.container_port.is_some() || m.host_port.is_some_and(|h| h != 0) {
                return Err(invalid_range(
                    " 'containerPort' and 'hostPort' cannot be set together with 'containerPortRange'.",
                ));
            }
            let (first, last) = parse_port_range(range).ok_or_else(|| invalid_range(""))?;
            ranges += 1;
            if ranges > MAX_PORT_RANGES {
                return Err(invalid_range(
                    " A container can have at most 100 port ranges.",
                ));
            }
            claimed.push((first, last, true));
            continue;
        }
        let Some(port) = m.container_port.filter(|p| (1..=MAX_PORT).contains(p)) else {
            return Err(EcsError::client(format!(
                "Invalid 'containerPort' setting for container '{name}'."
            )));
        };
        if let Some(host) = m.host_port {
            if !(0..=MAX_PORT).contains(&host) {
                return Err(EcsError::client(format!(
                    "Invalid 'hostPort' setting for container '{name}'."
                )));
            }
            if matches!(mode, NetworkMode::Awsvpc | NetworkMode::Host) && host != 0 && host != port
            {
                return Err(EcsError::client(format!(
                    "When networkMode={}, the host ports and container ports in port mappings must match.",
                    mode.as_str()
                )));
            }
        }
        claimed.push((port, port, false));
    }
    claimed.sort_unstable();
    for pair in claimed.windows(2) {
        let [(_, prev_last, prev_range), (first, _, range)] = pair else {
            continue;
        };
        if first <= prev_last {
            if *prev_range || *range {
                return Err(invalid_range(
                    " Port ranges must not overlap other port mappings.",
                ));
            }
            return Err(EcsError::client(format!(
                "Invalid 'containerPort' setting for container '{name}'. Container port {first} is mapped more than once."
            )));
        }
    }
    Ok(())
}

/// `"first-last"` with `1 <= first < last <= 65535`.
pub(crate) fn parse_port_range(s: &str) -> Option<(i32, i32)> {
    let (first, last) = s.split_once('-')?;
    let port = |p: &str| -> Option<i32> {
        let p = p.trim();
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok().filter(|v| (1..=MAX_PORT).contains(v))
    };
    let (first, last) = (port(first)?, port(last)?);
    (first < last).then_some((first, last))
}
