//! A small TLS client for the checks around the load, never for the load itself: has a server
//! come up, which protocol does it pick, and is its answer to a review correct. It verifies the
//! server's certificate against the benchmark's CA, so a server started with the wrong files
//! fails here rather than under `oha --insecure`.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use serde_json::Value;
use tokio::{net::TcpStream, runtime::Runtime};
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::plan::Protocol;

/// The name every server's certificate carries (the Service's, as in a cluster).
pub const SERVER_NAME: &str = "validator-webhook.validator-webhook.svc";

/// Bounds a handshake or an answer (the Python servers take a while on a 1 MiB review).
const TIMEOUT: Duration = Duration::from_secs(20);

/// Talks to one server at `addr`.
pub struct Client {
    addr: SocketAddr,
    roots: Arc<RootCertStore>,
    runtime: Runtime,
}

impl Client {
    pub fn new(addr: SocketAddr, ca_pem: &str) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            addr,
            roots: Arc::new(roots),
            runtime,
        })
    }

    /// Completes a TLS handshake offering HTTP/2 and HTTP/1.1; returns the protocol the
    /// server picked, if any.
    pub fn handshake(&self) -> Result<Option<String>> {
        self.within(async {
            let stream = self.connect(&[b"h2", b"http/1.1"]).await?;
            let alpn = stream.get_ref().1.alpn_protocol();
            Ok(alpn.map(|id| String::from_utf8_lossy(id).into_owned()))
        })
    }

    /// POSTs `body` as JSON to `/validate` over `protocol`, on a new connection; returns the
    /// status and the body.
    pub fn post(&self, protocol: Protocol, body: &[u8]) -> Result<(u16, Bytes)> {
        // HTTP/1.1 names the path and a Host; HTTP/2 the whole URI.
        let request = match protocol {
            Protocol::Http1 => {
                http::Request::post("/validate").header("host", self.addr.to_string())
            }
            Protocol::Http2 => http::Request::post(format!("https://{}/validate", self.addr)),
        };
        let request = (request.header(http::header::CONTENT_TYPE, "application/json"))
            .body(Full::new(Bytes::copy_from_slice(body)))?;
        self.within(async {
            let stream = self.connect(&[protocol.alpn()]).await?;
            // A server without ALPN speaks HTTP/1.1; HTTP/2 must be agreed.
            let agreed = stream.get_ref().1.alpn_protocol() == Some(protocol.alpn());
            ensure!(
                agreed || protocol == Protocol::Http1,
                "the server did not agree to h2 (ALPN)"
            );
            let io = TokioIo::new(stream);
            let response = match protocol {
                Protocol::Http1 => {
                    let (mut sender, connection) = http1::handshake(io).await?;
                    tokio::spawn(connection);
                    sender.send_request(request).await?
                }
                Protocol::Http2 => {
                    let (mut sender, connection) =
                        http2::handshake(TokioExecutor::new(), io).await?;
                    tokio::spawn(connection);
                    sender.send_request(request).await?
                }
            };
            let status = response.status().as_u16();
            Ok((status, response.into_body().collect().await?.to_bytes()))
        })
    }

    fn within<T>(&self, exchange: impl Future<Output = Result<T>>) -> Result<T> {
        self.runtime.block_on(async {
            (tokio::time::timeout(TIMEOUT, exchange).await)
                .with_context(|| format!("no answer within {TIMEOUT:?}"))?
        })
    }

    async fn connect(&self, alpn: &[&[u8]]) -> Result<TlsStream<TcpStream>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|id| id.to_vec()).collect();
        let tcp = TcpStream::connect(self.addr)
            .await
            .context("cannot connect")?;
        let connector = TlsConnector::from(Arc::new(config));
        let handshake = connector.connect(ServerName::try_from(SERVER_NAME)?, tcp);
        handshake.await.context("TLS handshake failed")
    }
}

/// Checks an answer: 200, an admission.k8s.io/v1 AdmissionReview whose response echoes `uid`
/// with the expected verdict, and a denial that says why. A fast wrong answer measures nothing.
pub fn check_answer(uid: &str, allowed: bool, status: u16, body: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    ensure!(status == 200, "HTTP {status}: {text}");
    let review: Value = serde_json::from_slice(body).context("the body is not JSON")?;
    ensure!(
        review["apiVersion"] == "admission.k8s.io/v1" && review["kind"] == "AdmissionReview",
        "not an admission.k8s.io/v1 AdmissionReview: {text}"
    );
    let response = &review["response"];
    ensure!(
        response["uid"] == uid,
        "uid {} instead of {uid:?}",
        response["uid"]
    );
    let message = response["status"]["message"].as_str().unwrap_or_default();
    if response["allowed"] != allowed {
        bail!(
            "allowed is {} instead of {allowed} ({message})",
            response["allowed"]
        );
    }
    ensure!(
        allowed || !message.is_empty(),
        "a denial without status.message"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DENIAL: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",
        "response":{"uid":"u-1","allowed":false,
        "status":{"code":403,"reason":"Forbidden","message":"Invalid image name: spec.containers[0].image"}}}"#;

    #[test]
    fn accepts_the_expected_verdict_with_the_uid() {
        assert!(check_answer("u-1", false, 200, DENIAL.as_bytes()).is_ok());
        let allowed = DENIAL.replace("false", "true");
        assert!(check_answer("u-1", true, 200, allowed.as_bytes()).is_ok());
    }

    #[test]
    fn refuses_the_other_verdict_and_says_why_it_was_given() {
        let error = check_answer("u-1", true, 200, DENIAL.as_bytes()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "allowed is false instead of true (Invalid image name: spec.containers[0].image)"
        );
    }

    #[test]
    fn refuses_another_uid_version_or_status_and_a_bare_denial() {
        let wrong = |body: &str| check_answer("u-1", false, 200, body.as_bytes()).is_err();
        assert!(wrong(&DENIAL.replace("u-1", "u-2")));
        assert!(wrong(&DENIAL.replace("k8s.io/v1", "k8s.io/v1beta1")));
        assert!(wrong(
            &DENIAL.replace("Invalid image name: spec.containers[0].image", "")
        ));
        let error = check_answer("u-1", false, 415, b"unsupported").unwrap_err();
        assert_eq!(error.to_string(), "HTTP 415: unsupported");
    }
}
