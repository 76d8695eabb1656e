//! The cost floor: validator-webhook's own HTTP and TLS stack (hyper's HTTP/1.1 + HTTP/2 auto
//! builder over tokio-rustls, with the webhook's rustls configuration) reading each request body
//! in full and answering one fixed, pre-serialised AdmissionReview without parsing anything.
//! What validator-webhook costs above this is the cost of reviewing.

use std::{convert::Infallible, path::Path, sync::Arc, time::Duration};

use anyhow::Result;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use validator_webhook::{
    metrics::Metrics,
    server::{self, HANDSHAKE_TIMEOUT, Timeouts},
    tls::{self, CertStore, Loaded},
};

/// The uid of every answer: the ceiling does not read the review to echo the real one.
pub const UID: &str = "00000000-0000-0000-0000-000000000000";

/// The answer to everything, allowed.
pub const ANSWER: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"00000000-0000-0000-0000-000000000000","allowed":true}}"#;

/// Serves `listener` with the certificate in `cert` and `key` until the process is stopped.
pub async fn serve(listener: TcpListener, cert: &Path, key: &Path) -> Result<()> {
    let certificates =
        CertStore::fixed(Loaded::from_files(cert, key)?, Arc::new(Metrics::default()));
    let acceptor = TlsAcceptor::from(Arc::new(tls::server_config(Arc::new(certificates))?));
    // The webhook's own listener settings, so the only difference is the answer.
    let builder = Arc::new(server::http_builder(&Timeouts::default()));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            // Out of file descriptors, most likely: back off rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        server::prepare(&stream, peer);
        let (acceptor, builder) = (acceptor.clone(), builder.clone());
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            else {
                return;
            };
            let _ = builder
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the whole review, as any webhook must, and drop it unread.
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(ANSWER.as_bytes())));
    let json = HeaderValue::from_static("application/json");
    response.headers_mut().insert(header::CONTENT_TYPE, json);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_answer_is_an_allowing_review_with_the_fixed_uid() {
        assert!(crate::probe::check_answer(UID, true, 200, ANSWER.as_bytes()).is_ok());
    }
}
