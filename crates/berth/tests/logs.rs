//! `berth logs` end to end: a `berth server` process, an agent in this
//! process on the fake runtime (which ships container output with
//! `PutLogEvents`), and the `berth logs` verb reading it back.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_agent::runtime::fake::{FakeBehavior, FakeRuntime};
use berth_agent::{AgentConfig, HostResources};
use berth_client::{Client, Credentials};
use berth_types::RunTaskRequest;
use tempfile::TempDir;

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

struct Server {
    child: Child,
    endpoint: String,
    dir: TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = TempDir::new().unwrap();
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut child = Command::new(BERTH)
            .args(["server", "--listen", &addr.to_string(), "--data-dir"])
            .arg(dir.path().join("data"))
            .env("BERTH_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let expected = format!("berth server listening on http://{addr}");
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line == expected => break,
                Some(Ok(_)) => {}
                other => panic!("berth server did not report ready: {other:?}"),
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            endpoint: format!("http://{addr}"),
            dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn berth(endpoint: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(BERTH)
        .args(args)
        .env("BERTH_ENDPOINT", endpoint)
        .env("BERTH_LOG", "warn")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

async fn ok(endpoint: &str, args: &[&str]) -> String {
    let out = berth(endpoint, args).await;
    assert!(
        out.status.success(),
        "berth {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_a_task_are_printed_and_followed() {
    let server = Server::start();
    let endpoint = server.endpoint.clone();
    ok(&endpoint, &["cluster", "create", "default"]).await;
    let file = server.dir.path().join("td.json");
    std::fs::write(
        &file,
        r#"{
            "family": "logs-e2e",
            "containerDefinitions": [
                {"name": "web", "image": "app", "memory": 32, "command": ["web"]},
                {"name": "worker", "image": "app", "memory": 32, "command": ["worker"],
                 "essential": false,
                 "logConfiguration": {"logDriver": "awslogs", "options": {
                     "awslogs-group": "/custom/worker", "awslogs-region": "us-east-1",
                     "awslogs-stream-prefix": "svc"}}}
            ]
        }"#,
    )
    .unwrap();
    ok(&endpoint, &["taskdef", "register", file.to_str().unwrap()]).await;

    let fake = FakeRuntime::new();
    fake.set_command_behavior(
        "web",
        FakeBehavior {
            log_lines: vec!["hello from web".into()],
            ..FakeBehavior::exits(Duration::from_secs(4), 0)
        },
    );
    fake.set_command_behavior(
        "worker",
        FakeBehavior {
            log_lines: vec!["w1".into(), "w2".into()],
            ..FakeBehavior::long_running()
        },
    );
    let mut config = AgentConfig::new(&endpoint, "default", server.dir.path().join("agent"));
    config.resources = Some(HostResources {
        cpu_units: 2048,
        memory_mib: 2048,
    });
    config.task_cgroups = false;
    config.port_range = Some(50000..=50100);
    config.credentials = Some(Credentials::new("a", "b", None));
    config.region = Some("us-east-1".into());
    let (stop_agent, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(berth_agent::run(config, Arc::new(fake.clone()), async {
        let _ = stopped.await;
    }));

    let client = Client::new(&endpoint, Credentials::new("a", "b", None), "us-east-1").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let task_arn = loop {
        let run = client
            .send(&RunTaskRequest {
                cluster: Some("default".into()),
                task_definition: "logs-e2e".into(),
                ..Default::default()
            })
            .await
            .unwrap_or_default();
        if let Some(arn) = run
            .tasks
            .unwrap_or_default()
            .first()
            .and_then(|t| t.task_arn.clone())
        {
            break arn;
        }
        assert!(Instant::now() < deadline, "the agent never took the task");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let task_id = task_arn.rsplit('/').next().unwrap().to_owned();

    // Both containers, prefixed by name, once the agent has shipped them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let all = loop {
        let out = ok(&endpoint, &["logs", &task_id]).await;
        if out.lines().count() >= 3 || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let mut lines: Vec<&str> = all.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        ["[web] hello from web", "[worker] w1", "[worker] w2"],
        "{all}"
    );
    // One container: no prefix; awslogs naming found from the definition.
    let worker = ok(
        &endpoint,
        &[
            "logs",
            &task_arn,
            "--container",
            "worker",
            "--cluster",
            "default",
        ],
    )
    .await;
    assert_eq!(worker, "w1\nw2\n");

    // --follow prints what comes later and returns once the task stopped.
    let worker_id = fake
        .containers()
        .into_iter()
        .find(|c| c.name.contains("-worker-"))
        .unwrap()
        .id;
    let follow = tokio::spawn({
        let endpoint = endpoint.clone();
        let task_id = task_id.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(60),
                berth(
                    &endpoint,
                    &["logs", &task_id, "--follow", "--container", "worker"],
                ),
            )
            .await
            .expect("--follow returns after the task stopped")
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fake.write_log(&worker_id, "w3 while following", false);
    let out = follow.await.unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "w1\nw2\nw3 while following\n"
    );

    let missing = berth(&endpoint, &["logs", &task_id, "--container", "nope"]).await;
    assert_eq!(missing.status.code(), Some(1));
    let _ = stop_agent.send(());
    let _ = agent.await;
}
