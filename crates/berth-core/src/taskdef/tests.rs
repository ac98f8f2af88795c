//! Rule-by-rule tests for task-definition registration: for each rule an
//! accepted case and a rejected one, asserting the exact error code and
//! message. Messages tagged `// ECS wording` are copied from real ECS
//! responses; the rest are Berth's, in the same style.

use berth_types::{Compatibility, ErrorCode, NetworkMode, RegisterTaskDefinitionRequest};
use serde_json::{Value, json};

use super::*;

fn req(v: Value) -> RegisterTaskDefinitionRequest {
    serde_json::from_value(v).expect("test request must deserialize")
}

fn ok(v: Value) -> ValidatedTaskDefinition {
    validate(&req(v)).unwrap_or_else(|e| panic!("expected a valid definition, got {e}"))
}

fn rejected(v: Value, code: ErrorCode, message: &str) {
    let err = validate(&req(v)).expect_err("expected the definition to be rejected");
    assert_eq!((err.code, err.message.as_str()), (code, message));
}

fn client(v: Value, message: &str) {
    rejected(v, ErrorCode::ClientException, message);
}

/// `v` with `key` set to `value` in the object at JSON pointer `at`.
fn set(mut v: Value, at: &str, key: &str, value: Value) -> Value {
    v.pointer_mut(at)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at {at}"))
        .insert(key.to_string(), value);
    v
}

fn remove(mut v: Value, at: &str, key: &str) -> Value {
    v.pointer_mut(at)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at {at}"))
        .remove(key);
    v
}

const C0: &str = "/containerDefinitions/0";

/// A minimal EC2 definition: bridge mode, one container with hard memory.
fn ec2() -> Value {
    json!({
        "family": "web",
        "containerDefinitions": [{"name": "web", "image": "nginx:latest", "memory": 512}]
    })
}

/// The seed document's Fargate definition.
fn seed() -> Value {
    json!({
        "family": "platform-task",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{
            "name": "next-api",
            "image": "platform-docker-image:latest",
            "portMappings": [{"containerPort": 8000, "hostPort": 8000, "protocol": "tcp"}],
            "environment": [{"name": "ENV", "value": "production"}]
        }]
    })
}

/// Two containers, `app` and `db`, for dependency and volume rules.
fn pair() -> Value {
    json!({
        "family": "pair",
        "containerDefinitions": [
            {"name": "app", "image": "app", "memory": 256},
            {"name": "db", "image": "postgres", "memory": 256}
        ]
    })
}

fn attribute_names(v: &ValidatedTaskDefinition) -> Vec<&str> {
    v.requires_attributes
        .iter()
        .map(|a| a.name.as_str())
        .collect()
}

fn container(n: usize) -> Value {
    json!({"name": format!("c{n}"), "image": "busybox", "memory": 16})
}

// ---------------------------------------------------------------- seed ---

#[test]
fn seed_definition_validates_for_ec2_and_fargate() {
    let v = ok(seed());
    assert_eq!(
        v.compatibilities,
        vec![Compatibility::Ec2, Compatibility::Fargate]
    );
    assert_eq!(
        attribute_names(&v),
        [
            "com.amazonaws.ecs.capability.docker-remote-api.1.18",
            "ecs.capability.task-eni"
        ]
    );
    assert_eq!(v.network_mode, NetworkMode::Awsvpc);
    assert_eq!(
        (v.cpu.as_deref(), v.memory.as_deref()),
        (Some("256"), Some("512"))
    );
}

#[test]
fn seed_stored_definition_matches_ecs_shape() {
    let request = req(seed());
    let stored = validate(&request)
        .expect("seed is valid")
        .task_definition(&request);
    assert_eq!(
        serde_json::to_value(&stored).expect("serializes"),
        json!({
            "containerDefinitions": [{
                "name": "next-api",
                "image": "platform-docker-image:latest",
                "cpu": 0,
                "portMappings": [{"containerPort": 8000, "hostPort": 8000, "protocol": "tcp"}],
                "essential": true,
                "environment": [{"name": "ENV", "value": "production"}],
                "mountPoints": [],
                "volumesFrom": [],
                "systemControls": []
            }],
            "family": "platform-task",
            "networkMode": "awsvpc",
            "revision": 0,
            "volumes": [],
            "requiresAttributes": [
                {"name": "com.amazonaws.ecs.capability.docker-remote-api.1.18"},
                {"name": "ecs.capability.task-eni"}
            ],
            "placementConstraints": [],
            "compatibilities": ["EC2", "FARGATE"],
            "requiresCompatibilities": ["FARGATE"],
            "cpu": "256",
            "memory": "512"
        })
    );
}

// ------------------------------------------------------------ identity ---

#[test]
fn family_rules() {
    ok(set(ec2(), "", "family", json!("a".repeat(255))));
    ok(set(ec2(), "", "family", json!("My_family-2")));
    client(
        set(ec2(), "", "family", json!("")),
        "Family can not be blank.",
    ); // ECS wording
    client(
        set(ec2(), "", "family", json!("my.family")),
        "Family contains invalid characters.", // ECS wording
    );
    client(
        set(ec2(), "", "family", json!("a".repeat(256))),
        "Family name must be no longer than 255 characters.",
    );
}

#[test]
fn container_count_rules() {
    let ten: Vec<Value> = (0..10).map(container).collect();
    ok(set(ec2(), "", "containerDefinitions", json!(ten)));
    let eleven: Vec<Value> = (0..11).map(container).collect();
    client(
        set(ec2(), "", "containerDefinitions", json!(eleven)),
        "Too many containers.",
    ); // ECS wording
    client(
        set(ec2(), "", "containerDefinitions", json!([])),
        "Container list cannot be empty.", // ECS wording
    );
}

#[test]
fn container_name_rules() {
    client(
        remove(ec2(), C0, "name"),
        "Container.name should not be null or empty.",
    ); // ECS wording
    client(
        set(ec2(), C0, "name", json!("")),
        "Container.name should not be null or empty.",
    );
    client(
        set(ec2(), C0, "name", json!("web app")), // ECS wording
        "Container.name contains invalid characters.",
    );
    client(
        set(pair(), "/containerDefinitions/1", "name", json!("app")),
        "Invalid setting for container 'app'. Container names must be unique within a task definition.",
    );
}

#[test]
fn container_image_rules() {
    client(
        remove(ec2(), C0, "image"),
        "Container.image should not be null or empty.",
    ); // ECS wording
    client(
        set(ec2(), C0, "image", json!(" ")),
        "Container.image should not be null or empty.",
    );
    ok(set(ec2(), C0, "image", json!("a".repeat(255))));
    client(
        set(ec2(), C0, "image", json!("a".repeat(256))),
        "Invalid setting for container 'web'. 'image' must be no longer than 255 characters.",
    );
}

// ------------------------------------------------------ task cpu/memory ---

#[test]
fn task_cpu_and_memory_are_normalized() {
    for (cpu, memory, want_cpu, want_memory) in [
        ("1 vCPU", "2GB", "1024", "2048"),
        ("1 vcpu", "2 GB", "1024", "2048"),
        (".25 vCPU", "512", "256", "512"),
        ("512", "0.5GB", "512", "512"),
    ] {
        let v = ok(set(
            set(ec2(), "", "cpu", json!(cpu)),
            "",
            "memory",
            json!(memory),
        ));
        assert_eq!(
            (v.cpu.as_deref(), v.memory.as_deref()),
            (Some(want_cpu), Some(want_memory))
        );
    }
    let v = ok(ec2());
    assert_eq!((v.cpu, v.memory), (None, None));
}

#[test]
fn task_cpu_range_on_ec2() {
    ok(set(ec2(), "", "cpu", json!("128")));
    ok(set(ec2(), "", "cpu", json!("196608")));
    for bad in ["127", "196609", "abc", "", "0", "-256", "1.5"] {
        client(
            set(ec2(), "", "cpu", json!(bad)),
            "Invalid 'cpu' setting for task.",
        ); // ECS wording
    }
}

#[test]
fn task_memory_must_parse_and_be_positive() {
    for bad in ["lots", "0", "-512", "2 MB", ""] {
        client(
            set(ec2(), "", "memory", json!(bad)),
            "Invalid 'memory' setting for task.",
        );
    }
}

// -------------------------------------------------------------- Fargate ---

#[test]
fn fargate_requires_awsvpc() {
    client(
        set(seed(), "", "networkMode", json!("bridge")),
        "Fargate only supports network mode \u{2018}awsvpc\u{2019}.", // ECS wording
    );
    client(
        remove(seed(), "", "networkMode"),
        "Fargate only supports network mode \u{2018}awsvpc\u{2019}.",
    );
}

#[test]
fn fargate_requires_task_cpu_and_memory() {
    let no_cpu = set(remove(seed(), "", "cpu"), C0, "cpu", json!(256));
    client(
        no_cpu,
        "Fargate requires that 'cpu' be defined at the task level.",
    ); // ECS wording
    let no_memory = set(remove(seed(), "", "memory"), C0, "memory", json!(512));
    client(
        no_memory,
        "Fargate requires that 'memory' be defined at the task level.",
    );
}

#[test]
fn fargate_combinations() {
    for (cpu, memory) in [
        ("256", "2048"),
        ("1 vCPU", "8 GB"),
        ("16384", "122880"),
        ("8192", "20480"),
    ] {
        let v = ok(set(
            set(seed(), "", "cpu", json!(cpu)),
            "",
            "memory",
            json!(memory),
        ));
        assert!(v.compatibilities.contains(&Compatibility::Fargate));
    }
    for (cpu, memory) in [
        ("256", "4096"),
        ("512", "512"),
        ("128", "512"),
        ("8192", "17408"),
    ] {
        client(
            set(
                set(seed(), "", "cpu", json!(cpu)),
                "",
                "memory",
                json!(memory),
            ),
            "No Fargate configuration exists for given values.", // ECS wording
        );
    }
}

#[test]
fn fargate_windows_needs_a_whole_vcpu() {
    let windows = set(
        seed(),
        "",
        "runtimePlatform",
        json!({"operatingSystemFamily": "WINDOWS_SERVER_2022_CORE", "cpuArchitecture": "X86_64"}),
    );
    client(
        windows.clone(),
        "No Fargate configuration exists for given values.",
    );
    ok(set(
        set(windows, "", "cpu", json!("1024")),
        "",
        "memory",
        json!("2048"),
    ));
}

#[test]
fn fargate_ipc_and_pid_modes() {
    client(
        set(seed(), "", "ipcMode", json!("task")),
        "Tasks using the Fargate launch type do not support ipcMode.", // ECS wording
    );
    client(
        set(seed(), "", "pidMode", json!("host")),
        "Tasks using the Fargate launch type do not support pidMode 'host'.",
    );
    ok(set(seed(), "", "pidMode", json!("task")));
    // On EC2 both are fine.
    ok(set(
        set(ec2(), "", "ipcMode", json!("host")),
        "",
        "pidMode",
        json!("host"),
    ));
}

#[test]
fn fargate_log_drivers() {
    let with_driver = |driver: &str| {
        set(
            set(seed(), C0, "logConfiguration", json!({"logDriver": driver})),
            "",
            "executionRoleArn",
            json!("arn:aws:iam::123456789012:role/exec"),
        )
    };
    ok(with_driver("awslogs"));
    ok(with_driver("splunk"));
    ok(with_driver("awsfirelens"));
    client(
        with_driver("json-file"),
        "Invalid 'logConfiguration' setting for container 'next-api'. Tasks using the Fargate launch type only support the awslogs, splunk and awsfirelens log drivers.",
    );
    // Not requested: the definition is still registered, just not Fargate-compatible.
    let v = ok(remove(with_driver("syslog"), "", "requiresCompatibilities"));
    assert_eq!(v.compatibilities, vec![Compatibility::Ec2]);
}

#[test]
fn fargate_awslogs_and_ecr_need_an_execution_role() {
    client(
        set(
            seed(),
            C0,
            "logConfiguration",
            json!({"logDriver": "awslogs"}),
        ),
        // ECS wording
        "Fargate requires task definition to have execution role ARN to support log driver awslogs.",
    );
    client(
        set(
            seed(),
            C0,
            "image",
            json!("123456789012.dkr.ecr.us-east-1.amazonaws.com/api:1"),
        ),
        "Fargate requires task definition to have execution role ARN to support ECR images.",
    );
}

#[test]
fn fargate_volumes() {
    let with_volume = |volume: Value| set(seed(), "", "volumes", json!([volume]));
    ok(with_volume(json!({"name": "scratch", "host": {}})));
    ok(with_volume(json!({"name": "scratch"})));
    ok(with_volume(
        json!({"name": "shared", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}),
    ));
    client(
        with_volume(json!({"name": "data", "host": {"sourcePath": "/data"}})),
        "Invalid setting for volume 'data'. Tasks using the Fargate launch type do not support host volumes with a 'sourcePath'.",
    );
    client(
        with_volume(json!({"name": "data", "dockerVolumeConfiguration": {"scope": "task"}})),
        "Invalid setting for volume 'data'. Tasks using the Fargate launch type do not support 'dockerVolumeConfiguration'.",
    );
}

#[test]
fn fargate_privileged_and_timeouts() {
    client(
        set(seed(), C0, "privileged", json!(true)),
        "Invalid 'privileged' setting for container 'next-api'. Tasks using the Fargate launch type do not support privileged containers.",
    );
    ok(set(seed(), C0, "stopTimeout", json!(120)));
    client(
        set(seed(), C0, "stopTimeout", json!(121)),
        "Invalid 'stopTimeout' setting for container 'next-api'. Tasks using the Fargate launch type support at most 120 seconds.",
    );
    ok(set(seed(), C0, "startTimeout", json!(2)));
    client(
        set(seed(), C0, "startTimeout", json!(1)),
        "Invalid 'startTimeout' setting for container 'next-api'. Tasks using the Fargate launch type support between 2 and 120 seconds.",
    );
    // EC2 has no such ceiling.
    ok(set(
        set(ec2(), C0, "stopTimeout", json!(600)),
        C0,
        "startTimeout",
        json!(1),
    ));
}

// ----------------------------------------------------- container memory ---

#[test]
fn ec2_containers_need_memory_without_task_memory() {
    client(
        remove(ec2(), C0, "memory"),
        // ECS wording
        "Invalid setting for container 'web'. At least one of 'memory' or 'memoryReservation' must be specified.",
    );
    ok(set(
        remove(ec2(), C0, "memory"),
        C0,
        "memoryReservation",
        json!(128),
    ));
    ok(set(remove(ec2(), C0, "memory"), "", "memory", json!("512")));
}

#[test]
fn memory_must_cover_memory_reservation() {
    ok(set(ec2(), C0, "memoryReservation", json!(511)));
    for reservation in [512, 513] {
        client(
            set(ec2(), C0, "memoryReservation", json!(reservation)),
            "Invalid setting for container 'web'. 'memory' must be greater than 'memoryReservation'.",
        );
    }
}

#[test]
fn container_memory_minimums() {
    ok(set(ec2(), C0, "memory", json!(6)));
    for bad in [5, 0, -1] {
        client(
            set(ec2(), C0, "memory", json!(bad)),
            "Invalid 'memory' setting for container 'web'. The minimum is 6 MiB.",
        );
    }
    client(
        set(
            remove(ec2(), C0, "memory"),
            C0,
            "memoryReservation",
            json!(0),
        ),
        "Invalid 'memoryReservation' setting for container 'web'.",
    );
}

#[test]
fn container_memory_against_task_memory() {
    let with_task_memory = set(ec2(), "", "memory", json!("512"));
    ok(with_task_memory.clone());
    client(
        set(with_task_memory.clone(), C0, "memory", json!(513)),
        "The 'memory' setting for container 'web' is greater than for the task.", // ECS wording
    );
    let two = set(
        set(pair(), "", "memory", json!("512")),
        "/containerDefinitions/1",
        "memoryReservation",
        json!(257),
    );
    let two = set(two, "/containerDefinitions/1", "memory", json!(300));
    client(
        two,
        // ECS wording
        "The sum of all container 'memoryReservation' values cannot be greater than the value of the task 'memory'.",
    );
}

#[test]
fn container_cpu_against_task_cpu() {
    let base = set(set(pair(), "", "cpu", json!("1024")), C0, "cpu", json!(512));
    ok(set(
        base.clone(),
        "/containerDefinitions/1",
        "cpu",
        json!(512),
    ));
    client(
        set(base, "/containerDefinitions/1", "cpu", json!(513)),
        // ECS wording
        "The sum of all container 'cpu' values cannot be greater than the value of the task 'cpu'.",
    );
    client(
        set(ec2(), C0, "cpu", json!(-1)),
        "Invalid 'cpu' setting for container 'web'.",
    );
    // Without task cpu the sum is unbounded (and must not overflow).
    ok(set(
        set(pair(), C0, "cpu", json!(i32::MAX)),
        "/containerDefinitions/1",
        "cpu",
        json!(i32::MAX),
    ));
}

// ----------------------------------------------------------- networking ---

fn with_ports(mode: &str, mappings: Value) -> Value {
    set(
        set(ec2(), "", "networkMode", json!(mode)),
        C0,
        "portMappings",
        mappings,
    )
}

#[test]
fn none_mode_forbids_port_mappings() {
    ok(with_ports("none", json!([])));
    client(
        with_ports("none", json!([{"containerPort": 80}])),
        "Port mappings are not supported when networkMode=none.",
    );
}

#[test]
fn awsvpc_and_host_ports_must_match() {
    for mode in ["awsvpc", "host"] {
        let v = ok(with_ports(
            mode,
            json!([{"containerPort": 80}, {"containerPort": 81, "hostPort": 0}]),
        ));
        let ports = v.container_definitions[0]
            .port_mappings
            .clone()
            .unwrap_or_default();
        assert_eq!(ports[0].host_port, Some(80));
        assert_eq!(ports[1].host_port, Some(81));
        ok(with_ports(
            mode,
            json!([{"containerPort": 80, "hostPort": 80}]),
        ));
    }
    client(
        with_ports("awsvpc", json!([{"containerPort": 80, "hostPort": 8080}])),
        // ECS wording
        "When networkMode=awsvpc, the host ports and container ports in port mappings must match.",
    );
    client(
        with_ports("host", json!([{"containerPort": 80, "hostPort": 8080}])),
        "When networkMode=host, the host ports and container ports in port mappings must match.",
    );
    ok(with_ports(
        "bridge",
        json!([{"containerPort": 80, "hostPort": 8080}]),
    ));
}

#[test]
fn bridge_port_mapping_defaults() {
    let v = ok(with_ports(
        "bridge",
        json!([{"containerPort": 80}, {"containerPort": 53, "protocol": "udp"}]),
    ));
    let ports = v.container_definitions[0]
        .port_mappings
        .clone()
        .unwrap_or_default();
    let got: Vec<Value> = ports
        .iter()
        .map(|p| serde_json::to_value(p).expect("json"))
        .collect();
    assert_eq!(
        got,
        [
            json!({"containerPort": 80, "hostPort": 0, "protocol": "tcp"}),
            json!({"containerPort": 53, "hostPort": 0, "protocol": "udp"})
        ]
    );
}

#[test]
fn container_and_host_port_ranges() {
    for bad in [
        json!({}),
        json!({"containerPort": 0}),
        json!({"containerPort": 65_536}),
    ] {
        client(
            with_ports("bridge", json!([bad])),
            "Invalid 'containerPort' setting for container 'web'.", // ECS wording
        );
    }
    for bad in [-1, 65_536] {
        client(
            with_ports("bridge", json!([{"containerPort": 80, "hostPort": bad}])),
            "Invalid 'hostPort' setting for container 'web'.",
        );
    }
    ok(with_ports(
        "bridge",
        json!([{"containerPort": 65_535, "hostPort": 65_535}]),
    ));
}

#[test]
fn duplicate_container_ports() {
    client(
        with_ports(
            "bridge",
            json!([{"containerPort": 53, "protocol": "tcp"}, {"containerPort": 53, "protocol": "udp"}]),
        ),
        "Invalid 'containerPort' setting for container 'web'. Container port 53 is mapped more than once.",
    );
}

#[test]
fn container_port_range_rules() {
    ok(with_ports(
        "bridge",
        json!([{"containerPortRange": "8000-8010"}]),
    ));
    ok(with_ports(
        "awsvpc",
        json!([{"containerPortRange": "8000-8010"}, {"containerPort": 9000}]),
    ));
    for bad in [
        "8010-8000",
        "8000-8000",
        "abc",
        "0-10",
        "1-65536",
        "8000",
        "-",
    ] {
        client(
            with_ports("bridge", json!([{"containerPortRange": bad}])),
            "Invalid 'containerPortRange' setting for container 'web'.",
        );
    }
    client(
        with_ports("host", json!([{"containerPortRange": "8000-8010"}])),
        "Container port ranges are not supported when networkMode=host.",
    );
    client(
        with_ports(
            "bridge",
            json!([{"containerPortRange": "8000-8010", "containerPort": 8000}]),
        ),
        "Invalid 'containerPortRange' setting for container 'web'. 'containerPort' and 'hostPort' cannot be set together with 'containerPortRange'.",
    );
    client(
        with_ports(
            "bridge",
            json!([{"containerPortRange": "8000-8010"}, {"containerPort": 8005}]),
        ),
        "Invalid 'containerPortRange' setting for container 'web'. Port ranges must not overlap other port mappings.",
    );
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"containerPortRange": format!("{}-{}", 1000 + i * 10, 1005 + i * 10)}))
        .collect();
    client(
        with_ports("bridge", json!(many)),
        "Invalid 'containerPortRange' setting for container 'web'. A container can have at most 100 port ranges.",
    );
}

#[test]
fn links_only_in_bridge_mode() {
    let linked = |mode: &str| {
        set(
            set(pair(), "", "networkMode", json!(mode)),
            C0,
            "links",
            json!(["db"]),
        )
    };
    ok(linked("bridge"));
    client(
        linked("awsvpc"),
        "Links are not supported when networkMode=awsvpc.",
    ); // ECS wording
    client(
        linked("host"),
        "Links are not supported when networkMode=host.",
    );
    client(
        linked("none"),
        "Links are not supported when networkMode=none.",
    );
}

#[test]
fn hostname_not_in_awsvpc() {
    ok(set(ec2(), C0, "hostname", json!("web")));
    client(
        set(
            set(ec2(), "", "networkMode", json!("awsvpc")),
            C0,
            "hostname",
            json!("web"),
        ),
        "hostname is not supported on container when networkMode=awsvpc.", // ECS wording
    );
}

// ------------------------------------------------ essential / dependsOn ---

#[test]
fn at_least_one_essential_container() {
    ok(set(pair(), C0, "essential", json!(false)));
    let none = set(
        set(pair(), C0, "essential", json!(false)),
        "/containerDefinitions/1",
        "essential",
        json!(false),
    );
    client(
        none,
        "Task definition does not have any essential container.",
    );
}

fn depends(v: Value, on: &str, condition: &str) -> Value {
    set(
        v,
        C0,
        "dependsOn",
        json!([{"containerName": on, "condition": condition}]),
    )
}

#[test]
fn depends_on_existing_container() {
    ok(depends(pair(), "db", "START"));
    client(
        depends(pair(), "cache", "START"),
        "Cannot depend on container + 'cache' because it does not exist", // ECS wording
    );
    client(
        depends(pair(), "app", "START"),
        "Invalid 'dependsOn' setting for container 'app'. A container cannot depend on itself.",
    );
}

#[test]
fn complete_and_success_need_non_essential_dependency() {
    for condition in ["COMPLETE", "SUCCESS"] {
        client(
            depends(pair(), "db", condition),
            // ECS wording
            "A dependency container with SUCCESS or COMPLETE condition cannot be an essential container",
        );
        ok(depends(
            set(pair(), "/containerDefinitions/1", "essential", json!(false)),
            "db",
            condition,
        ));
    }
}

#[test]
fn healthy_needs_a_health_check() {
    client(
        depends(pair(), "db", "HEALTHY"),
        "Invalid 'dependsOn' setting for container 'app'. Container 'db' must define a 'healthCheck' to be used with the HEALTHY condition.",
    );
    ok(depends(
        set(
            pair(),
            "/containerDefinitions/1",
            "healthCheck",
            json!({"command": ["CMD", "pg_isready"]}),
        ),
        "db",
        "HEALTHY",
    ));
}

#[test]
fn dependency_cycles_are_rejected() {
    let two = set(
        depends(pair(), "db", "START"),
        "/containerDefinitions/1",
        "dependsOn",
        json!([{"containerName": "app", "condition": "START"}]),
    );
    client(
        two,
        "Invalid 'dependsOn' setting. Container dependencies form a cycle: app -> db -> app.",
    );
    let three = json!({
        "family": "tri",
        "containerDefinitions": [
            {"name": "x", "image": "i", "memory": 8, "dependsOn": [{"containerName": "y", "condition": "START"}]},
            {"name": "y", "image": "i", "memory": 8, "dependsOn": [{"containerName": "z", "condition": "START"}]},
            {"name": "z", "image": "i", "memory": 8, "dependsOn": [{"containerName": "y", "condition": "START"}]}
        ]
    });
    client(
        three,
        "Invalid 'dependsOn' setting. Container dependencies form a cycle: y -> z -> y.",
    );
    // A diamond is not a cycle.
    ok(json!({
        "family": "diamond",
        "containerDefinitions": [
            {"name": "a", "image": "i", "memory": 8, "dependsOn": [
                {"containerName": "b", "condition": "START"}, {"containerName": "c", "condition": "START"}]},
            {"name": "b", "image": "i", "memory": 8, "dependsOn": [{"containerName": "d", "condition": "START"}]},
            {"name": "c", "image": "i", "memory": 8, "dependsOn": [{"containerName": "d", "condition": "START"}]},
            {"name": "d", "image": "i", "memory": 8}
        ]
    }));
}

// ---------------------------------------------------------- healthCheck ---

fn with_health(check: Value) -> Value {
    set(ec2(), C0, "healthCheck", check)
}

#[test]
fn health_check_command() {
    ok(with_health(
        json!({"command": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]}),
    ));
    ok(with_health(
        json!({"command": ["CMD", "/bin/check", "--quick"]}),
    ));
    for bad in [
        json!([]),
        json!(["CMD"]),
        json!(["NONE"]),
        json!(["curl", "-f", "x"]),
        json!(["CMD-SHELL", " "]),
    ] {
        client(
            with_health(json!({"command": bad})),
            "Invalid 'healthCheck' setting for container 'web'. 'command' must start with 'CMD' or 'CMD-SHELL', followed by the command to run.",
        );
    }
}

#[test]
fn health_check_timings() {
    let cases = [
        (
            "interval",
            5,
            300,
            "'interval' must be between 5 and 300 seconds.",
        ),
        (
            "timeout",
            2,
            60,
            "'timeout' must be between 2 and 60 seconds.",
        ),
        ("retries", 1, 10, "'retries' must be between 1 and 10."),
        (
            "startPeriod",
            0,
            300,
            "'startPeriod' must be between 0 and 300 seconds.",
        ),
    ];
    for (field, min, max, detail) in cases {
        let check = |value: i32| with_health(json!({"command": ["CMD", "true"], field: value}));
        ok(check(min));
        ok(check(max));
        for bad in [min - 1, max + 1] {
            client(
                check(bad),
                &format!("Invalid 'healthCheck' setting for container 'web'. {detail}"),
            );
        }
    }
}

#[test]
fn health_check_defaults_are_filled_in() {
    let v = ok(with_health(
        json!({"command": ["CMD", "true"], "startPeriod": 10}),
    ));
    let hc = v.container_definitions[0]
        .health_check
        .clone()
        .expect("kept");
    assert_eq!(
        (hc.interval, hc.timeout, hc.retries, hc.start_period),
        (Some(30), Some(5), Some(3), Some(10))
    );
}

#[test]
fn timeouts_are_non_negative() {
    ok(set(
        set(ec2(), C0, "startTimeout", json!(0)),
        C0,
        "stopTimeout",
        json!(0),
    ));
    client(
        set(ec2(), C0, "startTimeout", json!(-1)),
        "Invalid 'startTimeout' setting for container 'web'.",
    );
    client(
        set(ec2(), C0, "stopTimeout", json!(-1)),
        "Invalid 'stopTimeout' setting for container 'web'.",
    );
}

// -------------------------------------------------------------- volumes ---

#[test]
fn volume_names() {
    ok(set(
        ec2(),
        "",
        "volumes",
        json!([{"name": "data"}, {"name": "logs"}]),
    ));
    client(
        set(
            ec2(),
            "",
            "volumes",
            json!([{"host": {"sourcePath": "/data"}}]),
        ),
        "volume.name should not be null or empty.",
    );
    client(
        set(ec2(), "", "volumes", json!([{"name": "my.volume"}])),
        "volume.name contains invalid characters.", // ECS wording
    );
    client(
        set(
            ec2(),
            "",
            "volumes",
            json!([{"name": "data"}, {"name": "data"}]),
        ),
        "Invalid setting for volume 'data'. Volume names must be unique within a task definition.",
    );
}

#[test]
fn mount_points_need_declared_volumes() {
    let mounted = set(
        ec2(),
        C0,
        "mountPoints",
        json!([{"sourceVolume": "data", "containerPath": "/data"}]),
    );
    ok(set(
        mounted.clone(),
        "",
        "volumes",
        json!([{"name": "data", "host": {"sourcePath": "/srv"}}]),
    ));
    client(mounted, "Unknown volume 'data'."); // ECS wording
    client(
        set(
            ec2(),
            C0,
            "mountPoints",
            json!([{"containerPath": "/data"}]),
        ),
        "Unknown volume 'null'.", // ECS wording
    );
}

#[test]
fn volumes_from_needs_another_container() {
    ok(set(
        pair(),
        C0,
        "volumesFrom",
        json!([{"sourceContainer": "db"}]),
    ));
    client(
        set(
            pair(),
            C0,
            "volumesFrom",
            json!([{"sourceContainer": "cache"}]),
        ),
        "Invalid 'volumesFrom' setting for container 'app'. Container 'cache' does not exist.",
    );
    client(
        set(
            pair(),
            C0,
            "volumesFrom",
            json!([{"sourceContainer": "app"}]),
        ),
        "Invalid 'volumesFrom' setting for container 'app'. A container cannot mount volumes from itself.",
    );
}

// ------------------------------------------------- task-level settings ---

#[test]
fn placement_constraints() {
    let member = json!({"type": "memberOf", "expression": "attribute:ecs.instance-type =~ t2.*"});
    ok(set(
        ec2(),
        "",
        "placementConstraints",
        json!(vec![member.clone(); 10]),
    ));
    client(
        set(ec2(), "", "placementConstraints", json!(vec![member; 11])),
        "Too many placement constraints. A task definition can have at most 10.",
    );
    client(
        set(
            ec2(),
            "",
            "placementConstraints",
            json!([{"expression": "attribute:x == y"}]),
        ),
        "Invalid 'placementConstraints' setting. Only the 'memberOf' constraint type is supported in task definitions.",
    );
    client(
        set(
            ec2(),
            "",
            "placementConstraints",
            json!([{"type": "memberOf"}]),
        ),
        "Invalid 'placementConstraints' setting. A 'memberOf' constraint requires an expression.",
    );
}

#[test]
fn tags() {
    let tags = |n: usize| -> Value {
        json!(
            (0..n)
                .map(|i| json!({"key": format!("k{i}"), "value": "v"}))
                .collect::<Vec<_>>()
        )
    };
    ok(set(ec2(), "", "tags", tags(50)));
    let param =
        |v: Value, message: &str| rejected(v, ErrorCode::InvalidParameterException, message);
    param(
        set(ec2(), "", "tags", tags(51)),
        "Too many tags. A resource can have at most 50 tags.",
    );
    for key in ["aws:createdBy", "AWS:x", "Aws:"] {
        param(
            set(ec2(), "", "tags", json!([{"key": key, "value": "v"}])),
            "Tag keys beginning with 'aws:' are reserved.",
        );
    }
    ok(set(
        ec2(),
        "",
        "tags",
        json!([{"key": "awsome", "value": "v"}]),
    ));
    param(
        set(ec2(), "", "tags", json!([{"value": "v"}])),
        "Tag keys must be between 1 and 128 characters.",
    );
    param(
        set(ec2(), "", "tags", json!([{"key": "k".repeat(129)}])),
        "Tag keys must be between 1 and 128 characters.",
    );
    param(
        set(
            ec2(),
            "",
            "tags",
            json!([{"key": "k", "value": "v".repeat(257)}]),
        ),
        "Tag values must be no longer than 256 characters.",
    );
    param(
        set(ec2(), "", "tags", json!([{"key": "k"}, {"key": "k"}])),
        "Duplicate tag key 'k'.",
    );
}

#[test]
fn ephemeral_storage_size() {
    for good in [21, 200] {
        ok(set(
            seed(),
            "",
            "ephemeralStorage",
            json!({"sizeInGiB": good}),
        ));
    }
    for bad in [20, 201, 0, -5] {
        client(
            set(seed(), "", "ephemeralStorage", json!({"sizeInGiB": bad})),
            "Invalid 'ephemeralStorage' setting for task. 'sizeInGiB' must be between 21 and 200.",
        );
    }
}

// ------------------------------------------------------ compatibilities ---

#[test]
fn bridge_definition_is_ec2_and_external() {
    let v = ok(ec2());
    assert_eq!(
        v.compatibilities,
        vec![Compatibility::External, Compatibility::Ec2]
    );
    assert_eq!(v.network_mode, NetworkMode::Bridge);
    assert!(v.requires_attributes.is_empty());
    let request = req(ec2());
    let stored = v.task_definition(&request);
    assert_eq!(stored.requires_attributes, None, "ECS omits an empty list");
    assert_eq!(
        stored.network_mode, None,
        "ECS does not echo the default mode"
    );
}

#[test]
fn awsvpc_without_task_size_is_ec2_only() {
    let v = ok(set(ec2(), "", "networkMode", json!("awsvpc")));
    assert_eq!(v.compatibilities, vec![Compatibility::Ec2]);
}

#[test]
fn fargate_shape_is_listed_even_when_only_ec2_is_requested() {
    let v = ok(set(seed(), "", "requiresCompatibilities", json!(["EC2"])));
    assert_eq!(
        v.compatibilities,
        vec![Compatibility::Ec2, Compatibility::Fargate]
    );
}

#[test]
fn external_rules() {
    let external = set(ec2(), "", "requiresCompatibilities", json!(["EXTERNAL"]));
    let v = ok(external.clone());
    assert_eq!(
        v.compatibilities,
        vec![Compatibility::External, Compatibility::Ec2]
    );
    client(
        set(external.clone(), "", "networkMode", json!("awsvpc")),
        "Tasks using the EXTERNAL launch type do not support networkMode 'awsvpc'.",
    );
    client(
        set(
            external,
            "",
            "volumes",
            json!([{"name": "shared", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}}]),
        ),
        "Invalid setting for volume 'shared'. Tasks using the EXTERNAL launch type do not support EFS or FSx volumes.",
    );
}

#[test]
fn managed_instances_listed_when_requested() {
    let v = ok(set(
        ec2(),
        "",
        "requiresCompatibilities",
        json!(["MANAGED_INSTANCES"]),
    ));
    assert_eq!(
        v.compatibilities,
        vec![
            Compatibility::External,
            Compatibility::Ec2,
            Compatibility::ManagedInstances
        ]
    );
}

// ---------------------------------------------------- requiresAttributes ---

#[test]
fn attributes_for_bridge_awslogs_with_task_size() {
    // Matches a real DescribeTaskDefinition output exactly.
    let v = ok(json!({
        "family": "ngnix",
        "requiresCompatibilities": ["EC2"],
        "cpu": "1024",
        "memory": "512",
        "containerDefinitions": [{
            "name": "c2",
            "image": "nginx:latest",
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/ngnix"}}
        }]
    }));
    assert_eq!(
        attribute_names(&v),
        [
            "com.amazonaws.ecs.capability.docker-remote-api.1.19",
            "com.amazonaws.ecs.capability.logging-driver.awslogs"
        ]
    );
}

#[test]
fn attributes_for_features() {
    let v = ok(json!({
        "family": "full",
        "networkMode": "host",
        "taskRoleArn": "arn:aws:iam::123456789012:role/task",
        "executionRoleArn": "arn:aws:iam::123456789012:role/exec",
        "pidMode": "task",
        "volumes": [
            {"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1", "transitEncryption": "ENABLED"}},
            {"name": "plugin", "dockerVolumeConfiguration": {"driver": "rexray"}}
        ],
        "containerDefinitions": [
            {
                "name": "app",
                "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1",
                "memory": 256,
                "memoryReservation": 128,
                "privileged": true,
                "dockerSecurityOptions": ["label:type:svirt_apache_t", "no-new-privileges"],
                "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
                "linuxParameters": {
                    "capabilities": {"add": ["SYS_PTRACE"]},
                    "tmpfs": [{"containerPath": "/tmp", "size": 64}],
                    "initProcessEnabled": true
                },
                "healthCheck": {"command": ["CMD", "true"]},
                "dependsOn": [{"containerName": "log", "condition": "START"}],
                "secrets": [
                    {"name": "A", "valueFrom": "arn:aws:ssm:eu-west-1:123456789012:parameter/a"},
                    {"name": "B", "valueFrom": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:b"}
                ],
                "repositoryCredentials": {"credentialsParameter": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:c"},
                "environmentFiles": [{"type": "s3", "value": "arn:aws:s3:::bucket/app.env"}],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "secretOptions": [{"name": "X", "valueFrom": "/param/x"}]
                }
            },
            {
                "name": "log",
                "image": "fluent/fluent-bit",
                "memory": 64,
                "firelensConfiguration": {"type": "fluentbit"},
                "dockerLabels": {"team": "obs"}
            }
        ]
    }));
    assert_eq!(
        attribute_names(&v),
        [
            "com.amazonaws.ecs.capability.docker-remote-api.1.17",
            "com.amazonaws.ecs.capability.docker-remote-api.1.18",
            "com.amazonaws.ecs.capability.docker-remote-api.1.19",
            "com.amazonaws.ecs.capability.docker-remote-api.1.21",
            "com.amazonaws.ecs.capability.docker-remote-api.1.22",
            "com.amazonaws.ecs.capability.docker-remote-api.1.24",
            "com.amazonaws.ecs.capability.docker-remote-api.1.25",
            "com.amazonaws.ecs.capability.ecr-auth",
            "com.amazonaws.ecs.capability.logging-driver.awslogs",
            "com.amazonaws.ecs.capability.private-registry-authentication.secretsmanager",
            "com.amazonaws.ecs.capability.privileged-container",
            "com.amazonaws.ecs.capability.selinux",
            "com.amazonaws.ecs.capability.task-iam-role",
            "com.amazonaws.ecs.capability.task-iam-role-network-host",
            "ecs.capability.container-health-check",
            "ecs.capability.container-ordering",
            "ecs.capability.docker-plugin.rexray",
            "ecs.capability.efs",
            "ecs.capability.efsAuth",
            "ecs.capability.env-files.s3",
            "ecs.capability.execution-role-awslogs",
            "ecs.capability.execution-role-ecr-pull",
            "ecs.capability.firelens.fluentbit",
            "ecs.capability.pid-ipc-namespace-sharing",
            "ecs.capability.secrets.asm.environment-variables",
            "ecs.capability.secrets.ssm.bootstrap.log-driver",
            "ecs.capability.secrets.ssm.environment-variables",
        ]
    );
    // EFS rules out ECS Anywhere; host mode rules out Fargate.
    assert_eq!(v.compatibilities, vec![Compatibility::Ec2]);
}

#[test]
fn fargate_awslogs_attributes() {
    let v = ok(set(
        set(
            seed(),
            C0,
            "logConfiguration",
            json!({"logDriver": "awslogs"}),
        ),
        "",
        "executionRoleArn",
        json!("arn:aws:iam::123456789012:role/exec"),
    ));
    assert_eq!(
        attribute_names(&v),
        [
            "com.amazonaws.ecs.capability.docker-remote-api.1.18",
            "com.amazonaws.ecs.capability.docker-remote-api.1.19",
            "com.amazonaws.ecs.capability.logging-driver.awslogs",
            "ecs.capability.execution-role-awslogs",
            "ecs.capability.task-eni",
        ]
    );
}

#[test]
fn ecr_image_detection() {
    use super::attributes::is_ecr_image;
    assert!(is_ecr_image(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/repo:tag"
    ));
    assert!(is_ecr_image(
        "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/repo"
    ));
    assert!(is_ecr_image(
        "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/repo@sha256:abc"
    ));
    assert!(!is_ecr_image("public.ecr.aws/nginx/nginx:latest"));
    assert!(!is_ecr_image("nginx:latest"));
    assert!(!is_ecr_image("12345.dkr.ecr.us-east-1.amazonaws.com/repo"));
    assert!(!is_ecr_image(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    ));
}

// -------------------------------------------------- placement resources ---

fn stored(v: Value) -> TaskDefinition {
    let request = req(v);
    validate(&request).expect("valid").task_definition(&request)
}

#[test]
fn requirements_use_task_level_values() {
    let td = stored(set(
        set(ec2(), "", "cpu", json!("1 vCPU")),
        "",
        "memory",
        json!("1GB"),
    ));
    assert_eq!(
        resource_requirements(&td),
        Requirements {
            cpu: 1024,
            memory_mib: 1024
        }
    );
}

#[test]
fn requirements_sum_containers_without_task_values() {
    let v = set(
        set(pair(), C0, "cpu", json!(100)),
        "/containerDefinitions/1",
        "cpu",
        json!(200),
    );
    let v = set(
        v,
        "/containerDefinitions/1",
        "memoryReservation",
        json!(128),
    );
    assert_eq!(
        resource_requirements(&stored(v)),
        Requirements {
            cpu: 300,
            memory_mib: 256 + 128
        }
    );
}

#[test]
fn requirements_never_overflow_or_panic() {
    let td = TaskDefinition {
        container_definitions: Some(vec![
            ContainerDefinition {
                cpu: i32::MAX,
                memory: Some(i32::MAX),
                ..Default::default()
            },
            ContainerDefinition {
                cpu: i32::MAX,
                memory: Some(i32::MAX),
                ..Default::default()
            },
            ContainerDefinition {
                cpu: i32::MIN,
                memory: Some(-5),
                ..Default::default()
            },
        ]),
        cpu: Some("garbage".into()),
        ..Default::default()
    };
    assert_eq!(
        resource_requirements(&td),
        Requirements {
            cpu: u32::MAX - 1,
            memory_mib: u32::MAX - 1
        }
    );
    assert_eq!(
        resource_requirements(&TaskDefinition::default()),
        Requirements::default()
    );
}
