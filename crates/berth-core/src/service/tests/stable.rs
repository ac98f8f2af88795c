//! `deployments[]` and the `services-stable` waiter: exactly one deployment
//! and runningCount == desiredCount once a rollout ends; desiredCount-only
//! updates; deployment ids and the wire form; deleting a service.

use berth_types::DeploymentRolloutState;

use super::sim::*;
use crate::service::*;

#[test]
fn deployment_ids_look_like_ecs_ones() {
    assert_eq!(deployment_id(42), "ecs-svc/0000000000000000042");
    assert_eq!(deployment_id(u64::MAX), "ecs-svc/8446744073709551615");
    // The Developer Guide's deployment, created at 1510811361.128.
    assert_eq!(
        deployment_id_at(1_510_811_361_128),
        "ecs-svc/9223370526043414679"
    );
    let mut state = ServiceState::new(deployment_id_at(T0), "web:1".into(), 1, T0);
    let next = state.fresh_deployment_id(T0);
    assert_ne!(next, deployment_id_at(T0));
    state.begin_deployment(next.clone(), "web:2".into(), 1, T0);
    assert_eq!(state.deployments[0].id, next);
    assert_eq!(state.deployments[1].status, DeploymentStatus::Active);
}

#[test]
fn services_stable_holds_only_once_the_old_deployment_is_gone() {
    let mut sim = Sim::replica("web", 3, 100, 200);
    let old = sim.primary_id();
    let new = sim.deploy("web:2");
    let mut rounds = Vec::new();
    loop {
        let d = sim.tick();
        let done = d.start.is_empty() && d.stop.is_empty() && sim.stable(&d);
        rounds.push(d);
        if done || rounds.len() > 10 {
            break;
        }
    }
    let (last, during) = rounds.split_last().unwrap();
    assert!(sim.stable(last));
    assert_eq!(last.state.deployments.len(), 1);
    assert_eq!(last.state.deployments[0].id, new);
    assert_eq!(last.counts.running, 3);
    // While the old deployment had tasks it was listed, ACTIVE.
    assert!(during.iter().all(|d| !sim.stable(d)));
    let listed = &during[0].state.deployments;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1].id, old);
    assert_eq!(listed[1].status, DeploymentStatus::Active);
    assert_eq!(listed[0].status, DeploymentStatus::Primary);
    assert_eq!(listed[0].rollout_state, DeploymentRolloutState::InProgress);
    assert_eq!(
        listed[0].rollout_state_reason,
        format!("ECS deployment {new} in progress.")
    );
    let done = &last.state.deployments[0];
    assert_eq!(done.rollout_state, DeploymentRolloutState::Completed);
    assert_eq!(
        done.rollout_state_reason,
        format!("ECS deployment {new} completed.")
    );
    assert_eq!((done.running_count, done.pending_count), (3, 0));
}

#[test]
fn pending_tasks_do_not_count_as_running_for_services_stable() {
    let mut sim = Sim::replica("web", 2, 100, 200);
    sim.snap.desired_count = 3;
    sim.round();
    let d = sim.round();
    assert_eq!(
        (d.counts.running, d.counts.pending, d.counts.desired),
        (2, 1, 3)
    );
    assert!(!sim.stable(&d));
    assert_eq!(d.state.deployments[0].pending_count, 1);
}

#[test]
fn a_desired_count_change_updates_the_primary_deployment() {
    let mut sim = Sim::replica("web", 2, 100, 200);
    let id = sim.primary_id();
    sim.snap.desired_count = 4;
    let d = sim.round();
    assert_eq!(d.state.deployments.len(), 1);
    assert_eq!(d.state.deployments[0].id, id);
    assert_eq!(d.state.deployments[0].desired_count, 4);
    assert_eq!(d.state.deployments[0].updated_at_millis, sim.now);
    assert_eq!(started(&d), 2);
    // Scaling in goes through the same deployment too.
    sim.run_pending();
    sim.advance(WARM);
    sim.snap.desired_count = 1;
    let d = sim.round();
    assert_eq!(d.state.deployments[0].id, id);
    assert_eq!(d.stop.len(), 3);
}

#[test]
fn the_wire_form_carries_ecs_fields() {
    let state = ServiceState::new(deployment_id_at(T0), "arn:td/web:1".into(), 2, T0);
    let wire = state.wire_deployments();
    assert_eq!(wire.len(), 1);
    let json = serde_json::to_value(&wire[0]).unwrap();
    assert_eq!(json["id"], "ecs-svc/9223370301165175807");
    assert_eq!(json["status"], "PRIMARY");
    assert_eq!(json["taskDefinition"], "arn:td/web:1");
    assert_eq!(json["desiredCount"], 2);
    assert_eq!(json["runningCount"], 0);
    assert_eq!(json["failedTasks"], 0);
    assert_eq!(json["rolloutState"], "IN_PROGRESS");
    assert_eq!(
        json["rolloutStateReason"],
        "ECS deployment ecs-svc/9223370301165175807 in progress."
    );
    assert_eq!(json["createdAt"], 1_735_689_600.0);
}

#[test]
fn the_state_round_trips_through_json() {
    let mut sim = Sim::replica("web", 2, 100, 200);
    sim.deploy("web:2");
    let d = sim.tick();
    let json = serde_json::to_string(&d.state).unwrap();
    let back: ServiceState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, d.state);
}

#[test]
fn a_deleted_service_stops_everything_then_goes_inactive() {
    let mut sim = Sim::replica("web", 3, 100, 200);
    sim.snap.status = ServiceStatus::Draining;
    let d = sim.round();
    assert_eq!(d.stop.len(), 3);
    assert!(d.start.is_empty());
    assert_eq!(d.counts.desired, 0);
    assert!(!d.inactive);
    assert!(!messages(&d).iter().any(|m| m.contains("steady state")));
    sim.finish_stops();
    let d = sim.round();
    assert!(d.inactive);
}

#[test]
fn a_round_is_deterministic_and_ignores_task_order() {
    let mut sim = Sim::replica("web", 6, 50, 150);
    sim.deploy("web:2");
    let a = decide(&sim.snap, &sim.state, sim.now);
    let b = decide(&sim.snap, &sim.state, sim.now);
    assert_eq!(a, b);
    sim.snap.tasks.reverse();
    let c = decide(&sim.snap, &sim.state, sim.now);
    assert_eq!(a, c);
}

#[test]
fn re_running_a_round_with_its_own_state_changes_nothing_more() {
    // Applying the decision and deciding again on the unchanged world asks
    // for nothing new.
    let mut sim = Sim::replica("web", 4, 100, 200);
    sim.deploy("web:2");
    let first = sim.round();
    assert!(started(&first) > 0);
    let again = decide(&sim.snap, &sim.state, sim.now);
    assert!(again.stop.is_empty());
    assert_eq!(started(&again), 0);
}

#[test]
fn views_read_the_wire_objects() {
    let task: berth_types::Task = serde_json::from_value(serde_json::json!({
        "taskArn": "arn:aws:ecs:us-east-1:123456789012:task/default/0123456789abcdef0123456789abcdef",
        "startedBy": "ecs-svc/9223370301165175807",
        "lastStatus": "RUNNING",
        "desiredStatus": "STOPPED",
        "healthStatus": "UNHEALTHY",
        "createdAt": 1735689600.5,
        "startedAt": 1735689601.25,
        "containerInstanceArn": "arn:aws:ecs:us-east-1:123456789012:container-instance/default/ci1",
        "availabilityZone": "us-east-1a",
        "stopCode": "ServiceSchedulerInitiated"
    }))
    .unwrap();
    let view = TaskView::from_wire(&task, true);
    assert_eq!(
        view,
        TaskView {
            id: "0123456789abcdef0123456789abcdef".into(),
            started_by: "ecs-svc/9223370301165175807".into(),
            last_status: TaskStatus::Running,
            stop_requested: true,
            health: berth_types::HealthStatus::Unhealthy,
            has_health_check: true,
            created_at_millis: 1_735_689_600_500,
            started_at_millis: Some(1_735_689_601_250),
            instance_id: Some("ci1".into()),
            availability_zone: Some("us-east-1a".into()),
            stop_code: Some(berth_types::TaskStopCode::ServiceSchedulerInitiated),
        }
    );
    assert_eq!(
        TaskStatus::from_wire("DEPROVISIONING"),
        TaskStatus::Deprovisioning
    );
    assert!(TaskStatus::from_wire("ACTIVATING").is_pending());
    assert!(!TaskStatus::from_wire("RUNNING").is_pending());
    assert_eq!(
        InstanceStatus::from_wire("DRAINING"),
        InstanceStatus::Draining
    );
    assert_eq!(
        InstanceStatus::from_wire("REGISTERING"),
        InstanceStatus::Inactive
    );
}
