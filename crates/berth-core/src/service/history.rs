//! Service deployments: ECS's record of each rollout of a service
//! (ListServiceDeployments, DescribeServiceDeployments). One is recorded
//! when a user starts a deployment (CreateService, or an UpdateService that
//! needs one); it targets a new service revision and names the revisions
//! running when it began as its sources. The scheduler moves it along:
//!
//! - PENDING → IN_PROGRESS on the first round that sees it;
//! - → SUCCESSFUL when its deployment completes;
//! - → STOPPED when a newer service deployment starts, or when the circuit
//!   breaker fails it without `rollback`;
//! - → ROLLBACK_IN_PROGRESS when the breaker fails it with `rollback` and
//!   a COMPLETED deployment exists (the rollback deployment carries on
//!   under this same service deployment), then ROLLBACK_SUCCESSFUL once that
//!   completes, or ROLLBACK_FAILED if it fails or there was nothing to roll
//!   back to.
//!
//! While it is ongoing its revision counts and circuit breaker figures
//! follow the deployments each round; once it ends they stay as they were.

use berth_types::{
    DeploymentCircuitBreaker, ServiceDeploymentRollbackMonitorsStatus as MonitorStatus,
    ServiceDeploymentStatus,
};
use serde::{Deserialize, Serialize};

use super::breaker;
use super::deployment::{Deployment, DeploymentStatus, ServiceState, revision_id};

/// Service deployments kept per service, newest first. The scheduler
/// rewrites its state on every round, so ECS's 90 days of history would
/// make every round of a busy service pay for its whole past.
pub const MAX_SERVICE_DEPLOYMENTS: usize = 20;

/// Why a service deployment stopped when a newer one started.
pub const SUPERSEDED_REASON: &str = "A newer service deployment started.";

/// One service revision's tasks, as a service deployment reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionCounts {
    pub revision: String,
    /// The PRIMARY deployment's desired count if it rolls out this
    /// revision; revisions being replaced are asked for nothing.
    pub requested: u32,
    pub running: u32,
    pub pending: u32,
}

impl RevisionCounts {
    fn new(revision: String) -> Self {
        Self {
            revision,
            requested: 0,
            running: 0,
            pending: 0,
        }
    }

    fn count(&mut self, deployments: &[Deployment]) {
        let (mut requested, mut running, mut pending) = (0u32, 0u32, 0u32);
        for d in deployments.iter().filter(|d| d.revision() == self.revision) {
            if d.status == DeploymentStatus::Primary {
                requested = requested.saturating_add(d.desired_count);
            }
            running = running.saturating_add(d.running_count);
            pending = pending.saturating_add(d.pending_count);
        }
        (self.requested, self.running, self.pending) = (requested, running, pending);
    }
}

/// The circuit breaker's rollback of a failed service deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRecord {
    pub reason: String,
    pub started_at_millis: i64,
    /// The revision rolled back to.
    pub revision: String,
    /// The deployment (`ecs-svc/…`) rolling it out.
    pub deployment_id: String,
}

/// The circuit breaker's view of a service deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerRecord {
    pub status: MonitorStatus,
    pub failure_count: u32,
    pub threshold: u32,
}

/// One service deployment. Its id is its target revision's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceDeploymentRecord {
    pub id: String,
    /// The deployment (`ecs-svc/…`) rolling out the target revision.
    pub deployment_id: String,
    pub target: RevisionCounts,
    pub sources: Vec<RevisionCounts>,
    pub status: ServiceDeploymentStatus,
    pub status_reason: Option<String>,
    pub created_at_millis: i64,
    pub started_at_millis: Option<i64>,
    pub finished_at_millis: Option<i64>,
    pub stopped_at_millis: Option<i64>,
    pub updated_at_millis: i64,
    pub rollback: Option<RollbackRecord>,
    /// Unknown until the first round sees the service's configuration.
    pub circuit_breaker: Option<BreakerRecord>,
}

impl ServiceDeploymentRecord {
    /// Not finished yet (ECS's "pending" and "ongoing" stages).
    pub fn is_ongoing(&self) -> bool {
        matches!(
            self.status,
            ServiceDeploymentStatus::Pending
                | ServiceDeploymentStatus::InProgress
                | ServiceDeploymentStatus::StopRequested
                | ServiceDeploymentStatus::RollbackRequested
                | ServiceDeploymentStatus::RollbackInProgress
        )
    }

    /// The deployment whose fate decides this one's: the rollback's once
    /// rolling back.
    fn driven_by(&self) -> &str {
        match &self.rollback {
            Some(r) if self.status == ServiceDeploymentStatus::RollbackInProgress => {
                &r.deployment_id
            }
            _ => &self.deployment_id,
        }
    }

    /// Whether deployment `id` belongs to this service deployment, so no
    /// new deployment may take its id.
    pub(crate) fn uses_deployment(&self, id: &str) -> bool {
        self.deployment_id == id
            || self
                .rollback
                .as_ref()
                .is_some_and(|r| r.deployment_id == id)
    }

    fn count(&mut self, deployments: &[Deployment]) {
        self.target.count(deployments);
        for source in &mut self.sources {
            source.count(deployments);
        }
    }

    fn end(&mut self, status: ServiceDeploymentStatus, now: i64) {
        self.status = status;
        self.finished_at_millis = Some(now);
        self.updated_at_millis = now;
    }

    fn stop(&mut self, reason: String, now: i64) {
        self.end(ServiceDeploymentStatus::Stopped, now);
        self.stopped_at_millis = Some(now);
        self.status_reason = Some(reason);
    }
}

impl ServiceState {
    /// The revisions in service now, to be the sources of a new service
    /// deployment: the PRIMARY's, and those of older deployments with tasks
    /// left.
    pub(crate) fn deployed_revisions(&self) -> Vec<String> {
        let mut revisions: Vec<String> = Vec::new();
        for d in &self.deployments {
            let in_service =
                d.status == DeploymentStatus::Primary || d.running_count > 0 || d.pending_count > 0;
            if in_service && !revisions.iter().any(|r| r == d.revision()) {
                revisions.push(d.revision().to_owned());
            }
        }
        revisions
    }

    /// Records the service deployment of the PRIMARY deployment just begun.
    pub(crate) fn record_service_deployment(&mut self, sources: Vec<String>, now: i64) {
        let Some(primary) = self.primary() else {
            return;
        };
        let mut record = ServiceDeploymentRecord {
            id: revision_id(&primary.id).to_owned(),
            deployment_id: primary.id.clone(),
            target: RevisionCounts::new(primary.revision().to_owned()),
            sources: sources.into_iter().map(RevisionCounts::new).collect(),
            status: ServiceDeploymentStatus::Pending,
            status_reason: None,
            created_at_millis: now,
            started_at_millis: None,
            finished_at_millis: None,
            stopped_at_millis: None,
            updated_at_millis: now,
            rollback: None,
            circuit_breaker: None,
        };
        record.count(&self.deployments);
        self.history.insert(0, record);
        self.history.truncate(MAX_SERVICE_DEPLOYMENTS);
    }

    /// A user started a new deployment: whatever was ongoing stops.
    pub(crate) fn stop_service_deployments(&mut self, now: i64) {
        for h in self.history.iter_mut().filter(|h| h.is_ongoing()) {
            h.stop(SUPERSEDED_REASON.to_owned(), now);
        }
    }

    /// Once a round: PENDING ones start, and ongoing ones follow their
    /// deployments' counts and circuit breaker.
    pub(crate) fn track_service_deployments(
        &mut self,
        config: Option<&DeploymentCircuitBreaker>,
        now: i64,
    ) {
        let deployments = &self.deployments;
        for h in self.history.iter_mut().filter(|h| h.is_ongoing()) {
            let before = h.clone();
            if h.status == ServiceDeploymentStatus::Pending {
                h.status = ServiceDeploymentStatus::InProgress;
                h.started_at_millis = Some(now);
            }
            h.count(deployments);
            let monitored = deployments
                .iter()
                .find(|d| d.id == h.deployment_id)
                .filter(|_| h.status == ServiceDeploymentStatus::InProgress);
            if let Some(d) = monitored {
                h.circuit_breaker = Some(match config.filter(|c| c.enable) {
                    Some(c) => BreakerRecord {
                        status: MonitorStatus::Monitoring,
                        failure_count: d.failed_tasks,
                        threshold: breaker::threshold(
                            d.desired_count,
                            c.threshold_configuration.as_ref(),
                        ),
                    },
                    None => BreakerRecord {
                        status: MonitorStatus::Disabled,
                        failure_count: 0,
                        threshold: 0,
                    },
                });
            }
            if *h != before {
                h.updated_at_millis = now;
            }
        }
    }

    /// The service deployment in progress that deployment `deployment_id`
    /// carries out (rolling out, or rolling back).
    fn ongoing_driven_by(&mut self, deployment_id: &str) -> Option<&mut ServiceDeploymentRecord> {
        self.history
            .iter_mut()
            .find(|h| h.is_ongoing() && h.driven_by() == deployment_id)
    }

    /// Deployment `deployment_id` completed: so did the service deployment
    /// it was rolling out, or rolling back.
    pub(crate) fn service_deployment_completed(&mut self, deployment_id: &str, now: i64) {
        let Some(h) = self.ongoing_driven_by(deployment_id) else {
            return;
        };
        if h.status == ServiceDeploymentStatus::RollbackInProgress {
            h.end(ServiceDeploymentStatus::RollbackSuccessful, now);
            return;
        }
        h.end(ServiceDeploymentStatus::Successful, now);
        if let Some(b) = &mut h.circuit_breaker
            && b.status == MonitorStatus::Monitoring
        {
            b.status = MonitorStatus::MonitoringComplete;
        }
    }

    /// The circuit breaker failed deployment `deployment_id` for `reason`;
    /// `rollback` is what it started instead, if anything, when
    /// `rollback_wanted`.
    pub(crate) fn service_deployment_failed(
        &mut self,
        deployment_id: &str,
        reason: &str,
        rollback_wanted: bool,
        rollback: Option<RollbackRecord>,
        now: i64,
    ) {
        let failed_tasks = self
            .deployments
            .iter()
            .find(|d| d.id == deployment_id)
            .map_or(0, |d| d.failed_tasks);
        let Some(h) = self.ongoing_driven_by(deployment_id) else {
            return;
        };
        if h.status == ServiceDeploymentStatus::RollbackInProgress {
            h.end(ServiceDeploymentStatus::RollbackFailed, now);
            h.status_reason = Some(reason.to_owned());
            return;
        }
        if let Some(b) = &mut h.circuit_breaker {
            b.status = MonitorStatus::Triggered;
            b.failure_count = failed_tasks;
        }
        match rollback {
            _ if !rollback_wanted => h.stop(reason.to_owned(), now),
            Some(r) => {
                h.status = ServiceDeploymentStatus::RollbackInProgress;
                h.status_reason = Some(reason.to_owned());
                h.rollback = Some(r);
                h.updated_at_millis = now;
            }
            None => {
                h.end(ServiceDeploymentStatus::RollbackFailed, now);
                h.status_reason = Some(reason.to_owned());
            }
        }
    }
}
