//! The Berth control plane: the ECS API over AWS JSON 1.1, backed by the
//! store, serving reads from an in-memory cache fed by the store's watch.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use berth_store::{SqliteStore, Store};

pub mod api;
pub mod controllers;
mod hub;
mod intern;
pub mod logs;
pub mod operator;
mod packed;
pub mod placement;
mod protocol;
pub mod service_controller;
pub mod state;

/// How a server is started (`berth server` flags).
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub account_id: String,
    pub region: String,
    /// How long an agent may stay disconnected before the service tasks on
    /// its host are recorded lost and replaced elsewhere.
    pub lost_agent_timeout: std::time::Duration,
    /// Chaos testing: interrupt each RUNNING FARGATE_SPOT task with this
    /// probability per hour.
    pub spot_interruptions_per_task_hour: Option<f64>,
}

impl Config {
    /// Loopback on a free port, the default account and region: for tests
    /// and benchmarks.
    pub fn local(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            account_id: "000000000000".into(),
            region: "us-east-1".into(),
            lost_agent_timeout: DEFAULT_LOST_AGENT_TIMEOUT,
            spot_interruptions_per_task_hour: None,
        }
    }
}

/// ECS never reschedules the tasks of a vanished host; Berth does after a
/// minute, long enough to ride out an agent restart or a network blip.
pub const DEFAULT_LOST_AGENT_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(
    berth_core::service::DEFAULT_LOST_AGENT_TIMEOUT_MILLIS.unsigned_abs(),
);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the store in {path}: {source}")]
    Store {
        path: PathBuf,
        source: berth_store::StoreError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// Runs the server until `shutdown` completes, then drains in-flight
/// requests and returns. `ready` is called with the bound address once
/// `/healthz` answers 200.
pub async fn serve(
    config: Config,
    ready: impl FnOnce(SocketAddr) + Send,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let store_path = config.data_dir.join("berth.db");
    let store_error = |source| ServerError::Store {
        path: store_path.clone(),
        source,
    };
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        store_error(berth_store::StoreError::Backend(format!(
            "cannot create {}: {e}",
            config.data_dir.display()
        )))
    })?;
    let sqlite = SqliteStore::open(&store_path).map_err(store_error)?;
    let store: Arc<dyn Store> = Arc::new(sqlite.clone());
    let api = api::Api::start(store, &config.account_id, &config.region)
        .await
        .map_err(store_error)?;
    hub::reset_connections(&api)
        .await
        .map_err(|e| store_error(berth_store::StoreError::Backend(e.message)))?;
    hub::start_router(Arc::clone(&api));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    let logs_path = config.data_dir.join("logs.db");
    let logs = logs::LogStore::open(&logs_path).map_err(|message| ServerError::Store {
        path: logs_path.clone(),
        source: berth_store::StoreError::Backend(message),
    })?;
    let bound = listener.local_addr().map_err(ServerError::Serve)?;
    ready(bound);
    let sweeper = controllers::spawn(Arc::clone(&api));
    let service_controller = service_controller::spawn(Arc::clone(&api), config.lost_agent_timeout);
    let log_sweeper = logs.spawn_sweeper();
    let chaos = config
        .spot_interruptions_per_task_hour
        .filter(|rate| *rate > 0.0)
        .map(|rate| operator::spawn_chaos(Arc::clone(&api), rate));
    let sessions = Arc::clone(&api);
    let shutdown = async move {
        shutdown.await;
        // Agent sessions are long-lived; end them so the drain can finish.
        sessions.hub.close_all();
    };
    let served = axum::serve(listener, router_with_logs(api, logs))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Serve);
    sweeper.abort();
    service_controller.abort();
    log_sweeper.abort();
    if let Some(chaos) = chaos {
        chaos.abort();
    }
    // Closing ends the cache's watch, which releases the database for the
    // next server in this process (tests restart servers in place).
    tokio::task::spawn_blocking(move || sqlite.close())
        .await
        .map_err(|e| ServerError::Serve(std::io::Error::other(e)))?;
    served
}

/// A server running on the current tokio runtime (tests, `berth dev`).
pub struct Running {
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl Running {
    /// `http://ADDR`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits until it has drained and closed its store.
    pub async fn stop(self) -> Result<(), ServerError> {
        let _ = self.stop.send(());
        joined(self.task).await
    }
}

async fn joined(task: tokio::task::JoinHandle<Result<(), ServerError>>) -> Result<(), ServerError> {
    task.await
        .map_err(|e| ServerError::Serve(std::io::Error::other(e)))?
}

/// Starts a server in the background and returns once it is ready.
pub async fn spawn(config: Config) -> Result<Running, ServerError> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        config,
        move |addr| {
            let _ = ready_tx.send(addr);
        },
        async move {
            let _ = stopped.await;
        },
    ));
    match ready_rx.await {
        Ok(addr) => Ok(Running { addr, stop, task }),
        // It ended before it was ready; its result says why.
        Err(_) => Err(joined(task).await.err().unwrap_or_else(|| {
            ServerError::Serve(std::io::Error::other(
                "the server stopped before it was ready",
            ))
        })),
    }
}

/// The HTTP surface: the ECS API at `POST /` and a readiness probe, with
/// container logs kept in memory.
pub fn router(api: Arc<api::Api>) -> Router {
    router_with_logs(api, logs::LogStore::in_memory())
}

/// The HTTP surface: the ECS API and CloudWatch Logs (`Logs_20140328.*`
/// targets, stored in `logs`) at `POST /`, a readiness probe, and the agents'
/// push channel.
pub fn router_with_logs(api: Arc<api::Api>, logs: logs::LogStore) -> Router {
    Router::new()
        .route("/", post(protocol::handle))
        .route("/healthz", get(|| async { "ok" }))
        .route(berth_types::agent::ACS_PATH, get(hub::acs))
        .layer(axum::Extension(logs))
        .with_state(api)
}
