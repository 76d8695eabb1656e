//! The listeners: reviews over HTTPS (HTTP/1.1 and HTTP/2), metrics over plain HTTP, and a
//! shutdown that loses no review:
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

use http::{HeaderValue, Version, header};
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

use crate::{http::App, metrics};

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

/// Bound, but not yet serving: the addresses are known (port 0 gets a free port).
pub struct Server {
    webhook: TcpListener,
    metrics: TcpListener,
    tls: TlsAcceptor,
    app: Arc<App>,
    timeouts: Timeouts,
}

impl Server {
    pub async fn bind(
        listen: SocketAddr,
        metrics_listen: SocketAddr,
        tls: rustls::ServerConfig,
        app: Arc<App>,
        timeouts: Timeouts,
    ) -> Result<Self, ServeError> {
        let bind = |addr, flag| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, flag, source })
        };
        Ok(Self {
            webhook: bind(listen, "--listen").await?,
            metrics: bind(metrics_listen, "--metrics-listen").await?,
            tls: TlsAcceptor::from(Arc::new(tls)),
            app,
            timeouts,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.webhook
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` completes, goes on serving, not ready, for the shutdown delay,
    /// then stops accepting and drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Self {
            webhook,
            metrics,
            tls,
            app,
            timeouts,
        } = self;
        let metrics_task = tokio::spawn(serve_metrics(metrics, app.clone()));
        let builder = Arc::new(http_builder(&timeouts));
        let (drain, draining) = watch::channel(false);
        let connections = Connections {
            tls,
            builder,
            app: app.clone(),
            timeouts,
            closing: Arc::new(AtomicBool::new(false)),
            draining,
        };

        connections.accept_until(&webhook, shutdown).await;
        app.set_ready(false);
        connections.closing.store(true, Ordering::Relaxed);
        if !timeouts.shutdown_delay.is_zero() {
            tracing::info!(
                delay = ?timeouts.shutdown_delay,
                "shutting down: not ready, serving on until the endpoint is gone"
            );
            let delay = tokio::time::sleep(timeouts.shutdown_delay);
            connections.accept_until(&webhook, delay).await;
        }

        drop(webhook);
        let Connections { draining, .. } = connections;
        drop(draining);
        let _ = drain.send(true);
        tracing::info!(
            open = drain.receiver_count(),
            "no new connections; draining reviews in flight"
        );
        match tokio::time::timeout(timeouts.drain, drain.closed()).await {
            Ok(()) => tracing::info!("drained"),
            Err(_) => {
                tracing::warn!(deadline = ?timeouts.drain, "connections still open at the deadline; closing them")
            }
        }
        metrics_task.abort();
    }
}

/// The HTTP/1.1 and HTTP/2 settings of the webhook listener.
pub fn http_builder(timeouts: &Timeouts) -> auto::Builder<TokioExecutor> {
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
pub fn prepare(stream: &TcpStream, peer: SocketAddr) {
    // Replies are small and written whole: Nagle's algorithm would only hold them back until
    // the client's delayed ACK (40 ms on Linux).
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
}

/// What every connection of the webhook listener shares.
struct Connections {
    tls: TlsAcceptor,
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Arc<App>,
    timeouts: Timeouts,
    /// Set once shutdown starts: HTTP/1.1 responses then end their connection.
    closing: Arc<AtomicBool>,
    /// Turns true when the listener has closed and connections must wind down; the server
    /// waits until every connection has dropped its receiver.
    draining: watch::Receiver<bool>,
}

impl Connections {
    /// Accepts connections until `stop` completes.
    async fn accept_until(&self, listener: &TcpListener, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        prepare(&stream, peer);
                        tokio::spawn(self.connection().serve(stream, peer));
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

    fn connection(&self) -> Connection {
        Connection {
            tls: self.tls.clone(),
            builder: self.builder.clone(),
            app: self.app.clone(),
            timeouts: self.timeouts,
            closing: self.closing.clone(),
            draining: self.draining.clone(),
        }
    }
}

struct Connection {
    tls: TlsAcceptor,
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Arc<App>,
    timeouts: Timeouts,
    closing: Arc<AtomicBool>,
    draining: watch::Receiver<bool>,
}

impl Connection {
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
        let (app, closing) = (self.app.clone(), self.closing.clone());
        let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let (app, closing) = (app.clone(), closing.clone());
            async move {
                let version = request.version();
                let mut response = app.handle(request).await;
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
        self.app.metrics().tls_handshake_failures.inc();
        tracing::debug!(%peer, %error, "TLS handshake failed");
    }
}

fn log_end(peer: SocketAddr, result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

async fn serve_metrics(listener: TcpListener, app: Arc<App>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(metrics_response(&app, request.uri().path())) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn metrics_response(app: &App, path: &str) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => (
            http::StatusCode::OK,
            metrics::CONTENT_TYPE,
            app.metrics().encode(),
        ),
        _ => (
            http::StatusCode::NOT_FOUND,
            "text/plain",
            "metrics are served on /metrics\n".to_owned(),
        ),
    };
    let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}
