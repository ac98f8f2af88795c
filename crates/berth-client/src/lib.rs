//! A small SigV4-signed AWS JSON 1.1 client for the ECS API that Berth
//! serves, used by the `berth` CLI and the agent.
//!
//! ```no_run
//! # async fn demo() -> Result<(), berth_client::ClientError> {
//! use berth_client::Client;
//! use berth_types::ListClustersRequest;
//!
//! let client = Client::from_env("http://127.0.0.1:4610")?;
//! let clusters = client.send(&ListClustersRequest::default()).await?;
//! println!("{:?}", clusters.cluster_arns);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_smithy_runtime_api::client::identity::Identity;
use berth_types::Operation;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Serialize;
use serde::de::DeserializeOwned;

mod error;
mod operations;
mod signing;

pub use error::ClientError;
pub use operations::EcsRequest;

/// The `X-Amz-Target` prefix of every ECS operation.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";
/// The `X-Amz-Target` prefix of CloudWatch Logs operations, which Berth
/// serves on the same endpoint (`PutLogEvents`, `GetLogEvents`, …).
pub const LOGS_TARGET_PREFIX: &str = "Logs_20140328";
/// The content type of AWS JSON 1.1 requests.
pub const CONTENT_TYPE_JSON_1_1: &str = "application/x-amz-json-1.1";

const ERROR_TYPE_HEADER: &str = "x-amzn-errortype";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
// ECS responses are small; the cap only guards against a runaway peer.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
// Used when the environment has no credentials: a local Berth accepts any.
const FALLBACK_KEY: &str = "berth";
const FALLBACK_REGION: &str = "us-east-1";

/// AWS credentials to sign with.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
        }
    }

    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`,
    /// or `berth`/`berth` when the key pair is not set.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name| var(name).filter(|value: &String| !value.is_empty());
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(key), Some(secret)) => Self::new(key, secret, var("AWS_SESSION_TOKEN")),
            // A session token without its key pair means nothing on its own.
            _ => Self::new(FALLBACK_KEY, FALLBACK_KEY, None),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .finish()
    }
}

/// `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
pub fn region_from_env() -> String {
    region_from_vars(|name| std::env::var(name).ok())
}

fn region_from_vars(var: impl Fn(&str) -> Option<String>) -> String {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .find_map(|name| var(name).filter(|value| !value.is_empty()))
        .unwrap_or_else(|| FALLBACK_REGION.to_owned())
}

/// A client for one endpoint. Cloning is cheap and shares the connection
/// pool.
#[derive(Clone)]
pub struct Client {
    http: HyperClient<HttpConnector, Full<Bytes>>,
    endpoint: String,
    uri: http::Uri,
    host: http::HeaderValue,
    identity: Identity,
    access_key_id: String,
    region: String,
    timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `endpoint` (`http://HOST:PORT`, optionally with a path).
    /// Only plain HTTP is supported.
    pub fn new(
        endpoint: &str,
        credentials: Credentials,
        region: &str,
    ) -> Result<Self, ClientError> {
        let (uri, host) = parse_endpoint(endpoint)?;
        let identity = aws_credential_types::Credentials::new(
            credentials.access_key_id.clone(),
            credentials.secret_access_key,
            credentials.session_token,
            None,
            "berth-client",
        )
        .into();
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build_http();
        Ok(Self {
            http,
            endpoint: endpoint.to_owned(),
            uri,
            host,
            identity,
            access_key_id: credentials.access_key_id,
            region: region.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// A client with credentials and region from the environment
    /// ([`Credentials::from_env`], [`region_from_env`]).
    pub fn from_env(endpoint: &str) -> Result<Self, ClientError> {
        Self::new(endpoint, Credentials::from_env(), &region_from_env())
    }

    /// Bounds each call, from sending the request to the last response byte
    /// (30 s unless changed).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Calls `request`'s operation and decodes its typed response.
    pub async fn send<R: EcsRequest>(&self, request: &R) -> Result<R::Response, ClientError> {
        self.call_op(R::OPERATION, request).await
    }

    /// Calls `operation` with any serializable request and decodes the
    /// response into any type (`serde_json::Value` keeps it raw).
    pub async fn call_op<Req, Resp>(
        &self,
        operation: Operation,
        request: &Req,
    ) -> Result<Resp, ClientError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        self.call(operation.name(), request).await
    }

    /// Calls the operation named `operation` (`"ListClusters"`).
    pub async fn call<Req, Resp>(&self, operation: &str, request: &Req) -> Result<Resp, ClientError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        self.call_target(TARGET_PREFIX, operation, request).await
    }

    /// Calls a CloudWatch Logs operation (`"PutLogEvents"`) on the same
    /// endpoint, signed for the `logs` service.
    pub async fn call_logs<Req, Resp>(
        &self,
        operation: &str,
        request: &Req,
    ) -> Result<Resp, ClientError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        self.call_target(LOGS_TARGET_PREFIX, operation, request)
            .await
    }

    /// Calls `operation` of the JSON 1.1 service whose `X-Amz-Target` prefix
    /// is `target_prefix` (without the dot). The signing name is `logs` for
    /// [`LOGS_TARGET_PREFIX`], `ecs` otherwise.
    pub async fn call_target<Req, Resp>(
        &self,
        target_prefix: &str,
        operation: &str,
        request: &Req,
    ) -> Result<Resp, ClientError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        if operation.is_empty() || !operation.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ClientError::InvalidOperation(operation.to_owned()));
        }
        let body = serde_json::to_vec(request).map_err(|source| ClientError::Encode {
            operation: operation.to_owned(),
            source,
        })?;
        let request = self.signed_request(
            target_prefix,
            operation,
            Bytes::from(body),
            SystemTime::now(),
        )?;
        let (status, error_type, body) = tokio::time::timeout(self.timeout, self.exchange(request))
            .await
            .map_err(|_| ClientError::Timeout {
                endpoint: self.endpoint.clone(),
                timeout: self.timeout,
            })??;

        if !status.is_success() {
            let status = status.as_u16();
            return Err(match error::api_error(error_type.as_deref(), &body) {
                Some((code, message)) => ClientError::Api {
                    code,
                    message,
                    status,
                },
                None => ClientError::Http {
                    endpoint: self.endpoint.clone(),
                    status,
                    body: excerpt(&body),
                },
            });
        }
        // Some operations answer 200 with no body at all.
        let body: &[u8] = if body.is_empty() { b"{}" } else { &body };
        serde_json::from_slice(body).map_err(|source| ClientError::Decode {
            operation: operation.to_owned(),
            status: status.as_u16(),
            source,
        })
    }

    fn signed_request(
        &self,
        target_prefix: &str,
        operation: &str,
        body: Bytes,
        time: SystemTime,
    ) -> Result<http::Request<Full<Bytes>>, ClientError> {
        let target = format!("{target_prefix}.{operation}");
        let signing_name = if target_prefix == LOGS_TARGET_PREFIX {
            "logs"
        } else {
            signing::SIGNING_NAME
        };
        let mut request = http::Request::post(self.uri.clone())
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, CONTENT_TYPE_JSON_1_1)
            .header("x-amz-target", target)
            .body(Full::new(body.clone()))
            .map_err(|source| ClientError::Signing {
                operation: operation.to_owned(),
                source: source.into(),
            })?;
        signing::sign_request(
            &mut request,
            &body,
            &self.identity,
            &self.region,
            signing_name,
            time,
        )
        .map_err(|source| ClientError::Signing {
            operation: operation.to_owned(),
            source,
        })?;
        Ok(request)
    }

    async fn exchange(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<(http::StatusCode, Option<String>, Bytes), ClientError> {
        let transport = |source: Box<dyn std::error::Error + Send + Sync>| ClientError::Transport {
            endpoint: self.endpoint.clone(),
            source,
        };
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| transport(e.into()))?;
        let status = response.status();
        let error_type = response
            .headers()
            .get(ERROR_TYPE_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(transport)?
            .to_bytes();
        Ok((status, error_type, body))
    }
}

fn parse_endpoint(endpoint: &str) -> Result<(http::Uri, http::HeaderValue), ClientError> {
    let invalid = |reason: &str| ClientError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|_| invalid("expected http://HOST:PORT"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(invalid("https is not supported yet; use http://")),
        _ => return Err(invalid("expected http://HOST:PORT")),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| invalid("expected http://HOST:PORT"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("credentials in the URL are not supported"));
    }
    if uri.query().is_some() {
        return Err(invalid("a query string is not allowed"));
    }
    let host = http::HeaderValue::from_str(authority.as_str())
        .map_err(|_| invalid("the host is not a valid header value"))?;
    let path = match uri.path() {
        "" => "/",
        path => path,
    };
    let uri = http::Uri::builder()
        .scheme("http")
        .authority(authority.clone())
        .path_and_query(path)
        .build()
        .map_err(|_| invalid("expected http://HOST:PORT"))?;
    Ok((uri, host))
}

/// The start of an unexpected body, enough to recognise an HTML error page.
fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn credentials_come_from_the_environment_or_fall_back() {
        let creds = Credentials::from_vars(vars(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "SECRET"),
            ("AWS_SESSION_TOKEN", "TOKEN"),
        ]));
        assert_eq!(
            creds,
            Credentials::new("AKID", "SECRET", Some("TOKEN".into()))
        );
        let creds = Credentials::from_vars(vars(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SESSION_TOKEN", "TOKEN"),
        ]));
        assert_eq!(creds, Credentials::new("berth", "berth", None));
    }

    #[test]
    fn credentials_debug_hides_secrets() {
        let creds = Credentials::new("AKID", "SECRET", Some("TOKEN".into()));
        let debug = format!("{creds:?}");
        assert!(debug.contains("AKID"));
        assert!(!debug.contains("SECRET") && !debug.contains("TOKEN"));
    }

    #[test]
    fn region_prefers_aws_region() {
        let both = [
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "ap-south-1"),
        ];
        assert_eq!(region_from_vars(vars(&both)), "eu-west-1");
        assert_eq!(
            region_from_vars(vars(&[("AWS_DEFAULT_REGION", "ap-south-1")])),
            "ap-south-1"
        );
        assert_eq!(region_from_vars(vars(&[("AWS_REGION", "")])), "us-east-1");
    }

    #[test]
    fn endpoints_are_validated() {
        let (uri, host) = parse_endpoint("http://127.0.0.1:4610").unwrap();
        assert_eq!(uri.to_string(), "http://127.0.0.1:4610/");
        assert_eq!(host, "127.0.0.1:4610");
        let (uri, _) = parse_endpoint("http://localhost:4610/berth").unwrap();
        assert_eq!(uri.path(), "/berth");

        let err = parse_endpoint("https://ecs.us-east-1.amazonaws.com").unwrap_err();
        assert!(err.to_string().contains("https is not supported"), "{err}");
        for bad in [
            "127.0.0.1:4610",
            "ftp://host",
            "http://u:p@host",
            "not a url",
        ] {
            assert!(
                matches!(
                    parse_endpoint(bad),
                    Err(ClientError::InvalidEndpoint { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn operation_names_are_checked_before_sending() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = Client::new(
            "http://127.0.0.1:9",
            Credentials::new("a", "b", None),
            "us-east-1",
        )
        .unwrap();
        let err = rt
            .block_on(client.call::<_, serde_json::Value>("List Clusters\n", &()))
            .unwrap_err();
        assert!(matches!(err, ClientError::InvalidOperation(_)), "{err}");
    }

    #[test]
    fn long_bodies_are_cut() {
        let body = "x".repeat(500);
        let cut = excerpt(body.as_bytes());
        assert_eq!(cut.chars().count(), 201);
        assert_eq!(excerpt(b"  short \n"), "short");
    }
}
