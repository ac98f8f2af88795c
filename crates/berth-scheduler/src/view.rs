//! The placement index for one request shape: which instances can take a
//! task of that shape, grouped and ordered the way its strategies rank them,
//! and kept correct one instance at a time.
//!
//! Why per shape rather than per filter: feasibility depends on the whole
//! request (CPU/memory/GPU thresholds, ports, required attributes, every
//! constraint, the task group), and a set kept per shape needs no skipping
//! of infeasible hosts at query time. It stays cheap to maintain because
//! every filter looks only at the instance being filtered, and the one
//! cross-instance quantity (a spread value's task count) is a sum: a change
//! to one instance is absorbed by re-evaluating that instance alone
//! ([`View::resync`]).
//!
//! Layout: one bucket per value of the leading `spread(attribute:…)` (a
//! single bucket without one) holding the group's task count under that
//! value and the feasible instances ordered by (inner strategy key, index).
//! Narrowing by successive per-instance minimums is a lexicographic minimum,
//! so the reference's candidates after all strategies are exactly the
//! smallest-key prefixes of the least-loaded buckets, and [`View::pick`]
//! finds the one the reference would draw with rank/select instead of a
//! scan. Rejected active instances are ordered by how far they got through
//! the filters, so the closest one is the first.
//!
//! Cost per task: one pass over the spread values (a handful for zones)
//! plus rank/select on the tied buckets, O(log n + n/64) each; per changed
//! instance: one filter evaluation and two ordered-set updates.

use std::cmp::Reverse;
use std::collections::HashMap;

use crate::blockset::BlockSet;
use crate::cql::InstanceView;
use crate::engine::{
    BinpackField, Instance, InstanceStatus, Reason, Request, Rng, SpreadField, Strategy, evaluate,
    has_duplicate_ports,
};

/// A per-instance strategy key that only changes when the instance does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InnerKey {
    Binpack(BinpackField),
    SpreadInstance,
}

/// How a view evaluates a strategy list.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    spread: Option<String>,
    /// At most two keys, compared lexicographically.
    inner: Vec<InnerKey>,
    trailing_random: bool,
}

impl Plan {
    /// The plan for `[spread(attribute)?, (binpack | spread(instanceId)){0,2},
    /// random?]`; `None` for other lists, which need the plain scan.
    pub(crate) fn for_strategies(strategies: &[Strategy]) -> Option<Plan> {
        let mut plan = Plan::default();
        let mut rest = strategies;
        if let [Strategy::Spread(SpreadField::Attribute(a)), tail @ ..] = rest {
            plan.spread = Some(a.clone());
            rest = tail;
        }
        if let [head @ .., Strategy::Random] = rest {
            plan.trailing_random = true;
            rest = head;
        }
        for s in rest {
            plan.inner.push(match s {
                Strategy::Binpack(f) => InnerKey::Binpack(*f),
                Strategy::Spread(SpreadField::Instance) => InnerKey::SpreadInstance,
                _ => return None,
            });
        }
        (plan.inner.len() <= 2).then_some(plan)
    }
}

type Key = (i64, i64);

#[derive(Debug, Clone)]
struct Bucket {
    /// The spread attribute's value (`None`: hosts without it, or no spread).
    value: Option<String>,
    /// The group's tasks on ACTIVE hosts, or any host still running some,
    /// with this value — what the reference's spread counts.
    count: i64,
    /// Feasible hosts with this value, by (inner key, index).
    feasible: BlockSet<(Key, usize)>,
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    NotActive,
    Feasible(Key),
    Rejected { stage: usize, reason: Reason },
}

/// What the view recorded for one instance, so it can be undone exactly
/// even after the instance itself has changed or moved away.
#[derive(Debug, Clone, Copy)]
struct Slot {
    bucket: usize,
    contribution: i64,
    entry: Entry,
}

#[derive(Debug, Clone)]
pub(crate) struct View {
    plan: Plan,
    dup_ports: bool,
    buckets: Vec<Bucket>,
    by_value: HashMap<String, usize>,
    none_bucket: Option<usize>,
    /// Indexed like the snapshot; `None` past its end.
    slots: Vec<Option<Slot>>,
    /// Rejected ACTIVE hosts, closest first: highest stage, then lowest
    /// index (the reference keeps the first instance at the highest stage).
    rejected: BlockSet<(Reverse<usize>, usize, Reason)>,
}

fn group_count(inst: &Instance, group: &str) -> i64 {
    i64::from(inst.group_counts.get(group).copied().unwrap_or(0))
}

impl View {
    /// Indexes every instance for `req` (whose strategies gave `plan`).
    pub(crate) fn build(instances: &[Instance], req: &Request, plan: Plan) -> View {
        let mut view = View {
            plan,
            dup_ports: has_duplicate_ports(req),
            buckets: Vec::new(),
            by_value: HashMap::new(),
            none_bucket: None,
            slots: Vec::with_capacity(instances.len()),
            rejected: BlockSet::default(),
        };
        // Sorted bulk loads instead of one insert per instance.
        let mut feasible: Vec<Vec<(Key, usize)>> = Vec::new();
        let mut rejected = Vec::new();
        for (i, inst) in instances.iter().enumerate() {
            let slot = view.assess(inst, req, None);
            view.buckets[slot.bucket].count += slot.contribution;
            match slot.entry {
                Entry::Feasible(key) => {
                    feasible.resize_with(view.buckets.len(), Vec::new);
                    feasible[slot.bucket].push((key, i));
                }
                Entry::Rejected { stage, reason } => rejected.push((Reverse(stage), i, reason)),
                Entry::NotActive => {}
            }
            view.slots.push(Some(slot));
        }
        for (bucket, mut hosts) in view.buckets.iter_mut().zip(feasible) {
            hosts.sort_unstable();
            bucket.feasible = BlockSet::from_sorted(&hosts);
        }
        rejected.sort_unstable();
        view.rejected = BlockSet::from_sorted(&rejected);
        view
    }

    /// Re-indexes everything, for a view that missed changes.
    pub(crate) fn rebuild(&mut self, instances: &[Instance], req: &Request) {
        *self = View::build(instances, req, std::mem::take(&mut self.plan));
    }

    /// Brings the view up to date with `instances[i]`, whatever happened to
    /// it (reserved, edited, replaced, moved here, or gone if `i` is now
    /// past the end).
    pub(crate) fn resync(&mut self, instances: &[Instance], req: &Request, i: usize) {
        let old = self.slots.get_mut(i).and_then(Option::take);
        if let Some(old) = old {
            self.unlink(i, old);
        }
        let Some(inst) = instances.get(i) else {
            return;
        };
        let slot = self.assess(inst, req, old.map(|s| s.bucket));
        self.link(i, slot);
        if self.slots.len() <= i {
            self.slots.resize(i + 1, None);
        }
        self.slots[i] = Some(slot);
    }

    /// Chooses the instance for the next task exactly as `place_reference`
    /// would, drawing from `rng` the same way. Without a candidate, returns
    /// the closest active instance and its reason, if there is one.
    pub(crate) fn pick(&self, rng: &mut Rng) -> Result<usize, Option<(Reason, usize)>> {
        // Spread keeps the least-loaded values that can take the task; the
        // inner strategies then keep the smallest key among them.
        let best = self
            .buckets
            .iter()
            .filter_map(|b| b.feasible.first().map(|&(key, _)| (b.count, key)))
            .min();
        let Some((count, key)) = best else {
            return Err(self.rejected.first().map(|&(_, i, reason)| (reason, i)));
        };
        let tied = |b: &&Bucket| b.count == count && b.feasible.first().is_some_and(|h| h.0 == key);
        // Index `usize::MAX` is never used, so this counts every `key` host.
        let total: usize = self
            .buckets
            .iter()
            .filter(tied)
            .map(|b| b.feasible.rank(&(key, usize::MAX)))
            .sum();
        // Mirror the reference's RNG use exactly: a trailing `random` draws
        // only when more than one candidate is left, then the final pick
        // always draws.
        let ix = if self.plan.trailing_random && total > 1 {
            let ix = rng.below(total);
            rng.below(1);
            ix
        } else {
            rng.below(total)
        };
        // The reference lists candidates in index order: find the ix-th.
        let mut buckets = self.buckets.iter().filter(tied);
        if let (Some(only), None) = (buckets.next(), buckets.next()) {
            return only.feasible.select(ix).map(|(_, i)| i).ok_or(None);
        }
        // Several values tie: the smallest index t with more than ix tied
        // hosts at or below it.
        let at_or_below = |t: usize| -> usize {
            self.buckets
                .iter()
                .filter(tied)
                .map(|b| b.feasible.rank(&(key, t + 1)))
                .sum()
        };
        let (mut lo, mut hi) = (0, self.slots.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if at_or_below(mid) > ix {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }

    /// Evaluates one instance; `hint` is its previous bucket, reused when
    /// the spread value did not change to skip the hash lookup.
    fn assess(&mut self, inst: &Instance, req: &Request, hint: Option<usize>) -> Slot {
        let value = self.plan.spread.as_deref().and_then(|a| inst.attribute(a));
        let bucket = match hint {
            Some(b) if self.buckets[b].value.as_deref() == value => b,
            _ => self.bucket_for(value),
        };
        let active = inst.status == InstanceStatus::Active;
        let tasks = group_count(inst, &req.group);
        let entry = if !active {
            Entry::NotActive
        } else {
            match evaluate(inst, req, self.dup_ports) {
                Ok(()) => Entry::Feasible(self.key(inst, req)),
                Err((reason, stage)) => Entry::Rejected { stage, reason },
            }
        };
        Slot {
            bucket,
            contribution: if active || tasks > 0 { tasks } else { 0 },
            entry,
        }
    }

    fn key(&self, inst: &Instance, req: &Request) -> Key {
        let one = |k: Option<&InnerKey>| match k {
            Some(InnerKey::Binpack(BinpackField::Cpu)) => inst.remaining_cpu,
            Some(InnerKey::Binpack(BinpackField::Memory)) => inst.remaining_memory,
            Some(InnerKey::SpreadInstance) => group_count(inst, &req.group),
            None => 0,
        };
        (one(self.plan.inner.first()), one(self.plan.inner.get(1)))
    }

    fn bucket_for(&mut self, value: Option<&str>) -> usize {
        let existing = match value {
            None => self.none_bucket,
            Some(v) => self.by_value.get(v).copied(),
        };
        if let Some(b) = existing {
            return b;
        }
        let b = self.buckets.len();
        self.buckets.push(Bucket {
            value: value.map(str::to_string),
            count: 0,
            feasible: BlockSet::default(),
        });
        match value {
            None => self.none_bucket = Some(b),
            Some(v) => {
                self.by_value.insert(v.to_string(), b);
            }
        }
        b
    }

    fn link(&mut self, i: usize, slot: Slot) {
        let bucket = &mut self.buckets[slot.bucket];
        bucket.count += slot.contribution;
        match slot.entry {
            Entry::Feasible(key) => {
                bucket.feasible.insert((key, i));
            }
            Entry::Rejected { stage, reason } => {
                self.rejected.insert((Reverse(stage), i, reason));
            }
            Entry::NotActive => {}
        }
    }

    fn unlink(&mut self, i: usize, slot: Slot) {
        let bucket = &mut self.buckets[slot.bucket];
        bucket.count -= slot.contribution;
        match slot.entry {
            Entry::Feasible(key) => {
                bucket.feasible.remove(&(key, i));
            }
            Entry::Rejected { stage, reason } => {
                self.rejected.remove(&(Reverse(stage), i, reason));
            }
            Entry::NotActive => {}
        }
    }
}
