//! Container logs, served as CloudWatch Logs speaks them: AWS JSON 1.1 on the
//! same `POST /` endpoint with the `Logs_20140328.` target prefix.
//!
//! - `PutLogEvents` (agents): creates the group and stream on first use (real
//!   CloudWatch wants `CreateLogGroup`/`CreateLogStream` first).
//! - `GetLogEvents` (readers, `berth logs`): one stream, ordered by
//!   timestamp, with `f/<seq>` / `b/<seq>` tokens.
//! - `FilterLogEvents`: several streams of a group (`logStreamNames` or
//!   `logStreamNamePrefix`), with plain-term `filterPattern`s.
//! - `CreateLogGroup`, `CreateLogStream`, `DescribeLogStreams`: the minimum an
//!   SDK user expects next to them.
//!
//! Storage is its own SQLite file (`logs.db` in the data dir), not the
//! revisioned store: log volume would swamp the store's in-memory cache.
//!
//! ```text
//! log_groups (id, name UNIQUE, created_at)
//! log_streams(id, group_id, name, created_at, first_event_ts, last_event_ts,
//!             last_ingestion_ts, UNIQUE(group_id, name))
//! log_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream_id, timestamp,
//!             ingestion_time, message)
//! INDEX log_events_by_time ON log_events(stream_id, timestamp, seq)
//! ```
//!
//! `seq` is global and only grows, so it identifies an event for tokens;
//! the stream id stands for (group, stream). Events older than the
//! retention (7 days) are deleted by a sweep every hour. A read API that
//! needs more (metric filters, insights) can be added on these tables
//! without a migration.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_types::{EcsError, ErrorCode};
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::protocol::decode;

/// The `X-Amz-Target` prefix of CloudWatch Logs.
pub const TARGET_PREFIX: &str = "Logs_20140328.";
/// Bodies may carry a full 1 MiB batch plus JSON escaping.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How long events are kept, by event timestamp.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often expired events are deleted.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// CloudWatch's limits.
const MAX_EVENTS_PER_PUT: usize = 10_000;
const MAX_PUT_BYTES: usize = 1_048_576;
const EVENT_OVERHEAD: usize = 26;
const MAX_GET_LIMIT: i64 = 10_000;
const MAX_RESPONSE_BYTES: usize = 1_048_576;
const MAX_BATCH_SPAN_MS: i64 = 24 * 3600 * 1000;
const MAX_FUTURE_MS: i64 = 2 * 3600 * 1000;
const MAX_NAME: usize = 512;

/// The log database. Cloning shares the connection.
#[derive(Clone)]
pub struct LogStore {
    conn: Arc<Mutex<Connection>>,
    retention: Duration,
}

fn backend(error: rusqlite::Error) -> EcsError {
    EcsError::server(format!("log storage failed: {error}"))
}

/// `INSERT OR IGNORE` touched no row: the thing was there already.
fn newly_created(rows: usize, what: &str) -> Result<(), EcsError> {
    if rows == 0 {
        return Err(EcsError::new(
            ErrorCode::ResourceInUseException,
            format!("The specified {what} already exists"),
        ));
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn not_found(what: &str) -> EcsError {
    EcsError::new(
        ErrorCode::ResourceNotFoundException,
        format!("The specified log {what} does not exist."),
    )
}

impl LogStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, String> {
        let conn = Connection::open(path).map_err(|e| e.to_string())?;
        Self::init(conn)
    }

    /// A database that lives as long as the process (for routers built
    /// without a data dir).
    pub fn in_memory() -> Self {
        Self::init(Connection::open_in_memory().expect("in-memory SQLite"))
            .expect("log schema on an in-memory database")
    }

    fn init(conn: Connection) -> Result<Self, String> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             CREATE TABLE IF NOT EXISTS log_groups (
                 id INTEGER PRIMARY KEY,
                 name TEXT NOT NULL UNIQUE,
                 created_at INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS log_streams (
                 id INTEGER PRIMARY KEY,
                 group_id INTEGER NOT NULL REFERENCES log_groups(id) ON DELETE CASCADE,
                 name TEXT NOT NULL,
                 created_at INTEGER NOT NULL,
                 first_event_ts INTEGER,
                 last_event_ts INTEGER,
                 last_ingestion_ts INTEGER,
                 UNIQUE (group_id, name)
             );
             CREATE TABLE IF NOT EXISTS log_events (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 stream_id INTEGER NOT NULL REFERENCES log_streams(id) ON DELETE CASCADE,
                 timestamp INTEGER NOT NULL,
                 ingestion_time INTEGER NOT NULL,
                 message TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS log_events_by_time
                 ON log_events (stream_id, timestamp, seq);",
        )
        .map_err(|e| e.to_string())?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            retention: RETENTION,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the connection on a blocking thread.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, EcsError> + Send + 'static,
    ) -> Result<T, EcsError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&mut store.lock()))
            .await
            .map_err(|e| EcsError::server(format!("log storage task failed: {e}")))?
    }

    /// Deletes events older than the retention; returns how many.
    pub fn sweep(&self, now_ms: i64) -> Result<usize, String> {
        let cutoff = now_ms - i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        let conn = self.lock();
        let streams: Vec<i64> = {
            let mut stmt = conn
                .prepare("SELECT id FROM log_streams WHERE first_event_ts < ?1")
                .map_err(|e| e.to_string())?;
            stmt.query_map([cutoff], |r| r.get(0))
                .and_then(Iterator::collect)
                .map_err(|e| e.to_string())?
        };
        let mut deleted = 0;
        for id in streams {
            deleted += conn
                .execute(
                    "DELETE FROM log_events WHERE stream_id = ?1 AND timestamp < ?2",
                    params![id, cutoff],
                )
                .map_err(|e| e.to_string())?;
            conn.execute(
                "UPDATE log_streams SET first_event_ts =
                     (SELECT min(timestamp) FROM log_events WHERE stream_id = ?1)
                 WHERE id = ?1",
                [id],
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(deleted)
    }

    /// Sweeps every [`SWEEP_INTERVAL`] until the task is aborted.
    pub fn spawn_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tick.tick().await;
                let store = store.clone();
                match tokio::task::spawn_blocking(move || store.sweep(now_ms())).await {
                    Ok(Ok(n)) if n > 0 => tracing::info!(deleted = n, "expired log events"),
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "log retention sweep failed"),
                    Err(error) => tracing::warn!(%error, "log retention sweep panicked"),
                }
            }
        })
    }
}

fn group_id(conn: &Connection, name: &str) -> Result<Option<i64>, EcsError> {
    conn.query_row("SELECT id FROM log_groups WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()
    .map_err(backend)
}

fn stream_id(conn: &Connection, group: i64, name: &str) -> Result<Option<i64>, EcsError> {
    conn.query_row(
        "SELECT id FROM log_streams WHERE group_id = ?1 AND name = ?2",
        params![group, name],
        |r| r.get(0),
    )
    .optional()
    .map_err(backend)
}

fn ensure_group(conn: &Connection, name: &str, now: i64) -> Result<i64, EcsError> {
    conn.execute(
        "INSERT OR IGNORE INTO log_groups (name, created_at) VALUES (?1, ?2)",
        params![name, now],
    )
    .map_err(backend)?;
    group_id(conn, name)?.ok_or_else(|| not_found("group"))
}

fn ensure_stream(conn: &Connection, group: i64, name: &str, now: i64) -> Result<i64, EcsError> {
    conn.execute(
        "INSERT OR IGNORE INTO log_streams (group_id, name, created_at) VALUES (?1, ?2, ?3)",
        params![group, name, now],
    )
    .map_err(backend)?;
    stream_id(conn, group, name)?.ok_or_else(|| not_found("stream"))
}

fn check_name(what: &str, name: &str) -> Result<(), EcsError> {
    if name.is_empty() || name.len() > MAX_NAME || name.contains(':') || name.contains('*') {
        return Err(EcsError::invalid_parameter(format!(
            "Invalid {what}: must be 1-{MAX_NAME} characters without ':' or '*'."
        )));
    }
    Ok(())
}

// ---- wire types ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputLogEvent {
    pub timestamp: i64,
    pub message: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutLogEventsRequest {
    log_group_name: String,
    log_stream_name: String,
    log_events: Vec<InputLogEvent>,
    #[serde(default)]
    #[allow(dead_code)]
    sequence_token: Option<String>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct RejectedLogEventsInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    too_new_log_event_start_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    too_old_log_event_end_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expired_log_event_end_index: Option<usize>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct PutLogEventsResponse {
    next_sequence_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected_log_events_info: Option<RejectedLogEventsInfo>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetLogEventsRequest {
    #[serde(default)]
    log_group_name: Option<String>,
    /// A name or an ARN (`arn:aws:logs:…:log-group:NAME`).
    #[serde(default)]
    log_group_identifier: Option<String>,
    log_stream_name: String,
    #[serde(default)]
    start_time: Option<i64>,
    #[serde(default)]
    end_time: Option<i64>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    start_from_head: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputLogEvent {
    pub timestamp: i64,
    pub message: String,
    pub ingestion_time: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GetLogEventsResponse {
    events: Vec<OutputLogEvent>,
    next_forward_token: String,
    next_backward_token: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterLogEventsRequest {
    #[serde(default)]
    log_group_name: Option<String>,
    #[serde(default)]
    log_group_identifier: Option<String>,
    #[serde(default)]
    log_stream_names: Option<Vec<String>>,
    #[serde(default)]
    log_stream_name_prefix: Option<String>,
    #[serde(default)]
    start_time: Option<i64>,
    #[serde(default)]
    end_time: Option<i64>,
    #[serde(default)]
    filter_pattern: Option<String>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FilteredLogEvent {
    log_stream_name: String,
    timestamp: i64,
    message: String,
    ingestion_time: i64,
    event_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FilterLogEventsResponse {
    events: Vec<FilteredLogEvent>,
    searched_log_streams: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateLogGroupRequest {
    log_group_name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateLogStreamRequest {
    log_group_name: String,
    log_stream_name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeLogStreamsRequest {
    #[serde(default)]
    log_group_name: Option<String>,
    #[serde(default)]
    log_group_identifier: Option<String>,
    #[serde(default)]
    log_stream_name_prefix: Option<String>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LogStreamInfo {
    log_stream_name: String,
    creation_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_event_timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_event_timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_ingestion_time: Option<i64>,
    arn: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DescribeLogStreamsResponse {
    log_streams: Vec<LogStreamInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<String>,
}

// ---- dispatch ----

/// Routes a CloudWatch Logs operation (the target without its prefix).
pub async fn dispatch(store: &LogStore, operation: &str, body: &[u8]) -> Result<Bytes, EcsError> {
    match operation {
        "PutLogEvents" => encode(&store.put(decode(body)?).await?),
        "GetLogEvents" => encode(&store.get(decode(body)?).await?),
        "FilterLogEvents" => encode(&store.filter(decode(body)?).await?),
        "CreateLogGroup" => {
            let req: CreateLogGroupRequest = decode(body)?;
            store.create_group(req.log_group_name).await?;
            Ok(Bytes::from_static(b"{}"))
        }
        "CreateLogStream" => {
            let req: CreateLogStreamRequest = decode(body)?;
            store
                .create_stream(req.log_group_name, req.log_stream_name)
                .await?;
            Ok(Bytes::from_static(b"{}"))
        }
        "DescribeLogStreams" => encode(&store.describe_streams(decode(body)?).await?),
        other => Err(EcsError::new(
            ErrorCode::UnknownOperationException,
            format!("Unknown operation {TARGET_PREFIX}{other}."),
        )),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Bytes, EcsError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| EcsError::server(format!("cannot encode the response: {e}")))
}

/// `arn:aws:logs:REGION:ACCOUNT:log-group:NAME[:*]` or a plain name.
fn group_name(name: Option<String>, identifier: Option<String>) -> Result<String, EcsError> {
    let name = match (name, identifier) {
        (Some(_), Some(_)) => {
            return Err(EcsError::invalid_parameter(
                "LogGroup name and LogGroup identifier are mutually exclusive parameters.",
            ));
        }
        (Some(name), None) => name,
        (None, Some(id)) => match id.split_once(":log-group:") {
            Some((_, rest)) => rest.trim_end_matches(":*").to_owned(),
            None => id,
        },
        (None, None) => {
            return Err(EcsError::invalid_parameter(
                "Either logGroupName or logGroupIdentifier is required.",
            ));
        }
    };
    check_name("logGroupName", &name)?;
    Ok(name)
}

fn limit(value: Option<i64>, max: i64) -> Result<i64, EcsError> {
    match value {
        None => Ok(max),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(EcsError::invalid_parameter(format!(
            "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {max}"
        ))),
    }
}

/// A position in a stream: the event with this `seq` (0: before every event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Forward(i64),
    Backward(i64),
}

impl Token {
    fn parse(token: &str) -> Result<Self, EcsError> {
        let bad = || EcsError::invalid_parameter("The specified nextToken is invalid.");
        let (kind, seq) = token.split_once('/').ok_or_else(bad)?;
        let seq: i64 = seq.parse().map_err(|_| bad())?;
        match kind {
            "f" => Ok(Token::Forward(seq)),
            "b" => Ok(Token::Backward(seq)),
            _ => Err(bad()),
        }
    }
}

struct Row {
    seq: i64,
    timestamp: i64,
    ingestion_time: i64,
    message: String,
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        seq: r.get(0)?,
        timestamp: r.get(1)?,
        ingestion_time: r.get(2)?,
        message: r.get(3)?,
    })
}

/// Keeps rows until `limit` or the 1 MB response size is reached.
fn cap(rows: impl Iterator<Item = rusqlite::Result<Row>>) -> Result<Vec<Row>, EcsError> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for row in rows {
        let row = row.map_err(backend)?;
        bytes += row.message.len() + EVENT_OVERHEAD;
        if bytes > MAX_RESPONSE_BYTES && !out.is_empty() {
            break;
        }
        out.push(row);
    }
    Ok(out)
}

impl LogStore {
    async fn put(&self, req: PutLogEventsRequest) -> Result<PutLogEventsResponse, EcsError> {
        check_name("logGroupName", &req.log_group_name)?;
        check_name("logStreamName", &req.log_stream_name)?;
        let events = req.log_events;
        if events.is_empty() || events.len() > MAX_EVENTS_PER_PUT {
            return Err(EcsError::invalid_parameter(format!(
                "logEvents must hold between 1 and {MAX_EVENTS_PER_PUT} events."
            )));
        }
        let size: usize = events
            .iter()
            .map(|e| e.message.len() + EVENT_OVERHEAD)
            .sum();
        if size > MAX_PUT_BYTES {
            return Err(EcsError::invalid_parameter(format!(
                "Log events in a single PutLogEvents request must be at most {MAX_PUT_BYTES} bytes."
            )));
        }
        if events.windows(2).any(|w| w[1].timestamp < w[0].timestamp) {
            return Err(EcsError::invalid_parameter(
                "Log events in a single PutLogEvents request must be in chronological order.",
            ));
        }
        if events[events.len() - 1].timestamp - events[0].timestamp > MAX_BATCH_SPAN_MS {
            return Err(EcsError::invalid_parameter(
                "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
            ));
        }
        let retention_ms = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        self.with(move |conn| {
            let now = now_ms();
            // Sorted, so the expired ones lead and the too-new ones trail.
            let expired = events
                .iter()
                .take_while(|e| e.timestamp < now - retention_ms)
                .count();
            let too_new = events
                .iter()
                .rev()
                .take_while(|e| e.timestamp > now + MAX_FUTURE_MS)
                .count();
            let accepted = &events[expired..events.len() - too_new.min(events.len() - expired)];
            let tx = conn.transaction().map_err(backend)?;
            let group = ensure_group(&tx, &req.log_group_name, now)?;
            let stream = ensure_stream(&tx, group, &req.log_stream_name, now)?;
            if let (Some(first), Some(last)) = (accepted.first(), accepted.last()) {
                {
                    let mut insert = tx
                        .prepare_cached(
                            "INSERT INTO log_events (stream_id, timestamp, ingestion_time, message)
                             VALUES (?1, ?2, ?3, ?4)",
                        )
                        .map_err(backend)?;
                    for event in accepted {
                        insert
                            .execute(params![stream, event.timestamp, now, event.message])
                            .map_err(backend)?;
                    }
                }
                tx.execute(
                    "UPDATE log_streams SET
                         first_event_ts = min(coalesce(first_event_ts, ?2), ?2),
                         last_event_ts = max(coalesce(last_event_ts, ?3), ?3),
                         last_ingestion_ts = ?4
                     WHERE id = ?1",
                    params![stream, first.timestamp, last.timestamp, now],
                )
                .map_err(backend)?;
            }
            let next: i64 = tx
                .query_row("SELECT coalesce(max(seq), 0) FROM log_events", [], |r| {
                    r.get(0)
                })
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            let rejected = (expired > 0 || too_new > 0).then(|| RejectedLogEventsInfo {
                too_new_log_event_start_index: (too_new > 0).then(|| events.len() - too_new),
                too_old_log_event_end_index: None,
                expired_log_event_end_index: (expired > 0).then_some(expired),
            });
            Ok(PutLogEventsResponse {
                next_sequence_token: format!("{next:056}"),
                rejected_log_events_info: rejected,
            })
        })
        .await
    }

    async fn get(&self, req: GetLogEventsRequest) -> Result<GetLogEventsResponse, EcsError> {
        let group = group_name(req.log_group_name, req.log_group_identifier)?;
        check_name("logStreamName", &req.log_stream_name)?;
        let limit = limit(req.limit, MAX_GET_LIMIT)?;
        let token = req.next_token.as_deref().map(Token::parse).transpose()?;
        let start = req.start_time.unwrap_or(i64::MIN);
        let end = req.end_time.unwrap_or(i64::MAX);
        let from_head = req.start_from_head.unwrap_or(false);
        let stream_name = req.log_stream_name;
        self.with(move |conn| {
            let group = group_id(conn, &group)?.ok_or_else(|| not_found("group"))?;
            let stream =
                stream_id(conn, group, &stream_name)?.ok_or_else(|| not_found("stream"))?;
            // The (timestamp, seq) key of the token's event; a token whose
            // event has expired points before everything left.
            let key = |seq: i64| -> Result<(i64, i64), EcsError> {
                if seq == 0 {
                    return Ok((i64::MIN, 0));
                }
                Ok(conn
                    .query_row(
                        "SELECT timestamp FROM log_events WHERE seq = ?1",
                        [seq],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()
                    .map_err(backend)?
                    .map_or((i64::MIN, 0), |ts| (ts, seq)))
            };
            const COLUMNS: &str = "SELECT seq, timestamp, ingestion_time, message FROM log_events";
            let forward = |after: (i64, i64)| -> Result<Vec<Row>, EcsError> {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "{COLUMNS} WHERE stream_id = ?1 AND timestamp >= ?2 AND timestamp < ?3
                           AND (timestamp, seq) > (?4, ?5)
                         ORDER BY timestamp, seq LIMIT ?6"
                    ))
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(
                        params![stream, start, end, after.0, after.1, limit],
                        read_row,
                    )
                    .map_err(backend)?;
                cap(rows)
            };
            let backward = |before: (i64, i64)| -> Result<Vec<Row>, EcsError> {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "{COLUMNS} WHERE stream_id = ?1 AND timestamp >= ?2 AND timestamp < ?3
                           AND (timestamp, seq) < (?4, ?5)
                         ORDER BY timestamp DESC, seq DESC LIMIT ?6"
                    ))
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(
                        params![stream, start, end, before.0, before.1, limit],
                        read_row,
                    )
                    .map_err(backend)?;
                let mut rows = cap(rows)?;
                rows.reverse();
                Ok(rows)
            };
            let (rows, at) = match token {
                Some(Token::Forward(seq)) => (forward(key(seq)?)?, Token::Forward(seq)),
                Some(Token::Backward(seq)) => {
                    let k = key(seq)?;
                    let rows = if k.1 == 0 { Vec::new() } else { backward(k)? };
                    (rows, Token::Backward(seq))
                }
                None if from_head => (forward((i64::MIN, 0))?, Token::Forward(0)),
                None => (backward((i64::MAX, i64::MAX))?, Token::Backward(0)),
            };
            let (forward_token, backward_token) = match (rows.first(), rows.last()) {
                (Some(first), Some(last)) => {
                    (format!("f/{}", last.seq), format!("b/{}", first.seq))
                }
                // Nothing here: both tokens stay where the caller was, so
                // pollers see the same token again (CloudWatch's end marker).
                _ => match at {
                    Token::Forward(seq) => (format!("f/{seq}"), format!("b/{seq}")),
                    Token::Backward(0) => ("f/0".to_owned(), "b/0".to_owned()),
                    Token::Backward(seq) => (format!("f/{seq}"), format!("b/{seq}")),
                },
            };
            Ok(GetLogEventsResponse {
                events: rows
                    .into_iter()
                    .map(|r| OutputLogEvent {
                        timestamp: r.timestamp,
                        message: r.message,
                        ingestion_time: r.ingestion_time,
                    })
                    .collect(),
                next_forward_token: forward_token,
                next_backward_token: backward_token,
            })
        })
        .await
    }

    async fn filter(
        &self,
        req: FilterLogEventsRequest,
    ) -> Result<FilterLogEventsResponse, EcsError> {
        let group = group_name(req.log_group_name, req.log_group_identifier)?;
        if req.log_stream_names.is_some() && req.log_stream_name_prefix.is_some() {
            return Err(EcsError::invalid_parameter(
                "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.",
            ));
        }
        let limit = limit(req.limit, MAX_GET_LIMIT)?;
        let after: (i64, i64) = match req.next_token.as_deref() {
            None => (i64::MIN, 0),
            Some(token) => token
                .split_once('/')
                .and_then(|(ts, seq)| Some((ts.parse().ok()?, seq.parse().ok()?)))
                .ok_or_else(|| {
                    EcsError::invalid_parameter("The specified nextToken is invalid.")
                })?,
        };
        let start = req.start_time.unwrap_or(i64::MIN);
        let end = req.end_time.unwrap_or(i64::MAX);
        let terms: Vec<String> = req
            .filter_pattern
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(|t| t.trim_matches('"').to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        let names = req.log_stream_names;
        let prefix = req.log_stream_name_prefix;
        self.with(move |conn| {
            let group = group_id(conn, &group)?.ok_or_else(|| not_found("group"))?;
            let mut streams: Vec<(i64, String)> = {
                let mut stmt = conn
                    .prepare_cached("SELECT id, name FROM log_streams WHERE group_id = ?1")
                    .map_err(backend)?;
                stmt.query_map([group], |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(Iterator::collect)
                    .map_err(backend)?
            };
            if let Some(names) = &names {
                streams.retain(|(_, n)| names.contains(n));
            }
            if let Some(prefix) = &prefix {
                streams.retain(|(_, n)| n.starts_with(prefix.as_str()));
            }
            let mut found: Vec<(Row, String)> = Vec::new();
            for (id, name) in &streams {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT seq, timestamp, ingestion_time, message FROM log_events
                         WHERE stream_id = ?1 AND timestamp >= ?2 AND timestamp < ?3
                           AND (timestamp, seq) > (?4, ?5)
                         ORDER BY timestamp, seq",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![id, start, end, after.0, after.1], read_row)
                    .map_err(backend)?;
                let mut taken = 0;
                for row in rows {
                    let row = row.map_err(backend)?;
                    if terms.iter().all(|t| row.message.contains(t.as_str())) {
                        found.push((row, name.clone()));
                        taken += 1;
                        if taken > limit {
                            break;
                        }
                    }
                }
            }
            found.sort_by_key(|(r, _)| (r.timestamp, r.seq));
            let more = found.len() > usize::try_from(limit).unwrap_or(usize::MAX);
            found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            let next_token = more
                .then(|| {
                    found
                        .last()
                        .map(|(r, _)| format!("{}/{}", r.timestamp, r.seq))
                })
                .flatten();
            Ok(FilterLogEventsResponse {
                events: found
                    .into_iter()
                    .map(|(r, stream)| FilteredLogEvent {
                        log_stream_name: stream,
                        timestamp: r.timestamp,
                        message: r.message,
                        ingestion_time: r.ingestion_time,
                        event_id: format!("{:056}", r.seq),
                    })
                    .collect(),
                searched_log_streams: Vec::new(),
                next_token,
            })
        })
        .await
    }

    async fn create_group(&self, name: String) -> Result<(), EcsError> {
        check_name("logGroupName", &name)?;
        self.with(move |conn| {
            let created = conn
                .execute(
                    "INSERT OR IGNORE INTO log_groups (name, created_at) VALUES (?1, ?2)",
                    params![name, now_ms()],
                )
                .map_err(backend)?;
            newly_created(created, "log group")
        })
        .await
    }

    async fn create_stream(&self, group: String, stream: String) -> Result<(), EcsError> {
        check_name("logGroupName", &group)?;
        check_name("logStreamName", &stream)?;
        self.with(move |conn| {
            let group = group_id(conn, &group)?.ok_or_else(|| not_found("group"))?;
            let created = conn
                .execute(
                    "INSERT OR IGNORE INTO log_streams (group_id, name, created_at) VALUES (?1, ?2, ?3)",
                    params![group, stream, now_ms()],
                )
                .map_err(backend)?;
            newly_created(created, "log stream")
        })
        .await
    }

    async fn describe_streams(
        &self,
        req: DescribeLogStreamsRequest,
    ) -> Result<DescribeLogStreamsResponse, EcsError> {
        let group = group_name(req.log_group_name, req.log_group_identifier)?;
        let limit = limit(req.limit, 50)?;
        let after = req.next_token.unwrap_or_default();
        let prefix = req.log_stream_name_prefix.unwrap_or_default();
        self.with(move |conn| {
            let group_name = group.clone();
            let group = group_id(conn, &group)?.ok_or_else(|| not_found("group"))?;
            let mut stmt = conn
                .prepare_cached(
                    "SELECT name, created_at, first_event_ts, last_event_ts, last_ingestion_ts
                     FROM log_streams WHERE group_id = ?1 AND name > ?2 AND substr(name, 1, ?3) = ?4
                     ORDER BY name LIMIT ?5",
                )
                .map_err(backend)?;
            let prefix_len = i64::try_from(prefix.chars().count()).unwrap_or(0);
            let streams: Vec<LogStreamInfo> = stmt
                .query_map(params![group, after, prefix_len, prefix, limit + 1], |r| {
                    let name: String = r.get(0)?;
                    Ok(LogStreamInfo {
                        arn: format!("log-group:{group_name}:log-stream:{name}"),
                        log_stream_name: name,
                        creation_time: r.get(1)?,
                        first_event_timestamp: r.get(2)?,
                        last_event_timestamp: r.get(3)?,
                        last_ingestion_time: r.get(4)?,
                    })
                })
                .and_then(Iterator::collect)
                .map_err(backend)?;
            let mut streams = streams;
            let more = streams.len() > usize::try_from(limit).unwrap_or(usize::MAX);
            streams.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            let next_token = more
                .then(|| streams.last().map(|s| s.log_stream_name.clone()))
                .flatten();
            Ok(DescribeLogStreamsResponse {
                log_streams: streams,
                next_token,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    async fn call(store: &LogStore, op: &str, body: Value) -> Result<Value, EcsError> {
        let bytes = dispatch(store, op, body.to_string().as_bytes()).await?;
        Ok(serde_json::from_slice(&bytes).unwrap())
    }

    fn events(range: std::ops::Range<i64>, base: i64) -> Value {
        Value::Array(
            range
                .map(|i| json!({"timestamp": base + i, "message": format!("line {i}")}))
                .collect(),
        )
    }

    fn messages(response: &Value) -> Vec<String> {
        response["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["message"].as_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn put_then_get_in_order_with_tokens() {
        let store = LogStore::in_memory();
        let base = now_ms() - 10_000;
        call(
            &store,
            "PutLogEvents",
            json!({"logGroupName": "/ecs/web", "logStreamName": "ecs/app/t1", "logEvents": events(0..5, base)}),
        )
        .await
        .unwrap();
        // A later batch with an earlier timestamp sorts by timestamp.
        call(
            &store,
            "PutLogEvents",
            json!({"logGroupName": "/ecs/web", "logStreamName": "ecs/app/t1",
                   "logEvents": [{"timestamp": base - 1, "message": "early"}]}),
        )
        .await
        .unwrap();
        let head = call(
            &store,
            "GetLogEvents",
            json!({"logGroupName": "/ecs/web", "logStreamName": "ecs/app/t1", "startFromHead": true, "limit": 4}),
        )
        .await
        .unwrap();
        assert_eq!(messages(&head), ["early", "line 0", "line 1", "line 2"]);
        assert!(head["events"][0]["ingestionTime"].as_i64().unwrap() >= base);
        let token = head["nextForwardToken"].as_str().unwrap().to_owned();
        assert!(token.starts_with("f/"));
        let rest = call(
            &store,
            "GetLogEvents",
            json!({"logGroupName": "/ecs/web", "logStreamName": "ecs/app/t1", "nextToken": token}),
        )
        .await
        .unwrap();
        assert_eq!(messages(&rest), ["line 3", "line 4"]);
        // At the end the forward token repeats.
        let end_token = rest["nextForwardToken"].as_str().unwrap().to_owned();
        let end = call(
            &store,
            "GetLogEvents",
            json!({"logGroupName": "/ecs/web", "logStreamName": "ecs/app/t1", "nextToken": end_token}),
        )
        .await
        .unwrap();
        assert!(messages(&end).is_empty());
        assert_eq!(end["nextForwardToken"], end_token);
        // Backwards from the second page gives the first page's tail.
        let back = call(
            &store,
            "GetLogEvents",
            json!({"logGroupName": "/ecs/web", "logStreamName": "ecs/app/t1",
                   "nextToken": rest["nextBackwardToken"], "limit": 2}),
        )
        .await
        .unwrap();
        assert_eq!(messages(&back), ["line 1", "line 2"]);
        // Without startFromHead: the latest events.
        let tail = call(
            &store,
            "GetLogEvents",
            json!({"logGroupName": "/ecs/web", "logStreamName": "ecs/app/t1", "limit": 2}),
        )
        .await
        .unwrap();
        assert_eq!(messages(&tail), ["line 3", "line 4"]);
        // Time window: [start, end).
        let window = call(
            &store,
            "GetLogEvents",
            json!({"logGroupName": "/ecs/web", "logStreamName": "ecs/app/t1", "startFromHead": true,
                   "startTime": base + 1, "endTime": base + 3}),
        )
        .await
        .unwrap();
        assert_eq!(messages(&window), ["line 1", "line 2"]);
    }

    #[tokio::test]
    async fn errors_use_cloudwatch_codes() {
        let store = LogStore::in_memory();
        let err = call(
            &store,
            "GetLogEvents",
            json!({"logGroupName": "nope", "logStreamName": "s"}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::ResourceNotFoundException);
        assert_eq!(err.message, "The specified log group does not exist.");
        call(
            &store,
            "PutLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "logEvents": events(0..1, now_ms())}),
        )
        .await
        .unwrap();
        let err = call(
            &store,
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "other"}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::ResourceNotFoundException);
        for (op, body) in [
            (
                "GetLogEvents",
                json!({"logGroupName": "g", "logStreamName": "s", "limit": 0}),
            ),
            (
                "GetLogEvents",
                json!({"logGroupName": "g", "logStreamName": "s", "limit": 10001}),
            ),
            (
                "GetLogEvents",
                json!({"logGroupName": "g", "logStreamName": "s", "nextToken": "x"}),
            ),
            (
                "PutLogEvents",
                json!({"logGroupName": "g", "logStreamName": "s", "logEvents": []}),
            ),
            (
                "PutLogEvents",
                json!({"logGroupName": "g", "logStreamName": "s",
                       "logEvents": [{"timestamp": 2, "message": "b"}, {"timestamp": 1, "message": "a"}]}),
            ),
            (
                "PutLogEvents",
                json!({"logGroupName": "g", "logStreamName": "s", "logEvents": "x"}),
            ),
        ] {
            let err = call(&store, op, body.clone()).await.unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidParameterException, "{body}");
        }
    }

    #[tokio::test]
    async fn limits_and_expiry() {
        let store = LogStore::in_memory();
        let now = now_ms();
        let old = now - i64::try_from(RETENTION.as_millis()).unwrap() - 1000;
        let put = call(
            &store,
            "PutLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s",
                   "logEvents": [{"timestamp": old, "message": "ancient"},
                                 {"timestamp": old + 1, "message": "ancient"}]}),
        )
        .await
        .unwrap();
        assert_eq!(
            put["rejectedLogEventsInfo"],
            json!({"expiredLogEventEndIndex": 2})
        );
        let put = call(
            &store,
            "PutLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s",
                   "logEvents": [{"timestamp": now, "message": "fresh"},
                                 {"timestamp": now + 3 * 3600 * 1000, "message": "future"}]}),
        )
        .await
        .unwrap();
        assert_eq!(
            put["rejectedLogEventsInfo"],
            json!({"tooNewLogEventStartIndex": 1})
        );
        let many: Vec<Value> = (0..10_000)
            .map(|i| json!({"timestamp": now, "message": format!("m{i}")}))
            .collect();
        call(
            &store,
            "PutLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "logEvents": many}),
        )
        .await
        .unwrap();
        let page = call(
            &store,
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true}),
        )
        .await
        .unwrap();
        assert_eq!(page["events"].as_array().unwrap().len(), 10_000);
        assert_eq!(page["events"][0]["message"], "fresh");
        let big = "x".repeat(200_000);
        let huge: Vec<Value> = (0..6)
            .map(|_| json!({"timestamp": now, "message": big}))
            .collect();
        let err = call(
            &store,
            "PutLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "logEvents": huge}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidParameterException);

        // The sweep deletes what the retention no longer covers.
        call(
            &store,
            "PutLogEvents",
            json!({"logGroupName": "g", "logStreamName": "old", "logEvents": [{"timestamp": now - 1000, "message": "x"}]}),
        )
        .await
        .unwrap();
        let later = now + i64::try_from(RETENTION.as_millis()).unwrap();
        assert_eq!(store.sweep(later).unwrap(), 1);
    }

    #[tokio::test]
    async fn filter_across_streams() {
        let store = LogStore::in_memory();
        let now = now_ms();
        for (stream, offset) in [("ecs/a/t1", 0), ("ecs/b/t1", 1), ("other", 2)] {
            call(
                &store,
                "PutLogEvents",
                json!({"logGroupName": "g", "logStreamName": stream,
                       "logEvents": [{"timestamp": now + offset, "message": format!("hello {stream}")},
                                     {"timestamp": now + 10 + offset, "message": "bye"}]}),
            )
            .await
            .unwrap();
        }
        let found = call(
            &store,
            "FilterLogEvents",
            json!({"logGroupName": "g", "logStreamNamePrefix": "ecs/", "filterPattern": "hello"}),
        )
        .await
        .unwrap();
        assert_eq!(messages(&found), ["hello ecs/a/t1", "hello ecs/b/t1"]);
        assert_eq!(found["events"][1]["logStreamName"], "ecs/b/t1");
        let paged = call(
            &store,
            "FilterLogEvents",
            json!({"logGroupName": "g", "logStreamNames": ["ecs/a/t1", "other"], "limit": 3}),
        )
        .await
        .unwrap();
        assert_eq!(messages(&paged), ["hello ecs/a/t1", "hello other", "bye"]);
        let rest = call(
            &store,
            "FilterLogEvents",
            json!({"logGroupName": "g", "logStreamNames": ["ecs/a/t1", "other"], "nextToken": paged["nextToken"]}),
        )
        .await
        .unwrap();
        assert_eq!(messages(&rest), ["bye"]);
        assert!(rest.get("nextToken").is_none());
        let streams = call(
            &store,
            "DescribeLogStreams",
            json!({"logGroupName": "g", "logStreamNamePrefix": "ecs/"}),
        )
        .await
        .unwrap();
        assert_eq!(streams["logStreams"].as_array().unwrap().len(), 2);
    }
}
