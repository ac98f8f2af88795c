//! CloudWatch Logs on the server's endpoint: `PutLogEvents` and
//! `GetLogEvents` through the signed client, the `__type` error envelope,
//! and events that survive a server restart (they live in `logs.db`).

use berth_client::{Client, ClientError, Credentials};
use serde_json::{Value, json};

async fn start(dir: &std::path::Path) -> berth_server::Running {
    berth_server::spawn(berth_server::Config::local(dir))
        .await
        .expect("server starts")
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_and_get_over_http_and_across_restarts() {
    let dir = tempfile::tempdir().expect("dir");
    let server = start(dir.path()).await;
    let endpoint = server.endpoint();
    let client = Client::new(&endpoint, Credentials::new("a", "b", None), "us-east-1").unwrap();
    let now = now_ms();
    let put: Value = client
        .call_logs(
            "PutLogEvents",
            &json!({"logGroupName": "/ecs/web", "logStreamName": "ecs/app/abc",
                    "logEvents": [{"timestamp": now, "message": "one"},
                                  {"timestamp": now + 1, "message": "two"}]}),
        )
        .await
        .expect("put");
    assert!(put.get("rejectedLogEventsInfo").is_none(), "{put}");

    let err = client
        .call_logs::<_, Value>(
            "GetLogEvents",
            &json!({"logGroupName": "/ecs/none", "logStreamName": "x"}),
        )
        .await
        .unwrap_err();
    match err {
        ClientError::Api { code, status, .. } => {
            assert_eq!(code, "ResourceNotFoundException");
            assert_eq!(status, 400);
        }
        other => panic!("unexpected {other}"),
    }
    let err = client
        .call_logs::<_, Value>("NoSuchThing", &json!({}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UnknownOperation"), "{err}");

    server.stop().await.unwrap();
    let server = start(dir.path()).await;
    let endpoint = server.endpoint();
    let client = Client::new(&endpoint, Credentials::new("a", "b", None), "us-east-1").unwrap();
    let got: Value = client
        .call_logs(
            "GetLogEvents",
            &json!({"logGroupName": "/ecs/web", "logStreamName": "ecs/app/abc", "startFromHead": true}),
        )
        .await
        .expect("get");
    let messages: Vec<&str> = got["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["one", "two"]);
    assert_eq!(got["events"][0]["timestamp"], now);
    assert!(dir.path().join("logs.db").exists());
    server.stop().await.unwrap();
}
