//! Fargate task launch on the real Docker Engine, with real `berth server`
//! and `berth agent --fargate` processes: RunTask (launchType FARGATE,
//! awsvpc) → lastStatus RUNNING, as a client polling DescribeTasks every
//! 5 ms sees it, against bare Engine API create+start of the same image on
//! a network of its own (a user-defined bridge), in the same run and
//! alternating so both see the same machine. Anchor: Berth ≤ 1.15× bare at
//! p50.
//!
//! Two phases, each with its own server and agent and its own bare
//! samples: the pool (`--warm-namespaces 2`: every launch should take a
//! warm namespace, and the run counts those that did, from the pause
//! container each task's container joined) and the cold path
//! (`--warm-namespaces 0`: every launch starts its pause container). Before
//! each launch, Berth's or bare, the engine is left to settle: the last
//! task's containers gone and, in the pool phase, the pool full again, so
//! that neither side pays for the other's cleanup.
//!
//! Each Berth launch is also split by the timestamps the control plane
//! records: createdAt → pullStartedAt (placement, the address, the agent
//! receiving the task and making its network namespace) and
//! pullStartedAt → startedAt (the image check, create and start).
//!
//! Needs `tests/images/build.sh` to have run and a release build of the
//! binary (`cargo build --release -p berth`, or set BERTH_BIN). Run:
//! `cargo bench -p berth --bench fargate_launch` (env RUNS).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_agent::runtime::{LABEL_FAMILY, LABEL_OWNER, LABEL_TASK_ARN, LABEL_WARM_NAMESPACE};
use berth_client::Client;
use berth_types::*;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, EndpointSettings, HostConfig,
    Ipam, IpamConfig, NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StartContainerOptions,
};

mod common;
use common::{Processes, binary, env_or, percentile, start_server, wait_until};

const IMAGE: &str = "berth-test/web:v1";
const FAMILY: &str = "bench-fargate";
const NETWORK: &str = "berth-bench-bare";
/// Outside the 100.64.0.0/10 range Fargate agents take their subnets from.
const BARE_SUBNET: &str = "198.18.200.0/24";
const POLL: Duration = Duration::from_millis(5);
/// The pool phase's `--warm-namespaces`, `berth agent --fargate`'s default.
const WARM: usize = 2;

/// What one phase measured.
#[derive(Default)]
struct Samples {
    berth: Vec<Duration>,
    placed: Vec<Duration>,
    started: Vec<Duration>,
    bare: Vec<Duration>,
    /// Launches whose task joined a namespace of the warm pool.
    warm_hits: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs = env_or("RUNS", 20);
    let docker = Docker::connect_with_local_defaults().expect("docker");
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
    let pool = phase(&docker, WARM, runs).await;
    let cold = phase(&docker, 0, runs).await;
    let _ = docker.remove_network(NETWORK).await;

    println!("Fargate RunTask -> RUNNING vs bare create+start on its own network ({runs} each)");
    report(
        &format!(
            "pool hit (--warm-namespaces {WARM}): {}/{runs} launches took a warm namespace",
            pool.warm_hits
        ),
        pool,
    );
    report(
        &format!(
            "cold (--warm-namespaces 0): {}/{runs} launches took a warm namespace",
            cold.warm_hits
        ),
        cold,
    );
}

fn report(title: &str, mut samples: Samples) {
    for v in [
        &mut samples.berth,
        &mut samples.placed,
        &mut samples.started,
        &mut samples.bare,
    ] {
        v.sort();
    }
    let p = |v: &[Duration], q| percentile(v, q);
    println!("{title}");
    println!(
        "  berth  p50 {:7.1} ms  p90 {:7.1} ms",
        p(&samples.berth, 0.5),
        p(&samples.berth, 0.9)
    );
    println!(
        "         created -> pullStarted p50 {:6.1} ms (p90 {:6.1}); pullStarted -> started p50 {:6.1} ms (p90 {:6.1})",
        p(&samples.placed, 0.5),
        p(&samples.placed, 0.9),
        p(&samples.started, 0.5),
        p(&samples.started, 0.9)
    );
    println!(
        "  bare   p50 {:7.1} ms  p90 {:7.1} ms",
        p(&samples.bare, 0.5),
        p(&samples.bare, 0.9)
    );
    println!(
        "  ratio at p50: {:.2}x (anchor <= 1.15x)",
        p(&samples.berth, 0.5) / p(&samples.bare, 0.5)
    );
}

/// One phase: a server and an agent keeping `warm` namespaces, `runs`
/// launches alternating with bare ones.
async fn phase(docker: &Docker, warm: usize, runs: usize) -> Samples {
    let cluster = format!("bench-fargate-{}-{warm}", std::process::id());
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, endpoint, ecs) = start_server(&dir.path().join("server"), &cluster).await;
    let agent_dir = dir.path().join("agent");
    let agent = Command::new(binary())
        .args(["agent", "--fargate", "--endpoint", &endpoint])
        .args(["--warm-namespaces", &warm.to_string()])
        .arg("--data-dir")
        .arg(&agent_dir)
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("berth agent starts");
    let processes = Processes(vec![server, agent]);

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
    let owner = owner(&agent_dir);

    let mut samples = Samples::default();
    for i in 0..runs {
        settle(docker, &owner, warm).await;
        let begin = Instant::now();
        let (arn, _) = launch(&ecs, &cluster).await.expect("placed");
        let task = wait_running(&ecs, &cluster, &arn).await;
        samples.berth.push(begin.elapsed());
        let ms = |t: Option<Timestamp>| t.map_or(0, Timestamp::millis);
        samples.placed.push(Duration::from_millis(
            (ms(task.pull_started_at) - ms(task.created_at)).max(0) as u64,
        ));
        samples.started.push(Duration::from_millis(
            (ms(task.started_at) - ms(task.pull_started_at)).max(0) as u64,
        ));
        if took_warm_namespace(docker, &arn).await {
            samples.warm_hits += 1;
        }
        stop(&ecs, &cluster, &arn).await;
        settle(docker, &owner, warm).await;
        samples.bare.push(bare_one(docker, i).await);
    }
    drop(processes);
    samples
}

/// The agent's instance id, which labels its warm namespaces.
fn owner(agent_dir: &Path) -> String {
    let identity: serde_json::Value = serde_json::from_slice(
        &std::fs::read(agent_dir.join("instance.json")).expect("the agent's identity"),
    )
    .expect("identity JSON");
    identity["instance_id"]
        .as_str()
        .expect("an instance id")
        .to_owned()
}

/// The containers, running or not, carrying every label of `labels`
/// (`key` or `key=value`).
async fn containers(docker: &Docker, labels: &[String]) -> Vec<ContainerSummary> {
    let filters = HashMap::from([("label".to_owned(), labels.to_vec())]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    docker.list_containers(Some(options)).await.expect("list")
}

/// Waits until no container of the benchmark's tasks is left and the
/// agent's pool holds `warm` idle namespaces.
async fn settle(docker: &Docker, owner: &str, warm: usize) {
    wait_until(Duration::from_secs(30), || async {
        let tasks = containers(docker, &[format!("{LABEL_FAMILY}={FAMILY}")]).await;
        let pool = containers(
            docker,
            &[
                LABEL_WARM_NAMESPACE.to_owned(),
                format!("{LABEL_OWNER}={owner}"),
            ],
        )
        .await;
        tasks.is_empty()
            && pool.len() == warm
            && pool
                .iter()
                .all(|c| c.state == Some(ContainerSummaryStateEnum::RUNNING))
    })
    .await;
}

/// Whether task `arn`'s container joined a namespace of the warm pool.
async fn took_warm_namespace(docker: &Docker, arn: &str) -> bool {
    let Some(pause) = containers(docker, &[format!("{LABEL_TASK_ARN}={arn}")])
        .await
        .into_iter()
        .find_map(|c| {
            let mode = c.host_config?.network_mode?;
            Some(mode.strip_prefix("container:")?.to_owned())
        })
    else {
        return false;
    };
    docker
        .inspect_container(&pause, None)
        .await
        .ok()
        .and_then(|i| i.config?.labels)
        .is_some_and(|labels| labels.contains_key(LABEL_WARM_NAMESPACE))
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
