//! The service controller: one reconcile loop per service, running the pure
//! scheduler (`berth_core::service::decide`) and carrying out its decision.
//!
//! A supervisor follows the cache's change feed and keeps one worker per
//! service that is not INACTIVE. A worker reconciles its service whenever
//! the service, a task of its cluster or an instance of its cluster changes,
//! and at the decision's `next_wakeup_millis`; since one worker owns one
//! service, two rounds of the same service never run at once. A round reads
//! the service and its tasks from the cache, decides, persists the new
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

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::lifecycle;
use berth_core::service::{
    DEFAULT_LOST_AGENT_TIMEOUT_MILLIS, InstanceStatus, InstanceView, LaunchReport, Placement,
    PlacementFailure, ServiceSnapshot, ServiceStatus, StopHow, TaskView, decide,
};
use berth_store::Txn;
use berth_types::agent::DesiredStatus;
use berth_types::arn::{Arn, Scope};
use berth_types::{
    ContainerInstance, EcsError, PropagateTags, RunTaskRequest, SchedulingStrategy,
    StartTaskRequest, Task, Timestamp,
};
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;

use crate::api::{Api, Ctx, services, tasks};

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
}

impl Shared {
    fn track_instance(&self, key: &str, now: i64) {
        let connected = self
            .api
            .cache
            .peek::<ContainerInstance, _>(key, |ci| ci.agent_connected);
        let mut map = self.disconnected.lock().expect("lock");
        match connected {
            Some(false) => {
                map.entry(key.to_owned()).or_insert(now);
            }
            _ => {
                map.remove(key);
            }
        }
    }
}

/// A worker's handle; dropping it (the supervisor ending) ends the worker.
struct Worker {
    cluster: String,
    notify: Arc<Notify>,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

pub fn spawn(api: Arc<Api>) -> tokio::task::JoinHandle<()> {
    // Subscribe before the first read so no change falls in between.
    let changes = api.cache.subscribe();
    tokio::spawn(supervise(api, changes))
}

async fn supervise(api: Arc<Api>, mut changes: tokio::sync::broadcast::Receiver<Arc<[String]>>) {
    let shared = Arc::new(Shared {
        api: Arc::clone(&api),
        disconnected: Mutex::new(HashMap::new()),
    });
    let started = now_millis();
    for key in api.cache.keys_of::<ContainerInstance>() {
        shared.track_instance(&key, started);
    }
    let mut workers: HashMap<String, Worker> = HashMap::new();
    for key in api.cache.keys_of::<ServiceRecord>() {
        ensure(&shared, &mut workers, &key);
    }
    loop {
        match changes.recv().await {
            Ok(keys) => {
                let now = now_millis();
                let mut touched = BTreeSet::new();
                for key in keys.iter() {
                    let Some(p) = parts(key) else { continue };
                    match p.kind {
                        "service" => {
                            ensure(&shared, &mut workers, key);
                            if let Some(w) = workers.get(key.as_str()) {
                                w.notify.notify_one();
                            }
                        }
                        "instance" => {
                            shared.track_instance(key, now);
                            touched.insert(cluster_of(&p));
                        }
                        "task" => {
                            touched.insert(cluster_of(&p));
                        }
                        _ => {}
                    }
                }
                if !touched.is_empty() {
                    for w in workers.values() {
                        if touched.contains(&w.cluster) {
                            w.notify.notify_one();
                        }
                    }
                }
            }
            Err(RecvError::Lagged(_)) => {
                let now = now_millis();
                for key in api.cache.keys_of::<ContainerInstance>() {
                    shared.track_instance(&key, now);
                }
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
        r.service.status.as_deref() != Some(services::INACTIVE)
    });
    if live != Some(true) {
        workers.remove(key);
        return;
    }
    let Some(p) = parts(key) else { return };
    let cluster = cluster_of(&p);
    let notify = Arc::new(Notify::new());
    let handle = tokio::spawn(run_service(
        Arc::clone(shared),
        key.to_owned(),
        Arc::clone(&notify),
    ));
    workers.insert(
        key.to_owned(),
        Worker {
            cluster,
            notify,
            handle,
        },
    );
}

async fn run_service(shared: Arc<Shared>, key: String, notify: Arc<Notify>) {
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
        let group = format!("service:{name}");
        let now = now_millis();
        let task_views = api.cache.select::<crate::state::TaskRecord, _>(
            &tasks::cluster_tasks_prefix(&ctx, &cluster),
            |_, r| {
                (r.task.group.as_deref() == Some(group.as_str()))
                    .then(|| TaskView::from_wire(&r.task, has_health_check(r)))
            },
        );
        let instances_prefix = format!("{}{cluster}/", prefix::<ContainerInstance>(&ctx.scope));
        let instances = {
            let disconnected = shared.disconnected.lock().expect("lock");
            api.cache
                .select::<ContainerInstance, _>(&instances_prefix, |k, ci| {
                    let id = ci
                        .container_instance_arn
                        .as_deref()
                        .map(last_segment)
                        .unwrap_or_else(|| last_segment(k));
                    Some(InstanceView {
                        id,
                        status: InstanceStatus::from_wire(ci.status.as_deref().unwrap_or("")),
                        disconnected_since_millis: (!ci.agent_connected)
                            .then(|| disconnected.get(k).copied().unwrap_or(now)),
                        availability_zone: attribute(ci, "ecs.availability-zone"),
                        // Daemon placement constraints are checked when the
                        // task is started on the instance.
                        daemon_eligible: true,
                    })
                })
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
            lost_agent_timeout_millis: DEFAULT_LOST_AGENT_TIMEOUT_MILLIS,
        };
        let decision = decide(&snapshot, &record.state, now);
        let mut updated = record.clone();
        updated.state = decision.state.clone();
        let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        updated.service.running_count = count(decision.counts.running);
        updated.service.pending_count = count(decision.counts.pending);
        if strategy == SchedulingStrategy::Daemon {
            updated.service.desired_count = count(decision.counts.desired);
        }
        if let Some(p) = updated.state.primary() {
            updated.service.task_definition = Some(p.task_definition.clone());
        }
        let state = updated.state.clone();
        services::refresh(&mut updated.service, &state);
        if decision.inactive {
            updated.service.status = Some(services::INACTIVE.into());
        }
        let before = encode(&record)?;
        let after = encode(&updated)?;
        if before != after {
            let txn = guard(Txn::new(), key, found.mod_revision).put(key, after);
            if !api.writer.commit(txn).await? {
                continue;
            }
        }
        apply_stops(api, &ctx, &cluster, &decision.stop).await;
        *launched = start_tasks(api, &ctx, &cluster, &updated, &decision.start).await;
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
                        tags: tags.clone(),
                        propagate_tags,
                        ..RunTaskRequest::default()
                    };
                    let result = tasks::run(api, ctx, req)
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
