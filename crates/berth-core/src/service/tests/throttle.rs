//! The launch backoff for tasks that never reach RUNNING: growing delays
//! up to 27 minutes, the "unable to consistently start" event, and its
//! resets.

use berth_types::TaskStopCode;

use super::sim::*;
use crate::service::*;

const IMPAIRED: &str = "(service web) is unable to consistently start tasks successfully.";

#[test]
fn delays_double_from_5_seconds_up_to_27_minutes() {
    let secs: Vec<i64> = (0..=12).map(|n| backoff_millis(n) / 1000).collect();
    assert_eq!(
        secs,
        [0, 5, 10, 20, 40, 80, 160, 320, 640, 1280, 1620, 1620, 1620]
    );
    assert_eq!(backoff_millis(u32::MAX), MAX_BACKOFF_MILLIS);
    assert_eq!(MAX_BACKOFF_MILLIS, 27 * 60 * 1000);
}

/// A service whose tasks all stop before RUNNING.
fn failing() -> Sim {
    let mut snap = snapshot("web", 1, 100, 200);
    snap.tasks.clear();
    let state = ServiceState::new(deployment_id_at(T0), "web:1".into(), 1, T0);
    let mut sim = Sim::new(snap, state);
    sim.launch = Launch::FailsToStart;
    sim
}

#[test]
fn tasks_that_never_run_are_retried_with_growing_delays() {
    let mut sim = failing();
    let mut delays = Vec::new();
    let mut impaired_events = 0;
    let mut last_launch = None;
    // 14 launch cycles: past the cap, well within six hours.
    for _ in 0..28 {
        let d = sim.round();
        impaired_events += messages(&d).iter().filter(|m| **m == IMPAIRED).count();
        if started(&d) > 0 {
            if let Some(at) = last_launch {
                delays.push((sim.now - at) / 1000);
            }
            last_launch = Some(sim.now);
        } else {
            // Waiting: the round says until when.
            assert_eq!(d.next_wakeup_millis, d.state.throttle.retry_at_millis);
        }
        sim.run_pending();
        // Wake exactly when asked to.
        sim.now = d
            .next_wakeup_millis
            .unwrap_or(sim.now + 1_000)
            .max(sim.now + 1);
    }
    // Each launch fails; the next one waits 5 s, 10 s … then 27 min. The
    // measured gap adds the round that notices the failure (LAUNCH_RETRY).
    let gaps: Vec<i64> = delays
        .iter()
        .map(|d| d - LAUNCH_RETRY_MILLIS / 1000)
        .collect();
    assert_eq!(gaps[..6], [5, 10, 20, 40, 80, 160]);
    assert!(gaps.iter().all(|&g| g <= 1620));
    assert_eq!(*gaps.last().unwrap(), 1620);
    // Reported once, however long it lasts (below six hours).
    assert_eq!(impaired_events, 1);
}

#[test]
fn a_new_task_definition_resets_the_backoff() {
    let mut sim = failing();
    sim.round();
    sim.run_pending();
    let d = sim.round();
    assert!(d.start.is_empty());
    assert!(d.state.throttle.blocks(sim.now));
    sim.deploy("web:2");
    assert_eq!(sim.state.throttle, Throttle::default());
    assert_eq!(started(&sim.round()), 1);
}

#[test]
fn a_forced_deployment_of_the_same_definition_keeps_the_backoff() {
    let mut sim = failing();
    sim.round();
    sim.run_pending();
    sim.round();
    let before = sim.state.throttle;
    assert!(before.blocks(sim.now));
    sim.deploy("web:1");
    assert_eq!(sim.state.throttle, before);
    assert!(sim.round().start.is_empty());
}

#[test]
fn a_task_reaching_running_resets_the_backoff() {
    let mut sim = failing();
    sim.round();
    sim.run_pending();
    sim.round();
    assert_eq!(sim.state.throttle.consecutive_failures, 1);
    sim.launch = Launch::Runs;
    sim.advance(MAX_BACKOFF_MILLIS);
    sim.round();
    sim.run_pending();
    let d = sim.round();
    assert_eq!(d.state.throttle, Throttle::default());
}

#[test]
fn tasks_that_ran_then_died_do_not_throttle() {
    let mut sim = Sim::replica("web", 2, 100, 200);
    let t = sim.task_mut("old00");
    t.last_status = TaskStatus::Stopped;
    t.stop_code = Some(TaskStopCode::EssentialContainerExited);
    let d = sim.round();
    assert_eq!(d.state.throttle, Throttle::default());
    assert_eq!(started(&d), 1);
}
