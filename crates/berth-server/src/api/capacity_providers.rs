//! Capacity providers: the built-in FARGATE and FARGATE_SPOT, and
//! user-created Auto Scaling group providers, with the association rules
//! clusters must follow. Which cluster a custom provider belongs to is
//! derived from the clusters, so it cannot disagree with them.

use berth_types::{
    AutoScalingGroupProvider, CapacityProvider, CapacityProviderField, CapacityProviderStatus,
    CapacityProviderStrategyItem, CapacityProviderType, CapacityProviderUpdateStatus, Cluster,
    CreateCapacityProviderRequest, CreateCapacityProviderResponse, DeleteCapacityProviderRequest,
    DeleteCapacityProviderResponse, DescribeCapacityProvidersRequest,
    DescribeCapacityProvidersResponse, EcsError, ErrorCode, ManagedDraining, ManagedScaling,
    ManagedScalingStatus, ManagedTerminationProtection, Tag, UpdateCapacityProviderRequest,
    UpdateCapacityProviderResponse, arn::Arn,
};

use super::{Api, Ctx, failure, includes, merge_tags, paginate, validate_tags};
use crate::state::{Write, key, prefix};

const BUILT_IN: [&str; 2] = ["FARGATE", "FARGATE_SPOT"];

pub fn is_fargate(name: &str) -> bool {
    BUILT_IN.contains(&name)
}

fn built_in(ctx: &Ctx, name: &str) -> CapacityProvider {
    CapacityProvider {
        capacity_provider_arn: Some(ctx.scope.capacity_provider(name)),
        name: Some(name.to_owned()),
        status: Some(CapacityProviderStatus::Active),
        r#type: CapacityProviderType::parse(name),
        tags: Some(Vec::new()),
        ..CapacityProvider::default()
    }
}

/// A name or ARN to a provider name.
fn provider_name(reference: &str) -> &str {
    match Arn::parse(reference) {
        Some(arn) if arn.resource_type == "capacity-provider" => arn.resource,
        _ => reference,
    }
}

pub fn find(api: &Api, ctx: &Ctx, reference: &str) -> Option<CapacityProvider> {
    let name = provider_name(reference);
    if is_fargate(name) {
        return Some(built_in(ctx, name));
    }
    api.cache
        .get::<CapacityProvider>(&key::<CapacityProvider>(&ctx.scope, name))
        .map(|v| v.value)
}

/// The ACTIVE cluster a custom provider is associated with, if any.
fn associated_cluster(api: &Api, ctx: &Ctx, provider: &str) -> Option<String> {
    api.cache
        .list::<Cluster>(&prefix::<Cluster>(&ctx.scope))
        .into_iter()
        .map(|(_, c)| c.value)
        .find(|c| {
            c.status.as_deref() == Some(super::clusters::ACTIVE)
                && c.capacity_providers
                    .as_ref()
                    .is_some_and(|ps| ps.iter().any(|p| p == provider))
        })
        .and_then(|c| c.cluster_name)
}

/// Checks a cluster's provider list and default strategy as ECS does.
pub fn validate_association(
    api: &Api,
    ctx: &Ctx,
    cluster: &str,
    providers: &[String],
    strategy: &[CapacityProviderStrategyItem],
) -> Result<(), EcsError> {
    for (i, p) in providers.iter().enumerate() {
        if providers[..i].contains(p) {
            return Err(EcsError::invalid_parameter(format!(
                "The capacity provider {p} is listed more than once."
            )));
        }
        let provider = find(api, ctx, p)
            .filter(|cp| cp.status == Some(CapacityProviderStatus::Active))
            .ok_or_else(|| {
                EcsError::invalid_parameter(format!(
                    "The specified capacity provider {p} does not exist."
                ))
            })?;
        if !is_fargate(p)
            && let Some(other) = associated_cluster(api, ctx, p).filter(|c| c != cluster)
        {
            return Err(EcsError::new(
                ErrorCode::ResourceInUseException,
                format!(
                    "The capacity provider {} is already associated with cluster {other}.",
                    provider.name.unwrap_or_default()
                ),
            ));
        }
    }
    validate_strategy(strategy)?;
    for item in strategy {
        if !providers.contains(&item.capacity_provider) {
            return Err(EcsError::invalid_parameter(format!(
                "The capacity provider {} is not associated with the cluster. Add it to the cluster's capacity providers first.",
                item.capacity_provider
            )));
        }
    }
    let fargate = strategy.iter().any(|i| is_fargate(&i.capacity_provider));
    let custom = strategy.iter().any(|i| !is_fargate(&i.capacity_provider));
    if fargate && custom {
        return Err(EcsError::invalid_parameter(
            "A capacity provider strategy cannot contain both Fargate and Auto Scaling group capacity providers.",
        ));
    }
    Ok(())
}

/// The shape rules of a strategy, wherever one is given: at most 20 items,
/// weight 0–1000, base 0–100000, only one item with a base.
pub fn validate_strategy(strategy: &[CapacityProviderStrategyItem]) -> Result<(), EcsError> {
    if strategy.len() > 20 {
        return Err(EcsError::invalid_parameter(
            "A capacity provider strategy can contain at most 20 capacity providers.",
        ));
    }
    for (i, item) in strategy.iter().enumerate() {
        if !(0..=1000).contains(&item.weight) {
            return Err(EcsError::invalid_parameter(format!(
                "The weight of capacity provider {} must be between 0 and 1000.",
                item.capacity_provider
            )));
        }
        if !(0..=100_000).contains(&item.base) {
            return Err(EcsError::invalid_parameter(format!(
                "The base of capacity provider {} must be between 0 and 100000.",
                item.capacity_provider
            )));
        }
        if strategy[..i]
            .iter()
            .any(|o| o.capacity_provider == item.capacity_provider)
        {
            return Err(EcsError::invalid_parameter(format!(
                "The capacity provider {} is listed more than once in the strategy.",
                item.capacity_provider
            )));
        }
    }
    if strategy.iter().filter(|i| i.base > 0).count() > 1 {
        return Err(EcsError::invalid_parameter(
            "Only one capacity provider in a strategy can have a base defined.",
        ));
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<(), EcsError> {
    if !berth_types::arn::is_valid_name(name) {
        return Err(EcsError::invalid_parameter(
            "The capacity provider name must be 1-255 characters: letters, numbers, hyphens and underscores.",
        ));
    }
    let lower = name.to_ascii_lowercase();
    if ["aws", "ecs", "fargate"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return Err(EcsError::invalid_parameter(
            "The capacity provider name cannot start with 'aws', 'ecs' or 'fargate'.",
        ));
    }
    Ok(())
}

/// ECS's defaults for managed scaling, filled in so Describe shows them.
fn with_scaling_defaults(scaling: Option<ManagedScaling>) -> ManagedScaling {
    let s = scaling.unwrap_or_default();
    ManagedScaling {
        status: Some(s.status.unwrap_or(ManagedScalingStatus::Disabled)),
        target_capacity: Some(s.target_capacity.unwrap_or(100)),
        minimum_scaling_step_size: Some(s.minimum_scaling_step_size.unwrap_or(1)),
        maximum_scaling_step_size: Some(s.maximum_scaling_step_size.unwrap_or(10_000)),
        instance_warmup_period: Some(s.instance_warmup_period.unwrap_or(300)),
    }
}

fn validate_scaling(s: &ManagedScaling) -> Result<(), EcsError> {
    let within = |v: Option<i32>, lo: i32, hi: i32, what: &str| match v {
        Some(v) if !(lo..=hi).contains(&v) => Err(EcsError::invalid_parameter(format!(
            "managedScaling.{what} must be between {lo} and {hi}."
        ))),
        _ => Ok(()),
    };
    within(s.target_capacity, 1, 100, "targetCapacity")?;
    within(
        s.minimum_scaling_step_size,
        1,
        10_000,
        "minimumScalingStepSize",
    )?;
    within(
        s.maximum_scaling_step_size,
        1,
        10_000,
        "maximumScalingStepSize",
    )?;
    within(s.instance_warmup_period, 0, 10_000, "instanceWarmupPeriod")?;
    if let (Some(min), Some(max)) = (s.minimum_scaling_step_size, s.maximum_scaling_step_size)
        && min > max
    {
        return Err(EcsError::invalid_parameter(
            "managedScaling.minimumScalingStepSize cannot be greater than maximumScalingStepSize.",
        ));
    }
    Ok(())
}

fn check_termination_protection(asg: &AutoScalingGroupProvider) -> Result<(), EcsError> {
    let protected =
        asg.managed_termination_protection == Some(ManagedTerminationProtection::Enabled);
    let scaling = asg
        .managed_scaling
        .as_ref()
        .and_then(|s| s.status)
        .unwrap_or(ManagedScalingStatus::Disabled);
    if protected && scaling != ManagedScalingStatus::Enabled {
        return Err(EcsError::invalid_parameter(
            "Managed termination protection requires managed scaling to be enabled.",
        ));
    }
    Ok(())
}

pub async fn create(
    api: &Api,
    ctx: &Ctx,
    req: CreateCapacityProviderRequest,
) -> Result<CreateCapacityProviderResponse, EcsError> {
    validate_name(&req.name)?;
    let tags = req.tags.clone().unwrap_or_default();
    validate_tags(&tags)?;
    if req.managed_instances_provider.is_some() {
        return Err(EcsError::new(
            ErrorCode::UnsupportedFeatureException,
            "Managed instances capacity providers are not supported by Berth.",
        ));
    }
    let asg = req
        .auto_scaling_group_provider
        .clone()
        .ok_or_else(|| EcsError::invalid_parameter("autoScalingGroupProvider is required."))?;
    if asg.auto_scaling_group_arn.is_empty() {
        return Err(EcsError::invalid_parameter(
            "autoScalingGroupProvider.autoScalingGroupArn is required.",
        ));
    }
    if let Some(s) = &asg.managed_scaling {
        validate_scaling(s)?;
    }
    check_termination_protection(&asg)?;
    let provider = CapacityProvider {
        capacity_provider_arn: Some(ctx.scope.capacity_provider(&req.name)),
        name: Some(req.name.clone()),
        status: Some(CapacityProviderStatus::Active),
        r#type: Some(CapacityProviderType::Ec2Autoscaling),
        auto_scaling_group_provider: Some(AutoScalingGroupProvider {
            managed_scaling: Some(with_scaling_defaults(asg.managed_scaling.clone())),
            managed_termination_protection: Some(
                asg.managed_termination_protection
                    .unwrap_or(ManagedTerminationProtection::Disabled),
            ),
            managed_draining: Some(asg.managed_draining.unwrap_or(ManagedDraining::Enabled)),
            ..asg.clone()
        }),
        tags: Some(tags),
        ..CapacityProvider::default()
    };
    let key = key::<CapacityProvider>(&ctx.scope, &req.name);
    let asg_arn = asg.auto_scaling_group_arn.clone();
    let in_use_by = api
        .cache
        .list::<CapacityProvider>(&prefix::<CapacityProvider>(&ctx.scope))
        .into_iter()
        .map(|(_, v)| v.value)
        .find(|p| {
            p.status == Some(CapacityProviderStatus::Active)
                && p.name.as_deref() != Some(&req.name)
                && p.auto_scaling_group_provider
                    .as_ref()
                    .is_some_and(|a| a.auto_scaling_group_arn == asg_arn)
        });
    if let Some(other) = in_use_by {
        return Err(EcsError::invalid_parameter(format!(
            "The Auto Scaling group is already used by capacity provider {}.",
            other.name.unwrap_or_default()
        )));
    }
    let created = api
        .writer
        .update::<CapacityProvider, CapacityProvider>(&key, |current| match current {
            Some(existing) if existing.status == Some(CapacityProviderStatus::Active) => {
                Err(EcsError::client(format!(
                    "A capacity provider named {} already exists.",
                    req.name
                )))
            }
            _ => Ok((Some(Write::Put(provider.clone())), provider.clone())),
        })
        .await?;
    Ok(CreateCapacityProviderResponse {
        capacity_provider: Some(created),
    })
}

pub async fn describe(
    api: &Api,
    ctx: &Ctx,
    req: DescribeCapacityProvidersRequest,
) -> Result<DescribeCapacityProvidersResponse, EcsError> {
    let with_tags = includes(req.include.as_ref(), &CapacityProviderField::Tags);
    let present = |mut p: CapacityProvider| {
        if !with_tags {
            p.tags = None;
        }
        p
    };
    if let Some(references) = &req.capacity_providers {
        if references.len() > 100 {
            return Err(EcsError::invalid_parameter(
                "At most 100 capacity providers can be described at once.",
            ));
        }
        let mut providers = Vec::new();
        let mut failures = Vec::new();
        for r in references {
            match find(api, ctx, r) {
                Some(p) => providers.push(present(p)),
                None => failures.push(failure(
                    ctx.scope.capacity_provider(provider_name(r)),
                    "MISSING",
                )),
            }
        }
        return Ok(DescribeCapacityProvidersResponse {
            capacity_providers: Some(providers),
            failures: Some(failures),
            next_token: None,
        });
    }
    // Built-ins sort first, as in ECS; the prefixes keep them apart from
    // user providers in the token space.
    let mut all: Vec<(String, CapacityProvider)> = BUILT_IN
        .iter()
        .map(|n| (format!("0/{n}"), built_in(ctx, n)))
        .collect();
    all.extend(
        api.cache
            .list::<CapacityProvider>(&prefix::<CapacityProvider>(&ctx.scope))
            .into_iter()
            .filter(|(_, v)| v.value.status != Some(CapacityProviderStatus::Inactive))
            .map(|(k, v)| (format!("1/{k}"), v.value)),
    );
    let (page, next_token) = paginate(all, req.max_results, req.next_token.as_deref(), 10, 10)?;
    Ok(DescribeCapacityProvidersResponse {
        capacity_providers: Some(page.into_iter().map(present).collect()),
        failures: Some(Vec::new()),
        next_token,
    })
}

/// Read-modify-write of a user capacity provider.
async fn modify(
    api: &Api,
    ctx: &Ctx,
    reference: &str,
    mut change: impl FnMut(&mut CapacityProvider) -> Result<(), EcsError>,
) -> Result<CapacityProvider, EcsError> {
    let name = provider_name(reference);
    if is_fargate(name) {
        return Err(EcsError::client(format!(
            "The {name} capacity provider is managed by Berth and cannot be changed."
        )));
    }
    api.writer
        .update::<CapacityProvider, CapacityProvider>(
            &key::<CapacityProvider>(&ctx.scope, name),
            |current| {
                let mut provider = current
                    .filter(|p| p.status == Some(CapacityProviderStatus::Active))
                    .ok_or_else(|| {
                        EcsError::client(format!(
                            "The specified capacity provider {name} does not exist."
                        ))
                    })?;
                change(&mut provider)?;
                Ok((Some(Write::Put(provider.clone())), provider))
            },
        )
        .await
}

pub async fn update(
    api: &Api,
    ctx: &Ctx,
    req: UpdateCapacityProviderRequest,
) -> Result<UpdateCapacityProviderResponse, EcsError> {
    let Some(update) = req.auto_scaling_group_provider.clone() else {
        return Err(EcsError::invalid_parameter(
            "autoScalingGroupProvider is required.",
        ));
    };
    if let Some(s) = &update.managed_scaling {
        validate_scaling(s)?;
    }
    let provider = modify(api, ctx, &req.name, |p| {
        let asg = p
            .auto_scaling_group_provider
            .get_or_insert_with(|| AutoScalingGroupProvider {
                auto_scaling_group_arn: String::new(),
                managed_draining: None,
                managed_scaling: None,
                managed_termination_protection: None,
            });
        if let Some(s) = &update.managed_scaling {
            let merged = ManagedScaling {
                status: s
                    .status
                    .or(asg.managed_scaling.as_ref().and_then(|m| m.status)),
                target_capacity: s.target_capacity,
                minimum_scaling_step_size: s.minimum_scaling_step_size,
                maximum_scaling_step_size: s.maximum_scaling_step_size,
                instance_warmup_period: s.instance_warmup_period,
            };
            asg.managed_scaling = Some(with_scaling_defaults(Some(merged)));
        }
        if let Some(t) = update.managed_termination_protection {
            asg.managed_termination_protection = Some(t);
        }
        if let Some(d) = update.managed_draining {
            asg.managed_draining = Some(d);
        }
        check_termination_protection(asg)?;
        p.update_status = Some(CapacityProviderUpdateStatus::UpdateComplete);
        Ok(())
    })
    .await?;
    Ok(UpdateCapacityProviderResponse {
        capacity_provider: Some(provider),
    })
}

pub async fn delete(
    api: &Api,
    ctx: &Ctx,
    req: DeleteCapacityProviderRequest,
) -> Result<DeleteCapacityProviderResponse, EcsError> {
    let name = provider_name(&req.capacity_provider).to_owned();
    if let Some(cluster) = associated_cluster(api, ctx, &name) {
        return Err(EcsError::client(format!(
            "The specified capacity provider is in use and cannot be removed. Remove it from cluster {cluster} first."
        )));
    }
    let provider = modify(api, ctx, &name, |p| {
        p.status = Some(CapacityProviderStatus::Inactive);
        p.update_status = Some(CapacityProviderUpdateStatus::DeleteComplete);
        Ok(())
    })
    .await?;
    Ok(DeleteCapacityProviderResponse {
        capacity_provider: Some(provider),
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
    modify(api, ctx, name, |p| {
        let tags = p.tags.get_or_insert_with(Vec::new);
        tags.retain(|t| !t.key.as_ref().is_some_and(|k| remove.contains(k)));
        merge_tags(tags, add);
        validate_tags(tags)
    })
    .await
    .map(|_| ())
}

/// A provider's tags, for ListTagsForResource.
pub fn tags_of(api: &Api, ctx: &Ctx, name: &str) -> Option<Vec<Tag>> {
    find(api, ctx, name).map(|p| p.tags.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_rules() {
        let item = |p: &str, base, weight| CapacityProviderStrategyItem {
            capacity_provider: p.into(),
            base,
            weight,
        };
        assert!(validate_strategy(&[item("A", 2, 1), item("B", 0, 3)]).is_ok());
        assert!(validate_strategy(&[item("A", 2, 1), item("B", 1, 3)]).is_err());
        assert!(validate_strategy(&[item("A", 0, 1001)]).is_err());
        assert!(validate_strategy(&[item("A", 100_001, 1)]).is_err());
        assert!(validate_strategy(&[item("A", 0, 1), item("A", 0, 1)]).is_err());
    }

    #[test]
    fn reserved_names() {
        assert!(validate_name("my-cp").is_ok());
        assert!(validate_name("fargate-x").is_err());
        assert!(validate_name("AWSthing").is_err());
        assert!(validate_name("ecs1").is_err());
        assert!(validate_name("bad name").is_err());
    }
}
