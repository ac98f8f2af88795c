//! The ECS task metadata endpoint, version 4, served by the agent over HTTP.
//!
//! Every container gets `ECS_CONTAINER_METADATA_URI_V4=http://<addr>/v4/<token>`
//! (a random token per container, kept in the task record so it survives
//! agent restarts) and can read:
//! - `${URI}`: the container's metadata,
//! - `${URI}/task`: the task's, with all its containers,
//! - `${URI}/stats`: the container's Docker stats (one sample),
//! - `${URI}/task/stats`: Docker id → stats of every container of the task.
//!
//! Where it listens: ECS uses 169.254.170.2:80, which Berth cannot take on a
//! shared machine. The agent binds the default Docker bridge's gateway
//! address (read from the `bridge` network's IPAM, usually 172.17.0.1),
//! which containers on the bridge reach directly and host-network
//! containers reach as a local address, on a port it picks once and keeps in
//! `metadata.json` in its data dir (so URIs of adopted containers stay
//! valid). `--metadata-listen` (`AgentConfig::metadata_listen`) overrides
//! both, e.g. `0.0.0.0:51679`. Without a bridge it binds 127.0.0.1.
//!
//! Field names follow the ECS documentation of v4; fields Berth has no
//! value for are left out rather than invented.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use berth_types::agent::TaskNetworkInterface;
use berth_types::{LogConfiguration, NetworkMode, Timestamp, TransportProtocol};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::engine::Engine;
use crate::runtime::{ContainerInfo, PortBinding};

/// What the endpoint shows of one container, published by its supervisor.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSnapshot {
    pub name: String,
    pub token: String,
    pub container_arn: String,
    pub docker_id: Option<String>,
    pub image: String,
    pub image_id: Option<String>,
    pub desired_status: String,
    pub known_status: String,
    pub exit_code: Option<i32>,
    pub cpu: i32,
    pub memory: Option<i32>,
    pub ports: Vec<PortBinding>,
    pub log_configuration: Option<LogConfiguration>,
}

/// What the endpoint shows of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSnapshot {
    pub cluster: String,
    pub task_arn: String,
    pub family: String,
    pub revision: String,
    pub desired_status: String,
    pub known_status: String,
    /// CPU units and MiB of the task, when the definition sets them.
    pub cpu: Option<u32>,
    pub memory_mib: Option<u32>,
    pub pull_started_at: Option<Timestamp>,
    pub pull_stopped_at: Option<Timestamp>,
    pub execution_stopped_at: Option<Timestamp>,
    pub availability_zone: Option<String>,
    pub network_mode: NetworkMode,
    /// The task's own address (awsvpc), which its containers share.
    pub network_interface: Option<TaskNetworkInterface>,
    /// `FARGATE` on an agent of the Fargate pool, else `EC2`.
    pub launch_type: String,
    pub containers: Vec<ContainerSnapshot>,
}

/// RFC 3339 with nanoseconds, as ECS (Go's `time.RFC3339Nano`) prints.
fn rfc3339(ts: Timestamp) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts.millis()) * 1_000_000)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn network_mode_name(mode: NetworkMode) -> &'static str {
    match mode {
        NetworkMode::Host => "host",
        NetworkMode::None => "none",
        NetworkMode::Awsvpc => "awsvpc",
        NetworkMode::Bridge => "bridge",
    }
}

fn insert_time(map: &mut Map<String, Value>, key: &str, ts: Option<Timestamp>) {
    if let Some(text) = ts.and_then(rfc3339) {
        map.insert(key.to_owned(), Value::String(text));
    }
}

/// The container JSON (`${ECS_CONTAINER_METADATA_URI_V4}`). `info` is the
/// runtime's inspect answer, for the Docker-side fields.
pub fn container_json(
    task: &TaskSnapshot,
    c: &ContainerSnapshot,
    info: Option<&ContainerInfo>,
) -> Value {
    let mut m = Map::new();
    if let Some(id) = &c.docker_id {
        m.insert("DockerId".into(), json!(id));
    }
    m.insert("Name".into(), json!(c.name));
    if let Some(info) = info {
        m.insert("DockerName".into(), json!(info.name));
    }
    m.insert("Image".into(), json!(c.image));
    if let Some(image_id) = &c.image_id {
        m.insert("ImageID".into(), json!(image_id));
    }
    let eni = task.network_interface.as_ref();
    let host_ip = eni.map_or("0.0.0.0", |eni| eni.ipv4_address.as_str());
    if !c.ports.is_empty() {
        let ports: Vec<Value> = c
            .ports
            .iter()
            .map(|p| {
                json!({
                    "ContainerPort": p.container_port,
                    "Protocol": match p.protocol {
                        TransportProtocol::Tcp => "tcp",
                        TransportProtocol::Udp => "udp",
                    },
                    "HostPort": p.host_port,
                    "HostIp": host_ip,
                })
            })
            .collect();
        m.insert("Ports".into(), Value::Array(ports));
    }
    if let Some(info) = info {
        m.insert("Labels".into(), json!(info.labels));
    }
    m.insert("DesiredStatus".into(), json!(c.desired_status));
    m.insert("KnownStatus".into(), json!(c.known_status));
    if let Some(code) = c.exit_code {
        m.insert("ExitCode".into(), json!(code));
    }
    let mut limits = Map::new();
    limits.insert("CPU".into(), json!(c.cpu));
    if let Some(memory) = c.memory {
        limits.insert("Memory".into(), json!(memory));
    }
    m.insert("Limits".into(), Value::Object(limits));
    if let Some(info) = info {
        insert_time(&mut m, "CreatedAt", info.created_at);
        insert_time(&mut m, "StartedAt", info.started_at);
        insert_time(&mut m, "FinishedAt", info.finished_at);
    }
    m.insert("Type".into(), json!("NORMAL"));
    if let Some(log) = &c.log_configuration {
        m.insert("LogDriver".into(), json!(log.log_driver.as_str()));
        if let Some(options) = &log.options {
            m.insert("LogOptions".into(), json!(options));
        }
    }
    m.insert("ContainerARN".into(), json!(c.container_arn));
    let mode = network_mode_name(task.network_mode);
    // A container in the task's namespace has no network of its own in
    // the runtime: the addresses are the task's.
    let addresses: Vec<String> = match eni {
        Some(eni) => vec![eni.ipv4_address.clone()],
        None => info
            .map(|i| {
                i.networks
                    .iter()
                    .filter(|(name, _)| task.network_mode != NetworkMode::Host || name == "host")
                    .flat_map(|(_, ips)| ips.clone())
                    .collect()
            })
            .unwrap_or_default(),
    };
    let mut network = Map::new();
    network.insert("NetworkMode".into(), json!(mode));
    if !addresses.is_empty() {
        network.insert("IPv4Addresses".into(), json!(addresses));
    }
    if let Some(eni) = eni {
        network.insert("AttachmentIndex".into(), json!(0));
        network.insert("MACAddress".into(), json!(eni.mac_address));
        network.insert("IPv4SubnetCIDRBlock".into(), json!(eni.subnet_cidr));
    }
    m.insert("Networks".into(), json!([network]));
    Value::Object(m)
}

/// The task JSON (`${ECS_CONTAINER_METADATA_URI_V4}/task`); `infos` holds the
/// inspect answer of each container, in `task.containers` order.
pub fn task_json(task: &TaskSnapshot, infos: &[Option<ContainerInfo>]) -> Value {
    let mut m = Map::new();
    m.insert("Cluster".into(), json!(task.cluster));
    m.insert("TaskARN".into(), json!(task.task_arn));
    m.insert("Family".into(), json!(task.family));
    m.insert("Revision".into(), json!(task.revision));
    m.insert("DesiredStatus".into(), json!(task.desired_status));
    m.insert("KnownStatus".into(), json!(task.known_status));
    let containers: Vec<Value> = task
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| container_json(task, c, infos.get(i).and_then(Option::as_ref)))
        .collect();
    m.insert("Containers".into(), Value::Array(containers));
    let mut limits = Map::new();
    if let Some(cpu) = task.cpu {
        limits.insert("CPU".into(), json!(f64::from(cpu) / 1024.0));
    }
    if let Some(memory) = task.memory_mib {
        limits.insert("Memory".into(), json!(memory));
    }
    if !limits.is_empty() {
        m.insert("Limits".into(), Value::Object(limits));
    }
    insert_time(&mut m, "PullStartedAt", task.pull_started_at);
    insert_time(&mut m, "PullStoppedAt", task.pull_stopped_at);
    insert_time(&mut m, "ExecutionStoppedAt", task.execution_stopped_at);
    if let Some(az) = &task.availability_zone {
        m.insert("AvailabilityZone".into(), json!(az));
    }
    m.insert("LaunchType".into(), json!(task.launch_type));
    Value::Object(m)
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"message": "unknown metadata endpoint token"})),
    )
        .into_response()
}

async fn inspect_all(engine: &Engine, task: &TaskSnapshot) -> Vec<Option<ContainerInfo>> {
    let runtime = engine.runtime();
    let mut infos = Vec::with_capacity(task.containers.len());
    for c in &task.containers {
        infos.push(match &c.docker_id {
            Some(id) => runtime.inspect(id).await.ok(),
            None => None,
        });
    }
    infos
}

async fn container(State(engine): State<Engine>, UrlPath(token): UrlPath<String>) -> Response {
    let Some((task, i)) = engine.metadata(&token) else {
        return not_found();
    };
    let c = &task.containers[i];
    let info = match &c.docker_id {
        Some(id) => engine.runtime().inspect(id).await.ok(),
        None => None,
    };
    Json(container_json(&task, c, info.as_ref())).into_response()
}

async fn task(State(engine): State<Engine>, UrlPath(token): UrlPath<String>) -> Response {
    let Some((task, _)) = engine.metadata(&token) else {
        return not_found();
    };
    let infos = inspect_all(&engine, &task).await;
    Json(task_json(&task, &infos)).into_response()
}

async fn container_stats(
    State(engine): State<Engine>,
    UrlPath(token): UrlPath<String>,
) -> Response {
    let Some((task, i)) = engine.metadata(&token) else {
        return not_found();
    };
    let stats = match &task.containers[i].docker_id {
        Some(id) => engine.runtime().stats(id).await.ok().flatten(),
        None => None,
    };
    Json(stats.unwrap_or(Value::Null)).into_response()
}

async fn task_stats(State(engine): State<Engine>, UrlPath(token): UrlPath<String>) -> Response {
    let Some((task, _)) = engine.metadata(&token) else {
        return not_found();
    };
    let runtime = engine.runtime();
    let mut all = BTreeMap::new();
    for c in &task.containers {
        if let Some(id) = &c.docker_id {
            let stats = runtime.stats(id).await.ok().flatten();
            all.insert(id.clone(), stats.unwrap_or(Value::Null));
        }
    }
    Json(all).into_response()
}

/// The endpoint's routes.
pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/v4/{token}", get(container))
        .route("/v4/{token}/task", get(task))
        .route("/v4/{token}/stats", get(container_stats))
        .route("/v4/{token}/task/stats", get(task_stats))
        .with_state(engine)
}

#[derive(Serialize, Deserialize)]
struct Saved {
    port: u16,
}

const SAVED: &str = "metadata.json";

/// Binds the endpoint's listener: `configured`, else the bridge gateway
/// (or 127.0.0.1) on the port used last time when it is free, else a new
/// one (remembered in `data_dir`).
pub async fn bind(
    configured: Option<SocketAddr>,
    gateway: Option<IpAddr>,
    data_dir: &Path,
) -> std::io::Result<tokio::net::TcpListener> {
    if let Some(addr) = configured {
        return tokio::net::TcpListener::bind(addr).await;
    }
    let ip = gateway.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let saved: Option<Saved> = crate::persist::read(&data_dir.join(SAVED)).ok().flatten();
    if let Some(saved) = saved
        && let Ok(listener) = tokio::net::TcpListener::bind((ip, saved.port)).await
    {
        return Ok(listener);
    }
    let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
    let port = listener.local_addr()?.port();
    if let Err(error) = crate::persist::write(data_dir, SAVED, &Saved { port }) {
        tracing::warn!(%error, "cannot remember the metadata endpoint port");
    }
    Ok(listener)
}

/// Serves the endpoint on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Engine,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(engine))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ContainerStatus;
    use berth_types::LogDriver;

    fn snapshot() -> TaskSnapshot {
        TaskSnapshot {
            cluster: "arn:aws:ecs:us-east-1:000000000000:cluster/default".into(),
            task_arn: "arn:aws:ecs:us-east-1:000000000000:task/default/abc".into(),
            family: "web".into(),
            revision: "3".into(),
            desired_status: "RUNNING".into(),
            known_status: "RUNNING".into(),
            cpu: Some(256),
            memory_mib: Some(512),
            pull_started_at: Some(Timestamp::from_millis(1_700_000_000_000)),
            pull_stopped_at: Some(Timestamp::from_millis(1_700_000_001_500)),
            execution_stopped_at: None,
            availability_zone: Some("local-1a".into()),
            network_mode: NetworkMode::Bridge,
            network_interface: None,
            launch_type: "EC2".into(),
            containers: vec![ContainerSnapshot {
                name: "app".into(),
                token: "tok".into(),
                container_arn: "arn:aws:ecs:us-east-1:000000000000:container/default/abc/1".into(),
                docker_id: Some("d0c".into()),
                image: "busybox".into(),
                image_id: Some("sha256:1".into()),
                desired_status: "RUNNING".into(),
                known_status: "RUNNING".into(),
                exit_code: None,
                cpu: 10,
                memory: Some(64),
                ports: vec![PortBinding {
                    container_port: 80,
                    host_port: 49153,
                    protocol: TransportProtocol::Tcp,
                }],
                log_configuration: Some(LogConfiguration {
                    log_driver: LogDriver::Awslogs,
                    options: Some(BTreeMap::from([("awslogs-group".into(), "/g".into())])),
                    secret_options: None,
                }),
            }],
        }
    }

    fn info() -> ContainerInfo {
        ContainerInfo {
            id: "d0c".into(),
            name: "ecs-web-3-app-1234".into(),
            labels: BTreeMap::from([("com.amazonaws.ecs.container-name".into(), "app".into())]),
            status: ContainerStatus::Running,
            exit_code: None,
            oom_killed: false,
            health: None,
            image_digest: None,
            port_bindings: vec![],
            started_at: Some(Timestamp::from_millis(1_700_000_002_000)),
            finished_at: None,
            created_at: Some(Timestamp::from_millis(1_700_000_001_600)),
            networks: vec![("bridge".into(), vec!["172.17.0.5".into()])],
        }
    }

    #[test]
    fn task_json_has_ecs_field_names() {
        let task = snapshot();
        let json = task_json(&task, &[Some(info())]);
        assert_eq!(json["Cluster"], task.cluster);
        assert_eq!(json["TaskARN"], task.task_arn);
        assert_eq!(json["Family"], "web");
        assert_eq!(json["Revision"], "3");
        assert_eq!(json["DesiredStatus"], "RUNNING");
        assert_eq!(json["KnownStatus"], "RUNNING");
        assert_eq!(json["Limits"], json!({"CPU": 0.25, "Memory": 512}));
        assert_eq!(json["PullStartedAt"], "2023-11-14T22:13:20Z");
        assert_eq!(json["PullStoppedAt"], "2023-11-14T22:13:21.5Z");
        assert_eq!(json["AvailabilityZone"], "local-1a");
        assert_eq!(json["LaunchType"], "EC2");
        assert!(json.get("ExecutionStoppedAt").is_none());
        let c = &json["Containers"][0];
        assert_eq!(c["DockerId"], "d0c");
        assert_eq!(c["Name"], "app");
        assert_eq!(c["DockerName"], "ecs-web-3-app-1234");
        assert_eq!(c["Image"], "busybox");
        assert_eq!(c["ImageID"], "sha256:1");
        assert_eq!(c["Labels"]["com.amazonaws.ecs.container-name"], "app");
        assert_eq!(c["Limits"], json!({"CPU": 10, "Memory": 64}));
        assert_eq!(c["Type"], "NORMAL");
        assert_eq!(c["CreatedAt"], "2023-11-14T22:13:21.6Z");
        assert_eq!(c["StartedAt"], "2023-11-14T22:13:22Z");
        assert_eq!(
            c["Networks"],
            json!([{"NetworkMode": "bridge", "IPv4Addresses": ["172.17.0.5"]}])
        );
        assert_eq!(
            c["Ports"],
            json!([{"ContainerPort": 80, "Protocol": "tcp", "HostPort": 49153, "HostIp": "0.0.0.0"}])
        );
        assert_eq!(c["LogDriver"], "awslogs");
        assert_eq!(c["LogOptions"]["awslogs-group"], "/g");
        assert_eq!(c["ContainerARN"], task.containers[0].container_arn);
    }

    #[test]
    fn container_json_without_runtime_details() {
        let mut task = snapshot();
        task.cpu = None;
        task.memory_mib = None;
        task.containers[0].docker_id = None;
        task.containers[0].known_status = "PENDING".into();
        let c = container_json(&task, &task.containers[0], None);
        assert!(c.get("DockerId").is_none() && c.get("DockerName").is_none());
        assert_eq!(c["KnownStatus"], "PENDING");
        assert_eq!(c["Networks"], json!([{"NetworkMode": "bridge"}]));
        assert!(task_json(&task, &[None]).get("Limits").is_none());
    }

    #[test]
    fn awsvpc_containers_show_the_task_address() {
        let mut task = snapshot();
        task.network_mode = NetworkMode::Awsvpc;
        task.launch_type = "FARGATE".into();
        task.network_interface = Some(TaskNetworkInterface {
            attachment_arn: "arn:attachment".into(),
            ipv4_address: "100.64.0.9".into(),
            mac_address: "0a:58:64:40:00:09".into(),
            subnet_cidr: "100.64.0.0/22".into(),
        });
        task.containers[0].ports[0].host_port = 80;
        task.containers[0].ports[0].container_port = 80;
        let mut joined = info();
        joined.networks.clear();
        let json = task_json(&task, &[Some(joined)]);
        assert_eq!(json["LaunchType"], "FARGATE");
        let c = &json["Containers"][0];
        assert_eq!(
            c["Networks"],
            json!([{
                "NetworkMode": "awsvpc",
                "IPv4Addresses": ["100.64.0.9"],
                "AttachmentIndex": 0,
                "MACAddress": "0a:58:64:40:00:09",
                "IPv4SubnetCIDRBlock": "100.64.0.0/22",
            }])
        );
        assert_eq!(c["Ports"][0]["HostIp"], "100.64.0.9");
    }
}
