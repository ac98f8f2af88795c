//! Fuzzing `berth_core::taskdef` through its public API: arbitrary JSON,
//! request-shaped JSON with random member values, and random mutations of
//! a valid definition are deserialized as `RegisterTaskDefinitionRequest`
//! and, when that succeeds, validated. Validation must never panic, must
//! answer quickly, and must uphold its output invariants.

use std::time::{Duration, Instant};

use berth_core::taskdef::{
    fargate_combination_valid, parse_task_cpu, parse_task_memory, resource_requirements, validate,
};
use berth_types::{Compatibility, ErrorCode, RegisterTaskDefinitionRequest};
use proptest::prelude::*;
use proptest::strategy::{Union, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};

/// Strings the validator branches on, so random values hit real paths.
const WORDS: &[&str] = &[
    "",
    " ",
    "web",
    "db",
    "app",
    "next-api",
    "x",
    "web app",
    "my.family",
    "bridge",
    "host",
    "awsvpc",
    "none",
    "EC2",
    "FARGATE",
    "EXTERNAL",
    "MANAGED_INSTANCES",
    "CMD",
    "CMD-SHELL",
    "NONE",
    "true",
    "START",
    "COMPLETE",
    "SUCCESS",
    "HEALTHY",
    "tcp",
    "udp",
    "awslogs",
    "json-file",
    "splunk",
    "awsfirelens",
    "syslog",
    "memberOf",
    "task",
    "256",
    "512",
    "1024",
    "2048",
    "16384",
    "196608",
    "1 vCPU",
    ".25 vcpu",
    "0.1 vCPU",
    "2GB",
    "2 GB",
    "0.5GB",
    "8000-8010",
    "8010-8000",
    "1-65535",
    "aws:tag",
    "label:x",
    "apparmor:y",
    "LINUX",
    "WINDOWS_SERVER_2022_CORE",
    "X86_64",
    "ARM64",
    "fluentbit",
    "fluentd",
    "s3",
    "ENABLED",
    "nofile",
    "data",
    "logs",
    "shared",
    "local",
    "rexray",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1",
    "arn:aws:iam::123456789012:role/exec",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:s",
    "arn:aws:ssm:us-east-1:123456789012:parameter/p",
];

/// Member names of the request and its nested shapes.
const KEYS: &[&str] = &[
    "family",
    "containerDefinitions",
    "cpu",
    "memory",
    "networkMode",
    "requiresCompatibilities",
    "executionRoleArn",
    "taskRoleArn",
    "pidMode",
    "ipcMode",
    "volumes",
    "placementConstraints",
    "tags",
    "ephemeralStorage",
    "runtimePlatform",
    "proxyConfiguration",
    "name",
    "image",
    "memoryReservation",
    "essential",
    "portMappings",
    "containerPort",
    "hostPort",
    "protocol",
    "containerPortRange",
    "links",
    "hostname",
    "dependsOn",
    "containerName",
    "condition",
    "healthCheck",
    "command",
    "interval",
    "timeout",
    "retries",
    "startPeriod",
    "startTimeout",
    "stopTimeout",
    "logConfiguration",
    "logDriver",
    "options",
    "secretOptions",
    "valueFrom",
    "mountPoints",
    "sourceVolume",
    "containerPath",
    "volumesFrom",
    "sourceContainer",
    "host",
    "sourcePath",
    "efsVolumeConfiguration",
    "fileSystemId",
    "dockerVolumeConfiguration",
    "driver",
    "type",
    "expression",
    "key",
    "value",
    "sizeInGiB",
    "secrets",
    "privileged",
    "linuxParameters",
    "tmpfs",
    "size",
    "capabilities",
    "initProcessEnabled",
    "dockerLabels",
    "ulimits",
    "softLimit",
    "hardLimit",
    "firelensConfiguration",
    "environment",
    "environmentFiles",
    "operatingSystemFamily",
    "cpuArchitecture",
];

fn word() -> BoxedStrategy<String> {
    prop_oneof![
        4 => proptest::sample::select(WORDS).prop_map(str::to_string),
        1 => "[A-Za-z0-9_.:/ -]{0,40}",
        1 => any::<String>().prop_map(|s| s.chars().take(64).collect()),
        1 => (1usize..300).prop_map(|n| "a".repeat(n)),
    ]
    .boxed()
}

fn int() -> BoxedStrategy<i64> {
    prop_oneof![
        8 => -3i64..70_000,
        2 => proptest::sample::select(vec![
            i64::from(i32::MIN), i64::from(i32::MIN) + 1, -1, 0, 1, 5, 6, 120, 121, 300, 301,
            65_535, 65_536, i64::from(i32::MAX),
        ]),
        2 => any::<i32>().prop_map(i64::from),
        // Out of i32 range: must fail deserialization, not validation.
        1 => any::<i64>(),
    ]
    .boxed()
}

fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        int().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        word().prop_map(Value::from),
    ]
    .boxed()
}

fn key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => word(),
    ]
    .boxed()
}

/// Any JSON value, biased towards the request's own member names.
fn any_json() -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(5, 96, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..10)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// An object holding a random subset of `fields`, each with its own value
/// strategy, or occasionally an arbitrary value instead.
fn object(fields: Vec<(&'static str, BoxedStrategy<Value>)>, max: usize) -> BoxedStrategy<Value> {
    object_with(vec![], fields, max)
}

/// Like [`object`], but the `required` members are always present (as the
/// model demands), so the object usually deserializes.
fn object_with(
    required: Vec<(&'static str, BoxedStrategy<Value>)>,
    optional: Vec<(&'static str, BoxedStrategy<Value>)>,
    max: usize,
) -> BoxedStrategy<Value> {
    let member = |(name, strategy): (&'static str, BoxedStrategy<Value>)| {
        prop_oneof![
            20 => strategy.prop_map(move |v| (name.to_string(), v)),
            1 => any_json().prop_map(move |v| (name.to_string(), v)),
        ]
        .boxed()
    };
    let required: Vec<BoxedStrategy<(String, Value)>> = required.into_iter().map(member).collect();
    let optional: Vec<BoxedStrategy<(String, Value)>> = optional.into_iter().map(member).collect();
    let optional = if optional.is_empty() {
        Just(Vec::new()).boxed()
    } else {
        prop::collection::vec(Union::new(optional), 0..max).boxed()
    };
    (required, optional)
        .prop_map(|(required, optional)| {
            Value::Object(
                required
                    .into_iter()
                    .chain(optional)
                    .collect::<Map<String, Value>>(),
            )
        })
        .boxed()
}

fn s() -> BoxedStrategy<Value> {
    word().prop_map(Value::from).boxed()
}
fn n() -> BoxedStrategy<Value> {
    int().prop_map(Value::from).boxed()
}
fn b() -> BoxedStrategy<Value> {
    any::<bool>().prop_map(Value::from).boxed()
}
/// Up to `max - 1` items, usually few: every item is another chance to
/// fail deserialization, and long lists are only needed for limit rules.
fn list(item: BoxedStrategy<Value>, max: usize) -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::collection::vec(item.clone(), 0..max.min(3)),
        1 => prop::collection::vec(item, 0..max),
    ]
    .prop_map(Value::Array)
    .boxed()
}

fn container() -> BoxedStrategy<Value> {
    let port = object(
        vec![
            ("containerPort", n()),
            ("hostPort", n()),
            ("protocol", enum_word()),
            ("containerPortRange", s()),
        ],
        5,
    );
    let dependency = object_with(
        vec![("containerName", s()), ("condition", enum_word())],
        vec![],
        1,
    );
    let health = object_with(
        vec![("command", list(s(), 4))],
        vec![
            ("interval", n()),
            ("timeout", n()),
            ("retries", n()),
            ("startPeriod", n()),
        ],
        6,
    );
    let secret = object_with(vec![("name", s()), ("valueFrom", s())], vec![], 1);
    let log = object_with(
        vec![("logDriver", enum_word())],
        vec![
            ("options", object(vec![("awslogs-group", s())], 2)),
            ("secretOptions", list(secret.clone(), 3)),
        ],
        4,
    );
    let linux = object(
        vec![
            ("initProcessEnabled", b()),
            ("capabilities", object(vec![("add", list(s(), 2))], 2)),
            (
                "tmpfs",
                list(
                    object_with(vec![("containerPath", s()), ("size", n())], vec![], 1),
                    2,
                ),
            ),
        ],
        4,
    );
    object(
        vec![
            ("name", s()),
            ("image", s()),
            ("cpu", n()),
            ("memory", n()),
            ("memoryReservation", n()),
            ("essential", b()),
            ("portMappings", list(port, 6)),
            ("links", list(s(), 3)),
            ("hostname", s()),
            ("dependsOn", list(dependency, 4)),
            ("healthCheck", health),
            ("startTimeout", n()),
            ("stopTimeout", n()),
            ("logConfiguration", log),
            (
                "mountPoints",
                list(
                    object(vec![("sourceVolume", s()), ("containerPath", s())], 3),
                    3,
                ),
            ),
            (
                "volumesFrom",
                list(object(vec![("sourceContainer", s())], 2), 3),
            ),
            ("secrets", list(secret, 3)),
            ("privileged", b()),
            ("linuxParameters", linux),
            ("dockerLabels", object(vec![("team", s())], 2)),
            ("dockerSecurityOptions", list(s(), 3)),
            (
                "firelensConfiguration",
                object_with(vec![("type", enum_word())], vec![], 1),
            ),
            (
                "environmentFiles",
                list(
                    object_with(vec![("type", enum_word()), ("value", s())], vec![], 1),
                    2,
                ),
            ),
        ],
        14,
    )
}

/// Request-shaped JSON: the right member names with mostly right-typed,
/// often-invalid values.
fn shaped_request() -> BoxedStrategy<Value> {
    let volume = object(
        vec![
            ("name", s()),
            ("host", object(vec![("sourcePath", s())], 2)),
            (
                "efsVolumeConfiguration",
                object_with(
                    vec![("fileSystemId", s())],
                    vec![("transitEncryption", enum_word())],
                    2,
                ),
            ),
            (
                "dockerVolumeConfiguration",
                object(vec![("driver", s()), ("scope", enum_word())], 3),
            ),
        ],
        4,
    );
    let fields = object(
        vec![
            ("cpu", s()),
            ("memory", s()),
            ("networkMode", enum_word()),
            ("requiresCompatibilities", list(enum_word(), 3)),
            ("executionRoleArn", s()),
            ("taskRoleArn", s()),
            ("pidMode", enum_word()),
            ("ipcMode", enum_word()),
            ("volumes", list(volume, 4)),
            (
                "placementConstraints",
                list(
                    object(vec![("type", enum_word()), ("expression", s())], 3),
                    12,
                ),
            ),
            (
                "tags",
                list(object(vec![("key", s()), ("value", s())], 3), 52),
            ),
            (
                "ephemeralStorage",
                object_with(vec![("sizeInGiB", n())], vec![], 1),
            ),
            (
                "runtimePlatform",
                object(
                    vec![
                        ("operatingSystemFamily", enum_word()),
                        ("cpuArchitecture", enum_word()),
                    ],
                    3,
                ),
            ),
        ],
        10,
    );
    (s(), list(container(), 12), fields)
        .prop_map(|(family, containers, fields)| {
            let mut request = match fields {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            request.insert("family".into(), family);
            request.insert("containerDefinitions".into(), containers);
            Value::Object(request)
        })
        .boxed()
}

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

/// Where a mutation can land (parent pointer, member) and the values it
/// tries there: mostly the member's own type, so most mutants still
/// deserialize and reach the rules.
fn mutation_points() -> Vec<(&'static str, &'static str, BoxedStrategy<Value>)> {
    const C0: &str = "/containerDefinitions/0";
    const P0: &str = "/containerDefinitions/0/portMappings/0";
    let dependency = object_with(
        vec![("containerName", s()), ("condition", enum_word())],
        vec![],
        1,
    );
    vec![
        ("", "family", s()),
        ("", "cpu", s()),
        ("", "memory", s()),
        ("", "networkMode", enum_word()),
        ("", "requiresCompatibilities", list(enum_word(), 3)),
        ("", "containerDefinitions", list(container(), 4)),
        (
            "",
            "volumes",
            list(
                object(
                    vec![
                        ("name", s()),
                        ("host", object(vec![("sourcePath", s())], 2)),
                    ],
                    3,
                ),
                3,
            ),
        ),
        ("", "pidMode", enum_word()),
        ("", "ipcMode", enum_word()),
        ("", "executionRoleArn", s()),
        ("", "ephemeralStorage", object(vec![("sizeInGiB", n())], 2)),
        (C0, "name", s()),
        (C0, "image", s()),
        (C0, "cpu", n()),
        (C0, "memory", n()),
        (C0, "memoryReservation", n()),
        (C0, "essential", b()),
        (
            C0,
            "portMappings",
            list(
                object(vec![("containerPort", n()), ("hostPort", n())], 3),
                4,
            ),
        ),
        (C0, "dependsOn", list(dependency, 3)),
        (
            C0,
            "healthCheck",
            object_with(
                vec![("command", list(s(), 3))],
                vec![("interval", n()), ("retries", n())],
                3,
            ),
        ),
        (
            C0,
            "logConfiguration",
            object_with(vec![("logDriver", enum_word())], vec![], 1),
        ),
        (C0, "links", list(s(), 2)),
        (
            C0,
            "mountPoints",
            list(object(vec![("sourceVolume", s())], 2), 2),
        ),
        (C0, "startTimeout", n()),
        (C0, "stopTimeout", n()),
        (P0, "containerPort", n()),
        (P0, "hostPort", n()),
        (P0, "protocol", enum_word()),
        (P0, "containerPortRange", s()),
    ]
}

/// Spellings of the enums the request uses, so enum members deserialize.
fn enum_word() -> BoxedStrategy<Value> {
    proptest::sample::select(vec![
        "bridge",
        "host",
        "awsvpc",
        "none",
        "EC2",
        "FARGATE",
        "EXTERNAL",
        "MANAGED_INSTANCES",
        "task",
        "START",
        "COMPLETE",
        "SUCCESS",
        "HEALTHY",
        "tcp",
        "udp",
        "awslogs",
        "json-file",
        "splunk",
        "awsfirelens",
        "syslog",
        "fluentbit",
        "fluentd",
        "s3",
        "memberOf",
        "ENABLED",
        "DISABLED",
        "shared",
        "LINUX",
        "WINDOWS_SERVER_2022_CORE",
        "X86_64",
        "ARM64",
        "bogus",
    ])
    .prop_map(Value::from)
    .boxed()
}

/// The seed with a few members replaced or removed, and sometimes its
/// container duplicated.
fn mutated_seed() -> BoxedStrategy<Value> {
    let arms: Vec<BoxedStrategy<(&'static str, &'static str, Option<Value>)>> = mutation_points()
        .into_iter()
        .map(|(parent, member, typed)| {
            prop_oneof![
                8 => typed.prop_map(move |v| (parent, member, Some(v))),
                1 => any_json().prop_map(move |v| (parent, member, Some(v))),
                1 => Just((parent, member, None)),
            ]
            .boxed()
        })
        .collect();
    let mutation = (
        Union::new(arms),
        prop_oneof![4 => Just(0usize), 1 => 1usize..4],
    );
    prop::collection::vec(mutation, 1..5)
        .prop_map(|mutations| {
            let mut v = seed();
            for ((parent, member, value), copies) in mutations {
                if let Some(obj) = v.pointer_mut(parent).and_then(Value::as_object_mut) {
                    match value {
                        Some(value) => obj.insert(member.to_string(), value),
                        None => obj.remove(member),
                    };
                }
                if let Some(list) = v
                    .pointer_mut("/containerDefinitions")
                    .and_then(Value::as_array_mut)
                    && let Some(first) = list.first().cloned()
                {
                    list.extend(std::iter::repeat_n(first, copies));
                }
            }
            v
        })
        .boxed()
}

/// Deserializes and validates `v`; panics on any broken invariant.
/// Returns (deserialized, accepted).
fn exercise(v: Value) -> (bool, bool) {
    let Ok(request) = serde_json::from_value::<RegisterTaskDefinitionRequest>(v) else {
        return (false, false);
    };
    let started = Instant::now();
    let outcome = validate(&request);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "validate took {:?}",
        started.elapsed()
    );
    match outcome {
        Ok(valid) => {
            assert!(valid.compatibilities.contains(&Compatibility::Ec2));
            for requested in request
                .requires_compatibilities
                .as_deref()
                .unwrap_or_default()
            {
                assert!(
                    valid.compatibilities.contains(requested),
                    "{requested:?} requested"
                );
            }
            let names: Vec<&str> = valid
                .requires_attributes
                .iter()
                .map(|a| a.name.as_str())
                .collect();
            assert!(
                names.windows(2).all(|w| w[0] < w[1]),
                "sorted and unique: {names:?}"
            );
            assert_eq!(
                valid.container_definitions.len(),
                request.container_definitions.len()
            );
            assert_eq!(
                valid.cpu.as_deref().and_then(parse_task_cpu),
                valid.cpu_units
            );
            assert_eq!(
                valid.memory.as_deref().and_then(parse_task_memory),
                valid.memory_mib
            );
            if valid.compatibilities.contains(&Compatibility::Fargate) {
                let (cpu, memory) = (valid.cpu_units.unwrap_or(0), valid.memory_mib.unwrap_or(0));
                assert!(fargate_combination_valid(cpu, memory));
            }
            let stored = valid.task_definition(&request);
            let needs = resource_requirements(&stored);
            if let Some(cpu) = valid.cpu_units {
                assert_eq!(needs.cpu, cpu);
            }
            (true, true)
        }
        Err(err) => {
            assert!(matches!(
                err.code,
                ErrorCode::ClientException | ErrorCode::InvalidParameterException
            ));
            assert!(!err.message.is_empty());
            (true, false)
        }
    }
}

/// 512 cases per property unless `PROPTEST_CASES` asks for more (or fewer).
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(512);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_json_never_panics(v in any_json()) {
        exercise(v);
    }

    #[test]
    fn shaped_requests_never_panic(v in shaped_request()) {
        exercise(v);
    }

    #[test]
    fn mutated_seed_never_panics(v in mutated_seed()) {
        exercise(v);
    }

    #[test]
    fn unit_parsers_never_panic_and_round_trip(s in prop_oneof![word(), any::<String>()]) {
        if let Some(units) = parse_task_cpu(&s) {
            prop_assert_eq!(parse_task_cpu(&units.to_string()), Some(units));
        }
        if let Some(mib) = parse_task_memory(&s) {
            prop_assert_eq!(parse_task_memory(&mib.to_string()), Some(mib));
        }
    }

    #[test]
    fn fargate_table_never_panics(cpu in any::<u32>(), memory in any::<u32>()) {
        let _ = fargate_combination_valid(cpu, memory);
    }
}

/// Guards the fuzzers' reach: if the generators drift so that nothing
/// deserializes or nothing validates, the properties above become vacuous.
#[test]
fn generators_reach_validation() {
    let mut runner = TestRunner::deterministic();
    let mut sample = |strategy: BoxedStrategy<Value>| {
        let (mut parsed, mut accepted) = (0, 0);
        for _ in 0..400 {
            let tree = strategy.new_tree(&mut runner).expect("generate");
            let (p, a) = exercise(tree.current());
            parsed += usize::from(p);
            accepted += usize::from(a);
        }
        (parsed, accepted)
    };
    let (parsed_m, accepted_m) = sample(mutated_seed());
    assert!(
        parsed_m >= 100 && accepted_m >= 15,
        "mutated seed: {parsed_m} parsed, {accepted_m} accepted"
    );
    let (parsed, accepted) = sample(shaped_request());
    assert!(parsed >= 20, "shaped requests: {parsed} parsed");
    eprintln!(
        "mutated seed: {parsed_m} parsed, {accepted_m} accepted; shaped: {parsed} parsed, {accepted} accepted"
    );
}
