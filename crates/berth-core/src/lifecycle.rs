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

use berth_types::{Container, ContainerStateChange, HealthStatus, Task, TaskStopCode, Timestamp};

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

/// What an agent said about a task (SubmitTaskStateChange).
#[derive(Debug, Clone, Default)]
pub struct TaskReport<'a> {
    pub status: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub containers: &'a [ContainerStateChange],
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
    if task.pull_started_at.is_none() {
        task.pull_started_at = report.pull_started_at;
    }
    if task.pull_stopped_at.is_none() {
        task.pull_stopped_at = report.pull_stopped_at;
    }
    let current = task.last_status.clone().unwrap_or_default();
    match report.status {
        Some(PENDING) if rank(&current) < rank(PENDING) => {
            task.last_status = Some(PENDING.into());
        }
        Some(RUNNING) if rank(&current) < rank(RUNNING) => {
            task.last_status = Some(RUNNING.into());
            task.started_at.get_or_insert(now);
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

fn stop_reported(task: &mut Task, report: &TaskReport<'_>, now: Timestamp) {
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
    task.execution_stopped_at = Some(report.execution_stopped_at.unwrap_or(now));
    task.stopped_at = Some(now);
    task.last_status = Some(STOPPED.into());
    for container in task.containers.iter_mut().flatten() {
        if container.last_status.as_deref() != Some(STOPPED) {
            container.last_status = Some(STOPPED.into());
        }
    }
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
