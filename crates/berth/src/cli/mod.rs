//! The command tree (`berth server`, `berth agent`, `berth dev`, `berth cluster …`, `berth taskdef …`,
//! `berth instance …`, `berth service …`, `berth logs`, `berth fargate …`), the options every client verb shares, and
//! the exit status an error ends the process with.

use anyhow::Context as _;
use berth_client::Client;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

mod agent;
mod cluster;
mod dev;
mod fargate;
mod instance;
mod logs;
mod output;
mod server;
mod service;
mod taskdef;

use output::Output;

/// Berth: a container orchestrator that speaks the Amazon ECS API.
#[derive(Debug, Parser)]
#[command(name = "berth", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane.
    Server(server::ServerArgs),
    /// Run this host's agent: join a cluster and run its tasks on Docker.
    Agent(agent::AgentArgs),
    /// Run everything on this machine: the control plane, cluster
    /// `default`, and an agent on the local Docker Engine.
    Dev(dev::DevArgs),
    /// Create, list and delete clusters.
    Cluster(cluster::ClusterArgs),
    /// Register and inspect task definitions.
    Taskdef(taskdef::TaskdefArgs),
    /// Inspect container instances (the hosts running `berth agent`).
    Instance(instance::InstanceArgs),
    /// Create, scale, deploy and delete services; watch rollouts live.
    Service(service::ServiceArgs),
    /// Print a task's container output (`--follow` to keep reading).
    Logs(logs::LogsArgs),
    /// Operate the Fargate capacity: interrupt FARGATE_SPOT tasks.
    Fargate(fargate::FargateArgs),
}

impl Cli {
    /// The log filter when `BERTH_LOG` sets none.
    pub fn default_log_filter(&self) -> &'static str {
        match &self.command {
            Command::Agent(args) => args.default_log_filter(),
            _ => "info",
        }
    }
}

/// Options of every client verb. They are global so they may follow the
/// verb (`berth cluster ls --output json`).
#[derive(Debug, Clone, Args)]
struct ClientArgs {
    /// The Berth endpoint (any ECS-compatible endpoint works).
    #[arg(
        long,
        global = true,
        env = "BERTH_ENDPOINT",
        default_value = "http://127.0.0.1:4610",
        value_name = "URL"
    )]
    endpoint: String,
    /// How to print the result: a table, or the raw ECS response JSON.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
}

impl ClientArgs {
    /// A client signing with the AWS credentials and region of the
    /// environment; a local Berth accepts the fallback ones.
    fn client(&self) -> anyhow::Result<Client> {
        Client::from_env(&self.endpoint).context("cannot create the API client")
    }
}

/// An error that ends the process with its own status rather than 1, for
/// verbs whose status tells scripts more than "failed" (`service deploy`
/// exits 2 when it timed out).
#[derive(Debug)]
pub struct Exit {
    pub status: u8,
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// The exit status for an error of [`run`].
pub fn exit_status(error: &anyhow::Error) -> u8 {
    error.downcast_ref::<Exit>().map_or(1, |exit| exit.status)
}

/// Parses a generated ECS enum by its wire spelling (in any case), listing
/// the values in `--help`.
fn wire_enum<T: Copy + Send + Sync + 'static>(
    all: &'static [T],
    as_str: fn(T) -> &'static str,
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(all.iter().map(|value| as_str(*value))).try_map(move |name| {
        all.iter()
            .copied()
            .find(|value| as_str(*value).eq_ignore_ascii_case(&name))
            .ok_or("unknown value")
    })
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(args) => server::run(args).await,
        Command::Agent(args) => agent::run(args).await,
        Command::Dev(args) => dev::run(args).await,
        Command::Cluster(args) => cluster::run(args).await,
        Command::Taskdef(args) => taskdef::run(args).await,
        Command::Instance(args) => instance::run(args).await,
        Command::Service(args) => service::run(args).await,
        Command::Logs(args) => logs::run(args).await,
        Command::Fargate(args) => fargate::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied()))
    }

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn client_options_go_before_or_after_the_verb() {
        for args in [
            &[
                "cluster",
                "ls",
                "--output",
                "json",
                "--endpoint",
                "http://h:1",
            ][..],
            &["cluster", "-o", "json", "--endpoint=http://h:1", "ls"][..],
        ] {
            let Command::Cluster(cluster) = parse(args).unwrap().command else {
                panic!("not a cluster command");
            };
            assert_eq!(cluster.client.output, Output::Json);
            assert_eq!(cluster.client.endpoint, "http://h:1");
        }
    }

    #[test]
    fn table_is_the_default_output() {
        let Command::Instance(instance) = parse(&["instance", "ls"]).unwrap().command else {
            panic!("not an instance command");
        };
        assert_eq!(instance.client.output, Output::Table);
    }

    #[test]
    fn statuses_use_the_wire_spelling_in_any_case() {
        let Command::Taskdef(taskdef) = parse(&["taskdef", "ls", "--status", "inactive"])
            .unwrap()
            .command
        else {
            panic!("not a taskdef command");
        };
        let rendered = format!("{taskdef:?}");
        assert!(rendered.contains("status: Some(Inactive)"), "{rendered}");
        let help = Cli::command()
            .find_subcommand_mut("instance")
            .and_then(|c| c.find_subcommand_mut("ls"))
            .map(|c| c.render_long_help().to_string())
            .unwrap();
        assert!(help.contains("REGISTRATION_FAILED"), "{help}");
    }

    #[test]
    fn service_options_go_anywhere_and_counts_are_checked() {
        let Command::Service(service) =
            parse(&["service", "ls", "--cluster", "prod", "-o", "json"])
                .unwrap()
                .command
        else {
            panic!("not a service command");
        };
        assert_eq!(service.client.output, Output::Json);
        let rendered = format!("{service:?}");
        assert!(rendered.contains("cluster: Some(\"prod\")"), "{rendered}");
        for args in [
            &["service", "scale", "web", "-1"][..],
            &["service", "create", "web"],
            &[
                "service",
                "create",
                "web",
                "--task-definition",
                "web",
                "--daemon",
                "--desired-count",
                "2",
            ],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn errors_exit_1_unless_they_say_otherwise() {
        assert_eq!(exit_status(&anyhow::anyhow!("failed")), 1);
        let timeout = anyhow::Error::from(Exit {
            status: 2,
            message: "timed out".into(),
        });
        assert_eq!(exit_status(&timeout), 2);
        assert_eq!(exit_status(&timeout.context("while deploying")), 2);
        assert_eq!(
            format!(
                "{:#}",
                anyhow::Error::from(Exit {
                    status: 2,
                    message: "m".into()
                })
            ),
            "m"
        );
    }

    #[test]
    fn usage_errors_are_reported_by_clap() {
        for args in [
            &["cluster"][..],
            &["cluster", "create"],
            &["cluster", "ls", "--output", "yaml"],
            &["taskdef", "ls", "--status", "GONE"],
            &["nosuch"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }
}
