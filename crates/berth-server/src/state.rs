//! What the server keeps in the store, and the in-memory cache of it that
//! serves every read.
//!
//! Keys are `ecs/{region}/{account}/{kind}/{rest}`; values are the JSON of
//! the record types below (mostly the ECS wire objects themselves, so a
//! Describe call is a clone plus a few derived counters). The cache is
//! rebuilt from a `range` at start and then follows the store's watch feed,
//! so with an etcd backend several servers would see each other's writes.
//! A writer waits until the cache has applied its own revision before it
//! answers, which gives read-your-writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock, Weak};

use berth_core::service::ServiceState;
use berth_store::{Compare, Event, EventKind, Revision, Store, StoreError, Txn};
use berth_types::agent::TaskSpec;
use berth_types::arn::Scope;
use berth_types::{
    CapacityProvider, Cluster, ContainerDefinition, ContainerInstance, EcsError, Service, Setting,
    Tag, Task, TaskDefinition,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

/// A task definition revision and the tags it was registered with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskDefinitionRecord {
    pub task_definition: TaskDefinition,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// The revision counter of a family: revisions never repeat, even after
/// every revision was deleted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FamilyRecord {
    pub last_revision: i32,
}

/// A task: the ECS view (`task`), what its agent runs (`spec`), and the
/// host resources it holds until it stops.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task: Task,
    pub spec: TaskSpec,
    /// The container instance id (EC2 and EXTERNAL launch types).
    pub instance_id: Option<String>,
    pub reservation: Reservation,
    /// Whether the reservation has been given back to the instance.
    #[serde(default)]
    pub released: bool,
}

/// Resources a task holds on its container instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub cpu: i64,
    pub memory: i64,
    #[serde(default)]
    pub gpu: u32,
    #[serde(default)]
    pub tcp_ports: Vec<u16>,
    #[serde(default)]
    pub udp_ports: Vec<u16>,
}

/// A RunTask `clientToken` and what it produced, for idempotency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientTokenRecord {
    /// The request, canonicalised, so a reuse with other parameters is caught.
    pub fingerprint: String,
    pub task_arns: Vec<String>,
    pub failures: Vec<berth_types::Failure>,
}

/// A service: the ECS view (`service`, with the counts, deployments and
/// events the service controller writes) and the scheduler's persisted
/// state between rounds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub service: Service,
    pub state: ServiceState,
    /// The CreateService request, canonicalised, to tell an idempotent
    /// retry from a clash.
    #[serde(default)]
    pub fingerprint: String,
    /// The service revisions its service deployments name
    /// (DescribeServiceRevisions).
    #[serde(default)]
    pub revisions: Vec<crate::api::service_deployments::RevisionRecord>,
}

/// A decoded value of the cache. Every variant is boxed: each record is
/// its own `Arc` allocation of this enum's size, and an inline variant would
/// make every small record (a task among 100,000) pay for the largest one.
#[derive(Debug, Clone)]
pub enum Record {
    Cluster(Box<Cluster>),
    TaskDefinition(Box<TaskDefinitionRecord>),
    Family(Box<FamilyRecord>),
    ContainerInstance(Box<ContainerInstance>),
    Setting(Box<Setting>),
    CapacityProvider(Box<CapacityProvider>),
    Task(Box<TaskRecord>),
    ClientToken(Box<ClientTokenRecord>),
    Service(Box<ServiceRecord>),
}

/// A record type with its key kind.
pub trait Stored: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const KIND: &'static str;
    fn into_record(self) -> Record;
    fn from_record(record: &Record) -> Option<&Self>;
}

macro_rules! stored {
    ($($ty:ty => $variant:ident, $kind:literal;)+) => {
        $(impl Stored for $ty {
            const KIND: &'static str = $kind;
            fn into_record(self) -> Record {
                Record::$variant(Box::new(self))
            }
            fn from_record(record: &Record) -> Option<&Self> {
                match record {
                    Record::$variant(v) => Some(v.as_ref()),
                    _ => None,
                }
            }
        })+

        fn decode(kind: &str, value: &[u8]) -> Option<Result<Record, serde_json::Error>> {
            match kind {
                $($kind => Some(
                    serde_json::from_slice::<$ty>(value).map(|v| exact_capacity(v).into_record()),
                ),)+
                _ => None,
            }
        }
    };
}

stored! {
    Cluster => Cluster, "cluster";
    TaskDefinitionRecord => TaskDefinition, "taskdef";
    FamilyRecord => Family, "family";
    ContainerInstance => ContainerInstance, "instance";
    Setting => Setting, "setting";
    CapacityProvider => CapacityProvider, "capacity-provider";
    ClientTokenRecord => ClientToken, "client-token";
    ServiceRecord => Service, "service";
    TaskRecord => Task, "task";
}

/// Key construction for one region and account.
pub fn key<T: Stored>(scope: &Scope, rest: &str) -> String {
    format!("{}{rest}", prefix::<T>(scope))
}

/// The prefix of every key of one kind in one scope.
pub fn prefix<T: Stored>(scope: &Scope) -> String {
    format!("ecs/{}/{}/{}/", scope.region, scope.account, T::KIND)
}

pub fn kind_of(key: &str) -> Option<&str> {
    key.split('/').nth(3)
}

#[derive(Debug, Clone)]
struct Entry {
    mod_revision: Revision,
    record: Arc<Record>,
}

#[derive(Debug, Default)]
struct Snapshot {
    revision: Revision,
    entries: BTreeMap<String, Entry>,
    /// Instance id → the keys of the tasks placed on it, so a host's view
    /// (the agent hub's manifests) never scans a whole cluster.
    tasks_by_instance: HashMap<String, BTreeSet<String>>,
    /// A cluster's task prefix → tasks per `lastStatus`, so cluster
    /// statistics never scan a cluster's tasks.
    task_statuses: HashMap<String, HashMap<String, usize>>,
    /// (task definition ARN, container name) → the container definition
    /// the tasks of that revision share; see [`Snapshot::share_definitions`].
    definitions: HashMap<(String, String), Weak<ContainerDefinition>>,
}

fn task_status(record: &Record) -> Option<&str> {
    match record {
        Record::Task(task) => task.task.last_status.as_deref(),
        _ => None,
    }
}

fn task_instance(record: &Record) -> Option<&str> {
    match record {
        Record::Task(task) => task.instance_id.as_deref(),
        _ => None,
    }
}

impl Snapshot {
    /// Decodes a stored value into a record, sharing its container
    /// definitions with equal ones already held: every task carries its
    /// definitions (what its agent runs), and without overrides all tasks of
    /// a revision carry the same ones, which 100,000 tasks would otherwise
    /// hold 100,000 copies of.
    fn decode(&mut self, key: &str, value: &[u8]) -> Option<Record> {
        let mut record = decode_logged(key, value)?;
        if let Record::Task(task) = &mut record {
            for container in &mut task.spec.containers {
                let slot = (
                    task.spec.task_definition_arn.clone(),
                    container.definition.name.clone().unwrap_or_default(),
                );
                match self.definitions.get(&slot).and_then(Weak::upgrade) {
                    Some(held) if held == container.definition => container.definition = held,
                    _ => {
                        self.definitions
                            .insert(slot, Arc::downgrade(&container.definition));
                    }
                }
            }
        }
        Some(record)
    }

    /// Puts (`Some`) or deletes (`None`) one entry, keeping the indexes.
    fn set(&mut self, key: String, entry: Option<Entry>) {
        let new_instance = entry
            .as_ref()
            .and_then(|e| task_instance(&e.record))
            .map(str::to_owned);
        if let Some(instance) = &new_instance {
            self.tasks_by_instance
                .entry(instance.clone())
                .or_default()
                .insert(key.clone());
        }
        let prefix = key.rfind('/').map_or("", |end| &key[..=end]).to_owned();
        if let Some(status) = entry.as_ref().and_then(|e| task_status(&e.record)) {
            *self
                .task_statuses
                .entry(prefix.clone())
                .or_default()
                .entry(status.to_owned())
                .or_default() += 1;
        }
        let old = match entry {
            Some(entry) => self.entries.insert(key.clone(), entry),
            None => self.entries.remove(&key),
        };
        if let Some(status) = old.as_ref().and_then(|e| task_status(&e.record))
            && let Some(counts) = self.task_statuses.get_mut(&prefix)
            && let Some(n) = counts.get_mut(status)
        {
            *n -= 1;
        }
        if let Some(old_instance) = old.as_ref().and_then(|e| task_instance(&e.record))
            && Some(old_instance) != new_instance.as_deref()
            && let Some(keys) = self.tasks_by_instance.get_mut(old_instance)
        {
            keys.remove(&key);
            if keys.is_empty() {
                self.tasks_by_instance.remove(old_instance);
            }
        }
    }
}

/// A value read from the cache with the revision it was last written at,
/// for compare-and-swap.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub mod_revision: Revision,
    pub value: T,
}

/// The watch-fed, in-memory copy of everything under `ecs/`.
pub struct Cache {
    snapshot: RwLock<Snapshot>,
    applied: watch::Sender<Revision>,
    /// The keys each applied batch changed, for controllers and the agent hub.
    changes: broadcast::Sender<Arc<[String]>>,
}

const ROOT: &str = "ecs/";

impl Cache {
    /// Loads everything and starts following the store.
    pub async fn start(store: Arc<dyn Store>) -> Result<Arc<Self>, StoreError> {
        let (applied, _) = watch::channel(0);
        let (changes, _) = broadcast::channel(4096);
        let cache = Arc::new(Self {
            snapshot: RwLock::new(Snapshot::default()),
            applied,
            changes,
        });
        let revision = cache.reload(&*store).await?;
        let follower = Arc::clone(&cache);
        tokio::spawn(async move { follower.follow(store, revision).await });
        Ok(cache)
    }

    async fn reload(&self, store: &dyn Store) -> Result<Revision, StoreError> {
        let (kvs, revision) = store.range(ROOT).await?;
        let mut snapshot = Snapshot {
            revision,
            ..Snapshot::default()
        };
        for kv in kvs {
            if let Some(record) = snapshot.decode(&kv.key, &kv.value) {
                let entry = Entry {
                    mod_revision: kv.mod_revision,
                    record: Arc::new(record),
                };
                snapshot.set(kv.key, Some(entry));
            }
        }
        *self.snapshot.write().expect("cache lock poisoned") = snapshot;
        self.applied.send_replace(revision);
        Ok(revision)
    }

    async fn follow(&self, store: Arc<dyn Store>, mut revision: Revision) {
        loop {
            match store.watch(ROOT, revision + 1).await {
                Ok(mut stream) => {
                    while let Some(batch) = stream.recv().await {
                        match batch {
                            Ok(events) => revision = self.apply(events).max(revision),
                            Err(err) => {
                                tracing::warn!(%err, "cache fell behind the store; reloading");
                                break;
                            }
                        }
                    }
                }
                Err(StoreError::Closed) => return,
                Err(err) => tracing::warn!(%err, "cannot watch the store; retrying"),
            }
            if store.revision().await.is_err() {
                return;
            }
            match self.reload(&*store).await {
                Ok(r) => revision = r,
                Err(StoreError::Closed) => return,
                Err(err) => {
                    tracing::error!(%err, "cannot reload the cache");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
    }

    fn apply(&self, events: Vec<Event>) -> Revision {
        let keys: Arc<[String]> = events.iter().map(|e| e.kv.key.clone()).collect();
        let mut snapshot = self.snapshot.write().expect("cache lock poisoned");
        for event in events {
            let revision = event.kv.mod_revision;
            match event.kind {
                EventKind::Put => {
                    if let Some(record) = snapshot.decode(&event.kv.key, &event.kv.value) {
                        let entry = Entry {
                            mod_revision: revision,
                            record: Arc::new(record),
                        };
                        snapshot.set(event.kv.key, Some(entry));
                    }
                }
                EventKind::Delete => snapshot.set(event.kv.key, None),
            }
            snapshot.revision = snapshot.revision.max(revision);
        }
        let revision = snapshot.revision;
        drop(snapshot);
        self.applied.send_replace(revision);
        // Nobody listening is fine; a lagging listener resynchronises.
        let _ = self.changes.send(keys);
        revision
    }

    /// Keys changed by each batch applied from now on. A receiver that lags
    /// gets `RecvError::Lagged` and must re-read what it follows.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<[String]>> {
        self.changes.subscribe()
    }

    /// Resolves once the cache reflects `revision`.
    pub async fn wait_for(&self, revision: Revision) {
        let mut rx = self.applied.subscribe();
        // The sender lives as long as the cache, so this only ends early if
        // the cache is being dropped, in which case nobody is waiting.
        let _ = rx.wait_for(|applied| *applied >= revision).await;
    }

    pub fn get<T: Stored>(&self, key: &str) -> Option<Versioned<T>> {
        let snapshot = self.snapshot.read().expect("cache lock poisoned");
        let entry = snapshot.entries.get(key)?;
        Some(Versioned {
            mod_revision: entry.mod_revision,
            value: T::from_record(&entry.record)?.clone(),
        })
    }

    /// Reads a record in place, without cloning it.
    pub fn peek<T: Stored, R>(&self, key: &str, f: impl FnOnce(&T) -> R) -> Option<R> {
        let snapshot = self.snapshot.read().expect("cache lock poisoned");
        T::from_record(&snapshot.entries.get(key)?.record).map(f)
    }

    /// How many tasks under `prefix` (a cluster's task prefix) are in each
    /// `lastStatus`.
    pub fn task_status_counts(&self, prefix: &str) -> HashMap<String, usize> {
        let snapshot = self.snapshot.read().expect("cache lock poisoned");
        snapshot
            .task_statuses
            .get(prefix)
            .cloned()
            .unwrap_or_default()
    }

    /// Maps the tasks placed on instance `instance_id` in place, keeping
    /// the `Some` results, in key order.
    pub fn select_instance_tasks<R>(
        &self,
        instance_id: &str,
        mut f: impl FnMut(&str, &TaskRecord) -> Option<R>,
    ) -> Vec<R> {
        let snapshot = self.snapshot.read().expect("cache lock poisoned");
        let Some(keys) = snapshot.tasks_by_instance.get(instance_id) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|key| {
                let record = TaskRecord::from_record(&snapshot.entries.get(key)?.record)?;
                f(key, record)
            })
            .collect()
    }

    /// Maps every record of a kind under `prefix` in place, keeping the
    /// `Some` results, in key order.
    pub fn select<T: Stored, R>(
        &self,
        prefix: &str,
        mut f: impl FnMut(&str, &T) -> Option<R>,
    ) -> Vec<R> {
        self.scan(prefix, |key, entry| {
            T::from_record(&entry.record).and_then(|v| f(key, v))
        })
    }

    /// Every record of a kind under `prefix`, in key order, with its key.
    pub fn list<T: Stored>(&self, prefix: &str) -> Vec<(String, Versioned<T>)> {
        self.scan(prefix, |key, entry| {
            T::from_record(&entry.record).map(|value| {
                (
                    key.to_owned(),
                    Versioned {
                        mod_revision: entry.mod_revision,
                        value: value.clone(),
                    },
                )
            })
        })
    }

    /// The keys of every record of a kind, in every region and account.
    pub fn keys_of<T: Stored>(&self) -> Vec<String> {
        self.scan(ROOT, |key, entry| {
            T::from_record(&entry.record).map(|_| key.to_owned())
        })
    }

    /// Counts records of a kind under `prefix` that satisfy `pred`, without cloning them.
    pub fn count<T: Stored>(&self, prefix: &str, pred: impl Fn(&T) -> bool) -> usize {
        self.scan(prefix, |_, entry| {
            T::from_record(&entry.record)
                .filter(|v| pred(v))
                .map(|_| ())
        })
        .len()
    }

    fn scan<R>(&self, prefix: &str, mut f: impl FnMut(&str, &Entry) -> Option<R>) -> Vec<R> {
        let snapshot = self.snapshot.read().expect("cache lock poisoned");
        snapshot
            .entries
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, e)| f(k, e))
            .collect()
    }
}

/// `value` with no spare capacity anywhere. Deserialized vectors keep the
/// capacity they grew to (four elements for one), while a clone allocates
/// exactly; for a cache of 100,000 tasks that spare room was a third of
/// its memory.
fn exact_capacity<T: Clone>(value: T) -> T {
    value.clone()
}

fn decode_logged(key: &str, value: &[u8]) -> Option<Record> {
    match decode(kind_of(key)?, value)? {
        Ok(record) => Some(record),
        Err(err) => {
            tracing::error!(%key, %err, "undecodable record in the store; ignoring it");
            None
        }
    }
}

/// Writes to the store on behalf of API calls.
#[derive(Clone)]
pub struct Writer {
    store: Arc<dyn Store>,
    cache: Arc<Cache>,
}

/// What a compare-and-swap attempt decided to do with one key.
pub enum Write<T> {
    Put(T),
    Delete,
}

impl Writer {
    pub fn new(store: Arc<dyn Store>, cache: Arc<Cache>) -> Self {
        Self { store, cache }
    }

    /// Commits `txn` and waits until the cache shows it. `Ok(false)` means a
    /// compare failed: the caller re-reads and tries again. Either way the
    /// cache has caught up with the store's revision on return, so a retry
    /// sees the write that beat it instead of spinning on stale reads.
    pub async fn commit(&self, txn: Txn) -> Result<bool, EcsError> {
        let response = self.store.txn(txn).await.map_err(store_failure)?;
        self.cache.wait_for(response.revision).await;
        Ok(response.succeeded)
    }

    /// Read-modify-write of one key with retries on conflict. `f` sees the
    /// current value (if any) and returns what to write plus a result.
    pub async fn update<T: Stored, R>(
        &self,
        key: &str,
        mut f: impl FnMut(Option<T>) -> Result<(Option<Write<T>>, R), EcsError>,
    ) -> Result<R, EcsError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let current = self.cache.get::<T>(key);
            let seen = current.as_ref().map_or(0, |v| v.mod_revision);
            let (write, result) = f(current.map(|v| v.value))?;
            let Some(write) = write else {
                return Ok(result);
            };
            let txn = guard(Txn::new(), key, seen);
            let txn = match write {
                Write::Put(value) => txn.put(key, encode(&value)?),
                Write::Delete => txn.delete(key),
            };
            if self.commit(txn).await? {
                return Ok(result);
            }
        }
        Err(contention())
    }
}

/// Compare that `key` is still at the revision it was read at (0 = absent).
pub fn guard(txn: Txn, key: &str, seen: Revision) -> Txn {
    txn.when(Compare::ModRevision {
        key: key.to_owned(),
        revision: seen,
    })
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EcsError> {
    serde_json::to_vec(value).map_err(|e| EcsError::server(format!("cannot encode a record: {e}")))
}

/// Bound on compare-and-swap retries before reporting contention.
pub const MAX_CAS_ATTEMPTS: usize = 64;

pub fn contention() -> EcsError {
    EcsError::server("Too much contention on this resource. Please try again.")
}

fn store_failure(err: StoreError) -> EcsError {
    tracing::error!(%err, "store failure");
    EcsError::server("Service Unavailable. Please try again later.")
}

#[cfg(test)]
mod tests {
    use berth_types::NetworkMode;
    use berth_types::agent::{ContainerSpec, DesiredStatus};

    use super::*;

    fn stored_task(id: &str, image: &str) -> Vec<u8> {
        let spec = TaskSpec {
            task_arn: format!("arn:task/{id}"),
            cluster_arn: "arn:cluster".into(),
            task_definition_arn: "arn:task-definition/web:1".into(),
            family: "web".into(),
            revision: 1,
            desired_status: DesiredStatus::Running,
            desired_version: 1,
            network_mode: NetworkMode::Bridge,
            cpu: None,
            memory_mib: None,
            containers: vec![ContainerSpec {
                container_arn: format!("arn:container/{id}"),
                definition: Arc::new(ContainerDefinition {
                    name: Some("web".into()),
                    image: Some(image.into()),
                    ..ContainerDefinition::default()
                }),
            }],
            volumes: Vec::new(),
            pid_mode: None,
            ipc_mode: None,
            network_interface: None,
        };
        let record = TaskRecord {
            task: Task::default(),
            spec,
            instance_id: None,
            reservation: Reservation::default(),
            released: false,
        };
        serde_json::to_vec(&record).expect("encodes")
    }

    fn definition(record: &Record) -> Arc<ContainerDefinition> {
        let task = TaskRecord::from_record(record).expect("a task");
        Arc::clone(&task.spec.containers[0].definition)
    }

    #[test]
    fn tasks_of_one_revision_share_equal_container_definitions() {
        let mut snapshot = Snapshot::default();
        let key = |id: &str| format!("ecs/us-east-1/000000000000/task/c/{id}");
        let a = snapshot
            .decode(&key("a"), &stored_task("a", "web:1"))
            .expect("a");
        let b = snapshot
            .decode(&key("b"), &stored_task("b", "web:1"))
            .expect("b");
        assert!(Arc::ptr_eq(&definition(&a), &definition(&b)));
        // An override makes the definition differ: it is not shared.
        let c = snapshot
            .decode(&key("c"), &stored_task("c", "other"))
            .expect("c");
        assert!(!Arc::ptr_eq(&definition(&a), &definition(&c)));
        assert_eq!(definition(&c).image.as_deref(), Some("other"));
    }

    #[test]
    fn decoded_vectors_hold_no_spare_capacity() {
        let mut snapshot = Snapshot::default();
        let key = "ecs/us-east-1/000000000000/task/c/a";
        let record = snapshot.decode(key, &stored_task("a", "web:1")).expect("a");
        let task = TaskRecord::from_record(&record).expect("a task");
        assert_eq!(task.spec.containers.capacity(), 1);
    }
}
