//! What can go wrong on a call, split so callers can tell "the server said no"
//! ([`ClientError::Api`]) from "the server could not be asked".

use std::error::Error as StdError;
use std::time::Duration;

type BoxError = Box<dyn StdError + Send + Sync>;

/// A failed call. Variants that wrap a cause keep it in [`StdError::source`]
/// and leave it out of their own message, so error-chain printers (anyhow's
/// `{:#}`) show each cause once.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },

    #[error("invalid operation name {0:?}")]
    InvalidOperation(String),

    #[error("cannot encode the {operation} request")]
    Encode {
        operation: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("cannot sign the {operation} request")]
    Signing {
        operation: String,
        #[source]
        source: BoxError,
    },

    #[error("cannot reach {endpoint}")]
    Transport {
        endpoint: String,
        #[source]
        source: BoxError,
    },

    #[error("no answer from {endpoint} within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },

    /// The server answered with an ECS error. `code` is the bare error name
    /// (`ClusterNotFoundException`), without any `namespace#` prefix.
    #[error("{code}: {message}")]
    Api {
        code: String,
        message: String,
        status: u16,
    },

    /// A non-2xx answer that carried no ECS error name, e.g. from a proxy.
    #[error("HTTP {status} from {endpoint}: {body}")]
    Http {
        endpoint: String,
        status: u16,
        body: String,
    },

    #[error("cannot decode the {operation} response (HTTP {status})")]
    Decode {
        operation: String,
        status: u16,
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The ECS error name when the server rejected the call.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Reduces an error name to its bare form the way the AWS SDKs do: drop a
/// trailing `:http://…` and a leading `namespace#`.
pub(crate) fn sanitize_error_code(raw: &str) -> &str {
    let raw = raw.split_once(':').map_or(raw, |(code, _)| code);
    raw.rsplit_once('#').map_or(raw, |(_, code)| code).trim()
}

/// Reads the error name and message from an error answer. The header wins
/// over the body, as in the SDKs; the body may spell the fields `__type` or
/// `code`, and `message` or `Message`.
pub(crate) fn api_error(header_code: Option<&str>, body: &[u8]) -> Option<(String, String)> {
    let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let field = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| body.get(name).and_then(serde_json::Value::as_str))
    };
    let code = header_code
        .filter(|code| !code.is_empty())
        .or_else(|| field(&["__type", "code"]))?;
    let code = sanitize_error_code(code);
    if code.is_empty() {
        return None;
    }
    let message = field(&["message", "Message"]).unwrap_or_default();
    Some((code.to_owned(), message.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_lose_namespace_and_url() {
        assert_eq!(
            sanitize_error_code("com.amazonaws.ecs#ClusterNotFoundException"),
            "ClusterNotFoundException"
        );
        assert_eq!(
            sanitize_error_code("ClientException:http://internal.amazon.com/"),
            "ClientException"
        );
        assert_eq!(sanitize_error_code("aws.protocoltests#Err:http://x"), "Err");
        assert_eq!(sanitize_error_code("ServerException"), "ServerException");
    }

    #[test]
    fn header_code_wins_and_body_fields_are_read() {
        let body = br#"{"__type":"ns#FromBody","Message":"nope"}"#;
        assert_eq!(
            api_error(Some("FromHeader"), body),
            Some(("FromHeader".into(), "nope".into()))
        );
        assert_eq!(
            api_error(None, body),
            Some(("FromBody".into(), "nope".into()))
        );
        assert_eq!(
            api_error(None, br#"{"code":"X","message":"m"}"#),
            Some(("X".into(), "m".into()))
        );
        assert_eq!(api_error(None, b"<html>bad gateway</html>"), None);
    }
}
