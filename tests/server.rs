//! The server over real TLS sockets on loopback: both protocols, certificate rotation, bad
//! clients, and a shutdown that lets reviews in flight finish.

mod support;

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use support::{TestServer, fixed_store, localhost_certificate, quick_timeouts, review_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use validator_webhook::webhook::{metrics::Metrics, tls::CertStore};

fn denial_message(body: &[u8]) -> String {
    let reply: Value = serde_json::from_slice(body).unwrap();
    reply["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn reviews_over_http1_and_http2_with_the_same_answer() {
    let certificate = localhost_certificate();
    let server = TestServer::start(fixed_store(&certificate), quick_timeouts()).await;
    let mut answers = Vec::new();
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let mut client = support::client(server.addr, &certificate.cert_pem, alpn).await;
        assert_eq!(client.protocol(), alpn, "ALPN picked the protocol offered");
        let response = client
            .send(review_request("deployment-denied-init-container"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        answers.push(denial_message(response.body()));
    }
    assert!(
        answers[0].starts_with("Invalid image name: spec.template.spec.initContainers[0] \"init\"")
    );
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test]
async fn keeps_a_connection_alive_across_reviews() {
    let certificate = localhost_certificate();
    let server = TestServer::start(fixed_store(&certificate), quick_timeouts()).await;
    let mut client = support::client(server.addr, &certificate.cert_pem, b"http/1.1").await;
    for fixture in ["pod-allowed", "pod-denied", "cronjob-denied"] {
        let response = client.send(review_request(fixture)).await.unwrap();
        assert_eq!(response.status(), 200, "{fixture}");
    }
}

#[tokio::test]
async fn a_plaintext_request_on_the_tls_port_drops_only_that_connection() {
    let certificate = localhost_certificate();
    let server = TestServer::start(fixed_store(&certificate), quick_timeouts()).await;
    let mut healthy = support::client(server.addr, &certificate.cert_pem, b"h2").await;

    let mut plain = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the server closed the plaintext connection");
    assert!(
        !reply.starts_with(b"HTTP/"),
        "no HTTP answer over plaintext"
    );

    let response = healthy.send(review_request("pod-allowed")).await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "the established connection still works"
    );
    let again = support::client(server.addr, &certificate.cert_pem, b"http/1.1").await;
    assert_eq!(
        again.protocol(),
        b"http/1.1",
        "new TLS connections are still accepted"
    );
    assert_eq!(server.webhook.metrics().tls_handshake_failures.get(), 1);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_dropped() {
    let certificate = localhost_certificate();
    let server = TestServer::start(fixed_store(&certificate), quick_timeouts()).await;
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buffer = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buffer)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "closed after the handshake timeout: {closed:?}"
    );
}

#[tokio::test]
async fn a_client_that_stalls_in_its_headers_is_dropped() {
    let certificate = localhost_certificate();
    let server = TestServer::start(fixed_store(&certificate), quick_timeouts()).await;
    let mut stream = support::connect_tls(server.addr, &certificate.cert_pem, b"http/1.1").await;
    stream
        .write_all(b"POST /validate HTTP/1.1\r\nHost: local")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
    assert!(
        read.is_ok(),
        "the server closed the connection after its header timeout"
    );
}

#[tokio::test]
async fn serves_a_rotated_certificate_to_new_connections_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let first = localhost_certificate();
    std::fs::write(&cert, &first.cert_pem).unwrap();
    std::fs::write(&key, &first.key_pem).unwrap();
    let store = Arc::new(
        CertStore::from_files(cert.clone(), key.clone(), Arc::new(Metrics::default())).unwrap(),
    );
    let _watch = store.watch().unwrap();
    let server = TestServer::start(store, quick_timeouts()).await;
    let mut before = support::client(server.addr, &first.cert_pem, b"h2").await;

    // Rotate the way the kubelet updates a mounted Secret: new files, then an atomic swap.
    let second = localhost_certificate();
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    std::fs::write(staging.join("tls.crt"), &second.cert_pem).unwrap();
    std::fs::write(staging.join("tls.key"), &second.key_pem).unwrap();
    std::fs::rename(staging.join("tls.key"), &key).unwrap();
    std::fs::rename(staging.join("tls.crt"), &cert).unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let connected = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::spawn(support::handshake_succeeds(
                server.addr,
                second.cert_pem.clone(),
            )),
        )
        .await;
        if matches!(connected, Ok(Ok(true))) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let response = before.send(review_request("pod-allowed")).await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "a connection made before the rotation keeps working"
    );
}

#[tokio::test]
async fn shutdown_lets_a_review_in_flight_finish_then_refuses_new_connections() {
    let certificate = localhost_certificate();
    let mut server = TestServer::start(fixed_store(&certificate), quick_timeouts()).await;
    let mut stream = support::connect_tls(server.addr, &certificate.cert_pem, b"http/1.1").await;
    let body = std::fs::read("tests/fixtures/reviews/pod-denied.json").unwrap();
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..body.len() / 2]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    server.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "no longer accepting"
    );
    assert!(
        !server.task.is_finished(),
        "still draining the review in flight"
    );

    stream.write_all(&body[body.len() / 2..]).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(reply.contains("Invalid image name"), "{reply}");
    tokio::time::timeout(Duration::from_secs(5), &mut server.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn serves_prometheus_metrics_over_plain_http() {
    let certificate = localhost_certificate();
    let server = TestServer::start(fixed_store(&certificate), quick_timeouts()).await;
    let mut client = support::client(server.addr, &certificate.cert_pem, b"h2").await;
    client
        .send(review_request("deployment-denied"))
        .await
        .unwrap();

    let mut stream = tokio::net::TcpStream::connect(server.metrics_addr)
        .await
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains(r#"validator_webhook_reviews_total{kind="Deployment",operation="CREATE",verdict="denied",mode="enforce"} 1"#), "{text}");
    assert!(
        text.contains("validator_webhook_certificate_expiry_timestamp_seconds "),
        "{text}"
    );
}
