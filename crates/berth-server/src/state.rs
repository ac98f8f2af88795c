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
//!
//! Tasks, by far the most numerous records, are held packed (see
//! [`crate::packed`]) with a [`TaskHeader`] of the fields scans filter on:
//! point reads decode them, scans read headers. Every other kind is held
//! decoded ([`Resident`]), so it can be scanned and shared as it is.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::marker::PhantomData;
use std::net::Ipv4Addr;
use std::ops::{Bound, Deref};
use std::sync::{Arc, RwLock};

use berth_core::lifecycle;
use berth_core::service::ServiceState;
use berth_store::{Compare, Event, EventKind, Revision, Store, StoreError, Txn};
use berth_types::agent::{DesiredStatus, TaskSpec};
use berth_types::arn::Scope;
use berth_types::{
    CapacityProvider, Cluster, ContainerInstance, EcsError, LaunchType, Service, Setting, Tag,
    Task, TaskDefinition, Timestamp,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::intern::Interner;
use crate::packed::{Packed, Packer};

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

/// A value of the cache. Every variant is boxed: each record is its own
/// `Arc` allocation of this enum's size, and an inline variant would make
/// every small record pay for the largest one.
#[derive(Debug)]
pub enum Record {
    Cluster(Box<Cluster>),
    TaskDefinition(Box<TaskDefinitionRecord>),
    Family(Box<FamilyRecord>),
    ContainerInstance(Box<ContainerInstance>),
    Setting(Box<Setting>),
    CapacityProvider(Box<CapacityProvider>),
    Task(Box<CachedTask>),
    ClientToken(Box<ClientTokenRecord>),
    Service(Box<ServiceRecord>),
}

/// A record type with its key kind.
pub trait Stored: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const KIND: &'static str;
    /// The value a cache record holds: borrowed when the cache keeps it
    /// decoded, else decoded now.
    fn read(record: &Record) -> Option<Cow<'_, Self>>;
}

/// A kind the cache keeps decoded, so it can be scanned and shared without
/// decoding anything.
pub trait Resident: Stored {
    fn borrow(record: &Record) -> Option<&Self>;
}

macro_rules! resident {
    ($($ty:ty => $variant:ident, $kind:literal;)+) => {
        $(impl Stored for $ty {
            const KIND: &'static str = $kind;
            fn read(record: &Record) -> Option<Cow<'_, Self>> {
                Self::borrow(record).map(Cow::Borrowed)
            }
        }

        impl Resident for $ty {
            fn borrow(record: &Record) -> Option<&Self> {
                match record {
                    Record::$variant(v) => Some(v.as_ref()),
                    _ => None,
                }
            }
        })+

        fn decode_resident(kind: &str, value: &[u8]) -> Option<Result<Record, serde_json::Error>> {
            match kind {
                $($kind => Some(
                    serde_json::from_slice::<$ty>(value)
                        .map(|v| Record::$variant(Box::new(exact_capacity(v)))),
                ),)+
                _ => None,
            }
        }
    };
}

resident! {
    Cluster => Cluster, "cluster";
    TaskDefinitionRecord => TaskDefinition, "taskdef";
    FamilyRecord => Family, "family";
    ContainerInstance => ContainerInstance, "instance";
    Setting => Setting, "setting";
    CapacityProvider => CapacityProvider, "capacity-provider";
    ClientTokenRecord => ClientToken, "client-token";
    ServiceRecord => Service, "service";
}

impl Stored for TaskRecord {
    const KIND: &'static str = "task";
    fn read(record: &Record) -> Option<Cow<'_, Self>> {
        match record {
            Record::Task(task) => task.unpack::<TaskRecord>().map(Cow::Owned),
            _ => None,
        }
    }
}

/// What scans of tasks read: the fields they filter and group on, kept
/// decoded beside the packed record. Strings that many tasks share are
/// shared, and the task's ARN is its key's (see [`TaskHeader::task_arn`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskHeader {
    /// The task's ARN when it is not the one its key names, which only a
    /// record written by hand can make happen.
    arn_unlike_key: Option<Box<str>>,
    pub family: Arc<str>,
    pub group: Option<Arc<str>>,
    pub started_by: Option<Arc<str>>,
    pub last_status: Option<Arc<str>>,
    pub desired_status: Option<Arc<str>>,
    pub launch_type: Option<LaunchType>,
    pub capacity_provider: Option<Arc<str>>,
    /// The container instance holding it: one of the cluster's (EC2,
    /// EXTERNAL) or of the Fargate pool.
    pub instance_id: Option<Arc<str>>,
    /// Whether the task shows a `containerInstanceArn` (not on Fargate).
    pub on_container_instance: bool,
    /// Its own address (awsvpc).
    pub address: Option<Ipv4Addr>,
    pub stopped_at: Option<Timestamp>,
    /// What its agent is told to do, and the version of that order.
    pub agent_desired_status: DesiredStatus,
    pub desired_version: i64,
    pub released: bool,
}

/// The fields of a stored [`TaskRecord`] its header is made of, read
/// without decoding the rest: the cache makes a header for every task
/// write. Field names are the record's own (a test holds them together).
#[derive(Deserialize)]
struct StoredHeader<'a> {
    #[serde(borrow)]
    task: StoredTaskFields<'a>,
    #[serde(borrow)]
    spec: StoredSpecFields<'a>,
    #[serde(borrow, default)]
    instance_id: Option<Cow<'a, str>>,
    #[serde(default)]
    released: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredTaskFields<'a> {
    #[serde(borrow, default)]
    group: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    started_by: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    last_status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    desired_status: Option<Cow<'a, str>>,
    #[serde(default)]
    launch_type: Option<LaunchType>,
    #[serde(borrow, default)]
    capacity_provider_name: Option<Cow<'a, str>>,
    #[serde(default)]
    container_instance_arn: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    stopped_at: Option<Timestamp>,
}

#[derive(Deserialize)]
struct StoredSpecFields<'a> {
    #[serde(borrow)]
    task_arn: Cow<'a, str>,
    #[serde(borrow)]
    family: Cow<'a, str>,
    desired_status: DesiredStatus,
    desired_version: i64,
    #[serde(borrow, default)]
    network_interface: Option<StoredInterfaceFields<'a>>,
}

#[derive(Deserialize)]
struct StoredInterfaceFields<'a> {
    #[serde(borrow)]
    ipv4_address: Cow<'a, str>,
}

/// What the cache reads of a stored task to hold it: only the spec.
#[derive(Deserialize)]
struct StoredSpec {
    spec: TaskSpec,
}

impl TaskHeader {
    /// The header of the task stored at `key` as `value`.
    fn parse(key: &str, value: &[u8], strings: &mut Interner) -> serde_json::Result<Self> {
        let StoredHeader {
            task,
            spec,
            instance_id,
            released,
        } = serde_json::from_slice(value)?;
        let mut shared = |s: Option<Cow<'_, str>>| s.map(|s| strings.intern(&s));
        Ok(Self {
            arn_unlike_key: (task_arn_of(key).as_deref() != Some(&*spec.task_arn))
                .then(|| spec.task_arn.into()),
            family: shared(Some(spec.family)).unwrap_or_default(),
            group: shared(task.group),
            started_by: shared(task.started_by),
            last_status: shared(task.last_status),
            desired_status: shared(task.desired_status),
            launch_type: task.launch_type,
            capacity_provider: shared(task.capacity_provider_name),
            instance_id: shared(instance_id),
            on_container_instance: task.container_instance_arn.is_some(),
            address: spec
                .network_interface
                .and_then(|eni| eni.ipv4_address.parse().ok()),
            stopped_at: task.stopped_at,
            agent_desired_status: spec.desired_status,
            desired_version: spec.desired_version,
            released,
        })
    }

    pub fn is_stopped(&self) -> bool {
        self.last_status.as_deref() == Some(lifecycle::STOPPED)
    }

    /// The ARN of the task, whose key is `key`.
    pub fn task_arn(&self, key: &str) -> String {
        match &self.arn_unlike_key {
            Some(arn) => arn.to_string(),
            None => task_arn_of(key).unwrap_or_default(),
        }
    }
}

/// The ARN of the task whose key is `key`
/// (`ecs/{region}/{account}/task/{cluster}/{id}`).
pub fn task_arn_of(key: &str) -> Option<String> {
    let mut parts = key.split('/');
    let (_root, region, account, kind, cluster, id) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (kind == TaskRecord::KIND && parts.next().is_none())
        .then(|| Scope::new(region, account).task(cluster, id))
}

/// A task as the cache holds it.
#[derive(Debug)]
pub struct CachedTask {
    header: TaskHeader,
    record: Packed,
}

impl CachedTask {
    /// Decodes the record, or as much of it as `T` reads.
    fn unpack<T: DeserializeOwned>(&self) -> Option<T> {
        let decoded = self
            .record
            .unpack()
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()));
        match decoded {
            Ok(value) => Some(value),
            Err(err) => {
                tracing::error!(%err, "cannot read a cached task");
                None
            }
        }
    }
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
    entries: BTreeMap<Arc<str>, Entry>,
    /// Instance id → the keys of the tasks placed on it, so a host's view
    /// (the agent hub's manifests) never scans a whole cluster.
    tasks_by_instance: HashMap<Arc<str>, BTreeSet<Arc<str>>>,
    /// A cluster's task prefix → tasks per `lastStatus`, so cluster
    /// statistics never scan a cluster's tasks.
    task_statuses: HashMap<String, HashMap<Arc<str>, usize>>,
    /// One packer for all tasks: their records look alike across clusters.
    tasks: Packer,
    strings: Interner,
}

fn task_header(record: &Record) -> Option<&TaskHeader> {
    match record {
        Record::Task(task) => Some(&task.header),
        _ => None,
    }
}

impl Snapshot {
    /// Decodes a stored value into a record; of a task, only its header is
    /// read, and the value kept packed.
    fn decode(&mut self, key: &str, value: &[u8]) -> Option<Record> {
        let kind = kind_of(key)?;
        let decoded = if kind == TaskRecord::KIND {
            TaskHeader::parse(key, value, &mut self.strings).map(|header| {
                Record::Task(Box::new(CachedTask {
                    header,
                    record: self.tasks.pack(value),
                }))
            })
        } else {
            decode_resident(kind, value)?
        };
        match decoded {
            Ok(record) => Some(record),
            Err(err) => {
                tracing::error!(%key, %err, "undecodable record in the store; ignoring it");
                None
            }
        }
    }

    /// Puts (`Some`) or deletes (`None`) one entry, keeping the indexes.
    fn set(&mut self, key: &str, entry: Option<Entry>) {
        let key: Arc<str> = match self.entries.get_key_value(key) {
            Some((held, _)) => Arc::clone(held),
            None => Arc::from(key),
        };
        let new = entry.as_ref().and_then(|e| task_header(&e.record)).cloned();
        let prefix = key.rfind('/').map_or("", |end| &key[..=end]).to_owned();
        if let Some(new) = &new {
            if let Some(instance) = &new.instance_id {
                self.tasks_by_instance
                    .entry(Arc::clone(instance))
                    .or_default()
                    .insert(Arc::clone(&key));
            }
            if let Some(status) = &new.last_status {
                *self
                    .task_statuses
                    .entry(prefix.clone())
                    .or_default()
                    .entry(Arc::clone(status))
                    .or_default() += 1;
            }
        }
        let old = match entry {
            Some(entry) => self.entries.insert(Arc::clone(&key), entry),
            None => self.entries.remove(&key),
        };
        let Some(old) = old.as_ref().and_then(|e| task_header(&e.record)) else {
            return;
        };
        if let Some(status) = &old.last_status
            && let Some(counts) = self.task_statuses.get_mut(&prefix)
            && let Some(n) = counts.get_mut(status)
        {
            *n -= 1;
        }
        if let Some(old_instance) = &old.instance_id
            && new.as_ref().and_then(|n| n.instance_id.as_ref()) != Some(old_instance)
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

/// A resident record shared with the cache rather than copied out of it.
#[derive(Debug, Clone)]
pub struct Shared<T> {
    record: Arc<Record>,
    kind: PhantomData<fn() -> T>,
}

impl<T: Resident> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        T::borrow(&self.record).expect("a Shared is only made of a record of its kind")
    }
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
                snapshot.set(&kv.key, Some(entry));
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
                        snapshot.set(&event.kv.key, Some(entry));
                    }
                }
                EventKind::Delete => snapshot.set(&event.kv.key, None),
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

    fn entry(&self, key: &str) -> Option<Entry> {
        let snapshot = self.snapshot.read().expect("cache lock poisoned");
        snapshot.entries.get(key).cloned()
    }

    pub fn get<T: Stored>(&self, key: &str) -> Option<Versioned<T>> {
        // Decoding a packed record happens outside the lock.
        let entry = self.entry(key)?;
        let value = T::read(&entry.record)?.into_owned();
        Some(Versioned {
            mod_revision: entry.mod_revision,
            value,
        })
    }

    /// A resident record, shared with the cache instead of copied.
    pub fn get_shared<T: Resident>(&self, key: &str) -> Option<Versioned<Shared<T>>> {
        let entry = self.entry(key)?;
        T::borrow(&entry.record)?;
        Some(Versioned {
            mod_revision: entry.mod_revision,
            value: Shared {
                record: entry.record,
                kind: PhantomData,
            },
        })
    }

    /// Reads a record in place: without copying it when it is resident,
    /// decoding it when it is packed.
    pub fn peek<T: Stored, R>(&self, key: &str, f: impl FnOnce(&T) -> R) -> Option<R> {
        let entry = self.entry(key)?;
        Some(f(&*T::read(&entry.record)?))
    }

    /// What the agent of the task at `key` runs (decoding only that).
    pub fn task_spec(&self, key: &str) -> Option<TaskSpec> {
        let entry = self.entry(key)?;
        match entry.record.as_ref() {
            Record::Task(task) => task.unpack::<StoredSpec>().map(|stored| stored.spec),
            _ => None,
        }
    }

    /// Reads the header of the task at `key`, with the key shared as
    /// below.
    pub fn peek_task<R>(
        &self,
        key: &str,
        f: impl FnOnce(&Arc<str>, &TaskHeader) -> R,
    ) -> Option<R> {
        let snapshot = self.snapshot.read().expect("cache lock poisoned");
        let (key, entry) = snapshot.entries.get_key_value(key)?;
        task_header(&entry.record).map(|header| f(key, header))
    }

    /// How many tasks under `prefix` (a cluster's task prefix) are in each
    /// `lastStatus`.
    pub fn task_status_counts(&self, prefix: &str) -> HashMap<String, usize> {
        let snapshot = self.snapshot.read().expect("cache lock poisoned");
        snapshot
            .task_statuses
            .get(prefix)
            .map(|counts| {
                counts
                    .iter()
                    .map(|(status, n)| (status.to_string(), *n))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Maps the headers of the tasks placed on instance `instance_id`,
    /// keeping the `Some` results, in key order. Keys come shared with the
    /// cache, so an index may keep them at no cost.
    pub fn select_instance_tasks<R>(
        &self,
        instance_id: &str,
        mut f: impl FnMut(&Arc<str>, &TaskHeader) -> Option<R>,
    ) -> Vec<R> {
        let snapshot = self.snapshot.read().expect("cache lock poisoned");
        let Some(keys) = snapshot.tasks_by_instance.get(instance_id) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|key| f(key, task_header(&snapshot.entries.get(key)?.record)?))
            .collect()
    }

    /// Maps the headers of every task under `prefix`, keeping the `Some`
    /// results, in key order, with keys shared as above.
    pub fn select_tasks<R>(
        &self,
        prefix: &str,
        mut f: impl FnMut(&Arc<str>, &TaskHeader) -> Option<R>,
    ) -> Vec<R> {
        self.scan(prefix, |key, entry| f(key, task_header(&entry.record)?))
    }

    /// Maps every record of a kind under `prefix` in place, keeping the
    /// `Some` results, in key order.
    pub fn select<T: Resident, R>(
        &self,
        prefix: &str,
        mut f: impl FnMut(&str, &T) -> Option<R>,
    ) -> Vec<R> {
        self.scan(prefix, |key, entry| {
            T::borrow(&entry.record).and_then(|v| f(key, v))
        })
    }

    /// Every record of a kind under `prefix`, in key order, with its key.
    pub fn list<T: Resident>(&self, prefix: &str) -> Vec<(String, Versioned<T>)> {
        self.scan(prefix, |key, entry| {
            T::borrow(&entry.record).map(|value| {
                (
                    key.to_string(),
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
        self.scan(ROOT, |key, _| {
            (kind_of(key) == Some(T::KIND)).then(|| key.to_string())
        })
    }

    /// Counts records of a kind under `prefix` that satisfy `pred`, without cloning them.
    pub fn count<T: Resident>(&self, prefix: &str, pred: impl Fn(&T) -> bool) -> usize {
        self.scan(prefix, |_, entry| {
            T::borrow(&entry.record).filter(|v| pred(v)).map(|_| ())
        })
        .len()
    }

    fn scan<R>(&self, prefix: &str, mut f: impl FnMut(&Arc<str>, &Entry) -> Option<R>) -> Vec<R> {
        let snapshot = self.snapshot.read().expect("cache lock poisoned");
        snapshot
            .entries
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
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
    use berth_types::agent::ContainerSpec;
    use berth_types::{Attribute, ContainerDefinition, NetworkMode};

    use super::*;

    fn task(id: &str, instance: &str, status: &str) -> TaskRecord {
        let spec = TaskSpec {
            task_arn: format!("arn:task/{id}"),
            cluster_arn: "arn:cluster".into(),
            task_definition_arn: "arn:task-definition/web:1".into(),
            family: "web".into(),
            revision: 1,
            desired_status: DesiredStatus::Running,
            desired_version: 3,
            network_mode: NetworkMode::Bridge,
            cpu: None,
            memory_mib: None,
            containers: vec![ContainerSpec {
                container_arn: format!("arn:container/{id}"),
                definition: Arc::new(ContainerDefinition {
                    name: Some("web".into()),
                    image: Some("web:1".into()),
                    ..ContainerDefinition::default()
                }),
            }],
            volumes: Vec::new(),
            pid_mode: None,
            ipc_mode: None,
            network_interface: None,
        };
        TaskRecord {
            task: Task {
                task_arn: Some(spec.task_arn.clone()),
                last_status: Some(status.into()),
                desired_status: Some("RUNNING".into()),
                group: Some("family:web".into()),
                container_instance_arn: Some(format!("arn:container-instance/{instance}")),
                ..Task::default()
            },
            spec,
            instance_id: Some(instance.into()),
            reservation: Reservation::default(),
            released: false,
        }
    }

    fn key(id: &str) -> String {
        format!("ecs/us-east-1/000000000000/task/c/{id}")
    }

    fn put(snapshot: &mut Snapshot, record: &TaskRecord) {
        let key = key(record.spec.task_arn.rsplit('/').next().unwrap());
        let value = serde_json::to_vec(record).expect("encodes");
        let record = snapshot.decode(&key, &value).expect("decodes");
        let entry = Entry {
            mod_revision: 1,
            record: Arc::new(record),
        };
        snapshot.set(&key, Some(entry));
    }

    fn read(snapshot: &Snapshot, id: &str) -> TaskRecord {
        let entry = snapshot.entries.get(key(id).as_str()).expect("held");
        TaskRecord::read(&entry.record)
            .expect("a task")
            .into_owned()
    }

    #[test]
    fn tasks_are_held_packed_and_read_back_whole() {
        let mut snapshot = Snapshot::default();
        let records: Vec<TaskRecord> = (0..50)
            .map(|i| task(&format!("{i:032x}"), "i-1", "RUNNING"))
            .collect();
        for record in &records {
            put(&mut snapshot, record);
        }
        for record in &records {
            let id = record.spec.task_arn.rsplit('/').next().unwrap();
            let back = read(&snapshot, id);
            assert_eq!(
                serde_json::to_value(&back).unwrap(),
                serde_json::to_value(record).unwrap()
            );
        }
        let entry = snapshot
            .entries
            .get(key(&format!("{:032x}", 49)).as_str())
            .unwrap();
        let Record::Task(cached) = entry.record.as_ref() else {
            panic!("not a task")
        };
        let encoded = serde_json::to_vec(&records[49]).unwrap().len();
        assert!(
            cached.record.packed_len() * 4 < encoded,
            "{} of {encoded} bytes",
            cached.record.packed_len()
        );
        assert_eq!(
            cached.header.arn_unlike_key.as_deref(),
            Some(records[49].spec.task_arn.as_str())
        );
        assert_eq!(cached.header.instance_id.as_deref(), Some("i-1"));
        assert_eq!(cached.header.group.as_deref(), Some("family:web"));
        assert_eq!(cached.header.desired_version, 3);
        assert!(cached.header.on_container_instance);
    }

    #[test]
    fn a_task_keeps_no_arn_when_its_key_names_it() {
        let mut snapshot = Snapshot::default();
        let id = "0123456789abcdef0123456789abcdef";
        let mut record = task(id, "i-1", "RUNNING");
        record.spec.task_arn = Scope::new("us-east-1", "000000000000").task("c", id);
        put(&mut snapshot, &record);
        let entry = snapshot.entries.get(key(id).as_str()).unwrap();
        let header = task_header(&entry.record).unwrap();
        assert_eq!(header.arn_unlike_key, None);
        assert_eq!(
            header.task_arn(&key(id)),
            "arn:aws:ecs:us-east-1:000000000000:task/c/0123456789abcdef0123456789abcdef"
        );
        // A record whose ARN its key does not name keeps its own.
        put(&mut snapshot, &task("other", "i-1", "RUNNING"));
        let entry = snapshot.entries.get(key("other").as_str()).unwrap();
        assert_eq!(
            task_header(&entry.record).unwrap().task_arn(&key("other")),
            "arn:task/other"
        );
    }

    /// The header as the record's own fields give it, to hold the field
    /// names `TaskHeader::parse` reads to the record's.
    fn expected_header(record: &TaskRecord) -> Vec<String> {
        let task = &record.task;
        vec![
            record.spec.family.clone(),
            format!("{:?}", task.group),
            format!("{:?}", task.started_by),
            format!("{:?}", task.last_status),
            format!("{:?}", task.desired_status),
            format!("{:?}", task.launch_type),
            format!("{:?}", task.capacity_provider_name),
            format!("{:?}", record.instance_id),
            format!("{}", task.container_instance_arn.is_some()),
            format!(
                "{:?}",
                record
                    .spec
                    .network_interface
                    .as_ref()
                    .map(|eni| eni.ipv4_address.clone())
            ),
            format!("{:?}", task.stopped_at),
            format!("{:?}", record.spec.desired_status),
            format!("{}", record.spec.desired_version),
            format!("{}", record.released),
        ]
    }

    fn parsed_header(header: &TaskHeader) -> Vec<String> {
        let owned = |s: &Option<Arc<str>>| format!("{:?}", s.as_deref().map(str::to_owned));
        vec![
            header.family.to_string(),
            owned(&header.group),
            owned(&header.started_by),
            owned(&header.last_status),
            owned(&header.desired_status),
            format!("{:?}", header.launch_type),
            owned(&header.capacity_provider),
            owned(&header.instance_id),
            format!("{}", header.on_container_instance),
            format!("{:?}", header.address.map(|a| a.to_string())),
            format!("{:?}", header.stopped_at),
            format!("{:?}", header.agent_desired_status),
            format!("{}", header.desired_version),
            format!("{}", header.released),
        ]
    }

    #[test]
    fn headers_read_the_fields_of_the_record() {
        let mut fargate = task("f", "pool-1", "STOPPED");
        fargate.task.container_instance_arn = None;
        fargate.task.launch_type = Some(LaunchType::Fargate);
        fargate.task.capacity_provider_name = Some("FARGATE_SPOT".into());
        fargate.task.started_by = Some("ecs-svc/123".into());
        fargate.task.stopped_at = Some(Timestamp::from_millis(1_700_000_000_123));
        fargate.task.desired_status = Some("STOPPED".into());
        fargate.spec.desired_status = DesiredStatus::Stopped;
        fargate.spec.network_interface = Some(berth_types::agent::TaskNetworkInterface {
            attachment_arn: "arn:attachment/1".into(),
            ipv4_address: "100.64.0.7".into(),
            mac_address: "0a:58:64:40:00:07".into(),
            subnet_cidr: "100.64.0.0/22".into(),
        });
        fargate.released = true;
        let mut bare = task("b", "i-1", "PENDING");
        bare.instance_id = None;
        bare.task.group = None;
        for record in [task("a", "i-1", "RUNNING"), fargate, bare] {
            let mut strings = Interner::default();
            let value = serde_json::to_vec(&record).unwrap();
            let header = TaskHeader::parse(&key("x"), &value, &mut strings).unwrap();
            assert_eq!(parsed_header(&header), expected_header(&record));
        }
    }

    #[test]
    fn headers_share_their_strings() {
        let mut snapshot = Snapshot::default();
        put(&mut snapshot, &task("a", "i-1", "RUNNING"));
        put(&mut snapshot, &task("b", "i-1", "RUNNING"));
        let header = |id: &str| {
            task_header(&snapshot.entries.get(key(id).as_str()).unwrap().record)
                .unwrap()
                .clone()
        };
        let (a, b) = (header("a"), header("b"));
        assert!(Arc::ptr_eq(
            a.group.as_ref().unwrap(),
            b.group.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(
            a.instance_id.as_ref().unwrap(),
            b.instance_id.as_ref().unwrap()
        ));
    }

    #[test]
    fn task_indexes_follow_moves_status_changes_and_deletes() {
        let mut snapshot = Snapshot::default();
        put(&mut snapshot, &task("a", "i-1", "PENDING"));
        put(&mut snapshot, &task("b", "i-1", "RUNNING"));
        let prefix = "ecs/us-east-1/000000000000/task/c/";
        let count =
            |s: &Snapshot, status: &str| s.task_statuses[prefix].get(status).copied().unwrap_or(0);
        assert_eq!(count(&snapshot, "PENDING"), 1);
        assert_eq!(snapshot.tasks_by_instance["i-1"].len(), 2);

        put(&mut snapshot, &task("a", "i-2", "RUNNING"));
        assert_eq!(count(&snapshot, "PENDING"), 0);
        assert_eq!(count(&snapshot, "RUNNING"), 2);
        assert_eq!(snapshot.tasks_by_instance["i-1"].len(), 1);
        assert_eq!(snapshot.tasks_by_instance["i-2"].len(), 1);

        snapshot.set(&key("b"), None);
        snapshot.set(&key("a"), None);
        assert_eq!(count(&snapshot, "RUNNING"), 0);
        assert!(snapshot.tasks_by_instance.is_empty());
        assert!(snapshot.entries.is_empty());
    }

    #[test]
    fn decoded_vectors_hold_no_spare_capacity() {
        let mut snapshot = Snapshot::default();
        let instance = ContainerInstance {
            attributes: Some(vec![Attribute {
                name: "ecs.os-type".into(),
                value: Some("linux".into()),
                ..Attribute::default()
            }]),
            ..ContainerInstance::default()
        };
        let key = "ecs/us-east-1/000000000000/instance/c/i-1";
        let record = snapshot
            .decode(key, &serde_json::to_vec(&instance).unwrap())
            .expect("decodes");
        let held = ContainerInstance::borrow(&record).expect("an instance");
        assert_eq!(held.attributes.as_ref().unwrap().capacity(), 1);
    }
}
