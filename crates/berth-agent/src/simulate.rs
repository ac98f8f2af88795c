//! Simulated hosts (`berth agent --simulate N`): N container instances in
//! one process, each a real agent — its own identity, registration, push
//! channel, task engine and report queues, the very code a real agent runs —
//! with its containers on its own [`FakeRuntime`], so the whole control plane
//! can be driven at thousands of hosts from one machine.
//!
//! What the hosts share is what makes them cheap: one tokio runtime (no
//! thread per host), one API client with one connection pool, and one gate
//! bounding the API calls in flight (registrations, push channel openings,
//! state reports), so the control plane is not stampeded at start, after a
//! restart, or when thousands of tasks stop together.
//!
//! Every host has a task network of its own subnet (a /22 of 100.64.0.0/10
//! by its index), so awsvpc tasks — those of the Fargate pool with
//! `--fargate` — run on simulated hosts as on real ones.
//!
//! Each host keeps its identity under `<data dir>/simulated/<cluster>/host-NNNNN/`,
//! so a restarted simulation re-registers the same container instances
//! rather than adding new ones. Task records and unsent reports stay in
//! memory: fake containers die with the process, so there is nothing to
//! adopt after a restart, and writing them would cost more disk traffic than
//! the control plane under test.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use berth_client::Client;
use berth_types::HealthStatus;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::AgentError;
use crate::agent::{AgentConfig, Census, HostResources, Uplink, run_host};
use crate::report::{Report, StateSink, SubmitError};
use crate::runtime::BoxFuture;
use crate::runtime::fake::{FakeBehavior, FakeRuntime};

/// How often the start-up progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// A fleet of simulated hosts.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// How many hosts.
    pub hosts: usize,
    /// What every host is told: endpoint, cluster, credentials, custom
    /// attributes, timings. Its data directory holds the hosts' directories;
    /// its availability zone is replaced by one of [`Self::zones`].
    pub agent: AgentConfig,
    /// What each host offers.
    pub resources: HostResources,
    /// The zones the hosts are spread over, round robin (`ecs.availability-zone`);
    /// empty: zones `a`, `b` and `c` of the region.
    pub zones: Vec<String>,
    /// How long starting a container takes.
    pub task_start_delay: Duration,
    /// How long a container runs before it exits 0 on its own (its task then
    /// stops as its essential container exited); `None`: until stopped.
    pub task_run_time: Option<Duration>,
    /// How long after it starts a container with a health check reports
    /// HEALTHY; `None`: its health stays UNKNOWN, as a check that never
    /// passes leaves it.
    pub task_healthy_after: Option<Duration>,
    /// The most API calls the hosts have in flight together.
    pub max_concurrent_calls: usize,
}

impl Simulation {
    /// `hosts` hosts of 2 vCPU (2048 units) and 4 GiB each over three zones,
    /// containers that start in 50 ms and run until stopped.
    pub fn new(agent: AgentConfig, hosts: usize) -> Self {
        Self {
            hosts,
            agent,
            resources: HostResources {
                cpu_units: 2048,
                memory_mib: 4096,
            },
            zones: Vec::new(),
            task_start_delay: Duration::from_millis(50),
            task_run_time: None,
            task_healthy_after: None,
            max_concurrent_calls: 32,
        }
    }

    fn zones(&self) -> Vec<String> {
        if self.zones.is_empty() {
            let region = self.agent.region();
            ["a", "b", "c"]
                .iter()
                .map(|zone| format!("{region}{zone}"))
                .collect()
        } else {
            self.zones.clone()
        }
    }

    /// Where the hosts' directories live: one tree per cluster, so pointing
    /// the same data directory at another cluster starts a fresh fleet.
    fn hosts_dir(&self) -> PathBuf {
        let cluster = self.agent.cluster.rsplit('/').next().unwrap_or_default();
        let cluster: String = cluster
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.agent.data_dir.join("simulated").join(cluster)
    }

    /// The configuration of host `index`.
    fn host(&self, index: usize, zones: &[String], hosts_dir: &std::path::Path) -> AgentConfig {
        let mut config = self.agent.clone();
        config.data_dir = hosts_dir.join(format!("host-{index:05}"));
        config.availability_zone = zones[index % zones.len()].clone();
        config.instance_type = "berth.simulated".to_owned();
        config.resources = Some(self.resources);
        config.keep_task_state = false;
        // Fake containers have no output, no processes to confine and no
        // network to serve metadata on.
        config.ship_logs = false;
        config.task_cgroups = false;
        config.metadata_endpoint = false;
        // A warm namespace saves a real container's start; a fake one
        // starts at once, and idle ones would only take memory.
        config.warm_namespaces = 0;
        config
    }

    /// The runtime of host `index`.
    fn runtime(&self, index: usize) -> FakeRuntime {
        let runtime = FakeRuntime::new();
        runtime.set_task_subnet(&crate::runtime::network::simulated(index, self.hosts).to_string());
        runtime.set_default_behavior(FakeBehavior {
            start_delay: self.task_start_delay,
            run_for: self.task_run_time,
            health: self
                .task_healthy_after
                .map(|after| vec![(after, HealthStatus::Healthy)])
                .unwrap_or_default(),
            ..FakeBehavior::default()
        });
        runtime
    }
}

/// State reports through the shared gate, so a burst of stopping tasks
/// queues in the simulator rather than at the control plane.
struct GatedSink {
    client: Client,
    gate: Arc<Semaphore>,
}

impl StateSink for GatedSink {
    fn submit<'a>(&'a self, report: &'a Report) -> BoxFuture<'a, Result<(), SubmitError>> {
        Box::pin(async move {
            let _turn = self.gate.acquire().await;
            self.client.submit(report).await
        })
    }
}

/// Runs the simulated hosts until `shutdown` resolves, logging start-up
/// progress until every host has registered and connected. The first host
/// that fails (it cannot use its data directory) stops them all.
pub async fn simulate(
    simulation: Simulation,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let client = simulation.agent.client()?;
    let gate = Arc::new(Semaphore::new(simulation.max_concurrent_calls.max(1)));
    let census = Arc::new(Census::default());
    let uplink = Uplink {
        sink: Arc::new(GatedSink {
            client: client.clone(),
            gate: gate.clone(),
        }),
        client,
        gate: Some(gate),
        census: census.clone(),
    };
    let zones = simulation.zones();
    let hosts_dir = simulation.hosts_dir();
    let (stop, stopped) = watch::channel(false);
    let started = Instant::now();
    let mut hosts = JoinSet::new();
    for index in 0..simulation.hosts {
        let config = simulation.host(index, &zones, &hosts_dir);
        let runtime = Arc::new(simulation.runtime(index));
        let mut stopped = stopped.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        hosts.spawn(
            run_host(config, runtime, uplink.clone(), shutdown)
                .instrument(tracing::info_span!("host", index)),
        );
    }
    tracing::info!(
        hosts = simulation.hosts,
        zones = zones.join(","),
        dir = %hosts_dir.display(),
        "starting simulated hosts"
    );

    tokio::pin!(shutdown);
    let mut check = tokio::time::interval(Duration::from_millis(100));
    let mut logged = Instant::now();
    let mut starting = true;
    let mut failure = loop {
        tokio::select! {
            () = &mut shutdown => break None,
            Some(ended) = hosts.join_next() => break host_failure(ended),
            _ = check.tick(), if starting => {
                let registered = census.registered.load(Ordering::Relaxed);
                let connected = census.connected.load(Ordering::Relaxed);
                if connected >= simulation.hosts {
                    starting = false;
                    tracing::info!(
                        hosts = simulation.hosts,
                        seconds = started.elapsed().as_secs_f64(),
                        "all simulated hosts registered and connected"
                    );
                } else if logged.elapsed() >= PROGRESS_EVERY {
                    logged = Instant::now();
                    tracing::info!(registered, connected, hosts = simulation.hosts, "simulated hosts starting");
                }
            }
        }
    };
    stop.send_replace(true);
    while let Some(ended) = hosts.join_next().await {
        let error = host_failure(ended);
        failure = failure.or(error);
    }
    failure.map_or(Ok(()), Err)
}

/// The error a host ended with, if any; a host that panicked takes the
/// simulation down with it.
fn host_failure(
    ended: Result<Result<(), AgentError>, tokio::task::JoinError>,
) -> Option<AgentError> {
    match ended {
        Ok(result) => result.err(),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        // Only a runtime shutting down cancels hosts; there is nothing to report.
        Err(_) => None,
    }
}
