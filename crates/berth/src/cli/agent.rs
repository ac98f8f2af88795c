//! `berth agent`: joins this host to a cluster as a container instance and
//! runs its tasks on the local Docker Engine until SIGTERM or SIGINT
//! (containers keep running across an agent restart and are adopted) — or,
//! with `--simulate N`, runs N simulated hosts on the fake runtime to drive
//! the control plane at scale. `--fargate` joins the platform's Fargate
//! pool instead of a cluster: the host (or each simulated one) runs the
//! FARGATE tasks of every cluster, each in its own network namespace, and
//! keeps a few namespaces started ahead of them (`--warm-namespaces`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use berth_agent::runtime::docker::DockerRuntime;
use berth_agent::{AgentConfig, ContainerRuntime, HostResources, Simulation};
use berth_types::agent::FARGATE_POOL_CLUSTER;
use clap::Args;

/// ECS's `ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION`.
const CLEANUP_WAIT: u64 = 3 * 3600;
/// Simulated hosts forget stopped tasks sooner: nobody inspects their
/// containers, and at 100,000 tasks three hours of them would dominate the
/// simulator's memory.
const SIMULATED_CLEANUP_WAIT: u64 = 60;
/// Fargate keeps nothing of a stopped task: its containers go at once.
const FARGATE_CLEANUP_WAIT: u64 = 0;
/// Namespaces a Fargate host keeps ready: enough for the tasks that
/// arrive together in the common case, few enough to cost nothing (an idle
/// pause container is one sleeping process of a few KiB).
pub const FARGATE_WARM_NAMESPACES: usize = 2;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The control plane's ECS endpoint.
    #[arg(
        long,
        env = "BERTH_ENDPOINT",
        default_value = "http://127.0.0.1:4610",
        value_name = "URL"
    )]
    endpoint: String,
    /// The cluster to join.
    #[arg(long, default_value = "default")]
    cluster: String,
    /// Join the platform's Fargate pool instead of a cluster: run the
    /// FARGATE tasks of every cluster, each with its own address.
    #[arg(long, conflicts_with = "cluster")]
    fargate: bool,
    /// Where the agent keeps its identity, task records and unsent reports.
    #[arg(
        long,
        env = "BERTH_AGENT_DATA_DIR",
        default_value = "./.berth-agent",
        value_name = "DIR"
    )]
    data_dir: PathBuf,
    /// Extra container instance attributes, `k=v,k2=v2`.
    #[arg(long, value_delimiter = ',', value_parser = parse_attribute)]
    attributes: Vec<(String, String)>,
    /// The availability zone this host reports (`ecs.availability-zone`).
    #[arg(long, default_value = "local-1a", value_name = "AZ")]
    availability_zone: String,
    /// Seconds a stopped task's containers (and the agent's record of it)
    /// are kept before removal (ECS: ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION;
    /// default 10800, 60 for simulated hosts, 0 with --fargate).
    #[arg(long, env = "BERTH_TASK_CLEANUP_WAIT", value_name = "SECS")]
    task_cleanup_wait: Option<u64>,
    /// Network namespaces kept started ahead of awsvpc tasks, so a task
    /// that asks nothing of its namespace (hostname, DNS, extra hosts)
    /// only waits for its address (default 2 with --fargate, else 0).
    #[arg(long, conflicts_with = "simulate", value_name = "N")]
    warm_namespaces: Option<usize>,
    #[command(flatten)]
    simulation: SimulationArgs,
}

/// `--simulate` and the options that shape the simulated hosts.
#[derive(Debug, Args)]
struct SimulationArgs {
    /// Instead of this host, register N simulated hosts that run their tasks
    /// on a fake runtime (identities under DIR/simulated/CLUSTER/).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    simulate: Option<u32>,
    /// CPU units each simulated host offers (1024 per vCPU).
    #[arg(
        long,
        requires = "simulate",
        default_value_t = 2048,
        value_name = "UNITS"
    )]
    cpu: u32,
    /// Memory each simulated host offers.
    #[arg(
        long,
        requires = "simulate",
        default_value_t = 4096,
        value_name = "MIB"
    )]
    memory: u64,
    /// Seconds a simulated container runs before exiting 0 (default: until
    /// stopped).
    #[arg(long, requires = "simulate", value_parser = parse_seconds, value_name = "SECS")]
    task_run_seconds: Option<Duration>,
    /// Milliseconds a simulated container takes to start.
    #[arg(long, requires = "simulate", default_value_t = 50, value_name = "MS")]
    task_start_delay_ms: u64,
    /// Milliseconds after its start a simulated container with a health
    /// check reports HEALTHY (default: its health stays UNKNOWN).
    #[arg(long, requires = "simulate", value_name = "MS")]
    task_healthy_after_ms: Option<u64>,
    /// Availability zones to spread the simulated hosts over, round robin
    /// (default: a, b and c of the region).
    #[arg(
        long,
        requires = "simulate",
        conflicts_with = "availability_zone",
        value_delimiter = ',',
        value_name = "AZ,…"
    )]
    zones: Vec<String>,
    /// The most API calls the simulated hosts have in flight together.
    #[arg(long, requires = "simulate", default_value_t = 32, value_name = "N")]
    max_concurrent_calls: usize,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("expected a number of seconds, got {s:?}"))
}

fn parse_attribute(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected k=v, got {s:?}")),
    }
}

impl AgentArgs {
    pub fn config(&self) -> AgentConfig {
        let cluster = if self.fargate {
            FARGATE_POOL_CLUSTER
        } else {
            &self.cluster
        };
        let mut config = AgentConfig::new(&self.endpoint, cluster, &self.data_dir);
        config.attributes = self.attributes.clone();
        config.availability_zone = self.availability_zone.clone();
        let default_wait = if self.fargate {
            FARGATE_CLEANUP_WAIT
        } else if self.simulation.simulate.is_some() {
            SIMULATED_CLEANUP_WAIT
        } else {
            CLEANUP_WAIT
        };
        config.cleanup_wait = Duration::from_secs(self.task_cleanup_wait.unwrap_or(default_wait));
        config.warm_namespaces = self.warm_namespaces.unwrap_or(if self.fargate {
            FARGATE_WARM_NAMESPACES
        } else {
            0
        });
        config
    }

    /// The simulation `--simulate` asks for, if it does.
    fn simulation(&self) -> Option<Simulation> {
        let args = &self.simulation;
        let hosts = usize::try_from(args.simulate?).ok()?;
        let mut simulation = Simulation::new(self.config(), hosts);
        simulation.resources = HostResources {
            cpu_units: args.cpu,
            memory_mib: args.memory,
        };
        simulation.zones = args.zones.clone();
        simulation.task_start_delay = Duration::from_millis(args.task_start_delay_ms);
        simulation.task_run_time = args.task_run_seconds;
        simulation.task_healthy_after = args.task_healthy_after_ms.map(Duration::from_millis);
        simulation.max_concurrent_calls = args.max_concurrent_calls;
        Some(simulation)
    }

    /// The log filter when `BERTH_LOG` sets none: thousands of simulated
    /// hosts would drown the simulator's own progress in per-host lines.
    pub fn default_log_filter(&self) -> &'static str {
        if self.simulation.simulate.is_some() {
            "info,berth_agent=warn,berth_agent::simulate=info"
        } else {
            "info"
        }
    }
}

/// The local Docker Engine, as the agent's runtime.
pub async fn docker() -> anyhow::Result<Arc<dyn ContainerRuntime>> {
    let runtime = DockerRuntime::connect().await.context(
        "cannot reach the Docker Engine (is it running, and is /var/run/docker.sock readable?)",
    )?;
    Ok(Arc::new(runtime))
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let shutdown = super::server::shutdown_signal().context("cannot install signal handlers")?;
    if let Some(simulation) = args.simulation() {
        berth_agent::simulate(simulation, shutdown).await?;
        tracing::info!("simulated hosts stopped");
        return Ok(());
    }
    let runtime = docker().await?;
    berth_agent::run(args.config(), runtime, shutdown).await?;
    tracing::info!("berth agent stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn parse(args: &[&str]) -> Result<AgentArgs, clap::Error> {
        Command::try_parse_from(std::iter::once("agent").chain(args.iter().copied()))
            .map(|c| c.agent)
    }

    #[test]
    fn fargate_joins_the_pool_and_keeps_nothing() {
        let config = parse(&["--fargate"]).unwrap().config();
        assert_eq!(config.cluster, FARGATE_POOL_CLUSTER);
        assert_eq!(config.cleanup_wait, Duration::ZERO);
        assert_eq!(config.warm_namespaces, FARGATE_WARM_NAMESPACES);
        let config = parse(&["--fargate", "--task-cleanup-wait", "30"])
            .unwrap()
            .config();
        assert_eq!(config.cleanup_wait, Duration::from_secs(30));
        let cold = parse(&["--fargate", "--warm-namespaces", "0"])
            .unwrap()
            .config();
        assert_eq!(cold.warm_namespaces, 0);
        assert!(parse(&["--fargate", "--simulate", "3", "--warm-namespaces", "2"]).is_err());
        let simulated = parse(&["--fargate", "--simulate", "3"]).unwrap();
        let simulation = simulated.simulation().unwrap();
        assert_eq!(simulation.hosts, 3);
        assert_eq!(simulation.agent.cluster, FARGATE_POOL_CLUSTER);
        assert_eq!(simulation.agent.cleanup_wait, Duration::ZERO);
        assert!(parse(&["--fargate", "--cluster", "web"]).is_err());
    }

    #[test]
    fn a_cluster_agent_keeps_ecs_defaults() {
        let config = parse(&["--cluster", "web"]).unwrap().config();
        assert_eq!(config.cluster, "web");
        assert_eq!(config.cleanup_wait, Duration::from_secs(CLEANUP_WAIT));
        assert_eq!(config.warm_namespaces, 0);
        let simulated = parse(&["--simulate", "2"]).unwrap().config();
        assert_eq!(
            simulated.cleanup_wait,
            Duration::from_secs(SIMULATED_CLEANUP_WAIT)
        );
    }
}
