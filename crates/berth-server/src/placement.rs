//! Placement lanes: every scheduler-placed launch of a cluster (RunTask now,
//! service controllers later) goes through that cluster's lane, one tokio
//! task that
//! - keeps a persistent [`Placer`] in step with the cache's change feed
//!   (instance records, and the unreleased tasks that make up each
//!   instance's task groups), so no launch rebuilds a snapshot;
//! - takes every launch queued while the previous commit was in flight,
//!   places them one after another on the snapshot, and commits the batch
//!   in one transaction guarded on the revision of every instance it placed
//!   on. A conflicting writer (a task releasing its reservation, an
//!   instance draining) fails the guard; the lane re-syncs from the cache,
//!   which has caught up with the store by then, and places again.
//!
//! So launches never over-commit a host, even across servers sharing a
//! store, while one fsync carries many launches.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use berth_scheduler::engine::{Instance, InstanceStatus, Request};
use berth_scheduler::placer::Placer;
use berth_store::Txn;
use berth_types::{ContainerInstance, EcsError, Failure, Resource, Task, Timestamp};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::intern::Interner;
use crate::state::{
    Cache, ClientTokenRecord, MAX_CAS_ATTEMPTS, Reservation, Shared, TaskHeader, TaskRecord,
    Versioned, Writer, contention, encode, guard,
};

/// Most launches one batch carries; bounds the transaction's size.
const MAX_BATCH: usize = 64;

/// Builds one task record for the instance it was placed on, with the
/// address it got there when the launch asked for one (awsvpc).
pub type BuildTask =
    Box<dyn Fn(&ContainerInstance, Option<Ipv4Addr>, Timestamp) -> TaskRecord + Send>;

/// ECS's answer when Fargate has no room for a task.
pub const FARGATE_CAPACITY_UNAVAILABLE: &str = "Capacity is unavailable at this time. Please try again later or in a different availability zone";

/// One launch: what to place, how to make each task, and where the task
/// records go.
pub struct Launch {
    pub request: Request,
    pub build: BuildTask,
    /// The store key of each new task, from its id.
    pub task_key: Box<dyn Fn(&str) -> String + Send>,
    /// A RunTask `clientToken`: its key and the request's fingerprint.
    pub token: Option<(String, String)>,
    /// Each task gets an address of its own on its host's task network.
    pub needs_address: bool,
    /// The tasks go to the platform's Fargate pool: a failure names no
    /// host (the user has none) and reads as ECS's Fargate capacity error.
    pub pool: bool,
}

/// What became of a launch.
#[derive(Debug)]
pub enum Launched {
    Placed {
        tasks: Vec<Task>,
        failures: Vec<Failure>,
    },
    /// The client token was taken meanwhile: the caller replays it.
    TokenTaken,
}

struct Job {
    launch: Launch,
    reply: oneshot::Sender<Result<Launched, EcsError>>,
}

/// The lanes of every cluster, started on first use.
#[derive(Clone)]
pub struct Lanes {
    cache: Arc<Cache>,
    writer: Writer,
    lanes: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Job>>>>,
}

impl Lanes {
    pub fn new(cache: Arc<Cache>, writer: Writer) -> Self {
        Self {
            cache,
            writer,
            lanes: Arc::default(),
        }
    }

    /// Places and commits `launch` on the cluster whose instance records
    /// live under `instances` and whose task records under `tasks`.
    pub async fn launch(
        &self,
        instances: String,
        tasks: String,
        launch: Launch,
    ) -> Result<Launched, EcsError> {
        let (reply, answer) = oneshot::channel();
        let job = Job { launch, reply };
        {
            let mut lanes = self.lanes.lock().expect("lanes lock poisoned");
            let sender = lanes.entry(instances.clone()).or_insert_with(|| {
                let (sender, receiver) = mpsc::unbounded_channel();
                let lane = Lane {
                    writer: self.writer.clone(),
                    feed: self.cache.subscribe(),
                    state: LaneState::load(Arc::clone(&self.cache), instances, tasks),
                };
                tokio::spawn(lane.run(receiver));
                sender
            });
            if sender.send(job).is_err() {
                return Err(EcsError::server("The placement lane stopped."));
            }
        }
        answer
            .await
            .unwrap_or_else(|_| Err(EcsError::server("The placement lane stopped.")))
    }
}

struct Lane {
    writer: Writer,
    feed: broadcast::Receiver<Arc<[String]>>,
    state: LaneState,
}

impl Lane {
    async fn run(mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        let mut seed = 0u64;
        loop {
            tokio::select! {
                biased;
                changes = self.feed.recv() => match changes {
                    Ok(keys) => self.state.apply(&keys),
                    Err(broadcast::error::RecvError::Lagged(_)) => self.state.reload(),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                job = jobs.recv() => {
                    let Some(job) = job else { return };
                    let mut batch = vec![job];
                    while batch.len() < MAX_BATCH {
                        match jobs.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    seed = seed.wrapping_add(1);
                    self.launch(batch, seed).await;
                }
            }
        }
    }

    /// Brings the snapshot up to the cache.
    fn catch_up(&mut self) {
        loop {
            match self.feed.try_recv() {
                Ok(keys) => self.state.apply(&keys),
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.state.reload(),
                Err(_) => return,
            }
        }
    }

    async fn launch(&mut self, mut batch: Vec<Job>, seed: u64) {
        let mut deferred = Vec::new();
        self.place_and_commit(&mut batch, &mut deferred, seed).await;
        for job in deferred {
            let _ = job.reply.send(Ok(Launched::TokenTaken));
        }
    }

    async fn place_and_commit(&mut self, batch: &mut Vec<Job>, deferred: &mut Vec<Job>, seed: u64) {
        for attempt in 0..MAX_CAS_ATTEMPTS {
            self.catch_up();
            // A token already used answers by replay; a token repeated
            // within the batch answers once the first use has committed.
            let mut tokens = HashSet::new();
            let mut kept = Vec::with_capacity(batch.len());
            for job in std::mem::take(batch) {
                match &job.launch.token {
                    Some((key, _)) if self.state.token_taken(key) => {
                        let _ = job.reply.send(Ok(Launched::TokenTaken));
                    }
                    Some((key, _)) if !tokens.insert(key.clone()) => deferred.push(job),
                    _ => kept.push(job),
                }
            }
            *batch = kept;
            let plan = self.state.plan(batch, seed.wrapping_add(attempt as u64));
            let plan = match plan {
                Ok(plan) => plan,
                Err(error) => {
                    for job in batch.drain(..) {
                        let _ = job.reply.send(Err(error.clone()));
                    }
                    return;
                }
            };
            match self.writer.commit(plan.txn).await {
                Ok(true) => {
                    for (job, result) in batch.drain(..).zip(plan.results) {
                        let _ = job.reply.send(result);
                    }
                    return;
                }
                Ok(false) => self.state.resync(&plan.touched),
                Err(error) => {
                    self.state.resync(&plan.touched);
                    for job in batch.drain(..) {
                        let _ = job.reply.send(Err(error.clone()));
                    }
                    return;
                }
            }
        }
        for job in batch.drain(..) {
            let _ = job.reply.send(Err(contention()));
        }
    }
}

/// A batch placed on the snapshot, ready to commit.
struct Plan {
    txn: Txn,
    results: Vec<Result<Launched, EcsError>>,
    /// Instances the placements reserved on, to re-sync if the commit fails.
    touched: Vec<String>,
}

/// One cluster's snapshot as the lane keeps it.
struct LaneState {
    cache: Arc<Cache>,
    instance_prefix: String,
    task_prefix: String,
    placer: Placer,
    /// Instance id → its record as the snapshot last saw it, shared with
    /// the cache.
    records: HashMap<String, (String, Versioned<Shared<ContainerInstance>>)>,
    /// Unreleased task key (shared with the cache) → what it holds.
    tasks: HashMap<Arc<str>, Held>,
    /// Instance id → tasks per group.
    groups: HashMap<Arc<str>, BTreeMap<Arc<str>, u32>>,
    /// The instances' attribute names and values.
    strings: Interner,
}

impl LaneState {
    fn load(cache: Arc<Cache>, instance_prefix: String, task_prefix: String) -> Self {
        let mut state = Self {
            cache,
            instance_prefix,
            task_prefix,
            placer: Placer::new(),
            records: HashMap::new(),
            tasks: HashMap::new(),
            groups: HashMap::new(),
            strings: Interner::default(),
        };
        state.reload();
        state
    }

    fn reload(&mut self) {
        self.placer = Placer::new();
        self.records.clear();
        self.tasks.clear();
        self.groups.clear();
        let live = self.cache.select_tasks(&self.task_prefix, |key, task| {
            holder(task).map(|held| (Arc::clone(key), held))
        });
        for (key, held) in live {
            self.count(&held, 1);
            self.tasks.insert(key, held);
        }
        let ids = self
            .cache
            .select::<ContainerInstance, _>(&self.instance_prefix, |key, _| {
                Some(key[self.instance_prefix.len()..].to_owned())
            });
        self.resync(&ids);
    }

    fn count(&mut self, (instance, group): &Held, delta: i32) {
        let groups = self.groups.entry(Arc::clone(instance)).or_default();
        let n = groups.entry(Arc::clone(group)).or_default();
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            groups.remove(group);
        }
    }

    /// Applies one batch of changed keys from the feed.
    fn apply(&mut self, keys: &[String]) {
        let mut instances = HashSet::new();
        for key in keys {
            if key.starts_with(&self.task_prefix) {
                let now = self
                    .cache
                    .peek_task(key, |shared, task| {
                        Some((Arc::clone(shared), holder(task)?))
                    })
                    .flatten();
                let before = self.tasks.get(key.as_str()).cloned();
                if now.as_ref().map(|(_, held)| held) == before.as_ref() {
                    continue;
                }
                if let Some(held) = before {
                    self.count(&held, -1);
                    instances.insert(held.0.to_string());
                    self.tasks.remove(key.as_str());
                }
                if let Some((shared, held)) = now {
                    self.count(&held, 1);
                    instances.insert(held.0.to_string());
                    self.tasks.insert(shared, held);
                }
            } else if let Some(id) = key.strip_prefix(&self.instance_prefix) {
                instances.insert(id.to_owned());
            }
        }
        let instances: Vec<String> = instances.into_iter().collect();
        self.resync(&instances);
    }

    /// Re-reads instances from the cache, dropping tentative reservations.
    fn resync(&mut self, ids: &[String]) {
        for id in ids {
            let key = format!("{}{id}", self.instance_prefix);
            match self.cache.get_shared::<ContainerInstance>(&key) {
                Some(record) => {
                    self.placer.upsert(snapshot_instance(
                        id,
                        &record.value,
                        self.groups.get(id.as_str()),
                        &mut self.strings,
                    ));
                    self.records.insert(id.clone(), (key, record));
                }
                None => {
                    self.placer.remove(id);
                    self.records.remove(id);
                }
            }
        }
    }

    fn token_taken(&self, key: &str) -> bool {
        self.cache
            .peek::<ClientTokenRecord, _>(key, |_| ())
            .is_some()
    }

    fn has_active_instance(&self) -> bool {
        self.placer
            .instances()
            .any(|i| i.status == InstanceStatus::Active)
    }

    /// Places every launch of the batch in order on the snapshot and builds
    /// the transaction that commits them all.
    fn plan(&mut self, batch: &[Job], seed: u64) -> Result<Plan, EcsError> {
        let now = Timestamp::now();
        let mut txn = Txn::new();
        let mut results = Vec::with_capacity(batch.len());
        let mut touched: BTreeMap<String, ContainerInstance> = BTreeMap::new();
        // Addresses taken by earlier placements of this batch, per instance.
        let mut addresses: HashMap<String, BTreeSet<Ipv4Addr>> = HashMap::new();
        for (n, job) in batch.iter().enumerate() {
            let launch = &job.launch;
            if !self.has_active_instance() {
                results.push(if launch.pool {
                    Ok(Launched::Placed {
                        tasks: Vec::new(),
                        failures: vec![pool_failure(); launch.request.count],
                    })
                } else {
                    Err(EcsError::invalid_parameter(
                        "No Container Instances were found in your cluster.",
                    ))
                });
                continue;
            }
            let placed = self
                .placer
                .place(
                    &launch.request,
                    seed.wrapping_mul(1 << 20).wrapping_add(n as u64),
                )
                .map_err(|e| EcsError::invalid_parameter(e.to_string()));
            let placed = match placed {
                Ok(placed) => placed,
                Err(error) => {
                    results.push(Err(error));
                    continue;
                }
            };
            let mut tasks = Vec::with_capacity(placed.placements.len());
            let mut no_address = Vec::new();
            for id in &placed.placements {
                let Some((_, seen)) = self.records.get(id) else {
                    continue;
                };
                let instance = touched
                    .entry(id.clone())
                    .or_insert_with(|| (*seen.value).clone());
                let address = if launch.needs_address {
                    let taken = addresses.entry(id.clone()).or_default();
                    match free_address(&self.cache, id, instance, taken) {
                        Some(address) => {
                            taken.insert(address);
                            Some(address)
                        }
                        None => {
                            no_address.push(id.clone());
                            continue;
                        }
                    }
                } else {
                    None
                };
                let record = (launch.build)(instance, address, now);
                adjust_remaining(instance, &record.reservation, -1);
                let task_id = record
                    .task
                    .task_arn
                    .as_deref()
                    .and_then(|arn| arn.rsplit('/').next())
                    .unwrap_or_default()
                    .to_owned();
                txn = txn.put((launch.task_key)(&task_id), encode(&record)?);
                tasks.push(record.task);
            }
            let arn_of = |id: &String| {
                self.records
                    .get(id)
                    .and_then(|(_, r)| r.value.container_instance_arn.clone())
            };
            let failures: Vec<Failure> = if launch.pool {
                vec![pool_failure(); placed.failures.len() + no_address.len()]
            } else {
                placed
                    .failures
                    .iter()
                    .map(|f| Failure {
                        arn: f.instance_id.as_ref().and_then(arn_of),
                        reason: Some(f.reason.as_str().to_owned()),
                        detail: None,
                    })
                    .chain(no_address.iter().map(|id| Failure {
                        arn: arn_of(id),
                        reason: Some("RESOURCE:ENI".to_owned()),
                        detail: None,
                    }))
                    .collect()
            };
            if let Some((key, fingerprint)) = &launch.token {
                let token = ClientTokenRecord {
                    fingerprint: fingerprint.clone(),
                    task_arns: tasks.iter().filter_map(|t| t.task_arn.clone()).collect(),
                    failures: failures.clone(),
                };
                txn = guard(txn, key, 0).put(key.clone(), encode(&token)?);
            }
            results.push(Ok(Launched::Placed { tasks, failures }));
        }
        for (id, mut instance) in touched.iter().map(|(k, v)| (k, v.clone())) {
            let (key, seen) = &self.records[id];
            instance.version += 1;
            txn = guard(txn, key, seen.mod_revision).put(key.clone(), encode(&instance)?);
        }
        Ok(Plan {
            txn,
            results,
            touched: touched.into_keys().collect(),
        })
    }
}

fn pool_failure() -> Failure {
    Failure {
        arn: None,
        reason: Some(FARGATE_CAPACITY_UNAVAILABLE.to_owned()),
        detail: None,
    }
}

/// A free address for a new awsvpc task on instance `id` (whose record is
/// `instance`): not held by any unreleased task there, nor in `taken`.
/// Safe under concurrency because every placement also rewrites the
/// instance's record under a guard: two launches that read the same
/// addresses cannot both commit.
pub fn free_address(
    cache: &Cache,
    id: &str,
    instance: &ContainerInstance,
    taken: &BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let subnet = instance
        .attributes
        .iter()
        .flatten()
        .find(|a| a.name == berth_types::agent::TASK_ENI_SUBNET_ATTRIBUTE)?
        .value
        .clone()?;
    let mut used = taken.clone();
    used.extend(cache.select_instance_tasks(id, |_, task| task.address.filter(|_| !task.released)));
    berth_core::launch::free_address(&subnet, &used)
}

/// What an unreleased task holds: its place in a group on an instance.
pub type Held = (Arc<str>, Arc<str>);

/// The (instance id, group) an unreleased task holds, if it holds one.
pub fn holder(task: &TaskHeader) -> Option<Held> {
    if task.released {
        return None;
    }
    Some((task.instance_id.clone()?, task.group.clone()?))
}

fn integer(resources: &[Resource], name: &str) -> i64 {
    resources
        .iter()
        .find(|r| r.name.as_deref() == Some(name))
        .map_or(0, |r| i64::from(r.integer_value))
}

fn ports(resources: &[Resource], name: &str) -> std::collections::BTreeSet<u16> {
    resources
        .iter()
        .find(|r| r.name.as_deref() == Some(name))
        .and_then(|r| r.string_set_value.as_ref())
        .map(|ports| ports.iter().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// A container instance as the placement engine (and the cluster query
/// language) sees it; `groups` are its unreleased tasks per task group.
pub fn snapshot_instance(
    id: &str,
    ci: &ContainerInstance,
    groups: Option<&BTreeMap<Arc<str>, u32>>,
    strings: &mut Interner,
) -> Instance {
    let remaining = ci.remaining_resources.as_deref().unwrap_or_default();
    let groups: BTreeMap<String, u32> = groups
        .into_iter()
        .flatten()
        .map(|(group, n)| (group.to_string(), *n))
        .collect();
    Instance {
        id: id.to_owned(),
        status: match ci.status.as_deref() {
            Some("ACTIVE") => InstanceStatus::Active,
            Some("DRAINING") => InstanceStatus::Draining,
            _ => InstanceStatus::Inactive,
        },
        agent_connected: ci.agent_connected,
        agent_version: ci
            .version_info
            .as_ref()
            .and_then(|v| v.agent_version.clone()),
        ec2_instance_id: ci.ec2_instance_id.clone(),
        registered_at_millis: ci.registered_at.map_or(0, Timestamp::millis),
        remaining_cpu: integer(remaining, "CPU"),
        remaining_memory: integer(remaining, "MEMORY"),
        remaining_gpu: u32::try_from(integer(remaining, "GPU")).unwrap_or(0),
        used_tcp_ports: ports(remaining, "PORTS"),
        used_udp_ports: ports(remaining, "PORTS_UDP"),
        attributes: ci
            .attributes
            .iter()
            .flatten()
            .map(|a| {
                let value = a.value.as_deref().unwrap_or_default();
                (strings.intern(&a.name), strings.intern(value))
            })
            .collect(),
        running_tasks_count: u64::from(groups.values().sum::<u32>()),
        group_counts: groups,
    }
}

/// Adds (`sign` 1) or removes (`sign` -1) a reservation from an instance's
/// remaining resources.
pub fn adjust_remaining(ci: &mut ContainerInstance, r: &Reservation, sign: i64) {
    let remaining = ci.remaining_resources.get_or_insert_with(Vec::new);
    for resource in remaining.iter_mut() {
        match resource.name.as_deref() {
            Some("CPU") => {
                resource.integer_value = clamp_i32(i64::from(resource.integer_value) + sign * r.cpu)
            }
            Some("MEMORY") => {
                resource.integer_value =
                    clamp_i32(i64::from(resource.integer_value) + sign * r.memory);
            }
            Some("GPU") => {
                resource.integer_value =
                    clamp_i32(i64::from(resource.integer_value) + sign * i64::from(r.gpu));
            }
            Some(name @ ("PORTS" | "PORTS_UDP")) => {
                let wanted = if name == "PORTS" {
                    &r.tcp_ports
                } else {
                    &r.udp_ports
                };
                let set = resource.string_set_value.get_or_insert_with(Vec::new);
                for port in wanted {
                    let port = port.to_string();
                    if sign < 0 {
                        if !set.contains(&port) {
                            set.push(port);
                        }
                    } else {
                        set.retain(|p| *p != port);
                    }
                }
            }
            _ => {}
        }
    }
}

fn clamp_i32(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX })
}
