//! Tasks end to end through the real server with a scripted agent: the
//! WebSocket push channel, placement that reserves and releases host
//! resources, the lifecycle driven by agent reports, and idempotent RunTask.

use std::time::Duration;

use berth_client::{Client, Credentials};
use berth_types::agent::{AgentMessage, DesiredStatus, ServerMessage};
use berth_types::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn start(dir: &std::path::Path) -> berth_server::Running {
    berth_server::spawn(berth_server::Config::local(dir))
        .await
        .expect("server starts")
}

async fn next_frame(socket: &mut Socket) -> ServerMessage {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(text) = frame {
            let message: ServerMessage = serde_json::from_str(&text).expect("server frame decodes");
            if !matches!(
                message,
                ServerMessage::Heartbeat { .. } | ServerMessage::Manifest(_)
            ) {
                return message;
            }
        }
    }
}

fn resource(ci: &ContainerInstance, name: &str) -> Resource {
    ci.remaining_resources
        .as_ref()
        .and_then(|rs| rs.iter().find(|r| r.name.as_deref() == Some(name)).cloned())
        .expect("resource")
}

async fn instance(ecs: &Client, arn: &str) -> ContainerInstance {
    ecs.send(&DescribeContainerInstancesRequest {
        cluster: Some("flow".into()),
        container_instances: vec![arn.into()],
        include: None,
    })
    .await
    .expect("describe instance")
    .container_instances
    .expect("instances")
    .remove(0)
}

async fn report(ecs: &Client, task: &str, status: &str, exit_code: Option<i32>) {
    ecs.send(&SubmitTaskStateChangeRequest {
        cluster: Some("flow".into()),
        task: Some(task.into()),
        status: Some(status.into()),
        containers: Some(vec![ContainerStateChange {
            container_name: Some("web".into()),
            status: Some(status.into()),
            runtime_id: Some("docker-id-1".into()),
            exit_code,
            network_bindings: Some(vec![NetworkBinding {
                bind_ip: Some("0.0.0.0".into()),
                container_port: Some(80),
                host_port: Some(8080),
                protocol: Some(TransportProtocol::Tcp),
                ..NetworkBinding::default()
            }]),
            ..ContainerStateChange::default()
        }]),
        ..SubmitTaskStateChangeRequest::default()
    })
    .await
    .expect("report accepted");
}

async fn describe(ecs: &Client, task: &str) -> Task {
    ecs.send(&DescribeTasksRequest {
        cluster: Some("flow".into()),
        tasks: vec![task.into()],
        include: None,
    })
    .await
    .expect("describe")
    .tasks
    .expect("tasks")
    .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_place_report_stop_release() {
    let dir = tempfile::tempdir().expect("dir");
    let server = start(dir.path()).await;
    let endpoint = server.endpoint();
    let ecs = Client::new(
        &endpoint,
        Credentials::new("AKID", "secret", None),
        "us-east-1",
    )
    .expect("client");

    ecs.send(&CreateClusterRequest {
        cluster_name: Some("flow".into()),
        ..CreateClusterRequest::default()
    })
    .await
    .expect("cluster");
    let td: RegisterTaskDefinitionRequest = serde_json::from_value(serde_json::json!({
        "family": "web",
        "containerDefinitions": [{"name": "web", "image": "berth-test/web", "memory": 128,
            "portMappings": [{"containerPort": 80, "hostPort": 8080}]}]
    }))
    .expect("td json");
    ecs.send(&td).await.expect("register td");
    let registered = ecs
        .send(&RegisterContainerInstanceRequest {
            cluster: Some("flow".into()),
            total_resources: Some(vec![
                Resource {
                    name: Some("CPU".into()),
                    r#type: Some("INTEGER".into()),
                    integer_value: 2048,
                    ..Resource::default()
                },
                Resource {
                    name: Some("MEMORY".into()),
                    r#type: Some("INTEGER".into()),
                    integer_value: 1024,
                    ..Resource::default()
                },
                Resource {
                    name: Some("PORTS".into()),
                    r#type: Some("STRINGSET".into()),
                    string_set_value: Some(vec!["22".into()]),
                    ..Resource::default()
                },
            ]),
            ..RegisterContainerInstanceRequest::default()
        })
        .await
        .expect("register instance")
        .container_instance
        .expect("instance");
    let instance_arn = registered.container_instance_arn.clone().expect("arn");

    // Without an agent the instance cannot take tasks.
    let refused = ecs
        .send(&RunTaskRequest {
            cluster: Some("flow".into()),
            task_definition: "web".into(),
            ..RunTaskRequest::default()
        })
        .await
        .expect("run task");
    assert!(refused.tasks.unwrap_or_default().is_empty());
    assert_eq!(
        refused.failures.expect("failures")[0].reason.as_deref(),
        Some("AGENT")
    );

    // The agent connects.
    let poll = ecs
        .send(&DiscoverPollEndpointRequest {
            cluster: Some("flow".into()),
            container_instance: Some(instance_arn.clone()),
        })
        .await
        .expect("discover");
    let ws_url = format!(
        "{}{}?cluster=flow&containerInstance={}",
        poll.endpoint.expect("endpoint").replacen("http", "ws", 1),
        berth_types::agent::ACS_PATH,
        instance_arn
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("ws connects");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(instance(&ecs, &instance_arn).await.agent_connected);

    // RunTask places the task and the agent hears about it.
    let run = ecs
        .send(&RunTaskRequest {
            cluster: Some("flow".into()),
            task_definition: "web".into(),
            client_token: Some("token-1".into()),
            started_by: Some("tests".into()),
            ..RunTaskRequest::default()
        })
        .await
        .expect("run task");
    let task = run.tasks.expect("tasks").remove(0);
    let task_arn = task.task_arn.clone().expect("task arn");
    assert_eq!(task.last_status.as_deref(), Some("PROVISIONING"));
    assert_eq!(task.group.as_deref(), Some("family:web"));
    let ServerMessage::Payload(payload) = next_frame(&mut socket).await else {
        panic!("expected a payload");
    };
    assert_eq!(payload.tasks[0].task_arn, task_arn);
    assert_eq!(payload.tasks[0].desired_status, DesiredStatus::Running);
    socket
        .send(Message::Text(
            serde_json::to_string(&AgentMessage::Ack {
                message_id: payload.message_id.clone(),
                seq_num: payload.seq_num,
            })
            .expect("ack")
            .into(),
        ))
        .await
        .expect("send ack");

    // The same token answers with the same task; other parameters conflict.
    let again = ecs
        .send(&RunTaskRequest {
            cluster: Some("flow".into()),
            task_definition: "web".into(),
            client_token: Some("token-1".into()),
            started_by: Some("tests".into()),
            ..RunTaskRequest::default()
        })
        .await
        .expect("idempotent run");
    assert_eq!(
        again.tasks.expect("tasks")[0].task_arn.as_deref(),
        Some(task_arn.as_str())
    );
    let conflict = ecs
        .send(&RunTaskRequest {
            cluster: Some("flow".into()),
            task_definition: "web".into(),
            client_token: Some("token-1".into()),
            count: Some(2),
            ..RunTaskRequest::default()
        })
        .await
        .expect_err("token reuse with other parameters");
    assert_eq!(conflict.code(), Some("ConflictException"));

    // Resources are reserved: memory and the static port.
    let ci = instance(&ecs, &instance_arn).await;
    assert_eq!(resource(&ci, "MEMORY").integer_value, 1024 - 128);
    assert!(
        resource(&ci, "PORTS")
            .string_set_value
            .expect("ports")
            .contains(&"8080".to_owned())
    );
    assert_eq!(ci.running_tasks_count, 1);
    let second = ecs
        .send(&RunTaskRequest {
            cluster: Some("flow".into()),
            task_definition: "web".into(),
            ..RunTaskRequest::default()
        })
        .await
        .expect("run second");
    assert_eq!(
        second.failures.expect("failures")[0].reason.as_deref(),
        Some("RESOURCE:PORTS")
    );

    // The agent reports progress.
    report(&ecs, &task_arn, "PENDING", None).await;
    report(&ecs, &task_arn, "RUNNING", None).await;
    let running = describe(&ecs, &task_arn).await;
    assert_eq!(running.last_status.as_deref(), Some("RUNNING"));
    assert!(running.started_at.is_some());
    let container = &running.containers.as_ref().expect("containers")[0];
    assert_eq!(container.runtime_id.as_deref(), Some("docker-id-1"));
    assert_eq!(
        container.network_bindings.as_ref().expect("bindings")[0].host_port,
        Some(8080)
    );
    let clusters = ecs
        .send(&DescribeClustersRequest {
            clusters: Some(vec!["flow".into()]),
            include: None,
        })
        .await
        .expect("describe cluster");
    assert_eq!(
        clusters.clusters.expect("clusters")[0].running_tasks_count,
        1
    );

    // StopTask: the agent is told, then reports STOPPED; resources return.
    let stopping = ecs
        .send(&StopTaskRequest {
            cluster: Some("flow".into()),
            task: task_arn.clone(),
            reason: Some("done testing".into()),
        })
        .await
        .expect("stop")
        .task
        .expect("task");
    assert_eq!(stopping.desired_status.as_deref(), Some("STOPPED"));
    assert_eq!(stopping.last_status.as_deref(), Some("STOPPING"));
    let ServerMessage::Payload(payload) = next_frame(&mut socket).await else {
        panic!("expected a payload");
    };
    assert_eq!(payload.tasks[0].desired_status, DesiredStatus::Stopped);
    report(&ecs, &task_arn, "STOPPED", Some(143)).await;
    let stopped = describe(&ecs, &task_arn).await;
    assert_eq!(stopped.last_status.as_deref(), Some("STOPPED"));
    assert_eq!(stopped.stop_code, Some(TaskStopCode::UserInitiated));
    assert_eq!(stopped.stopped_reason.as_deref(), Some("done testing"));
    assert_eq!(
        stopped.containers.expect("containers")[0].exit_code,
        Some(143)
    );
    let ci = instance(&ecs, &instance_arn).await;
    assert_eq!(resource(&ci, "MEMORY").integer_value, 1024);
    assert!(
        !resource(&ci, "PORTS")
            .string_set_value
            .expect("ports")
            .contains(&"8080".to_owned())
    );
    assert_eq!(ci.running_tasks_count, 0);

    let listed = ecs
        .send(&ListTasksRequest {
            cluster: Some("flow".into()),
            ..ListTasksRequest::default()
        })
        .await
        .expect("list");
    assert!(listed.task_arns.expect("arns").is_empty());
    let listed = ecs
        .send(&ListTasksRequest {
            cluster: Some("flow".into()),
            desired_status: Some(berth_types::DesiredStatus::Stopped),
            ..ListTasksRequest::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.task_arns.expect("arns"), vec![task_arn.clone()]);

    // The agent goes away.
    socket.close(None).await.expect("close");
    let mut connected = true;
    for _ in 0..50 {
        connected = instance(&ecs, &instance_arn).await.agent_connected;
        if !connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !connected,
        "agentConnected turns false when the socket closes"
    );

    server.stop().await.expect("server stops");
}
