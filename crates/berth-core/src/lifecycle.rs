//! The ECS task lifecycle as pure functions over the wire `Task`: how an
//! agent's report (PENDING, RUNNING, STOPPED) and a stop request move a task
//! along PROVISIONING → PENDING → ACTIVATING → RUNNING → DEACTIVATING →
//! STOPPING → DEPROVISIONING → STOPPED, never backwards, with the
//! timestamps, stop code and reason ECS shows, and `version` bumped on every
//! visible change.
//!
//! The agent only ever reports PENDING, RUNNING and STOPPED; the server owns
//! the states in between. ACTIVATING, DEACTIVATING and DEPROVISIONING stand
//! for work around the containers (load balancer registration, network
//! teardown); a task with no such work passes through them without pause.
//!
//! An awsvpc task's elastic network interface (its `attachments` entry)
//! moves ATTACHING → ATTACHED → DETACHING → DETACHED with the agent's
//! reports. While it is not DETACHED, a STOPPED report leaves the task in
//! DEPROVISIONING: the containers have stopped but the namespace and the
//! address are still held, and the task only becomes STOPPED (and gives its
//! resources back) when the agent reports the interface DETACHED.

use berth_types::{
    Attachment, AttachmentStateChange, Container, ContainerStateChange, HealthStatus, Task,
    TaskStopCode, Timestamp,
};

pub const PROVISIONING: &str = "PROVISIONING";
pub const PENDING: &str = "PENDING";
pub const ACTIVATING: &str = "ACTIVATING";
pub const RUNNING: &str = "RUNNING";
pub const DEACTIVATING: &str = "DEACTIVATING";
pub const STOPPING: &str = "STOPPING";
pub const DEPROVISIONING: &str = "DEPROVISIONING";
pub const STOPPED: &str = "STOPPED";

/// Position of a status along the lifecycle; unknown statuses sort first.
pub fn rank(status: &str) -> u8 {
    match status {
        PROVISIONING => 1,
        PENDING => 2,
        ACTIVATING => 3,
        RUNNING => 4,
        DEACTIVATING => 5,
        STOPPING => 6,
        DEPROVISIONING => 7,
        STOPPED => 8,
        _ => 0,
    }
}

pub fn is_stopped(task: &Task) -> bool {
    task.last_status.as_deref() == Some(STOPPED)
}

/// The `type` of a task's network interface attachment.
pub const ENI_ATTACHMENT: &str = "ElasticNetworkInterface";
pub const ATTACHING: &str = "ATTACHING";
pub const ATTACHED: &str = "ATTACHED";
pub const DETACHING: &str = "DETACHING";
pub const DETACHED: &str = "DETACHED";

fn attachment_rank(status: &str) -> u8 {
    match status {
        "PRECREATED" => 1,
        ATTACHING => 2,
        ATTACHED => 3,
        DETACHING => 4,
        DETACHED => 5,
        _ => 0,
    }
}

fn eni_attachments(task: &mut Task) -> impl Iterator<Item = &mut Attachment> {
    task.attachments
        .iter_mut()
        .flatten()
        .filter(|a| a.r#type.as_deref() == Some(ENI_ATTACHMENT))
}

/// Whether the task still holds a network interface (not DETACHED).
fn holds_interface(task: &Task) -> bool {
    task.attachments.iter().flatten().any(|a| {
        a.r#type.as_deref() == Some(ENI_ATTACHMENT) && a.status.as_deref() != Some(DETACHED)
    })
}

/// Moves the task's network interfaces forward to `status`, never back.
fn advance_interfaces(task: &mut Task, status: &str) {
    for a in eni_attachments(task) {
        if attachment_rank(a.status.as_deref().unwrap_or("")) < attachment_rank(status) {
            a.status = Some(status.to_owned());
        }
    }
}

fn merge_attachment(task: &mut Task, change: &AttachmentStateChange) {
    let id = change
        .attachment_arn
        .rsplit('/')
        .next()
        .unwrap_or(&change.attachment_arn);
    if let Some(a) = task
        .attachments
        .iter_mut()
        .flatten()
        .find(|a| a.id.as_deref() == Some(id))
        && attachment_rank(&change.status) > attachment_rank(a.status.as_deref().unwrap_or(""))
    {
        a.status = Some(change.status.clone());
    }
}

/// What an agent said about a task (SubmitTaskStateChange).
#[derive(Debug, Clone, Default)]
pub struct TaskReport<'a> {
    pub status: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub containers: &'a [ContainerStateChange],
    pub attachments: &'a [AttachmentStateChange],
    pub pull_started_at: Option<Timestamp>,
    pub pull_stopped_at: Option<Timestamp>,
    pub execution_stopped_at: Option<Timestamp>,
}

/// The reason ECS gives when an essential container's exit stopped a task.
pub const ESSENTIAL_EXITED: &str = "Essential container in task exited";

/// Applies an agent's report. Returns whether the task changed.
pub fn apply_report(task: &mut Task, report: &TaskReport<'_>, now: Timestamp) -> bool {
    if is_stopped(task) {
        return false;
    }
    let before = task.clone();
    for change in report.containers {
        merge_container(task, change);
    }
    for change in report.attachments {
        merge_attachment(task, change);
    }
    if task.pull_started_at.is_none() {
        task.pull_started_at = report.pull_started_at;
    }
    if task.pull_stopped_at.is_none() {
        task.pull_stopped_at = report.pull_stopped_at;
    }
    let current = task.last_status.clone().unwrap_or_default();
    match report.status {
        Some(PENDING) if rank(&current) < rank(PENDING) => {
            advance_interfaces(task, ATTACHED);
            task.last_status = Some(PENDING.into());
        }
        Some(RUNNING) if rank(&current) < rank(RUNNING) => {
            advance_interfaces(task, ATTACHED);
            task.last_status = Some(RUNNING.into());
            task.started_at.get_or_insert(now);
        }
        // An agent that tears a namespace down says so with the interface
        // DETACHING; one that reports no attachment never made one (it
        // never ran the task), so there is nothing to wait for.
        Some(STOPPED) if holds_interface(task) && !report.attachments.is_empty() => {
            containers_stopped(task, report, now);
            advance_interfaces(task, DETACHING);
            if rank(&current) < rank(DEPROVISIONING) {
                task.last_status = Some(DEPROVISIONING.into());
            }
        }
        Some(STOPPED) => stop_reported(task, report, now),
        _ => {}
    }
    let changed = *task != before;
    if changed {
        task.version += 1;
    }
    changed
}

/// The agent stopped the task's containers: the stop code, reason and
/// timestamps ECS shows from then on.
fn containers_stopped(task: &mut Task, report: &TaskReport<'_>, now: Timestamp) {
    if task.stop_code.is_none() {
        // The agent stopped the task on its own: either it never got going,
        // or an essential container exited.
        let (code, reason) = if task.started_at.is_none() {
            let reason = report
                .reason
                .map(str::to_owned)
                .or_else(|| first_container_reason(task))
                .unwrap_or_else(|| "Task failed to start".into());
            (TaskStopCode::TaskFailedToStart, reason)
        } else {
            (
                TaskStopCode::EssentialContainerExited,
                report.reason.unwrap_or(ESSENTIAL_EXITED).to_owned(),
            )
        };
        task.stop_code = Some(code);
        task.stopped_reason = Some(reason);
    }
    task.desired_status = Some(STOPPED.into());
    task.stopping_at.get_or_insert(now);
    if task.execution_stopped_at.is_none() {
        task.execution_stopped_at = Some(report.execution_stopped_at.unwrap_or(now));
    }
    for container in task.containers.iter_mut().flatten() {
        if container.last_status.as_deref() != Some(STOPPED) {
            container.last_status = Some(STOPPED.into());
        }
    }
}

/// The task is over and holds nothing any more.
fn stop_reported(task: &mut Task, report: &TaskReport<'_>, now: Timestamp) {
    containers_stopped(task, report, now);
    advance_interfaces(task, DETACHED);
    task.stopped_at = Some(now);
    task.last_status = Some(STOPPED.into());
}

fn first_container_reason(task: &Task) -> Option<String> {
    task.containers
        .iter()
        .flatten()
        .find_map(|c| c.reason.clone())
}

fn merge_container(task: &mut Task, change: &ContainerStateChange) {
    let Some(name) = change.container_name.as_deref() else {
        return;
    };
    let Some(container) = task
        .containers
        .iter_mut()
        .flatten()
        .find(|c| c.name.as_deref() == Some(name))
    else {
        return;
    };
    if container.last_status.as_deref() == Some(STOPPED) {
        return;
    }
    if let Some(status) = change.status.as_deref()
        && rank(status) >= rank(container.last_status.as_deref().unwrap_or(""))
    {
        container.last_status = Some(status.to_owned());
    }
    if change.runtime_id.is_some() {
        container.runtime_id = change.runtime_id.clone();
    }
    if change.exit_code.is_some() {
        container.exit_code = change.exit_code;
    }
    if change.reason.is_some() {
        container.reason = change.reason.as_deref().map(truncate_reason);
    }
    if change.image_digest.is_some() {
        container.image_digest = change.image_digest.clone();
    }
    if let Some(bindings) = &change.network_bindings {
        container.network_bindings = Some(bindings.clone());
    }
}

/// ECS caps reasons at 1024 characters.
fn truncate_reason(reason: &str) -> String {
    reason.chars().take(1024).collect()
}

/// Applies one container's report (SubmitContainerStateChange).
pub fn apply_container_report(
    task: &mut Task,
    change: &ContainerStateChange,
    now: Timestamp,
) -> bool {
    apply_report(
        task,
        &TaskReport {
            containers: std::slice::from_ref(change),
            ..TaskReport::default()
        },
        now,
    )
}

/// Asks for a task to stop (StopTask, the scheduler, a lost host). The
/// first request wins: its code and reason are the ones ECS shows.
pub fn request_stop(task: &mut Task, code: TaskStopCode, reason: &str, now: Timestamp) -> bool {
    if is_stopped(task) || task.desired_status.as_deref() == Some(STOPPED) {
        return false;
    }
    task.desired_status = Some(STOPPED.into());
    task.stop_code = Some(code);
    task.stopped_reason = Some(truncate_reason(reason));
    if rank(task.last_status.as_deref().unwrap_or("")) >= rank(ACTIVATING) {
        task.last_status = Some(STOPPING.into());
        task.stopping_at = Some(now);
    }
    task.version += 1;
    true
}

/// Marks a task STOPPED without an agent (its host is gone for good).
pub fn force_stopped(task: &mut Task, code: TaskStopCode, reason: &str, now: Timestamp) -> bool {
    if is_stopped(task) {
        return false;
    }
    request_stop(task, code, reason, now);
    stop_reported(
        task,
        &TaskReport {
            status: Some(STOPPED),
            ..TaskReport::default()
        },
        now,
    );
    task.version += 1;
    true
}

/// Task health over the essential containers: any UNHEALTHY makes it
/// UNHEALTHY, else any UNKNOWN makes it UNKNOWN, else HEALTHY.
pub fn task_health<'a>(essential: impl IntoIterator<Item = &'a Container>) -> HealthStatus {
    let mut overall = HealthStatus::Healthy;
    for c in essential {
        match c.health_status.unwrap_or(HealthStatus::Unknown) {
            HealthStatus::Unhealthy => return HealthStatus::Unhealthy,
            HealthStatus::Unknown => overall = HealthStatus::Unknown,
            HealthStatus::Healthy => {}
        }
    }
    overall
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> Task {
        Task {
            last_status: Some(PROVISIONING.into()),
            desired_status: Some(RUNNING.into()),
            version: 1,
            containers: Some(vec![Container {
                name: Some("web".into()),
                last_status: Some(PENDING.into()),
                ..Container::default()
            }]),
            ..Task::default()
        }
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn report(status: &str) -> TaskReport<'_> {
        TaskReport {
            status: Some(status),
            ..TaskReport::default()
        }
    }

    #[test]
    fn runs_then_an_essential_exit_stops_it() {
        let mut t = task();
        assert!(apply_report(&mut t, &report(PENDING), at(1)));
        assert_eq!(t.last_status.as_deref(), Some(PENDING));
        let running = [ContainerStateChange {
            container_name: Some("web".into()),
            status: Some(RUNNING.into()),
            runtime_id: Some("abc".into()),
            ..ContainerStateChange::default()
        }];
        assert!(apply_report(
            &mut t,
            &TaskReport {
                status: Some(RUNNING),
                containers: &running,
                ..TaskReport::default()
            },
            at(2)
        ));
        assert_eq!(t.started_at, Some(at(2)));
        assert_eq!(t.version, 3);
        // A late PENDING changes nothing.
        assert!(!apply_report(&mut t, &report(PENDING), at(3)));
        let exited = [ContainerStateChange {
            container_name: Some("web".into()),
            status: Some(STOPPED.into()),
            exit_code: Some(3),
            ..ContainerStateChange::default()
        }];
        assert!(apply_report(
            &mut t,
            &TaskReport {
                status: Some(STOPPED),
                containers: &exited,
                ..TaskReport::default()
            },
            at(4)
        ));
        assert_eq!(t.stop_code, Some(TaskStopCode::EssentialContainerExited));
        assert_eq!(t.stopped_reason.as_deref(), Some(ESSENTIAL_EXITED));
        assert_eq!(t.desired_status.as_deref(), Some(STOPPED));
        assert_eq!(t.containers.as_ref().unwrap()[0].exit_code, Some(3));
        assert_eq!(t.stopped_at, Some(at(4)));
        // Terminal: nothing moves a STOPPED task.
        assert!(!apply_report(&mut t, &report(RUNNING), at(5)));
    }

    #[test]
    fn a_task_that_never_ran_failed_to_start() {
        let mut t = task();
        let failed = [ContainerStateChange {
            container_name: Some("web".into()),
            status: Some(STOPPED.into()),
            reason: Some("CannotPullContainerError: no such image".into()),
            ..ContainerStateChange::default()
        }];
        apply_report(
            &mut t,
            &TaskReport {
                status: Some(STOPPED),
                containers: &failed,
                ..TaskReport::default()
            },
            at(1),
        );
        assert_eq!(t.stop_code, Some(TaskStopCode::TaskFailedToStart));
        assert_eq!(
            t.stopped_reason.as_deref(),
            Some("CannotPullContainerError: no such image")
        );
    }

    #[test]
    fn user_stop_keeps_its_reason_through_the_agent_report() {
        let mut t = task();
        apply_report(&mut t, &report(RUNNING), at(1));
        assert!(request_stop(
            &mut t,
            TaskStopCode::UserInitiated,
            "bye",
            at(2)
        ));
        assert_eq!(t.last_status.as_deref(), Some(STOPPING));
        assert_eq!(t.stopping_at, Some(at(2)));
        assert!(!request_stop(
            &mut t,
            TaskStopCode::ServiceSchedulerInitiated,
            "x",
            at(3)
        ));
        apply_report(&mut t, &report(STOPPED), at(4));
        assert_eq!(t.stop_code, Some(TaskStopCode::UserInitiated));
        assert_eq!(t.stopped_reason.as_deref(), Some("bye"));
        assert_eq!(t.last_status.as_deref(), Some(STOPPED));
    }

    fn eni_task() -> Task {
        Task {
            attachments: Some(vec![Attachment {
                id: Some("att-1".into()),
                r#type: Some(ENI_ATTACHMENT.into()),
                status: Some(ATTACHING.into()),
                details: None,
            }]),
            ..task()
        }
    }

    fn eni_status(t: &Task) -> &str {
        t.attachments.as_ref().unwrap()[0]
            .status
            .as_deref()
            .unwrap()
    }

    fn attachment(status: &str) -> [AttachmentStateChange; 1] {
        [AttachmentStateChange {
            attachment_arn: "arn:aws:ecs:us-east-1:000000000000:attachment/att-1".into(),
            status: status.into(),
        }]
    }

    #[test]
    fn an_interface_holds_the_task_in_deprovisioning_until_detached() {
        let mut t = eni_task();
        let attached = attachment(ATTACHED);
        apply_report(
            &mut t,
            &TaskReport {
                status: Some(PENDING),
                attachments: &attached,
                ..TaskReport::default()
            },
            at(1),
        );
        assert_eq!(eni_status(&t), ATTACHED);
        apply_report(&mut t, &report(RUNNING), at(2));
        request_stop(&mut t, TaskStopCode::SpotInterruption, "spot", at(3));
        assert_eq!(t.last_status.as_deref(), Some(STOPPING));
        let detaching = attachment(DETACHING);
        assert!(apply_report(
            &mut t,
            &TaskReport {
                status: Some(STOPPED),
                attachments: &detaching,
                execution_stopped_at: Some(at(4)),
                ..TaskReport::default()
            },
            at(4)
        ));
        assert_eq!(t.last_status.as_deref(), Some(DEPROVISIONING));
        assert_eq!(eni_status(&t), DETACHING);
        assert_eq!(t.execution_stopped_at, Some(at(4)));
        assert_eq!(t.stopped_at, None);
        assert!(!is_stopped(&t));
        // A repeat of the same report changes nothing.
        assert!(!apply_report(
            &mut t,
            &TaskReport {
                status: Some(STOPPED),
                attachments: &detaching,
                ..TaskReport::default()
            },
            at(5)
        ));
        let detached = attachment(DETACHED);
        assert!(apply_report(
            &mut t,
            &TaskReport {
                status: Some(STOPPED),
                attachments: &detached,
                ..TaskReport::default()
            },
            at(6)
        ));
        assert!(is_stopped(&t));
        assert_eq!(eni_status(&t), DETACHED);
        assert_eq!(t.stopped_at, Some(at(6)));
        assert_eq!(t.execution_stopped_at, Some(at(4)));
        assert_eq!(t.stop_code, Some(TaskStopCode::SpotInterruption));
    }

    #[test]
    fn a_stop_without_attachment_news_means_no_namespace_was_made() {
        let mut t = eni_task();
        assert!(apply_report(&mut t, &report(STOPPED), at(1)));
        assert!(is_stopped(&t));
        assert_eq!(eni_status(&t), DETACHED);
    }

    #[test]
    fn an_interface_never_moves_backwards_and_a_lost_host_detaches_it() {
        let mut t = eni_task();
        apply_report(&mut t, &report(RUNNING), at(1));
        assert_eq!(eni_status(&t), ATTACHED);
        let attaching = attachment(ATTACHING);
        apply_report(
            &mut t,
            &TaskReport {
                attachments: &attaching,
                ..TaskReport::default()
            },
            at(2),
        );
        assert_eq!(eni_status(&t), ATTACHED);
        assert!(force_stopped(
            &mut t,
            TaskStopCode::TaskFailedToStart,
            "host lost",
            at(3)
        ));
        assert!(is_stopped(&t));
        assert_eq!(eni_status(&t), DETACHED);
    }

    #[test]
    fn health_priority() {
        let c = |h| Container {
            health_status: Some(h),
            ..Container::default()
        };
        assert_eq!(
            task_health(&[c(HealthStatus::Healthy)]),
            HealthStatus::Healthy
        );
        assert_eq!(
            task_health(&[c(HealthStatus::Healthy), c(HealthStatus::Unknown)]),
            HealthStatus::Unknown
        );
        assert_eq!(
            task_health(&[c(HealthStatus::Unknown), c(HealthStatus::Unhealthy)]),
            HealthStatus::Unhealthy
        );
    }
}
