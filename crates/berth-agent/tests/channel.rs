//! The agent against a scripted in-process control plane: registration,
//! endpoint discovery, payload acks, heartbeats, reconnects, state reports.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{any, post};
use axum::{Json, Router};
use berth_agent::runtime::fake::FakeRuntime;
use berth_agent::{AgentConfig, HostResources};
use berth_client::Credentials;
use berth_types::ContainerDefinition;
use berth_types::agent::{
    AgentMessage, ContainerSpec, DesiredStatus, Payload, ServerMessage, TaskSpec,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

#[derive(Clone)]
struct Server {
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    addr: String,
    /// Each accepted socket is handed to the test.
    sockets: mpsc::UnboundedSender<WebSocket>,
}

async fn api(
    State(server): State<Server>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or_default();
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    server.calls.lock().unwrap().push((target.clone(), body));
    Json(match target.as_str() {
        "RegisterContainerInstance" => json!({"containerInstance": {
            "containerInstanceArn": "arn:aws:ecs:us-east-1:000000000000:container-instance/default/ci1"
        }}),
        "DiscoverPollEndpoint" => json!({"endpoint": format!("http://{}", server.addr)}),
        _ => json!({}),
    })
}

async fn ws(State(server): State<Server>, upgrade: WebSocketUpgrade) -> impl IntoResponse {
    upgrade.on_upgrade(move |socket| async move {
        let _ = server.sockets.send(socket);
    })
}

async fn send(socket: &mut WebSocket, message: &ServerMessage) {
    socket
        .send(Message::Text(
            serde_json::to_string(message).unwrap().into(),
        ))
        .await
        .unwrap();
}

/// The next frame of `kind` the agent sends, skipping the others.
async fn expect(socket: &mut WebSocket, matches: impl Fn(&AgentMessage) -> bool) -> AgentMessage {
    let wait = async {
        loop {
            let Some(Ok(Message::Text(text))) = socket.recv().await else {
                panic!("socket closed")
            };
            let message: AgentMessage = serde_json::from_str(text.as_str()).unwrap();
            if matches(&message) {
                return message;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("no such frame")
}

fn spec(status: DesiredStatus, version: i64) -> TaskSpec {
    TaskSpec {
        task_arn: "arn:aws:ecs:us-east-1:000000000000:task/default/t1".into(),
        cluster_arn: "arn:aws:ecs:us-east-1:000000000000:cluster/default".into(),
        task_definition_arn: "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1".into(),
        family: "web".into(),
        revision: 1,
        desired_status: status,
        desired_version: version,
        network_mode: berth_types::NetworkMode::Bridge,
        cpu: None,
        memory_mib: None,
        containers: vec![ContainerSpec {
            container_arn: "arn:c".into(),
            definition: ContainerDefinition {
                name: Some("web".into()),
                image: Some("app".into()),
                ..Default::default()
            }
            .into(),
        }],
        volumes: vec![],
        pid_mode: None,
        ipc_mode: None,
        network_interface: None,
    }
}

#[tokio::test]
async fn agent_registers_acks_heartbeats_and_reconnects() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("berth_agent=info")
        .try_init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (sockets, mut accepted) = mpsc::unbounded_channel();
    let server = Server {
        calls: Arc::default(),
        addr: addr.clone(),
        sockets,
    };
    let app = Router::new()
        .route("/", post(api))
        .route("/ws/acs", any(ws))
        .with_state(server.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let mut config = AgentConfig::new(format!("http://{addr}"), "default", dir.path());
    config.credentials = Some(Credentials::new("AKID", "SECRET", None));
    config.region = Some("us-east-1".into());
    config.heartbeat_interval = Duration::from_millis(300);
    config.max_reconnect_backoff = Duration::from_millis(500);
    config.resources = Some(HostResources {
        cpu_units: 4096,
        memory_mib: 8192,
    });
    config.reserved_memory_mib = 1024;
    config.task_cgroups = false;
    config.attributes = vec![("stack".into(), "prod".into())];
    let fake = FakeRuntime::new();
    fake.add_local_image("app");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(berth_agent::run(config, Arc::new(fake.clone()), async {
        let _ = stopped.await;
    }));

    let mut socket = tokio::time::timeout(Duration::from_secs(10), accepted.recv())
        .await
        .unwrap()
        .unwrap();
    {
        let calls = server.calls.lock().unwrap();
        let (op, register) = &calls[0];
        assert_eq!(op, "RegisterContainerInstance");
        assert_eq!(register["cluster"], "default");
        assert_eq!(register["totalResources"][0]["integerValue"], 4096);
        assert_eq!(register["totalResources"][1]["integerValue"], 7168);
        assert_eq!(register["totalResources"][2]["type"], "STRINGSET");
        assert!(
            register["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["name"] == "stack" && a["value"] == "prod")
        );
        assert_eq!(calls[1].0, "DiscoverPollEndpoint");
        assert_eq!(
            calls[1].1["containerInstance"],
            "arn:aws:ecs:us-east-1:000000000000:container-instance/default/ci1"
        );
    }

    // Heartbeats both ways.
    send(
        &mut socket,
        &ServerMessage::Heartbeat {
            message_id: "hb1".into(),
        },
    )
    .await;
    let ack = expect(&mut socket, |m| {
        matches!(m, AgentMessage::HeartbeatAck { .. })
    })
    .await;
    assert_eq!(
        ack,
        AgentMessage::HeartbeatAck {
            message_id: "hb1".into()
        }
    );
    expect(&mut socket, |m| matches!(m, AgentMessage::Heartbeat { .. })).await;

    // A payload is applied, then acknowledged with its sequence number.
    send(
        &mut socket,
        &ServerMessage::Payload(Payload {
            message_id: "p1".into(),
            seq_num: 5,
            tasks: vec![spec(DesiredStatus::Running, 1)],
        }),
    )
    .await;
    let ack = expect(&mut socket, |m| matches!(m, AgentMessage::Ack { .. })).await;
    assert_eq!(
        ack,
        AgentMessage::Ack {
            message_id: "p1".into(),
            seq_num: 5
        }
    );

    // The server drops the socket; the agent comes back.
    drop(socket);
    let mut socket = tokio::time::timeout(Duration::from_secs(10), accepted.recv())
        .await
        .expect("no reconnect")
        .unwrap();
    send(
        &mut socket,
        &ServerMessage::Payload(Payload {
            message_id: "p2".into(),
            seq_num: 6,
            tasks: vec![spec(DesiredStatus::Stopped, 2)],
        }),
    )
    .await;
    let ack = expect(&mut socket, |m| matches!(m, AgentMessage::Ack { .. })).await;
    assert_eq!(
        ack,
        AgentMessage::Ack {
            message_id: "p2".into(),
            seq_num: 6
        }
    );

    // The task's transitions arrive over the ECS API, in order.
    let mut statuses = Vec::new();
    for _ in 0..100 {
        statuses = server
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(op, _)| op == "SubmitTaskStateChange")
            .map(|(_, body)| body["status"].as_str().unwrap_or_default().to_owned())
            .collect();
        if statuses.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(statuses, ["PENDING", "RUNNING", "STOPPED"]);

    // Silence makes the agent reconnect on its own.
    let _quiet = socket;
    let reconnected = tokio::time::timeout(Duration::from_secs(10), accepted.recv()).await;
    assert!(reconnected.is_ok(), "no reconnect after missed heartbeats");

    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
    // The identity and the ARN survive for the next start.
    let identity: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("instance.json")).unwrap()).unwrap();
    assert_eq!(
        identity["container_instance_arn"],
        "arn:aws:ecs:us-east-1:000000000000:container-instance/default/ci1"
    );
}
