//! The DAEMON scheduler: exactly one task of the PRIMARY deployment on
//! every ACTIVE container instance that meets the service's placement
//! constraints (the caller evaluates them into
//! [`InstanceView::daemon_eligible`]). A task starts as soon as an eligible
//! instance with a connected agent has no task; tasks on DRAINING or no
//! longer eligible instances are stopped regardless of the minimum (daemon
//! tasks are never moved elsewhere); tasks on instances that left are gone
//! with them.
//!
//! maximumPercent is always 100: on each instance the old task stops
//! before its replacement starts. minimumHealthyPercent (default 0) bounds
//! how many instances are between the two at once.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use super::Round;
use super::decision::Placement;
use super::rules::{Bounds, DAEMON_MAX_PERCENT, DAEMON_MIN_PERCENT, Standing};
use super::scale_in::stop_within_minimum;
use super::snapshot::{InstanceStatus, InstanceView, ServiceStatus, TaskView};

/// Whether a daemon task belongs on `instance`.
pub(super) fn eligible(instance: &InstanceView) -> bool {
    instance.status == InstanceStatus::Active && instance.daemon_eligible
}

/// Schedules one round; returns whether the deployment configuration alone
/// keeps the service from making progress.
pub(super) fn schedule(r: &mut Round<'_>) -> bool {
    let bounds = Bounds::new(
        r.desired,
        r.snap.minimum_healthy_percent.unwrap_or(DAEMON_MIN_PERCENT),
        DAEMON_MAX_PERCENT,
    );
    let primary = r.state.primary().map(|p| p.id.clone());
    let active: Vec<&TaskView> = r.active().collect();
    // A deleted service has a home nowhere: everything goes.
    let hosts: Vec<&InstanceView> = if r.snap.status == ServiceStatus::Active {
        r.instances
            .values()
            .copied()
            .filter(|i| eligible(i))
            .collect()
    } else {
        Vec::new()
    };

    let mut misplaced = Vec::new();
    let mut by_host: BTreeMap<&str, Vec<&TaskView>> =
        hosts.iter().map(|h| (h.id.as_str(), Vec::new())).collect();
    for &t in &active {
        match t.instance_id.as_deref().and_then(|id| by_host.get_mut(id)) {
            Some(tasks) => tasks.push(t),
            None => misplaced.push(t),
        }
    }
    // Instances holding any live task, stopping ones included.
    let occupied_hosts: BTreeSet<&str> =
        r.live().filter_map(|t| t.instance_id.as_deref()).collect();

    let mut candidates = Vec::new();
    let mut targets = Vec::new();
    let mut occupied = false;
    for host in &hosts {
        let tasks = by_host.remove(host.id.as_str()).unwrap_or_default();
        let (mut own, others): (Vec<&TaskView>, Vec<&TaskView>) =
            tasks.into_iter().partition(|t| {
                primary.as_deref() == Some(t.started_by.as_str())
                    && r.standing(t) != Some(Standing::Unhealthy)
            });
        // Keep the most advanced of the PRIMARY's tasks, the oldest first.
        own.sort_by_key(|t| (Reverse(r.standing(t)), t.created_at_millis, t.id.as_str()));
        let keeps = !own.is_empty();
        candidates.extend(others);
        candidates.extend(own.into_iter().skip(1));
        if keeps {
            continue;
        }
        if occupied_hosts.contains(host.id.as_str()) {
            occupied = true;
        } else if host.disconnected_since_millis.is_none() {
            targets.push(host.id.clone());
        }
    }

    let before = r.stop.len();
    let leaving: BTreeSet<&str> = misplaced.iter().map(|t| t.id.as_str()).collect();
    for t in misplaced {
        let reason = r.scaling_reason();
        r.request_stop(t, reason);
    }
    let mut launched = false;
    if !targets.is_empty() && r.can_launch() {
        r.launch(Placement::OnInstances(targets));
        launched = true;
    }
    let has_work = occupied || !candidates.is_empty();
    // The minimum counts only the tasks that stay where they are.
    let staying: Vec<&TaskView> = active
        .into_iter()
        .filter(|t| !leaving.contains(t.id.as_str()))
        .collect();
    stop_within_minimum(r, candidates, &staying, bounds.lower);
    let stopped = r.stop.len() > before;
    has_work && !launched && !stopped && r.settled()
}
