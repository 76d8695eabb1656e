//! The cost floor: validator-webhook's own HTTP and TLS stack (hyper's HTTP/1.1 + HTTP/2 auto
//! builder over tokio-rustls, with the webhook's rustls configuration and certificate store)
//! reading each request body in full and answering one fixed, pre-serialised AdmissionReview
//! without parsing anything. What validator-webhook costs above this is the cost of reviewing.

use std::{path::Path, sync::Arc};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use validator_webhook::webhook::{
    metrics::Metrics,
    server::{Handler, Server, Timeouts},
    tls::{self, CertStore, Loaded},
};

/// The uid of every answer: the ceiling does not read the review to echo the real one.
pub const UID: &str = "00000000-0000-0000-0000-000000000000";

/// The answer to everything, allowed.
pub const ANSWER: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"00000000-0000-0000-0000-000000000000","allowed":true}}"#;

#[derive(Debug, thiserror::Error)]
pub enum CeilingError {
    #[error(transparent)]
    Certificate(#[from] tls::TlsError),
    #[error("cannot configure TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// The webhook's TLS configuration serving the certificate in `cert` and `key`.
pub fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, CeilingError> {
    let certificates =
        CertStore::fixed(Loaded::from_files(cert, key)?, Arc::new(Metrics::default()));
    Ok(tls::server_config(Arc::new(certificates))?)
}

/// Serves `listener` until the process is stopped: the webhook's own server (limits,
/// timeouts, drain), so the only difference is the answer.
pub async fn serve(listener: TcpListener, tls: rustls::ServerConfig) {
    let server = Server::new(listener, tls, Arc::new(FixedAnswer), Timeouts::default());
    server.run(std::future::pending()).await;
}

/// Reads the whole review, as any webhook must, and answers [`ANSWER`] without parsing it.
struct FixedAnswer;

impl Handler for FixedAnswer {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let _ = request.into_body().collect().await;
        let mut response = Response::new(Full::new(Bytes::from_static(ANSWER.as_bytes())));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::{Expected, check};

    #[test]
    fn the_fixed_answer_is_an_allowing_review_with_the_fixed_uid() {
        let expected = Expected {
            uid: UID.to_owned(),
            allowed: true,
        };
        assert_eq!(check(&expected, 200, ANSWER.as_bytes()), Ok(()));
    }
}
