//! The client against a raw TCP responder: what goes on the wire, and how
//! answers (success, ECS errors, junk, silence) come back.

use std::net::SocketAddr;
use std::time::Duration;

use berth_client::{Client, ClientError, Credentials};
use berth_types::{ListClustersRequest, Operation};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One request as the responder read it.
#[derive(Debug)]
struct Seen {
    head: String,
    body: String,
}

impl Seen {
    fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// A canned answer: status line, extra header lines, body.
struct Answer {
    status: &'static str,
    headers: &'static str,
    body: &'static str,
}

const OK_EMPTY: Answer = Answer {
    status: "200 OK",
    headers: "",
    body: "{}",
};

async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut seen = Seen {
        head,
        body: String::new(),
    };
    let length: usize = seen
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap());
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    seen.body = String::from_utf8(body).unwrap();
    Some(seen)
}

/// Accepts one connection and answers `answers` in order on it, keeping it
/// open in between, so a second call only succeeds if the client reuses
/// its pooled connection.
async fn responder(answers: Vec<Answer>) -> (SocketAddr, JoinHandle<Vec<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        for answer in answers {
            let Some(request) = read_request(&mut stream).await else {
                break;
            };
            seen.push(request);
            let response = format!(
                "HTTP/1.1 {}\r\ncontent-type: application/x-amz-json-1.1\r\n{}content-length: {}\r\n\r\n{}",
                answer.status,
                answer.headers,
                answer.body.len(),
                answer.body
            );
            stream.write_all(response.as_bytes()).await.unwrap();
        }
        seen
    });
    (addr, task)
}

fn client(addr: SocketAddr) -> Client {
    Client::new(
        &format!("http://{addr}"),
        Credentials::new("AKIDTEST", "secret", None),
        "us-west-2",
    )
    .unwrap()
    .with_timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn request_is_a_signed_json_1_1_post() {
    let (addr, server) = responder(vec![Answer {
        status: "200 OK",
        headers: "",
        body: r#"{"clusterArns":["arn:aws:ecs:us-west-2:000000000000:cluster/a"]}"#,
    }])
    .await;
    let request = ListClustersRequest {
        max_results: Some(5),
        next_token: None,
    };
    let response = client(addr).send(&request).await.unwrap();
    assert_eq!(
        response.cluster_arns.unwrap(),
        ["arn:aws:ecs:us-west-2:000000000000:cluster/a"]
    );

    let seen = server.await.unwrap();
    let seen = &seen[0];
    assert_eq!(seen.request_line(), "POST / HTTP/1.1");
    assert_eq!(
        seen.header("x-amz-target"),
        Some("AmazonEC2ContainerServiceV20141113.ListClusters")
    );
    assert_eq!(
        seen.header("content-type"),
        Some("application/x-amz-json-1.1")
    );
    assert_eq!(seen.header("host"), Some(addr.to_string().as_str()));
    let auth = seen.header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDTEST/"),
        "{auth}"
    );
    assert!(
        auth.contains("/us-west-2/ecs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="),
        "{auth}"
    );
    assert_eq!(seen.body, r#"{"maxResults":5}"#);
    assert_eq!(verify(seen, "secret"), Some(true));
    assert_eq!(verify(seen, "wrong"), Some(false));
}

/// Recomputes the signature from what arrived, the way the server does
/// (rust-stack.md §1.2), and says whether it matches.
fn verify(seen: &Seen, secret: &str) -> Option<bool> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use aws_sigv4::sign::v4;

    let auth = seen.header("authorization")?;
    let (_, rest) = auth.split_once("Credential=")?;
    let (credential, rest) = rest.split_once(", SignedHeaders=")?;
    let (signed_headers, signature) = rest.split_once(", Signature=")?;
    let mut scope = credential.split('/');
    let (key, _date, region, service) =
        (scope.next()?, scope.next()?, scope.next()?, scope.next()?);

    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let date = time::PrimitiveDateTime::parse(seen.header("x-amz-date")?, format).ok()?;
    let headers = signed_headers
        .split(';')
        .filter(|name| *name != "x-amz-date")
        .map(|name| Some((name, seen.header(name)?)))
        .collect::<Option<Vec<_>>>()?;
    let identity = aws_credential_types::Credentials::new(key, secret, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.excluded_headers = None;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(date.assume_utc().into())
        .settings(settings)
        .build()
        .ok()?
        .into();
    let path = seen.request_line().split(' ').nth(1)?;
    let request = SignableRequest::new(
        "POST",
        path,
        headers.into_iter(),
        SignableBody::Bytes(seen.body.as_bytes()),
    )
    .ok()?;
    Some(sign(request, &params).ok()?.signature() == signature)
}

#[tokio::test]
async fn error_body_becomes_an_api_error() {
    let (addr, server) = responder(vec![Answer {
        status: "400 Bad Request",
        headers: "",
        body: r#"{"__type":"com.amazonaws.ecs#ClusterNotFoundException","message":"Cluster not found."}"#,
    }])
    .await;
    let err = client(addr)
        .call_op::<_, serde_json::Value>(
            Operation::DescribeClusters,
            &serde_json::json!({"clusters": ["nosuch"]}),
        )
        .await
        .unwrap_err();
    match &err {
        ClientError::Api {
            code,
            message,
            status,
        } => {
            assert_eq!(code, "ClusterNotFoundException");
            assert_eq!(message, "Cluster not found.");
            assert_eq!(*status, 400);
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert_eq!(err.code(), Some("ClusterNotFoundException"));
    assert_eq!(
        err.to_string(),
        "ClusterNotFoundException: Cluster not found."
    );
    let seen = server.await.unwrap();
    assert_eq!(
        seen[0].header("x-amz-target"),
        Some("AmazonEC2ContainerServiceV20141113.DescribeClusters")
    );
    assert_eq!(seen[0].body, r#"{"clusters":["nosuch"]}"#);
}

#[tokio::test]
async fn error_type_header_wins_and_junk_is_reported_raw() {
    let (addr, _server) = responder(vec![
        Answer {
            status: "500 Internal Server Error",
            headers: "x-amzn-errortype: ServerException:http://internal/\r\n",
            body: r#"{"message":"boom"}"#,
        },
        Answer {
            status: "502 Bad Gateway",
            headers: "",
            body: "<html>bad gateway</html>",
        },
    ])
    .await;
    let client = client(addr);
    let err = client
        .call::<_, serde_json::Value>("ListClusters", &serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { code, status: 500, .. } if code == "ServerException"),
        "{err:?}"
    );
    let err = client
        .call::<_, serde_json::Value>("ListClusters", &serde_json::json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Http { status: 502, body, .. } if body.contains("bad gateway")),
        "{err:?}"
    );
}

#[tokio::test]
async fn connection_is_reused_and_bad_json_is_a_decode_error() {
    let (addr, server) = responder(vec![
        OK_EMPTY,
        Answer {
            status: "200 OK",
            headers: "",
            body: r#"{"clusterArns": 7}"#,
        },
    ])
    .await;
    let client = client(addr);
    let empty = client.send(&ListClustersRequest::default()).await.unwrap();
    assert!(empty.cluster_arns.is_none());
    let err = client
        .send(&ListClustersRequest::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Decode { status: 200, .. }),
        "{err:?}"
    );
    assert_eq!(server.await.unwrap().len(), 2);
}

#[tokio::test]
async fn unreachable_and_silent_servers_fail_cleanly() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let err = client(closed)
        .send(&ListClustersRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Transport { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("cannot reach http://{closed}"));

    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let err = client(addr)
        .with_timeout(Duration::from_millis(200))
        .send(&ListClustersRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
}
