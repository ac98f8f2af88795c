//! One task's supervisor: the only writer of the task's state. It pulls
//! images, creates and starts containers in `dependsOn` order, watches their
//! events, stops them in reverse order, reports each transition, and removes
//! the containers after the cleanup wait.
//!
//! An awsvpc task (one with a network interface) first gets its namespace:
//! a pause container — one of the warm pool when the task asks nothing of
//! the namespace itself, else a new one — given the task's address, which
//! its containers join. The record names that container, so a restarted
//! agent adopts it even without a label naming the task.
//! Its reports carry the interface's attachment: `ATTACHED` with PENDING
//! (the namespace is up), `DETACHING` with the STOPPED report once the
//! containers have stopped, then `DETACHED` with a second STOPPED report
//! once the pause container and the task's cgroup are gone. A namespace that
//! cannot be made stops the task at once, with one STOPPED report
//! (`DETACHED`: nothing was attached). The last attachment status is kept in
//! the task record, so a restarted agent finishes the teardown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_types::agent::{
    AgentMessage, ContainerHealth, ContainerSpec, DesiredStatus, HealthReport,
    PAUSE_CONTAINER_NAME, TaskSpec,
};
use berth_types::{
    AttachmentStateChange, ContainerCondition, ContainerStateChange, HealthStatus, NetworkBinding,
    NetworkMode, Scope, SubmitContainerStateChangeRequest, SubmitTaskStateChangeRequest, Timestamp,
    TransportProtocol,
};
use tokio::time::Instant;

use super::inbox::Receiver;
use super::pool::Launch;
use super::{DETACHED, ImagePullBehavior, Shared, TaskRecord};
use crate::cgroup::Cgroups;
use crate::report::Report;
use crate::runtime::network::Subnet;
use crate::runtime::{
    ContainerInfo, ContainerStatus, CreateSpec, LABEL_ATTACHMENT_ARN, LABEL_CLUSTER,
    LABEL_CONTAINER_NAME, LABEL_FAMILY, LABEL_OWNER, LABEL_REVISION, LABEL_TASK_ARN, Mount,
    MountSource, NamespaceSpec, PortBinding, RuntimeError, RuntimeEvent, RuntimeEventKind,
    TaskAddress, TaskNetwork,
};

/// ECS trims reasons to this many characters.
const MAX_REASON: usize = 1024;
const ATTACHED: &str = "ATTACHED";
const DETACHING: &str = "DETACHING";
const NETWORK_FAILED: &str = "ResourceInitializationError: failed to configure the task network";
/// How soon, and at most how far apart, removing a pause container is
/// tried again: until it is gone the task's address is taken.
const TEARDOWN_RETRY: Duration = Duration::from_secs(1);
const TEARDOWN_RETRY_MAX: Duration = Duration::from_secs(30);
pub(crate) const ESSENTIAL_EXITED: &str = "Essential container in task exited";
pub(crate) const OOM_REASON: &str = "OutOfMemoryError: Container killed due to memory usage";

pub(crate) enum TaskMsg {
    /// A newer spec from the control plane. Variants are boxed because a
    /// task's inbox keeps room for the messages it has seen, and a host can
    /// run thousands of tasks.
    Update(Box<TaskSpec>),
    /// The control plane no longer wants the task.
    Stop,
    Event(Box<RuntimeEvent>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started yet.
    Waiting,
    Running,
    Stopped,
}

struct Container {
    spec: ContainerSpec,
    name: String,
    essential: bool,
    /// Depth in the dependency graph: 0 depends on nothing.
    level: usize,
    id: Option<String>,
    phase: Phase,
    started: bool,
    exit_code: Option<i32>,
    reason: Option<String>,
    oom: bool,
    health: HealthStatus,
    bindings: Vec<PortBinding>,
    image_digest: Option<String>,
}

impl Container {
    fn has_health_check(&self) -> bool {
        self.spec.definition.health_check.is_some()
    }

    fn status(&self) -> &'static str {
        match self.phase {
            Phase::Waiting => "PENDING",
            Phase::Running => "RUNNING",
            Phase::Stopped => "STOPPED",
        }
    }

    fn network_bindings(&self, bind_ip: &str) -> Option<Vec<NetworkBinding>> {
        (!self.bindings.is_empty()).then(|| {
            self.bindings
                .iter()
                .map(|b| NetworkBinding {
                    bind_ip: Some(bind_ip.to_owned()),
                    container_port: Some(i32::from(b.container_port)),
                    host_port: Some(i32::from(b.host_port)),
                    protocol: Some(b.protocol),
                    ..Default::default()
                })
                .collect()
        })
    }

    /// The container's state; its ports are reported bound on `bind_ip`.
    fn state_change(&self, bind_ip: &str) -> ContainerStateChange {
        ContainerStateChange {
            container_name: Some(self.name.clone()),
            runtime_id: self.id.clone(),
            status: Some(self.status().to_owned()),
            exit_code: self.exit_code,
            reason: self.reason.as_deref().map(trim_reason),
            network_bindings: self.network_bindings(bind_ip),
            image_digest: self.image_digest.clone(),
        }
    }

    /// Takes the exit state the runtime reports.
    fn exited(&mut self, info: Option<&ContainerInfo>, event_code: Option<i32>) {
        self.phase = Phase::Stopped;
        self.exit_code = info
            .and_then(|i| i.exit_code)
            .or(event_code)
            .or(self.exit_code);
        if info.is_some_and(|i| i.oom_killed) || self.oom {
            self.oom = true;
            self.reason.get_or_insert_with(|| OOM_REASON.to_owned());
        }
    }
}

fn trim_reason(reason: &str) -> String {
    match reason.char_indices().nth(MAX_REASON) {
        Some((cut, _)) => reason[..cut].to_owned(),
        None => reason.to_owned(),
    }
}

enum Dependency {
    Ready,
    Wait,
    Never(String),
}

pub(crate) struct Supervisor {
    shared: Arc<Shared>,
    /// The task's spec without its containers, which live on in
    /// `containers` (one copy of each definition per task is enough).
    spec: TaskSpec,
    task_id: String,
    containers: Vec<Container>,
    /// Indices of `containers` in start order (dependencies first).
    order: Vec<usize>,
    inbox: Receiver<TaskMsg>,
    reported: Option<String>,
    stopping: bool,
    stop_reason: Option<String>,
    cgroup_parent: Option<String>,
    waiting_since: Instant,
    pull_started_at: Option<Timestamp>,
    pull_stopped_at: Option<Timestamp>,
    execution_stopped_at: Option<Timestamp>,
    adopted: bool,
    /// Container name → metadata endpoint token.
    tokens: std::collections::BTreeMap<String, String>,
    /// The running pause container holding the task's namespace (awsvpc).
    pause: Option<String>,
    /// Other pause containers of the task (one whose start failed before a
    /// crash), removed before a new namespace is made and at teardown.
    stale_pauses: Vec<String>,
    /// The last attachment status queued for the server.
    attachment: Option<String>,
    /// The namespace could not be made: the task stops without ever having
    /// been attached.
    network_failed: bool,
    /// Where the containers' ports are reported bound: the task's address
    /// (awsvpc), else every address of the host.
    bind_ip: String,
    /// Held from the task's arrival until it runs or stops, so the warm
    /// pool's refills leave the engine to it meanwhile.
    launch: Option<Launch>,
}

impl Supervisor {
    pub(crate) fn new(
        shared: Arc<Shared>,
        record: TaskRecord,
        adopted: Vec<ContainerInfo>,
        inbox: Receiver<TaskMsg>,
    ) -> Self {
        let TaskRecord {
            mut spec,
            reported,
            metadata_tokens: mut tokens,
            attachment,
            stop_reason,
            execution_stopped_at,
            namespace,
        } = record;
        // Only the metadata endpoint needs tokens.
        if shared.config.metadata_address.is_some() {
            for c in &spec.containers {
                tokens
                    .entry(c.definition.name.clone().unwrap_or_default())
                    .or_insert_with(|| uuid::Uuid::new_v4().to_string());
            }
        }
        let names: HashMap<String, usize> = spec
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| (c.definition.name.clone().unwrap_or_default(), i))
            .collect();
        let levels = levels(&spec, &names);
        let mut containers: Vec<Container> = std::mem::take(&mut spec.containers)
            .into_iter()
            .zip(levels)
            .map(|(c, level)| Container {
                name: c.definition.name.clone().unwrap_or_default(),
                essential: c.definition.essential.unwrap_or(true),
                spec: c,
                level,
                id: None,
                phase: Phase::Waiting,
                started: false,
                exit_code: None,
                reason: None,
                oom: false,
                health: HealthStatus::Unknown,
                bindings: Vec::new(),
                image_digest: None,
            })
            .collect();
        let mut order: Vec<usize> = (0..containers.len()).collect();
        order.sort_by_key(|&i| (containers[i].level, i));
        let task_id = spec
            .task_arn
            .rsplit('/')
            .next()
            .unwrap_or(&spec.task_arn)
            .to_owned();
        let bind_ip = spec
            .network_interface
            .as_ref()
            .map_or_else(|| "0.0.0.0".to_owned(), |eni| eni.ipv4_address.clone());
        // Pause containers are the namespace, not containers of the task.
        let (pauses, adopted): (Vec<ContainerInfo>, Vec<ContainerInfo>) =
            adopted.into_iter().partition(|c| {
                c.labels.get(LABEL_CONTAINER_NAME).map(String::as_str) == Some(PAUSE_CONTAINER_NAME)
            });
        // Only the one the record names was given the task's address; any
        // other was made before a crash, and may have been left half made.
        let mut pause = None;
        let mut stale_pauses = Vec::new();
        for info in pauses {
            if info.status == ContainerStatus::Running && namespace.as_ref() == Some(&info.id) {
                pause = Some(info.id);
            } else {
                stale_pauses.push(info.id);
            }
        }
        // Containers made before the task's first report, and never started,
        // were made in a namespace that may never have come up: its launch
        // starts over.
        let was_adopted =
            reported.is_some() || adopted.iter().any(|c| c.status != ContainerStatus::Created);
        let launch = if reported.is_none() {
            shared.pool.as_ref().map(|pool| pool.launch())
        } else {
            None
        };
        for info in adopted {
            let Some(c) = containers
                .iter_mut()
                .find(|c| info.labels.get(LABEL_CONTAINER_NAME) == Some(&c.name))
            else {
                continue;
            };
            shared.track_container(&info.id, &spec.task_arn);
            {
                let mut ports = shared.ports();
                for b in &info.port_bindings {
                    ports.book(&spec.task_arn, b.host_port, b.protocol);
                }
            }
            c.bindings = info.port_bindings.clone();
            if spec.network_interface.is_some() {
                c.bindings = same_port_bindings(&c.spec);
            } else if spec.network_mode == NetworkMode::Host {
                c.bindings = same_port_bindings(&c.spec);
                let mut ports = shared.ports();
                for b in &c.bindings {
                    ports.book(&spec.task_arn, b.host_port, b.protocol);
                }
            }
            c.id = Some(info.id.clone());
            c.image_digest = info.image_digest.clone();
            c.health = info.health.unwrap_or(HealthStatus::Unknown);
            match info.status {
                ContainerStatus::Created => {}
                ContainerStatus::Running => {
                    c.phase = Phase::Running;
                    c.started = true;
                }
                ContainerStatus::Exited => {
                    c.started = true;
                    c.exited(Some(&info), None);
                }
            }
        }
        // A stopped task needs no cgroup any more, only its removal.
        let stopped = reported.as_deref() == Some("STOPPED");
        let cgroup_parent = (!stopped && (spec.cpu.is_some() || spec.memory_mib.is_some()))
            .then(|| shared.cgroups.as_ref())
            .flatten()
            .and_then(|cgroups| match cgroups.create(&task_id, spec.cpu, spec.memory_mib) {
                Ok(()) => Some(Cgroups::parent_for(&task_id)),
                Err(error) => {
                    tracing::warn!(%error, task = spec.task_arn, "cannot create the task cgroup; running without task-level limits");
                    None
                }
            });
        Self {
            shared,
            task_id,
            containers,
            order,
            inbox,
            reported,
            stopping: false,
            stop_reason,
            cgroup_parent,
            waiting_since: Instant::now(),
            pull_started_at: None,
            pull_stopped_at: None,
            execution_stopped_at,
            adopted: was_adopted,
            tokens,
            spec,
            pause,
            stale_pauses,
            attachment,
            network_failed: false,
            bind_ip,
            launch,
        }
    }

    pub(crate) async fn run(mut self) {
        // Adopted containers: resume shipping after the last delivered line.
        for i in 0..self.containers.len() {
            if self.containers[i].started {
                self.ship_logs(i);
            }
        }
        if self.reported.as_deref() != Some("STOPPED") {
            self.supervise().await;
        }
        // Not stopped: the engine let go of the task (the agent is shutting
        // down), and the next start adopts it as it is.
        if self.reported.as_deref() != Some("STOPPED") {
            return;
        }
        if self.spec.network_interface.is_some() && !self.detached() {
            if !Box::pin(self.teardown()).await {
                return;
            }
            self.report_task("STOPPED");
        }
        // Boxed, so a running task's future does not carry room for its
        // cleanup all its life.
        Box::pin(self.cleanup()).await;
    }

    fn detached(&self) -> bool {
        self.attachment.as_deref() == Some(DETACHED)
    }

    async fn supervise(&mut self) {
        self.save();
        if self.adopted {
            self.refresh_adopted().await;
        } else if let Err(detail) = Box::pin(self.ensure_namespace()).await {
            self.begin_stop(Some(format!("{NETWORK_FAILED}: {detail}")));
            self.network_failed = true;
        } else {
            self.report_task("PENDING");
        }
        if self.spec.desired_status == DesiredStatus::Stopped {
            self.stopping = true;
        }
        if !self.stopping && self.pull_started_at.is_none() {
            self.pull_images().await;
        }
        self.waiting_since = Instant::now();
        loop {
            if !self.stopping {
                self.advance().await;
            }
            if self.stopping {
                break;
            }
            self.maybe_running();
            self.publish();
            let deadline = self.next_deadline();
            tokio::select! {
                message = self.inbox.recv() => match message {
                    Some(message) => self.handle(message).await,
                    // The engine is gone (agent shutting down): leave the
                    // containers running for the next agent to adopt.
                    None => return,
                },
                () = sleep_until(deadline) => {}
            }
        }
        self.stop_all().await;
        // Nothing was attached: the one STOPPED report says DETACHED, after
        // what was made of the namespace is gone.
        if self.network_failed && !Box::pin(self.teardown()).await {
            return;
        }
        self.report_task("STOPPED");
        self.shared.ports().release(&self.spec.task_arn);
    }

    /// The labels of the task's containers; `name` is the container's.
    fn labels(&self, name: &str) -> std::collections::BTreeMap<String, String> {
        [
            (LABEL_TASK_ARN, self.spec.task_arn.clone()),
            (LABEL_CLUSTER, self.spec.cluster_arn.clone()),
            (LABEL_CONTAINER_NAME, name.to_owned()),
            (LABEL_FAMILY, self.spec.family.clone()),
            (LABEL_REVISION, self.spec.revision.to_string()),
            (LABEL_OWNER, self.shared.config.owner.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Gives an awsvpc task its network namespace, unless a pause container
    /// adopted from an earlier run already holds it. `Err` says why not.
    async fn ensure_namespace(&mut self) -> Result<(), String> {
        let Some(eni) = self.spec.network_interface.clone() else {
            return Ok(());
        };
        if self.pause.is_some() {
            return Ok(());
        }
        // A leftover may hold the very address.
        for id in std::mem::take(&mut self.stale_pauses) {
            match self.shared.runtime.remove_namespace(&id).await {
                Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                Err(error) => {
                    self.stale_pauses.push(id);
                    return Err(format!("cannot remove an earlier pause container: {error}"));
                }
            }
        }
        self.discard_created().await;
        let network = self
            .shared
            .config
            .task_network
            .clone()
            .ok_or("this host has no task network")?;
        if Subnet::parse(&eni.subnet_cidr) != Subnet::parse(&network.subnet) {
            return Err(format!(
                "the task's subnet {} is not this host's task network {}",
                eni.subnet_cidr, network.subnet
            ));
        }
        // Settings the containers cannot have in a joined namespace go on
        // the pause container: each value once, in definition order.
        let definitions = || self.containers.iter().map(|c| &c.spec.definition);
        let dns_servers =
            distinct(definitions().flat_map(|d| d.dns_servers.iter().flatten().cloned()));
        let dns_search_domains =
            distinct(definitions().flat_map(|d| d.dns_search_domains.iter().flatten().cloned()));
        let extra_hosts = distinct(definitions().flat_map(|d| {
            d.extra_hosts
                .iter()
                .flatten()
                .map(|h| format!("{}:{}", h.hostname, h.ip_address))
        }));
        let address = TaskAddress {
            ipv4_address: eni.ipv4_address.clone(),
            mac_address: eni.mac_address.clone(),
        };
        let hostname = definitions().find_map(|d| d.hostname.clone());
        // The warm pool's namespaces were made with none of these.
        let plain = hostname.is_none()
            && dns_servers.is_empty()
            && dns_search_domains.is_empty()
            && extra_hosts.is_empty();
        if plain && let Some(id) = self.shared.pool.as_ref().and_then(|pool| pool.claim()) {
            match self.bring_up(&id, false, &network, &address).await {
                Ok(()) => {
                    tracing::info!(
                        task = self.spec.task_arn,
                        id,
                        address = address.ipv4_address,
                        "task network namespace up (warm)"
                    );
                    return Ok(());
                }
                // It may have died idle: a new one has a better chance.
                Err(error) => {
                    tracing::warn!(%error, task = self.spec.task_arn, id, "cannot attach a warm namespace; making one");
                }
            }
        }
        let mut labels = self.labels(PAUSE_CONTAINER_NAME);
        labels.insert(LABEL_ATTACHMENT_ARN.to_owned(), eni.attachment_arn);
        let spec = NamespaceSpec {
            // ECS's name for the pause container.
            name: format!(
                "ecs-{}-{}-internalecspause-{}",
                self.spec.family,
                self.spec.revision,
                &uuid::Uuid::new_v4().simple().to_string()[..20]
            ),
            labels,
            cgroup_parent: self.cgroup_parent.clone(),
            hostname,
            dns_servers,
            dns_search_domains,
            extra_hosts,
        };
        let id = self
            .shared
            .runtime
            .create_namespace(&spec)
            .await
            .map_err(|e| e.to_string())?;
        self.bring_up(&id, true, &network, &address)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(
            task = self.spec.task_arn,
            id,
            address = address.ipv4_address,
            "task network namespace up"
        );
        Ok(())
    }

    /// Starts namespace `id` (unless it runs already) and gives it the
    /// task's address, meanwhile checking the task's images and creating
    /// its first containers in it: those only need the namespace to exist,
    /// and a container start is the longest step of a launch. A namespace
    /// that does not come up is removed (or left to the teardown when it
    /// will not go), and so are the containers made in it.
    async fn bring_up(
        &mut self,
        id: &str,
        start: bool,
        network: &TaskNetwork,
        address: &TaskAddress,
    ) -> Result<(), RuntimeError> {
        let runtime = self.shared.runtime.clone();
        let up = async {
            if start {
                runtime.start(id).await?;
            }
            runtime.attach_namespace(id, network, address).await
        };
        let (result, ()) = tokio::join!(up, self.prepare(id));
        let Err(error) = result else {
            self.pause = Some(id.to_owned());
            return Ok(());
        };
        self.discard_created().await;
        match runtime.remove_namespace(id).await {
            Ok(()) | Err(RuntimeError::NotFound(_)) => {}
            Err(cleanup) => {
                tracing::warn!(error = %cleanup, id, "cannot remove a namespace that did not come up");
                self.stale_pauses.push(id.to_owned());
            }
        }
        Err(error)
    }

    /// Checks the task's images and creates the containers that start
    /// first (no dependencies, no volumes of others) in `namespace`.
    async fn prepare(&mut self, namespace: &str) {
        if self.spec.desired_status != DesiredStatus::Running {
            return;
        }
        if self.pull_started_at.is_none() {
            self.pull_images().await;
        }
        for k in 0..self.order.len() {
            let i = self.order[k];
            let c = &self.containers[i];
            if self.stopping || c.level > 0 {
                return;
            }
            let joins_volumes = c
                .spec
                .definition
                .volumes_from
                .as_ref()
                .is_some_and(|v| !v.is_empty());
            if c.phase == Phase::Waiting && c.id.is_none() && !joins_volumes {
                self.create_container(i, Some(namespace.to_owned())).await;
            }
        }
    }

    /// Removes the containers made in a namespace that did not come up (or
    /// was made before a crash); none of them ran.
    async fn discard_created(&mut self) {
        for i in 0..self.containers.len() {
            if self.containers[i].phase != Phase::Waiting {
                continue;
            }
            let Some(id) = self.containers[i].id.take() else {
                continue;
            };
            match self.shared.runtime.remove(&id).await {
                Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                Err(error) => {
                    tracing::warn!(%error, id, "cannot remove a container of a namespace that did not come up")
                }
            }
            self.shared.untrack_container(&id);
        }
    }

    /// Takes the task's network down once its containers have stopped: the
    /// pause containers go (which frees the address), then the task's
    /// cgroup. A pause container the runtime will not remove is tried
    /// again until it goes, as its address must not be handed out while it
    /// is held; `false` when the agent shuts down first (its next start
    /// resumes here).
    async fn teardown(&mut self) -> bool {
        let mut retry = TEARDOWN_RETRY;
        loop {
            let mut left = Vec::new();
            let pauses: Vec<String> = self
                .pause
                .take()
                .into_iter()
                .chain(std::mem::take(&mut self.stale_pauses))
                .collect();
            for id in pauses {
                match self.shared.runtime.remove_namespace(&id).await {
                    Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                    Err(error) => {
                        tracing::warn!(%error, id, ?retry, "cannot remove the pause container; retrying");
                        left.push(id);
                    }
                }
            }
            if left.is_empty() {
                break;
            }
            self.stale_pauses = left;
            let wait = tokio::time::sleep(retry);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    message = self.inbox.recv() => if message.is_none() { return false },
                }
            }
            retry = (retry * 2).min(TEARDOWN_RETRY_MAX);
        }
        self.shared.remove_cgroup(&self.task_id).await;
        self.attachment = Some(DETACHED.to_owned());
        true
    }

    fn save(&self) {
        self.shared.save_record(&TaskRecord {
            spec: TaskSpec {
                containers: self.containers.iter().map(|c| c.spec.clone()).collect(),
                ..self.spec.clone()
            },
            reported: self.reported.clone(),
            metadata_tokens: self.tokens.clone(),
            attachment: self.attachment.clone(),
            stop_reason: self.stop_reason.clone(),
            execution_stopped_at: self.execution_stopped_at,
            namespace: self.pause.clone(),
        });
        self.publish();
    }

    /// Shows the task's current state on the metadata endpoint. Without an
    /// endpoint nobody reads it, and at thousands of simulated tasks the
    /// snapshots would be a good part of the agent's memory.
    fn publish(&self) {
        use crate::metadata::{ContainerSnapshot, TaskSnapshot};
        if self.shared.config.metadata_address.is_none() {
            return;
        }
        let containers = self
            .containers
            .iter()
            .map(|c| ContainerSnapshot {
                name: c.name.clone(),
                token: self.tokens.get(&c.name).cloned().unwrap_or_default(),
                container_arn: c.spec.container_arn.clone(),
                docker_id: c.id.clone(),
                image: c.spec.definition.image.clone().unwrap_or_default(),
                image_id: c.image_digest.clone(),
                desired_status: if self.stopping || c.phase == Phase::Stopped {
                    "STOPPED"
                } else {
                    "RUNNING"
                }
                .to_owned(),
                known_status: c.status().to_owned(),
                exit_code: c.exit_code,
                cpu: c.spec.definition.cpu,
                memory: c.spec.definition.memory,
                ports: c.bindings.clone(),
                log_configuration: c.spec.definition.log_configuration.clone(),
            })
            .collect();
        self.shared.publish(TaskSnapshot {
            cluster: self.spec.cluster_arn.clone(),
            task_arn: self.spec.task_arn.clone(),
            family: self.spec.family.clone(),
            revision: self.spec.revision.to_string(),
            desired_status: match self.spec.desired_status {
                DesiredStatus::Running if !self.stopping => "RUNNING",
                _ => "STOPPED",
            }
            .to_owned(),
            known_status: self
                .reported
                .clone()
                .unwrap_or_else(|| "PENDING".to_owned()),
            cpu: self.spec.cpu,
            memory_mib: self.spec.memory_mib,
            pull_started_at: self.pull_started_at,
            pull_stopped_at: self.pull_stopped_at,
            execution_stopped_at: self.execution_stopped_at,
            availability_zone: self.shared.config.availability_zone.clone(),
            network_mode: self.spec.network_mode,
            network_interface: self.spec.network_interface.clone(),
            launch_type: if self.shared.config.is_fargate_pool() {
                "FARGATE"
            } else {
                "EC2"
            }
            .to_owned(),
            containers,
        });
    }

    /// Containers of an adopted task may have changed while no agent was
    /// watching: read their state again now that events reach us.
    async fn refresh_adopted(&mut self) {
        for i in 0..self.containers.len() {
            let Some(id) = self.containers[i].id.clone() else {
                continue;
            };
            match self.shared.runtime.inspect(&id).await {
                Ok(info)
                    if info.status == ContainerStatus::Exited
                        && self.containers[i].phase == Phase::Running =>
                {
                    self.container_exited(i, Some(&info), None);
                }
                Ok(_) => {}
                Err(RuntimeError::NotFound(_)) => {
                    self.shared.untrack_container(&id);
                    let c = &mut self.containers[i];
                    c.id = None;
                    if c.phase == Phase::Running {
                        c.phase = Phase::Stopped;
                    }
                }
                Err(error) => tracing::warn!(%error, id, "cannot inspect adopted container"),
            }
        }
        for i in 0..self.containers.len() {
            let c = &self.containers[i];
            if c.phase == Phase::Stopped && c.essential && !self.stopping {
                self.begin_stop(Some(ESSENTIAL_EXITED.to_owned()));
            }
        }
    }

    async fn handle(&mut self, message: TaskMsg) {
        match message {
            TaskMsg::Update(spec) => {
                if spec.desired_status == DesiredStatus::Stopped {
                    self.begin_stop(None);
                }
                self.spec.desired_status = spec.desired_status;
                self.spec.desired_version = spec.desired_version;
                self.save();
            }
            TaskMsg::Stop => self.begin_stop(None),
            TaskMsg::Event(event) => self.on_event(*event).await,
        }
    }

    fn begin_stop(&mut self, reason: Option<String>) {
        if !self.stopping {
            self.stopping = true;
            self.stop_reason = reason;
            self.launch = None;
        }
    }

    async fn on_event(&mut self, event: RuntimeEvent) {
        let Some(i) = self
            .containers
            .iter()
            .position(|c| c.id.as_deref() == Some(event.container_id.as_str()))
        else {
            return;
        };
        match event.kind {
            RuntimeEventKind::Started => {}
            RuntimeEventKind::OutOfMemory => self.containers[i].oom = true,
            RuntimeEventKind::Health(status) => {
                let c = &mut self.containers[i];
                if c.has_health_check() && c.health != status {
                    c.health = status;
                    self.send_health();
                }
            }
            RuntimeEventKind::Died { exit_code } => {
                if self.containers[i].phase != Phase::Running {
                    return;
                }
                let info = self.shared.runtime.inspect(&event.container_id).await.ok();
                self.container_exited(i, info.as_ref(), exit_code);
            }
        }
    }

    fn container_exited(&mut self, i: usize, info: Option<&ContainerInfo>, exit_code: Option<i32>) {
        self.containers[i].exited(info, exit_code);
        let c = &self.containers[i];
        tracing::info!(task = self.spec.task_arn, container = c.name, exit_code = ?c.exit_code, "container exited");
        if c.essential {
            self.execution_stopped_at.get_or_insert_with(Timestamp::now);
            self.begin_stop(Some(ESSENTIAL_EXITED.to_owned()));
        } else if self.reported.as_deref() == Some("RUNNING") && !self.stopping {
            self.report_container(i);
        }
    }

    fn send_health(&self) {
        let containers = self
            .containers
            .iter()
            .filter(|c| c.has_health_check())
            .map(|c| ContainerHealth {
                container_name: c.name.clone(),
                health_status: c.health,
            })
            .collect();
        let _ = self.shared.outbox.send(AgentMessage::Health(HealthReport {
            task_arn: self.spec.task_arn.clone(),
            containers,
        }));
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.containers
            .iter()
            .filter(|c| c.phase == Phase::Waiting)
            .filter_map(|c| start_timeout(c).map(|t| self.waiting_since + t))
            .min()
    }

    async fn pull_images(&mut self) {
        self.pull_started_at = Some(Timestamp::now());
        let mut results: HashMap<String, Result<Option<String>, String>> = HashMap::new();
        for i in 0..self.containers.len() {
            if self.containers[i].phase != Phase::Waiting || self.containers[i].id.is_some() {
                continue;
            }
            let Some(image) = self.containers[i].spec.definition.image.clone() else {
                self.fail(
                    i,
                    "CannotPullContainerError: the container definition names no image".to_owned(),
                );
                continue;
            };
            if !results.contains_key(&image) {
                let result = self.ensure_image(&image).await;
                results.insert(image.clone(), result);
            }
            match &results[&image] {
                Ok(digest) => self.containers[i].image_digest.clone_from(digest),
                Err(message) => self.fail(i, format!("CannotPullContainerError: {message}")),
            }
        }
        self.pull_stopped_at = Some(Timestamp::now());
    }

    async fn ensure_image(&self, image: &str) -> Result<Option<String>, String> {
        let runtime = &self.shared.runtime;
        let local = || async { runtime.inspect_image(image).await.ok().flatten() };
        let pull_first = match self.shared.config.image_pull_behavior {
            ImagePullBehavior::Always => true,
            ImagePullBehavior::Once => !super::lock(&self.shared.pulled).contains(image),
            ImagePullBehavior::Default | ImagePullBehavior::PreferCached => {
                if let Some(found) = local().await {
                    return Ok(found.digest);
                }
                true
            }
        };
        if pull_first {
            tracing::info!(image, "pulling image");
            runtime.pull_image(image).await.map_err(|e| e.to_string())?;
            super::lock(&self.shared.pulled).insert(image.to_owned());
        }
        match local().await {
            Some(found) => Ok(found.digest),
            None => Err(format!("image {image} is not on the host after the pull")),
        }
    }

    fn fail(&mut self, i: usize, reason: String) {
        tracing::warn!(
            task = self.spec.task_arn,
            container = self.containers[i].name,
            reason,
            "container failed"
        );
        let c = &mut self.containers[i];
        c.phase = Phase::Stopped;
        c.reason = Some(reason.clone());
        if c.essential {
            self.begin_stop(Some(reason));
        } else if self.reported.as_deref() == Some("RUNNING") {
            self.report_container(i);
        }
    }

    fn dependency(&self, i: usize) -> Dependency {
        let deps = self.containers[i]
            .spec
            .definition
            .depends_on
            .clone()
            .unwrap_or_default();
        let mut ready = true;
        for dep in deps {
            let Some(d) = self
                .containers
                .iter()
                .find(|c| c.name == dep.container_name)
            else {
                return Dependency::Never(format!(
                    "dependency {} is not a container of the task",
                    dep.container_name
                ));
            };
            let never = |what: &str| {
                Dependency::Never(format!(
                    "dependency {} {what}; condition {:?} cannot be met",
                    d.name, dep.condition
                ))
            };
            match dep.condition {
                ContainerCondition::Start => {
                    if !d.started {
                        if d.phase == Phase::Stopped {
                            return never("failed to start");
                        }
                        ready = false;
                    }
                }
                ContainerCondition::Complete | ContainerCondition::Success => {
                    if d.phase != Phase::Stopped {
                        ready = false;
                    } else if !d.started {
                        return never("never started");
                    } else if dep.condition == ContainerCondition::Success && d.exit_code != Some(0)
                    {
                        return never(&format!(
                            "exited with code {}",
                            d.exit_code.map_or("unknown".to_owned(), |c| c.to_string())
                        ));
                    }
                }
                ContainerCondition::Healthy => {
                    if !d.has_health_check() {
                        return never("has no health check");
                    }
                    if d.phase == Phase::Stopped {
                        return never("stopped");
                    }
                    if d.health != HealthStatus::Healthy {
                        ready = false;
                    }
                }
            }
        }
        if ready {
            Dependency::Ready
        } else {
            Dependency::Wait
        }
    }

    /// Starts every container whose dependencies are met, until nothing more
    /// can start now.
    async fn advance(&mut self) {
        loop {
            let mut progressed = false;
            for k in 0..self.order.len() {
                let i = self.order[k];
                if self.stopping {
                    return;
                }
                if self.containers[i].phase != Phase::Waiting {
                    continue;
                }
                match self.dependency(i) {
                    Dependency::Ready => {
                        // Boxed: starting holds a whole container definition
                        // across awaits, which would otherwise stay part of
                        // every idle supervisor's future.
                        Box::pin(self.start_container(i)).await;
                        progressed = true;
                    }
                    Dependency::Never(why) => {
                        self.fail(i, format!("CannotStartContainerError: {why}"));
                        progressed = true;
                    }
                    Dependency::Wait => {
                        if let Some(timeout) = start_timeout(&self.containers[i])
                            && self.waiting_since + timeout <= Instant::now()
                        {
                            self.fail(i, format!(
                                "CannotStartContainerError: dependencies not resolved within the startTimeout of {}s",
                                timeout.as_secs()
                            ));
                            progressed = true;
                        }
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn port_bindings(&self, i: usize) -> Result<Vec<PortBinding>, String> {
        let c = &self.containers[i];
        if !c.bindings.is_empty() {
            return Ok(c.bindings.clone());
        }
        // The task's own address: no host port is taken.
        if self.spec.network_interface.is_some() {
            return Ok(same_port_bindings(&c.spec));
        }
        let task = &self.spec.task_arn;
        let mut ports = self.shared.ports();
        match self.spec.network_mode {
            NetworkMode::None => Ok(Vec::new()),
            NetworkMode::Host => {
                let bindings = same_port_bindings(&c.spec);
                for b in &bindings {
                    ports.book(task, b.host_port, b.protocol);
                }
                Ok(bindings)
            }
            NetworkMode::Bridge | NetworkMode::Awsvpc => {
                let mut bindings = Vec::new();
                for mapping in c.spec.definition.port_mappings.iter().flatten() {
                    let Some(container_port) =
                        mapping.container_port.and_then(|p| u16::try_from(p).ok())
                    else {
                        continue;
                    };
                    let protocol = mapping.protocol.unwrap_or(TransportProtocol::Tcp);
                    let host_port = match mapping
                        .host_port
                        .and_then(|p| u16::try_from(p).ok())
                        .filter(|p| *p > 0)
                    {
                        Some(port) => {
                            if !ports.book(task, port, protocol) {
                                return Err(format!(
                                    "host port {port} is already in use by another task"
                                ));
                            }
                            port
                        }
                        None => ports.allocate(task, protocol).ok_or_else(|| {
                            "no free host port in the dynamic port range".to_owned()
                        })?,
                    };
                    bindings.push(PortBinding {
                        container_port,
                        host_port,
                        protocol,
                    });
                }
                Ok(bindings)
            }
        }
    }

    fn mounts(&self, i: usize) -> Result<Vec<Mount>, String> {
        let def = &self.containers[i].spec.definition;
        let mut mounts = Vec::new();
        for point in def.mount_points.iter().flatten() {
            let (Some(volume_name), Some(target)) = (&point.source_volume, &point.container_path)
            else {
                continue;
            };
            let volume = self
                .spec
                .volumes
                .iter()
                .find(|v| v.name.as_deref() == Some(volume_name))
                .ok_or_else(|| format!("mount point references unknown volume {volume_name}"))?;
            let task_scoped = || {
                format!(
                    "ecs-{}-{}-{volume_name}-{}",
                    self.spec.family, self.spec.revision, self.task_id
                )
            };
            let source =
                if let Some(path) = volume.host.as_ref().and_then(|h| h.source_path.clone()) {
                    MountSource::HostPath(path)
                } else if let Some(config) = &volume.docker_volume_configuration {
                    MountSource::Volume {
                        name: if config.scope == Some(Scope::Shared) {
                            volume_name.clone()
                        } else {
                            task_scoped()
                        },
                        driver: config.driver.clone(),
                        driver_opts: config.driver_opts.clone().unwrap_or_default(),
                        labels: config.labels.clone().unwrap_or_default(),
                    }
                } else {
                    MountSource::Volume {
                        name: task_scoped(),
                        driver: None,
                        driver_opts: Default::default(),
                        labels: Default::default(),
                    }
                };
            mounts.push(Mount {
                source,
                target: target.clone(),
                read_only: point.read_only.unwrap_or(false),
            });
        }
        Ok(mounts)
    }

    /// The create of container `i`, in `namespace` for an awsvpc task.
    fn create_spec(
        &self,
        i: usize,
        bindings: Vec<PortBinding>,
        mounts: Vec<Mount>,
        namespace: Option<String>,
    ) -> Result<CreateSpec, String> {
        let c = &self.containers[i];
        let def = &c.spec.definition;
        let mut volumes_from = Vec::new();
        for from in def.volumes_from.iter().flatten() {
            let Some(source) = &from.source_container else {
                continue;
            };
            let id = self
                .containers
                .iter()
                .find(|o| &o.name == source)
                .and_then(|o| o.id.clone())
                .ok_or_else(|| format!("volumesFrom container {source} has not been created"))?;
            volumes_from.push(if from.read_only == Some(true) {
                format!("{id}:ro")
            } else {
                id
            });
        }
        let network_namespace = match &self.spec.network_interface {
            Some(_) => Some(namespace.ok_or("the task's network namespace is gone")?),
            None => None,
        };
        Ok(CreateSpec {
            name: format!(
                "ecs-{}-{}-{}-{}",
                self.spec.family,
                self.spec.revision,
                c.name,
                &uuid::Uuid::new_v4().simple().to_string()[..20]
            ),
            image: def.image.clone().unwrap_or_default(),
            labels: self.labels(&c.name),
            definition: berth_types::ContainerDefinition::clone(def),
            network_mode: self.spec.network_mode,
            port_bindings: bindings,
            mounts,
            volumes_from,
            cgroup_parent: self.cgroup_parent.clone(),
            extra_env: self
                .shared
                .config
                .metadata_address
                .zip(self.tokens.get(&c.name))
                .map(|(address, token)| {
                    (
                        "ECS_CONTAINER_METADATA_URI_V4".to_owned(),
                        format!("http://{address}/v4/{token}"),
                    )
                })
                .into_iter()
                .collect(),
            stop_timeout: stop_timeout(c, self.shared.config.stop_timeout),
            network_namespace,
        })
    }

    /// Creates container `i` (in `namespace` for an awsvpc task); a
    /// failure fails the container.
    async fn create_container(&mut self, i: usize, namespace: Option<String>) {
        let prepared = self
            .port_bindings(i)
            .and_then(|bindings| {
                self.containers[i].bindings.clone_from(&bindings);
                Ok((bindings, self.mounts(i)?))
            })
            .and_then(|(bindings, mounts)| self.create_spec(i, bindings, mounts, namespace));
        let spec = match prepared {
            Ok(spec) => spec,
            Err(message) => {
                return self.fail(i, format!("CannotCreateContainerError: {message}"));
            }
        };
        match self.shared.runtime.create(&spec).await {
            Ok(id) => {
                self.shared.track_container(&id, &self.spec.task_arn);
                self.containers[i].id = Some(id);
            }
            Err(error) => self.fail(i, format!("CannotCreateContainerError: {error}")),
        }
    }

    async fn start_container(&mut self, i: usize) {
        if self.containers[i].id.is_none() {
            self.create_container(i, self.pause.clone()).await;
        }
        let Some(id) = self.containers[i].id.clone() else {
            return;
        };
        if let Err(error) = self.shared.runtime.start(&id).await {
            return self.fail(i, format!("CannotStartContainerError: {error}"));
        }
        self.ship_logs(i);
        let c = &mut self.containers[i];
        c.phase = Phase::Running;
        c.started = true;
        tracing::info!(
            task = self.spec.task_arn,
            container = c.name,
            id,
            "container started"
        );
    }

    /// Follows the container's output and ships it (see [`crate::logs`]).
    fn ship_logs(&self, i: usize) {
        let (Some(shipper), Some(id)) = (&self.shared.config.logs, &self.containers[i].id) else {
            return;
        };
        let destination = crate::logs::destination(
            &self.spec.family,
            &self.containers[i].spec.definition,
            &self.task_id,
            Some(id),
        );
        shipper.follow(self.shared.runtime.clone(), id, destination);
    }

    /// RUNNING once every container that will start has started.
    fn maybe_running(&mut self) {
        let reported = self.reported.as_deref();
        if reported == Some("RUNNING") || reported == Some("STOPPED") || self.stopping {
            return;
        }
        let all_settled = self.containers.iter().all(|c| c.phase != Phase::Waiting);
        if all_settled && self.containers.iter().any(|c| c.started) {
            self.report_task("RUNNING");
        }
    }

    /// Stops the running containers, dependents before their dependencies;
    /// each stop is SIGTERM, then SIGKILL after the container's stopTimeout.
    async fn stop_all(&mut self) {
        let top = self.containers.iter().map(|c| c.level).max().unwrap_or(0);
        for level in (0..=top).rev() {
            let batch: Vec<(usize, String, Duration)> = self
                .containers
                .iter()
                .enumerate()
                .filter(|(_, c)| c.level == level && c.phase == Phase::Running)
                .filter_map(|(i, c)| {
                    Some((
                        i,
                        c.id.clone()?,
                        stop_timeout(c, self.shared.config.stop_timeout),
                    ))
                })
                .collect();
            let runtime = &self.shared.runtime;
            let results = futures_util::future::join_all(
                batch
                    .iter()
                    .map(|(_, id, timeout)| runtime.stop(id, *timeout)),
            )
            .await;
            for ((i, id, _), result) in batch.into_iter().zip(results) {
                match result {
                    Ok(()) | Err(RuntimeError::NotFound(_)) => {}
                    Err(error) => {
                        tracing::warn!(%error, id, "cannot stop container; killing it");
                        if self.shared.runtime.kill(&id, "SIGKILL").await.is_err() {
                            self.containers[i].reason =
                                Some(trim_reason(&format!("CannotStopContainerError: {error}")));
                        }
                    }
                }
                let info = self.shared.runtime.inspect(&id).await.ok();
                self.containers[i].exited(info.as_ref(), None);
            }
        }
        for c in &mut self.containers {
            c.phase = Phase::Stopped;
        }
        self.execution_stopped_at.get_or_insert_with(Timestamp::now);
    }

    fn report_task(&mut self, status: &str) {
        let stopped = status == "STOPPED";
        let attachments = self.spec.network_interface.as_ref().map(|eni| {
            let attachment = match status {
                _ if self.detached() => DETACHED,
                "STOPPED" => DETACHING,
                _ => ATTACHED,
            };
            vec![AttachmentStateChange {
                attachment_arn: eni.attachment_arn.clone(),
                status: attachment.to_owned(),
            }]
        });
        if let Some(attachment) = attachments.iter().flatten().next() {
            self.attachment = Some(attachment.status.clone());
        }
        // The task's own cluster: an agent of the Fargate pool runs tasks
        // of many.
        let request = SubmitTaskStateChangeRequest {
            cluster: Some(self.spec.cluster_arn.clone()),
            task: Some(self.spec.task_arn.clone()),
            status: Some(status.to_owned()),
            reason: if stopped {
                self.stop_reason.as_deref().map(trim_reason)
            } else {
                None
            },
            containers: Some(
                self.containers
                    .iter()
                    .map(|c| c.state_change(&self.bind_ip))
                    .collect(),
            ),
            attachments,
            pull_started_at: self.pull_started_at,
            pull_stopped_at: self.pull_stopped_at,
            execution_stopped_at: if stopped {
                self.execution_stopped_at
            } else {
                None
            },
            ..Default::default()
        };
        self.shared.reporter.send(Report::Task(request));
        self.reported = Some(status.to_owned());
        if status != "PENDING" {
            self.launch = None;
        }
        self.save();
    }

    fn report_container(&self, i: usize) {
        let c = &self.containers[i];
        let change = c.state_change(&self.bind_ip);
        self.shared
            .reporter
            .send(Report::Container(SubmitContainerStateChangeRequest {
                cluster: Some(self.spec.cluster_arn.clone()),
                task: Some(self.spec.task_arn.clone()),
                container_name: change.container_name,
                runtime_id: change.runtime_id,
                status: change.status,
                exit_code: change.exit_code,
                reason: change.reason,
                network_bindings: change.network_bindings,
            }));
    }

    /// Keeps stopped containers for the cleanup wait (for `docker logs` and
    /// post-mortems), then removes them and forgets the task.
    async fn cleanup(mut self) {
        let wait = tokio::time::sleep(self.shared.config.cleanup_wait);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => break,
                message = self.inbox.recv() => if message.is_none() { return },
            }
        }
        for c in &self.containers {
            let Some(id) = &c.id else { continue };
            match self.shared.runtime.remove(id).await {
                Ok(()) | Err(RuntimeError::NotFound(_)) => {
                    if let Some(logs) = &self.shared.config.logs {
                        logs.forget(id);
                    }
                }
                Err(error) => tracing::warn!(%error, id, "cannot remove container"),
            }
            self.shared.untrack_container(id);
        }
        self.shared.remove_cgroup(&self.task_id).await;
        self.shared.ports().release(&self.spec.task_arn);
        self.shared.finish(&self.spec.task_arn);
    }
}

fn distinct(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for value in values {
        if !out.contains(&value) {
            out.push(value);
        }
    }
    out
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn start_timeout(c: &Container) -> Option<Duration> {
    c.spec
        .definition
        .start_timeout
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(u64::from(t.unsigned_abs())))
}

fn stop_timeout(c: &Container, default: Duration) -> Duration {
    c.spec
        .definition
        .stop_timeout
        .filter(|t| *t > 0)
        .map_or(default, |t| {
            Duration::from_secs(u64::from(t.unsigned_abs()))
        })
}

/// Each port mapping answering on its container port: the bindings of host
/// mode, and of a task in its own namespace (at the task's address, as ECS
/// reports awsvpc bindings).
fn same_port_bindings(spec: &ContainerSpec) -> Vec<PortBinding> {
    spec.definition
        .port_mappings
        .iter()
        .flatten()
        .filter_map(|m| {
            let port = u16::try_from(m.container_port?).ok()?;
            Some(PortBinding {
                container_port: port,
                host_port: port,
                protocol: m.protocol.unwrap_or(TransportProtocol::Tcp),
            })
        })
        .collect()
}

/// Each container's depth in the dependency graph. Cycles and unknown names
/// (rejected at registration, but the agent must not loop on them) count as
/// no dependency.
fn levels(spec: &TaskSpec, names: &HashMap<String, usize>) -> Vec<usize> {
    fn depth(
        i: usize,
        spec: &TaskSpec,
        names: &HashMap<String, usize>,
        memo: &mut Vec<Option<usize>>,
        visiting: &mut Vec<bool>,
    ) -> usize {
        if let Some(d) = memo[i] {
            return d;
        }
        if visiting[i] {
            return 0;
        }
        visiting[i] = true;
        let d = spec.containers[i]
            .definition
            .depends_on
            .iter()
            .flatten()
            .filter_map(|dep| names.get(&dep.container_name))
            .map(|&j| depth(j, spec, names, memo, visiting) + 1)
            .max()
            .unwrap_or(0);
        visiting[i] = false;
        memo[i] = Some(d);
        d
    }
    let n = spec.containers.len();
    let mut memo = vec![None; n];
    let mut visiting = vec![false; n];
    (0..n)
        .map(|i| depth(i, spec, names, &mut memo, &mut visiting))
        .collect()
}
