//! The one accept loop: any [`Handler`] over HTTPS (HTTP/1.1 and HTTP/2), with bounded
//! connections and a shutdown that loses no request.
//!
//! Every connection is bounded, whatever its client does:
//!
//! - from accept to the headers of its first request (TLS handshake, protocol detection, the
//!   HTTP/2 preface, the headers) it has [`Timeouts::first_request`];
//! - with no request in progress it stays open for [`Timeouts::idle`], counted from the end of
//!   its last request, however often its client answers HTTP/2 PINGs;
//! - at most [`Server::with_max_connections`] are open. A newcomer over the cap closes the oldest
//!   connection that has not yet sent a request, so silent connections cannot lock good clients
//!   out; when every open connection has served a request, the newcomer is closed at once,
//!   before its handshake, which costs the server nothing and keeps descriptors free;
//! - after an early HTTP/1.1 error answer (413, 408) that ends the connection while the client
//!   may still be uploading, the server reads and discards what keeps coming for
//!   [`Timeouts::linger`] (at most [`LINGER_BYTES`]), so the client reads the answer instead of
//!   a reset.
//!
//! Shutdown:
//!
//! 1. on the signal, readiness turns off and every HTTP/1.1 response carries
//!    `Connection: close`, so keep-alive clients move to another replica;
//! 2. for [`Timeouts::shutdown_delay`] everything else goes on as before, while the endpoint
//!    leaves the Service;
//! 3. then the listener closes, HTTP/2 connections get a GOAWAY, HTTP/1.1 connections answer
//!    what is on its way and close, and in-flight reviews get [`Timeouts::drain`] to finish.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderValue, Request, Response, Version, header};
use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{oneshot, watch},
    time::Instant,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

/// How long a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's headers, on a new or a kept-alive connection.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new connection may take to deliver the headers of its first request, handshake
/// included.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection stays open with no request in progress. Longer than the 90 s after
/// which Go clients (the API server among them) drop an idle connection themselves, so that a
/// client does not send a request on a connection the server is closing.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Open connections allowed by default. An idle TLS connection costs about 10 KiB: a thousand
/// fit in the shipped memory limit, and in the usual 1,024 descriptors with room to spare.
pub const MAX_CONNECTIONS: usize = 1000;
/// At most this much of a request left unread is read and discarded after an early error
/// answer on HTTP/1.1 (see the module docs).
pub const LINGER_BYTES: usize = 8 * 1024 * 1024;

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
    /// From accept to the headers of the first request, whatever the protocol.
    pub first_request: Duration,
    /// How long a connection with no request in progress stays open.
    pub idle: Duration,
    /// How long the rest of a request is read and discarded after an early HTTP/1.1 error
    /// answer that closes the connection.
    pub linger: Duration,
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
            first_request: FIRST_REQUEST_TIMEOUT,
            idle: IDLE_TIMEOUT,
            linger: Duration::from_secs(2),
            shutdown_delay: SHUTDOWN_DELAY,
            idle_grace: Duration::from_secs(1),
            drain: Duration::from_secs(15),
        }
    }
}

/// Where the server counts what it does with connections.
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    /// Connections whose TLS handshake failed or timed out.
    pub handshake_failures: Counter,
    /// Connections open now.
    pub open: Gauge,
    /// Connections closed at once because the cap was reached.
    pub refused: Counter,
    /// Connections closed for sending no request in time, or none for too long, or to make
    /// room for a newcomer before they sent a request.
    pub timed_out: Counter,
}

/// Bound, but not yet serving: the address is known (port 0 gets a free port).
pub struct Server<H> {
    listener: TcpListener,
    tls: TlsAcceptor,
    handler: Arc<H>,
    timeouts: Timeouts,
    readiness: Readiness,
    max_connections: usize,
    metrics: ConnectionMetrics,
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
            max_connections: MAX_CONNECTIONS,
            metrics: ConnectionMetrics::default(),
        }
    }

    /// The flag to clear when shutdown starts.
    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// Where to count connections whose TLS handshake failed or timed out.
    pub fn with_handshake_failures(mut self, counter: Counter) -> Self {
        self.metrics.handshake_failures = counter;
        self
    }

    /// Where to count connections: open, refused, timed out.
    pub fn with_connection_metrics(mut self, metrics: ConnectionMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// How many connections may be open at once (at least one).
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
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
            max_connections,
            metrics,
        } = self;
        let builder = Arc::new(http_builder(&timeouts));
        let (drain, draining) = watch::channel(false);
        let connections = Connections {
            tls,
            builder,
            handler,
            timeouts,
            slots: Arc::new(Slots::new(max_connections, metrics.clone())),
            metrics,
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
    // PINGs find a dead peer; the idle timeout (see `Activity`) closes a live one that sends
    // nothing, which PINGs cannot.
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
    slots: Arc<Slots>,
    metrics: ConnectionMetrics,
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
                        let Some(slot) = Slots::admit(&self.slots) else {
                            // Dropped before the handshake: the client sees its connection
                            // closed at once, and the descriptor is free again.
                            self.metrics.refused.inc();
                            tracing::debug!(%peer, "connection cap reached; closing a newcomer");
                            continue;
                        };
                        prepare(&stream, peer);
                        tokio::spawn(self.clone().serve(stream, peer, slot));
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
            slots: self.slots.clone(),
            metrics: self.metrics.clone(),
            closing: self.closing.clone(),
            draining: self.draining.clone(),
        }
    }
}

/// Why a connection is being closed by the server rather than by its client.
enum Closing {
    Drain,
    /// No first request in time, idle too long, or evicted for a newcomer.
    TimedOut,
}

impl<H: Handler> Connections<H> {
    /// Serves one connection; `self` (and with it a receiver of `draining`) lives until the
    /// connection has ended, which is what the drain waits for.
    async fn serve(self, stream: TcpStream, peer: SocketAddr, slot: Slot) {
        let Slot {
            guard,
            evicted: mut evicted_rx,
        } = slot;
        let guard = Arc::new(guard);
        let evicted = async move {
            // A sender dropped without sending means the connection was proven, not evicted.
            if (&mut evicted_rx).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(evicted);
        let activity = Activity::new();
        let handshake = self.timeouts.handshake.min(self.timeouts.first_request);
        let stream = tokio::select! {
            accepted = tokio::time::timeout(handshake, self.tls.accept(stream)) => match accepted {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return self.handshake_failed(peer, &error),
                Err(_) => return self.handshake_failed(peer, &"timed out"),
            },
            () = &mut evicted => {
                self.metrics.timed_out.inc();
                return;
            }
        };
        let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let linger = Arc::new(AtomicBool::new(false));
        let io = Lingering {
            stream: Some(stream),
            linger: linger.clone(),
            time: self.timeouts.linger,
        };
        let (handler, closing) = (self.handler.clone(), self.closing.clone());
        let tracker = activity.clone();
        let proven = guard.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let (handler, closing, linger) = (handler.clone(), closing.clone(), linger.clone());
            let busy = tracker.start();
            proven.proven();
            async move {
                let version = request.version();
                let mut response = handler.handle(request).await;
                drop(busy);
                if version < Version::HTTP_2 {
                    // HTTP/2 says the same with GOAWAY, once the listener closes.
                    if closing.load(Ordering::Relaxed) {
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    let ends = response.headers().get(header::CONNECTION)
                        == Some(&HeaderValue::from_static("close"));
                    if ends && response.status().is_client_error() {
                        linger.store(true, Ordering::Relaxed);
                    }
                }
                Ok::<_, Infallible>(response)
            }
        });
        let connection = self
            .builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        tokio::pin!(connection);
        let mut draining = self.draining.clone();
        let drain_started = async move {
            let _ = draining.wait_for(|draining| *draining).await;
        };
        let expired = activity.expired(self.timeouts.first_request, self.timeouts.idle);
        let closing = tokio::select! {
            result = connection.as_mut() => return log_end(peer, result),
            () = drain_started => Closing::Drain,
            () = expired => Closing::TimedOut,
            () = &mut evicted => Closing::TimedOut,
        };
        match closing {
            Closing::Drain => {
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
                log_end(peer, connection.await);
            }
            Closing::TimedOut => {
                self.metrics.timed_out.inc();
                tracing::debug!(%peer, "closing a connection that sends no request");
                // No request is in progress: HTTP/1.1 closes at once, HTTP/2 sends GOAWAY.
                // A client that holds on past the grace is dropped.
                connection.as_mut().graceful_shutdown();
                if let Ok(result) =
                    tokio::time::timeout(self.timeouts.idle_grace, connection.as_mut()).await
                {
                    log_end(peer, result);
                }
            }
        }
    }

    fn handshake_failed(&self, peer: SocketAddr, error: &dyn std::fmt::Display) {
        self.metrics.handshake_failures.inc();
        tracing::debug!(%peer, %error, "TLS handshake failed");
    }
}

fn log_end(peer: SocketAddr, result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// The cap on open connections, and the connections that have not yet sent a request, oldest
/// first, which a newcomer over the cap may close.
struct Slots {
    max: usize,
    open: AtomicUsize,
    next: AtomicU64,
    unproven: Mutex<BTreeMap<u64, oneshot::Sender<()>>>,
    metrics: ConnectionMetrics,
}

/// A connection's place under the cap, and the signal that it must make room for a newcomer.
struct Slot {
    guard: SlotGuard,
    evicted: oneshot::Receiver<()>,
}

/// Gives the place back when the connection ends.
struct SlotGuard {
    slots: Arc<Slots>,
    id: u64,
}

impl Slots {
    fn new(max: usize, metrics: ConnectionMetrics) -> Self {
        Self {
            max,
            open: AtomicUsize::new(0),
            next: AtomicU64::new(0),
            unproven: Mutex::new(BTreeMap::new()),
            metrics,
        }
    }

    /// A place for a new connection: a free one, or that of the oldest connection still
    /// waiting for its first request, which is told to close; `None` when every open
    /// connection has sent a request.
    fn admit(slots: &Arc<Self>) -> Option<Slot> {
        let mut unproven = slots.unproven.lock().unwrap_or_else(|e| e.into_inner());
        let open = slots.open.load(Ordering::Relaxed);
        if open >= slots.max {
            // An evicted connection counts until its task has ended, a moment later; the
            // headroom lets a flood of newcomers evict without the count running away.
            if open >= slots.max + slots.max / 8 + 8 {
                return None;
            }
            let (_, oldest) = unproven.pop_first()?;
            // Sending fails only if that connection is already ending.
            let _ = oldest.send(());
        }
        slots.open.fetch_add(1, Ordering::Relaxed);
        slots.metrics.open.inc();
        let id = slots.next.fetch_add(1, Ordering::Relaxed);
        let (tell, evicted) = oneshot::channel();
        unproven.insert(id, tell);
        Some(Slot {
            guard: SlotGuard {
                slots: slots.clone(),
                id,
            },
            evicted,
        })
    }
}

impl SlotGuard {
    /// The connection has sent a request: newcomers can no longer take its place.
    fn proven(&self) {
        let mut unproven = self
            .slots
            .unproven
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        unproven.remove(&self.id);
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.proven();
        self.slots.open.fetch_sub(1, Ordering::Relaxed);
        self.slots.metrics.open.dec();
    }
}

/// When a connection's requests start and end, so it can be closed when it has sent none for
/// too long.
#[derive(Clone)]
struct Activity(Arc<watch::Sender<ActivityState>>);

#[derive(Clone, Copy)]
struct ActivityState {
    /// Requests being answered.
    busy: usize,
    /// Whether any request has arrived.
    started: bool,
    /// When the connection was accepted, or its last request ended.
    since: Instant,
}

/// A request in progress on its connection, until dropped.
struct Busy(Activity);

impl Activity {
    fn new() -> Self {
        let state = ActivityState {
            busy: 0,
            started: false,
            since: Instant::now(),
        };
        Self(Arc::new(watch::Sender::new(state)))
    }

    fn start(&self) -> Busy {
        self.0.send_modify(|state| {
            state.busy += 1;
            state.started = true;
        });
        Busy(self.clone())
    }

    /// Completes when the connection has had no request for `first` since it was accepted
    /// (before its first request) or for `idle` since its last one ended.
    async fn expired(&self, first: Duration, idle: Duration) {
        let mut changes = self.0.subscribe();
        loop {
            let state = *changes.borrow_and_update();
            if state.busy == 0 {
                let limit = if state.started { idle } else { first };
                let deadline = state.since + limit;
                if Instant::now() >= deadline {
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    _ = changes.changed() => {}
                }
            } else if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.0.send_modify(|state| {
            state.busy -= 1;
            state.since = Instant::now();
        });
    }
}

/// The connection's stream, which after an early error answer on HTTP/1.1 is not simply
/// dropped: closing a socket with request bytes unread makes the kernel send a reset, which
/// can destroy the answer before the client has read it.
struct Lingering {
    stream: Option<TlsStream<TcpStream>>,
    linger: Arc<AtomicBool>,
    time: Duration,
}

impl Lingering {
    fn stream(&mut self) -> io::Result<&mut TlsStream<TcpStream>> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_read(cx, buf),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_write(cx, buf),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_flush(cx),
            Err(error) => Poll::Ready(Err(error)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stream() {
            Ok(stream) => Pin::new(stream).poll_shutdown(cx),
            Err(error) => Poll::Ready(Err(error)),
        }
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        if !self.linger.load(Ordering::Relaxed) {
            return;
        }
        let (Some(stream), Ok(runtime)) =
            (self.stream.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let time = self.time;
        runtime.spawn(async move {
            // The answer is written; what is left to read is the rest of the request, never
            // answered, so the raw socket is read without decrypting it.
            let (mut tcp, _) = stream.into_inner();
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut tcp).await;
            let mut buffer = vec![0; 64 * 1024];
            let mut left = LINGER_BYTES;
            let _ = tokio::time::timeout(time, async {
                while left > 0 {
                    match tcp.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => left = left.saturating_sub(read),
                    }
                }
            })
            .await;
        });
    }
}
