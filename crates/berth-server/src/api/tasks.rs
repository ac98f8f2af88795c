//! Tasks: RunTask and StartTask (placement, with every reservation taken in
//! the same transaction as the tasks, guarded on the instances read, so
//! concurrent launches can never over-commit a host), StopTask,
//! DescribeTasks and ListTasks, plus the shared path by which a task's
//! change returns its reservation to the instance once it is STOPPED.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use berth_core::launch::{
    Demand, apply_overrides, check_fargate_size, check_network_configuration, demand,
    interface_mac, network_mode, private_dns_name,
};
use berth_core::lifecycle::{self, PENDING, PROVISIONING, RUNNING, STOPPED};
use berth_scheduler::engine::{self, Constraint, Instance, Request, RequestError, Strategy};
use berth_store::Txn;
use berth_types::agent::{
    ContainerSpec, DesiredStatus, FARGATE_POOL_CLUSTER, TASK_ENI_SUBNET_ATTRIBUTE,
    TaskNetworkInterface, TaskSpec,
};
use berth_types::arn::Scope;
use berth_types::{
    Attachment, Attribute, AwsVpcConfiguration, CapacityProviderStrategyItem, Connectivity,
    Container, ContainerInstance, DescribeTasksRequest, DescribeTasksResponse, EcsError,
    EphemeralStorage, ErrorCode, Failure, HealthStatus, KeyValuePair, LaunchType, ListTasksRequest,
    ListTasksResponse, NetworkConfiguration, NetworkInterface, PlacementConstraint,
    PlacementStrategy, PropagateTags, RunTaskRequest, RunTaskResponse, StartTaskRequest,
    StartTaskResponse, StopTaskRequest, StopTaskResponse, Tag, Task, TaskDefinition,
    TaskDefinitionStatus, TaskField, TaskOverride, TaskStopCode, Timestamp,
};

use super::{
    Api, Ctx, capacity_providers, clusters, container_instances, failure, includes, paginate,
    resource_id, task_definitions, validate_tags,
};
use crate::intern::Interner;
use crate::placement::{self, Launched, adjust_remaining, snapshot_instance};
use crate::state::{
    ClientTokenRecord, MAX_CAS_ATTEMPTS, Reservation, TaskRecord, Versioned, contention, encode,
    guard, key, prefix,
};

pub fn task_key(ctx: &Ctx, cluster: &str, id: &str) -> String {
    key::<TaskRecord>(&ctx.scope, &format!("{cluster}/{id}"))
}

pub fn cluster_tasks_prefix(ctx: &Ctx, cluster: &str) -> String {
    format!("{}{cluster}/", prefix::<TaskRecord>(&ctx.scope))
}

/// The cluster a (long) task ARN names.
pub fn cluster_of(task_arn: &str) -> Option<&str> {
    let arn = berth_types::arn::Arn::parse(task_arn)?;
    (arn.resource_type == "task")
        .then(|| arn.resource.split_once('/').map(|(cluster, _)| cluster))
        .flatten()
}

/// A task of `cluster` by id or ARN.
pub fn find(
    api: &Api,
    ctx: &Ctx,
    cluster: &str,
    reference: &str,
) -> Option<(String, Versioned<TaskRecord>)> {
    let id = resource_id(reference, "task")?;
    let key = task_key(ctx, cluster, id);
    api.cache.get::<TaskRecord>(&key).map(|v| (key, v))
}

// ---- building a task ---------------------------------------------------------

/// Everything about a launch that is the same for each of its tasks.
struct Launch {
    cluster: String,
    definition: TaskDefinition,
    effective: TaskDefinition,
    demand: Demand,
    overrides: TaskOverride,
    started_by: Option<String>,
    group: String,
    tags: Vec<Tag>,
    launch_type: LaunchType,
    /// FARGATE or FARGATE_SPOT for a Fargate launch.
    capacity_provider: Option<String>,
    platform_version: Option<&'static str>,
    /// The launch's `awsvpcConfiguration` (awsvpc definitions only).
    network: Option<AwsVpcConfiguration>,
}

/// Where a launch's tasks go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The cluster's container instances.
    Instances(LaunchType),
    /// The platform's Fargate pool, under FARGATE or FARGATE_SPOT.
    Fargate(String),
}

impl Target {
    fn launch_type(&self) -> LaunchType {
        match self {
            Target::Instances(t) => *t,
            Target::Fargate(_) => LaunchType::Fargate,
        }
    }
}

/// What a launch asked for: a launch type, a capacity provider strategy, or
/// neither (the cluster's default strategy, else EC2), never both.
pub fn resolve_capacity(
    api: &Api,
    ctx: &Ctx,
    cluster: &berth_types::Cluster,
    launch_type: Option<LaunchType>,
    strategy: Option<&[CapacityProviderStrategyItem]>,
) -> Result<Option<Vec<CapacityProviderStrategyItem>>, EcsError> {
    let strategy = strategy.filter(|s| !s.is_empty());
    if launch_type.is_some() && strategy.is_some() {
        return Err(EcsError::invalid_parameter(
            "Specifying both a launchType and capacityProviderStrategy is not supported.",
        ));
    }
    if let Some(t) = launch_type {
        return match t {
            LaunchType::Ec2 | LaunchType::External | LaunchType::Fargate => Ok(None),
            other => Err(EcsError::new(
                ErrorCode::UnsupportedFeatureException,
                format!("The {other} launch type is not supported by Berth yet."),
            )),
        };
    }
    let strategy = match strategy {
        Some(s) => s.to_vec(),
        None => cluster
            .default_capacity_provider_strategy
            .clone()
            .unwrap_or_default(),
    };
    if strategy.is_empty() {
        return Ok(None);
    }
    capacity_providers::validate_strategy(&strategy)?;
    let associated = cluster.capacity_providers.as_deref().unwrap_or_default();
    for item in &strategy {
        if !associated.contains(&item.capacity_provider) {
            return Err(EcsError::invalid_parameter(
                "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again.",
            ));
        }
        if !capacity_providers::is_fargate(&item.capacity_provider) {
            capacity_providers::find(api, ctx, &item.capacity_provider).ok_or_else(|| {
                EcsError::invalid_parameter(format!(
                    "The specified capacity provider {} does not exist.",
                    item.capacity_provider
                ))
            })?;
            return Err(EcsError::new(
                ErrorCode::UnsupportedFeatureException,
                "Auto Scaling group capacity providers cannot launch tasks in Berth yet; use FARGATE, FARGATE_SPOT or launchType EC2.",
            ));
        }
    }
    Ok(Some(strategy))
}

/// The targets of `count` new tasks: all on the launch type, or spread over
/// the strategy's providers given what the same service already runs on
/// each (`existing`).
pub fn targets(
    launch_type: Option<LaunchType>,
    strategy: Option<&[CapacityProviderStrategyItem]>,
    existing: &BTreeMap<String, usize>,
    count: usize,
) -> Result<Vec<(Target, usize)>, EcsError> {
    let Some(strategy) = strategy else {
        let target = match launch_type.unwrap_or(LaunchType::Ec2) {
            LaunchType::Fargate => Target::Fargate("FARGATE".to_owned()),
            t => Target::Instances(t),
        };
        return Ok(vec![(target, count)]);
    };
    let mut out: Vec<(Target, usize)> = Vec::new();
    for provider in berth_core::capacity::distribute(strategy, existing, count)? {
        let target = Target::Fargate(provider);
        match out.iter_mut().find(|(t, _)| *t == target) {
            Some((_, n)) => *n += 1,
            None => out.push((target, 1)),
        }
    }
    Ok(out)
}

fn validate_started_by(started_by: Option<&str>) -> Result<(), EcsError> {
    if let Some(s) = started_by {
        let ok = s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-/_".contains(&b));
        if !ok {
            return Err(EcsError::invalid_parameter(
                "startedBy must be at most 128 letters, numbers, hyphens, forward slashes and underscores.",
            ));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn prepare(
    api: &Api,
    ctx: &Ctx,
    cluster: String,
    task_definition: &str,
    overrides: Option<&TaskOverride>,
    started_by: Option<String>,
    group: Option<String>,
    tags: Option<Vec<Tag>>,
    propagate: Option<PropagateTags>,
    target: &Target,
    network_configuration: Option<&NetworkConfiguration>,
    platform_version: Option<&str>,
) -> Result<Launch, EcsError> {
    let launch_type = target.launch_type();
    let (_, found) = task_definitions::resolve(api, ctx, task_definition)
        .ok_or_else(|| EcsError::client("TaskDefinition not found."))?;
    let definition = found.value.task_definition;
    if definition.status != Some(TaskDefinitionStatus::Active) {
        return Err(EcsError::client("TaskDefinition is inactive"));
    }
    let compatible = definition
        .compatibilities
        .iter()
        .flatten()
        .any(|c| c.as_str() == launch_type.as_str());
    if !compatible {
        return Err(EcsError::client(format!(
            "Task definition does not support launch_type {launch_type}."
        )));
    }
    let fargate = launch_type == LaunchType::Fargate;
    let network =
        check_network_configuration(network_mode(&definition), network_configuration, fargate)?;
    let effective = apply_overrides(&definition, overrides)?;
    let platform_version = if fargate {
        check_fargate_size(&effective)?;
        Some(berth_core::capacity::platform_version(platform_version)?)
    } else if platform_version.is_some() {
        return Err(EcsError::invalid_parameter(format!(
            "The platform version must be null when specifying an {launch_type} launch type."
        )));
    } else {
        None
    };
    validate_started_by(started_by.as_deref())?;
    let family = definition.family.clone().unwrap_or_default();
    let group = group.unwrap_or_else(|| format!("family:{family}"));
    if group.is_empty() || group.len() > 255 {
        return Err(EcsError::invalid_parameter(
            "group must be between 1 and 255 characters.",
        ));
    }
    let mut tags = tags.unwrap_or_default();
    if propagate == Some(PropagateTags::TaskDefinition) {
        for t in found.value.tags {
            if !tags.iter().any(|x| x.key == t.key) {
                tags.push(t);
            }
        }
    }
    validate_tags(&tags)?;
    Ok(Launch {
        cluster,
        demand: demand(&effective),
        definition,
        effective,
        overrides: overrides.cloned().unwrap_or_else(|| TaskOverride {
            container_overrides: Some(Vec::new()),
            inference_accelerator_overrides: Some(Vec::new()),
            ..TaskOverride::default()
        }),
        started_by,
        group,
        tags,
        launch_type,
        capacity_provider: match target {
            Target::Fargate(provider) => Some(provider.clone()),
            Target::Instances(_) => None,
        },
        platform_version,
        network,
    })
}

fn attribute(ci: &ContainerInstance, name: &str) -> Option<String> {
    ci.attributes
        .iter()
        .flatten()
        .find(|a| a.name == name)
        .and_then(|a| a.value.clone())
}

/// A task's elastic network interface: the attachment ECS shows and what
/// the agent needs to give the task that address.
fn network_interface(
    scope: &Scope,
    launch: &Launch,
    instance: &ContainerInstance,
    address: Ipv4Addr,
) -> (Attachment, TaskNetworkInterface) {
    let attachment_id = uuid::Uuid::new_v4().to_string();
    let mac = interface_mac(address);
    let subnet_cidr = attribute(instance, TASK_ENI_SUBNET_ATTRIBUTE).unwrap_or_default();
    let subnet_id = launch
        .network
        .as_ref()
        .and_then(|n| n.subnets.first().cloned())
        .unwrap_or_default();
    let detail = |name: &str, value: String| KeyValuePair {
        name: Some(name.to_owned()),
        value: Some(value),
    };
    let attachment = Attachment {
        id: Some(attachment_id.clone()),
        r#type: Some(lifecycle::ENI_ATTACHMENT.to_owned()),
        status: Some(lifecycle::ATTACHING.to_owned()),
        details: Some(vec![
            detail("subnetId", subnet_id),
            detail(
                "networkInterfaceId",
                format!("eni-{}", &attachment_id.replace('-', "")[..17]),
            ),
            detail("macAddress", mac.clone()),
            detail("privateDnsName", private_dns_name(address, &scope.region)),
            detail("privateIPv4Address", address.to_string()),
        ]),
    };
    let spec = TaskNetworkInterface {
        attachment_arn: format!(
            "arn:{}:ecs:{}:{}:attachment/{attachment_id}",
            scope.partition(),
            scope.region,
            scope.account
        ),
        ipv4_address: address.to_string(),
        mac_address: mac,
        subnet_cidr,
    };
    (attachment, spec)
}

/// Fargate's ephemeral storage when the definition asks for none.
const FARGATE_DEFAULT_EPHEMERAL_GIB: i32 = 20;

fn new_task(
    scope: &Scope,
    launch: &Launch,
    instance: &ContainerInstance,
    address: Option<Ipv4Addr>,
    now: Timestamp,
) -> TaskRecord {
    let id = berth_types::arn::new_id();
    let task_arn = scope.task(&launch.cluster, &id);
    let fargate = launch.launch_type == LaunchType::Fargate;
    let eni = address.map(|a| network_interface(scope, launch, instance, a));
    let definitions = launch
        .effective
        .container_definitions
        .clone()
        .unwrap_or_default();
    let containers: Vec<Container> = definitions
        .iter()
        .map(|c| Container {
            container_arn: Some(scope.container(
                &launch.cluster,
                &id,
                &uuid::Uuid::new_v4().to_string(),
            )),
            task_arn: Some(task_arn.clone()),
            name: c.name.clone(),
            image: c.image.clone(),
            last_status: Some(PENDING.into()),
            network_interfaces: Some(
                eni.iter()
                    .map(|(attachment, spec)| NetworkInterface {
                        attachment_id: attachment.id.clone(),
                        private_ipv4_address: Some(spec.ipv4_address.clone()),
                        ipv6_address: None,
                    })
                    .collect(),
            ),
            cpu: Some(c.cpu.to_string()),
            memory: c.memory.map(|m| m.to_string()),
            memory_reservation: c.memory_reservation.map(|m| m.to_string()),
            health_status: Some(HealthStatus::Unknown),
            ..Container::default()
        })
        .collect();
    let spec = TaskSpec {
        task_arn: task_arn.clone(),
        cluster_arn: scope.cluster(&launch.cluster),
        task_definition_arn: launch
            .definition
            .task_definition_arn
            .clone()
            .unwrap_or_default(),
        family: launch.definition.family.clone().unwrap_or_default(),
        revision: launch.definition.revision,
        desired_status: DesiredStatus::Running,
        desired_version: 1,
        network_mode: network_mode(&launch.effective),
        cpu: launch.effective.cpu.as_deref().and_then(|c| c.parse().ok()),
        memory_mib: launch
            .effective
            .memory
            .as_deref()
            .and_then(|m| m.parse().ok()),
        containers: containers
            .iter()
            .zip(definitions)
            .map(|(c, definition)| ContainerSpec {
                container_arn: c.container_arn.clone().unwrap_or_default(),
                definition: Arc::new(definition),
            })
            .collect(),
        volumes: launch.effective.volumes.clone().unwrap_or_default(),
        pid_mode: launch.effective.pid_mode,
        ipc_mode: launch.effective.ipc_mode,
        network_interface: eni.as_ref().map(|(_, spec)| spec.clone()),
    };
    let architecture =
        attribute(instance, "ecs.cpu-architecture").unwrap_or_else(|| "x86_64".into());
    let task = Task {
        task_arn: Some(task_arn),
        cluster_arn: Some(spec.cluster_arn.clone()),
        task_definition_arn: Some(spec.task_definition_arn.clone()),
        // Fargate tasks run on no host the user can see.
        container_instance_arn: if fargate {
            None
        } else {
            instance.container_instance_arn.clone()
        },
        capacity_provider_name: launch.capacity_provider.clone(),
        platform_version: launch.platform_version.map(str::to_owned),
        platform_family: fargate.then(|| "Linux".to_owned()),
        ephemeral_storage: if fargate {
            Some(
                launch
                    .effective
                    .ephemeral_storage
                    .clone()
                    .unwrap_or(EphemeralStorage {
                        size_in_gi_b: FARGATE_DEFAULT_EPHEMERAL_GIB,
                    }),
            )
        } else {
            launch.effective.ephemeral_storage.clone()
        },
        attachments: Some(
            eni.map(|(attachment, _)| vec![attachment])
                .unwrap_or_default(),
        ),
        overrides: Some(launch.overrides.clone()),
        last_status: Some(PROVISIONING.into()),
        desired_status: Some(RUNNING.into()),
        cpu: launch.effective.cpu.clone(),
        memory: launch.effective.memory.clone(),
        containers: Some(containers),
        started_by: launch.started_by.clone(),
        version: 1,
        created_at: Some(now),
        group: Some(launch.group.clone()),
        launch_type: Some(launch.launch_type),
        availability_zone: attribute(instance, "ecs.availability-zone"),
        attributes: Some(vec![Attribute {
            name: "ecs.cpu-architecture".into(),
            value: Some(architecture),
            target_id: None,
            target_type: None,
        }]),
        tags: Some(launch.tags.clone()),
        connectivity: Some(Connectivity::Connected),
        connectivity_at: Some(now),
        health_status: Some(HealthStatus::Unknown),
        enable_execute_command: false,
        ..Task::default()
    };
    TaskRecord {
        task,
        spec,
        instance_id: instance
            .container_instance_arn
            .as_deref()
            .and_then(|a| resource_id(a, "container-instance"))
            .map(str::to_owned),
        reservation: Reservation {
            cpu: launch.demand.cpu,
            memory: launch.demand.memory,
            gpu: launch.demand.gpu,
            tcp_ports: launch.demand.tcp_ports.clone(),
            udp_ports: launch.demand.udp_ports.clone(),
        },
        released: false,
    }
}

/// The scheduler's view of a launch: its resources and task group, the
/// task definition's `requiresAttributes`, and its constraints (the task
/// definition's merged with the request's) and strategies, validated.
fn placement_request(
    launch: &Launch,
    count: usize,
    constraints: &[PlacementConstraint],
    strategies: &[PlacementStrategy],
) -> Result<Request, EcsError> {
    let invalid = |e: RequestError| EcsError::invalid_parameter(e.to_string());
    let from_definition = launch
        .definition
        .placement_constraints
        .iter()
        .flatten()
        .map(|c| (c.r#type.map(|t| t.as_str()), c.expression.as_deref()));
    let from_request = constraints
        .iter()
        .map(|c| (c.r#type.map(|t| t.as_str()), c.expression.as_deref()));
    let constraints = from_definition
        .chain(from_request)
        .map(|(kind, expression)| {
            Constraint::from_api(kind.unwrap_or_default(), expression).map_err(invalid)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let strategies = strategies
        .iter()
        .map(|s| {
            Strategy::from_api(
                s.r#type.map(|t| t.as_str()).unwrap_or_default(),
                s.field.as_deref(),
            )
            .map_err(invalid)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let request = Request {
        cpu: launch.demand.cpu,
        memory: launch.demand.memory,
        gpu: launch.demand.gpu,
        tcp_ports: launch.demand.tcp_ports.clone(),
        udp_ports: launch.demand.udp_ports.clone(),
        count,
        required_attributes: launch
            .definition
            .requires_attributes
            .iter()
            .flatten()
            .map(|a| a.name.clone())
            .collect(),
        constraints,
        strategies,
        group: launch.group.clone(),
    };
    engine::validate(&request).map_err(invalid)?;
    Ok(request)
}

/// StartTask: one task on each named instance, checked (resources, agent,
/// required attributes) against what earlier tasks of the call took, and
/// committed guarded on the instances read.
async fn start_on(
    api: &Api,
    ctx: &Ctx,
    launch: &Launch,
    names: &[String],
) -> Result<(Vec<Task>, Vec<Failure>), EcsError> {
    let request = placement_request(launch, 1, &[], &[])?;
    for _ in 0..MAX_CAS_ATTEMPTS {
        let now = Timestamp::now();
        let mut failures = Vec::new();
        // Instance id → (key, as read, the engine's view, as updated).
        let mut seen: BTreeMap<
            String,
            (
                String,
                Versioned<ContainerInstance>,
                Instance,
                ContainerInstance,
            ),
        > = BTreeMap::new();
        let mut records: Vec<TaskRecord> = Vec::new();
        for name in names {
            let id = resource_id(name, "container-instance")
                .unwrap_or(name)
                .to_owned();
            if !seen.contains_key(&id) {
                let Some((key, found)) = container_instances::find(api, ctx, &launch.cluster, &id)
                else {
                    failures.push(failure(
                        ctx.scope.container_instance(&launch.cluster, &id),
                        "MISSING",
                    ));
                    continue;
                };
                let view = snapshot_instance(&id, &found.value, None, &mut Interner::default());
                let current = found.value.clone();
                seen.insert(id.clone(), (key, found, view, current));
            }
            let (_, found, view, current) = seen.get_mut(&id).expect("inserted above");
            if found.value.status.as_deref() != Some(container_instances::ACTIVE) {
                failures.push(failure(
                    found
                        .value
                        .container_instance_arn
                        .clone()
                        .unwrap_or_default(),
                    found.value.status.as_deref().unwrap_or("INACTIVE"),
                ));
                continue;
            }
            let outcome = engine::place(std::slice::from_mut(view), &request, 0)
                .map_err(|e| EcsError::invalid_parameter(e.to_string()))?;
            if let Some(f) = outcome.failures.first() {
                failures.push(failure(
                    found
                        .value
                        .container_instance_arn
                        .clone()
                        .unwrap_or_default(),
                    f.reason.as_str(),
                ));
                continue;
            }
            let address = if launch.network.is_some() {
                let taken: BTreeSet<Ipv4Addr> = records
                    .iter()
                    .filter(|r| r.instance_id.as_deref() == Some(id.as_str()))
                    .filter_map(|r| r.spec.network_interface.as_ref()?.ipv4_address.parse().ok())
                    .collect();
                match placement::free_address(&api.cache, &id, current, &taken) {
                    Some(address) => Some(address),
                    None => {
                        failures.push(failure(
                            current.container_instance_arn.clone().unwrap_or_default(),
                            "RESOURCE:ENI",
                        ));
                        continue;
                    }
                }
            } else {
                None
            };
            let record = new_task(&ctx.scope, launch, current, address, now);
            adjust_remaining(current, &record.reservation, -1);
            records.push(record);
        }
        let mut txn = Txn::new();
        for (key, found, _, mut current) in seen.into_values() {
            if current != found.value {
                current.version += 1;
                txn = guard(txn, &key, found.mod_revision).put(key, encode(&current)?);
            }
        }
        for record in &records {
            let id =
                resource_id(record.task.task_arn.as_deref().unwrap_or(""), "task").unwrap_or("");
            txn = txn.put(task_key(ctx, &launch.cluster, id), encode(record)?);
        }
        if api.writer.commit(txn).await? {
            return Ok((records.into_iter().map(|r| r.task).collect(), failures));
        }
    }
    Err(contention())
}

fn check_unsupported(execute_command: bool) -> Result<(), EcsError> {
    if execute_command {
        return Err(EcsError::new(
            ErrorCode::UnsupportedFeatureException,
            "ECS Exec is not supported by Berth.",
        ));
    }
    Ok(())
}

/// The request without its token, canonicalised, to recognise a retry.
fn fingerprint(req: &RunTaskRequest) -> String {
    let mut copy = req.clone();
    copy.client_token = None;
    serde_json::to_string(&copy).unwrap_or_default()
}

pub async fn run(api: &Api, ctx: &Ctx, req: RunTaskRequest) -> Result<RunTaskResponse, EcsError> {
    run_with(api, ctx, req, &BTreeMap::new()).await
}

/// RunTask; `existing` counts the tasks the same service already runs per
/// capacity provider, so a strategy's base and weights hold across calls.
pub async fn run_with(
    api: &Api,
    ctx: &Ctx,
    req: RunTaskRequest,
    existing: &BTreeMap<String, usize>,
) -> Result<RunTaskResponse, EcsError> {
    let cluster_record = clusters::active(api, ctx, req.cluster.as_deref())?;
    let cluster = cluster_record.cluster_name.clone().unwrap_or_default();
    let count = req.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(EcsError::invalid_parameter(
            "count must be between 1 and 10.",
        ));
    }
    let strategy = resolve_capacity(
        api,
        ctx,
        &cluster_record,
        req.launch_type,
        req.capacity_provider_strategy.as_deref(),
    )?;
    let targets = targets(
        req.launch_type,
        strategy.as_deref(),
        existing,
        usize::try_from(count).unwrap_or(1),
    )?;
    check_unsupported(req.enable_execute_command.unwrap_or(false))?;
    let token = match req.client_token.as_deref() {
        None => None,
        Some(t) if t.is_empty() || t.len() > 64 || !t.bytes().all(|b| (33..=126).contains(&b)) => {
            return Err(EcsError::invalid_parameter(
                "clientToken must be 1-64 printable ASCII characters.",
            ));
        }
        Some(t) => Some(t),
    };
    let token_key = token.map(|t| key::<ClientTokenRecord>(&ctx.scope, &format!("{cluster}/{t}")));
    if let Some(token_key) = &token_key
        && let Some(existing) = api.cache.get::<ClientTokenRecord>(token_key)
    {
        return replay(api, ctx, &cluster, &existing.value, &fingerprint(&req));
    }
    let mut launches = Vec::with_capacity(targets.len());
    for (target, n) in &targets {
        let launch = prepare(
            api,
            ctx,
            cluster.clone(),
            &req.task_definition,
            req.overrides.as_ref(),
            req.started_by.clone(),
            req.group.clone(),
            req.tags.clone(),
            req.propagate_tags,
            target,
            req.network_configuration.as_ref(),
            req.platform_version.as_deref(),
        )?;
        // Fargate places by resources alone: constraints and strategies
        // are EC2's.
        let (constraints, strategies) = match target {
            Target::Fargate(_) => (&[][..], &[][..]),
            Target::Instances(_) => (
                req.placement_constraints.as_deref().unwrap_or_default(),
                req.placement_strategy.as_deref().unwrap_or_default(),
            ),
        };
        let request = placement_request(&launch, *n, constraints, strategies)?;
        launches.push((target, launch, request));
    }
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    // With a strategy over two providers the launch is two placements; the
    // client token goes with the first.
    for (n, (target, launch, request)) in launches.into_iter().enumerate() {
        let (instances, task_prefix) = match target {
            Target::Fargate(_) => (
                format!(
                    "{}{FARGATE_POOL_CLUSTER}/",
                    prefix::<ContainerInstance>(&ctx.scope)
                ),
                prefix::<TaskRecord>(&ctx.scope),
            ),
            Target::Instances(_) => (
                format!("{}{cluster}/", prefix::<ContainerInstance>(&ctx.scope)),
                cluster_tasks_prefix(ctx, &cluster),
            ),
        };
        let task_keys = {
            let (scope, cluster) = (ctx.scope.clone(), cluster.clone());
            move |id: &str| key::<TaskRecord>(&scope, &format!("{cluster}/{id}"))
        };
        let needs_address = launch.network.is_some();
        let build = {
            let scope = ctx.scope.clone();
            move |instance: &ContainerInstance, address, now| {
                new_task(&scope, &launch, instance, address, now)
            }
        };
        let token = token_key
            .clone()
            .filter(|_| n == 0)
            .map(|k| (k, fingerprint(&req)));
        let launched = api
            .lanes
            .launch(
                instances,
                task_prefix,
                placement::Launch {
                    request,
                    build: Box::new(build),
                    task_key: Box::new(task_keys),
                    token,
                    needs_address,
                    pool: matches!(target, Target::Fargate(_)),
                },
            )
            .await?;
        match (launched, &token_key) {
            (
                Launched::Placed {
                    tasks: t,
                    failures: f,
                },
                _,
            ) => {
                tasks.extend(t);
                failures.extend(f);
            }
            // Another call with the same token won the race.
            (Launched::TokenTaken, Some(token_key)) => {
                let existing = api
                    .cache
                    .get::<ClientTokenRecord>(token_key)
                    .ok_or_else(contention)?;
                return replay(api, ctx, &cluster, &existing.value, &fingerprint(&req));
            }
            (Launched::TokenTaken, None) => return Err(contention()),
        }
    }
    Ok(RunTaskResponse {
        tasks: Some(tasks),
        failures: Some(failures),
    })
}

fn replay(
    api: &Api,
    ctx: &Ctx,
    cluster: &str,
    record: &ClientTokenRecord,
    fingerprint: &str,
) -> Result<RunTaskResponse, EcsError> {
    if record.fingerprint != fingerprint {
        return Err(EcsError::new(
            ErrorCode::ConflictException,
            format!(
                "The clientToken was already used with different parameters. Tasks: {}",
                record.task_arns.join(", ")
            ),
        ));
    }
    let tasks = record
        .task_arns
        .iter()
        .filter_map(|arn| find(api, ctx, cluster, arn).map(|(_, v)| v.value.task))
        .collect();
    Ok(RunTaskResponse {
        tasks: Some(tasks),
        failures: Some(record.failures.clone()),
    })
}

pub async fn start(
    api: &Api,
    ctx: &Ctx,
    req: StartTaskRequest,
) -> Result<StartTaskResponse, EcsError> {
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    if req.container_instances.is_empty() || req.container_instances.len() > 10 {
        return Err(EcsError::invalid_parameter(
            "containerInstances must list between 1 and 10 container instances.",
        ));
    }
    check_unsupported(req.enable_execute_command.unwrap_or(false))?;
    let launch = prepare(
        api,
        ctx,
        cluster,
        &req.task_definition,
        req.overrides.as_ref(),
        req.started_by.clone(),
        req.group.clone(),
        req.tags.clone(),
        req.propagate_tags,
        &Target::Instances(LaunchType::Ec2),
        req.network_configuration.as_ref(),
        None,
    )?;
    let (tasks, failures) = start_on(api, ctx, &launch, &req.container_instances).await?;
    Ok(StartTaskResponse {
        tasks: Some(tasks),
        failures: Some(failures),
    })
}

/// Read-modify-write of one task. When the change leaves the task STOPPED
/// for the first time, its reservation returns to its instance in the same
/// transaction. `change` returns whether it changed anything.
pub async fn update(
    api: &Api,
    ctx: &Ctx,
    cluster: &str,
    reference: &str,
    mut change: impl FnMut(&mut TaskRecord) -> Result<bool, EcsError>,
) -> Result<Task, EcsError> {
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (key, found) = find(api, ctx, cluster, reference).ok_or_else(|| {
            EcsError::invalid_parameter(format!("The referenced task {reference} was not found."))
        })?;
        let mut record = found.value;
        if !change(&mut record)? {
            return Ok(record.task);
        }
        let mut txn = guard(Txn::new(), &key, found.mod_revision);
        if lifecycle::is_stopped(&record.task) && !record.released {
            record.released = true;
            let host_cluster = if record.task.launch_type == Some(LaunchType::Fargate) {
                FARGATE_POOL_CLUSTER
            } else {
                cluster
            };
            if let Some((ci_key, ci)) = record
                .instance_id
                .as_deref()
                .and_then(|id| container_instances::find(api, ctx, host_cluster, id))
            {
                let mut instance = ci.value;
                adjust_remaining(&mut instance, &record.reservation, 1);
                instance.version += 1;
                txn = guard(txn, &ci_key, ci.mod_revision).put(ci_key, encode(&instance)?);
            }
        }
        txn = txn.put(key, encode(&record)?);
        if api.writer.commit(txn).await? {
            return Ok(record.task);
        }
    }
    Err(contention())
}

/// Asks a task to stop and tells its agent (through the desired version).
pub async fn stop_task(
    api: &Api,
    ctx: &Ctx,
    cluster: &str,
    reference: &str,
    code: TaskStopCode,
    reason: &str,
) -> Result<Task, EcsError> {
    update(api, ctx, cluster, reference, |record| {
        let changed = lifecycle::request_stop(&mut record.task, code, reason, Timestamp::now());
        if changed {
            record.spec.desired_status = DesiredStatus::Stopped;
            record.spec.desired_version += 1;
        }
        Ok(changed)
    })
    .await
}

pub async fn stop(
    api: &Api,
    ctx: &Ctx,
    req: StopTaskRequest,
) -> Result<StopTaskResponse, EcsError> {
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    let reason = req
        .reason
        .as_deref()
        .filter(|r| !r.is_empty())
        .unwrap_or("Task stopped by user");
    let task = stop_task(
        api,
        ctx,
        &cluster,
        &req.task,
        TaskStopCode::UserInitiated,
        reason,
    )
    .await?;
    Ok(StopTaskResponse { task: Some(task) })
}

pub async fn describe(
    api: &Api,
    ctx: &Ctx,
    req: DescribeTasksRequest,
) -> Result<DescribeTasksResponse, EcsError> {
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    if req.tasks.is_empty() || req.tasks.len() > 100 {
        return Err(EcsError::invalid_parameter(
            "tasks must list between 1 and 100 tasks.",
        ));
    }
    let with_tags = includes(req.include.as_ref(), &TaskField::Tags);
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for reference in &req.tasks {
        match find(api, ctx, &cluster, reference) {
            Some((_, v)) => {
                let mut task = v.value.task;
                if !with_tags {
                    task.tags = None;
                }
                tasks.push(task);
            }
            None => {
                let arn = match resource_id(reference, "task") {
                    Some(id) if id == reference => ctx.scope.task(&cluster, id),
                    _ => reference.clone(),
                };
                failures.push(failure(arn, "MISSING"));
            }
        }
    }
    Ok(DescribeTasksResponse {
        tasks: Some(tasks),
        failures: Some(failures),
    })
}

pub async fn list(
    api: &Api,
    ctx: &Ctx,
    req: ListTasksRequest,
) -> Result<ListTasksResponse, EcsError> {
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    if req.started_by.is_some()
        && (req.family.is_some() || req.service_name.is_some() || req.container_instance.is_some())
    {
        return Err(EcsError::invalid_parameter(
            "startedBy cannot be combined with the family, serviceName or containerInstance filters.",
        ));
    }
    let desired = req.desired_status.map_or(RUNNING, |d| d.as_str());
    let instance_id = req
        .container_instance
        .as_deref()
        .and_then(|c| resource_id(c, "container-instance"));
    let group = req.service_name.as_ref().map(|s| format!("service:{s}"));
    let items = api
        .cache
        .select_tasks(&cluster_tasks_prefix(ctx, &cluster), |key, t| {
            let wanted = t.desired_status.as_deref() == Some(desired)
                && instance_id.is_none_or(|id| {
                    t.instance_id.as_deref() == Some(id) && t.on_container_instance
                })
                && req.family.as_deref().is_none_or(|f| f == &*t.family)
                && req
                    .started_by
                    .as_deref()
                    .is_none_or(|s| t.started_by.as_deref() == Some(s))
                && group
                    .as_deref()
                    .is_none_or(|g| t.group.as_deref() == Some(g))
                && req.launch_type.is_none_or(|l| t.launch_type == Some(l));
            wanted.then(|| (key.to_string(), t.task_arn(key)))
        });
    let (arns, next_token) = paginate(items, req.max_results, req.next_token.as_deref(), 100, 100)?;
    Ok(ListTasksResponse {
        task_arns: Some(arns),
        next_token,
    })
}

/// Instance id → its unreleased tasks per task group.
pub fn groups_by_instance(
    api: &Api,
    ctx: &Ctx,
    cluster: &str,
) -> HashMap<Arc<str>, BTreeMap<Arc<str>, u32>> {
    let mut groups: HashMap<Arc<str>, BTreeMap<Arc<str>, u32>> = HashMap::new();
    let held = api
        .cache
        .select_tasks(&cluster_tasks_prefix(ctx, cluster), |_, task| {
            placement::holder(task)
        });
    for (instance, group) in held {
        *groups
            .entry(instance)
            .or_default()
            .entry(group)
            .or_default() += 1;
    }
    groups
}

/// Counts for a cluster: (running, pending).
pub fn cluster_counts(api: &Api, ctx: &Ctx, cluster: &str) -> (usize, usize) {
    let counts = api
        .cache
        .task_status_counts(&cluster_tasks_prefix(ctx, cluster));
    let of = |status: &str| counts.get(status).copied().unwrap_or(0);
    (of(RUNNING), of(PENDING))
}

/// Tasks not yet STOPPED in a cluster.
pub fn active_count(api: &Api, ctx: &Ctx, cluster: &str) -> usize {
    let counts = api
        .cache
        .task_status_counts(&cluster_tasks_prefix(ctx, cluster));
    counts
        .iter()
        .filter(|(status, _)| status.as_str() != STOPPED)
        .map(|(_, n)| n)
        .sum()
}

/// Counts for an instance: (desired RUNNING, PENDING).
pub fn instance_counts(api: &Api, instance_id: &str) -> (usize, usize) {
    let statuses = api.cache.select_instance_tasks(instance_id, |_, r| {
        Some((
            r.desired_status.as_deref() == Some(RUNNING),
            r.last_status.as_deref() == Some(PENDING),
        ))
    });
    let running = statuses.iter().filter(|(running, _)| *running).count();
    let pending = statuses.iter().filter(|(_, pending)| *pending).count();
    (running, pending)
}
