//! Container log capture: for every container the engine starts or adopts,
//! a tokio task follows the runtime's log stream (no helper process) and
//! another ships the lines in batches with CloudWatch Logs' `PutLogEvents`
//! to the control plane.
//!
//! Where a container's logs go ([`destination`]):
//! - `awslogs` driver: group `awslogs-group` (the default group when
//!   unset), stream `<awslogs-stream-prefix>/<container name>/<task id>`, or
//!   the runtime's container id without a prefix — ECS's naming.
//! - anything else (no `logConfiguration`, `json-file`, …): group
//!   `/ecs/<family>`, stream `ecs/<container name>/<task id>`.
//!
//! Batches close at 1 MiB (message bytes + 26 per event, CloudWatch's
//! accounting), 10,000 events, 24 hours of span, or one second after their
//! first line. Failed puts are retried with backoff (1 s → 30 s) while the
//! reader keeps reading into a bounded buffer (8 MiB per container); past
//! that the oldest lines are dropped, counted and warned about. After each
//! delivered batch the timestamp of its last line is saved (in the data dir),
//! so an agent that restarts and adopts the container resumes after it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_types::ContainerDefinition;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::persist;
use crate::report::SubmitError;
use crate::runtime::{BoxFuture, ContainerRuntime, LogLine};

/// CloudWatch's per-event overhead in its batch size accounting.
pub const EVENT_OVERHEAD: usize = 26;
/// CloudWatch's largest event message (256 KiB minus the overhead).
pub const MAX_MESSAGE_BYTES: usize = 262_144 - EVENT_OVERHEAD;

/// Where one container's logs are shipped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogDestination {
    pub group: String,
    pub stream: String,
}

/// The default group of a task definition family.
pub fn default_group(family: &str) -> String {
    format!("/ecs/{family}")
}

/// The group and stream of a container, following ECS's `awslogs` naming;
/// `runtime_id` names the stream of an `awslogs` container without a stream
/// prefix (ECS uses the Docker container id there).
pub fn destination(
    family: &str,
    definition: &ContainerDefinition,
    task_id: &str,
    runtime_id: Option<&str>,
) -> LogDestination {
    let name = definition.name.as_deref().unwrap_or_default();
    let awslogs = definition
        .log_configuration
        .as_ref()
        .filter(|c| c.log_driver == berth_types::LogDriver::Awslogs);
    let option = |key: &str| {
        awslogs
            .and_then(|c| c.options.as_ref())
            .and_then(|o| o.get(key))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    match awslogs {
        Some(_) => LogDestination {
            group: option("awslogs-group").unwrap_or_else(|| default_group(family)),
            stream: match option("awslogs-stream-prefix") {
                Some(prefix) => format!("{prefix}/{name}/{task_id}"),
                None => runtime_id.map_or_else(|| format!("{name}/{task_id}"), str::to_owned),
            },
        },
        None => LogDestination {
            group: default_group(family),
            stream: format!("ecs/{name}/{task_id}"),
        },
    }
}

/// One event as `PutLogEvents` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub message: String,
}

/// Where batches go: the server's `PutLogEvents` in production, a recorder
/// in tests.
pub trait LogSink: Send + Sync + 'static {
    fn put<'a>(
        &'a self,
        destination: &'a LogDestination,
        events: &'a [LogEvent],
    ) -> BoxFuture<'a, Result<(), SubmitError>>;
}

impl LogSink for berth_client::Client {
    fn put<'a>(
        &'a self,
        destination: &'a LogDestination,
        events: &'a [LogEvent],
    ) -> BoxFuture<'a, Result<(), SubmitError>> {
        Box::pin(async move {
            #[derive(Serialize)]
            #[serde(rename_all = "camelCase")]
            struct Put<'a> {
                log_group_name: &'a str,
                log_stream_name: &'a str,
                log_events: &'a [LogEvent],
            }
            let request = Put {
                log_group_name: &destination.group,
                log_stream_name: &destination.stream,
                log_events: events,
            };
            self.call_logs::<_, serde_json::Value>("PutLogEvents", &request)
                .await
                .map(drop)
                .map_err(|error| match &error {
                    berth_client::ClientError::Api { code, status, .. }
                        if (400..500).contains(status) && !code.contains("Throttl") =>
                    {
                        SubmitError::Rejected(error.to_string())
                    }
                    _ => SubmitError::Retry(error.to_string()),
                })
        })
    }
}

/// Batch and buffer sizes.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    pub max_batch_bytes: usize,
    pub max_batch_events: usize,
    /// How long a line may wait for its batch to fill.
    pub flush_interval: Duration,
    /// Bytes buffered per container before the oldest lines are dropped.
    pub max_buffered_bytes: usize,
    pub max_backoff: Duration,
}

impl Default for ShipperConfig {
    fn default() -> Self {
        Self {
            max_batch_bytes: 1_048_576,
            max_batch_events: 10_000,
            flush_interval: Duration::from_secs(1),
            max_buffered_bytes: 8 * 1024 * 1024,
            max_backoff: Duration::from_secs(30),
        }
    }
}

struct Inner {
    sink: Arc<dyn LogSink>,
    config: ShipperConfig,
    /// Where delivery cursors are kept; `None` keeps them in memory.
    dir: Option<PathBuf>,
    cursors: Mutex<HashMap<String, i128>>,
    followers: Mutex<HashMap<String, JoinHandle<()>>>,
    dropped: AtomicU64,
    shipped: AtomicU64,
}

/// Follows and ships container logs. Cloning shares it.
#[derive(Clone)]
pub struct LogShipper {
    inner: Arc<Inner>,
}

impl fmt::Debug for LogShipper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogShipper")
            .field("config", &self.inner.config)
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Serialize, Deserialize)]
struct Cursor {
    /// The timestamp (ns) of the last delivered line.
    nanos: String,
}

#[derive(Default)]
struct Buffer {
    lines: VecDeque<LogLine>,
    bytes: usize,
    /// The reader has finished: drain and stop.
    done: bool,
    /// When the oldest buffered line arrived.
    since: Option<tokio::time::Instant>,
}

fn line_bytes(line: &LogLine) -> usize {
    line.message.len().min(MAX_MESSAGE_BYTES) + EVENT_OVERHEAD
}

impl LogShipper {
    /// `dir`: where delivery cursors are kept across agent restarts.
    pub fn new(sink: Arc<dyn LogSink>, config: ShipperConfig, dir: Option<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                sink,
                config,
                dir,
                cursors: Mutex::new(HashMap::new()),
                followers: Mutex::new(HashMap::new()),
                dropped: AtomicU64::new(0),
                shipped: AtomicU64::new(0),
            }),
        }
    }

    /// Lines dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Lines delivered.
    pub fn shipped(&self) -> u64 {
        self.inner.shipped.load(Ordering::Relaxed)
    }

    fn cursor(&self, id: &str) -> Option<i128> {
        if let Some(nanos) = lock(&self.inner.cursors).get(id) {
            return Some(*nanos);
        }
        let dir = self.inner.dir.as_ref()?;
        let cursor: Cursor = persist::read(&dir.join(persist::file_name(id)))
            .ok()
            .flatten()?;
        cursor.nanos.parse().ok()
    }

    fn save_cursor(&self, id: &str, nanos: i128) {
        lock(&self.inner.cursors).insert(id.to_owned(), nanos);
        if let Some(dir) = &self.inner.dir {
            let cursor = Cursor {
                nanos: nanos.to_string(),
            };
            if let Err(error) = persist::write(dir, &persist::file_name(id), &cursor) {
                tracing::warn!(%error, id, "cannot save the log cursor");
            }
        }
    }

    /// Forgets a removed container's cursor.
    pub fn forget(&self, id: &str) {
        lock(&self.inner.cursors).remove(id);
        if let Some(dir) = &self.inner.dir {
            let _ = persist::remove(dir, &persist::file_name(id));
        }
    }

    /// Starts following container `id` unless it is already followed;
    /// returns at once.
    pub fn follow(
        &self,
        runtime: Arc<dyn ContainerRuntime>,
        id: &str,
        destination: LogDestination,
    ) {
        let mut followers = lock(&self.inner.followers);
        if followers.get(id).is_some_and(|h| !h.is_finished()) {
            return;
        }
        let shipper = self.clone();
        let id_owned = id.to_owned();
        let handle = tokio::spawn(async move {
            shipper.run(runtime, id_owned, destination).await;
        });
        followers.insert(id.to_owned(), handle);
    }

    /// Stops every follower (the agent is going away; the next one resumes
    /// from the cursors).
    pub fn stop_all(&self) {
        for (_, handle) in lock(&self.inner.followers).drain() {
            handle.abort();
        }
    }

    /// Waits until the follower of `id` (if any) has shipped everything and
    /// ended.
    pub async fn finished(&self, id: &str) {
        loop {
            let done = lock(&self.inner.followers)
                .get(id)
                .is_none_or(JoinHandle::is_finished);
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn run(
        self,
        runtime: Arc<dyn ContainerRuntime>,
        id: String,
        destination: LogDestination,
    ) {
        let buffer = Arc::new(Mutex::new(Buffer::default()));
        let wake = Arc::new(Notify::new());
        let since = self.cursor(&id);
        let reader = {
            let buffer = Arc::clone(&buffer);
            let wake = Arc::clone(&wake);
            let limit = self.inner.config.max_buffered_bytes;
            let shipper = self.clone();
            let id = id.clone();
            let mut lines = runtime.logs(&id, since);
            async move {
                let mut warned_at = 0;
                while let Some(line) = lines.next().await {
                    let line = match line {
                        Ok(line) => line,
                        Err(error) => {
                            tracing::warn!(%error, id, "cannot read container logs");
                            break;
                        }
                    };
                    if line.message.is_empty() {
                        continue;
                    }
                    let mut b = lock(&buffer);
                    b.bytes += line_bytes(&line);
                    b.lines.push_back(line);
                    b.since.get_or_insert_with(tokio::time::Instant::now);
                    let mut dropped = 0;
                    while b.bytes > limit {
                        let Some(old) = b.lines.pop_front() else {
                            break;
                        };
                        b.bytes -= line_bytes(&old);
                        dropped += 1;
                    }
                    drop(b);
                    if dropped > 0 {
                        let total =
                            shipper.inner.dropped.fetch_add(dropped, Ordering::Relaxed) + dropped;
                        // One warning per 1,000 dropped lines at most.
                        if total / 1000 >= warned_at {
                            warned_at = total / 1000 + 1;
                            tracing::warn!(
                                id,
                                dropped = total,
                                "log buffer full; dropping the oldest lines"
                            );
                        }
                    }
                    wake.notify_one();
                }
                lock(&buffer).done = true;
                wake.notify_one();
            }
        };
        let sender = self.send_loop(&id, &destination, &buffer, &wake);
        tokio::join!(reader, sender);
    }

    /// Takes the next batch once it is full, old enough, or the reader is
    /// done; ships it; repeats until the reader is done and the buffer empty.
    async fn send_loop(
        &self,
        id: &str,
        destination: &LogDestination,
        buffer: &Mutex<Buffer>,
        wake: &Notify,
    ) {
        let config = &self.inner.config;
        loop {
            let (ready, done, deadline) = {
                let b = lock(buffer);
                let full =
                    b.bytes >= config.max_batch_bytes || b.lines.len() >= config.max_batch_events;
                let deadline = b.since.map(|s| s + config.flush_interval);
                let due = deadline.is_some_and(|d| d <= tokio::time::Instant::now());
                (
                    !b.lines.is_empty() && (full || due || b.done),
                    b.done && b.lines.is_empty(),
                    deadline,
                )
            };
            if done {
                return;
            }
            if !ready {
                match deadline {
                    Some(deadline) => {
                        tokio::select! {
                            () = wake.notified() => {}
                            () = tokio::time::sleep_until(deadline) => {}
                        }
                    }
                    None => wake.notified().await,
                }
                continue;
            }
            let batch = self.take_batch(buffer);
            if batch.is_empty() {
                continue;
            }
            let last = batch.iter().map(|l| l.timestamp_nanos).max().unwrap_or(0);
            let mut events: Vec<LogEvent> = batch
                .into_iter()
                .map(|line| LogEvent {
                    timestamp: i64::try_from(line.timestamp_nanos.div_euclid(1_000_000))
                        .unwrap_or(0),
                    message: truncate(line.message),
                })
                .collect();
            events.sort_by_key(|e| e.timestamp);
            let mut backoff = Duration::from_secs(1);
            loop {
                match self.inner.sink.put(destination, &events).await {
                    Ok(()) => {
                        self.inner
                            .shipped
                            .fetch_add(events.len() as u64, Ordering::Relaxed);
                        break;
                    }
                    Err(SubmitError::Rejected(error)) => {
                        tracing::warn!(%error, id, group = destination.group, stream = destination.stream, "log batch rejected; dropping it");
                        break;
                    }
                    Err(SubmitError::Retry(error)) => {
                        tracing::debug!(%error, id, ?backoff, "log batch not delivered; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(config.max_backoff);
                    }
                }
            }
            self.save_cursor(id, last);
        }
    }

    fn take_batch(&self, buffer: &Mutex<Buffer>) -> Vec<LogLine> {
        let config = &self.inner.config;
        let mut b = lock(buffer);
        let mut batch = Vec::new();
        let mut bytes = 0;
        let span = 24 * 3600 * 1_000_000_000_i128;
        while let Some(line) = b.lines.front() {
            let size = line_bytes(line);
            let too_long = batch
                .first()
                .is_some_and(|f: &LogLine| (line.timestamp_nanos - f.timestamp_nanos).abs() > span);
            if !batch.is_empty()
                && (bytes + size > config.max_batch_bytes
                    || batch.len() >= config.max_batch_events
                    || too_long)
            {
                break;
            }
            bytes += size;
            b.bytes -= size;
            batch.extend(b.lines.pop_front());
        }
        b.since = (!b.lines.is_empty()).then(tokio::time::Instant::now);
        batch
    }
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut cut = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_types::{LogConfiguration, LogDriver};
    use std::collections::BTreeMap;

    fn def(log: Option<LogConfiguration>) -> ContainerDefinition {
        ContainerDefinition {
            name: Some("app".into()),
            log_configuration: log,
            ..Default::default()
        }
    }

    fn awslogs(options: &[(&str, &str)]) -> Option<LogConfiguration> {
        Some(LogConfiguration {
            log_driver: LogDriver::Awslogs,
            options: Some(
                options
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            secret_options: None,
        })
    }

    #[test]
    fn names_follow_ecs() {
        let d = destination("web", &def(None), "abc", Some("dockerid"));
        assert_eq!(d.group, "/ecs/web");
        assert_eq!(d.stream, "ecs/app/abc");
        let d = destination(
            "web",
            &def(awslogs(&[
                ("awslogs-group", "/my/group"),
                ("awslogs-stream-prefix", "svc"),
            ])),
            "abc",
            Some("dockerid"),
        );
        assert_eq!(
            d,
            LogDestination {
                group: "/my/group".into(),
                stream: "svc/app/abc".into()
            }
        );
        let d = destination(
            "web",
            &def(awslogs(&[("awslogs-group", "/my/group")])),
            "abc",
            Some("dockerid"),
        );
        assert_eq!(d.stream, "dockerid");
        let json_file = Some(LogConfiguration {
            log_driver: LogDriver::JsonFile,
            options: None,
            secret_options: None,
        });
        assert_eq!(
            destination("web", &def(json_file), "abc", None).stream,
            "ecs/app/abc"
        );
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = truncate(long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES && cut.len() >= MAX_MESSAGE_BYTES - 1);
    }
}
