//! The conformance suite against the in-memory backend.

use berth_store::{MemoryStore, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_multi_thread() {
    conformance::run_all(MemoryStore::new).await;
}

#[tokio::test]
async fn conformance_current_thread() {
    conformance::run_all(MemoryStore::new).await;
}

#[tokio::test]
async fn compaction() {
    conformance::compaction(MemoryStore::with_history(20), 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_catches_up() {
    // Well past the default watch buffer, so the watcher is cut from the live
    // feed and must catch up from history.
    conformance::slow_watcher_catches_up(MemoryStore::new(), 3000).await;
}
