//! Arbitrary input against every implemented operation: the server never
//! panics, never answers a client's mistake with a server error, and a
//! rejected request leaves the store exactly as it was.

use std::sync::Arc;
use std::time::Duration;

use berth_server::api::{self, Api, Ctx};
use berth_store::{MemoryStore, Store};
use berth_types::{ErrorCode, Operation};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Member names that appear in the implemented operations, so generated
/// bodies reach past the decoder into the handlers.
const MEMBERS: &[&str] = &[
    "cluster",
    "clusters",
    "clusterName",
    "include",
    "tags",
    "key",
    "value",
    "settings",
    "name",
    "family",
    "containerDefinitions",
    "image",
    "cpu",
    "memory",
    "memoryReservation",
    "networkMode",
    "requiresCompatibilities",
    "portMappings",
    "containerPort",
    "hostPort",
    "protocol",
    "essential",
    "dependsOn",
    "containerName",
    "condition",
    "healthCheck",
    "command",
    "interval",
    "timeout",
    "retries",
    "startPeriod",
    "volumes",
    "mountPoints",
    "sourceVolume",
    "taskDefinition",
    "taskDefinitions",
    "status",
    "sort",
    "familyPrefix",
    "maxResults",
    "nextToken",
    "containerInstance",
    "containerInstances",
    "totalResources",
    "type",
    "integerValue",
    "stringSetValue",
    "attributes",
    "targetId",
    "targetType",
    "attributeName",
    "resourceArn",
    "tagKeys",
    "principalArn",
    "effectiveSettings",
    "capacityProviders",
    "defaultCapacityProviderStrategy",
    "capacityProvider",
    "base",
    "weight",
    "autoScalingGroupProvider",
    "autoScalingGroupArn",
    "managedScaling",
    "force",
    "instanceIdentityDocument",
    "placementConstraints",
    "expression",
    "ephemeralStorage",
    "sizeInGiB",
    "logConfiguration",
    "logDriver",
];

const STRINGS: &[&str] = &[
    "",
    "default",
    "c1",
    "web",
    "web:1",
    "FARGATE",
    "awsvpc",
    "bridge",
    "none",
    "host",
    "256",
    "512",
    "1 vCPU",
    "2GB",
    "ACTIVE",
    "INACTIVE",
    "DRAINING",
    "TAGS",
    "STATISTICS",
    "CMD",
    "CMD-SHELL",
    "START",
    "COMPLETE",
    "HEALTHY",
    "INTEGER",
    "STRINGSET",
    "CPU",
    "MEMORY",
    "container-instance",
    "containerInsights",
    "enabled",
    "arn:aws:ecs:us-east-1:000000000000:cluster/c1",
    "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1",
    "aws:reserved",
    "\u{0}",
    "ünïcödé",
    "-1",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-5i64..70000).prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(STRINGS).prop_map(|s| json!(s)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(MEMBERS), inner), 0..6).prop_map(|pairs| {
                Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec((prop::sample::select(MEMBERS), json_value()), 0..6)
            .prop_map(|pairs| {
                let object: serde_json::Map<String, Value> =
                    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                serde_json::to_vec(&object).unwrap_or_default()
            }),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// A valid request for some operations, to be mutated.
fn template(op: Operation) -> Value {
    match op {
        Operation::RegisterTaskDefinition => json!({
            "family": "fz", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
            "cpu": "256", "memory": "512",
            "containerDefinitions": [{"name": "a", "image": "busybox", "essential": true,
                "portMappings": [{"containerPort": 80}],
                "healthCheck": {"command": ["CMD", "true"], "interval": 5},
                "dependsOn": [{"containerName": "b", "condition": "START"}]},
                {"name": "b", "image": "busybox", "essential": false}]
        }),
        Operation::RegisterContainerInstance => json!({
            "cluster": "c1",
            "totalResources": [{"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]}],
            "attributes": [{"name": "stack", "value": "prod"}]
        }),
        Operation::PutAttributes | Operation::DeleteAttributes => json!({
            "cluster": "c1", "attributes": [{"name": "x", "value": "y", "targetId": "nope"}]
        }),
        Operation::PutClusterCapacityProviders => json!({
            "cluster": "c1", "capacityProviders": ["FARGATE"],
            "defaultCapacityProviderStrategy": [{"capacityProvider": "FARGATE", "base": 1, "weight": 1}]
        }),
        Operation::CreateCapacityProvider => json!({
            "name": "cp1", "autoScalingGroupProvider": {"autoScalingGroupArn": "arn:asg",
                "managedScaling": {"status": "ENABLED", "targetCapacity": 90}}
        }),
        _ => json!({"cluster": "c1"}),
    }
}

/// Replaces one member (top level or inside the first container) with `value`.
fn mutate(mut body: Value, member: &str, value: Value, nested: bool) -> Value {
    let target = if nested {
        body.pointer_mut("/containerDefinitions/0")
    } else {
        Some(&mut body)
    };
    if let Some(Value::Object(map)) = target {
        map.insert(member.to_owned(), value);
    }
    body
}

fn implemented() -> Vec<Operation> {
    Operation::ALL
        .iter()
        .copied()
        .filter(|op| api::is_implemented(op.name()))
        .collect()
}

struct World {
    runtime: tokio::runtime::Runtime,
    store: Arc<MemoryStore>,
    api: Arc<Api>,
}

fn world() -> World {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(MemoryStore::new());
    let api = runtime.block_on(async {
        let api = Api::start(store.clone() as Arc<dyn Store>, "000000000000", "us-east-1")
            .await
            .expect("api starts");
        let ctx = Ctx::new(&api, None);
        // Something to find, so handlers get past their lookups.
        for (op, body) in [
            (Operation::CreateCluster, json!({"clusterName": "c1"})),
            (Operation::CreateCluster, json!({})),
            (
                Operation::RegisterTaskDefinition,
                json!({"family": "web", "containerDefinitions": [{"name": "web", "image": "busybox", "memory": 64}]}),
            ),
            (
                Operation::RegisterContainerInstance,
                json!({"cluster": "c1", "totalResources": [{"name": "CPU", "type": "INTEGER", "integerValue": 1024}]}),
            ),
        ] {
            api::dispatch(&api, &ctx, op, body.to_string().as_bytes())
                .await
                .expect("seed request succeeds");
        }
        api
    });
    World {
        runtime,
        store,
        api,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_requests_are_answered_safely(
        (op, body) in prop::sample::select(implemented()).prop_flat_map(|op| {
            let mutated = (prop::sample::select(MEMBERS), json_value(), any::<bool>())
                .prop_map(move |(m, v, nested)| {
                    serde_json::to_vec(&mutate(template(op), m, v, nested)).unwrap_or_default()
                });
            (Just(op), prop_oneof![body(), mutated])
        }),
    ) {
        thread_local! {
            static WORLD: World = world();
        }
        WORLD.with(|w| {
            w.runtime.block_on(async {
                let before = w.store.revision().await.expect("revision");
                let ctx = Ctx::new(&w.api, None);
                let outcome = tokio::time::timeout(
                    Duration::from_secs(5),
                    api::dispatch(&w.api, &ctx, op, &body),
                )
                .await
                .expect("no request hangs");
                if let Err(err) = outcome {
                    assert_ne!(
                        err.code,
                        ErrorCode::ServerException,
                        "{op:?} answered a client mistake with a server error: {}",
                        err.message
                    );
                    assert!(err.code.http_status() < 500);
                    assert!(!err.message.is_empty());
                    let after = w.store.revision().await.expect("revision");
                    assert_eq!(before, after, "{op:?} was rejected ({err}) but wrote to the store");
                }
            });
        });
    }
}
