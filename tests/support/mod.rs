//! A webhook server on a loopback port, and the kit's TLS clients pointed at it.

#![allow(dead_code)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use testkit::https::{Client, Target};
use tokio::{net::TcpStream, sync::oneshot, task::JoinHandle};
use tokio_rustls::client::TlsStream;
use validator_webhook::{
    pki::SelfSigned,
    policy::Policy,
    webhook::{
        handler::Webhook,
        metrics::{self, Metrics},
        server::{self as webhook_server, MAX_CONNECTIONS, Server, Timeouts},
        tls::{CertStore, Loaded},
    },
};

pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub webhook: Arc<Webhook>,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl TestServer {
    /// Serves `certificates` with the default policy on free loopback ports.
    pub async fn start(certificates: Arc<CertStore>, timeouts: Timeouts) -> Self {
        Self::start_with(certificates, timeouts, MAX_CONNECTIONS, |webhook| webhook).await
    }

    /// As [`TestServer::start`], with a connection cap and a webhook set up by `configure`.
    pub async fn start_with(
        certificates: Arc<CertStore>,
        timeouts: Timeouts,
        max_connections: usize,
        configure: impl FnOnce(Webhook) -> Webhook,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let webhook = Arc::new(configure(Webhook::new(Policy::default(), metrics.clone())));
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let tls = validator_webhook::webhook::tls::server_config(certificates).unwrap();
        let listener = webhook_server::listen(loopback, "--listen").await.unwrap();
        let metrics_listener = webhook_server::listen(loopback, "--metrics-listen")
            .await
            .unwrap();
        let metrics_addr = metrics_listener.local_addr().unwrap();
        let server = Server::new(listener, tls, webhook.clone(), timeouts)
            .with_readiness(webhook.readiness())
            .with_connection_metrics(metrics.connection_metrics())
            .with_max_connections(max_connections);
        let addr = server.local_addr();
        let (shutdown, signal) = oneshot::channel();
        let task = tokio::spawn(async move {
            let metrics_task = tokio::spawn(metrics::serve(metrics_listener, metrics));
            server
                .run(async {
                    let _ = signal.await;
                })
                .await;
            metrics_task.abort();
        });
        Self {
            addr,
            metrics_addr,
            webhook,
            shutdown: Some(shutdown),
            task,
        }
    }

    /// Starts the shutdown; `task` finishes once it has drained.
    pub fn shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

pub fn quick_timeouts() -> Timeouts {
    Timeouts {
        handshake: Duration::from_millis(300),
        header_read: Duration::from_millis(300),
        first_request: Duration::from_secs(2),
        idle: Duration::from_secs(5),
        linger: Duration::from_secs(1),
        shutdown_delay: Duration::ZERO,
        idle_grace: Duration::from_millis(200),
        drain: Duration::from_secs(5),
    }
}

pub fn localhost_certificate() -> SelfSigned {
    SelfSigned::generate(&["localhost", "127.0.0.1"]).unwrap()
}

pub fn fixed_store(certificate: &SelfSigned) -> Arc<CertStore> {
    Arc::new(CertStore::fixed(
        Loaded::generated(certificate).unwrap(),
        Arc::new(Metrics::default()),
    ))
}

/// The test server as a client sees it: trusted through `ca_pem`, named `localhost`.
pub fn localhost(addr: SocketAddr, ca_pem: &str) -> Target {
    Target::new(addr, ca_pem.as_bytes(), "localhost").unwrap()
}

/// Opens a TLS connection to the server as `localhost`.
pub async fn connect_tls(addr: SocketAddr, ca_pem: &str, alpn: &[u8]) -> TlsStream<TcpStream> {
    localhost(addr, ca_pem).tls(&[alpn]).await.unwrap()
}

/// Completes TLS as `localhost` over a connection already open.
pub async fn tls_over(
    tcp: TcpStream,
    ca_pem: &str,
    alpn: &[u8],
) -> anyhow::Result<TlsStream<TcpStream>> {
    localhost(tcp.peer_addr()?, ca_pem)
        .tls_over(tcp, &[alpn])
        .await
}

/// Whether a TLS handshake trusting only `ca_pem` succeeds.
pub async fn handshake_succeeds(addr: SocketAddr, ca_pem: String) -> bool {
    localhost(addr, &ca_pem).tls(&[b"h2"]).await.is_ok()
}

/// A client on a new connection to the server, offering `alpn`.
pub async fn client(addr: SocketAddr, ca_pem: &str, alpn: &[u8]) -> Client {
    try_client(addr, ca_pem, alpn).await.unwrap()
}

/// A client on a new connection to the server, or why there is none.
pub async fn try_client(addr: SocketAddr, ca_pem: &str, alpn: &[u8]) -> anyhow::Result<Client> {
    localhost(addr, ca_pem).client(&[alpn]).await
}

pub fn review_request(fixture: &str) -> Request<Full<Bytes>> {
    let body = std::fs::read(format!("tests/fixtures/reviews/{fixture}.json")).unwrap();
    testkit::https::post_json("https://localhost/validate", body).unwrap()
}

/// A review of `size` bytes: a good one, padded with whitespace.
pub fn padded_review(size: usize) -> Vec<u8> {
    let mut body = std::fs::read("tests/fixtures/reviews/pod-allowed.json").unwrap();
    body.resize(size, b' ');
    body
}
