//! Delivery of state changes to the control plane: one ordered queue per
//! task, retried with backoff until the server acknowledges each report, and
//! mirrored to the data directory so reports survive an agent restart.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_types::{SubmitContainerStateChangeRequest, SubmitTaskStateChangeRequest};
use serde::{Deserialize, Serialize};

use crate::persist;
use crate::runtime::BoxFuture;

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// One state change for the control plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "request")]
pub enum Report {
    Task(SubmitTaskStateChangeRequest),
    Container(SubmitContainerStateChangeRequest),
}

impl Report {
    pub fn task_arn(&self) -> &str {
        match self {
            Report::Task(r) => r.task.as_deref().unwrap_or_default(),
            Report::Container(r) => r.task.as_deref().unwrap_or_default(),
        }
    }
}

/// Why a report was not delivered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// Worth retrying: the server could not be reached, was overloaded or
    /// failed.
    #[error("{0}")]
    Retry(String),
    /// The server refused the report for good (unknown task, bad request);
    /// retrying cannot help.
    #[error("{0}")]
    Rejected(String),
}

/// Where reports go: the ECS API in production, a recorder in tests.
pub trait StateSink: Send + Sync + 'static {
    fn submit<'a>(&'a self, report: &'a Report) -> BoxFuture<'a, Result<(), SubmitError>>;
}

impl StateSink for berth_client::Client {
    fn submit<'a>(&'a self, report: &'a Report) -> BoxFuture<'a, Result<(), SubmitError>> {
        Box::pin(async move {
            let result = match report {
                Report::Task(request) => self.send(request).await.map(drop),
                Report::Container(request) => self.send(request).await.map(drop),
            };
            result.map_err(|error| match &error {
                berth_client::ClientError::Api { code, status, .. }
                    if (400..500).contains(status)
                        && !code.contains("Throttl")
                        && code != "RequestLimitExceeded" =>
                {
                    SubmitError::Rejected(error.to_string())
                }
                _ => SubmitError::Retry(error.to_string()),
            })
        })
    }
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Report>,
    sending: bool,
}

struct Inner {
    sink: Arc<dyn StateSink>,
    dir: Option<PathBuf>,
    queues: Mutex<HashMap<String, Queue>>,
}

/// The per-task report queues. Cloning shares them.
#[derive(Clone)]
pub struct Reporter {
    inner: Arc<Inner>,
}

impl Reporter {
    /// `dir`: where unsent reports are kept (none: memory only).
    pub fn new(sink: Arc<dyn StateSink>, dir: Option<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                sink,
                dir,
                queues: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Queue>> {
        self.inner
            .queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues the reports left unsent by an earlier run, in their order.
    pub fn resume(&self) {
        let Some(dir) = &self.inner.dir else { return };
        for (_, reports) in persist::read_all::<Vec<Report>>(dir) {
            for report in reports {
                self.send(report);
            }
        }
    }

    /// Queues `report` behind the task's earlier ones.
    pub fn send(&self, report: Report) {
        let task = report.task_arn().to_owned();
        let start = {
            let mut queues = self.lock();
            let queue = queues.entry(task.clone()).or_default();
            queue.pending.push_back(report);
            self.save(&task, queue);
            !std::mem::replace(&mut queue.sending, true)
        };
        if start {
            tokio::spawn(self.clone().drain(task));
        }
    }

    /// How many reports wait for delivery.
    pub fn pending(&self) -> usize {
        self.lock().values().map(|q| q.pending.len()).sum()
    }

    fn save(&self, task: &str, queue: &Queue) {
        let Some(dir) = &self.inner.dir else { return };
        let name = persist::file_name(task);
        let result = if queue.pending.is_empty() {
            persist::remove(dir, &name)
        } else {
            persist::write(dir, &name, &queue.pending)
        };
        if let Err(error) = result {
            tracing::warn!(%error, task, "cannot persist pending state changes");
        }
    }

    async fn drain(self, task: String) {
        loop {
            let next = {
                let mut queues = self.lock();
                let Some(queue) = queues.get_mut(&task) else {
                    return;
                };
                match queue.pending.front() {
                    Some(report) => report.clone(),
                    None => {
                        queues.remove(&task);
                        return;
                    }
                }
            };
            let mut backoff = BACKOFF_START;
            loop {
                match self.inner.sink.submit(&next).await {
                    Ok(()) => break,
                    Err(SubmitError::Rejected(error)) => {
                        tracing::warn!(%error, task, "state change rejected; dropping it");
                        break;
                    }
                    Err(SubmitError::Retry(error)) => {
                        tracing::debug!(%error, task, ?backoff, "state change not delivered; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
            let mut queues = self.lock();
            if let Some(queue) = queues.get_mut(&task) {
                queue.pending.pop_front();
                self.save(&task, queue);
            }
        }
    }
}
