//! The worked examples of `ecs-semantics.md` §2.4
//! ("minimumHealthyPercent / maximumPercent"), one test each, named after
//! the table row, played as a rolling deployment from `web:1` to `web:2`.

use super::sim::*;
use crate::service::*;

const BLOCKED: &str = "(service web) was unable to stop or start tasks during a deployment \
                       because of the service deployment configuration. Update the \
                       minimumHealthyPercent or maximumPercent value and try again.";

/// The old deployment's tasks that a decision stops.
fn old_stops(sim: &Sim, d: &Decision) -> usize {
    let primary = sim.primary_id();
    d.stop
        .iter()
        .filter(|s| sim.task(&s.task_id).started_by != primary)
        .count()
}

/// After the deployment: only `web:2` tasks, one deployment, COMPLETED.
fn assert_rolled_out(sim: &Sim, d: &Decision, desired: u32) {
    let primary = sim.primary_id();
    assert!(sim.stable(d));
    assert_eq!(d.counts.running, desired);
    assert!(sim.live().iter().all(|t| t.started_by == primary));
    assert_eq!(
        d.state.deployments[0].rollout_state,
        berth_types::DeploymentRolloutState::Completed
    );
}

#[test]
fn desired_4_at_50_200_may_stop_2_old_first_or_start_4_new() {
    assert_eq!(Bounds::new(4, 50, 200), Bounds { lower: 2, upper: 8 });
    let mut sim = Sim::replica("web", 4, 50, 200);
    let primary = sim.deploy("web:2");
    let d = sim.round();
    assert_eq!(started(&d), 4);
    assert_eq!(old_stops(&sim, &d), 2);
    // The two stops keep the zones balanced: one from each.
    let zones: Vec<_> = d
        .stop
        .iter()
        .map(|s| sim.task(&s.task_id).availability_zone.clone())
        .collect();
    assert_ne!(zones[0], zones[1]);
    assert!(d.stop.iter().all(|s| s.reason
        == format!("Scaling activity initiated by (deployment {primary})")
        && s.code == berth_types::TaskStopCode::ServiceSchedulerInitiated
        && s.how == StopHow::Request));
    sim.finish_stops();
    sim.run_pending();
    sim.advance(WARM);
    let last = sim.converge(10).pop().unwrap();
    assert_rolled_out(&sim, &last, 4);
    assert!(sim.peak_live <= 8, "peak {}", sim.peak_live);
    assert!(sim.trough_healthy >= 2, "trough {}", sim.trough_healthy);
}

#[test]
fn desired_4_at_100_200_starts_4_new_and_stops_old_only_as_new_turn_healthy() {
    assert_eq!(Bounds::new(4, 100, 200), Bounds { lower: 4, upper: 8 });
    let mut sim = Sim::replica("web", 4, 100, 200);
    sim.deploy("web:2");
    let d = sim.round();
    assert_eq!((started(&d), d.stop.len()), (4, 0));
    sim.run_pending();
    // RUNNING but not healthy yet: nothing old may go, nothing more starts.
    let d = sim.round();
    assert_eq!((started(&d), d.stop.len()), (0, 0));
    assert!(!messages(&d).contains(&BLOCKED));
    // Two of the new tasks turn healthy: two old ones may go.
    for id in ["new001", "new002"] {
        sim.task_mut(id).started_at_millis = Some(sim.now - WARM);
    }
    let d = sim.round();
    assert_eq!((started(&d), old_stops(&sim, &d)), (0, 2));
    sim.finish_stops();
    sim.advance(WARM);
    let d = sim.round();
    assert_eq!((started(&d), old_stops(&sim, &d)), (0, 2));
    sim.finish_stops();
    let last = sim.converge(5).pop().unwrap();
    assert_rolled_out(&sim, &last, 4);
    assert!(sim.peak_live <= 8);
    assert!(sim.trough_healthy >= 4);
}

#[test]
fn desired_4_at_0_100_stops_all_then_starts_new() {
    assert_eq!(Bounds::new(4, 0, 100), Bounds { lower: 0, upper: 4 });
    let mut sim = Sim::replica("web", 4, 0, 100);
    sim.deploy("web:2");
    let d = sim.round();
    assert_eq!((started(&d), old_stops(&sim, &d)), (0, 4));
    // The old tasks are still stopping: they count against the maximum.
    let d = sim.round();
    assert_eq!((started(&d), d.stop.len()), (0, 0));
    sim.finish_stops();
    let d = sim.round();
    assert_eq!((started(&d), d.stop.len()), (4, 0));
    sim.run_pending();
    sim.advance(WARM);
    let last = sim.converge(5).pop().unwrap();
    assert_rolled_out(&sim, &last, 4);
    assert!(sim.peak_live <= 4);
}

#[test]
fn desired_1_at_100_200_runs_1_then_2_then_1() {
    assert_eq!(Bounds::new(1, 100, 200), Bounds { lower: 1, upper: 2 });
    let mut sim = Sim::replica("web", 1, 100, 200);
    sim.deploy("web:2");
    let mut running = vec![sim.running_count()];
    let d = sim.round();
    assert_eq!((started(&d), d.stop.len()), (1, 0));
    sim.run_pending();
    running.push(sim.running_count());
    sim.advance(WARM);
    let d = sim.round();
    assert_eq!((started(&d), old_stops(&sim, &d)), (0, 1));
    sim.finish_stops();
    running.push(sim.running_count());
    assert_eq!(running, [1, 2, 1]);
    let last = sim.converge(3).pop().unwrap();
    assert_rolled_out(&sim, &last, 1);
}

#[test]
fn desired_2_at_75_cannot_stop_any_old_task() {
    assert_eq!(Bounds::new(2, 75, 200).lower, 2); // ceil(1.5)
    let mut sim = Sim::replica("web", 2, 75, 200);
    sim.deploy("web:2");
    let d = sim.round();
    assert_eq!((started(&d), d.stop.len()), (2, 0));
    sim.run_pending();
    let d = sim.round();
    assert_eq!(
        d.stop.len(),
        0,
        "no old task may stop before new ones count"
    );
    sim.advance(WARM);
    let d = sim.round();
    assert_eq!(old_stops(&sim, &d), 2);
    assert!(sim.trough_healthy >= 2);
}

#[test]
fn desired_3_at_125_cannot_start_any_extra_task() {
    assert_eq!(Bounds::new(3, 50, 125).upper, 3); // floor(3.75)
    let mut sim = Sim::replica("web", 3, 50, 125);
    sim.deploy("web:2");
    let d = sim.round();
    // No fourth task; with 50 % (lower 2) one old task makes room.
    assert_eq!((started(&d), old_stops(&sim, &d)), (0, 1));
    sim.finish_stops();
    let d = sim.round();
    assert_eq!(started(&d), 1);
    sim.run_pending();
    sim.advance(WARM);
    let last = sim.converge(10).pop().unwrap();
    assert_rolled_out(&sim, &last, 3);
    assert!(sim.peak_live <= 3);
    assert!(sim.trough_healthy >= 2);
}

#[test]
fn desired_10_at_100_150_rolls_in_batches_of_at_most_5() {
    assert_eq!(
        Bounds::new(10, 100, 150),
        Bounds {
            lower: 10,
            upper: 15
        }
    );
    let mut sim = Sim::replica("web", 10, 100, 150);
    sim.deploy("web:2");
    let rounds = sim.converge(20);
    let batches: Vec<u32> = rounds.iter().map(started).filter(|&n| n > 0).collect();
    assert_eq!(batches, [5, 5]);
    assert_rolled_out(&sim, rounds.last().unwrap(), 10);
    assert!(sim.peak_live <= 15);
    assert!(sim.trough_healthy >= 10);
}

#[test]
fn desired_2_at_75_125_cannot_progress_and_says_so() {
    assert_eq!(Bounds::new(2, 75, 125), Bounds { lower: 2, upper: 2 });
    let mut sim = Sim::replica("web", 2, 75, 125);
    let primary = sim.deploy("web:2");
    let d = sim.round();
    assert_eq!((started(&d), d.stop.len()), (0, 0));
    assert_eq!(messages(&d), [BLOCKED]);
    assert_eq!(d.state.deployments.len(), 2);
    assert_eq!(d.state.deployments[0].id, primary);
    assert_eq!(
        d.state.deployments[0].rollout_state,
        berth_types::DeploymentRolloutState::InProgress
    );
    // Still stuck: the repeat is suppressed…
    sim.advance(60_000);
    assert!(sim.round().events.is_empty());
    // …until six hours pass.
    sim.advance(REPEAT_AFTER_MILLIS);
    assert_eq!(messages(&sim.round()), [BLOCKED]);
}

#[test]
fn min_and_max_of_100_block_deployments() {
    let mut sim = Sim::replica("web", 4, 100, 100);
    sim.deploy("web:2");
    let d = sim.round();
    assert_eq!((started(&d), d.stop.len()), (0, 0));
    assert_eq!(messages(&d), [BLOCKED]);
}

#[test]
fn min_and_max_of_100_block_draining() {
    let mut sim = Sim::replica("web", 4, 100, 100);
    sim.snap.instances[0].status = InstanceStatus::Draining;
    let d = sim.round();
    assert_eq!((started(&d), d.stop.len()), (0, 0));
    assert_eq!(messages(&d), [BLOCKED]);
}
