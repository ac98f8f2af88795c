//! Helpers the end-to-end benchmarks share: where the release binary is,
//! starting a server, the processes to stop at the end, a process's resident
//! memory and CPU, percentiles, polling, and settings from the environment.

#![allow(dead_code)] // each benchmark uses its own subset

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth_client::{Client, Credentials};
use berth_types::{CreateClusterRequest, ListClustersRequest};

/// A setting from the environment, or its default.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Child processes, stopped with SIGTERM and reaped, newest first, when
/// dropped.
pub struct Processes(pub Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.0.iter_mut().rev() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// Starts the release `berth server` on a free port with its data under
/// `dir`, waits until it answers, and creates `cluster`. Returns the process,
/// its endpoint and a client.
pub async fn start_server(dir: &Path, cluster: &str) -> (Child, String, Client) {
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let server = Command::new(binary())
        .args(["server", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir)
        .env("BERTH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("berth server starts (build it with cargo build --release -p berth)");
    let ecs = Client::new(
        &endpoint,
        Credentials::new("bench", "bench", None),
        "us-east-1",
    )
    .expect("client");
    wait_until(Duration::from_secs(30), || async {
        ecs.send(&ListClustersRequest::default()).await.is_ok()
    })
    .await;
    ecs.send(&CreateClusterRequest {
        cluster_name: Some(cluster.into()),
        ..Default::default()
    })
    .await
    .expect("cluster");
    (server, endpoint, ecs)
}

pub fn binary() -> String {
    std::env::var("BERTH_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/release/berth").to_owned()
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used, from /proc.
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th of those, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// The `p` quantile of sorted durations, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// Polls `check` every 50 ms until it holds; panics after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting");
}
