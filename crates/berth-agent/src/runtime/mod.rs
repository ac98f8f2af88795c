//! The seam between the task engine and whatever really runs containers: the
//! [`ContainerRuntime`] trait, the runtime-neutral description of a container
//! to create ([`CreateSpec`]), what the engine learns back ([`ContainerInfo`],
//! [`RuntimeEvent`]), and the Docker labels that mark Berth's containers.
//!
//! Two implementations live below: [`docker`] on the local Docker Engine and
//! [`fake`], an in-memory runtime for tests and simulated hosts.
//!
//! [`ContainerRuntime::logs`] follows a container's stdout/stderr for the
//! log shipper; [`ContainerRuntime::stats`] reads one stats sample for the
//! task metadata endpoint.
//!
//! awsvpc tasks get a network namespace of their own: the agent keeps one
//! task network per host ([`TaskNetwork`], subnets from [`network`]), each
//! such task gets a pause container holding a namespace of its own
//! ([`NamespaceSpec`], image from [`pause`]), which is then put on the task
//! network with the task's address ([`TaskAddress`], see [`veth`]), and the
//! task's containers join that container's namespace
//! ([`CreateSpec::network_namespace`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use berth_types::{ContainerDefinition, HealthStatus, NetworkMode, Timestamp, TransportProtocol};
use futures_util::Stream;

pub mod docker;
pub mod fake;
pub mod network;
pub mod pause;
pub mod veth;

/// A boxed future, so that the trait stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// The runtime's container events, for containers that carry Berth labels.
pub type EventStream = Pin<Box<dyn Stream<Item = RuntimeEvent> + Send>>;
/// A container's output lines, ending when the container has exited and its
/// output has been read.
pub type LogStream = Pin<Box<dyn Stream<Item = Result<LogLine, RuntimeError>> + Send>>;

/// One line a container wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the runtime received it, in nanoseconds since the epoch.
    pub timestamp_nanos: i128,
    /// Written to stderr (else stdout).
    pub stderr: bool,
    /// The line without its trailing newline.
    pub message: String,
}

/// The labels the ECS agent puts on every task container; Berth uses the same
/// so tools that know ECS (and the agent after a restart) can find them.
pub const LABEL_TASK_ARN: &str = "com.amazonaws.ecs.task-arn";
pub const LABEL_CLUSTER: &str = "com.amazonaws.ecs.cluster";
pub const LABEL_CONTAINER_NAME: &str = "com.amazonaws.ecs.container-name";
pub const LABEL_FAMILY: &str = "com.amazonaws.ecs.task-definition-family";
pub const LABEL_REVISION: &str = "com.amazonaws.ecs.task-definition-version";
/// The agent (by instance id) that created the container.
pub const LABEL_OWNER: &str = "io.berth.agent-instance-id";
/// On a pause container: the attachment ARN of the task's network
/// interface, so a namespace found without its task's record can still be
/// reported detached.
pub const LABEL_ATTACHMENT_ARN: &str = "io.berth.task-eni.attachment-arn";
/// On a pause container made ahead of any task (the agent's warm pool):
/// it belongs to no task until the agent's record of a task claims it, as
/// labels cannot be changed afterwards.
pub const LABEL_WARM_NAMESPACE: &str = "io.berth.warm-namespace";

/// A failed runtime operation. The messages are what the runtime said, so the
/// engine can put them into ECS reasons (`CannotStartContainerError: …`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("{0}")]
    Failed(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// One published port of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortBinding {
    pub container_port: u16,
    pub host_port: u16,
    pub protocol: TransportProtocol,
}

/// Where a mount's data comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MountSource {
    /// A directory of the host (`host.sourcePath`).
    HostPath(String),
    /// A Docker named volume, created on first use.
    Volume {
        name: String,
        driver: Option<String>,
        driver_opts: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub source: MountSource,
    pub target: String,
    pub read_only: bool,
}

/// Everything needed to create one container. The container definition is
/// carried whole; the engine resolves what needs task context (names, ports,
/// volumes, cgroups) into the other fields.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    /// The runtime's container name (`ecs-<family>-<revision>-<name>-<hex>`).
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub definition: ContainerDefinition,
    pub network_mode: NetworkMode,
    /// Host port bindings (bridge mode only).
    pub port_bindings: Vec<PortBinding>,
    pub mounts: Vec<Mount>,
    /// Runtime ids of containers whose volumes this one mounts (`:ro` suffix
    /// when read-only).
    pub volumes_from: Vec<String>,
    /// The task's cgroup, holding the task-level CPU and memory limits.
    pub cgroup_parent: Option<String>,
    /// Variables the agent adds to the definition's `environment`.
    pub extra_env: Vec<(String, String)>,
    pub stop_timeout: Duration,
    /// The runtime id of the pause container whose network namespace this
    /// container joins (awsvpc). Ports, hostname, DNS settings and extra
    /// hosts then belong to that container, and the ones here are ignored.
    pub network_namespace: Option<String>,
}

/// The network a host's awsvpc tasks get their addresses on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskNetwork {
    /// The runtime's name for it.
    pub name: String,
    /// Its subnet (`100.64.4.0/22`), which the host advertises as
    /// `berth.task-eni.subnet` for the control plane to allocate from.
    pub subnet: String,
    /// The Linux bridge that task namespaces are plugged into.
    pub bridge: String,
}

/// The pause container that holds one awsvpc task's network namespace,
/// with no address yet (see [`ContainerRuntime::attach_namespace`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceSpec {
    /// The runtime's container name.
    pub name: String,
    /// The task's labels, with [`LABEL_CONTAINER_NAME`] the pause
    /// container's; or, for a namespace of the warm pool, the owner's and
    /// [`LABEL_WARM_NAMESPACE`].
    pub labels: BTreeMap<String, String>,
    /// The task's cgroup, so the namespace's process counts against it.
    pub cgroup_parent: Option<String>,
    /// What the task's definitions ask of the namespace, which the
    /// containers joining it cannot set themselves: the hostname, DNS
    /// servers and search domains, and `/etc/hosts` entries (`name:ip`).
    pub hostname: Option<String>,
    pub dns_servers: Vec<String>,
    pub dns_search_domains: Vec<String>,
    pub extra_hosts: Vec<String>,
}

/// A task's address on the task network, as the control plane allocated
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskAddress {
    pub ipv4_address: String,
    pub mac_address: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerStatus {
    Created,
    Running,
    Exited,
}

/// What the runtime knows about one container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub status: ContainerStatus,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    /// `None` when the container has no health check.
    pub health: Option<HealthStatus>,
    pub image_digest: Option<String>,
    pub port_bindings: Vec<PortBinding>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub created_at: Option<Timestamp>,
    /// The networks the container is attached to, with its IPv4 addresses.
    pub networks: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEventKind {
    Started,
    /// The main process exited (or was killed).
    Died {
        exit_code: Option<i32>,
    },
    /// The kernel killed a process of the container for exceeding its memory
    /// limit; a `Died` follows.
    OutOfMemory,
    /// The result of the container's health check changed.
    Health(HealthStatus),
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeEvent {
    pub container_id: String,
    pub kind: RuntimeEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// The engine's version (`20.10.24+dfsg1`), reported as `dockerVersion`.
    pub server_version: String,
    /// The API version in use after negotiation (`1.41`).
    pub api_version: String,
}

/// An image present on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// `sha256:…` of the image's repository digest, when it has one, else its
    /// id.
    pub digest: Option<String>,
}

/// What the task engine needs from a container runtime. Object safe, so the
/// agent can hold an `Arc<dyn ContainerRuntime>`.
pub trait ContainerRuntime: Send + Sync + 'static {
    fn version(&self) -> BoxFuture<'_, Result<RuntimeVersion, RuntimeError>>;
    /// `Ok(None)` when the image is not on the host.
    fn inspect_image<'a>(
        &'a self,
        image: &'a str,
    ) -> BoxFuture<'a, Result<Option<ImageInfo>, RuntimeError>>;
    fn pull_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Creates the container and returns its runtime id.
    fn create<'a>(&'a self, spec: &'a CreateSpec) -> BoxFuture<'a, Result<String, RuntimeError>>;
    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Sends the stop signal, then SIGKILL once `timeout` has passed; returns
    /// when the container has exited.
    fn stop<'a>(
        &'a self,
        id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;
    fn kill<'a>(&'a self, id: &'a str, signal: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;
    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ContainerInfo, RuntimeError>>;
    /// Every container, running or not, that carries [`LABEL_TASK_ARN`].
    fn list_managed(&self) -> BoxFuture<'_, Result<Vec<ContainerInfo>, RuntimeError>>;
    /// Events of containers carrying [`LABEL_TASK_ARN`], from now on. The
    /// stream survives runtime restarts where the runtime can resume.
    fn events(&self) -> EventStream;
    /// Whether host ports given to containers are real ports of this host, so
    /// the allocator must skip ports other processes hold.
    fn binds_host_ports(&self) -> bool;
    /// Follows the container's stdout and stderr: lines written after
    /// `since_nanos` (all when `None`), then new ones until the container
    /// exits. Runtimes without logs return an empty stream.
    fn logs(&self, id: &str, since_nanos: Option<i128>) -> LogStream {
        let _ = (id, since_nanos);
        Box::pin(futures_util::stream::empty())
    }
    /// One stats sample of the container in the Docker Engine's JSON shape
    /// (`GET /containers/{id}/stats?stream=false`), for the task metadata
    /// endpoint. `None` when the runtime has none.
    fn stats<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<serde_json::Value>, RuntimeError>> {
        let _ = id;
        Box::pin(async { Ok(None) })
    }
    /// The host's address on the default bridge network (Docker's `bridge`
    /// gateway), which containers on it can reach; `None` when there is none.
    fn bridge_gateway(&self) -> BoxFuture<'_, Option<std::net::IpAddr>> {
        Box::pin(async { None })
    }
    /// The task network of agent `owner` (its instance id): the one an
    /// earlier run made, with its subnet, or a new one on a subnet free on
    /// this host.
    fn ensure_task_network<'a>(
        &'a self,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<TaskNetwork, RuntimeError>>;
    /// Removes the task network; refused while namespaces are attached.
    fn remove_task_network<'a>(
        &'a self,
        network: &'a TaskNetwork,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Creates a pause container that, once started ([`Self::start`]),
    /// holds a network namespace of its own with loopback only, and returns
    /// its id. Containers may be created to join it before it starts.
    fn create_namespace<'a>(
        &'a self,
        spec: &'a NamespaceSpec,
    ) -> BoxFuture<'a, Result<String, RuntimeError>>;
    /// Puts the namespace of running pause container `id` on `network`
    /// with `address`: its `eth0` holds the address and MAC, the host
    /// reaches it through the network, and its default route is the
    /// network's gateway. A failed attempt leaves no interface behind; the
    /// container is the caller's to remove.
    fn attach_namespace<'a>(
        &'a self,
        id: &'a str,
        network: &'a TaskNetwork,
        address: &'a TaskAddress,
    ) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Every pause container of agent `owner`'s warm pool (carrying
    /// [`LABEL_WARM_NAMESPACE`]), running or not, claimed by a task or not.
    fn list_warm_namespaces<'a>(
        &'a self,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ContainerInfo>, RuntimeError>>;
    /// Removes a pause container whatever its state; its namespace, and
    /// with it the task's interface and address, goes too.
    fn remove_namespace<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;
}
