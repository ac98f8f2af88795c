//! Task launch benchmark on the real Docker Engine, with real `berth server`
//! and `berth agent` processes, each figure beside its anchor from the same
//! run:
//!
//! 1. RunTask → RUNNING latency (as a client polling DescribeTasks sees it)
//!    against bare Engine API create+start of the same container;
//! 2. sustained task starts per second (30 tasks launched 10 per RunTask)
//!    against bare create+start at concurrency 4;
//! 3. the agent's resident memory idle, and its growth over many task
//!    start/stop cycles once their cleanup wait has passed.
//!
//! Needs `tests/images/build.sh` to have run and a release build of the
//! binary (`cargo build --release -p berth`, or set BERTH_BIN). Run:
//! `cargo bench -p berth --bench task_launch` (env LATENCY_RUNS, CYCLES).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_agent::ContainerRuntime;
use berth_agent::runtime::docker::DockerRuntime;
use berth_agent::runtime::{CreateSpec, PortBinding};
use berth_client::Client;
use berth_types::*;

mod common;
use common::{Processes, binary, env_or, free_port, percentile, rss_kib, start_server, wait_until};

const IMAGE: &str = "berth-test/web:v1";
const LABEL: &str = "berth-bench";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs = env_or("LATENCY_RUNS", 20);
    let cycles = env_or("CYCLES", 200);
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, endpoint, ecs) = start_server(&dir.path().join("server"), "default").await;
    let agent = Command::new(binary())
        // A short cleanup wait, so the memory figure shows what the agent
        // keeps beyond a stopped task's cleanup (ECS keeps it 3 h).
        .args([
            "agent",
            "--endpoint",
            &endpoint,
            "--cluster",
            "default",
            "--task-cleanup-wait",
            "5",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("agent"))
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("berth agent starts");
    let agent_pid = agent.id();
    let processes = Processes(vec![server, agent]);
    wait_until(Duration::from_secs(30), || async {
        instances(&ecs)
            .await
            .first()
            .is_some_and(|ci| ci.agent_connected)
    })
    .await;
    let td: RegisterTaskDefinitionRequest = serde_json::from_value(serde_json::json!({
        "family": "bench-web",
        "containerDefinitions": [{"name": "web", "image": IMAGE, "memory": 32,
            "portMappings": [{"containerPort": 8000}]}]
    }))
    .expect("td");
    ecs.send(&td).await.expect("register");
    let docker: Arc<dyn ContainerRuntime> =
        Arc::new(DockerRuntime::connect().await.expect("docker"));

    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_kib(agent_pid);

    // 1. Latency, alternating so both see the same machine state.
    let mut berth = Vec::new();
    let mut bare = Vec::new();
    for i in 0..runs {
        berth.push(launch_one(&ecs).await);
        bare.push(bare_one(&docker, i).await);
    }
    stop_all(&ecs).await;
    berth.sort();
    bare.sort();
    println!("RunTask -> RUNNING vs bare create+start ({runs} each, sequential)");
    println!(
        "  berth  p50 {:7.1} ms  p90 {:7.1} ms",
        percentile(&berth, 0.5),
        percentile(&berth, 0.9)
    );
    println!(
        "  bare   p50 {:7.1} ms  p90 {:7.1} ms",
        percentile(&bare, 0.5),
        percentile(&bare, 0.9)
    );
    println!(
        "  overhead at p50: {:+.1} %",
        (percentile(&berth, 0.5) / percentile(&bare, 0.5) - 1.0) * 100.0
    );

    // 2. Throughput.
    let started = Instant::now();
    let mut arns = Vec::new();
    for _ in 0..3 {
        let run = ecs
            .send(&RunTaskRequest {
                task_definition: "bench-web".into(),
                count: Some(10),
                ..Default::default()
            })
            .await
            .expect("run 10");
        arns.extend(
            run.tasks
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| t.task_arn),
        );
    }
    wait_all_running(&ecs, &arns).await;
    let berth_rate = arns.len() as f64 / started.elapsed().as_secs_f64();
    stop_all(&ecs).await;
    let started = Instant::now();
    let mut handles = Vec::new();
    for worker in 0..4 {
        let docker = Arc::clone(&docker);
        handles.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..30 / 4 + usize::from(worker < 30 % 4) {
                ids.push(create_start(&docker, 1000 + worker * 100 + i).await);
            }
            ids
        }));
    }
    let mut bare_ids = Vec::new();
    for h in handles {
        bare_ids.extend(h.await.expect("worker"));
    }
    let bare_rate = bare_ids.len() as f64 / started.elapsed().as_secs_f64();
    for id in bare_ids {
        discard(&docker, &id).await;
    }
    println!(
        "sustained starts: berth {berth_rate:.2}/s (30 tasks, RunTask count 10) vs bare {bare_rate:.2}/s (30 containers, concurrency 4)"
    );

    // 3. Agent memory over start/stop cycles.
    let before = rss_kib(agent_pid);
    for _ in 0..cycles / 10 {
        let run = ecs
            .send(&RunTaskRequest {
                task_definition: "bench-web".into(),
                count: Some(10),
                ..Default::default()
            })
            .await
            .expect("run");
        let arns: Vec<String> = run
            .tasks
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| t.task_arn)
            .collect();
        wait_all_running(&ecs, &arns).await;
        stop_all(&ecs).await;
    }
    // Past the cleanup wait, so every stopped task has been cleaned up.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after = rss_kib(agent_pid);
    println!(
        "agent RSS: idle {idle_rss} KiB; before cycles {before} KiB; after {cycles} start/stop cycles {after} KiB ({:+} KiB)",
        after as i64 - before as i64
    );
    drop(processes);
}

async fn instances(ecs: &Client) -> Vec<ContainerInstance> {
    let Ok(list) = ecs.send(&ListContainerInstancesRequest::default()).await else {
        return Vec::new();
    };
    let arns = list.container_instance_arns.unwrap_or_default();
    if arns.is_empty() {
        return Vec::new();
    }
    ecs.send(&DescribeContainerInstancesRequest {
        container_instances: arns,
        ..Default::default()
    })
    .await
    .map(|r| r.container_instances.unwrap_or_default())
    .unwrap_or_default()
}

async fn statuses(ecs: &Client, arns: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in arns.chunks(100) {
        let described = ecs
            .send(&DescribeTasksRequest {
                tasks: chunk.to_vec(),
                ..Default::default()
            })
            .await
            .expect("describe");
        out.extend(
            described
                .tasks
                .unwrap_or_default()
                .into_iter()
                .map(|t| t.last_status.unwrap_or_default()),
        );
    }
    out
}

async fn wait_all_running(ecs: &Client, arns: &[String]) {
    wait_until(Duration::from_secs(30), || async {
        let s = statuses(ecs, arns).await;
        assert!(
            !s.iter().any(|s| s == "STOPPED"),
            "a task stopped during the benchmark"
        );
        s.len() == arns.len() && s.iter().all(|s| s == "RUNNING")
    })
    .await;
}

async fn launch_one(ecs: &Client) -> Duration {
    let started = Instant::now();
    let run = ecs
        .send(&RunTaskRequest {
            task_definition: "bench-web".into(),
            ..Default::default()
        })
        .await
        .expect("run");
    let arn = run
        .tasks
        .and_then(|t| t.into_iter().next())
        .and_then(|t| t.task_arn)
        .expect("a task");
    loop {
        if statuses(ecs, std::slice::from_ref(&arn)).await[0] == "RUNNING" {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn create_start(docker: &Arc<dyn ContainerRuntime>, i: usize) -> String {
    let definition: ContainerDefinition = serde_json::from_value(serde_json::json!({
        "name": "web", "image": IMAGE, "memory": 32
    }))
    .expect("definition");
    let spec = CreateSpec {
        name: format!("berth-bench-{}-{i}", std::process::id()),
        image: IMAGE.into(),
        labels: BTreeMap::from([(LABEL.to_owned(), "1".to_owned())]),
        definition,
        network_mode: NetworkMode::Bridge,
        network_namespace: None,
        port_bindings: vec![PortBinding {
            container_port: 8000,
            host_port: free_port(),
            protocol: TransportProtocol::Tcp,
        }],
        mounts: Vec::new(),
        volumes_from: Vec::new(),
        cgroup_parent: None,
        extra_env: Vec::new(),
        stop_timeout: Duration::from_secs(5),
    };
    let id = docker.create(&spec).await.expect("create");
    docker.start(&id).await.expect("start");
    id
}

async fn discard(docker: &Arc<dyn ContainerRuntime>, id: &str) {
    let _ = docker.kill(id, "KILL").await;
    let _ = docker.remove(id).await;
}

async fn bare_one(docker: &Arc<dyn ContainerRuntime>, i: usize) -> Duration {
    let started = Instant::now();
    let id = create_start(docker, i).await;
    let elapsed = started.elapsed();
    discard(docker, &id).await;
    elapsed
}

async fn stop_all(ecs: &Client) {
    let listed = ecs
        .send(&ListTasksRequest {
            max_results: Some(100),
            ..Default::default()
        })
        .await
        .expect("list");
    let arns = listed.task_arns.unwrap_or_default();
    for arn in &arns {
        let _ = ecs
            .send(&StopTaskRequest {
                task: arn.clone(),
                ..Default::default()
            })
            .await;
    }
    wait_until(Duration::from_secs(30), || async {
        statuses(ecs, &arns).await.iter().all(|s| s == "STOPPED")
    })
    .await;
}
