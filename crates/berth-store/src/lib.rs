//! The store: a revisioned key-value space with multi-key compare-and-swap
//! transactions and a watch feed, in etcd's model, so that the embedded SQLite
//! backend and a later etcd backend are interchangeable behind [`Store`].
//!
//! Every successful write bumps one global revision. Each key carries the
//! revision that created it, the revision that last modified it and a version
//! (number of writes since creation). A watch replays, in revision order, every
//! change at or after a given revision, then follows new ones live.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub mod conformance;
mod engine;
pub mod memory;
pub mod sqlite;
mod watch;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// A store revision. Revision 0 means "nothing written yet"; the first write is 1.
pub type Revision = i64;

/// A boxed future, so that [`Store`] is object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The requested start revision of a watch was compacted away.
    #[error("revision {requested} has been compacted; the oldest available is {oldest}")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    /// The backend failed (IO, corruption, connection loss).
    #[error("store backend failure: {0}")]
    Backend(String),
    /// The store has been closed.
    #[error("store is closed")]
    Closed,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One key with its value and revision metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Arc<[u8]>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    /// Number of writes to the key since it was (re)created; 1 after creation.
    pub version: i64,
}

/// A condition of a transaction, checked against the latest state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's mod revision equals the given one; 0 means "the key does not exist".
    ModRevision { key: String, revision: Revision },
    /// The key exists.
    Exists { key: String },
    /// The key does not exist.
    Absent { key: String },
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
    },
    /// Deleting a missing key is not an error and produces no event.
    Delete {
        key: String,
    },
}

/// If every compare holds, apply `success`, else apply `failure`; atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResponse {
    pub succeeded: bool,
    /// The store revision after the transaction. A transaction whose applied
    /// branch wrote nothing (or only deleted missing keys) does not bump it.
    pub revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change. For a delete, `kv.value` is empty, `kv.mod_revision` is the
/// revision of the deletion and `kv.version` is 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
}

/// A live feed of changes. Each batch holds the events of one revision, in
/// order; batches arrive in increasing revision order with no gaps for the
/// watched prefix. The feed ends (returns `None`) when the store closes;
/// an `Err` item means the watcher fell too far behind and must re-list.
pub type WatchStream = tokio::sync::mpsc::Receiver<Result<Vec<Event>>>;

/// The store contract. Every acknowledged write is durable (backends that are
/// not, such as [`MemoryStore`], say so). Implementations must be cheap to
/// call concurrently.
pub trait Store: Send + Sync + 'static {
    /// The current key, if present.
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>>>;

    /// Every key that starts with `prefix`, sorted by key, and the store
    /// revision the snapshot was taken at.
    fn range(&self, prefix: &str) -> BoxFuture<'_, Result<(Vec<KeyValue>, Revision)>>;

    /// Apply a transaction atomically; returns after it is durable.
    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse>>;

    /// Changes to keys starting with `prefix` with revision >= `from`.
    fn watch(&self, prefix: &str, from: Revision) -> BoxFuture<'_, Result<WatchStream>>;

    /// The latest committed revision.
    fn revision(&self) -> BoxFuture<'_, Result<Revision>>;
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }
    pub fn put(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.success.push(Op::Put {
            key: key.into(),
            value: value.into(),
        });
        self
    }
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.success.push(Op::Delete { key: key.into() });
        self
    }
}
