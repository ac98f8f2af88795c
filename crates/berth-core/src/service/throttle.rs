//! ECS's service throttle: when launches keep ending in tasks that stop
//! before reaching RUNNING, the delay before the next launch grows, up to 27
//! minutes, and the service reports that it "is unable to consistently
//! start tasks successfully". It never gives up. A task that reaches
//! RUNNING, or a deployment with a different task definition, resets it;
//! tasks that ran and then died do not count.
//!
//! One round that notices failures counts as one failed attempt, however
//! many tasks of that launch wave failed: a service of 50 tasks whose image
//! is missing backs off the same as a service of one.

use serde::{Deserialize, Serialize};

/// The delay after the first failed attempt; each further one doubles it.
pub const FIRST_BACKOFF_MILLIS: i64 = 5_000;
/// ECS's cap (it was 15 minutes before 2023).
pub const MAX_BACKOFF_MILLIS: i64 = 27 * 60 * 1000;
/// Consecutive failed attempts from which the service reports itself
/// impaired.
pub const IMPAIRED_AFTER: u32 = 3;

/// The delay before the next launch after `consecutive_failures` failed
/// attempts: 5 s, 10 s, 20 s … doubling up to 27 min.
pub fn backoff_millis(consecutive_failures: u32) -> i64 {
    if consecutive_failures == 0 {
        return 0;
    }
    // 2^20 × 5 s is far past the cap already.
    let doublings = (consecutive_failures - 1).min(20);
    FIRST_BACKOFF_MILLIS
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF_MILLIS)
}

/// Backoff state, persisted with the service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttle {
    pub consecutive_failures: u32,
    /// No launch before this time.
    pub retry_at_millis: Option<i64>,
}

impl Throttle {
    pub(crate) fn record_failure(&mut self, now: i64) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.retry_at_millis = Some(now.saturating_add(backoff_millis(self.consecutive_failures)));
    }

    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// Whether launches must still wait at `now`.
    pub fn blocks(&self, now: i64) -> bool {
        self.retry_at_millis.is_some_and(|at| now < at)
    }

    pub fn impaired(&self) -> bool {
        self.consecutive_failures >= IMPAIRED_AFTER
    }
}
