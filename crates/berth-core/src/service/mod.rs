//! The ECS service scheduler's decisions as one pure function:
//! [`decide`](crate::service::decide)`(snapshot, state, now) → Decision`. No IO, no clock, no
//! randomness: the same inputs always give the same decision, which is what
//! makes it testable against the worked examples of `ecs-semantics.md`
//! §2.4 and safe to re-run.
//!
//! One round, in order:
//! 1. report the previous round's launches (started tasks, placement
//!    failures);
//! 2. mark STOPPED the tasks whose host left the cluster or whose agent has
//!    been disconnected longer than the lost-agent timeout (Berth's rule;
//!    ECS waits forever), so they are replaced at once;
//! 3. account for what happened to tasks since the last round (launch
//!    backoff, circuit-breaker counts, health-check failures);
//! 4. fail — and perhaps roll back — the PRIMARY deployment if the circuit
//!    breaker trips;
//! 5. schedule: REPLICA (`replica`) or DAEMON (`daemon`) — what to
//!    start and what to stop within minimumHealthyPercent/maximumPercent;
//! 6. update the deployments (counts; drained ACTIVE ones leave the list)
//!    and the service deployments, complete the rollout at steady state,
//!    and record the events.
//!
//! # Wiring it into a reconcile loop
//! Per service, on every change to the service, its tasks or the cluster's
//! instances, and at `next_wakeup_millis`: build a
//! [`ServiceSnapshot`](crate::service::ServiceSnapshot), call `decide` with the
//! [`ServiceState`](crate::service::ServiceState) persisted from the previous round,
//! then in one transaction persist `decision.state`, write
//! `decision.counts`, `state.wire_deployments()` and `state.events.to_wire()`
//! onto the service, and apply `decision.stop` (`lifecycle::request_stop`
//! or `lifecycle::force_stopped`). Then place `decision.start` and pass
//! what happened (created task ids, placement failures) in the next
//! snapshot's `launched`. Setting `inactive` finishes a DRAINING service.

mod accounting;
mod breaker;
mod daemon;
mod decision;
mod deployment;
mod events;
mod history;
mod replica;
mod rules;
mod scale_in;
mod snapshot;
mod throttle;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use berth_types::{DeploymentRolloutState, SchedulingStrategy, TaskStopCode};

pub use breaker::{MAX_THRESHOLD, MIN_THRESHOLD, threshold as circuit_breaker_threshold};
pub use decision::{Counts, Decision, Placement, StartTasks, StopHow, StopTask};
pub use deployment::{
    CompletedDeployment, DEPLOYMENT_ID_PREFIX, Deployment, DeploymentStatus, ServiceState,
    completed_reason, deployment_id, deployment_id_at, in_progress_reason, revision_id,
};
pub use events::{EventLog, EventRecord, MAX_EVENTS, REPEAT_AFTER_MILLIS};
pub use history::{
    BreakerRecord, MAX_SERVICE_DEPLOYMENTS, RevisionCounts, RollbackRecord, SUPERSEDED_REASON,
    ServiceDeploymentRecord,
};
pub use rules::{Bounds, HEALTHY_AFTER_MILLIS};
pub use snapshot::{
    DEFAULT_LOST_AGENT_TIMEOUT_MILLIS, InstanceStatus, InstanceView, LaunchReport,
    PlacementFailure, ServiceSnapshot, ServiceStatus, TaskStatus, TaskView,
};
pub use throttle::{MAX_BACKOFF_MILLIS, Throttle, backoff_millis};

use events::Emission;
use rules::Standing;

/// How soon to run again after asking for launches, so placement failures
/// are reported and retried even when nothing else changes.
pub const LAUNCH_RETRY_MILLIS: i64 = 10_000;

/// Runs one scheduling round for one service at `now_millis`.
pub fn decide(snapshot: &ServiceSnapshot, state: &ServiceState, now_millis: i64) -> Decision {
    let mut r = Round::new(snapshot, state.clone(), now_millis);
    r.announce_launches();
    r.mark_lost_tasks();
    r.classify();
    r.sync_desired_count();
    accounting::account(&mut r);
    breaker::check(&mut r);
    let blocked = match snapshot.scheduling_strategy {
        SchedulingStrategy::Replica => replica::schedule(&mut r),
        SchedulingStrategy::Daemon => daemon::schedule(&mut r),
    };
    r.finish(blocked)
}

/// The working state of one round.
struct Round<'a> {
    snap: &'a ServiceSnapshot,
    now: i64,
    state: ServiceState,
    /// The service's tasks, oldest first, whatever the snapshot's order.
    tasks: Vec<&'a TaskView>,
    instances: BTreeMap<&'a str, &'a InstanceView>,
    /// The standing of every active task (live and not asked to stop).
    standings: BTreeMap<&'a str, Standing>,
    /// Tasks marked STOPPED this round because their host is lost or gone.
    gone: BTreeSet<&'a str>,
    /// The service's desired count (the eligible instances for DAEMON; 0
    /// once the service is deleted).
    desired: u32,
    start: Vec<StartTasks>,
    stop: Vec<StopTask>,
    emissions: Vec<Emission>,
    wake: Option<i64>,
}

impl<'a> Round<'a> {
    fn new(snap: &'a ServiceSnapshot, state: ServiceState, now: i64) -> Self {
        let mut tasks: Vec<&TaskView> = snap.tasks.iter().collect();
        tasks.sort_by(|a, b| (a.created_at_millis, &a.id).cmp(&(b.created_at_millis, &b.id)));
        let instances: BTreeMap<&str, &InstanceView> =
            snap.instances.iter().map(|i| (i.id.as_str(), i)).collect();
        let desired = match (snap.status, snap.scheduling_strategy) {
            (ServiceStatus::Draining, _) => 0,
            (_, SchedulingStrategy::Replica) => snap.desired_count,
            (_, SchedulingStrategy::Daemon) => {
                let n = instances.values().filter(|i| daemon::eligible(i)).count();
                u32::try_from(n).unwrap_or(u32::MAX)
            }
        };
        let mut state = state;
        // Bookkeeping for tasks the store no longer holds is done with.
        let known: BTreeSet<&str> = snap.tasks.iter().map(|t| t.id.as_str()).collect();
        state.marks.retain(|id, _| known.contains(id.as_str()));
        Self {
            snap,
            now,
            state,
            tasks,
            instances,
            standings: BTreeMap::new(),
            gone: BTreeSet::new(),
            desired,
            start: Vec::new(),
            stop: Vec::new(),
            emissions: Vec::new(),
            wake: None,
        }
    }

    /// Not STOPPED, in the store or by this round.
    fn is_live(&self, t: &TaskView) -> bool {
        !t.is_stopped() && !self.gone.contains(t.id.as_str())
    }

    fn live(&self) -> impl Iterator<Item = &'a TaskView> + '_ {
        self.tasks.iter().copied().filter(|t| self.is_live(t))
    }

    fn live_count(&self) -> u32 {
        u32::try_from(self.live().count()).unwrap_or(u32::MAX)
    }

    /// Live and not asked to stop: the tasks the scheduler manages.
    fn active(&self) -> impl Iterator<Item = &'a TaskView> + '_ {
        self.live().filter(|t| !t.stop_requested)
    }

    fn standing(&self, t: &TaskView) -> Option<Standing> {
        self.standings.get(t.id.as_str()).copied()
    }

    fn on_draining_instance(&self, t: &TaskView) -> bool {
        t.instance_id
            .as_deref()
            .and_then(|id| self.instances.get(id))
            .is_some_and(|i| i.status == InstanceStatus::Draining)
    }

    /// Every live task is managed and counts as running, so waiting cannot
    /// change anything by itself.
    fn settled(&self) -> bool {
        self.live().all(|t| {
            !t.stop_requested
                && matches!(
                    self.standing(t),
                    Some(Standing::Healthy | Standing::Unhealthy)
                )
        })
    }

    fn emit(&mut self, message: String) {
        self.emissions.push(Emission {
            message,
            standing: false,
        });
    }

    fn emit_standing(&mut self, message: String) {
        self.emissions.push(Emission {
            message,
            standing: true,
        });
    }

    fn wake_at(&mut self, at: i64) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    fn announce_launches(&mut self) {
        let name = &self.snap.name;
        for message in events::started(name, &self.snap.launched.started) {
            self.emit(message);
        }
        for failure in &self.snap.launched.failures {
            self.emit_standing(events::unable_to_place(name, failure));
        }
    }

    /// Tasks on an instance that left the cluster, or whose agent has been
    /// away too long, will never be reported on again: record them STOPPED
    /// so they are replaced now (and never count against maximumPercent).
    fn mark_lost_tasks(&mut self) {
        let timeout = self.snap.lost_agent_timeout_millis;
        for t in self.tasks.clone() {
            if t.is_stopped() {
                continue;
            }
            let Some(instance_id) = t.instance_id.as_deref() else {
                continue;
            };
            let instance = self
                .instances
                .get(instance_id)
                .filter(|i| i.status != InstanceStatus::Inactive);
            let reason = match instance {
                None => format!("Container instance {instance_id} left the cluster."),
                Some(i) => {
                    let Some(since) = i.disconnected_since_millis else {
                        continue;
                    };
                    let deadline = since.saturating_add(timeout);
                    if self.now < deadline {
                        self.wake_at(deadline);
                        continue;
                    }
                    format!(
                        "Task lost: the agent on container instance {instance_id} was \
                         disconnected for more than {} seconds.",
                        timeout / 1000
                    )
                }
            };
            self.gone.insert(t.id.as_str());
            self.stop.push(StopTask {
                task_id: t.id.clone(),
                code: TaskStopCode::InfrastructureHealth,
                reason,
                how: StopHow::MarkStopped,
            });
        }
    }

    fn classify(&mut self) {
        let grace = i64::from(self.snap.health_check_grace_period_seconds) * 1000;
        for t in self.active().collect::<Vec<_>>() {
            let (standing, changes_at) = rules::standing(t, grace, self.now);
            self.standings.insert(t.id.as_str(), standing);
            if let Some(at) = changes_at {
                self.wake_at(at);
            }
        }
    }

    /// A desiredCount change updates the PRIMARY deployment in place.
    fn sync_desired_count(&mut self) {
        let (desired, now) = (self.desired, self.now);
        if let Some(p) = self.state.primary_mut()
            && p.desired_count != desired
        {
            p.desired_count = desired;
            p.updated_at_millis = now;
        }
    }

    /// Whether the PRIMARY deployment may launch now.
    fn can_launch(&mut self) -> bool {
        if self.snap.status != ServiceStatus::Active
            || self
                .state
                .primary()
                .is_none_or(|p| p.rollout_state == DeploymentRolloutState::Failed)
        {
            return false;
        }
        if self.state.throttle.blocks(self.now) {
            if let Some(at) = self.state.throttle.retry_at_millis {
                self.wake_at(at);
            }
            return false;
        }
        true
    }

    fn launch(&mut self, placement: Placement) {
        let Some(p) = self.state.primary() else {
            return;
        };
        self.start.push(StartTasks {
            deployment_id: p.id.clone(),
            task_definition: p.task_definition.clone(),
            started_by: p.id.clone(),
            group: format!("service:{}", self.snap.name),
            placement,
        });
    }

    fn request_stop(&mut self, t: &TaskView, reason: String) {
        self.stop.push(StopTask {
            task_id: t.id.clone(),
            code: TaskStopCode::ServiceSchedulerInitiated,
            reason,
            how: StopHow::Request,
        });
    }

    /// ECS's stoppedReason for scale-in, deployments and draining.
    fn scaling_reason(&self) -> String {
        match self.state.primary() {
            Some(p) => format!("Scaling activity initiated by (deployment {})", p.id),
            None => format!("Scaling activity initiated by (service {})", self.snap.name),
        }
    }

    /// Counts, drained deployments, steady state and events.
    fn finish(mut self, blocked: bool) -> Decision {
        let name = self.snap.name.clone();
        let stopped: Vec<String> = self.stop.iter().map(|s| s.task_id.clone()).collect();
        for message in events::stopped(&name, &stopped) {
            self.emit(message);
        }
        self.update_deployments();
        self.state
            .track_service_deployments(self.snap.circuit_breaker.as_ref(), self.now);
        let live: Vec<&TaskView> = self.live().collect();
        let counts = Counts {
            desired: self.desired,
            running: count(live.iter().filter(|t| t.last_status == TaskStatus::Running)),
            pending: count(live.iter().filter(|t| t.last_status.is_pending())),
        };
        let inactive = self.snap.status == ServiceStatus::Draining && live.is_empty();
        let mut steady = false;
        if self.snap.status == ServiceStatus::Active {
            // Backing off matters only while tasks are missing.
            if self.state.throttle.impaired() && self.live_count() < self.desired {
                self.emit_standing(events::unable_to_start_consistently(&name));
            }
            if blocked {
                self.emit_standing(events::blocked_by_configuration(&name));
            }
            steady = self.is_steady();
            if steady {
                self.complete_rollout();
                // Steady means every task is the PRIMARY's: the failed
                // deployments kept on show leave as the rollout completes.
                self.state
                    .deployments
                    .retain(|d| d.status == DeploymentStatus::Primary);
                self.emit_standing(events::steady_state(&name));
            }
        }
        if !self.start.is_empty() {
            self.wake_at(self.now.saturating_add(LAUNCH_RETRY_MILLIS));
        }
        let emissions = std::mem::take(&mut self.emissions);
        let events = self.state.events.record(&name, emissions, self.now);
        if steady && let Some(at) = self.state.events.reported_at(&events::steady_state(&name)) {
            self.wake_at(at.saturating_add(REPEAT_AFTER_MILLIS));
        }
        Decision {
            state: self.state,
            start: self.start,
            stop: self.stop,
            counts,
            events,
            inactive,
            next_wakeup_millis: self.wake,
        }
    }

    fn update_deployments(&mut self) {
        let mut per_deployment: BTreeMap<&str, (u32, u32, u32)> = BTreeMap::new();
        for t in self.live() {
            let entry = per_deployment.entry(t.started_by.as_str()).or_default();
            entry.0 += 1;
            entry.1 += u32::from(t.last_status == TaskStatus::Running);
            entry.2 += u32::from(t.last_status.is_pending());
        }
        let now = self.now;
        for d in &mut self.state.deployments {
            let (_, running, pending) = per_deployment
                .get(d.id.as_str())
                .copied()
                .unwrap_or_default();
            if (d.running_count, d.pending_count) != (running, pending) {
                d.running_count = running;
                d.pending_count = pending;
                d.updated_at_millis = now;
            }
        }
        // A drained deployment leaves the list (ECS shows it INACTIVE, then
        // drops it), so services-stable can see exactly one. A FAILED one
        // stays while the deployment that replaced it rolls out, as ECS
        // shows it, or a rollback would hide the failure it answers.
        let rolling_out = self
            .state
            .primary()
            .is_some_and(|p| p.rollout_state == DeploymentRolloutState::InProgress);
        self.state.deployments.retain(|d| {
            d.status == DeploymentStatus::Primary
                || per_deployment.get(d.id.as_str()).is_some_and(|c| c.0 > 0)
                || (rolling_out && d.rollout_state == DeploymentRolloutState::Failed)
        });
    }

    /// ECS's steady state: nothing to start or stop, and exactly the
    /// desired number of tasks, all of the PRIMARY deployment, RUNNING,
    /// healthy and off DRAINING instances (so any other deployment still
    /// listed is a drained, failed one).
    fn is_steady(&self) -> bool {
        let Some(primary) = self.state.primary() else {
            return false;
        };
        self.start.is_empty()
            && self.stop.is_empty()
            && self.live_count() == self.desired
            && self.live().all(|t| {
                t.started_by == primary.id
                    && !t.stop_requested
                    && self.standing(t) == Some(Standing::Healthy)
                    && !self.on_draining_instance(t)
            })
    }

    fn complete_rollout(&mut self) {
        let now = self.now;
        let Some(p) = self.state.primary_mut() else {
            return;
        };
        if p.rollout_state != DeploymentRolloutState::InProgress {
            return;
        }
        p.rollout_state = DeploymentRolloutState::Completed;
        p.rollout_state_reason = completed_reason(&p.id);
        p.updated_at_millis = now;
        let completed = CompletedDeployment::of(p);
        self.emit(events::deployment_completed(&self.snap.name, &completed.id));
        self.state.service_deployment_completed(&completed.id, now);
        self.state.last_completed = Some(completed);
    }
}

fn count<T>(items: impl Iterator<Item = T>) -> u32 {
    u32::try_from(items.count()).unwrap_or(u32::MAX)
}
