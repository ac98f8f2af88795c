//! Log shipping on the fake runtime: lines reach the sink in batches under
//! ECS's group/stream names, failures are retried, and an engine that
//! restarts resumes after the last delivered line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_agent::runtime::BoxFuture;
use berth_agent::runtime::fake::{FakeBehavior, FakeRuntime};
use berth_agent::{
    Engine, EngineConfig, LogDestination, LogEvent, LogShipper, LogSink, Report, Reporter,
    ShipperConfig, StateSink, SubmitError,
};
use berth_types::agent::{ContainerSpec, DesiredStatus, TaskSpec};
use berth_types::{ContainerDefinition, LogConfiguration, LogDriver, NetworkMode};

const TASK: &str =
    "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef";
const TASK_ID: &str = "0123456789abcdef0123456789abcdef";

#[derive(Default)]
struct Reports(Mutex<Vec<Report>>);

impl StateSink for Reports {
    fn submit<'a>(&'a self, report: &'a Report) -> BoxFuture<'a, Result<(), SubmitError>> {
        Box::pin(async move {
            self.0.lock().unwrap().push(report.clone());
            Ok(())
        })
    }
}

#[derive(Default)]
struct Logs {
    puts: Mutex<Vec<(LogDestination, Vec<LogEvent>)>>,
    failures_left: AtomicUsize,
}

impl LogSink for Logs {
    fn put<'a>(
        &'a self,
        destination: &'a LogDestination,
        events: &'a [LogEvent],
    ) -> BoxFuture<'a, Result<(), SubmitError>> {
        Box::pin(async move {
            if self
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(SubmitError::Retry("server down".into()));
            }
            self.puts
                .lock()
                .unwrap()
                .push((destination.clone(), events.to_vec()));
            Ok(())
        })
    }
}

impl Logs {
    fn by_stream(&self) -> BTreeMap<(String, String), Vec<String>> {
        let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for (d, events) in self.puts.lock().unwrap().iter() {
            assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
            out.entry((d.group.clone(), d.stream.clone()))
                .or_default()
                .extend(events.iter().map(|e| e.message.clone()));
        }
        out
    }

    async fn wait_for(&self, group: &str, stream: &str, count: usize) -> Vec<String> {
        for _ in 0..10_000 {
            let got = self
                .by_stream()
                .get(&(group.to_owned(), stream.to_owned()))
                .cloned()
                .unwrap_or_default();
            if got.len() >= count {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{group} {stream}: {:?}", self.by_stream());
    }
}

fn container(name: &str) -> ContainerDefinition {
    ContainerDefinition {
        name: Some(name.into()),
        image: Some("app".into()),
        command: Some(vec![name.into()]),
        ..Default::default()
    }
}

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

async fn engine(
    fake: &FakeRuntime,
    logs: Arc<Logs>,
    dir: Option<&std::path::Path>,
    shipper_config: ShipperConfig,
) -> Engine {
    let mut config = EngineConfig::new("arn:aws:ecs:us-east-1:000000000000:cluster/default");
    config.data_dir = dir.map(Into::into);
    config.cleanup_wait = Duration::from_secs(3600);
    config.task_cgroups = false;
    config.port_range = 50000..=50010;
    config.logs = Some(LogShipper::new(
        logs,
        shipper_config,
        dir.map(|d| d.join("logs")),
    ));
    let reporter = Reporter::new(Arc::new(Reports::default()), None);
    Engine::start(Arc::new(fake.clone()), reporter, config)
        .await
        .unwrap()
        .0
}

#[tokio::test(start_paused = true)]
async fn logs_ship_under_ecs_names_with_retries() {
    let fake = FakeRuntime::new();
    fake.add_local_image("app");
    fake.set_command_behavior(
        "plain",
        FakeBehavior {
            log_lines: vec!["p1".into(), "".into(), "p2".into()],
            ..FakeBehavior::long_running()
        },
    );
    fake.set_command_behavior(
        "aws",
        FakeBehavior {
            log_lines: (0..25).map(|i| format!("a{i}")).collect(),
            ..FakeBehavior::exits(Duration::from_secs(2), 0)
        },
    );
    let logs = Arc::new(Logs::default());
    logs.failures_left.store(2, Ordering::SeqCst);
    let config = ShipperConfig {
        max_batch_events: 10,
        ..ShipperConfig::default()
    };
    let engine = engine(&fake, logs.clone(), None, config).await;
    let mut aws = container("aws");
    aws.essential = Some(false);
    aws.log_configuration = Some(LogConfiguration {
        log_driver: LogDriver::Awslogs,
        options: Some(BTreeMap::from([
            ("awslogs-group".to_owned(), "/custom/group".to_owned()),
            ("awslogs-stream-prefix".to_owned(), "svc".to_owned()),
            ("awslogs-region".to_owned(), "us-east-1".to_owned()),
        ])),
        secret_options: None,
    });
    engine.apply(vec![task(vec![container("plain"), aws])]);

    let plain = logs
        .wait_for("/ecs/web", &format!("ecs/plain/{TASK_ID}"), 2)
        .await;
    // Empty lines are not events.
    assert_eq!(plain, ["p1", "p2"]);
    let aws = logs
        .wait_for("/custom/group", &format!("svc/aws/{TASK_ID}"), 25)
        .await;
    assert_eq!(aws, (0..25).map(|i| format!("a{i}")).collect::<Vec<_>>());
    // Batches hold at most 10 events.
    assert!(
        logs.puts
            .lock()
            .unwrap()
            .iter()
            .all(|(_, events)| events.len() <= 10)
    );

    // Lines written later are shipped too, within the flush interval.
    let plain_id = fake
        .containers()
        .into_iter()
        .find(|c| c.name.contains("-plain-"))
        .unwrap()
        .id;
    fake.write_log(&plain_id, "later", true);
    let plain = logs
        .wait_for("/ecs/web", &format!("ecs/plain/{TASK_ID}"), 3)
        .await;
    assert_eq!(plain, ["p1", "p2", "later"]);
    assert_eq!(logs.by_stream().len(), 2);
    engine.detach();
}

#[tokio::test(start_paused = true)]
async fn restarted_engine_resumes_after_the_last_shipped_line() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeRuntime::new();
    fake.add_local_image("app");
    fake.set_default_behavior(FakeBehavior {
        log_lines: vec!["one".into(), "two".into()],
        ..FakeBehavior::long_running()
    });
    let logs = Arc::new(Logs::default());
    let first = engine(
        &fake,
        logs.clone(),
        Some(dir.path()),
        ShipperConfig::default(),
    )
    .await;
    first.apply(vec![task(vec![container("web")])]);
    let stream = format!("ecs/web/{TASK_ID}");
    logs.wait_for("/ecs/web", &stream, 2).await;
    first.detach();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let id = fake.containers()[0].id.clone();
    fake.write_log(&id, "three", false);
    let second = engine(
        &fake,
        logs.clone(),
        Some(dir.path()),
        ShipperConfig::default(),
    )
    .await;
    let got = logs.wait_for("/ecs/web", &stream, 3).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got_later = logs.by_stream()[&("/ecs/web".to_owned(), stream.clone())].clone();
    assert_eq!(got, ["one", "two", "three"]);
    assert_eq!(got_later, got, "no line is shipped twice");

    // Stopping the task ships what is left and ends the follower.
    fake.write_log(&id, "four", false);
    second.apply(vec![TaskSpec {
        desired_status: DesiredStatus::Stopped,
        desired_version: 2,
        ..task(vec![container("web")])
    }]);
    let got = logs.wait_for("/ecs/web", &stream, 4).await;
    assert_eq!(got.last().map(String::as_str), Some("four"));
    second.detach();
}
