//! Clusters: create, describe (with counters and statistics), list, update
//! settings and capacity providers, delete (only when empty; INACTIVE after).

use berth_types::arn::Arn;
use berth_types::{
    Cluster, ClusterField, ClusterServiceConnectDefaults, ClusterServiceConnectDefaultsRequest,
    ClusterSetting, ContainerInstance, CreateClusterRequest, CreateClusterResponse,
    DeleteClusterRequest, DeleteClusterResponse, DescribeClustersRequest, DescribeClustersResponse,
    EcsError, ErrorCode, KeyValuePair, LaunchType, ListClustersRequest, ListClustersResponse,
    PutClusterCapacityProvidersRequest, PutClusterCapacityProvidersResponse, Tag,
    UpdateClusterRequest, UpdateClusterResponse, UpdateClusterSettingsRequest,
    UpdateClusterSettingsResponse,
};

use super::capacity_providers::{self, is_fargate};
use super::{
    Api, Ctx, cluster_name, failure, includes, merge_tags, paginate, services, tasks, validate_tags,
};
use berth_core::lifecycle::{PENDING, RUNNING};

use crate::state::{ServiceRecord, Write, key, prefix};

pub const ACTIVE: &str = "ACTIVE";
pub const INACTIVE: &str = "INACTIVE";

/// An ACTIVE cluster by name or ARN, or `ClusterNotFoundException`.
pub fn active(api: &Api, ctx: &Ctx, reference: Option<&str>) -> Result<Cluster, EcsError> {
    let name = cluster_name(ctx, reference)?;
    api.cache
        .get::<Cluster>(&key::<Cluster>(&ctx.scope, &name))
        .map(|v| v.value)
        .filter(|c| c.status.as_deref() == Some(ACTIVE))
        .ok_or_else(EcsError::cluster_not_found)
}

/// The cluster an agent joins: a user cluster that is ACTIVE, or the
/// platform's Fargate pool, which exists without a cluster record (no user
/// lists, describes or deletes it).
pub fn for_agent(api: &Api, ctx: &Ctx, reference: Option<&str>) -> Result<String, EcsError> {
    let pool = berth_types::agent::FARGATE_POOL_CLUSTER;
    let pool_arn = ctx.scope.cluster(pool);
    match reference {
        Some(r) if r == pool || r == pool_arn => Ok(pool.to_owned()),
        _ => Ok(active(api, ctx, reference)?
            .cluster_name
            .unwrap_or_default()),
    }
}

pub async fn create(
    api: &Api,
    ctx: &Ctx,
    req: CreateClusterRequest,
) -> Result<CreateClusterResponse, EcsError> {
    let name = req.cluster_name.clone().unwrap_or_else(|| "default".into());
    if !berth_types::arn::is_valid_name(&name) {
        return Err(EcsError::invalid_parameter(
            "Cluster name must be 1-255 characters: letters, numbers, hyphens and underscores.",
        ));
    }
    let tags = req.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    let providers = req.capacity_providers.clone().unwrap_or_default();
    let strategy = req
        .default_capacity_provider_strategy
        .clone()
        .unwrap_or_default();
    capacity_providers::validate_association(api, ctx, &name, &providers, &strategy)?;
    let settings = normalize_settings(req.settings.clone())?;
    let cluster = Cluster {
        cluster_arn: Some(ctx.scope.cluster(&name)),
        cluster_name: Some(name.clone()),
        status: Some(ACTIVE.into()),
        settings: Some(settings),
        configuration: req.configuration.clone(),
        capacity_providers: Some(providers.clone()),
        default_capacity_provider_strategy: Some(strategy),
        service_connect_defaults: req.service_connect_defaults.as_ref().map(connect_defaults),
        tags: Some(tags),
        attachments: Some(Vec::new()),
        ..Cluster::default()
    };
    let key = key::<Cluster>(&ctx.scope, &name);
    let created = api
        .writer
        .update::<Cluster, Cluster>(&key, |current| match current {
            // CreateCluster on an existing cluster is idempotent: it answers
            // with the cluster as it is.
            Some(existing) if existing.status.as_deref() == Some(ACTIVE) => Ok((None, existing)),
            _ => Ok((Some(Write::Put(cluster.clone())), cluster.clone())),
        })
        .await?;
    Ok(CreateClusterResponse {
        cluster: Some(with_counters(api, ctx, created)),
    })
}

fn connect_defaults(req: &ClusterServiceConnectDefaultsRequest) -> ClusterServiceConnectDefaults {
    ClusterServiceConnectDefaults {
        namespace: Some(req.namespace.clone()),
    }
}

/// Fills in `containerInsights` like ECS does and rejects unknown values.
fn normalize_settings(
    settings: Option<Vec<ClusterSetting>>,
) -> Result<Vec<ClusterSetting>, EcsError> {
    let settings = settings.unwrap_or_default();
    for s in &settings {
        match s.value.as_deref() {
            Some("enabled" | "disabled" | "enhanced") => {}
            other => {
                return Err(EcsError::invalid_parameter(format!(
                    "Invalid value for cluster setting containerInsights: {}. Valid values are enabled, disabled and enhanced.",
                    other.unwrap_or("(none)")
                )));
            }
        }
        if s.name.is_none() {
            return Err(EcsError::invalid_parameter(
                "A cluster setting needs a name.",
            ));
        }
    }
    Ok(settings)
}

pub async fn describe(
    api: &Api,
    ctx: &Ctx,
    req: DescribeClustersRequest,
) -> Result<DescribeClustersResponse, EcsError> {
    let references = req
        .clusters
        .clone()
        .unwrap_or_else(|| vec!["default".into()]);
    if references.len() > 100 {
        return Err(EcsError::invalid_parameter(
            "At most 100 clusters can be described at once.",
        ));
    }
    let include = req.include.as_ref();
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for reference in &references {
        let found = cluster_name(ctx, Some(reference)).ok().and_then(|name| {
            api.cache
                .get::<Cluster>(&key::<Cluster>(&ctx.scope, &name))
                .map(|v| v.value)
        });
        let Some(cluster) = found else {
            let arn = if Arn::parse(reference).is_some() {
                reference.clone()
            } else {
                ctx.scope.cluster(reference)
            };
            failures.push(failure(arn, "MISSING"));
            continue;
        };
        let mut cluster = with_counters(api, ctx, cluster);
        if includes(include, &ClusterField::Statistics) {
            cluster.statistics = Some(statistics(api, ctx, &cluster));
        }
        if !includes(include, &ClusterField::Tags) {
            cluster.tags = None;
        }
        if !includes(include, &ClusterField::Settings) {
            cluster.settings = None;
        }
        if !includes(include, &ClusterField::Configurations) {
            cluster.configuration = None;
        }
        if includes(include, &ClusterField::Attachments) {
            cluster.attachments_status = Some("UPDATE_COMPLETE".into());
        } else {
            cluster.attachments = None;
        }
        clusters.push(cluster);
    }
    Ok(DescribeClustersResponse {
        clusters: Some(clusters),
        failures: Some(failures),
    })
}

/// The live counters ECS reports on a cluster, derived rather than stored
/// so they can never drift.
fn with_counters(api: &Api, ctx: &Ctx, mut cluster: Cluster) -> Cluster {
    let name = cluster.cluster_name.clone().unwrap_or_default();
    let instances = prefix::<ContainerInstance>(&ctx.scope) + &name + "/";
    let registered = api.cache.count::<ContainerInstance>(&instances, |ci| {
        matches!(ci.status.as_deref(), Some("ACTIVE" | "DRAINING"))
    });
    cluster.registered_container_instances_count = i32::try_from(registered).unwrap_or(i32::MAX);
    let (running, pending) = tasks::cluster_counts(api, ctx, &name);
    cluster.running_tasks_count = i32::try_from(running).unwrap_or(i32::MAX);
    cluster.pending_tasks_count = i32::try_from(pending).unwrap_or(i32::MAX);
    let active = services::count_with_status(api, ctx, &name, services::ACTIVE);
    cluster.active_services_count = i32::try_from(active).unwrap_or(i32::MAX);
    cluster
}

/// The per-launch-type counters of `include=STATISTICS`: the Fargate ones
/// are counted over the cluster's tasks and services (only when asked for),
/// the EC2 ones are the rest.
fn statistics(api: &Api, ctx: &Ctx, cluster: &Cluster) -> Vec<KeyValuePair> {
    let name = cluster.cluster_name.clone().unwrap_or_default();
    let fargate = Some(LaunchType::Fargate);
    let fargate_tasks = |status: &str| {
        api.cache
            .select_tasks(&tasks::cluster_tasks_prefix(ctx, &name), |_, t| {
                (t.launch_type == fargate && t.last_status.as_deref() == Some(status)).then_some(())
            })
            .len()
    };
    let fargate_services = |status: &str| {
        api.cache
            .count::<ServiceRecord>(&services::cluster_services_prefix(ctx, &name), |r| {
                r.service.status.as_deref() == Some(status)
                    && (r.service.launch_type == fargate
                        || r.service.capacity_provider_strategy.is_some())
            })
    };
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let running_fargate = count(fargate_tasks(RUNNING));
    let pending_fargate = count(fargate_tasks(PENDING));
    let active_fargate = count(fargate_services(services::ACTIVE));
    let draining_fargate = count(fargate_services(services::DRAINING));
    let draining = count(services::count_with_status(
        api,
        ctx,
        &name,
        services::DRAINING,
    ));
    let stat = |name: &str, value: i32| KeyValuePair {
        name: Some(name.into()),
        value: Some(value.to_string()),
    };
    vec![
        stat(
            "runningEC2TasksCount",
            cluster.running_tasks_count - running_fargate,
        ),
        stat("runningFargateTasksCount", running_fargate),
        stat(
            "pendingEC2TasksCount",
            cluster.pending_tasks_count - pending_fargate,
        ),
        stat("pendingFargateTasksCount", pending_fargate),
        stat(
            "activeEC2ServiceCount",
            cluster.active_services_count - active_fargate,
        ),
        stat("activeFargateServiceCount", active_fargate),
        stat("drainingEC2ServiceCount", draining - draining_fargate),
        stat("drainingFargateServiceCount", draining_fargate),
    ]
}

pub async fn list(
    api: &Api,
    ctx: &Ctx,
    req: ListClustersRequest,
) -> Result<ListClustersResponse, EcsError> {
    let items = api
        .cache
        .list::<Cluster>(&prefix::<Cluster>(&ctx.scope))
        .into_iter()
        .filter(|(_, c)| c.value.status.as_deref() == Some(ACTIVE))
        .map(|(k, c)| (k, c.value.cluster_arn.unwrap_or_default()))
        .collect();
    let (arns, next_token) = paginate(items, req.max_results, req.next_token.as_deref(), 100, 100)?;
    Ok(ListClustersResponse {
        cluster_arns: Some(arns),
        next_token,
    })
}

/// Read-modify-write of an ACTIVE cluster.
async fn modify(
    api: &Api,
    ctx: &Ctx,
    reference: &str,
    mut change: impl FnMut(&mut Cluster) -> Result<(), EcsError>,
) -> Result<Cluster, EcsError> {
    let name = cluster_name(ctx, Some(reference))?;
    let updated = api
        .writer
        .update::<Cluster, Cluster>(&key::<Cluster>(&ctx.scope, &name), |current| {
            let mut cluster = current
                .filter(|c| c.status.as_deref() == Some(ACTIVE))
                .ok_or_else(EcsError::cluster_not_found)?;
            change(&mut cluster)?;
            Ok((Some(Write::Put(cluster.clone())), cluster))
        })
        .await?;
    Ok(with_counters(api, ctx, updated))
}

pub async fn update(
    api: &Api,
    ctx: &Ctx,
    req: UpdateClusterRequest,
) -> Result<UpdateClusterResponse, EcsError> {
    let settings = req
        .settings
        .clone()
        .map(|s| normalize_settings(Some(s)))
        .transpose()?;
    let cluster = modify(api, ctx, &req.cluster, |c| {
        if let Some(settings) = &settings {
            merge_settings(c, settings);
        }
        if let Some(configuration) = &req.configuration {
            c.configuration = Some(configuration.clone());
        }
        if let Some(defaults) = &req.service_connect_defaults {
            c.service_connect_defaults = Some(connect_defaults(defaults));
        }
        Ok(())
    })
    .await?;
    Ok(UpdateClusterResponse {
        cluster: Some(cluster),
    })
}

fn merge_settings(cluster: &mut Cluster, settings: &[ClusterSetting]) {
    let current = cluster.settings.get_or_insert_with(Vec::new);
    for s in settings {
        current.retain(|c| c.name != s.name);
        current.push(s.clone());
    }
}

pub async fn update_settings(
    api: &Api,
    ctx: &Ctx,
    req: UpdateClusterSettingsRequest,
) -> Result<UpdateClusterSettingsResponse, EcsError> {
    let settings = normalize_settings(Some(req.settings.clone()))?;
    let cluster = modify(api, ctx, &req.cluster, |c| {
        merge_settings(c, &settings);
        Ok(())
    })
    .await?;
    Ok(UpdateClusterSettingsResponse {
        cluster: Some(cluster),
    })
}

pub async fn put_capacity_providers(
    api: &Api,
    ctx: &Ctx,
    req: PutClusterCapacityProvidersRequest,
) -> Result<PutClusterCapacityProvidersResponse, EcsError> {
    let name = active(api, ctx, Some(&req.cluster))?
        .cluster_name
        .unwrap_or_default();
    capacity_providers::validate_association(
        api,
        ctx,
        &name,
        &req.capacity_providers,
        &req.default_capacity_provider_strategy,
    )?;
    let cluster = modify(api, ctx, &req.cluster, |c| {
        c.capacity_providers = Some(req.capacity_providers.clone());
        c.default_capacity_provider_strategy = Some(req.default_capacity_provider_strategy.clone());
        Ok(())
    })
    .await?;
    Ok(PutClusterCapacityProvidersResponse {
        cluster: Some(cluster),
    })
}

pub async fn delete(
    api: &Api,
    ctx: &Ctx,
    req: DeleteClusterRequest,
) -> Result<DeleteClusterResponse, EcsError> {
    let name = cluster_name(ctx, Some(&req.cluster))?;
    let key = key::<Cluster>(&ctx.scope, &name);
    let existing = api
        .cache
        .get::<Cluster>(&key)
        .map(|v| v.value)
        .ok_or_else(EcsError::cluster_not_found)?;
    if existing.status.as_deref() == Some(INACTIVE) {
        // DeleteCluster is idempotent.
        return Ok(DeleteClusterResponse {
            cluster: Some(with_counters(api, ctx, existing)),
        });
    }
    let counted = with_counters(api, ctx, existing.clone());
    if counted.registered_container_instances_count > 0 {
        return Err(EcsError::new(
            ErrorCode::ClusterContainsContainerInstancesException,
            "The Cluster cannot be deleted while Container Instances are active or draining.",
        ));
    }
    if counted.active_services_count > 0 {
        return Err(EcsError::new(
            ErrorCode::ClusterContainsServicesException,
            "The Cluster cannot be deleted while Services are active.",
        ));
    }
    if tasks::active_count(api, ctx, &name) > 0 {
        return Err(EcsError::new(
            ErrorCode::ClusterContainsTasksException,
            "The Cluster cannot be deleted while Tasks are active.",
        ));
    }
    let custom_providers: Vec<String> = existing
        .capacity_providers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !is_fargate(p))
        .collect();
    if !custom_providers.is_empty() {
        return Err(EcsError::new(
            ErrorCode::ClusterContainsCapacityProviderException,
            format!(
                "The cluster cannot be deleted while capacity providers are associated with it: {}. Remove them with PutClusterCapacityProviders first.",
                custom_providers.join(", ")
            ),
        ));
    }
    let deleted = api
        .writer
        .update::<Cluster, Cluster>(&key, |current| {
            let mut cluster = current.ok_or_else(EcsError::cluster_not_found)?;
            cluster.status = Some(INACTIVE.into());
            Ok((Some(Write::Put(cluster.clone())), cluster))
        })
        .await?;
    Ok(DeleteClusterResponse {
        cluster: Some(with_counters(api, ctx, deleted)),
    })
}

/// Adds and removes tags (TagResource/UntagResource).
pub async fn retag(
    api: &Api,
    ctx: &Ctx,
    name: &str,
    add: &[Tag],
    remove: &[String],
) -> Result<(), EcsError> {
    modify(api, ctx, name, |c| {
        let tags = c.tags.get_or_insert_with(Vec::new);
        tags.retain(|t| !t.key.as_ref().is_some_and(|k| remove.contains(k)));
        merge_tags(tags, add);
        validate_tags(tags)
    })
    .await
    .map(|_| ())
}
