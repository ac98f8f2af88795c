//! Background loops of the control plane. For now one: STOPPED tasks stay
//! describable for an hour (as in ECS), then expire from the store.

use std::sync::Arc;
use std::time::Duration;

use berth_core::lifecycle;
use berth_store::Txn;
use berth_types::Timestamp;

use crate::api::Api;
use crate::state::{TaskRecord, guard};

/// How long a STOPPED task stays visible to DescribeTasks and ListTasks.
pub const STOPPED_TASK_RETENTION: Duration = Duration::from_secs(3600);
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Whether a task has been STOPPED (`stopped`, at `stopped_at`) for longer
/// than `retention` at `now`.
fn expired(
    stopped: bool,
    stopped_at: Option<Timestamp>,
    now: Timestamp,
    retention: Duration,
) -> bool {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    stopped && stopped_at.is_some_and(|at| now.millis().saturating_sub(at.millis()) > retention_ms)
}

/// Deletes expired tasks once; returns how many went.
pub async fn sweep_expired_tasks(api: &Api, now: Timestamp, retention: Duration) -> usize {
    let mut removed = 0;
    let candidates = api.cache.select_tasks("ecs/", |key, task| {
        expired(task.is_stopped(), task.stopped_at, now, retention).then(|| key.to_string())
    });
    for key in candidates {
        let Some(found) = api.cache.get::<TaskRecord>(&key) else {
            continue;
        };
        let task = &found.value.task;
        if !expired(lifecycle::is_stopped(task), task.stopped_at, now, retention) {
            continue;
        }
        // Guarded, so a task that changed meanwhile is left for next time.
        let txn = guard(Txn::new(), &key, found.mod_revision).delete(key.clone());
        match api.writer.commit(txn).await {
            Ok(true) => removed += 1,
            Ok(false) => {}
            Err(err) => tracing::warn!(%key, %err, "cannot expire a stopped task"),
        }
    }
    removed
}

pub fn spawn(api: Arc<Api>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tick.tick().await;
            let removed = sweep_expired_tasks(&api, Timestamp::now(), STOPPED_TASK_RETENTION).await;
            if removed > 0 {
                tracing::info!(removed, "expired stopped tasks");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Reservation, encode};
    use berth_store::{MemoryStore, Store};
    use berth_types::Task;
    use berth_types::agent::{DesiredStatus, TaskSpec};

    fn record(last_status: &str, stopped_at: Option<i64>) -> TaskRecord {
        TaskRecord {
            task: Task {
                last_status: Some(last_status.into()),
                stopped_at: stopped_at.map(Timestamp::from_millis),
                ..Task::default()
            },
            spec: TaskSpec {
                task_arn: String::new(),
                cluster_arn: String::new(),
                task_definition_arn: String::new(),
                family: String::new(),
                revision: 1,
                desired_status: DesiredStatus::Stopped,
                desired_version: 1,
                network_mode: berth_types::NetworkMode::Bridge,
                cpu: None,
                memory_mib: None,
                containers: Vec::new(),
                volumes: Vec::new(),
                pid_mode: None,
                ipc_mode: None,
                network_interface: None,
            },
            instance_id: None,
            reservation: Reservation::default(),
            released: true,
        }
    }

    #[tokio::test]
    async fn only_tasks_stopped_longer_than_the_retention_expire() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let api = Api::start(store, "000000000000", "us-east-1")
            .await
            .unwrap();
        let hour = 3_600_000;
        let now = 10 * hour;
        let key = |n: &str| format!("ecs/us-east-1/000000000000/task/c/{n}");
        let txn = Txn::new()
            .put(
                key("old"),
                encode(&record("STOPPED", Some(now - hour - 1))).unwrap(),
            )
            .put(
                key("recent"),
                encode(&record("STOPPED", Some(now - hour + 1000))).unwrap(),
            )
            .put(key("running"), encode(&record("RUNNING", None)).unwrap());
        assert!(api.writer.commit(txn).await.unwrap());
        let removed =
            sweep_expired_tasks(&api, Timestamp::from_millis(now), STOPPED_TASK_RETENTION).await;
        assert_eq!(removed, 1);
        assert!(api.cache.get::<TaskRecord>(&key("old")).is_none());
        assert!(api.cache.get::<TaskRecord>(&key("recent")).is_some());
        assert!(api.cache.get::<TaskRecord>(&key("running")).is_some());
    }
}
