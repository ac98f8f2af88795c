//! AWS JSON 1.1 on the wire: `POST /` with `X-Amz-Target`, request decoding
//! with field-naming errors, the `__type` error envelope, request ids, the
//! body size limit, and the region taken from the SigV4 credential scope.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_types::{EcsError, ErrorCode, Operation};
use serde::de::DeserializeOwned;

use crate::api::{Api, Ctx};
use crate::logs::LogStore;

pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// Far above ECS's own limits (64 KiB task definitions, 8 KiB overrides) and
/// far below anything that could hurt the server.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub async fn handle(
    State(api): State<Arc<Api>>,
    Extension(logs): Extension<LogStore>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (status, payload, error_code) = match process(&api, &logs, &headers, body).await {
        Ok(bytes) => (StatusCode::OK, bytes, None),
        Err(err) => {
            if err.code == ErrorCode::ServerException {
                tracing::error!(%request_id, message = %err.message, "server error");
            }
            let status = StatusCode::from_u16(err.code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, Bytes::from(err.to_body()), Some(err.code))
        }
    };
    let mut response = (status, payload).into_response();
    let h = response.headers_mut();
    h.insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(code) = error_code {
        h.insert("x-amzn-errortype", HeaderValue::from_static(code.as_str()));
    }
    response
}

async fn process(
    api: &Api,
    logs: &LogStore,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, EcsError> {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // CloudWatch Logs shares the endpoint (container logs, `berth logs`).
    if let Some(operation) = target.strip_prefix(crate::logs::TARGET_PREFIX) {
        let body = read_body(body, crate::logs::MAX_BODY_BYTES).await?;
        return crate::logs::dispatch(logs, operation, &body).await;
    }
    if let Some(operation) = target.strip_prefix(crate::operator::OPERATOR_TARGET_PREFIX) {
        let body = read_body(body, MAX_BODY_BYTES).await?;
        let ctx = Ctx::new(api, region_from_authorization(headers));
        return crate::operator::dispatch(api, &ctx, operation, &body).await;
    }
    let operation = target
        .strip_prefix(TARGET_PREFIX)
        .and_then(Operation::from_name)
        .ok_or_else(|| {
            EcsError::new(
                ErrorCode::UnknownOperationException,
                if target.is_empty() {
                    "Missing X-Amz-Target header.".to_owned()
                } else {
                    format!("Unknown operation {target}.")
                },
            )
        })?;
    let body = read_body(body, MAX_BODY_BYTES).await?;
    let mut ctx = Ctx::new(api, region_from_authorization(headers));
    ctx.host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    crate::api::dispatch(api, &ctx, operation, &body).await
}

/// The whole request body, refused past `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, EcsError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        EcsError::new(
            ErrorCode::RequestEntityTooLargeException,
            format!("Request body must be at most {limit} bytes."),
        )
    })
}

/// The region of the SigV4 credential scope
/// (`Credential=AKID/20250101/eu-west-1/ecs/aws4_request`), if well formed.
pub fn region_from_authorization(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    let region = scope.split('/').nth(2)?;
    let valid = !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    valid.then(|| region.to_owned())
}

/// Decodes a request body into its generated type. Malformed JSON is a
/// `SerializationException`; a wrong type or a missing member is an
/// `InvalidParameterException` naming the member's path.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, EcsError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        EcsError::new(
            ErrorCode::SerializationException,
            format!(
                "Request body is not valid JSON: {}",
                strip_position(&e.to_string())
            ),
        )
    })?;
    if !value.is_object() {
        return Err(EcsError::new(
            ErrorCode::SerializationException,
            "Request body must be a JSON object.",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = strip_position(&e.inner().to_string());
        let message = if path == "." {
            format!("Invalid request: {inner}")
        } else {
            format!("Invalid value for parameter {path}: {inner}")
        };
        EcsError::invalid_parameter(message)
    })
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_types::{CreateClusterRequest, RegisterTaskDefinitionRequest};

    #[test]
    fn region_comes_from_credential_scope() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKID/20250101/eu-west-1/ecs/aws4_request, SignedHeaders=host, Signature=00",
            ),
        );
        assert_eq!(region_from_authorization(&h).as_deref(), Some("eu-west-1"));
        h.insert("authorization", HeaderValue::from_static("garbage"));
        assert_eq!(region_from_authorization(&h), None);
    }

    #[test]
    fn decode_names_the_field() {
        let err = decode::<CreateClusterRequest>(br#"{"clusterName": 5}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidParameterException);
        assert!(err.message.contains("clusterName"), "{}", err.message);

        let err = decode::<RegisterTaskDefinitionRequest>(br#"{"containerDefinitions": []}"#)
            .unwrap_err();
        assert!(err.message.contains("family"), "{}", err.message);

        let err = decode::<RegisterTaskDefinitionRequest>(
            br#"{"family":"f","containerDefinitions":[{"name":"a","cpu":"x"}]}"#,
        )
        .unwrap_err();
        assert!(
            err.message.contains("containerDefinitions[0].cpu"),
            "{}",
            err.message
        );

        let err = decode::<CreateClusterRequest>(b"{not json").unwrap_err();
        assert_eq!(err.code, ErrorCode::SerializationException);
        assert!(decode::<CreateClusterRequest>(b"").is_ok());
        assert_eq!(
            decode::<CreateClusterRequest>(b"[1]").unwrap_err().code,
            ErrorCode::SerializationException
        );
    }
}
