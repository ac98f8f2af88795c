//! Noticing what happened to the service's tasks since the last round, each
//! happening once (the marks persist in the state): a task that reached
//! RUNNING resets the launch backoff and moves its deployment's circuit
//! breaker to stage 2; a task that became healthy resets the breaker's
//! count (`resetOnHealthyTask`, default on); a task that stopped before
//! RUNNING is a failed launch (backoff, breaker stage 1); a task whose
//! essential container exited before the task ever counted as healthy
//! failed to start too, for the breaker in either stage (a container that
//! exits at once does reach RUNNING for a moment, and ECS trips the breaker
//! on "a task from the new deployment stopped or failed to start
//! consecutively"), but not for the backoff, which ECS keeps for tasks that
//! never ran; a task failing its health check after the grace period counts
//! for the breaker (stage 2) and is reported.

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
        // Once healthy (or already counted unhealthy), dying later is not a
        // failure of the deployment.
        let died_unproven = t.stop_code == Some(TaskStopCode::EssentialContainerExited)
            && !marks.healthy
            && !marks.unhealthy;
        let never_ran = t.stop_code == Some(TaskStopCode::TaskFailedToStart);
        failed_launch |= never_ran;
        if let Some(d) = r.state.deployment_mut(&t.started_by)
            && (died_unproven || (never_ran && !d.reached_running))
        {
            d.failed_tasks = d.failed_tasks.saturating_add(1);
            d.failing_health_checks = false;
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
            d.failing_health_checks = true;
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
