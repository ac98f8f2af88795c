//! The task engine's state machine on the fake runtime, in paused time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_agent::runtime::fake::{FakeBehavior, FakeRuntime};
use berth_agent::runtime::{
    BoxFuture, ContainerInfo, ContainerRuntime, ContainerStatus, LABEL_CONTAINER_NAME,
    LABEL_TASK_ARN, RuntimeEventKind,
};
use berth_agent::{Engine, EngineConfig, Report, Reporter, StateSink, SubmitError};
use berth_types::agent::{
    AgentMessage, ContainerSpec, DesiredStatus, FARGATE_POOL_CLUSTER, Manifest, ManifestEntry,
    PAUSE_CONTAINER_NAME, TaskNetworkInterface, TaskSpec,
};
use berth_types::{
    ContainerCondition, ContainerDefinition, ContainerDependency, HealthCheck, HealthStatus,
    NetworkMode, PortMapping, SubmitTaskStateChangeRequest,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;

#[derive(Default)]
struct Recorder {
    reports: Mutex<Vec<Report>>,
    failures_left: AtomicUsize,
}

impl StateSink for Recorder {
    fn submit<'a>(&'a self, report: &'a Report) -> BoxFuture<'a, Result<(), SubmitError>> {
        Box::pin(async move {
            if self
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(SubmitError::Retry("server down".into()));
            }
            self.reports.lock().unwrap().push(report.clone());
            Ok(())
        })
    }
}

impl Recorder {
    fn task_reports(&self, arn: &str) -> Vec<SubmitTaskStateChangeRequest> {
        self.reports
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| match r {
                Report::Task(t) if t.task.as_deref() == Some(arn) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    fn statuses(&self, arn: &str) -> Vec<String> {
        self.task_reports(arn)
            .into_iter()
            .filter_map(|r| r.status)
            .collect()
    }

    fn last(&self, arn: &str) -> SubmitTaskStateChangeRequest {
        self.task_reports(arn).pop().expect("no report")
    }

    async fn wait_status(&self, arn: &str, status: &str) {
        for _ in 0..100_000 {
            if self.statuses(arn).iter().any(|s| s == status) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{arn} never reported {status}: {:?}", self.statuses(arn));
    }
}

struct Harness {
    fake: FakeRuntime,
    sink: Arc<Recorder>,
    engine: Engine,
    health: mpsc::UnboundedReceiver<AgentMessage>,
}

fn config(data_dir: Option<&std::path::Path>) -> EngineConfig {
    let mut config = EngineConfig::new("arn:aws:ecs:us-east-1:000000000000:cluster/default");
    config.data_dir = data_dir.map(Into::into);
    config.cleanup_wait = Duration::from_secs(60);
    config.task_cgroups = false;
    config.port_range = 50000..=50010;
    config
}

async fn harness_with(fake: FakeRuntime, data_dir: Option<&std::path::Path>) -> Harness {
    start(fake, config(data_dir)).await
}

async fn start(fake: FakeRuntime, config: EngineConfig) -> Harness {
    let sink = Arc::new(Recorder::default());
    let reporter = Reporter::new(sink.clone(), None);
    let (engine, health) = Engine::start(Arc::new(fake.clone()), reporter, config)
        .await
        .unwrap();
    Harness {
        fake,
        sink,
        engine,
        health,
    }
}

async fn harness() -> Harness {
    let fake = FakeRuntime::new();
    fake.add_local_image("app");
    harness_with(fake, None).await
}

fn container(name: &str) -> ContainerDefinition {
    ContainerDefinition {
        name: Some(name.into()),
        image: Some("app".into()),
        command: Some(vec![name.into()]),
        ..Default::default()
    }
}

fn depends(
    mut def: ContainerDefinition,
    on: &str,
    condition: ContainerCondition,
) -> ContainerDefinition {
    def.depends_on
        .get_or_insert_with(Vec::new)
        .push(ContainerDependency {
            container_name: on.into(),
            condition,
        });
    def
}

fn non_essential(mut def: ContainerDefinition) -> ContainerDefinition {
    def.essential = Some(false);
    def
}

fn with_health(mut def: ContainerDefinition) -> ContainerDefinition {
    def.health_check = Some(HealthCheck {
        command: vec!["CMD-SHELL".into(), "true".into()],
        interval: None,
        retries: None,
        start_period: None,
        timeout: None,
    });
    def
}

const TASK: &str = "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef";

fn task(containers: Vec<ContainerDefinition>) -> TaskSpec {
    TaskSpec {
        task_arn: TASK.into(),
        cluster_arn: "arn:aws:ecs:us-east-1:000000000000:cluster/default".into(),
        task_definition_arn: "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3".into(),
        family: "web".into(),
        revision: 3,
        desired_status: DesiredStatus::Running,
        desired_version: 1,
        network_mode: NetworkMode::Bridge,
        cpu: None,
        memory_mib: None,
        containers: containers
            .into_iter()
            .map(|definition| ContainerSpec {
                container_arn: format!("arn:container/{}", definition.name.clone().unwrap()),
                definition: definition.into(),
            })
            .collect(),
        volumes: vec![],
        pid_mode: None,
        ipc_mode: None,
        network_interface: None,
    }
}

fn stopped(spec: &TaskSpec, version: i64) -> TaskSpec {
    TaskSpec {
        desired_status: DesiredStatus::Stopped,
        desired_version: version,
        ..spec.clone()
    }
}

fn container_report<'a>(
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

/// Names of containers in the order the runtime saw `kind` for them.
fn record_events(fake: &FakeRuntime) -> Arc<Mutex<Vec<(String, RuntimeEventKind)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut events = fake.events();
    let fake = fake.clone();
    let out = seen.clone();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let name = fake
                .containers()
                .into_iter()
                .find(|c| c.id == event.container_id)
                .and_then(|c| c.labels.get("com.amazonaws.ecs.container-name").cloned())
                .unwrap_or_default();
            out.lock().unwrap().push((name, event.kind));
        }
    });
    seen
}

fn started_order(seen: &Mutex<Vec<(String, RuntimeEventKind)>>) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(_, k)| *k == RuntimeEventKind::Started)
        .map(|(n, _)| n.clone())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn task_runs_and_stops_on_request() {
    let h = harness().await;
    let spec = task(vec![container("web")]);
    h.engine.apply(vec![spec.clone()]);
    h.sink.wait_status(TASK, "RUNNING").await;
    let running = h.sink.last(TASK);
    assert_eq!(
        container_report(&running, "web").status.as_deref(),
        Some("RUNNING")
    );
    assert!(running.pull_started_at.is_some() && running.pull_stopped_at.is_some());
    let name = &h.fake.containers()[0].name;
    assert!(name.starts_with("ecs-web-3-web-"), "{name}");

    h.engine.apply(vec![stopped(&spec, 2)]);
    h.sink.wait_status(TASK, "STOPPED").await;
    assert_eq!(h.sink.statuses(TASK), ["PENDING", "RUNNING", "STOPPED"]);
    let report = h.sink.last(TASK);
    assert_eq!(report.reason, None);
    assert!(report.execution_stopped_at.is_some());
    let web = container_report(&report, "web");
    assert_eq!(web.exit_code, Some(143));
    assert_eq!(web.status.as_deref(), Some("STOPPED"));
    assert!(web.runtime_id.is_some());

    // Removed after the cleanup wait.
    assert_eq!(h.fake.containers().len(), 1);
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(h.fake.containers().is_empty());
    assert!(h.engine.live_tasks().is_empty());
}

#[tokio::test(start_paused = true)]
async fn essential_exit_stops_the_task() {
    let h = harness().await;
    h.fake
        .set_command_behavior("worker", FakeBehavior::exits(Duration::from_secs(5), 3));
    h.engine
        .apply(vec![task(vec![container("web"), container("worker")])]);
    h.sink.wait_status(TASK, "STOPPED").await;
    let report = h.sink.last(TASK);
    assert_eq!(
        report.reason.as_deref(),
        Some("Essential container in task exited")
    );
    assert_eq!(container_report(&report, "worker").exit_code, Some(3));
    assert_eq!(container_report(&report, "web").exit_code, Some(143));
    assert_eq!(h.sink.statuses(TASK), ["PENDING", "RUNNING", "STOPPED"]);
}

#[tokio::test(start_paused = true)]
async fn non_essential_exit_is_reported_alone() {
    let h = harness().await;
    h.fake
        .set_command_behavior("sidecar", FakeBehavior::exits(Duration::from_secs(5), 1));
    h.engine.apply(vec![task(vec![
        container("web"),
        non_essential(container("sidecar")),
    ])]);
    h.sink.wait_status(TASK, "RUNNING").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let reports = h.sink.reports.lock().unwrap().clone();
    let change = reports
        .iter()
        .find_map(|r| match r {
            Report::Container(c) => Some(c.clone()),
            _ => None,
        })
        .expect("a container state change");
    assert_eq!(change.container_name.as_deref(), Some("sidecar"));
    assert_eq!(change.status.as_deref(), Some("STOPPED"));
    assert_eq!(change.exit_code, Some(1));
    assert_eq!(h.sink.statuses(TASK), ["PENDING", "RUNNING"]);
}

#[tokio::test(start_paused = true)]
async fn depends_on_start_and_complete_order_the_starts() {
    let h = harness().await;
    let seen = record_events(&h.fake);
    h.fake
        .set_command_behavior("init", FakeBehavior::exits(Duration::from_secs(3), 0));
    h.engine.apply(vec![task(vec![
        depends(container("app"), "init", ContainerCondition::Complete),
        depends(container("proxy"), "app", ContainerCondition::Start),
        non_essential(container("init")),
    ])]);
    h.sink.wait_status(TASK, "RUNNING").await;
    tokio::task::yield_now().await;
    assert_eq!(started_order(&seen), ["init", "app", "proxy"]);
    let running = h.sink.last(TASK);
    assert_eq!(container_report(&running, "init").exit_code, Some(0));
}

#[tokio::test(start_paused = true)]
async fn success_dependency_that_fails_stops_the_task() {
    let h = harness().await;
    h.fake
        .set_command_behavior("migrate", FakeBehavior::exits(Duration::from_secs(1), 2));
    h.engine.apply(vec![task(vec![
        depends(container("app"), "migrate", ContainerCondition::Success),
        non_essential(container("migrate")),
    ])]);
    h.sink.wait_status(TASK, "STOPPED").await;
    let report = h.sink.last(TASK);
    let reason = report.reason.clone().unwrap();
    assert!(
        reason.starts_with("CannotStartContainerError: dependency migrate exited with code 2"),
        "{reason}"
    );
    assert_eq!(container_report(&report, "app").exit_code, None);
    assert!(!h.sink.statuses(TASK).contains(&"RUNNING".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn success_dependency_that_succeeds_lets_the_dependent_start() {
    let h = harness().await;
    let seen = record_events(&h.fake);
    h.fake
        .set_command_behavior("migrate", FakeBehavior::exits(Duration::from_secs(1), 0));
    h.engine.apply(vec![task(vec![
        depends(container("app"), "migrate", ContainerCondition::Success),
        non_essential(container("migrate")),
    ])]);
    h.sink.wait_status(TASK, "RUNNING").await;
    tokio::task::yield_now().await;
    assert_eq!(started_order(&seen), ["migrate", "app"]);
}

#[tokio::test(start_paused = true)]
async fn healthy_dependency_waits_for_health_and_reports_it() {
    let mut h = harness().await;
    let seen = record_events(&h.fake);
    h.fake.set_command_behavior(
        "db",
        FakeBehavior {
            health: vec![(Duration::from_secs(20), HealthStatus::Healthy)],
            ..FakeBehavior::default()
        },
    );
    let start = tokio::time::Instant::now();
    h.engine.apply(vec![task(vec![
        depends(container("app"), "db", ContainerCondition::Healthy),
        with_health(container("db")),
    ])]);
    h.sink.wait_status(TASK, "RUNNING").await;
    assert!(start.elapsed() >= Duration::from_secs(20));
    tokio::task::yield_now().await;
    assert_eq!(started_order(&seen), ["db", "app"]);
    let Some(AgentMessage::Health(report)) = h.health.recv().await else {
        panic!("no health report")
    };
    assert_eq!(report.task_arn, TASK);
    assert_eq!(report.containers.len(), 1);
    assert_eq!(report.containers[0].container_name, "db");
    assert_eq!(report.containers[0].health_status, HealthStatus::Healthy);

    // Later changes are reported too.
    let db = h
        .fake
        .containers()
        .into_iter()
        .find(|c| c.labels.values().any(|v| v == "db"))
        .unwrap();
    h.fake.set_health(&db.id, HealthStatus::Unhealthy);
    let Some(AgentMessage::Health(report)) = h.health.recv().await else {
        panic!("no health report")
    };
    assert_eq!(report.containers[0].health_status, HealthStatus::Unhealthy);
}

#[tokio::test(start_paused = true)]
async fn start_timeout_gives_up_on_dependencies() {
    let h = harness().await;
    let mut app = depends(container("app"), "db", ContainerCondition::Healthy);
    app.start_timeout = Some(30);
    let start = tokio::time::Instant::now();
    h.engine
        .apply(vec![task(vec![app, with_health(container("db"))])]);
    h.sink.wait_status(TASK, "STOPPED").await;
    assert!(start.elapsed() >= Duration::from_secs(30));
    assert!(start.elapsed() < Duration::from_secs(31));
    let report = h.sink.last(TASK);
    assert!(report.reason.unwrap().contains("startTimeout of 30s"));
}

#[tokio::test(start_paused = true)]
async fn stop_escalates_to_sigkill_after_stop_timeout_in_reverse_order() {
    let h = harness().await;
    let seen = record_events(&h.fake);
    h.fake.set_command_behavior(
        "stubborn",
        FakeBehavior {
            ignores_sigterm: true,
            ..FakeBehavior::default()
        },
    );
    let mut stubborn = depends(container("stubborn"), "base", ContainerCondition::Start);
    stubborn.stop_timeout = Some(7);
    let spec = task(vec![container("base"), stubborn]);
    h.engine.apply(vec![spec.clone()]);
    h.sink.wait_status(TASK, "RUNNING").await;
    let start = tokio::time::Instant::now();
    h.engine.apply(vec![stopped(&spec, 2)]);
    h.sink.wait_status(TASK, "STOPPED").await;
    assert!(start.elapsed() >= Duration::from_secs(7));
    let report = h.sink.last(TASK);
    assert_eq!(container_report(&report, "stubborn").exit_code, Some(137));
    assert_eq!(container_report(&report, "base").exit_code, Some(143));
    let died: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, k)| matches!(k, RuntimeEventKind::Died { .. }))
        .map(|(n, _)| n.clone())
        .collect();
    assert_eq!(died, ["stubborn", "base"]);
}

#[tokio::test(start_paused = true)]
async fn pull_create_and_start_failures_use_ecs_names() {
    let fake = FakeRuntime::new();
    fake.fail_pulls(
        "missing",
        "pull access denied for missing, repository does not exist",
    );
    let h = harness_with(fake, None).await;
    let mut missing = container("web");
    missing.image = Some("missing".into());
    h.engine.apply(vec![task(vec![missing])]);
    h.sink.wait_status(TASK, "STOPPED").await;
    let report = h.sink.last(TASK);
    assert_eq!(
        report.reason.as_deref(),
        Some("CannotPullContainerError: pull access denied for missing, repository does not exist")
    );
    assert_eq!(h.sink.statuses(TASK), ["PENDING", "STOPPED"]);
    assert_eq!(h.fake.pulls(), ["missing"]);

    for (arn, behavior, expected) in [
        (
            "arn:aws:ecs:us-east-1:000000000000:task/default/create",
            FakeBehavior {
                create_error: Some("bad mount".into()),
                ..FakeBehavior::default()
            },
            "CannotCreateContainerError: bad mount",
        ),
        (
            "arn:aws:ecs:us-east-1:000000000000:task/default/start",
            FakeBehavior {
                start_error: Some("exec: not found".into()),
                ..FakeBehavior::default()
            },
            "CannotStartContainerError: exec: not found",
        ),
    ] {
        h.fake.set_image_behavior("app", behavior);
        let mut spec = task(vec![container("web")]);
        spec.task_arn = arn.into();
        h.engine.apply(vec![spec]);
        h.sink.wait_status(arn, "STOPPED").await;
        assert_eq!(h.sink.last(arn).reason.as_deref(), Some(expected));
    }
}

#[tokio::test(start_paused = true)]
async fn default_pull_behavior_uses_local_images_and_pulls_missing_ones() {
    let h = harness().await;
    let mut remote = container("remote");
    remote.image = Some("remote:1".into());
    h.engine.apply(vec![task(vec![container("web"), remote])]);
    h.sink.wait_status(TASK, "RUNNING").await;
    assert_eq!(h.fake.pulls(), ["remote:1"]);
    let report = h.sink.last(TASK);
    assert!(container_report(&report, "remote").image_digest.is_some());
}

#[tokio::test(start_paused = true)]
async fn oom_is_reported_as_out_of_memory_error() {
    let h = harness().await;
    h.fake.set_command_behavior(
        "hog",
        FakeBehavior {
            run_for: Some(Duration::from_secs(2)),
            oom: true,
            ..FakeBehavior::default()
        },
    );
    h.engine.apply(vec![task(vec![container("hog")])]);
    h.sink.wait_status(TASK, "STOPPED").await;
    let report = h.sink.last(TASK);
    let hog = container_report(&report, "hog");
    assert_eq!(hog.exit_code, Some(137));
    assert_eq!(
        hog.reason.as_deref(),
        Some("OutOfMemoryError: Container killed due to memory usage")
    );
    assert_eq!(
        report.reason.as_deref(),
        Some("Essential container in task exited")
    );
}

#[tokio::test(start_paused = true)]
async fn stale_and_duplicate_payloads_change_nothing() {
    let h = harness().await;
    let spec = task(vec![container("web")]);
    h.engine.apply(vec![spec.clone()]);
    h.engine.apply(vec![spec.clone()]);
    h.sink.wait_status(TASK, "RUNNING").await;
    h.engine.apply(vec![TaskSpec {
        desired_version: 3,
        ..spec.clone()
    }]);
    // Older than version 3: ignored.
    h.engine.apply(vec![stopped(&spec, 2)]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(h.fake.create_count(), 1);
    assert_eq!(h.sink.statuses(TASK), ["PENDING", "RUNNING"]);
    h.engine.apply(vec![stopped(&spec, 4)]);
    h.sink.wait_status(TASK, "STOPPED").await;
    // A late RUNNING payload never restarts a stopped task.
    h.engine.apply(vec![TaskSpec {
        desired_version: 9,
        ..spec
    }]);
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(h.fake.create_count(), 1);
    assert_eq!(h.sink.statuses(TASK), ["PENDING", "RUNNING", "STOPPED"]);
}

#[tokio::test(start_paused = true)]
async fn manifest_stops_tasks_it_does_not_list() {
    let h = harness().await;
    h.engine.apply(vec![task(vec![container("web")])]);
    h.sink.wait_status(TASK, "RUNNING").await;
    let keep = "arn:aws:ecs:us-east-1:000000000000:task/default/other";
    h.engine.apply_manifest(&Manifest {
        message_id: "m1".into(),
        timeline: 1,
        tasks: vec![ManifestEntry {
            task_arn: keep.into(),
            desired_status: DesiredStatus::Stopped,
        }],
    });
    h.sink.wait_status(TASK, "STOPPED").await;
    // A task the server wants stopped that never ran here is reported STOPPED.
    h.sink.wait_status(keep, "STOPPED").await;
}

#[tokio::test(start_paused = true)]
async fn bridge_ports_are_allocated_reported_and_released() {
    let h = harness().await;
    let mut web = container("web");
    web.port_mappings = Some(vec![
        PortMapping {
            container_port: Some(80),
            ..Default::default()
        },
        PortMapping {
            container_port: Some(81),
            host_port: Some(8081),
            ..Default::default()
        },
    ]);
    let spec = task(vec![web]);
    h.engine.apply(vec![spec.clone()]);
    h.sink.wait_status(TASK, "RUNNING").await;
    let report = h.sink.last(TASK);
    let bindings = container_report(&report, "web")
        .network_bindings
        .clone()
        .unwrap();
    assert_eq!(bindings.len(), 2);
    assert_eq!(bindings[0].container_port, Some(80));
    assert_eq!(bindings[0].host_port, Some(50000));
    assert_eq!(bindings[1].host_port, Some(8081));
    assert_eq!(h.fake.containers()[0].port_bindings.len(), 2);

    // A second task gets another dynamic port while the first holds 50000.
    let mut second = spec.clone();
    second.task_arn = "arn:aws:ecs:us-east-1:000000000000:task/default/second".into();
    std::sync::Arc::make_mut(&mut second.containers[0].definition).port_mappings =
        Some(vec![PortMapping {
            container_port: Some(80),
            ..Default::default()
        }]);
    h.engine.apply(vec![second.clone()]);
    h.sink.wait_status(&second.task_arn, "RUNNING").await;
    let report = h.sink.last(&second.task_arn);
    assert_eq!(
        container_report(&report, "web")
            .network_bindings
            .clone()
            .unwrap()[0]
            .host_port,
        Some(50001)
    );
}

#[tokio::test(start_paused = true)]
async fn restarted_engine_adopts_running_containers() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRuntime::new();
    fake.add_local_image("app");
    let first = harness_with(fake.clone(), Some(dir.path())).await;
    let mut web = container("web");
    web.port_mappings = Some(vec![PortMapping {
        container_port: Some(80),
        ..Default::default()
    }]);
    let spec = task(vec![web, non_essential(container("sidecar"))]);
    first.engine.apply(vec![spec.clone()]);
    first.sink.wait_status(TASK, "RUNNING").await;
    first.engine.detach();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fake.create_count(), 2);

    // Containers of a task with no record: stopped when the first manifest
    // does not want them.
    let mut stray = task(vec![container("stray")]);
    stray.task_arn = "arn:aws:ecs:us-east-1:000000000000:task/default/stray".into();
    {
        let h = harness_with(fake.clone(), None).await;
        h.engine.apply(vec![stray.clone()]);
        h.sink.wait_status(&stray.task_arn, "RUNNING").await;
        h.engine.detach();
    }

    let second = harness_with(fake.clone(), Some(dir.path())).await;
    assert_eq!(second.engine.live_tasks(), [TASK]);
    // The payload the server re-sends after the reconnect adopts, not duplicates.
    second.engine.apply(vec![spec.clone()]);
    second.engine.apply_manifest(&Manifest {
        message_id: "m".into(),
        timeline: 1,
        tasks: vec![ManifestEntry {
            task_arn: TASK.into(),
            desired_status: DesiredStatus::Running,
        }],
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fake.create_count(), 3);
    let stray_container = fake
        .containers()
        .into_iter()
        .find(|c| c.labels.values().any(|v| v == "stray"))
        .unwrap();
    assert_eq!(stray_container.status, ContainerStatus::Exited);

    // The port stays booked: a new task cannot get it.
    let mut other = task(vec![container("web")]);
    other.task_arn = "arn:aws:ecs:us-east-1:000000000000:task/default/other".into();
    std::sync::Arc::make_mut(&mut other.containers[0].definition).port_mappings =
        Some(vec![PortMapping {
            container_port: Some(80),
            ..Default::default()
        }]);
    second.engine.apply(vec![other.clone()]);
    second.sink.wait_status(&other.task_arn, "RUNNING").await;
    let report = second.sink.last(&other.task_arn);
    assert_ne!(
        container_report(&report, "web")
            .network_bindings
            .clone()
            .unwrap()[0]
            .host_port,
        Some(50000)
    );

    // The adopted task is supervised: its essential container's exit stops it.
    let web = fake
        .containers()
        .into_iter()
        .find(|c| {
            c.labels
                .get("com.amazonaws.ecs.task-arn")
                .map(String::as_str)
                == Some(TASK)
                && c.labels
                    .get("com.amazonaws.ecs.container-name")
                    .map(String::as_str)
                    == Some("web")
        })
        .unwrap();
    fake.crash(&web.id, 137);
    second.sink.wait_status(TASK, "STOPPED").await;
    let report = second.sink.last(TASK);
    assert_eq!(
        report.reason.as_deref(),
        Some("Essential container in task exited")
    );
    assert_eq!(container_report(&report, "web").exit_code, Some(137));
    assert_eq!(container_report(&report, "sidecar").exit_code, Some(143));
    assert!(!second.sink.statuses(TASK).contains(&"PENDING".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn another_agents_containers_are_left_alone() {
    let fake = FakeRuntime::new();
    fake.add_local_image("app");
    let start = |owner: &str| {
        let mut config = config(None);
        config.owner = owner.to_owned();
        let sink = Arc::new(Recorder::default());
        let fake = fake.clone();
        async move {
            let (engine, _health) =
                Engine::start(Arc::new(fake), Reporter::new(sink.clone(), None), config)
                    .await
                    .unwrap();
            (engine, sink)
        }
    };
    let (neighbour, sink) = start("i-neighbour").await;
    neighbour.apply(vec![task(vec![container("web")])]);
    sink.wait_status(TASK, "RUNNING").await;

    // A second agent on the same Docker Engine and cluster starts, and the
    // server tells it it should run nothing.
    let (me, _) = start("i-me").await;
    me.apply_manifest(&Manifest {
        message_id: "m".into(),
        timeline: 1,
        tasks: Vec::new(),
    });
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(me.live_tasks().is_empty());
    assert!(
        fake.containers()
            .iter()
            .all(|c| c.status == ContainerStatus::Running),
        "the neighbour's container keeps running"
    );
    assert!(!sink.statuses(TASK).contains(&"STOPPED".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn reports_are_retried_in_order_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let down = Arc::new(Recorder::default());
    down.failures_left.store(usize::MAX, Ordering::SeqCst);
    let reporter = Reporter::new(down.clone(), Some(dir.path().to_owned()));
    let request = |status: &str| {
        Report::Task(SubmitTaskStateChangeRequest {
            task: Some(TASK.into()),
            status: Some(status.into()),
            ..Default::default()
        })
    };
    reporter.send(request("PENDING"));
    reporter.send(request("RUNNING"));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(reporter.pending(), 2);
    drop(reporter);

    let up = Arc::new(Recorder::default());
    up.failures_left.store(3, Ordering::SeqCst);
    let reporter = Reporter::new(up.clone(), Some(dir.path().to_owned()));
    reporter.resume();
    reporter.send(request("STOPPED"));
    for _ in 0..1000 {
        if reporter.pending() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(up.statuses(TASK), ["PENDING", "RUNNING", "STOPPED"]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

// awsvpc tasks on an agent of the Fargate pool: the tasks belong to a user
// cluster, the agent to the pool.

const POOL_OWNER: &str = "i-pool";
const WEB_CLUSTER: &str = "arn:aws:ecs:us-east-1:000000000000:cluster/web";
const POOL_TASK: &str = "arn:aws:ecs:us-east-1:000000000000:task/web/fa12";

fn interface(last: u8) -> TaskNetworkInterface {
    TaskNetworkInterface {
        attachment_arn: format!("arn:aws:ecs:us-east-1:000000000000:attachment/eni-{last}"),
        ipv4_address: format!("100.64.0.{last}"),
        mac_address: format!("0a:58:64:40:00:{last:02x}"),
        subnet_cidr: "100.64.0.0/22".into(),
    }
}

fn awsvpc_task(arn: &str, containers: Vec<ContainerDefinition>) -> TaskSpec {
    TaskSpec {
        task_arn: arn.into(),
        cluster_arn: WEB_CLUSTER.into(),
        network_mode: NetworkMode::Awsvpc,
        cpu: Some(256),
        memory_mib: Some(512),
        network_interface: Some(interface(9)),
        ..task(containers)
    }
}

/// An engine of the pool (cleanup at once, as `--fargate` sets it) with its
/// task network.
async fn pool(fake: &FakeRuntime, data_dir: Option<&std::path::Path>) -> Harness {
    let mut config = config(data_dir);
    config.cluster = FARGATE_POOL_CLUSTER.into();
    config.owner = POOL_OWNER.into();
    config.cleanup_wait = Duration::ZERO;
    config.task_network = Some(fake.ensure_task_network(POOL_OWNER).await.unwrap());
    start(fake.clone(), config).await
}

fn pool_runtime() -> FakeRuntime {
    let fake = FakeRuntime::new();
    fake.add_local_image("app");
    fake
}

fn pauses(fake: &FakeRuntime) -> Vec<ContainerInfo> {
    fake.containers()
        .into_iter()
        .filter(|c| {
            c.labels.get(LABEL_CONTAINER_NAME).map(String::as_str) == Some(PAUSE_CONTAINER_NAME)
        })
        .collect()
}

impl Recorder {
    /// The attachment status of every task report of `arn`, in order.
    fn attachments(&self, arn: &str) -> Vec<String> {
        self.task_reports(arn)
            .iter()
            .flat_map(|r| r.attachments.clone().unwrap_or_default())
            .map(|a| a.status)
            .collect()
    }

    async fn wait_attachment(&self, arn: &str, status: &str) {
        for _ in 0..100_000 {
            if self.attachments(arn).iter().any(|s| s == status) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{arn} never reported {status}: {:?}", self.attachments(arn));
    }
}

#[tokio::test(start_paused = true)]
async fn awsvpc_task_reports_attach_and_detach_and_leaves_nothing() {
    let fake = pool_runtime();
    let h = pool(&fake, None).await;
    fake.set_command_behavior("sidecar", FakeBehavior::exits(Duration::from_secs(5), 1));
    let mut web = container("web");
    web.port_mappings = Some(vec![PortMapping {
        container_port: Some(8000),
        ..Default::default()
    }]);
    let spec = awsvpc_task(POOL_TASK, vec![web, non_essential(container("sidecar"))]);
    h.engine.apply(vec![spec.clone()]);
    h.sink.wait_status(POOL_TASK, "RUNNING").await;

    let pause = pauses(&fake);
    assert_eq!(pause.len(), 1);
    let network = fake.task_networks()[0].clone();
    assert_eq!(network.name, "berth-eni-i-pool");
    assert_eq!(
        pause[0].networks,
        [(network.name.clone(), vec!["100.64.0.9".to_owned()])]
    );
    assert_eq!(pause[0].labels[LABEL_TASK_ARN], POOL_TASK);
    assert_eq!(pause[0].status, ContainerStatus::Running);
    let running = h.sink.last(POOL_TASK);
    let binding = container_report(&running, "web")
        .network_bindings
        .clone()
        .unwrap()[0]
        .clone();
    assert_eq!(binding.bind_ip.as_deref(), Some("100.64.0.9"));
    assert_eq!(
        (binding.container_port, binding.host_port),
        (Some(8000), Some(8000))
    );
    // The pause container is no container of the task.
    assert_eq!(running.containers.as_ref().unwrap().len(), 2);

    // A container report names the task's cluster too.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let sidecar = h
        .sink
        .reports
        .lock()
        .unwrap()
        .iter()
        .find_map(|r| match r {
            Report::Container(c) => Some(c.clone()),
            _ => None,
        })
        .expect("the sidecar's exit is reported");
    assert_eq!(sidecar.cluster.as_deref(), Some(WEB_CLUSTER));

    h.engine.apply(vec![stopped(&spec, 2)]);
    h.sink.wait_attachment(POOL_TASK, "DETACHED").await;
    // Gone before the report said so.
    assert!(pauses(&fake).is_empty());
    assert_eq!(
        h.sink.statuses(POOL_TASK),
        ["PENDING", "RUNNING", "STOPPED", "STOPPED"]
    );
    assert_eq!(
        h.sink.attachments(POOL_TASK),
        ["ATTACHED", "ATTACHED", "DETACHING", "DETACHED"]
    );
    let reports = h.sink.task_reports(POOL_TASK);
    assert!(
        reports
            .iter()
            .all(|r| r.cluster.as_deref() == Some(WEB_CLUSTER))
    );
    assert!(reports.iter().all(|r| {
        r.attachments.as_ref().unwrap()[0].attachment_arn == interface(9).attachment_arn
    }));
    let (detaching, detached) = (&reports[2], &reports[3]);
    assert_eq!(container_report(detaching, "web").exit_code, Some(143));
    assert!(detaching.execution_stopped_at.is_some());
    assert_eq!(
        detached.execution_stopped_at,
        detaching.execution_stopped_at
    );
    assert_eq!(container_report(detached, "web").exit_code, Some(143));

    // Cleaned up at once, and the address serves the next task.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(fake.containers().is_empty());
    assert!(h.engine.live_tasks().is_empty());
    let next = "arn:aws:ecs:us-east-1:000000000000:task/web/next";
    h.engine
        .apply(vec![awsvpc_task(next, vec![container("web")])]);
    h.sink.wait_status(next, "RUNNING").await;
    assert_eq!(h.sink.attachments(next), ["ATTACHED", "ATTACHED"]);
}

#[tokio::test(start_paused = true)]
async fn a_namespace_that_cannot_be_made_fails_the_task() {
    let fake = pool_runtime();
    let h = pool(&fake, None).await;
    fake.fail_namespaces(Some("no address left"));
    h.engine
        .apply(vec![awsvpc_task(POOL_TASK, vec![container("web")])]);
    h.sink.wait_status(POOL_TASK, "STOPPED").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.sink.statuses(POOL_TASK), ["STOPPED"]);
    assert_eq!(h.sink.attachments(POOL_TASK), ["DETACHED"]);
    let report = h.sink.last(POOL_TASK);
    assert_eq!(
        report.reason.as_deref(),
        Some("ResourceInitializationError: failed to configure the task network: no address left")
    );
    assert_eq!(report.cluster.as_deref(), Some(WEB_CLUSTER));
    assert!(h.fake.pulls().is_empty());
    assert_eq!(h.fake.create_count(), 0);

    // An address from another host's subnet is refused alike.
    fake.fail_namespaces(None);
    let other = "arn:aws:ecs:us-east-1:000000000000:task/web/other";
    let mut spec = awsvpc_task(other, vec![container("web")]);
    spec.network_interface.as_mut().unwrap().subnet_cidr = "100.64.4.0/22".into();
    spec.network_interface.as_mut().unwrap().ipv4_address = "100.64.4.9".into();
    h.engine.apply(vec![spec]);
    h.sink.wait_status(other, "STOPPED").await;
    let reason = h.sink.last(other).reason.unwrap();
    assert!(
        reason.starts_with("ResourceInitializationError: failed to configure the task network: the task's subnet 100.64.4.0/22"),
        "{reason}"
    );
    assert!(fake.containers().is_empty());
}

#[tokio::test(start_paused = true)]
async fn restarted_agent_adopts_the_namespace_and_tears_it_down() {
    let dir = tempfile::tempdir().unwrap();
    let fake = pool_runtime();
    let spec = awsvpc_task(POOL_TASK, vec![container("web")]);
    let first = pool(&fake, Some(dir.path())).await;
    first.engine.apply(vec![spec.clone()]);
    first.sink.wait_status(POOL_TASK, "RUNNING").await;
    first.engine.detach();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let created = fake.create_count();
    assert_eq!(created, 2, "the pause container and web");

    let second = pool(&fake, Some(dir.path())).await;
    assert_eq!(second.engine.live_tasks(), [POOL_TASK]);
    second.engine.apply(vec![spec.clone()]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(fake.create_count(), created, "nothing made twice");
    assert_eq!(pauses(&fake).len(), 1);

    second.engine.apply(vec![stopped(&spec, 2)]);
    second.sink.wait_attachment(POOL_TASK, "DETACHED").await;
    assert_eq!(second.sink.statuses(POOL_TASK), ["STOPPED", "STOPPED"]);
    assert_eq!(
        second.sink.attachments(POOL_TASK),
        ["DETACHING", "DETACHED"]
    );
    let report = second.sink.last(POOL_TASK);
    let names: Vec<_> = report
        .containers
        .iter()
        .flatten()
        .filter_map(|c| c.container_name.clone())
        .collect();
    assert_eq!(names, ["web"]);
    assert!(pauses(&fake).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_crash_between_the_stopped_reports_still_ends_detached() {
    let dir = tempfile::tempdir().unwrap();
    let fake = pool_runtime();
    let first = pool(&fake, Some(dir.path())).await;
    first
        .engine
        .apply(vec![awsvpc_task(POOL_TASK, vec![container("web")])]);
    first.sink.wait_status(POOL_TASK, "RUNNING").await;
    // The pause container cannot be removed: the agent keeps trying, and
    // is killed meanwhile.
    fake.fail_namespace_removals(Some("device or resource busy"));
    let web = fake
        .containers()
        .into_iter()
        .find(|c| c.labels.get(LABEL_CONTAINER_NAME).map(String::as_str) == Some("web"))
        .unwrap();
    fake.crash(&web.id, 3);
    first.sink.wait_attachment(POOL_TASK, "DETACHING").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        !first
            .sink
            .attachments(POOL_TASK)
            .contains(&"DETACHED".to_owned())
    );
    assert_eq!(pauses(&fake).len(), 1);
    let detaching = first.sink.last(POOL_TASK);
    first.engine.detach();

    fake.fail_namespace_removals(None);
    let second = pool(&fake, Some(dir.path())).await;
    second.sink.wait_attachment(POOL_TASK, "DETACHED").await;
    assert!(pauses(&fake).is_empty());
    assert_eq!(second.sink.statuses(POOL_TASK), ["STOPPED"]);
    let detached = second.sink.last(POOL_TASK);
    assert_eq!(
        detached.reason.as_deref(),
        Some("Essential container in task exited")
    );
    assert_eq!(
        detached.execution_stopped_at,
        detaching.execution_stopped_at
    );
    assert_eq!(container_report(&detached, "web").exit_code, Some(3));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(fake.containers().is_empty());
    assert!(second.engine.live_tasks().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_orphaned_namespace_is_removed_and_reported_detached() {
    let fake = pool_runtime();
    // Task records kept nowhere: the next engine finds only containers.
    let first = pool(&fake, None).await;
    first
        .engine
        .apply(vec![awsvpc_task(POOL_TASK, vec![container("web")])]);
    first.sink.wait_status(POOL_TASK, "RUNNING").await;
    first.engine.detach();

    let second = pool(&fake, None).await;
    assert!(second.engine.live_tasks().is_empty());
    second.engine.apply_manifest(&Manifest {
        message_id: "m".into(),
        timeline: 1,
        tasks: vec![ManifestEntry {
            task_arn: POOL_TASK.into(),
            desired_status: DesiredStatus::Stopped,
        }],
    });
    second.sink.wait_status(POOL_TASK, "STOPPED").await;
    assert!(pauses(&fake).is_empty());
    let report = second.sink.last(POOL_TASK);
    assert_eq!(report.cluster.as_deref(), Some(WEB_CLUSTER));
    assert_eq!(second.sink.attachments(POOL_TASK), ["DETACHED"]);
    assert_eq!(
        report.attachments.unwrap()[0].attachment_arn,
        interface(9).attachment_arn
    );
    let names: Vec<_> = report
        .containers
        .iter()
        .flatten()
        .filter_map(|c| c.container_name.clone())
        .collect();
    assert_eq!(names, ["web"]);
}

/// A pool engine keeping `warm` namespaces ready.
async fn warm_pool(fake: &FakeRuntime, data_dir: Option<&std::path::Path>, warm: usize) -> Harness {
    let mut config = config(data_dir);
    config.cluster = FARGATE_POOL_CLUSTER.into();
    config.owner = POOL_OWNER.into();
    config.cleanup_wait = Duration::ZERO;
    config.task_network = Some(fake.ensure_task_network(POOL_OWNER).await.unwrap());
    config.warm_namespaces = warm;
    start(fake.clone(), config).await
}

/// The ids of the owner's warm namespaces, claimed or not.
async fn warm(fake: &FakeRuntime) -> Vec<String> {
    fake.list_warm_namespaces(POOL_OWNER)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn plain_tasks_claim_warm_namespaces_refilled_once_they_run() {
    let fake = pool_runtime();
    // A container start slow enough to see the refill wait for it.
    fake.set_default_behavior(FakeBehavior {
        start_delay: Duration::from_millis(500),
        ..FakeBehavior::default()
    });
    let h = warm_pool(&fake, None, 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let idle = warm(&fake).await;
    assert_eq!(idle.len(), 2);

    h.engine
        .apply(vec![awsvpc_task(POOL_TASK, vec![container("web")])]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        warm(&fake).await.len(),
        2,
        "no refill while the task starts"
    );
    h.sink.wait_status(POOL_TASK, "RUNNING").await;
    let [pause] = &pauses(&fake)
        .into_iter()
        .filter(|p| !p.networks.is_empty())
        .collect::<Vec<_>>()[..]
    else {
        panic!("one namespace holds an address");
    };
    // The fake's ids grow with each container.
    assert_eq!(
        Some(&pause.id),
        idle.iter().min(),
        "the oldest idle namespace"
    );
    assert_eq!(
        pause.networks,
        [(
            fake.task_networks()[0].name.clone(),
            vec!["100.64.0.9".to_owned()]
        )]
    );
    assert!(!pause.labels.contains_key(LABEL_TASK_ARN));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(warm(&fake).await.len(), 3, "refilled once it ran");

    // A task that asks its namespace for DNS servers gets one of its own.
    let dns = "arn:aws:ecs:us-east-1:000000000000:task/web/dns";
    let mut web = container("web");
    web.dns_servers = Some(vec!["10.0.0.2".into()]);
    let mut spec = awsvpc_task(dns, vec![web]);
    spec.network_interface = Some(interface(10));
    h.engine.apply(vec![spec]);
    h.sink.wait_status(dns, "RUNNING").await;
    let own: Vec<ContainerInfo> = pauses(&fake)
        .into_iter()
        .filter(|p| p.labels.get(LABEL_TASK_ARN).map(String::as_str) == Some(dns))
        .collect();
    assert_eq!(own.len(), 1);
    assert_eq!(warm(&fake).await.len(), 3);

    h.engine.apply(vec![stopped(
        &awsvpc_task(POOL_TASK, vec![container("web")]),
        2,
    )]);
    h.sink.wait_attachment(POOL_TASK, "DETACHED").await;
    assert!(!warm(&fake).await.contains(&pause.id));

    // A graceful shutdown removes the idle ones, and only them.
    h.engine.shutdown().await;
    assert!(warm(&fake).await.is_empty());
    assert_eq!(pauses(&fake).len(), 1, "the running task keeps its own");
}

#[tokio::test(start_paused = true)]
async fn a_namespace_that_cannot_be_attached_is_removed() {
    let fake = pool_runtime();
    let h = warm_pool(&fake, None, 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let idle = warm(&fake).await;
    fake.fail_attachments(Some("RTNETLINK answers: No such device"));
    h.engine
        .apply(vec![awsvpc_task(POOL_TASK, vec![container("web")])]);
    h.sink.wait_status(POOL_TASK, "STOPPED").await;
    let report = h.sink.last(POOL_TASK);
    assert_eq!(
        report.reason.as_deref(),
        Some(
            "ResourceInitializationError: failed to configure the task network: RTNETLINK answers: No such device"
        )
    );
    assert_eq!(h.sink.attachments(POOL_TASK), ["DETACHED"]);
    // The warm namespace it tried and the one it made are both gone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let now = warm(&fake).await;
    assert_eq!(now.len(), 1);
    assert_ne!(now, idle);
    assert_eq!(pauses(&fake).len(), 1, "only the refilled one");
    assert_eq!(h.fake.pulls(), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn a_restarted_agent_adopts_a_claimed_warm_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let fake = pool_runtime();
    let spec = awsvpc_task(POOL_TASK, vec![container("web")]);
    let first = warm_pool(&fake, Some(dir.path()), 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let [claimed] = &warm(&fake).await[..] else {
        panic!("one idle namespace");
    };
    let claimed = claimed.clone();
    first.engine.apply(vec![spec.clone()]);
    first.sink.wait_status(POOL_TASK, "RUNNING").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = warm(&fake).await;
    assert_eq!(before.len(), 2);
    first.engine.detach();

    let second = warm_pool(&fake, Some(dir.path()), 1).await;
    assert_eq!(second.engine.live_tasks(), [POOL_TASK]);
    second.engine.apply(vec![spec.clone()]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = warm(&fake).await;
    assert_eq!(after.len(), 2);
    assert!(after.contains(&claimed), "the task's namespace stays");
    assert!(
        before
            .iter()
            .all(|id| id == &claimed || !after.contains(id)),
        "the idle one was replaced"
    );
    assert!(second.sink.statuses(POOL_TASK).is_empty(), "nothing to say");

    second.engine.apply(vec![stopped(&spec, 2)]);
    second.sink.wait_attachment(POOL_TASK, "DETACHED").await;
    assert_eq!(
        second.sink.attachments(POOL_TASK),
        ["DETACHING", "DETACHED"]
    );
    assert!(!warm(&fake).await.contains(&claimed));
}

#[tokio::test(start_paused = true)]
async fn a_crash_while_the_namespace_comes_up_starts_the_launch_over() {
    let dir = tempfile::tempdir().unwrap();
    let fake = pool_runtime();
    let spec = awsvpc_task(POOL_TASK, vec![container("web")]);
    let first = pool(&fake, Some(dir.path())).await;
    // The agent dies while the address is being given: the container was
    // already made in the namespace, and never started.
    fake.set_attach_delay(Duration::from_secs(60));
    first.engine.apply(vec![spec.clone()]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = fake.containers();
    assert_eq!(before.len(), 2, "the pause container and web");
    assert!(first.sink.statuses(POOL_TASK).is_empty());
    first.engine.detach();

    fake.set_attach_delay(Duration::ZERO);
    let second = pool(&fake, Some(dir.path())).await;
    second.engine.apply(vec![spec.clone()]);
    second.sink.wait_status(POOL_TASK, "RUNNING").await;
    assert_eq!(second.sink.statuses(POOL_TASK), ["PENDING", "RUNNING"]);
    let after = fake.containers();
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|c| before.iter().all(|b| b.id != c.id)),
        "both made anew: {after:?}"
    );
    assert!(after.iter().all(|c| c.status == ContainerStatus::Running));
}
