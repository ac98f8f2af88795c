//! `berth instance ls`.

use berth_client::Client;
use berth_types::arn::Arn;
use berth_types::{
    ContainerInstance, ContainerInstanceStatus, DescribeContainerInstancesRequest,
    DescribeContainerInstancesResponse, ListContainerInstancesRequest, Resource,
};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::output::{self, call_raw, merge_pages, or_dash};
use super::{ClientArgs, wire_enum};

/// DescribeContainerInstances takes at most this many instances per call.
const DESCRIBE_BATCH: usize = 100;

#[derive(Debug, Args)]
pub struct InstanceArgs {
    #[command(flatten)]
    pub(super) client: ClientArgs,
    #[command(subcommand)]
    command: InstanceCommand,
}

#[derive(Debug, Subcommand)]
enum InstanceCommand {
    /// List container instances with their tasks and free resources.
    #[command(visible_alias = "list")]
    Ls {
        /// The cluster (default: `default`).
        #[arg(long)]
        cluster: Option<String>,
        /// Only instances with this status.
        #[arg(
            long,
            ignore_case = true,
            value_parser = wire_enum(ContainerInstanceStatus::ALL, ContainerInstanceStatus::as_str)
        )]
        status: Option<ContainerInstanceStatus>,
    },
}

pub async fn run(args: InstanceArgs) -> anyhow::Result<()> {
    let client = args.client.client()?;
    let output = args.client.output;
    match args.command {
        InstanceCommand::Ls { cluster, status } => {
            let raw = describe_all(&client, cluster, status).await?;
            output.emit(raw, |response: DescribeContainerInstancesResponse| {
                output::warn_failures(response.failures.as_deref());
                instances_table(&response.container_instances.unwrap_or_default())
            })
        }
    }
}

/// Every matching instance, as one DescribeContainerInstances-shaped
/// response.
async fn describe_all(
    client: &Client,
    cluster: Option<String>,
    status: Option<ContainerInstanceStatus>,
) -> anyhow::Result<Value> {
    let mut request = ListContainerInstancesRequest {
        cluster: cluster.clone(),
        status,
        ..Default::default()
    };
    let mut arns = Vec::new();
    loop {
        let page = client.send(&request).await?;
        arns.extend(page.container_instance_arns.unwrap_or_default());
        request.next_token = page.next_token;
        if request.next_token.is_none() {
            break;
        }
    }
    let mut pages = Vec::new();
    for batch in arns.chunks(DESCRIBE_BATCH) {
        let request = DescribeContainerInstancesRequest {
            cluster: cluster.clone(),
            container_instances: batch.to_vec(),
            include: None,
        };
        pages.push(call_raw(client, &request).await?);
    }
    Ok(merge_pages(pages, &["containerInstances", "failures"]))
}

fn instances_table(instances: &[ContainerInstance]) -> String {
    let mut table = output::table([
        "ID",
        "STATUS",
        "AGENT CONNECTED",
        "RUNNING",
        "PENDING",
        "CPU free/total",
        "MEMORY free/total",
    ]);
    for instance in instances {
        let arn = instance.container_instance_arn.as_deref();
        let id = arn.map(|arn| Arn::parse(arn).map_or(arn, |parsed| parsed.last_segment()));
        table.add_row([
            or_dash(id),
            or_dash(instance.status.as_deref()),
            if instance.agent_connected {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
            instance.running_tasks_count.to_string(),
            instance.pending_tasks_count.to_string(),
            free_of_total(instance, "CPU"),
            free_of_total(instance, "MEMORY"),
        ]);
    }
    output::right_align(&mut table, &[3, 4, 5, 6]);
    table.trim_fmt()
}

/// `remaining/registered` of an integer resource such as CPU units or MiB.
fn free_of_total(instance: &ContainerInstance, name: &str) -> String {
    let find = |resources: &Option<Vec<Resource>>| {
        resources
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|resource| resource.name.as_deref() == Some(name))
            .map(|resource| resource.integer_value)
    };
    format!(
        "{}/{}",
        or_dash(find(&instance.remaining_resources)),
        or_dash(find(&instance.registered_resources)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(cpu: i32, memory: i32) -> Option<Vec<Resource>> {
        let integer = |name: &str, value| Resource {
            name: Some(name.to_owned()),
            r#type: Some("INTEGER".to_owned()),
            integer_value: value,
            ..Default::default()
        };
        Some(vec![
            integer("CPU", cpu),
            integer("MEMORY", memory),
            Resource {
                name: Some("PORTS".to_owned()),
                r#type: Some("STRINGSET".to_owned()),
                string_set_value: Some(vec!["22".to_owned()]),
                ..Default::default()
            },
        ])
    }

    #[test]
    fn table_shows_ids_and_free_resources() {
        let instances = [
            ContainerInstance {
                container_instance_arn: Some(
                    "arn:aws:ecs:us-east-1:000000000000:container-instance/default/0f3c9a2b".into(),
                ),
                status: Some("ACTIVE".into()),
                agent_connected: true,
                running_tasks_count: 3,
                pending_tasks_count: 1,
                registered_resources: resources(2048, 3943),
                remaining_resources: resources(1024, 2919),
                ..Default::default()
            },
            ContainerInstance {
                container_instance_arn: Some("legacy-id".into()),
                status: Some("DRAINING".into()),
                ..Default::default()
            },
        ];
        assert_eq!(
            instances_table(&instances),
            "\
ID         STATUS    AGENT CONNECTED  RUNNING  PENDING  CPU free/total  MEMORY free/total
0f3c9a2b   ACTIVE    yes                    3        1       1024/2048          2919/3943
legacy-id  DRAINING  no                     0        0             -/-                -/-"
        );
    }
}
