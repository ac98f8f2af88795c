//! The defaults ECS writes into stored container definitions, so
//! `DescribeTaskDefinition` returns what ECS would: `essential: true`,
//! port mappings with `protocol: tcp` and a concrete `hostPort`, empty
//! lists for `portMappings`/`environment`/`mountPoints`/`volumesFrom`/
//! `systemControls`, and health-check timings filled in.

use berth_types::{ContainerDefinition, HealthCheck, NetworkMode, PortMapping, TransportProtocol};

use super::{Ctx, is_essential};

/// Docker's health-check defaults, which ECS echoes back.
const HEALTH_INTERVAL: i32 = 30;
const HEALTH_TIMEOUT: i32 = 5;
const HEALTH_RETRIES: i32 = 3;

pub(crate) fn containers(ctx: &Ctx<'_>) -> Vec<ContainerDefinition> {
    ctx.containers
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c.essential = Some(is_essential(&c));
            c.port_mappings = Some(
                c.port_mappings
                    .take()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| port_mapping(ctx.network_mode, m))
                    .collect(),
            );
            c.environment.get_or_insert_with(Vec::new);
            c.mount_points.get_or_insert_with(Vec::new);
            c.volumes_from.get_or_insert_with(Vec::new);
            c.system_controls.get_or_insert_with(Vec::new);
            if let Some(hc) = c.health_check.as_mut() {
                health_check(hc);
            }
            c
        })
        .collect()
}

fn port_mapping(mode: NetworkMode, mut m: PortMapping) -> PortMapping {
    m.protocol.get_or_insert(TransportProtocol::Tcp);
    if m.container_port_range.is_none()
        && let Some(port) = m.container_port
    {
        m.host_port = match (mode, m.host_port) {
            // The task owns the port namespace: host port is the container port.
            (NetworkMode::Awsvpc | NetworkMode::Host, None | Some(0)) => Some(port),
            // Bridge without a host port means "dynamic", stored as 0.
            (_, None) => Some(0),
            (_, given) => given,
        };
    }
    m
}

fn health_check(hc: &mut HealthCheck) {
    hc.interval.get_or_insert(HEALTH_INTERVAL);
    hc.timeout.get_or_insert(HEALTH_TIMEOUT);
    hc.retries.get_or_insert(HEALTH_RETRIES);
}
