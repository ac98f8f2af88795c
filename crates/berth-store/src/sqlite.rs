//! [`SqliteStore`]: the embedded, durable default backend.
//!
//! Transactions are evaluated against an in-memory replica of every key's
//! revisions and version (loaded at open; values are not kept in memory, as
//! every reader of a store keeps its own decoded copy); `get` and `range`
//! read SQLite on a reader connection. Writes go through one writer thread
//! that group-commits: it drains every queued transaction, evaluates them in
//! order against the replica,
//! persists all of them in one SQLite transaction (one fsync, WAL with
//! `synchronous=FULL`), and only then updates the replica, publishes watch
//! events and answers the callers. A change log table keeps recent revisions
//! so that watches can start in the past; it is compacted as it grows.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Batch, Replica, RevisionEvents, no_value};
use crate::watch::{self, DEFAULT_WATCH_BUFFER, History, Hub};
use crate::{
    BoxFuture, Event, EventKind, KeyValue, Result, Revision, Store, StoreError, Txn, TxnResponse,
    WatchStream,
};

/// Default number of revisions the change log keeps for watch replay.
pub const DEFAULT_HISTORY_REVISIONS: i64 = 10_000;

/// Default cap on the transactions committed together in one SQLite
/// transaction; bounds the latency a large burst adds to its first callers.
pub const DEFAULT_MAX_BATCH: usize = 1024;

const SCHEMA_VERSION: i64 = 1;

const KIND_PUT: i64 = 0;
const KIND_DELETE: i64 = 1;

/// Tuning knobs of a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Revisions kept in the change log; watches starting before the kept
    /// window get [`StoreError::Compacted`]. At least 1.
    pub history_revisions: i64,
    /// Capacity, in revisions, of each watcher's buffer. A watcher further
    /// behind than this is caught up from the change log instead of stalling
    /// the writer.
    pub watch_buffer: usize,
    /// Most transactions committed in one SQLite transaction.
    pub max_batch: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            history_revisions: DEFAULT_HISTORY_REVISIONS,
            watch_buffer: DEFAULT_WATCH_BUFFER,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }
}

/// The durable [`Store`] on one SQLite file. Cloning yields another handle to
/// the same store; dropping the last one (or calling [`SqliteStore::close`])
/// stops the writer thread, after which watch streams end.
#[derive(Clone)]
pub struct SqliteStore {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.handle.path)
            .field("revision", &self.handle.shared.replica().revision())
            .finish()
    }
}

/// Owned by user handles only: watch tasks hold [`Shared`] and the log
/// reader, so they never keep the writer alive.
struct Handle {
    path: PathBuf,
    shared: Arc<Shared>,
    requests: mpsc::UnboundedSender<Request>,
    writer: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    replica: RwLock<Replica>,
    hub: Arc<Hub>,
    log: Arc<LogReader>,
    /// Serves `get` and `range`, apart from the log reader so that a long
    /// watch replay never delays a read.
    reads: Arc<Mutex<Connection>>,
    compacted: AtomicI64,
    commits: AtomicU64,
    closed: AtomicBool,
    #[cfg(test)]
    fail_next_commit: AtomicBool,
}

enum Request {
    Txn {
        txn: Txn,
        reply: oneshot::Sender<Result<TxnResponse>>,
    },
    Close,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` with default options.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (creating if needed) the store at `path`. Loads every key into
    /// memory and starts the writer thread. Fails if another [`SqliteStore`]
    /// (in this or another process) has the file open, since two writers
    /// would each serve a stale replica.
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<Self> {
        let lock = lock_file(path)?;
        let mut conn = Connection::open(path).map_err(backend("open database"))?;
        configure(&conn)?;
        // Checkpoints run on their own thread (see `checkpoint_loop`), so a
        // commit never waits for the main database file to be synced.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(backend("disable auto-checkpoint"))?;
        let checkpoint_conn = Connection::open(path).map_err(backend("open checkpointer"))?;
        checkpoint_conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(backend("configure checkpointer"))?;
        init_schema(&mut conn)?;
        let (replica, compacted) = load(&conn)?;
        let reader = open_reader(path, "open log reader")?;
        let reads = open_reader(path, "open reader")?;

        let revision = replica.revision();
        let shared = Arc::new(Shared {
            replica: RwLock::new(replica),
            hub: Arc::new(Hub::new(revision, options.watch_buffer)),
            log: Arc::new(LogReader {
                conn: Arc::new(Mutex::new(reader)),
            }),
            reads: Arc::new(Mutex::new(reads)),
            compacted: AtomicI64::new(compacted),
            commits: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            #[cfg(test)]
            fail_next_commit: AtomicBool::new(false),
        });
        let (requests, receiver) = mpsc::unbounded_channel();
        let writer = Writer {
            conn,
            shared: Arc::clone(&shared),
            requests: receiver,
            history_revisions: options.history_revisions.max(1),
            max_batch: options.max_batch.max(1),
            compacted,
            _lock: lock,
        };
        let thread = std::thread::Builder::new()
            .name("berth-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Backend(format!("spawn writer thread: {e}")))?;
        let checkpointer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("berth-store-checkpoint".into())
                .spawn(move || checkpoint_loop(&checkpoint_conn, &shared))
                .map_err(|e| StoreError::Backend(format!("spawn checkpoint thread: {e}")))?
        };
        tracing::debug!(path = %path.display(), revision, compacted, "opened sqlite store");
        Ok(Self {
            handle: Arc::new(Handle {
                path: path.to_owned(),
                shared,
                requests,
                writer: Mutex::new(Some(thread)),
                checkpointer: Mutex::new(Some(checkpointer)),
            }),
        })
    }

    /// Stops the writer thread after the batch in flight (waiting for at most
    /// one commit); later calls on any handle get [`StoreError::Closed`] and
    /// watch streams end. Dropping the last handle does the same.
    pub fn close(&self) {
        self.handle.shutdown();
    }

    /// How many SQLite transactions have been committed since open. Lower
    /// than the number of writing transactions when group commit batched them.
    pub fn commit_batches(&self) -> u64 {
        self.handle.shared.commits.load(Ordering::Relaxed)
    }

    /// The newest revision dropped from the change log (0 if none); watches
    /// must start after it.
    pub fn compacted_revision(&self) -> Revision {
        self.handle.shared.compacted.load(Ordering::Acquire)
    }

    /// Runs `read` on the reader connection off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = Arc::clone(&self.check_open()?.reads);
        tokio::task::spawn_blocking(move || read(&mut conn.lock().expect("reader lock poisoned")))
            .await
            .map_err(|e| StoreError::Backend(format!("reader task: {e}")))?
    }

    fn check_open(&self) -> Result<&Shared> {
        let shared = &*self.handle.shared;
        if shared.closed.load(Ordering::Acquire) {
            Err(StoreError::Closed)
        } else {
            Ok(shared)
        }
    }
}

impl Handle {
    fn shutdown(&self) {
        // The writer may already be gone; then there is nothing to stop.
        let _ = self.requests.send(Request::Close);
        let thread = self
            .writer
            .lock()
            .expect("writer handle lock poisoned")
            .take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "store writer thread panicked");
        }
        // The writer marked the store closed on exit, which ends the loop.
        let checkpointer = self
            .checkpointer
            .lock()
            .expect("checkpointer handle lock poisoned")
            .take();
        if let Some(thread) = checkpointer
            && thread.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "store checkpoint thread panicked");
        }
    }
}

/// How often the WAL is copied back into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);

/// Copies the WAL into the database file in the background. PASSIVE never
/// blocks the writer; once a checkpoint has caught up, the next commit
/// restarts the WAL from its beginning, overwriting pages the file already
/// has. Syncing an overwrite is far cheaper than syncing an append, which
/// is what keeps commit latency flat.
fn checkpoint_loop(conn: &Connection, shared: &Shared) {
    while !shared.closed.load(Ordering::Acquire) {
        std::thread::sleep(CHECKPOINT_INTERVAL);
        if let Err(err) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(%err, "WAL checkpoint failed; retrying");
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn replica(&self) -> RwLockReadGuard<'_, Replica> {
        self.replica.read().expect("store replica lock poisoned")
    }
}

impl Store for SqliteStore {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>>> {
        let key = key.to_owned();
        Box::pin(async move {
            let (mut found, _) = self.read(move |conn| read_keys(conn, &key, true)).await?;
            Ok(found.pop())
        })
    }

    fn range(&self, prefix: &str) -> BoxFuture<'_, Result<(Vec<KeyValue>, Revision)>> {
        let prefix = prefix.to_owned();
        Box::pin(self.read(move |conn| read_keys(conn, &prefix, false)))
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse>> {
        Box::pin(async move {
            let (reply, response) = oneshot::channel();
            self.handle
                .requests
                .send(Request::Txn { txn, reply })
                .map_err(|_| StoreError::Closed)?;
            // A dropped reply means the writer stopped before reaching us.
            response.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn watch(&self, prefix: &str, from: Revision) -> BoxFuture<'_, Result<WatchStream>> {
        let prefix = prefix.to_owned();
        Box::pin(async move {
            let shared = self.check_open()?;
            let from = from.max(1);
            let compacted = shared.compacted.load(Ordering::Acquire);
            if from <= compacted {
                return Err(watch::compacted(from, compacted));
            }
            let history: Arc<dyn History> = shared.log.clone();
            Ok(watch::spawn(Arc::clone(&shared.hub), history, prefix, from))
        })
    }

    fn revision(&self) -> BoxFuture<'_, Result<Revision>> {
        Box::pin(async move { Ok(self.check_open()?.replica().revision()) })
    }
}

/// The single writer: owns the write connection and the process lock.
struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    requests: mpsc::UnboundedReceiver<Request>,
    history_revisions: i64,
    max_batch: usize,
    /// The compacted revision as committed in SQLite.
    compacted: Revision,
    _lock: File,
}

type Pending = (Txn, oneshot::Sender<Result<TxnResponse>>);

/// Marks the store closed however the writer exits, panics included, so
/// that callers and watchers are never left waiting on a dead thread.
struct CloseOnExit(Arc<Shared>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.hub.close();
    }
}

impl Writer {
    fn run(mut self) {
        let _close = CloseOnExit(Arc::clone(&self.shared));
        let mut batch: Vec<Pending> = Vec::new();
        while let Some(request) = self.requests.blocking_recv() {
            let mut closing = false;
            match request {
                Request::Txn { txn, reply } => batch.push((txn, reply)),
                Request::Close => closing = true,
            }
            while !closing && batch.len() < self.max_batch {
                match self.requests.try_recv() {
                    Ok(Request::Txn { txn, reply }) => batch.push((txn, reply)),
                    Ok(Request::Close) => closing = true,
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.commit(std::mem::take(&mut batch));
            }
            if closing {
                break;
            }
        }
        // Requests still queued are dropped with the receiver; their callers
        // see a dropped reply and report `Closed`.
        tracing::debug!("sqlite store writer stopped");
    }

    fn commit(&mut self, batch: Vec<Pending>) {
        let (responses, revisions) = {
            let replica = self.shared.replica();
            let mut evaluation = Batch::new(&replica);
            let responses: Vec<TxnResponse> = batch
                .iter()
                .map(|(txn, _)| evaluation.execute(txn))
                .collect();
            (responses, evaluation.into_revisions())
        };
        if !revisions.is_empty() {
            match self.persist(&revisions) {
                Ok(compacted) => self.compacted = compacted,
                Err(error) => {
                    tracing::error!(%error, txns = batch.len(), "store commit failed");
                    // Dropping the transaction rolls back; make sure nothing
                    // is left open to poison every later batch.
                    if !self.conn.is_autocommit() {
                        let _ = self.conn.execute_batch("ROLLBACK");
                    }
                    let message = format!("commit: {error}");
                    for (_, reply) in batch {
                        let _ = reply.send(Err(StoreError::Backend(message.clone())));
                    }
                    return;
                }
            }
            self.shared
                .replica
                .write()
                .expect("store replica lock poisoned")
                .apply(&revisions);
            self.shared
                .compacted
                .store(self.compacted, Ordering::Release);
            self.shared.hub.publish(&revisions);
        }
        for ((_, reply), response) in batch.into_iter().zip(responses) {
            // The caller may have given up waiting; its write stands regardless.
            let _ = reply.send(Ok(response));
        }
    }

    /// Writes the batch in one SQLite transaction and returns the compacted
    /// revision it leaves. Nothing is visible to readers until this succeeds.
    fn persist(&mut self, revisions: &[RevisionEvents]) -> rusqlite::Result<Revision> {
        let Some(&(last, _)) = revisions.last() else {
            return Ok(self.compacted);
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut put = tx.prepare_cached(
                "INSERT INTO kv (key, value, create_revision, mod_revision, version)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                   create_revision = excluded.create_revision,
                   mod_revision = excluded.mod_revision, version = excluded.version",
            )?;
            let mut delete = tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?;
            let mut log = tx.prepare_cached(
                "INSERT INTO log (revision, seq, key, kind, value, create_revision, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (revision, events) in revisions {
                for (seq, event) in (0_i64..).zip(events) {
                    let kv = &event.kv;
                    let kind = match event.kind {
                        EventKind::Put => {
                            put.execute(params![
                                kv.key,
                                &kv.value[..],
                                kv.create_revision,
                                kv.mod_revision,
                                kv.version
                            ])?;
                            KIND_PUT
                        }
                        EventKind::Delete => {
                            delete.execute([&kv.key])?;
                            KIND_DELETE
                        }
                    };
                    log.execute(params![
                        revision,
                        seq,
                        kv.key,
                        kind,
                        &kv.value[..],
                        kv.create_revision,
                        kv.version
                    ])?;
                }
            }
        }
        tx.execute("UPDATE meta SET value = ?1 WHERE name = 'revision'", [last])?;

        // Compacting in steps of a tenth of the window keeps each delete
        // small while the log stays within 110% of the window.
        let mut compacted = self.compacted;
        let horizon = last - self.history_revisions;
        if horizon - compacted >= (self.history_revisions / 10).max(1) {
            tx.execute("DELETE FROM log WHERE revision <= ?1", [horizon])?;
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE name = 'compacted'",
                [horizon],
            )?;
            compacted = horizon;
        }

        #[cfg(test)]
        if self.shared.fail_next_commit.swap(false, Ordering::SeqCst) {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                Some("injected commit failure".into()),
            ));
        }

        tx.commit()?;
        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        Ok(compacted)
    }
}

/// Serves watch replays from the change log on its own read-only connection,
/// so replays never queue behind the writer.
struct LogReader {
    conn: Arc<Mutex<Connection>>,
}

impl History for LogReader {
    fn read(
        &self,
        prefix: &str,
        from: Revision,
        to: Revision,
    ) -> BoxFuture<'_, Result<Vec<RevisionEvents>>> {
        let conn = Arc::clone(&self.conn);
        let prefix = prefix.to_owned();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = conn.lock().expect("log reader lock poisoned");
                read_log(&mut conn, &prefix, from, to)
            })
            .await
            .map_err(|e| StoreError::Backend(format!("log reader task: {e}")))?
        })
    }
}

/// The key `key` (when `exact`) or every key starting with it, sorted, and
/// the revision they were read at: one read transaction, so the rows and the
/// revision agree. The revision may be ahead of the replica's, which is
/// applied after the commit; watches starting there skip what they missed.
fn read_keys(conn: &mut Connection, key: &str, exact: bool) -> Result<(Vec<KeyValue>, Revision)> {
    let tx = conn.transaction().map_err(backend("read keys"))?;
    let revision = meta(&tx, "revision").map_err(backend("read keys"))?;
    let columns = "SELECT key, value, create_revision, mod_revision, version FROM kv";
    let mut statement;
    let rows = if exact {
        statement = tx
            .prepare_cached(&format!("{columns} WHERE key = ?1"))
            .map_err(backend("read keys"))?;
        statement.query_map([key], key_value)
    } else if let Some(end) = prefix_end(key) {
        statement = tx
            .prepare_cached(&format!(
                "{columns} WHERE key >= ?1 AND key < ?2 ORDER BY key"
            ))
            .map_err(backend("read keys"))?;
        statement.query_map(params![key, end], key_value)
    } else {
        statement = tx
            .prepare_cached(&format!("{columns} WHERE key >= ?1 ORDER BY key"))
            .map_err(backend("read keys"))?;
        statement.query_map([key], key_value)
    }
    .map_err(backend("read keys"))?;
    let keys = rows
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(backend("read keys"))?;
    Ok((keys, revision))
}

fn key_value(row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyValue> {
    let value: Vec<u8> = row.get(1)?;
    Ok(KeyValue {
        key: row.get(0)?,
        value: Arc::from(value),
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
        version: row.get(4)?,
    })
}

/// The least string greater than every string starting with `prefix`, so a
/// prefix scan is an index range; `None` when there is none (no upper bound).
/// SQLite compares TEXT bytewise, and UTF-8 byte order is code point order.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn open_reader(path: &Path, context: &'static str) -> Result<Connection> {
    let reader = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend(context))?;
    reader
        .busy_timeout(Duration::from_secs(5))
        .map_err(backend(context))?;
    Ok(reader)
}

fn read_log(
    conn: &mut Connection,
    prefix: &str,
    from: Revision,
    to: Revision,
) -> Result<Vec<RevisionEvents>> {
    // One read transaction, so the compaction check and the rows agree.
    let tx = conn.transaction().map_err(backend("read log"))?;
    let compacted = meta(&tx, "compacted").map_err(backend("read log"))?;
    if from <= compacted {
        return Err(watch::compacted(from, compacted));
    }
    let mut statement = tx
        .prepare_cached(
            "SELECT revision, key, kind, value, create_revision, version FROM log
             WHERE revision >= ?1 AND revision <= ?2 AND substr(key, 1, length(?3)) = ?3
             ORDER BY revision, seq",
        )
        .map_err(backend("read log"))?;
    let rows = statement
        .query_map(params![from, to, prefix], |row| {
            let revision: Revision = row.get(0)?;
            let kind: i64 = row.get(2)?;
            let value: Vec<u8> = row.get(3)?;
            Ok((
                revision,
                Event {
                    kind: if kind == KIND_DELETE {
                        EventKind::Delete
                    } else {
                        EventKind::Put
                    },
                    kv: KeyValue {
                        key: row.get(1)?,
                        value: Arc::from(value),
                        create_revision: row.get(4)?,
                        mod_revision: revision,
                        version: row.get(5)?,
                    },
                },
            ))
        })
        .map_err(backend("read log"))?;
    let mut revisions: Vec<RevisionEvents> = Vec::new();
    for row in rows {
        let (revision, event) = row.map_err(backend("read log"))?;
        match revisions.last_mut() {
            Some((last, events)) if *last == revision => events.push(event),
            _ => revisions.push((revision, vec![event])),
        }
    }
    Ok(revisions)
}

fn backend(context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |error| StoreError::Backend(format!("{context}: {error}"))
}

/// Takes an exclusive advisory lock on `<path>-lock`, held by the writer
/// thread for the life of the store; the OS releases it if the process dies.
fn lock_file(path: &Path) -> Result<File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push("-lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            StoreError::Backend(format!("open {}: {e}", Path::new(&lock_path).display()))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::Backend(format!(
            "{} is already open by another store",
            path.display()
        ))),
        Err(TryLockError::Error(e)) => Err(StoreError::Backend(format!(
            "lock {}: {e}",
            Path::new(&lock_path).display()
        ))),
    }
}

fn configure(conn: &Connection) -> Result<()> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(backend("enable WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "journal_mode is {mode}; WAL is required"
        )));
    }
    // FULL makes every commit fsync the WAL: an acknowledged write survives
    // a crash or power loss, which NORMAL does not promise in WAL mode.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(backend("set synchronous"))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(backend("set busy timeout"))?;
    Ok(())
}

fn init_schema(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend("create schema"))?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS kv (
             key TEXT PRIMARY KEY NOT NULL,
             value BLOB NOT NULL,
             create_revision INTEGER NOT NULL,
             mod_revision INTEGER NOT NULL,
             version INTEGER NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS meta (
             name TEXT PRIMARY KEY NOT NULL,
             value INTEGER NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS log (
             revision INTEGER NOT NULL,
             seq INTEGER NOT NULL,
             key TEXT NOT NULL,
             kind INTEGER NOT NULL,
             value BLOB NOT NULL,
             create_revision INTEGER NOT NULL,
             version INTEGER NOT NULL,
             PRIMARY KEY (revision, seq)
         ) WITHOUT ROWID;
         INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0);
         INSERT OR IGNORE INTO meta (name, value) VALUES ('compacted', 0);",
    )
    .map_err(backend("create schema"))?;
    tx.execute(
        "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', ?1)",
        [SCHEMA_VERSION],
    )
    .map_err(backend("create schema"))?;
    let schema = meta(&tx, "schema").map_err(backend("read schema version"))?;
    if schema != SCHEMA_VERSION {
        return Err(StoreError::Backend(format!(
            "unsupported schema version {schema} (expected {SCHEMA_VERSION})"
        )));
    }
    tx.commit().map_err(backend("create schema"))
}

fn meta(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |row| {
        row.get(0)
    })
    .optional()
    .map(Option::unwrap_or_default)
}

/// Reads every key's revisions and version (not its value), and the
/// revision counters.
fn load(conn: &Connection) -> Result<(Replica, Revision)> {
    let revision = meta(conn, "revision").map_err(backend("load revision"))?;
    let compacted = meta(conn, "compacted").map_err(backend("load revision"))?;
    let mut statement = conn
        .prepare("SELECT key, create_revision, mod_revision, version FROM kv")
        .map_err(backend("load keys"))?;
    let rows = statement
        .query_map([], |row| {
            Ok(KeyValue {
                key: row.get(0)?,
                value: no_value(),
                create_revision: row.get(1)?,
                mod_revision: row.get(2)?,
                version: row.get(3)?,
            })
        })
        .map_err(backend("load keys"))?;
    let mut keys = Vec::new();
    for row in rows {
        let kv = row.map_err(backend("load keys"))?;
        if kv.mod_revision > revision {
            return Err(StoreError::Backend(format!(
                "key {:?} has mod revision {} beyond store revision {revision}",
                kv.key, kv.mod_revision
            )));
        }
        keys.push(kv);
    }
    Ok((Replica::metadata_only(keys, revision), compacted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_exactly_the_keys_with_the_prefix() {
        assert_eq!(prefix_end("a/b/"), Some("a/b0".to_owned()));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a\u{10FFFF}"), Some("b".to_owned()));
        // The surrogate gap is skipped: no char lies between these two.
        assert_eq!(prefix_end("\u{D7FF}"), Some("\u{E000}".to_owned()));
        let end = prefix_end("k/").expect("bounded");
        for key in ["k/", "k/x", "k/\u{10FFFF}\u{10FFFF}"] {
            assert!(key < end.as_str(), "{key}");
        }
        assert!("k0" >= end.as_str());
    }

    #[tokio::test]
    async fn failed_commit_fails_the_whole_batch_and_leaves_no_trace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        let store = SqliteStore::open(&path).expect("open");
        store
            .txn(Txn::new().put("a", "1"))
            .await
            .expect("first write");
        store
            .handle
            .shared
            .fail_next_commit
            .store(true, Ordering::SeqCst);
        let error = store.txn(Txn::new().put("a", "2").put("b", "1")).await;
        assert!(matches!(error, Err(StoreError::Backend(_))), "{error:?}");
        assert_eq!(store.revision().await.expect("revision"), 1);
        let a = store.get("a").await.expect("get").expect("a exists");
        assert_eq!(&*a.value, b"1");
        assert!(store.get("b").await.expect("get").is_none());

        // The store keeps working, and numbering continues without a hole.
        let response = store
            .txn(Txn::new().put("b", "2"))
            .await
            .expect("write after failure");
        assert_eq!(response.revision, 2);
        drop(store);
        let store = SqliteStore::open(&path).expect("reopen");
        assert_eq!(store.revision().await.expect("revision"), 2);
        let a = store.get("a").await.expect("get").expect("a exists");
        assert_eq!((&*a.value, a.version), (&b"1"[..], 1));
    }

    #[tokio::test]
    async fn every_txn_of_a_failed_batch_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("open"));
        store
            .handle
            .shared
            .fail_next_commit
            .store(true, Ordering::SeqCst);
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(
                    async move { (i, store.txn(Txn::new().put(format!("k/{i}"), "v")).await) },
                )
            })
            .collect();
        let mut written = Vec::new();
        let mut failed = 0;
        for task in tasks {
            match task.await.expect("task") {
                (i, Ok(response)) => written.push((response.revision, format!("k/{i}"))),
                (_, Err(StoreError::Backend(_))) => failed += 1,
                (_, Err(other)) => panic!("unexpected error {other}"),
            }
        }
        assert!(failed >= 1);
        written.sort();
        let revisions: Vec<_> = written.iter().map(|(revision, _)| *revision).collect();
        assert_eq!(revisions, (1..=written.len() as i64).collect::<Vec<_>>());
        let (kvs, revision) = store.range("k/").await.expect("range");
        let mut keys: Vec<_> = kvs.into_iter().map(|kv| kv.key).collect();
        keys.sort();
        let mut expected: Vec<_> = written.into_iter().map(|(_, key)| key).collect();
        expected.sort();
        assert_eq!(keys, expected, "only the committed batches are visible");
        assert_eq!(revision, expected.len() as i64);
    }

    #[test]
    fn writer_connection_is_wal_with_full_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = Connection::open(dir.path().join("store.db")).expect("open");
        configure(&conn).expect("configure");
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .expect("journal_mode");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .expect("synchronous");
        assert_eq!((mode.as_str(), sync), ("wal", 2), "2 is FULL");
    }

    #[tokio::test]
    async fn second_open_of_the_same_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store.db");
        let store = SqliteStore::open(&path).expect("open");
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::Backend(_))
        ));
        drop(store);
        SqliteStore::open(&path).expect("reopen after close");
    }
}
