//! The service controller: one reconcile loop per service, running the pure
//! scheduler (`berth_core::service::decide`) and carrying out its decision.
//!
//! A supervisor follows the cache's change feed and keeps one worker per
//! service that is not INACTIVE; since one worker owns one service, two
//! rounds of the same service never run at once. The supervisor routes each
//! change to the workers it concerns: a service change to its worker, a
//! task change to the worker of the service its group (`service:NAME`)
//! names, an instance change that rounds or constraints can see (status,
//! agent connection and version, attributes, registration) to the workers
//! with tasks on it and to the DAEMON services of its cluster, and an
//! instance that may take tasks it could not before (it changed so, or
//! gained room) to the workers whose last launch found no room. A worker
//! also runs at the decision's `next_wakeup_millis`. Waking every worker of a cluster on each change,
//! as this once did, made a deployment of 1,000 services cost O(changes ×
//! services) rounds, each scanning the cluster's tasks. A round reads
//! the service from the cache and its tasks through the supervisor's index
//! of them ([`TaskIndex`]), the hosts of those tasks (every instance of
//! the cluster for DAEMON services), decides, persists the new
//! scheduler state with the counts, deployments and events onto the service
//! (compare-and-swap on the revision read; a lost race re-runs the round),
//! stops tasks the way StopTask does (or marks tasks on lost hosts STOPPED),
//! and launches through the same path as RunTask/StartTask, so placement
//! goes through the cluster's placement lane. What the launches produced is
//! reported to the next round.
//!
//! `disconnected_since_millis` is not on the wire: the supervisor tracks it
//! in memory, and instances already disconnected when it starts count from
//! then.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::lifecycle;
use berth_core::service::{
    InstanceStatus, InstanceView, LaunchReport, Placement, PlacementFailure, ServiceSnapshot,
    ServiceStatus, StopHow, TaskView, decide,
};
use berth_scheduler::cql;
use berth_store::Txn;
use berth_types::agent::DesiredStatus;
use berth_types::arn::{Arn, Scope};
use berth_types::{
    ContainerInstance, EcsError, PlacementConstraintType, PropagateTags, RunTaskRequest,
    SchedulingStrategy, Service, StartTaskRequest, Task, Timestamp,
};
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;

use crate::api::{Api, Ctx, services, tasks};
use crate::intern::Interner;
use crate::placement;

/// What one RunTask or StartTask call returned: tasks and failures.
type LaunchOutcome = Result<(Option<Vec<Task>>, Option<Vec<berth_types::Failure>>), EcsError>;
use crate::state::{ServiceRecord, encode, guard, prefix};

/// Longest a worker sleeps without a change or a wake-up time.
const IDLE_RECHECK: Duration = Duration::from_secs(60);
/// Lets a burst of changes (a launch of several tasks) settle into one round.
const DEBOUNCE: Duration = Duration::from_millis(20);
const MAX_ROUND_ATTEMPTS: usize = 16;

fn now_millis() -> i64 {
    Timestamp::now().millis()
}

/// `ecs/{region}/{account}/{kind}/{cluster}/{rest}` split up.
struct KeyParts<'a> {
    region: &'a str,
    account: &'a str,
    kind: &'a str,
    cluster: &'a str,
}

fn parts(key: &str) -> Option<KeyParts<'_>> {
    let mut it = key.splitn(6, '/');
    let _ecs = it.next()?;
    Some(KeyParts {
        region: it.next()?,
        account: it.next()?,
        kind: it.next()?,
        cluster: it.next()?,
    })
}

/// Which cluster a key belongs to: `region/account/cluster`.
fn cluster_of(p: &KeyParts<'_>) -> String {
    format!("{}/{}/{}", p.region, p.account, p.cluster)
}

struct Shared {
    api: Arc<Api>,
    /// Instance key → when its agent was first seen disconnected.
    disconnected: Mutex<HashMap<String, i64>>,
    /// How long an agent may be away before its service tasks are lost.
    lost_agent_timeout_millis: i64,
    tasks: TaskIndex,
}

/// Service key → the ids of the tasks of its group (`service:NAME`) the
/// store may still hold, so a round reads its own tasks rather than
/// scanning its cluster's (at 1,000 services of 10 tasks, those scans were
/// most of the controller's CPU). The supervisor adds the tasks it sees
/// change; a worker adds the tasks it has just launched, before the
/// supervisor may have seen them, so its next round cannot miss them and
/// launch again; a round forgets the ids the store no longer holds.
#[derive(Default)]
struct TaskIndex(Mutex<HashMap<String, BTreeSet<String>>>);

impl TaskIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeSet<String>>> {
        self.0.lock().expect("lock")
    }

    fn add(&self, service: &str, ids: impl IntoIterator<Item = String>) {
        let mut map = self.lock();
        let entry = map.entry(service.to_owned()).or_default();
        entry.extend(ids);
    }

    fn ids(&self, service: &str) -> Vec<String> {
        self.lock()
            .get(service)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn forget(&self, service: &str, ids: &[String]) {
        if let Some(known) = self.lock().get_mut(service) {
            for id in ids {
                known.remove(id);
            }
        }
    }

    /// Indexes every task in the cache, keeping what is indexed already
    /// (a worker's fresh launches may not be in this read yet).
    fn add_all(&self, api: &Api) {
        let found = api.cache.select_tasks("ecs/", |task_key, task| {
            let service = service_key(task_key, service_of_group(task.group.as_deref())?)?;
            Some((service, last_segment(task_key)))
        });
        let mut map = self.lock();
        for (service, id) in found {
            map.entry(service).or_default().insert(id);
        }
    }
}

/// What rounds and placement constraints read of a container instance:
/// the zone is one of its attributes, which DAEMON constraints and memberOf
/// may test like its agent version. The attributes are kept as a hash, as
/// this is remembered for every instance.
#[derive(PartialEq)]
struct InstanceLook {
    status: Option<String>,
    connected: bool,
    agent_version: Option<String>,
    attributes: u64,
}

fn attributes_hash(ci: &ContainerInstance) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    for a in ci.attributes.iter().flatten() {
        (&a.name, &a.value, &a.target_type, &a.target_id).hash(&mut hasher);
    }
    hasher.finish()
}

/// What the supervisor remembers of an instance: what rounds read of it,
/// and its room (free CPU, memory and GPUs, and minus its ports taken), so
/// that the `remainingResources` every placement writes wakes no one but
/// the workers waiting for room, and those only when it grows.
struct InstanceSeen {
    look: InstanceLook,
    room: [i64; 4],
}

/// How an instance changed, for the workers.
struct InstanceChange {
    /// What rounds read of it changed, or it came or went.
    visible: bool,
    /// It may take tasks it could not take before.
    roomier: bool,
}

fn room(ci: &ContainerInstance) -> [i64; 4] {
    let mut room = [0; 4];
    for r in ci.remaining_resources.iter().flatten() {
        match r.name.as_deref() {
            Some("CPU") => room[0] = i64::from(r.integer_value),
            Some("MEMORY") => room[1] = i64::from(r.integer_value),
            Some("GPU") => room[2] = i64::from(r.integer_value),
            Some("PORTS" | "PORTS_UDP") => {
                let taken = r.string_set_value.as_ref().map_or(0, Vec::len);
                room[3] -= i64::try_from(taken).unwrap_or(i64::MAX);
            }
            _ => {}
        }
    }
    room
}

impl Shared {
    /// Records what the instance at `key` now looks like.
    fn track_instance(
        &self,
        seen: &mut HashMap<String, InstanceSeen>,
        key: &str,
        now: i64,
    ) -> InstanceChange {
        let current = self
            .api
            .cache
            .peek::<ContainerInstance, _>(key, |ci| InstanceSeen {
                look: InstanceLook {
                    status: ci.status.clone(),
                    connected: ci.agent_connected,
                    agent_version: ci
                        .version_info
                        .as_ref()
                        .and_then(|v| v.agent_version.clone()),
                    attributes: attributes_hash(ci),
                },
                room: room(ci),
            });
        {
            let mut map = self.disconnected.lock().expect("lock");
            match &current {
                Some(ci) if !ci.look.connected => {
                    map.entry(key.to_owned()).or_insert(now);
                }
                _ => {
                    map.remove(key);
                }
            }
        }
        let Some(current) = current else {
            return InstanceChange {
                visible: seen.remove(key).is_some(),
                roomier: false,
            };
        };
        let change = match seen.get(key) {
            Some(old) => {
                let visible = old.look != current.look;
                let grew = current
                    .room
                    .iter()
                    .zip(old.room)
                    .any(|(now, then)| *now > then);
                // An agent that connects or an instance back to ACTIVE may
                // take tasks it could not before, as may one with more room.
                InstanceChange {
                    visible,
                    roomier: visible || grew,
                }
            }
            None => InstanceChange {
                visible: true,
                roomier: true,
            },
        };
        seen.insert(key.to_owned(), current);
        change
    }

    /// Indexes a changed task under the service its group names, if the
    /// task is still there; that service's key.
    fn index_task(&self, task_key: &str) -> Option<String> {
        let name = self.api.cache.peek_task(task_key, |_, task| {
            service_of_group(task.group.as_deref()).map(str::to_owned)
        })??;
        let service = service_key(task_key, &name)?;
        self.tasks.add(&service, [last_segment(task_key)]);
        Some(service)
    }

    /// The keys of the services with tasks on the instance at `key`.
    fn services_on_instance(&self, key: &str) -> BTreeSet<String> {
        self.api
            .cache
            .select_instance_tasks(&last_segment(key), |task_key, r| {
                service_key(task_key, service_of_group(r.group.as_deref())?)
            })
            .into_iter()
            .collect()
    }
}

/// The service name in a task group `service:NAME`.
fn service_of_group(group: Option<&str>) -> Option<&str> {
    group?.strip_prefix("service:")
}

/// The key of service `name` in the region, account and cluster of
/// `task_key`.
fn service_key(task_key: &str, name: &str) -> Option<String> {
    let p = parts(task_key)?;
    let scope = Scope::new(p.region, p.account);
    Some(crate::state::key::<ServiceRecord>(
        &scope,
        &format!("{}/{name}", p.cluster),
    ))
}

/// A worker's handle; dropping it (the supervisor ending) ends the worker.
struct Worker {
    cluster: String,
    /// A DAEMON service, which runs on every instance of its cluster.
    daemon: bool,
    notify: Arc<Notify>,
    /// The worker's last launch could not place every task, so room that
    /// frees up anywhere in its cluster may let it.
    starved: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

pub fn spawn(api: Arc<Api>, lost_agent_timeout: Duration) -> tokio::task::JoinHandle<()> {
    // Subscribe before the first read so no change falls in between.
    let changes = api.cache.subscribe();
    let timeout = i64::try_from(lost_agent_timeout.as_millis()).unwrap_or(i64::MAX);
    tokio::spawn(supervise(api, changes, timeout))
}

async fn supervise(
    api: Arc<Api>,
    mut changes: tokio::sync::broadcast::Receiver<Arc<[String]>>,
    lost_agent_timeout_millis: i64,
) {
    let shared = Arc::new(Shared {
        api: Arc::clone(&api),
        disconnected: Mutex::new(HashMap::new()),
        lost_agent_timeout_millis,
        tasks: TaskIndex::default(),
    });
    // Before any worker starts, or its first round would see no task.
    shared.tasks.add_all(&api);
    let mut seen = HashMap::new();
    let started = now_millis();
    for key in api.cache.keys_of::<ContainerInstance>() {
        shared.track_instance(&mut seen, &key, started);
    }
    let mut workers: HashMap<String, Worker> = HashMap::new();
    for key in api.cache.keys_of::<ServiceRecord>() {
        ensure(&shared, &mut workers, &key);
    }
    loop {
        match changes.recv().await {
            Ok(keys) => {
                let now = now_millis();
                // Clusters with an instance that changed visibly (DAEMON
                // services consider every instance), and with one that has
                // more room (for starved workers).
                let mut visible = BTreeSet::new();
                let mut roomier = BTreeSet::new();
                let wake = |workers: &HashMap<String, Worker>, key: &str| {
                    if let Some(w) = workers.get(key) {
                        w.notify.notify_one();
                    }
                };
                for key in keys.iter() {
                    let Some(p) = parts(key) else { continue };
                    match p.kind {
                        "service" => {
                            ensure(&shared, &mut workers, key);
                            wake(&workers, key);
                        }
                        "instance" => {
                            let change = shared.track_instance(&mut seen, key, now);
                            if change.visible {
                                for service in shared.services_on_instance(key) {
                                    wake(&workers, &service);
                                }
                                visible.insert(cluster_of(&p));
                            }
                            if change.roomier {
                                roomier.insert(cluster_of(&p));
                            }
                        }
                        "task" => {
                            if let Some(service) = shared.index_task(key) {
                                wake(&workers, &service);
                            }
                        }
                        _ => {}
                    }
                }
                if !visible.is_empty() || !roomier.is_empty() {
                    for w in workers.values() {
                        if (w.daemon && visible.contains(&w.cluster))
                            || (w.starved.load(Ordering::Relaxed) && roomier.contains(&w.cluster))
                        {
                            w.notify.notify_one();
                        }
                    }
                }
            }
            Err(RecvError::Lagged(_)) => {
                let now = now_millis();
                // The ones seen before too, so those that went are forgotten.
                let mut instances: BTreeSet<String> = seen.keys().cloned().collect();
                instances.extend(api.cache.keys_of::<ContainerInstance>());
                for key in instances {
                    shared.track_instance(&mut seen, &key, now);
                }
                shared.tasks.add_all(&api);
                for key in api.cache.keys_of::<ServiceRecord>() {
                    ensure(&shared, &mut workers, &key);
                }
                for w in workers.values() {
                    w.notify.notify_one();
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Starts a worker for the service at `key` unless one is running or the
/// service is INACTIVE or gone.
fn ensure(shared: &Arc<Shared>, workers: &mut HashMap<String, Worker>, key: &str) {
    if workers.get(key).is_some_and(|w| !w.handle.is_finished()) {
        return;
    }
    let live = shared.api.cache.peek::<ServiceRecord, _>(key, |r| {
        (r.service.status.as_deref() != Some(services::INACTIVE))
            .then_some(r.service.scheduling_strategy == Some(SchedulingStrategy::Daemon))
    });
    let Some(Some(daemon)) = live else {
        workers.remove(key);
        shared.tasks.lock().remove(key);
        return;
    };
    let Some(p) = parts(key) else { return };
    let cluster = cluster_of(&p);
    let notify = Arc::new(Notify::new());
    let starved = Arc::new(AtomicBool::new(false));
    let handle = tokio::spawn(run_service(
        Arc::clone(shared),
        key.to_owned(),
        Arc::clone(&notify),
        Arc::clone(&starved),
    ));
    workers.insert(
        key.to_owned(),
        Worker {
            cluster,
            daemon,
            notify,
            starved,
            handle,
        },
    );
}

async fn run_service(
    shared: Arc<Shared>,
    key: String,
    notify: Arc<Notify>,
    starved: Arc<AtomicBool>,
) {
    let mut launched = LaunchReport::default();
    loop {
        let wake = match reconcile(&shared, &key, &mut launched).await {
            Ok(Some(wake)) => wake,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(%key, %err, "service round failed; retrying");
                Some(now_millis() + 1000)
            }
        };
        starved.store(!launched.failures.is_empty(), Ordering::Relaxed);
        let wait = wake.map_or(IDLE_RECHECK, |at| {
            Duration::from_millis(u64::try_from(at - now_millis()).unwrap_or(0)).min(IDLE_RECHECK)
        });
        tokio::select! {
            () = notify.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
        tokio::time::sleep(DEBOUNCE).await;
    }
}

fn has_health_check(record: &crate::state::TaskRecord) -> bool {
    record
        .spec
        .containers
        .iter()
        .any(|c| c.definition.essential != Some(false) && c.definition.health_check.is_some())
}

fn attribute(ci: &ContainerInstance, name: &str) -> Option<String> {
    ci.attributes
        .iter()
        .flatten()
        .find(|a| a.name == name)
        .and_then(|a| a.value.clone())
}

fn last_segment(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or(arn).to_owned()
}

/// One round. `Ok(None)`: the service is INACTIVE or gone, the worker ends.
/// `Ok(Some(wake))`: run again by `wake` at the latest.
async fn reconcile(
    shared: &Shared,
    key: &str,
    launched: &mut LaunchReport,
) -> Result<Option<Option<i64>>, EcsError> {
    let api = &*shared.api;
    let Some(p) = parts(key) else {
        return Ok(None);
    };
    let ctx = Ctx {
        scope: Scope::new(p.region, p.account),
        host: None,
    };
    let cluster = p.cluster.to_owned();
    let report = std::mem::take(launched);
    for _ in 0..MAX_ROUND_ATTEMPTS {
        let Some(found) = api.cache.get::<ServiceRecord>(key) else {
            return Ok(None);
        };
        let record = found.value;
        let status = match record.service.status.as_deref() {
            Some(services::ACTIVE) => ServiceStatus::Active,
            Some(services::DRAINING) => ServiceStatus::Draining,
            _ => return Ok(None),
        };
        let service = &record.service;
        let name = service.service_name.clone().unwrap_or_default();
        let strategy = service
            .scheduling_strategy
            .unwrap_or(SchedulingStrategy::Replica);
        let now = now_millis();
        let mut task_views = Vec::new();
        let mut gone = Vec::new();
        for id in shared.tasks.ids(key) {
            let view = api
                .cache
                .peek::<crate::state::TaskRecord, _>(&tasks::task_key(&ctx, &cluster, &id), |r| {
                    TaskView::from_wire(&r.task, has_health_check(r))
                });
            match view {
                Some(view) => task_views.push(view),
                None => gone.push(id),
            }
        }
        shared.tasks.forget(key, &gone);
        let instances_prefix = format!("{}{cluster}/", prefix::<ContainerInstance>(&ctx.scope));
        let daemon_constraints = daemon_constraints(service, strategy);
        let view = |k: &str, ci: &ContainerInstance, disconnected: &HashMap<String, i64>| {
            let id = ci
                .container_instance_arn
                .as_deref()
                .map(last_segment)
                .unwrap_or_else(|| last_segment(k));
            InstanceView {
                id,
                status: InstanceStatus::from_wire(ci.status.as_deref().unwrap_or("")),
                disconnected_since_millis: (!ci.agent_connected)
                    .then(|| disconnected.get(k).copied().unwrap_or(now)),
                availability_zone: attribute(ci, "ecs.availability-zone"),
                daemon_eligible: daemon_constraints.is_empty() || {
                    let instance = placement::snapshot_instance(
                        last_segment(k).as_str(),
                        ci,
                        None,
                        &mut Interner::default(),
                    );
                    daemon_constraints.iter().all(|e| e.eval(&instance))
                },
            }
        };
        let instances = {
            let disconnected = shared.disconnected.lock().expect("lock");
            if strategy == SchedulingStrategy::Daemon {
                api.cache
                    .select::<ContainerInstance, _>(&instances_prefix, |k, ci| {
                        Some(view(k, ci, &disconnected))
                    })
            } else {
                // A REPLICA round looks only at the hosts of its tasks.
                let hosts: BTreeSet<&str> = task_views
                    .iter()
                    .filter_map(|t| t.instance_id.as_deref())
                    .collect();
                hosts
                    .into_iter()
                    .filter_map(|id| {
                        let k = format!("{instances_prefix}{id}");
                        api.cache
                            .peek::<ContainerInstance, _>(&k, |ci| view(&k, ci, &disconnected))
                    })
                    .collect()
            }
        };
        let config = service.deployment_configuration.clone().unwrap_or_default();
        let percent = |p: Option<i32>| p.and_then(|v| u32::try_from(v).ok());
        let snapshot = ServiceSnapshot {
            name: name.clone(),
            status,
            scheduling_strategy: strategy,
            desired_count: u32::try_from(service.desired_count).unwrap_or(0),
            minimum_healthy_percent: percent(config.minimum_healthy_percent),
            maximum_percent: percent(config.maximum_percent),
            circuit_breaker: config.deployment_circuit_breaker.clone(),
            health_check_grace_period_seconds: service
                .health_check_grace_period_seconds
                .and_then(|g| u32::try_from(g).ok())
                .unwrap_or(0),
            tasks: task_views,
            instances,
            launched: report.clone(),
            lost_agent_timeout_millis: shared.lost_agent_timeout_millis,
        };
        let decision = decide(&snapshot, &record.state, now);
        let mut updated = record.clone();
        let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        updated.service.running_count = count(decision.counts.running);
        updated.service.pending_count = count(decision.counts.pending);
        if strategy == SchedulingStrategy::Daemon {
            updated.service.desired_count = count(decision.counts.desired);
        }
        if let Some(p) = decision.state.primary() {
            updated.service.task_definition = Some(p.task_definition.clone());
        }
        services::refresh(&mut updated.service, &decision.state);
        updated.state = decision.state;
        if decision.inactive {
            updated.service.status = Some(services::INACTIVE.into());
        }
        // Most rounds change nothing, which comparing the two parts a round
        // writes tells without encoding the record twice; the encodings
        // still decide, so a write never loops on a difference they lose.
        if updated.service != record.service || updated.state != record.state {
            let after = encode(&updated)?;
            if encode(&record)? != after {
                let txn = guard(Txn::new(), key, found.mod_revision).put(key, after);
                if !api.writer.commit(txn).await? {
                    continue;
                }
            }
        }
        apply_stops(api, &ctx, &cluster, &decision.stop).await;
        *launched = start_tasks(api, &ctx, &cluster, &updated, &decision.start).await;
        shared.tasks.add(key, launched.started.iter().cloned());
        if decision.inactive {
            return Ok(None);
        }
        return Ok(Some(decision.next_wakeup_millis));
    }
    *launched = report;
    Err(crate::state::contention())
}

async fn apply_stops(api: &Api, ctx: &Ctx, cluster: &str, stops: &[berth_core::service::StopTask]) {
    for stop in stops {
        let result = match stop.how {
            StopHow::Request => {
                tasks::stop_task(api, ctx, cluster, &stop.task_id, stop.code, &stop.reason).await
            }
            StopHow::MarkStopped => {
                tasks::update(api, ctx, cluster, &stop.task_id, |record| {
                    let changed = lifecycle::force_stopped(
                        &mut record.task,
                        stop.code,
                        &stop.reason,
                        Timestamp::now(),
                    );
                    if changed {
                        record.spec.desired_status = DesiredStatus::Stopped;
                        record.spec.desired_version += 1;
                    }
                    Ok(changed)
                })
                .await
            }
        };
        if let Err(err) = result {
            tracing::warn!(task = %stop.task_id, %err, "cannot stop a service task");
        }
    }
}

fn closest(arn: Option<&str>) -> Option<String> {
    let arn = arn?;
    match Arn::parse(arn) {
        Some(a) if a.resource_type == "container-instance" => Some(a.last_segment().to_owned()),
        _ => None,
    }
}

async fn start_tasks(
    api: &Api,
    ctx: &Ctx,
    cluster: &str,
    record: &ServiceRecord,
    starts: &[berth_core::service::StartTasks],
) -> LaunchReport {
    let mut report = LaunchReport::default();
    let service = &record.service;
    let propagate = service.propagate_tags.unwrap_or(PropagateTags::None);
    let tags = match propagate {
        PropagateTags::Service => service.tags.clone(),
        _ => None,
    };
    let propagate_tags = (propagate == PropagateTags::TaskDefinition).then_some(propagate);
    let strategies = service
        .placement_strategy
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            if service.scheduling_strategy == Some(SchedulingStrategy::Daemon) {
                Vec::new()
            } else {
                services::default_strategy()
            }
        });
    let mut record_outcome = |result: LaunchOutcome, asked: usize| match result {
        Ok((tasks, failures)) => {
            for t in tasks.unwrap_or_default() {
                if let Some(arn) = t.task_arn.as_deref() {
                    report.started.push(last_segment(arn));
                }
            }
            for f in failures.unwrap_or_default() {
                report.failures.push(PlacementFailure {
                    reason: f.reason.unwrap_or_default(),
                    closest_instance: closest(f.arn.as_deref()),
                });
            }
        }
        Err(err) => {
            for _ in 0..asked {
                report.failures.push(PlacementFailure {
                    reason: err.message.clone(),
                    closest_instance: None,
                });
            }
        }
    };
    for start in starts {
        match &start.placement {
            Placement::Anywhere { count } => {
                let mut left = *count;
                while left > 0 {
                    let n = left.min(10);
                    left -= n;
                    let req = RunTaskRequest {
                        cluster: Some(cluster.to_owned()),
                        task_definition: start.task_definition.clone(),
                        count: Some(i32::try_from(n).unwrap_or(1)),
                        started_by: Some(start.started_by.clone()),
                        group: Some(start.group.clone()),
                        placement_constraints: service.placement_constraints.clone(),
                        placement_strategy: Some(strategies.clone()),
                        launch_type: service.launch_type,
                        capacity_provider_strategy: service.capacity_provider_strategy.clone(),
                        network_configuration: service.network_configuration.clone(),
                        platform_version: service.platform_version.clone(),
                        tags: tags.clone(),
                        propagate_tags,
                        ..RunTaskRequest::default()
                    };
                    let existing = if service.capacity_provider_strategy.is_some() {
                        tasks_per_provider(api, ctx, cluster, &start.group)
                    } else {
                        BTreeMap::new()
                    };
                    let result = tasks::run_with(api, ctx, req, &existing)
                        .await
                        .map(|r| (r.tasks, r.failures));
                    record_outcome(result, n as usize);
                }
            }
            Placement::OnInstances(ids) => {
                for chunk in ids.chunks(10) {
                    let req = StartTaskRequest {
                        cluster: Some(cluster.to_owned()),
                        task_definition: start.task_definition.clone(),
                        container_instances: chunk.to_vec(),
                        started_by: Some(start.started_by.clone()),
                        group: Some(start.group.clone()),
                        tags: tags.clone(),
                        propagate_tags,
                        ..StartTaskRequest::default()
                    };
                    let result = tasks::start(api, ctx, req)
                        .await
                        .map(|r| (r.tasks, r.failures));
                    record_outcome(result, chunk.len());
                }
            }
        }
    }
    report
}

/// How many of a service's tasks (its task group) that have not stopped
/// run on each capacity provider, so new tasks keep its strategy's base
/// and weights.
fn tasks_per_provider(api: &Api, ctx: &Ctx, cluster: &str, group: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let providers =
        api.cache
            .select_tasks(&tasks::cluster_tasks_prefix(ctx, cluster), |_, task| {
                (task.group.as_deref() == Some(group) && !task.is_stopped())
                    .then(|| task.capacity_provider.clone())
                    .flatten()
            });
    for provider in providers {
        *counts.entry(provider.to_string()).or_insert(0) += 1;
    }
    counts
}

/// A DAEMON service's memberOf expressions, which decide the instances it
/// runs a task on (distinctInstance holds by construction). They were
/// validated when the service was created, so one that fails to parse
/// cannot occur; it is skipped rather than stopping every task.
fn daemon_constraints(service: &Service, strategy: SchedulingStrategy) -> Vec<cql::Expr> {
    if strategy != SchedulingStrategy::Daemon {
        return Vec::new();
    }
    service
        .placement_constraints
        .iter()
        .flatten()
        .filter(|c| c.r#type == Some(PlacementConstraintType::MemberOf))
        .filter_map(|c| c.expression.as_deref())
        .filter_map(|e| cql::parse(e).ok())
        .collect()
}
