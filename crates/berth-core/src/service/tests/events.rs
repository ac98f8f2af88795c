//! Event wording (ECS's exact texts), the log's order and size, and the
//! suppression of standing conditions.

use super::sim::*;
use crate::service::events::{self as ev, Emission};
use crate::service::*;

fn failure(reason: &str, closest: Option<&str>) -> PlacementFailure {
    PlacementFailure {
        reason: reason.into(),
        closest_instance: closest.map(Into::into),
    }
}

#[test]
fn messages_use_ecs_wording() {
    let ids: Vec<String> = ["a1", "b2"].map(String::from).to_vec();
    assert_eq!(
        ev::steady_state("S"),
        "(service S) has reached a steady state."
    );
    assert_eq!(
        ev::started("S", &ids),
        ["(service S) has started 2 tasks: (task a1) (task b2)."]
    );
    assert_eq!(
        ev::stopped("S", &ids[..1]),
        ["(service S) has stopped 1 running tasks: (task a1)."]
    );
    assert_eq!(
        ev::deployment_completed("S", "ecs-svc/1"),
        "(service S) (deployment ecs-svc/1) deployment completed."
    );
    assert_eq!(
        ev::deployment_failed("S", "ecs-svc/2", "tasks failed to start"),
        "(service S) (deployment ecs-svc/2) deployment failed: tasks failed to start."
    );
    assert_eq!(
        ev::rolling_back("S", "ecs-svc/1"),
        "(service S) rolling back to deployment ecs-svc/1."
    );
    assert_eq!(
        ev::failed_health_checks("S", "a1"),
        "(service S) (task a1) failed container health checks."
    );
    assert_eq!(
        ev::unable_to_start_consistently("S"),
        "(service S) is unable to consistently start tasks successfully."
    );
    assert_eq!(
        ev::blocked_by_configuration("S"),
        "(service S) was unable to stop or start tasks during a deployment because of the \
         service deployment configuration. Update the minimumHealthyPercent or maximumPercent \
         value and try again."
    );
}

#[test]
fn placement_failures_name_the_closest_instance() {
    let prefix = "(service S) was unable to place a task because no container instance met all of \
                  its requirements.";
    // As DescribeServices shows them (e.g. "(service ecs-simple-service) was
    // unable to place a task because no container instance met all of its
    // requirements. The closest matching (container-instance 3f4de1c5-…)
    // is already using a port required by your task. For more information,
    // see the Troubleshooting section of the Amazon ECS Developer Guide.").
    let cases = [
        ("RESOURCE:CPU", "has insufficient CPU units available."),
        ("RESOURCE:MEMORY", "has insufficient memory available."),
        (
            "RESOURCE:PORTS",
            "is already using a port required by your task.",
        ),
        (
            "RESOURCE:PORTS_UDP",
            "is already using a port required by your task.",
        ),
        (
            "ATTRIBUTE",
            "is missing an attribute required by your task.",
        ),
        ("AGENT", "doesn't have the agent connected."),
        (
            "MemberOf placement constraint unsatisfied",
            "encountered error \"MemberOf placement constraint unsatisfied.\"",
        ),
    ];
    for (reason, tail) in cases {
        assert_eq!(
            ev::unable_to_place("S", &failure(reason, Some("0123abcd"))),
            format!(
                "{prefix} The closest matching (container-instance 0123abcd) {tail} For more \
                 information, see the Troubleshooting section of the Amazon ECS Developer Guide."
            )
        );
    }
    assert_eq!(
        ev::unable_to_place("S", &failure("NO ACTIVE INSTANCES", None)),
        format!("{prefix} Reason: No Container Instances were found in your cluster.")
    );
    assert_eq!(
        ev::unable_to_place(
            "S",
            &failure(
                "You've reached the limit on the number of tasks you can run concurrently",
                None
            )
        ),
        "(service S) was unable to place a task. Reason: You've reached the limit on the number \
         of tasks you can run concurrently"
    );
}

#[test]
fn start_and_stop_messages_name_at_most_ten_tasks_each() {
    let ids: Vec<String> = (0..23).map(|n| format!("t{n}")).collect();
    let msgs = ev::started("S", &ids);
    assert_eq!(msgs.len(), 3);
    assert!(msgs[0].starts_with("(service S) has started 10 tasks: (task t0) (task t1)"));
    assert!(msgs[2].starts_with("(service S) has started 3 tasks: (task t20)"));
}

#[test]
fn an_unplaceable_task_is_reported_once_until_it_is_placed() {
    let mut sim = Sim::replica("web", 2, 100, 200);
    sim.converge(3);
    sim.snap.desired_count = 3;
    let mem = failure("RESOURCE:MEMORY", Some("i-b"));
    sim.launch = Launch::Unplaceable(mem.clone());
    let d = sim.round();
    assert_eq!(started(&d), 1);
    // The next round learns of the failure, reports it and retries.
    let d = sim.round();
    assert_eq!(messages(&d), [ev::unable_to_place("web", &mem)]);
    assert_eq!(started(&d), 1);
    assert_eq!(d.next_wakeup_millis, Some(sim.now + LAUNCH_RETRY_MILLIS));
    // Failing the same way again: suppressed.
    assert!(sim.round().events.is_empty());
    // A different closest instance is a different message.
    let cpu = failure("RESOURCE:CPU", Some("i-a"));
    sim.launch = Launch::Unplaceable(cpu.clone());
    sim.round();
    assert_eq!(messages(&sim.round()), [ev::unable_to_place("web", &cpu)]);
    // Placed at last: started and steady; a later failure is news again.
    sim.launch = Launch::Runs;
    sim.round();
    let d = sim.round();
    assert_eq!(
        messages(&d),
        ["(service web) has started 1 tasks: (task new001)."]
    );
    sim.run_pending();
    sim.advance(WARM);
    let d = sim.round();
    assert_eq!(messages(&d), ["(service web) has reached a steady state."]);
    sim.snap.desired_count = 4;
    sim.launch = Launch::Unplaceable(cpu.clone());
    sim.round();
    assert_eq!(messages(&sim.round()), [ev::unable_to_place("web", &cpu)]);
}

#[test]
fn steady_state_is_reported_once_then_every_six_hours() {
    let mut sim = Sim::replica("web", 2, 100, 200);
    let d = sim.round();
    assert_eq!(messages(&d), ["(service web) has reached a steady state."]);
    let at = sim.now;
    assert_eq!(d.next_wakeup_millis, Some(at + REPEAT_AFTER_MILLIS));
    sim.advance(REPEAT_AFTER_MILLIS - 1);
    assert!(sim.round().events.is_empty());
    sim.advance(1);
    assert_eq!(
        messages(&sim.round()),
        ["(service web) has reached a steady state."]
    );
}

#[test]
fn steady_state_is_reported_again_after_leaving_it() {
    let mut sim = Sim::replica("web", 2, 100, 200);
    sim.round();
    sim.snap.desired_count = 3;
    let d = sim.tick();
    assert_eq!(started(&d), 1);
    let d = sim.tick();
    assert_eq!(
        messages(&d),
        [
            "(service web) has started 1 tasks: (task new001).",
            "(service web) has reached a steady state.",
        ]
    );
}

#[test]
fn a_deployment_ends_with_completed_then_steady_state_newest_first() {
    let mut sim = Sim::replica("web", 1, 100, 200);
    let id = sim.deploy("web:2");
    let last = sim.converge(5).pop().unwrap();
    let newest: Vec<&str> = last
        .state
        .events
        .entries
        .iter()
        .take(2)
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(
        newest,
        [
            "(service web) has reached a steady state.".to_owned(),
            format!("(service web) (deployment {id}) deployment completed."),
        ]
    );
    let wire = last.state.events.to_wire();
    assert_eq!(wire[0].message.as_deref(), Some(newest[0]));
    assert!(
        wire.iter()
            .all(|e| e.id.as_ref().is_some_and(|i| i.len() == 36))
    );
}

#[test]
fn the_log_keeps_the_newest_100_with_distinct_ids() {
    let mut log = EventLog::default();
    for n in 0..150 {
        let emitted = log.record(
            "S",
            vec![Emission {
                message: format!("m{n}"),
                standing: false,
            }],
            T0 + n,
        );
        assert_eq!(emitted.len(), 1);
    }
    assert_eq!(log.entries.len(), MAX_EVENTS);
    assert_eq!(log.entries[0].message, "m149");
    assert_eq!(log.entries[99].message, "m50");
    assert_eq!(log.entries[0].created_at_millis, T0 + 149);
    let mut ids: Vec<&str> = log.entries.iter().map(|e| e.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), MAX_EVENTS);
    // UUID version 4 shape.
    let id = &log.entries[0].id;
    assert_eq!(&id[14..15], "4");
    assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
}
