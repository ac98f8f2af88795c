//! What the scheduler is told about one service at one moment: its
//! configuration, its tasks, the container instances they sit on (and, for
//! DAEMON services, the ones they should sit on), and what became of the
//! launches the previous decision asked for. Everything is plain data the
//! caller copies out of its cache; nothing here is read from a clock.

use berth_types::{DeploymentCircuitBreaker, HealthStatus, SchedulingStrategy, Task, TaskStopCode};

use crate::lifecycle;

/// How long an agent may stay disconnected before its tasks are declared
/// lost and replaced (Berth's own rule; ECS leaves them alone forever).
pub const DEFAULT_LOST_AGENT_TIMEOUT_MILLIS: i64 = 60_000;

/// One service as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSnapshot {
    /// `serviceName`: used in every event message and in the task `group`.
    pub name: String,
    pub status: ServiceStatus,
    pub scheduling_strategy: SchedulingStrategy,
    /// `desiredCount`; ignored for DAEMON services, whose desired count is
    /// the number of eligible instances.
    pub desired_count: u32,
    /// `deploymentConfiguration.minimumHealthyPercent`; `None` takes ECS's
    /// default (100 for REPLICA, 0 for DAEMON).
    pub minimum_healthy_percent: Option<u32>,
    /// `deploymentConfiguration.maximumPercent`; `None` takes ECS's default
    /// (200 for REPLICA). DAEMON services always use 100.
    pub maximum_percent: Option<u32>,
    /// `deploymentConfiguration.deploymentCircuitBreaker`, as on the wire.
    pub circuit_breaker: Option<DeploymentCircuitBreaker>,
    pub health_check_grace_period_seconds: u32,
    /// Every task of the service that the store still holds, STOPPED ones
    /// included (they are how failures are noticed).
    pub tasks: Vec<TaskView>,
    /// Every container instance that hosts one of `tasks`, and for DAEMON
    /// services every instance of the cluster. A task whose instance is
    /// missing here is taken to be on an instance that left the cluster.
    pub instances: Vec<InstanceView>,
    /// What happened to the `start` requests of the previous decision.
    pub launched: LaunchReport,
    /// Disconnection after which an agent's tasks are lost; see
    /// [`DEFAULT_LOST_AGENT_TIMEOUT_MILLIS`].
    pub lost_agent_timeout_millis: i64,
}

/// `Service.status` as far as scheduling cares: INACTIVE services are not
/// scheduled at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceStatus {
    Active,
    /// Deleted: every task is stopped, then the service becomes INACTIVE.
    Draining,
}

/// A task's `lastStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TaskStatus {
    Provisioning,
    Pending,
    Activating,
    Running,
    Deactivating,
    Stopping,
    Deprovisioning,
    Stopped,
}

impl TaskStatus {
    /// Parses the wire spelling; an unknown status reads as PROVISIONING,
    /// the most conservative live state.
    pub fn from_wire(status: &str) -> Self {
        match status {
            lifecycle::PENDING => Self::Pending,
            lifecycle::ACTIVATING => Self::Activating,
            lifecycle::RUNNING => Self::Running,
            lifecycle::DEACTIVATING => Self::Deactivating,
            lifecycle::STOPPING => Self::Stopping,
            lifecycle::DEPROVISIONING => Self::Deprovisioning,
            lifecycle::STOPPED => Self::Stopped,
            _ => Self::Provisioning,
        }
    }

    /// Counted in `pendingCount`: on its way to RUNNING.
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Provisioning | Self::Pending | Self::Activating)
    }
}

/// The facts about one task the scheduler decides on.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// The task id (the last segment of its ARN), as event messages show it.
    pub id: String,
    /// `startedBy`: the id of the deployment that launched it.
    pub started_by: String,
    pub last_status: TaskStatus,
    /// `desiredStatus` is STOPPED: someone already asked it to stop.
    pub stop_requested: bool,
    /// The task's `healthStatus` over its essential containers.
    pub health: HealthStatus,
    /// Whether an essential container defines a health check; without one
    /// a task counts as healthy 40 s after it reaches RUNNING.
    pub has_health_check: bool,
    pub created_at_millis: i64,
    /// When the task reached RUNNING; `None` if it never did.
    pub started_at_millis: Option<i64>,
    /// The container instance id; `None` for Fargate tasks.
    pub instance_id: Option<String>,
    pub availability_zone: Option<String>,
    pub stop_code: Option<TaskStopCode>,
}

impl TaskView {
    /// Reads the wire `Task`. `has_health_check` comes from its task
    /// definition, which the task itself does not carry.
    pub fn from_wire(task: &Task, has_health_check: bool) -> Self {
        let last_segment = |arn: &str| arn.rsplit('/').next().unwrap_or(arn).to_owned();
        Self {
            id: task
                .task_arn
                .as_deref()
                .map(last_segment)
                .unwrap_or_default(),
            started_by: task.started_by.clone().unwrap_or_default(),
            last_status: TaskStatus::from_wire(task.last_status.as_deref().unwrap_or_default()),
            stop_requested: task.desired_status.as_deref() == Some(lifecycle::STOPPED),
            health: task.health_status.unwrap_or(HealthStatus::Unknown),
            has_health_check,
            created_at_millis: task.created_at.map(|t| t.millis()).unwrap_or_default(),
            started_at_millis: task.started_at.map(|t| t.millis()),
            instance_id: task.container_instance_arn.as_deref().map(last_segment),
            availability_zone: task.availability_zone.clone(),
            stop_code: task.stop_code,
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.last_status == TaskStatus::Stopped
    }
}

/// A container instance's `status` as far as scheduling cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceStatus {
    Active,
    /// No new tasks; service tasks on it are replaced elsewhere.
    Draining,
    /// Deregistered (or deregistering): its tasks are gone with it.
    Inactive,
}

impl InstanceStatus {
    /// Parses the wire spelling. REGISTERING and REGISTRATION_FAILED
    /// instances cannot hold tasks yet, so they read as INACTIVE, as do
    /// DEREGISTERING ones.
    pub fn from_wire(status: &str) -> Self {
        match status {
            "ACTIVE" => Self::Active,
            "DRAINING" => Self::Draining,
            _ => Self::Inactive,
        }
    }
}

/// A container instance as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceView {
    /// The container instance id (the last segment of its ARN).
    pub id: String,
    pub status: InstanceStatus,
    /// When its agent disconnected; `None` while connected.
    pub disconnected_since_millis: Option<i64>,
    pub availability_zone: Option<String>,
    /// DAEMON services only: whether the instance meets the service's
    /// placement constraints (the caller evaluates them).
    pub daemon_eligible: bool,
}

/// What became of the previous decision's `start` requests, reported on the
/// next snapshot so the events can name the tasks and the closest instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchReport {
    /// Ids of the tasks that were created.
    pub started: Vec<String>,
    /// One entry per task that could not be placed.
    pub failures: Vec<PlacementFailure>,
}

/// Why one task could not be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementFailure {
    /// ECS's `failures[].reason`: `RESOURCE:MEMORY`, `AGENT`, `ATTRIBUTE`,
    /// `NO ACTIVE INSTANCES`, `MemberOf placement constraint unsatisfied`…
    /// or a launch error such as `You've reached the limit on the number of
    /// tasks you can run concurrently`.
    pub reason: String,
    /// The id of the container instance that came closest, if any.
    pub closest_instance: Option<String>,
}
