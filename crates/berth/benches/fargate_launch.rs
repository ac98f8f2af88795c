//! Fargate task launch on the real Docker Engine, with real `berth server`
//! and `berth agent --fargate` processes: RunTask (launchType FARGATE,
//! awsvpc) → lastStatus RUNNING, as a client polling DescribeTasks every
//! 5 ms sees it, against bare Engine API create+start of the same image on
//! a network of its own (a user-defined bridge), in the same run and
//! alternating so both see the same machine. Anchor: Berth ≤ 1.15× bare at
//! p50.
//!
//! Each Berth launch is also split by the timestamps the control plane
//! records: createdAt → pullStartedAt (placement, the address, the agent
//! receiving the task and making its network namespace) and
//! pullStartedAt → startedAt (the image check, create and start).
//!
//! Needs `tests/images/build.sh` to have run and a release build of the
//! binary (`cargo build --release -p berth`, or set BERTH_BIN). Run:
//! `cargo bench -p berth --bench fargate_launch` (env RUNS).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_client::Client;
use berth_types::*;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Ipam, IpamConfig, NetworkCreateRequest,
    NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder, StartContainerOptions,
};

mod common;
use common::{Processes, binary, env_or, percentile, start_server, wait_until};

const IMAGE: &str = "berth-test/web:v1";
const FAMILY: &str = "bench-fargate";
const NETWORK: &str = "berth-bench-bare";
/// Outside the 100.64.0.0/10 range Fargate agents take their subnets from.
const BARE_SUBNET: &str = "198.18.200.0/24";
const POLL: Duration = Duration::from_millis(5);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs = env_or("RUNS", 20);
    let cluster = format!("bench-fargate-{}", std::process::id());
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, endpoint, ecs) = start_server(&dir.path().join("server"), &cluster).await;
    let agent = Command::new(binary())
        .args(["agent", "--fargate", "--endpoint", &endpoint])
        .arg("--data-dir")
        .arg(dir.path().join("agent"))
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("berth agent starts");
    let processes = Processes(vec![server, agent]);
    let docker = Docker::connect_with_local_defaults().expect("docker");

    ecs.send(&PutClusterCapacityProvidersRequest {
        cluster: cluster.clone(),
        capacity_providers: vec!["FARGATE".into()],
        default_capacity_provider_strategy: Vec::new(),
    })
    .await
    .expect("capacity providers");
    let td: RegisterTaskDefinitionRequest = serde_json::from_value(serde_json::json!({
        "family": FAMILY,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{"name": "web", "image": IMAGE,
            "portMappings": [{"containerPort": 8000}]}]
    }))
    .expect("task definition");
    ecs.send(&td).await.expect("register");
    // The pool is ready once a task can be placed.
    wait_until(Duration::from_secs(30), || async {
        match launch(&ecs, &cluster).await {
            Some((arn, _)) => {
                wait_running(&ecs, &cluster, &arn).await;
                stop(&ecs, &cluster, &arn).await;
                true
            }
            None => false,
        }
    })
    .await;

    let _ = docker.remove_network(NETWORK).await;
    docker
        .create_network(NetworkCreateRequest {
            name: NETWORK.into(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(BARE_SUBNET.into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("bare network");

    let mut berth = Vec::new();
    let mut placed = Vec::new();
    let mut started = Vec::new();
    let mut bare = Vec::new();
    for i in 0..runs {
        let begin = Instant::now();
        let (arn, _) = launch(&ecs, &cluster).await.expect("placed");
        let task = wait_running(&ecs, &cluster, &arn).await;
        berth.push(begin.elapsed());
        let ms = |t: Option<Timestamp>| t.map_or(0, Timestamp::millis);
        placed.push(Duration::from_millis(
            (ms(task.pull_started_at) - ms(task.created_at)).max(0) as u64,
        ));
        started.push(Duration::from_millis(
            (ms(task.started_at) - ms(task.pull_started_at)).max(0) as u64,
        ));
        stop(&ecs, &cluster, &arn).await;
        bare.push(bare_one(&docker, i).await);
    }
    let _ = docker.remove_network(NETWORK).await;
    for v in [&mut berth, &mut placed, &mut started, &mut bare] {
        v.sort();
    }
    println!("Fargate RunTask -> RUNNING vs bare create+start on its own network ({runs} each)");
    println!(
        "  berth  p50 {:7.1} ms  p90 {:7.1} ms",
        percentile(&berth, 0.5),
        percentile(&berth, 0.9)
    );
    println!(
        "         created -> pullStarted p50 {:6.1} ms; pullStarted -> started p50 {:6.1} ms",
        percentile(&placed, 0.5),
        percentile(&started, 0.5)
    );
    println!(
        "  bare   p50 {:7.1} ms  p90 {:7.1} ms",
        percentile(&bare, 0.5),
        percentile(&bare, 0.9)
    );
    println!(
        "  ratio at p50: {:.2}x (anchor <= 1.15x)",
        percentile(&berth, 0.5) / percentile(&bare, 0.5)
    );
    drop(processes);
}

async fn launch(ecs: &Client, cluster: &str) -> Option<(String, Task)> {
    let network: NetworkConfiguration = serde_json::from_value(serde_json::json!({
        "awsvpcConfiguration": {"subnets": ["subnet-0bench"], "assignPublicIp": "ENABLED"}
    }))
    .expect("network configuration");
    let run = ecs
        .send(&RunTaskRequest {
            cluster: Some(cluster.into()),
            task_definition: FAMILY.into(),
            launch_type: Some(LaunchType::Fargate),
            network_configuration: Some(network),
            ..Default::default()
        })
        .await
        .expect("run");
    let task = run.tasks.and_then(|t| t.into_iter().next())?;
    Some((task.task_arn.clone()?, task))
}

async fn describe(ecs: &Client, cluster: &str, arn: &str) -> Task {
    ecs.send(&DescribeTasksRequest {
        cluster: Some(cluster.into()),
        tasks: vec![arn.into()],
        ..Default::default()
    })
    .await
    .expect("describe")
    .tasks
    .and_then(|t| t.into_iter().next())
    .expect("the task")
}

async fn wait_running(ecs: &Client, cluster: &str, arn: &str) -> Task {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let task = describe(ecs, cluster, arn).await;
        match task.last_status.as_deref() {
            Some("RUNNING") => return task,
            Some("STOPPED") => panic!("the task stopped: {:?}", task.stopped_reason),
            _ => {}
        }
        assert!(Instant::now() < deadline, "the task never ran");
        tokio::time::sleep(POLL).await;
    }
}

async fn stop(ecs: &Client, cluster: &str, arn: &str) {
    ecs.send(&StopTaskRequest {
        cluster: Some(cluster.into()),
        task: arn.into(),
        ..Default::default()
    })
    .await
    .expect("stop");
    wait_until(Duration::from_secs(60), || async {
        describe(ecs, cluster, arn).await.last_status.as_deref() == Some("STOPPED")
    })
    .await;
}

/// Create and start one container of the same image on the bare network.
async fn bare_one(docker: &Docker, i: usize) -> Duration {
    let name = format!("berth-bench-bare-{}-{i}", std::process::id());
    let begin = Instant::now();
    let body = ContainerCreateBody {
        image: Some(IMAGE.into()),
        host_config: Some(HostConfig {
            network_mode: Some(NETWORK.into()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(
                [(NETWORK.to_owned(), EndpointSettings::default())]
                    .into_iter()
                    .collect(),
            ),
        }),
        ..Default::default()
    };
    let created = docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(&name).build()),
            body,
        )
        .await
        .expect("create");
    docker
        .start_container(&created.id, None::<StartContainerOptions>)
        .await
        .expect("start");
    let elapsed = begin.elapsed();
    let _ = docker
        .remove_container(
            &created.id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await;
    elapsed
}
