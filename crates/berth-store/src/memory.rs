//! [`MemoryStore`]: the in-memory backend, a fake for tests and single-process
//! experiments. It is NOT durable: everything is lost when the last handle is
//! dropped. It shares the transaction engine and watch delivery with the
//! durable backend, so it behaves identically apart from durability.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::engine::{Batch, Replica, RevisionEvents};
use crate::watch::{self, DEFAULT_WATCH_BUFFER, History, Hub};
use crate::{BoxFuture, KeyValue, Result, Revision, Store, Txn, TxnResponse, WatchStream};

/// Default number of past revisions kept for watch replay, matching the
/// durable backend so that tests see the same compaction horizon.
pub const DEFAULT_HISTORY_REVISIONS: usize = 10_000;

/// An in-memory, non-durable [`Store`]. Cloning yields another handle to the
/// same store; watch streams end when the last handle is dropped.
#[derive(Clone)]
pub struct MemoryStore {
    handle: Arc<Handle>,
}

/// Closing happens when the last user handle goes; watch tasks hold only
/// [`Shared`], so they cannot keep the store open.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.hub.close();
    }
}

struct Shared {
    state: RwLock<State>,
    hub: Arc<Hub>,
    history_revisions: usize,
}

struct State {
    replica: Replica,
    /// Recent revisions, contiguous, oldest first.
    history: VecDeque<RevisionEvents>,
    /// Every revision up to and including this one is gone from `history`.
    compacted: Revision,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.handle.shared.read();
        f.debug_struct("MemoryStore")
            .field("revision", &state.replica.revision())
            .field("compacted", &state.compacted)
            .finish()
    }
}

impl MemoryStore {
    /// An empty store keeping [`DEFAULT_HISTORY_REVISIONS`] revisions of history.
    pub fn new() -> Self {
        Self::with_history(DEFAULT_HISTORY_REVISIONS)
    }

    /// An empty store keeping the last `revisions` revisions (at least one)
    /// for watch replay; older starts get [`StoreError::Compacted`].
    pub fn with_history(revisions: usize) -> Self {
        let shared = Shared {
            state: RwLock::new(State {
                replica: Replica::default(),
                history: VecDeque::new(),
                compacted: 0,
            }),
            hub: Arc::new(Hub::new(0, DEFAULT_WATCH_BUFFER)),
            history_revisions: revisions.max(1),
        };
        Self {
            handle: Arc::new(Handle {
                shared: Arc::new(shared),
            }),
        }
    }

    /// The newest revision no longer available to watches (0 if none).
    pub fn compacted_revision(&self) -> Revision {
        self.handle.shared.read().compacted
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().expect("memory store lock poisoned")
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().expect("memory store lock poisoned")
    }

    fn apply(&self, txn: &Txn) -> TxnResponse {
        let mut state = self.write();
        let mut batch = Batch::new(&state.replica);
        let response = batch.execute(txn);
        let revisions = batch.into_revisions();
        if revisions.is_empty() {
            return response;
        }
        state.replica.apply(&revisions);
        state.history.extend(revisions.iter().cloned());
        while state.history.len() > self.history_revisions {
            if let Some((revision, _)) = state.history.pop_front() {
                state.compacted = revision;
            }
        }
        // Publishing under the state lock keeps concurrent transactions'
        // revisions in order on the watch feed.
        self.hub.publish(&revisions);
        response
    }
}

impl History for Shared {
    fn read(
        &self,
        prefix: &str,
        from: Revision,
        to: Revision,
    ) -> BoxFuture<'_, Result<Vec<RevisionEvents>>> {
        let state = self.read();
        let result = if from <= state.compacted {
            Err(watch::compacted(from, state.compacted))
        } else {
            let first = state.compacted + 1;
            let start = usize::try_from(from - first).unwrap_or(usize::MAX);
            Ok(state
                .history
                .iter()
                .skip(start)
                .take_while(|(revision, _)| *revision <= to)
                .filter_map(|(revision, events)| {
                    let events = crate::engine::matching(events, prefix);
                    (!events.is_empty()).then_some((*revision, events))
                })
                .collect())
        };
        Box::pin(std::future::ready(result))
    }
}

impl Store for MemoryStore {
    // Work happens when the future is polled, not when it is created, so an
    // unawaited call has no effect (as with the durable backend).
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>>> {
        let key = key.to_owned();
        Box::pin(async move { Ok(self.shared().read().replica.get(&key)) })
    }

    fn range(&self, prefix: &str) -> BoxFuture<'_, Result<(Vec<KeyValue>, Revision)>> {
        let prefix = prefix.to_owned();
        Box::pin(async move {
            let state = self.shared().read();
            Ok((state.replica.range(&prefix), state.replica.revision()))
        })
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResponse>> {
        Box::pin(async move { Ok(self.shared().apply(&txn)) })
    }

    fn watch(&self, prefix: &str, from: Revision) -> BoxFuture<'_, Result<WatchStream>> {
        let prefix = prefix.to_owned();
        Box::pin(async move {
            let from = from.max(1);
            let compacted = self.compacted_revision();
            if from <= compacted {
                return Err(watch::compacted(from, compacted));
            }
            let shared = Arc::clone(&self.handle.shared);
            let hub = Arc::clone(&shared.hub);
            Ok(watch::spawn(hub, shared, prefix, from))
        })
    }

    fn revision(&self) -> BoxFuture<'_, Result<Revision>> {
        Box::pin(async move { Ok(self.shared().read().replica.revision()) })
    }
}
