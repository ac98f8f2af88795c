//! The deployment circuit breaker: threshold arithmetic, failing a
//! deployment, rolling back, stalling, and its two stages.

use berth_types::{DeploymentRolloutState, HealthStatus, TaskStopCode, ThresholdType};

use super::sim::*;
use crate::service::*;

#[test]
fn default_threshold_is_half_the_desired_count_clamped_to_3_through_200() {
    let cases = [
        (0, 3),
        (1, 3),
        (6, 3),
        (7, 4),
        (25, 13),
        (399, 200),
        (400, 200),
        (800, 200),
    ];
    for (desired, expected) in cases {
        assert_eq!(
            circuit_breaker_threshold(desired, None),
            expected,
            "desired {desired}"
        );
    }
}

#[test]
fn threshold_configuration_overrides_the_default() {
    let count = threshold(ThresholdType::Count, 1);
    assert_eq!(circuit_breaker_threshold(100, Some(&count)), 1);
    let bounded = threshold(ThresholdType::BoundedPercent, 10);
    assert_eq!(circuit_breaker_threshold(100, Some(&bounded)), 10);
    assert_eq!(circuit_breaker_threshold(5, Some(&bounded)), 3);
    assert_eq!(circuit_breaker_threshold(5000, Some(&bounded)), 200);
    let unbounded = threshold(ThresholdType::UnboundedPercent, 10);
    assert_eq!(circuit_breaker_threshold(5, Some(&unbounded)), 1);
    assert_eq!(circuit_breaker_threshold(5000, Some(&unbounded)), 500);
    // Never 0: a deployment fails on a failure, not before one.
    let zero = threshold(ThresholdType::Count, 0);
    assert_eq!(circuit_breaker_threshold(4, Some(&zero)), 1);
}

/// A service of `desired` tasks on `web:1` whose `web:2` tasks never
/// reach RUNNING.
fn failing_deployment(desired: u32, rollback: bool) -> (Sim, String, String) {
    let mut sim = Sim::replica("web", desired, 100, 200);
    sim.snap.circuit_breaker = Some(breaker(rollback));
    let good = sim.primary_id();
    let bad = sim.deploy("web:2");
    sim.launch = Launch::FailsToStart;
    (sim, good, bad)
}

/// Plays rounds (waiting out the backoff) until `bad` is FAILED; returns
/// the decisions, the last one being the round that failed it (whose
/// launches, if any, have not run yet).
fn run_until_failed(sim: &mut Sim, bad: &str) -> Vec<Decision> {
    let mut seen = Vec::new();
    for _ in 0..20 {
        let d = sim.round();
        let failed = messages(&d)
            .iter()
            .any(|m| m.contains(&format!("(deployment {bad}) deployment failed")));
        seen.push(d);
        if failed {
            return seen;
        }
        sim.finish_stops();
        sim.run_pending();
        sim.advance(MAX_BACKOFF_MILLIS);
    }
    panic!("the breaker never tripped");
}

#[test]
fn without_rollback_the_deployment_fails_and_launches_nothing_more() {
    let (mut sim, good, bad) = failing_deployment(3, false);
    let rounds = run_until_failed(&mut sim, &bad);
    let d = rounds.last().unwrap();
    let failed = &d.state.deployments[0];
    assert_eq!(failed.id, bad);
    assert_eq!(failed.status, DeploymentStatus::Primary);
    assert_eq!(failed.failed_tasks, 3);
    assert_eq!(
        failed.rollout_state_reason,
        "ECS deployment circuit breaker: tasks failed to start."
    );
    assert!(
        messages(d).contains(
            &format!("(service web) (deployment {bad}) deployment failed: tasks failed to start.")
                .as_str()
        )
    );
    // One wave of three launches failed it; no more will ever start.
    let launched: u32 = rounds.iter().map(started).sum();
    assert_eq!(launched, 3);
    for _ in 0..3 {
        sim.advance(MAX_BACKOFF_MILLIS);
        assert_eq!(started(&sim.tick()), 0);
    }
    // The old tasks keep serving.
    assert!(sim.live().iter().all(|t| t.started_by == good));
    assert_eq!(sim.live_count(), 3);
}

#[test]
fn with_rollback_a_new_deployment_returns_to_the_last_completed_one() {
    let (mut sim, good, bad) = failing_deployment(3, true);
    let rounds = run_until_failed(&mut sim, &bad);
    let d = rounds.last().unwrap();
    let rollback = &d.state.deployments[0];
    assert_ne!(rollback.id, good);
    assert_ne!(rollback.id, bad);
    assert!(rollback.id.starts_with("ecs-svc/") && rollback.id.len() == 27);
    assert_eq!(rollback.status, DeploymentStatus::Primary);
    assert_eq!(rollback.task_definition, "web:1");
    assert_eq!(rollback.rollout_state, DeploymentRolloutState::InProgress);
    assert_eq!(
        rollback.rollout_state_reason,
        format!("ECS deployment circuit breaker: rolling back to deploymentId {good}.")
    );
    // The failed deployment became ACTIVE and stays listed, FAILED, while
    // the rollback replaces it.
    let failed = d.state.deployments.iter().find(|x| x.id == bad).unwrap();
    assert_eq!(failed.status, DeploymentStatus::Active);
    assert_eq!(failed.rollout_state, DeploymentRolloutState::Failed);
    let tail: Vec<&str> = messages(d).into_iter().rev().take(2).rev().collect();
    assert_eq!(
        tail,
        [
            format!("(service web) (deployment {bad}) deployment failed: tasks failed to start."),
            format!("(service web) rolling back to deployment {good}."),
        ]
    );
    // The completed deployment is in use again: no second rollback to it.
    assert_eq!(d.state.last_completed, None);
    // The rollback rolls out (its tasks run) and completes.
    sim.launch = Launch::Runs;
    let last = sim.converge(10).pop().unwrap();
    assert!(sim.stable(&last));
    assert_eq!(last.state.deployments.len(), 1);
    assert_eq!(last.state.deployments[0].task_definition, "web:1");
    assert_eq!(
        last.state.deployments[0].rollout_state,
        DeploymentRolloutState::Completed
    );
    assert!(last.state.last_completed.is_some());
}

#[test]
fn with_rollback_but_nothing_completed_the_deployment_stalls() {
    let (mut sim, _good, bad) = failing_deployment(3, true);
    sim.state.last_completed = None;
    let rounds = run_until_failed(&mut sim, &bad);
    let d = rounds.last().unwrap();
    assert_eq!(d.state.deployments[0].id, bad);
    assert_eq!(
        d.state.deployments[0].rollout_state,
        DeploymentRolloutState::Failed
    );
    assert!(!messages(d).iter().any(|m| m.contains("rolling back")));
    sim.advance(MAX_BACKOFF_MILLIS);
    assert_eq!(started(&sim.tick()), 0);
}

#[test]
fn count_threshold_of_1_fails_on_the_first_failure_in_the_singular() {
    let (mut sim, _good, bad) = failing_deployment(1, false);
    sim.snap
        .circuit_breaker
        .as_mut()
        .unwrap()
        .threshold_configuration = Some(threshold(ThresholdType::Count, 1));
    let rounds = run_until_failed(&mut sim, &bad);
    assert_eq!(rounds.len(), 2, "one launch, one failure");
    assert_eq!(
        rounds[1].state.deployments[0].rollout_state_reason,
        "ECS deployment circuit breaker: task failed to start."
    );
}

#[test]
fn disabled_breaker_never_fails_a_deployment() {
    let (mut sim, _good, bad) = failing_deployment(3, false);
    sim.snap.circuit_breaker.as_mut().unwrap().enable = false;
    for _ in 0..10 {
        sim.tick();
        sim.advance(MAX_BACKOFF_MILLIS);
    }
    let primary = sim.state.primary().unwrap();
    assert_eq!(primary.id, bad);
    assert_eq!(primary.rollout_state, DeploymentRolloutState::InProgress);
    assert!(
        primary.failed_tasks >= 6,
        "still counted: {}",
        primary.failed_tasks
    );
}

/// Stage 2: once a task of the deployment ran, failures to start no
/// longer count, but failed health checks do.
#[test]
fn after_a_task_runs_only_health_check_failures_count() {
    let mut sim = Sim::replica("web", 2, 100, 200);
    sim.snap.circuit_breaker = Some(breaker(false));
    let bad = sim.deploy("web:2");
    let failed_tasks = |d: &Decision| {
        d.state
            .deployments
            .iter()
            .find(|x| x.id == bad)
            .unwrap()
            .failed_tasks
    };
    sim.round();
    sim.run_pending();
    for id in ["new001", "new002"] {
        let t = sim.task_mut(id);
        t.has_health_check = true;
        t.health = HealthStatus::Unhealthy;
    }
    // Unhealthy after a 0 s grace period: each counts once, and is stopped
    // (two old tasks still run, above the minimum of 2).
    let d = sim.round();
    assert!(d.state.deployments[0].reached_running);
    assert_eq!(failed_tasks(&d), 2);
    let health: Vec<&str> = messages(&d)
        .into_iter()
        .filter(|m| m.contains("health checks"))
        .collect();
    assert_eq!(
        health,
        [
            "(service web) (task new001) failed container health checks.",
            "(service web) (task new002) failed container health checks.",
        ]
    );
    assert_eq!(stopped_ids(&d), ["new001", "new002"]);
    assert!(
        d.stop
            .iter()
            .all(|s| s.reason == "Task failed container health checks")
    );
    // Failures to start are stage 1's business: no longer counted.
    sim.finish_stops();
    sim.launch = Launch::FailsToStart;
    let d = sim.round();
    assert_eq!((started(&d), failed_tasks(&d)), (2, 2));
    sim.run_pending();
    let d = sim.round();
    assert_eq!(failed_tasks(&d), 2);
    // A third failed health check trips it.
    sim.launch = Launch::Runs;
    sim.advance(MAX_BACKOFF_MILLIS);
    assert_eq!(started(&sim.round()), 2);
    sim.run_pending();
    let newest = sim.snap.tasks.last().unwrap().id.clone();
    let t = sim.task_mut(&newest);
    t.has_health_check = true;
    t.health = HealthStatus::Unhealthy;
    let d = sim.round();
    let p = d.state.deployments.iter().find(|x| x.id == bad).unwrap();
    assert_eq!(p.rollout_state, DeploymentRolloutState::Failed);
    assert_eq!(
        p.rollout_state_reason,
        "ECS deployment circuit breaker: tasks failed health checks."
    );
    assert!(
        messages(&d).contains(
            &format!(
                "(service web) (deployment {bad}) deployment failed: tasks failed health checks."
            )
            .as_str()
        )
    );
}

#[test]
fn a_healthy_task_resets_the_count_unless_told_not_to() {
    for reset in [None, Some(false)] {
        let mut sim = Sim::replica("web", 2, 100, 200);
        sim.snap.circuit_breaker = Some(breaker(false));
        sim.snap
            .circuit_breaker
            .as_mut()
            .unwrap()
            .reset_on_healthy_task = reset;
        sim.deploy("web:2");
        sim.launch = Launch::FailsToStart;
        sim.tick();
        let d = sim.round();
        assert_eq!(d.state.deployments[0].failed_tasks, 2);
        sim.launch = Launch::Runs;
        sim.advance(MAX_BACKOFF_MILLIS);
        sim.tick();
        let d = sim.round();
        let expected = if reset.is_none() { 0 } else { 2 };
        assert_eq!(
            d.state.deployments[0].failed_tasks, expected,
            "reset {reset:?}"
        );
    }
}

#[test]
fn a_failed_deployment_with_tasks_left_stays_listed_as_active_and_failed() {
    let mut sim = Sim::replica("web", 3, 100, 200);
    sim.snap.circuit_breaker = Some(breaker(true));
    let good = sim.primary_id();
    let bad = sim.deploy("web:2");
    assert_eq!(started(&sim.round()), 3);
    sim.run_pending();
    for t in sim.snap.tasks.iter_mut().filter(|t| t.started_by == bad) {
        t.has_health_check = true;
        t.health = HealthStatus::Unhealthy;
    }
    let d = sim.round();
    let ids: Vec<(&str, DeploymentStatus, DeploymentRolloutState)> = d
        .state
        .deployments
        .iter()
        .map(|x| (x.id.as_str(), x.status, x.rollout_state))
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0].1, DeploymentStatus::Primary);
    assert_eq!(ids[0].2, DeploymentRolloutState::InProgress);
    assert_eq!(
        ids[1],
        (
            bad.as_str(),
            DeploymentStatus::Active,
            DeploymentRolloutState::Failed
        )
    );
    assert_eq!(
        ids[2],
        (
            good.as_str(),
            DeploymentStatus::Active,
            DeploymentRolloutState::Completed
        )
    );
    assert_eq!(d.state.deployments[1].failed_tasks, 3);
}

/// A container that exits at once reaches RUNNING for a moment: its tasks
/// still fail the deployment ("failed to start") and the rollback returns
/// to the last completed deployment, while the old tasks keep serving.
#[test]
fn tasks_whose_container_exits_at_once_trip_the_breaker() {
    let mut sim = Sim::replica("web", 3, 100, 200);
    sim.snap.circuit_breaker = Some(breaker(true));
    let good = sim.primary_id();
    let bad = sim.deploy("web:2");
    sim.launch = Launch::ExitsAtOnce;
    let rounds = run_until_failed(&mut sim, &bad);
    let (d, before) = rounds.split_last().unwrap();
    let crashed: u32 = before.iter().map(started).sum();
    assert_eq!(crashed, 3, "one wave of three crashing tasks trips it");
    // The round that trips it starts the rollback's tasks.
    assert_eq!(started(d), 3);
    assert!(d.start.iter().all(|s| s.task_definition == "web:1"));
    assert!(
        messages(d).contains(
            &format!("(service web) (deployment {bad}) deployment failed: tasks failed to start.")
                .as_str()
        )
    );
    assert_eq!(
        d.state.deployments[0].rollout_state_reason,
        format!("ECS deployment circuit breaker: rolling back to deploymentId {good}.")
    );
    // Crashes of tasks that ran are not launch failures: no backoff.
    assert_eq!(d.state.throttle, Throttle::default());
    assert_eq!(sim.trough_healthy, 3);
}

/// A task that was healthy and then died (killed, crashed later) is
/// replaced but is no failure of its deployment.
#[test]
fn a_task_that_dies_after_turning_healthy_does_not_count() {
    let mut sim = Sim::replica("web", 2, 100, 200);
    sim.snap.circuit_breaker = Some(breaker(false));
    let bad = sim.deploy("web:2");
    sim.converge(10);
    let d = sim.tick();
    assert_eq!(d.state.deployments[0].id, bad);
    let victim = sim.live()[0].id.clone();
    let t = sim.task_mut(&victim);
    t.last_status = TaskStatus::Stopped;
    t.stop_code = Some(TaskStopCode::EssentialContainerExited);
    let d = sim.round();
    assert_eq!(started(&d), 1);
    assert_eq!(d.state.deployments[0].failed_tasks, 0);
}

/// ECS keeps a failed deployment in `deployments[]` (ACTIVE, FAILED) while
/// the rollback (PRIMARY) replaces it, even when none of its tasks ever
/// ran: the round that fails it must not drop it, or no client would ever
/// see the FAILED rollout state. It leaves as the rollback completes.
#[test]
fn a_failed_deployment_stays_listed_while_its_rollback_rolls_out() {
    let (mut sim, good, bad) = failing_deployment(3, true);
    let rounds = run_until_failed(&mut sim, &bad);
    let d = rounds.last().unwrap();
    let listed: Vec<(&str, DeploymentStatus, DeploymentRolloutState)> = d
        .state
        .deployments
        .iter()
        .map(|x| (x.id.as_str(), x.status, x.rollout_state))
        .collect();
    let rollback = d.state.deployments[0].id.clone();
    assert_eq!(
        listed,
        [
            (
                rollback.as_str(),
                DeploymentStatus::Primary,
                DeploymentRolloutState::InProgress
            ),
            (
                bad.as_str(),
                DeploymentStatus::Active,
                DeploymentRolloutState::Failed
            ),
            (
                good.as_str(),
                DeploymentStatus::Active,
                DeploymentRolloutState::Completed
            ),
        ]
    );
    let failed = &d.state.deployments[1];
    assert_eq!((failed.running_count, failed.pending_count), (0, 0));
    assert_eq!(
        failed.rollout_state_reason,
        "ECS deployment circuit breaker: tasks failed to start."
    );
    // Rounds go by while the rollback's tasks start: still listed, and the
    // service is not stable (services-stable wants one deployment).
    sim.launch = Launch::Runs;
    sim.finish_stops();
    sim.run_pending();
    let d = sim.round();
    assert!(d.state.deployments.iter().any(|x| x.id == bad));
    assert!(!sim.stable(&d));
    // The rollback completes: the failed and the replaced deployments are
    // gone in the same round, leaving the rollback, COMPLETED.
    let last = sim.converge(10).pop().unwrap();
    assert_eq!(last.state.deployments.len(), 1);
    assert_eq!(last.state.deployments[0].id, rollback);
    assert_eq!(
        last.state.deployments[0].rollout_state,
        DeploymentRolloutState::Completed
    );
}

/// Without rollback nothing replaces the failed deployment: it stays the
/// PRIMARY, FAILED, and the old deployment keeps its tasks and its place.
#[test]
fn a_failed_deployment_replaced_by_a_user_stays_listed_until_the_new_one_completes() {
    let (mut sim, _good, bad) = failing_deployment(3, false);
    run_until_failed(&mut sim, &bad);
    sim.launch = Launch::Runs;
    let fix = sim.deploy("web:3");
    let d = sim.round();
    let failed = d.state.deployments.iter().find(|x| x.id == bad).unwrap();
    assert_eq!(
        (failed.status, failed.rollout_state),
        (DeploymentStatus::Active, DeploymentRolloutState::Failed)
    );
    let last = sim.converge(10).pop().unwrap();
    let ids: Vec<&str> = last
        .state
        .deployments
        .iter()
        .map(|x| x.id.as_str())
        .collect();
    assert_eq!(ids, [fix.as_str()]);
}
