//! The HTTPS client every test speaks to a webhook with, as the API server does: TLS verified
//! against one CA for one server name, then HTTP/1.1 or HTTP/2, whichever ALPN chose. Each
//! connection makes a full handshake (no session resumption), so each is what a new client
//! would get.

use std::{net::SocketAddr, sync::Arc};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{ClientConfig, client::Resumption, pki_types::ServerName};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, client::TlsStream};

/// A server to reach: its address, the CA it must be trusted by, the name its certificate
/// must carry.
#[derive(Clone)]
pub struct Target {
    addr: SocketAddr,
    name: ServerName<'static>,
    /// Trusts only the CA; each connection sets its own ALPN.
    config: ClientConfig,
}

impl Target {
    pub fn new(addr: SocketAddr, ca_pem: &[u8], name: &str) -> Result<Self> {
        let mut config = crate::tls::client_config(ca_pem, &[])?;
        config.resumption = Resumption::disabled();
        let name = ServerName::try_from(name.to_owned())
            .with_context(|| format!("{name:?} is not a server name"))?;
        Ok(Self { addr, name, config })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connects and completes TLS offering `alpn` (nothing offered when empty).
    pub async fn tls(&self, alpn: &[&[u8]]) -> Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("cannot connect to {}", self.addr))?;
        self.tls_over(tcp, alpn).await
    }

    /// Completes TLS offering `alpn` over a connection already open.
    pub async fn tls_over(&self, tcp: TcpStream, alpn: &[&[u8]]) -> Result<TlsStream<TcpStream>> {
        let mut config = self.config.clone();
        config.alpn_protocols = alpn.iter().map(|id| id.to_vec()).collect();
        let connector = TlsConnector::from(Arc::new(config));
        let handshake = connector.connect(self.name.clone(), tcp);
        handshake.await.context("TLS handshake failed")
    }

    /// A [`Client`] on a new connection offering `alpn`.
    pub async fn client(&self, alpn: &[&[u8]]) -> Result<Client> {
        Client::over(self.tls(alpn).await?).await
    }
}

/// Requests on one connection, over HTTP/1.1 or HTTP/2, whichever ALPN chose.
pub struct Client {
    sender: Sender,
    protocol: Vec<u8>,
}

enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
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
    /// Speaks HTTP/2 over `stream` if ALPN chose it, HTTP/1.1 otherwise.
    pub async fn over(stream: TlsStream<TcpStream>) -> Result<Self> {
        let protocol = stream
            .get_ref()
            .1
            .alpn_protocol()
            .unwrap_or_default()
            .to_vec();
        let io = TokioIo::new(stream);
        let sender = if protocol == b"h2" {
            let (send, connection) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(connection);
            Sender::Http2(send)
        } else {
            let (send, connection) = http1::handshake(io).await?;
            tokio::spawn(connection);
            Sender::Http1(send)
        };
        Ok(Self { sender, protocol })
    }

    /// The protocol ALPN chose; empty when none was.
    pub fn protocol(&self) -> &[u8] {
        &self.protocol
    }

    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> hyper::Result<Response<Bytes>> {
        let response = match &mut self.sender {
            Sender::Http1(h1) => h1.send_request(request).await?,
            Sender::Http2(h2) => h2.send_request(request).await?,
        };
        let (parts, body) = response.into_parts();
        Ok(Response::from_parts(
            parts,
            body.collect().await?.to_bytes(),
        ))
    }

    /// Sends a request, telling a request the connection refused before writing it from one
    /// that was written and never answered.
    pub async fn try_send(&mut self, request: Request<Full<Bytes>>) -> Delivery {
        let sent = match &mut self.sender {
            Sender::Http1(h1) => h1.try_send_request(request).await,
            Sender::Http2(h2) => h2.try_send_request(request).await,
        };
        let response = match sent {
            Ok(response) => response,
            Err(error) if error.message().is_some() || unprocessed(error.error()) => {
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
}

/// Whether an HTTP/2 stream failed because the server's GOAWAY put it above the last stream it
/// processed, which RFC 9113 section 6.8 makes safe to retry.
fn unprocessed(error: &hyper::Error) -> bool {
    let h2 = std::error::Error::source(error).and_then(|e| e.downcast_ref::<h2::Error>());
    h2.is_some_and(|h2| {
        h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR)
    })
}

/// A POST of `body` as JSON to `uri`, as the API server sends a review.
pub fn post_json(uri: &str, body: impl Into<Bytes>) -> Result<Request<Full<Bytes>>> {
    Ok(Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body.into()))?)
}
