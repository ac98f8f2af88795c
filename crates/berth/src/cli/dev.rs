//! `berth dev`: the whole system on one machine in one command — the
//! control plane on its embedded store, cluster `default`, an agent that
//! offers this host's Docker Engine to it as a container instance, and a
//! second agent on the same engine in the Fargate pool, so FARGATE tasks of
//! any cluster run here too, each with its own address on a task network.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use berth_client::Client;
use berth_types::agent::FARGATE_POOL_CLUSTER;
use clap::Args;
use tokio::sync::{oneshot, watch};

#[derive(Debug, Args)]
pub struct DevArgs {
    /// The address to serve the ECS API on.
    #[arg(long, default_value = "127.0.0.1:4610", value_name = "ADDR")]
    listen: SocketAddr,
    /// Where the store and the agents keep their files.
    #[arg(
        long,
        env = "BERTH_DATA_DIR",
        default_value = "./.berth",
        value_name = "DIR"
    )]
    data_dir: PathBuf,
}

const CLUSTER: &str = "default";

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let signal = super::server::shutdown_signal().context("cannot install signal handlers")?;
    // Checked first: without an engine there is nothing to run tasks on.
    let runtime = super::agent::docker().await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let (ready_tx, ready_rx) = oneshot::channel();
    let config = berth_server::Config {
        listen: args.listen,
        data_dir: args.data_dir.join("server"),
        account_id: "000000000000".into(),
        region: "us-east-1".into(),
        lost_agent_timeout: berth_server::DEFAULT_LOST_AGENT_TIMEOUT,
        spot_interruptions_per_task_hour: None,
    };
    let server_stop = stopped(stop_rx.clone());
    let server = tokio::spawn(async move {
        berth_server::serve(
            config,
            move |addr| {
                let _ = ready_tx.send(addr);
            },
            server_stop,
        )
        .await
    });
    let Ok(addr) = ready_rx.await else {
        // The server ended before it was ready; its error says why.
        server.await.context("the server task failed")??;
        anyhow::bail!("the server stopped before it was ready");
    };
    let endpoint = format!("http://{addr}");

    let client = Client::from_env(&endpoint).context("cannot create the API client")?;
    client
        .send(&berth_types::CreateClusterRequest {
            cluster_name: Some(CLUSTER.into()),
            ..Default::default()
        })
        .await
        .context("cannot create the default cluster")?;

    let agent_config =
        berth_agent::AgentConfig::new(&endpoint, CLUSTER, args.data_dir.join("agent"));
    let agent = tokio::spawn(berth_agent::run(
        agent_config,
        runtime.clone(),
        stopped(stop_rx.clone()),
    ));
    // The same engine once more, as Fargate capacity: its own identity and
    // task network, no stopped containers kept, and namespaces kept ready
    // as `berth agent --fargate` keeps them.
    let mut fargate_config = berth_agent::AgentConfig::new(
        &endpoint,
        FARGATE_POOL_CLUSTER,
        args.data_dir.join("agent-fargate"),
    );
    fargate_config.cleanup_wait = std::time::Duration::ZERO;
    fargate_config.warm_namespaces = super::agent::FARGATE_WARM_NAMESPACES;
    let fargate = tokio::spawn(berth_agent::run(
        fargate_config,
        runtime,
        stopped(stop_rx.clone()),
    ));

    println!(
        "berth dev: the ECS API is at {endpoint}; cluster \"{CLUSTER}\" runs tasks on this host's Docker Engine,"
    );
    println!(
        "and FARGATE tasks of any cluster run there too, each at its own address (a 100.64.x.x task network)."
    );
    println!("Try:");
    println!(
        "  export AWS_ACCESS_KEY_ID=berth AWS_SECRET_ACCESS_KEY=berth AWS_DEFAULT_REGION=us-east-1"
    );
    println!("  aws ecs --endpoint-url {endpoint} list-container-instances");
    println!("  aws ecs --endpoint-url {endpoint} run-task --task-definition FAMILY");
    println!(
        "  aws ecs --endpoint-url {endpoint} run-task --task-definition FAMILY --launch-type FARGATE \\"
    );
    println!("      --network-configuration 'awsvpcConfiguration={{subnets=[subnet-local]}}'");

    let mut server = server;
    let mut agents = [("agent", agent), ("Fargate agent", fargate)];
    let [(_, agent), (_, fargate)] = &mut agents;
    let ended = tokio::select! {
        () = signal => None,
        result = agent => Some(("agent", result)),
        result = fargate => Some(("Fargate agent", result)),
        result = &mut server => {
            stop_tx.send_replace(true);
            for (name, agent) in agents {
                agent.await.with_context(|| format!("the {name} task failed"))??;
            }
            result.context("the server task failed")??;
            anyhow::bail!("the server stopped unexpectedly");
        }
    };
    stop_tx.send_replace(true);
    if let Some((name, result)) = ended {
        // An agent gave up (its error says why); take the rest down too.
        for (other, agent) in agents.into_iter().filter(|(other, _)| *other != name) {
            agent
                .await
                .with_context(|| format!("the {other} task failed"))??;
        }
        server.await.context("the server task failed")??;
        result.with_context(|| format!("the {name} task failed"))??;
        anyhow::bail!("the {name} stopped unexpectedly");
    }
    // The agents first, so they never report to a server that is gone.
    for (name, agent) in agents {
        agent
            .await
            .with_context(|| format!("the {name} task failed"))??;
    }
    server.await.context("the server task failed")??;
    tracing::info!("berth dev stopped");
    Ok(())
}
