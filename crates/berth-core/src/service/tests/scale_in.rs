//! Which tasks a scale-in stops: not-yet-running ones, then unhealthy,
//! then old-deployment ones, then from the fullest zone and instance.

use berth_types::HealthStatus;

use super::sim::*;
use crate::service::*;

fn service_with(tasks: Vec<TaskView>, desired: u32) -> Sim {
    let mut snap = snapshot("web", desired, 50, 200);
    snap.instances = vec![
        instance("i-a1", "a"),
        instance("i-a2", "a"),
        instance("i-b1", "b"),
        instance("i-c1", "c"),
    ];
    snap.tasks = tasks;
    let state = ServiceState::new("ecs-svc/1".into(), "web:1".into(), desired, T0 - 3_600_000);
    Sim::new(snap, state)
}

#[test]
fn scale_in_keeps_the_zones_balanced() {
    // Zone a holds 4 tasks (3 on i-a1), b 2, c 1. Scaling 7 → 4 stops from
    // the fullest zone each time, and within it from the busiest
    // instance: i-a1, i-a1, then (a and b tied at 2) the busier i-b1.
    let tasks = vec![
        running("t1", "ecs-svc/1", "i-a1", "a"),
        running("t2", "ecs-svc/1", "i-a1", "a"),
        running("t3", "ecs-svc/1", "i-a1", "a"),
        running("t4", "ecs-svc/1", "i-a2", "a"),
        running("t5", "ecs-svc/1", "i-b1", "b"),
        running("t6", "ecs-svc/1", "i-b1", "b"),
        running("t7", "ecs-svc/1", "i-c1", "c"),
    ];
    let mut sim = service_with(tasks, 4);
    let d = sim.round();
    assert_eq!(d.stop.len(), 3);
    sim.finish_stops();
    let mut per_zone = std::collections::BTreeMap::new();
    for t in sim.live() {
        *per_zone
            .entry(t.availability_zone.clone().unwrap())
            .or_insert(0) += 1;
    }
    let counts: Vec<i32> = per_zone.values().copied().collect();
    assert!(
        counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
        "{per_zone:?}"
    );
    let mut ids = stopped_ids(&d);
    ids.sort_unstable();
    assert_eq!(ids, ["t1", "t2", "t5"]);
}

#[test]
fn scale_in_stops_pending_then_unhealthy_before_healthy_tasks() {
    let mut pending = running("p", "ecs-svc/1", "i-c1", "c");
    pending.last_status = TaskStatus::Pending;
    pending.started_at_millis = None;
    let mut sick = running("u", "ecs-svc/1", "i-c1", "c");
    sick.has_health_check = true;
    sick.health = HealthStatus::Unhealthy;
    let tasks = vec![
        running("h1", "ecs-svc/1", "i-a1", "a"),
        running("h2", "ecs-svc/1", "i-a1", "a"),
        running("h3", "ecs-svc/1", "i-a1", "a"),
        pending,
        sick,
    ];
    let mut sim = service_with(tasks, 3);
    let d = sim.round();
    let mut ids = stopped_ids(&d);
    ids.sort_unstable();
    assert_eq!(ids, ["p", "u"]);
}

#[test]
fn the_oldest_deployment_goes_first() {
    // Deployments 0 (oldest), 1, then 2 (PRIMARY, one task still
    // pending): with 100 % of 2 healthy required, one old task may go.
    let mut p2 = running("p2", "ecs-svc/2", "i-b1", "b");
    p2.last_status = TaskStatus::Pending;
    p2.started_at_millis = None;
    let tasks = vec![
        running("m1", "ecs-svc/1", "i-a1", "a"),
        running("o1", "ecs-svc/0", "i-a2", "a"),
        running("p1", "ecs-svc/2", "i-c1", "c"),
        p2,
    ];
    let mut sim = service_with(tasks, 2);
    sim.snap.minimum_healthy_percent = Some(100);
    sim.state = ServiceState::new("ecs-svc/0".into(), "web:0".into(), 2, T0 - 3_000_000);
    sim.state
        .begin_deployment("ecs-svc/1".into(), "web:1".into(), 2, T0 - 2_000_000);
    sim.state
        .begin_deployment("ecs-svc/2".into(), "web:2".into(), 2, T0 - 1_000_000);
    let d = sim.round();
    assert_eq!(stopped_ids(&d), ["o1"]);
    assert!(d.start.is_empty());
}

#[test]
fn a_deployment_keeps_warming_tasks_until_new_ones_count() {
    // Three tasks RUNNING for 5 s (inside the 40 s warm-up) when a new
    // deployment starts at 100/200: none counts as healthy yet, so none of
    // them may go before the new tasks count; then they go.
    let mut sim = Sim::replica("web", 3, 100, 200);
    for t in &mut sim.snap.tasks {
        t.started_at_millis = Some(T0 - 5_000);
    }
    sim.deploy("web:2");
    let d = sim.round();
    assert_eq!((started(&d), d.stop.len()), (3, 0));
    sim.run_pending();
    sim.advance(1_000);
    let d = sim.round();
    assert!(d.stop.is_empty(), "{:?}", stopped_ids(&d));
    // Once the new tasks are healthy, the old ones are surplus.
    sim.advance(HEALTHY_AFTER_MILLIS);
    let d = sim.round();
    let mut ids = stopped_ids(&d);
    ids.sort_unstable();
    assert_eq!(ids, ["old00", "old01", "old02"]);
}

#[test]
fn scaling_to_zero_stops_warming_tasks_at_once() {
    let mut sim = Sim::replica("web", 2, 100, 200);
    for t in &mut sim.snap.tasks {
        t.started_at_millis = Some(T0 - 5_000);
    }
    sim.snap.desired_count = 0;
    let d = sim.round();
    assert_eq!(d.stop.len(), 2);
}
