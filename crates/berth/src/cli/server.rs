//! `berth server`: runs the control plane until SIGTERM or SIGINT.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The address to serve the API on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:4610", value_name = "ADDR")]
    listen: SocketAddr,
    /// Where the embedded store keeps its files.
    #[arg(
        long,
        env = "BERTH_DATA_DIR",
        default_value = "./.berth",
        value_name = "DIR"
    )]
    data_dir: PathBuf,
    /// The account id in every ARN (12 digits).
    #[arg(long, default_value = "000000000000", value_name = "ID", value_parser = parse_account_id)]
    account_id: String,
    /// The region in every ARN.
    #[arg(long, default_value = "us-east-1", value_parser = parse_region)]
    region: String,
    /// Seconds an agent may stay disconnected before the service tasks on
    /// its host are recorded lost (STOPPED) and replaced on other hosts.
    #[arg(long, default_value_t = 60, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    lost_agent_timeout: u64,
    /// Chaos testing: interrupt each RUNNING FARGATE_SPOT task with this
    /// probability per hour (e.g. 60 interrupts a task about once a minute).
    #[arg(long, value_name = "PER_TASK_HOUR", value_parser = parse_rate)]
    spot_interruption_rate: Option<f64>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err("expected a rate of 0 or more per task-hour".to_owned()),
    }
}

fn parse_account_id(s: &str) -> Result<String, String> {
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_owned())
    } else {
        Err("an account id is 12 digits".to_owned())
    }
}

fn parse_region(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(s.to_owned())
    } else {
        Err("a region is lowercase letters, digits and dashes, like us-east-1".to_owned())
    }
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    // Installed before serving so that a signal during startup still stops
    // the server instead of killing it mid-write.
    let shutdown = shutdown_signal().context("cannot install signal handlers")?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let config = berth_server::Config {
        listen: args.listen,
        data_dir: args.data_dir,
        account_id: args.account_id,
        lost_agent_timeout: std::time::Duration::from_secs(args.lost_agent_timeout),
        region: args.region,
        spot_interruptions_per_task_hour: args.spot_interruption_rate,
    };
    // On stdout, so that a script that asked for port 0 can read the port.
    let ready = |addr: SocketAddr| println!("berth server listening on http://{addr}");
    berth_server::serve(config, ready, shutdown).await?;
    tracing::info!("berth server stopped");
    Ok(())
}

pub(super) fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Harness {
        #[command(flatten)]
        server: ServerArgs,
    }

    fn parse(args: &[&str]) -> Result<ServerArgs, clap::Error> {
        Harness::try_parse_from(std::iter::once("server").chain(args.iter().copied()))
            .map(|h| h.server)
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.listen, "127.0.0.1:4610".parse().unwrap());
        assert_eq!(args.account_id, "000000000000");
        assert_eq!(args.region, "us-east-1");
        // BERTH_DATA_DIR may be set where the tests run.
        if std::env::var_os("BERTH_DATA_DIR").is_none() {
            assert_eq!(args.data_dir, PathBuf::from("./.berth"));
        }
    }

    #[test]
    fn flags_are_validated() {
        let args = parse(&[
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
            "/var/lib/berth",
            "--account-id",
            "123456789012",
            "--region",
            "eu-west-1",
        ])
        .unwrap();
        assert_eq!(args.listen.port(), 0);
        assert_eq!(args.data_dir, PathBuf::from("/var/lib/berth"));
        assert_eq!(args.account_id, "123456789012");
        assert_eq!(args.region, "eu-west-1");
        for bad in [
            &["--listen", "localhost"][..],
            &["--account-id", "12345"],
            &["--region", "US East"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
