//! DAEMON services: one task per eligible ACTIVE instance, started when an
//! instance joins, stopped when it drains or stops qualifying, gone when
//! it leaves; deployments replace the task on each instance stop-first.

use berth_types::{SchedulingStrategy, TaskStopCode};

use super::sim::*;
use crate::service::*;

fn daemon(instances: &[(&str, &str)]) -> Sim {
    let mut snap = snapshot("agent", 0, 0, 100);
    snap.scheduling_strategy = SchedulingStrategy::Daemon;
    snap.minimum_healthy_percent = None;
    snap.maximum_percent = None;
    snap.instances = instances
        .iter()
        .map(|(id, zone)| instance(id, zone))
        .collect();
    let id = deployment_id_at(T0);
    let state = ServiceState::new(id, "agent:1".into(), 0, T0);
    Sim::new(snap, state)
}

fn on_instances(d: &Decision) -> Vec<String> {
    d.start
        .iter()
        .flat_map(|s| match &s.placement {
            Placement::OnInstances(ids) => ids.clone(),
            Placement::Anywhere { .. } => panic!("a daemon places on instances"),
        })
        .collect()
}

#[test]
fn one_task_on_every_eligible_active_instance() {
    let mut sim = daemon(&[("i-a", "z1"), ("i-b", "z2"), ("i-c", "z1")]);
    sim.snap.instances[2].daemon_eligible = false;
    let d = sim.round();
    assert_eq!(on_instances(&d), ["i-a", "i-b"]);
    assert_eq!(d.counts.desired, 2);
    assert_eq!(d.state.deployments[0].desired_count, 2);
    sim.run_pending();
    sim.advance(WARM);
    let d = sim.round();
    assert!(d.start.is_empty() && d.stop.is_empty());
    assert!(sim.stable(&d));
    assert_eq!(
        messages(&d),
        [
            "(service agent) has started 2 tasks: (task new001) (task new002).",
            "(service agent) (deployment ecs-svc/9223370301165175807) deployment completed.",
            "(service agent) has reached a steady state.",
        ]
    );
}

#[test]
fn an_instance_that_joins_gets_a_task() {
    let mut sim = daemon(&[("i-a", "z1")]);
    sim.converge(5);
    sim.snap.instances.push(instance("i-new", "z2"));
    let d = sim.round();
    assert_eq!(on_instances(&d), ["i-new"]);
    assert_eq!(d.counts.desired, 2);
}

#[test]
fn no_task_is_started_on_an_instance_whose_agent_is_away() {
    let mut sim = daemon(&[("i-a", "z1"), ("i-b", "z2")]);
    sim.snap.instances[1].disconnected_since_millis = Some(T0 - 1_000);
    let d = sim.round();
    assert_eq!(on_instances(&d), ["i-a"]);
    // It still counts as desired, so the service is not steady without it.
    assert_eq!(d.counts.desired, 2);
}

#[test]
fn a_draining_instance_loses_its_task_regardless_of_the_minimum() {
    let mut sim = daemon(&[("i-a", "z1"), ("i-b", "z2")]);
    sim.snap.minimum_healthy_percent = Some(100);
    sim.converge(5);
    sim.snap.instances[1].status = InstanceStatus::Draining;
    let d = sim.round();
    let on_b = sim
        .live()
        .iter()
        .find(|t| t.instance_id.as_deref() == Some("i-b"))
        .map(|t| t.id.clone());
    assert_eq!(stopped_ids(&d), [on_b.unwrap().as_str()]);
    assert_eq!(d.stop[0].how, StopHow::Request);
    assert!(d.start.is_empty(), "never moved elsewhere");
    assert_eq!(d.counts.desired, 1);
    sim.finish_stops();
    let d = sim.round();
    assert!(d.start.is_empty() && d.stop.is_empty());
}

#[test]
fn an_instance_no_longer_meeting_the_constraints_loses_its_task() {
    let mut sim = daemon(&[("i-a", "z1"), ("i-b", "z2")]);
    sim.converge(5);
    sim.snap.instances[0].daemon_eligible = false;
    let d = sim.round();
    assert_eq!(d.stop.len(), 1);
    assert_eq!(
        sim.task(&d.stop[0].task_id).instance_id.as_deref(),
        Some("i-a")
    );
}

#[test]
fn tasks_on_an_instance_that_left_are_marked_stopped() {
    let mut sim = daemon(&[("i-a", "z1"), ("i-b", "z2")]);
    sim.converge(5);
    sim.snap.instances.retain(|i| i.id != "i-b");
    let d = sim.round();
    assert_eq!(d.stop.len(), 1);
    let stop = &d.stop[0];
    assert_eq!(stop.how, StopHow::MarkStopped);
    assert_eq!(stop.code, TaskStopCode::InfrastructureHealth);
    assert_eq!(stop.reason, "Container instance i-b left the cluster.");
    assert!(d.start.is_empty());
    assert_eq!(d.counts.desired, 1);
    // Deregistered but still listed reads the same.
    let mut sim = daemon(&[("i-a", "z1")]);
    sim.converge(5);
    sim.snap.instances[0].status = InstanceStatus::Inactive;
    assert_eq!(sim.round().stop[0].how, StopHow::MarkStopped);
}

#[test]
fn a_deployment_replaces_each_instance_task_stop_first() {
    let mut sim = daemon(&[("i-a", "z1"), ("i-b", "z2"), ("i-c", "z3"), ("i-d", "z1")]);
    sim.converge(5);
    sim.trough_healthy = u32::MAX;
    // minimumHealthyPercent 50 of 4 instances: two at a time.
    sim.snap.minimum_healthy_percent = Some(50);
    let primary = sim.deploy("agent:2");
    let d = sim.round();
    assert!(
        d.start.is_empty(),
        "maximumPercent is 100: stop before start"
    );
    assert_eq!(d.stop.len(), 2);
    sim.finish_stops();
    let d = sim.round();
    assert_eq!(on_instances(&d).len(), 2);
    assert!(
        d.start
            .iter()
            .all(|s| s.deployment_id == primary && s.task_definition == "agent:2")
    );
    sim.run_pending();
    sim.advance(WARM);
    let last = sim.converge(10).pop().unwrap();
    assert!(sim.stable(&last));
    assert!(sim.live().iter().all(|t| t.started_by == primary));
    assert!(sim.peak_live <= 4);
    assert!(sim.trough_healthy >= 2);
    // Exactly one task per instance.
    let mut hosts: Vec<_> = sim.live().iter().map(|t| t.instance_id.clone()).collect();
    assert_eq!(hosts.len(), 4);
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts.len(), 4);
}

#[test]
fn a_deleted_daemon_stops_everything_then_goes_inactive() {
    let mut sim = daemon(&[("i-a", "z1"), ("i-b", "z2")]);
    sim.converge(5);
    sim.snap.status = ServiceStatus::Draining;
    let d = sim.round();
    assert_eq!(d.stop.len(), 2);
    assert!(!d.inactive);
    sim.finish_stops();
    let d = sim.round();
    assert!(d.inactive);
    assert!(d.start.is_empty());
}
