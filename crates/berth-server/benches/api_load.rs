//! Whole-server load benchmark: many concurrent keep-alive clients over
//! loopback against a server on the real SQLite store, reporting
//! requests/s and latency percentiles for two reads and one durable write.
//!
//! Run: `cargo bench -p berth-server --bench api_load` (env BENCH_SECS,
//! BENCH_READ_CONNS, BENCH_WRITE_CONNS adjust it). The server and the load
//! share this machine's cores, so the figures are a floor.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let secs = env_or("BENCH_SECS", 5);
    let read_conns = env_or("BENCH_READ_CONNS", 64) as usize;
    let write_conns = env_or("BENCH_WRITE_CONNS", 32) as usize;
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = start_server(dir.path());

    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("client runtime");
    client.block_on(async {
        call(addr, "CreateCluster", r#"{"clusterName":"bench"}"#.into()).await;
        call(addr, "RegisterTaskDefinition", task_definition("bench-web")).await;
        println!(
            "{:<24} {:>6} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8}",
            "operation", "conns", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        run(addr, "DescribeClusters", read_conns, secs, |_| {
            r#"{"clusters":["bench"],"include":["STATISTICS"]}"#.to_owned()
        })
        .await;
        run(addr, "DescribeTaskDefinition", read_conns, secs, |_| {
            r#"{"taskDefinition":"bench-web"}"#.to_owned()
        })
        .await;
        run(
            addr,
            "RegisterTaskDefinition",
            write_conns,
            secs,
            |worker| task_definition(&format!("bench-family-{worker}")),
        )
        .await;
    });
}

fn task_definition(family: &str) -> String {
    format!(
        r#"{{"family":"{family}","containerDefinitions":[{{"name":"web","image":"busybox","memory":128,"portMappings":[{{"containerPort":80}}],"environment":[{{"name":"ENV","value":"bench"}}]}}]}}"#
    )
}

fn start_server(data_dir: &std::path::Path) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    let config = berth_server::Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..berth_server::Config::local(data_dir)
    };
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            berth_server::serve(
                config,
                move |addr| {
                    let _ = tx.send(addr);
                },
                std::future::pending(),
            )
            .await
            .expect("server runs");
        });
    });
    rx.recv().expect("server ready")
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: std::net::SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

async fn send(sender: &mut Sender, op: &str, body: String) -> (u16, Bytes) {
    let request = Request::post("/")
        .header("host", "127.0.0.1")
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            format!("AmazonEC2ContainerServiceV20141113.{op}"),
        )
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

async fn call(addr: std::net::SocketAddr, op: &str, body: String) {
    let mut sender = connect(addr).await;
    let (status, body) = send(&mut sender, op, body).await;
    assert_eq!(status, 200, "{op}: {}", String::from_utf8_lossy(&body));
}

async fn run(
    addr: std::net::SocketAddr,
    op: &'static str,
    conns: usize,
    secs: u64,
    body: impl Fn(usize) -> String + Send + Sync + Clone + 'static,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..conns {
        let stop = Arc::clone(&stop);
        let measuring = Arc::clone(&measuring);
        let body = body.clone();
        workers.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let (status, response) = send(&mut sender, op, body(worker)).await;
                assert_eq!(status, 200, "{op}: {}", String::from_utf8_lossy(&response));
                if measuring.load(Ordering::Relaxed) {
                    latencies.push(started.elapsed());
                }
            }
            latencies
        }));
    }
    // A second of warm-up, then the measured window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    all.sort();
    let pct = |p: f64| {
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[i].as_secs_f64() * 1000.0
    };
    println!(
        "{:<24} {:>6} {:>9} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
        op,
        conns,
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    );
}
