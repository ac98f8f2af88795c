//! Container-level registration rules: identity (name, image), memory and
//! CPU sizing against the task, essential containers, `dependsOn`,
//! `healthCheck`, and start/stop timeouts.

use std::collections::HashSet;

use berth_types::{ContainerCondition, EcsError};

use super::{Ctx, container_name, container_reserved_memory, is_essential, valid_name};

/// Docker (20.10+) refuses hard memory limits below 6 MiB.
pub const MIN_CONTAINER_MEMORY_MIB: i32 = 6;
const MAX_IMAGE_LEN: usize = 255;

pub(crate) fn check_identity(ctx: &Ctx<'_>) -> Result<(), EcsError> {
    let mut names = HashSet::new();
    for c in ctx.containers {
        let name = c.name.as_deref().unwrap_or("");
        if name.is_empty() {
            return Err(EcsError::client(
                "Container.name should not be null or empty.",
            ));
        }
        if !valid_name(name) {
            return Err(EcsError::client(
                "Container.name contains invalid characters.",
            ));
        }
        if !names.insert(name) {
            return Err(EcsError::client(format!(
                "Invalid setting for container '{name}'. Container names must be unique within a task definition."
            )));
        }
        let image = c.image.as_deref().unwrap_or("");
        if image.trim().is_empty() {
            return Err(EcsError::client(
                "Container.image should not be null or empty.",
            ));
        }
        if image.chars().count() > MAX_IMAGE_LEN {
            return Err(EcsError::client(format!(
                "Invalid setting for container '{name}'. 'image' must be no longer than 255 characters."
            )));
        }
    }
    Ok(())
}

pub(crate) fn check_resources(ctx: &Ctx<'_>) -> Result<(), EcsError> {
    let mut cpu_sum: u64 = 0;
    let mut reserved_sum: u64 = 0;
    for c in ctx.containers {
        let name = container_name(c);
        if c.cpu < 0 {
            return Err(EcsError::client(format!(
                "Invalid 'cpu' setting for container '{name}'."
            )));
        }
        if let Some(memory) = c.memory
            && memory < MIN_CONTAINER_MEMORY_MIB
        {
            return Err(EcsError::client(format!(
                "Invalid 'memory' setting for container '{name}'. The minimum is 6 MiB."
            )));
        }
        if let Some(reservation) = c.memory_reservation
            && reservation <= 0
        {
            return Err(EcsError::client(format!(
                "Invalid 'memoryReservation' setting for container '{name}'."
            )));
        }
        if ctx.task_memory.is_none() && c.memory.is_none() && c.memory_reservation.is_none() {
            return Err(EcsError::client(format!(
                "Invalid setting for container '{name}'. At least one of 'memory' or 'memoryReservation' must be specified."
            )));
        }
        check_memory_pair(name, c.memory, c.memory_reservation)?;
        if let (Some(task_memory), Some(memory)) = (ctx.task_memory, c.memory)
            && i64::from(memory) > i64::from(task_memory)
        {
            return Err(EcsError::client(format!(
                "The 'memory' setting for container '{name}' is greater than for the task."
            )));
        }
        cpu_sum = cpu_sum.saturating_add(u64::try_from(c.cpu).unwrap_or(0));
        reserved_sum = reserved_sum.saturating_add(u64::from(container_reserved_memory(c)));
    }
    if let Some(task_cpu) = ctx.task_cpu
        && cpu_sum > u64::from(task_cpu)
    {
        return Err(EcsError::client(
            "The sum of all container 'cpu' values cannot be greater than the value of the task 'cpu'.",
        ));
    }
    if let Some(task_memory) = ctx.task_memory
        && reserved_sum > u64::from(task_memory)
    {
        return Err(EcsError::client(
            "The sum of all container 'memoryReservation' values cannot be greater than the value of the task 'memory'.",
        ));
    }
    Ok(())
}

pub(crate) fn check_essential(ctx: &Ctx<'_>) -> Result<(), EcsError> {
    if ctx.containers.iter().any(is_essential) {
        Ok(())
    } else {
        Err(EcsError::client(
            "Task definition does not have any essential container.",
        ))
    }
}

pub(crate) fn check_dependencies(ctx: &Ctx<'_>) -> Result<(), EcsError> {
    for c in ctx.containers {
        let name = container_name(c);
        for dep in c.depends_on.as_deref().unwrap_or_default() {
            let target_name = dep.container_name.as_str();
            if target_name == name {
                return Err(EcsError::client(format!(
                    "Invalid 'dependsOn' setting for container '{name}'. A container cannot depend on itself."
                )));
            }
            // ECS's own wording, stray "+ " and missing period included.
            let Some(target) = ctx.container(target_name) else {
                return Err(EcsError::client(format!(
                    "Cannot depend on container + '{target_name}' because it does not exist"
                )));
            };
            match dep.condition {
                ContainerCondition::Complete | ContainerCondition::Success
                    if is_essential(target) =>
                {
                    return Err(EcsError::client(
                        "A dependency container with SUCCESS or COMPLETE condition cannot be an essential container",
                    ));
                }
                ContainerCondition::Healthy if target.health_check.is_none() => {
                    return Err(EcsError::client(format!(
                        "Invalid 'dependsOn' setting for container '{name}'. Container '{target_name}' must define a 'healthCheck' to be used with the HEALTHY condition."
                    )));
                }
                _ => {}
            }
        }
    }
    if let Some(cycle) = find_cycle(ctx) {
        return Err(EcsError::client(format!(
            "Invalid 'dependsOn' setting. Container dependencies form a cycle: {}.",
            cycle.join(" -> ")
        )));
    }
    Ok(())
}

/// The first dependency cycle found walking containers in definition order,
/// as a closed path (`a -> b -> a`). Iterative so no input can exhaust the
/// stack; the graph has at most ten nodes once identity checks passed.
fn find_cycle<'a>(ctx: &Ctx<'a>) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let containers = ctx.containers;
    let index_of = |name: &str| containers.iter().position(|c| container_name(c) == name);
    let edges: Vec<Vec<usize>> = containers
        .iter()
        .map(|c| {
            c.depends_on
                .as_deref()
                .unwrap_or_default()
                .iter()
                .filter_map(|d| index_of(&d.container_name))
                .collect()
        })
        .collect();
    let mut marks = vec![Mark::New; containers.len()];
    for start in 0..containers.len() {
        if marks.get(start) != Some(&Mark::New) {
            continue;
        }
        // (node, index of the next edge to follow)
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        if let Some(m) = marks.get_mut(start) {
            *m = Mark::OnPath;
        }
        while let Some(top) = stack.last_mut() {
            let node = top.0;
            let target = edges.get(node).and_then(|e| e.get(top.1)).copied();
            top.1 += 1;
            match target {
                None => {
                    if let Some(m) = marks.get_mut(node) {
                        *m = Mark::Done;
                    }
                    stack.pop();
                }
                Some(t) => match marks.get(t).copied() {
                    Some(Mark::New) => {
                        if let Some(m) = marks.get_mut(t) {
                            *m = Mark::OnPath;
                        }
                        stack.push((t, 0));
                    }
                    Some(Mark::OnPath) => {
                        let from = stack.iter().position(|&(n, _)| n == t).unwrap_or(0);
                        let mut path: Vec<&'a str> = stack
                            .iter()
                            .skip(from)
                            .filter_map(|&(n, _)| containers.get(n).map(container_name))
                            .collect();
                        if let Some(first) = containers.get(t) {
                            path.push(container_name(first));
                        }
                        return Some(path);
                    }
                    _ => {}
                },
            }
        }
    }
    None
}

pub(crate) fn check_health_checks(ctx: &Ctx<'_>) -> Result<(), EcsError> {
    for c in ctx.containers {
        let Some(hc) = &c.health_check else { continue };
        let name = container_name(c);
        let invalid = |detail: &str| {
            EcsError::client(format!(
                "Invalid 'healthCheck' setting for container '{name}'. {detail}"
            ))
        };
        let command_ok = match hc.command.split_first() {
            Some((kind, rest)) => {
                matches!(kind.as_str(), "CMD" | "CMD-SHELL")
                    && rest.iter().any(|arg| !arg.trim().is_empty())
            }
            None => false,
        };
        if !command_ok {
            return Err(invalid(
                "'command' must start with 'CMD' or 'CMD-SHELL', followed by the command to run.",
            ));
        }
        let out_of =
            |v: Option<i32>, min: i32, max: i32| v.is_some_and(|v| !(min..=max).contains(&v));
        if out_of(hc.interval, 5, 300) {
            return Err(invalid("'interval' must be between 5 and 300 seconds."));
        }
        if out_of(hc.timeout, 2, 60) {
            return Err(invalid("'timeout' must be between 2 and 60 seconds."));
        }
        if out_of(hc.retries, 1, 10) {
            return Err(invalid("'retries' must be between 1 and 10."));
        }
        if out_of(hc.start_period, 0, 300) {
            return Err(invalid("'startPeriod' must be between 0 and 300 seconds."));
        }
    }
    Ok(())
}

/// Launch-type-independent bounds; Fargate's tighter ones live with the
/// other Fargate rules.
pub(crate) fn check_timeouts(ctx: &Ctx<'_>) -> Result<(), EcsError> {
    for c in ctx.containers {
        let name = container_name(c);
        if c.start_timeout.is_some_and(|t| t < 0) {
            return Err(EcsError::client(format!(
                "Invalid 'startTimeout' setting for container '{name}'."
            )));
        }
        if c.stop_timeout.is_some_and(|t| t < 0) {
            return Err(EcsError::client(format!(
                "Invalid 'stopTimeout' setting for container '{name}'."
            )));
        }
    }
    Ok(())
}

/// The model's rule: when a container sets both, `memory` (the hard limit)
/// must be greater than `memoryReservation` (the soft one).
pub fn check_memory_pair(
    name: &str,
    memory: Option<i32>,
    reservation: Option<i32>,
) -> Result<(), EcsError> {
    match (memory, reservation) {
        (Some(memory), Some(reservation)) if memory <= reservation => {
            Err(EcsError::client(format!(
                "Invalid setting for container '{name}'. 'memory' must be greater than 'memoryReservation'."
            )))
        }
        _ => Ok(()),
    }
}
