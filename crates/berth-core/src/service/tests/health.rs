//! Tasks failing their container health check: ignored during
//! healthCheckGracePeriodSeconds, then replaced — replacement first when
//! maximumPercent allows, else stopped one by one within the minimum.

use berth_types::{HealthStatus, TaskStopCode};

use super::sim::*;
use crate::service::*;

fn with_checks(sim: &mut Sim) {
    for t in &mut sim.snap.tasks {
        t.has_health_check = true;
        t.health = HealthStatus::Healthy;
    }
}

#[test]
fn an_unhealthy_task_is_ignored_during_the_grace_period() {
    let mut sim = Sim::replica("web", 2, 100, 200);
    with_checks(&mut sim);
    sim.snap.health_check_grace_period_seconds = 120;
    let t = sim.task_mut("old00");
    t.started_at_millis = Some(T0 - 60_000);
    t.health = HealthStatus::Unhealthy;
    let d = sim.round();
    assert!(d.start.is_empty() && d.stop.is_empty());
    assert!(d.events.is_empty());
    // The round asks to be woken when the grace period ends.
    assert_eq!(d.next_wakeup_millis, Some(T0 + 60_000));
    sim.advance(60_000);
    let d = sim.round();
    assert_eq!(
        messages(&d),
        ["(service web) (task old00) failed container health checks."]
    );
    assert_eq!(started(&d), 1);
}

#[test]
fn with_room_under_the_maximum_the_replacement_starts_first() {
    let mut sim = Sim::replica("web", 2, 100, 200);
    with_checks(&mut sim);
    sim.task_mut("old00").health = HealthStatus::Unhealthy;
    let d = sim.round();
    assert_eq!((started(&d), d.stop.len()), (1, 0));
    sim.run_pending();
    let d = sim.round();
    assert!(d.stop.is_empty(), "the replacement is not healthy yet");
    // The replacement passes its health check: now the unhealthy one goes.
    let t = sim.task_mut("new001");
    t.has_health_check = true;
    t.health = HealthStatus::Healthy;
    let d = sim.round();
    assert_eq!(stopped_ids(&d), ["old00"]);
    assert_eq!(d.stop[0].reason, "Task failed container health checks");
    assert_eq!(d.stop[0].code, TaskStopCode::ServiceSchedulerInitiated);
    assert!(sim.trough_healthy >= 1);
}

#[test]
fn without_room_unhealthy_tasks_stop_one_by_one_within_the_minimum() {
    // 4 tasks at 75/100: lower 3, upper 4; two unhealthy.
    let mut sim = Sim::replica("web", 4, 75, 100);
    with_checks(&mut sim);
    sim.task_mut("old00").health = HealthStatus::Unhealthy;
    sim.task_mut("old01").health = HealthStatus::Unhealthy;
    let d = sim.round();
    assert_eq!(started(&d), 0);
    assert_eq!(d.stop.len(), 1, "only one may go: 4 running, 3 must stay");
    sim.finish_stops();
    let d = sim.round();
    assert_eq!((started(&d), d.stop.len()), (1, 0));
    sim.run_pending();
    let t = sim.snap.tasks.last_mut().unwrap();
    t.has_health_check = true;
    t.health = HealthStatus::Healthy;
    let d = sim.round();
    assert_eq!(d.stop.len(), 1);
    assert!(sim.peak_live <= 4);
}

#[test]
fn a_task_without_health_check_counts_40_seconds_after_running() {
    let mut sim = Sim::replica("web", 1, 100, 200);
    sim.deploy("web:2");
    sim.round();
    sim.run_pending();
    sim.advance(HEALTHY_AFTER_MILLIS - 1);
    let d = sim.round();
    assert!(d.stop.is_empty());
    assert_eq!(d.next_wakeup_millis, Some(sim.now + 1));
    sim.advance(1);
    assert_eq!(sim.round().stop.len(), 1);
}
