//! A small TLS client for the checks around the load, never for the load itself: has a server
//! come up, which protocol does it pick, and is its answer to a review correct. It verifies the
//! server's certificate against the benchmark's CA, so a server started with the wrong files
//! fails here rather than under `oha --insecure`.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{ClientConfig, pki_types::ServerName};
use testkit::names::SERVICE_HOST;
use tokio::{net::TcpStream, runtime::Runtime};
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::plan::Protocol;

/// Bounds a handshake or an answer (the Python servers take a while on a 1 MiB review).
const TIMEOUT: Duration = Duration::from_secs(20);

/// Talks to one server at `addr`.
pub struct Client {
    addr: SocketAddr,
    /// Trusts only the benchmark's CA; each connection sets its own ALPN.
    config: ClientConfig,
    runtime: Runtime,
}

impl Client {
    pub fn new(addr: SocketAddr, ca_pem: &str) -> Result<Self> {
        let config = testkit::tls::client_config(ca_pem.as_bytes(), &[])?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            addr,
            config,
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
        let mut config = self.config.clone();
        config.alpn_protocols = alpn.iter().map(|id| id.to_vec()).collect();
        let tcp = TcpStream::connect(self.addr)
            .await
            .context("cannot connect")?;
        let connector = TlsConnector::from(Arc::new(config));
        let handshake = connector.connect(ServerName::try_from(SERVICE_HOST)?, tcp);
        handshake.await.context("TLS handshake failed")
    }
}
