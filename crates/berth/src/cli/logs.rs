//! `berth logs TASK`: prints the output of a task's containers, read with
//! CloudWatch Logs' `GetLogEvents` from where the agent shipped it (the
//! `awslogs` group/stream of the container definition, else `/ecs/<family>`
//! and `ecs/<container>/<task id>`).

use std::time::Duration;

use anyhow::{Context as _, bail};
use berth_agent::logs::{LogDestination, destination};
use berth_client::{Client, ClientError};
use berth_types::{DescribeTaskDefinitionRequest, DescribeTasksRequest, Task};
use clap::Args;
use serde_json::{Value, json};

use super::ClientArgs;

const POLL: Duration = Duration::from_secs(1);
/// Polls without new events, after the task stopped, before `--follow`
/// gives up waiting for the last shipped lines.
const DRAIN_ROUNDS: u32 = 3;

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub(super) client: ClientArgs,
    /// The task (id or ARN).
    task: String,
    /// Keep printing new lines until the task has stopped (or Ctrl-C).
    #[arg(short, long)]
    follow: bool,
    /// Only this container's output.
    #[arg(long, value_name = "NAME")]
    container: Option<String>,
    /// The task's cluster (default: `default`).
    #[arg(long)]
    cluster: Option<String>,
}

/// One container being read.
struct Source {
    name: String,
    destination: LogDestination,
    /// The forward token of the last read; `None` before the first.
    token: Option<String>,
}

struct Line {
    timestamp: i64,
    container: usize,
    message: String,
}

pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    let client = args.client.client()?;
    let task = describe(&client, args.cluster.as_deref(), &args.task).await?;
    let mut sources = sources(&client, &task, args.container.as_deref()).await?;
    let prefix = sources.len() > 1;
    let print = |sources: &[Source], lines: Vec<Line>| {
        for line in lines {
            if prefix {
                println!("[{}] {}", sources[line.container].name, line.message);
            } else {
                println!("{}", line.message);
            }
        }
    };
    let lines = read_new(&client, &mut sources).await?;
    print(&sources, lines);
    if !args.follow {
        return Ok(());
    }
    let task_arn = task.task_arn.clone().unwrap_or(args.task.clone());
    let follow = async {
        let mut quiet_after_stop = 0;
        loop {
            tokio::time::sleep(POLL).await;
            let stopped = describe(&client, args.cluster.as_deref(), &task_arn)
                .await?
                .last_status
                .as_deref()
                == Some("STOPPED");
            let lines = read_new(&client, &mut sources).await?;
            let empty = lines.is_empty();
            print(&sources, lines);
            if stopped && empty {
                quiet_after_stop += 1;
                if quiet_after_stop >= DRAIN_ROUNDS {
                    return anyhow::Ok(());
                }
            } else {
                quiet_after_stop = 0;
            }
        }
    };
    tokio::select! {
        result = follow => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn describe(client: &Client, cluster: Option<&str>, task: &str) -> anyhow::Result<Task> {
    let response = client
        .send(&DescribeTasksRequest {
            cluster: cluster.map(str::to_owned),
            tasks: vec![task.to_owned()],
            include: None,
        })
        .await?;
    match response.tasks.unwrap_or_default().into_iter().next() {
        Some(task) => Ok(task),
        None => bail!("task {task} not found"),
    }
}

async fn sources(client: &Client, task: &Task, only: Option<&str>) -> anyhow::Result<Vec<Source>> {
    let definition = client
        .send(&DescribeTaskDefinitionRequest {
            task_definition: task
                .task_definition_arn
                .clone()
                .context("the task has no task definition")?,
            include: None,
        })
        .await?
        .task_definition
        .context("DescribeTaskDefinition returned no task definition")?;
    let family = definition.family.clone().unwrap_or_default();
    let task_id = task
        .task_arn
        .as_deref()
        .and_then(|arn| arn.rsplit('/').next())
        .unwrap_or_default()
        .to_owned();
    let containers = task.containers.clone().unwrap_or_default();
    let mut sources = Vec::new();
    for def in definition.container_definitions.iter().flatten() {
        let Some(name) = def.name.clone() else {
            continue;
        };
        if only.is_some_and(|only| only != name) {
            continue;
        }
        let runtime_id = containers
            .iter()
            .find(|c| c.name.as_deref() == Some(name.as_str()))
            .and_then(|c| c.runtime_id.as_deref());
        sources.push(Source {
            destination: destination(&family, def, &task_id, runtime_id),
            name,
            token: None,
        });
    }
    if let Some(only) = only
        && sources.is_empty()
    {
        bail!("the task has no container named {only}");
    }
    Ok(sources)
}

/// Everything each source has beyond its token, merged by timestamp.
async fn read_new(client: &Client, sources: &mut [Source]) -> anyhow::Result<Vec<Line>> {
    let mut lines = Vec::new();
    for (index, source) in sources.iter_mut().enumerate() {
        loop {
            let mut request = json!({
                "logGroupName": source.destination.group,
                "logStreamName": source.destination.stream,
                "startFromHead": true,
            });
            if let Some(token) = &source.token {
                request["nextToken"] = json!(token);
            }
            let response: Value = match client.call_logs("GetLogEvents", &request).await {
                Ok(response) => response,
                // Nothing shipped yet.
                Err(ClientError::Api { code, .. }) if code == "ResourceNotFoundException" => {
                    break;
                }
                Err(error) => return Err(error.into()),
            };
            let events = response["events"].as_array().cloned().unwrap_or_default();
            for event in &events {
                lines.push(Line {
                    timestamp: event["timestamp"].as_i64().unwrap_or_default(),
                    container: index,
                    message: event["message"].as_str().unwrap_or_default().to_owned(),
                });
            }
            let next = response["nextForwardToken"].as_str().map(str::to_owned);
            let same = next.is_none() || next == source.token;
            if next.is_some() {
                source.token = next;
            }
            if events.is_empty() || same {
                break;
            }
        }
    }
    lines.sort_by_key(|l| l.timestamp);
    Ok(lines)
}
