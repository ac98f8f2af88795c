//! The agent's life: its configuration, its identity on disk, its task
//! network (awsvpc), registration as an ECS container instance (resources,
//! capability attributes, instance identity document), and the loop that
//! keeps the push channel open until shutdown.

use std::future::Future;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_client::{Client, Credentials};
use berth_types::agent::{TASK_ENI_CAPABILITY, TASK_ENI_SUBNET_ATTRIBUTE};
use berth_types::{Attribute, RegisterContainerInstanceRequest, Resource, VersionInfo};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::engine::{Engine, EngineConfig, ImagePullBehavior};
use crate::report::{Reporter, StateSink};
use crate::runtime::{ContainerRuntime, RuntimeVersion, TaskNetwork};
use crate::{AgentError, channel, persist};

/// Host ports the agent registers as taken (ECS's `ECS_RESERVED_PORTS`).
pub const RESERVED_PORTS: [u16; 5] = [22, 2375, 2376, 51678, 51679];
const IDENTITY_FILE: &str = "instance.json";
const FIRST_DOCKER_API_MINOR: u32 = 17;

/// The CPU and memory a host offers, when not read from the machine
/// (simulated hosts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostResources {
    /// CPU units, 1024 per core.
    pub cpu_units: u32,
    pub memory_mib: u64,
}

impl HostResources {
    /// This machine's cores and memory (`/proc/meminfo`).
    pub fn detect() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix("MemTotal:"))
                    .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            })
            .unwrap_or(0);
        Self {
            cpu_units: u32::try_from(cores * 1024).unwrap_or(u32::MAX),
            memory_mib: memory_kib / 1024,
        }
    }
}

/// Everything `berth agent` can be told.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The control plane's ECS endpoint (`http://HOST:PORT`).
    pub endpoint: String,
    /// The cluster to join (name or ARN);
    /// [`berth_types::agent::FARGATE_POOL_CLUSTER`] joins the platform's
    /// Fargate pool, which runs the FARGATE tasks of every cluster.
    pub cluster: String,
    /// Where the agent keeps its identity, task records and unsent reports.
    pub data_dir: PathBuf,
    /// Extra container instance attributes (`--attributes k=v`).
    pub attributes: Vec<(String, String)>,
    pub availability_zone: String,
    pub instance_type: String,
    /// MiB of host memory not offered to tasks (`ECS_RESERVED_MEMORY`).
    pub reserved_memory_mib: u64,
    /// How long stopped containers are kept before removal.
    pub cleanup_wait: Duration,
    /// The SIGTERM→SIGKILL grace for containers without `stopTimeout`.
    pub stop_timeout: Duration,
    pub image_pull_behavior: ImagePullBehavior,
    /// Credentials to sign API calls with; `None` reads the environment.
    pub credentials: Option<Credentials>,
    /// `None` reads `AWS_REGION`/`AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// How often the agent sends heartbeats; the channel is reopened when
    /// nothing arrives for three intervals.
    pub heartbeat_interval: Duration,
    /// The longest pause between reconnection attempts.
    pub max_reconnect_backoff: Duration,
    /// `None` reads this machine's.
    pub resources: Option<HostResources>,
    /// `None` uses the host's ephemeral range.
    pub port_range: Option<RangeInclusive<u16>>,
    /// Enforce task-level cpu/memory with a per-task cgroup.
    pub task_cgroups: bool,
    /// Ship container output to the control plane (`PutLogEvents`).
    pub ship_logs: bool,
    /// Serve the task metadata endpoint (v4) to containers.
    pub metadata_endpoint: bool,
    /// Where the metadata endpoint listens; `None`: the Docker bridge
    /// gateway on a port the agent picks (see [`crate::metadata`]).
    pub metadata_listen: Option<std::net::SocketAddr>,
    /// Keep task records and unsent reports in the data directory, so a
    /// restarted agent adopts its containers and delivers what it had not.
    /// Simulated hosts, whose containers die with the process, keep them in
    /// memory only.
    pub keep_task_state: bool,
    /// How many network namespaces to keep started ahead of awsvpc tasks
    /// (`--warm-namespaces`); a task that asks nothing of its namespace
    /// (hostname, DNS, extra hosts) takes one instead of waiting for a
    /// pause container to start. Idle ones are removed at shutdown.
    pub warm_namespaces: usize,
}

impl AgentConfig {
    /// A configuration with ECS's defaults for everything else.
    pub fn new(
        endpoint: impl Into<String>,
        cluster: impl Into<String>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            cluster: cluster.into(),
            data_dir: data_dir.into(),
            attributes: Vec::new(),
            availability_zone: "local-1a".to_owned(),
            instance_type: "berth.local".to_owned(),
            reserved_memory_mib: 0,
            cleanup_wait: Duration::from_secs(3 * 3600),
            stop_timeout: Duration::from_secs(30),
            image_pull_behavior: ImagePullBehavior::Default,
            credentials: None,
            region: None,
            heartbeat_interval: Duration::from_secs(10),
            max_reconnect_backoff: Duration::from_secs(30),
            resources: None,
            port_range: None,
            task_cgroups: true,
            ship_logs: true,
            metadata_endpoint: true,
            metadata_listen: None,
            keep_task_state: true,
            warm_namespaces: 0,
        }
    }

    fn engine_config(&self) -> EngineConfig {
        let mut config = EngineConfig::new(self.cluster.clone());
        config.data_dir = self.keep_task_state.then(|| self.data_dir.clone());
        config.cleanup_wait = self.cleanup_wait;
        config.stop_timeout = self.stop_timeout;
        config.image_pull_behavior = self.image_pull_behavior;
        config.task_cgroups = self.task_cgroups;
        config.warm_namespaces = self.warm_namespaces;
        if let Some(range) = &self.port_range {
            config.port_range = range.clone();
        }
        config
    }

    pub(crate) fn region(&self) -> String {
        self.region
            .clone()
            .unwrap_or_else(berth_client::region_from_env)
    }

    /// A client for the endpoint, signing with the configured credentials.
    pub(crate) fn client(&self) -> Result<Client, AgentError> {
        let credentials = self
            .credentials
            .clone()
            .unwrap_or_else(Credentials::from_env);
        Ok(Client::new(&self.endpoint, credentials, &self.region())?)
    }
}

/// How many hosts of this process have registered and how many push
/// channels are open: the simulator's progress.
#[derive(Debug, Default)]
pub(crate) struct Census {
    pub registered: AtomicUsize,
    pub connected: AtomicUsize,
}

/// How a host reaches the control plane. An agent builds its own; simulated
/// hosts share one, so thousands of them use one connection pool and take
/// turns at the server instead of stampeding it.
#[derive(Clone)]
pub(crate) struct Uplink {
    pub client: Client,
    /// Where state changes go.
    pub sink: Arc<dyn StateSink>,
    /// When set, a host holds a permit while it registers or opens its push
    /// channel.
    pub gate: Option<Arc<Semaphore>>,
    pub census: Arc<Census>,
}

impl Uplink {
    /// Waits for this host's turn at the control plane (at once when hosts
    /// need not take turns); the turn lasts as long as the permit.
    pub(crate) async fn turn(&self) -> Option<SemaphorePermit<'_>> {
        match &self.gate {
            Some(gate) => gate.acquire().await.ok(),
            None => None,
        }
    }
}

/// What the agent keeps about itself across restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Identity {
    instance_id: String,
    container_instance_arn: Option<String>,
}

fn load_identity(config: &AgentConfig) -> Result<Identity, AgentError> {
    let path = config.data_dir.join(IDENTITY_FILE);
    let stored: Option<Identity> = persist::read(&path).map_err(|source| AgentError::DataDir {
        path: path.clone(),
        source,
    })?;
    let identity = stored.unwrap_or_else(|| {
        // EC2's shape: `i-` and 17 hex digits.
        let hex = uuid::Uuid::new_v4().simple().to_string();
        Identity {
            instance_id: format!("i-{}", &hex[..17]),
            container_instance_arn: None,
        }
    });
    save_identity(config, &identity)?;
    Ok(identity)
}

fn save_identity(config: &AgentConfig, identity: &Identity) -> Result<(), AgentError> {
    persist::write(&config.data_dir, IDENTITY_FILE, identity).map_err(|source| {
        AgentError::DataDir {
            path: config.data_dir.join(IDENTITY_FILE),
            source,
        }
    })
}

fn cpu_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    }
}

fn attribute(name: &str, value: Option<&str>) -> Attribute {
    Attribute {
        name: name.to_owned(),
        value: value.map(str::to_owned),
        target_id: None,
        target_type: None,
    }
}

fn integer(name: &str, value: i32) -> Resource {
    Resource {
        name: Some(name.to_owned()),
        r#type: Some("INTEGER".to_owned()),
        integer_value: value,
        ..Default::default()
    }
}

fn string_set(name: &str, values: Vec<String>) -> Resource {
    Resource {
        name: Some(name.to_owned()),
        r#type: Some("STRINGSET".to_owned()),
        string_set_value: Some(values),
        ..Default::default()
    }
}

/// The `RegisterContainerInstance` request of this host, shaped like the ECS
/// agent's. With a task network, the host advertises that it gives awsvpc
/// tasks their own namespace, and the subnet to allocate their addresses
/// from.
fn registration(
    config: &AgentConfig,
    identity: &Identity,
    version: &RuntimeVersion,
    resources: HostResources,
    task_network: Option<&TaskNetwork>,
) -> RegisterContainerInstanceRequest {
    let memory = resources
        .memory_mib
        .saturating_sub(config.reserved_memory_mib);
    let mut attributes = vec![
        attribute("ecs.os-type", Some("linux")),
        attribute("ecs.os-family", Some("LINUX")),
        attribute("ecs.cpu-architecture", Some(cpu_architecture())),
        attribute("ecs.availability-zone", Some(&config.availability_zone)),
        attribute("ecs.instance-type", Some(&config.instance_type)),
    ];
    let api_minor = version
        .api_version
        .split_once('.')
        .and_then(|(_, minor)| minor.parse::<u32>().ok())
        .unwrap_or(FIRST_DOCKER_API_MINOR);
    for minor in FIRST_DOCKER_API_MINOR..=api_minor {
        attributes.push(attribute(
            &format!("com.amazonaws.ecs.capability.docker-remote-api.1.{minor}"),
            None,
        ));
    }
    for name in [
        "com.amazonaws.ecs.capability.logging-driver.json-file",
        "com.amazonaws.ecs.capability.logging-driver.awslogs",
        "com.amazonaws.ecs.capability.logging-driver.none",
        "com.amazonaws.ecs.capability.privileged-container",
        "ecs.capability.container-health-check",
        "ecs.capability.container-ordering",
        "ecs.capability.task-cpu-mem-limit",
        "ecs.capability.docker-plugin.local",
    ] {
        attributes.push(attribute(name, None));
    }
    if let Some(network) = task_network {
        attributes.push(attribute(TASK_ENI_CAPABILITY, None));
        attributes.push(attribute(TASK_ENI_SUBNET_ATTRIBUTE, Some(&network.subnet)));
    }
    for (name, value) in &config.attributes {
        attributes.retain(|a| &a.name != name);
        attributes.push(attribute(name, Some(value)));
    }
    let document = serde_json::json!({
        "instanceId": identity.instance_id,
        "availabilityZone": config.availability_zone,
        "region": config.region(),
        "instanceType": config.instance_type,
        "architecture": std::env::consts::ARCH,
    });
    RegisterContainerInstanceRequest {
        cluster: Some(config.cluster.clone()),
        container_instance_arn: identity.container_instance_arn.clone(),
        instance_identity_document: Some(document.to_string()),
        total_resources: Some(vec![
            integer(
                "CPU",
                i32::try_from(resources.cpu_units).unwrap_or(i32::MAX),
            ),
            integer("MEMORY", i32::try_from(memory).unwrap_or(i32::MAX)),
            string_set("PORTS", RESERVED_PORTS.iter().map(u16::to_string).collect()),
            string_set("PORTS_UDP", Vec::new()),
        ]),
        version_info: Some(VersionInfo {
            agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
            agent_hash: None,
            docker_version: Some(format!("DockerVersion: {}", version.server_version)),
        }),
        attributes: Some(attributes),
        ..Default::default()
    }
}

/// Runs the agent until `shutdown` resolves: makes sure of its task network,
/// registers the host, keeps the push channel open, runs what the control
/// plane asks for. On shutdown the tasks' containers keep running; the next
/// start adopts them. Idle warm namespaces go, and the task network too
/// when no task uses it.
pub async fn run(
    config: AgentConfig,
    runtime: Arc<dyn ContainerRuntime>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let client = config.client()?;
    let uplink = Uplink {
        sink: Arc::new(client.clone()),
        client,
        gate: None,
        census: Arc::default(),
    };
    run_host(config, runtime, uplink, shutdown).await
}

/// [`run`] over a given uplink: the one life of every host, real or
/// simulated.
pub(crate) async fn run_host(
    config: AgentConfig,
    runtime: Arc<dyn ContainerRuntime>,
    uplink: Uplink,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| AgentError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let mut identity = load_identity(&config)?;
    let version = runtime.version().await?;
    // Without a task network the host still runs other tasks; it does not
    // advertise awsvpc, so none are placed here.
    let task_network = match runtime.ensure_task_network(&identity.instance_id).await {
        Ok(network) => Some(network),
        Err(error) => {
            tracing::warn!(%error, "cannot set up the task network; awsvpc tasks will not run here");
            None
        }
    };
    let client = &uplink.client;
    let reporter = Reporter::new(
        uplink.sink.clone(),
        config
            .keep_task_state
            .then(|| config.data_dir.join("reports")),
    );
    reporter.resume();
    let mut engine_config = config.engine_config();
    engine_config.owner = identity.instance_id.clone();
    if config.ship_logs {
        engine_config.logs = Some(crate::logs::LogShipper::new(
            Arc::new(client.clone()),
            crate::logs::ShipperConfig::default(),
            Some(config.data_dir.join("logs")),
        ));
    }
    engine_config.availability_zone = Some(config.availability_zone.clone());
    engine_config.task_network = task_network.clone();
    let metadata_listener = if config.metadata_endpoint {
        let gateway = runtime.bridge_gateway().await;
        match crate::metadata::bind(config.metadata_listen, gateway, &config.data_dir).await {
            Ok(listener) => {
                engine_config.metadata_address = listener.local_addr().ok();
                tracing::info!(address = ?engine_config.metadata_address, "task metadata endpoint listening");
                Some(listener)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot serve the task metadata endpoint");
                None
            }
        }
    } else {
        None
    };
    let (engine, health) = Engine::start(runtime.clone(), reporter, engine_config).await?;
    let (metadata_stop, metadata_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(listener) = metadata_listener {
        let engine = engine.clone();
        tokio::spawn(async move {
            let stopped = async {
                let _ = metadata_stopped.await;
            };
            if let Err(error) = crate::metadata::serve(listener, engine, stopped).await {
                tracing::warn!(%error, "task metadata endpoint failed");
            }
        });
    }
    let resources = config.resources.unwrap_or_else(HostResources::detect);

    let work = async {
        // The request is dropped and the call's future boxed once registered,
        // so neither stays in the memory of a host that runs for days (one
        // simulator process holds thousands).
        let arn = {
            let mut request = registration(
                &config,
                &identity,
                &version,
                resources,
                task_network.as_ref(),
            );
            Box::pin(register(
                &uplink,
                &mut request,
                config.max_reconnect_backoff,
            ))
            .await
        };
        if identity.container_instance_arn.as_deref() != Some(arn.as_str()) {
            identity.container_instance_arn = Some(arn.clone());
            save_identity(&config, &identity)?;
        }
        tracing::info!(
            container_instance = arn,
            cluster = config.cluster,
            "registered"
        );
        uplink.census.registered.fetch_add(1, Ordering::Relaxed);
        channel::serve(channel::ChannelConfig {
            uplink: &uplink,
            engine: &engine,
            health,
            cluster: &config.cluster,
            container_instance_arn: &arn,
            heartbeat: config.heartbeat_interval,
            max_backoff: config.max_reconnect_backoff,
        })
        .await;
        Ok(())
    };
    let result = tokio::select! {
        result = work => result,
        () = shutdown => Ok(()),
    };
    engine.shutdown().await;
    let _ = metadata_stop.send(());
    if let Some(network) = &task_network {
        // Refused while namespaces of running tasks are attached, which
        // the next start adopts along with the network.
        match runtime.remove_task_network(network).await {
            Ok(()) => tracing::info!(network = network.name, "removed the task network"),
            Err(error) => {
                tracing::info!(%error, network = network.name, "keeping the task network");
            }
        }
    }
    result
}

/// Registers, retrying with backoff until the control plane answers. A
/// container instance ARN the control plane does not know (its store was
/// reset, or the cluster recreated) is dropped, and the host joins anew.
async fn register(
    uplink: &Uplink,
    request: &mut RegisterContainerInstanceRequest,
    max_backoff: Duration,
) -> String {
    let mut backoff = Duration::from_millis(250);
    loop {
        let result = {
            let _turn = uplink.turn().await;
            uplink.client.send(&*request).await
        };
        match result {
            Err(error)
                if request.container_instance_arn.is_some()
                    && error.code() == Some("InvalidParameterException") =>
            {
                tracing::warn!(%error, "the control plane does not know this container instance; registering as a new one");
                request.container_instance_arn = None;
                continue;
            }
            Ok(response) => {
                if let Some(arn) = response
                    .container_instance
                    .and_then(|ci| ci.container_instance_arn)
                {
                    return arn;
                }
                tracing::warn!("RegisterContainerInstance answered without an ARN");
            }
            Err(error) => tracing::warn!(%error, ?backoff, "cannot register; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(max_backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_advertises_resources_and_capabilities() {
        let mut config = AgentConfig::new("http://127.0.0.1:1", "default", "/tmp/unused");
        config.reserved_memory_mib = 512;
        config.attributes = vec![("team".into(), "blue".into())];
        config.region = Some("us-east-1".into());
        let identity = Identity {
            instance_id: "i-0123456789abcdef0".into(),
            container_instance_arn: Some("arn:ci".into()),
        };
        let version = RuntimeVersion {
            server_version: "20.10.24".into(),
            api_version: "1.41".into(),
        };
        let network = TaskNetwork {
            name: "berth-eni-i-0123456789abcdef0".into(),
            subnet: "100.64.4.0/22".into(),
            bridge: "br-0123456789ab".into(),
        };
        let request = registration(
            &config,
            &identity,
            &version,
            HostResources {
                cpu_units: 2048,
                memory_mib: 4096,
            },
            Some(&network),
        );
        let json = serde_json::to_value(&request).unwrap();
        let resources = json["totalResources"].as_array().unwrap();
        assert_eq!(resources[0]["name"], "CPU");
        assert_eq!(resources[0]["integerValue"], 2048);
        assert_eq!(resources[1]["integerValue"], 3584);
        assert_eq!(
            resources[2]["stringSetValue"],
            serde_json::json!(["22", "2375", "2376", "51678", "51679"])
        );
        assert_eq!(resources[3]["stringSetValue"], serde_json::json!([]));
        assert_eq!(json["containerInstanceArn"], "arn:ci");
        assert_eq!(
            json["versionInfo"]["dockerVersion"],
            "DockerVersion: 20.10.24"
        );
        let names: Vec<&str> = json["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        for expected in [
            "ecs.os-type",
            "com.amazonaws.ecs.capability.docker-remote-api.1.17",
            "com.amazonaws.ecs.capability.docker-remote-api.1.41",
            "ecs.capability.container-health-check",
            "team",
        ] {
            assert!(
                names.contains(&expected),
                "{expected} missing from {names:?}"
            );
        }
        assert!(!names.contains(&"com.amazonaws.ecs.capability.docker-remote-api.1.42"));
        let attributes = json["attributes"].as_array().unwrap();
        let eni = attributes
            .iter()
            .find(|a| a["name"] == TASK_ENI_CAPABILITY)
            .unwrap();
        assert!(eni.get("value").is_none_or(serde_json::Value::is_null));
        let subnet = attributes
            .iter()
            .find(|a| a["name"] == TASK_ENI_SUBNET_ATTRIBUTE)
            .unwrap();
        assert_eq!(subnet["value"], "100.64.4.0/22");
        let without = serde_json::to_value(registration(
            &config,
            &identity,
            &version,
            HostResources {
                cpu_units: 2048,
                memory_mib: 4096,
            },
            None,
        ))
        .unwrap();
        assert!(
            without["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["name"] != TASK_ENI_CAPABILITY && a["name"] != TASK_ENI_SUBNET_ATTRIBUTE)
        );
        let document: serde_json::Value =
            serde_json::from_str(json["instanceIdentityDocument"].as_str().unwrap()).unwrap();
        assert_eq!(document["instanceId"], "i-0123456789abcdef0");
        assert_eq!(document["availabilityZone"], "local-1a");
    }

    #[test]
    fn identity_is_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let config = AgentConfig::new("http://127.0.0.1:1", "default", dir.path());
        let first = load_identity(&config).unwrap();
        assert!(first.instance_id.starts_with("i-") && first.instance_id.len() == 19);
        let again = load_identity(&config).unwrap();
        assert_eq!(first.instance_id, again.instance_id);
    }
}
