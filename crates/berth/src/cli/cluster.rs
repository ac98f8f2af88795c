//! `berth cluster create|ls|rm`.

use berth_client::Client;
use berth_types::arn::Arn;
use berth_types::{
    Cluster, CreateClusterRequest, CreateClusterResponse, DeleteClusterRequest,
    DeleteClusterResponse, DescribeClustersRequest, DescribeClustersResponse, ListClustersRequest,
    Tag,
};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::ClientArgs;
use super::output::{self, call_raw, merge_pages, or_dash};

/// DescribeClusters takes at most this many clusters per call.
const DESCRIBE_BATCH: usize = 100;

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub(super) client: ClientArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Create a cluster (creating an existing one returns it unchanged).
    Create {
        name: String,
        /// A tag to attach; repeat for more.
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
        tags: Vec<Tag>,
    },
    /// List clusters with their instance, task and service counts.
    #[command(visible_alias = "list")]
    Ls,
    /// Delete a cluster; it must have no instances, services or tasks.
    #[command(visible_alias = "delete")]
    Rm { name: String },
}

fn parse_tag(s: &str) -> Result<Tag, String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok(Tag {
            key: Some(key.to_owned()),
            value: Some(value.to_owned()),
        }),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let client = args.client.client()?;
    let output = args.client.output;
    match args.command {
        ClusterCommand::Create { name, tags } => {
            let request = CreateClusterRequest {
                cluster_name: Some(name),
                tags: (!tags.is_empty()).then_some(tags),
                ..Default::default()
            };
            let raw = call_raw(&client, &request).await?;
            output.emit(raw, |response: CreateClusterResponse| {
                clusters_table(response.cluster.into_iter().collect())
            })
        }
        ClusterCommand::Ls => {
            let raw = describe_all(&client).await?;
            output.emit(raw, |response: DescribeClustersResponse| {
                output::warn_failures(response.failures.as_deref());
                clusters_table(response.clusters.unwrap_or_default())
            })
        }
        ClusterCommand::Rm { name } => {
            let raw = call_raw(&client, &DeleteClusterRequest { cluster: name }).await?;
            output.emit(raw, |response: DeleteClusterResponse| {
                clusters_table(response.cluster.into_iter().collect())
            })
        }
    }
}

/// Every cluster, as one DescribeClusters-shaped response.
async fn describe_all(client: &Client) -> anyhow::Result<Value> {
    let mut arns = Vec::new();
    let mut next_token = None;
    loop {
        let page = client
            .send(&ListClustersRequest {
                max_results: None,
                next_token,
            })
            .await?;
        arns.extend(page.cluster_arns.unwrap_or_default());
        next_token = page.next_token;
        if next_token.is_none() {
            break;
        }
    }
    let mut pages = Vec::new();
    for batch in arns.chunks(DESCRIBE_BATCH) {
        let request = DescribeClustersRequest {
            clusters: Some(batch.to_vec()),
            include: None,
        };
        pages.push(call_raw(client, &request).await?);
    }
    Ok(merge_pages(pages, &["clusters", "failures"]))
}

/// NAME, STATUS, INSTANCES, RUNNING, PENDING, SERVICES; sorted by name.
fn clusters_table(mut clusters: Vec<Cluster>) -> String {
    clusters.sort_by(|a, b| name(a).cmp(name(b)));
    let mut table = output::table([
        "NAME",
        "STATUS",
        "INSTANCES",
        "RUNNING",
        "PENDING",
        "SERVICES",
    ]);
    for cluster in &clusters {
        table.add_row([
            name(cluster).to_owned(),
            or_dash(cluster.status.as_deref()),
            cluster.registered_container_instances_count.to_string(),
            cluster.running_tasks_count.to_string(),
            cluster.pending_tasks_count.to_string(),
            cluster.active_services_count.to_string(),
        ]);
    }
    output::right_align(&mut table, &[2, 3, 4, 5]);
    table.trim_fmt()
}

fn name(cluster: &Cluster) -> &str {
    cluster
        .cluster_name
        .as_deref()
        .or_else(|| {
            let arn = cluster.cluster_arn.as_deref()?;
            Arn::parse(arn).map(|arn| arn.last_segment())
        })
        .unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str, status: &str, counts: [i32; 4]) -> Cluster {
        Cluster {
            cluster_arn: Some(format!("arn:aws:ecs:us-east-1:000000000000:cluster/{name}")),
            cluster_name: Some(name.to_owned()),
            status: Some(status.to_owned()),
            registered_container_instances_count: counts[0],
            running_tasks_count: counts[1],
            pending_tasks_count: counts[2],
            active_services_count: counts[3],
            ..Default::default()
        }
    }

    #[test]
    fn table_lists_clusters_by_name() {
        let table = clusters_table(vec![
            cluster("prod", "ACTIVE", [12, 140, 3, 9]),
            cluster("default", "ACTIVE", [1, 0, 0, 0]),
            Cluster {
                cluster_arn: Some("arn:aws:ecs:us-east-1:000000000000:cluster/old".into()),
                ..Default::default()
            },
        ]);
        let expected = "\
NAME     STATUS  INSTANCES  RUNNING  PENDING  SERVICES
default  ACTIVE          1        0        0         0
old      -               0        0        0         0
prod     ACTIVE         12      140        3         9";
        assert_eq!(table, expected);
    }

    #[test]
    fn empty_table_is_just_the_header() {
        assert_eq!(
            clusters_table(Vec::new()),
            "NAME  STATUS  INSTANCES  RUNNING  PENDING  SERVICES"
        );
    }

    #[test]
    fn tags_are_key_value_pairs() {
        let tag = parse_tag("team=core=1").unwrap();
        assert_eq!(tag.key.as_deref(), Some("team"));
        assert_eq!(tag.value.as_deref(), Some("core=1"));
        assert_eq!(parse_tag("empty=").unwrap().value.as_deref(), Some(""));
        assert!(parse_tag("novalue").is_err());
        assert!(parse_tag("=v").is_err());
    }
}
