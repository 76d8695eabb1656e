//! A small TLS client for the checks around the load, never for the load itself: has a server
//! come up, which protocol does it pick, and what does it answer to one review.
//!
//! It verifies the server's certificate against the benchmark CA, so a server started with the
//! wrong files fails here rather than under `oha --insecure`. HTTP/1.1 is written by hand and
//! HTTP/2 goes through `h2`, so that no feature of hyper changes for the webhook's build (see
//! bench/Cargo.toml).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    runtime::Runtime,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::plan::Protocol;

/// A bound for a handshake, so that a server which accepts connections but never completes
/// TLS cannot stall the wait for it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A generous bound for one answer: the Python servers take a while on a 1 MiB review.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("the benchmark CA is not usable: {0}")]
    Ca(String),
    #[error("cannot start the probe's runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
    #[error("the server did not agree to {0} (ALPN)")]
    Alpn(&'static str),
    #[error("HTTP/1.1: {0}")]
    Http1(String),
    #[error("HTTP/2: {0}")]
    Http2(#[from] h2::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Talks to one server at `addr`.
pub struct Client {
    addr: SocketAddr,
    roots: Arc<RootCertStore>,
    runtime: Runtime,
}

impl Client {
    pub fn new(addr: SocketAddr, ca_pem: &str) -> Result<Self, ProbeError> {
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| ProbeError::Ca(e.to_string()))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca).map_err(|e| ProbeError::Ca(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ProbeError::Runtime)?;
        Ok(Self {
            addr,
            roots: Arc::new(roots),
            runtime,
        })
    }

    /// Completes a TLS handshake offering HTTP/2 and HTTP/1.1; returns the protocol the
    /// server picked, if any.
    pub fn handshake(&self) -> Result<Option<String>, ProbeError> {
        self.within(HANDSHAKE_TIMEOUT, async {
            let stream = self.connect(&[b"h2", b"http/1.1"]).await?;
            let alpn = stream.get_ref().1.alpn_protocol();
            Ok(alpn.map(|id| String::from_utf8_lossy(id).into_owned()))
        })
    }

    /// POSTs `body` as JSON to `path` over `protocol`, on a new connection.
    pub fn post(&self, protocol: Protocol, path: &str, body: &[u8]) -> Result<Answer, ProbeError> {
        let authority = self.addr.to_string();
        let exchange = async {
            let stream = self.connect(&[protocol.alpn()]).await?;
            let agreed = stream.get_ref().1.alpn_protocol() == Some(protocol.alpn());
            match protocol {
                // A server without ALPN speaks HTTP/1.1.
                Protocol::Http1 => post_http1(stream, &authority, path, body).await,
                Protocol::Http2 if agreed => post_http2(stream, &authority, path, body).await,
                Protocol::Http2 => Err(ProbeError::Alpn("h2")),
            }
        };
        self.within(ANSWER_TIMEOUT, exchange)
    }

    /// Runs `exchange` to completion, or fails after `limit`.
    fn within<T>(
        &self,
        limit: Duration,
        exchange: impl Future<Output = Result<T, ProbeError>>,
    ) -> Result<T, ProbeError> {
        self.runtime.block_on(async {
            tokio::time::timeout(limit, exchange)
                .await
                .map_err(|_| ProbeError::Timeout(limit))?
        })
    }

    async fn connect(&self, alpn: &[&[u8]]) -> Result<TlsStream<TcpStream>, ProbeError> {
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| ProbeError::Ca(e.to_string()))?
                .with_root_certificates(self.roots.clone())
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|id| id.to_vec()).collect();
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(ProbeError::Connect)?;
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::IpAddress(self.addr.ip().into()), tcp)
            .await
            .map_err(ProbeError::Handshake)
    }
}

async fn post_http1(
    mut stream: TlsStream<TcpStream>,
    authority: &str,
    path: &str,
    body: &[u8],
) -> Result<Answer, ProbeError> {
    let io = |e: std::io::Error| ProbeError::Http1(e.to_string());
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(body).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut received = Vec::new();
    loop {
        let read = match stream.read_buf(&mut received).await {
            Ok(read) => read,
            // Some servers close without TLS close_notify; what matters is whether the answer
            // was complete.
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(error) => return Err(io(error)),
        };
        let closed = read == 0;
        if let Some(answer) = parse_http1(&received, closed).map_err(ProbeError::Http1)? {
            return Ok(answer);
        }
        if closed {
            return Err(ProbeError::Http1(
                "the connection closed before the answer was complete".to_owned(),
            ));
        }
    }
}

/// Parses an HTTP/1.1 response from what has been received so far: `None` until it is complete.
/// `closed` says the server has closed the connection, which ends a body without a length.
pub fn parse_http1(received: &[u8], closed: bool) -> Result<Option<Answer>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_length = match response.parse(received).map_err(|e| e.to_string())? {
        httparse::Status::Complete(length) => length,
        httparse::Status::Partial => return Ok(None),
    };
    let status = response.code.ok_or("no status code")?;
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let rest = &received[head_length..];
    let body = if header("transfer-encoding").is_some_and(|te| te.ends_with("chunked")) {
        dechunk(rest)?
    } else if let Some(length) = header("content-length") {
        let length: usize = length.parse().map_err(|_| "a bad Content-Length")?;
        (rest.len() >= length).then(|| rest[..length].to_vec())
    } else {
        closed.then(|| rest.to_vec())
    };
    Ok(body.map(|body| Answer { status, body }))
}

/// Decodes a chunked body: `None` until the last chunk has arrived.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_field = std::str::from_utf8(&rest[..line_end]).map_err(|e| e.to_string())?;
        // Chunk extensions (";name=value") follow the size.
        let size_hex = size_field.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("a bad chunk size {size_hex:?}"))?;
        let data = &rest[line_end + 2..];
        if size == 0 {
            // Trailers, if any, end with an empty line.
            return Ok(data.windows(2).position(|w| w == b"\r\n").map(|_| body));
        }
        if data.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[..size]);
        rest = &data[size + 2..];
    }
}

async fn post_http2(
    stream: TlsStream<TcpStream>,
    authority: &str,
    path: &str,
    body: &[u8],
) -> Result<Answer, ProbeError> {
    let (client, connection) = h2::client::handshake(stream).await?;
    // The connection task moves the frames, flow-control updates included, while the request
    // is sent and answered below.
    let driver = tokio::spawn(connection);
    let mut client = client.ready().await?;
    let request = http::Request::post(format!("https://{authority}{path}"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(())
        .expect("a valid request");
    let (response, mut send) = client.send_request(request, false)?;
    // Data beyond the peer's flow-control window is buffered and sent as the window opens.
    send.send_data(Bytes::copy_from_slice(body), true)?;
    let response = response.await?;
    let status = response.status().as_u16();
    let mut received = response.into_body();
    let mut body = Vec::new();
    while let Some(chunk) = received.data().await {
        let chunk = chunk?;
        body.extend_from_slice(&chunk);
        let _ = received.flow_control().release_capacity(chunk.len());
    }
    driver.abort();
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_whole_body_by_content_length() {
        let response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":";
        assert_eq!(parse_http1(response, false), Ok(None));
        let whole = [&response[..], b"1}"].concat();
        assert_eq!(
            parse_http1(&whole, false),
            Ok(Some(Answer {
                status: 200,
                body: b"{\"a\":1}".to_vec()
            }))
        );
    }

    #[test]
    fn decodes_a_chunked_body_only_once_it_is_complete() {
        let response =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3;x=y\r\n:1}\r\n";
        assert_eq!(parse_http1(response, false), Ok(None));
        let whole = [&response[..], b"0\r\n\r\n"].concat();
        assert_eq!(
            parse_http1(&whole, false).unwrap().unwrap().body,
            b"{\"a\":1}"
        );
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(parse_http1(bad, false).is_err());
    }

    #[test]
    fn a_body_without_length_ends_when_the_server_closes() {
        let response = b"HTTP/1.0 403 FORBIDDEN\r\n\r\nno";
        assert_eq!(parse_http1(response, false), Ok(None));
        assert_eq!(parse_http1(response, true).unwrap().unwrap().status, 403);
    }

    #[test]
    fn waits_for_the_whole_head() {
        assert_eq!(
            parse_http1(b"HTTP/1.1 200 OK\r\nContent-Le", false),
            Ok(None)
        );
        assert!(parse_http1(b"SSH-2.0-OpenSSH\r\n\r\n", false).is_err());
    }
}
