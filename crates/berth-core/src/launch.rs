//! What a RunTask or StartTask launches: the task definition with the
//! request's overrides merged in, validated as ECS validates overrides, and
//! the host resources one such task takes.

use berth_types::{
    EcsError, KeyValuePair, NetworkMode, ResourceType, TaskDefinition, TaskOverride,
    TransportProtocol,
};

use crate::taskdef::{check_memory_pair, parse_task_cpu, parse_task_memory, resource_requirements};

/// ECS's limit on the JSON size of `overrides`.
pub const MAX_OVERRIDES_BYTES: usize = 8192;

/// The definition as the task will run it.
pub fn apply_overrides(
    td: &TaskDefinition,
    overrides: Option<&TaskOverride>,
) -> Result<TaskDefinition, EcsError> {
    let mut effective = td.clone();
    let Some(overrides) = overrides else {
        return Ok(effective);
    };
    let size = serde_json::to_vec(overrides).map_or(0, |v| v.len());
    if size > MAX_OVERRIDES_BYTES {
        return Err(EcsError::invalid_parameter(format!(
            "Container Overrides length must be at most {MAX_OVERRIDES_BYTES}"
        )));
    }
    if let Some(cpu) = &overrides.cpu {
        let units = parse_task_cpu(cpu)
            .ok_or_else(|| EcsError::client("Invalid 'cpu' setting for task."))?;
        effective.cpu = Some(units.to_string());
    }
    if let Some(memory) = &overrides.memory {
        let mib = parse_task_memory(memory)
            .ok_or_else(|| EcsError::client("Invalid 'memory' setting for task."))?;
        effective.memory = Some(mib.to_string());
    }
    if overrides.task_role_arn.is_some() {
        effective.task_role_arn = overrides.task_role_arn.clone();
    }
    if overrides.execution_role_arn.is_some() {
        effective.execution_role_arn = overrides.execution_role_arn.clone();
    }
    if overrides.ephemeral_storage.is_some() {
        effective.ephemeral_storage = overrides.ephemeral_storage.clone();
    }
    let containers = effective.container_definitions.get_or_insert_with(Vec::new);
    for o in overrides.container_overrides.iter().flatten() {
        let name = o.name.as_deref().unwrap_or("");
        let Some(c) = containers
            .iter_mut()
            .find(|c| c.name.as_deref() == Some(name))
        else {
            return Err(EcsError::invalid_parameter(format!(
                "Override for container named {name} is not a container in the TaskDefinition."
            )));
        };
        if o.command.is_some() {
            c.command = o.command.clone();
        }
        if let Some(env) = &o.environment {
            let vars = c.environment.get_or_insert_with(Vec::new);
            for KeyValuePair { name, value } in env {
                vars.retain(|v| v.name != *name);
                vars.push(KeyValuePair {
                    name: name.clone(),
                    value: value.clone(),
                });
            }
        }
        if let Some(cpu) = o.cpu {
            if cpu < 0 {
                return Err(EcsError::invalid_parameter(format!(
                    "Invalid 'cpu' override for container {name}."
                )));
            }
            c.cpu = cpu;
        }
        if let Some(memory) = o.memory {
            if memory < 6 {
                return Err(EcsError::invalid_parameter(format!(
                    "Invalid 'memory' override for container {name}: the minimum is 6 MiB."
                )));
            }
            c.memory = Some(memory);
        }
        if let Some(reservation) = o.memory_reservation {
            if reservation <= 0 {
                return Err(EcsError::invalid_parameter(format!(
                    "Invalid 'memoryReservation' override for container {name}."
                )));
            }
            c.memory_reservation = Some(reservation);
        }
        check_memory_pair(name, c.memory, c.memory_reservation)?;
        if o.resource_requirements.is_some() {
            c.resource_requirements = o.resource_requirements.clone();
        }
    }
    Ok(effective)
}

/// The mode a definition runs with: `bridge` when it names none.
pub fn network_mode(td: &TaskDefinition) -> NetworkMode {
    td.network_mode.unwrap_or(NetworkMode::Bridge)
}

/// What one task needs from a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demand {
    pub cpu: i64,
    pub memory: i64,
    /// GPUs, summed over the containers' `resourceRequirements`.
    pub gpu: u32,
    /// Static host ports (dynamic ones are chosen by the agent).
    pub tcp_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
}

/// CPU, memory and static host ports one task of `td` takes on a host.
pub fn demand(td: &TaskDefinition) -> Demand {
    let requirements = resource_requirements(td);
    let mode = network_mode(td);
    let mut demand = Demand {
        cpu: i64::from(requirements.cpu),
        memory: i64::from(requirements.memory_mib),
        ..Demand::default()
    };
    for c in td.container_definitions.iter().flatten() {
        for r in c.resource_requirements.iter().flatten() {
            if r.r#type == ResourceType::Gpu {
                let gpus = r.value.as_deref().and_then(|v| v.parse::<u32>().ok());
                demand.gpu = demand.gpu.saturating_add(gpus.unwrap_or(0));
            }
        }
        for m in c.port_mappings.iter().flatten() {
            let host_port = match mode {
                NetworkMode::Host => m.host_port.filter(|p| *p > 0).or(m.container_port),
                NetworkMode::Bridge => m.host_port.filter(|p| *p > 0),
                _ => None,
            };
            let Some(port) = host_port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            match m.protocol.unwrap_or(TransportProtocol::Tcp) {
                TransportProtocol::Tcp => demand.tcp_ports.push(port),
                TransportProtocol::Udp => demand.udp_ports.push(port),
            }
        }
    }
    demand
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_types::{ContainerDefinition, ContainerOverride, PortMapping};

    fn td() -> TaskDefinition {
        TaskDefinition {
            container_definitions: Some(vec![ContainerDefinition {
                name: Some("web".into()),
                image: Some("busybox".into()),
                memory: Some(128),
                cpu: 256,
                port_mappings: Some(vec![
                    PortMapping {
                        container_port: Some(80),
                        host_port: Some(8080),
                        ..PortMapping::default()
                    },
                    PortMapping {
                        container_port: Some(53),
                        host_port: Some(0),
                        protocol: Some(TransportProtocol::Udp),
                        ..PortMapping::default()
                    },
                ]),
                ..ContainerDefinition::default()
            }]),
            ..TaskDefinition::default()
        }
    }

    #[test]
    fn overrides_merge_and_change_the_demand() {
        let overrides = TaskOverride {
            container_overrides: Some(vec![ContainerOverride {
                name: Some("web".into()),
                memory: Some(256),
                command: Some(vec!["sh".into()]),
                environment: Some(vec![KeyValuePair {
                    name: Some("A".into()),
                    value: Some("1".into()),
                }]),
                ..ContainerOverride::default()
            }]),
            ..TaskOverride::default()
        };
        let effective = apply_overrides(&td(), Some(&overrides)).unwrap();
        let c = &effective.container_definitions.as_ref().unwrap()[0];
        assert_eq!(c.memory, Some(256));
        assert_eq!(c.command.as_deref(), Some(&["sh".to_owned()][..]));
        let d = demand(&effective);
        assert_eq!((d.cpu, d.memory), (256, 256));
        assert_eq!(d.tcp_ports, vec![8080]);
        assert!(d.udp_ports.is_empty(), "dynamic ports are not reserved");
    }

    #[test]
    fn unknown_container_override_is_rejected() {
        let overrides = TaskOverride {
            container_overrides: Some(vec![ContainerOverride {
                name: Some("nope".into()),
                ..ContainerOverride::default()
            }]),
            ..TaskOverride::default()
        };
        let err = apply_overrides(&td(), Some(&overrides)).unwrap_err();
        assert!(err.message.contains("nope"));
    }
}
