//! A persistent placement snapshot of one cluster: the instances, kept up
//! to date between calls by the caller (upserts, removals and updates as
//! the store changes), and the placement indexes built on them.
//!
//! `place` reserves what it places in the snapshot; a caller whose commit
//! then fails re-syncs the instances it touched from the store.
//!
//! Speed comes from keeping one placement index (a `View`) per request
//! shape (everything in a [`Request`] but `count`) across calls, so a
//! placement costs a few ordered-set operations instead of a scan of every
//! instance; a new shape costs one index build, about one scan.
//!
//! Views are updated lazily: every change to an instance appends its index
//! to a change log, and a view replays what it has not seen when it is next
//! used. A change therefore costs O(1) however many shapes are cached; a
//! view that falls further behind than the log keeps is rebuilt. At most
//! [`MAX_VIEWS`] shapes are kept, least recently used first out. Strategy
//! lists the views cannot answer are placed by the plain scan
//! ([`engine::place_reference`]).
//!
//! Results are those of `place_reference` on the snapshot in
//! [`Placer::instances`] order, for the same seed.

use std::collections::HashMap;

use crate::engine::{self, Failure, Instance, Request, RequestError, Rng};
use crate::view::{Plan, View};

/// Most request shapes whose indexes a placer keeps (each costs roughly 100
/// bytes per instance).
pub const MAX_VIEWS: usize = 16;

/// Result of [`Placer::place`]: instance ids instead of snapshot indexes,
/// since the snapshot's order changes as instances come and go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placed {
    /// The instance id chosen for each placed task, in placement order.
    pub placements: Vec<String>,
    /// One entry per task that could not be placed; `instance` is the
    /// closest instance's position in [`Placer::instances`] at the time.
    pub failures: Vec<Failure>,
}

/// One cluster's instances and the placement indexes kept on them; see the
/// module documentation.
#[derive(Debug, Default, Clone)]
pub struct Placer {
    instances: Vec<Instance>,
    index: HashMap<String, usize>,
    views: Vec<Cached>,
    log: ChangeLog,
    /// Instances handed out by `instance_mut` since the last `settle`.
    lent: Vec<usize>,
    /// Placement calls so far; the views' recency clock.
    calls: u64,
}

#[derive(Debug, Clone)]
struct Cached {
    /// The request the view was built for (its `count` is irrelevant).
    shape: Request,
    view: View,
    /// Log position up to which the view has replayed changes.
    synced: u64,
    last_used: u64,
}

/// Indexes of changed instances, in change order, from position `start`.
#[derive(Debug, Default, Clone)]
struct ChangeLog {
    start: u64,
    slots: Vec<usize>,
}

impl ChangeLog {
    fn end(&self) -> u64 {
        self.start + self.slots.len() as u64
    }

    /// Changes from `pos` on; `None` if some were already forgotten.
    fn since(&self, pos: u64) -> Option<&[usize]> {
        let skip = usize::try_from(pos.checked_sub(self.start)?).ok()?;
        self.slots.get(skip..)
    }

    fn forget_before(&mut self, pos: u64) {
        let n = usize::try_from(pos.saturating_sub(self.start))
            .unwrap_or(usize::MAX)
            .min(self.slots.len());
        self.slots.drain(..n);
        self.start += n as u64;
    }
}

/// True if two requests need the same view: equal in everything but `count`.
fn same_shape(a: &Request, b: &Request) -> bool {
    // Destructured so a new `Request` field cannot be forgotten here.
    let Request {
        cpu,
        memory,
        gpu,
        tcp_ports,
        udp_ports,
        count: _,
        required_attributes,
        constraints,
        strategies,
        group,
    } = a;
    *cpu == b.cpu
        && *memory == b.memory
        && *gpu == b.gpu
        && *tcp_ports == b.tcp_ports
        && *udp_ports == b.udp_ports
        && *group == b.group
        && *strategies == b.strategies
        && *required_attributes == b.required_attributes
        && *constraints == b.constraints
}

impl Placer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_instances(instances: impl IntoIterator<Item = Instance>) -> Self {
        let mut placer = Self::new();
        for instance in instances {
            placer.upsert(instance);
        }
        placer
    }

    /// Inserts an instance, or replaces the one with the same id.
    pub fn upsert(&mut self, instance: Instance) {
        self.settle();
        let i = match self.index.get(&instance.id) {
            Some(&i) => {
                self.instances[i] = instance;
                i
            }
            None => {
                let i = self.instances.len();
                self.index.insert(instance.id.clone(), i);
                self.instances.push(instance);
                i
            }
        };
        self.changed(i);
    }

    /// Removes an instance; the last instance takes its position.
    pub fn remove(&mut self, id: &str) -> Option<Instance> {
        self.settle();
        let i = self.index.remove(id)?;
        let removed = self.instances.swap_remove(i);
        if let Some(moved) = self.instances.get(i) {
            self.index.insert(moved.id.clone(), i);
        }
        self.changed(i);
        let vacated = self.instances.len();
        if vacated != i {
            self.changed(vacated);
        }
        Some(removed)
    }

    pub fn instance(&self, id: &str) -> Option<&Instance> {
        self.index.get(id).map(|&i| &self.instances[i])
    }

    /// Mutable access to an instance; it is re-indexed before the next
    /// placement. Ids key the snapshot, so a changed `id` is put back at the
    /// next `&mut self` call (rename with `remove` + `upsert`). [`Self::update`]
    /// says the same more plainly.
    pub fn instance_mut(&mut self, id: &str) -> Option<&mut Instance> {
        self.settle();
        let i = *self.index.get(id)?;
        // Logging before the edit is enough: views only read the log in
        // `place`, which cannot run while this borrow is alive.
        self.changed(i);
        self.lent.push(i);
        Some(&mut self.instances[i])
    }

    /// Edits an instance (e.g. returns a stopped task's resources) and
    /// re-indexes it; false if there is no such instance. The `id` is kept
    /// whatever `f` does to it (rename with `remove` + `upsert`).
    pub fn update(&mut self, id: &str, f: impl FnOnce(&mut Instance)) -> bool {
        self.settle();
        let Some(&i) = self.index.get(id) else {
            return false;
        };
        let inst = &mut self.instances[i];
        f(inst);
        if inst.id != id {
            inst.id = id.to_string();
        }
        self.changed(i);
        true
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// The instances in snapshot order (the order failures' `instance`
    /// positions and tie-breaking refer to).
    pub fn instances(&self) -> impl Iterator<Item = &Instance> {
        self.instances.iter()
    }

    /// Places `req.count` tasks and reserves them in the snapshot.
    pub fn place(&mut self, req: &Request, seed: u64) -> Result<Placed, RequestError> {
        engine::validate(req)?;
        self.settle();
        let mut placed = Placed::default();
        if req.count == 0 {
            return Ok(placed);
        }
        let Some(vi) = self.view_for(req) else {
            return self.place_by_scan(req, seed);
        };
        let mut rng = Rng::new(seed);
        let cached = &mut self.views[vi];
        for _ in 0..req.count {
            match cached.view.pick(&mut rng) {
                Ok(i) => {
                    engine::commit(&mut self.instances[i], req);
                    cached.view.resync(&self.instances, req, i);
                    self.log.slots.push(i);
                    placed.placements.push(self.instances[i].id.clone());
                }
                Err(closest) => placed
                    .failures
                    .push(engine::failure(&self.instances, closest)),
            }
        }
        cached.synced = self.log.end();
        self.trim_log();
        Ok(placed)
    }

    /// The up-to-date view for `req`'s shape (built if new), or `None` if
    /// its strategies need the plain scan.
    fn view_for(&mut self, req: &Request) -> Option<usize> {
        self.calls += 1;
        let vi = match self.views.iter().position(|c| same_shape(&c.shape, req)) {
            Some(vi) => vi,
            None => {
                let plan = Plan::for_strategies(&req.strategies)?;
                if self.views.len() >= MAX_VIEWS
                    && let Some(lru) =
                        (0..self.views.len()).min_by_key(|&v| self.views[v].last_used)
                {
                    self.views.swap_remove(lru);
                }
                self.views.push(Cached {
                    shape: Request {
                        count: 0,
                        ..req.clone()
                    },
                    view: View::build(&self.instances, req, plan),
                    synced: self.log.end(),
                    last_used: 0,
                });
                self.views.len() - 1
            }
        };
        let cached = &mut self.views[vi];
        cached.last_used = self.calls;
        match self.log.since(cached.synced) {
            Some(changes) => {
                for &i in changes {
                    cached.view.resync(&self.instances, &cached.shape, i);
                }
            }
            None => cached.view.rebuild(&self.instances, &cached.shape),
        }
        cached.synced = self.log.end();
        Some(vi)
    }

    fn place_by_scan(&mut self, req: &Request, seed: u64) -> Result<Placed, RequestError> {
        let out = engine::place_reference(&mut self.instances, req, seed)?;
        for &i in &out.placements {
            self.changed(i);
        }
        Ok(Placed {
            placements: out
                .placements
                .iter()
                .map(|&i| self.instances[i].id.clone())
                .collect(),
            failures: out.failures,
        })
    }

    /// Records that the instance at `i` changed (or left).
    fn changed(&mut self, i: usize) {
        if self.views.is_empty() {
            // A view built later reads the instances as they are then.
            return;
        }
        self.log.slots.push(i);
        if self.log.slots.len() > self.log_limit() {
            self.trim_log();
        }
    }

    /// How many changes the log keeps for views that lag: past about one
    /// change per instance, rebuilding a view costs no more than replaying.
    fn log_limit(&self) -> usize {
        self.instances.len().max(1024)
    }

    fn trim_log(&mut self) {
        let oldest = self.views.iter().map(|c| c.synced).min();
        self.log.forget_before(oldest.unwrap_or(self.log.end()));
        if self.log.slots.len() > self.log_limit() {
            // Views behind this point rebuild when next used.
            self.log.forget_before(self.log.end());
        }
    }

    /// Puts back ids changed through `instance_mut`.
    fn settle(&mut self) {
        while let Some(i) = self.lent.pop() {
            if self.index.get(&self.instances[i].id) == Some(&i) {
                continue;
            }
            if let Some(old) = self
                .index
                .iter()
                .find_map(|(id, &j)| (j == i).then(|| id.clone()))
            {
                self.instances[i].id = old;
            }
        }
    }
}
