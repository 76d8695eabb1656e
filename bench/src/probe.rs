//! A small TLS client for the checks around the load, never for the load itself: has a server
//! come up, which protocol does it pick, and is its answer to a review correct. It verifies the
//! server's certificate against the benchmark's CA, so a server started with the wrong files
//! fails here rather than under `oha --insecure`.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use testkit::{
    https::{self, Target},
    names::SERVICE_HOST,
};
use tokio::runtime::Runtime;

use crate::plan::Protocol;

/// Bounds a handshake or an answer (the Python servers take a while on a 1 MiB review).
const TIMEOUT: Duration = Duration::from_secs(20);

/// Talks to one server at `addr`, blocking.
pub struct Client {
    target: Target,
    runtime: Runtime,
}

impl Client {
    pub fn new(addr: SocketAddr, ca_pem: &str) -> Result<Self> {
        let target = Target::new(addr, ca_pem.as_bytes(), SERVICE_HOST)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self { target, runtime })
    }

    /// Completes a TLS handshake offering HTTP/2 and HTTP/1.1; returns the protocol the
    /// server picked, if any.
    pub fn handshake(&self) -> Result<Option<String>> {
        self.within(async {
            let stream = self.target.tls(&[b"h2", b"http/1.1"]).await?;
            let alpn = stream.get_ref().1.alpn_protocol();
            Ok(alpn.map(|id| String::from_utf8_lossy(id).into_owned()))
        })
    }

    /// POSTs `body` as JSON to `/validate` over `protocol`, on a new connection; returns the
    /// status and the body.
    pub fn post(&self, protocol: Protocol, body: &[u8]) -> Result<(u16, Bytes)> {
        let addr = self.target.addr();
        // HTTP/1.1 names the path and a Host; HTTP/2 the whole URI.
        let mut request = match protocol {
            Protocol::Http1 => https::post_json("/validate", body.to_vec())?,
            Protocol::Http2 => {
                https::post_json(&format!("https://{addr}/validate"), body.to_vec())?
            }
        };
        if protocol == Protocol::Http1 {
            request
                .headers_mut()
                .insert(http::header::HOST, addr.to_string().parse()?);
        }
        self.within(async {
            let stream = self.target.tls(&[protocol.alpn()]).await?;
            // A server without ALPN speaks HTTP/1.1; HTTP/2 must be agreed.
            let agreed = stream.get_ref().1.alpn_protocol() == Some(protocol.alpn());
            ensure!(
                agreed || protocol == Protocol::Http1,
                "the server did not agree to h2 (ALPN)"
            );
            let response = https::Client::over(stream).await?.send(request).await?;
            Ok((response.status().as_u16(), response.into_body()))
        })
    }

    fn within<T>(&self, exchange: impl Future<Output = Result<T>>) -> Result<T> {
        self.runtime.block_on(async {
            (tokio::time::timeout(TIMEOUT, exchange).await)
                .with_context(|| format!("no answer within {TIMEOUT:?}"))?
        })
    }
}
