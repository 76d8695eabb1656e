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
