//! The cost floor: validator-webhook's own server (its accept loop, TLS configuration,
//! HTTP/1.1 + HTTP/2 settings, timeouts and drain) with a handler that reads each request body
//! in full, under the webhook's own body limits, and answers one fixed, pre-serialised
//! AdmissionReview without parsing anything. What validator-webhook costs above this is the
//! cost of reviewing.

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

/// Serves `listener` with the certificate in `cert` and `key` until the process is stopped.
pub async fn serve(listener: TcpListener, cert: &Path, key: &Path) -> Result<()> {
    let metrics = Arc::new(Metrics::default());
    let certificates = CertStore::fixed(Loaded::from_files(cert, key)?, metrics.clone());
    let tls = tls::server_config(Arc::new(certificates))?;
    let server = Server::new(listener, tls, Arc::new(FixedAnswer), Timeouts::default())
        .with_handshake_failures(metrics.tls_handshake_failures.clone());
    server.run(std::future::pending()).await;
    Ok(())
}

/// Reads the whole review, as any webhook must, and answers [`ANSWER`].
struct FixedAnswer;

impl Handler for FixedAnswer {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let body = Limited::new(request.into_body(), MAX_BODY_BYTES).collect();
        let _ = tokio::time::timeout(BODY_TIMEOUT, body).await;
        let mut response = Response::new(Full::new(Bytes::from_static(ANSWER.as_bytes())));
        let json = HeaderValue::from_static("application/json");
        response.headers_mut().insert(header::CONTENT_TYPE, json);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_answer_is_an_allowing_review_with_the_fixed_uid() {
        assert!(testkit::reply::check_answer(UID, true, 200, ANSWER.as_bytes()).is_ok());
    }
}
