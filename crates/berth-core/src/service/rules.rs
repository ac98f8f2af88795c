//! The arithmetic both schedulers share: the minimumHealthyPercent /
//! maximumPercent bounds, and when a task counts as healthy, unhealthy or
//! still on its way (ECS §2.4 "minimumHealthyPercent / maximumPercent").

use berth_types::HealthStatus;

use super::snapshot::{TaskStatus, TaskView};

/// A RUNNING task without a container health check counts towards the
/// minimum only after this long.
pub const HEALTHY_AFTER_MILLIS: i64 = 40_000;

pub const REPLICA_MIN_PERCENT: u32 = 100;
pub const REPLICA_MAX_PERCENT: u32 = 200;
pub const DAEMON_MIN_PERCENT: u32 = 0;
pub const DAEMON_MAX_PERCENT: u32 = 100;

/// How many tasks must stay healthy and how many may exist at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// ceil(desired × minimumHealthyPercent / 100).
    pub lower: u32,
    /// floor(desired × maximumPercent / 100).
    pub upper: u32,
}

impl Bounds {
    pub fn new(desired: u32, minimum_healthy_percent: u32, maximum_percent: u32) -> Self {
        let desired = u64::from(desired);
        let lower = (desired * u64::from(minimum_healthy_percent)).div_ceil(100);
        let upper = desired * u64::from(maximum_percent) / 100;
        Self {
            lower: u32::try_from(lower).unwrap_or(u32::MAX),
            upper: u32::try_from(upper).unwrap_or(u32::MAX),
        }
    }
}

/// Where a live task stands for the bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Standing {
    /// Not RUNNING yet.
    Starting,
    /// RUNNING but not counted yet: inside the 40 s warm-up, waiting for a
    /// first health check result, or failing one inside the grace period.
    Warming,
    /// RUNNING and failing its container health check after the grace
    /// period: to be replaced.
    Unhealthy,
    /// Counts towards minimumHealthyPercent.
    Healthy,
}

/// Classifies a live task at `now`. The second value is when a `Warming`
/// task's standing changes by the clock alone, so the caller can wake up.
pub fn standing(task: &TaskView, grace_millis: i64, now: i64) -> (Standing, Option<i64>) {
    if task.last_status != TaskStatus::Running {
        return (Standing::Starting, None);
    }
    // A RUNNING task always has startedAt; fall back to its creation.
    let started = task.started_at_millis.unwrap_or(task.created_at_millis);
    if !task.has_health_check {
        let at = started.saturating_add(HEALTHY_AFTER_MILLIS);
        return if now >= at {
            (Standing::Healthy, None)
        } else {
            (Standing::Warming, Some(at))
        };
    }
    match task.health {
        HealthStatus::Healthy => (Standing::Healthy, None),
        HealthStatus::Unknown => (Standing::Warming, None),
        HealthStatus::Unhealthy => {
            let at = started.saturating_add(grace_millis);
            if now >= at {
                (Standing::Unhealthy, None)
            } else {
                (Standing::Warming, Some(at))
            }
        }
    }
}
