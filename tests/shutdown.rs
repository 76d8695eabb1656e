//! Restarts that lose nothing, over real sockets: after the shutdown signal the server reports
//! not ready at once, serves on for the shutdown delay while telling HTTP/1.1 clients to
//! reconnect, then stops accepting, sends HTTP/2 clients GOAWAY and drains. A client sending
//! through all of it sees every request answered, or refused before it was written.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::{TestServer, fixed_store, localhost_certificate, quick_timeouts, review_request};
use testkit::https::{Client, Delivery};
use tokio::time::Instant;
use validator_webhook::webhook::{metrics::ReviewLabels, server::Timeouts};

const HTTP1: &[u8] = b"http/1.1";
const HTTP2: &[u8] = b"h2";

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("https://localhost{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn closes(response: &http::Response<Bytes>) -> bool {
    response
        .headers()
        .get(http::header::CONNECTION)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"))
}

#[tokio::test]
async fn readiness_fails_at_once_while_reviews_go_on_through_the_delay() {
    let certificate = localhost_certificate();
    let timeouts = Timeouts {
        shutdown_delay: Duration::from_millis(1500),
        ..quick_timeouts()
    };
    let mut server = TestServer::start(fixed_store(&certificate), timeouts).await;
    let pem = &certificate.cert_pem;
    let mut http2 = support::client(server.addr, pem, HTTP2).await;
    let mut http1 = support::client(server.addr, pem, HTTP1).await;
    let before = http1.send(review_request("pod-denied")).await.unwrap();
    assert!(!closes(&before), "keep-alive while serving normally");
    assert_eq!(http2.send(get("/readyz")).await.unwrap().status(), 200);

    server.shutdown();
    let signalled = Instant::now();
    loop {
        let status = http2.send(get("/readyz")).await.unwrap().status();
        if status == 503 {
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_millis(200),
            "still ready after the signal"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // During the delay: the same HTTP/2 connection and a fresh HTTP/1.1 one both get reviews,
    // and every HTTP/1.1 answer ends its connection.
    let during = http1.send(review_request("pod-denied")).await.unwrap();
    assert_eq!(during.status(), 200);
    assert!(
        closes(&during),
        "HTTP/1.1 told to reconnect during the delay"
    );
    let mut fresh = support::client(server.addr, pem, HTTP1).await;
    let answer = fresh.send(review_request("pod-allowed")).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(closes(&answer));
    let review = http2
        .send(review_request("deployment-denied"))
        .await
        .unwrap();
    assert_eq!(review.status(), 200);
    assert!(String::from_utf8_lossy(review.body()).contains("Invalid image name"));
    assert!(
        signalled.elapsed() < Duration::from_millis(1500),
        "all of the above within the delay"
    );
    assert!(!server.task.is_finished(), "still serving within the delay");

    tokio::time::timeout(Duration::from_secs(5), &mut server.task)
        .await
        .expect("drained after the delay")
        .unwrap();
    assert!(
        signalled.elapsed() >= Duration::from_millis(1500),
        "served the whole delay"
    );
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "no longer accepting"
    );
}

/// What one client saw while sending as fast as it could through a shutdown.
#[derive(Debug, Default)]
struct Tally {
    answered: usize,
    answered_after_signal: usize,
    told_to_close: usize,
    refused_before_sending: usize,
    lost: Vec<String>,
}

/// Sends reviews on keep-alive connections until the server accepts no more, reconnecting
/// whenever the server says so.
async fn send_until_refused(
    addr: std::net::SocketAddr,
    ca_pem: String,
    alpn: &'static [u8],
    signalled: Arc<AtomicBool>,
) -> Tally {
    let mut tally = Tally::default();
    let mut client: Option<Client> = None;
    loop {
        let connected = match client.as_mut() {
            Some(connected) => connected,
            None => match support::try_client(addr, &ca_pem, alpn).await {
                Ok(connected) => client.insert(connected),
                // The listener is gone: nothing was sent on this attempt.
                Err(_) => return tally,
            },
        };
        match connected.try_send(review_request("pod-denied")).await {
            Delivery::Answered(response) => {
                assert_eq!(response.status(), 200);
                assert!(String::from_utf8_lossy(response.body()).contains("Invalid image name"));
                tally.answered += 1;
                if signalled.load(Ordering::Relaxed) {
                    tally.answered_after_signal += 1;
                }
                if closes(&response) {
                    tally.told_to_close += 1;
                    client = None;
                }
            }
            Delivery::Refused(_) => {
                tally.refused_before_sending += 1;
                client = None;
            }
            Delivery::Lost(error) => {
                tally.lost.push(format!("{error:?}"));
                client = None;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_clients_sending_through_a_shutdown_lose_no_request() {
    let certificate = localhost_certificate();
    let timeouts = Timeouts {
        shutdown_delay: Duration::from_millis(700),
        ..quick_timeouts()
    };
    let mut server = TestServer::start(fixed_store(&certificate), timeouts).await;
    let signalled = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = [HTTP1, HTTP1, HTTP1, HTTP1, HTTP2, HTTP2, HTTP2, HTTP2]
        .into_iter()
        .map(|alpn| {
            let task = tokio::spawn(send_until_refused(
                server.addr,
                certificate.cert_pem.clone(),
                alpn,
                signalled.clone(),
            ));
            (alpn, task)
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    signalled.store(true, Ordering::Relaxed);
    server.shutdown();
    tokio::time::timeout(Duration::from_secs(10), &mut server.task)
        .await
        .expect("drained")
        .unwrap();

    let mut answered = 0;
    for (alpn, task) in clients {
        let protocol = String::from_utf8_lossy(alpn);
        let tally = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the client stopped once the server was gone")
            .unwrap();
        assert!(tally.lost.is_empty(), "{protocol}: {tally:?}");
        answered += tally.answered;
        assert!(
            tally.answered_after_signal > 0,
            "{protocol}: served after the signal: {tally:?}"
        );
        if alpn == HTTP1 {
            assert!(
                tally.told_to_close > 0,
                "{protocol}: told to reconnect: {tally:?}"
            );
        }
    }
    // No request the clients were told to send again had been reviewed.
    let labels = ReviewLabels {
        kind: "Pod",
        operation: "CREATE",
        verdict: "denied",
        mode: "enforce",
    };
    let reviewed = server
        .webhook
        .metrics()
        .reviews
        .get_or_create(&labels)
        .get();
    assert_eq!(reviewed, answered as u64);
}
