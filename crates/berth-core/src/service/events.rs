//! Service events: ECS's exact message texts, and the event log kept on the
//! service — newest first, the last 100, with repeats of a standing
//! condition ("has reached a steady state", "was unable to place a task…")
//! suppressed until the condition clears or six hours pass, as ECS does.
//!
//! Texts are ECS's as DescribeServices returns them (`ecs-semantics.md`
//! §2.4 "Service event message formats", the Developer Guide's
//! `service-event-messages.md`). Placement failures follow the full form
//! seen in real DescribeServices output, which the reference's list
//! abbreviates: `The closest matching (container-instance ID) has
//! insufficient memory available. For more information, see the
//! Troubleshooting section of the Amazon ECS Developer Guide.`; a disconnected
//! agent reads `doesn't have the agent connected.`, and constraint failures
//! `encountered error "MemberOf placement constraint unsatisfied."`.

use std::collections::BTreeMap;

use berth_types::{ServiceEvent, Timestamp};
use serde::{Deserialize, Serialize};

use super::snapshot::PlacementFailure;

/// DescribeServices shows the last 100 events.
pub const MAX_EVENTS: usize = 100;
/// A standing condition is reported again after this long.
pub const REPEAT_AFTER_MILLIS: i64 = 6 * 60 * 60 * 1000;
/// Task ids named in one "has started" / "has stopped" message.
pub const TASKS_PER_MESSAGE: usize = 10;

pub fn steady_state(service: &str) -> String {
    format!("(service {service}) has reached a steady state.")
}

/// "(service S) has started 2 tasks: (task a) (task b)." — one message per
/// ten tasks.
pub fn started(service: &str, task_ids: &[String]) -> Vec<String> {
    task_lists(task_ids)
        .map(|(n, list)| format!("(service {service}) has started {n} tasks: {list}."))
        .collect()
}

/// "(service S) has stopped 1 running tasks: (task a)." — ECS's words,
/// plural and "running" included, whatever the count and state.
pub fn stopped(service: &str, task_ids: &[String]) -> Vec<String> {
    task_lists(task_ids)
        .map(|(n, list)| format!("(service {service}) has stopped {n} running tasks: {list}."))
        .collect()
}

fn task_lists(task_ids: &[String]) -> impl Iterator<Item = (usize, String)> + '_ {
    task_ids.chunks(TASKS_PER_MESSAGE).map(|chunk| {
        let list = chunk
            .iter()
            .map(|id| format!("(task {id})"))
            .collect::<Vec<_>>()
            .join(" ");
        (chunk.len(), list)
    })
}

/// The closing sentence of every "closest matching" placement message.
pub const TROUBLESHOOTING: &str =
    "For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.";

pub fn unable_to_place(service: &str, failure: &PlacementFailure) -> String {
    let reason = failure.reason.as_str();
    let Some(instance) = failure.closest_instance.as_deref() else {
        return if reason == "NO ACTIVE INSTANCES" {
            format!(
                "(service {service}) was unable to place a task because no container instance \
                 met all of its requirements. Reason: No Container Instances were found in your \
                 cluster."
            )
        } else {
            format!("(service {service}) was unable to place a task. Reason: {reason}")
        };
    };
    let why = match reason {
        "RESOURCE:CPU" => "has insufficient CPU units available.".to_owned(),
        "RESOURCE:MEMORY" => "has insufficient memory available.".to_owned(),
        "RESOURCE:PORTS" | "RESOURCE:PORTS_UDP" => {
            "is already using a port required by your task.".to_owned()
        }
        "ATTRIBUTE" => "is missing an attribute required by your task.".to_owned(),
        "AGENT" => "doesn't have the agent connected.".to_owned(),
        other => format!("encountered error \"{}.\"", other.trim_end_matches('.')),
    };
    format!(
        "(service {service}) was unable to place a task because no container instance met all \
         of its requirements. The closest matching (container-instance {instance}) {why} \
         {TROUBLESHOOTING}"
    )
}

pub fn unable_to_start_consistently(service: &str) -> String {
    format!("(service {service}) is unable to consistently start tasks successfully.")
}

pub fn blocked_by_configuration(service: &str) -> String {
    format!(
        "(service {service}) was unable to stop or start tasks during a deployment because of \
         the service deployment configuration. Update the minimumHealthyPercent or \
         maximumPercent value and try again."
    )
}

pub fn failed_health_checks(service: &str, task_id: &str) -> String {
    format!("(service {service}) (task {task_id}) failed container health checks.")
}

pub fn deployment_completed(service: &str, deployment_id: &str) -> String {
    format!("(service {service}) (deployment {deployment_id}) deployment completed.")
}

/// `what` is e.g. "tasks failed to start".
pub fn deployment_failed(service: &str, deployment_id: &str, what: &str) -> String {
    format!("(service {service}) (deployment {deployment_id}) deployment failed: {what}.")
}

pub fn rolling_back(service: &str, deployment_id: &str) -> String {
    format!("(service {service}) rolling back to deployment {deployment_id}.")
}

/// One entry of `Service.events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    pub id: String,
    pub created_at_millis: i64,
    pub message: String,
}

impl EventRecord {
    pub fn to_wire(&self) -> ServiceEvent {
        ServiceEvent {
            id: Some(self.id.clone()),
            created_at: Some(Timestamp::from_millis(self.created_at_millis)),
            message: Some(self.message.clone()),
        }
    }
}

/// A message a round wants to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Emission {
    pub message: String,
    /// A condition that holds for a while (suppressed while it keeps
    /// holding), as opposed to a one-off happening.
    pub standing: bool,
}

/// The service's event log, persisted with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventLog {
    /// Newest first, at most [`MAX_EVENTS`].
    pub entries: Vec<EventRecord>,
    /// Conditions that held in the last round, with when each was last
    /// reported.
    standing: BTreeMap<String, i64>,
    /// Feeds the deterministic event ids.
    next_seq: u64,
}

impl EventLog {
    /// When the standing condition `message` was last reported, if it
    /// still holds.
    pub fn reported_at(&self, message: &str) -> Option<i64> {
        self.standing.get(message).copied()
    }

    pub fn to_wire(&self) -> Vec<ServiceEvent> {
        self.entries.iter().map(EventRecord::to_wire).collect()
    }

    /// Adds a round's emissions (in the order they happened) and returns
    /// the ones that were not suppressed. Standing conditions absent from
    /// this round have cleared, so they will be reported afresh next time.
    pub(crate) fn record(
        &mut self,
        service: &str,
        emissions: Vec<Emission>,
        now: i64,
    ) -> Vec<EventRecord> {
        self.standing.retain(|message, _| {
            emissions
                .iter()
                .any(|e| e.standing && e.message == *message)
        });
        let mut emitted = Vec::new();
        for emission in emissions {
            if emission.standing {
                if self
                    .standing
                    .get(&emission.message)
                    .is_some_and(|&at| now.saturating_sub(at) < REPEAT_AFTER_MILLIS)
                {
                    continue;
                }
                self.standing.insert(emission.message.clone(), now);
            }
            let record = EventRecord {
                id: event_id(service, self.next_seq),
                created_at_millis: now,
                message: emission.message,
            };
            self.next_seq += 1;
            self.entries.insert(0, record.clone());
            emitted.push(record);
        }
        self.entries.truncate(MAX_EVENTS);
        emitted
    }
}

/// A UUID-shaped id (ECS's event ids are UUIDs) derived from the service
/// name and a sequence number, so rounds stay deterministic.
fn event_id(service: &str, seq: u64) -> String {
    // FNV-1a over the name, then two splitmix64 outputs for 128 bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in service.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let hi = splitmix64(h ^ seq);
    let lo = splitmix64(hi ^ seq.rotate_left(32));
    let bits = (u128::from(hi) << 64 | u128::from(lo)) & !(0xf000_u128 << 64) & !(0xc << 60)
        | (0x4000_u128 << 64)
        | (0x8 << 60);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
