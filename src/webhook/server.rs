//! The one accept loop: any [`Handler`] over HTTPS (HTTP/1.1 and HTTP/2), with the handshake and
//! header timeouts, and a shutdown that loses no request:
//!
//! 1. on the signal, readiness turns off and every HTTP/1.1 response carries
//!    `Connection: close`, so keep-alive clients move to another replica;
//! 2. for [`Timeouts::shutdown_delay`] everything else goes on as before, while the endpoint
//!    leaves the Service;
//! 3. then the listener closes, HTTP/2 connections get a GOAWAY, HTTP/1.1 connections answer
//!    what is on its way and close, and in-flight reviews get [`Timeouts::drain`] to finish.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use http::{HeaderValue, Request, Response, Version, header};
use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};
use tokio_rustls::TlsAcceptor;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus_client::metrics::counter::Counter;

/// How long a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers, on a new or a kept-alive connection.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} (set by {flag}): {source}")]
    Bind {
        addr: SocketAddr,
        flag: &'static str,
        source: std::io::Error,
    },
}

/// Anything that answers a request: the webhook's routes, or a fixed answer for a benchmark.
/// Every limit and timeout of the connection is the server's; reading the body is the handler's.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send;
}

/// Whether the server takes new work. The server clears it when shutdown starts; a handler
/// reports it (the webhook on `/readyz`).
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Default for Readiness {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
}

/// Binds `addr`, naming the flag that set it if that fails.
pub async fn listen(addr: SocketAddr, flag: &'static str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, flag, source })
}

/// How long the server keeps serving, not ready, after the shutdown signal.
pub const SHUTDOWN_DELAY: Duration = Duration::from_secs(5);

/// Timeouts of the listener, shortened in tests.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub handshake: Duration,
    pub header_read: Duration,
    /// How long the server goes on serving after the shutdown signal, reporting not ready, so
    /// that the endpoint leaves the Service before the listener closes. Zero skips it.
    pub shutdown_delay: Duration,
    /// How long an HTTP/1.1 connection with no request in progress stays open once draining,
    /// for a request already on its way. HTTP/1.1 has no way to say "no more requests" before
    /// the client sends one; closing at once would lose that request.
    pub idle_grace: Duration,
    /// How long in-flight reviews get to finish once the listener has closed.
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            handshake: HANDSHAKE_TIMEOUT,
            header_read: HEADER_READ_TIMEOUT,
            shutdown_delay: SHUTDOWN_DELAY,
            idle_grace: Duration::from_secs(1),
            drain: Duration::from_secs(15),
        }
    }
}

/// Bound, but not yet serving: the address is known (port 0 gets a free port).
pub struct Server<H> {
    listener: TcpListener,
    tls: TlsAcceptor,
    handler: Arc<H>,
    timeouts: Timeouts,
    readiness: Readiness,
    handshake_failures: Counter,
}

impl<H: Handler> Server<H> {
    pub fn new(
        listener: TcpListener,
        tls: rustls::ServerConfig,
        handler: Arc<H>,
        timeouts: Timeouts,
    ) -> Self {
        Self {
            listener,
            tls: TlsAcceptor::from(Arc::new(tls)),
            handler,
            timeouts,
            readiness: Readiness::default(),
            handshake_failures: Counter::default(),
        }
    }

    /// The flag to clear when shutdown starts.
    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// Where to count connections whose TLS handshake failed or timed out.
    pub fn with_handshake_failures(mut self, counter: Counter) -> Self {
        self.handshake_failures = counter;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` completes, goes on serving, not ready, for the shutdown delay,
    /// then stops accepting and drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Self {
            listener,
            tls,
            handler,
            timeouts,
            readiness,
            handshake_failures,
        } = self;
        let builder = Arc::new(http_builder(&timeouts));
        let (drain, draining) = watch::channel(false);
        let connections = Connections {
            tls,
            builder,
            handler,
            timeouts,
            handshake_failures,
            closing: Arc::new(AtomicBool::new(false)),
            draining,
        };

        connections.accept_until(&listener, shutdown).await;
        readiness.set(false);
        connections.closing.store(true, Ordering::Relaxed);
        if !timeouts.shutdown_delay.is_zero() {
            tracing::info!(
                delay = ?timeouts.shutdown_delay,
                "shutting down: not ready, serving on until the endpoint is gone"
            );
            let delay = tokio::time::sleep(timeouts.shutdown_delay);
            connections.accept_until(&listener, delay).await;
        }

        drop(listener);
        let Connections { draining, .. } = connections;
        drop(draining);
        let _ = drain.send(true);
        tracing::info!(
            open = drain.receiver_count(),
            "no new connections; draining requests in flight"
        );
        match tokio::time::timeout(timeouts.drain, drain.closed()).await {
            Ok(()) => tracing::info!("drained"),
            Err(_) => {
                tracing::warn!(deadline = ?timeouts.drain, "connections still open at the deadline; closing them")
            }
        }
    }
}

/// The HTTP/1.1 and HTTP/2 settings of the listener.
fn http_builder(timeouts: &Timeouts) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

/// Socket options of an accepted connection.
fn prepare(stream: &TcpStream, peer: SocketAddr) {
    // Replies are small and written whole: Nagle's algorithm would only hold them back until
    // the client's delayed ACK (40 ms on Linux).
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
}

/// What every connection of the listener shares; each connection serves with its own clone.
struct Connections<H> {
    tls: TlsAcceptor,
    builder: Arc<auto::Builder<TokioExecutor>>,
    handler: Arc<H>,
    timeouts: Timeouts,
    handshake_failures: Counter,
    /// Set once shutdown starts: HTTP/1.1 responses then end their connection.
    closing: Arc<AtomicBool>,
    /// Turns true when the listener has closed and connections must wind down; the server
    /// waits until every connection has dropped its receiver.
    draining: watch::Receiver<bool>,
}

impl<H: Handler> Connections<H> {
    /// Accepts connections until `stop` completes.
    async fn accept_until(&self, listener: &TcpListener, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        prepare(&stream, peer);
                        tokio::spawn(self.clone().serve(stream, peer));
                    }
                    Err(error) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }
}

// By hand: a derive would ask `H: Clone`, and the handler is shared through its `Arc`.
impl<H> Clone for Connections<H> {
    fn clone(&self) -> Self {
        Self {
            tls: self.tls.clone(),
            builder: self.builder.clone(),
            handler: self.handler.clone(),
            timeouts: self.timeouts,
            handshake_failures: self.handshake_failures.clone(),
            closing: self.closing.clone(),
            draining: self.draining.clone(),
        }
    }
}

impl<H: Handler> Connections<H> {
    /// Serves one connection; `self` (and with it a receiver of `draining`) lives until the
    /// connection has ended, which is what the drain waits for.
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let stream =
            match tokio::time::timeout(self.timeouts.handshake, self.tls.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return self.handshake_failed(peer, &error),
                Err(_) => return self.handshake_failed(peer, &"timed out"),
            };
        let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let (handler, closing) = (self.handler.clone(), self.closing.clone());
        let service = service_fn(move |request: Request<Incoming>| {
            let (handler, closing) = (handler.clone(), closing.clone());
            async move {
                let version = request.version();
                let mut response = handler.handle(request).await;
                // HTTP/2 says the same with GOAWAY, once the listener closes.
                if version < Version::HTTP_2 && closing.load(Ordering::Relaxed) {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(response)
            }
        });
        let connection = self
            .builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::pin!(connection);
        let mut draining = self.draining.clone();
        let drain_started = async move {
            let _ = draining.wait_for(|draining| *draining).await;
        };
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = drain_started => {
                if !http2 {
                    // A request may be on its way: answer it (with `Connection: close`) if it
                    // comes within the grace, and close the connection after it.
                    let grace = tokio::time::sleep(self.timeouts.idle_grace);
                    tokio::select! {
                        result = connection.as_mut() => return log_end(peer, result),
                        () = grace => {}
                    }
                }
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        log_end(peer, result);
    }

    fn handshake_failed(&self, peer: SocketAddr, error: &dyn std::fmt::Display) {
        self.handshake_failures.inc();
        tracing::debug!(%peer, %error, "TLS handshake failed");
    }
}

fn log_end(peer: SocketAddr, result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
