//! Service deployments: one per user deployment, moved along by the
//! scheduler (started, completed, stopped, failed, rolled back), with its
//! revisions' counts.

use berth_types::{ServiceDeploymentRollbackMonitorsStatus as Monitor, ServiceDeploymentStatus};

use super::sim::*;
use crate::service::*;

fn counts(revision: &str, requested: u32, running: u32, pending: u32) -> RevisionCounts {
    RevisionCounts {
        revision: revision.into(),
        requested,
        running,
        pending,
    }
}

#[test]
fn a_new_service_records_a_pending_service_deployment_without_sources() {
    let state = ServiceState::new(deployment_id_at(T0), "web:1".into(), 2, T0);
    let [h] = state.history.as_slice() else {
        panic!("one service deployment: {:?}", state.history);
    };
    assert_eq!(h.id, revision_id(&deployment_id_at(T0)));
    assert_eq!(h.deployment_id, deployment_id_at(T0));
    assert_eq!(h.status, ServiceDeploymentStatus::Pending);
    assert_eq!(h.target, counts(&h.id, 2, 0, 0));
    assert!(h.sources.is_empty());
    assert_eq!((h.created_at_millis, h.started_at_millis), (T0, None));
    assert_eq!(state.deployments[0].revision(), h.id);
}

#[test]
fn a_deployment_starts_counts_and_succeeds() {
    let mut sim = Sim::replica("web", 2, 100, 200);
    sim.snap.circuit_breaker = Some(breaker(false));
    let old = sim.primary_id();
    let new = sim.deploy("web:2");
    let d = sim.round();
    let h = &d.state.history[0];
    assert_eq!(h.deployment_id, new);
    assert_eq!(h.status, ServiceDeploymentStatus::InProgress);
    assert_eq!(h.started_at_millis, Some(T0));
    assert_eq!(h.sources, [counts(revision_id(&old), 0, 2, 0)]);
    assert_eq!(
        h.circuit_breaker,
        Some(BreakerRecord {
            status: Monitor::Monitoring,
            failure_count: 0,
            threshold: 3
        })
    );
    let last = sim.converge(10).pop().unwrap();
    let h = &last.state.history[0];
    assert_eq!(h.status, ServiceDeploymentStatus::Successful);
    assert_eq!(h.status_reason, None);
    assert!(h.finished_at_millis.is_some() && h.stopped_at_millis.is_none());
    assert_eq!(h.target, counts(revision_id(&new), 2, 2, 0));
    assert_eq!(h.sources, [counts(revision_id(&old), 0, 0, 0)]);
    assert_eq!(
        h.circuit_breaker.map(|b| b.status),
        Some(Monitor::MonitoringComplete)
    );
    // Nothing changes once it ended.
    let before = last.state.history.clone();
    let d = sim.tick();
    assert_eq!(d.state.history, before);
}

#[test]
fn a_newer_deployment_stops_the_one_in_progress() {
    let mut sim = Sim::replica("web", 2, 100, 200);
    let first = sim.deploy("web:2");
    sim.round();
    sim.advance(1_000);
    let second = sim.deploy("web:3");
    let ids: Vec<(&str, ServiceDeploymentStatus)> = sim
        .state
        .history
        .iter()
        .map(|h| (h.deployment_id.as_str(), h.status))
        .collect();
    assert_eq!(
        ids[..2],
        [
            (second.as_str(), ServiceDeploymentStatus::Pending),
            (first.as_str(), ServiceDeploymentStatus::Stopped),
        ]
    );
    // The service's first deployment had completed long before.
    assert_eq!(ids[2].1, ServiceDeploymentStatus::Successful);
    let stopped = &sim.state.history[1];
    assert_eq!(stopped.stopped_at_millis, Some(T0 + 1_000));
    assert_eq!(stopped.status_reason.as_deref(), Some(SUPERSEDED_REASON));
    // The revisions in service: the PRIMARY's (web:2, its tasks pending)
    // and the old one's.
    let sources: Vec<&str> = sim.state.history[0]
        .sources
        .iter()
        .map(|s| s.revision.as_str())
        .collect();
    assert_eq!(
        sources,
        [revision_id(&first), sim.state.deployments[2].revision()]
    );
}

#[test]
fn without_rollback_a_failed_deployment_is_stopped_by_the_breaker() {
    let mut sim = Sim::replica("web", 3, 100, 200);
    sim.snap.circuit_breaker = Some(breaker(false));
    let bad = sim.deploy("web:2");
    sim.launch = Launch::FailsToStart;
    for _ in 0..20 {
        sim.tick();
        sim.advance(MAX_BACKOFF_MILLIS);
        if !sim.state.history[0].is_ongoing() {
            break;
        }
    }
    let h = &sim.state.history[0];
    assert_eq!(h.deployment_id, bad);
    assert_eq!(h.status, ServiceDeploymentStatus::Stopped);
    assert!(h.stopped_at_millis.is_some());
    assert_eq!(
        h.status_reason.as_deref(),
        Some("ECS deployment circuit breaker: tasks failed to start.")
    );
    assert_eq!(
        h.circuit_breaker,
        Some(BreakerRecord {
            status: Monitor::Triggered,
            failure_count: 3,
            threshold: 3
        })
    );
    assert_eq!(h.rollback, None);
}

#[test]
fn with_rollback_the_failed_service_deployment_rolls_back_and_succeeds() {
    let mut sim = Sim::replica("web", 3, 100, 200);
    sim.snap.circuit_breaker = Some(breaker(true));
    let good = sim.primary_id();
    let bad = sim.deploy("web:2");
    sim.launch = Launch::FailsToStart;
    for round in 0.. {
        assert!(round < 20, "the breaker never tripped");
        sim.round();
        if sim.state.history[0].status != ServiceDeploymentStatus::InProgress {
            break;
        }
        sim.finish_stops();
        sim.run_pending();
        sim.advance(MAX_BACKOFF_MILLIS);
    }
    assert_eq!(
        sim.state.history.len(),
        2,
        "a rollback is no new service deployment"
    );
    let h = &sim.state.history[0];
    assert_eq!(h.deployment_id, bad);
    assert_eq!(h.status, ServiceDeploymentStatus::RollbackInProgress);
    let rollback = h.rollback.clone().expect("rollback details");
    assert_eq!(rollback.revision, revision_id(&good));
    assert_eq!(rollback.deployment_id, sim.primary_id());
    assert_eq!(
        rollback.reason,
        format!("ECS deployment circuit breaker: rolling back to deploymentId {good}.")
    );
    assert_eq!(sim.state.deployments[0].revision(), revision_id(&good));
    sim.launch = Launch::Runs;
    sim.converge(10);
    let h = &sim.state.history[0];
    assert_eq!(h.status, ServiceDeploymentStatus::RollbackSuccessful);
    assert!(h.finished_at_millis.is_some());
    // The revision rolled back to runs again; the failed one has nothing.
    assert_eq!(h.sources, [counts(revision_id(&good), 3, 3, 0)]);
    assert_eq!(h.target, counts(revision_id(&bad), 0, 0, 0));
}

#[test]
fn with_rollback_but_nothing_to_return_to_the_rollback_fails() {
    let mut sim = Sim::replica("web", 3, 100, 200);
    sim.snap.circuit_breaker = Some(breaker(true));
    sim.state.last_completed = None;
    sim.deploy("web:2");
    sim.launch = Launch::FailsToStart;
    for _ in 0..20 {
        sim.tick();
        sim.advance(MAX_BACKOFF_MILLIS);
        if !sim.state.history[0].is_ongoing() {
            break;
        }
    }
    let h = &sim.state.history[0];
    assert_eq!(h.status, ServiceDeploymentStatus::RollbackFailed);
    assert_eq!(h.rollback, None);
    assert!(h.finished_at_millis.is_some());
}

#[test]
fn history_is_bounded_and_ids_never_repeat() {
    let mut state = ServiceState::new(deployment_id_at(T0), "web:1".into(), 1, T0);
    for n in 0..30 {
        // Several deployments in the same millisecond still get fresh ids.
        let id = state.fresh_deployment_id(T0 + n / 3);
        state.begin_deployment(id, format!("web:{}", n + 2), 1, T0 + n / 3);
    }
    assert_eq!(state.history.len(), MAX_SERVICE_DEPLOYMENTS);
    let mut ids: Vec<&str> = state.history.iter().map(|h| h.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), MAX_SERVICE_DEPLOYMENTS);
    assert!(
        state.history[1..]
            .iter()
            .all(|h| h.status == ServiceDeploymentStatus::Stopped)
    );
}
