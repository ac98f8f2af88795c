//! The server end of the agents' push channel (`/ws/acs`): one session per
//! connected agent that pushes the desired state of the tasks placed on its
//! instance, tracks acknowledgements, exchanges heartbeats, sends a
//! periodic manifest, records health reports, and keeps the instance's
//! `agentConnected` true exactly while a session is live.
//!
//! Sessions learn about new or changed tasks from the cache's change feed,
//! so a task placed by any server reaches its agent. One router follows the
//! feed and hands each changed task to the session of its instance, so a
//! change costs the same with 5 agents connected or 5,000.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_core::lifecycle;
use berth_types::agent::{
    AgentMessage, HealthReport, Manifest, ManifestEntry, Payload, ServerMessage, TaskSpec,
};
use berth_types::{ContainerInstance, EcsError, Timestamp};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::api::{Api, Ctx, clusters, container_instances, tasks};
use crate::protocol::region_from_authorization;
use crate::state::{TaskHeader, Write, kind_of};

/// How often each side probes the other.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// A session with no frame from its agent for this long is dead.
const SILENCE_LIMIT: Duration = Duration::from_secs(35);
/// How often the full manifest is sent, and unacknowledged payloads resent.
const MANIFEST_INTERVAL: Duration = Duration::from_secs(30);
const RESEND_AFTER: Duration = Duration::from_secs(10);
/// Per-socket read buffer for an agent's frames (acks, heartbeats, health:
/// a few hundred bytes; a larger frame takes more reads). Held by every
/// idle session, so small.
const AGENT_READ_BUFFER: usize = 1024;
/// The largest frame an agent may send.
const AGENT_MAX_FRAME: usize = 4 * 1024 * 1024;

/// What the router hands a session.
enum Route {
    /// Keys of changed tasks placed on the session's instance.
    Tasks(Vec<String>),
    /// The router fell behind the feed: re-read everything.
    Resync,
}

/// Which session currently owns each instance, where its routed changes
/// go, and the shutdown signal.
pub struct Hub {
    owners: Mutex<HashMap<String, u64>>,
    /// Instance id → the owning session's route.
    routes: Mutex<HashMap<String, mpsc::UnboundedSender<Route>>>,
    next: Mutex<u64>,
    shutdown: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            owners: Mutex::new(HashMap::new()),
            routes: Mutex::new(HashMap::new()),
            next: Mutex::new(0),
            shutdown: watch::channel(false).0,
        }
    }
}

impl Hub {
    /// Claims an instance for a new session; an older session notices (its
    /// route closes) and ends.
    fn claim(
        &self,
        instance_key: &str,
        instance_id: &str,
    ) -> (u64, mpsc::UnboundedReceiver<Route>) {
        let mut next = self.next.lock().expect("hub lock poisoned");
        *next += 1;
        self.owners
            .lock()
            .expect("hub lock poisoned")
            .insert(instance_key.to_owned(), *next);
        let (sender, receiver) = mpsc::unbounded_channel();
        self.routes
            .lock()
            .expect("hub lock poisoned")
            .insert(instance_id.to_owned(), sender);
        (*next, receiver)
    }

    fn owns(&self, instance_key: &str, session: u64) -> bool {
        self.owners
            .lock()
            .expect("hub lock poisoned")
            .get(instance_key)
            == Some(&session)
    }

    /// Releases the instance if this session still owns it.
    fn release(&self, instance_key: &str, instance_id: &str, session: u64) -> bool {
        let mut owners = self.owners.lock().expect("hub lock poisoned");
        if owners.get(instance_key) == Some(&session) {
            owners.remove(instance_key);
            self.routes
                .lock()
                .expect("hub lock poisoned")
                .remove(instance_id);
            true
        } else {
            false
        }
    }

    fn route(&self, instance_id: &str, route: Route) {
        if let Some(sender) = self
            .routes
            .lock()
            .expect("hub lock poisoned")
            .get(instance_id)
        {
            let _ = sender.send(route);
        }
    }

    /// Ends every session (server shutdown).
    pub fn close_all(&self) {
        self.shutdown.send_replace(true);
    }
}

#[derive(Debug, Deserialize)]
pub struct AcsQuery {
    cluster: String,
    #[serde(rename = "containerInstance")]
    container_instance: String,
}

fn refuse(err: &EcsError) -> Response {
    (
        StatusCode::from_u16(err.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
        err.to_body(),
    )
        .into_response()
}

pub async fn acs(
    State(api): State<Arc<Api>>,
    Query(query): Query<AcsQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let ctx = Ctx::new(&api, region_from_authorization(&headers));
    let cluster = match clusters::for_agent(&api, &ctx, Some(&query.cluster)) {
        Ok(c) => c,
        Err(err) => return refuse(&err),
    };
    let Some((instance_key, found)) =
        container_instances::find(&api, &ctx, &cluster, &query.container_instance)
    else {
        return refuse(&EcsError::invalid_parameter(format!(
            "Container instance {} is not registered in cluster {cluster}.",
            query.container_instance
        )));
    };
    if found.value.status.as_deref() == Some(container_instances::INACTIVE) {
        return refuse(&EcsError::client(
            "The container instance has been deregistered.",
        ));
    }
    let instance_id =
        berth_types::arn::Arn::parse(found.value.container_instance_arn.as_deref().unwrap_or(""))
            .map(|a| a.last_segment().to_owned())
            .unwrap_or_default();
    // tungstenite's defaults (128 KiB read and write buffers per socket)
    // would cost over 1 GiB at 5,000 agents; frames here are small.
    let upgrade = upgrade
        .read_buffer_size(AGENT_READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(AGENT_MAX_FRAME);
    upgrade.on_upgrade(move |socket| async move {
        let session = Session {
            api,
            ctx,
            cluster,
            instance_id,
            instance_key,
            sent: HashMap::new(),
            unacked: BTreeMap::new(),
            seq: 0,
            timeline: 0,
        };
        session.run(socket).await;
    })
}

struct Session {
    api: Arc<Api>,
    ctx: Ctx,
    cluster: String,
    instance_id: String,
    instance_key: String,
    /// The desired version last pushed for each task not yet stopped, by
    /// task key (shared with the cache).
    sent: HashMap<Arc<str>, i64>,
    unacked: BTreeMap<i64, (Instant, Payload)>,
    seq: i64,
    timeline: i64,
}

enum Next {
    Continue,
    End,
}

impl Session {
    /// Runs the session. Every handler's future is boxed while it runs: a
    /// session lives as long as its agent, and inline they would make each
    /// of thousands of idle sessions as large as the largest of them.
    async fn run(mut self, mut socket: WebSocket) {
        let api = Arc::clone(&self.api);
        let hub = &api.hub;
        let (session, mut routed) = hub.claim(&self.instance_key, &self.instance_id);
        let mut shutdown = hub.shutdown.subscribe();
        if let Err(err) = Box::pin(self.set_connected(true)).await {
            tracing::warn!(instance = %self.instance_key, %err, "cannot mark agent connected");
        }
        tracing::info!(instance = %self.instance_id, cluster = %self.cluster, "agent connected");
        let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
        let mut manifest = tokio::time::interval(MANIFEST_INTERVAL);
        let mut last_heard = Instant::now();
        let mut ok = Box::pin(self.push_all(&mut socket)).await;
        while ok {
            let next = tokio::select! {
                frame = socket.recv() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        last_heard = Instant::now();
                        Box::pin(self.on_frame(&mut socket, text.as_str())).await
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Binary(_))) => {
                        last_heard = Instant::now();
                        Next::Continue
                    }
                    _ => Next::End,
                },
                route = routed.recv() => match route {
                    Some(Route::Tasks(keys)) => Box::pin(self.on_change(&mut socket, &keys)).await,
                    Some(Route::Resync) => {
                        if Box::pin(self.push_all(&mut socket)).await { Next::Continue } else { Next::End }
                    }
                    None => Next::End,
                },
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > SILENCE_LIMIT || !hub.owns(&self.instance_key, session) {
                        Next::End
                    } else {
                        let frame = ServerMessage::Heartbeat { message_id: uuid::Uuid::new_v4().to_string() };
                        if Box::pin(send(&mut socket, &frame)).await { Next::Continue } else { Next::End }
                    }
                }
                _ = manifest.tick() => {
                    if Box::pin(self.send_manifest(&mut socket)).await
                        && Box::pin(self.resend(&mut socket)).await
                    {
                        Next::Continue
                    } else {
                        Next::End
                    }
                }
                _ = shutdown.changed() => {
                    let _ = send(&mut socket, &ServerMessage::Close { reason: "server shutting down".into() }).await;
                    Next::End
                }
            };
            ok = matches!(next, Next::Continue);
        }
        let _ = socket.send(Message::Close(None)).await;
        if hub.release(&self.instance_key, &self.instance_id, session) {
            if let Err(err) = Box::pin(self.set_connected(false)).await {
                tracing::warn!(instance = %self.instance_key, %err, "cannot mark agent disconnected");
            }
            tracing::info!(instance = %self.instance_id, "agent disconnected");
        }
    }

    async fn set_connected(&self, connected: bool) -> Result<(), EcsError> {
        self.api
            .writer
            .update::<ContainerInstance, ()>(&self.instance_key, |current| match current {
                Some(mut ci) if ci.agent_connected != connected => {
                    ci.agent_connected = connected;
                    ci.version += 1;
                    Ok((Some(Write::Put(ci)), ()))
                }
                _ => Ok((None, ())),
            })
            .await
    }

    async fn on_frame(&mut self, socket: &mut WebSocket, text: &str) -> Next {
        let Ok(frame) = serde_json::from_str::<AgentMessage>(text) else {
            tracing::warn!(instance = %self.instance_id, "ignoring an undecodable agent frame");
            return Next::Continue;
        };
        match frame {
            AgentMessage::Ack { seq_num, .. } => {
                self.unacked.remove(&seq_num);
                Next::Continue
            }
            AgentMessage::Heartbeat { message_id } => {
                if send(socket, &ServerMessage::HeartbeatAck { message_id }).await {
                    Next::Continue
                } else {
                    Next::End
                }
            }
            AgentMessage::HeartbeatAck { .. } => Next::Continue,
            AgentMessage::Health(report) => {
                if let Err(err) = self.record_health(&report).await {
                    tracing::warn!(task = %report.task_arn, %err, "cannot record health");
                }
                Next::Continue
            }
        }
    }

    async fn record_health(&self, report: &HealthReport) -> Result<(), EcsError> {
        // A Fargate pool host runs the tasks of many clusters: the task's
        // own ARN names its cluster.
        let cluster = tasks::cluster_of(&report.task_arn).unwrap_or(&self.cluster);
        tasks::update(&self.api, &self.ctx, cluster, &report.task_arn, |record| {
            let before = record.task.clone();
            for health in &report.containers {
                if let Some(c) = record
                    .task
                    .containers
                    .iter_mut()
                    .flatten()
                    .find(|c| c.name.as_deref() == Some(health.container_name.as_str()))
                {
                    c.health_status = Some(health.health_status);
                }
            }
            let essential: Vec<&str> = record
                .spec
                .containers
                .iter()
                .filter(|c| c.definition.essential.unwrap_or(true))
                .filter_map(|c| c.definition.name.as_deref())
                .collect();
            let health = lifecycle::task_health(
                record
                    .task
                    .containers
                    .iter()
                    .flatten()
                    .filter(|c| c.name.as_deref().is_some_and(|n| essential.contains(&n))),
            );
            record.task.health_status = Some(health);
            let changed = record.task != before;
            if changed {
                record.task.version += 1;
            }
            Ok(changed)
        })
        .await
        .map(|_| ())
    }

    fn mine(&self, task: &TaskHeader) -> bool {
        task.instance_id.as_deref() == Some(self.instance_id.as_str())
    }

    /// Tasks of this instance whose desired state the agent has not been
    /// sent; `key` is the task's.
    fn due(&self, key: &str, task: &TaskHeader) -> bool {
        self.mine(task)
            && !task.is_stopped()
            && self.sent.get(key).is_none_or(|v| *v < task.desired_version)
    }

    /// What the agent runs of each due task, by key (the only place tasks
    /// are read whole).
    fn specs(&self, due: Vec<Arc<str>>) -> Vec<(Arc<str>, TaskSpec)> {
        due.into_iter()
            .filter_map(|key| {
                let spec = self.api.cache.task_spec(&key)?;
                Some((key, spec))
            })
            .collect()
    }

    async fn on_change(&mut self, socket: &mut WebSocket, keys: &[String]) -> Next {
        let mut due = Vec::new();
        for key in keys {
            let seen = self.api.cache.peek_task(key, |shared, t| {
                (Arc::clone(shared), t.is_stopped(), self.due(key, t))
            });
            match seen {
                Some((_, true, _)) | None => {
                    self.sent.remove(key.as_str());
                }
                Some((shared, false, true)) => due.push(shared),
                Some((_, false, false)) => {}
            }
        }
        let specs = self.specs(due);
        if self.push(socket, specs).await {
            Next::Continue
        } else {
            Next::End
        }
    }

    async fn push_all(&mut self, socket: &mut WebSocket) -> bool {
        let due = self
            .api
            .cache
            .select_instance_tasks(&self.instance_id, |key, task| {
                self.due(key, task).then(|| Arc::clone(key))
            });
        let specs = self.specs(due);
        self.push(socket, specs).await && self.send_manifest(socket).await
    }

    async fn push(&mut self, socket: &mut WebSocket, due: Vec<(Arc<str>, TaskSpec)>) -> bool {
        if due.is_empty() {
            return true;
        }
        let mut specs = Vec::with_capacity(due.len());
        for (key, spec) in due {
            self.sent.insert(key, spec.desired_version);
            specs.push(spec);
        }
        self.seq += 1;
        let payload = Payload {
            message_id: uuid::Uuid::new_v4().to_string(),
            seq_num: self.seq,
            tasks: specs,
        };
        self.unacked
            .insert(self.seq, (Instant::now(), payload.clone()));
        send(socket, &ServerMessage::Payload(payload)).await
    }

    async fn resend(&mut self, socket: &mut WebSocket) -> bool {
        for (sent_at, payload) in self.unacked.values_mut() {
            if sent_at.elapsed() >= RESEND_AFTER {
                *sent_at = Instant::now();
                if !send(socket, &ServerMessage::Payload(payload.clone())).await {
                    return false;
                }
            }
        }
        true
    }

    async fn send_manifest(&mut self, socket: &mut WebSocket) -> bool {
        self.timeline = self.timeline.max(Timestamp::now().millis());
        let entries = self
            .api
            .cache
            .select_instance_tasks(&self.instance_id, |key, task| {
                (self.mine(task) && !task.is_stopped()).then(|| ManifestEntry {
                    task_arn: task.task_arn(key),
                    desired_status: task.agent_desired_status,
                })
            });
        send(
            socket,
            &ServerMessage::Manifest(Manifest {
                message_id: uuid::Uuid::new_v4().to_string(),
                timeline: self.timeline,
                tasks: entries,
            }),
        )
        .await
    }
}

async fn send(socket: &mut WebSocket, frame: &ServerMessage) -> bool {
    match serde_json::to_string(frame) {
        Ok(text) => socket.send(Message::Text(text.into())).await.is_ok(),
        Err(err) => {
            tracing::error!(%err, "cannot encode a frame for an agent");
            false
        }
    }
}

/// Follows the cache's change feed and hands each changed task to the
/// session of the instance it is placed on.
pub fn start_router(api: Arc<Api>) {
    let mut feed = api.cache.subscribe();
    tokio::spawn(async move {
        loop {
            match feed.recv().await {
                Ok(keys) => {
                    let mut routed: HashMap<String, Vec<String>> = HashMap::new();
                    for key in keys.iter().filter(|k| kind_of(k) == Some("task")) {
                        let instance = api
                            .cache
                            .peek_task(key, |_, t| t.instance_id.clone())
                            .flatten();
                        if let Some(instance) = instance {
                            routed
                                .entry(instance.to_string())
                                .or_default()
                                .push(key.clone());
                        }
                    }
                    for (instance, keys) in routed {
                        api.hub.route(&instance, Route::Tasks(keys));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let instances: Vec<String> = api
                        .hub
                        .routes
                        .lock()
                        .expect("hub lock poisoned")
                        .keys()
                        .cloned()
                        .collect();
                    for instance in instances {
                        api.hub.route(&instance, Route::Resync);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// At start no agent is connected to this server yet, whatever the store
/// says from before a crash.
pub async fn reset_connections(api: &Api) -> Result<(), EcsError> {
    for key in api.cache.keys_of::<ContainerInstance>() {
        api.writer
            .update::<ContainerInstance, ()>(&key, |current| match current {
                Some(mut ci) if ci.agent_connected => {
                    ci.agent_connected = false;
                    ci.version += 1;
                    Ok((Some(Write::Put(ci)), ()))
                }
                _ => Ok((None, ())),
            })
            .await?;
    }
    Ok(())
}
