//! A webhook server on a loopback port, and TLS clients that speak to it.

#![allow(dead_code)]

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::{net::TcpStream, sync::oneshot, task::JoinHandle};
use tokio_rustls::{TlsConnector, client::TlsStream};
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

/// A TLS client that trusts only `ca_pem` and offers `alpn`.
fn connector(ca_pem: &str, alpn: &[u8]) -> TlsConnector {
    let config = testkit::tls::client_config(ca_pem.as_bytes(), &[alpn]).unwrap();
    TlsConnector::from(Arc::new(config))
}

/// Opens a TLS connection to the server as `localhost`.
pub async fn connect_tls(addr: SocketAddr, ca_pem: &str, alpn: &[u8]) -> TlsStream<TcpStream> {
    try_connect_tls(addr, ca_pem, alpn).await.unwrap()
}

/// Opens a TLS connection to the server as `localhost`, or says why it could not.
pub async fn try_connect_tls(
    addr: SocketAddr,
    ca_pem: &str,
    alpn: &[u8],
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tls_over(tcp, ca_pem, alpn).await
}

/// Completes TLS as `localhost` over a connection already open.
pub async fn tls_over(
    tcp: TcpStream,
    ca_pem: &str,
    alpn: &[u8],
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from("localhost").unwrap();
    connector(ca_pem, alpn).connect(name, tcp).await
}

/// Whether a TLS handshake trusting only `ca_pem` succeeds.
pub async fn handshake_succeeds(addr: SocketAddr, ca_pem: String) -> bool {
    let Ok(tcp) = TcpStream::connect(addr).await else {
        return false;
    };
    let name = ServerName::try_from("localhost").unwrap();
    connector(&ca_pem, b"h2").connect(name, tcp).await.is_ok()
}

/// One request over HTTP/1.1 or HTTP/2, whichever ALPN chose.
pub struct Client {
    http1: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    http2: Option<hyper::client::conn::http2::SendRequest<Full<Bytes>>>,
    pub protocol: Vec<u8>,
}

/// What became of a request sent with [`Client::try_send`].
pub enum Delivery {
    Answered(Response<Bytes>),
    /// The connection refused it before any of it was written, or an HTTP/2 GOAWAY said the
    /// server never processed it: safe to send again elsewhere.
    Refused(hyper::Error),
    /// It was written, and no answer came.
    Lost(hyper::Error),
}

impl Client {
    pub async fn connect(addr: SocketAddr, ca_pem: &str, alpn: &[u8]) -> Self {
        Self::try_connect(addr, ca_pem, alpn).await.unwrap()
    }

    pub async fn try_connect(
        addr: SocketAddr,
        ca_pem: &str,
        alpn: &[u8],
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let stream = try_connect_tls(addr, ca_pem, alpn).await?;
        let protocol = stream
            .get_ref()
            .1
            .alpn_protocol()
            .unwrap_or_default()
            .to_vec();
        let io = TokioIo::new(stream);
        if protocol == b"h2" {
            let (send, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(connection);
            Ok(Self {
                http1: None,
                http2: Some(send),
                protocol,
            })
        } else {
            let (send, connection) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(connection);
            Ok(Self {
                http1: Some(send),
                http2: None,
                protocol,
            })
        }
    }

    /// Sends a request, telling a request the connection refused before writing it from one
    /// that was written and never answered.
    pub async fn try_send(&mut self, request: Request<Full<Bytes>>) -> Delivery {
        let sent = match (&mut self.http1, &mut self.http2) {
            (Some(h1), _) => h1.try_send_request(request).await,
            (_, Some(h2)) => h2.try_send_request(request).await,
            _ => unreachable!(),
        };
        let response = match sent {
            Ok(response) => response,
            Err(error) if error.message().is_some() => {
                return Delivery::Refused(error.into_error());
            }
            Err(error) if unprocessed(error.error()) => {
                return Delivery::Refused(error.into_error());
            }
            Err(error) => return Delivery::Lost(error.into_error()),
        };
        let (parts, body) = response.into_parts();
        match body.collect().await {
            Ok(body) => Delivery::Answered(Response::from_parts(parts, body.to_bytes())),
            Err(error) => Delivery::Lost(error),
        }
    }

    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> hyper::Result<Response<Bytes>> {
        let response = match (&mut self.http1, &mut self.http2) {
            (Some(h1), _) => h1.send_request(request).await?,
            (_, Some(h2)) => h2.send_request(request).await?,
            _ => unreachable!(),
        };
        let (parts, body) = response.into_parts();
        Ok(Response::from_parts(
            parts,
            body.collect().await?.to_bytes(),
        ))
    }
}

/// Whether an HTTP/2 stream failed because the server's GOAWAY put it above the last stream it
/// processed, which RFC 9113 section 6.8 makes safe to retry.
fn unprocessed(error: &hyper::Error) -> bool {
    let h2 = std::error::Error::source(error).and_then(|e| e.downcast_ref::<h2::Error>());
    h2.is_some_and(|h2| {
        h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR)
    })
}

pub fn review_request(fixture: &str) -> Request<Full<Bytes>> {
    let body = std::fs::read(format!("tests/fixtures/reviews/{fixture}.json")).unwrap();
    Request::post("https://localhost/validate")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}
