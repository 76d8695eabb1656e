//! The listeners: reviews over HTTPS (HTTP/1.1 and HTTP/2), metrics over plain HTTP, and a
//! shutdown that stops accepting, drains in-flight reviews and returns.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::net::{TcpListener, TcpStream};
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

/// Timeouts of the listener, shortened in tests.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub handshake: Duration,
    pub header_read: Duration,
    /// How long in-flight reviews get to finish once shutdown starts.
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            handshake: HANDSHAKE_TIMEOUT,
            header_read: HEADER_READ_TIMEOUT,
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

    /// Serves until `shutdown` completes, then drains.
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
        let graceful = GracefulShutdown::new();

        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = webhook.accept() => match accepted {
                    Ok((stream, peer)) => {
                        prepare(&stream, peer);
                        let connection = Connection {
                            tls: tls.clone(),
                            builder: builder.clone(),
                            app: app.clone(),
                            timeouts,
                        };
                        tokio::spawn(connection.serve(stream, peer, graceful.watcher()));
                    }
                    Err(error) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }

        app.set_ready(false);
        drop(webhook);
        let open = graceful.count();
        tracing::info!(
            open,
            "shutting down: no new connections, draining reviews in flight"
        );
        match tokio::time::timeout(timeouts.drain, graceful.shutdown()).await {
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

struct Connection {
    tls: TlsAcceptor,
    builder: Arc<auto::Builder<TokioExecutor>>,
    app: Arc<App>,
    timeouts: Timeouts,
}

impl Connection {
    async fn serve(
        self,
        stream: TcpStream,
        peer: SocketAddr,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let stream =
            match tokio::time::timeout(self.timeouts.handshake, self.tls.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return self.handshake_failed(peer, &error),
                Err(_) => return self.handshake_failed(peer, &"timed out"),
            };
        let app = self.app;
        let service = service_fn(move |request| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.handle(request).await) }
        });
        let connection = self
            .builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        if let Err(error) = watcher.watch(connection).await {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }

    fn handshake_failed(&self, peer: SocketAddr, error: &dyn std::fmt::Display) {
        self.app.metrics().tls_handshake_failures.inc();
        tracing::debug!(%peer, %error, "TLS handshake failed");
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
