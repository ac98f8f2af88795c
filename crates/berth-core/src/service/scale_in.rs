//! Which task goes first when the scheduler stops some of several, and how
//! far minimumHealthyPercent lets it go.
//!
//! Order: tasks not RUNNING yet, then ones still warming up, then unhealthy
//! ones, then healthy ones; among equals, tasks on DRAINING instances, then
//! tasks of the oldest deployment (tasks of a deployment no longer listed
//! first of all). Then ECS's default termination rule for services: from
//! the Availability Zone with the most remaining tasks of the service, then
//! from the instance with the most; then the newest task (ECS picks at
//! random there; Berth stays deterministic), then the task id.
//!
//! The zone and instance counts are updated after every pick, so stopping
//! several tasks keeps the zones balanced. Binpack services are treated the
//! same way: choosing by remaining resources would need the instances'
//! resources, which the snapshot does not carry.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use super::Round;
use super::rules::Standing;
use super::snapshot::TaskView;

/// ECS's stoppedReason for a task replaced because of its health check.
pub(super) const UNHEALTHY_REASON: &str = "Task failed container health checks";

/// A candidate with the facts the order needs, fixed for the round.
struct Candidate<'a> {
    task: &'a TaskView,
    standing: Standing,
    draining: bool,
    /// Creation time of the task's deployment: unknown deployments sort
    /// first, the PRIMARY last.
    deployment_age: i64,
    zone: usize,
    host: usize,
}

/// Smaller sorts first: standing, not draining, deployment age, zone and
/// instance counts (larger first), newest first, id.
type Key<'a> = (
    Standing,
    bool,
    i64,
    Reverse<u32>,
    Reverse<u32>,
    Reverse<i64>,
    &'a str,
);

/// Picks candidates one by one, keeping the zone and instance counts of
/// the remaining population current.
pub(super) struct ScaleIn<'a> {
    candidates: Vec<Candidate<'a>>,
    zones: Vec<u32>,
    hosts: Vec<u32>,
}

impl<'a> ScaleIn<'a> {
    /// `population` is every task that stays unless picked; `candidates`
    /// (a subset of it) are the ones that may be picked.
    pub fn new(r: &Round<'a>, population: &[&'a TaskView], candidates: Vec<&'a TaskView>) -> Self {
        let mut zone_index: BTreeMap<&str, usize> = BTreeMap::new();
        let mut host_index: BTreeMap<&str, usize> = BTreeMap::new();
        let mut zones = Vec::new();
        let mut hosts = Vec::new();
        let mut place = |t: &'a TaskView| {
            let zone = t.availability_zone.as_deref().unwrap_or_default();
            let host = t.instance_id.as_deref().unwrap_or_default();
            let next = zone_index.len();
            let zone = *zone_index.entry(zone).or_insert(next);
            let next = host_index.len();
            let host = *host_index.entry(host).or_insert(next);
            (zone, host)
        };
        for &t in population {
            let (zone, host) = place(t);
            zones.resize(zones.len().max(zone + 1), 0);
            hosts.resize(hosts.len().max(host + 1), 0);
            zones[zone] += 1;
            hosts[host] += 1;
        }
        let primary = r.state.primary().map(|p| p.id.as_str());
        let candidates = candidates
            .into_iter()
            .map(|task| {
                let (zone, host) = place(task);
                let deployment_age = if Some(task.started_by.as_str()) == primary {
                    i64::MAX
                } else {
                    r.state
                        .deployments
                        .iter()
                        .find(|d| d.id == task.started_by)
                        .map_or(i64::MIN, |d| d.created_at_millis)
                };
                Candidate {
                    task,
                    standing: r.standing(task).unwrap_or(Standing::Starting),
                    draining: r.on_draining_instance(task),
                    deployment_age,
                    zone,
                    host,
                }
            })
            .collect();
        zones.resize(zone_index.len(), 0);
        hosts.resize(host_index.len(), 0);
        Self {
            candidates,
            zones,
            hosts,
        }
    }

    /// Removes and returns the first candidate in the order whose standing
    /// `wanted` accepts.
    pub fn take(&mut self, wanted: impl Fn(Standing) -> bool) -> Option<&'a TaskView> {
        let (index, _) = self
            .candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| wanted(c.standing))
            .min_by_key(|(_, c)| self.key(c))?;
        let picked = self.candidates.swap_remove(index);
        self.zones[picked.zone] = self.zones[picked.zone].saturating_sub(1);
        self.hosts[picked.host] = self.hosts[picked.host].saturating_sub(1);
        Some(picked.task)
    }

    fn key(&self, c: &Candidate<'a>) -> Key<'a> {
        (
            c.standing,
            !c.draining,
            c.deployment_age,
            Reverse(self.zones[c.zone]),
            Reverse(self.hosts[c.host]),
            Reverse(c.task.created_at_millis),
            c.task.id.as_str(),
        )
    }
}

/// Stops `candidates` as far as minimumHealthyPercent allows, given the
/// active `population` (which includes them). Tasks not RUNNING yet go at
/// once. Unhealthy tasks still count as running: each goes only while more
/// than `lower` tasks run, so with room under maximumPercent the replacement
/// starts (and turns healthy) first, and without it they go one by one.
/// Warming tasks may already serve and turn healthy by themselves, so they
/// go only while the minimum holds without them: a deployment right after a
/// scale-up keeps the old tasks until new ones count. Healthy tasks go in
/// scale-in order while more than `lower` are healthy.
pub(super) fn stop_within_minimum<'a>(
    r: &mut Round<'a>,
    candidates: Vec<&'a TaskView>,
    population: &[&'a TaskView],
    lower: u32,
) {
    let count = |wanted: &[Standing]| {
        let n = population
            .iter()
            .filter(|t| r.standing(t).is_some_and(|s| wanted.contains(&s)))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    };
    let mut healthy = count(&[Standing::Healthy]);
    let mut running = count(&[Standing::Healthy, Standing::Unhealthy]);
    let mut picker = ScaleIn::new(r, population, candidates);
    while let Some(t) = picker.take(|s| s == Standing::Starting) {
        let reason = r.scaling_reason();
        r.request_stop(t, reason);
    }
    while running > lower
        && let Some(t) = picker.take(|s| s == Standing::Unhealthy)
    {
        r.request_stop(t, UNHEALTHY_REASON.to_owned());
        running -= 1;
    }
    while healthy >= lower
        && let Some(t) = picker.take(|s| s == Standing::Warming)
    {
        let reason = r.scaling_reason();
        r.request_stop(t, reason);
    }
    while healthy > lower
        && running > lower
        && let Some(t) = picker.take(|s| s == Standing::Healthy)
    {
        let reason = r.scaling_reason();
        r.request_stop(t, reason);
        healthy -= 1;
        running -= 1;
    }
}
