//! The conformance suite and durability checks against the SQLite backend.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_store::sqlite::SqliteOptions;
use berth_store::{SqliteStore, Store, StoreError, Txn, conformance};
use tempfile::TempDir;

/// Hands out a fresh database file in one temporary directory per call.
struct Databases {
    dir: TempDir,
    next: AtomicUsize,
}

impl Databases {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("create temp dir"),
            next: AtomicUsize::new(0),
        }
    }

    fn fresh_path(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("store-{n}.db"))
    }

    fn fresh(&self) -> SqliteStore {
        SqliteStore::open(&self.fresh_path()).expect("open store")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_multi_thread() {
    let dbs = Databases::new();
    conformance::run_all(|| dbs.fresh()).await;
}

#[tokio::test]
async fn conformance_current_thread() {
    let dbs = Databases::new();
    conformance::run_all(|| dbs.fresh()).await;
}

#[tokio::test]
async fn reopen() {
    let dbs = Databases::new();
    let path = dbs.fresh_path();
    conformance::reopen(|| SqliteStore::open(&path).expect("open store")).await;
}

#[tokio::test]
async fn compaction() {
    let dbs = Databases::new();
    let path = dbs.fresh_path();
    let options = SqliteOptions {
        history_revisions: 20,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&path, options.clone()).expect("open store");
    conformance::compaction(store, 20).await;

    // The compaction horizon is durable too.
    let store = SqliteStore::open_with(&path, options).expect("reopen store");
    let compacted = store.compacted_revision();
    assert!(compacted > 0);
    match store.watch("", compacted).await {
        Err(StoreError::Compacted { requested, oldest }) => {
            assert_eq!((requested, oldest), (compacted, compacted + 1));
        }
        Err(other) => panic!("expected Compacted, got {other}"),
        Ok(_) => panic!("a watch from a compacted revision was accepted after reopen"),
    }
    let mut stream = store.watch("", compacted + 1).await.expect("watch");
    let first = stream.recv().await.expect("stream open").expect("no error");
    assert_eq!(first[0].kv.mod_revision, compacted + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_catches_up() {
    let dbs = Databases::new();
    let options = SqliteOptions {
        watch_buffer: 4,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&dbs.fresh_path(), options).expect("open store");
    conformance::slow_watcher_catches_up(store, 300).await;
}

#[test]
fn group_commit_batches_concurrent_txns() {
    const TXNS: usize = 200;
    let dbs = Databases::new();
    // On a current-thread runtime every task gets to send its txn before
    // the first commit is answered, so the writer sees a full queue.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = Arc::new(dbs.fresh());
        let tasks: Vec<_> = (0..TXNS)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.txn(Txn::new().put(format!("g/{i}"), "v")).await })
            })
            .collect();
        let mut revisions = Vec::new();
        for task in tasks {
            let response = task.await.expect("task").expect("txn");
            assert!(response.succeeded);
            revisions.push(response.revision);
        }
        revisions.sort_unstable();
        assert_eq!(revisions, (1..=TXNS as i64).collect::<Vec<_>>());
        let batches = store.commit_batches();
        println!("{TXNS} txns committed in {batches} SQLite transactions");
        assert!(
            (batches as usize) < TXNS / 4,
            "{TXNS} concurrent txns took {batches} commits: group commit is not batching"
        );
        let (kvs, revision) = store.range("g/").await.expect("range");
        assert_eq!((kvs.len(), revision), (TXNS, TXNS as i64));
    });
}

#[tokio::test]
async fn closed_store_refuses_calls_and_ends_watches() {
    let dbs = Databases::new();
    let store = dbs.fresh();
    let other = store.clone();
    store.txn(Txn::new().put("a", "1")).await.expect("txn");
    let mut stream = store.watch("", 2).await.expect("watch");
    store.close();
    assert!(matches!(
        other.txn(Txn::new().put("a", "2")).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(other.get("a").await, Err(StoreError::Closed)));
    assert!(matches!(other.watch("", 1).await, Err(StoreError::Closed)));
    let end = tokio::time::timeout(Duration::from_secs(10), stream.recv()).await;
    assert!(matches!(end, Ok(None)), "watch did not end: {end:?}");
}

// ---- kill -9 ----

/// Set in the child process: the database it writes to.
const CHILD_DB: &str = "BERTH_STORE_KILL9_DB";
/// Set in the child process: a tag that keeps each child's keys distinct.
const CHILD_TAG: &str = "BERTH_STORE_KILL9_TAG";
const CHILD_WRITERS: usize = 8;

/// Not a test on its own: when re-executed by
/// `acknowledged_writes_survive_kill_9` with [`CHILD_DB`] set, it writes
/// keys from several tasks forever and acknowledges each durable one on
/// stdout. Otherwise it returns at once.
#[test]
fn kill9_child_writer() {
    let (Some(path), Some(tag)) = (std::env::var_os(CHILD_DB), std::env::var_os(CHILD_TAG)) else {
        return;
    };
    let tag = tag.to_string_lossy().into_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let store = Arc::new(SqliteStore::open(Path::new(&path)).expect("child open"));
        let writers: Vec<_> = (0..CHILD_WRITERS)
            .map(|writer| {
                let store = Arc::clone(&store);
                let tag = tag.clone();
                tokio::spawn(async move {
                    for i in 0_u64.. {
                        let key = format!("k/{tag}/{writer}/{i}");
                        let value = format!("{tag}-{writer}-{i}");
                        store
                            .txn(Txn::new().put(key.clone(), value.clone()))
                            .await
                            .expect("child txn");
                        // println! takes the stdout lock and flushes the line.
                        println!("ACK {key} {value}");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.expect("writer task");
        }
    });
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dbs = Databases::new();
    let path = dbs.fresh_path();
    let exe = std::env::current_exe().expect("test binary path");
    let mut acked = BTreeMap::new();
    for round in 0..3 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "kill9_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DB, &path)
            .env(CHILD_TAG, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let mut lines = BufReader::new(stdout).lines();
        let kill_after = 300 + round * 137;
        let mut seen = 0;
        for line in lines.by_ref() {
            if let Some((key, value)) = parse_ack(&line.expect("read child stdout")) {
                acked.insert(key, value);
                seen += 1;
                if seen == kill_after {
                    break;
                }
            }
        }
        assert_eq!(seen, kill_after, "child stopped acknowledging early");
        // Child::kill is SIGKILL on Unix: no destructor, no flush, no goodbye.
        child.kill().expect("kill child");
        // Acknowledgements already in the pipe were promised durable too.
        for line in lines {
            if let Some((key, value)) = parse_ack(&line.expect("read child stdout")) {
                acked.insert(key, value);
            }
        }
        let status = child.wait().expect("wait child");
        assert!(!status.success(), "child was expected to die by SIGKILL");
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = SqliteStore::open(&path).expect("reopen after kill");
        let (kvs, revision) = store.range("k/").await.expect("range");
        let stored: BTreeMap<_, _> = kvs
            .iter()
            .map(|kv| {
                (
                    kv.key.clone(),
                    String::from_utf8_lossy(&kv.value).into_owned(),
                )
            })
            .collect();
        let missing: Vec<_> = acked
            .iter()
            .filter(|(key, value)| stored.get(*key) != Some(value))
            .map(|(key, _)| key.as_str())
            .collect();
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged writes lost after kill -9, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
        println!(
            "{} writes acknowledged before the kills, {} found committed",
            acked.len(),
            kvs.len()
        );
        // Every write took its own revision and nothing else was written.
        assert_eq!(revision, kvs.len() as i64);
        assert!(kvs.len() >= acked.len());
        // The store stays writable and numbering continues.
        let response = store
            .txn(Txn::new().put("after", "kill"))
            .await
            .expect("txn");
        assert_eq!(response.revision, revision + 1);
    });
}

fn parse_ack(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("ACK ")?;
    let (key, value) = rest.split_once(' ')?;
    Some((key.to_owned(), value.to_owned()))
}
