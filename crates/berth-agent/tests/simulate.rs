//! Simulated hosts against an in-process control plane: they register as
//! container instances spread over availability zones, connect their push
//! channels, run the tasks RunTask places on them to RUNNING, stop them on
//! StopTask or when their run time ends (exit code 0), report containers
//! with a health check HEALTHY when told to, keep their identities across a
//! restart, and stop cleanly. Hosts of the Fargate pool run FARGATE tasks of
//! a user cluster in their own namespaces, reporting the attachment.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use berth_agent::{AgentConfig, Simulation};
use berth_client::{Client, Credentials};
use berth_types::agent::{FARGATE_POOL_CLUSTER, TASK_ENI_CAPABILITY, TASK_ENI_SUBNET_ATTRIBUTE};
use berth_types::*;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const CLUSTER: &str = "sim";

struct ControlPlane {
    server: berth_server::Running,
    ecs: Client,
    dir: tempfile::TempDir,
}

async fn control_plane() -> ControlPlane {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("warn,berth_agent::simulate=info")
        .try_init();
    let dir = tempfile::tempdir().expect("dir");
    let server = berth_server::spawn(berth_server::Config::local(dir.path().join("server")))
        .await
        .expect("server starts");
    let ecs = Client::new(
        &server.endpoint(),
        Credentials::new("AKID", "secret", None),
        "us-east-1",
    )
    .expect("client");
    ecs.send(&CreateClusterRequest {
        cluster_name: Some(CLUSTER.into()),
        ..CreateClusterRequest::default()
    })
    .await
    .expect("cluster");
    let td: RegisterTaskDefinitionRequest = serde_json::from_value(serde_json::json!({
        "family": "app",
        "containerDefinitions": [{"name": "app", "image": "berth-sim/app", "cpu": 128, "memory": 256}]
    }))
    .expect("task definition");
    ecs.send(&td).await.expect("register task definition");
    ControlPlane { server, ecs, dir }
}

/// A running simulation and the means to stop it.
struct Fleet {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), berth_agent::AgentError>>,
}

impl Fleet {
    fn start(
        plane: &ControlPlane,
        hosts: usize,
        run_time: Option<Duration>,
        healthy_after: Option<Duration>,
    ) -> Self {
        Self::start_in(plane, CLUSTER, hosts, run_time, healthy_after)
    }

    fn start_in(
        plane: &ControlPlane,
        cluster: &str,
        hosts: usize,
        run_time: Option<Duration>,
        healthy_after: Option<Duration>,
    ) -> Self {
        let mut agent = AgentConfig::new(
            plane.server.endpoint(),
            cluster,
            plane.dir.path().join("agent"),
        );
        if cluster == FARGATE_POOL_CLUSTER {
            agent.cleanup_wait = Duration::ZERO;
        }
        agent.credentials = Some(Credentials::new("AKID", "secret", None));
        agent.region = Some("us-east-1".into());
        agent.attributes = vec![("fleet".into(), "sim".into())];
        let mut simulation = Simulation::new(agent, hosts);
        simulation.task_start_delay = Duration::from_millis(20);
        simulation.task_run_time = run_time;
        simulation.task_healthy_after = healthy_after;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(berth_agent::simulate(simulation, async {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the simulation stops within 10 s")
            .expect("no panic")
            .expect("the simulation ends cleanly");
    }
}

async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn instances(ecs: &Client) -> Vec<ContainerInstance> {
    let mut arns = Vec::new();
    let mut next_token = None;
    loop {
        let page = ecs
            .send(&ListContainerInstancesRequest {
                cluster: Some(CLUSTER.into()),
                next_token: next_token.take(),
                ..ListContainerInstancesRequest::default()
            })
            .await
            .expect("list instances");
        arns.extend(page.container_instance_arns.unwrap_or_default());
        next_token = page.next_token;
        if next_token.is_none() {
            break;
        }
    }
    let mut all = Vec::new();
    for chunk in arns.chunks(100) {
        let page = ecs
            .send(&DescribeContainerInstancesRequest {
                cluster: Some(CLUSTER.into()),
                container_instances: chunk.to_vec(),
                include: None,
            })
            .await
            .expect("describe instances");
        all.extend(page.container_instances.unwrap_or_default());
    }
    all
}

/// Waits until exactly `hosts` instances are registered and connected.
async fn connected(ecs: &Client, hosts: usize) -> Vec<ContainerInstance> {
    eventually(
        &format!("{hosts} connected container instances"),
        Duration::from_secs(30),
        || async {
            let all = instances(ecs).await;
            (all.len() == hosts && all.iter().all(|ci| ci.agent_connected)).then_some(all)
        },
    )
    .await
}

fn attribute<'a>(ci: &'a ContainerInstance, name: &str) -> Option<&'a str> {
    ci.attributes
        .iter()
        .flatten()
        .find(|a| a.name == name)
        .and_then(|a| a.value.as_deref())
}

async fn run_tasks(ecs: &Client, count: i32) -> Vec<String> {
    let response = ecs
        .send(&RunTaskRequest {
            cluster: Some(CLUSTER.into()),
            task_definition: "app".into(),
            count: Some(count),
            ..RunTaskRequest::default()
        })
        .await
        .expect("run task");
    assert_eq!(response.failures.unwrap_or_default(), vec![]);
    response
        .tasks
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| t.task_arn)
        .collect()
}

async fn describe(ecs: &Client, tasks: &[String]) -> Vec<Task> {
    ecs.send(&DescribeTasksRequest {
        cluster: Some(CLUSTER.into()),
        tasks: tasks.to_vec(),
        include: None,
    })
    .await
    .expect("describe tasks")
    .tasks
    .unwrap_or_default()
}

async fn all_reach(ecs: &Client, tasks: &[String], status: &str) -> Vec<Task> {
    eventually(
        &format!("{} tasks {status}", tasks.len()),
        Duration::from_secs(30),
        || async {
            let found = describe(ecs, tasks).await;
            (found.len() == tasks.len()
                && found
                    .iter()
                    .all(|t| t.last_status.as_deref() == Some(status)))
            .then_some(found)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_hosts_register_over_three_zones_and_run_tasks() {
    let plane = control_plane().await;
    let fleet = Fleet::start(&plane, 50, None, None);
    let all = connected(&plane.ecs, 50).await;

    let mut zones: BTreeMap<&str, usize> = BTreeMap::new();
    for ci in &all {
        *zones
            .entry(attribute(ci, "ecs.availability-zone").expect("zone"))
            .or_default() += 1;
        assert_eq!(attribute(ci, "fleet"), Some("sim"));
        let cpu = ci
            .registered_resources
            .iter()
            .flatten()
            .find(|r| r.name.as_deref() == Some("CPU"))
            .expect("CPU");
        assert_eq!(cpu.integer_value, 2048);
    }
    assert_eq!(
        zones,
        BTreeMap::from([("us-east-1a", 17), ("us-east-1b", 17), ("us-east-1c", 16)])
    );
    let mut instance_ids: Vec<_> = all
        .iter()
        .filter_map(|ci| ci.ec2_instance_id.clone())
        .collect();
    instance_ids.sort();
    instance_ids.dedup();
    assert_eq!(instance_ids.len(), 50, "every host has its own identity");
    let mut subnets: Vec<&str> = all
        .iter()
        .map(|ci| attribute(ci, TASK_ENI_SUBNET_ATTRIBUTE).expect("a task subnet"))
        .collect();
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 50, "every host has its own task subnet");
    assert!(
        subnets
            .iter()
            .all(|s| s.starts_with("100.") && s.ends_with("/22"))
    );
    assert!(all.iter().all(|ci| {
        ci.attributes
            .iter()
            .flatten()
            .any(|a| a.name == TASK_ENI_CAPABILITY)
    }));

    let tasks = run_tasks(&plane.ecs, 10).await;
    assert_eq!(tasks.len(), 10);
    let running = all_reach(&plane.ecs, &tasks, "RUNNING").await;
    for task in &running {
        let container = &task.containers.as_ref().expect("containers")[0];
        assert_eq!(container.last_status.as_deref(), Some("RUNNING"));
        assert!(container.runtime_id.is_some());
    }

    plane
        .ecs
        .send(&StopTaskRequest {
            cluster: Some(CLUSTER.into()),
            task: tasks[0].clone(),
            reason: Some("enough".into()),
        })
        .await
        .expect("stop task");
    let stopped = all_reach(&plane.ecs, &tasks[..1], "STOPPED").await;
    assert_eq!(stopped[0].stopped_reason.as_deref(), Some("enough"));
    assert_eq!(stopped[0].stop_code, Some(TaskStopCode::UserInitiated));
    // The others keep running.
    let rest = describe(&plane.ecs, &tasks[1..]).await;
    assert!(
        rest.iter()
            .all(|t| t.last_status.as_deref() == Some("RUNNING"))
    );

    fleet.stop().await;
    eventually(
        "every instance disconnected",
        Duration::from_secs(10),
        || async {
            instances(&plane.ecs)
                .await
                .iter()
                .all(|ci| !ci.agent_connected)
                .then_some(())
        },
    )
    .await;
    plane.server.stop().await.expect("server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_end_after_their_run_time_and_hosts_keep_their_identity() {
    let plane = control_plane().await;
    let fleet = Fleet::start(&plane, 5, Some(Duration::from_millis(500)), None);
    let before = connected(&plane.ecs, 5).await;

    let tasks = run_tasks(&plane.ecs, 3).await;
    let stopped = all_reach(&plane.ecs, &tasks, "STOPPED").await;
    for task in &stopped {
        assert_eq!(task.stop_code, Some(TaskStopCode::EssentialContainerExited));
        let container = &task.containers.as_ref().expect("containers")[0];
        assert_eq!(container.exit_code, Some(0));
        assert!(task.started_at.is_some(), "the task ran before it ended");
    }

    // A restarted simulation comes back as the same five instances.
    fleet.stop().await;
    let fleet = Fleet::start(&plane, 5, None, None);
    let after = connected(&plane.ecs, 5).await;
    let arns = |all: &[ContainerInstance]| {
        let mut arns: Vec<_> = all
            .iter()
            .filter_map(|ci| ci.container_instance_arn.clone())
            .collect();
        arns.sort();
        arns
    };
    assert_eq!(arns(&before), arns(&after));
    fleet.stop().await;
    plane.server.stop().await.expect("server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_with_a_health_check_turn_healthy_when_told_to() {
    let plane = control_plane().await;
    let td: RegisterTaskDefinitionRequest = serde_json::from_value(serde_json::json!({
        "family": "checked",
        "containerDefinitions": [{"name": "app", "image": "berth-sim/app", "cpu": 128,
            "memory": 256, "healthCheck": {"command": ["CMD", "true"]}}]
    }))
    .expect("task definition");
    plane.ecs.send(&td).await.expect("register task definition");
    let fleet = Fleet::start(&plane, 2, None, Some(Duration::from_millis(200)));
    connected(&plane.ecs, 2).await;

    let unchecked = run_tasks(&plane.ecs, 1).await;
    let checked: Vec<String> = plane
        .ecs
        .send(&RunTaskRequest {
            cluster: Some(CLUSTER.into()),
            task_definition: "checked".into(),
            ..RunTaskRequest::default()
        })
        .await
        .expect("run task")
        .tasks
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| t.task_arn)
        .collect();
    all_reach(&plane.ecs, &unchecked, "RUNNING").await;
    eventually(
        "the checked task HEALTHY",
        Duration::from_secs(10),
        || async {
            describe(&plane.ecs, &checked)
                .await
                .iter()
                .all(|t| t.health_status == Some(HealthStatus::Healthy))
                .then_some(())
        },
    )
    .await;
    // A container without a check has no health to report, whatever the
    // simulation says.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let task = &describe(&plane.ecs, &unchecked).await[0];
    assert_ne!(task.health_status, Some(HealthStatus::Healthy));
    fleet.stop().await;
    plane.server.stop().await.expect("server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fargate_pool_hosts_run_awsvpc_tasks_of_a_user_cluster() {
    let plane = control_plane().await;
    let td: RegisterTaskDefinitionRequest = serde_json::from_value(serde_json::json!({
        "family": "platform-task",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{"name": "api", "image": "berth-sim/app",
            "portMappings": [{"containerPort": 8000}]}]
    }))
    .expect("task definition");
    plane.ecs.send(&td).await.expect("register task definition");
    let fleet = Fleet::start_in(&plane, FARGATE_POOL_CLUSTER, 2, None, None);
    let run: RunTaskRequest = serde_json::from_value(serde_json::json!({
        "cluster": CLUSTER,
        "taskDefinition": "platform-task",
        "launchType": "FARGATE",
        "count": 2,
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-0a1b2c3d"]}},
    }))
    .expect("run task request");
    // The pool's hosts register in the background.
    let tasks: Vec<String> = eventually("FARGATE tasks placed", Duration::from_secs(30), || {
        let run = run.clone();
        let ecs = &plane.ecs;
        async move {
            let response = ecs.send(&run).await.ok()?;
            let tasks: Vec<String> = response
                .tasks
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| t.task_arn)
                .collect();
            (tasks.len() == 2).then_some(tasks)
        }
    })
    .await;
    let running = all_reach(&plane.ecs, &tasks, "RUNNING").await;
    let mut addresses = Vec::new();
    for task in &running {
        let eni = task
            .attachments
            .iter()
            .flatten()
            .find(|a| a.r#type.as_deref() == Some("ElasticNetworkInterface"))
            .expect("an ENI attachment");
        assert_eq!(eni.status.as_deref(), Some("ATTACHED"));
        let address = eni
            .details
            .iter()
            .flatten()
            .find(|d| d.name.as_deref() == Some("privateIPv4Address"))
            .and_then(|d| d.value.clone())
            .expect("the task's address");
        assert!(address.starts_with("100."), "{address}");
        let binding = task.containers.as_ref().expect("containers")[0]
            .network_bindings
            .clone()
            .unwrap_or_default();
        assert_eq!(binding[0].bind_ip.as_deref(), Some(address.as_str()));
        assert_eq!(binding[0].host_port, Some(8000));
        addresses.push(address);
    }
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 2);

    plane
        .ecs
        .send(&StopTaskRequest {
            cluster: Some(CLUSTER.into()),
            task: tasks[0].clone(),
            reason: None,
        })
        .await
        .expect("stop task");
    let stopped = all_reach(&plane.ecs, &tasks[..1], "STOPPED").await;
    let eni = stopped[0]
        .attachments
        .iter()
        .flatten()
        .find(|a| a.r#type.as_deref() == Some("ElasticNetworkInterface"))
        .expect("an ENI attachment");
    assert_eq!(eni.status.as_deref(), Some("DETACHED"));
    fleet.stop().await;
    plane.server.stop().await.expect("server stops");
}
