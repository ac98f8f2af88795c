//! The engine on the real Docker Engine, with a busybox image built here
//! (no registry is reachable). Runs when a Docker socket exists or when
//! `CI=true`; in CI a missing Docker fails the tests instead of skipping.
//! awsvpc tasks get a task network each test makes and removes; their
//! namespaces are checked from inside (`ip` in the task's container) and
//! from the host (the veth on the network's bridge, the namespace itself).

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_agent::runtime::docker::DockerRuntime;
use berth_agent::runtime::network::Subnet;
use berth_agent::runtime::pause::PAUSE_IMAGE;
use berth_agent::runtime::veth::host_interface;
use berth_agent::runtime::{
    BoxFuture, ContainerInfo, ContainerRuntime, ContainerStatus, LABEL_CLUSTER,
    LABEL_CONTAINER_NAME, LABEL_TASK_ARN, TaskNetwork,
};
use berth_agent::{Engine, EngineConfig, Report, Reporter, StateSink, SubmitError};
use berth_types::agent::{
    ContainerSpec, DesiredStatus, PAUSE_CONTAINER_NAME, TaskNetworkInterface, TaskSpec,
};
use berth_types::{
    ContainerCondition, ContainerDefinition, ContainerDependency, NetworkMode, PortMapping,
    SubmitTaskStateChangeRequest,
};
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use tokio::sync::OnceCell;

const IMAGE: &str = "berth-agent-test-busybox:latest";

#[derive(Default)]
struct Recorder(Mutex<Vec<Report>>);

impl StateSink for Recorder {
    fn submit<'a>(&'a self, report: &'a Report) -> BoxFuture<'a, Result<(), SubmitError>> {
        Box::pin(async move {
            self.0.lock().unwrap().push(report.clone());
            Ok(())
        })
    }
}

impl Recorder {
    async fn wait(&self, status: &str, within: Duration) -> SubmitTaskStateChangeRequest {
        let deadline = Instant::now() + within;
        loop {
            let found = self.0.lock().unwrap().iter().rev().find_map(|r| match r {
                Report::Task(t) if t.status.as_deref() == Some(status) => Some(t.clone()),
                _ => None,
            });
            if let Some(found) = found {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "no {status} report within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Docker, or `None` to skip (never in CI).
async fn docker() -> Option<DockerRuntime> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !ci
        && !std::path::Path::new("/var/run/docker.sock").exists()
        && std::env::var("DOCKER_HOST").is_err()
    {
        eprintln!("skipping: no Docker socket");
        return None;
    }
    let runtime = DockerRuntime::connect()
        .await
        .expect("Docker is required here");
    build_image(&runtime).await;
    Some(runtime)
}

/// Builds the test image once per test binary: busybox from Debian's
/// busybox-static on an empty base.
async fn build_image(runtime: &DockerRuntime) {
    static BUILT: OnceCell<()> = OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            if runtime.inspect_image(IMAGE).await.unwrap().is_some() {
                return;
            }
            let busybox = std::path::Path::new("/bin/busybox");
            if !busybox.exists() {
                let status = std::process::Command::new("apt-get")
                    .args(["install", "-y", "busybox-static"])
                    .status()
                    .expect("apt-get");
                assert!(status.success(), "cannot install busybox-static");
            }
            let dir = tempfile::tempdir().unwrap();
            std::fs::copy(busybox, dir.path().join("busybox")).unwrap();
            std::fs::write(
                dir.path().join("Dockerfile"),
                "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
            )
            .unwrap();
            let output = tokio::process::Command::new("docker")
                .args(["build", "-q", "-t", IMAGE])
                .arg(dir.path())
                .output()
                .await
                .expect("docker build");
            assert!(output.status.success(), "docker build failed: {}", String::from_utf8_lossy(&output.stderr));
        })
        .await;
}

struct Case {
    runtime: Arc<DockerRuntime>,
    sink: Arc<Recorder>,
    engine: Engine,
    cluster: String,
}

/// Removes every container of a test cluster, including ones a failed
/// earlier run left behind (they carry the same task ARNs and would
/// otherwise be adopted), and the warm namespaces of the agent named after
/// it.
async fn remove_cluster_containers(runtime: &DockerRuntime, cluster: &str) {
    let warm = runtime.list_warm_namespaces(cluster).await.unwrap();
    for container in runtime
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .chain(warm)
    {
        if container.labels.get(LABEL_CLUSTER).map(String::as_str) == Some(cluster)
            || !container.labels.contains_key(LABEL_TASK_ARN)
        {
            let options = RemoveContainerOptionsBuilder::new()
                .force(true)
                .v(true)
                .build();
            let _ = runtime
                .client()
                .remove_container(&container.id, Some(options))
                .await;
        }
    }
}

impl Case {
    async fn new(runtime: DockerRuntime, cluster: &str) -> Self {
        Self::with_logs(runtime, cluster, None).await
    }

    async fn with_logs(
        runtime: DockerRuntime,
        cluster: &str,
        logs: Option<berth_agent::LogShipper>,
    ) -> Self {
        Self::with_config(runtime, cluster, |config| config.logs = logs).await
    }

    /// An engine whose agent owns a task network, named after the cluster.
    async fn awsvpc(runtime: DockerRuntime, cluster: &str) -> (Self, TaskNetwork) {
        Self::awsvpc_with(runtime, cluster, |_| {}).await
    }

    async fn awsvpc_with(
        runtime: DockerRuntime,
        cluster: &str,
        configure: impl FnOnce(&mut EngineConfig),
    ) -> (Self, TaskNetwork) {
        let network = runtime.ensure_task_network(cluster).await.unwrap();
        let case = Self::with_config(runtime, cluster, |config| {
            config.owner = cluster.to_owned();
            config.task_network = Some(network.clone());
            configure(config);
        })
        .await;
        (case, network)
    }

    async fn with_config(
        runtime: DockerRuntime,
        cluster: &str,
        configure: impl FnOnce(&mut EngineConfig),
    ) -> Self {
        remove_cluster_containers(&runtime, cluster).await;
        let runtime = Arc::new(runtime);
        let sink = Arc::new(Recorder::default());
        let mut config = EngineConfig::new(cluster);
        config.cleanup_wait = Duration::from_secs(3600);
        config.stop_timeout = Duration::from_secs(2);
        configure(&mut config);
        let (engine, _health) =
            Engine::start(runtime.clone(), Reporter::new(sink.clone(), None), config)
                .await
                .unwrap();
        Self {
            runtime,
            sink,
            engine,
            cluster: cluster.to_owned(),
        }
    }

    fn task(&self, id: &str, containers: Vec<ContainerDefinition>) -> TaskSpec {
        TaskSpec {
            task_arn: format!(
                "arn:aws:ecs:us-east-1:000000000000:task/{}/{id}",
                self.cluster
            ),
            cluster_arn: self.cluster.clone(),
            task_definition_arn: "arn:aws:ecs:us-east-1:000000000000:task-definition/t:1".into(),
            family: "t".into(),
            revision: 1,
            desired_status: DesiredStatus::Running,
            desired_version: 1,
            network_mode: NetworkMode::Bridge,
            cpu: None,
            memory_mib: None,
            containers: containers
                .into_iter()
                .map(|definition| ContainerSpec {
                    container_arn: "arn:c".into(),
                    definition: definition.into(),
                })
                .collect(),
            volumes: vec![],
            pid_mode: None,
            ipc_mode: None,
            network_interface: None,
        }
    }

    /// Removes every container of this case's cluster.
    async fn clean(self) {
        self.engine.detach();
        remove_cluster_containers(&self.runtime, &self.cluster).await;
        if let Some(cgroups) = berth_agent::cgroup::Cgroups::detect() {
            for task in [
                "exit",
                "kill",
                "oom",
                "port",
                "awsvpc",
                "gateway",
                "adopted",
                "warm",
                "warm-adopted",
                "badbridge",
            ] {
                let _ = cgroups.remove(task);
            }
        }
    }
}

fn sh(name: &str, script: &str) -> ContainerDefinition {
    ContainerDefinition {
        name: Some(name.into()),
        image: Some(IMAGE.into()),
        command: Some(vec!["sh".into(), "-c".into(), script.into()]),
        memory: Some(32),
        ..Default::default()
    }
}

fn change<'a>(
    report: &'a SubmitTaskStateChangeRequest,
    name: &str,
) -> &'a berth_types::ContainerStateChange {
    report
        .containers
        .iter()
        .flatten()
        .find(|c| c.container_name.as_deref() == Some(name))
        .unwrap()
}

#[tokio::test]
async fn exit_code_and_essential_exit_stop_the_task() {
    let Some(runtime) = docker().await else {
        return;
    };
    let case = Case::new(runtime, "berth-test-exit").await;
    let mut spec = case.task(
        "exit",
        vec![sh("quitter", "sleep 1; exit 3"), sh("sleeper", "sleep 300")],
    );
    // Exercises the task cgroup on the way.
    spec.cpu = Some(512);
    spec.memory_mib = Some(128);
    case.engine.apply(vec![spec]);
    case.sink.wait("RUNNING", Duration::from_secs(30)).await;
    let report = case.sink.wait("STOPPED", Duration::from_secs(30)).await;
    assert_eq!(
        report.reason.as_deref(),
        Some("Essential container in task exited")
    );
    assert_eq!(change(&report, "quitter").exit_code, Some(3));
    // sh as PID 1 ignores SIGTERM: killed after the 2 s stop timeout.
    assert_eq!(change(&report, "sleeper").exit_code, Some(137));
    assert!(change(&report, "quitter").runtime_id.is_some());
    case.clean().await;
}

#[tokio::test]
async fn docker_kill_is_seen_within_a_second() {
    let Some(runtime) = docker().await else {
        return;
    };
    let case = Case::new(runtime, "berth-test-kill").await;
    case.engine
        .apply(vec![case.task("kill", vec![sh("victim", "sleep 300")])]);
    let running = case.sink.wait("RUNNING", Duration::from_secs(30)).await;
    let id = change(&running, "victim").runtime_id.clone().unwrap();
    let killed = Instant::now();
    case.runtime.kill(&id, "SIGKILL").await.unwrap();
    let report = case.sink.wait("STOPPED", Duration::from_secs(5)).await;
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "took {:?}",
        killed.elapsed()
    );
    assert_eq!(change(&report, "victim").exit_code, Some(137));
    case.clean().await;
}

#[tokio::test]
async fn oom_kill_is_reported_as_out_of_memory_error() {
    let Some(runtime) = docker().await else {
        return;
    };
    let case = Case::new(runtime, "berth-test-oom").await;
    let mut hog = sh("hog", "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done");
    hog.memory = Some(8);
    case.engine.apply(vec![case.task("oom", vec![hog])]);
    let report = case.sink.wait("STOPPED", Duration::from_secs(60)).await;
    let hog = change(&report, "hog");
    assert_eq!(
        hog.reason.as_deref(),
        Some("OutOfMemoryError: Container killed due to memory usage")
    );
    assert_eq!(hog.exit_code, Some(137));
    case.clean().await;
}

#[tokio::test]
async fn dynamic_host_port_serves_http() {
    let Some(runtime) = docker().await else {
        return;
    };
    let case = Case::new(runtime, "berth-test-port").await;
    let mut web = sh(
        "web",
        "mkdir -p /www && echo hello-berth > /www/index.html && exec httpd -f -p 8080 -h /www",
    );
    web.port_mappings = Some(vec![PortMapping {
        container_port: Some(8080),
        ..Default::default()
    }]);
    case.engine.apply(vec![case.task("port", vec![web])]);
    let running = case.sink.wait("RUNNING", Duration::from_secs(30)).await;
    let binding = change(&running, "web").network_bindings.clone().unwrap()[0].clone();
    let port = u16::try_from(binding.host_port.unwrap()).unwrap();
    assert_eq!(binding.container_port, Some(8080));
    let mut body = String::new();
    for _ in 0..50 {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            stream
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let _ = stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n");
            body.clear();
            let _ = stream.read_to_string(&mut body);
            if body.contains("hello-berth") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(body.contains("hello-berth"), "got {body:?}");
    case.clean().await;
}

/// A Berth server in this process, for the agent to ship logs to.
async fn server(dir: &std::path::Path) -> berth_server::Running {
    berth_server::spawn(berth_server::Config::local(dir))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_output_arrives_via_get_log_events() {
    let Some(runtime) = docker().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let endpoint = server.endpoint();
    let client = berth_client::Client::new(
        &endpoint,
        berth_client::Credentials::new("a", "b", None),
        "us-east-1",
    )
    .unwrap();
    let shipper = berth_agent::LogShipper::new(Arc::new(client.clone()), Default::default(), None);
    let case = Case::with_logs(runtime, "berth-test-logs", Some(shipper)).await;
    let spec = case.task(
        "logs",
        vec![sh(
            "talker",
            "for i in 1 2 3; do echo out-$i; done; echo err-1 >&2; sleep 1; echo last",
        )],
    );
    case.engine.apply(vec![spec]);
    case.sink.wait("STOPPED", Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let messages = loop {
        let got: Result<serde_json::Value, _> = client
            .call_logs(
                "GetLogEvents",
                &serde_json::json!({
                    "logGroupName": "/ecs/t",
                    "logStreamName": "ecs/talker/logs",
                    "startFromHead": true,
                }),
            )
            .await;
        let messages: Vec<String> = got
            .ok()
            .and_then(|v| v["events"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect();
        if messages.len() >= 5 || Instant::now() > deadline {
            break messages;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Docker keeps stdout and stderr apart, so a stderr line written in the
    // same millisecond as stdout lines may sort either side of them; each
    // stream's own order, and every line, must hold.
    let mut all = messages.clone();
    all.sort();
    assert_eq!(all, ["err-1", "last", "out-1", "out-2", "out-3"]);
    let stdout: Vec<&str> = messages
        .iter()
        .map(String::as_str)
        .filter(|m| *m != "err-1")
        .collect();
    assert_eq!(stdout, ["out-1", "out-2", "out-3", "last"]);
    case.clean().await;
    server.stop().await.unwrap();
}

#[derive(Default)]
struct LogRecorder(Mutex<Vec<String>>);

impl berth_agent::LogSink for LogRecorder {
    fn put<'a>(
        &'a self,
        _destination: &'a berth_agent::LogDestination,
        events: &'a [berth_agent::LogEvent],
    ) -> BoxFuture<'a, Result<(), SubmitError>> {
        Box::pin(async move {
            self.0
                .lock()
                .unwrap()
                .extend(events.iter().map(|e| e.message.clone()));
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_metadata_endpoint_is_reachable_from_a_container() {
    let Some(runtime) = docker().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let gateway = runtime.bridge_gateway().await;
    assert!(gateway.is_some(), "the bridge network has a gateway");
    let listener = berth_agent::metadata::bind(None, gateway, dir.path())
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    let logs = Arc::new(LogRecorder::default());
    let runtime = Arc::new(runtime);
    let sink = Arc::new(Recorder::default());
    let cluster = "berth-test-metadata";
    remove_cluster_containers(&runtime, cluster).await;
    let mut config = EngineConfig::new(cluster);
    config.cleanup_wait = Duration::from_secs(3600);
    config.stop_timeout = Duration::from_secs(2);
    config.metadata_address = Some(address);
    config.logs = Some(berth_agent::LogShipper::new(
        logs.clone(),
        Default::default(),
        None,
    ));
    let (engine, _health) = Engine::start(
        runtime.clone() as Arc<dyn ContainerRuntime>,
        Reporter::new(sink.clone(), None),
        config,
    )
    .await
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(berth_agent::metadata::serve(
        listener,
        engine.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let case = Case {
        runtime,
        sink,
        engine,
        cluster: cluster.to_owned(),
    };
    let spec = case.task(
        "metadata",
        vec![sh(
            "reader",
            // The agent records the container RUNNING once Docker's start
            // returns; a query in the first instants could still see PENDING.
            "sleep 1; wget -q -O- $ECS_CONTAINER_METADATA_URI_V4/task; echo; wget -q -O- $ECS_CONTAINER_METADATA_URI_V4; echo",
        )],
    );
    case.engine.apply(vec![spec]);
    case.sink.wait("STOPPED", Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let lines = loop {
        let lines = logs.0.lock().unwrap().clone();
        if lines.len() >= 2 || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(lines.len(), 2, "{lines:?}");
    let task: serde_json::Value = serde_json::from_str(&lines[0]).expect("task JSON");
    assert_eq!(task["Family"], "t");
    assert_eq!(task["Revision"], "1");
    assert_eq!(task["LaunchType"], "EC2");
    assert!(task["TaskARN"].as_str().unwrap().ends_with("/metadata"));
    assert_eq!(task["Containers"][0]["Name"], "reader");
    assert_eq!(
        task["Containers"][0]["KnownStatus"], "RUNNING",
        "{}",
        lines[0]
    );
    let container: serde_json::Value = serde_json::from_str(&lines[1]).expect("container JSON");
    assert_eq!(container["Name"], "reader");
    assert_eq!(container["Type"], "NORMAL");
    assert_eq!(container["Networks"][0]["NetworkMode"], "bridge");
    assert!(
        container["DockerName"]
            .as_str()
            .unwrap()
            .starts_with("ecs-t-1-reader-")
    );
    let _ = stop.send(());
    case.clean().await;
}

/// The interface the control plane would give a task: host address `host`
/// of the task network's subnet.
fn interface(network: &TaskNetwork, host: u32) -> TaskNetworkInterface {
    let base = network.subnet.split_once('/').unwrap().0;
    let address =
        std::net::Ipv4Addr::from(u32::from(base.parse::<std::net::Ipv4Addr>().unwrap()) + host);
    let [a, b, c, d] = address.octets();
    TaskNetworkInterface {
        attachment_arn: format!("arn:aws:ecs:us-east-1:000000000000:attachment/eni-{host}"),
        ipv4_address: address.to_string(),
        mac_address: format!("0a:58:{a:02x}:{b:02x}:{c:02x}:{d:02x}"),
        subnet_cidr: network.subnet.clone(),
    }
}

impl Recorder {
    fn task_reports(&self) -> Vec<SubmitTaskStateChangeRequest> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| match r {
                Report::Task(t) => Some(t.clone()),
                Report::Container(_) => None,
            })
            .collect()
    }

    fn attachments(&self) -> Vec<String> {
        self.task_reports()
            .iter()
            .flat_map(|r| r.attachments.clone().unwrap_or_default())
            .map(|a| a.status)
            .collect()
    }

    async fn wait_attachment(&self, status: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.attachments().iter().any(|s| s == status) {
            assert!(
                Instant::now() < deadline,
                "no {status} attachment within {within:?}: {:?}",
                self.attachments()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The task's containers on the engine, the pause container included.
async fn task_containers(runtime: &DockerRuntime, task_arn: &str) -> Vec<ContainerInfo> {
    runtime
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.labels.get(LABEL_TASK_ARN).map(String::as_str) == Some(task_arn))
        .collect()
}

fn named<'a>(containers: &'a [ContainerInfo], name: &str) -> Option<&'a ContainerInfo> {
    containers
        .iter()
        .find(|c| c.labels.get(LABEL_CONTAINER_NAME).map(String::as_str) == Some(name))
}

fn http_get(address: &str, port: u16) -> String {
    let mut body = String::new();
    if let Ok(mut stream) = std::net::TcpStream::connect_timeout(
        &format!("{address}:{port}").parse().unwrap(),
        Duration::from_secs(2),
    ) {
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let _ = stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n");
        let _ = stream.read_to_string(&mut body);
    }
    body
}

/// `command` run in container `id` (`docker exec`): its stdout.
async fn exec(id: &str, command: &[&str]) -> String {
    let output = tokio::process::Command::new("docker")
        .arg("exec")
        .arg(id)
        .args(command)
        .output()
        .await
        .expect("docker exec");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The pause container whose namespace container `id` joined.
async fn namespace_of(runtime: &DockerRuntime, id: &str) -> String {
    let inspect = runtime.client().inspect_container(id, None).await.unwrap();
    let mode = inspect.host_config.unwrap().network_mode.unwrap();
    mode.strip_prefix("container:")
        .unwrap_or_else(|| panic!("{id} runs in {mode}, not a joined namespace"))
        .to_owned()
}

/// The host end of the veth pair of the namespace holding `address`.
fn host_end(address: &str) -> std::path::PathBuf {
    std::path::Path::new("/sys/class/net").join(host_interface(address.parse().unwrap()))
}

/// The network namespace of container `id` (its inode, as `ip netns
/// identify` would compare them).
async fn namespace_inode(runtime: &DockerRuntime, id: &str) -> std::path::PathBuf {
    let inspect = runtime.client().inspect_container(id, None).await.unwrap();
    let pid = inspect.state.unwrap().pid.unwrap();
    std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap()
}

/// Whether any process of the host is in network namespace `inode`.
fn namespace_lives(inode: &std::path::Path) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|entry| std::fs::read_link(entry.path().join("ns/net")).is_ok_and(|ns| ns == inode))
}

/// Waits until `gone` holds (the kernel frees a namespace's interfaces a
/// moment after its last process).
async fn eventually(what: &str, gone: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gone() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asks `engine` to stop `spec` and waits until its interface is DETACHED.
async fn stop_until_detached(engine: &Engine, sink: &Recorder, spec: &TaskSpec) {
    engine.apply(vec![TaskSpec {
        desired_status: DesiredStatus::Stopped,
        desired_version: 2,
        ..spec.clone()
    }]);
    sink.wait_attachment("DETACHED", Duration::from_secs(60))
        .await;
}

/// Waits until the namespace that held `address` is gone with its veth.
async fn assert_namespace_gone(address: &str, namespace: &std::path::Path) {
    eventually("the task's veth left the bridge", || {
        !host_end(address).exists()
    })
    .await;
    assert!(!namespace_lives(namespace), "the namespace is gone");
}

/// The engine of agent `owner` was shut down: no idle namespace is left.
async fn assert_no_warm_namespaces(runtime: &DockerRuntime, owner: &str) {
    let left = runtime.list_warm_namespaces(owner).await.unwrap();
    assert!(left.is_empty(), "idle namespaces left: {left:?}");
}

/// Checks, from inside and from the host, that container `app` of a task
/// lives in a namespace holding `eni`'s address on `network`: eth0 with
/// the address and MAC, a default route via the gateway, the host end on
/// the network's bridge, and the pause container on no Docker network.
async fn assert_attached(
    runtime: &DockerRuntime,
    app: &str,
    network: &TaskNetwork,
    eni: &TaskNetworkInterface,
) -> String {
    let pause = namespace_of(runtime, app).await;
    let addresses = exec(app, &["ip", "-4", "addr", "show", "eth0"]).await;
    let prefix = network.subnet.split_once('/').unwrap().1;
    assert!(
        addresses.contains(&format!("inet {}/{prefix}", eni.ipv4_address)),
        "{addresses}"
    );
    let link = exec(app, &["ip", "link", "show", "eth0"]).await;
    assert!(link.contains(&eni.mac_address), "{link}");
    let gateway = Subnet::parse(&network.subnet).unwrap().gateway().unwrap();
    let routes = exec(app, &["ip", "route"]).await;
    assert!(
        routes.contains(&format!("default via {gateway} dev eth0")),
        "{routes}"
    );
    let master = std::fs::read_link(host_end(&eni.ipv4_address).join("master")).unwrap();
    assert_eq!(
        master.file_name().unwrap().to_str(),
        Some(network.bridge.as_str())
    );
    let inspect = runtime
        .client()
        .inspect_container(&pause, None)
        .await
        .unwrap();
    assert_eq!(
        inspect.host_config.unwrap().network_mode.as_deref(),
        Some("none")
    );
    let networks = inspect.network_settings.unwrap().networks.unwrap();
    assert!(
        networks.keys().all(|n| n == "none"),
        "the pause container is on no Docker network: {networks:?}"
    );
    pause
}

/// A TCP server on every address of the host that says `pong` to whoever
/// connects.
fn pong_server() -> u16 {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.write_all(b"pong");
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awsvpc_task_gets_its_own_address_and_leaves_nothing() {
    let Some(runtime) = docker().await else {
        return;
    };
    let cluster = "berth-test-awsvpc";
    let (case, network) = Case::awsvpc(runtime, cluster).await;
    let eni = interface(&network, 9);
    let mut web = sh(
        "web",
        "mkdir -p /www && echo hello-awsvpc > /www/index.html && exec httpd -f -p 8000 -h /www",
    );
    web.port_mappings = Some(vec![PortMapping {
        container_port: Some(8000),
        ..Default::default()
    }]);
    // Settings joined containers cannot have: the pause container's.
    web.dns_servers = Some(vec!["10.0.0.2".into()]);
    web.dns_search_domains = Some(vec!["corp.example".into()]);
    web.extra_hosts = Some(vec![berth_types::HostEntry {
        hostname: "db".into(),
        ip_address: "10.0.0.5".into(),
    }]);
    // Reaches the web container over the task's loopback.
    let mut client = sh(
        "client",
        "for i in $(seq 1 100); do wget -qO- http://127.0.0.1:8000/ | grep -q hello-awsvpc && exit 0; sleep 0.1; done; exit 1",
    );
    client.essential = Some(false);
    client.depends_on = Some(vec![ContainerDependency {
        container_name: "web".into(),
        condition: ContainerCondition::Start,
    }]);
    let mut spec = case.task("awsvpc", vec![web, client]);
    spec.network_mode = NetworkMode::Awsvpc;
    spec.cpu = Some(256);
    spec.memory_mib = Some(128);
    spec.network_interface = Some(eni.clone());
    case.engine.apply(vec![spec.clone()]);
    let running = case.sink.wait("RUNNING", Duration::from_secs(60)).await;
    assert_eq!(running.cluster.as_deref(), Some(cluster));
    let binding = change(&running, "web").network_bindings.clone().unwrap()[0].clone();
    assert_eq!(binding.bind_ip.as_deref(), Some(eni.ipv4_address.as_str()));
    assert_eq!(binding.host_port, Some(8000));

    // The task's containers live in the pause container's namespace, which
    // holds the exact address and MAC.
    assert!(
        case.runtime
            .inspect_image(PAUSE_IMAGE)
            .await
            .unwrap()
            .is_some()
    );
    let containers = task_containers(&case.runtime, &spec.task_arn).await;
    let pause = named(&containers, PAUSE_CONTAINER_NAME).expect("a pause container");
    assert_eq!(pause.status, ContainerStatus::Running);
    let web_id = named(&containers, "web").unwrap().id.clone();
    assert_eq!(
        assert_attached(&case.runtime, &web_id, &network, &eni).await,
        pause.id
    );
    let namespace = namespace_inode(&case.runtime, &pause.id).await;
    let resolv = exec(&web_id, &["cat", "/etc/resolv.conf"]).await;
    assert!(resolv.contains("nameserver 10.0.0.2"), "{resolv}");
    assert!(resolv.contains("search corp.example"), "{resolv}");
    let hosts = exec(&web_id, &["cat", "/etc/hosts"]).await;
    assert!(hosts.contains("10.0.0.5\tdb"), "{hosts}");
    let hostname = exec(&web_id, &["hostname"]).await;
    assert!(
        hosts.contains(&format!("{}\t{}", eni.ipv4_address, hostname.trim())),
        "the task's hostname resolves to its address: {hosts}"
    );

    // The host reaches the task at its address, and the task the host's
    // other addresses (the metadata endpoint's bridge gateway among them)
    // through its default route.
    let mut body = String::new();
    for _ in 0..50 {
        body = http_get(&eni.ipv4_address, 8000);
        if body.contains("hello-awsvpc") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(body.contains("hello-awsvpc"), "got {body:?}");
    let port = pong_server();
    let host = case
        .runtime
        .bridge_gateway()
        .await
        .expect("a bridge gateway");
    let pong = exec(
        &web_id,
        &["nc", "-w", "5", &host.to_string(), &port.to_string()],
    )
    .await;
    assert_eq!(pong, "pong");
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        let containers = task_containers(&case.runtime, &spec.task_arn).await;
        let client = named(&containers, "client").cloned().unwrap();
        if client.status == ContainerStatus::Exited || Instant::now() > deadline {
            break client;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        client.exit_code,
        Some(0),
        "the client reached the web container on localhost"
    );

    // The network stays while a task uses it.
    assert!(case.runtime.remove_task_network(&network).await.is_err());

    stop_until_detached(&case.engine, &case.sink, &spec).await;
    let statuses: Vec<String> = case
        .sink
        .task_reports()
        .into_iter()
        .filter_map(|r| r.status)
        .collect();
    assert_eq!(statuses, ["PENDING", "RUNNING", "STOPPED", "STOPPED"]);
    assert_eq!(
        case.sink.attachments(),
        ["ATTACHED", "ATTACHED", "DETACHING", "DETACHED"]
    );
    let containers = task_containers(&case.runtime, &spec.task_arn).await;
    assert!(
        named(&containers, PAUSE_CONTAINER_NAME).is_none(),
        "the pause container is gone"
    );
    assert!(
        !std::path::Path::new("/sys/fs/cgroup/memory/berth/awsvpc").exists(),
        "the task cgroup is gone"
    );
    assert_namespace_gone(&eni.ipv4_address, &namespace).await;
    assert!(http_get(&eni.ipv4_address, 8000).is_empty());

    case.clean().await;
    case_network_removed(&network).await;
}

/// Removes a test's task network (nothing uses it once its containers are
/// gone).
async fn case_network_removed(network: &TaskNetwork) {
    let runtime = DockerRuntime::connect().await.unwrap();
    runtime.remove_task_network(network).await.unwrap();
    assert!(
        runtime
            .client()
            .inspect_network(
                &network.name,
                None::<bollard::query_parameters::InspectNetworkOptions>
            )
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_address_docker_refuses_fails_the_task_cleanly() {
    let Some(runtime) = docker().await else {
        return;
    };
    let cluster = "berth-test-gateway";
    let (case, network) = Case::awsvpc(runtime, cluster).await;
    // The gateway's address is the host's.
    let mut spec = case.task("gateway", vec![sh("web", "sleep 300")]);
    spec.network_mode = NetworkMode::Awsvpc;
    spec.memory_mib = Some(128);
    spec.network_interface = Some(interface(&network, 1));
    case.engine.apply(vec![spec.clone()]);
    let report = case.sink.wait("STOPPED", Duration::from_secs(60)).await;
    let reason = report.reason.clone().unwrap();
    assert!(
        reason.starts_with("ResourceInitializationError: failed to configure the task network: "),
        "{reason}"
    );
    assert_eq!(case.sink.attachments(), ["DETACHED"]);
    assert!(
        task_containers(&case.runtime, &spec.task_arn)
            .await
            .is_empty()
    );
    assert!(!host_end(&interface(&network, 1).ipv4_address).exists());
    assert!(!std::path::Path::new("/sys/fs/cgroup/memory/berth/gateway").exists());
    case.clean().await;
    case_network_removed(&network).await;
}

/// The running warm namespaces of agent `owner` once there are `count` of
/// them (claimed ones included), and no other.
async fn warm_namespaces(runtime: &DockerRuntime, owner: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let warm = runtime.list_warm_namespaces(owner).await.unwrap();
        let running: Vec<String> = warm
            .iter()
            .filter(|c| c.status == ContainerStatus::Running)
            .map(|c| c.id.clone())
            .collect();
        if running.len() == count && warm.len() == count {
            return running;
        }
        assert!(
            Instant::now() < deadline,
            "{owner} has {} warm namespaces, not {count}",
            warm.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A task whose one container serves HTTP on port 8000 of the task's
/// address, and asks nothing of its namespace.
fn web_task(case: &Case, id: &str, eni: &TaskNetworkInterface) -> TaskSpec {
    let mut web = sh(
        "web",
        "mkdir -p /www && echo hello-warm > /www/index.html && exec httpd -f -p 8000 -h /www",
    );
    web.port_mappings = Some(vec![PortMapping {
        container_port: Some(8000),
        ..Default::default()
    }]);
    let mut spec = case.task(id, vec![web]);
    spec.network_mode = NetworkMode::Awsvpc;
    spec.memory_mib = Some(128);
    spec.network_interface = Some(eni.clone());
    spec
}

async fn answers(address: &str) -> bool {
    for _ in 0..50 {
        if http_get(address, 8000).contains("hello-warm") {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_claims_a_warm_namespace_and_the_pool_refills() {
    let Some(runtime) = docker().await else {
        return;
    };
    let cluster = "berth-test-warm";
    let (case, network) =
        Case::awsvpc_with(runtime, cluster, |config| config.warm_namespaces = 2).await;
    let idle = warm_namespaces(&case.runtime, cluster, 2).await;
    let eni = interface(&network, 11);
    let spec = web_task(&case, "warm", &eni);
    case.engine.apply(vec![spec.clone()]);
    case.sink.wait("RUNNING", Duration::from_secs(60)).await;

    // The task took an idle namespace, which no label ties to it.
    let containers = task_containers(&case.runtime, &spec.task_arn).await;
    assert!(named(&containers, PAUSE_CONTAINER_NAME).is_none());
    let web = named(&containers, "web").unwrap().id.clone();
    let pause = assert_attached(&case.runtime, &web, &network, &eni).await;
    assert!(idle.contains(&pause), "{pause} is not one of {idle:?}");
    let namespace = namespace_inode(&case.runtime, &pause).await;
    assert!(answers(&eni.ipv4_address).await);

    // The pool makes up for it.
    let refilled = warm_namespaces(&case.runtime, cluster, 3).await;
    assert!(refilled.contains(&pause));

    stop_until_detached(&case.engine, &case.sink, &spec).await;
    assert_eq!(
        case.sink.attachments(),
        ["ATTACHED", "ATTACHED", "DETACHING", "DETACHED"]
    );
    let idle = warm_namespaces(&case.runtime, cluster, 2).await;
    assert!(!idle.contains(&pause), "the claimed namespace is gone");
    assert_namespace_gone(&eni.ipv4_address, &namespace).await;

    // A graceful shutdown leaves no idle namespace behind.
    case.engine.shutdown().await;
    assert_no_warm_namespaces(&case.runtime, cluster).await;
    case.clean().await;
    case_network_removed(&network).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_engine_adopts_a_claimed_warm_namespace() {
    let Some(runtime) = docker().await else {
        return;
    };
    let cluster = "berth-test-warm-adopt";
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_owned();
    let engine_config = |network: &TaskNetwork| {
        let mut config = EngineConfig::new(cluster);
        config.owner = cluster.to_owned();
        config.task_network = Some(network.clone());
        config.data_dir = Some(data_dir.clone());
        config.stop_timeout = Duration::from_secs(2);
        config.warm_namespaces = 1;
        config
    };
    let (case, network) = Case::awsvpc_with(runtime, cluster, |config| {
        config.data_dir = Some(data_dir.clone());
        config.warm_namespaces = 1;
    })
    .await;
    let idle = warm_namespaces(&case.runtime, cluster, 1).await;
    let eni = interface(&network, 12);
    let spec = web_task(&case, "warm-adopted", &eni);
    case.engine.apply(vec![spec.clone()]);
    case.sink.wait("RUNNING", Duration::from_secs(60)).await;
    let web = named(&task_containers(&case.runtime, &spec.task_arn).await, "web")
        .unwrap()
        .id
        .clone();
    let pause = namespace_of(&case.runtime, &web).await;
    assert_eq!(idle, [pause.as_str()]);
    let spare = warm_namespaces(&case.runtime, cluster, 2).await;
    // The agent goes away; its containers stay.
    case.engine.detach();

    let sink = Arc::new(Recorder::default());
    let (engine, _health) = Engine::start(
        case.runtime.clone() as Arc<dyn ContainerRuntime>,
        Reporter::new(sink.clone(), None),
        engine_config(&network),
    )
    .await
    .unwrap();
    assert_eq!(engine.live_tasks(), [spec.task_arn.as_str()]);
    engine.apply(vec![spec.clone()]);
    // The claimed namespace is the task's still; the idle one was removed
    // and replaced.
    let now = warm_namespaces(&case.runtime, cluster, 2).await;
    assert!(now.contains(&pause));
    assert!(
        spare.iter().all(|id| id == &pause || !now.contains(id)),
        "the idle namespace of the first run went: {spare:?} {now:?}"
    );
    assert_eq!(namespace_of(&case.runtime, &web).await, pause);
    assert_attached(&case.runtime, &web, &network, &eni).await;
    assert!(answers(&eni.ipv4_address).await);
    let namespace = namespace_inode(&case.runtime, &pause).await;

    stop_until_detached(&engine, &sink, &spec).await;
    assert_eq!(sink.attachments(), ["DETACHING", "DETACHED"]);
    let left = warm_namespaces(&case.runtime, cluster, 1).await;
    assert!(!left.contains(&pause));
    assert_namespace_gone(&eni.ipv4_address, &namespace).await;
    engine.shutdown().await;
    assert_no_warm_namespaces(&case.runtime, cluster).await;
    case.clean().await;
    case_network_removed(&network).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attach_leaves_nothing_behind() {
    let Some(runtime) = docker().await else {
        return;
    };
    let cluster = "berth-test-badbridge";
    // The network as the agent knows it names a bridge the host lacks: the
    // veth is made, then cannot join it.
    let (case, network) = Case::awsvpc_with(runtime, cluster, |config| {
        config.warm_namespaces = 1;
        if let Some(network) = &mut config.task_network {
            network.bridge = "br-berthnone0".into();
        }
    })
    .await;
    let idle = warm_namespaces(&case.runtime, cluster, 1).await;
    let eni = interface(&network, 13);
    let spec = web_task(&case, "badbridge", &eni);
    case.engine.apply(vec![spec.clone()]);
    let report = case.sink.wait("STOPPED", Duration::from_secs(60)).await;
    let reason = report.reason.clone().unwrap();
    assert!(
        reason.starts_with(
            "ResourceInitializationError: failed to configure the task network: ip failed: "
        ),
        "{reason}"
    );
    assert_eq!(case.sink.attachments(), ["DETACHED"]);
    // Neither the warm namespace it tried first nor the one it made for
    // itself is left, nor any interface.
    assert!(
        task_containers(&case.runtime, &spec.task_arn)
            .await
            .is_empty()
    );
    let now = warm_namespaces(&case.runtime, cluster, 1).await;
    assert_ne!(now, idle);
    assert!(!host_end(&eni.ipv4_address).exists());
    assert!(!std::path::Path::new("/sys/fs/cgroup/memory/berth/badbridge").exists());
    case.engine.shutdown().await;
    case.clean().await;
    case_network_removed(&network).await;
}

#[tokio::test]
async fn task_networks_take_free_subnets_and_are_kept() {
    let Some(runtime) = docker().await else {
        return;
    };
    let first = runtime
        .ensure_task_network("berth-test-net-a")
        .await
        .unwrap();
    let second = runtime
        .ensure_task_network("berth-test-net-b")
        .await
        .unwrap();
    let (a, b) = (
        Subnet::parse(&first.subnet).unwrap(),
        Subnet::parse(&second.subnet).unwrap(),
    );
    assert_eq!((a.prefix(), b.prefix()), (22, 22));
    assert!(!a.overlaps(&b), "{a} and {b}");
    assert!(Subnet::parse("100.64.0.0/10").unwrap().overlaps(&a));
    // A restarted agent finds its network as it was.
    assert_eq!(
        runtime
            .ensure_task_network("berth-test-net-a")
            .await
            .unwrap(),
        first
    );
    let inspect = runtime
        .client()
        .inspect_network(
            &first.name,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .unwrap();
    assert_eq!(
        inspect.labels.unwrap()["io.berth.agent-instance-id"],
        "berth-test-net-a"
    );
    let gateway = inspect.ipam.unwrap().config.unwrap()[0].gateway.clone();
    assert_eq!(gateway, a.gateway().map(|g| g.to_string()));
    case_network_removed(&first).await;
    case_network_removed(&second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_engine_adopts_the_pause_container_and_tears_it_down() {
    let Some(runtime) = docker().await else {
        return;
    };
    let cluster = "berth-test-adopt";
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_owned();
    let (case, network) = {
        let network = runtime.ensure_task_network(cluster).await.unwrap();
        let data_dir = data_dir.clone();
        let network_for_config = network.clone();
        let case = Case::with_config(runtime, cluster, move |config| {
            config.owner = cluster.to_owned();
            config.task_network = Some(network_for_config);
            config.data_dir = Some(data_dir);
        })
        .await;
        (case, network)
    };
    let eni = interface(&network, 10);
    let mut spec = case.task("adopted", vec![sh("web", "exec httpd -f -p 8000 -h /")]);
    spec.network_mode = NetworkMode::Awsvpc;
    spec.memory_mib = Some(128);
    spec.network_interface = Some(eni.clone());
    case.engine.apply(vec![spec.clone()]);
    case.sink.wait("RUNNING", Duration::from_secs(60)).await;
    // The agent goes away; its containers stay.
    case.engine.detach();
    let before = task_containers(&case.runtime, &spec.task_arn).await;
    assert_eq!(before.len(), 2);

    let sink = Arc::new(Recorder::default());
    let mut config = EngineConfig::new(cluster);
    config.owner = cluster.to_owned();
    config.task_network = Some(network.clone());
    config.data_dir = Some(data_dir);
    config.stop_timeout = Duration::from_secs(2);
    let (engine, _health) = Engine::start(
        case.runtime.clone() as Arc<dyn ContainerRuntime>,
        Reporter::new(sink.clone(), None),
        config,
    )
    .await
    .unwrap();
    assert_eq!(engine.live_tasks(), [spec.task_arn.clone()]);
    engine.apply(vec![spec.clone()]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let same = task_containers(&case.runtime, &spec.task_arn).await;
    let ids = |list: &[ContainerInfo]| {
        let mut ids: Vec<String> = list.iter().map(|c| c.id.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&same), ids(&before), "adopted, nothing made anew");

    stop_until_detached(&engine, &sink, &spec).await;
    assert_eq!(sink.attachments(), ["DETACHING", "DETACHED"]);
    let after = task_containers(&case.runtime, &spec.task_arn).await;
    assert!(named(&after, PAUSE_CONTAINER_NAME).is_none());
    assert!(!std::path::Path::new("/sys/fs/cgroup/memory/berth/adopted").exists());
    engine.detach();
    case.clean().await;
    case_network_removed(&network).await;
}
