//! Builders for snapshots and a small simulated cluster that applies each
//! decision like the server would.

use berth_types::{
    DeploymentCircuitBreaker, HealthStatus, SchedulingStrategy, TaskStopCode,
    ThresholdConfiguration,
};

use crate::service::*;

/// A fixed start time (2025-01-01T00:00:00Z) so ids and timestamps are
/// realistic.
pub const T0: i64 = 1_735_689_600_000;
/// Long enough for a RUNNING task without a health check to count.
pub const WARM: i64 = HEALTHY_AFTER_MILLIS + 1_000;

pub fn instance(id: &str, zone: &str) -> InstanceView {
    InstanceView {
        id: id.into(),
        status: InstanceStatus::Active,
        disconnected_since_millis: None,
        availability_zone: Some(zone.into()),
        daemon_eligible: true,
    }
}

pub fn snapshot(name: &str, desired: u32, min: u32, max: u32) -> ServiceSnapshot {
    ServiceSnapshot {
        name: name.into(),
        status: ServiceStatus::Active,
        scheduling_strategy: SchedulingStrategy::Replica,
        desired_count: desired,
        minimum_healthy_percent: Some(min),
        maximum_percent: Some(max),
        circuit_breaker: None,
        health_check_grace_period_seconds: 0,
        tasks: Vec::new(),
        instances: vec![instance("i-a", "us-east-1a"), instance("i-b", "us-east-1b")],
        launched: LaunchReport::default(),
        lost_agent_timeout_millis: DEFAULT_LOST_AGENT_TIMEOUT_MILLIS,
    }
}

/// A task RUNNING since long before `T0`, healthy.
pub fn running(id: &str, deployment: &str, instance: &str, zone: &str) -> TaskView {
    TaskView {
        id: id.into(),
        started_by: deployment.into(),
        last_status: TaskStatus::Running,
        stop_requested: false,
        health: HealthStatus::Unknown,
        has_health_check: false,
        created_at_millis: T0 - 3_600_000,
        started_at_millis: Some(T0 - 3_500_000),
        instance_id: Some(instance.into()),
        availability_zone: Some(zone.into()),
        stop_code: None,
    }
}

pub fn breaker(rollback: bool) -> DeploymentCircuitBreaker {
    DeploymentCircuitBreaker {
        enable: true,
        rollback,
        reset_on_healthy_task: None,
        threshold_configuration: None,
    }
}

pub fn threshold(kind: berth_types::ThresholdType, value: i32) -> ThresholdConfiguration {
    ThresholdConfiguration {
        r#type: kind,
        value,
    }
}

/// How launched tasks behave in the simulation.
#[derive(Debug, Clone, PartialEq)]
pub enum Launch {
    /// They are placed, then reach RUNNING.
    Runs,
    /// They are placed, then stop before RUNNING (TaskFailedToStart).
    FailsToStart,
    /// They are placed and reach RUNNING, but their essential container
    /// exits at once (EssentialContainerExited), before any health check.
    ExitsAtOnce,
    /// They cannot be placed.
    Unplaceable(PlacementFailure),
}

/// A service, its scheduler state, and a cluster that obeys decisions.
pub struct Sim {
    pub snap: ServiceSnapshot,
    pub state: ServiceState,
    pub now: i64,
    pub launch: Launch,
    seq: u32,
    /// The largest number of tasks not yet STOPPED seen after any round.
    pub peak_live: u32,
    /// The smallest number of healthy, managed tasks seen after any round.
    pub trough_healthy: u32,
}

impl Sim {
    /// A REPLICA service already at steady state on task definition
    /// `web:1`, with `desired` healthy tasks spread over two zones.
    pub fn replica(name: &str, desired: u32, min: u32, max: u32) -> Self {
        let mut snap = snapshot(name, desired, min, max);
        let first = deployment_id_at(T0 - 7_200_000);
        let mut state = ServiceState::new(first.clone(), "web:1".into(), desired, T0 - 7_200_000);
        state.deployments[0].rollout_state = berth_types::DeploymentRolloutState::Completed;
        state.deployments[0].rollout_state_reason = completed_reason(&first);
        state.last_completed = Some(CompletedDeployment::of(&state.deployments[0]));
        let h = &mut state.history[0];
        h.status = berth_types::ServiceDeploymentStatus::Successful;
        h.started_at_millis = Some(T0 - 7_200_000);
        h.finished_at_millis = Some(T0 - 7_000_000);
        for n in 0..desired {
            let (host, zone) = if n % 2 == 0 {
                ("i-a", "us-east-1a")
            } else {
                ("i-b", "us-east-1b")
            };
            snap.tasks
                .push(running(&format!("old{n:02}"), &first, host, zone));
        }
        Self::new(snap, state)
    }

    pub fn new(snap: ServiceSnapshot, state: ServiceState) -> Self {
        Self {
            snap,
            state,
            now: T0,
            launch: Launch::Runs,
            seq: 0,
            peak_live: 0,
            trough_healthy: u32::MAX,
        }
    }

    /// UpdateService with a new task definition.
    pub fn deploy(&mut self, task_definition: &str) -> String {
        let id = self.state.fresh_deployment_id(self.now);
        let desired = self.snap.desired_count;
        self.state
            .begin_deployment(id.clone(), task_definition.into(), desired, self.now);
        id
    }

    pub fn primary_id(&self) -> String {
        self.state
            .primary()
            .expect("a primary deployment")
            .id
            .clone()
    }

    pub fn task(&self, id: &str) -> &TaskView {
        self.snap
            .tasks
            .iter()
            .find(|t| t.id == id)
            .unwrap_or_else(|| panic!("no task {id}"))
    }

    pub fn task_mut(&mut self, id: &str) -> &mut TaskView {
        self.snap
            .tasks
            .iter_mut()
            .find(|t| t.id == id)
            .unwrap_or_else(|| panic!("no task {id}"))
    }

    /// Tasks not STOPPED.
    pub fn live(&self) -> Vec<&TaskView> {
        self.snap
            .tasks
            .iter()
            .filter(|t| t.last_status != TaskStatus::Stopped)
            .collect()
    }

    pub fn live_count(&self) -> u32 {
        u32::try_from(self.live().len()).unwrap()
    }

    /// RUNNING tasks.
    pub fn running_count(&self) -> u32 {
        let n = self
            .live()
            .iter()
            .filter(|t| t.last_status == TaskStatus::Running)
            .count();
        u32::try_from(n).unwrap()
    }

    /// Managed tasks that count towards minimumHealthyPercent.
    pub fn healthy_count(&self) -> u32 {
        let n = self
            .live()
            .iter()
            .filter(|t| {
                !t.stop_requested
                    && t.last_status == TaskStatus::Running
                    && if t.has_health_check {
                        t.health == HealthStatus::Healthy
                    } else {
                        t.started_at_millis
                            .is_some_and(|s| self.now - s >= HEALTHY_AFTER_MILLIS)
                    }
            })
            .count();
        u32::try_from(n).unwrap()
    }

    /// Runs one round and applies it: stops are requested (RUNNING tasks
    /// go STOPPING) or recorded, launches become PENDING tasks (placed
    /// round-robin, or on the named instances).
    pub fn round(&mut self) -> Decision {
        let d = decide(&self.snap, &self.state, self.now);
        self.state = d.state.clone();
        self.snap.launched = LaunchReport::default();
        for s in &d.stop {
            let now_status = self.task(&s.task_id).last_status;
            let t = self.task_mut(&s.task_id);
            assert!(
                !t.stop_requested || s.how == StopHow::MarkStopped,
                "stopped twice"
            );
            t.stop_requested = true;
            t.stop_code.get_or_insert(s.code);
            match s.how {
                StopHow::MarkStopped => t.last_status = TaskStatus::Stopped,
                StopHow::Request if now_status == TaskStatus::Running => {
                    t.last_status = TaskStatus::Stopping;
                }
                StopHow::Request => {}
            }
        }
        for start in &d.start {
            assert_eq!(start.started_by, start.deployment_id);
            assert_eq!(start.group, format!("service:{}", self.snap.name));
            let hosts: Vec<Option<String>> = match &start.placement {
                Placement::Anywhere { count } => (0..*count).map(|_| None).collect(),
                Placement::OnInstances(ids) => ids.iter().cloned().map(Some).collect(),
            };
            for host in hosts {
                if let Launch::Unplaceable(f) = &self.launch {
                    self.snap.launched.failures.push(f.clone());
                    continue;
                }
                self.seq += 1;
                let id = format!("new{:03}", self.seq);
                let host = host.unwrap_or_else(|| {
                    let active: Vec<&InstanceView> = self
                        .snap
                        .instances
                        .iter()
                        .filter(|i| {
                            i.status == InstanceStatus::Active
                                && i.disconnected_since_millis.is_none()
                        })
                        .collect();
                    active[self.seq as usize % active.len()].id.clone()
                });
                let zone = self
                    .snap
                    .instances
                    .iter()
                    .find(|i| i.id == host)
                    .and_then(|i| i.availability_zone.clone());
                self.snap.tasks.push(TaskView {
                    id: id.clone(),
                    started_by: start.started_by.clone(),
                    last_status: TaskStatus::Pending,
                    stop_requested: false,
                    health: HealthStatus::Unknown,
                    has_health_check: false,
                    created_at_millis: self.now,
                    started_at_millis: None,
                    instance_id: Some(host),
                    availability_zone: zone,
                    stop_code: None,
                });
                self.snap.launched.started.push(id);
            }
        }
        self.peak_live = self.peak_live.max(self.live_count());
        self.trough_healthy = self.trough_healthy.min(self.healthy_count());
        d
    }

    /// Stops in progress complete.
    pub fn finish_stops(&mut self) {
        for t in &mut self.snap.tasks {
            if t.stop_requested && t.last_status != TaskStatus::Stopped {
                t.last_status = TaskStatus::Stopped;
            }
        }
    }

    /// PENDING tasks reach RUNNING now, or stop before it.
    pub fn run_pending(&mut self) {
        let (now, launch) = (self.now, self.launch.clone());
        for t in &mut self.snap.tasks {
            if t.last_status == TaskStatus::Pending && !t.stop_requested {
                match launch {
                    Launch::FailsToStart => {
                        t.last_status = TaskStatus::Stopped;
                        t.stop_code = Some(TaskStopCode::TaskFailedToStart);
                    }
                    Launch::ExitsAtOnce => {
                        t.last_status = TaskStatus::Stopped;
                        t.started_at_millis = Some(now);
                        t.stop_code = Some(TaskStopCode::EssentialContainerExited);
                    }
                    Launch::Runs | Launch::Unplaceable(_) => {
                        t.last_status = TaskStatus::Running;
                        t.started_at_millis = Some(now);
                    }
                }
            }
        }
    }

    pub fn advance(&mut self, millis: i64) {
        self.now += millis;
    }

    /// A round, then the world moves on: stops finish, launches run, and
    /// enough time passes for them to count as healthy.
    pub fn tick(&mut self) -> Decision {
        let d = self.round();
        self.finish_stops();
        self.run_pending();
        self.advance(WARM);
        d
    }

    /// `services-stable`: one deployment and runningCount == desiredCount.
    pub fn stable(&self, d: &Decision) -> bool {
        d.state.deployments.len() == 1 && d.counts.running == d.counts.desired
    }

    /// Ticks until a round changes nothing and the service is stable;
    /// returns the decisions made on the way.
    pub fn converge(&mut self, max_rounds: usize) -> Vec<Decision> {
        let mut seen = Vec::new();
        for _ in 0..max_rounds {
            let d = self.tick();
            let done = d.start.is_empty() && d.stop.is_empty() && self.stable(&d);
            seen.push(d);
            if done {
                return seen;
            }
        }
        panic!("service did not converge in {max_rounds} rounds");
    }
}

/// The messages of a decision's events.
pub fn messages(d: &Decision) -> Vec<&str> {
    d.events.iter().map(|e| e.message.as_str()).collect()
}

/// How many tasks a decision launches.
pub fn started(d: &Decision) -> u32 {
    d.start.iter().map(|s| s.placement.count()).sum()
}

pub fn stopped_ids(d: &Decision) -> Vec<&str> {
    d.stop.iter().map(|s| s.task_id.as_str()).collect()
}
