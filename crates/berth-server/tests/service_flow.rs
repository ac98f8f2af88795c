//! Services end to end through the real server with a scripted agent that
//! runs whatever it is sent: a service reaches its desired count and a
//! steady state, a task that dies is replaced, a new task definition rolls
//! out (old deployment drained and dropped, new one COMPLETED), and a forced
//! DeleteService drains the service to INACTIVE.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_client::{Client, Credentials};
use berth_types::agent::{
    AgentMessage, ContainerHealth, DesiredStatus, HealthReport, ServerMessage,
};
use berth_types::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const CLUSTER: &str = "svc";

fn client(endpoint: &str) -> Client {
    Client::new(
        endpoint,
        Credentials::new("AKID", "secret", None),
        "us-east-1",
    )
    .expect("client")
}

async fn report(ecs: &Client, task: &str, container: &str, status: &str, exit_code: Option<i32>) {
    ecs.send(&SubmitTaskStateChangeRequest {
        cluster: Some(CLUSTER.into()),
        task: Some(task.into()),
        status: Some(status.into()),
        containers: Some(vec![ContainerStateChange {
            container_name: Some(container.into()),
            status: Some(status.into()),
            runtime_id: Some(format!(
                "docker-{}",
                task.rsplit('/').next().unwrap_or(task)
            )),
            exit_code,
            ..ContainerStateChange::default()
        }]),
        ..SubmitTaskStateChangeRequest::default()
    })
    .await
    .expect("report accepted");
}

/// Connects an agent for `instance_arn` that acknowledges every payload,
/// reports tasks RUNNING (and healthy) when asked to run them and STOPPED
/// when asked to stop them.
async fn scripted_agent(endpoint: String, instance_arn: String) -> Arc<Mutex<HashSet<String>>> {
    let ecs = client(&endpoint);
    let poll = ecs
        .send(&DiscoverPollEndpointRequest {
            cluster: Some(CLUSTER.into()),
            container_instance: Some(instance_arn.clone()),
        })
        .await
        .expect("discover");
    let ws_url = format!(
        "{}{}?cluster={CLUSTER}&containerInstance={}",
        poll.endpoint.expect("endpoint").replacen("http", "ws", 1),
        berth_types::agent::ACS_PATH,
        instance_arn
    );
    let (socket, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("ws connects");
    let stopped = Arc::new(Mutex::new(HashSet::new()));
    let seen_stopped = Arc::clone(&stopped);
    tokio::spawn(async move {
        let (mut tx, mut rx) = socket.split();
        let mut running = HashSet::new();
        while let Some(Ok(frame)) = rx.next().await {
            let Message::Text(text) = frame else { continue };
            let Ok(message) = serde_json::from_str::<ServerMessage>(&text) else {
                continue;
            };
            let ServerMessage::Payload(payload) = message else {
                continue;
            };
            let ack = AgentMessage::Ack {
                message_id: payload.message_id.clone(),
                seq_num: payload.seq_num,
            };
            let _ = tx
                .send(Message::Text(
                    serde_json::to_string(&ack).expect("ack").into(),
                ))
                .await;
            for spec in payload.tasks {
                let container = spec
                    .containers
                    .first()
                    .map(|c| c.definition.name.clone().unwrap_or_default())
                    .unwrap_or_default();
                match spec.desired_status {
                    DesiredStatus::Running => {
                        if running.insert(spec.task_arn.clone()) {
                            report(&ecs, &spec.task_arn, &container, "RUNNING", None).await;
                            let health = AgentMessage::Health(HealthReport {
                                task_arn: spec.task_arn.clone(),
                                containers: vec![ContainerHealth {
                                    container_name: container.clone(),
                                    health_status: HealthStatus::Healthy,
                                }],
                            });
                            let _ = tx
                                .send(Message::Text(
                                    serde_json::to_string(&health).expect("health").into(),
                                ))
                                .await;
                        }
                    }
                    DesiredStatus::Stopped => {
                        let first = seen_stopped
                            .lock()
                            .expect("lock")
                            .insert(spec.task_arn.clone());
                        if first {
                            report(&ecs, &spec.task_arn, &container, "STOPPED", Some(0)).await;
                        }
                    }
                }
            }
        }
    });
    wait_connected(&client(&endpoint), &instance_arn).await;
    stopped
}

/// Waits until the server records the agent of `instance_arn` as connected,
/// so that placement (which skips hosts without an agent) can use it.
async fn wait_connected(ecs: &Client, instance_arn: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let described = ecs
            .send(&DescribeContainerInstancesRequest {
                cluster: Some(CLUSTER.into()),
                container_instances: vec![instance_arn.into()],
                include: None,
            })
            .await
            .expect("describe instance");
        let connected = described
            .container_instances
            .iter()
            .flatten()
            .any(|i| i.agent_connected);
        if connected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "agent of {instance_arn} never connected: {described:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn service(ecs: &Client, name: &str) -> Service {
    ecs.send(&DescribeServicesRequest {
        cluster: Some(CLUSTER.into()),
        services: vec![name.into()],
        include: None,
    })
    .await
    .expect("describe services")
    .services
    .expect("services")
    .remove(0)
}

/// Polls the service until `done` holds (30 s at most).
async fn wait_for(
    ecs: &Client,
    name: &str,
    what: &str,
    done: impl Fn(&Service) -> bool,
) -> Service {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = service(ecs, name).await;
        if done(&s) {
            return s;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}: {s:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn service_tasks(ecs: &Client, name: &str, desired: DesiredStatus) -> Vec<Task> {
    let arns = ecs
        .send(&ListTasksRequest {
            cluster: Some(CLUSTER.into()),
            service_name: Some(name.into()),
            desired_status: Some(match desired {
                DesiredStatus::Running => berth_types::DesiredStatus::Running,
                DesiredStatus::Stopped => berth_types::DesiredStatus::Stopped,
            }),
            ..ListTasksRequest::default()
        })
        .await
        .expect("list tasks")
        .task_arns
        .unwrap_or_default();
    if arns.is_empty() {
        return Vec::new();
    }
    ecs.send(&DescribeTasksRequest {
        cluster: Some(CLUSTER.into()),
        tasks: arns,
        include: None,
    })
    .await
    .expect("describe tasks")
    .tasks
    .unwrap_or_default()
}

fn steady(s: &Service, desired: i32) -> bool {
    let deployments = s.deployments.as_deref().unwrap_or_default();
    s.running_count == desired
        && s.pending_count == 0
        && deployments.len() == 1
        && deployments[0].rollout_state == Some(DeploymentRolloutState::Completed)
}

fn has_event(s: &Service, text: &str) -> bool {
    s.events
        .iter()
        .flatten()
        .any(|e| e.message.as_deref().is_some_and(|m| m.contains(text)))
}

async fn register_web(ecs: &Client, image: &str) -> String {
    register_web_td(ecs, image)
        .await
        .task_definition_arn
        .expect("arn")
}

async fn register_web_td(ecs: &Client, image: &str) -> TaskDefinition {
    let td: RegisterTaskDefinitionRequest = serde_json::from_value(serde_json::json!({
        "family": "web",
        "containerDefinitions": [{"name": "web", "image": image, "memory": 64,
            "healthCheck": {"command": ["CMD", "true"]}}]
    }))
    .expect("td json");
    ecs.send(&td)
        .await
        .expect("register td")
        .task_definition
        .expect("td")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_runs_replaces_rolls_out_and_drains() {
    let dir = tempfile::tempdir().expect("dir");
    let (server, endpoint, ecs) = start(dir.path()).await;
    let td1 = register_web_td(&ecs, "berth-test/web:1").await;
    let instance_arn = register_instance(&ecs, offered(&td1)).await;
    let td1 = td1.task_definition_arn.expect("arn");
    let stopped_by_agent = scripted_agent(endpoint.clone(), instance_arn.clone()).await;

    // Create: three tasks, RUNNING, then a steady state.
    let created = ecs
        .send(&CreateServiceRequest {
            cluster: Some(CLUSTER.into()),
            service_name: "web".into(),
            task_definition: Some("web".into()),
            desired_count: Some(3),
            ..CreateServiceRequest::default()
        })
        .await
        .expect("create service")
        .service
        .expect("service");
    assert_eq!(created.status.as_deref(), Some("ACTIVE"));
    assert_eq!(created.task_definition.as_deref(), Some(td1.as_str()));
    let first_deployment = created.deployments.clone().unwrap_or_default()[0]
        .id
        .clone()
        .expect("deployment id");
    assert!(first_deployment.starts_with("ecs-svc/"));
    let s = wait_for(&ecs, "web", "3 running and steady", |s| {
        steady(s, 3) && has_event(s, "has reached a steady state.")
    })
    .await;
    assert!(
        has_event(&s, "(service web) has started 3 tasks"),
        "{:#?}",
        s.events
    );
    let tasks = service_tasks(&ecs, "web", DesiredStatus::Running).await;
    assert_eq!(tasks.len(), 3);
    for t in &tasks {
        assert_eq!(t.started_by.as_deref(), Some(first_deployment.as_str()));
        assert_eq!(t.group.as_deref(), Some("service:web"));
    }
    let clusters = ecs
        .send(&DescribeClustersRequest {
            clusters: Some(vec![CLUSTER.into()]),
            include: None,
        })
        .await
        .expect("describe cluster")
        .clusters
        .expect("clusters");
    assert_eq!(clusters[0].active_services_count, 1);

    // A task that dies is replaced.
    let dead = tasks[0].task_arn.clone().expect("arn");
    report(&ecs, &dead, "web", "STOPPED", Some(1)).await;
    let _ = wait_for(&ecs, "web", "a replacement", |s| {
        steady(s, 3) && has_event(s, "has started 1 tasks")
    })
    .await;
    let now_running: Vec<String> = service_tasks(&ecs, "web", DesiredStatus::Running)
        .await
        .into_iter()
        .filter(|t| t.last_status.as_deref() == Some("RUNNING"))
        .filter_map(|t| t.task_arn)
        .collect();
    assert_eq!(now_running.len(), 3);
    assert!(!now_running.contains(&dead));

    // A new task definition rolls out: a second deployment, then one again.
    let td2 = register_web(&ecs, "berth-test/web:2").await;
    let updated = ecs
        .send(&UpdateServiceRequest {
            cluster: Some(CLUSTER.into()),
            service: "web".into(),
            task_definition: Some(td2.clone()),
            ..UpdateServiceRequest::default()
        })
        .await
        .expect("update service")
        .service
        .expect("service");
    let deployments = updated.deployments.clone().unwrap_or_default();
    assert_eq!(deployments.len(), 2);
    assert_eq!(deployments[0].status.as_deref(), Some("PRIMARY"));
    assert_eq!(
        deployments[0].task_definition.as_deref(),
        Some(td2.as_str())
    );
    assert_eq!(deployments[1].status.as_deref(), Some("ACTIVE"));
    let s = wait_for(&ecs, "web", "the rollout to complete", |s| {
        steady(s, 3)
            && s.deployments.as_deref().unwrap_or_default()[0]
                .task_definition
                .as_deref()
                == Some(td2.as_str())
    })
    .await;
    assert!(has_event(&s, "deployment completed."), "{:#?}", s.events);
    let running = service_tasks(&ecs, "web", DesiredStatus::Running).await;
    assert_eq!(running.len(), 3);
    assert!(
        running
            .iter()
            .all(|t| t.task_definition_arn.as_deref() == Some(td2.as_str()))
    );
    let old = service_tasks(&ecs, "web", DesiredStatus::Stopped).await;
    let scaled_in: Vec<&Task> = old
        .iter()
        .filter(|t| t.task_definition_arn.as_deref() == Some(td1.as_str()))
        .filter(|t| t.stop_code == Some(TaskStopCode::ServiceSchedulerInitiated))
        .collect();
    assert_eq!(scaled_in.len(), 3, "{old:#?}");
    assert!(scaled_in.iter().all(|t| {
        t.stopped_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("Scaling activity initiated by (deployment ecs-svc/"))
    }));

    // desiredCount-only update keeps the deployment.
    let scaled = ecs
        .send(&UpdateServiceRequest {
            cluster: Some(CLUSTER.into()),
            service: "web".into(),
            desired_count: Some(2),
            ..UpdateServiceRequest::default()
        })
        .await
        .expect("scale in")
        .service
        .expect("service");
    assert_eq!(scaled.deployments.as_deref().unwrap_or_default().len(), 1);
    assert_eq!(
        scaled.deployments.as_deref().unwrap_or_default()[0].desired_count,
        2
    );
    let _ = wait_for(&ecs, "web", "scale in to 2", |s| {
        s.running_count == 2 && s.pending_count == 0
    })
    .await;

    // Deleting a service that still wants tasks needs force.
    let refused = ecs
        .send(&DeleteServiceRequest {
            cluster: Some(CLUSTER.into()),
            service: "web".into(),
            force: None,
        })
        .await
        .expect_err("scaled above 0");
    assert!(
        format!("{refused:?}")
            .contains("The service cannot be stopped while it is scaled above 0."),
        "{refused:?}"
    );
    let deleted = ecs
        .send(&DeleteServiceRequest {
            cluster: Some(CLUSTER.into()),
            service: "web".into(),
            force: Some(true),
        })
        .await
        .expect("delete")
        .service
        .expect("service");
    assert_eq!(deleted.status.as_deref(), Some("DRAINING"));
    let listed = ecs
        .send(&ListServicesRequest {
            cluster: Some(CLUSTER.into()),
            ..ListServicesRequest::default()
        })
        .await
        .expect("list")
        .service_arns
        .unwrap_or_default();
    assert!(listed.is_empty());
    let _ = wait_for(&ecs, "web", "INACTIVE", |s| {
        s.status.as_deref() == Some("INACTIVE")
    })
    .await;
    assert!(
        service_tasks(&ecs, "web", DesiredStatus::Running)
            .await
            .is_empty()
    );
    assert!(stopped_by_agent.lock().expect("lock").len() >= 5);

    server.stop().await.expect("server stops");
}

/// A server with the test cluster, its endpoint and a client.
async fn start(dir: &std::path::Path) -> (berth_server::Running, String, Client) {
    let server = berth_server::spawn(berth_server::Config::local(dir))
        .await
        .expect("server starts");
    let endpoint = server.endpoint();
    let ecs = client(&endpoint);
    ecs.send(&CreateClusterRequest {
        cluster_name: Some(CLUSTER.into()),
        ..CreateClusterRequest::default()
    })
    .await
    .expect("cluster");
    (server, endpoint, ecs)
}

/// The attributes an instance offers so it can run `td`: what it requires.
fn offered(td: &TaskDefinition) -> Vec<Attribute> {
    td.requires_attributes
        .iter()
        .flatten()
        .map(|a| Attribute {
            name: a.name.clone(),
            ..Attribute::default()
        })
        .collect()
}

/// Registers an instance of 4096 CPU units and 4096 MiB; returns its ARN.
async fn register_instance(ecs: &Client, attributes: Vec<Attribute>) -> String {
    let resource = |name: &str, value: i32| Resource {
        name: Some(name.into()),
        r#type: Some("INTEGER".into()),
        integer_value: value,
        ..Resource::default()
    };
    ecs.send(&RegisterContainerInstanceRequest {
        cluster: Some(CLUSTER.into()),
        total_resources: Some(vec![resource("CPU", 4096), resource("MEMORY", 4096)]),
        attributes: Some(attributes),
        ..RegisterContainerInstanceRequest::default()
    })
    .await
    .expect("register instance")
    .container_instance
    .expect("instance")
    .container_instance_arn
    .expect("arn")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_a_deregistered_instance_are_replaced_elsewhere() {
    let dir = tempfile::tempdir().expect("dir");
    let (server, endpoint, ecs) = start(dir.path()).await;
    let td = register_web_td(&ecs, "berth-test/web:1").await;
    let a = register_instance(&ecs, offered(&td)).await;
    let b = register_instance(&ecs, offered(&td)).await;
    let _agent_a = scripted_agent(endpoint.clone(), a.clone()).await;
    let _agent_b = scripted_agent(endpoint.clone(), b.clone()).await;

    ecs.send(&CreateServiceRequest {
        cluster: Some(CLUSTER.into()),
        service_name: "spread".into(),
        task_definition: Some("web".into()),
        desired_count: Some(2),
        ..CreateServiceRequest::default()
    })
    .await
    .expect("create service");
    let _ = wait_for(&ecs, "spread", "2 running", |s| steady(s, 2)).await;
    let tasks = service_tasks(&ecs, "spread", DesiredStatus::Running).await;
    let on_a: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.container_instance_arn.as_deref() == Some(a.as_str()))
        .collect();
    // The default strategy spreads the two tasks over the two instances.
    assert_eq!(on_a.len(), 1, "{tasks:#?}");
    let orphan = on_a[0].task_arn.clone().expect("arn");

    ecs.send(&DeregisterContainerInstanceRequest {
        cluster: Some(CLUSTER.into()),
        container_instance: a.clone(),
        force: Some(true),
    })
    .await
    .expect("deregister");
    let _ = wait_for(&ecs, "spread", "a replacement on the other instance", |s| {
        steady(s, 2) && has_event(s, "has started 1 tasks")
    })
    .await;
    let gone = ecs
        .send(&DescribeTasksRequest {
            cluster: Some(CLUSTER.into()),
            tasks: vec![orphan],
            include: None,
        })
        .await
        .expect("describe")
        .tasks
        .expect("tasks")
        .remove(0);
    assert_eq!(gone.last_status.as_deref(), Some("STOPPED"));
    assert_eq!(gone.stop_code, Some(TaskStopCode::InfrastructureHealth));
    let running = service_tasks(&ecs, "spread", DesiredStatus::Running).await;
    assert_eq!(running.len(), 2);
    assert!(
        running
            .iter()
            .all(|t| t.container_instance_arn.as_deref() == Some(b.as_str()))
    );
    server.stop().await.expect("server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_waiting_for_room_starts_as_soon_as_there_is_some() {
    let dir = tempfile::tempdir().expect("dir");
    let (server, endpoint, ecs) = start(dir.path()).await;
    let td = register_web_td(&ecs, "berth-test/web:1").await;
    let instance = register_instance(&ecs, offered(&td)).await;
    let _agent = scripted_agent(endpoint.clone(), instance.clone()).await;
    // A task that leaves less memory than a service task needs.
    let hog: RegisterTaskDefinitionRequest = serde_json::from_value(serde_json::json!({
        "family": "hog",
        "containerDefinitions": [{"name": "hog", "image": "berth-test/web:1", "memory": 4040}]
    }))
    .expect("td json");
    ecs.send(&hog).await.expect("register hog");
    let hog = ecs
        .send(&RunTaskRequest {
            cluster: Some(CLUSTER.into()),
            task_definition: "hog".into(),
            ..RunTaskRequest::default()
        })
        .await
        .expect("run hog")
        .tasks
        .expect("tasks")
        .remove(0)
        .task_arn
        .expect("arn");

    ecs.send(&CreateServiceRequest {
        cluster: Some(CLUSTER.into()),
        service_name: "waiting".into(),
        task_definition: Some("web".into()),
        desired_count: Some(1),
        ..CreateServiceRequest::default()
    })
    .await
    .expect("create service");
    let _ = wait_for(&ecs, "waiting", "a placement failure", |s| {
        has_event(s, "was unable to place a task")
    })
    .await;
    ecs.send(&StopTaskRequest {
        cluster: Some(CLUSTER.into()),
        task: hog.clone(),
        reason: None,
    })
    .await
    .expect("stop hog");
    let _ = wait_for(&ecs, "waiting", "its task running", |s| {
        s.running_count == 1
    })
    .await;
    let stopped_at = ecs
        .send(&DescribeTasksRequest {
            cluster: Some(CLUSTER.into()),
            tasks: vec![hog],
            include: None,
        })
        .await
        .expect("describe hog")
        .tasks
        .expect("tasks")[0]
        .stopped_at
        .expect("hog stopped");
    let created_at = service_tasks(&ecs, "waiting", DesiredStatus::Running).await[0]
        .created_at
        .expect("created");
    // The room wakes the service: it does not wait for its 10 s retry.
    let waited = created_at.millis() - stopped_at.millis();
    assert!(waited < 5_000, "placed {waited} ms after the room freed");
    server.stop().await.expect("server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_service_follows_the_instances_that_join() {
    let dir = tempfile::tempdir().expect("dir");
    let (server, endpoint, ecs) = start(dir.path()).await;
    let td = register_web_td(&ecs, "berth-test/web:1").await;
    let a = register_instance(&ecs, offered(&td)).await;
    let _agent_a = scripted_agent(endpoint.clone(), a).await;
    ecs.send(&CreateServiceRequest {
        cluster: Some(CLUSTER.into()),
        service_name: "everywhere".into(),
        task_definition: Some("web".into()),
        scheduling_strategy: Some(SchedulingStrategy::Daemon),
        ..CreateServiceRequest::default()
    })
    .await
    .expect("create service");
    let _ = wait_for(&ecs, "everywhere", "one task", |s| steady(s, 1)).await;

    let b = register_instance(&ecs, offered(&td)).await;
    let _agent_b = scripted_agent(endpoint.clone(), b.clone()).await;
    let joined = tokio::time::Instant::now();
    let _ = wait_for(&ecs, "everywhere", "a task on each instance", |s| {
        s.desired_count == 2 && s.running_count == 2
    })
    .await;
    // The instance's arrival wakes the service: it does not wait for its
    // 10 s retry.
    assert!(joined.elapsed() < Duration::from_secs(5));
    let tasks = service_tasks(&ecs, "everywhere", DesiredStatus::Running).await;
    assert!(
        tasks
            .iter()
            .any(|t| t.container_instance_arn.as_deref() == Some(b.as_str()))
    );
    server.stop().await.expect("server stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_service_follows_the_attributes_its_constraint_names() {
    let dir = tempfile::tempdir().expect("dir");
    let (server, endpoint, ecs) = start(dir.path()).await;
    let td = register_web_td(&ecs, "berth-test/web:1").await;
    let web = Attribute {
        name: "role".into(),
        value: Some("web".into()),
        ..Attribute::default()
    };
    let mut attributes = offered(&td);
    attributes.push(web.clone());
    let a = register_instance(&ecs, attributes).await;
    let b = register_instance(&ecs, offered(&td)).await;
    let _agent_a = scripted_agent(endpoint.clone(), a).await;
    let _agent_b = scripted_agent(endpoint.clone(), b.clone()).await;
    ecs.send(&CreateServiceRequest {
        cluster: Some(CLUSTER.into()),
        service_name: "web-only".into(),
        task_definition: Some("web".into()),
        scheduling_strategy: Some(SchedulingStrategy::Daemon),
        placement_constraints: Some(vec![PlacementConstraint {
            r#type: Some(PlacementConstraintType::MemberOf),
            expression: Some("attribute:role == web".into()),
        }]),
        ..CreateServiceRequest::default()
    })
    .await
    .expect("create service");
    let _ = wait_for(&ecs, "web-only", "one task", |s| steady(s, 1)).await;

    ecs.send(&PutAttributesRequest {
        cluster: Some(CLUSTER.into()),
        attributes: vec![Attribute {
            target_type: Some(TargetType::ContainerInstance),
            target_id: Some(b.clone()),
            ..web
        }],
    })
    .await
    .expect("put attributes");
    let tagged = tokio::time::Instant::now();
    let _ = wait_for(&ecs, "web-only", "a task on each web instance", |s| {
        s.desired_count == 2 && s.running_count == 2
    })
    .await;
    // The attribute wakes the service: it does not wait for a minute.
    assert!(tagged.elapsed() < Duration::from_secs(5));
    server.stop().await.expect("server stops");
}
