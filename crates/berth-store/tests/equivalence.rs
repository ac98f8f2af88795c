//! Property test: random transaction sequences give identical answers, key
//! spaces and watch histories on the in-memory and the SQLite backends, with
//! the SQLite side receiving them in concurrent bursts so that group commit
//! evaluates several of them in one batch.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use berth_store::{
    BoxFuture, Compare, Event, MemoryStore, Op, Revision, SqliteStore, Store, Txn, TxnResponse,
};
use proptest::prelude::*;

const KEYS: &[&str] = &["a", "a/1", "a/2", "ab", "b", "b/1"];

fn key() -> impl Strategy<Value = String> {
    proptest::sample::select(KEYS).prop_map(str::to_owned)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (key(), proptest::collection::vec(any::<u8>(), 0..4))
            .prop_map(|(key, value)| Op::Put { key, value }),
        1 => key().prop_map(|key| Op::Delete { key }),
    ]
}

fn compare() -> impl Strategy<Value = Compare> {
    prop_oneof![
        (key(), 0..8_i64).prop_map(|(key, revision)| Compare::ModRevision { key, revision }),
        key().prop_map(|key| Compare::Exists { key }),
        key().prop_map(|key| Compare::Absent { key }),
    ]
}

fn txn() -> impl Strategy<Value = Txn> {
    (
        proptest::collection::vec(compare(), 0..3),
        proptest::collection::vec(op(), 0..4),
        proptest::collection::vec(op(), 0..3),
    )
        .prop_map(|(compares, success, failure)| Txn {
            compares,
            success,
            failure,
        })
}

/// Bursts of transactions; each burst is sent to SQLite all at once.
fn bursts() -> impl Strategy<Value = Vec<Vec<Txn>>> {
    proptest::collection::vec(proptest::collection::vec(txn(), 1..8), 1..6)
}

/// Polls every future in index order until all are done, so that each one
/// submits its request in order on its first poll.
async fn join_in_order<T>(mut futures: Vec<BoxFuture<'_, T>>) -> Vec<T> {
    let mut results: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (future, result) in futures.iter_mut().zip(results.iter_mut()) {
            if result.is_none() {
                match Pin::as_mut(future).poll(cx) {
                    Poll::Ready(value) => *result = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    results
        .into_iter()
        .map(|result| result.expect("every future completed"))
        .collect()
}

async fn history<S: Store>(store: &S, until: Revision) -> Vec<Vec<Event>> {
    let mut batches = Vec::new();
    if until == 0 {
        return batches;
    }
    let mut stream = store.watch("", 1).await.expect("watch");
    loop {
        let batch = stream.recv().await.expect("stream open").expect("no error");
        let revision = batch[0].kv.mod_revision;
        batches.push(batch);
        if revision >= until {
            return batches;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn memory_and_sqlite_agree(bursts in bursts()) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("store.db");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let memory = MemoryStore::new();
            let sqlite = SqliteStore::open(&path).expect("open");
            for burst in bursts {
                let mut expected: Vec<TxnResponse> = Vec::new();
                for txn in &burst {
                    expected.push(memory.txn(txn.clone()).await.expect("memory txn"));
                }
                let futures = burst.into_iter().map(|txn| sqlite.txn(txn)).collect();
                let actual: Vec<TxnResponse> = join_in_order(futures)
                    .await
                    .into_iter()
                    .map(|response| response.expect("sqlite txn"))
                    .collect();
                prop_assert_eq!(actual, expected);
                prop_assert_eq!(
                    sqlite.range("").await.expect("range"),
                    memory.range("").await.expect("range")
                );
                for prefix in ["a", "a/", "b"] {
                    prop_assert_eq!(
                        sqlite.range(prefix).await.expect("range"),
                        memory.range(prefix).await.expect("range")
                    );
                }
            }
            let revision = memory.revision().await.expect("revision");
            prop_assert_eq!(sqlite.revision().await.expect("revision"), revision);
            let memory_history = history(&memory, revision).await;
            prop_assert_eq!(&history(&sqlite, revision).await, &memory_history);

            let before = sqlite.range("").await.expect("range");
            drop(sqlite);
            let reopened = SqliteStore::open(&path).expect("reopen");
            prop_assert_eq!(reopened.range("").await.expect("range"), before);
            prop_assert_eq!(&history(&reopened, revision).await, &memory_history);
            Ok(())
        })?;
    }
}
