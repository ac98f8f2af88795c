//! Services: CreateService, DescribeServices, ListServices,
//! ListServicesByNamespace, UpdateService and DeleteService. The handlers
//! only record what the user asked for (and start a new deployment, with
//! its service revision, when the tasks must change); the service
//! controller (`crate::service_controller`) runs the scheduler and writes
//! the counts, deployments and events back onto the record.

use berth_core::launch::check_network_configuration;
use berth_core::service::{DeploymentStatus, ServiceState};
use berth_types::{
    CapacityProviderStrategyItem, Compatibility, CreateServiceRequest, CreateServiceResponse,
    DeleteServiceRequest, DeleteServiceResponse, DeploymentCircuitBreaker, DeploymentConfiguration,
    DeploymentController, DeploymentControllerType, DescribeServicesRequest,
    DescribeServicesResponse, EcsError, ErrorCode, LaunchType, ListServicesByNamespaceRequest,
    ListServicesByNamespaceResponse, ListServicesRequest, ListServicesResponse,
    NetworkConfiguration, PlacementConstraint, PlacementStrategy, PropagateTags,
    SchedulingStrategy, Service, ServiceField, Tag, TaskDefinitionStatus, Timestamp,
    UpdateServiceRequest, UpdateServiceResponse,
};

use super::{
    Api, Ctx, clusters, failure, includes, paginate, resource_id, service_deployments,
    task_definitions, tasks,
};
use crate::state::{ServiceRecord, Write, key, prefix};

pub const ACTIVE: &str = "ACTIVE";
pub const DRAINING: &str = "DRAINING";
pub const INACTIVE: &str = "INACTIVE";

pub fn service_key(ctx: &Ctx, cluster: &str, name: &str) -> String {
    key::<ServiceRecord>(&ctx.scope, &format!("{cluster}/{name}"))
}

pub fn cluster_services_prefix(ctx: &Ctx, cluster: &str) -> String {
    format!("{}{cluster}/", prefix::<ServiceRecord>(&ctx.scope))
}

/// Services of a cluster with `status`, without cloning them.
pub fn count_with_status(api: &Api, ctx: &Ctx, cluster: &str, status: &str) -> usize {
    api.cache
        .count::<ServiceRecord>(&cluster_services_prefix(ctx, cluster), |r| {
            r.service.status.as_deref() == Some(status)
        })
}

pub(super) fn not_found() -> EcsError {
    EcsError::new(ErrorCode::ServiceNotFoundException, "Service not found.")
}

fn not_active() -> EcsError {
    EcsError::new(
        ErrorCode::ServiceNotActiveException,
        "Service was not ACTIVE.",
    )
}

/// The service name in a reference that may be a name or an ARN.
pub(super) fn name_of(reference: &str) -> Option<&str> {
    resource_id(reference, "service").filter(|n| berth_types::arn::is_valid_name(n))
}

/// ECS's default for services: spread over availability zones, then over
/// instances.
pub fn default_strategy() -> Vec<PlacementStrategy> {
    vec![
        PlacementStrategy {
            r#type: Some(berth_types::PlacementStrategyType::Spread),
            field: Some("attribute:ecs.availability-zone".into()),
        },
        PlacementStrategy {
            r#type: Some(berth_types::PlacementStrategyType::Spread),
            field: Some("instanceId".into()),
        },
    ]
}

/// `deployments`, `events` and `currentServiceDeployment` on the wire,
/// from the scheduler's state.
pub fn refresh(service: &mut Service, state: &ServiceState) {
    service.current_service_deployment = service_deployments::current_arn(service, state);
    service.deployments = Some(
        state
            .wire_deployments()
            .into_iter()
            .map(|mut d| {
                d.launch_type = service.launch_type;
                d.capacity_provider_strategy = service.capacity_provider_strategy.clone();
                d.network_configuration = service.network_configuration.clone();
                d.platform_version = service.platform_version.clone();
                d.platform_family = service.platform_family.clone();
                d
            })
            .collect(),
    );
    service.events = Some(state.events.to_wire());
}

fn deployment_configuration(
    given: Option<DeploymentConfiguration>,
    strategy: SchedulingStrategy,
) -> Result<DeploymentConfiguration, EcsError> {
    let mut config = given.unwrap_or_default();
    let daemon = strategy == SchedulingStrategy::Daemon;
    let max = config
        .maximum_percent
        .unwrap_or(if daemon { 100 } else { 200 });
    let min = config
        .minimum_healthy_percent
        .unwrap_or(if daemon { 0 } else { 100 });
    if daemon && max != 100 {
        return Err(EcsError::invalid_parameter(
            "The maximumPercent parameter must be 100 for services using the DAEMON scheduling strategy.",
        ));
    }
    if !(0..=100).contains(&min) {
        return Err(EcsError::invalid_parameter(
            "minimumHealthyPercent must be between 0 and 100.",
        ));
    }
    if max < 100 && !(daemon && max == 100) {
        return Err(EcsError::invalid_parameter(
            "maximumPercent must be at least 100.",
        ));
    }
    if min > max {
        return Err(EcsError::invalid_parameter(
            "maximumPercent must be greater than or equal to minimumHealthyPercent.",
        ));
    }
    config.maximum_percent = Some(max);
    config.minimum_healthy_percent = Some(min);
    if config.deployment_circuit_breaker.is_none() {
        config.deployment_circuit_breaker = Some(DeploymentCircuitBreaker {
            enable: false,
            rollback: false,
            ..DeploymentCircuitBreaker::default()
        });
    }
    Ok(config)
}

/// The capacity a service launches on: its launch type, or a capacity
/// provider strategy (given, or the cluster's default); `Ok((None, None))`
/// never happens, a service always has one or the other.
fn service_capacity(
    api: &Api,
    ctx: &Ctx,
    cluster: &berth_types::Cluster,
    launch_type: Option<LaunchType>,
    strategy: Option<&[CapacityProviderStrategyItem]>,
) -> Result<
    (
        Option<LaunchType>,
        Option<Vec<CapacityProviderStrategyItem>>,
    ),
    EcsError,
> {
    match tasks::resolve_capacity(api, ctx, cluster, launch_type, strategy)? {
        Some(strategy) => Ok((None, Some(strategy))),
        None => Ok((Some(launch_type.unwrap_or(LaunchType::Ec2)), None)),
    }
}

/// Whether a service's tasks run on Fargate.
fn on_fargate(
    launch_type: Option<LaunchType>,
    strategy: Option<&[CapacityProviderStrategyItem]>,
) -> bool {
    launch_type == Some(LaunchType::Fargate) || strategy.is_some_and(|s| !s.is_empty())
}

/// Checks what a service's tasks would be launched with, as RunTask will:
/// the definition must run on the service's capacity, its network mode
/// decides whether a network configuration is required or refused, and a
/// Fargate service's platform version must exist.
fn check_launch(
    api: &Api,
    ctx: &Ctx,
    td_arn: &str,
    fargate: bool,
    network: Option<&NetworkConfiguration>,
    platform_version: Option<&str>,
) -> Result<(), EcsError> {
    let (_, found) = task_definitions::resolve(api, ctx, td_arn)
        .ok_or_else(|| EcsError::client("TaskDefinition not found."))?;
    let definition = found.value.task_definition;
    if fargate
        && !definition
            .compatibilities
            .iter()
            .flatten()
            .any(|c| *c == Compatibility::Fargate)
    {
        return Err(EcsError::invalid_parameter(
            "Task definition does not support launch_type FARGATE.",
        ));
    }
    check_network_configuration(
        berth_core::launch::network_mode(&definition),
        network,
        fargate,
    )?;
    if fargate {
        berth_core::capacity::platform_version(platform_version)?;
    } else if platform_version.is_some() {
        return Err(EcsError::invalid_parameter(
            "The platform version must be null when specifying an EC2 launch type.",
        ));
    }
    Ok(())
}

/// An ACTIVE task definition's ARN, for a service to launch.
fn task_definition_arn(api: &Api, ctx: &Ctx, reference: &str) -> Result<String, EcsError> {
    let (_, found) = task_definitions::resolve(api, ctx, reference)
        .ok_or_else(|| EcsError::client("TaskDefinition not found."))?;
    let definition = found.value.task_definition;
    if definition.status != Some(TaskDefinitionStatus::Active) {
        return Err(EcsError::client("TaskDefinition is inactive"));
    }
    Ok(definition.task_definition_arn.unwrap_or_default())
}

fn validate_placement(
    constraints: &[PlacementConstraint],
    strategies: &[PlacementStrategy],
) -> Result<(), EcsError> {
    use berth_scheduler::engine::{Constraint, Strategy};
    let invalid =
        |e: berth_scheduler::engine::RequestError| EcsError::invalid_parameter(e.to_string());
    if constraints.len() > 10 {
        return Err(EcsError::invalid_parameter(
            "A service can have at most 10 placement constraints.",
        ));
    }
    if strategies.len() > 5 {
        return Err(EcsError::invalid_parameter(
            "A service can have at most 5 placement strategies.",
        ));
    }
    for c in constraints {
        Constraint::from_api(
            c.r#type.map(|t| t.as_str()).unwrap_or_default(),
            c.expression.as_deref(),
        )
        .map_err(invalid)?;
    }
    for s in strategies {
        Strategy::from_api(
            s.r#type.map(|t| t.as_str()).unwrap_or_default(),
            s.field.as_deref(),
        )
        .map_err(invalid)?;
    }
    Ok(())
}

fn unsupported(what: &str) -> EcsError {
    EcsError::new(
        ErrorCode::UnsupportedFeatureException,
        format!("{what} are not supported by Berth services yet."),
    )
}

fn fingerprint(req: &CreateServiceRequest) -> String {
    let mut copy = req.clone();
    copy.client_token = None;
    serde_json::to_string(&copy).unwrap_or_default()
}

pub async fn create(
    api: &Api,
    ctx: &Ctx,
    req: CreateServiceRequest,
) -> Result<CreateServiceResponse, EcsError> {
    let cluster_record = clusters::active(api, ctx, req.cluster.as_deref())?;
    let cluster = cluster_record.cluster_name.clone().unwrap_or_default();
    let name = req.service_name.clone();
    if !berth_types::arn::is_valid_name(&name) {
        return Err(EcsError::invalid_parameter(
            "Service name must be 1-255 characters: letters, numbers, hyphens and underscores.",
        ));
    }
    let controller = req
        .deployment_controller
        .as_ref()
        .map_or(DeploymentControllerType::Ecs, |c| c.r#type);
    if controller != DeploymentControllerType::Ecs {
        return Err(EcsError::new(
            ErrorCode::UnsupportedFeatureException,
            format!(
                "The {} deployment controller is not supported by Berth yet.",
                controller.as_str()
            ),
        ));
    }
    if req.load_balancers.as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(unsupported("Load balancers"));
    }
    if req
        .service_registries
        .as_ref()
        .is_some_and(|l| !l.is_empty())
    {
        return Err(unsupported("Service registries"));
    }
    if req.service_connect_configuration.is_some() {
        return Err(unsupported("Service Connect configurations"));
    }
    if req
        .volume_configurations
        .as_ref()
        .is_some_and(|l| !l.is_empty())
    {
        return Err(unsupported("Volume configurations"));
    }
    if req.enable_execute_command == Some(true) {
        return Err(EcsError::new(
            ErrorCode::UnsupportedFeatureException,
            "ECS Exec is not supported by Berth.",
        ));
    }
    let strategy = req
        .scheduling_strategy
        .unwrap_or(SchedulingStrategy::Replica);
    let (launch_type, capacity_strategy) = service_capacity(
        api,
        ctx,
        &cluster_record,
        req.launch_type,
        req.capacity_provider_strategy.as_deref(),
    )?;
    let fargate = on_fargate(launch_type, capacity_strategy.as_deref());
    if fargate && strategy == SchedulingStrategy::Daemon {
        return Err(EcsError::invalid_parameter(
            "The daemon scheduling strategy does not support the FARGATE launch type.",
        ));
    }
    let desired = match strategy {
        SchedulingStrategy::Daemon => {
            if req.desired_count.is_some() {
                return Err(EcsError::invalid_parameter(
                    "The daemon scheduling strategy does not support a desired count for services.",
                ));
            }
            if req
                .placement_strategy
                .as_ref()
                .is_some_and(|s| !s.is_empty())
            {
                return Err(EcsError::invalid_parameter(
                    "The daemon scheduling strategy does not support placement strategies.",
                ));
            }
            0
        }
        SchedulingStrategy::Replica => match req.desired_count {
            None => {
                return Err(EcsError::invalid_parameter(
                    "The REPLICA scheduling strategy requires a desiredCount.",
                ));
            }
            Some(n) if n < 0 => {
                return Err(EcsError::invalid_parameter(
                    "desiredCount must be at least 0.",
                ));
            }
            Some(n) => n,
        },
    };
    if req.health_check_grace_period_seconds.is_some_and(|g| g < 0) {
        return Err(EcsError::invalid_parameter(
            "healthCheckGracePeriodSeconds must be at least 0.",
        ));
    }
    let Some(td_reference) = req.task_definition.as_deref() else {
        return Err(EcsError::invalid_parameter(
            "A task definition must be specified for services using the ECS deployment controller.",
        ));
    };
    let td_arn = task_definition_arn(api, ctx, td_reference)?;
    check_launch(
        api,
        ctx,
        &td_arn,
        fargate,
        req.network_configuration.as_ref(),
        req.platform_version.as_deref(),
    )?;
    let constraints = req.placement_constraints.clone().unwrap_or_default();
    let strategies = req.placement_strategy.clone().unwrap_or_default();
    validate_placement(&constraints, &strategies)?;
    let config = deployment_configuration(req.deployment_configuration.clone(), strategy)?;
    let tags: Vec<Tag> = req.tags.clone().unwrap_or_default();
    super::validate_tags(&tags)?;
    let fingerprint = fingerprint(&req);
    let key = service_key(ctx, &cluster, &name);
    let principal = ctx.principal();
    let record = api
        .writer
        .update::<ServiceRecord, ServiceRecord>(&key, |current| {
            if let Some(existing) = current
                && existing.service.status.as_deref() != Some(INACTIVE)
            {
                if existing.fingerprint == fingerprint
                    && existing.service.status.as_deref() == Some(ACTIVE)
                {
                    return Ok((None, existing));
                }
                return Err(EcsError::invalid_parameter(
                    "Creation of service was not idempotent.",
                ));
            }
            let now = Timestamp::now();
            let state = ServiceState::new(
                berth_core::service::deployment_id_at(now.millis()),
                td_arn.clone(),
                u32::try_from(desired).unwrap_or(0),
                now.millis(),
            );
            let mut service = Service {
                service_arn: Some(ctx.scope.service(&cluster, &name)),
                service_name: Some(name.clone()),
                cluster_arn: Some(ctx.scope.cluster(&cluster)),
                load_balancers: Some(Vec::new()),
                service_registries: Some(Vec::new()),
                status: Some(ACTIVE.into()),
                desired_count: desired,
                running_count: 0,
                pending_count: 0,
                launch_type,
                capacity_provider_strategy: capacity_strategy.clone(),
                network_configuration: req.network_configuration.clone(),
                platform_version: fargate.then(|| {
                    req.platform_version
                        .clone()
                        .unwrap_or_else(|| "LATEST".to_owned())
                }),
                platform_family: fargate.then(|| "Linux".to_owned()),
                task_definition: Some(td_arn.clone()),
                deployment_configuration: Some(config.clone()),
                created_at: Some(now),
                placement_constraints: Some(constraints.clone()),
                placement_strategy: Some(strategies.clone()),
                health_check_grace_period_seconds: req.health_check_grace_period_seconds,
                scheduling_strategy: Some(strategy),
                deployment_controller: Some(DeploymentController {
                    r#type: DeploymentControllerType::Ecs,
                }),
                tags: Some(tags.clone()),
                created_by: Some(principal.clone()),
                enable_ecs_managed_tags: req.enable_ecs_managed_tags.unwrap_or(false),
                propagate_tags: Some(req.propagate_tags.unwrap_or(PropagateTags::None)),
                enable_execute_command: false,
                role_arn: req.role.clone(),
                ..Service::default()
            };
            refresh(&mut service, &state);
            let mut record = ServiceRecord {
                service,
                state,
                fingerprint: fingerprint.clone(),
                revisions: Vec::new(),
            };
            service_deployments::capture_revision(api, ctx, &cluster, &mut record);
            Ok((Some(Write::Put(record.clone())), record))
        })
        .await?;
    Ok(CreateServiceResponse {
        service: Some(record.service),
    })
}

pub async fn describe(
    api: &Api,
    ctx: &Ctx,
    req: DescribeServicesRequest,
) -> Result<DescribeServicesResponse, EcsError> {
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    if req.services.is_empty() || req.services.len() > 10 {
        return Err(EcsError::invalid_parameter(
            "services must list between 1 and 10 services.",
        ));
    }
    let with_tags = includes(req.include.as_ref(), &ServiceField::Tags);
    let mut services = Vec::new();
    let mut failures = Vec::new();
    for reference in &req.services {
        let found = name_of(reference).and_then(|name| {
            api.cache
                .get::<ServiceRecord>(&service_key(ctx, &cluster, name))
        });
        match found {
            Some(v) => {
                let mut service = v.value.service;
                if !with_tags {
                    service.tags = None;
                }
                services.push(service);
            }
            None => {
                let arn = if reference.starts_with("arn:") {
                    reference.clone()
                } else {
                    ctx.scope.service(&cluster, reference)
                };
                failures.push(failure(arn, "MISSING"));
            }
        }
    }
    Ok(DescribeServicesResponse {
        services: Some(services),
        failures: Some(failures),
    })
}

pub async fn list(
    api: &Api,
    ctx: &Ctx,
    req: ListServicesRequest,
) -> Result<ListServicesResponse, EcsError> {
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    let items = api.cache.select::<ServiceRecord, _>(
        &cluster_services_prefix(ctx, &cluster),
        |key, record| {
            let s = &record.service;
            let keep = s.status.as_deref() == Some(ACTIVE)
                && req.launch_type.is_none_or(|l| s.launch_type == Some(l))
                && req
                    .scheduling_strategy
                    .is_none_or(|st| s.scheduling_strategy == Some(st));
            keep.then(|| (key.to_owned(), s.service_arn.clone().unwrap_or_default()))
        },
    );
    let (arns, next_token) = paginate(items, req.max_results, req.next_token.as_deref(), 10, 100)?;
    Ok(ListServicesResponse {
        service_arns: Some(arns),
        next_token,
    })
}

/// ListServicesByNamespace. Berth has no Cloud Map: a namespace exists
/// while an ACTIVE cluster's serviceConnectDefaults or an ACTIVE service's
/// serviceConnectConfiguration names it (by name or ARN, as given), and its
/// services are the ACTIVE ones of this region and account whose
/// serviceConnectConfiguration names it, across clusters.
pub async fn list_by_namespace(
    api: &Api,
    ctx: &Ctx,
    req: ListServicesByNamespaceRequest,
) -> Result<ListServicesByNamespaceResponse, EcsError> {
    let namespace = req.namespace.as_str();
    if namespace.trim().is_empty() {
        return Err(EcsError::invalid_parameter(
            "namespace must be a namespace name or ARN.",
        ));
    }
    // ECS shows a service's Service Connect configuration on its
    // deployments; the PRIMARY one's is the service's.
    let in_service = |s: &Service| {
        s.deployments.iter().flatten().any(|d| {
            d.status.as_deref() == Some(DeploymentStatus::Primary.as_str())
                && d.service_connect_configuration
                    .as_ref()
                    .and_then(|c| c.namespace.as_deref())
                    == Some(namespace)
        })
    };
    let items = api.cache.select::<ServiceRecord, _>(
        &prefix::<ServiceRecord>(&ctx.scope),
        |key, record| {
            let s = &record.service;
            (s.status.as_deref() == Some(ACTIVE) && in_service(s))
                .then(|| (key.to_owned(), s.service_arn.clone().unwrap_or_default()))
        },
    );
    let known = !items.is_empty()
        || api.cache.count::<berth_types::Cluster>(
            &prefix::<berth_types::Cluster>(&ctx.scope),
            |c| {
                c.status.as_deref() == Some(clusters::ACTIVE)
                    && c.service_connect_defaults
                        .as_ref()
                        .and_then(|d| d.namespace.as_deref())
                        == Some(namespace)
            },
        ) > 0;
    if !known {
        return Err(EcsError::new(
            ErrorCode::NamespaceNotFoundException,
            "Namespace not found.",
        ));
    }
    let (arns, next_token) = paginate(items, req.max_results, req.next_token.as_deref(), 10, 100)?;
    Ok(ListServicesByNamespaceResponse {
        service_arns: Some(arns),
        next_token,
    })
}

pub async fn update(
    api: &Api,
    ctx: &Ctx,
    req: UpdateServiceRequest,
) -> Result<UpdateServiceResponse, EcsError> {
    let cluster_record = clusters::active(api, ctx, req.cluster.as_deref())?;
    let cluster = cluster_record.cluster_name.clone().unwrap_or_default();
    let name = name_of(&req.service).ok_or_else(not_found)?.to_owned();
    let key = service_key(ctx, &cluster, &name);
    if req.load_balancers.as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(unsupported("Load balancers"));
    }
    if req
        .service_registries
        .as_ref()
        .is_some_and(|l| !l.is_empty())
    {
        return Err(unsupported("Service registries"));
    }
    if req.enable_execute_command == Some(true) {
        return Err(EcsError::new(
            ErrorCode::UnsupportedFeatureException,
            "ECS Exec is not supported by Berth.",
        ));
    }
    let new_strategy = match req.capacity_provider_strategy.as_deref() {
        Some(s) if !s.is_empty() => service_capacity(api, ctx, &cluster_record, None, Some(s))?.1,
        _ => None,
    };
    if req.desired_count.is_some_and(|n| n < 0) {
        return Err(EcsError::invalid_parameter(
            "desiredCount must be at least 0.",
        ));
    }
    if req.health_check_grace_period_seconds.is_some_and(|g| g < 0) {
        return Err(EcsError::invalid_parameter(
            "healthCheckGracePeriodSeconds must be at least 0.",
        ));
    }
    if let Some(c) = &req.deployment_controller
        && c.r#type != DeploymentControllerType::Ecs
    {
        return Err(EcsError::new(
            ErrorCode::UnsupportedFeatureException,
            "Changing the deployment controller is not supported by Berth.",
        ));
    }
    let td_arn = req
        .task_definition
        .as_deref()
        .map(|r| task_definition_arn(api, ctx, r))
        .transpose()?;
    if let Some(c) = &req.placement_constraints {
        validate_placement(c, &[])?;
    }
    if let Some(s) = &req.placement_strategy {
        validate_placement(&[], s)?;
    }
    let record = api
        .writer
        .update::<ServiceRecord, ServiceRecord>(&key, |current| {
            let mut record = current.ok_or_else(not_found)?;
            if record.service.status.as_deref() != Some(ACTIVE) {
                return Err(not_active());
            }
            let service = &mut record.service;
            let strategy = service
                .scheduling_strategy
                .unwrap_or(SchedulingStrategy::Replica);
            let daemon = strategy == SchedulingStrategy::Daemon;
            if let Some(n) = req.desired_count {
                if daemon {
                    return Err(EcsError::invalid_parameter(
                        "The daemon scheduling strategy does not support a desired count for services.",
                    ));
                }
                service.desired_count = n;
            }
            if let Some(given) = &req.deployment_configuration {
                let mut merged = service.deployment_configuration.clone().unwrap_or_default();
                if given.maximum_percent.is_some() {
                    merged.maximum_percent = given.maximum_percent;
                }
                if given.minimum_healthy_percent.is_some() {
                    merged.minimum_healthy_percent = given.minimum_healthy_percent;
                }
                if given.deployment_circuit_breaker.is_some() {
                    merged.deployment_circuit_breaker = given.deployment_circuit_breaker.clone();
                }
                if given.alarms.is_some() {
                    merged.alarms = given.alarms.clone();
                }
                service.deployment_configuration =
                    Some(deployment_configuration(Some(merged), strategy)?);
            }
            if let Some(g) = req.health_check_grace_period_seconds {
                service.health_check_grace_period_seconds = Some(g);
            }
            if let Some(p) = req.propagate_tags {
                service.propagate_tags = Some(p);
            }
            if let Some(m) = req.enable_ecs_managed_tags {
                service.enable_ecs_managed_tags = m;
            }
            let mut redeploy = req.force_new_deployment == Some(true);
            if let Some(arn) = &td_arn
                && service.task_definition.as_ref() != Some(arn)
            {
                service.task_definition = Some(arn.clone());
                redeploy = true;
            }
            if let Some(c) = &req.placement_constraints
                && service.placement_constraints.as_ref() != Some(c)
            {
                service.placement_constraints = Some(c.clone());
                redeploy = true;
            }
            if let Some(strategy) = &new_strategy {
                if service.capacity_provider_strategy.is_none() {
                    return Err(EcsError::invalid_parameter(
                        "Updating a service from a launch type to a capacity provider strategy is not supported; create a new service.",
                    ));
                }
                if service.capacity_provider_strategy.as_ref() != Some(strategy) {
                    service.capacity_provider_strategy = Some(strategy.clone());
                    redeploy = true;
                }
            }
            if let Some(n) = &req.network_configuration
                && service.network_configuration.as_ref() != Some(n)
            {
                service.network_configuration = Some(n.clone());
                redeploy = true;
            }
            if let Some(v) = &req.platform_version
                && service.platform_version.as_ref() != Some(v)
            {
                service.platform_version = Some(v.clone());
                redeploy = true;
            }
            if redeploy {
                check_launch(
                    api,
                    ctx,
                    service.task_definition.as_deref().unwrap_or_default(),
                    on_fargate(
                        service.launch_type,
                        service.capacity_provider_strategy.as_deref(),
                    ),
                    service.network_configuration.as_ref(),
                    service.platform_version.as_deref(),
                )?;
            }
            if let Some(s) = &req.placement_strategy
                && service.placement_strategy.as_ref() != Some(s)
            {
                if daemon && !s.is_empty() {
                    return Err(EcsError::invalid_parameter(
                        "The daemon scheduling strategy does not support placement strategies.",
                    ));
                }
                service.placement_strategy = Some(s.clone());
                redeploy = true;
            }
            if redeploy {
                let now = Timestamp::now().millis();
                let id = record.state.fresh_deployment_id(now);
                let desired = record
                    .state
                    .primary()
                    .map_or(0, |p| p.desired_count);
                let desired = if daemon {
                    desired
                } else {
                    u32::try_from(record.service.desired_count).unwrap_or(0)
                };
                let td = record.service.task_definition.clone().unwrap_or_default();
                record.state.begin_deployment(id, td, desired, now);
                service_deployments::capture_revision(api, ctx, &cluster, &mut record);
            } else if !daemon
                && let Some(p) = record.state.primary()
                && i64::from(p.desired_count) != i64::from(record.service.desired_count)
            {
                // The controller copies the new desiredCount into the
                // PRIMARY deployment on its next round; show it at once.
                let n = u32::try_from(record.service.desired_count).unwrap_or(0);
                if let Some(d) = record
                    .state
                    .deployments
                    .iter_mut()
                    .find(|d| d.status == DeploymentStatus::Primary)
                {
                    d.desired_count = n;
                    d.updated_at_millis = Timestamp::now().millis();
                }
            }
            let state = record.state.clone();
            refresh(&mut record.service, &state);
            Ok((Some(Write::Put(record.clone())), record))
        })
        .await?;
    Ok(UpdateServiceResponse {
        service: Some(record.service),
    })
}

pub async fn delete(
    api: &Api,
    ctx: &Ctx,
    req: DeleteServiceRequest,
) -> Result<DeleteServiceResponse, EcsError> {
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    let name = name_of(&req.service).ok_or_else(not_found)?.to_owned();
    let key = service_key(ctx, &cluster, &name);
    let force = req.force.unwrap_or(false);
    let record = api
        .writer
        .update::<ServiceRecord, ServiceRecord>(&key, |current| {
            let mut record = current.ok_or_else(not_found)?;
            if record.service.status.as_deref() != Some(ACTIVE) {
                // Deleting is idempotent.
                return Ok((None, record));
            }
            let replica = record.service.scheduling_strategy != Some(SchedulingStrategy::Daemon);
            if replica && record.service.desired_count > 0 && !force {
                return Err(EcsError::invalid_parameter(
                    "The service cannot be stopped while it is scaled above 0.",
                ));
            }
            record.service.status = Some(DRAINING.into());
            record.service.desired_count = 0;
            Ok((Some(Write::Put(record.clone())), record))
        })
        .await?;
    Ok(DeleteServiceResponse {
        service: Some(record.service),
    })
}

/// The tags of a service that is not INACTIVE (ListTagsForResource).
pub fn tags_of(api: &Api, ctx: &Ctx, cluster: &str, name: &str) -> Option<Vec<Tag>> {
    api.cache
        .peek::<ServiceRecord, _>(&service_key(ctx, cluster, name), |r| {
            (r.service.status.as_deref() != Some(INACTIVE))
                .then(|| r.service.tags.clone().unwrap_or_default())
        })
        .flatten()
}

/// Adds and removes tags (TagResource/UntagResource).
pub async fn retag(
    api: &Api,
    ctx: &Ctx,
    cluster: &str,
    name: &str,
    add: &[Tag],
    remove: &[String],
) -> Result<(), EcsError> {
    api.writer
        .update::<ServiceRecord, ()>(&service_key(ctx, cluster, name), |current| {
            let mut record = current
                .filter(|r| r.service.status.as_deref() != Some(INACTIVE))
                .ok_or_else(super::tags::not_found)?;
            let tags = record.service.tags.get_or_insert_with(Vec::new);
            tags.retain(|t| !t.key.as_ref().is_some_and(|k| remove.contains(k)));
            super::merge_tags(tags, add);
            super::validate_tags(tags)?;
            Ok((Some(Write::Put(record)), ()))
        })
        .await
}
