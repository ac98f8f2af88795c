//! Task-definition registration: the rules `RegisterTaskDefinition` applies
//! to a request, and the values ECS computes from it (normalized task
//! `cpu`/`memory`, `compatibilities`, `requiresAttributes`, container
//! defaults), plus the placement size of a stored definition.
//!
//! [`validate`] is pure: it either returns a [`ValidatedTaskDefinition`]
//! from which the server builds the stored `TaskDefinition` (adding only
//! ARN, revision, status and registration stamps), or the `ClientException`
//! / `InvalidParameterException` ECS would return. Checks run in a fixed
//! order, so a request with several problems always reports the same one.
//!
//! Message texts copy ECS where its wording is publicly known (see
//! `ecs-semantics.md` §9 and the tests, which mark each message as observed
//! or Berth's own); the rest follow the same phrasing patterns.

mod attributes;
mod containers;
mod launch;
mod network;
mod normalize;
mod units;
mod volumes;

#[cfg(test)]
mod tests;

use std::collections::HashSet;

use berth_types::{
    Attribute, Compatibility, ContainerDefinition, EcsError, NetworkMode, OSFamily,
    RegisterTaskDefinitionRequest, TaskDefinition, TaskDefinitionPlacementConstraint,
    TaskDefinitionPlacementConstraintType, Volume,
};

pub use containers::check_memory_pair;
pub use units::{
    MIB_PER_GB, TASK_CPU_MAX, TASK_CPU_MIN, UNITS_PER_VCPU, fargate_combination_valid,
    parse_task_cpu, parse_task_memory,
};

/// Hard ECS limit on containers per task definition.
pub const MAX_CONTAINERS: usize = 10;
/// ECS's limit on the JSON size of a task definition.
pub const MAX_DEFINITION_BYTES: usize = 64 * 1024;
/// Placement constraints a task definition may carry.
pub const MAX_PLACEMENT_CONSTRAINTS: usize = 10;
/// Tags per resource.
pub const MAX_TAGS: usize = 50;
/// Longest family / container / volume name.
pub const MAX_NAME_LEN: usize = 255;

/// What registration computed and normalized; everything else in the
/// stored definition is the request as given.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedTaskDefinition {
    /// Task-level `cpu` as ECS stores it (`"1 vCPU"` → `"1024"`).
    pub cpu: Option<String>,
    /// Task-level `memory` as ECS stores it, in MiB (`"2 GB"` → `"2048"`).
    pub memory: Option<String>,
    /// `cpu` in units, for placement and overrides.
    pub cpu_units: Option<u32>,
    /// `memory` in MiB.
    pub memory_mib: Option<u32>,
    /// The mode tasks actually run with (`bridge` when the request names
    /// none). The stored definition keeps the request's `networkMode`
    /// as given: ECS does not echo the default back.
    pub network_mode: NetworkMode,
    /// Launch types the definition validates against, in ECS's order
    /// (`EXTERNAL`, `EC2`, `FARGATE`, `MANAGED_INSTANCES`).
    pub compatibilities: Vec<Compatibility>,
    /// Capability attributes a container instance needs to run the task,
    /// sorted by name; see the `attributes` module for the derivation.
    pub requires_attributes: Vec<Attribute>,
    /// Container definitions with the defaults ECS fills in (`essential`,
    /// port-mapping `protocol`/`hostPort`, empty lists, health-check
    /// timings).
    pub container_definitions: Vec<ContainerDefinition>,
}

impl ValidatedTaskDefinition {
    /// The stored definition for `req` (the request this was validated
    /// from), minus what only the server knows: `taskDefinitionArn`,
    /// `revision`, `status`, `registeredAt`, `registeredBy`.
    pub fn task_definition(&self, req: &RegisterTaskDefinitionRequest) -> TaskDefinition {
        TaskDefinition {
            compatibilities: Some(self.compatibilities.clone()),
            container_definitions: Some(self.container_definitions.clone()),
            cpu: self.cpu.clone(),
            enable_fault_injection: req.enable_fault_injection,
            ephemeral_storage: req.ephemeral_storage.clone(),
            execution_role_arn: req.execution_role_arn.clone(),
            family: Some(req.family.clone()),
            inference_accelerators: req.inference_accelerators.clone(),
            ipc_mode: req.ipc_mode,
            memory: self.memory.clone(),
            network_mode: req.network_mode,
            pid_mode: req.pid_mode,
            placement_constraints: Some(req.placement_constraints.clone().unwrap_or_default()),
            proxy_configuration: req.proxy_configuration.clone(),
            // ECS leaves the member out rather than sending `[]`.
            requires_attributes: if self.requires_attributes.is_empty() {
                None
            } else {
                Some(self.requires_attributes.clone())
            },
            requires_compatibilities: req.requires_compatibilities.clone(),
            runtime_platform: req.runtime_platform.clone(),
            task_role_arn: req.task_role_arn.clone(),
            trusted_execution_configuration: req.trusted_execution_configuration.clone(),
            volumes: Some(req.volumes.clone().unwrap_or_default()),
            ..TaskDefinition::default()
        }
    }
}

/// What one task of a definition takes from a container instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Requirements {
    /// CPU units.
    pub cpu: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
}

/// Everything the individual checks need, computed once.
pub(crate) struct Ctx<'a> {
    pub req: &'a RegisterTaskDefinitionRequest,
    pub containers: &'a [ContainerDefinition],
    pub task_cpu: Option<u32>,
    pub task_memory: Option<u32>,
    pub network_mode: NetworkMode,
    pub windows: bool,
}

impl Ctx<'_> {
    pub fn has_container(&self, name: &str) -> bool {
        self.containers.iter().any(|c| container_name(c) == name)
    }

    pub fn container(&self, name: &str) -> Option<&ContainerDefinition> {
        self.containers.iter().find(|c| container_name(c) == name)
    }

    pub fn requested(&self, compatibility: Compatibility) -> bool {
        self.req
            .requires_compatibilities
            .as_deref()
            .is_some_and(|r| r.contains(&compatibility))
    }
}

/// A container's name; empty only before the identity checks have run.
pub(crate) fn container_name(c: &ContainerDefinition) -> &str {
    c.name.as_deref().unwrap_or("")
}

/// `essential` defaults to true.
pub(crate) fn is_essential(c: &ContainerDefinition) -> bool {
    c.essential.unwrap_or(true)
}

/// ECS names (family, container, volume): 1–255 of `[A-Za-z0-9_-]`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Validates a `RegisterTaskDefinition` request and computes what ECS adds
/// to it. Never panics, whatever the input.
pub fn validate(req: &RegisterTaskDefinitionRequest) -> Result<ValidatedTaskDefinition, EcsError> {
    if serde_json::to_vec(req).map_or(0, |json| json.len()) > MAX_DEFINITION_BYTES {
        return Err(EcsError::client(
            "The task definition exceeds the maximum size of 64 KiB.",
        ));
    }
    check_family(&req.family)?;
    let containers = req.container_definitions.as_slice();
    if containers.is_empty() {
        return Err(EcsError::client("Container list cannot be empty."));
    }
    if containers.len() > MAX_CONTAINERS {
        return Err(EcsError::client("Too many containers."));
    }
    let task_cpu = match req.cpu.as_deref() {
        None => None,
        Some(s) => Some(
            parse_task_cpu(s)
                .filter(|units| (TASK_CPU_MIN..=TASK_CPU_MAX).contains(units))
                .ok_or_else(|| EcsError::client("Invalid 'cpu' setting for task."))?,
        ),
    };
    let task_memory = match req.memory.as_deref() {
        None => None,
        Some(s) => Some(
            parse_task_memory(s)
                .ok_or_else(|| EcsError::client("Invalid 'memory' setting for task."))?,
        ),
    };
    let windows = req
        .runtime_platform
        .as_ref()
        .and_then(|p| p.operating_system_family)
        .is_some_and(|os| os != OSFamily::Linux);
    let ctx = Ctx {
        req,
        containers,
        task_cpu,
        task_memory,
        network_mode: req.network_mode.unwrap_or(NetworkMode::Bridge),
        windows,
    };

    containers::check_identity(&ctx)?;
    containers::check_resources(&ctx)?;
    network::check(&ctx)?;
    containers::check_essential(&ctx)?;
    containers::check_dependencies(&ctx)?;
    containers::check_health_checks(&ctx)?;
    containers::check_timeouts(&ctx)?;
    volumes::check(&ctx)?;
    check_placement_constraints(req.placement_constraints.as_deref().unwrap_or_default())?;
    check_tags(req)?;
    check_ephemeral_storage(req)?;
    let compatibilities = launch::compatibilities(&ctx)?;

    Ok(ValidatedTaskDefinition {
        cpu: task_cpu.map(|v| v.to_string()),
        memory: task_memory.map(|v| v.to_string()),
        cpu_units: task_cpu,
        memory_mib: task_memory,
        network_mode: ctx.network_mode,
        compatibilities,
        requires_attributes: attributes::derive(&ctx),
        container_definitions: normalize::containers(&ctx),
    })
}

fn check_family(family: &str) -> Result<(), EcsError> {
    if family.is_empty() {
        return Err(EcsError::client("Family can not be blank."));
    }
    if family.len() > MAX_NAME_LEN {
        return Err(EcsError::client(
            "Family name must be no longer than 255 characters.",
        ));
    }
    if !valid_name(family) {
        return Err(EcsError::client("Family contains invalid characters."));
    }
    Ok(())
}

fn check_placement_constraints(
    constraints: &[TaskDefinitionPlacementConstraint],
) -> Result<(), EcsError> {
    if constraints.len() > MAX_PLACEMENT_CONSTRAINTS {
        return Err(EcsError::client(
            "Too many placement constraints. A task definition can have at most 10.",
        ));
    }
    for constraint in constraints {
        if constraint.r#type != Some(TaskDefinitionPlacementConstraintType::MemberOf) {
            return Err(EcsError::client(
                "Invalid 'placementConstraints' setting. Only the 'memberOf' constraint type is supported in task definitions.",
            ));
        }
        if constraint
            .expression
            .as_deref()
            .is_none_or(|e| e.trim().is_empty())
        {
            return Err(EcsError::client(
                "Invalid 'placementConstraints' setting. A 'memberOf' constraint requires an expression.",
            ));
        }
    }
    Ok(())
}

/// Tag rules are shared with TagResource, where ECS reports them as
/// `InvalidParameterException`.
fn check_tags(req: &RegisterTaskDefinitionRequest) -> Result<(), EcsError> {
    let tags = req.tags.as_deref().unwrap_or_default();
    if tags.len() > MAX_TAGS {
        return Err(EcsError::invalid_parameter(
            "Too many tags. A resource can have at most 50 tags.",
        ));
    }
    let mut seen = HashSet::new();
    for tag in tags {
        let key = tag.key.as_deref().unwrap_or("");
        if key.is_empty() || key.chars().count() > 128 {
            return Err(EcsError::invalid_parameter(
                "Tag keys must be between 1 and 128 characters.",
            ));
        }
        if tag.value.as_deref().unwrap_or("").chars().count() > 256 {
            return Err(EcsError::invalid_parameter(
                "Tag values must be no longer than 256 characters.",
            ));
        }
        if key
            .get(..4)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("aws:"))
        {
            return Err(EcsError::invalid_parameter(
                "Tag keys beginning with 'aws:' are reserved.",
            ));
        }
        if !seen.insert(key) {
            return Err(EcsError::invalid_parameter(format!(
                "Duplicate tag key '{key}'."
            )));
        }
    }
    Ok(())
}

fn check_ephemeral_storage(req: &RegisterTaskDefinitionRequest) -> Result<(), EcsError> {
    match &req.ephemeral_storage {
        Some(storage) if !(21..=200).contains(&storage.size_in_gi_b) => Err(EcsError::client(
            "Invalid 'ephemeralStorage' setting for task. 'sizeInGiB' must be between 21 and 200.",
        )),
        _ => Ok(()),
    }
}

/// The CPU and memory one task of `td` reserves on a container instance:
/// the task-level value when set, otherwise the containers' sum (memory per
/// container: `memoryReservation` if set, else `memory`).
pub fn resource_requirements(td: &TaskDefinition) -> Requirements {
    let containers = td.container_definitions.as_deref().unwrap_or_default();
    let cpu = td
        .cpu
        .as_deref()
        .and_then(parse_task_cpu)
        .unwrap_or_else(|| {
            containers
                .iter()
                .map(|c| u32::try_from(c.cpu).unwrap_or(0))
                .fold(0u32, u32::saturating_add)
        });
    let memory_mib = td
        .memory
        .as_deref()
        .and_then(parse_task_memory)
        .unwrap_or_else(|| {
            containers
                .iter()
                .map(container_reserved_memory)
                .fold(0u32, u32::saturating_add)
        });
    Requirements { cpu, memory_mib }
}

/// The memory a container reserves: its soft limit if it has one,
/// otherwise its hard limit.
pub(crate) fn container_reserved_memory(c: &ContainerDefinition) -> u32 {
    let positive = |v: Option<i32>| v.and_then(|m| u32::try_from(m).ok()).filter(|m| *m > 0);
    positive(c.memory_reservation)
        .or_else(|| positive(c.memory))
        .unwrap_or(0)
}

/// Volumes declared by the request, for the checks that look them up.
pub(crate) fn declared_volumes(req: &RegisterTaskDefinitionRequest) -> &[Volume] {
    req.volumes.as_deref().unwrap_or_default()
}
