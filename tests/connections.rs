//! Connections the server bounds whatever their client does: silent ones, half-sent prefaces,
//! HTTP/2 clients that answer PINGs and send nothing, more connections than the cap, uploads
//! that go on after an early answer, and bodies larger than the memory budget.

mod support;

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{
    TestServer, connect_tls, fixed_store, localhost_certificate, padded_review, quick_timeouts,
    review_request,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinSet,
    time::{Instant, timeout},
};
use validator_webhook::webhook::{budget::BodyBudget, server::Timeouts};

const HTTP1: &[u8] = b"http/1.1";
const HTTP2: &[u8] = b"h2";

/// Whether the server closes `stream` within `within`: a read sees the end, or a reset.
async fn closed_within(stream: &mut (impl AsyncRead + Unpin), within: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// An HTTP/2 connection whose client answers PINGs (hyper's client does) and sends one review;
/// the returned task ends when the server closes the connection.
async fn http2_client(addr: SocketAddr, ca: &str, requests: usize) -> tokio::task::JoinHandle<()> {
    let stream = connect_tls(addr, ca, HTTP2).await;
    let (mut send, connection) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    for _ in 0..requests {
        let response = send
            .send_request(review_request("pod-allowed"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    tokio::spawn(async move {
        let _send = send;
        let _ = task.await;
    })
}

async fn good_reviews(addr: SocketAddr, ca: &str, count: usize) -> usize {
    let mut served = 0;
    for i in 0..count {
        let alpn = if i % 2 == 0 { HTTP1 } else { HTTP2 };
        let Ok(mut client) = support::try_client(addr, ca, alpn).await else {
            continue;
        };
        if let Ok(response) = client.send(review_request("pod-denied")).await {
            served += usize::from(response.status() == 200);
        }
    }
    served
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed_while_good_reviews_are_served() {
    let certificate = localhost_certificate();
    let pem = &certificate.cert_pem;
    let timeouts = Timeouts {
        first_request: Duration::from_millis(600),
        idle: Duration::from_millis(900),
        ..quick_timeouts()
    };
    let server = TestServer::start(fixed_store(&certificate), timeouts).await;

    let mut plain = Vec::new();
    for _ in 0..10 {
        plain.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let mut silent_tls = Vec::new();
    let mut partial_preface = Vec::new();
    for _ in 0..5 {
        silent_tls.push(connect_tls(server.addr, pem, HTTP1).await);
        silent_tls.push(connect_tls(server.addr, pem, HTTP2).await);
        let mut stream = connect_tls(server.addr, pem, HTTP2).await;
        stream
            .write_all(&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..23])
            .await
            .unwrap();
        partial_preface.push(stream);
    }
    // Preface and SETTINGS, no request: the handshake is complete, and PINGs would be answered.
    let mut no_request = http2_client(server.addr, pem, 0).await;
    // One review, then nothing but PING answers.
    let mut idle = http2_client(server.addr, pem, 1).await;

    assert_eq!(good_reviews(server.addr, pem, 10).await, 10);

    let within = Duration::from_secs(3);
    for stream in &mut plain {
        assert!(
            closed_within(stream, within).await,
            "a silent TCP connection"
        );
    }
    for stream in &mut silent_tls {
        assert!(
            closed_within(stream, within).await,
            "a silent TLS connection"
        );
    }
    for stream in &mut partial_preface {
        assert!(
            closed_within(stream, within).await,
            "23 bytes of the preface"
        );
    }
    assert!(
        timeout(within, &mut no_request).await.is_ok(),
        "an HTTP/2 client without a request"
    );
    assert!(
        timeout(within, &mut idle).await.is_ok(),
        "an idle HTTP/2 client"
    );
    let metrics = server.webhook.metrics();
    assert!(metrics.connections_timed_out.get() >= 17);
    assert!(metrics.tls_handshake_failures.get() >= 10);
}

#[tokio::test]
async fn a_connection_that_keeps_sending_reviews_is_not_idle() {
    let certificate = localhost_certificate();
    let timeouts = Timeouts {
        first_request: Duration::from_millis(400),
        idle: Duration::from_millis(400),
        ..quick_timeouts()
    };
    let server = TestServer::start(fixed_store(&certificate), timeouts).await;
    let mut client = support::client(server.addr, &certificate.cert_pem, HTTP2).await;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let response = client.send(review_request("pod-allowed")).await.unwrap();
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test]
async fn over_the_cap_a_newcomer_displaces_the_oldest_silent_connection() {
    let certificate = localhost_certificate();
    let pem = &certificate.cert_pem;
    let timeouts = Timeouts {
        first_request: Duration::from_secs(30),
        ..quick_timeouts()
    };
    let server = TestServer::start_with(fixed_store(&certificate), timeouts, 4, |w| w).await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(connect_tls(server.addr, pem, HTTP1).await);
    }
    assert_eq!(good_reviews(server.addr, pem, 1).await, 1);
    assert!(
        closed_within(&mut silent[0], Duration::from_secs(2)).await,
        "the oldest silent connection made room"
    );
    assert!(!closed_within(&mut silent[3], Duration::from_millis(300)).await);
    assert_eq!(server.webhook.metrics().connections_refused.get(), 0);
}

#[tokio::test]
async fn over_the_cap_with_every_connection_serving_a_newcomer_is_closed_at_once() {
    let certificate = localhost_certificate();
    let pem = &certificate.cert_pem;
    let timeouts = Timeouts {
        first_request: Duration::from_secs(30),
        idle: Duration::from_secs(30),
        ..quick_timeouts()
    };
    let server = TestServer::start_with(fixed_store(&certificate), timeouts, 3, |w| w).await;
    let mut clients = Vec::new();
    for alpn in [HTTP1, HTTP2, HTTP1] {
        let mut client = support::client(server.addr, pem, alpn).await;
        assert_eq!(
            client
                .send(review_request("pod-allowed"))
                .await
                .unwrap()
                .status(),
            200
        );
        clients.push(client);
    }
    let mut newcomer = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_within(&mut newcomer, Duration::from_millis(500)).await);
    assert_eq!(server.webhook.metrics().connections_refused.get(), 1);
    for client in &mut clients {
        let response = client.send(review_request("pod-denied")).await.unwrap();
        assert_eq!(response.status(), 200, "served connections go on");
    }
    drop(clients.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        good_reviews(server.addr, pem, 1).await,
        1,
        "a place came free"
    );
}

/// Raises this process's descriptor limit to its hard limit; returns the new soft limit.
fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    limit.rlim_cur
}

/// The server's default cap and timeouts, 10,000 silent connections held by one client (most
/// of them closed by the server as newer ones arrive, all of them kept open on the client's
/// side), and good reviews over new connections meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_silent_connections_leave_good_reviews_served() {
    const SILENT: usize = 10_000;
    const GOOD: usize = 40;
    let limit = raise_descriptor_limit();
    assert!(limit as usize > SILENT + 1_500, "descriptor limit {limit}");
    let certificate = localhost_certificate();
    let pem = certificate.cert_pem.clone();
    let timeouts = Timeouts {
        shutdown_delay: Duration::ZERO,
        ..Timeouts::default()
    };
    let server = TestServer::start_with(
        fixed_store(&certificate),
        timeouts,
        validator_webhook::webhook::server::MAX_CONNECTIONS,
        |w| w,
    )
    .await;
    let addr = server.addr;
    let started = Instant::now();
    let mut held = Vec::with_capacity(SILENT);
    let mut connecting = JoinSet::new();
    for i in 0..SILENT {
        let pem = pem.clone();
        connecting.spawn(async move {
            let tcp = TcpStream::connect(addr).await.ok()?;
            // One in fifty completes TLS, then is silent too, unless a newer connection
            // displaced it first.
            if i % 50 == 0 {
                let tls = support::tls_over(tcp, &pem, HTTP2).await;
                return Some((None, Some(tls)));
            }
            Some((Some(tcp), None))
        });
        if connecting.len() >= 256
            && let Some(Ok(Some(connection))) = connecting.join_next().await
        {
            held.push(connection);
        }
    }
    while let Some(joined) = connecting.join_next().await {
        if let Ok(Some(connection)) = joined {
            held.push(connection);
        }
    }
    let opened = started.elapsed();
    let with_tls = held
        .iter()
        .filter(|(_, tls)| matches!(tls, Some(Ok(_))))
        .count();
    let good_started = Instant::now();
    let served = good_reviews(addr, &pem, GOOD).await;
    let took = good_started.elapsed();
    let metrics = server.webhook.metrics();
    println!(
        "{} silent connections opened in {opened:?} ({with_tls} through TLS) and held; good \
         reviews served meanwhile: {served}/{GOOD} in {took:?}; server: {} open, {} closed \
         unproven, {} refused",
        held.len(),
        metrics.connections_open.get(),
        metrics.connections_timed_out.get(),
        metrics.connections_refused.get(),
    );
    assert_eq!(held.len(), SILENT);
    assert_eq!(served, GOOD);
    assert!(metrics.connections_open.get() <= 1_200);
}

/// A request whose headers promise `length` bytes of body.
fn upload_head(length: usize) -> String {
    format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    )
}

#[tokio::test]
async fn a_client_still_uploading_reads_the_413_and_the_linger_is_bounded() {
    let certificate = localhost_certificate();
    let server = TestServer::start(fixed_store(&certificate), quick_timeouts()).await;
    for _ in 0..5 {
        let stream = connect_tls(server.addr, &certificate.cert_pem, HTTP1).await;
        let (mut reader, mut writer) = tokio::io::split(stream);
        let uploading = tokio::spawn(async move {
            writer.write_all(upload_head(64 << 20).as_bytes()).await?;
            let chunk = vec![b' '; 64 * 1024];
            // Far more than the server will read: it must give up on it, in bounded time.
            for _ in 0..1024 {
                writer.write_all(&chunk).await?;
            }
            Ok::<_, std::io::Error>(())
        });
        // By now the answer is written and the socket closed for writing, with request bytes
        // still arriving: without lingering, the reset would arrive before the answer is read.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut reply = Vec::new();
        let _ = timeout(Duration::from_secs(5), reader.read_to_end(&mut reply)).await;
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 413"), "{reply:?}");
        let ended = timeout(Duration::from_secs(5), uploading).await;
        assert!(
            matches!(ended, Ok(Ok(Err(_)))),
            "the server stops reading after its linger: {ended:?}"
        );
    }
}

#[tokio::test]
async fn a_client_that_sends_its_whole_body_before_reading_gets_the_413() {
    let certificate = localhost_certificate();
    let server = TestServer::start_with(fixed_store(&certificate), quick_timeouts(), 100, |w| {
        w.with_body_limits(1 << 20, Duration::from_secs(5))
    })
    .await;
    // As most HTTP/1.1 clients do: the whole body first, then the answer. The server answers
    // 413 from the headers alone; the 6 MiB that follow must not meet a reset.
    let body = vec![b' '; 6 << 20];
    for _ in 0..5 {
        let mut stream = connect_tls(server.addr, &certificate.cert_pem, HTTP1).await;
        stream
            .write_all(upload_head(body.len()).as_bytes())
            .await
            .unwrap();
        let sent = timeout(Duration::from_secs(5), stream.write_all(&body)).await;
        assert!(matches!(sent, Ok(Ok(()))), "the upload: {sent:?}");
        let mut reply = Vec::new();
        let _ = timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
        let reply = String::from_utf8_lossy(&reply);
        assert!(reply.starts_with("HTTP/1.1 413"), "{reply:?}");
    }
}

#[tokio::test]
async fn a_client_gone_mid_body_is_counted_apart_from_bad_requests() {
    let certificate = localhost_certificate();
    let server = TestServer::start(fixed_store(&certificate), quick_timeouts()).await;
    let mut stream = connect_tls(server.addr, &certificate.cert_pem, HTTP1).await;
    stream
        .write_all(upload_head(1000).as_bytes())
        .await
        .unwrap();
    stream.write_all(b"{\"apiVersion\":").await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    let metrics = server.webhook.metrics();
    let deadline = Instant::now() + Duration::from_secs(5);
    while metrics.client_disconnects.get() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metrics.client_disconnects.get(), 1);
    let text = metrics.encode();
    assert!(!text.contains(r#"code="400""#), "{text}");
}

#[tokio::test]
async fn bodies_over_the_memory_budget_wait_then_get_429_with_retry_after() {
    let certificate = localhost_certificate();
    let pem = &certificate.cert_pem;
    let budget = BodyBudget::new(1 << 20).with_wait(Duration::from_millis(300));
    let server =
        TestServer::start_with(fixed_store(&certificate), quick_timeouts(), 100, move |w| {
            w.with_body_budget(budget)
                .with_body_limits(7 << 20, Duration::from_secs(5))
        })
        .await;
    // Holds 800 KiB of the budget: headers sent, the body still on its way.
    let mut holder = connect_tls(server.addr, pem, HTTP1).await;
    holder
        .write_all(upload_head(800 << 10).as_bytes())
        .await
        .unwrap();
    holder.write_all(b"{").await.unwrap();
    holder.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let request = |size| {
        http::Request::post("https://localhost/validate")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(padded_review(size))))
            .unwrap()
    };
    let mut client = support::client(server.addr, pem, HTTP2).await;
    let refused = client.send(request(600 << 10)).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let small = client.send(request(100 << 10)).await.unwrap();
    assert_eq!(small.status(), 200, "a review that fits goes on");

    drop(holder);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let retried = client.send(request(600 << 10)).await.unwrap();
    assert_eq!(retried.status(), 200);
}
