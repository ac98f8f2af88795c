//! TagResource, UntagResource and ListTagsForResource: routes a resource ARN
//! to the resource that owns its tags.

use berth_types::arn::Arn;
use berth_types::{
    Cluster, EcsError, ErrorCode, ListTagsForResourceRequest, ListTagsForResourceResponse, Tag,
    TagResourceRequest, TagResourceResponse, UntagResourceRequest, UntagResourceResponse,
};

use super::{
    Api, Ctx, capacity_providers, clusters, container_instances, services, task_definitions,
};
use crate::state::key;

pub fn not_found() -> EcsError {
    EcsError::new(
        ErrorCode::ResourceNotFoundException,
        "The specified resource could not be found.",
    )
}

/// The taggable resources Berth knows, parsed from an ARN.
enum Taggable<'a> {
    Cluster(&'a str),
    TaskDefinition(&'a str),
    ContainerInstance { cluster: &'a str, id: &'a str },
    CapacityProvider(&'a str),
    Service { cluster: &'a str, name: &'a str },
}

fn parse<'a>(ctx: &Ctx, arn: &'a str) -> Result<Taggable<'a>, EcsError> {
    let parsed = Arn::parse(arn)
        .ok_or_else(|| EcsError::invalid_parameter(format!("Invalid resource ARN: {arn}")))?;
    if parsed.region != ctx.scope.region || parsed.account != ctx.scope.account {
        return Err(not_found());
    }
    match parsed.resource_type {
        "cluster" => Ok(Taggable::Cluster(parsed.resource)),
        "task-definition" => Ok(Taggable::TaskDefinition(arn)),
        "container-instance" => match parsed.resource.split_once('/') {
            Some((cluster, id)) => Ok(Taggable::ContainerInstance { cluster, id }),
            None => Err(EcsError::invalid_parameter(
                "Container instance ARNs must be in the long format (container-instance/cluster/id) to be tagged.",
            )),
        },
        "capacity-provider" => Ok(Taggable::CapacityProvider(parsed.resource)),
        "service" => match parsed.resource.split_once('/') {
            Some((cluster, name)) => Ok(Taggable::Service { cluster, name }),
            None => Err(EcsError::invalid_parameter(
                "Long arn format must be used for tagging operations",
            )),
        },
        "task" | "task-set" => Err(not_found()),
        other => Err(EcsError::invalid_parameter(format!(
            "Resources of type {other} cannot be tagged."
        ))),
    }
}

async fn retag(
    api: &Api,
    ctx: &Ctx,
    arn: &str,
    add: &[Tag],
    remove: &[String],
) -> Result<(), EcsError> {
    match parse(ctx, arn)? {
        Taggable::Cluster(name) => {
            clusters::active(api, ctx, Some(name)).map_err(|_| not_found())?;
            clusters::retag(api, ctx, name, add, remove).await
        }
        Taggable::TaskDefinition(reference) => {
            task_definitions::retag(api, ctx, reference, add, remove).await
        }
        Taggable::ContainerInstance { cluster, id } => {
            clusters::active(api, ctx, Some(cluster))?;
            if container_instances::find(api, ctx, cluster, id).is_none() {
                return Err(not_found());
            }
            container_instances::retag(api, ctx, cluster, id, add, remove).await
        }
        Taggable::CapacityProvider(name) => {
            if capacity_providers::is_fargate(name) {
                return Err(EcsError::invalid_parameter(
                    "The FARGATE and FARGATE_SPOT capacity providers cannot be tagged.",
                ));
            }
            capacity_providers::tags_of(api, ctx, name).ok_or_else(not_found)?;
            capacity_providers::retag(api, ctx, name, add, remove).await
        }
        Taggable::Service { cluster, name } => {
            clusters::active(api, ctx, Some(cluster)).map_err(|_| not_found())?;
            services::retag(api, ctx, cluster, name, add, remove).await
        }
    }
}

pub async fn tag(
    api: &Api,
    ctx: &Ctx,
    req: TagResourceRequest,
) -> Result<TagResourceResponse, EcsError> {
    super::validate_tags(&req.tags)?;
    retag(api, ctx, &req.resource_arn, &req.tags, &[]).await?;
    Ok(TagResourceResponse {})
}

pub async fn untag(
    api: &Api,
    ctx: &Ctx,
    req: UntagResourceRequest,
) -> Result<UntagResourceResponse, EcsError> {
    retag(api, ctx, &req.resource_arn, &[], &req.tag_keys).await?;
    Ok(UntagResourceResponse {})
}

pub async fn list(
    api: &Api,
    ctx: &Ctx,
    req: ListTagsForResourceRequest,
) -> Result<ListTagsForResourceResponse, EcsError> {
    let tags = match parse(ctx, &req.resource_arn)? {
        Taggable::Cluster(name) => api
            .cache
            .get::<Cluster>(&key::<Cluster>(&ctx.scope, name))
            .map(|v| v.value.tags.unwrap_or_default()),
        Taggable::TaskDefinition(reference) => {
            task_definitions::resolve(api, ctx, reference).map(|(_, v)| v.value.tags)
        }
        Taggable::ContainerInstance { cluster, id } => {
            container_instances::find(api, ctx, cluster, id)
                .map(|(_, v)| v.value.tags.unwrap_or_default())
        }
        Taggable::CapacityProvider(name) => capacity_providers::tags_of(api, ctx, name),
        Taggable::Service { cluster, name } => services::tags_of(api, ctx, cluster, name),
    };
    Ok(ListTagsForResourceResponse {
        tags: Some(tags.ok_or_else(not_found)?),
    })
}
