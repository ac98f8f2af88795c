//! The task engine: keeps one supervisor per task (the only writer of that
//! task's state, as in the ECS agent's `managedTask`), routes desired states
//! from the control plane and container events from the runtime to them, and
//! on start adopts the containers an earlier run of the agent left behind —
//! stopping those of tasks it has no record of, pause containers (awsvpc
//! namespaces) included, and removing the namespaces of its warm pool
//! ([`pool`]) that no task claims.

use std::collections::{HashMap, HashSet};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_types::agent::{
    AgentMessage, DesiredStatus, FARGATE_POOL_CLUSTER, Manifest, PAUSE_CONTAINER_NAME, TaskSpec,
};
use berth_types::{
    AttachmentStateChange, ContainerStateChange, SubmitTaskStateChangeRequest, Timestamp,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::cgroup::Cgroups;
use crate::persist;
use crate::ports::PortAllocator;
use crate::report::{Report, Reporter};
use crate::runtime::{
    ContainerInfo, ContainerRuntime, LABEL_ATTACHMENT_ARN, LABEL_CLUSTER, LABEL_CONTAINER_NAME,
    LABEL_OWNER, LABEL_TASK_ARN, RuntimeError, RuntimeEvent, TaskNetwork,
};

mod inbox;
mod pool;
mod task;

use pool::WarmPool;

use task::{Supervisor, TaskMsg};

/// How often, and how far apart, removing a task's cgroup is tried: the
/// runtime may take a moment to remove its containers' own groups inside.
const CGROUP_ATTEMPTS: u32 = 50;
const CGROUP_RETRY: Duration = Duration::from_millis(100);
/// The attachment status of a network interface whose namespace is gone.
pub(crate) const DETACHED: &str = "DETACHED";

/// When the agent pulls an image (ECS's `ECS_IMAGE_PULL_BEHAVIOR`).
///
/// Berth's `Default` differs from ECS's on purpose: ECS pulls every time and
/// falls back to a cached image when the pull fails; Berth hosts often have
/// no registry at all, so `Default` uses a local image when there is one and
/// pulls only when there is not (ECS's `prefer-cached`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImagePullBehavior {
    #[default]
    Default,
    /// Always pull; a failed pull fails the task.
    Always,
    /// Pull the first time this agent needs the image, then use it as is.
    Once,
    /// Pull only when the image is not on the host.
    PreferCached,
}

/// How the engine runs tasks.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The cluster (name or ARN) the agent serves; containers labelled with
    /// another cluster are left alone, except by an agent of the Fargate
    /// pool, which runs tasks of every cluster.
    pub cluster: String,
    /// Which agent owns the containers this engine creates (the agent's
    /// instance id). Recovery only adopts or stops containers carrying this
    /// owner, so agents sharing a Docker Engine never touch each other's.
    pub owner: String,
    /// Where task records and unsent reports are kept; `None` keeps nothing.
    pub data_dir: Option<PathBuf>,
    /// How long stopped containers are kept before removal (ECS:
    /// `ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION`, 3 h).
    pub cleanup_wait: Duration,
    /// The SIGTERM→SIGKILL grace when a container sets no `stopTimeout`
    /// (ECS: `ECS_CONTAINER_STOP_TIMEOUT`, 30 s).
    pub stop_timeout: Duration,
    pub image_pull_behavior: ImagePullBehavior,
    /// Where dynamic host ports come from.
    pub port_range: RangeInclusive<u16>,
    /// Put each task with task-level cpu/memory into its own cgroup.
    pub task_cgroups: bool,
    /// Ships every container's output; `None` leaves logs in the runtime.
    pub logs: Option<crate::logs::LogShipper>,
    /// Where the task metadata endpoint listens; containers get
    /// `ECS_CONTAINER_METADATA_URI_V4=http://<this>/v4/<token>`. `None`
    /// injects nothing.
    pub metadata_address: Option<std::net::SocketAddr>,
    /// Reported as `AvailabilityZone` by the metadata endpoint.
    pub availability_zone: Option<String>,
    /// The network awsvpc tasks get their namespaces on; `None`: such
    /// tasks fail to start.
    pub task_network: Option<TaskNetwork>,
    /// How many namespaces to keep started ahead of the awsvpc tasks that
    /// will claim them (with a task network only).
    pub warm_namespaces: usize,
}

impl EngineConfig {
    pub fn new(cluster: impl Into<String>) -> Self {
        Self {
            cluster: cluster.into(),
            owner: String::new(),
            data_dir: None,
            cleanup_wait: Duration::from_secs(3 * 3600),
            stop_timeout: Duration::from_secs(30),
            image_pull_behavior: ImagePullBehavior::Default,
            port_range: crate::ports::ephemeral_range(),
            task_cgroups: true,
            logs: None,
            metadata_address: None,
            availability_zone: None,
            task_network: None,
            warm_namespaces: 0,
        }
    }

    /// Whether the agent is in the Fargate pool, running the FARGATE tasks
    /// of every cluster rather than the tasks of one.
    pub fn is_fargate_pool(&self) -> bool {
        self.cluster.rsplit('/').next() == Some(FARGATE_POOL_CLUSTER)
    }

    fn tasks_dir(&self) -> Option<PathBuf> {
        self.data_dir.as_ref().map(|d| d.join("tasks"))
    }
}

/// What the agent remembers of a task across restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TaskRecord {
    pub spec: TaskSpec,
    /// The last task status queued for the server.
    pub reported: Option<String>,
    /// Container name → the token in its metadata endpoint URI.
    #[serde(default)]
    pub metadata_tokens: std::collections::BTreeMap<String, String>,
    /// The last attachment status queued for the server (awsvpc tasks).
    #[serde(default)]
    pub attachment: Option<String>,
    /// Why the task stopped and when its containers had, so the report
    /// sent after a restart (the network's teardown) says it again.
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub execution_stopped_at: Option<Timestamp>,
    /// The pause container holding the task's address (awsvpc): one of the
    /// warm pool carries no label naming the task, and one made before a
    /// crash may never have had the address.
    #[serde(default)]
    pub namespace: Option<String>,
}

impl TaskRecord {
    /// A task the agent has done nothing for yet.
    pub fn new(spec: TaskSpec) -> Self {
        Self {
            spec,
            reported: None,
            metadata_tokens: Default::default(),
            attachment: None,
            stop_reason: None,
            execution_stopped_at: None,
            namespace: None,
        }
    }
}

/// The cluster a report about `task_arn` names: `known` (the task's spec or
/// its containers' label) when there is one, else the cluster in the ARN
/// (`…:task/CLUSTER/ID`), else the agent's.
fn report_cluster(known: Option<&str>, task_arn: &str, config: &EngineConfig) -> String {
    known
        .map(str::to_owned)
        .or_else(|| {
            let (_, path) = task_arn.split_once(":task/")?;
            let (cluster, _) = path.split_once('/')?;
            Some(cluster.to_owned())
        })
        .unwrap_or_else(|| config.cluster.clone())
}

fn task_id(task_arn: &str) -> &str {
    task_arn.rsplit('/').next().unwrap_or(task_arn)
}

enum Entry {
    Live {
        version: i64,
        inbox: inbox::Sender<TaskMsg>,
    },
    /// Stopped and cleaned up, or never run; remembered so a late or
    /// repeated payload cannot start it again.
    Done,
}

pub(crate) struct Shared {
    pub runtime: Arc<dyn ContainerRuntime>,
    pub reporter: Reporter,
    pub config: EngineConfig,
    pub ports: Mutex<PortAllocator>,
    pub cgroups: Option<Cgroups>,
    pub outbox: mpsc::UnboundedSender<AgentMessage>,
    pub pulled: Mutex<HashSet<String>>,
    /// Namespaces started ahead of awsvpc tasks; `None` without a pool.
    pub pool: Option<Arc<WarmPool>>,
    tasks: Mutex<HashMap<String, Entry>>,
    /// Runtime container id → task ARN, for routing events.
    containers: Mutex<HashMap<String, String>>,
    /// Containers found at start whose task the agent has no record of,
    /// waiting for the server to say whether it still wants them.
    orphans: Mutex<HashMap<String, Vec<ContainerInfo>>>,
    manifest_timeline: Mutex<Option<i64>>,
    /// Metadata endpoint token → task ARN.
    tokens: Mutex<HashMap<String, String>>,
    /// Task ARN → what the metadata endpoint shows of it.
    snapshots: Mutex<HashMap<String, crate::metadata::TaskSnapshot>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // State behind these locks stays consistent between statements, so a
    // panic elsewhere does not make it unusable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub fn ports(&self) -> MutexGuard<'_, PortAllocator> {
        lock(&self.ports)
    }

    pub fn track_container(&self, id: &str, task_arn: &str) {
        lock(&self.containers).insert(id.to_owned(), task_arn.to_owned());
    }

    pub fn untrack_container(&self, id: &str) {
        lock(&self.containers).remove(id);
    }

    pub fn save_record(&self, record: &TaskRecord) {
        let Some(dir) = self.config.tasks_dir() else {
            return;
        };
        if let Err(error) = persist::write(&dir, &persist::file_name(&record.spec.task_arn), record)
        {
            tracing::warn!(%error, task = record.spec.task_arn, "cannot persist task record");
        }
    }

    /// Publishes what the metadata endpoint shows of a task.
    pub fn publish(&self, snapshot: crate::metadata::TaskSnapshot) {
        {
            let mut tokens = lock(&self.tokens);
            for c in &snapshot.containers {
                tokens.insert(c.token.clone(), snapshot.task_arn.clone());
            }
        }
        lock(&self.snapshots).insert(snapshot.task_arn.clone(), snapshot);
    }

    /// The supervisor of `task_arn` has finished: forget its record.
    pub fn finish(&self, task_arn: &str) {
        lock(&self.tokens).retain(|_, arn| arn != task_arn);
        lock(&self.snapshots).remove(task_arn);
        if let Some(dir) = self.config.tasks_dir()
            && let Err(error) = persist::remove(&dir, &persist::file_name(task_arn))
        {
            tracing::warn!(%error, task = task_arn, "cannot remove task record");
        }
        lock(&self.tasks).insert(task_arn.to_owned(), Entry::Done);
    }

    fn route(&self, event: RuntimeEvent) {
        let Some(task) = lock(&self.containers).get(&event.container_id).cloned() else {
            return;
        };
        if let Some(Entry::Live { inbox, .. }) = lock(&self.tasks).get(&task) {
            inbox.send(TaskMsg::Event(Box::new(event)));
        }
    }

    fn cluster_matches(&self, label: Option<&String>) -> bool {
        let Some(label) = label else { return false };
        let mine = &self.config.cluster;
        let name = |s: &str| s.rsplit('/').next().unwrap_or(s).to_owned();
        self.config.is_fargate_pool() || label == mine || name(label) == name(mine)
    }

    /// Removes a task's cgroup once its processes are gone, retrying while
    /// the runtime cleans up inside it; one that stays is logged (an empty
    /// leftover is harmless, a busy one is not the agent's).
    pub async fn remove_cgroup(&self, task_id: &str) {
        let Some(cgroups) = &self.cgroups else {
            return;
        };
        let mut attempt = 1;
        loop {
            match cgroups.remove(task_id) {
                Ok(()) => return,
                Err(error) if attempt >= CGROUP_ATTEMPTS => {
                    tracing::warn!(%error, task = task_id, "cannot remove the task cgroup");
                    return;
                }
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(CGROUP_RETRY).await;
                }
            }
        }
    }
}

/// The engine. Cloning shares it.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
}

impl Engine {
    /// Starts the engine: subscribes to runtime events, then adopts the
    /// containers of tasks this agent recorded before a restart. Health
    /// reports for the control plane come out of the returned receiver.
    pub async fn start(
        runtime: Arc<dyn ContainerRuntime>,
        reporter: Reporter,
        config: EngineConfig,
    ) -> Result<(Self, mpsc::UnboundedReceiver<AgentMessage>), RuntimeError> {
        let (outbox, health) = mpsc::unbounded_channel();
        let probe = runtime.binds_host_ports();
        let cgroups = if config.task_cgroups {
            Cgroups::detect()
        } else {
            None
        };
        let pool = (config.warm_namespaces > 0 && config.task_network.is_some())
            .then(|| WarmPool::new(config.warm_namespaces, &config.owner));
        let shared = Arc::new(Shared {
            ports: Mutex::new(PortAllocator::new(config.port_range.clone(), probe)),
            runtime,
            reporter,
            config,
            cgroups,
            outbox,
            pulled: Mutex::new(HashSet::new()),
            pool,
            tasks: Mutex::new(HashMap::new()),
            containers: Mutex::new(HashMap::new()),
            orphans: Mutex::new(HashMap::new()),
            manifest_timeline: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            snapshots: Mutex::new(HashMap::new()),
        });
        // Subscribe before listing, so no exit between the two is missed.
        let mut events = shared.runtime.events();
        let weak = Arc::downgrade(&shared);
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let Some(shared) = weak.upgrade() else { return };
                shared.route(event);
            }
        });
        let engine = Self { shared };
        engine.recover().await?;
        if let Some(pool) = &engine.shared.pool {
            pool.start(engine.shared.runtime.clone());
        }
        Ok((engine, health))
    }

    async fn recover(&self) -> Result<(), RuntimeError> {
        let shared = &self.shared;
        let mut by_task: HashMap<String, Vec<ContainerInfo>> = HashMap::new();
        for container in shared.runtime.list_managed().await? {
            if !shared.cluster_matches(container.labels.get(LABEL_CLUSTER))
                || container.labels.get(LABEL_OWNER) != Some(&shared.config.owner)
            {
                continue;
            }
            if let Some(task) = container.labels.get(LABEL_TASK_ARN) {
                by_task.entry(task.clone()).or_default().push(container);
            }
        }
        let records: Vec<TaskRecord> = shared
            .config
            .tasks_dir()
            .map(|dir| {
                persist::read_all(&dir)
                    .into_iter()
                    .map(|(_, r)| r)
                    .collect()
            })
            .unwrap_or_default();
        // Warm namespaces no record claims were idle, or claimed by a task
        // whose record was not written yet (so its supervisor makes
        // another): a new one is cheaper than checking what an old one
        // holds, and its address must be free before any task starts.
        let (mut claimed, unclaimed): (HashMap<String, ContainerInfo>, _) = shared
            .runtime
            .list_warm_namespaces(&shared.config.owner)
            .await?
            .into_iter()
            .map(|info| (info.id.clone(), info))
            .partition(|(id, _)| records.iter().any(|r| r.namespace.as_ref() == Some(id)));
        for id in unclaimed.into_keys() {
            match shared.runtime.remove_namespace(&id).await {
                Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                Err(error) => tracing::warn!(%error, id, "cannot remove a warm namespace"),
            }
        }
        for record in records {
            let mut adopted = by_task.remove(&record.spec.task_arn).unwrap_or_default();
            adopted.extend(record.namespace.as_ref().and_then(|id| claimed.remove(id)));
            tracing::info!(
                task = record.spec.task_arn,
                containers = adopted.len(),
                "adopting task from an earlier run"
            );
            self.spawn(record, adopted);
        }
        *lock(&shared.orphans) = by_task;
        Ok(())
    }

    fn spawn(&self, record: TaskRecord, adopted: Vec<ContainerInfo>) {
        let (tx, rx) = inbox::inbox();
        lock(&self.shared.tasks).insert(
            record.spec.task_arn.clone(),
            Entry::Live {
                version: record.spec.desired_version,
                inbox: tx,
            },
        );
        let supervisor = Supervisor::new(self.shared.clone(), record, adopted, rx);
        tokio::spawn(supervisor.run());
    }

    /// Applies the tasks of a payload: new tasks start, known ones get their
    /// new desired status. Stale (older `desired_version`) and repeated
    /// specs change nothing.
    pub fn apply(&self, tasks: Vec<TaskSpec>) {
        for spec in tasks {
            let mut entries = lock(&self.shared.tasks);
            match entries.get_mut(&spec.task_arn) {
                Some(Entry::Done) => {}
                Some(Entry::Live { version, inbox }) => {
                    if spec.desired_version > *version {
                        *version = spec.desired_version;
                        inbox.send(TaskMsg::Update(Box::new(spec)));
                    }
                }
                None if spec.desired_status == DesiredStatus::Stopped => {
                    entries.insert(spec.task_arn.clone(), Entry::Done);
                    drop(entries);
                    match lock(&self.shared.orphans).remove(&spec.task_arn) {
                        Some(containers) => {
                            self.stop_orphans(&spec.task_arn, containers, true, Some(&spec));
                        }
                        None => self.report_never_ran(&spec.task_arn, Some(&spec)),
                    }
                }
                None => {
                    drop(entries);
                    let adopted = lock(&self.shared.orphans)
                        .remove(&spec.task_arn)
                        .unwrap_or_default();
                    self.spawn(TaskRecord::new(spec), adopted);
                }
            }
        }
    }

    /// Applies a manifest: every running task it does not list as desired
    /// RUNNING is stopped, and so are containers found at start whose task
    /// it does not want. Manifests older than the last one are ignored.
    pub fn apply_manifest(&self, manifest: &Manifest) {
        {
            let mut timeline = lock(&self.shared.manifest_timeline);
            if timeline.is_some_and(|last| manifest.timeline <= last) {
                return;
            }
            *timeline = Some(manifest.timeline);
        }
        let wanted: HashMap<&str, DesiredStatus> = manifest
            .tasks
            .iter()
            .map(|e| (e.task_arn.as_str(), e.desired_status))
            .collect();
        let running = |arn: &str| wanted.get(arn) == Some(&DesiredStatus::Running);
        let mut unknown_stopped = Vec::new();
        {
            let entries = lock(&self.shared.tasks);
            for (arn, entry) in entries.iter() {
                if let Entry::Live { inbox, .. } = entry
                    && !running(arn)
                {
                    inbox.send(TaskMsg::Stop);
                }
            }
            let orphans = lock(&self.shared.orphans);
            for (arn, status) in &wanted {
                if *status == DesiredStatus::Stopped
                    && !entries.contains_key(*arn)
                    && !orphans.contains_key(*arn)
                {
                    unknown_stopped.push((*arn).to_owned());
                }
            }
        }
        for arn in unknown_stopped {
            lock(&self.shared.tasks).insert(arn.clone(), Entry::Done);
            self.report_never_ran(&arn, None);
        }
        let unwanted: Vec<(String, Vec<ContainerInfo>)> = {
            let mut orphans = lock(&self.shared.orphans);
            let arns: Vec<String> = orphans.keys().filter(|a| !running(a)).cloned().collect();
            arns.into_iter()
                .filter_map(|arn| orphans.remove(&arn).map(|c| (arn, c)))
                .collect()
        };
        for (arn, containers) in unwanted {
            let listed = wanted.contains_key(arn.as_str());
            lock(&self.shared.tasks).insert(arn.clone(), Entry::Done);
            self.stop_orphans(&arn, containers, listed, None);
        }
    }

    /// Tells the server a task it wants stopped never ran here; its network
    /// interface, if the spec names one, was never attached either.
    fn report_never_ran(&self, task_arn: &str, spec: Option<&TaskSpec>) {
        let config = &self.shared.config;
        self.shared
            .reporter
            .send(Report::Task(SubmitTaskStateChangeRequest {
                cluster: Some(report_cluster(
                    spec.map(|s| s.cluster_arn.as_str()),
                    task_arn,
                    config,
                )),
                task: Some(task_arn.to_owned()),
                status: Some("STOPPED".to_owned()),
                attachments: spec
                    .and_then(|s| s.network_interface.as_ref())
                    .map(|eni| detached(&eni.attachment_arn)),
                ..Default::default()
            }));
    }

    /// Stops containers of a task the agent has no record of, then removes
    /// its pause container (freeing its address) and its cgroup; when the
    /// server still tracks the task (`report`), tells it their exit codes
    /// and, for an awsvpc task, that its interface is detached.
    fn stop_orphans(
        &self,
        task_arn: &str,
        containers: Vec<ContainerInfo>,
        report: bool,
        spec: Option<&TaskSpec>,
    ) {
        let shared = self.shared.clone();
        let task_arn = task_arn.to_owned();
        let (pauses, containers): (Vec<ContainerInfo>, Vec<ContainerInfo>) =
            containers.into_iter().partition(|c| {
                c.labels.get(LABEL_CONTAINER_NAME).map(String::as_str) == Some(PAUSE_CONTAINER_NAME)
            });
        let cluster = report_cluster(
            spec.map(|s| s.cluster_arn.as_str()).or_else(|| {
                containers
                    .iter()
                    .chain(&pauses)
                    .find_map(|c| c.labels.get(LABEL_CLUSTER))
                    .map(String::as_str)
            }),
            &task_arn,
            &shared.config,
        );
        let attachment = spec
            .and_then(|s| s.network_interface.as_ref())
            .map(|eni| eni.attachment_arn.clone())
            .or_else(|| {
                pauses
                    .iter()
                    .find_map(|p| p.labels.get(LABEL_ATTACHMENT_ARN).cloned())
            });
        tokio::spawn(async move {
            tracing::info!(
                task = task_arn,
                "stopping containers of a task the server no longer wants"
            );
            let mut changes = Vec::new();
            for container in containers {
                if let Err(error) = shared
                    .runtime
                    .stop(&container.id, shared.config.stop_timeout)
                    .await
                {
                    tracing::warn!(%error, id = container.id, "cannot stop orphaned container");
                }
                let info = shared
                    .runtime
                    .inspect(&container.id)
                    .await
                    .unwrap_or(container);
                changes.push(ContainerStateChange {
                    container_name: info.labels.get(LABEL_CONTAINER_NAME).cloned(),
                    runtime_id: Some(info.id.clone()),
                    status: Some("STOPPED".to_owned()),
                    exit_code: info.exit_code,
                    ..Default::default()
                });
                let shared = shared.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(shared.config.cleanup_wait).await;
                    let _ = shared.runtime.remove(&info.id).await;
                });
            }
            for pause in &pauses {
                match shared.runtime.remove_namespace(&pause.id).await {
                    Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                    Err(error) => {
                        tracing::warn!(%error, id = pause.id, "cannot remove orphaned pause container");
                    }
                }
            }
            shared.remove_cgroup(task_id(&task_arn)).await;
            if report {
                shared
                    .reporter
                    .send(Report::Task(SubmitTaskStateChangeRequest {
                        cluster: Some(cluster),
                        task: Some(task_arn),
                        status: Some("STOPPED".to_owned()),
                        containers: Some(changes),
                        attachments: attachment.map(|arn| detached(&arn)),
                        ..Default::default()
                    }));
            }
        });
    }

    /// Lets go of every task without touching its containers, as an agent
    /// that exits does: the supervisors end, the containers keep running
    /// for the next agent to adopt. The warm pool stops refilling.
    pub fn detach(&self) {
        if let Some(pool) = &self.shared.pool {
            pool.abandon();
        }
        lock(&self.shared.tasks).clear();
        if let Some(logs) = &self.shared.config.logs {
            logs.stop_all();
        }
    }

    /// Lets go of every task as [`Self::detach`] does, after removing the
    /// warm pool's idle namespaces: an agent shutting down cleanly leaves
    /// behind only what its tasks use.
    pub async fn shutdown(&self) {
        if let Some(pool) = &self.shared.pool {
            pool.drain(self.shared.runtime.as_ref()).await;
        }
        self.detach();
    }

    /// The task and container a metadata endpoint token stands for.
    pub fn metadata(&self, token: &str) -> Option<(crate::metadata::TaskSnapshot, usize)> {
        let arn = lock(&self.shared.tokens).get(token).cloned()?;
        let snapshot = lock(&self.shared.snapshots).get(&arn).cloned()?;
        let index = snapshot.containers.iter().position(|c| c.token == token)?;
        Some((snapshot, index))
    }

    /// The runtime the engine runs containers on.
    pub fn runtime(&self) -> Arc<dyn ContainerRuntime> {
        self.shared.runtime.clone()
    }

    /// ARNs of the tasks that have a live supervisor.
    pub fn live_tasks(&self) -> Vec<String> {
        let mut arns: Vec<String> = lock(&self.shared.tasks)
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Live { .. }))
            .map(|(arn, _)| arn.clone())
            .collect();
        arns.sort();
        arns
    }
}

fn detached(attachment_arn: &str) -> Vec<AttachmentStateChange> {
    vec![AttachmentStateChange {
        attachment_arn: attachment_arn.to_owned(),
        status: DETACHED.to_owned(),
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_name_the_task_cluster() {
        let config = EngineConfig::new(FARGATE_POOL_CLUSTER);
        let arn = "arn:aws:ecs:us-east-1:000000000000:task/web/0123";
        assert_eq!(
            report_cluster(Some("arn:cluster/x"), arn, &config),
            "arn:cluster/x"
        );
        assert_eq!(report_cluster(None, arn, &config), "web");
        assert_eq!(
            report_cluster(None, "arn:task/legacy", &config),
            FARGATE_POOL_CLUSTER
        );
        assert_eq!(task_id(arn), "0123");
    }
}
