//! The conformance suite every [`Store`] backend must pass, shipped in the
//! library (not behind `cfg(test)`) so that backends living in other crates
//! run exactly the same checks.
//!
//! Each check takes a fresh, empty store and panics on the first violation,
//! like a test body; call them from `#[tokio::test]` functions, or run the
//! whole suite with [`run_all`]. Checks that spawn tasks work on both the
//! current-thread and the multi-thread runtime. Durable backends also run
//! [`reopen`], and backends with a bounded history run [`compaction`].

use std::sync::Arc;
use std::time::Duration;

use crate::{
    Compare, Event, EventKind, KeyValue, Revision, Store, StoreError, Txn, TxnResponse, WatchStream,
};

/// How long a check waits for a watch event before declaring it lost.
const WAIT: Duration = Duration::from_secs(20);

/// Runs every check that needs nothing but a fresh store, each on its own
/// store from `make`.
pub async fn run_all<S: Store>(make: impl Fn() -> S) {
    get_put_delete(make()).await;
    revisions_and_versions(make()).await;
    range_by_prefix(make()).await;
    range_is_a_snapshot(make()).await;
    compare_and_swap(make()).await;
    multi_key_atomicity(make()).await;
    no_op_txns_keep_the_revision(make()).await;
    watch_replay_then_live(make()).await;
    watch_prefix_filtering(make()).await;
    watch_handoff_has_no_gap(make()).await;
    watch_from_future_revision(make()).await;
    watch_ends_when_store_closes(make()).await;
    concurrent_cas_increments(make()).await;
}

/// Single-key puts, gets and deletes, with their revision metadata.
pub async fn get_put_delete<S: Store>(store: S) {
    assert_eq!(
        ok(store.revision().await, "revision"),
        0,
        "a new store is at revision 0"
    );
    assert_eq!(ok(store.get("a").await, "get"), None);

    assert_eq!(txn(&store, Txn::new().put("a", "1")).await, applied(1));
    assert_eq!(get(&store, "a").await, Some(kv("a", "1", 1, 1, 1)));

    assert_eq!(txn(&store, Txn::new().put("a", "2")).await, applied(2));
    assert_eq!(
        get(&store, "a").await,
        Some(kv("a", "2", 1, 2, 2)),
        "an overwrite keeps create_revision and bumps version"
    );

    assert_eq!(txn(&store, Txn::new().delete("a")).await, applied(3));
    assert_eq!(get(&store, "a").await, None);

    assert_eq!(txn(&store, Txn::new().put("a", "3")).await, applied(4));
    assert_eq!(
        get(&store, "a").await,
        Some(kv("a", "3", 4, 4, 1)),
        "a re-created key starts over"
    );

    assert_eq!(txn(&store, Txn::new().put("empty", "")).await, applied(5));
    assert_eq!(get(&store, "empty").await, Some(kv("empty", "", 5, 5, 1)));
    assert_eq!(ok(store.revision().await, "revision"), 5);
}

/// One revision per writing transaction, shared by all of its keys.
pub async fn revisions_and_versions<S: Store>(store: S) {
    let response = txn(&store, Txn::new().put("x", "1").put("y", "1").put("z", "1")).await;
    assert_eq!(response, applied(1), "a multi-key txn takes one revision");
    for key in ["x", "y", "z"] {
        assert_eq!(get(&store, key).await, Some(kv(key, "1", 1, 1, 1)));
    }
    for round in 2..=4 {
        let value = round.to_string();
        assert_eq!(
            txn(&store, Txn::new().put("x", value.clone())).await,
            applied(round)
        );
        assert_eq!(
            get(&store, "x").await,
            Some(kv("x", &value, 1, round, round))
        );
    }
    assert_eq!(
        get(&store, "y").await,
        Some(kv("y", "1", 1, 1, 1)),
        "untouched keys keep their metadata"
    );
    assert_eq!(
        txn(&store, Txn::new().put("y", "2").delete("z")).await,
        applied(5)
    );
    assert_eq!(get(&store, "y").await, Some(kv("y", "2", 1, 5, 2)));
    assert_eq!(get(&store, "z").await, None);
    assert_eq!(ok(store.revision().await, "revision"), 5);
}

/// Prefix ranges are sorted by key and carry the current revision.
pub async fn range_by_prefix<S: Store>(store: S) {
    for key in ["b/1", "a/2", "ab", "a/10", "a/1", "a"] {
        txn(&store, Txn::new().put(key, key)).await;
    }
    let (kvs, revision) = ok(store.range("a/").await, "range");
    assert_eq!(keys(&kvs), ["a/1", "a/10", "a/2"]);
    assert_eq!(revision, 6);
    assert_eq!(kvs[0], kv("a/1", "a/1", 5, 5, 1));

    let (kvs, _) = ok(store.range("a").await, "range");
    assert_eq!(keys(&kvs), ["a", "a/1", "a/10", "a/2", "ab"]);
    let (kvs, _) = ok(store.range("a/1").await, "range");
    assert_eq!(
        keys(&kvs),
        ["a/1", "a/10"],
        "a key equal to the prefix is included"
    );
    let (kvs, revision) = ok(store.range("").await, "range");
    assert_eq!(keys(&kvs), ["a", "a/1", "a/10", "a/2", "ab", "b/1"]);
    assert_eq!(revision, 6);
    let (kvs, revision) = ok(store.range("zz").await, "range");
    assert!(kvs.is_empty());
    assert_eq!(revision, 6, "an empty range still reports the revision");

    txn(&store, Txn::new().delete("a/10")).await;
    let (kvs, revision) = ok(store.range("a/").await, "range");
    assert_eq!(keys(&kvs), ["a/1", "a/2"]);
    assert_eq!(revision, 7);
}

/// A range never observes half of a transaction, and its revision covers
/// everything it returns.
pub async fn range_is_a_snapshot<S: Store>(store: S) {
    let store = Arc::new(store);
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for i in 0..100 {
                let value = i.to_string();
                txn(
                    &*store,
                    Txn::new().put("s/x", value.clone()).put("s/y", value),
                )
                .await;
            }
        })
    };
    let mut last_revision = 0;
    for _ in 0..200 {
        let (kvs, revision) = ok(store.range("s/").await, "range");
        assert!(revision >= last_revision, "range revisions never go back");
        last_revision = revision;
        if let [x, y] = kvs.as_slice() {
            assert_eq!(x.value, y.value, "a range saw half of a transaction");
            assert!(x.mod_revision <= revision && y.mod_revision <= revision);
        } else {
            assert!(kvs.is_empty(), "both keys are written together: {kvs:?}");
        }
        tokio::task::yield_now().await;
    }
    ok(writer.await.map_err(|e| e.to_string()), "writer task");
}

/// Every kind of compare, the failure branch, and conjunction of compares.
pub async fn compare_and_swap<S: Store>(store: S) {
    let absent = |key: &str| Compare::ModRevision {
        key: key.into(),
        revision: 0,
    };
    let at = |key: &str, revision| Compare::ModRevision {
        key: key.into(),
        revision,
    };

    assert_eq!(
        txn(&store, Txn::new().when(absent("k")).put("k", "1")).await,
        applied(1),
        "mod revision 0 matches an absent key"
    );
    let mut failing = Txn::new().when(absent("k")).put("k", "2");
    failing.failure = vec![crate::Op::Put {
        key: "lost".into(),
        value: b"yes".to_vec(),
    }];
    assert_eq!(
        txn(&store, failing).await,
        TxnResponse {
            succeeded: false,
            revision: 2
        },
        "the failure branch is applied and takes a revision"
    );
    assert_eq!(get(&store, "lost").await, Some(kv("lost", "yes", 2, 2, 1)));
    assert_eq!(get(&store, "k").await, Some(kv("k", "1", 1, 1, 1)));

    assert_eq!(
        txn(&store, Txn::new().when(at("k", 1)).put("k", "2")).await,
        applied(3)
    );
    assert_eq!(
        txn(&store, Txn::new().when(at("k", 1)).put("k", "stale")).await,
        rejected(3),
        "a stale mod revision fails"
    );
    assert_eq!(get(&store, "k").await, Some(kv("k", "2", 1, 3, 2)));

    let exists = |key: &str| Compare::Exists { key: key.into() };
    let missing = |key: &str| Compare::Absent { key: key.into() };
    assert_eq!(
        txn(&store, Txn::new().when(exists("k")).put("e", "1")).await,
        applied(4)
    );
    assert_eq!(
        txn(&store, Txn::new().when(exists("nope")).put("e", "2")).await,
        rejected(4)
    );
    assert_eq!(
        txn(&store, Txn::new().when(missing("nope")).put("m", "1")).await,
        applied(5)
    );
    assert_eq!(
        txn(&store, Txn::new().when(missing("k")).put("m", "2")).await,
        rejected(5)
    );
    assert_eq!(
        txn(&store, Txn::new().when(at("nope", 3)).put("m", "3")).await,
        rejected(5),
        "a non-zero mod revision does not match an absent key"
    );

    let all_hold = Txn::new()
        .when(exists("k"))
        .when(at("k", 3))
        .when(missing("nope"));
    assert_eq!(txn(&store, all_hold.put("both", "1")).await, applied(6));
    let one_fails = Txn::new()
        .when(exists("k"))
        .when(at("k", 3))
        .when(exists("nope"));
    assert_eq!(txn(&store, one_fails.put("both", "2")).await, rejected(6));
    assert_eq!(get(&store, "both").await, Some(kv("both", "1", 6, 6, 1)));

    txn(&store, Txn::new().delete("k")).await;
    assert_eq!(
        txn(&store, Txn::new().when(absent("k")).put("k", "again")).await,
        applied(8),
        "a deleted key matches mod revision 0 again"
    );
}

/// A transaction's writes land together or not at all.
pub async fn multi_key_atomicity<S: Store>(store: S) {
    txn(&store, Txn::new().put("a", "1").put("b", "1").put("c", "1")).await;
    let rejected_txn = Txn::new()
        .when(Compare::Exists { key: "nope".into() })
        .put("d", "1")
        .put("a", "2")
        .delete("b");
    assert_eq!(txn(&store, rejected_txn).await, rejected(1));
    let (kvs, revision) = ok(store.range("").await, "range");
    assert_eq!(revision, 1);
    assert_eq!(
        kvs,
        vec![
            kv("a", "1", 1, 1, 1),
            kv("b", "1", 1, 1, 1),
            kv("c", "1", 1, 1, 1)
        ],
        "a rejected txn changes nothing"
    );

    let swap = Txn::new()
        .when(Compare::ModRevision {
            key: "a".into(),
            revision: 1,
        })
        .delete("a")
        .put("d", "1")
        .put("b", "2");
    assert_eq!(txn(&store, swap).await, applied(2));
    let (kvs, _) = ok(store.range("").await, "range");
    assert_eq!(
        kvs,
        vec![
            kv("b", "2", 1, 2, 2),
            kv("c", "1", 1, 1, 1),
            kv("d", "1", 2, 2, 1)
        ]
    );
    let mut stream = watch(&store, "", 2).await;
    assert_eq!(
        next_batch(&mut stream).await,
        vec![
            delete_event("a", 2),
            put_event("d", "1", 2, 2, 1),
            put_event("b", "2", 1, 2, 2)
        ],
        "one txn is one watch batch, in op order"
    );
}

/// Transactions that write nothing leave the revision and the watch feed alone.
pub async fn no_op_txns_keep_the_revision<S: Store>(store: S) {
    txn(&store, Txn::new().put("x", "1")).await;
    assert_eq!(txn(&store, Txn::new()).await, applied(1), "an empty txn");
    assert_eq!(
        txn(&store, Txn::new().delete("missing")).await,
        applied(1),
        "deleting a missing key"
    );
    assert_eq!(
        txn(
            &store,
            Txn::new()
                .when(Compare::Absent { key: "x".into() })
                .put("x", "2")
        )
        .await,
        rejected(1),
        "a rejected txn with no failure branch"
    );
    assert_eq!(ok(store.revision().await, "revision"), 1);

    let mut stream = watch(&store, "", 1).await;
    assert_eq!(
        next_batch(&mut stream).await,
        vec![put_event("x", "1", 1, 1, 1)]
    );
    assert_eq!(
        txn(&store, Txn::new().delete("missing").put("y", "1")).await,
        applied(2)
    );
    assert_eq!(
        next_batch(&mut stream).await,
        vec![put_event("y", "1", 2, 2, 1)],
        "no event for deleting a missing key, and no empty batches"
    );
}

/// A watch from a past revision replays it exactly, then follows live writes.
pub async fn watch_replay_then_live<S: Store>(store: S) {
    txn(&store, Txn::new().put("w/a", "1")).await; // 1
    txn(&store, Txn::new().put("w/b", "1")).await; // 2
    txn(&store, Txn::new().put("w/a", "2")).await; // 3
    txn(&store, Txn::new().delete("w/b")).await; // 4
    txn(&store, Txn::new().put("w/c", "1")).await; // 5

    let mut stream = watch(&store, "w/", 2).await;
    assert_eq!(
        next_batch(&mut stream).await,
        vec![put_event("w/b", "1", 2, 2, 1)]
    );
    assert_eq!(
        next_batch(&mut stream).await,
        vec![put_event("w/a", "2", 1, 3, 2)]
    );
    assert_eq!(next_batch(&mut stream).await, vec![delete_event("w/b", 4)]);
    assert_eq!(
        next_batch(&mut stream).await,
        vec![put_event("w/c", "1", 5, 5, 1)]
    );
    assert_quiet(&mut stream).await;

    txn(&store, Txn::new().put("w/b", "2")).await; // 6
    txn(&store, Txn::new().put("w/c", "2").put("w/d", "1")).await; // 7
    assert_eq!(
        next_batch(&mut stream).await,
        vec![put_event("w/b", "2", 6, 6, 1)]
    );
    assert_eq!(
        next_batch(&mut stream).await,
        vec![
            put_event("w/c", "2", 5, 7, 2),
            put_event("w/d", "1", 7, 7, 1)
        ]
    );
    assert_quiet(&mut stream).await;

    for from in [0, 1] {
        let mut stream = watch(&store, "w/", from).await;
        let revisions = collect_revisions(&mut stream, 7).await;
        assert_eq!(revisions, (1..=7).collect::<Vec<_>>(), "watch from {from}");
    }
    let mut stream = watch(&store, "w/", 8).await;
    assert_quiet(&mut stream).await;
}

/// A watch only sees keys under its prefix, and skips revisions without any.
pub async fn watch_prefix_filtering<S: Store>(store: S) {
    let mut stream = watch(&store, "p/", 1).await;
    txn(&store, Txn::new().put("q/1", "x")).await; // 1
    txn(&store, Txn::new().put("p/1", "x")).await; // 2
    txn(
        &store,
        Txn::new().put("pp", "x").put("p/2", "x").put("q/2", "x"),
    )
    .await; // 3
    txn(&store, Txn::new().put("p", "x")).await; // 4
    txn(&store, Txn::new().delete("p/1")).await; // 5
    assert_eq!(
        next_batch(&mut stream).await,
        vec![put_event("p/1", "x", 2, 2, 1)]
    );
    assert_eq!(
        next_batch(&mut stream).await,
        vec![put_event("p/2", "x", 3, 3, 1)]
    );
    assert_eq!(next_batch(&mut stream).await, vec![delete_event("p/1", 5)]);
    assert_quiet(&mut stream).await;

    // The same filtering applies to replayed history.
    let mut replay = watch(&store, "p/", 1).await;
    assert_eq!(revisions_of(&next_batch(&mut replay).await), [2]);
    assert_eq!(revisions_of(&next_batch(&mut replay).await), [3]);
    assert_eq!(revisions_of(&next_batch(&mut replay).await), [5]);
    assert_quiet(&mut replay).await;
}

/// Watches started while writes are under way see every revision from their
/// start exactly once: the replay-to-live handoff loses and repeats nothing.
pub async fn watch_handoff_has_no_gap<S: Store>(store: S) {
    const WRITES: Revision = 300;
    let store = Arc::new(store);
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for i in 1..=WRITES {
                txn(
                    &*store,
                    Txn::new().put(format!("h/{}", i % 7), i.to_string()),
                )
                .await;
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    let mut watchers = Vec::new();
    for round in 0..6 {
        let current = ok(store.revision().await, "revision");
        // Alternate between replaying from the start, from a little back,
        // and from exactly the next revision.
        let from = match round % 3 {
            0 => 1,
            1 => (current - 5).max(1),
            _ => current + 1,
        };
        let stream = watch(&*store, "h/", from).await;
        watchers.push((from, stream));
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }
    ok(writer.await.map_err(|e| e.to_string()), "writer task");
    for (from, mut stream) in watchers {
        if from > WRITES {
            assert_quiet(&mut stream).await;
            continue;
        }
        let revisions = collect_revisions(&mut stream, WRITES).await;
        let expected: Vec<Revision> = (from..=WRITES).collect();
        assert_eq!(
            revisions, expected,
            "watch from {from} lost or repeated revisions"
        );
        assert_quiet(&mut stream).await;
    }
}

/// A watch from beyond the current revision waits for it.
pub async fn watch_from_future_revision<S: Store>(store: S) {
    txn(&store, Txn::new().put("f", "1")).await;
    let mut stream = watch(&store, "", 4).await;
    txn(&store, Txn::new().put("f", "2")).await;
    txn(&store, Txn::new().put("f", "3")).await;
    assert_quiet(&mut stream).await;
    txn(&store, Txn::new().put("f", "4")).await;
    assert_eq!(
        next_batch(&mut stream).await,
        vec![put_event("f", "4", 1, 4, 4)]
    );
}

/// Watch streams end (rather than hang) once the last handle is dropped.
pub async fn watch_ends_when_store_closes<S: Store>(store: S) {
    txn(&store, Txn::new().put("c", "1")).await;
    let mut replaying = watch(&store, "", 1).await;
    let mut idle = watch(&store, "", 2).await;
    assert_eq!(
        next_batch(&mut replaying).await,
        vec![put_event("c", "1", 1, 1, 1)]
    );
    drop(store);
    for stream in [&mut replaying, &mut idle] {
        match tokio::time::timeout(WAIT, stream.recv()).await {
            Ok(None) => {}
            Ok(Some(item)) => panic!("expected the stream to end, got {item:?}"),
            Err(_) => panic!("watch stream still open after the store was dropped"),
        }
    }
}

/// Many tasks incrementing one counter with read-then-CAS retries lose no
/// increment.
pub async fn concurrent_cas_increments<S: Store>(store: S) {
    const TASKS: usize = 16;
    const INCREMENTS: usize = 50;
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for _ in 0..INCREMENTS {
                loop {
                    let current = get(&*store, "counter").await;
                    let (count, revision) = match &current {
                        Some(kv) => (parse_count(kv), kv.mod_revision),
                        None => (0, 0),
                    };
                    let swap = Txn::new()
                        .when(Compare::ModRevision {
                            key: "counter".into(),
                            revision,
                        })
                        .put("counter", (count + 1).to_string());
                    if txn(&*store, swap).await.succeeded {
                        break;
                    }
                }
            }
        }));
    }
    for task in tasks {
        ok(task.await.map_err(|e| e.to_string()), "increment task");
    }
    let total = TASKS * INCREMENTS;
    let counter = get(&*store, "counter").await;
    let counter = counter.unwrap_or_else(|| panic!("counter missing after {total} increments"));
    assert_eq!(parse_count(&counter), total, "lost increments");
    assert_eq!(counter.version as usize, total);
    assert_eq!(ok(store.revision().await, "revision") as usize, total);
}

/// A durable backend keeps everything across close and reopen. `open` must
/// open the same durable location each time; the first store is dropped
/// before the second is opened.
pub async fn reopen<S: Store>(open: impl Fn() -> S) {
    let store = open();
    txn(&store, Txn::new().put("r/a", "1").put("r/b", "1")).await; // 1
    txn(&store, Txn::new().put("r/b", "2")).await; // 2
    txn(&store, Txn::new().delete("r/a")).await; // 3
    txn(&store, Txn::new().put("r/c", vec![0_u8, 255, 7])).await; // 4
    let before = ok(store.range("").await, "range");
    assert_eq!(before.1, 4);
    drop(store);

    let store = open();
    assert_eq!(
        ok(store.revision().await, "revision"),
        4,
        "revision restored"
    );
    assert_eq!(ok(store.range("").await, "range"), before, "keys restored");
    let mut stream = watch(&store, "r/", 1).await;
    assert_eq!(collect_revisions(&mut stream, 4).await, vec![1, 2, 3, 4]);

    assert_eq!(txn(&store, Txn::new().put("r/b", "3")).await, applied(5));
    assert_eq!(get(&store, "r/b").await, Some(kv("r/b", "3", 1, 5, 3)));
    assert_eq!(
        next_batch(&mut stream).await,
        vec![put_event("r/b", "3", 1, 5, 3)],
        "live events continue after a reopen"
    );
    drop(stream);
    drop(store);

    let store = open();
    assert_eq!(ok(store.revision().await, "revision"), 5);
    assert_eq!(
        get(&store, "r/c").await,
        Some(kv_bytes("r/c", &[0, 255, 7], 4, 4, 1))
    );
}

/// A store that keeps only `history` revisions for watches refuses older
/// starts with [`StoreError::Compacted`] and serves the kept window in full.
pub async fn compaction<S: Store>(store: S, history: Revision) {
    assert!(history >= 1);
    let writes = history * 3 + 7;
    for i in 1..=writes {
        txn(
            &store,
            Txn::new().put(format!("c/{}", i % 3), i.to_string()),
        )
        .await;
    }
    match store.watch("c/", 1).await {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!(requested, 1);
            assert!(
                oldest > 1 && oldest <= writes - history + 1,
                "oldest {oldest}"
            );
        }
        Err(other) => panic!("expected Compacted, got {other}"),
        Ok(mut stream) => match tokio::time::timeout(WAIT, stream.recv()).await {
            Ok(Some(Err(StoreError::Compacted { .. }))) => {}
            other => panic!("expected a Compacted error from a compacted start, got {other:?}"),
        },
    }
    let from = writes - history + 1;
    let mut stream = watch(&store, "c/", from).await;
    let revisions = collect_revisions(&mut stream, writes).await;
    assert_eq!(revisions, (from..=writes).collect::<Vec<_>>());
    txn(&store, Txn::new().put("c/live", "1")).await;
    assert_eq!(revisions_of(&next_batch(&mut stream).await), [writes + 1]);
}

/// A watcher that does not read while `writes` revisions are committed
/// still gets every one of them, in order, once it does: falling behind its
/// buffer must cost it nothing (short of compaction). Pick `writes` above the
/// backend's watch buffer to exercise the catch-up path, and within its
/// history.
pub async fn slow_watcher_catches_up<S: Store>(store: S, writes: Revision) {
    let mut stream = watch(&store, "slow/", 1).await;
    for i in 1..=writes {
        txn(
            &store,
            Txn::new().put(format!("slow/{}", i % 5), i.to_string()),
        )
        .await;
    }
    let revisions = collect_revisions(&mut stream, writes).await;
    assert_eq!(revisions, (1..=writes).collect::<Vec<_>>());
    txn(&store, Txn::new().put("slow/live", "1")).await;
    assert_eq!(revisions_of(&next_batch(&mut stream).await), [writes + 1]);
    assert_quiet(&mut stream).await;
}

// ---- helpers ----

fn ok<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|error| panic!("{what} failed: {error}"))
}

async fn txn<S: Store + ?Sized>(store: &S, txn: Txn) -> TxnResponse {
    let what = format!("txn {txn:?}");
    ok(store.txn(txn).await, &what)
}

async fn get<S: Store + ?Sized>(store: &S, key: &str) -> Option<KeyValue> {
    ok(store.get(key).await, "get")
}

async fn watch<S: Store + ?Sized>(store: &S, prefix: &str, from: Revision) -> WatchStream {
    ok(store.watch(prefix, from).await, "watch")
}

fn applied(revision: Revision) -> TxnResponse {
    TxnResponse {
        succeeded: true,
        revision,
    }
}

fn rejected(revision: Revision) -> TxnResponse {
    TxnResponse {
        succeeded: false,
        revision,
    }
}

fn kv(key: &str, value: &str, create: Revision, modified: Revision, version: i64) -> KeyValue {
    kv_bytes(key, value.as_bytes(), create, modified, version)
}

fn kv_bytes(
    key: &str,
    value: &[u8],
    create: Revision,
    modified: Revision,
    version: i64,
) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Arc::from(value),
        create_revision: create,
        mod_revision: modified,
        version,
    }
}

fn put_event(key: &str, value: &str, create: Revision, modified: Revision, version: i64) -> Event {
    Event {
        kind: EventKind::Put,
        kv: kv(key, value, create, modified, version),
    }
}

fn delete_event(key: &str, revision: Revision) -> Event {
    Event {
        kind: EventKind::Delete,
        kv: kv(key, "", 0, revision, 0),
    }
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

fn parse_count(kv: &KeyValue) -> usize {
    ok(
        std::str::from_utf8(&kv.value)
            .map_err(|e| e.to_string())
            .and_then(|s| s.parse::<usize>().map_err(|e| e.to_string())),
        "parse counter",
    )
}

fn revisions_of(events: &[Event]) -> Vec<Revision> {
    events.iter().map(|event| event.kv.mod_revision).collect()
}

/// The next batch, checked to be non-empty and of a single revision.
async fn next_batch(stream: &mut WatchStream) -> Vec<Event> {
    match tokio::time::timeout(WAIT, stream.recv()).await {
        Ok(Some(Ok(events))) => {
            assert!(!events.is_empty(), "empty watch batch");
            let revision = events[0].kv.mod_revision;
            assert!(
                events.iter().all(|e| e.kv.mod_revision == revision),
                "a batch mixes revisions: {events:?}"
            );
            events
        }
        Ok(Some(Err(error))) => panic!("watch failed: {error}"),
        Ok(None) => panic!("watch stream ended early"),
        Err(_) => panic!("no watch event within {WAIT:?}"),
    }
}

/// The revision of every batch up to and including `until`, checking that
/// revisions strictly increase.
async fn collect_revisions(stream: &mut WatchStream, until: Revision) -> Vec<Revision> {
    let mut revisions = Vec::new();
    loop {
        let batch = next_batch(stream).await;
        let revision = batch[0].kv.mod_revision;
        if let Some(&last) = revisions.last() {
            assert!(revision > last, "revision {revision} after {last}");
        }
        revisions.push(revision);
        if revision >= until {
            return revisions;
        }
    }
}

async fn assert_quiet(stream: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(50), stream.recv()).await {
        panic!("unexpected watch item: {item:?}");
    }
}
