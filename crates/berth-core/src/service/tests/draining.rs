//! REPLICA tasks on a DRAINING container instance: PENDING ones stop at
//! once, RUNNING ones are replaced elsewhere within the bounds.

use super::sim::*;
use crate::service::*;

/// Four tasks, two on each instance; `i-a` starts draining.
fn draining(min: u32, max: u32) -> Sim {
    let mut sim = Sim::replica("web", 4, min, max);
    sim.snap.instances[0].status = InstanceStatus::Draining;
    sim
}

fn on_a(sim: &Sim, d: &Decision) -> usize {
    d.stop
        .iter()
        .filter(|s| sim.task(&s.task_id).instance_id.as_deref() == Some("i-a"))
        .count()
}

#[test]
fn pending_tasks_on_a_draining_instance_stop_at_once() {
    let mut sim = draining(100, 200);
    let primary = sim.primary_id();
    let mut pending = running("p1", &primary, "i-a", "us-east-1a");
    pending.last_status = TaskStatus::Pending;
    pending.started_at_millis = None;
    sim.snap.tasks.push(pending);
    sim.snap.desired_count = 5;
    let d = sim.round();
    assert!(stopped_ids(&d).contains(&"p1"));
}

#[test]
fn with_min_100_replacements_start_before_old_tasks_stop() {
    let mut sim = draining(100, 200);
    let d = sim.round();
    assert_eq!((started(&d), d.stop.len()), (2, 0));
    sim.run_pending();
    sim.advance(WARM);
    let d = sim.round();
    assert_eq!(on_a(&sim, &d), 2);
    sim.finish_stops();
    let last = sim.converge(5).pop().unwrap();
    assert!(sim.stable(&last));
    assert!(
        sim.live()
            .iter()
            .all(|t| t.instance_id.as_deref() == Some("i-b"))
    );
    assert!(sim.trough_healthy >= 4);
    // The draining tasks were the only ones replaced: still the one
    // (completed) deployment.
    assert_eq!(last.state.deployments.len(), 1);
}

#[test]
fn with_max_100_old_tasks_stop_before_replacements_start() {
    let mut sim = draining(50, 100);
    let d = sim.round();
    assert_eq!((started(&d), on_a(&sim, &d)), (0, 2));
    sim.finish_stops();
    let d = sim.round();
    assert_eq!(started(&d), 2);
    assert!(sim.peak_live <= 4);
}

#[test]
fn the_service_is_not_steady_while_a_task_sits_on_a_draining_instance() {
    let mut sim = Sim::replica("web", 2, 100, 200);
    sim.converge(3);
    sim.snap.instances[0].status = InstanceStatus::Draining;
    sim.launch = Launch::Unplaceable(PlacementFailure {
        reason: "RESOURCE:MEMORY".into(),
        closest_instance: Some("i-b".into()),
    });
    let d = sim.round();
    assert_eq!(started(&d), 1);
    let d = sim.round();
    assert!(!messages(&d).contains(&"(service web) has reached a steady state."));
    assert!(
        d.stop.is_empty(),
        "the minimum keeps the draining task until replaced"
    );
}
