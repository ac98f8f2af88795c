//! What a RunTask or StartTask launches: the task definition with the
//! request's overrides merged in, validated as ECS validates overrides, and
//! the host resources one such task takes.

use std::net::Ipv4Addr;

use berth_types::{
    AssignPublicIp, AwsVpcConfiguration, EcsError, KeyValuePair, NetworkConfiguration, NetworkMode,
    ResourceType, TaskDefinition, TaskOverride, TransportProtocol,
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

/// The most subnets and security groups an `awsvpcConfiguration` takes.
const MAX_SUBNETS: usize = 16;
const MAX_SECURITY_GROUPS: usize = 5;

fn is_resource_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Checks a launch's `networkConfiguration` against the definition's
/// network mode, as RunTask, CreateService and UpdateService do: required
/// for `awsvpc`, refused for every other mode. Returns the awsvpc
/// configuration for an awsvpc launch.
pub fn check_network_configuration(
    mode: NetworkMode,
    configuration: Option<&NetworkConfiguration>,
    fargate: bool,
) -> Result<Option<AwsVpcConfiguration>, EcsError> {
    let awsvpc = configuration.and_then(|c| c.awsvpc_configuration.as_ref());
    if mode != NetworkMode::Awsvpc {
        return match configuration {
            None => Ok(None),
            Some(_) => Err(EcsError::invalid_parameter(
                "Network Configuration is not valid for the given networkMode of this task definition.",
            )),
        };
    }
    let Some(awsvpc) = awsvpc else {
        return Err(EcsError::invalid_parameter(
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        ));
    };
    if awsvpc.subnets.is_empty() {
        return Err(EcsError::invalid_parameter("subnets can not be empty."));
    }
    if awsvpc.subnets.len() > MAX_SUBNETS {
        return Err(EcsError::invalid_parameter(format!(
            "subnets can have at most {MAX_SUBNETS} items."
        )));
    }
    if let Some(bad) = awsvpc
        .subnets
        .iter()
        .find(|s| !is_resource_id(s, "subnet-"))
    {
        return Err(EcsError::invalid_parameter(format!(
            "Error retrieving subnet information for [{bad}]: The subnet ID '{bad}' is malformed"
        )));
    }
    let groups = awsvpc.security_groups.as_deref().unwrap_or_default();
    if groups.len() > MAX_SECURITY_GROUPS {
        return Err(EcsError::invalid_parameter(format!(
            "securityGroups can have at most {MAX_SECURITY_GROUPS} items."
        )));
    }
    if let Some(bad) = groups.iter().find(|g| !is_resource_id(g, "sg-")) {
        return Err(EcsError::invalid_parameter(format!(
            "Error retrieving security group information for [{bad}]: The security group ID '{bad}' is malformed"
        )));
    }
    if !fargate && awsvpc.assign_public_ip == Some(AssignPublicIp::Enabled) {
        return Err(EcsError::invalid_parameter(
            "Assign public IP is not supported for this launch type.",
        ));
    }
    Ok(Some(awsvpc.clone()))
}

/// Fargate runs only its table of task cpu/memory sizes; overrides may
/// have moved a valid definition off it.
pub fn check_fargate_size(effective: &TaskDefinition) -> Result<(), EcsError> {
    let cpu = effective.cpu.as_deref().and_then(parse_task_cpu);
    let memory = effective.memory.as_deref().and_then(parse_task_memory);
    match (cpu, memory) {
        (Some(cpu), Some(memory)) if crate::taskdef::fargate_combination_valid(cpu, memory) => {
            Ok(())
        }
        _ => Err(EcsError::client(
            "No Fargate configuration exists for given values.",
        )),
    }
}

/// The address a new awsvpc task gets on a host whose task network is
/// `subnet` (CIDR): the lowest one not `used`, skipping the network address,
/// the gateway (the first host address) and the broadcast address. `None`
/// when the subnet is malformed or full.
pub fn free_address(subnet: &str, used: &std::collections::BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let (network, prefix) = subnet.split_once('/')?;
    let network = u32::from(network.parse::<Ipv4Addr>().ok()?);
    let prefix: u32 = prefix.parse().ok()?;
    if !(8..=30).contains(&prefix) {
        return None;
    }
    let size = 1u32 << (32 - prefix);
    let first = network & !(size - 1);
    (first + 2..first + size - 1)
        .map(Ipv4Addr::from)
        .find(|a| !used.contains(a))
}

/// The MAC address of a task's interface: locally administered, unique on
/// its network because it embeds the address (as Kubernetes' `0a:58:` does).
pub fn interface_mac(address: Ipv4Addr) -> String {
    let [a, b, c, d] = address.octets();
    format!("0a:58:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// The private DNS name EC2 gives an address in `region`.
pub fn private_dns_name(address: Ipv4Addr, region: &str) -> String {
    let dashed = address.to_string().replace('.', "-");
    if region == "us-east-1" {
        format!("ip-{dashed}.ec2.internal")
    } else {
        format!("ip-{dashed}.{region}.compute.internal")
    }
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

    fn awsvpc(subnets: &[&str], public: Option<AssignPublicIp>) -> NetworkConfiguration {
        NetworkConfiguration {
            awsvpc_configuration: Some(AwsVpcConfiguration {
                subnets: subnets.iter().map(|s| (*s).to_owned()).collect(),
                security_groups: Some(vec!["sg-12345678".into()]),
                assign_public_ip: public,
            }),
        }
    }

    #[test]
    fn network_configuration_follows_the_network_mode() {
        let ok = awsvpc(&["subnet-12345678"], None);
        assert!(
            check_network_configuration(NetworkMode::Awsvpc, Some(&ok), false)
                .unwrap()
                .is_some()
        );
        let missing = check_network_configuration(NetworkMode::Awsvpc, None, true).unwrap_err();
        assert!(missing.message.contains("must be provided"));
        let refused =
            check_network_configuration(NetworkMode::Bridge, Some(&ok), false).unwrap_err();
        assert!(
            refused
                .message
                .contains("not valid for the given networkMode")
        );
        assert!(
            check_network_configuration(NetworkMode::Bridge, None, false)
                .unwrap()
                .is_none()
        );
        let empty = awsvpc(&[], None);
        assert!(check_network_configuration(NetworkMode::Awsvpc, Some(&empty), true).is_err());
        let bad = awsvpc(&["sn-1"], None);
        let err = check_network_configuration(NetworkMode::Awsvpc, Some(&bad), true).unwrap_err();
        assert!(err.message.contains("'sn-1'"));
        let public = awsvpc(&["subnet-1"], Some(AssignPublicIp::Enabled));
        assert!(check_network_configuration(NetworkMode::Awsvpc, Some(&public), true).is_ok());
        let err =
            check_network_configuration(NetworkMode::Awsvpc, Some(&public), false).unwrap_err();
        assert!(err.message.contains("Assign public IP"));
    }

    #[test]
    fn fargate_sizes_after_overrides() {
        let sized = |cpu: &str, memory: &str| TaskDefinition {
            cpu: Some(cpu.into()),
            memory: Some(memory.into()),
            ..TaskDefinition::default()
        };
        assert!(check_fargate_size(&sized("256", "512")).is_ok());
        let err = check_fargate_size(&sized("256", "4096")).unwrap_err();
        assert_eq!(
            err.message,
            "No Fargate configuration exists for given values."
        );
        assert!(check_fargate_size(&TaskDefinition::default()).is_err());
    }

    #[test]
    fn addresses_skip_network_gateway_and_broadcast() {
        let mut used = std::collections::BTreeSet::new();
        let first = free_address("100.64.4.0/30", &used).unwrap();
        assert_eq!(first, Ipv4Addr::new(100, 64, 4, 2));
        used.insert(first);
        assert_eq!(free_address("100.64.4.0/30", &used), None);
        assert_eq!(
            free_address("100.64.4.0/22", &used),
            Some(Ipv4Addr::new(100, 64, 4, 3))
        );
        assert_eq!(free_address("nonsense", &used), None);
        assert_eq!(free_address("10.0.0.0/31", &used), None);
        assert_eq!(interface_mac(first), "0a:58:64:40:04:02");
        assert_eq!(
            private_dns_name(first, "us-east-1"),
            "ip-100-64-4-2.ec2.internal"
        );
        assert_eq!(
            private_dns_name(first, "eu-west-1"),
            "ip-100-64-4-2.eu-west-1.compute.internal"
        );
    }
}
