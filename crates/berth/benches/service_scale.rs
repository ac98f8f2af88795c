//! Services at scale on simulated hosts: a real `berth server` and a real
//! `berth agent --simulate HOSTS` process. SERVICES services of
//! TASKS_PER_SERVICE tasks each are created concurrently and must all reach
//! a steady state (one deployment, COMPLETED, runningCount ==
//! desiredCount); then every service is updated to revision 2 of its task
//! definition and every deployment must complete (revision 2 COMPLETED and
//! the only deployment left). Reports:
//!
//! - the time to steady state from the first CreateService, and the time
//!   for the deployment from the first UpdateService, as a client polling
//!   DescribeServices (10 services a call) every second sees them;
//! - the server's CPU (seconds, and % of one core) and resident memory over
//!   each phase, and its CPU while the steady services sit idle;
//! - the p50/p99 of a DescribeServices probe of one service every 50 ms
//!   during each phase.
//!
//! The containers have a health check that the simulated hosts report
//! HEALTHY HEALTHY_AFTER_MS (default 2000) after they start, so the figures
//! measure the control plane rather than a clock; HEALTH_CHECK=0 drops the
//! check, and then a task counts as healthy only 40 s after RUNNING (as in
//! ECS), which both phases wait for.
//!
//! Needs a release build (`cargo build --release -p berth`, or BERTH_BIN).
//! Run: `cargo bench -p berth --bench service_scale` (env SERVICES, default
//! 1000; TASKS_PER_SERVICE, 10; HOSTS, 500; CLIENTS, 16 concurrent
//! CreateService/UpdateService callers; HEALTH_CHECK, 1; HEALTHY_AFTER_MS;
//! IDLE_SECONDS, 10; TIMEOUT_SECONDS, 1800 per phase).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_client::Client;
use berth_types::*;
use tokio::task::JoinSet;

mod common;
use common::{
    Processes, binary, cpu_seconds, env_or, percentile, rss_kib, start_server, wait_until,
};

const CLUSTER: &str = "scale";
const FAMILY: &str = "scale-app";
/// How often the waiting client polls, and how many calls it has in flight.
const POLL_EVERY: Duration = Duration::from_secs(1);
const POLLERS: usize = 4;
const PROBE_EVERY: Duration = Duration::from_millis(50);

fn service_name(i: usize) -> String {
    format!("svc-{i:05}")
}

async fn registered_hosts(ecs: &Client) -> usize {
    ecs.send(&DescribeClustersRequest {
        clusters: Some(vec![CLUSTER.into()]),
        ..Default::default()
    })
    .await
    .ok()
    .and_then(|found| found.clusters?.first().cloned())
    .map_or(0, |c| {
        usize::try_from(c.registered_container_instances_count).unwrap_or(0)
    })
}

fn task_definition(revision: u32, health_check: bool) -> RegisterTaskDefinitionRequest {
    let mut container = serde_json::json!({
        "name": "app", "image": "busybox", "cpu": 16, "memory": 64,
        "environment": [{"name": "REVISION", "value": revision.to_string()}]
    });
    if health_check {
        container["healthCheck"] = serde_json::json!({"command": ["CMD", "true"]});
    }
    serde_json::from_value(serde_json::json!({
        "family": FAMILY,
        "containerDefinitions": [container]
    }))
    .expect("task definition")
}

/// One deployment, COMPLETED, of revision `revision`, running every
/// desired task.
fn settled(service: &Service, revision: u32) -> bool {
    let suffix = format!(":{revision}");
    let deployments = service.deployments.as_deref().unwrap_or_default();
    deployments.len() == 1
        && deployments[0].rollout_state == Some(DeploymentRolloutState::Completed)
        && deployments[0].running_count == service.desired_count
        && service.running_count == service.desired_count
        && service
            .task_definition
            .as_deref()
            .is_some_and(|td| td.ends_with(&suffix))
}

/// The services of `names` not yet settled on `revision`.
async fn unsettled(ecs: Client, names: Vec<String>, revision: u32) -> Vec<String> {
    let request = DescribeServicesRequest {
        cluster: Some(CLUSTER.into()),
        services: names.clone(),
        ..Default::default()
    };
    match ecs.send(&request).await {
        Ok(found) => {
            let done: Vec<String> = found
                .services
                .unwrap_or_default()
                .iter()
                .filter(|s| settled(s, revision))
                .filter_map(|s| s.service_name.clone())
                .collect();
            names.into_iter().filter(|n| !done.contains(n)).collect()
        }
        Err(error) => {
            eprintln!("DescribeServices failed: {error}");
            names
        }
    }
}

/// Polls until every service has settled on `revision`; the time from
/// `since`. Panics after `limit`, saying how many were left.
async fn wait_settled(
    ecs: &Client,
    names: &[String],
    revision: u32,
    since: Instant,
    limit: Duration,
) -> Duration {
    let mut pending: Vec<String> = names.to_vec();
    let mut reported = Instant::now();
    loop {
        let mut batches = pending.chunks(10).map(<[String]>::to_vec);
        let mut polls = JoinSet::new();
        let mut left = Vec::new();
        for batch in batches.by_ref().take(POLLERS) {
            polls.spawn(unsettled(ecs.clone(), batch, revision));
        }
        while let Some(done) = polls.join_next().await {
            left.extend(done.expect("poll"));
            if let Some(batch) = batches.next() {
                polls.spawn(unsettled(ecs.clone(), batch, revision));
            }
        }
        pending = left;
        if pending.is_empty() {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "{} of {} services not settled on revision {revision} after {} s",
            pending.len(),
            names.len(),
            limit.as_secs()
        );
        if reported.elapsed() >= Duration::from_secs(10) {
            reported = Instant::now();
            println!(
                "  {:.0} s: {} of {} services settled",
                since.elapsed().as_secs_f64(),
                names.len() - pending.len(),
                names.len()
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Calls `call` once per service index from `clients` concurrent callers,
/// panicking on a failure; the latencies, sorted.
async fn each_service<F, Fut>(
    ecs: &Client,
    services: usize,
    clients: usize,
    call: F,
) -> Vec<Duration>
where
    F: Fn(Client, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(AtomicUsize::new(0));
    let mut callers = JoinSet::new();
    for _ in 0..clients {
        let (ecs, call, next) = (ecs.clone(), Arc::clone(&call), Arc::clone(&next));
        callers.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= services {
                    return latencies;
                }
                let t = Instant::now();
                match call(ecs.clone(), i).await {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(error) => panic!("call for {} failed: {error}", service_name(i)),
                }
            }
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = callers.join_next().await {
        latencies.extend(done.expect("caller"));
    }
    latencies.sort();
    latencies
}

/// DescribeServices of one service every 50 ms until stopped; the
/// latencies are taken per phase.
struct Probe {
    latencies: Arc<Mutex<Vec<Duration>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    fn start(ecs: &Client, service: String) -> Self {
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (ecs, latencies, stop) = (ecs.clone(), Arc::clone(&latencies), Arc::clone(&stop));
            tokio::spawn(async move {
                let request = DescribeServicesRequest {
                    cluster: Some(CLUSTER.into()),
                    services: vec![service],
                    ..Default::default()
                };
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if ecs.send(&request).await.is_ok() {
                        latencies.lock().expect("probe").push(t.elapsed());
                    }
                    tokio::time::sleep(PROBE_EVERY).await;
                }
            })
        };
        Self {
            latencies,
            stop,
            task,
        }
    }

    /// The latencies since the last call, sorted.
    fn take(&self) -> Vec<Duration> {
        let mut taken = std::mem::take(&mut *self.latencies.lock().expect("probe"));
        taken.sort();
        taken
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
    }
}

fn latency_line(name: &str, sorted: &[Duration]) -> String {
    format!(
        "{name} p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n={})",
        percentile(sorted, 0.5),
        percentile(sorted, 0.99),
        percentile(sorted, 1.0),
        sorted.len()
    )
}

/// The server's CPU and memory at the end of a phase that took `elapsed`.
fn usage_line(pid: u32, cpu_before: f64, elapsed: Duration) -> String {
    let cpu = cpu_seconds(pid) - cpu_before;
    format!(
        "server CPU {cpu:.1} s ({:.0} % of one core), RSS {} MiB",
        cpu / elapsed.as_secs_f64() * 100.0,
        rss_kib(pid) / 1024
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let services = env_or("SERVICES", 1_000);
    let tasks = env_or("TASKS_PER_SERVICE", 10);
    let hosts = env_or("HOSTS", 500);
    let clients = env_or("CLIENTS", 16);
    let health_check = env_or("HEALTH_CHECK", 1) != 0;
    let healthy_after = env_or("HEALTHY_AFTER_MS", 2_000);
    let idle = Duration::from_secs(env_or("IDLE_SECONDS", 10) as u64);
    let limit = Duration::from_secs(env_or("TIMEOUT_SECONDS", 1_800) as u64);
    println!(
        "service scale: {services} services x {tasks} tasks on {hosts} simulated hosts, {}",
        if health_check {
            format!("health check HEALTHY {healthy_after} ms after start")
        } else {
            "no health check (healthy 40 s after RUNNING)".to_owned()
        }
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let (server, endpoint, ecs) = start_server(&dir.path().join("server"), CLUSTER).await;
    let server_pid = server.id();
    let mut processes = Processes(vec![server]);
    let registering = Instant::now();
    // Every host can hold its share of both deployments at once
    // (maximumPercent 200) many times over.
    let agents = Command::new(binary())
        .args(["agent", "--endpoint", &endpoint, "--cluster", CLUSTER])
        .args(["--simulate", &hosts.to_string()])
        .args(["--cpu", "8192", "--memory", "32768"])
        .args(["--task-healthy-after-ms", &healthy_after.to_string()])
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
        registered_hosts(&ecs).await >= hosts
    })
    .await;
    println!(
        "{hosts} simulated hosts registered in {:.1} s",
        registering.elapsed().as_secs_f64()
    );
    // Every host's push channel is up before the services start.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for revision in [1, 2] {
        ecs.send(&task_definition(revision, health_check))
            .await
            .expect("register task definition");
    }
    let names: Vec<String> = (0..services).map(service_name).collect();
    let probe = Probe::start(&ecs, service_name(0));

    let cpu_before = cpu_seconds(server_pid);
    let started = Instant::now();
    let created = each_service(&ecs, services, clients, move |ecs, i| async move {
        let request = CreateServiceRequest {
            cluster: Some(CLUSTER.into()),
            service_name: service_name(i),
            task_definition: Some(format!("{FAMILY}:1")),
            desired_count: Some(i32::try_from(tasks).unwrap_or(i32::MAX)),
            ..CreateServiceRequest::default()
        };
        ecs.send(&request)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;
    println!(
        "created {services} services in {:.1} s with {clients} clients; {}",
        started.elapsed().as_secs_f64(),
        latency_line("CreateService", &created)
    );
    let to_steady = wait_settled(&ecs, &names, 1, started, limit).await;
    println!(
        "steady: every service COMPLETED with {tasks} running {:.1} s after the first CreateService",
        to_steady.as_secs_f64()
    );
    println!("  {}", usage_line(server_pid, cpu_before, to_steady));
    println!(
        "  {}",
        latency_line("DescribeServices probe", &probe.take())
    );

    let cpu_before = cpu_seconds(server_pid);
    tokio::time::sleep(idle).await;
    println!(
        "idle: {} steady services, {}",
        services,
        usage_line(server_pid, cpu_before, idle)
    );
    let _ = probe.take();

    let cpu_before = cpu_seconds(server_pid);
    let started = Instant::now();
    let updated = each_service(&ecs, services, clients, |ecs, i| async move {
        let request = UpdateServiceRequest {
            cluster: Some(CLUSTER.into()),
            service: service_name(i),
            task_definition: Some(format!("{FAMILY}:2")),
            ..UpdateServiceRequest::default()
        };
        ecs.send(&request)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;
    println!(
        "updated {services} services to revision 2 in {:.1} s; {}",
        started.elapsed().as_secs_f64(),
        latency_line("UpdateService", &updated)
    );
    let deployed = wait_settled(&ecs, &names, 2, started, limit).await;
    println!(
        "deployed: every deployment COMPLETED and alone {:.1} s after the first UpdateService",
        deployed.as_secs_f64()
    );
    println!("  {}", usage_line(server_pid, cpu_before, deployed));
    println!(
        "  {}",
        latency_line("DescribeServices probe", &probe.take())
    );
    probe.stop().await;
    println!(
        "simulator: CPU {:.1} s in all, RSS {} MiB",
        cpu_seconds(agents_pid),
        rss_kib(agents_pid) / 1024
    );
    drop(processes);
}
