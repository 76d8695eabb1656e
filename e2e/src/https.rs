//! A minimal HTTPS client for talking to the webhook directly, the way the API server does:
//! TLS verified against the webhook's CA for the Service's DNS name, HTTP/1.1.

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio_rustls::TlsConnector;

/// The name the API server verifies the webhook's certificate for.
pub const SERVICE_NAME: &str = "validator-webhook-service.validator-webhook.svc";

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends one request to `addr`, trusting only `ca_pem` for [`SERVICE_NAME`].
pub async fn request(
    addr: SocketAddr,
    ca_pem: &[u8],
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<Response> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.context("the CA file is not PEM")?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(SERVICE_NAME)?, tcp)
        .await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", SERVICE_NAME)
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes().to_vec();
    Ok(Response { status, body })
}

/// Posts an AdmissionReview and returns the reply's `response` object.
pub async fn review(addr: SocketAddr, ca_pem: &[u8], review: Vec<u8>) -> Result<serde_json::Value> {
    let response = request(addr, ca_pem, "POST", "/validate", review).await?;
    anyhow::ensure!(
        response.status == 200,
        "status {}: {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    );
    let reply: serde_json::Value = serde_json::from_slice(&response.body)?;
    anyhow::ensure!(
        reply["apiVersion"] == "admission.k8s.io/v1" && reply["kind"] == "AdmissionReview",
        "{reply}"
    );
    Ok(reply["response"].clone())
}

/// The example review of a bad Deployment that `examples/` ships, and the uid it carries.
pub fn bad_deployment_review() -> Result<(Vec<u8>, &'static str)> {
    let path = crate::paths::repository().join("examples/review-bad-deployment.json");
    let review = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((review, "705ab4f5-6393-11e8-b7cc-42010a800002"))
}

/// Checks that `response` is the policy's denial: 403 and a message naming an invalid image.
pub fn assert_policy_denial(response: &serde_json::Value) {
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(response["status"]["code"], 403, "{response}");
    let message = response["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Invalid image name: "),
        "not the policy's denial: {response}"
    );
}
