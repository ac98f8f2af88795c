//! The scheduler's persistent state for one service: `deployments[]` (one
//! PRIMARY plus the ACTIVE ones still being drained), the last COMPLETED
//! deployment (the circuit breaker's rollback target), the service
//! deployments (`history`), the launch backoff, the event log, and per-task
//! bookkeeping. Also deployment ids and the wire form of a deployment.
//!
//! The API layer creates the state with [`ServiceState::new`] on
//! CreateService and calls [`ServiceState::begin_deployment`] on an
//! UpdateService that needs a new deployment; both record a service
//! deployment whose target is a new service revision, numbered like the
//! deployment (`ecs-svc/N` introduces revision `N`, see [`revision_id`]).
//! A desiredCount-only update needs nothing: the next round copies the
//! service's desired count into the PRIMARY deployment.

use std::collections::BTreeMap;

use berth_types::{DeploymentRolloutState, Timestamp};
use serde::{Deserialize, Serialize};

use super::events::EventLog;
use super::history::ServiceDeploymentRecord;
use super::throttle::Throttle;

pub const DEPLOYMENT_ID_PREFIX: &str = "ecs-svc/";

/// `ecs-svc/` followed by `number` as 19 digits (reduced modulo 10^19).
pub fn deployment_id(number: u64) -> String {
    format!(
        "{DEPLOYMENT_ID_PREFIX}{:019}",
        number % 10_000_000_000_000_000_000
    )
}

/// The service revision a user's deployment introduces: the digits of its
/// id, so a deployment, its service deployment and its revision share a
/// number.
pub fn revision_id(deployment_id: &str) -> &str {
    deployment_id
        .strip_prefix(DEPLOYMENT_ID_PREFIX)
        .unwrap_or(deployment_id)
}

/// The id ECS gives a deployment created at `created_at_millis`: its ids
/// are `i64::MAX` minus the creation time in milliseconds (the Developer
/// Guide's `ecs-svc/9223370526043414679` was created at 1510811361.128).
pub fn deployment_id_at(created_at_millis: i64) -> String {
    let n = i64::MAX - created_at_millis.max(0);
    deployment_id(n.unsigned_abs())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentStatus {
    #[serde(rename = "PRIMARY")]
    Primary,
    /// An older deployment whose tasks are being replaced. Once it has no
    /// task left it leaves the list (ECS's INACTIVE).
    #[serde(rename = "ACTIVE")]
    Active,
}

impl DeploymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "PRIMARY",
            Self::Active => "ACTIVE",
        }
    }
}

/// One entry of `Service.deployments[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: String,
    pub status: DeploymentStatus,
    pub task_definition: String,
    pub desired_count: u32,
    pub running_count: u32,
    pub pending_count: u32,
    /// Consecutive failed tasks, as the circuit breaker counts them.
    pub failed_tasks: u32,
    pub rollout_state: DeploymentRolloutState,
    pub rollout_state_reason: String,
    pub created_at_millis: i64,
    pub updated_at_millis: i64,
    /// A task of this deployment has reached RUNNING: the circuit breaker
    /// stops counting tasks that fail to start and counts failed health
    /// checks instead (its stage 2).
    #[serde(default)]
    pub reached_running: bool,
    /// The latest failure counted in `failed_tasks` was a failed health
    /// check rather than a task that failed to start; the circuit breaker's
    /// reason says which.
    #[serde(default)]
    pub failing_health_checks: bool,
    /// The service revision rolled out; empty in states saved before
    /// revisions existed (see [`Deployment::revision`]).
    #[serde(default)]
    pub(crate) revision: String,
}

impl Deployment {
    pub(crate) fn new(
        id: String,
        revision: String,
        task_definition: String,
        desired_count: u32,
        now: i64,
    ) -> Self {
        Self {
            rollout_state_reason: in_progress_reason(&id),
            id,
            revision,
            status: DeploymentStatus::Primary,
            task_definition,
            desired_count,
            running_count: 0,
            pending_count: 0,
            failed_tasks: 0,
            rollout_state: DeploymentRolloutState::InProgress,
            created_at_millis: now,
            updated_at_millis: now,
            reached_running: false,
            failing_health_checks: false,
        }
    }

    /// The service revision this deployment rolls out: the one it
    /// introduced, or for a rollback the one it returns to.
    pub fn revision(&self) -> &str {
        if self.revision.is_empty() {
            revision_id(&self.id)
        } else {
            &self.revision
        }
    }

    /// The wire form. Launch type, capacity providers, platform and network
    /// configuration are the service's; the caller adds them.
    pub fn to_wire(&self) -> berth_types::Deployment {
        let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        berth_types::Deployment {
            id: Some(self.id.clone()),
            status: Some(self.status.as_str().to_owned()),
            task_definition: Some(self.task_definition.clone()),
            desired_count: count(self.desired_count),
            running_count: count(self.running_count),
            pending_count: count(self.pending_count),
            failed_tasks: count(self.failed_tasks),
            rollout_state: Some(self.rollout_state),
            rollout_state_reason: Some(self.rollout_state_reason.clone()),
            created_at: Some(Timestamp::from_millis(self.created_at_millis)),
            updated_at: Some(Timestamp::from_millis(self.updated_at_millis)),
            ..berth_types::Deployment::default()
        }
    }
}

pub fn in_progress_reason(deployment_id: &str) -> String {
    format!("ECS deployment {deployment_id} in progress.")
}

pub fn completed_reason(deployment_id: &str) -> String {
    format!("ECS deployment {deployment_id} completed.")
}

/// A deployment that reached COMPLETED: what a rollback returns to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedDeployment {
    pub id: String,
    pub task_definition: String,
    /// Empty in states saved before revisions existed (see
    /// [`CompletedDeployment::revision`]).
    #[serde(default)]
    pub(crate) revision: String,
}

impl CompletedDeployment {
    pub(crate) fn of(deployment: &Deployment) -> Self {
        Self {
            id: deployment.id.clone(),
            task_definition: deployment.task_definition.clone(),
            revision: deployment.revision().to_owned(),
        }
    }

    /// The service revision a rollback to this deployment rolls out.
    pub fn revision(&self) -> &str {
        if self.revision.is_empty() {
            revision_id(&self.id)
        } else {
            &self.revision
        }
    }
}

/// What the scheduler remembers about one task between rounds, so each
/// happening is counted once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TaskMarks {
    /// Seen with a `startedAt`.
    pub ran: bool,
    /// Seen counting as healthy.
    pub healthy: bool,
    /// Seen failing its health check after the grace period.
    pub unhealthy: bool,
    /// Seen STOPPED.
    pub ended: bool,
}

/// Everything the scheduler keeps about a service between rounds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceState {
    /// PRIMARY first, then ACTIVE ones, newest first.
    pub deployments: Vec<Deployment>,
    /// The most recent deployment that reached COMPLETED and has not been
    /// rolled back to since (a rollback makes it IN_PROGRESS again, so it
    /// is not eligible for another rollback until it completes).
    pub last_completed: Option<CompletedDeployment>,
    pub throttle: Throttle,
    pub events: EventLog,
    /// Keyed by task id; pruned to the tasks the snapshot still holds.
    #[serde(default)]
    pub(crate) marks: BTreeMap<String, TaskMarks>,
    /// The service deployments, newest first (at most
    /// [`MAX_SERVICE_DEPLOYMENTS`](super::MAX_SERVICE_DEPLOYMENTS)).
    #[serde(default)]
    pub history: Vec<ServiceDeploymentRecord>,
}

impl ServiceState {
    /// The state of a new service (CreateService): one PRIMARY deployment,
    /// IN_PROGRESS.
    pub fn new(
        deployment_id: String,
        task_definition: String,
        desired_count: u32,
        now: i64,
    ) -> Self {
        let mut state = Self::default();
        state.begin_deployment(deployment_id, task_definition, desired_count, now);
        state
    }

    pub fn primary(&self) -> Option<&Deployment> {
        self.deployments
            .iter()
            .find(|d| d.status == DeploymentStatus::Primary)
    }

    pub(crate) fn primary_mut(&mut self) -> Option<&mut Deployment> {
        self.deployments
            .iter_mut()
            .find(|d| d.status == DeploymentStatus::Primary)
    }

    pub(crate) fn deployment_mut(&mut self, id: &str) -> Option<&mut Deployment> {
        self.deployments.iter_mut().find(|d| d.id == id)
    }

    /// Starts a new deployment (UpdateService with a new task definition,
    /// network or placement configuration, or forceNewDeployment) of a new
    /// service revision, recorded as a new service deployment that stops the
    /// one in progress.
    pub fn begin_deployment(
        &mut self,
        deployment_id: String,
        task_definition: String,
        desired_count: u32,
        now: i64,
    ) {
        self.stop_service_deployments(now);
        let sources = self.deployed_revisions();
        let revision = revision_id(&deployment_id).to_owned();
        self.roll_out(
            Deployment::new(deployment_id, revision, task_definition, desired_count, now),
            now,
        );
        self.record_service_deployment(sources, now);
    }

    /// Makes `deployment` the PRIMARY: the previous one becomes ACTIVE and
    /// drains as the new one rolls out. A new task definition also resets
    /// the launch backoff, as in ECS.
    pub(crate) fn roll_out(&mut self, deployment: Deployment, now: i64) {
        let new_definition = self
            .primary()
            .is_none_or(|p| p.task_definition != deployment.task_definition);
        for d in &mut self.deployments {
            if d.status == DeploymentStatus::Primary {
                d.status = DeploymentStatus::Active;
                d.updated_at_millis = now;
            }
        }
        self.deployments.insert(0, deployment);
        if new_definition {
            self.throttle.reset();
        }
    }

    /// An unused deployment id in ECS's shape for a deployment created at
    /// `now` (counting down past ids already taken).
    pub fn fresh_deployment_id(&self, now: i64) -> String {
        let mut n = (i64::MAX - now.max(0)).unsigned_abs();
        loop {
            let id = deployment_id(n);
            let taken = self.deployments.iter().any(|d| d.id == id)
                || self.last_completed.as_ref().is_some_and(|c| c.id == id)
                || self.history.iter().any(|h| h.uses_deployment(&id));
            if !taken {
                return id;
            }
            n = n.wrapping_sub(1);
        }
    }

    /// `Service.deployments` on the wire.
    pub fn wire_deployments(&self) -> Vec<berth_types::Deployment> {
        self.deployments.iter().map(Deployment::to_wire).collect()
    }
}
