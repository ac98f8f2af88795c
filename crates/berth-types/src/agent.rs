//! The agent's push channel, modelled on ECS's Agent Communication Service:
//! after `RegisterContainerInstance` and `DiscoverPollEndpoint`, an agent
//! opens a WebSocket at `{endpoint}/ws/acs?cluster=…&containerInstance=…`
//! over which the server pushes the tasks it wants on that host.
//!
//! Every frame is one JSON object `{"type": "...", "message": {...}}`.
//! Payloads carry increasing sequence numbers and are acknowledged; both
//! sides send heartbeats; the server periodically sends a manifest of every
//! task that should exist on the host, so drift is corrected even if a
//! payload was lost. The agent reports back over the ECS API
//! (`SubmitTaskStateChange`, `SubmitContainerStateChange`), not this channel.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{ContainerDefinition, HealthStatus, IpcMode, NetworkMode, PidMode, Volume};

/// The WebSocket path, relative to the endpoint `DiscoverPollEndpoint` returns.
pub const ACS_PATH: &str = "/ws/acs";

/// The cluster that the platform's Fargate capacity (agents started with
/// `--fargate`) registers in. `~` is not allowed in cluster names, so no
/// user cluster can take it, and no user sees its instances.
pub const FARGATE_POOL_CLUSTER: &str = "~fargate";

/// The attribute an agent able to give tasks their own network namespace
/// (awsvpc) advertises, as the ECS agent does.
pub const TASK_ENI_CAPABILITY: &str = "ecs.capability.task-eni";

/// The attribute naming the subnet (CIDR, e.g. `100.64.0.0/22`) of the
/// host's task network: the control plane assigns each awsvpc task placed
/// there an address in it. The network address, the first host address
/// (the gateway) and the broadcast address are never assigned.
pub const TASK_ENI_SUBNET_ATTRIBUTE: &str = "berth.task-eni.subnet";

/// The `LABEL_CONTAINER_NAME` of the container that holds an awsvpc task's
/// network namespace, as ECS names its pause container.
pub const PAUSE_CONTAINER_NAME: &str = "~internal~ecs~pause";

/// Desired state of a task on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DesiredStatus {
    Running,
    Stopped,
}

/// Server → agent frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "message")]
pub enum ServerMessage {
    /// New tasks, or new desired states of known ones. Must be acknowledged.
    Payload(Payload),
    /// Every task the host should know about (desired RUNNING, or desired
    /// STOPPED and not yet reported STOPPED). Tasks absent from it and
    /// unknown to the server are stopped by the agent.
    Manifest(Manifest),
    /// Liveness probe; the agent answers with `HeartbeatAck`.
    Heartbeat { message_id: String },
    /// Answer to the agent's own heartbeat.
    HeartbeatAck { message_id: String },
    /// The server is closing the channel (shutdown, instance deregistered).
    Close { reason: String },
}

/// Agent → server frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "message")]
pub enum AgentMessage {
    /// The payload with this id and sequence number was applied.
    Ack { message_id: String, seq_num: i64 },
    /// Answer to a server heartbeat.
    HeartbeatAck { message_id: String },
    /// Liveness probe; the server answers with `HeartbeatAck`.
    Heartbeat { message_id: String },
    /// Container health check results of one task, sent when they change
    /// (ECS carries these on its telemetry channel, not the state API).
    Health(HealthReport),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub task_arn: String,
    pub containers: Vec<ContainerHealth>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerHealth {
    pub container_name: String,
    pub health_status: HealthStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub message_id: String,
    pub seq_num: i64,
    pub tasks: Vec<TaskSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub message_id: String,
    /// Increases with every manifest, so a stale one can be ignored.
    pub timeline: i64,
    pub tasks: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub task_arn: String,
    pub desired_status: DesiredStatus,
}

/// Everything an agent needs to run a task: the task definition with the
/// RunTask overrides already applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub task_arn: String,
    pub cluster_arn: String,
    pub task_definition_arn: String,
    pub family: String,
    pub revision: i32,
    pub desired_status: DesiredStatus,
    /// Increases whenever the desired status changes, so reordered frames
    /// cannot undo a newer decision.
    pub desired_version: i64,
    /// The mode tasks run with (`bridge` when the definition names none).
    pub network_mode: NetworkMode,
    /// Task-level limits in CPU units and MiB, when the definition sets them.
    pub cpu: Option<u32>,
    pub memory_mib: Option<u32>,
    pub containers: Vec<ContainerSpec>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub pid_mode: Option<PidMode>,
    #[serde(default)]
    pub ipc_mode: Option<IpcMode>,
    /// The task's elastic network interface (`awsvpc`): the agent gives the
    /// task a network namespace of its own with this address, which all its
    /// containers share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface: Option<TaskNetworkInterface>,
}

/// An awsvpc task's network interface, as the control plane allocated it.
///
/// The agent reports its state in `SubmitTaskStateChange.attachments`
/// (`attachmentArn` below): `ATTACHED` with the first PENDING report, once
/// the namespace holds the address; `DETACHING` with the STOPPED report sent
/// when the containers have stopped (the task shows DEPROVISIONING); then
/// `DETACHED` with a second STOPPED report once the namespace, the address
/// and the task's cgroup are gone (the task shows STOPPED).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskNetworkInterface {
    pub attachment_arn: String,
    /// Dotted IPv4, inside `subnet_cidr`.
    pub ipv4_address: String,
    /// `0a:58:` and the four bytes of the address.
    pub mac_address: String,
    /// The host's task network (its `berth.task-eni.subnet` attribute).
    pub subnet_cidr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub container_arn: String,
    /// The container definition with overrides (command, environment,
    /// cpu, memory, memoryReservation) merged in. Shared: the tasks of one
    /// task definition without overrides hold one copy between them.
    pub definition: Arc<ContainerDefinition>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_tagged_json() {
        let frame = AgentMessage::Ack {
            message_id: "m1".into(),
            seq_num: 7,
        };
        let json = serde_json::to_string(&frame).unwrap();
        assert_eq!(
            json,
            r#"{"type":"Ack","message":{"message_id":"m1","seq_num":7}}"#
        );
        let back: AgentMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, frame);
        let close: ServerMessage =
            serde_json::from_str(r#"{"type":"Close","message":{"reason":"bye"}}"#).unwrap();
        assert_eq!(
            close,
            ServerMessage::Close {
                reason: "bye".into()
            }
        );
    }
}
