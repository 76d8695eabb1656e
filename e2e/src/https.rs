//! A minimal HTTPS client for talking to the webhook directly, the way the API server does:
//! TLS verified against the webhook's CA for the Service's DNS name, HTTP/1.1.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use testkit::{https::Target, names::SERVICE_HOST};

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends one request over HTTP/1.1 to `addr`, trusting only `ca_pem` for [`SERVICE_HOST`].
pub async fn request(
    addr: SocketAddr,
    ca_pem: &[u8],
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<Response> {
    let mut client = Target::new(addr, ca_pem, SERVICE_HOST)?.client(&[]).await?;
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", SERVICE_HOST)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
    let response = client.send(request).await?;
    Ok(Response {
        status: response.status().as_u16(),
        body: response.into_body().to_vec(),
    })
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
    testkit::reply::response(&response.body)
}

/// The example review of a bad Deployment that `examples/` ships, and the uid it carries.
pub fn bad_deployment_review() -> Result<(Vec<u8>, &'static str)> {
    let path = crate::paths::repository().join("examples/review-bad-deployment.json");
    let review = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok((review, "705ab4f5-6393-11e8-b7cc-42010a800002"))
}
