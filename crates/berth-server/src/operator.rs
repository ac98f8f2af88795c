//! Operator calls on the API endpoint, under their own `X-Amz-Target`
//! prefix (`berth fargate …` sends them): the platform's Fargate capacity
//! (`DescribeFargateCapacity`: the pool hosts no user cluster shows) and
//! FARGATE_SPOT interruptions.
//!
//! AWS reclaims Spot capacity with a two-minute warning; here the operator
//! does, through `InterruptSpotTasks`, or a chaos loop does at a rate the
//! operator chose (`berth server --spot-interruption-rate`).
//!
//! An interrupted task is asked to stop with stopCode `SpotInterruption`:
//! its agent sends the containers SIGTERM (the warning) and SIGKILL once
//! their stopTimeout (at most 120 s on Fargate) has passed, and a service
//! replaces the task like any other that stopped.

use std::sync::Arc;
use std::time::Duration;

use berth_core::lifecycle;
use berth_types::agent::FARGATE_POOL_CLUSTER;
use berth_types::{ContainerInstance, EcsError, Failure, Task, TaskStopCode};
use bytes::Bytes;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::api::{Api, Ctx, clusters, failure, tasks};
use crate::state::prefix;

/// The `X-Amz-Target` prefix of operator calls (with the dot).
pub const OPERATOR_TARGET_PREFIX: &str = "BerthOperator_20261125.";

/// What ECS says of a reclaimed Spot task.
pub const SPOT_INTERRUPTED: &str = "Your Spot Task was interrupted.";

const SPOT: &str = "FARGATE_SPOT";
/// How often the chaos loop draws.
const CHAOS_TICK: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InterruptSpotTasksRequest {
    cluster: Option<String>,
    tasks: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DescribeFargateCapacityResponse {
    container_instances: Vec<ContainerInstance>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InterruptSpotTasksResponse {
    tasks: Vec<Task>,
    failures: Vec<Failure>,
}

/// Runs one operator call.
pub async fn dispatch(
    api: &Api,
    ctx: &Ctx,
    operation: &str,
    body: &[u8],
) -> Result<Bytes, EcsError> {
    let response = match operation {
        "InterruptSpotTasks" => serde_json::to_vec(&interrupt_spot_tasks(api, ctx, body).await?),
        "DescribeFargateCapacity" => serde_json::to_vec(&DescribeFargateCapacityResponse {
            container_instances: api
                .cache
                .list::<ContainerInstance>(&format!(
                    "{}{FARGATE_POOL_CLUSTER}/",
                    prefix::<ContainerInstance>(&ctx.scope)
                ))
                .into_iter()
                .map(|(_, v)| v.value)
                .collect(),
        }),
        _ => {
            return Err(EcsError::new(
                berth_types::ErrorCode::UnknownOperationException,
                format!("Unknown operation {OPERATOR_TARGET_PREFIX}{operation}."),
            ));
        }
    };
    response
        .map(Bytes::from)
        .map_err(|e| EcsError::server(e.to_string()))
}

async fn interrupt_spot_tasks(
    api: &Api,
    ctx: &Ctx,
    body: &[u8],
) -> Result<InterruptSpotTasksResponse, EcsError> {
    let req: InterruptSpotTasksRequest = serde_json::from_slice(body)
        .map_err(|e| EcsError::invalid_parameter(format!("Invalid request: {e}")))?;
    if req.tasks.is_empty() || req.tasks.len() > 100 {
        return Err(EcsError::invalid_parameter(
            "tasks must list between 1 and 100 tasks.",
        ));
    }
    let cluster = clusters::active(api, ctx, req.cluster.as_deref())?
        .cluster_name
        .unwrap_or_default();
    let mut response = InterruptSpotTasksResponse {
        tasks: Vec::new(),
        failures: Vec::new(),
    };
    for reference in &req.tasks {
        match interrupt(api, ctx, &cluster, reference).await {
            Ok(task) => response.tasks.push(task),
            Err(err) if err.code == berth_types::ErrorCode::InvalidParameterException => {
                response.failures.push(Failure {
                    detail: Some(err.message),
                    ..failure(reference.clone(), "NOT_SPOT")
                });
            }
            Err(err) => return Err(err),
        }
    }
    Ok(response)
}

/// Interrupts one FARGATE_SPOT task of `cluster`.
pub async fn interrupt(
    api: &Api,
    ctx: &Ctx,
    cluster: &str,
    reference: &str,
) -> Result<Task, EcsError> {
    let Some((_, found)) = tasks::find(api, ctx, cluster, reference) else {
        return Err(EcsError::invalid_parameter(format!(
            "The referenced task {reference} was not found."
        )));
    };
    if found.value.task.capacity_provider_name.as_deref() != Some(SPOT) {
        return Err(EcsError::invalid_parameter(format!(
            "The task {reference} does not run on FARGATE_SPOT."
        )));
    }
    tasks::stop_task(
        api,
        ctx,
        cluster,
        reference,
        TaskStopCode::SpotInterruption,
        SPOT_INTERRUPTED,
    )
    .await
}

/// Interrupts each RUNNING Spot task with probability `per_task_hour` per
/// hour, drawn every second.
pub fn spawn_chaos(api: Arc<Api>, per_task_hour: f64) -> tokio::task::JoinHandle<()> {
    let chance = (per_task_hour / 3600.0 * CHAOS_TICK.as_secs_f64()).clamp(0.0, 1.0);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHAOS_TICK);
        loop {
            tick.tick().await;
            let running = api.cache.select_tasks("ecs/", |key, t| {
                (t.capacity_provider.as_deref() == Some(SPOT)
                    && t.last_status.as_deref() == Some(lifecycle::RUNNING)
                    && t.desired_status.as_deref() == Some(lifecycle::RUNNING))
                .then(|| t.task_arn(key))
            });
            let chosen: Vec<String> = {
                let mut rng = rand::rng();
                running
                    .into_iter()
                    .filter(|_| rng.random_bool(chance))
                    .collect()
            };
            for arn in chosen {
                let Some(arn_parts) = berth_types::arn::Arn::parse(&arn) else {
                    continue;
                };
                let ctx = Ctx {
                    scope: berth_types::arn::Scope::new(arn_parts.region, arn_parts.account),
                    host: None,
                };
                let Some(cluster) = tasks::cluster_of(&arn) else {
                    continue;
                };
                match interrupt(&api, &ctx, cluster, &arn).await {
                    Ok(_) => tracing::info!(task = %arn, "chaos: Spot task interrupted"),
                    Err(err) => tracing::warn!(task = %arn, %err, "chaos: cannot interrupt"),
                }
            }
        }
    })
}
