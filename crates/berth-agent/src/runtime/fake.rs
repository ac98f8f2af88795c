//! An in-memory [`ContainerRuntime`]: containers are entries in a map and
//! their lives are tokio timers, so thousands of simulated hosts fit in one
//! process. Behaviour (start delay, run time, exit code, OOM, SIGTERM
//! handling, health results, failures) is configured per image or per command
//! substring; it emits the same events the Docker runtime does.
//!
//! Task networks are names with a subnet, and a task's namespace is a
//! container that holds an address once attached: the fake refuses what
//! the Docker runtime refuses (an address outside the subnet, reserved or
//! already held, attaching a namespace whose container is not running,
//! joining one whose container is not running, removing a network in
//! use), so leaks show up as failures here too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_types::{HealthStatus, Timestamp};
use tokio::sync::{mpsc, watch};

use super::network;
use super::{
    BoxFuture, ContainerInfo, ContainerRuntime, ContainerStatus, CreateSpec, EventStream,
    ImageInfo, LABEL_OWNER, LABEL_TASK_ARN, LABEL_WARM_NAMESPACE, LogLine, LogStream,
    NamespaceSpec, PortBinding, RuntimeError, RuntimeEvent, RuntimeEventKind, RuntimeVersion,
    TaskAddress, TaskNetwork,
};

/// What a fake container does once started.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeBehavior {
    /// How long `start` takes.
    pub start_delay: Duration,
    /// How long the container runs before exiting on its own; `None` runs
    /// until stopped.
    pub run_for: Option<Duration>,
    /// The exit code when it exits on its own.
    pub exit_code: i32,
    /// Exits through the OOM killer (exit 137, OOMKilled) after `run_for`.
    pub oom: bool,
    /// Ignores SIGTERM, so only the SIGKILL after the stop timeout ends it.
    pub ignores_sigterm: bool,
    /// Health check results, each at a time after start.
    pub health: Vec<(Duration, HealthStatus)>,
    /// Makes `create` fail with this message.
    pub create_error: Option<String>,
    /// Makes `start` fail with this message.
    pub start_error: Option<String>,
    /// Lines the container writes to stdout when it starts.
    pub log_lines: Vec<String>,
}

impl Default for FakeBehavior {
    fn default() -> Self {
        Self {
            start_delay: Duration::ZERO,
            run_for: None,
            exit_code: 0,
            oom: false,
            ignores_sigterm: false,
            health: Vec::new(),
            create_error: None,
            start_error: None,
            log_lines: Vec::new(),
        }
    }
}

impl FakeBehavior {
    /// A container that runs until stopped.
    pub fn long_running() -> Self {
        Self::default()
    }

    /// A container that exits with `code` after `after`.
    pub fn exits(after: Duration, code: i32) -> Self {
        Self {
            run_for: Some(after),
            exit_code: code,
            ..Self::default()
        }
    }
}

struct FakeContainer {
    info: ContainerInfo,
    behavior: FakeBehavior,
    has_health_check: bool,
    /// Bumped on every start so timers of an earlier run do nothing.
    generation: u64,
    /// Whether the container has exited; writing a line notifies too. One
    /// channel serves both stop (waiting for the exit) and log followers,
    /// and it is made on the first subscription: a watch channel costs about
    /// 350 bytes, and simulated hosts hold 100,000 containers.
    exited: Option<watch::Sender<bool>>,
    logs: Vec<LogLine>,
    /// The namespace container this one joins.
    joins: Option<String>,
}

impl FakeContainer {
    fn subscribe(&mut self) -> watch::Receiver<bool> {
        let exited = self.info.status == ContainerStatus::Exited;
        self.exited
            .get_or_insert_with(|| watch::channel(exited).0)
            .subscribe()
    }

    /// Tells subscribers whether the container has exited now.
    fn notify(&self) {
        if let Some(sender) = &self.exited {
            sender.send_replace(self.info.status == ContainerStatus::Exited);
        }
    }
}

#[derive(Default)]
struct State {
    containers: HashMap<String, FakeContainer>,
    local_images: HashSet<String>,
    pull_errors: HashMap<String, String>,
    by_image: HashMap<String, FakeBehavior>,
    by_command: Vec<(String, FakeBehavior)>,
    default_behavior: FakeBehavior,
    subscribers: Vec<mpsc::UnboundedSender<RuntimeEvent>>,
    next_id: u64,
    pulls: Vec<String>,
    creates: u64,
    /// The subnet a new task network gets; `None`: the first candidate.
    task_subnet: Option<String>,
    /// Task network name → subnet.
    networks: HashMap<String, String>,
    namespace_error: Option<String>,
    attach_error: Option<String>,
    attach_delay: Duration,
    namespace_removal_error: Option<String>,
}

impl State {
    /// Records a new container in the Created state; returns its id and the
    /// record, for what only some creators set.
    fn add_created(
        &mut self,
        name: &str,
        labels: &BTreeMap<String, String>,
        image: &str,
        port_bindings: Vec<PortBinding>,
        behavior: FakeBehavior,
    ) -> (String, &mut FakeContainer) {
        self.next_id += 1;
        self.creates += 1;
        let id = format!("{:064x}", self.next_id);
        let info = ContainerInfo {
            id: id.clone(),
            name: name.to_owned(),
            labels: labels.clone(),
            status: ContainerStatus::Created,
            exit_code: None,
            oom_killed: false,
            health: None,
            image_digest: Some(fake_digest(image)),
            port_bindings,
            started_at: None,
            finished_at: None,
            created_at: Some(Timestamp::now()),
            networks: Vec::new(),
        };
        let container = self.containers.entry(id.clone()).or_insert(FakeContainer {
            info,
            behavior,
            has_health_check: false,
            generation: 0,
            exited: None,
            logs: Vec::new(),
            joins: None,
        });
        (id, container)
    }
}

/// The fake runtime. Cloning shares the same containers.
#[derive(Clone, Default)]
pub struct FakeRuntime {
    state: Arc<Mutex<State>>,
}

impl FakeRuntime {
    /// A runtime where every pull succeeds and containers run until stopped.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The behaviour of containers no other rule matches.
    pub fn set_default_behavior(&self, behavior: FakeBehavior) {
        self.lock().default_behavior = behavior;
    }

    pub fn set_image_behavior(&self, image: &str, behavior: FakeBehavior) {
        self.lock().by_image.insert(image.to_owned(), behavior);
    }

    /// Applies to containers whose command (joined with spaces) contains
    /// `needle`; wins over image rules.
    pub fn set_command_behavior(&self, needle: &str, behavior: FakeBehavior) {
        self.lock().by_command.push((needle.to_owned(), behavior));
    }

    /// Makes pulls of `image` fail with `message`.
    pub fn fail_pulls(&self, image: &str, message: &str) {
        self.lock()
            .pull_errors
            .insert(image.to_owned(), message.to_owned());
    }

    /// Puts `image` on the host without a pull.
    pub fn add_local_image(&self, image: &str) {
        self.lock().local_images.insert(image.to_owned());
    }

    /// The subnet the task network gets when it is made (simulated hosts
    /// each have their own).
    pub fn set_task_subnet(&self, cidr: &str) {
        self.lock().task_subnet = Some(cidr.to_owned());
    }

    /// Makes namespace creation fail with `message` (`None`: succeed again).
    pub fn fail_namespaces(&self, message: Option<&str>) {
        self.lock().namespace_error = message.map(str::to_owned);
    }

    /// Makes attaching namespaces fail with `message` (`None`: succeed
    /// again).
    pub fn fail_attachments(&self, message: Option<&str>) {
        self.lock().attach_error = message.map(str::to_owned);
    }

    /// How long attaching a namespace takes.
    pub fn set_attach_delay(&self, delay: Duration) {
        self.lock().attach_delay = delay;
    }

    /// Makes removing namespaces fail with `message` (`None`: succeed
    /// again).
    pub fn fail_namespace_removals(&self, message: Option<&str>) {
        self.lock().namespace_removal_error = message.map(str::to_owned);
    }

    /// The task networks that exist.
    pub fn task_networks(&self) -> Vec<TaskNetwork> {
        let mut all: Vec<TaskNetwork> = self
            .lock()
            .networks
            .iter()
            .map(|(name, subnet)| TaskNetwork {
                name: name.clone(),
                subnet: subnet.clone(),
                bridge: bridge_name(name),
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Images pulled so far, in order.
    pub fn pulls(&self) -> Vec<String> {
        self.lock().pulls.clone()
    }

    /// How many containers were ever created.
    pub fn create_count(&self) -> u64 {
        self.lock().creates
    }

    /// Every container the runtime holds.
    pub fn containers(&self) -> Vec<ContainerInfo> {
        let mut all: Vec<_> = self
            .lock()
            .containers
            .values()
            .map(|c| c.info.clone())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Ends a running container as if its process had exited with `code`
    /// (`docker kill` from outside gives 137).
    pub fn crash(&self, id: &str, code: i32) {
        self.exit(id, None, code, false);
    }

    /// Makes a running container write `line` to its output (stderr when
    /// `stderr`).
    pub fn write_log(&self, id: &str, line: &str, stderr: bool) {
        let mut state = self.lock();
        if let Some(container) = state.containers.get_mut(id) {
            push_log(container, line, stderr);
        }
    }

    /// Sets a health result now, as a health check would.
    pub fn set_health(&self, id: &str, status: HealthStatus) {
        let mut state = self.lock();
        if let Some(container) = state.containers.get_mut(id) {
            container.info.health = Some(status);
            emit(
                &mut state,
                RuntimeEvent {
                    container_id: id.to_owned(),
                    kind: RuntimeEventKind::Health(status),
                },
            );
        }
    }

    fn behavior_for(state: &State, spec: &CreateSpec) -> FakeBehavior {
        let command = spec
            .definition
            .command
            .as_deref()
            .unwrap_or_default()
            .join(" ");
        state
            .by_command
            .iter()
            .rev()
            .find(|(needle, _)| command.contains(needle.as_str()))
            .map(|(_, b)| b.clone())
            .or_else(|| state.by_image.get(&spec.image).cloned())
            .unwrap_or_else(|| state.default_behavior.clone())
    }

    /// Marks the container exited (if it still runs `generation`, when
    /// given) and tells subscribers.
    fn exit(&self, id: &str, generation: Option<u64>, code: i32, oom: bool) {
        let mut state = self.lock();
        let Some(container) = state.containers.get_mut(id) else {
            return;
        };
        if container.info.status != ContainerStatus::Running
            || generation.is_some_and(|g| g != container.generation)
        {
            return;
        }
        container.info.status = ContainerStatus::Exited;
        container.info.exit_code = Some(code);
        container.info.oom_killed = oom;
        container.info.finished_at = Some(Timestamp::now());
        container.notify();
        if oom {
            emit(
                &mut state,
                RuntimeEvent {
                    container_id: id.to_owned(),
                    kind: RuntimeEventKind::OutOfMemory,
                },
            );
        }
        emit(
            &mut state,
            RuntimeEvent {
                container_id: id.to_owned(),
                kind: RuntimeEventKind::Died {
                    exit_code: Some(code),
                },
            },
        );
    }

    fn health_at(&self, id: &str, generation: u64, status: HealthStatus) {
        // Docker reports no health for a container without a health check,
        // whatever behaviour the container was given.
        let running = self.lock().containers.get(id).is_some_and(|c| {
            c.has_health_check
                && c.generation == generation
                && c.info.status == ContainerStatus::Running
        });
        if running {
            self.set_health(id, status);
        }
    }

    /// Drives one run of a container: health results, then its own exit.
    async fn live(self, id: String, generation: u64, behavior: FakeBehavior) {
        let mut elapsed = Duration::ZERO;
        let mut health = behavior.health.clone();
        health.sort_by_key(|(at, _)| *at);
        for (at, status) in health {
            if behavior.run_for.is_some_and(|run| at >= run) {
                break;
            }
            tokio::time::sleep(at.saturating_sub(elapsed)).await;
            elapsed = at;
            self.health_at(&id, generation, status);
        }
        if let Some(run_for) = behavior.run_for {
            tokio::time::sleep(run_for.saturating_sub(elapsed)).await;
            let code = if behavior.oom {
                137
            } else {
                behavior.exit_code
            };
            self.exit(&id, Some(generation), code, behavior.oom);
        }
    }
}

fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

fn push_log(container: &mut FakeContainer, line: &str, stderr: bool) {
    // Strictly increasing, as a real log's timestamps are.
    let last = container.logs.last().map_or(0, |l| l.timestamp_nanos);
    container.logs.push(LogLine {
        timestamp_nanos: now_nanos().max(last + 1),
        stderr,
        message: line.to_owned(),
    });
    // Wakes followers; the value stays.
    container.notify();
}

fn emit(state: &mut State, event: RuntimeEvent) {
    state
        .subscribers
        .retain(|subscriber| subscriber.send(event.clone()).is_ok());
}

fn not_found(id: &str) -> RuntimeError {
    RuntimeError::NotFound(id.to_owned())
}

impl ContainerRuntime for FakeRuntime {
    fn version(&self) -> BoxFuture<'_, Result<RuntimeVersion, RuntimeError>> {
        Box::pin(async {
            Ok(RuntimeVersion {
                server_version: "20.10.24-fake".to_owned(),
                api_version: "1.41".to_owned(),
            })
        })
    }

    fn inspect_image<'a>(
        &'a self,
        image: &'a str,
    ) -> BoxFuture<'a, Result<Option<ImageInfo>, RuntimeError>> {
        Box::pin(async move {
            Ok(self.lock().local_images.contains(image).then(|| ImageInfo {
                digest: Some(fake_digest(image)),
            }))
        })
    }

    fn pull_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let mut state = self.lock();
            state.pulls.push(image.to_owned());
            if let Some(message) = state.pull_errors.get(image) {
                return Err(RuntimeError::Failed(message.clone()));
            }
            state.local_images.insert(image.to_owned());
            Ok(())
        })
    }

    fn create<'a>(&'a self, spec: &'a CreateSpec) -> BoxFuture<'a, Result<String, RuntimeError>> {
        Box::pin(async move {
            let mut state = self.lock();
            let behavior = Self::behavior_for(&state, spec);
            if let Some(message) = &behavior.create_error {
                return Err(RuntimeError::Failed(message.clone()));
            }
            if !state.local_images.contains(&spec.image) {
                return Err(RuntimeError::Failed(format!(
                    "No such image: {}",
                    spec.image
                )));
            }
            if state.containers.values().any(|c| c.info.name == spec.name) {
                return Err(RuntimeError::Failed(format!(
                    "Conflict. The container name \"/{}\" is already in use",
                    spec.name
                )));
            }
            if let Some(namespace) = &spec.network_namespace
                && !state.containers.contains_key(namespace)
            {
                return Err(RuntimeError::Failed(format!(
                    "No such container: {namespace}"
                )));
            }
            let (id, container) = state.add_created(
                &spec.name,
                &spec.labels,
                &spec.image,
                spec.port_bindings.clone(),
                behavior,
            );
            container.has_health_check = spec.definition.health_check.is_some();
            container.joins = spec.network_namespace.clone();
            Ok(id)
        })
    }

    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let delay = {
                let state = self.lock();
                let container = state.containers.get(id).ok_or_else(|| not_found(id))?;
                if let Some(message) = &container.behavior.start_error {
                    return Err(RuntimeError::Failed(message.clone()));
                }
                if let Some(namespace) = &container.joins
                    && state
                        .containers
                        .get(namespace)
                        .is_none_or(|n| n.info.status != ContainerStatus::Running)
                {
                    return Err(RuntimeError::Failed(format!(
                        "cannot join network of a non running container: {namespace}"
                    )));
                }
                container.behavior.start_delay
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut state = self.lock();
            let container = state.containers.get_mut(id).ok_or_else(|| not_found(id))?;
            if container.info.status == ContainerStatus::Running {
                return Ok(());
            }
            container.generation += 1;
            container.info.status = ContainerStatus::Running;
            container.info.exit_code = None;
            container.info.oom_killed = false;
            container.info.started_at = Some(Timestamp::now());
            container.info.health = container.has_health_check.then_some(HealthStatus::Unknown);
            container.notify();
            let generation = container.generation;
            let behavior = container.behavior.clone();
            for line in &behavior.log_lines {
                push_log(container, line, false);
            }
            emit(
                &mut state,
                RuntimeEvent {
                    container_id: id.to_owned(),
                    kind: RuntimeEventKind::Started,
                },
            );
            drop(state);
            tokio::spawn(self.clone().live(id.to_owned(), generation, behavior));
            Ok(())
        })
    }

    fn stop<'a>(
        &'a self,
        id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let (mut exited, ignores_sigterm) = {
                let mut state = self.lock();
                let container = state.containers.get_mut(id).ok_or_else(|| not_found(id))?;
                if container.info.status != ContainerStatus::Running {
                    return Ok(());
                }
                (container.subscribe(), container.behavior.ignores_sigterm)
            };
            if !ignores_sigterm {
                self.exit(id, None, 143, false);
                return Ok(());
            }
            if tokio::time::timeout(timeout, exited.wait_for(|done| *done))
                .await
                .is_err()
            {
                self.exit(id, None, 137, false);
            }
            Ok(())
        })
    }

    fn kill<'a>(&'a self, id: &'a str, signal: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let ignores_sigterm = {
                let state = self.lock();
                let container = state.containers.get(id).ok_or_else(|| not_found(id))?;
                if container.info.status != ContainerStatus::Running {
                    return Err(RuntimeError::Failed(format!(
                        "Container {id} is not running"
                    )));
                }
                container.behavior.ignores_sigterm
            };
            match signal {
                "SIGTERM" | "TERM" | "15" if !ignores_sigterm => {
                    self.exit(id, None, 143, false);
                }
                "SIGTERM" | "TERM" | "15" => {}
                _ => self.exit(id, None, 137, false),
            }
            Ok(())
        })
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let mut state = self.lock();
            match state.containers.get(id) {
                None => Err(not_found(id)),
                Some(c) if c.info.status == ContainerStatus::Running => Err(RuntimeError::Failed(
                    format!("You cannot remove a running container {id}"),
                )),
                Some(_) => {
                    state.containers.remove(id);
                    Ok(())
                }
            }
        })
    }

    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ContainerInfo, RuntimeError>> {
        Box::pin(async move {
            self.lock()
                .containers
                .get(id)
                .map(|c| c.info.clone())
                .ok_or_else(|| not_found(id))
        })
    }

    fn list_managed(&self) -> BoxFuture<'_, Result<Vec<ContainerInfo>, RuntimeError>> {
        Box::pin(async move {
            Ok(self
                .containers()
                .into_iter()
                .filter(|c| c.labels.contains_key(LABEL_TASK_ARN))
                .collect())
        })
    }

    fn events(&self) -> EventStream {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().subscribers.push(tx);
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|event| (event, rx))
        }))
    }

    fn binds_host_ports(&self) -> bool {
        false
    }

    fn ensure_task_network<'a>(
        &'a self,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<TaskNetwork, RuntimeError>> {
        Box::pin(async move {
            let mut state = self.lock();
            let name = network::network_name(owner);
            let default = state.task_subnet.clone().unwrap_or_else(|| {
                network::candidates()
                    .next()
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            });
            let subnet = state
                .networks
                .entry(name.clone())
                .or_insert(default)
                .clone();
            Ok(TaskNetwork {
                bridge: bridge_name(&name),
                name,
                subnet,
            })
        })
    }

    fn remove_task_network<'a>(
        &'a self,
        network: &'a TaskNetwork,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let mut state = self.lock();
            let in_use = state.containers.values().any(|c| {
                c.info.status == ContainerStatus::Running
                    && c.info.networks.iter().any(|(n, _)| n == &network.name)
            });
            if in_use {
                return Err(RuntimeError::Failed(format!(
                    "error while removing network: network {} has active endpoints",
                    network.name
                )));
            }
            state.networks.remove(&network.name);
            Ok(())
        })
    }

    fn create_namespace<'a>(
        &'a self,
        spec: &'a NamespaceSpec,
    ) -> BoxFuture<'a, Result<String, RuntimeError>> {
        Box::pin(async move {
            let mut state = self.lock();
            if let Some(message) = &state.namespace_error {
                return Err(RuntimeError::Failed(message.clone()));
            }
            let (id, _) = state.add_created(
                &spec.name,
                &spec.labels,
                super::pause::PAUSE_IMAGE,
                Vec::new(),
                FakeBehavior::long_running(),
            );
            Ok(id)
        })
    }

    fn attach_namespace<'a>(
        &'a self,
        id: &'a str,
        network: &'a TaskNetwork,
        address: &'a TaskAddress,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let delay = self.lock().attach_delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut state = self.lock();
            if let Some(message) = &state.attach_error {
                return Err(RuntimeError::Failed(message.clone()));
            }
            if state.networks.get(&network.name) != Some(&network.subnet) {
                return Err(RuntimeError::Failed(format!(
                    "network {} not found",
                    network.name
                )));
            }
            super::veth::Plan::new(network, address)?;
            let held = state.containers.values().any(|c| {
                c.info.status == ContainerStatus::Running
                    && c.info
                        .networks
                        .iter()
                        .any(|(n, ips)| n == &network.name && ips.contains(&address.ipv4_address))
            });
            if held {
                return Err(RuntimeError::Failed(format!(
                    "Address already in use: {}",
                    address.ipv4_address
                )));
            }
            let container = state.containers.get_mut(id).ok_or_else(|| not_found(id))?;
            if container.info.status != ContainerStatus::Running {
                return Err(RuntimeError::Failed(format!(
                    "the pause container {id} is not running"
                )));
            }
            container.info.networks =
                vec![(network.name.clone(), vec![address.ipv4_address.clone()])];
            Ok(())
        })
    }

    fn list_warm_namespaces<'a>(
        &'a self,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ContainerInfo>, RuntimeError>> {
        Box::pin(async move {
            Ok(self
                .containers()
                .into_iter()
                .filter(|c| {
                    c.labels.contains_key(LABEL_WARM_NAMESPACE)
                        && c.labels.get(LABEL_OWNER).map(String::as_str) == Some(owner)
                })
                .collect())
        })
    }

    fn remove_namespace<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let mut state = self.lock();
            if let Some(message) = &state.namespace_removal_error {
                return Err(RuntimeError::Failed(message.clone()));
            }
            state
                .containers
                .remove(id)
                .map(drop)
                .ok_or_else(|| not_found(id))
        })
    }

    fn logs(&self, id: &str, since_nanos: Option<i128>) -> LogStream {
        struct Follow {
            runtime: FakeRuntime,
            id: String,
            since: Option<i128>,
            version: Option<watch::Receiver<bool>>,
        }
        let follow = Follow {
            runtime: self.clone(),
            id: id.to_owned(),
            since: since_nanos,
            version: None,
        };
        Box::pin(futures_util::stream::unfold(follow, |mut f| async move {
            loop {
                let (next, running) = {
                    let mut state = f.runtime.lock();
                    let container = state.containers.get_mut(&f.id)?;
                    let version = f.version.get_or_insert_with(|| container.subscribe());
                    version.borrow_and_update();
                    let next = container
                        .logs
                        .iter()
                        .find(|l| f.since.is_none_or(|s| l.timestamp_nanos > s))
                        .cloned();
                    (next, container.info.status != ContainerStatus::Exited)
                };
                if let Some(line) = next {
                    f.since = Some(line.timestamp_nanos);
                    return Some((Ok(line), f));
                }
                if !running {
                    return None;
                }
                f.version.as_mut()?.changed().await.ok()?;
            }
        }))
    }
}

/// A bridge name as Docker would make one: `br-` and 12 hex digits,
/// stable per network name.
fn bridge_name(network: &str) -> String {
    format!("br-{}", &fake_digest(network)["sha256:".len()..][..12])
}

fn fake_digest(image: &str) -> String {
    // Stable per image name, which is all tests compare.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in image.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("sha256:{hash:064x}")
}
