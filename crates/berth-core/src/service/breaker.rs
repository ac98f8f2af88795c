//! The deployment circuit breaker (rolling deployments): once the PRIMARY
//! deployment's failed-task count reaches the threshold it is marked
//! FAILED and launches nothing more; with `rollback` a new deployment of
//! the last COMPLETED deployment's revision takes over, within the failed
//! service deployment (which then rolls back rather than stops). Failures
//! are counted in `accounting`: tasks that fail to start until one of the
//! deployment's tasks reaches RUNNING (stage 1), then tasks failing their
//! container health check (stage 2), and in both stages tasks whose
//! essential container exited before they ever counted as healthy. The
//! reason names the kind of the failure that tripped it.

use berth_types::{DeploymentRolloutState, ThresholdConfiguration, ThresholdType};

use super::Round;
use super::deployment::Deployment;
use super::events;
use super::history::RollbackRecord;

pub const MIN_THRESHOLD: u32 = 3;
pub const MAX_THRESHOLD: u32 = 200;
/// BOUNDED_PERCENT's default value, and the percentage of the default rule.
pub const DEFAULT_PERCENT: u32 = 50;

/// The failure count at which a deployment of `desired` tasks fails:
/// clamp(ceil(50 % × desired), 3, 200) by default; `COUNT` uses the value
/// itself, `BOUNDED_PERCENT` value % of desired within 3..=200, and
/// `UNBOUNDED_PERCENT` value % of desired. Never below 1, so a breaker
/// cannot fail a deployment that has not failed a task.
pub fn threshold(desired: u32, config: Option<&ThresholdConfiguration>) -> u32 {
    let percent_of = |percent: u32| {
        let n = (u64::from(desired) * u64::from(percent)).div_ceil(100);
        u32::try_from(n).unwrap_or(u32::MAX)
    };
    let value = |c: &ThresholdConfiguration| u32::try_from(c.value).unwrap_or(0);
    let n = match config {
        None => percent_of(DEFAULT_PERCENT).clamp(MIN_THRESHOLD, MAX_THRESHOLD),
        Some(c) => match c.r#type {
            ThresholdType::Count => value(c),
            ThresholdType::BoundedPercent => {
                percent_of(value(c)).clamp(MIN_THRESHOLD, MAX_THRESHOLD)
            }
            ThresholdType::UnboundedPercent => percent_of(value(c)),
        },
    };
    n.max(1)
}

/// Fails the PRIMARY deployment if its failures reached the threshold, and
/// rolls back when asked to and possible.
pub(super) fn check(r: &mut Round<'_>) {
    let Some(config) = r.snap.circuit_breaker.as_ref().filter(|c| c.enable) else {
        return;
    };
    let now = r.now;
    let Some(primary) = r.state.primary_mut() else {
        return;
    };
    let limit = threshold(
        primary.desired_count,
        config.threshold_configuration.as_ref(),
    );
    if primary.rollout_state != DeploymentRolloutState::InProgress || primary.failed_tasks < limit {
        return;
    }
    let noun = if primary.failed_tasks == 1 {
        "task"
    } else {
        "tasks"
    };
    let what = if primary.failing_health_checks {
        format!("{noun} failed health checks")
    } else {
        format!("{noun} failed to start")
    };
    let reason = format!("ECS deployment circuit breaker: {what}.");
    primary.rollout_state = DeploymentRolloutState::Failed;
    primary.rollout_state_reason.clone_from(&reason);
    primary.updated_at_millis = now;
    let failed_id = primary.id.clone();
    let desired = primary.desired_count;
    r.emit(events::deployment_failed(&r.snap.name, &failed_id, &what));
    // Without a COMPLETED deployment to return to, the deployment stalls.
    let target = config
        .rollback
        .then(|| r.state.last_completed.take())
        .flatten();
    let rollback = target.map(|target| {
        let id = r.state.fresh_deployment_id(now);
        let mut deployment = Deployment::new(
            id.clone(),
            target.revision().to_owned(),
            target.task_definition.clone(),
            desired,
            now,
        );
        deployment.rollout_state_reason = format!(
            "ECS deployment circuit breaker: rolling back to deploymentId {}.",
            target.id
        );
        let why = deployment.rollout_state_reason.clone();
        r.state.roll_out(deployment, now);
        r.emit(events::rolling_back(&r.snap.name, &target.id));
        RollbackRecord {
            reason: why,
            started_at_millis: now,
            revision: target.revision().to_owned(),
            deployment_id: id,
        }
    });
    r.state
        .service_deployment_failed(&failed_id, &reason, config.rollback, rollback, now);
}
