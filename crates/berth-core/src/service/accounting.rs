//! Noticing what happened to the service's tasks since the last round, each
//! happening once (the marks persist in the state): a task that reached
//! RUNNING resets the launch backoff and moves its deployment's circuit
//! breaker to stage 2; a task that became healthy resets the breaker's
//! count (`resetOnHealthyTask`, default on); a task that stopped before
//! RUNNING is a failed launch (backoff, breaker stage 1); a task failing
//! its health check after the grace period counts for the breaker (stage
//! 2) and is reported.

use berth_types::TaskStopCode;

use super::Round;
use super::events;
use super::rules::Standing;

pub(super) fn account(r: &mut Round<'_>) {
    let reset_on_healthy = r
        .snap
        .circuit_breaker
        .as_ref()
        .and_then(|c| c.reset_on_healthy_task)
        .unwrap_or(true);
    let tasks = r.tasks.clone();

    // Successes before failures, so a failure noticed in the same round
    // as a success still counts.
    let mut any_ran = false;
    for t in &tasks {
        let marks = r.state.marks.entry(t.id.clone()).or_default();
        if t.started_at_millis.is_some() && !marks.ran {
            marks.ran = true;
            any_ran = true;
            if let Some(d) = r.state.deployment_mut(&t.started_by) {
                d.reached_running = true;
            }
        }
    }
    for t in &tasks {
        if r.standing(t) != Some(Standing::Healthy) {
            continue;
        }
        let marks = r.state.marks.entry(t.id.clone()).or_default();
        if !marks.healthy {
            marks.healthy = true;
            if reset_on_healthy && let Some(d) = r.state.deployment_mut(&t.started_by) {
                d.failed_tasks = 0;
            }
        }
    }

    let mut failed_launch = false;
    for t in &tasks {
        let marks = r.state.marks.entry(t.id.clone()).or_default();
        if !t.is_stopped() || marks.ended {
            continue;
        }
        marks.ended = true;
        if t.stop_code == Some(TaskStopCode::TaskFailedToStart) {
            failed_launch = true;
            if let Some(d) = r.state.deployment_mut(&t.started_by)
                && !d.reached_running
            {
                d.failed_tasks = d.failed_tasks.saturating_add(1);
            }
        }
    }
    for t in &tasks {
        if r.standing(t) != Some(Standing::Unhealthy) {
            continue;
        }
        let marks = r.state.marks.entry(t.id.clone()).or_default();
        if marks.unhealthy {
            continue;
        }
        marks.unhealthy = true;
        if let Some(d) = r.state.deployment_mut(&t.started_by) {
            d.failed_tasks = d.failed_tasks.saturating_add(1);
        }
        r.emit(events::failed_health_checks(&r.snap.name, &t.id));
    }

    if any_ran {
        r.state.throttle.reset();
    }
    if failed_launch {
        r.state.throttle.record_failure(r.now);
    }
}
