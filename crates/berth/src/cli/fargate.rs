//! `berth fargate ls` and `berth fargate interrupt`: the operator's view of
//! the Fargate capacity pool (the hosts no user cluster shows), and
//! reclaiming FARGATE_SPOT capacity as AWS does with its two-minute warning
//! (see `berth_server::operator`).

use berth_types::{ContainerInstance, Failure, Task};
use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::json;

use super::ClientArgs;
use super::output::{self, or_dash};

/// The operator calls' `X-Amz-Target` prefix (without the dot).
const OPERATOR_TARGET: &str = "BerthOperator_20261125";

#[derive(Debug, Args)]
pub struct FargateArgs {
    #[command(flatten)]
    pub(super) client: ClientArgs,
    #[command(subcommand)]
    command: FargateCommand,
}

#[derive(Debug, Subcommand)]
enum FargateCommand {
    /// List the pool's hosts (agents started with `--fargate`).
    #[command(visible_alias = "list")]
    Ls,
    /// Interrupt FARGATE_SPOT tasks: they get SIGTERM, then SIGKILL after
    /// their stopTimeout, and stop with stopCode SpotInterruption.
    Interrupt {
        /// The cluster (default: `default`).
        #[arg(long)]
        cluster: Option<String>,
        /// Task ids or ARNs.
        #[arg(required = true, value_name = "TASK")]
        tasks: Vec<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Capacity {
    container_instances: Vec<ContainerInstance>,
}

fn remaining(ci: &ContainerInstance, name: &str) -> String {
    or_dash(
        ci.remaining_resources
            .iter()
            .flatten()
            .find(|r| r.name.as_deref() == Some(name))
            .map(|r| r.integer_value),
    )
}

#[derive(Debug, Deserialize)]
struct Interrupted {
    tasks: Vec<Task>,
    failures: Vec<Failure>,
}

pub async fn run(args: FargateArgs) -> anyhow::Result<()> {
    let client = args.client.client()?;
    match args.command {
        FargateCommand::Ls => {
            let raw: serde_json::Value = client
                .call_target(OPERATOR_TARGET, "DescribeFargateCapacity", &json!({}))
                .await?;
            args.client.output.emit(raw, |capacity: Capacity| {
                let mut table =
                    output::table(["HOST", "STATUS", "CONNECTED", "FREE CPU", "FREE MEMORY"]);
                for ci in &capacity.container_instances {
                    table.add_row([
                        or_dash(
                            ci.container_instance_arn
                                .as_deref()
                                .and_then(|a| a.rsplit('/').next()),
                        ),
                        or_dash(ci.status.as_deref()),
                        ci.agent_connected.to_string(),
                        remaining(ci, "CPU"),
                        remaining(ci, "MEMORY"),
                    ]);
                }
                output::right_align(&mut table, &[3, 4]);
                table.trim_fmt()
            })
        }
        FargateCommand::Interrupt { cluster, tasks } => {
            let raw: serde_json::Value = client
                .call_target(
                    OPERATOR_TARGET,
                    "InterruptSpotTasks",
                    &json!({ "cluster": cluster, "tasks": tasks }),
                )
                .await?;
            let failed = raw
                .get("failures")
                .and_then(|f| f.as_array())
                .is_some_and(|f| !f.is_empty());
            args.client.output.emit(raw, |response: Interrupted| {
                output::warn_failures(Some(&response.failures));
                let mut table = output::table(["TASK", "LAST STATUS", "STOP CODE"]);
                for t in &response.tasks {
                    table.add_row([
                        or_dash(t.task_arn.as_deref()),
                        or_dash(t.last_status.as_deref()),
                        or_dash(t.stop_code.map(|c| c.as_str())),
                    ]);
                }
                table.trim_fmt()
            })?;
            if failed {
                anyhow::bail!("some tasks were not interrupted");
            }
            Ok(())
        }
    }
}
