//! Attributes on container instances: custom name/value pairs used by
//! placement constraints, next to the built-in ones the agent reports.

use berth_types::{
    Attribute, ContainerInstance, DeleteAttributesRequest, DeleteAttributesResponse, EcsError,
    ErrorCode, ListAttributesRequest, ListAttributesResponse, PutAttributesRequest,
    PutAttributesResponse, TargetType,
};

use berth_store::Txn;

use super::{Api, Ctx, clusters, container_instances, paginate};
use crate::state::{MAX_CAS_ATTEMPTS, contention, encode, guard, prefix};

pub const MAX_CUSTOM_ATTRIBUTES: usize = 10;

/// Built-in attributes (reported by agents, derived by ECS) do not count
/// against the custom attribute limit.
fn is_built_in(name: &str) -> bool {
    name.starts_with("ecs.") || name.starts_with("com.amazonaws.ecs.")
}

pub fn custom_attribute_count(attributes: &[Attribute]) -> usize {
    attributes.iter().filter(|a| !is_built_in(&a.name)).count()
}

/// Names are 1–128 of `[A-Za-z0-9-_/.]`; values 1–128 of the same plus `@`, `:` and space.
pub fn check_attribute(a: &Attribute) -> Result<(), EcsError> {
    let name_ok = !a.name.is_empty()
        && a.name.len() <= 128
        && a.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_/.".contains(&b));
    if !name_ok {
        return Err(EcsError::invalid_parameter(format!(
            "Attribute name '{}' is invalid: use 1-128 letters, numbers, hyphens, underscores, slashes and periods.",
            a.name
        )));
    }
    if let Some(value) = &a.value {
        let value_ok = !value.is_empty()
            && value.len() <= 128
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_/.@: ".contains(&b));
        if !value_ok {
            return Err(EcsError::invalid_parameter(format!(
                "The value of attribute '{}' is invalid: use 1-128 letters, numbers, hyphens, underscores, slashes, periods, at signs, colons and spaces.",
                a.name
            )));
        }
    }
    Ok(())
}

fn target_of(a: &Attribute) -> Result<&str, EcsError> {
    if a.target_type
        .is_some_and(|t| t != TargetType::ContainerInstance)
    {
        return Err(EcsError::invalid_parameter(
            "Attributes can only target container instances.",
        ));
    }
    a.target_id
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            EcsError::invalid_parameter(format!("Attribute '{}' needs a targetId.", a.name))
        })
}

fn target_not_found(target: &str) -> EcsError {
    EcsError::new(
        ErrorCode::TargetNotFoundException,
        format!("Could not find the target {target}."),
    )
}

pub async fn put(
    api: &Api,
    ctx: &Ctx,
    req: PutAttributesRequest,
) -> Result<PutAttributesResponse, EcsError> {
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    if req.attributes.is_empty() {
        return Err(EcsError::invalid_parameter("attributes must not be empty."));
    }
    for a in &req.attributes {
        check_attribute(a)?;
        if is_built_in(&a.name) {
            return Err(EcsError::invalid_parameter(format!(
                "Attribute names beginning with 'ecs.' are reserved: {}",
                a.name
            )));
        }
        target_of(a)?;
    }
    let attributes = &req.attributes;
    apply_to_targets(api, ctx, &cluster, attributes, |target, current| {
        for a in attributes
            .iter()
            .filter(|a| a.target_id.as_deref() == Some(target))
        {
            current.retain(|x| x.name != a.name);
            current.push(Attribute {
                name: a.name.clone(),
                value: a.value.clone(),
                target_id: None,
                target_type: None,
            });
        }
        if custom_attribute_count(current) > MAX_CUSTOM_ATTRIBUTES {
            return Err(EcsError::new(
                ErrorCode::AttributeLimitExceededException,
                format!(
                    "You can have at most {MAX_CUSTOM_ATTRIBUTES} custom attributes per resource."
                ),
            ));
        }
        Ok(())
    })
    .await?;
    Ok(PutAttributesResponse {
        attributes: Some(req.attributes),
    })
}

fn distinct_targets(attributes: &[Attribute]) -> Result<Vec<&str>, EcsError> {
    let mut targets: Vec<&str> = Vec::new();
    for a in attributes {
        let t = target_of(a)?;
        if !targets.contains(&t) {
            targets.push(t);
        }
    }
    Ok(targets)
}

/// Changes the attribute lists of every target in one transaction, so a
/// request that fails for one target changes none.
async fn apply_to_targets(
    api: &Api,
    ctx: &Ctx,
    cluster: &str,
    attributes: &[Attribute],
    change: impl Fn(&str, &mut Vec<Attribute>) -> Result<(), EcsError>,
) -> Result<(), EcsError> {
    let targets = distinct_targets(attributes)?;
    for _ in 0..MAX_CAS_ATTEMPTS {
        let mut txn = Txn::new();
        for target in &targets {
            let (key, found) = container_instances::find(api, ctx, cluster, target)
                .filter(|(_, v)| v.value.status.as_deref() != Some(container_instances::INACTIVE))
                .ok_or_else(|| target_not_found(target))?;
            let mut instance = found.value;
            change(target, instance.attributes.get_or_insert_with(Vec::new))?;
            instance.version += 1;
            txn = guard(txn, &key, found.mod_revision).put(key, encode(&instance)?);
        }
        if api.writer.commit(txn).await? {
            return Ok(());
        }
    }
    Err(contention())
}

pub async fn delete(
    api: &Api,
    ctx: &Ctx,
    req: DeleteAttributesRequest,
) -> Result<DeleteAttributesResponse, EcsError> {
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    for a in &req.attributes {
        target_of(a)?;
    }
    let attributes = &req.attributes;
    apply_to_targets(api, ctx, &cluster, attributes, |target, current| {
        current.retain(|x| {
            !attributes
                .iter()
                .any(|a| a.target_id.as_deref() == Some(target) && a.name == x.name)
        });
        Ok(())
    })
    .await?;
    Ok(DeleteAttributesResponse {
        attributes: Some(req.attributes),
    })
}

pub async fn list(
    api: &Api,
    ctx: &Ctx,
    req: ListAttributesRequest,
) -> Result<ListAttributesResponse, EcsError> {
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    if req.attribute_value.is_some() && req.attribute_name.is_none() {
        return Err(EcsError::invalid_parameter(
            "attributeValue can only be used together with attributeName.",
        ));
    }
    let instances = api.cache.list::<ContainerInstance>(&format!(
        "{}{cluster}/",
        prefix::<ContainerInstance>(&ctx.scope)
    ));
    let mut items = Vec::new();
    for (key, v) in instances {
        let ci = v.value;
        if ci.status.as_deref() == Some(container_instances::INACTIVE) {
            continue;
        }
        let arn = ci.container_instance_arn.clone().unwrap_or_default();
        for a in ci.attributes.unwrap_or_default() {
            let name_matches = req.attribute_name.as_ref().is_none_or(|n| *n == a.name);
            let value_matches = req
                .attribute_value
                .as_ref()
                .is_none_or(|v| Some(v) == a.value.as_ref());
            if name_matches && value_matches {
                items.push((
                    format!("{key}\u{0}{}", a.name),
                    Attribute {
                        target_id: Some(arn.clone()),
                        target_type: Some(TargetType::ContainerInstance),
                        ..a
                    },
                ));
            }
        }
    }
    let (attributes, next_token) =
        paginate(items, req.max_results, req.next_token.as_deref(), 100, 100)?;
    Ok(ListAttributesResponse {
        attributes: Some(attributes),
        next_token,
    })
}
