//! The AWS SDK for Rust against a real berth server (in-process, SQLite in a
//! temp dir): every control-plane operation, typed errors, pagination, and a
//! restart between writes and reads.

use aws_credential_types::Credentials;
use aws_sdk_ecs::Client;
use aws_sdk_ecs::config::Region;
use aws_sdk_ecs::types::{
    Attribute, CapacityProviderStrategyItem, ContainerDefinition, ContainerInstanceStatus,
    KeyValuePair, NetworkMode, PortMapping, Resource, SettingName, Tag, TaskDefinitionStatus,
};

struct Server(berth_server::Running);

impl Server {
    async fn start(data_dir: &std::path::Path) -> Self {
        Self(
            berth_server::spawn(berth_server::Config::local(data_dir))
                .await
                .expect("server starts"),
        )
    }

    async fn stop(self) {
        self.0.stop().await.expect("server stops cleanly");
    }

    fn client(&self, region: &str) -> Client {
        let config = aws_sdk_ecs::Config::builder()
            .behavior_version_latest()
            .endpoint_url(self.0.endpoint())
            .region(Region::new(region.to_owned()))
            .credentials_provider(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
            .build();
        Client::from_conf(config)
    }
}

fn container(name: &str, memory: i32) -> ContainerDefinition {
    ContainerDefinition::builder()
        .name(name)
        .image("busybox:latest")
        .memory(memory)
        .port_mappings(PortMapping::builder().container_port(80).build())
        .build()
}

fn resources(cpu: i32, memory: i32) -> Vec<Resource> {
    vec![
        Resource::builder()
            .name("CPU")
            .r#type("INTEGER")
            .integer_value(cpu)
            .build(),
        Resource::builder()
            .name("MEMORY")
            .r#type("INTEGER")
            .integer_value(memory)
            .build(),
        Resource::builder()
            .name("PORTS")
            .r#type("STRINGSET")
            .set_string_set_value(Some(vec!["22".into(), "2375".into()]))
            .build(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_task_definitions_and_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await;
    let ecs = server.client("us-east-1");

    // Clusters.
    let created = ecs
        .create_cluster()
        .cluster_name("sdk-prod")
        .tags(Tag::builder().key("team").value("core").build())
        .send()
        .await?;
    let cluster = created.cluster().expect("cluster");
    assert_eq!(
        cluster.cluster_arn(),
        Some("arn:aws:ecs:us-east-1:000000000000:cluster/sdk-prod")
    );
    assert_eq!(cluster.status(), Some("ACTIVE"));

    let described = ecs
        .describe_clusters()
        .clusters("sdk-prod")
        .clusters("nope")
        .include(aws_sdk_ecs::types::ClusterField::Statistics)
        .include(aws_sdk_ecs::types::ClusterField::Tags)
        .send()
        .await?;
    assert_eq!(described.clusters().len(), 1);
    assert_eq!(described.failures().len(), 1);
    assert_eq!(described.failures()[0].reason(), Some("MISSING"));
    let stats = described.clusters()[0].statistics();
    assert!(
        stats.contains(
            &KeyValuePair::builder()
                .name("runningEC2TasksCount")
                .value("0")
                .build()
        )
    );
    assert_eq!(described.clusters()[0].tags().len(), 1);

    let err = ecs
        .update_cluster_settings()
        .cluster("nope")
        .settings(
            aws_sdk_ecs::types::ClusterSetting::builder()
                .name(aws_sdk_ecs::types::ClusterSettingName::ContainerInsights)
                .value("enabled")
                .build(),
        )
        .send()
        .await
        .expect_err("missing cluster");
    assert!(err.into_service_error().is_cluster_not_found_exception());

    // Pagination across pages.
    for i in 0..12 {
        ecs.create_cluster()
            .cluster_name(format!("sdk-page-{i:02}"))
            .send()
            .await?;
    }
    let mut pages = 0;
    let mut arns = Vec::new();
    let mut token = None;
    loop {
        let page = ecs
            .list_clusters()
            .max_results(5)
            .set_next_token(token)
            .send()
            .await?;
        pages += 1;
        arns.extend(page.cluster_arns().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert!(pages >= 3);
    assert_eq!(arns.iter().filter(|a| a.contains("sdk-page-")).count(), 12);

    // Capacity providers on the cluster.
    let put = ecs
        .put_cluster_capacity_providers()
        .cluster("sdk-prod")
        .capacity_providers("FARGATE")
        .capacity_providers("FARGATE_SPOT")
        .default_capacity_provider_strategy(
            CapacityProviderStrategyItem::builder()
                .capacity_provider("FARGATE")
                .base(2)
                .weight(1)
                .build()?,
        )
        .send()
        .await?;
    assert_eq!(
        put.cluster().expect("cluster").capacity_providers().len(),
        2
    );

    // Task definitions: revisions increase and never repeat.
    for expected in 1..=3 {
        let registered = ecs
            .register_task_definition()
            .family("sdk-web")
            .container_definitions(container("web", 128))
            .send()
            .await?;
        assert_eq!(
            registered.task_definition().expect("td").revision(),
            expected
        );
    }
    ecs.deregister_task_definition()
        .task_definition("sdk-web:3")
        .send()
        .await?;
    let latest = ecs
        .describe_task_definition()
        .task_definition("sdk-web")
        .send()
        .await?;
    assert_eq!(latest.task_definition().expect("td").revision(), 2);
    ecs.delete_task_definitions()
        .task_definitions("sdk-web:3")
        .send()
        .await?;
    let next = ecs
        .register_task_definition()
        .family("sdk-web")
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .cpu("1 vCPU")
        .memory("2GB")
        .container_definitions(container("web", 128))
        .send()
        .await?;
    let td = next.task_definition().expect("td");
    assert_eq!(td.revision(), 4);
    assert_eq!(td.cpu(), Some("1024"));
    assert_eq!(td.memory(), Some("2048"));
    assert!(
        td.compatibilities()
            .contains(&aws_sdk_ecs::types::Compatibility::Fargate)
    );

    let err = ecs
        .register_task_definition()
        .family("sdk-bad")
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .cpu("256")
        .memory("4096")
        .container_definitions(container("web", 128))
        .send()
        .await
        .expect_err("invalid Fargate pair");
    let service_error = err.into_service_error();
    assert!(service_error.is_client_exception(), "{service_error:?}");
    assert_eq!(
        service_error.meta().message(),
        Some("No Fargate configuration exists for given values.")
    );

    let listed = ecs
        .list_task_definitions()
        .family_prefix("sdk-web")
        .status(TaskDefinitionStatus::Active)
        .sort(aws_sdk_ecs::types::SortOrder::Desc)
        .send()
        .await?;
    assert_eq!(
        listed.task_definition_arns(),
        [
            "arn:aws:ecs:us-east-1:000000000000:task-definition/sdk-web:4",
            "arn:aws:ecs:us-east-1:000000000000:task-definition/sdk-web:2",
            "arn:aws:ecs:us-east-1:000000000000:task-definition/sdk-web:1",
        ]
    );

    // Container instances and attributes.
    let registered = ecs
        .register_container_instance()
        .cluster("sdk-prod")
        .instance_identity_document(
            r#"{"instanceId":"i-0123456789abcdef0","availabilityZone":"us-east-1a","instanceType":"m5.large"}"#,
        )
        .set_total_resources(Some(resources(2048, 3800)))
        .send()
        .await?;
    let instance = registered.container_instance().expect("instance");
    let instance_arn = instance.container_instance_arn().expect("arn").to_owned();
    assert_eq!(instance.ec2_instance_id(), Some("i-0123456789abcdef0"));
    assert!(
        instance
            .attributes()
            .iter()
            .any(|a| a.name() == "ecs.availability-zone" && a.value() == Some("us-east-1a"))
    );

    ecs.put_attributes()
        .cluster("sdk-prod")
        .attributes(
            Attribute::builder()
                .name("stack")
                .value("prod")
                .target_id(&instance_arn)
                .build()?,
        )
        .send()
        .await?;
    let attributes = ecs
        .list_attributes()
        .cluster("sdk-prod")
        .target_type(aws_sdk_ecs::types::TargetType::ContainerInstance)
        .attribute_name("stack")
        .send()
        .await?;
    assert_eq!(attributes.attributes().len(), 1);

    let drained = ecs
        .update_container_instances_state()
        .cluster("sdk-prod")
        .container_instances(&instance_arn)
        .container_instances("does-not-exist")
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await?;
    assert_eq!(drained.container_instances()[0].status(), Some("DRAINING"));
    assert_eq!(drained.failures().len(), 1);

    let err = ecs
        .delete_cluster()
        .cluster("sdk-prod")
        .send()
        .await
        .expect_err("cluster has an instance");
    assert!(
        err.into_service_error()
            .is_cluster_contains_container_instances_exception()
    );

    // Account settings.
    ecs.put_account_setting()
        .name(SettingName::ContainerInsights)
        .value("enhanced")
        .send()
        .await?;
    let settings = ecs
        .list_account_settings()
        .effective_settings(true)
        .name(SettingName::ContainerInsights)
        .send()
        .await?;
    assert_eq!(settings.settings()[0].value(), Some("enhanced"));

    // Regions are separate worlds.
    let eu = server.client("eu-west-1");
    let eu_cluster = eu.create_cluster().cluster_name("sdk-prod").send().await?;
    assert_eq!(
        eu_cluster.cluster().and_then(|c| c.cluster_arn()),
        Some("arn:aws:ecs:eu-west-1:000000000000:cluster/sdk-prod")
    );
    let eu_list = eu.list_task_definitions().send().await?;
    assert!(eu_list.task_definition_arns().is_empty());

    // Restart: everything acknowledged is still there.
    server.stop().await;
    let server = Server::start(dir.path()).await;
    let ecs = server.client("us-east-1");
    let tags = ecs
        .list_tags_for_resource()
        .resource_arn("arn:aws:ecs:us-east-1:000000000000:cluster/sdk-prod")
        .send()
        .await?;
    assert_eq!(tags.tags().len(), 1);
    let instances = ecs
        .describe_container_instances()
        .cluster("sdk-prod")
        .container_instances(&instance_arn)
        .send()
        .await?;
    assert_eq!(
        instances.container_instances()[0].status(),
        Some("DRAINING")
    );
    let registered = ecs
        .register_task_definition()
        .family("sdk-web")
        .container_definitions(container("web", 128))
        .send()
        .await?;
    assert_eq!(registered.task_definition().expect("td").revision(), 5);

    ecs.deregister_container_instance()
        .cluster("sdk-prod")
        .container_instance(&instance_arn)
        .send()
        .await?;
    let deleted = ecs.delete_cluster().cluster("sdk-prod").send().await?;
    assert_eq!(deleted.cluster().and_then(|c| c.status()), Some("INACTIVE"));
    server.stop().await;
    Ok(())
}
