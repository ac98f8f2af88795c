//! Watch delivery shared by the backends: the hub that fans committed
//! revisions out to live watchers without ever blocking the committer, and the
//! per-watch task that replays history and then hands over to the live feed
//! with neither a gap nor a duplicate.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::engine::{RevisionEvents, matching};
use crate::{BoxFuture, Result, Revision, StoreError, WatchStream};

/// Default capacity, in revisions, of a watcher's channels.
pub(crate) const DEFAULT_WATCH_BUFFER: usize = 1024;

/// How many revisions one history read covers, so that a long replay never
/// holds more than this in memory at once.
const REPLAY_CHUNK: Revision = 256;

/// Past revisions a backend can replay.
pub(crate) trait History: Send + Sync + 'static {
    /// The events of keys starting with `prefix` in revisions `from..=to`,
    /// grouped by revision in increasing order (revisions without a matching
    /// event are left out). `StoreError::Compacted` if `from` is gone.
    fn read(
        &self,
        prefix: &str,
        from: Revision,
        to: Revision,
    ) -> BoxFuture<'_, Result<Vec<RevisionEvents>>>;
}

struct LiveWatcher {
    prefix: String,
    tx: mpsc::Sender<RevisionEvents>,
}

struct HubState {
    /// The newest revision handed to watchers; every revision up to it is
    /// readable from the backend's history.
    published: Revision,
    closed: bool,
    watchers: Vec<LiveWatcher>,
}

/// Fans committed revisions out to live watchers.
pub(crate) struct Hub {
    state: Mutex<HubState>,
    buffer: usize,
}

impl Hub {
    pub(crate) fn new(published: Revision, buffer: usize) -> Self {
        Self {
            state: Mutex::new(HubState {
                published,
                closed: false,
                watchers: Vec::new(),
            }),
            buffer: buffer.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().expect("watch hub lock poisoned")
    }

    /// Subscribes to every revision after the returned one, which the caller
    /// must replay from history. `None` once the store is closed.
    fn subscribe(&self, prefix: &str) -> Option<(Revision, mpsc::Receiver<RevisionEvents>)> {
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        let (tx, rx) = mpsc::channel(self.buffer);
        state.watchers.push(LiveWatcher {
            prefix: prefix.to_owned(),
            tx,
        });
        Some((state.published, rx))
    }

    /// Hands committed revisions to watchers. Must be called in revision
    /// order, after the revisions are readable from history. A watcher whose
    /// buffer is full is unsubscribed instead of waited for; its task notices
    /// the closed feed and catches up from history.
    pub(crate) fn publish(&self, revisions: &[RevisionEvents]) {
        let Some((last, _)) = revisions.last() else {
            return;
        };
        let mut state = self.lock();
        state.published = *last;
        state.watchers.retain(|watcher| {
            revisions.iter().all(|(revision, events)| {
                let events = matching(events, &watcher.prefix);
                events.is_empty() || watcher.tx.try_send((*revision, events)).is_ok()
            })
        });
    }

    /// Ends every live feed; watch streams finish once they drain.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.watchers.clear();
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// Starts a watch of `prefix` from revision `from` (already checked against
/// compaction by the caller, which knows its backend's horizon).
pub(crate) fn spawn(
    hub: Arc<Hub>,
    history: Arc<dyn History>,
    prefix: String,
    from: Revision,
) -> WatchStream {
    let (tx, rx) = mpsc::channel(hub.buffer);
    tokio::spawn(follow(hub, history, prefix, from.max(1), tx));
    rx
}

/// Replays then follows, and repeats both whenever the live feed was cut
/// because this watcher fell behind: catching up from history keeps a slow
/// consumer from ever stalling the committer.
async fn follow(
    hub: Arc<Hub>,
    history: Arc<dyn History>,
    prefix: String,
    mut next: Revision,
    out: mpsc::Sender<Result<Vec<crate::Event>>>,
) {
    loop {
        // Subscribing before reading history is what closes the race: every
        // revision is either <= `upto` (in history) or arrives live.
        let Some((upto, mut live)) = hub.subscribe(&prefix) else {
            return;
        };
        while next <= upto {
            let end = upto.min(next.saturating_add(REPLAY_CHUNK - 1));
            match history.read(&prefix, next, end).await {
                Ok(revisions) => {
                    for (_, events) in revisions {
                        if out.send(Ok(events)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(error) => {
                    let _ = out.send(Err(error)).await;
                    return;
                }
            }
            next = end + 1;
        }
        loop {
            tokio::select! {
                received = live.recv() => match received {
                    Some((revision, events)) => {
                        // Revisions the replay already covered, or before the
                        // requested start, are skipped rather than repeated.
                        if revision < next {
                            continue;
                        }
                        next = revision + 1;
                        if out.send(Ok(events)).await.is_err() {
                            return;
                        }
                    }
                    None => break,
                },
                () = out.closed() => return,
            }
        }
        if hub.is_closed() {
            return;
        }
        tracing::debug!(
            prefix,
            next,
            "watcher fell behind; catching up from history"
        );
    }
}

/// The error a watch gets when `from` is at or below the compacted revision.
pub(crate) fn compacted(requested: Revision, compacted: Revision) -> StoreError {
    StoreError::Compacted {
        requested,
        oldest: compacted + 1,
    }
}
