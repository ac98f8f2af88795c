//! Service task replacement on the real Docker Engine, with real `berth
//! server` and `berth agent` processes: a service of `TASKS` tasks (default
//! 3); `KILLS` times (default 20) one task's container is killed (SIGKILL
//! through the Engine API, as `docker kill` does) and the time from its
//! death to its replacement's lastStatus RUNNING is measured, as a client
//! polling ListTasks + DescribeTasks every 20 ms sees it. Anchor: p50 ≤ 1.5 s.
//!
//! Each replacement is also split into phases by the timestamps the control
//! plane records, so a slow figure says where the time went:
//! - detect: the kill → the dead task's `stoppedAt` (the agent noticing the
//!   death through Docker events and reporting STOPPED);
//! - decide: `stoppedAt` → the replacement's `createdAt` (the service
//!   controller waking, deciding and placing);
//! - start: `createdAt` → `startedAt` (the agent receiving the task, creating
//!   and starting the container, reporting RUNNING);
//! - observe: `startedAt` → the poll that first sees RUNNING.
//!
//! Needs `tests/images/build.sh` to have run and a release build of the
//! binary (`cargo build --release -p berth`, or set BERTH_BIN). Run:
//! `cargo bench -p berth --bench service_replacement` (env KILLS, TASKS).

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_agent::ContainerRuntime;
use berth_agent::runtime::LABEL_CLUSTER;
use berth_agent::runtime::docker::DockerRuntime;
use berth_client::Client;
use berth_types::*;

mod common;
use common::{Processes, binary, env_or, percentile, start_server, wait_until};

const IMAGE: &str = "berth-test/web:v1";
const SERVICE: &str = "bench-web";
const POLL: Duration = Duration::from_millis(20);

/// One replacement: the whole span and its phases.
struct Replacement {
    total: Duration,
    detect: Duration,
    decide: Duration,
    start: Duration,
    observe: Duration,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let kills = env_or("KILLS", 20);
    let tasks = env_or("TASKS", 3);
    // Its own cluster, so the containers removed at the end are only ours.
    let cluster = format!("bench-svc-{}", std::process::id());
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, endpoint, ecs) = start_server(&dir.path().join("server"), &cluster).await;
    let agent = Command::new(binary())
        .args(["agent", "--endpoint", &endpoint, "--cluster", &cluster])
        .arg("--data-dir")
        .arg(dir.path().join("agent"))
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("berth agent starts");
    let processes = Processes(vec![server, agent]);
    let docker = DockerRuntime::connect().await.expect("docker");
    wait_until(Duration::from_secs(30), || async {
        agent_connected(&ecs, &cluster).await
    })
    .await;

    let td: RegisterTaskDefinitionRequest = serde_json::from_value(serde_json::json!({
        "family": SERVICE,
        "containerDefinitions": [{"name": "web", "image": IMAGE, "memory": 32,
            "portMappings": [{"containerPort": 8000}]}]
    }))
    .expect("task definition");
    ecs.send(&td).await.expect("register");
    let create: CreateServiceRequest = serde_json::from_value(serde_json::json!({
        "cluster": cluster, "serviceName": SERVICE, "taskDefinition": SERVICE,
        "desiredCount": tasks,
    }))
    .expect("service");
    ecs.send(&create).await.expect("create service");

    let mut seen = BTreeSet::new();
    let mut samples = Vec::new();
    for _ in 0..kills {
        let running = settled(&ecs, &cluster, tasks).await;
        seen.extend(running.iter().filter_map(|t| t.task_arn.clone()));
        samples.push(replace_one(&ecs, &docker, &cluster, &running[0], &seen).await);
    }

    let _ = ecs
        .send(&DeleteServiceRequest {
            cluster: Some(cluster.clone()),
            service: SERVICE.into(),
            force: Some(true),
        })
        .await;
    wait_until(Duration::from_secs(60), || async {
        ecs.send(&DescribeServicesRequest {
            cluster: Some(cluster.clone()),
            services: vec![SERVICE.into()],
            ..Default::default()
        })
        .await
        .is_ok_and(|r| {
            r.services
                .unwrap_or_default()
                .iter()
                .all(|s| s.status.as_deref() == Some("INACTIVE"))
        })
    })
    .await;
    drop(processes);
    remove_containers(&docker, &cluster).await;

    report(kills, tasks, &samples);
}

/// Picks one figure out of a replacement.
type Pick = fn(&Replacement) -> Duration;

fn report(kills: usize, tasks: usize, samples: &[Replacement]) {
    println!(
        "service task replacement: container killed -> replacement RUNNING ({kills} kills, service of {tasks}, polled every {} ms)",
        POLL.as_millis()
    );
    let rows: [(&str, Pick); 5] = [
        ("total", |r| r.total),
        ("detect", |r| r.detect),
        ("decide", |r| r.decide),
        ("start", |r| r.start),
        ("observe", |r| r.observe),
    ];
    for (name, pick) in rows {
        let mut v: Vec<Duration> = samples.iter().map(pick).collect();
        v.sort();
        let (p50, p90, max) = (
            percentile(&v, 0.5),
            percentile(&v, 0.9),
            percentile(&v, 1.0),
        );
        println!("  {name:8} p50 {p50:7.1} ms  p90 {p90:7.1} ms  max {max:7.1} ms");
        if name == "total" {
            let verdict = if p50 <= 1500.0 { "met" } else { "MISSED" };
            println!("  anchor: p50 <= 1500 ms: {verdict}");
        }
    }
}

async fn agent_connected(ecs: &Client, cluster: &str) -> bool {
    let Ok(list) = ecs
        .send(&ListContainerInstancesRequest {
            cluster: Some(cluster.into()),
            ..Default::default()
        })
        .await
    else {
        return false;
    };
    let arns = list.container_instance_arns.unwrap_or_default();
    if arns.is_empty() {
        return false;
    }
    ecs.send(&DescribeContainerInstancesRequest {
        cluster: Some(cluster.into()),
        container_instances: arns,
        ..Default::default()
    })
    .await
    .is_ok_and(|r| {
        r.container_instances
            .unwrap_or_default()
            .iter()
            .any(|ci| ci.agent_connected)
    })
}

/// The service's tasks whose desired status is RUNNING.
async fn service_tasks(ecs: &Client, cluster: &str) -> Vec<Task> {
    let listed = ecs
        .send(&ListTasksRequest {
            cluster: Some(cluster.into()),
            service_name: Some(SERVICE.into()),
            max_results: Some(100),
            ..Default::default()
        })
        .await
        .expect("list tasks");
    let arns = listed.task_arns.unwrap_or_default();
    if arns.is_empty() {
        return Vec::new();
    }
    describe(ecs, cluster, arns).await
}

async fn describe(ecs: &Client, cluster: &str, arns: Vec<String>) -> Vec<Task> {
    ecs.send(&DescribeTasksRequest {
        cluster: Some(cluster.into()),
        tasks: arns,
        ..Default::default()
    })
    .await
    .expect("describe tasks")
    .tasks
    .unwrap_or_default()
}

/// Waits until exactly `tasks` tasks are RUNNING and nothing else is on its
/// way, and returns them.
async fn settled(ecs: &Client, cluster: &str, tasks: usize) -> Vec<Task> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = service_tasks(ecs, cluster).await;
        if now.len() == tasks
            && now
                .iter()
                .all(|t| t.last_status.as_deref() == Some("RUNNING"))
        {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the service did not settle at {tasks} RUNNING tasks"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn epoch_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `to - from` in wall-clock milliseconds, as a duration (0 if negative: the
/// control plane's timestamps have millisecond precision).
fn span(from: i64, to: i64) -> Duration {
    Duration::from_millis(u64::try_from(to - from).unwrap_or(0))
}

async fn replace_one(
    ecs: &Client,
    docker: &DockerRuntime,
    cluster: &str,
    victim: &Task,
    seen: &BTreeSet<String>,
) -> Replacement {
    let victim_arn = victim.task_arn.clone().expect("task arn");
    let container = victim
        .containers
        .iter()
        .flatten()
        .find_map(|c| c.runtime_id.clone())
        .expect("a container id");
    docker.kill(&container, "KILL").await.expect("docker kill");
    let killed = Instant::now();
    let killed_at = epoch_millis(SystemTime::now());
    let deadline = killed + Duration::from_secs(60);
    let replacement = loop {
        let now = service_tasks(ecs, cluster).await;
        let fresh = now.into_iter().find(|t| {
            t.last_status.as_deref() == Some("RUNNING")
                && t.task_arn.as_ref().is_some_and(|a| !seen.contains(a))
        });
        if let Some(t) = fresh {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "no replacement RUNNING within 60 s"
        );
        tokio::time::sleep(POLL).await;
    };
    let total = killed.elapsed();
    let observed_at = killed_at + i64::try_from(total.as_millis()).unwrap_or(i64::MAX);
    let dead = describe(ecs, cluster, vec![victim_arn]).await;
    let stopped_at = dead
        .first()
        .and_then(|t| t.stopped_at)
        .map_or(observed_at, |t| t.millis());
    let created_at = replacement.created_at.map_or(stopped_at, |t| t.millis());
    let started_at = replacement.started_at.map_or(observed_at, |t| t.millis());
    Replacement {
        total,
        detect: span(killed_at, stopped_at),
        decide: span(stopped_at, created_at),
        start: span(created_at, started_at),
        observe: span(started_at, observed_at),
    }
}

/// Removes every container the benchmark's cluster left behind (stopped
/// tasks keep theirs for the agent's cleanup wait, and the agent is gone).
async fn remove_containers(docker: &DockerRuntime, cluster: &str) {
    let suffix = format!(":cluster/{cluster}");
    let Ok(all) = docker.list_managed().await else {
        return;
    };
    for c in all {
        if c.labels
            .get(LABEL_CLUSTER)
            .is_some_and(|v| v.ends_with(&suffix))
        {
            let _ = docker.kill(&c.id, "KILL").await;
            let _ = docker.remove(&c.id).await;
        }
    }
}
