//! [`ContainerRuntime`] on the local Docker Engine through bollard: turns a
//! [`CreateSpec`] (an ECS container definition plus what the engine resolved)
//! into Docker's create body, and Docker's events and inspect answers back
//! into runtime-neutral ones.
//!
//! Task networking for awsvpc: the task network is a user-defined bridge
//! with an explicit subnet, which Docker keeps (its iptables rules for the
//! bridge still serve the tasks), but no container is put on it through
//! Docker. A task's namespace is a pause container with network mode
//! `none`, imported as an image from [`super::pause`] the first time, which
//! [`super::veth`] then plugs into the network's bridge with the task's
//! address and MAC; the task's containers run with `container:<pause id>`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use berth_types::{ContainerDefinition, HealthStatus, NetworkMode, Timestamp, TransportProtocol};
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, DeviceMapping,
    HealthConfig, HealthStatusEnum, HostConfig, HostConfigLogConfig, Ipam, IpamConfig,
    Mount as DockerMount, MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig,
    NetworkCreateRequest, PortBinding as DockerPortBinding, ResourcesUlimits,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::network::{self, Subnet};
use super::pause::{PAUSE_IMAGE, PAUSE_PROGRAM};
use super::veth;
use super::{
    BoxFuture, ContainerInfo, ContainerRuntime, ContainerStatus, CreateSpec, EventStream,
    ImageInfo, LABEL_OWNER, LABEL_TASK_ARN, LABEL_WARM_NAMESPACE, LogLine, LogStream, MountSource,
    NamespaceSpec, PortBinding, RuntimeError, RuntimeEvent, RuntimeEventKind, RuntimeVersion,
    TaskAddress, TaskNetwork,
};

// Docker's own HTTP timeout must outlast the longest `docker stop` (ECS
// allows stopTimeout up to 120 s) and slow pulls.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(600);
const EVENTS_RETRY: Duration = Duration::from_secs(1);
/// Lines read ahead of the log shipper per container.
const LOG_LINES_AHEAD: usize = 1024;
// Docker's minimum memory limit; lower values fail the create.
const NANOS_PER_SEC: i64 = 1_000_000_000;
const MIB: i64 = 1024 * 1024;
/// The network option naming a bridge network's Linux bridge; without it,
/// Docker names the bridge `br-` and the first 12 characters of the
/// network's id.
const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// The Docker runtime. Cloning shares the connection.
#[derive(Clone, Debug)]
pub struct DockerRuntime {
    docker: Docker,
    /// Whether the pause image is known to be on the engine, so a task's
    /// start does not ask each time; held while the image is checked and
    /// imported, so tasks starting together import it once.
    pause_image: Arc<tokio::sync::Mutex<bool>>,
}

impl DockerRuntime {
    /// Connects to the local socket (`DOCKER_HOST=unix://…` or
    /// `/var/run/docker.sock`) and negotiates the API version down to what
    /// the engine speaks.
    pub async fn connect() -> Result<Self, RuntimeError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(failed)?
            .with_timeout(DOCKER_TIMEOUT)
            .negotiate_version()
            .await
            .map_err(failed)?;
        Ok(Self {
            docker,
            pause_image: Arc::default(),
        })
    }

    /// Imports the pause image unless the engine has it.
    async fn ensure_pause_image(&self) -> Result<(), RuntimeError> {
        let mut present = self.pause_image.lock().await;
        if *present {
            return Ok(());
        }
        if self.inspect_image(PAUSE_IMAGE).await?.is_some() {
            *present = true;
            return Ok(());
        }
        let root = super::pause::root_filesystem().ok_or_else(|| {
            RuntimeError::Failed(format!(
                "no pause program for {} hosts",
                std::env::consts::ARCH
            ))
        })?;
        let (repo, tag) = PAUSE_IMAGE
            .rsplit_once(':')
            .unwrap_or((PAUSE_IMAGE, "latest"));
        let options = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .changes(vec![format!("CMD [\"{PAUSE_PROGRAM}\"]")])
            .build();
        let mut progress =
            self.docker
                .create_image(Some(options), Some(bollard::body_full(root.into())), None);
        while let Some(step) = progress.next().await {
            let step = step.map_err(failed)?;
            if let Some(error) = step.error_detail.and_then(|d| d.message) {
                return Err(RuntimeError::Failed(error));
            }
        }
        tracing::info!(image = PAUSE_IMAGE, "imported the pause image");
        *present = true;
        Ok(())
    }

    /// Every container, running or not, that `filters` (Docker's list
    /// filters) select, inspected.
    async fn list(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(filters)
            .build();
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(failed)?;
        let mut all = Vec::with_capacity(summaries.len());
        for id in summaries.into_iter().filter_map(|s| s.id) {
            match self.inspect(&id).await {
                Ok(info) => all.push(info),
                // Removed between the list and the inspect.
                Err(RuntimeError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(all)
    }

    /// The underlying client, for callers that need more than the trait.
    pub fn client(&self) -> &Docker {
        &self.docker
    }
}

fn failed(error: DockerError) -> RuntimeError {
    match error {
        DockerError::DockerResponseServerError {
            status_code: 404,
            message,
        } => RuntimeError::NotFound(message),
        // The CLI's wording, which is what ECS puts in its reasons.
        DockerError::DockerResponseServerError { message, .. } => {
            RuntimeError::Failed(format!("Error response from daemon: {message}"))
        }
        DockerError::RequestTimeoutError => RuntimeError::Timeout(DOCKER_TIMEOUT),
        other => RuntimeError::Failed(other.to_string()),
    }
}

fn protocol_name(protocol: TransportProtocol) -> &'static str {
    match protocol {
        TransportProtocol::Tcp => "tcp",
        TransportProtocol::Udp => "udp",
    }
}

fn seconds_to_nanos(seconds: Option<i32>, default: i64) -> i64 {
    i64::from(seconds.unwrap_or(0))
        .max(0)
        .checked_mul(NANOS_PER_SEC)
        .filter(|n| *n > 0)
        .unwrap_or(default * NANOS_PER_SEC)
}

/// The Docker HEALTHCHECK of an ECS health check, with ECS's defaults
/// (interval 30 s, timeout 5 s, retries 3, no start period).
fn health_config(definition: &ContainerDefinition) -> Option<HealthConfig> {
    let check = definition.health_check.as_ref()?;
    Some(HealthConfig {
        test: Some(check.command.clone()),
        interval: Some(seconds_to_nanos(check.interval, 30)),
        timeout: Some(seconds_to_nanos(check.timeout, 5)),
        retries: Some(i64::from(check.retries.unwrap_or(3).max(1))),
        start_period: Some(i64::from(check.start_period.unwrap_or(0).max(0)) * NANOS_PER_SEC),
        start_interval: None,
    })
}

/// CPU shares as the ECS agent sets them: below Docker's minimum of 2 (the
/// ECS default 0 included) becomes 2.
fn cpu_shares(cpu: i32) -> i64 {
    i64::from(cpu).clamp(2, 262_144)
}

/// Builds Docker's create body. Pure, so it is unit tested without Docker.
pub fn create_body(spec: &CreateSpec) -> ContainerCreateBody {
    let def = &spec.definition;
    let mut labels: HashMap<String, String> = def
        .docker_labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    // The agent's labels win: recovery depends on them.
    labels.extend(spec.labels.clone());

    let mut env: Vec<String> = def
        .environment
        .iter()
        .flatten()
        .filter_map(|kv| {
            Some(format!(
                "{}={}",
                kv.name.as_deref()?,
                kv.value.as_deref().unwrap_or("")
            ))
        })
        .collect();
    env.extend(spec.extra_env.iter().map(|(k, v)| format!("{k}={v}")));

    // Docker refuses ports, a hostname, DNS settings and extra hosts on a
    // container that joins another's namespace: they are the pause
    // container's.
    let joined = spec.network_namespace.as_deref();
    let network_mode = match (joined, spec.network_mode) {
        (Some(id), _) => format!("container:{id}"),
        (None, NetworkMode::Host) => "host".to_owned(),
        (None, NetworkMode::None) => "none".to_owned(),
        // An awsvpc task without an interface (its control plane allocated
        // none) gets the default bridge.
        (None, NetworkMode::Bridge | NetworkMode::Awsvpc) => "bridge".to_owned(),
    };
    let bridge = network_mode == "bridge";
    let exposed_ports: Vec<String> = if bridge {
        spec.port_bindings
            .iter()
            .map(|b| format!("{}/{}", b.container_port, protocol_name(b.protocol)))
            .collect()
    } else {
        Vec::new()
    };
    let mut port_bindings: HashMap<String, Option<Vec<DockerPortBinding>>> = HashMap::new();
    if bridge {
        for binding in &spec.port_bindings {
            port_bindings
                .entry(format!(
                    "{}/{}",
                    binding.container_port,
                    protocol_name(binding.protocol)
                ))
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(DockerPortBinding {
                    host_ip: Some(String::new()),
                    host_port: Some(binding.host_port.to_string()),
                });
        }
    }

    let mut binds = Vec::new();
    let mut mounts = Vec::new();
    for mount in &spec.mounts {
        match &mount.source {
            MountSource::HostPath(path) => binds.push(format!(
                "{path}:{}{}",
                mount.target,
                if mount.read_only { ":ro" } else { "" }
            )),
            MountSource::Volume {
                name,
                driver,
                driver_opts,
                labels,
            } => mounts.push(DockerMount {
                target: Some(mount.target.clone()),
                source: Some(name.clone()),
                typ: Some(MountType::VOLUME),
                read_only: Some(mount.read_only),
                volume_options: Some(MountVolumeOptions {
                    labels: (!labels.is_empty()).then(|| labels.clone().into_iter().collect()),
                    driver_config: driver
                        .as_ref()
                        .map(|driver| MountVolumeOptionsDriverConfig {
                            name: Some(driver.clone()),
                            options: Some(driver_opts.clone().into_iter().collect()),
                        }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    let linux = def.linux_parameters.as_ref();
    let tmpfs: HashMap<String, String> = linux
        .and_then(|l| l.tmpfs.as_ref())
        .into_iter()
        .flatten()
        .map(|t| {
            let mut options = vec![format!("size={}m", t.size.max(1))];
            options.extend(t.mount_options.iter().flatten().cloned());
            (t.container_path.clone(), options.join(","))
        })
        .collect();
    let devices: Vec<DeviceMapping> = linux
        .and_then(|l| l.devices.as_ref())
        .into_iter()
        .flatten()
        .map(|d| {
            let permissions: String = match &d.permissions {
                Some(perms) if !perms.is_empty() => perms
                    .iter()
                    .map(|p| match p {
                        berth_types::DeviceCgroupPermission::Read => 'r',
                        berth_types::DeviceCgroupPermission::Write => 'w',
                        berth_types::DeviceCgroupPermission::Mknod => 'm',
                    })
                    .collect(),
                _ => "rwm".to_owned(),
            };
            DeviceMapping {
                path_on_host: Some(d.host_path.clone()),
                path_in_container: Some(
                    d.container_path
                        .clone()
                        .unwrap_or_else(|| d.host_path.clone()),
                ),
                cgroup_permissions: Some(permissions),
            }
        })
        .collect();
    let ulimits: Vec<ResourcesUlimits> = def
        .ulimits
        .iter()
        .flatten()
        .map(|u| ResourcesUlimits {
            name: serde_json::to_value(u.name)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned)),
            soft: Some(i64::from(u.soft_limit)),
            hard: Some(i64::from(u.hard_limit)),
        })
        .collect();
    let log_config = def.log_configuration.as_ref().map(|log| {
        let driver = serde_json::to_value(log.log_driver)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "json-file".to_owned());
        match driver.as_str() {
            // Drivers that ship to AWS cannot work here; the container logs
            // locally and the agent's log capture (not yet built) ships them.
            "awslogs" | "awsfirelens" | "splunk" => HostConfigLogConfig {
                typ: Some("json-file".to_owned()),
                config: None,
            },
            _ => HostConfigLogConfig {
                typ: Some(driver),
                config: log.options.clone().map(|o| o.into_iter().collect()),
            },
        }
    });

    let host_config = HostConfig {
        cpu_shares: Some(cpu_shares(def.cpu)),
        memory: def.memory.filter(|m| *m > 0).map(|m| i64::from(m) * MIB),
        memory_reservation: def
            .memory_reservation
            .filter(|m| *m > 0)
            .map(|m| i64::from(m) * MIB),
        cgroup_parent: spec.cgroup_parent.clone(),
        network_mode: Some(network_mode),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        binds: (!binds.is_empty()).then_some(binds),
        mounts: (!mounts.is_empty()).then_some(mounts),
        volumes_from: (!spec.volumes_from.is_empty()).then(|| spec.volumes_from.clone()),
        privileged: def.privileged,
        readonly_rootfs: def.readonly_root_filesystem,
        ulimits: (!ulimits.is_empty()).then_some(ulimits),
        cap_add: linux
            .and_then(|l| l.capabilities.as_ref())
            .and_then(|c| c.add.clone()),
        cap_drop: linux
            .and_then(|l| l.capabilities.as_ref())
            .and_then(|c| c.drop.clone()),
        init: linux.and_then(|l| l.init_process_enabled),
        shm_size: linux
            .and_then(|l| l.shared_memory_size)
            .filter(|s| *s > 0)
            .map(|s| i64::from(s) * MIB),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        devices: (!devices.is_empty()).then_some(devices),
        memory_swappiness: linux.and_then(|l| l.swappiness).map(i64::from),
        dns: def.dns_servers.clone().filter(|_| joined.is_none()),
        dns_search: def.dns_search_domains.clone().filter(|_| joined.is_none()),
        extra_hosts: def
            .extra_hosts
            .as_ref()
            .filter(|_| joined.is_none())
            .map(|hosts| {
                hosts
                    .iter()
                    .map(|h| format!("{}:{}", h.hostname, h.ip_address))
                    .collect()
            }),
        security_opt: def.docker_security_options.clone(),
        sysctls: def.system_controls.as_ref().map(|controls| {
            controls
                .iter()
                .filter_map(|c| Some((c.namespace.clone()?, c.value.clone().unwrap_or_default())))
                .collect()
        }),
        log_config,
        ..Default::default()
    };

    ContainerCreateBody {
        image: Some(spec.image.clone()),
        hostname: def.hostname.clone().filter(|_| joined.is_none()),
        user: def.user.clone(),
        env: Some(env),
        cmd: def.command.clone(),
        entrypoint: def.entry_point.clone(),
        working_dir: def.working_directory.clone(),
        labels: Some(labels),
        exposed_ports: (!exposed_ports.is_empty()).then_some(exposed_ports),
        healthcheck: health_config(def),
        network_disabled: matches!(spec.network_mode, NetworkMode::None).then_some(true),
        open_stdin: def.interactive,
        tty: def.pseudo_terminal,
        stop_timeout: Some(i64::try_from(spec.stop_timeout.as_secs()).unwrap_or(i64::MAX)),
        host_config: Some(host_config),
        ..Default::default()
    }
}

fn non_empty(values: &[String]) -> Option<Vec<String>> {
    (!values.is_empty()).then(|| values.to_vec())
}

/// Builds the pause container's create body: the pause program in a
/// namespace of its own (`none`: loopback only, and none of libnetwork's
/// endpoint setup), with the settings joined containers cannot have, which
/// Docker honours in that mode as on a network: hostname, DNS servers and
/// search domains, extra hosts. Pure, so it is unit tested without Docker.
pub fn namespace_body(spec: &NamespaceSpec) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(PAUSE_IMAGE.to_owned()),
        cmd: Some(vec![PAUSE_PROGRAM.to_owned()]),
        hostname: spec.hostname.clone(),
        labels: Some(spec.labels.clone().into_iter().collect()),
        host_config: Some(HostConfig {
            network_mode: Some("none".to_owned()),
            cgroup_parent: spec.cgroup_parent.clone(),
            dns: non_empty(&spec.dns_servers),
            dns_search: non_empty(&spec.dns_search_domains),
            extra_hosts: non_empty(&spec.extra_hosts),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Linux bridge of bridge network `id`.
fn bridge_name(id: &str, options: Option<&HashMap<String, String>>) -> String {
    options
        .and_then(|o| o.get(BRIDGE_NAME_OPTION))
        .filter(|name| !name.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("br-{}", id.get(..12).unwrap_or(id)))
}

/// The line Docker writes into a container's `/etc/hosts` for its address
/// on a network, so the task's hostname resolves to its address as it did
/// when Docker attached the pause container.
fn hosts_line(address: &str, hostname: &str) -> String {
    format!("{address}\t{hostname}\n")
}

/// Docker's answer when a requested subnet overlaps another network's.
fn is_overlap(error: &DockerError) -> bool {
    matches!(error, DockerError::DockerResponseServerError { message, .. }
        if message.to_ascii_lowercase().contains("overlap"))
}

/// The IPv4 subnets of every network on the engine.
async fn taken_subnets(docker: &Docker) -> Result<Vec<Subnet>, RuntimeError> {
    let networks = docker
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .map_err(failed)?;
    Ok(networks
        .into_iter()
        .flat_map(|n| n.ipam.and_then(|ipam| ipam.config).unwrap_or_default())
        .filter_map(|config| Subnet::parse(config.subnet.as_deref()?))
        .collect())
}

fn parse_time(value: Option<&str>) -> Option<Timestamp> {
    // Docker uses RFC 3339 with nanoseconds, and year 1 for "never".
    let value = value?;
    if value.starts_with("0001-") {
        return None;
    }
    let parsed =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).ok()?;
    Some(Timestamp::from_millis(
        i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok()?,
    ))
}

/// Splits `<RFC 3339 nanos timestamp> <message>` (Docker's `timestamps=1`
/// framing) into the timestamp in nanoseconds and the message without its
/// trailing newline.
pub fn parse_log_line(line: &[u8]) -> Option<(i128, String)> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let space = line.iter().position(|b| *b == b' ').unwrap_or(line.len());
    let stamp = std::str::from_utf8(&line[..space]).ok()?;
    let parsed =
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()?;
    let message = line.get(space + 1..).unwrap_or_default();
    Some((
        parsed.unix_timestamp_nanos(),
        String::from_utf8_lossy(message).into_owned(),
    ))
}

/// Turns one frame of Docker's log stream into lines. Multiplexed frames
/// (stdout/stderr) are whole log entries; TTY output arrives in arbitrary
/// chunks, so it is split on newlines with the remainder kept in `carry`.
fn frame_lines(output: bollard::container::LogOutput, carry: &mut Vec<u8>) -> Vec<(bool, Vec<u8>)> {
    use bollard::container::LogOutput;
    match output {
        LogOutput::StdOut { message } => vec![(false, message.to_vec())],
        LogOutput::StdErr { message } => vec![(true, message.to_vec())],
        LogOutput::Console { message } => {
            carry.extend_from_slice(&message);
            let mut lines = Vec::new();
            while let Some(end) = carry.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = carry.drain(..=end).collect();
                lines.push((false, line));
            }
            lines
        }
        LogOutput::StdIn { .. } => Vec::new(),
    }
}

async fn follow_logs(
    docker: Docker,
    id: String,
    since: Option<i128>,
    tx: tokio::sync::mpsc::Sender<Result<LogLine, RuntimeError>>,
) {
    // Docker interleaves stdout and stderr, so within one stream a line may
    // carry an earlier timestamp than the line before it: lines are only
    // filtered against where this stream resumed, never against each other.
    let mut resume_after = since;
    let mut latest = since;
    loop {
        let since = resume_after;
        let mut builder = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .timestamps(true);
        if let Some(nanos) = since {
            // Docker's `since` is in whole seconds here; later lines of that
            // second are told apart by their timestamps below.
            let seconds = i32::try_from(nanos.div_euclid(1_000_000_000)).unwrap_or(0);
            builder = builder.since(seconds.max(0));
        }
        let mut stream = docker.logs(&id, Some(builder.build()));
        let mut carry = Vec::new();
        let mut failed = false;
        while let Some(item) = stream.next().await {
            let frame = match item {
                Ok(frame) => frame,
                Err(error) => {
                    tracing::debug!(%error, id, "docker log stream broke");
                    failed = true;
                    break;
                }
            };
            for (stderr, raw) in frame_lines(frame, &mut carry) {
                let Some((nanos, message)) = parse_log_line(&raw) else {
                    continue;
                };
                if since.is_some_and(|s| nanos <= s) {
                    continue;
                }
                latest = latest.max(Some(nanos));
                let line = LogLine {
                    timestamp_nanos: nanos,
                    stderr,
                    message,
                };
                if tx.send(Ok(line)).await.is_err() {
                    return;
                }
            }
        }
        // The stream ends when the container exits, or when the connection
        // drops (daemon restart, client timeout): go on while it runs.
        resume_after = latest;
        match docker.inspect_container(&id, None).await {
            Ok(inspect)
                if inspect
                    .state
                    .as_ref()
                    .and_then(|s| s.running)
                    .unwrap_or(false) =>
            {
                tokio::time::sleep(if failed { EVENTS_RETRY } else { Duration::ZERO }).await;
            }
            Ok(_) => return,
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => return,
            Err(error) => {
                let _ = tx.send(Err(failed_error(error))).await;
                return;
            }
        }
    }
}

async fn append(path: &str, line: &str) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    let mut file = tokio::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .await?;
    file.write_all(line.as_bytes()).await
}

fn failed_error(error: DockerError) -> RuntimeError {
    failed(error)
}

fn health_from_docker(status: Option<HealthStatusEnum>) -> Option<HealthStatus> {
    match status? {
        HealthStatusEnum::HEALTHY => Some(HealthStatus::Healthy),
        HealthStatusEnum::UNHEALTHY => Some(HealthStatus::Unhealthy),
        HealthStatusEnum::STARTING => Some(HealthStatus::Unknown),
        HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => None,
    }
}

fn container_info(inspect: ContainerInspectResponse) -> ContainerInfo {
    let state = inspect.state.unwrap_or_default();
    let status = match state.status {
        Some(
            ContainerStateStatusEnum::RUNNING
            | ContainerStateStatusEnum::PAUSED
            | ContainerStateStatusEnum::RESTARTING,
        ) => ContainerStatus::Running,
        Some(ContainerStateStatusEnum::CREATED) | None | Some(ContainerStateStatusEnum::EMPTY) => {
            ContainerStatus::Created
        }
        Some(_) => ContainerStatus::Exited,
    };
    let config = inspect.config.unwrap_or_default();
    let labels: BTreeMap<String, String> = config.labels.unwrap_or_default().into_iter().collect();
    let mut port_bindings = Vec::new();
    for (key, bindings) in inspect
        .host_config
        .and_then(|h| h.port_bindings)
        .unwrap_or_default()
    {
        let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(container_port) = port.parse::<u16>() else {
            continue;
        };
        let protocol = if proto == "udp" {
            TransportProtocol::Udp
        } else {
            TransportProtocol::Tcp
        };
        for binding in bindings.unwrap_or_default() {
            if let Some(host_port) = binding.host_port.and_then(|p| p.parse::<u16>().ok()) {
                port_bindings.push(PortBinding {
                    container_port,
                    host_port,
                    protocol,
                });
            }
        }
    }
    port_bindings.sort_by_key(|b| (b.container_port, b.host_port));
    let mut networks: Vec<(String, Vec<String>)> = inspect
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, endpoint)| {
            let ips = endpoint
                .ip_address
                .filter(|ip| !ip.is_empty())
                .into_iter()
                .collect();
            (name, ips)
        })
        .collect();
    networks.sort();
    ContainerInfo {
        created_at: parse_time(inspect.created.as_deref()),
        networks,
        id: inspect.id.unwrap_or_default(),
        name: inspect
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        labels,
        exit_code: (status == ContainerStatus::Exited)
            .then(|| state.exit_code.and_then(|c| i32::try_from(c).ok()))
            .flatten(),
        status,
        oom_killed: state.oom_killed.unwrap_or(false),
        health: health_from_docker(state.health.and_then(|h| h.status)),
        image_digest: inspect.image,
        port_bindings,
        started_at: parse_time(state.started_at.as_deref()),
        finished_at: parse_time(state.finished_at.as_deref()),
    }
}

fn event_kind(action: &str, attributes: &HashMap<String, String>) -> Option<RuntimeEventKind> {
    match action {
        "start" => Some(RuntimeEventKind::Started),
        "die" => Some(RuntimeEventKind::Died {
            exit_code: attributes.get("exitCode").and_then(|c| c.parse().ok()),
        }),
        "oom" => Some(RuntimeEventKind::OutOfMemory),
        _ => {
            let status = action
                .strip_prefix("health_status")?
                .trim_start_matches(':')
                .trim();
            Some(RuntimeEventKind::Health(match status {
                "healthy" => HealthStatus::Healthy,
                "unhealthy" => HealthStatus::Unhealthy,
                _ => HealthStatus::Unknown,
            }))
        }
    }
}

impl ContainerRuntime for DockerRuntime {
    fn version(&self) -> BoxFuture<'_, Result<RuntimeVersion, RuntimeError>> {
        Box::pin(async move {
            let version = self.docker.version().await.map_err(failed)?;
            Ok(RuntimeVersion {
                server_version: version.version.unwrap_or_default(),
                api_version: self.docker.client_version().to_string(),
            })
        })
    }

    fn inspect_image<'a>(
        &'a self,
        image: &'a str,
    ) -> BoxFuture<'a, Result<Option<ImageInfo>, RuntimeError>> {
        Box::pin(async move {
            match self.docker.inspect_image(image).await {
                Ok(inspect) => Ok(Some(ImageInfo {
                    digest: inspect
                        .repo_digests
                        .into_iter()
                        .flatten()
                        .find_map(|d| d.split_once('@').map(|(_, digest)| digest.to_owned()))
                        .or(inspect.id),
                })),
                Err(DockerError::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(None),
                Err(e) => Err(failed(e)),
            }
        })
    }

    fn pull_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let options = CreateImageOptionsBuilder::new().from_image(image).build();
            let mut progress = self.docker.create_image(Some(options), None, None);
            while let Some(step) = progress.next().await {
                let step = step.map_err(failed)?;
                if let Some(error) = step.error_detail.and_then(|d| d.message) {
                    return Err(RuntimeError::Failed(error));
                }
            }
            Ok(())
        })
    }

    fn create<'a>(&'a self, spec: &'a CreateSpec) -> BoxFuture<'a, Result<String, RuntimeError>> {
        Box::pin(async move {
            let options = CreateContainerOptionsBuilder::new()
                .name(&spec.name)
                .build();
            let created = self
                .docker
                .create_container(Some(options), create_body(spec))
                .await
                .map_err(|e| match failed(e) {
                    // A missing image is a create failure, not a lookup miss.
                    RuntimeError::NotFound(m) => {
                        RuntimeError::Failed(format!("Error response from daemon: {m}"))
                    }
                    other => other,
                })?;
            Ok(created.id)
        })
    }

    fn start<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move { self.docker.start_container(id, None).await.map_err(failed) })
    }

    fn stop<'a>(
        &'a self,
        id: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let seconds = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
            let options = StopContainerOptionsBuilder::new().t(seconds).build();
            match self.docker.stop_container(id, Some(options)).await {
                // 304: already stopped.
                Err(DockerError::DockerResponseServerError {
                    status_code: 304, ..
                }) => Ok(()),
                other => other.map_err(failed),
            }
        })
    }

    fn kill<'a>(&'a self, id: &'a str, signal: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let options = KillContainerOptionsBuilder::new().signal(signal).build();
            self.docker
                .kill_container(id, Some(options))
                .await
                .map_err(failed)
        })
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let options = RemoveContainerOptionsBuilder::new().v(true).build();
            self.docker
                .remove_container(id, Some(options))
                .await
                .map_err(failed)
        })
    }

    fn inspect<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<ContainerInfo, RuntimeError>> {
        Box::pin(async move {
            self.docker
                .inspect_container(id, None)
                .await
                .map(container_info)
                .map_err(failed)
        })
    }

    fn list_managed(&self) -> BoxFuture<'_, Result<Vec<ContainerInfo>, RuntimeError>> {
        Box::pin(async move {
            let filters = HashMap::from([("label".to_owned(), vec![LABEL_TASK_ARN.to_owned()])]);
            self.list(&filters).await
        })
    }

    fn events(&self) -> EventStream {
        let docker = self.docker.clone();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            // Resume from the last event seen, so a dropped stream (engine
            // restart) loses nothing.
            let mut since: Option<i64> = None;
            loop {
                let filters = HashMap::from([
                    ("type".to_owned(), vec!["container".to_owned()]),
                    ("label".to_owned(), vec![LABEL_TASK_ARN.to_owned()]),
                    (
                        "event".to_owned(),
                        ["start", "die", "oom", "health_status"]
                            .map(str::to_owned)
                            .to_vec(),
                    ),
                ]);
                let mut builder = EventsOptionsBuilder::new().filters(&filters);
                if let Some(since) = since {
                    builder = builder.since(&since.to_string());
                }
                let mut stream = docker.events(Some(builder.build()));
                while let Some(item) = stream.next().await {
                    let message = match item {
                        Ok(message) => message,
                        Err(error) => {
                            tracing::warn!(%error, "docker event stream failed");
                            break;
                        }
                    };
                    if let Some(time) = message.time {
                        since = Some(time);
                    }
                    let Some(actor) = message.actor else { continue };
                    let Some(id) = actor.id else { continue };
                    let attributes = actor.attributes.unwrap_or_default();
                    let Some(kind) = message
                        .action
                        .as_deref()
                        .and_then(|action| event_kind(action, &attributes))
                    else {
                        continue;
                    };
                    if tx
                        .send(RuntimeEvent {
                            container_id: id,
                            kind,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(EVENTS_RETRY).await;
            }
        });
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|event| (event, rx))
        }))
    }

    fn binds_host_ports(&self) -> bool {
        true
    }

    fn bridge_gateway(&self) -> BoxFuture<'_, Option<std::net::IpAddr>> {
        Box::pin(async move {
            let network = self
                .docker
                .inspect_network(
                    "bridge",
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
                .ok()?;
            let configs = network.ipam?.config?;
            configs.into_iter().find_map(|c| {
                // Engines that leave the gateway implicit use the subnet's
                // first address.
                let gateway = c.gateway.and_then(|g| g.parse::<std::net::Ipv4Addr>().ok());
                gateway
                    .or_else(|| Subnet::parse(c.subnet.as_deref()?)?.gateway())
                    .map(std::net::IpAddr::V4)
            })
        })
    }

    fn ensure_task_network<'a>(
        &'a self,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<TaskNetwork, RuntimeError>> {
        Box::pin(async move {
            let name = network::network_name(owner);
            match self
                .docker
                .inspect_network(
                    &name,
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
            {
                Ok(existing) => {
                    let subnet = existing
                        .ipam
                        .and_then(|ipam| ipam.config)
                        .unwrap_or_default()
                        .into_iter()
                        .find_map(|c| Subnet::parse(c.subnet.as_deref()?))
                        .ok_or_else(|| {
                            RuntimeError::Failed(format!(
                                "the task network {name} has no IPv4 subnet"
                            ))
                        })?;
                    let bridge = bridge_name(
                        existing.id.as_deref().unwrap_or_default(),
                        existing.options.as_ref(),
                    );
                    return Ok(TaskNetwork {
                        name,
                        subnet: subnet.to_string(),
                        bridge,
                    });
                }
                Err(DockerError::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(error) => return Err(failed(error)),
            }
            // Subnets other networks hold are skipped without asking; one
            // taken meanwhile (another agent on this engine) is refused by
            // Docker, and the next is tried.
            let taken = taken_subnets(&self.docker).await?;
            for subnet in network::candidates().filter(|c| !taken.iter().any(|t| t.overlaps(c))) {
                let request = NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".to_owned()),
                    ipam: Some(Ipam {
                        driver: Some("default".to_owned()),
                        config: Some(vec![IpamConfig {
                            subnet: Some(subnet.to_string()),
                            gateway: subnet.gateway().map(|g| g.to_string()),
                            ..Default::default()
                        }]),
                        options: None,
                    }),
                    labels: Some(HashMap::from([(LABEL_OWNER.to_owned(), owner.to_owned())])),
                    ..Default::default()
                };
                match self.docker.create_network(request).await {
                    Ok(created) => {
                        let bridge = bridge_name(&created.id, None);
                        tracing::info!(network = name, %subnet, bridge, "created the task network");
                        return Ok(TaskNetwork {
                            name,
                            subnet: subnet.to_string(),
                            bridge,
                        });
                    }
                    Err(error) if is_overlap(&error) => continue,
                    Err(error) => return Err(failed(error)),
                }
            }
            Err(RuntimeError::Failed(
                "no free /22 left in 100.64.0.0/10 for the task network".to_owned(),
            ))
        })
    }

    fn remove_task_network<'a>(
        &'a self,
        network: &'a TaskNetwork,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            // Docker knows of no container on the network: the namespaces
            // plugged into its bridge are what uses it.
            if veth::bridge_has_ports(&network.bridge) {
                return Err(RuntimeError::Failed(format!(
                    "the task network {} has task namespaces attached",
                    network.name
                )));
            }
            match self.docker.remove_network(&network.name).await {
                Err(DockerError::DockerResponseServerError {
                    status_code: 404, ..
                }) => Ok(()),
                other => other.map_err(failed),
            }
        })
    }

    fn create_namespace<'a>(
        &'a self,
        spec: &'a NamespaceSpec,
    ) -> BoxFuture<'a, Result<String, RuntimeError>> {
        Box::pin(async move {
            self.ensure_pause_image().await?;
            let options = CreateContainerOptionsBuilder::new()
                .name(&spec.name)
                .build();
            // A missing image is a failure to create, not a lookup miss.
            let as_failure = |error: DockerError| match failed(error) {
                RuntimeError::NotFound(m) => {
                    RuntimeError::Failed(format!("Error response from daemon: {m}"))
                }
                other => other,
            };
            let id = match self
                .docker
                .create_container(Some(options), namespace_body(spec))
                .await
            {
                Ok(created) => created.id,
                Err(error) => {
                    if matches!(
                        error,
                        DockerError::DockerResponseServerError {
                            status_code: 404,
                            ..
                        }
                    ) {
                        // Removed behind the agent's back: import it again
                        // next time.
                        *self.pause_image.lock().await = false;
                    }
                    return Err(as_failure(error));
                }
            };
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
            let plan = veth::Plan::new(network, address)?;
            let inspect = self
                .docker
                .inspect_container(id, None)
                .await
                .map_err(failed)?;
            let pid = inspect
                .state
                .as_ref()
                .filter(|state| state.running == Some(true))
                .and_then(|state| state.pid)
                .and_then(|pid| u32::try_from(pid).ok())
                .filter(|pid| *pid > 0)
                .ok_or_else(|| {
                    RuntimeError::Failed(format!("the pause container {id} is not running"))
                })?;
            veth::attach(&plan, pid).await?;
            // Without the line, the task's hostname would not resolve. The
            // file is the namespace's own, shared by the containers that
            // join it; one the agent cannot write (it does not see the
            // engine's files) costs that name only.
            let hostname = inspect
                .config
                .as_ref()
                .and_then(|c| c.hostname.as_deref())
                .unwrap_or_default();
            if let Some(path) = inspect
                .hosts_path
                .as_deref()
                .filter(|_| !hostname.is_empty())
            {
                let line = hosts_line(&address.ipv4_address, hostname);
                if let Err(error) = append(path, &line).await {
                    tracing::warn!(%error, path, "cannot add the task's address to its hosts file");
                }
            }
            Ok(())
        })
    }

    fn list_warm_namespaces<'a>(
        &'a self,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ContainerInfo>, RuntimeError>> {
        Box::pin(async move {
            let filters = HashMap::from([(
                "label".to_owned(),
                vec![
                    LABEL_WARM_NAMESPACE.to_owned(),
                    format!("{LABEL_OWNER}={owner}"),
                ],
            )]);
            self.list(&filters).await
        })
    }

    fn remove_namespace<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let options = RemoveContainerOptionsBuilder::new()
                .force(true)
                .v(true)
                .build();
            self.docker
                .remove_container(id, Some(options))
                .await
                .map_err(failed)
        })
    }

    fn logs(&self, id: &str, since_nanos: Option<i128>) -> LogStream {
        let (tx, rx) = tokio::sync::mpsc::channel(LOG_LINES_AHEAD);
        tokio::spawn(follow_logs(
            self.docker.clone(),
            id.to_owned(),
            since_nanos,
            tx,
        ));
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|line| (line, rx))
        }))
    }

    fn stats<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<serde_json::Value>, RuntimeError>> {
        Box::pin(async move {
            let options = StatsOptionsBuilder::new()
                .stream(false)
                .one_shot(true)
                .build();
            let mut stream = self.docker.stats(id, Some(options));
            match stream.next().await {
                Some(Ok(stats)) => serde_json::to_value(stats)
                    .map(Some)
                    .map_err(|e| RuntimeError::Failed(e.to_string())),
                Some(Err(error)) => Err(failed(error)),
                None => Ok(None),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Mount;
    use berth_types::{HealthCheck, KernelCapabilities, KeyValuePair, LinuxParameters};

    fn spec(definition: ContainerDefinition) -> CreateSpec {
        CreateSpec {
            name: "ecs-web-3-app-0a1b".into(),
            image: "busybox:test".into(),
            labels: BTreeMap::from([(LABEL_TASK_ARN.to_owned(), "arn:task".to_owned())]),
            definition,
            network_mode: NetworkMode::Bridge,
            port_bindings: vec![PortBinding {
                container_port: 8080,
                host_port: 49200,
                protocol: TransportProtocol::Tcp,
            }],
            mounts: vec![
                Mount {
                    source: MountSource::HostPath("/srv".into()),
                    target: "/data".into(),
                    read_only: true,
                },
                Mount {
                    source: MountSource::Volume {
                        name: "cache".into(),
                        driver: None,
                        driver_opts: BTreeMap::new(),
                        labels: BTreeMap::new(),
                    },
                    target: "/cache".into(),
                    read_only: false,
                },
            ],
            volumes_from: vec![],
            cgroup_parent: Some("/berth/t1".into()),
            extra_env: vec![("ECS_X".into(), "1".into())],
            stop_timeout: Duration::from_secs(30),
            network_namespace: None,
        }
    }

    #[test]
    fn create_body_carries_the_definition() {
        let definition = ContainerDefinition {
            cpu: 0,
            memory: Some(64),
            memory_reservation: Some(32),
            environment: Some(vec![KeyValuePair {
                name: Some("A".into()),
                value: Some("b".into()),
            }]),
            docker_labels: Some(BTreeMap::from([
                ("user".to_owned(), "label".to_owned()),
                (LABEL_TASK_ARN.to_owned(), "spoofed".to_owned()),
            ])),
            health_check: Some(HealthCheck {
                command: vec!["CMD-SHELL".into(), "true".into()],
                interval: Some(5),
                retries: None,
                start_period: None,
                timeout: None,
            }),
            linux_parameters: Some(LinuxParameters {
                capabilities: Some(KernelCapabilities {
                    add: Some(vec!["NET_ADMIN".into()]),
                    drop: None,
                }),
                init_process_enabled: Some(true),
                shared_memory_size: Some(64),
                ..Default::default()
            }),
            ..Default::default()
        };
        let body = create_body(&spec(definition));
        let host = body.host_config.clone().unwrap();
        assert_eq!(host.cpu_shares, Some(2));
        assert_eq!(host.memory, Some(64 * MIB));
        assert_eq!(host.memory_reservation, Some(32 * MIB));
        assert_eq!(host.cgroup_parent.as_deref(), Some("/berth/t1"));
        assert_eq!(host.binds, Some(vec!["/srv:/data:ro".to_owned()]));
        assert_eq!(host.mounts.as_ref().map(Vec::len), Some(1));
        assert_eq!(host.cap_add, Some(vec!["NET_ADMIN".to_owned()]));
        assert_eq!(host.init, Some(true));
        assert_eq!(host.shm_size, Some(64 * MIB));
        let ports = host.port_bindings.unwrap();
        assert_eq!(
            ports["8080/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("49200")
        );
        assert_eq!(body.exposed_ports, Some(vec!["8080/tcp".to_owned()]));
        let labels = body.labels.unwrap();
        assert_eq!(labels[LABEL_TASK_ARN], "arn:task");
        assert_eq!(labels["user"], "label");
        assert_eq!(body.env, Some(vec!["A=b".to_owned(), "ECS_X=1".to_owned()]));
        let health = body.healthcheck.unwrap();
        assert_eq!(health.interval, Some(5 * NANOS_PER_SEC));
        assert_eq!(health.timeout, Some(5 * NANOS_PER_SEC));
        assert_eq!(health.retries, Some(3));
        assert_eq!(body.stop_timeout, Some(30));
    }

    #[test]
    fn host_and_none_modes_publish_nothing() {
        let mut host = spec(ContainerDefinition::default());
        host.network_mode = NetworkMode::Host;
        let body = create_body(&host);
        assert_eq!(body.exposed_ports, None);
        assert_eq!(
            body.host_config.unwrap().network_mode.as_deref(),
            Some("host")
        );
        let mut none = spec(ContainerDefinition::default());
        none.network_mode = NetworkMode::None;
        let body = create_body(&none);
        assert_eq!(body.network_disabled, Some(true));
    }

    #[test]
    fn docker_events_map_to_runtime_events() {
        let attrs = HashMap::from([("exitCode".to_owned(), "3".to_owned())]);
        assert_eq!(
            event_kind("die", &attrs),
            Some(RuntimeEventKind::Died { exit_code: Some(3) })
        );
        assert_eq!(
            event_kind("health_status: unhealthy", &HashMap::new()),
            Some(RuntimeEventKind::Health(HealthStatus::Unhealthy))
        );
        assert_eq!(
            event_kind("oom", &HashMap::new()),
            Some(RuntimeEventKind::OutOfMemory)
        );
        assert_eq!(event_kind("attach", &HashMap::new()), None);
        assert_eq!(
            parse_time(Some("2024-01-02T03:04:05.678901234Z")),
            Some(Timestamp::from_millis(1_704_164_645_678))
        );
        assert_eq!(parse_time(Some("0001-01-01T00:00:00Z")), None);
    }

    fn namespace() -> NamespaceSpec {
        NamespaceSpec {
            name: "ecs-web-3-internalecspause-0a1b".into(),
            labels: BTreeMap::from([(LABEL_TASK_ARN.to_owned(), "arn:task".to_owned())]),
            cgroup_parent: Some("/berth/t1".into()),
            hostname: None,
            dns_servers: vec!["10.0.0.2".into()],
            dns_search_domains: vec![],
            extra_hosts: vec!["db:10.0.0.5".into()],
        }
    }

    #[test]
    fn pause_body_holds_a_namespace_of_its_own() {
        let body = namespace_body(&namespace());
        assert_eq!(body.image.as_deref(), Some(PAUSE_IMAGE));
        assert_eq!(body.cmd, Some(vec!["/pause".to_owned()]));
        assert_eq!(body.labels.as_ref().unwrap()[LABEL_TASK_ARN], "arn:task");
        assert_eq!(body.networking_config, None);
        assert_eq!(body.network_disabled, None);
        let host = body.host_config.clone().unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.cgroup_parent.as_deref(), Some("/berth/t1"));
        assert_eq!(host.dns, Some(vec!["10.0.0.2".to_owned()]));
        assert_eq!(host.dns_search, None);
        assert_eq!(host.extra_hosts, Some(vec!["db:10.0.0.5".to_owned()]));
    }

    #[test]
    fn bridges_are_named_as_docker_names_them() {
        let id = "21a109dc5e26cb3a33974ef2477b1e21ab26ff7b41b88fb364da7bc98ff5171c";
        assert_eq!(bridge_name(id, None), "br-21a109dc5e26");
        let options = HashMap::from([(BRIDGE_NAME_OPTION.to_owned(), "berth0".to_owned())]);
        assert_eq!(bridge_name(id, Some(&options)), "berth0");
        let empty = HashMap::from([(BRIDGE_NAME_OPTION.to_owned(), String::new())]);
        assert_eq!(bridge_name(id, Some(&empty)), "br-21a109dc5e26");
        assert_eq!(
            hosts_line("100.64.0.9", "1276f1bd6845"),
            "100.64.0.9\t1276f1bd6845\n"
        );
    }

    #[test]
    fn joined_containers_leave_the_network_to_the_pause_container() {
        let mut joined = spec(ContainerDefinition {
            hostname: Some("web".into()),
            dns_servers: Some(vec!["10.0.0.2".into()]),
            dns_search_domains: Some(vec!["corp".into()]),
            extra_hosts: Some(vec![berth_types::HostEntry {
                hostname: "db".into(),
                ip_address: "10.0.0.5".into(),
            }]),
            ..Default::default()
        });
        joined.network_mode = NetworkMode::Awsvpc;
        joined.network_namespace = Some("pause-id".into());
        let body = create_body(&joined);
        let host = body.host_config.clone().unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("container:pause-id"));
        assert_eq!(host.port_bindings, None);
        assert_eq!(body.exposed_ports, None);
        assert_eq!(body.hostname, None);
        assert_eq!(host.dns, None);
        assert_eq!(host.dns_search, None);
        assert_eq!(host.extra_hosts, None);
        assert_eq!(host.cgroup_parent.as_deref(), Some("/berth/t1"));

        // Without a namespace, awsvpc falls back to the default bridge.
        joined.network_namespace = None;
        let body = create_body(&joined);
        assert_eq!(
            body.host_config.unwrap().network_mode.as_deref(),
            Some("bridge")
        );
        assert_eq!(body.hostname.as_deref(), Some("web"));
    }

    #[test]
    fn log_lines_carry_docker_timestamps() {
        let (nanos, message) =
            parse_log_line(b"2024-01-02T03:04:05.678901234Z hello world\n").unwrap();
        assert_eq!(nanos, 1_704_164_645_678_901_234);
        assert_eq!(message, "hello world");
        assert_eq!(parse_log_line(b"2024-01-02T03:04:05Z \n").unwrap().1, "");
        assert_eq!(parse_log_line(b"garbage"), None);
        let mut carry = Vec::new();
        let lines = frame_lines(
            bollard::container::LogOutput::Console {
                message: "2024-01-02T03:04:05Z a\n2024-01-02T03:04:06Z b".into(),
            },
            &mut carry,
        );
        assert_eq!(lines.len(), 1);
        assert_eq!(carry, b"2024-01-02T03:04:06Z b");
    }
}
