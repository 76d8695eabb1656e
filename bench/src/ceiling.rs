//! The cost floor: validator-webhook's own server (its accept loop, TLS configuration,
//! HTTP/1.1 + HTTP/2 settings, timeouts and drain) with a handler that reads each request body
//! in full, under the webhook's own body limits, and answers one fixed, pre-serialised
//! AdmissionReview without parsing anything. What validator-webhook costs above this is the
//! cost of reviewing.
//!
//! Through an API server the fixed answer must carry the request's uid, or the API server
//! refuses it; with `echo_uid` the ceiling copies the uid into the answer, found by a byte
//! search for the first `"uid"` key (the API server writes `request.uid` before any other),
//! still without parsing the review.

use std::{path::Path, sync::Arc};

use anyhow::Result;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use validator_webhook::webhook::{
    handler::{BODY_TIMEOUT, MAX_BODY_BYTES},
    metrics::Metrics,
    server::{Handler, Server, Timeouts},
    tls::{self, CertStore, Loaded},
};

/// The uid of every answer: the ceiling does not read the review to echo the real one.
pub const UID: &str = "00000000-0000-0000-0000-000000000000";

/// The answer to everything, allowed.
pub const ANSWER: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"00000000-0000-0000-0000-000000000000","allowed":true}}"#;

/// Serves `listener` with the certificate in `cert` and `key` until the process is stopped;
/// with `echo_uid`, each answer carries the uid of its request (see the module's doc).
pub async fn serve(listener: TcpListener, cert: &Path, key: &Path, echo_uid: bool) -> Result<()> {
    let metrics = Arc::new(Metrics::default());
    let certificates = CertStore::fixed(Loaded::from_files(cert, key)?, metrics.clone());
    let tls = tls::server_config(Arc::new(certificates))?;
    let server = Server::new(
        listener,
        tls,
        Arc::new(FixedAnswer { echo_uid }),
        Timeouts::default(),
    )
    .with_handshake_failures(metrics.tls_handshake_failures.clone());
    server.run(std::future::pending()).await;
    Ok(())
}

/// Reads the whole review, as any webhook must, and answers [`ANSWER`], or with `echo_uid`
/// [`answer_with_uid`].
struct FixedAnswer {
    echo_uid: bool,
}

impl Handler for FixedAnswer {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let body = Limited::new(request.into_body(), MAX_BODY_BYTES).collect();
        let body = tokio::time::timeout(BODY_TIMEOUT, body).await;
        let answer = match body {
            Ok(Ok(body)) if self.echo_uid => answer_with_uid(&body.to_bytes()),
            _ => Bytes::from_static(ANSWER.as_bytes()),
        };
        let mut response = Response::new(Full::new(answer));
        let json = HeaderValue::from_static("application/json");
        response.headers_mut().insert(header::CONTENT_TYPE, json);
        response
    }
}

/// [`ANSWER`] with the uid of `review`'s request in place of the fixed one; [`ANSWER`] itself
/// when `review` has no `"uid"` string.
pub fn answer_with_uid(review: &[u8]) -> Bytes {
    match first_uid(review) {
        Some(uid) => Bytes::from(ANSWER.replacen(UID, uid, 1)),
        None => Bytes::from_static(ANSWER.as_bytes()),
    }
}

/// The value of the first `"uid"` key of a JSON text, by a byte search: the key, optional
/// blanks, a colon, optional blanks, then a string without escapes.
fn first_uid(json: &[u8]) -> Option<&str> {
    const KEY: &[u8] = b"\"uid\"";
    let at = json.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = json[at..].trim_ascii_start().strip_prefix(b":")?;
    let rest = rest.trim_ascii_start().strip_prefix(b"\"")?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    if rest[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_with_uid_echoes_the_request_uid_of_a_review() {
        let review = std::fs::read("payloads/deployment-allowed.json").unwrap();
        let answer = answer_with_uid(&review);
        let uid = "7b1e0c52-3f4a-4d6b-9e8f-0a1b2c3d4e03";
        assert!(testkit::reply::check_answer(uid, true, 200, &answer).is_ok());
    }

    #[test]
    fn the_answer_with_uid_reads_a_compact_review() {
        let review =
            br#"{"kind":"AdmissionReview","request":{"uid":"abc-1","userInfo":{"uid":"u"}}}"#;
        let answer = answer_with_uid(review);
        assert!(testkit::reply::check_answer("abc-1", true, 200, &answer).is_ok());
    }

    #[test]
    fn a_review_without_a_plain_uid_string_gets_the_fixed_answer() {
        for review in [
            &br#"{"request":{}}"#[..],
            br#"{"uid":"a\"b"}"#,
            br#"{"uid": 7}"#,
        ] {
            assert_eq!(answer_with_uid(review), ANSWER.as_bytes());
        }
    }

    #[test]
    fn the_fixed_answer_is_an_allowing_review_with_the_fixed_uid() {
        assert!(testkit::reply::check_answer(UID, true, 200, ANSWER.as_bytes()).is_ok());
    }
}
