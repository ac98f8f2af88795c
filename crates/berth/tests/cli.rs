//! The `berth` binary end to end: `berth server` on a free port with a fresh
//! data dir, driven by the client verbs exactly as a user types them.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

const BERTH: &str = env!("CARGO_BIN_EXE_berth");
const STARTUP: Duration = Duration::from_secs(30);

/// A running `berth server`, stopped with SIGKILL when dropped so a failed
/// test leaves no process behind.
struct Server {
    child: Child,
    endpoint: String,
    dir: TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = TempDir::new().unwrap();
        // Ask the OS for a free port, then hand it to the server; the window
        // in which another process could take it is tiny.
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
        let (lines, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let expected = format!("berth server listening on http://{addr}");
        let server = Server {
            child,
            endpoint: format!("http://{addr}"),
            dir,
        };
        let deadline = Instant::now() + STARTUP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match ready.recv_timeout(left) {
                Ok(line) if line == expected => break,
                Ok(_) => {}
                Err(err) => panic!("berth server did not report ready: {err}"),
            }
        }
        server
    }

    fn berth(&self, args: &[&str]) -> Output {
        berth(&self.endpoint, args)
    }

    /// Runs a verb that must succeed and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["--output", "json"]);
        serde_json::from_str(&self.ok(&args)).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn berth(endpoint: &str, args: &[&str]) -> Output {
    Command::new(BERTH)
        .args(args)
        .env("BERTH_ENDPOINT", endpoint)
        .env("BERTH_LOG", "warn")
        // The local server accepts any credentials; keep the caller's out.
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn write_task_definition(dir: &Path) -> String {
    let path = dir.join("web.json");
    std::fs::write(
        &path,
        r#"{
            "family": "e2e-web",
            "networkMode": "bridge",
            "containerDefinitions": [{
                "name": "app",
                "image": "busybox:latest",
                "cpu": 128,
                "memory": 64,
                "essential": true,
                "portMappings": [{"containerPort": 80, "hostPort": 8080, "protocol": "tcp"}]
            }]
        }"#,
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn clusters_task_definitions_and_instances() {
    let server = Server::start();

    let created = server.ok(&["cluster", "create", "e2e", "--tag", "team=core"]);
    assert!(created.contains("e2e"), "{created}");

    let table = server.ok(&["cluster", "ls"]);
    assert!(table.starts_with("NAME"), "{table}");
    let row = table
        .lines()
        .find(|line| line.split_whitespace().next() == Some("e2e"))
        .unwrap_or_else(|| panic!("no e2e row in\n{table}"));
    assert!(row.contains("ACTIVE"), "{row}");

    let listed = server.json(&["cluster", "ls"]);
    let names: Vec<_> = listed["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["clusterName"].as_str())
        .collect();
    assert!(names.contains(&"e2e"), "{listed}");

    let file = write_task_definition(server.dir.path());
    let registered = server.ok(&["taskdef", "register", &file]);
    assert!(registered.contains("e2e-web:1"), "{registered}");
    assert!(registered.contains("ACTIVE"), "{registered}");

    let listed = server.ok(&["taskdef", "ls", "--family-prefix", "e2e-web"]);
    assert!(listed.contains(":task-definition/e2e-web:1"), "{listed}");

    let shown = server.ok(&["taskdef", "show", "e2e-web"]);
    let container = shown
        .lines()
        .find(|line| line.starts_with("app "))
        .unwrap_or_else(|| panic!("no app row in\n{shown}"));
    assert!(container.contains("busybox:latest"), "{container}");
    assert!(container.contains("8080:80/tcp"), "{container}");
    let described = server.json(&["taskdef", "show", "e2e-web:1"]);
    assert_eq!(described["taskDefinition"]["family"], "e2e-web");
    assert_eq!(described["taskDefinition"]["revision"], 1);

    let instances = server.ok(&["instance", "ls", "--cluster", "e2e"]);
    assert!(instances.starts_with("ID"), "{instances}");
    assert!(instances.contains("AGENT CONNECTED"), "{instances}");
    let instances = server.json(&["instance", "ls", "--cluster", "e2e"]);
    assert!(instances["containerInstances"].is_array(), "{instances}");

    let removed = server.ok(&["cluster", "rm", "e2e"]);
    assert!(removed.contains("INACTIVE"), "{removed}");
}

#[test]
fn api_errors_exit_1_with_the_ecs_code() {
    let server = Server::start();
    let out = server.berth(&["taskdef", "show", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let (code, _message) = stderr
        .strip_prefix("error: ")
        .and_then(|rest| rest.split_once(": "))
        .unwrap_or_else(|| panic!("not an API error: {stderr}"));
    assert!(code.ends_with("Exception"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start();
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn unreachable_endpoint_is_an_error_not_a_panic() {
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = berth(&format!("http://{closed}"), &["cluster", "ls"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!("error: cannot reach http://{closed}")),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = berth("http://127.0.0.1:1", &["cluster", "ls", "--output", "yaml"]);
    assert_eq!(out.status.code(), Some(2));
}
