//! The REPLICA scheduler: keep `desiredCount` tasks of the PRIMARY
//! deployment, replacing tasks of older deployments, tasks failing their
//! health check and tasks on DRAINING instances, within
//! minimumHealthyPercent (rounded up) and maximumPercent (rounded down).
//!
//! Each round:
//! - *keep*: the PRIMARY's tasks that are not unhealthy and not on a
//!   DRAINING instance, at most `desired` of them (the surplus is chosen in
//!   scale-in order); everything else is a candidate to stop;
//! - *start* `desired − kept` tasks, but never so many that the tasks not
//!   yet STOPPED (stopping ones included) would exceed the upper bound;
//! - *stop* candidates within the lower bound (see
//!   [`stop_within_minimum`]).
//!
//! This reproduces the worked examples: desired 4 at 100/200 starts four
//! new tasks and stops old ones only as new ones turn healthy; at 0/100 it
//! stops all four, then starts four; 10 at 100/150 rolls in batches of
//! five; 2 at 75/125 can do neither, which the round reports as blocked.

use std::collections::BTreeSet;

use super::Round;
use super::decision::Placement;
use super::rules::{Bounds, REPLICA_MAX_PERCENT, REPLICA_MIN_PERCENT, Standing};
use super::scale_in::{ScaleIn, stop_within_minimum};
use super::snapshot::TaskView;

/// Schedules one round; returns whether the deployment configuration alone
/// keeps the service from making progress.
pub(super) fn schedule(r: &mut Round<'_>) -> bool {
    let bounds = Bounds::new(
        r.desired,
        r.snap
            .minimum_healthy_percent
            .unwrap_or(REPLICA_MIN_PERCENT),
        r.snap.maximum_percent.unwrap_or(REPLICA_MAX_PERCENT),
    );
    let primary = r.state.primary().map(|p| p.id.clone());
    let active: Vec<&TaskView> = r.active().collect();
    let (mut keep, mut candidates): (Vec<&TaskView>, Vec<&TaskView>) =
        active.iter().partition(|t| {
            primary.as_deref() == Some(t.started_by.as_str())
                && r.standing(t) != Some(Standing::Unhealthy)
                && !r.on_draining_instance(t)
        });
    let desired = usize::try_from(r.desired).unwrap_or(usize::MAX);
    if keep.len() > desired {
        let mut picker = ScaleIn::new(r, &keep, keep.clone());
        let surplus: Vec<&TaskView> = (desired..keep.len())
            .filter_map(|_| picker.take(|_| true))
            .collect();
        let surplus_ids: BTreeSet<&str> = surplus.iter().map(|t| t.id.as_str()).collect();
        keep.retain(|t| !surplus_ids.contains(t.id.as_str()));
        candidates.extend(surplus);
    }

    let kept = u32::try_from(keep.len()).unwrap_or(u32::MAX);
    let need = r.desired.saturating_sub(kept);
    let room = bounds.upper.saturating_sub(r.live_count());
    let mut launched = 0;
    if need > 0 && room > 0 && r.can_launch() {
        launched = need.min(room);
        r.launch(Placement::Anywhere { count: launched });
    }

    let has_work = need > 0 || !candidates.is_empty();
    let before = r.stop.len();
    stop_within_minimum(r, candidates, &active, bounds.lower);
    let stopped = r.stop.len() > before;
    let start_held_by_maximum = need == 0 || room == 0;
    has_work && launched == 0 && !stopped && start_held_by_maximum && r.settled()
}
