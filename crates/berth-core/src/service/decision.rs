//! What one scheduling round asks the caller to do: tasks to launch (placed
//! by the caller), tasks to stop, the new scheduler state to persist, the
//! counts to show on the service, and when to run the next round.

use berth_types::TaskStopCode;

use super::deployment::ServiceState;
use super::events::EventRecord;

/// The outcome of [`decide`](super::decide).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The state to persist with the service (deployments, event log,
    /// backoff); pass it to the next round.
    pub state: ServiceState,
    pub start: Vec<StartTasks>,
    pub stop: Vec<StopTask>,
    pub counts: Counts,
    /// Events emitted this round, oldest first (already in
    /// `state.events`).
    pub events: Vec<EventRecord>,
    /// A DRAINING service has no task left: set it INACTIVE.
    pub inactive: bool,
    /// Run the next round by then at the latest, even if nothing changes
    /// (health warm-up ends, backoff expires, an agent's grace runs out…).
    pub next_wakeup_millis: Option<i64>,
}

/// Tasks to launch for one deployment. Every task gets `startedBy` =
/// `deployment_id` and `group` = `service:NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartTasks {
    pub deployment_id: String,
    pub task_definition: String,
    pub started_by: String,
    pub group: String,
    pub placement: Placement,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// REPLICA: place this many tasks with the service's constraints and
    /// strategies.
    Anywhere { count: u32 },
    /// DAEMON: one task on each of these instances.
    OnInstances(Vec<String>),
}

impl Placement {
    /// How many tasks this asks for.
    pub fn count(&self) -> u32 {
        match self {
            Self::Anywhere { count } => *count,
            Self::OnInstances(ids) => u32::try_from(ids.len()).unwrap_or(u32::MAX),
        }
    }
}

/// A task to stop, with the code and reason DescribeTasks will show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopTask {
    pub task_id: String,
    pub code: TaskStopCode,
    pub reason: String,
    pub how: StopHow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopHow {
    /// Ask the agent to stop it (`lifecycle::request_stop`).
    Request,
    /// No agent will ever report on it again (its host is lost or gone):
    /// record it STOPPED now (`lifecycle::force_stopped`).
    MarkStopped,
}

/// The service-level counts to show on `Service`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `desiredCount` (for DAEMON services: the eligible instances).
    pub desired: u32,
    /// Tasks in RUNNING.
    pub running: u32,
    /// Tasks in PROVISIONING, PENDING or ACTIVATING.
    pub pending: u32,
}
