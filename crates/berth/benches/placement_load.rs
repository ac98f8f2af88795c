//! Whole-system placement benchmark: a real `berth server` and a real
//! `berth agent --simulate HOSTS` process (the simulated hosts speak the
//! real agent protocol and "run" their tasks on the fake runtime), driven
//! through the ECS API by CLIENTS concurrent callers of RunTask (count 10,
//! memberOf + spread(attribute:ecs.availability-zone) + binpack(memory))
//! until TASKS tasks are durably placed. Reports:
//!
//! - tasks durably placed per second (a RunTask answer means committed);
//! - RunTask latency p50/p99, and the p99 of a DescribeClusters probe
//!   issued every 20 ms while the load runs;
//! - the server's resident memory and CPU once it holds TASKS tasks, and
//!   how many of them the simulated agents report RUNNING.
//!
//! Needs a release build (`cargo build --release -p berth`, or BERTH_BIN).
//! Run: `cargo bench -p berth --bench placement_load` (env HOSTS, TASKS,
//! CLIENTS).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_client::Client;
use berth_types::*;

mod common;
use common::{
    Processes, binary, cpu_seconds, env_or, percentile, rss_kib, start_server, wait_until,
};

const CLUSTER: &str = "load";

async fn cluster_counts(ecs: &Client) -> (i32, i32, i32) {
    let Ok(found) = ecs
        .send(&DescribeClustersRequest {
            clusters: Some(vec![CLUSTER.into()]),
            ..Default::default()
        })
        .await
    else {
        return (0, 0, 0);
    };
    found
        .clusters
        .unwrap_or_default()
        .first()
        .map_or((0, 0, 0), |c| {
            (
                c.registered_container_instances_count,
                c.running_tasks_count,
                c.pending_tasks_count,
            )
        })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let hosts = env_or("HOSTS", 5_000);
    let tasks = env_or("TASKS", 100_000);
    let clients = env_or("CLIENTS", 32);
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, endpoint, ecs) = start_server(&dir.path().join("server"), CLUSTER).await;
    let server_pid = server.id();
    let mut processes = Processes(vec![server]);

    let registering = Instant::now();
    let agents = Command::new(binary())
        .args(["agent", "--endpoint", &endpoint, "--cluster", CLUSTER])
        .args(["--simulate", &hosts.to_string()])
        .args(["--cpu", "8192", "--memory", "32768"])
        .arg("--data-dir")
        .arg(dir.path().join("agents"))
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("berth agent --simulate starts");
    let agents_pid = agents.id();
    processes.0.push(agents);
    wait_until(Duration::from_secs(600), || async {
        cluster_counts(&ecs).await.0 as usize >= hosts
    })
    .await;
    println!(
        "{hosts} simulated hosts registered in {:.1} s",
        registering.elapsed().as_secs_f64()
    );
    // Every host's push channel is up before the load starts.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let td: RegisterTaskDefinitionRequest = serde_json::from_value(serde_json::json!({
        "family": "load",
        "containerDefinitions": [{"name": "app", "image": "busybox", "cpu": 16, "memory": 64}]
    }))
    .expect("td");
    ecs.send(&td).await.expect("register td");
    let request: RunTaskRequest = serde_json::from_value(serde_json::json!({
        "cluster": CLUSTER,
        "taskDefinition": "load",
        "count": 10,
        "placementConstraints": [{"type": "memberOf",
            "expression": "attribute:ecs.os-type == linux and agentConnected == true"}],
        "placementStrategy": [
            {"type": "spread", "field": "attribute:ecs.availability-zone"},
            {"type": "binpack", "field": "memory"}
        ]
    }))
    .expect("run task request");

    let placed = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let cpu_before = cpu_seconds(server_pid);
    let started = Instant::now();
    let mut callers = Vec::new();
    for _ in 0..clients {
        let ecs = ecs.clone();
        let request = request.clone();
        let (placed, failed) = (Arc::clone(&placed), Arc::clone(&failed));
        callers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while placed.load(Ordering::Relaxed) < tasks {
                let t = Instant::now();
                match ecs.send(&request).await {
                    Ok(answer) => {
                        latencies.push(t.elapsed());
                        placed.fetch_add(answer.tasks.unwrap_or_default().len(), Ordering::Relaxed);
                        failed.fetch_add(
                            answer.failures.unwrap_or_default().len(),
                            Ordering::Relaxed,
                        );
                    }
                    Err(error) => {
                        eprintln!("RunTask failed: {error}");
                        failed.fetch_add(10, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let probe = {
        let ecs = ecs.clone();
        let placed = Arc::clone(&placed);
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            while placed.load(Ordering::Relaxed) < tasks {
                let t = Instant::now();
                cluster_counts(&ecs).await;
                latencies.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            latencies
        })
    };
    let mut run_latencies = Vec::new();
    for caller in callers {
        run_latencies.extend(caller.await.expect("caller"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_used = cpu_seconds(server_pid) - cpu_before;
    let mut probe_latencies = probe.await.expect("probe");
    run_latencies.sort();
    probe_latencies.sort();
    let placed = placed.load(Ordering::Relaxed);
    println!(
        "placed {placed} tasks ({} failures) on {hosts} hosts with {clients} clients in {elapsed:.1} s: {:.0} tasks/s",
        failed.load(Ordering::Relaxed),
        placed as f64 / elapsed
    );
    println!(
        "RunTask (count 10) p50 {:.1} ms, p99 {:.1} ms, n={}; DescribeClusters probe p50 {:.1} ms, p99 {:.1} ms",
        percentile(&run_latencies, 0.5),
        percentile(&run_latencies, 0.99),
        run_latencies.len(),
        percentile(&probe_latencies, 0.5),
        percentile(&probe_latencies, 0.99),
    );
    println!(
        "server CPU during the load: {cpu_used:.1} s ({:.0} % of one core)",
        cpu_used / elapsed * 100.0
    );
    let settled = Instant::now();
    let mut last = (0, 0, 0);
    while settled.elapsed() < Duration::from_secs(120) {
        last = cluster_counts(&ecs).await;
        if last.1 as usize >= placed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "{} RUNNING, {} PENDING {:.1} s after the load ended",
        last.1,
        last.2,
        settled.elapsed().as_secs_f64()
    );
    println!(
        "server RSS holding {placed} tasks: {} MiB; simulator RSS: {} MiB",
        rss_kib(server_pid) / 1024,
        rss_kib(agents_pid) / 1024
    );
    drop(processes);
}
