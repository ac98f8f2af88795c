//! `berth taskdef register|ls|show`.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use berth_client::Client;
use berth_types::arn::Arn;
use berth_types::{
    ContainerDefinition, DescribeTaskDefinitionRequest, DescribeTaskDefinitionResponse,
    ListTaskDefinitionsRequest, ListTaskDefinitionsResponse, PortMapping,
    RegisterTaskDefinitionRequest, RegisterTaskDefinitionResponse, TaskDefinition,
    TaskDefinitionStatus,
};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::output::{self, call_raw, merge_pages, or_dash};
use super::{ClientArgs, wire_enum};

#[derive(Debug, Args)]
pub struct TaskdefArgs {
    #[command(flatten)]
    pub(super) client: ClientArgs,
    #[command(subcommand)]
    command: TaskdefCommand,
}

#[derive(Debug, Subcommand)]
enum TaskdefCommand {
    /// Register a new revision from a RegisterTaskDefinition JSON file, the
    /// input `aws ecs register-task-definition --cli-input-json` takes.
    Register {
        /// The JSON file; `-` reads standard input.
        file: PathBuf,
    },
    /// List task definition revisions.
    #[command(visible_alias = "list")]
    Ls {
        /// Only revisions of this family. ECS matches the whole family name,
        /// despite the parameter's name.
        #[arg(long, visible_alias = "family", value_name = "FAMILY")]
        family_prefix: Option<String>,
        /// Only revisions with this status.
        #[arg(
            long,
            ignore_case = true,
            value_parser = wire_enum(TaskDefinitionStatus::ALL, TaskDefinitionStatus::as_str)
        )]
        status: Option<TaskDefinitionStatus>,
    },
    /// Show a task definition and its containers.
    #[command(visible_alias = "describe")]
    Show {
        /// A family (its latest ACTIVE revision), `family:revision` or an ARN.
        #[arg(value_name = "FAMILY[:REVISION]")]
        task_definition: String,
    },
}

pub async fn run(args: TaskdefArgs) -> anyhow::Result<()> {
    let client = args.client.client()?;
    let output = args.client.output;
    match args.command {
        TaskdefCommand::Register { file } => {
            let request = read_register_input(&file)?;
            let raw = call_raw(&client, &request).await?;
            output.emit(raw, |response: RegisterTaskDefinitionResponse| {
                registered_table(&response.task_definition.unwrap_or_default())
            })
        }
        TaskdefCommand::Ls {
            family_prefix,
            status,
        } => {
            let raw = list_all(&client, family_prefix, status).await?;
            output.emit(raw, |response: ListTaskDefinitionsResponse| {
                list_table(&response.task_definition_arns.unwrap_or_default())
            })
        }
        TaskdefCommand::Show { task_definition } => {
            let request = DescribeTaskDefinitionRequest {
                task_definition,
                include: None,
            };
            let raw = call_raw(&client, &request).await?;
            output.emit(raw, |response: DescribeTaskDefinitionResponse| {
                show_table(&response.task_definition.unwrap_or_default())
            })
        }
    }
}

fn read_register_input(file: &Path) -> anyhow::Result<RegisterTaskDefinitionRequest> {
    // Accept the aws-cli spelling `file://td.json` as well.
    let file = file
        .to_str()
        .and_then(|f| f.strip_prefix("file://"))
        .map_or(file, Path::new);
    let (text, origin) = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        (text, "standard input".to_owned())
    } else {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        (text, file.display().to_string())
    };
    parse_register_input(&text).with_context(|| format!("{origin} is not valid input"))
}

/// Checks the input against the model locally, so that a typo is reported
/// with its JSON path rather than as a server-side validation error.
fn parse_register_input(text: &str) -> anyhow::Result<RegisterTaskDefinitionRequest> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let request = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        anyhow::anyhow!("at {path}: {}", err.into_inner())
    })?;
    deserializer.end()?;
    Ok(request)
}

/// Every matching revision, as one ListTaskDefinitions-shaped response.
async fn list_all(
    client: &Client,
    family_prefix: Option<String>,
    status: Option<TaskDefinitionStatus>,
) -> anyhow::Result<Value> {
    let mut request = ListTaskDefinitionsRequest {
        family_prefix,
        status,
        ..Default::default()
    };
    let mut pages = Vec::new();
    loop {
        let page = call_raw(client, &request).await?;
        request.next_token = page
            .get("nextToken")
            .and_then(Value::as_str)
            .map(str::to_owned);
        pages.push(page);
        if request.next_token.is_none() {
            break;
        }
    }
    Ok(merge_pages(pages, &["taskDefinitionArns"]))
}

/// `family:revision` of an ARN, or the ARN itself when it is not one.
pub(super) fn family_revision(arn: &str) -> (&str, &str) {
    Arn::parse(arn)
        .and_then(|parsed| parsed.resource.rsplit_once(':'))
        .unwrap_or((arn, "-"))
}

fn registered_table(td: &TaskDefinition) -> String {
    let mut table = output::table(["TASK DEFINITION", "STATUS", "ARN"]);
    table.add_row([
        format!("{}:{}", or_dash(td.family.as_deref()), td.revision),
        or_dash(td.status),
        or_dash(td.task_definition_arn.as_deref()),
    ]);
    table.trim_fmt()
}

fn list_table(arns: &[String]) -> String {
    let mut table = output::table(["FAMILY", "REVISION", "ARN"]);
    for arn in arns {
        let (family, revision) = family_revision(arn);
        table.add_row([family, revision, arn]);
    }
    output::right_align(&mut table, &[1]);
    table.trim_fmt()
}

/// A block of task-level facts, then one row per container.
fn show_table(td: &TaskDefinition) -> String {
    let family_revision = format!("{}:{}", or_dash(td.family.as_deref()), td.revision);
    let requires = td
        .requires_compatibilities
        .as_deref()
        .filter(|list| !list.is_empty())
        .map(|list| join(list.iter().map(ToString::to_string)));
    let facts = [
        ("TASK DEFINITION", Some(family_revision)),
        ("STATUS", Some(or_dash(td.status))),
        ("ARN", td.task_definition_arn.clone()),
        ("CPU", td.cpu.clone()),
        ("MEMORY", td.memory.clone()),
        ("NETWORK MODE", td.network_mode.map(|mode| mode.to_string())),
        ("REQUIRES", requires),
    ];

    let mut containers = output::table(["NAME", "IMAGE", "CPU", "MEMORY", "PORTS", "ESSENTIAL"]);
    for container in td.container_definitions.as_deref().unwrap_or_default() {
        containers.add_row(container_row(container));
    }
    output::right_align(&mut containers, &[2]);
    format!(
        "{}\n\n{}",
        output::key_values(&facts),
        containers.trim_fmt()
    )
}

fn container_row(container: &ContainerDefinition) -> [String; 6] {
    let memory = match (container.memory, container.memory_reservation) {
        (Some(hard), Some(soft)) => format!("{hard} (soft {soft})"),
        (Some(hard), None) => hard.to_string(),
        (None, Some(soft)) => format!("{soft} (soft)"),
        (None, None) => "-".to_owned(),
    };
    let ports = container
        .port_mappings
        .as_deref()
        .filter(|ports| !ports.is_empty())
        .map_or_else(|| "-".to_owned(), |ports| join(ports.iter().map(port)));
    [
        or_dash(container.name.as_deref()),
        or_dash(container.image.as_deref()),
        container.cpu.to_string(),
        memory,
        ports,
        // ECS treats a container as essential unless told otherwise.
        if container.essential.unwrap_or(true) {
            "yes"
        } else {
            "no"
        }
        .to_owned(),
    ]
}

/// `host:container/protocol`, or `container/protocol` when the host port is
/// left to the scheduler.
fn port(mapping: &PortMapping) -> String {
    let container = mapping
        .container_port
        .map(|port| port.to_string())
        .or_else(|| mapping.container_port_range.clone())
        .unwrap_or_else(|| "?".to_owned());
    let protocol = mapping.protocol.map_or("tcp", |p| p.as_str());
    match mapping.host_port {
        Some(host) if host != 0 => format!("{host}:{container}/{protocol}"),
        _ => format!("{container}/{protocol}"),
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUT: &str = r#"{
        "family": "web",
        "networkMode": "bridge",
        "requiresCompatibilities": ["EC2"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [
            {
                "name": "app",
                "image": "busybox:latest",
                "cpu": 128,
                "memory": 256,
                "portMappings": [
                    {"containerPort": 80, "hostPort": 8080},
                    {"containerPort": 53, "protocol": "udp"}
                ]
            },
            {
                "name": "sidecar",
                "image": "busybox:latest",
                "memoryReservation": 64,
                "essential": false
            }
        ]
    }"#;

    fn registered() -> TaskDefinition {
        let request = parse_register_input(INPUT).unwrap();
        TaskDefinition {
            family: Some(request.family),
            revision: 3,
            status: Some(TaskDefinitionStatus::Active),
            task_definition_arn: Some(
                "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3".into(),
            ),
            cpu: request.cpu,
            memory: request.memory,
            network_mode: request.network_mode,
            requires_compatibilities: request.requires_compatibilities,
            container_definitions: Some(request.container_definitions),
            ..Default::default()
        }
    }

    #[test]
    fn input_errors_name_the_json_path() {
        let err = parse_register_input(
            r#"{"family": "web", "containerDefinitions": [{"name": "a", "cpu": "lots"}]}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("at containerDefinitions[0].cpu: "),
            "{err}"
        );
        assert!(parse_register_input(r#"{"family": "web"}"#).is_err());
        assert!(parse_register_input(&format!("{INPUT} trailing")).is_err());
    }

    #[test]
    fn registered_shows_family_revision_and_status() {
        assert_eq!(
            registered_table(&registered()),
            "\
TASK DEFINITION  STATUS  ARN
web:3            ACTIVE  arn:aws:ecs:us-east-1:000000000000:task-definition/web:3"
        );
    }

    #[test]
    fn list_splits_arns() {
        let arns = [
            "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3".to_owned(),
            "arn:aws:ecs:us-east-1:000000000000:task-definition/worker:12".to_owned(),
        ];
        assert_eq!(
            list_table(&arns),
            "\
FAMILY  REVISION  ARN
web            3  arn:aws:ecs:us-east-1:000000000000:task-definition/web:3
worker        12  arn:aws:ecs:us-east-1:000000000000:task-definition/worker:12"
        );
    }

    #[test]
    fn show_summarises_containers() {
        assert_eq!(
            show_table(&registered()),
            "\
TASK DEFINITION  web:3
STATUS           ACTIVE
ARN              arn:aws:ecs:us-east-1:000000000000:task-definition/web:3
CPU              256
MEMORY           512
NETWORK MODE     bridge
REQUIRES         EC2

NAME     IMAGE           CPU  MEMORY     PORTS                ESSENTIAL
app      busybox:latest  128  256        8080:80/tcp, 53/udp  yes
sidecar  busybox:latest    0  64 (soft)  -                    no"
        );
    }
}
