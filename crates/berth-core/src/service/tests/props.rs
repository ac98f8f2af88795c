//! Property tests: whole rollouts under any deployment configuration, and
//! single rounds over arbitrary snapshots, never exceed maximumPercent,
//! never drop below minimumHealthyPercent, and are deterministic.

use std::collections::BTreeSet;

use berth_types::HealthStatus;
use proptest::prelude::*;

use super::sim::*;
use crate::service::rules::{self, Standing};
use crate::service::*;

const BLOCKED: &str = "(service web) was unable to stop or start tasks during a deployment \
                       because of the service deployment configuration. Update the \
                       minimumHealthyPercent or maximumPercent value and try again.";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every configuration either rolls out (ending services-stable) or, if
    /// neither bound leaves room, says so; and no moment breaks a bound.
    #[test]
    fn rollouts_respect_the_bounds_and_finish_unless_they_cannot(
        desired in 1u32..=8,
        min in 0u32..=100,
        max in 100u32..=200,
    ) {
        let bounds = Bounds::new(desired, min, max);
        let mut sim = Sim::replica("web", desired, min, max);
        let new = sim.deploy("web:2");
        if bounds.lower == desired && bounds.upper == desired {
            let d = sim.round();
            prop_assert!(d.start.is_empty() && d.stop.is_empty());
            prop_assert_eq!(messages(&d), vec![BLOCKED]);
            return Ok(());
        }
        let mut finished = false;
        for _ in 0..60 {
            let d = sim.tick();
            prop_assert!(!messages(&d).contains(&BLOCKED));
            if d.start.is_empty() && d.stop.is_empty() && sim.stable(&d) {
                prop_assert_eq!(&d.state.deployments[0].id, &new);
                prop_assert_eq!(d.counts.running, desired);
                finished = true;
                break;
            }
        }
        prop_assert!(finished, "no rollout for {:?}", bounds);
        prop_assert!(sim.peak_live <= bounds.upper, "peak {} > {}", sim.peak_live, bounds.upper);
        prop_assert!(sim.trough_healthy >= bounds.lower, "trough {} < {}", sim.trough_healthy, bounds.lower);
    }

    /// Any single round: launches fit under the upper bound, healthy tasks
    /// stop only down to the lower bound, stops name live tasks once, and
    /// the same inputs in any order give the same decision.
    #[test]
    fn a_round_keeps_the_bounds_and_is_deterministic(
        desired in 0u32..=8,
        min in 0u32..=100,
        max in 100u32..=200,
        grace in 0u32..=60,
        instances in proptest::collection::vec((any::<bool>(), prop::option::of(0i64..120_000)), 3),
        tasks in proptest::collection::vec(task_strategy(), 0..14),
    ) {
        let mut snap = snapshot("web", desired, min, max);
        snap.health_check_grace_period_seconds = grace;
        snap.instances = instances
            .iter()
            .enumerate()
            .map(|(n, (draining, away))| InstanceView {
                status: if *draining { InstanceStatus::Draining } else { InstanceStatus::Active },
                disconnected_since_millis: away.map(|ms| T0 - ms),
                ..instance(&format!("i-{n}"), ["a", "b"][n % 2])
            })
            .collect();
        let mut state = ServiceState::new("ecs-svc/0".into(), "web:1".into(), desired, T0 - 9_000_000);
        state.begin_deployment("ecs-svc/1".into(), "web:2".into(), desired, T0 - 5_000_000);
        snap.tasks = tasks
            .into_iter()
            .enumerate()
            .map(|(n, spec)| spec.build(n))
            .collect();

        let d = decide(&snap, &state, T0);

        let bounds = Bounds::new(desired, min, max);
        let gone: BTreeSet<&str> = d
            .stop
            .iter()
            .filter(|s| s.how == StopHow::MarkStopped)
            .map(|s| s.task_id.as_str())
            .collect();
        let live: Vec<&TaskView> = snap
            .tasks
            .iter()
            .filter(|t| t.last_status != TaskStatus::Stopped && !gone.contains(t.id.as_str()))
            .collect();
        let launched: u32 = d.start.iter().map(|s| s.placement.count()).sum();
        if launched > 0 {
            prop_assert!(u32::try_from(live.len()).unwrap() + launched <= bounds.upper);
        }

        let grace_ms = i64::from(grace) * 1000;
        let healthy = |t: &TaskView| {
            !t.stop_requested && rules::standing(t, grace_ms, T0).0 == Standing::Healthy
        };
        let healthy_before = u32::try_from(live.iter().filter(|t| healthy(t)).count()).unwrap();
        let requested: Vec<&str> = d
            .stop
            .iter()
            .filter(|s| s.how == StopHow::Request)
            .map(|s| s.task_id.as_str())
            .collect();
        let healthy_stopped = u32::try_from(
            live.iter().filter(|t| healthy(t) && requested.contains(&t.id.as_str())).count(),
        )
        .unwrap();
        prop_assert!(
            healthy_before - healthy_stopped >= bounds.lower.min(healthy_before),
            "healthy {} - {} below {}", healthy_before, healthy_stopped, bounds.lower
        );

        let mut ids: Vec<&str> = d.stop.iter().map(|s| s.task_id.as_str()).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        prop_assert_eq!(ids.len(), n, "a task stopped twice");
        for s in &d.stop {
            let t = snap.tasks.iter().find(|t| t.id == s.task_id).unwrap();
            prop_assert!(t.last_status != TaskStatus::Stopped);
            prop_assert!(s.how == StopHow::MarkStopped || !t.stop_requested);
        }
        prop_assert!(d.state.events.entries.len() <= MAX_EVENTS);

        prop_assert_eq!(&decide(&snap, &state, T0), &d);
        snap.tasks.reverse();
        prop_assert_eq!(&decide(&snap, &state, T0), &d);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A DAEMON round only starts tasks on eligible, connected, ACTIVE
    /// instances that hold no live task, at most one each.
    #[test]
    fn daemon_rounds_start_at_most_one_task_per_free_eligible_instance(
        min in prop::option::of(0u32..=100),
        instances in proptest::collection::vec(
            (any::<bool>(), any::<bool>(), prop::option::of(0i64..120_000)),
            3,
        ),
        tasks in proptest::collection::vec(task_strategy(), 0..10),
    ) {
        let mut snap = snapshot("agent", 0, 0, 100);
        snap.scheduling_strategy = berth_types::SchedulingStrategy::Daemon;
        snap.minimum_healthy_percent = min;
        snap.maximum_percent = None;
        snap.instances = instances
            .iter()
            .enumerate()
            .map(|(n, (draining, eligible, away))| InstanceView {
                status: if *draining { InstanceStatus::Draining } else { InstanceStatus::Active },
                daemon_eligible: *eligible,
                disconnected_since_millis: away.map(|ms| T0 - ms),
                ..instance(&format!("i-{n}"), "a")
            })
            .collect();
        let mut state = ServiceState::new("ecs-svc/0".into(), "agent:1".into(), 0, T0 - 9_000_000);
        state.begin_deployment("ecs-svc/1".into(), "agent:2".into(), 0, T0 - 5_000_000);
        snap.tasks = tasks
            .into_iter()
            .enumerate()
            .map(|(n, spec)| spec.build(n))
            .collect();

        let d = decide(&snap, &state, T0);

        let mut targets: Vec<&str> = Vec::new();
        for start in &d.start {
            match &start.placement {
                Placement::OnInstances(ids) => targets.extend(ids.iter().map(String::as_str)),
                Placement::Anywhere { .. } => prop_assert!(false, "a daemon places on instances"),
            }
        }
        let n = targets.len();
        targets.sort_unstable();
        targets.dedup();
        prop_assert_eq!(targets.len(), n);
        for id in targets {
            let i = snap.instances.iter().find(|i| i.id == id).unwrap();
            prop_assert!(i.status == InstanceStatus::Active && i.daemon_eligible);
            prop_assert!(i.disconnected_since_millis.is_none());
            let occupied = snap.tasks.iter().any(|t| {
                t.instance_id.as_deref() == Some(id) && t.last_status != TaskStatus::Stopped
            });
            prop_assert!(!occupied, "{} already holds a task", id);
        }
        let eligible = snap
            .instances
            .iter()
            .filter(|i| i.status == InstanceStatus::Active && i.daemon_eligible)
            .count();
        prop_assert_eq!(d.counts.desired as usize, eligible);
        prop_assert_eq!(&decide(&snap, &state, T0), &d);
    }
}

/// The random facts of one task.
#[derive(Debug, Clone)]
struct TaskSpec {
    deployment: usize,
    status: TaskStatus,
    stop_requested: bool,
    has_health_check: bool,
    health: HealthStatus,
    started_ago: i64,
    instance: usize,
}

impl TaskSpec {
    fn build(self, n: usize) -> TaskView {
        let instance = format!("i-{}", self.instance);
        let zone = ["a", "b"][self.instance % 2];
        let mut t = running(
            &format!("t{n:02}"),
            ["ecs-svc/0", "ecs-svc/1", "ecs-svc/gone"][self.deployment],
            &instance,
            zone,
        );
        t.last_status = self.status;
        t.stop_requested = self.stop_requested || self.status == TaskStatus::Stopping;
        t.has_health_check = self.has_health_check;
        t.health = self.health;
        t.created_at_millis = T0 - self.started_ago - 1_000;
        t.started_at_millis = matches!(self.status, TaskStatus::Running | TaskStatus::Stopping)
            .then_some(T0 - self.started_ago);
        t
    }
}

fn task_strategy() -> impl Strategy<Value = TaskSpec> {
    (
        0usize..3,
        prop::sample::select(vec![
            TaskStatus::Provisioning,
            TaskStatus::Pending,
            TaskStatus::Running,
            TaskStatus::Running,
            TaskStatus::Running,
            TaskStatus::Stopping,
            TaskStatus::Stopped,
        ]),
        prop::bool::weighted(0.1),
        any::<bool>(),
        prop::sample::select(vec![
            HealthStatus::Healthy,
            HealthStatus::Unhealthy,
            HealthStatus::Unknown,
        ]),
        0i64..120_000,
        0usize..3,
    )
        .prop_map(
            |(
                deployment,
                status,
                stop_requested,
                has_health_check,
                health,
                started_ago,
                instance,
            )| {
                TaskSpec {
                    deployment,
                    status,
                    stop_requested,
                    has_health_check,
                    health,
                    started_ago,
                    instance,
                }
            },
        )
}
