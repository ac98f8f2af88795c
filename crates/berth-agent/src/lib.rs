//! The Berth host agent: registers a host as an ECS container instance,
//! keeps a push channel to the control plane, and runs the tasks it is given
//! on a [`ContainerRuntime`] (the local Docker Engine, or a fake for tests
//! and simulated hosts), reporting every state change back over the ECS API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), berth_agent::AgentError> {
//! use std::sync::Arc;
//! use berth_agent::{AgentConfig, run, runtime::docker::DockerRuntime};
//!
//! let config = AgentConfig::new("http://127.0.0.1:4610", "default", "/var/lib/berth/agent");
//! let runtime = Arc::new(DockerRuntime::connect().await?);
//! run(config, runtime, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod agent;
pub mod cgroup;
mod channel;
pub mod engine;
pub mod logs;
pub mod metadata;
mod persist;
pub mod ports;
pub mod report;
pub mod runtime;
pub mod simulate;

use std::path::PathBuf;

pub use agent::{AgentConfig, HostResources, run};
pub use engine::{Engine, EngineConfig, ImagePullBehavior};
pub use logs::{LogDestination, LogEvent, LogShipper, LogSink, ShipperConfig};
pub use report::{Report, Reporter, StateSink, SubmitError};
pub use runtime::ContainerRuntime;
pub use simulate::{Simulation, simulate};

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot use the data directory {path}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the container runtime failed")]
    Runtime(#[from] runtime::RuntimeError),
    #[error("cannot create the API client")]
    Client(#[from] berth_client::ClientError),
}
