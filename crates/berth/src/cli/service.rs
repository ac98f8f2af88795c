//! `berth service create|ls|scale|deploy|events|rm`, and the live view of a
//! rollout that `deploy` draws until the service is stable or the
//! deployment has failed.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use berth_client::{Client, ClientError};
use berth_core::service::HEALTHY_AFTER_MILLIS;
use berth_types::arn::Arn;
use berth_types::{
    CreateServiceRequest, CreateServiceResponse, DeleteServiceRequest, DeleteServiceResponse,
    Deployment, DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentRolloutState,
    DescribeServicesRequest, DescribeServicesResponse, DescribeTaskDefinitionRequest,
    DescribeTasksRequest, HealthStatus, ListServicesRequest, ListTasksRequest, SchedulingStrategy,
    Service, ServiceEvent, Task, Timestamp, UpdateServiceRequest, UpdateServiceResponse,
};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::output::{self, Output, call_raw, merge_pages, or_dash};
use super::taskdef::family_revision;
use super::{ClientArgs, Exit};

/// DescribeServices takes at most this many services per call.
const DESCRIBE_BATCH: usize = 10;
/// DescribeTasks takes at most this many tasks per call.
const DESCRIBE_TASKS_BATCH: usize = 100;
const DEPLOY_POLL: Duration = Duration::from_millis(500);
const EVENTS_POLL: Duration = Duration::from_secs(1);
const BAR_WIDTH: usize = 30;
/// Rows of the live view beyond which tasks are only counted, so the view
/// fits a terminal.
const TASKS_SHOWN: usize = 10;
const EVENTS_SHOWN: usize = 3;
/// The line width of the live view when the terminal's is unknown.
const DEFAULT_WIDTH: usize = 120;
/// ECS's steady-state check (the `services-stable` waiter) gives up after
/// 40 polls 15 s apart.
const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// `deploy` exits with this when the service did not settle in time; a
/// failed deployment exits 1 like every other error.
const TIMEOUT_STATUS: u8 = 2;
/// The shell's status for a process ended by Ctrl-C.
const INTERRUPTED_STATUS: u8 = 130;

const ACTIVE: &str = "ACTIVE";
const INACTIVE: &str = "INACTIVE";
const PRIMARY: &str = "PRIMARY";
const RUNNING: &str = "RUNNING";

#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub(super) client: ClientArgs,
    /// The service's cluster (default: `default`).
    #[arg(long, global = true)]
    cluster: Option<String>,
    #[command(subcommand)]
    command: ServiceCommand,
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Create a service that keeps tasks of a task definition running.
    Create(CreateArgs),
    /// List the cluster's services with their task counts and rollout state.
    #[command(visible_alias = "list")]
    Ls,
    /// Set how many tasks a service keeps running.
    Scale {
        name: String,
        #[arg(value_parser = clap::value_parser!(i32).range(0..))]
        count: i32,
    },
    /// Start a deployment and watch it live. Exits 0 once the service is
    /// stable on the new deployment, 1 when the deployment failed, 2 when
    /// `--timeout` passed first.
    Deploy {
        name: String,
        /// Deploy this task definition; without it, redeploy the current one.
        #[arg(long, value_name = "FAMILY[:REVISION]")]
        task_definition: Option<String>,
        /// Start a new deployment even when nothing changed.
        #[arg(long)]
        force: bool,
        /// How long to wait for the service to become stable.
        #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS)]
        timeout: u64,
    },
    /// Show a service's events, newest first; with `--follow`, oldest first
    /// and then each new one as it happens.
    Events {
        name: String,
        /// How many of the latest events to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Keep printing new events until the service is gone (or Ctrl-C).
        #[arg(short, long)]
        follow: bool,
    },
    /// Delete a service; `--force` also when it still has a desired count.
    #[command(visible_alias = "delete")]
    Rm {
        name: String,
        /// Delete even if the service is scaled above 0 (its tasks stop).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
struct CreateArgs {
    name: String,
    /// A family (its latest ACTIVE revision), `family:revision` or an ARN.
    #[arg(long, value_name = "FAMILY[:REVISION]")]
    task_definition: String,
    /// How many tasks to keep running (default 1).
    #[arg(
        long,
        conflicts_with = "daemon",
        value_parser = clap::value_parser!(i32).range(0..)
    )]
    desired_count: Option<i32>,
    /// minimumHealthyPercent: the share of the desired count that must stay
    /// healthy during a deployment.
    #[arg(long, value_name = "PERCENT")]
    min_healthy_percent: Option<i32>,
    /// maximumPercent: the share of the desired count that may run during a
    /// deployment.
    #[arg(long, value_name = "PERCENT")]
    max_percent: Option<i32>,
    /// Fail a deployment whose tasks keep failing to start or to pass their
    /// health checks.
    #[arg(long)]
    circuit_breaker: bool,
    /// Roll a failed deployment back to the last completed one (implies
    /// `--circuit-breaker`).
    #[arg(long)]
    rollback: bool,
    /// Run one task on every container instance instead of a desired count.
    #[arg(long)]
    daemon: bool,
}

pub async fn run(args: ServiceArgs) -> anyhow::Result<()> {
    let client = args.client.client()?;
    let output = args.client.output;
    let cluster = args.cluster;
    match args.command {
        ServiceCommand::Create(create) => {
            let raw = call_raw(&client, &create_request(create, cluster)).await?;
            output.emit(raw, |response: CreateServiceResponse| {
                summary(&response.service.unwrap_or_default())
            })
        }
        ServiceCommand::Ls => {
            let raw = describe_all(&client, cluster).await?;
            output.emit(raw, |response: DescribeServicesResponse| {
                output::warn_failures(response.failures.as_deref());
                services_table(response.services.unwrap_or_default())
            })
        }
        ServiceCommand::Scale { name, count } => {
            let request = UpdateServiceRequest {
                cluster,
                service: name,
                desired_count: Some(count),
                ..Default::default()
            };
            let raw = call_raw(&client, &request).await?;
            output.emit(raw, |response: UpdateServiceResponse| {
                summary(&response.service.unwrap_or_default())
            })
        }
        ServiceCommand::Deploy {
            name,
            task_definition,
            force,
            timeout,
        } => {
            let request = UpdateServiceRequest {
                cluster: cluster.clone(),
                service: name.clone(),
                force_new_deployment: (force || task_definition.is_none()).then_some(true),
                task_definition,
                ..Default::default()
            };
            let watch = Watch {
                client: &client,
                cluster,
                name,
                output,
                timeout: Duration::from_secs(timeout),
            };
            watch.deploy(&request).await
        }
        ServiceCommand::Events {
            name,
            limit,
            follow,
        } => events(&client, cluster, &name, limit, follow, output).await,
        ServiceCommand::Rm { name, force } => {
            let request = DeleteServiceRequest {
                cluster,
                service: name,
                force: force.then_some(true),
            };
            let raw = call_raw(&client, &request).await?;
            output.emit(raw, |response: DeleteServiceResponse| {
                summary(&response.service.unwrap_or_default())
            })
        }
    }
}

fn create_request(args: CreateArgs, cluster: Option<String>) -> CreateServiceRequest {
    let strategy = if args.daemon {
        SchedulingStrategy::Daemon
    } else {
        SchedulingStrategy::Replica
    };
    CreateServiceRequest {
        cluster,
        service_name: args.name,
        task_definition: Some(args.task_definition),
        // DAEMON services take no desired count; ECS rejects one.
        desired_count: (!args.daemon).then(|| args.desired_count.unwrap_or(1)),
        scheduling_strategy: Some(strategy),
        deployment_configuration: deployment_configuration(
            args.min_healthy_percent,
            args.max_percent,
            args.circuit_breaker || args.rollback,
            args.rollback,
        ),
        ..Default::default()
    }
}

/// Only what was asked for, so the server applies ECS's defaults (which
/// differ between REPLICA and DAEMON) to the rest.
fn deployment_configuration(
    min_healthy_percent: Option<i32>,
    max_percent: Option<i32>,
    circuit_breaker: bool,
    rollback: bool,
) -> Option<DeploymentConfiguration> {
    if min_healthy_percent.is_none() && max_percent.is_none() && !circuit_breaker {
        return None;
    }
    Some(DeploymentConfiguration {
        minimum_healthy_percent: min_healthy_percent,
        maximum_percent: max_percent,
        deployment_circuit_breaker: circuit_breaker.then_some(DeploymentCircuitBreaker {
            enable: true,
            rollback,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Every ACTIVE service of the cluster, as one DescribeServices-shaped
/// response.
async fn describe_all(client: &Client, cluster: Option<String>) -> anyhow::Result<Value> {
    let mut request = ListServicesRequest {
        cluster: cluster.clone(),
        max_results: Some(100),
        ..Default::default()
    };
    let mut arns = Vec::new();
    loop {
        let page = client.send(&request).await?;
        arns.extend(page.service_arns.unwrap_or_default());
        request.next_token = page.next_token;
        if request.next_token.is_none() {
            break;
        }
    }
    let mut pages = Vec::new();
    for batch in arns.chunks(DESCRIBE_BATCH) {
        let request = DescribeServicesRequest {
            cluster: cluster.clone(),
            services: batch.to_vec(),
            include: None,
        };
        pages.push(call_raw(client, &request).await?);
    }
    Ok(merge_pages(pages, &["services", "failures"]))
}

/// One service, raw and decoded. DescribeServices reports an unknown
/// service as a `MISSING` failure; for a verb about one service that is the
/// error UpdateService would give.
async fn describe_one(
    client: &Client,
    cluster: Option<&str>,
    name: &str,
) -> anyhow::Result<(Value, Service)> {
    let request = DescribeServicesRequest {
        cluster: cluster.map(str::to_owned),
        services: vec![name.to_owned()],
        include: None,
    };
    let mut raw = call_raw(client, &request).await?;
    let response: DescribeServicesResponse =
        serde_json::from_value(raw.clone()).context("unexpected DescribeServices response")?;
    match response.services.unwrap_or_default().into_iter().next() {
        Some(service) => Ok((raw["services"][0].take(), service)),
        None => Err(ClientError::Api {
            code: "ServiceNotFoundException".to_owned(),
            message: format!("Service not found: {name}."),
            status: 400,
        }
        .into()),
    }
}

async fn events(
    client: &Client,
    cluster: Option<String>,
    name: &str,
    limit: usize,
    follow: bool,
    output: Output,
) -> anyhow::Result<()> {
    let (raw, service) = describe_one(client, cluster.as_deref(), name).await?;
    let all = service.events.unwrap_or_default();
    let mut latest: Vec<ServiceEvent> = all.iter().take(limit).cloned().collect();
    if !follow {
        match output {
            Output::Json => {
                let mut events = raw["events"].as_array().cloned().unwrap_or_default();
                events.truncate(limit);
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "events": events }))?
                );
            }
            Output::Table => println!("{}", events_table(&latest)),
        }
        return Ok(());
    }
    let mut seen: HashSet<String> = all.iter().filter_map(|e| e.id.clone()).collect();
    latest.reverse();
    let watch = async {
        let mut batch = latest;
        let mut gone = false;
        loop {
            // A reader that went away (`| head`) leaves nobody to follow for.
            if print_events(&batch, output).is_err() || gone {
                return anyhow::Ok(());
            }
            tokio::time::sleep(EVENTS_POLL).await;
            let (_, service) = describe_one(client, cluster.as_deref(), name).await?;
            gone = service.status.as_deref() == Some(INACTIVE);
            batch = service
                .events
                .unwrap_or_default()
                .into_iter()
                .filter(|e| e.id.as_ref().is_some_and(|id| !seen.contains(id)))
                .collect();
            batch.reverse();
            seen.extend(batch.iter().filter_map(|e| e.id.clone()));
        }
    };
    tokio::select! {
        result = watch => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

/// Streamed events, oldest first: one JSON object or one table row per
/// line.
fn print_events(events: &[ServiceEvent], output: Output) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for event in events {
        let line = match output {
            Output::Json => serde_json::to_string(event)?,
            Output::Table => event_line(event),
        };
        writeln!(stdout, "{line}")?;
    }
    stdout.flush()
}

fn event_line(event: &ServiceEvent) -> String {
    format!(
        "{}  {}",
        format_time(event.created_at),
        event.message.as_deref().unwrap_or_default()
    )
}

fn events_table(events: &[ServiceEvent]) -> String {
    let mut table = output::table(["TIME", "MESSAGE"]);
    for event in events {
        table.add_row([
            format_time(event.created_at),
            or_dash(event.message.as_deref()),
        ]);
    }
    table.trim_fmt()
}

/// UTC, to the second: events are seconds apart at best.
fn format_time(at: Option<Timestamp>) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    at.and_then(|at| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.millis()) * 1_000_000).ok()
    })
    .and_then(|at| at.format(format).ok())
    .unwrap_or_else(|| "-".to_owned())
}

/// `family:revision` of a task definition ARN.
fn short_task_definition(arn: Option<&str>) -> String {
    match arn.map(family_revision) {
        Some((family, revision)) if revision != "-" => format!("{family}:{revision}"),
        Some((arn, _)) => arn.to_owned(),
        None => "-".to_owned(),
    }
}

fn service_name(service: &Service) -> &str {
    service
        .service_name
        .as_deref()
        .or_else(|| Arn::parse(service.service_arn.as_deref()?).map(|arn| arn.last_segment()))
        .unwrap_or("-")
}

fn primary(service: &Service) -> Option<&Deployment> {
    service
        .deployments
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|d| d.status.as_deref() == Some(PRIMARY))
}

fn rollout_text(deployment: &Deployment) -> String {
    or_dash(deployment.rollout_state)
}

/// NAME, STATUS, DESIRED, RUNNING, PENDING, TASK DEFINITION, ROLLOUT;
/// sorted by name. ROLLOUT is the PRIMARY deployment's state, and how many
/// deployments there are while old ones still have tasks.
fn services_table(mut services: Vec<Service>) -> String {
    services.sort_by(|a, b| service_name(a).cmp(service_name(b)));
    let mut table = output::table([
        "NAME",
        "STATUS",
        "DESIRED",
        "RUNNING",
        "PENDING",
        "TASK DEFINITION",
        "ROLLOUT",
    ]);
    for service in &services {
        let count = service.deployments.as_deref().map_or(0, <[_]>::len);
        let rollout = match primary(service) {
            Some(p) if count > 1 => format!("{} ({count} deployments)", rollout_text(p)),
            Some(p) => rollout_text(p),
            None => "-".to_owned(),
        };
        table.add_row([
            service_name(service).to_owned(),
            or_dash(service.status.as_deref()),
            service.desired_count.to_string(),
            service.running_count.to_string(),
            service.pending_count.to_string(),
            short_task_definition(service.task_definition.as_deref()),
            rollout,
        ]);
    }
    output::right_align(&mut table, &[2, 3, 4]);
    table.trim_fmt()
}

/// A block of service-level facts, then one row per deployment.
fn summary(service: &Service) -> String {
    let cluster = service.cluster_arn.as_deref().map(|arn| {
        Arn::parse(arn)
            .map_or(arn, |parsed| parsed.last_segment())
            .to_owned()
    });
    let scheduling = format!(
        "{} ({})",
        or_dash(service.scheduling_strategy),
        or_dash(service.launch_type)
    );
    let facts = [
        ("SERVICE", Some(service_name(service).to_owned())),
        ("STATUS", Some(or_dash(service.status.as_deref()))),
        ("CLUSTER", cluster),
        (
            "TASK DEFINITION",
            Some(short_task_definition(service.task_definition.as_deref())),
        ),
        (
            "TASKS",
            Some(format!(
                "{} desired, {} running, {} pending",
                service.desired_count, service.running_count, service.pending_count
            )),
        ),
        ("SCHEDULING", Some(scheduling)),
        (
            "DEPLOYMENTS",
            service.deployment_configuration.as_ref().map(rules_text),
        ),
        ("ARN", service.service_arn.clone()),
    ];
    let deployments = service.deployments.as_deref().unwrap_or_default();
    if deployments.is_empty() {
        return output::key_values(&facts);
    }
    let mut table = output::table([
        "DEPLOYMENT",
        "STATUS",
        "TASK DEFINITION",
        "DESIRED",
        "RUNNING",
        "PENDING",
        "FAILED",
        "ROLLOUT",
    ]);
    for d in deployments {
        table.add_row([
            or_dash(d.id.as_deref()),
            or_dash(d.status.as_deref()),
            short_task_definition(d.task_definition.as_deref()),
            d.desired_count.to_string(),
            d.running_count.to_string(),
            d.pending_count.to_string(),
            d.failed_tasks.to_string(),
            rollout_text(d),
        ]);
    }
    output::right_align(&mut table, &[3, 4, 5, 6]);
    format!("{}\n\n{}", output::key_values(&facts), table.trim_fmt())
}

fn rules_text(config: &DeploymentConfiguration) -> String {
    let breaker = match &config.deployment_circuit_breaker {
        Some(b) if b.enable && b.rollback => "circuit breaker with rollback",
        Some(b) if b.enable => "circuit breaker",
        _ => "no circuit breaker",
    };
    format!(
        "min {}% healthy, max {}%, {breaker}",
        or_dash(config.minimum_healthy_percent),
        or_dash(config.maximum_percent)
    )
}

/// What the watch of one deployment decided after a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Waiting,
    /// The `services-stable` condition, and the rollout completed.
    Stable,
    Failed(String),
}

/// Judges the deployment `watched` of `service`: stable once it is the
/// only deployment, COMPLETED, with the desired count running; failed once
/// FAILED, or when another deployment replaced it (a rollback, or someone
/// else's deploy).
fn verdict(service: &Service, watched: &str) -> Verdict {
    if service.status.as_deref() != Some(ACTIVE) {
        return Verdict::Failed(format!(
            "service {} is {}",
            service_name(service),
            or_dash(service.status.as_deref())
        ));
    }
    let deployments = service.deployments.as_deref().unwrap_or_default();
    let Some(mine) = deployments
        .iter()
        .find(|d| d.id.as_deref() == Some(watched))
    else {
        return Verdict::Failed(replaced(service, watched));
    };
    if mine.rollout_state == Some(DeploymentRolloutState::Failed) {
        return Verdict::Failed(format!(
            "deployment {watched} failed: {}",
            mine.rollout_state_reason
                .as_deref()
                .unwrap_or("no reason given")
        ));
    }
    if mine.status.as_deref() != Some(PRIMARY) {
        return Verdict::Failed(replaced(service, watched));
    }
    // Without a rolloutState (not a rolling deployment) ECS's own waiter
    // is all there is to go by.
    let completed = mine
        .rollout_state
        .is_none_or(|s| s == DeploymentRolloutState::Completed);
    if completed && deployments.len() == 1 && service.running_count == service.desired_count {
        Verdict::Stable
    } else {
        Verdict::Waiting
    }
}

fn replaced(service: &Service, watched: &str) -> String {
    match primary(service) {
        // The circuit breaker's rollback names itself in its reason.
        Some(p)
            if p.rollout_state_reason
                .as_deref()
                .is_some_and(|r| r.contains("rolling back")) =>
        {
            format!(
                "deployment {watched} failed and is being rolled back ({})",
                p.rollout_state_reason.as_deref().unwrap_or_default()
            )
        }
        Some(p) => format!(
            "deployment {watched} was replaced by deployment {}",
            or_dash(p.id.as_deref())
        ),
        None => format!("deployment {watched} is gone"),
    }
}

/// A deployment as the live view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DeploymentView {
    id: String,
    status: String,
    task_definition: String,
    desired: i32,
    running: i32,
    pending: i32,
    failed: i32,
    healthy: usize,
    rollout: String,
}

/// A task as the live view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TaskView {
    id: String,
    /// `new` (the PRIMARY deployment's) or `old`.
    age: &'static str,
    status: String,
    health: String,
}

/// Whether the service scheduler counts `task` towards
/// minimumHealthyPercent at `now`: RUNNING and passing its health checks,
/// or, without any, RUNNING for [`HEALTHY_AFTER_MILLIS`]. Counting the same
/// way keeps the view from calling tasks healthy that the rollout still
/// waits for.
fn is_healthy(task: &Task, has_health_check: bool, now: Timestamp) -> bool {
    if task.last_status.as_deref() != Some(RUNNING) {
        return false;
    }
    if has_health_check {
        return task.health_status == Some(HealthStatus::Healthy);
    }
    task.started_at
        .or(task.created_at)
        .is_some_and(|at| now.millis() >= at.millis().saturating_add(HEALTHY_AFTER_MILLIS))
}

/// `checks`: whether each task definition (by ARN) has an essential
/// container with a health check; unknown ones count as having none.
fn deployment_views(
    service: &Service,
    tasks: &[Task],
    checks: &HashMap<String, bool>,
    now: Timestamp,
) -> Vec<DeploymentView> {
    service
        .deployments
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            let healthy = tasks
                .iter()
                .filter(|t| t.started_by.is_some() && t.started_by == d.id)
                .filter(|t| {
                    let checked = t
                        .task_definition_arn
                        .as_ref()
                        .and_then(|arn| checks.get(arn))
                        .copied()
                        .unwrap_or(false);
                    is_healthy(t, checked, now)
                })
                .count();
            DeploymentView {
                id: or_dash(d.id.as_deref()),
                status: or_dash(d.status.as_deref()),
                task_definition: short_task_definition(d.task_definition.as_deref()),
                desired: d.desired_count,
                running: d.running_count,
                pending: d.pending_count,
                failed: d.failed_tasks,
                healthy,
                rollout: rollout_text(d),
            }
        })
        .collect()
}

/// The tasks, new before old, then by status and id.
fn task_views(service: &Service, tasks: &[Task]) -> Vec<TaskView> {
    let primary_id = primary(service).and_then(|p| p.id.as_deref());
    let mut views: Vec<TaskView> = tasks
        .iter()
        .map(|t| TaskView {
            id: t
                .task_arn
                .as_deref()
                .map_or("-", |arn| Arn::parse(arn).map_or(arn, |a| a.last_segment()))
                .to_owned(),
            age: if t.started_by.is_some() && t.started_by.as_deref() == primary_id {
                "new"
            } else {
                "old"
            },
            status: or_dash(t.last_status.as_deref()),
            health: or_dash(t.health_status),
        })
        .collect();
    views.sort_by(|a, b| (a.age, &a.status, &a.id).cmp(&(b.age, &b.status, &b.id)));
    views
}

/// `[#####-----]`, filled in proportion to `done` of `total`; full when
/// there is nothing to do.
fn progress_bar(done: usize, total: usize, width: usize) -> String {
    let filled = (done.min(total) * width)
        .checked_div(total)
        .unwrap_or(width);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

/// One deployment on one line, for output that is not a terminal.
fn change_line(d: &DeploymentView) -> String {
    format!(
        "{} {} {}: {}/{} running, {} pending, {} failed, {} healthy, {}",
        d.status,
        d.id,
        d.task_definition,
        d.running,
        d.desired,
        d.pending,
        d.failed,
        d.healthy,
        d.rollout
    )
}

/// Everything the terminal view shows after one poll.
struct LiveView<'a> {
    service: &'a str,
    elapsed: Duration,
    deployments: &'a [DeploymentView],
    tasks: &'a [TaskView],
    /// The newest events since the deploy began, newest first.
    events: &'a [ServiceEvent],
    /// Why the last poll failed, while retrying.
    note: Option<&'a str>,
}

fn live_lines(view: &LiveView<'_>) -> Vec<String> {
    let mut lines = Vec::new();
    let primary = view.deployments.iter().find(|d| d.status == PRIMARY);
    lines.push(format!(
        "Deploying {} to service {}  ({}s)",
        primary.map_or("-", |p| p.task_definition.as_str()),
        view.service,
        view.elapsed.as_secs()
    ));
    if let Some(p) = primary {
        let desired = usize::try_from(p.desired).unwrap_or(0);
        let running = usize::try_from(p.running).unwrap_or(0);
        lines.push(format!(
            "{}  {running}/{desired} running, {} healthy  {}",
            progress_bar(running, desired, BAR_WIDTH),
            p.healthy,
            p.rollout
        ));
    }
    lines.push(String::new());
    // Compact, and the long deployment id last, so that an 80-column
    // terminal cuts only the id.
    let mut table = output::table([
        "STATUS",
        "TASK DEFINITION",
        "RUNNING",
        "PENDING",
        "FAILED",
        "HEALTHY",
        "ROLLOUT",
        "DEPLOYMENT",
    ]);
    for d in view.deployments {
        table.add_row([
            d.status.clone(),
            d.task_definition.clone(),
            format!("{}/{}", d.running, d.desired),
            d.pending.to_string(),
            d.failed.to_string(),
            d.healthy.to_string(),
            d.rollout.clone(),
            d.id.clone(),
        ]);
    }
    output::right_align(&mut table, &[2, 3, 4, 5]);
    lines.extend(table.trim_fmt().lines().map(str::to_owned));
    if !view.tasks.is_empty() {
        lines.push(String::new());
        let mut table = output::table(["TASK", "AGE", "STATUS", "HEALTH"]);
        for t in view.tasks.iter().take(TASKS_SHOWN) {
            table.add_row([t.id.as_str(), t.age, t.status.as_str(), t.health.as_str()]);
        }
        lines.extend(table.trim_fmt().lines().map(str::to_owned));
        if view.tasks.len() > TASKS_SHOWN {
            lines.push(format!("… and {} more", view.tasks.len() - TASKS_SHOWN));
        }
    }
    if !view.events.is_empty() {
        lines.push(String::new());
        lines.extend(view.events.iter().take(EVENTS_SHOWN).map(event_line));
    }
    if let Some(note) = view.note {
        lines.push(String::new());
        lines.push(format!("(retrying: {note})"));
    }
    lines
}

/// Cuts a line to `width` characters, so that no line wraps and the next
/// redraw moves the cursor up exactly as many lines as were drawn.
fn fit(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Where the live view goes: redrawn in place on a terminal, one line per
/// change otherwise, nothing but the final JSON with `--output json`.
enum Screen {
    Terminal {
        drawn: usize,
        width: usize,
    },
    Lines {
        last: HashMap<String, String>,
        note: Option<String>,
    },
    Quiet,
}

impl Screen {
    fn new(output: Output) -> Self {
        if output == Output::Json {
            Screen::Quiet
        } else if std::io::stdout().is_terminal() {
            // comfy-table already asks the terminal for its size.
            let width = comfy_table::Table::new()
                .width()
                .map_or(DEFAULT_WIDTH, usize::from);
            Screen::Terminal { drawn: 0, width }
        } else {
            Screen::Lines {
                last: HashMap::new(),
                note: None,
            }
        }
    }

    fn show(&mut self, view: &LiveView<'_>, new_events: &[ServiceEvent]) {
        let mut text = String::new();
        match self {
            Screen::Terminal { drawn, width } => {
                if *drawn > 0 {
                    // To the start of the first line drawn, then clear below.
                    text.push_str(&format!("\x1b[{drawn}F"));
                }
                text.push_str("\x1b[J");
                let lines = live_lines(view);
                for line in &lines {
                    text.push_str(&fit(line, width.saturating_sub(1).max(1)));
                    text.push('\n');
                }
                *drawn = lines.len();
            }
            Screen::Lines { last, note } => {
                let stamp = format!("[{:>6.1}s]", view.elapsed.as_secs_f64());
                for event in new_events.iter().rev() {
                    text.push_str(&format!("{stamp} event: {}\n", event_line(event)));
                }
                for d in view.deployments {
                    let line = change_line(d);
                    if last.get(&d.id) != Some(&line) {
                        text.push_str(&format!("{stamp} {line}\n"));
                        last.insert(d.id.clone(), line);
                    }
                }
                last.retain(|id, _| {
                    let present = view.deployments.iter().any(|d| d.id == *id);
                    if !present {
                        text.push_str(&format!("{stamp} deployment {id} is gone (drained)\n"));
                    }
                    present
                });
                // Once per outage, not once per poll.
                if view.note != note.as_deref() {
                    if let Some(now) = view.note {
                        text.push_str(&format!("{stamp} retrying: {now}\n"));
                    }
                    *note = view.note.map(str::to_owned);
                }
            }
            Screen::Quiet => {}
        }
        let mut stdout = std::io::stdout().lock();
        // A closed pipe must not end the watch: the exit status still matters.
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    }
}

/// What one poll of a deployment saw.
struct Observation {
    raw: Value,
    service: Service,
    tasks: Vec<Task>,
}

/// `berth service deploy`: the update, then the watch.
struct Watch<'a> {
    client: &'a Client,
    cluster: Option<String>,
    name: String,
    output: Output,
    timeout: Duration,
}

impl Watch<'_> {
    async fn deploy(&self, request: &UpdateServiceRequest) -> anyhow::Result<()> {
        let service = self
            .client
            .send(request)
            .await?
            .service
            .context("UpdateService returned no service")?;
        let watched = primary(&service)
            .and_then(|p| p.id.clone())
            .context("the service has no PRIMARY deployment")?;
        let mut seen: HashSet<String> = service
            .events
            .iter()
            .flatten()
            .filter_map(|e| e.id.clone())
            .collect();
        let mut recent: Vec<ServiceEvent> = Vec::new();
        let mut checks: HashMap<String, bool> = HashMap::new();
        let mut screen = Screen::new(self.output);
        let start = Instant::now();
        let mut last: Option<Observation> = None;
        loop {
            let mut note = None;
            match self.observe(&mut checks).await {
                Ok(seen_now) => last = Some(seen_now),
                Err(error) if transient(&error) => note = Some(format!("{error:#}")),
                Err(error) => return Err(error),
            }
            if let Some(obs) = &last {
                let new: Vec<ServiceEvent> = obs
                    .service
                    .events
                    .iter()
                    .flatten()
                    .filter(|e| e.id.as_ref().is_some_and(|id| !seen.contains(id)))
                    .cloned()
                    .collect();
                seen.extend(new.iter().filter_map(|e| e.id.clone()));
                recent.splice(0..0, new.iter().cloned());
                recent.truncate(EVENTS_SHOWN);
                let deployments =
                    deployment_views(&obs.service, &obs.tasks, &checks, Timestamp::now());
                let tasks = task_views(&obs.service, &obs.tasks);
                let view = LiveView {
                    service: &self.name,
                    elapsed: start.elapsed(),
                    deployments: &deployments,
                    tasks: &tasks,
                    events: &recent,
                    note: note.as_deref(),
                };
                screen.show(&view, &new);
                match verdict(&obs.service, &watched) {
                    Verdict::Waiting => {}
                    Verdict::Stable => {
                        self.print_final(obs)?;
                        if self.output == Output::Table {
                            // Like the view: a closed pipe does not change
                            // the outcome.
                            let _ = writeln!(
                                std::io::stdout(),
                                "{}",
                                stable_message(&obs.service, &watched)
                            );
                        }
                        return Ok(());
                    }
                    Verdict::Failed(why) => {
                        self.print_final(obs)?;
                        anyhow::bail!(why);
                    }
                }
            } else if let Some(note) = &note {
                // Nothing to draw the note under yet.
                eprintln!("retrying: {note}");
            }
            if start.elapsed() >= self.timeout {
                if let Some(obs) = &last {
                    self.print_final(obs)?;
                }
                return Err(Exit {
                    status: TIMEOUT_STATUS,
                    message: format!(
                        "service {} did not become stable within {}s (deployment {watched}: {})",
                        self.name,
                        self.timeout.as_secs(),
                        last.as_ref().map_or_else(
                            || "not seen".to_owned(),
                            |o| progress_of(&o.service, &watched)
                        ),
                    ),
                }
                .into());
            }
            tokio::select! {
                () = tokio::time::sleep(DEPLOY_POLL) => {}
                _ = tokio::signal::ctrl_c() => {
                    return Err(Exit {
                        status: INTERRUPTED_STATUS,
                        message: format!(
                            "interrupted; deployment {watched} goes on (`berth service events {}` shows how it ends)",
                            self.name
                        ),
                    }
                    .into());
                }
            }
        }
    }

    /// The service and its live tasks; on the way, whether each task's
    /// definition has a health check (asked once per definition, since
    /// tasks do not say).
    async fn observe(&self, checks: &mut HashMap<String, bool>) -> anyhow::Result<Observation> {
        let cluster = self.cluster.as_deref();
        let (raw, service) = describe_one(self.client, cluster, &self.name).await?;
        let mut request = ListTasksRequest {
            cluster: self.cluster.clone(),
            service_name: Some(self.name.clone()),
            ..Default::default()
        };
        let mut arns = Vec::new();
        loop {
            let page = self.client.send(&request).await?;
            arns.extend(page.task_arns.unwrap_or_default());
            request.next_token = page.next_token;
            if request.next_token.is_none() {
                break;
            }
        }
        let mut tasks = Vec::new();
        for batch in arns.chunks(DESCRIBE_TASKS_BATCH) {
            let request = DescribeTasksRequest {
                cluster: self.cluster.clone(),
                tasks: batch.to_vec(),
                include: None,
            };
            tasks.extend(self.client.send(&request).await?.tasks.unwrap_or_default());
        }
        for arn in tasks.iter().filter_map(|t| t.task_definition_arn.as_ref()) {
            if checks.contains_key(arn) {
                continue;
            }
            let request = DescribeTaskDefinitionRequest {
                task_definition: arn.clone(),
                include: None,
            };
            let definition = self.client.send(&request).await?.task_definition;
            let checked = definition
                .and_then(|td| td.container_definitions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.essential != Some(false) && c.health_check.is_some());
            checks.insert(arn.clone(), checked);
        }
        Ok(Observation {
            raw,
            service,
            tasks,
        })
    }

    /// With `--output json`, the service as DescribeServices last showed it.
    fn print_final(&self, obs: &Observation) -> anyhow::Result<()> {
        if self.output == Output::Json {
            println!("{}", serde_json::to_string_pretty(&obs.raw)?);
        }
        Ok(())
    }
}

/// Whether a failed poll is worth repeating: the server could not be
/// reached or answered with a server-side error, rather than refusing.
fn transient(error: &anyhow::Error) -> bool {
    match error.downcast_ref::<ClientError>() {
        Some(ClientError::Transport { .. } | ClientError::Timeout { .. }) => true,
        Some(ClientError::Http { status, .. } | ClientError::Api { status, .. }) => *status >= 500,
        _ => false,
    }
}

fn progress_of(service: &Service, watched: &str) -> String {
    service
        .deployments
        .iter()
        .flatten()
        .find(|d| d.id.as_deref() == Some(watched))
        .map_or_else(
            || "gone".to_owned(),
            |d| {
                format!(
                    "{}, {}/{} running",
                    rollout_text(d),
                    d.running_count,
                    d.desired_count
                )
            },
        )
}

fn stable_message(service: &Service, watched: &str) -> String {
    format!(
        "Service {} is stable: {} with {}/{} tasks running (deployment {watched}).",
        service_name(service),
        short_task_definition(service.task_definition.as_deref()),
        service.running_count,
        service.desired_count
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TD1: &str = "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1";
    const TD2: &str = "arn:aws:ecs:us-east-1:000000000000:task-definition/web:2";

    fn deployment(id: &str, status: &str, td: &str, counts: [i32; 4]) -> Deployment {
        Deployment {
            id: Some(id.to_owned()),
            status: Some(status.to_owned()),
            task_definition: Some(td.to_owned()),
            desired_count: counts[0],
            running_count: counts[1],
            pending_count: counts[2],
            failed_tasks: counts[3],
            rollout_state: Some(if status == PRIMARY {
                DeploymentRolloutState::InProgress
            } else {
                DeploymentRolloutState::Completed
            }),
            ..Default::default()
        }
    }

    fn service(deployments: Vec<Deployment>, desired: i32, running: i32) -> Service {
        Service {
            service_name: Some("web".to_owned()),
            service_arn: Some("arn:aws:ecs:us-east-1:000000000000:service/prod/web".to_owned()),
            cluster_arn: Some("arn:aws:ecs:us-east-1:000000000000:cluster/prod".to_owned()),
            status: Some(ACTIVE.to_owned()),
            task_definition: Some(TD2.to_owned()),
            desired_count: desired,
            running_count: running,
            deployments: Some(deployments),
            ..Default::default()
        }
    }

    fn task(id: &str, deployment: &str, td: &str, status: &str, health: HealthStatus) -> Task {
        Task {
            task_arn: Some(format!("arn:aws:ecs:us-east-1:000000000000:task/prod/{id}")),
            started_by: Some(deployment.to_owned()),
            task_definition_arn: Some(td.to_owned()),
            last_status: Some(status.to_owned()),
            health_status: Some(health),
            started_at: (status == RUNNING).then_some(Timestamp::from_millis(60_000)),
            ..Default::default()
        }
    }

    #[test]
    fn progress_bars_fill_in_proportion() {
        assert_eq!(progress_bar(0, 4, 8), "[--------]");
        assert_eq!(progress_bar(1, 4, 8), "[##------]");
        assert_eq!(progress_bar(3, 4, 8), "[######--]");
        assert_eq!(progress_bar(4, 4, 8), "[########]");
        assert_eq!(progress_bar(1, 3, 10), "[###-------]");
        // More running than desired while old tasks drain; nothing desired.
        assert_eq!(progress_bar(6, 4, 8), "[########]");
        assert_eq!(progress_bar(0, 0, 4), "[####]");
    }

    #[test]
    fn stable_needs_one_completed_deployment_at_the_desired_count() {
        let mut done = deployment("ecs-svc/2", PRIMARY, TD2, [4, 4, 0, 0]);
        done.rollout_state = Some(DeploymentRolloutState::Completed);
        assert_eq!(
            verdict(&service(vec![done.clone()], 4, 4), "ecs-svc/2"),
            Verdict::Stable
        );
        // Still short of tasks.
        assert_eq!(
            verdict(&service(vec![done.clone()], 4, 3), "ecs-svc/2"),
            Verdict::Waiting
        );
        // Old tasks still draining.
        let old = deployment("ecs-svc/1", ACTIVE, TD1, [4, 1, 0, 0]);
        assert_eq!(
            verdict(&service(vec![done.clone(), old], 4, 4), "ecs-svc/2"),
            Verdict::Waiting
        );
        // In progress.
        let going = deployment("ecs-svc/2", PRIMARY, TD2, [4, 4, 0, 0]);
        assert_eq!(
            verdict(&service(vec![going], 4, 4), "ecs-svc/2"),
            Verdict::Waiting
        );
        // No rolloutState at all: the services-stable waiter's condition.
        done.rollout_state = None;
        assert_eq!(
            verdict(&service(vec![done], 4, 4), "ecs-svc/2"),
            Verdict::Stable
        );
    }

    #[test]
    fn failures_carry_the_reason() {
        let mut failed = deployment("ecs-svc/2", PRIMARY, TD2, [3, 0, 0, 3]);
        failed.rollout_state = Some(DeploymentRolloutState::Failed);
        failed.rollout_state_reason =
            Some("ECS deployment circuit breaker: tasks failed to start.".to_owned());
        assert_eq!(
            verdict(&service(vec![failed], 3, 0), "ecs-svc/2"),
            Verdict::Failed(
                "deployment ecs-svc/2 failed: ECS deployment circuit breaker: tasks failed to start."
                    .to_owned()
            )
        );

        let mut rollback = deployment("ecs-svc/3", PRIMARY, TD1, [3, 0, 0, 0]);
        rollback.rollout_state_reason = Some(
            "ECS deployment circuit breaker: rolling back to deploymentId ecs-svc/1.".to_owned(),
        );
        let Verdict::Failed(why) = verdict(&service(vec![rollback], 3, 0), "ecs-svc/2") else {
            panic!("a rollback is a failure");
        };
        assert!(why.contains("failed and is being rolled back"), "{why}");

        let other = deployment("ecs-svc/3", PRIMARY, TD1, [3, 0, 0, 0]);
        let mine = deployment("ecs-svc/2", ACTIVE, TD2, [3, 1, 0, 0]);
        assert_eq!(
            verdict(&service(vec![other, mine], 3, 1), "ecs-svc/2"),
            Verdict::Failed("deployment ecs-svc/2 was replaced by deployment ecs-svc/3".to_owned())
        );

        let mut gone = service(Vec::new(), 0, 0);
        gone.status = Some("DRAINING".to_owned());
        assert_eq!(
            verdict(&gone, "ecs-svc/2"),
            Verdict::Failed("service web is DRAINING".to_owned())
        );
    }

    #[test]
    fn healthy_follows_health_checks_only_where_there_are_some() {
        let svc = service(
            vec![
                deployment("ecs-svc/2", PRIMARY, TD2, [3, 2, 1, 0]),
                deployment("ecs-svc/1", ACTIVE, TD1, [3, 2, 0, 0]),
            ],
            3,
            4,
        );
        let tasks = [
            task("a", "ecs-svc/2", TD2, RUNNING, HealthStatus::Healthy),
            task("b", "ecs-svc/2", TD2, RUNNING, HealthStatus::Unknown),
            task("c", "ecs-svc/2", TD2, "PENDING", HealthStatus::Unknown),
            task("d", "ecs-svc/1", TD1, RUNNING, HealthStatus::Unknown),
            task("e", "ecs-svc/1", TD1, "ACTIVATING", HealthStatus::Unknown),
        ];
        let checks = HashMap::from([(TD2.to_owned(), true), (TD1.to_owned(), false)]);
        let now = Timestamp::from_millis(100_000);
        let views = deployment_views(&svc, &tasks, &checks, now);
        // Task d has no health check and has run for 40 s exactly.
        assert_eq!(views.iter().map(|d| d.healthy).collect::<Vec<_>>(), [1, 1]);
        let earlier = Timestamp::from_millis(now.millis() - 1);
        let before = deployment_views(&svc, &tasks, &checks, earlier);
        assert_eq!(before.iter().map(|d| d.healthy).collect::<Vec<_>>(), [1, 0]);
        assert_eq!(
            change_line(&views[0]),
            "PRIMARY ecs-svc/2 web:2: 2/3 running, 1 pending, 0 failed, 1 healthy, IN_PROGRESS"
        );

        let ages: Vec<_> = task_views(&svc, &tasks)
            .into_iter()
            .map(|t| format!("{} {} {}", t.id, t.age, t.status))
            .collect();
        assert_eq!(
            ages,
            [
                "c new PENDING",
                "a new RUNNING",
                "b new RUNNING",
                "e old ACTIVATING",
                "d old RUNNING"
            ]
        );
    }

    #[test]
    fn live_view_shows_bar_deployments_tasks_and_events() {
        let deployments = [
            DeploymentView {
                id: "ecs-svc/2".into(),
                status: PRIMARY.into(),
                task_definition: "web:2".into(),
                desired: 4,
                running: 1,
                pending: 1,
                failed: 0,
                healthy: 1,
                rollout: "IN_PROGRESS".into(),
            },
            DeploymentView {
                id: "ecs-svc/1".into(),
                status: ACTIVE.into(),
                task_definition: "web:1".into(),
                desired: 4,
                running: 4,
                pending: 0,
                failed: 0,
                healthy: 4,
                rollout: "COMPLETED".into(),
            },
        ];
        let tasks = [TaskView {
            id: "0f3c".into(),
            age: "new",
            status: RUNNING.into(),
            health: "UNKNOWN".into(),
        }];
        let events = [ServiceEvent {
            created_at: Some(Timestamp::from_millis(1_510_811_361_128)),
            id: Some("e1".into()),
            message: Some("(service web) has started 1 tasks: (task 0f3c).".into()),
        }];
        let lines = live_lines(&LiveView {
            service: "web",
            elapsed: Duration::from_millis(12_400),
            deployments: &deployments,
            tasks: &tasks,
            events: &events,
            note: None,
        });
        let expected = "\
Deploying web:2 to service web  (12s)
[#######-----------------------]  1/4 running, 1 healthy  IN_PROGRESS

STATUS   TASK DEFINITION  RUNNING  PENDING  FAILED  HEALTHY  ROLLOUT      DEPLOYMENT
PRIMARY  web:2                1/4        1       0        1  IN_PROGRESS  ecs-svc/2
ACTIVE   web:1                4/4        0       0        4  COMPLETED    ecs-svc/1

TASK  AGE  STATUS   HEALTH
0f3c  new  RUNNING  UNKNOWN

2017-11-16T05:49:21Z  (service web) has started 1 tasks: (task 0f3c).";
        assert_eq!(lines.join("\n"), expected);
    }

    #[test]
    fn long_lines_are_cut_to_the_terminal() {
        assert_eq!(fit("short", 10), "short");
        assert_eq!(fit("exactly10!", 10), "exactly10!");
        assert_eq!(fit("much too long", 8), "much to…");
    }

    #[test]
    fn create_sends_only_the_given_rules() {
        assert_eq!(deployment_configuration(None, None, false, false), None);
        let config = deployment_configuration(Some(50), None, true, true).unwrap();
        assert_eq!(config.minimum_healthy_percent, Some(50));
        assert_eq!(config.maximum_percent, None);
        let breaker = config.deployment_circuit_breaker.unwrap();
        assert!(breaker.enable && breaker.rollback);

        let daemon = create_request(
            CreateArgs {
                name: "agent".into(),
                task_definition: "agent".into(),
                desired_count: None,
                min_healthy_percent: None,
                max_percent: None,
                circuit_breaker: false,
                rollback: true,
                daemon: true,
            },
            Some("prod".into()),
        );
        assert_eq!(daemon.desired_count, None);
        assert_eq!(daemon.scheduling_strategy, Some(SchedulingStrategy::Daemon));
        assert!(
            daemon
                .deployment_configuration
                .and_then(|c| c.deployment_circuit_breaker)
                .is_some_and(|b| b.enable && b.rollback)
        );
        let replica = create_request(
            CreateArgs {
                name: "web".into(),
                task_definition: "web".into(),
                desired_count: None,
                min_healthy_percent: None,
                max_percent: None,
                circuit_breaker: false,
                rollback: false,
                daemon: false,
            },
            None,
        );
        assert_eq!(replica.desired_count, Some(1));
        assert_eq!(replica.deployment_configuration, None);
    }

    #[test]
    fn ls_table_shows_counts_and_rollout() {
        let mut done = deployment("ecs-svc/1", PRIMARY, TD1, [2, 2, 0, 0]);
        done.rollout_state = Some(DeploymentRolloutState::Completed);
        let mut api = service(vec![done], 2, 2);
        api.service_name = Some("api".into());
        api.task_definition = Some(TD1.into());
        let web = service(
            vec![
                deployment("ecs-svc/2", PRIMARY, TD2, [4, 1, 2, 0]),
                deployment("ecs-svc/1", ACTIVE, TD1, [4, 3, 0, 0]),
            ],
            4,
            4,
        );
        assert_eq!(
            services_table(vec![web, api]),
            "\
NAME  STATUS  DESIRED  RUNNING  PENDING  TASK DEFINITION  ROLLOUT
api   ACTIVE        2        2        0  web:1            COMPLETED
web   ACTIVE        4        4        0  web:2            IN_PROGRESS (2 deployments)"
        );
    }

    #[test]
    fn summary_lists_facts_and_deployments() {
        let mut svc = service(
            vec![deployment("ecs-svc/2", PRIMARY, TD2, [2, 0, 0, 0])],
            2,
            0,
        );
        svc.scheduling_strategy = Some(SchedulingStrategy::Replica);
        svc.launch_type = Some(berth_types::LaunchType::Ec2);
        svc.deployment_configuration = Some(DeploymentConfiguration {
            minimum_healthy_percent: Some(100),
            maximum_percent: Some(200),
            deployment_circuit_breaker: Some(DeploymentCircuitBreaker {
                enable: true,
                rollback: false,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(
            summary(&svc),
            "\
SERVICE          web
STATUS           ACTIVE
CLUSTER          prod
TASK DEFINITION  web:2
TASKS            2 desired, 0 running, 0 pending
SCHEDULING       REPLICA (EC2)
DEPLOYMENTS      min 100% healthy, max 200%, circuit breaker
ARN              arn:aws:ecs:us-east-1:000000000000:service/prod/web

DEPLOYMENT  STATUS   TASK DEFINITION  DESIRED  RUNNING  PENDING  FAILED  ROLLOUT
ecs-svc/2   PRIMARY  web:2                  2        0        0       0  IN_PROGRESS"
        );
    }

    #[test]
    fn events_show_utc_times() {
        let events = [ServiceEvent {
            created_at: Some(Timestamp::from_millis(1_510_811_361_128)),
            id: Some("1".into()),
            message: Some("(service web) has reached a steady state.".into()),
        }];
        assert_eq!(
            events_table(&events),
            "\
TIME                  MESSAGE
2017-11-16T05:49:21Z  (service web) has reached a steady state."
        );
        assert_eq!(format_time(None), "-");
    }

    #[test]
    fn only_unreachable_servers_are_retried() {
        let api = |status| {
            anyhow::Error::from(ClientError::Api {
                code: "X".into(),
                message: String::new(),
                status,
            })
        };
        assert!(!transient(&api(400)));
        assert!(transient(&api(500)));
        assert!(transient(&anyhow::Error::from(ClientError::Timeout {
            endpoint: "http://h".into(),
            timeout: Duration::from_secs(1),
        })));
        assert!(!transient(&anyhow::anyhow!("other")));
    }
}
