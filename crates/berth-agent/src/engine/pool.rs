//! The warm pool of namespaces (`berth agent --fargate --warm-namespaces
//! N`): pause containers started ahead of any task, each holding a network
//! namespace with no address yet, so that an awsvpc task only has to be
//! given its address (a veth and two iproute2 batches) instead of waiting
//! for a container to start. Owns the idle namespaces, their refill in the
//! background, and their removal when the agent shuts down.
//!
//! A claimed namespace carries no task label — Docker's labels cannot be
//! changed — so the task's record is what ties it to its task
//! (`TaskRecord::namespace`); on start the engine adopts the ones records
//! claim and removes the others. Refills wait while a task is launching,
//! for at most [`REFILL_DEFER`], so that making the next namespace does not
//! compete with that task's containers for the engine.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_types::agent::PAUSE_CONTAINER_NAME;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::runtime::{
    ContainerRuntime, LABEL_CONTAINER_NAME, LABEL_OWNER, LABEL_WARM_NAMESPACE, NamespaceSpec,
    RuntimeError,
};

/// The longest a refill waits for launching tasks to be running.
const REFILL_DEFER: Duration = Duration::from_secs(1);
/// How soon, and at most how far apart, a failed refill is tried again.
const RETRY: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

pub(crate) struct WarmPool {
    /// How many idle namespaces to keep.
    target: usize,
    owner: String,
    state: Mutex<State>,
    /// Wakes the refiller: a namespace was claimed, or a launch ended.
    wake: Notify,
    closed: watch::Sender<bool>,
    refiller: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    /// Runtime ids, oldest first.
    idle: VecDeque<String>,
    /// Tasks between their arrival and their start (or stop).
    launching: usize,
}

/// Held by a task from its arrival until it runs or stops.
pub(crate) struct Launch(Arc<WarmPool>);

impl Drop for Launch {
    fn drop(&mut self) {
        self.0.lock().launching -= 1;
        self.0.wake.notify_one();
    }
}

impl WarmPool {
    pub fn new(target: usize, owner: &str) -> Arc<Self> {
        Arc::new(Self {
            target,
            owner: owner.to_owned(),
            state: Mutex::default(),
            wake: Notify::new(),
            closed: watch::Sender::new(false),
            refiller: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        super::lock(&self.state)
    }

    /// Starts keeping the pool full.
    pub fn start(self: &Arc<Self>, runtime: Arc<dyn ContainerRuntime>) {
        let handle = tokio::spawn(refill(self.clone(), runtime));
        *super::lock(&self.refiller) = Some(handle);
    }

    /// An idle namespace for a task, if there is one; its refill follows.
    pub fn claim(&self) -> Option<String> {
        let id = self.lock().idle.pop_front();
        if id.is_some() {
            self.wake.notify_one();
        }
        id
    }

    /// Marks a task as launching until the guard goes.
    pub fn launch(self: &Arc<Self>) -> Launch {
        self.lock().launching += 1;
        Launch(self.clone())
    }

    /// Stops refilling, waiting for a namespace being made, and removes
    /// the idle ones.
    pub async fn drain(&self, runtime: &dyn ContainerRuntime) {
        self.closed.send_replace(true);
        let refiller = super::lock(&self.refiller).take();
        if let Some(refiller) = refiller {
            let _ = refiller.await;
        }
        let idle: Vec<String> = self.lock().idle.drain(..).collect();
        for id in idle {
            remove(runtime, &id).await;
        }
    }

    /// Stops refilling at once, leaving every namespace where it is, as an
    /// agent that exits does (its next start removes them).
    pub fn abandon(&self) {
        self.closed.send_replace(true);
        if let Some(refiller) = super::lock(&self.refiller).take() {
            refiller.abort();
        }
    }

    /// A new idle namespace: the owner's and the pool's labels, and none of
    /// the settings only some tasks ask for.
    fn spec(&self) -> NamespaceSpec {
        NamespaceSpec {
            name: format!(
                "berth-warm-namespace-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..20]
            ),
            labels: BTreeMap::from([
                (LABEL_OWNER.to_owned(), self.owner.clone()),
                (LABEL_WARM_NAMESPACE.to_owned(), "true".to_owned()),
                (
                    LABEL_CONTAINER_NAME.to_owned(),
                    PAUSE_CONTAINER_NAME.to_owned(),
                ),
            ]),
            cgroup_parent: None,
            hostname: None,
            dns_servers: Vec::new(),
            dns_search_domains: Vec::new(),
            extra_hosts: Vec::new(),
        }
    }
}

async fn remove(runtime: &dyn ContainerRuntime, id: &str) {
    match runtime.remove_namespace(id).await {
        Ok(()) | Err(RuntimeError::NotFound(_)) => {}
        Err(error) => tracing::warn!(%error, id, "cannot remove a warm namespace"),
    }
}

/// A started namespace; one that will not start is removed.
async fn make(
    runtime: &dyn ContainerRuntime,
    spec: &NamespaceSpec,
) -> Result<String, RuntimeError> {
    let id = runtime.create_namespace(spec).await?;
    if let Err(error) = runtime.start(&id).await {
        remove(runtime, &id).await;
        return Err(error);
    }
    Ok(id)
}

/// What the refiller waits for next.
enum Next {
    /// The pool is full.
    Claim,
    /// A task is launching; `Duration` is how much longer to let it.
    Launch(Duration),
    Make,
}

/// Keeps the pool at its target, one namespace at a time, until closed.
async fn refill(pool: Arc<WarmPool>, runtime: Arc<dyn ContainerRuntime>) {
    let mut closed = pool.closed.subscribe();
    let mut retry = RETRY;
    let mut deferred_since: Option<Instant> = None;
    loop {
        if *closed.borrow() {
            return;
        }
        let next = {
            let state = pool.lock();
            if state.idle.len() >= pool.target {
                Next::Claim
            } else if state.launching > 0 {
                let since = *deferred_since.get_or_insert_with(Instant::now);
                match REFILL_DEFER.checked_sub(since.elapsed()) {
                    Some(left) if !left.is_zero() => Next::Launch(left),
                    _ => Next::Make,
                }
            } else {
                Next::Make
            }
        };
        let wait = match next {
            Next::Claim => None,
            Next::Launch(left) => Some(left),
            Next::Make => {
                deferred_since = None;
                match make(runtime.as_ref(), &pool.spec()).await {
                    Ok(id) => {
                        retry = RETRY;
                        if *closed.borrow() {
                            remove(runtime.as_ref(), &id).await;
                            return;
                        }
                        pool.lock().idle.push_back(id);
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, ?retry, "cannot make a warm namespace; retrying");
                        let wait = retry;
                        retry = (retry * 2).min(RETRY_MAX);
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            _ = closed.wait_for(|closed| *closed) => return,
                        }
                        continue;
                    }
                }
            }
        };
        let woken = pool.wake.notified();
        tokio::select! {
            () = woken => {}
            () = sleep_for(wait) => {}
            _ = closed.wait_for(|closed| *closed) => return,
        }
    }
}

async fn sleep_for(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}
