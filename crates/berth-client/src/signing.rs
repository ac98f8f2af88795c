//! SigV4 signing of one JSON 1.1 request with `aws-sigv4`, the same crate the
//! server verifies with, so both sides build the canonical request alike.

use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// The service name in the credential scope.
pub(crate) const SIGNING_NAME: &str = "ecs";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Adds `authorization`, `x-amz-date` and, with a session token,
/// `x-amz-security-token` to `request`. Every header already on the request is
/// signed, so the caller sets exactly host, content-type and x-amz-target
/// first.
pub(crate) fn sign_request<B>(
    request: &mut http::Request<B>,
    body: &[u8],
    identity: &Identity,
    region: &str,
    signing_name: &str,
    time: SystemTime,
) -> Result<(), BoxError> {
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| Ok((name.as_str(), value.to_str()?)))
        .collect::<Result<Vec<_>, http::header::ToStrError>>()?;
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let signable = SignableRequest::new(
        request.method().as_str(),
        path,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )?;
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name(signing_name)
        .time(time)
        .settings(SigningSettings::default())
        .build()?
        .into();
    let (instructions, _signature) = sign(signable, &params)?.into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    // 2023-11-14T22:13:20Z
    const TIME: u64 = 1_700_000_000;

    fn request(target: &str, body: &'static str) -> http::Request<&'static str> {
        http::Request::builder()
            .method("POST")
            .uri("http://127.0.0.1:4610/")
            .header("host", "127.0.0.1:4610")
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "x-amz-target",
                format!("AmazonEC2ContainerServiceV20141113.{target}"),
            )
            .body(body)
            .unwrap()
    }

    fn identity(session_token: Option<&str>) -> Identity {
        aws_credential_types::Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token.map(str::to_owned),
            None,
            "test",
        )
        .into()
    }

    fn signed(
        target: &str,
        body: &'static str,
        session_token: Option<&str>,
    ) -> http::Request<&'static str> {
        let mut req = request(target, body);
        sign_request(
            &mut req,
            body.as_bytes(),
            &identity(session_token),
            "eu-west-1",
            SIGNING_NAME,
            UNIX_EPOCH + Duration::from_secs(TIME),
        )
        .unwrap();
        req
    }

    fn header<'a>(req: &'a http::Request<&'static str>, name: &str) -> &'a str {
        req.headers()[name].to_str().unwrap()
    }

    fn signature(req: &http::Request<&'static str>) -> String {
        header(req, "authorization")
            .rsplit_once("Signature=")
            .unwrap()
            .1
            .to_owned()
    }

    #[test]
    fn authorization_has_the_documented_shape() {
        let req = signed("ListClusters", "{}", None);
        assert_eq!(header(&req, "x-amz-date"), "20231114T221320Z");
        let auth = header(&req, "authorization");
        let prefix = "AWS4-HMAC-SHA256 \
            Credential=AKIDEXAMPLE/20231114/eu-west-1/ecs/aws4_request, \
            SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
            Signature=";
        assert!(auth.starts_with(prefix), "{auth}");
        let sig = signature(&req);
        assert_eq!(sig.len(), 64, "{sig}");
        assert!(
            sig.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert!(req.headers().get("x-amz-security-token").is_none());
    }

    #[test]
    fn session_token_is_sent_and_signed() {
        let req = signed("ListClusters", "{}", Some("TOKEN"));
        assert_eq!(header(&req, "x-amz-security-token"), "TOKEN");
        assert!(header(&req, "authorization").contains(
            "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target,"
        ));
    }

    #[test]
    fn signature_covers_target_and_body() {
        let base = signature(&signed("ListClusters", "{}", None));
        assert_eq!(base, signature(&signed("ListClusters", "{}", None)));
        assert_ne!(base, signature(&signed("DescribeClusters", "{}", None)));
        assert_ne!(base, signature(&signed("ListClusters", "{ }", None)));
    }
}
