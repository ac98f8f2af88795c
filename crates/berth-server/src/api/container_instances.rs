//! Container instances: hosts registered to a cluster, their resources,
//! attributes and status (ACTIVE, DRAINING, INACTIVE once deregistered).

use berth_scheduler::cql;
use berth_types::{
    Attribute, ContainerInstance, ContainerInstanceField, ContainerInstanceHealthStatus,
    ContainerInstanceStatus, DeregisterContainerInstanceRequest,
    DeregisterContainerInstanceResponse, DescribeContainerInstancesRequest,
    DescribeContainerInstancesResponse, EcsError, ErrorCode, InstanceHealthCheckState,
    ListContainerInstancesRequest, ListContainerInstancesResponse,
    RegisterContainerInstanceRequest, RegisterContainerInstanceResponse, Resource, Tag, Timestamp,
    UpdateContainerInstancesStateRequest, UpdateContainerInstancesStateResponse,
};

use super::attributes::{MAX_CUSTOM_ATTRIBUTES, check_attribute, custom_attribute_count};
use super::{
    Api, Ctx, clusters, failure, includes, merge_tags, paginate, resource_id, tasks, validate_tags,
};
use crate::intern::Interner;
use crate::placement::snapshot_instance;
use crate::state::{Versioned, Write, key, prefix};

pub const ACTIVE: &str = "ACTIVE";
pub const DRAINING: &str = "DRAINING";
pub const INACTIVE: &str = "INACTIVE";

/// The store key of an instance: `instance/{cluster}/{id}`.
pub fn instance_key(ctx: &Ctx, cluster: &str, id: &str) -> String {
    key::<ContainerInstance>(&ctx.scope, &format!("{cluster}/{id}"))
}

/// Finds an instance of `cluster` by id or ARN.
pub fn find(
    api: &Api,
    ctx: &Ctx,
    cluster: &str,
    reference: &str,
) -> Option<(String, Versioned<ContainerInstance>)> {
    let id = resource_id(reference, "container-instance")?;
    let key = instance_key(ctx, cluster, id);
    api.cache.get::<ContainerInstance>(&key).map(|v| (key, v))
}

/// What an instance identity document tells about the host.
#[derive(Default)]
struct Identity {
    instance_id: Option<String>,
    availability_zone: Option<String>,
    instance_type: Option<String>,
    image_id: Option<String>,
}

fn parse_identity(document: Option<&str>) -> Result<Identity, EcsError> {
    let Some(document) = document.filter(|d| !d.trim().is_empty()) else {
        return Ok(Identity::default());
    };
    let value: serde_json::Value = serde_json::from_str(document).map_err(|_| {
        EcsError::invalid_parameter("instanceIdentityDocument is not a valid JSON document.")
    })?;
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    Ok(Identity {
        instance_id: field("instanceId"),
        availability_zone: field("availabilityZone"),
        instance_type: field("instanceType"),
        image_id: field("imageId"),
    })
}

fn validate_resources(resources: &[Resource]) -> Result<(), EcsError> {
    for r in resources {
        let name = r.name.as_deref().unwrap_or("");
        if name.is_empty() {
            return Err(EcsError::invalid_parameter("Each resource needs a name."));
        }
        let ty = r.r#type.as_deref().unwrap_or("");
        if !matches!(ty, "INTEGER" | "LONG" | "DOUBLE" | "STRINGSET") {
            return Err(EcsError::invalid_parameter(format!(
                "Resource {name} has an invalid type '{ty}'. Valid types are INTEGER, LONG, DOUBLE and STRINGSET."
            )));
        }
        if matches!(name, "CPU" | "MEMORY") && (ty != "INTEGER" || r.integer_value < 0) {
            return Err(EcsError::invalid_parameter(format!(
                "Resource {name} must be a non-negative INTEGER."
            )));
        }
        if matches!(name, "PORTS" | "PORTS_UDP") {
            if ty != "STRINGSET" {
                return Err(EcsError::invalid_parameter(format!(
                    "Resource {name} must be a STRINGSET of port numbers."
                )));
            }
            for port in r.string_set_value.iter().flatten() {
                if port.parse::<u16>().is_err() {
                    return Err(EcsError::invalid_parameter(format!(
                        "Resource {name} contains an invalid port '{port}'."
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Attributes ECS derives from the identity document.
fn identity_attributes(identity: &Identity) -> Vec<Attribute> {
    let attr = |name: &str, value: &Option<String>| {
        value.as_ref().map(|v| Attribute {
            name: name.to_owned(),
            value: Some(v.clone()),
            target_id: None,
            target_type: None,
        })
    };
    [
        attr("ecs.availability-zone", &identity.availability_zone),
        attr("ecs.instance-type", &identity.instance_type),
        attr("ecs.ami-id", &identity.image_id),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn merge_attributes(into: &mut Vec<Attribute>, new: impl IntoIterator<Item = Attribute>) {
    for a in new {
        into.retain(|x| x.name != a.name);
        into.push(Attribute {
            target_id: None,
            target_type: None,
            ..a
        });
    }
}

pub async fn register(
    api: &Api,
    ctx: &Ctx,
    req: RegisterContainerInstanceRequest,
) -> Result<RegisterContainerInstanceResponse, EcsError> {
    let cluster_name = clusters::for_agent(api, ctx, req.cluster.as_deref())?;
    let identity = parse_identity(req.instance_identity_document.as_deref())?;
    let resources = req.total_resources.clone().unwrap_or_default();
    validate_resources(&resources)?;
    let given_attributes = req.attributes.clone().unwrap_or_default();
    for a in &given_attributes {
        check_attribute(a)?;
    }
    let tags = req.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;

    // Re-registration keeps the instance's identity: either the agent names
    // its ARN, or the same EC2 instance registers again.
    let existing = match req.container_instance_arn.as_deref() {
        Some(arn) => {
            let (_, found) = find(api, ctx, &cluster_name, arn).ok_or_else(|| {
                EcsError::invalid_parameter(format!(
                    "Container instance {arn} is not registered in cluster {cluster_name}."
                ))
            })?;
            if found.value.status.as_deref() == Some(INACTIVE) {
                return Err(EcsError::client(format!(
                    "Container instance {arn} has been deregistered; register it as a new instance."
                )));
            }
            Some(found.value)
        }
        // Matched in place: cloning every instance made each registration
        // slower as the fleet grew.
        None => identity.instance_id.as_ref().and_then(|instance_id| {
            api.cache
                .select::<ContainerInstance, _>(&instance_prefix(ctx, &cluster_name), |_, ci| {
                    (ci.ec2_instance_id.as_ref() == Some(instance_id)
                        && ci.status.as_deref() != Some(INACTIVE))
                    .then(|| ci.clone())
                })
                .into_iter()
                .next()
        }),
    };
    let id = existing
        .as_ref()
        .and_then(|ci| ci.container_instance_arn.as_deref())
        .and_then(|arn| resource_id(arn, "container-instance"))
        .map(str::to_owned)
        .unwrap_or_else(berth_types::arn::new_id);

    let mut attributes = existing
        .as_ref()
        .and_then(|ci| ci.attributes.clone())
        .unwrap_or_default();
    merge_attributes(&mut attributes, identity_attributes(&identity));
    merge_attributes(&mut attributes, given_attributes);
    if custom_attribute_count(&attributes) > MAX_CUSTOM_ATTRIBUTES {
        return Err(EcsError::new(
            ErrorCode::AttributeLimitExceededException,
            format!(
                "A container instance can have at most {MAX_CUSTOM_ATTRIBUTES} custom attributes."
            ),
        ));
    }
    let mut all_tags = existing
        .as_ref()
        .and_then(|ci| ci.tags.clone())
        .unwrap_or_default();
    merge_tags(&mut all_tags, &tags);

    let instance = ContainerInstance {
        container_instance_arn: Some(ctx.scope.container_instance(&cluster_name, &id)),
        ec2_instance_id: identity
            .instance_id
            .clone()
            .or_else(|| existing.as_ref().and_then(|e| e.ec2_instance_id.clone())),
        version: existing.as_ref().map_or(1, |e| e.version + 1),
        version_info: req
            .version_info
            .clone()
            .or_else(|| existing.as_ref().and_then(|e| e.version_info.clone())),
        remaining_resources: Some(resources.clone()),
        registered_resources: Some(resources),
        status: Some(ACTIVE.into()),
        agent_connected: existing.as_ref().is_some_and(|e| e.agent_connected),
        running_tasks_count: 0,
        pending_tasks_count: 0,
        attributes: Some(attributes),
        registered_at: Some(
            existing
                .as_ref()
                .and_then(|e| e.registered_at)
                .unwrap_or_else(Timestamp::now),
        ),
        attachments: Some(Vec::new()),
        tags: Some(all_tags),
        ..ContainerInstance::default()
    };
    let key = instance_key(ctx, &cluster_name, &id);
    let stored = api
        .writer
        .update::<ContainerInstance, ContainerInstance>(&key, |_| {
            Ok((Some(Write::Put(instance.clone())), instance.clone()))
        })
        .await?;
    Ok(RegisterContainerInstanceResponse {
        container_instance: Some(stored),
    })
}

fn instance_prefix(ctx: &Ctx, cluster: &str) -> String {
    format!("{}{cluster}/", prefix::<ContainerInstance>(&ctx.scope))
}

/// Read-modify-write of one instance of a cluster.
pub async fn modify(
    api: &Api,
    ctx: &Ctx,
    cluster: &str,
    reference: &str,
    mut change: impl FnMut(&mut ContainerInstance) -> Result<(), EcsError>,
) -> Result<ContainerInstance, EcsError> {
    let Some((key, _)) = find(api, ctx, cluster, reference) else {
        return Err(EcsError::invalid_parameter(format!(
            "The referenced container instance {reference} was not found in cluster {cluster}."
        )));
    };
    api.writer
        .update::<ContainerInstance, ContainerInstance>(&key, |current| {
            let mut ci = current.ok_or_else(|| {
                EcsError::invalid_parameter(format!(
                    "The referenced container instance {reference} was not found."
                ))
            })?;
            change(&mut ci)?;
            ci.version += 1;
            Ok((Some(Write::Put(ci.clone())), ci))
        })
        .await
}

pub async fn deregister(
    api: &Api,
    ctx: &Ctx,
    req: DeregisterContainerInstanceRequest,
) -> Result<DeregisterContainerInstanceResponse, EcsError> {
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    let force = req.force.unwrap_or(false);
    let busy = find(api, ctx, &cluster, &req.container_instance).is_some_and(|(_, v)| {
        let ci = with_counts(api, v.value);
        ci.running_tasks_count + ci.pending_tasks_count > 0
    });
    let instance = modify(api, ctx, &cluster, &req.container_instance, |ci| {
        if ci.status.as_deref() == Some(INACTIVE) {
            return Err(EcsError::invalid_parameter(format!(
                "The referenced container instance {} is already deregistered.",
                req.container_instance
            )));
        }
        if !force && busy {
            return Err(EcsError::invalid_parameter(
                "The container instance has tasks running. Stop them first, or deregister with force to orphan them.",
            ));
        }
        ci.status = Some(INACTIVE.into());
        ci.agent_connected = false;
        Ok(())
    })
    .await?;
    Ok(DeregisterContainerInstanceResponse {
        container_instance: Some(with_counts(api, instance)),
    })
}

/// Fills in the task counts, derived from the tasks so they are always exact.
pub fn with_counts(api: &Api, mut ci: ContainerInstance) -> ContainerInstance {
    if let Some(id) = ci
        .container_instance_arn
        .as_deref()
        .and_then(|a| resource_id(a, "container-instance"))
    {
        let (running, pending) = tasks::instance_counts(api, id);
        ci.running_tasks_count = i32::try_from(running).unwrap_or(i32::MAX);
        ci.pending_tasks_count = i32::try_from(pending).unwrap_or(i32::MAX);
    }
    ci
}

fn present(
    mut ci: ContainerInstance,
    include: Option<&Vec<ContainerInstanceField>>,
) -> ContainerInstance {
    if !includes(include, &ContainerInstanceField::Tags) {
        ci.tags = None;
    }
    if includes(include, &ContainerInstanceField::ContainerInstanceHealth) {
        let overall = if ci.agent_connected {
            InstanceHealthCheckState::Ok
        } else {
            InstanceHealthCheckState::InsufficientData
        };
        ci.health_status = Some(ContainerInstanceHealthStatus {
            overall_status: Some(overall),
            details: Some(Vec::new()),
        });
    }
    ci
}

pub async fn describe(
    api: &Api,
    ctx: &Ctx,
    req: DescribeContainerInstancesRequest,
) -> Result<DescribeContainerInstancesResponse, EcsError> {
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    if req.container_instances.is_empty() || req.container_instances.len() > 100 {
        return Err(EcsError::invalid_parameter(
            "containerInstances must list between 1 and 100 container instances.",
        ));
    }
    let mut instances = Vec::new();
    let mut failures = Vec::new();
    for reference in &req.container_instances {
        match find(api, ctx, &cluster, reference) {
            Some((_, v)) => {
                instances.push(present(with_counts(api, v.value), req.include.as_ref()))
            }
            None => {
                let arn = match resource_id(reference, "container-instance") {
                    Some(id) if id == reference => ctx.scope.container_instance(&cluster, id),
                    _ => reference.clone(),
                };
                failures.push(failure(arn, "MISSING"));
            }
        }
    }
    Ok(DescribeContainerInstancesResponse {
        container_instances: Some(instances),
        failures: Some(failures),
    })
}

pub async fn list(
    api: &Api,
    ctx: &Ctx,
    req: ListContainerInstancesRequest,
) -> Result<ListContainerInstancesResponse, EcsError> {
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    let filter = match req.filter.as_deref().map(str::trim) {
        Some(text) if !text.is_empty() => Some(cql::parse(text).map_err(|e| {
            EcsError::invalid_parameter(format!("Invalid filter expression '{text}': {e}"))
        })?),
        _ => None,
    };
    // `task:group` looks at the tasks each instance holds.
    let groups = match &filter {
        Some(_) => tasks::groups_by_instance(api, ctx, &cluster),
        None => Default::default(),
    };
    let prefix = instance_prefix(ctx, &cluster);
    let wanted = req.status.map(ContainerInstanceStatus::as_str);
    let items = api
        .cache
        .list::<ContainerInstance>(&prefix)
        .into_iter()
        .filter(|(_, v)| {
            let status = v.value.status.as_deref().unwrap_or("");
            match wanted {
                Some(w) => status == w,
                None => status != INACTIVE,
            }
        })
        .filter(|(k, v)| {
            filter.as_ref().is_none_or(|expr| {
                let id = &k[prefix.len()..];
                expr.eval(&snapshot_instance(
                    id,
                    &v.value,
                    groups.get(id),
                    &mut Interner::default(),
                ))
            })
        })
        .map(|(k, v)| (k, v.value.container_instance_arn.unwrap_or_default()))
        .collect();
    let (arns, next_token) = paginate(items, req.max_results, req.next_token.as_deref(), 100, 100)?;
    Ok(ListContainerInstancesResponse {
        container_instance_arns: Some(arns),
        next_token,
    })
}

pub async fn update_state(
    api: &Api,
    ctx: &Ctx,
    req: UpdateContainerInstancesStateRequest,
) -> Result<UpdateContainerInstancesStateResponse, EcsError> {
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    let target = match req.status {
        ContainerInstanceStatus::Active => ACTIVE,
        ContainerInstanceStatus::Draining => DRAINING,
        other => {
            return Err(EcsError::invalid_parameter(format!(
                "Container instances can only be set to ACTIVE or DRAINING, not {other}."
            )));
        }
    };
    if req.container_instances.is_empty() || req.container_instances.len() > 10 {
        return Err(EcsError::invalid_parameter(
            "containerInstances must list between 1 and 10 container instances.",
        ));
    }
    let mut instances = Vec::new();
    let mut failures = Vec::new();
    for reference in &req.container_instances {
        let Some((_, current)) = find(api, ctx, &cluster, reference) else {
            failures.push(failure(
                ctx.scope.container_instance(
                    &cluster,
                    resource_id(reference, "container-instance").unwrap_or(reference),
                ),
                "MISSING",
            ));
            continue;
        };
        let status = current.value.status.clone().unwrap_or_default();
        if status != ACTIVE && status != DRAINING {
            failures.push(failure(
                current.value.container_instance_arn.unwrap_or_default(),
                &status,
            ));
            continue;
        }
        if status == target {
            instances.push(with_counts(api, current.value));
            continue;
        }
        let updated = modify(api, ctx, &cluster, reference, |ci| {
            ci.status = Some(target.into());
            Ok(())
        })
        .await?;
        instances.push(with_counts(api, updated));
    }
    Ok(UpdateContainerInstancesStateResponse {
        container_instances: Some(instances),
        failures: Some(failures),
    })
}

/// Tagging entry points for TagResource/UntagResource; `arn` names the
/// cluster inside it (`container-instance/{cluster}/{id}`).
pub async fn retag(
    api: &Api,
    ctx: &Ctx,
    cluster: &str,
    id: &str,
    add: &[Tag],
    remove: &[String],
) -> Result<(), EcsError> {
    modify(api, ctx, cluster, id, |ci| {
        let tags = ci.tags.get_or_insert_with(Vec::new);
        tags.retain(|t| !t.key.as_ref().is_some_and(|k| remove.contains(k)));
        merge_tags(tags, add);
        validate_tags(tags)
    })
    .await
    .map(|_| ())
}
