//! Lost hosts (Berth's rule, beyond ECS): tasks on an agent disconnected
//! longer than the timeout are recorded STOPPED with a clear reason and
//! replaced, never exceeding maximumPercent.

use berth_types::TaskStopCode;

use super::sim::*;
use crate::service::*;

const LOST_A: &str =
    "Task lost: the agent on container instance i-a was disconnected for more than 60 seconds.";

#[test]
fn tasks_of_an_agent_away_past_the_timeout_are_lost_and_replaced() {
    let mut sim = Sim::replica("web", 4, 100, 100);
    sim.snap.instances[0].disconnected_since_millis = Some(T0 - 60_000);
    let d = sim.round();
    let lost: Vec<&StopTask> = d
        .stop
        .iter()
        .filter(|s| s.how == StopHow::MarkStopped)
        .collect();
    assert_eq!(lost.len(), 2);
    for s in &lost {
        assert_eq!(s.code, TaskStopCode::InfrastructureHealth);
        assert_eq!(s.reason, LOST_A);
        assert_eq!(sim.task(&s.task_id).instance_id.as_deref(), Some("i-a"));
    }
    // Replaced in the same round, within maximumPercent (100 %: 4 tasks).
    assert_eq!(started(&d), 2);
    assert_eq!(sim.live_count(), 4);
    assert_eq!(d.counts.running, 2, "lost tasks no longer count");
    assert!(
        messages(&d)
            .contains(&"(service web) has stopped 2 running tasks: (task old00) (task old02).")
    );
    // Next round: they are STOPPED and nothing is counted as a failure.
    let d = sim.round();
    assert!(d.stop.is_empty());
    assert_eq!(d.state.throttle, Throttle::default());
}

#[test]
fn an_agent_away_for_less_than_the_timeout_is_waited_for() {
    let mut sim = Sim::replica("web", 2, 100, 200);
    sim.converge(3);
    sim.snap.instances[0].disconnected_since_millis = Some(sim.now - 59_000);
    let d = sim.round();
    assert!(d.stop.is_empty() && d.start.is_empty());
    assert_eq!(d.next_wakeup_millis, Some(sim.now + 1_000));
    sim.advance(1_000);
    let d = sim.round();
    assert_eq!(d.stop.len(), 1);
    assert_eq!(started(&d), 1);
}

#[test]
fn the_timeout_is_configurable() {
    let mut sim = Sim::replica("web", 2, 100, 200);
    sim.snap.lost_agent_timeout_millis = 300_000;
    sim.snap.instances[0].disconnected_since_millis = Some(T0 - 120_000);
    assert!(sim.round().stop.is_empty());
    sim.advance(180_000);
    let d = sim.round();
    assert_eq!(
        d.stop[0].reason,
        "Task lost: the agent on container instance i-a was disconnected for more than 300 seconds."
    );
}

#[test]
fn a_lost_task_already_stopping_is_recorded_stopped_too() {
    let mut sim = Sim::replica("web", 1, 100, 200);
    let t = sim.task_mut("old00");
    t.stop_requested = true;
    t.last_status = TaskStatus::Stopping;
    sim.snap.instances[0].disconnected_since_millis = Some(T0 - 600_000);
    let d = sim.round();
    assert_eq!(stopped_ids(&d), ["old00"]);
    assert_eq!(d.stop[0].how, StopHow::MarkStopped);
    assert_eq!(started(&d), 1);
}
