//! The webhook's Prometheus series, the registry they are served from, and the plain-HTTP
//! listener that serves them on `/metrics`.

use std::{convert::Infallible, sync::Arc, sync::atomic::AtomicI64, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::server::ConnectionMetrics;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

/// Buckets fine enough to read a sub-millisecond p99, wide enough to see a stuck review.
const DURATION_BUCKETS: [f64; 18] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.000_75, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    pub kind: &'static str,
    pub operation: &'static str,
    pub verdict: &'static str,
    /// What the verdict did: `enforce`, `warn` or `audit`.
    pub mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub reviews: Family<ReviewLabels, Counter>,
    pub review_duration: Histogram,
    pub reviews_in_flight: Gauge,
    pub rejections: Family<RejectionLabels, Counter>,
    pub tls_handshake_failures: Counter,
    pub connections_open: Gauge,
    pub connections_refused: Counter,
    pub connections_timed_out: Counter,
    pub client_disconnects: Counter,
    pub certificate_expiry: Gauge<i64, AtomicI64>,
    pub certificate_reloads: Family<ReloadLabels, Counter>,
    pub policy_reloads: Family<ReloadLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("validator_webhook");
        let reviews = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "reviews",
            "AdmissionReviews answered, by object kind, operation, verdict and the mode it was applied in",
            reviews.clone(),
        );
        let review_duration = Histogram::new(DURATION_BUCKETS);
        registry.register_with_unit(
            "review_duration",
            "Time from receiving a review request to having its response ready",
            Unit::Seconds,
            review_duration.clone(),
        );
        let reviews_in_flight = Gauge::default();
        registry.register(
            "reviews_in_flight",
            "Reviews being read or evaluated",
            reviews_in_flight.clone(),
        );
        let rejections = Family::<RejectionLabels, Counter>::default();
        registry.register(
            "http_rejections",
            "Requests answered with an HTTP error instead of a review, by status code",
            rejections.clone(),
        );
        let tls_handshake_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "Connections dropped because their TLS handshake failed or timed out",
            tls_handshake_failures.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "HTTPS connections open, handshaking or serving",
            connections_open.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed on arrival because every place under the cap was taken by a connection that had sent a request",
            connections_refused.clone(),
        );
        let connections_timed_out = Counter::default();
        registry.register(
            "connections_timed_out",
            "Connections closed for sending no request in time after accept, none for the idle timeout, or to make room for a newcomer before sending any",
            connections_timed_out.clone(),
        );
        let client_disconnects = Counter::default();
        registry.register(
            "client_disconnects",
            "Reviews abandoned because the client went away before its request body had arrived",
            client_disconnects.clone(),
        );
        let certificate_expiry = Gauge::<i64, AtomicI64>::default();
        registry.register_with_unit(
            "certificate_expiry_timestamp",
            "When the serving certificate expires, in seconds since the Unix epoch",
            Unit::Seconds,
            certificate_expiry.clone(),
        );
        let policy_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Attempts to reload the policy file after it changed, by result",
            policy_reloads.clone(),
        );
        let certificate_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "certificate_reloads",
            "Attempts to reload the serving certificate from disk, by result",
            certificate_reloads.clone(),
        );
        Self {
            registry,
            reviews,
            review_duration,
            reviews_in_flight,
            rejections,
            tls_handshake_failures,
            connections_open,
            connections_refused,
            connections_timed_out,
            client_disconnects,
            certificate_expiry,
            certificate_reloads,
            policy_reloads,
        }
    }
}

impl Metrics {
    pub fn observe_review(&self, labels: ReviewLabels, took: Duration) {
        self.reviews.get_or_create(&labels).inc();
        self.review_duration.observe(took.as_secs_f64());
    }

    pub fn observe_rejection(&self, code: u16) {
        self.rejections
            .get_or_create(&RejectionLabels { code })
            .inc();
    }

    /// Where the server counts its connections.
    pub fn connection_metrics(&self) -> ConnectionMetrics {
        ConnectionMetrics {
            handshake_failures: self.tls_handshake_failures.clone(),
            open: self.connections_open.clone(),
            refused: self.connections_refused.clone(),
            timed_out: self.connections_timed_out.clone(),
        }
    }

    /// The text exposition format served on `/metrics`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    /// Counts one review as in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.reviews_in_flight.inc();
        InFlight(&self.reviews_in_flight)
    }
}

pub struct InFlight<'m>(&'m Gauge<i64, AtomicI64>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `metrics` on `/metrics` over plain HTTP/1.1 until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(respond(&metrics, request.uri().path())) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(super::server::HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(metrics: &Metrics, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => (StatusCode::OK, CONTENT_TYPE, metrics.encode()),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "metrics are served on /metrics\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_every_series_under_the_webhook_prefix() {
        let metrics = Metrics::default();
        let labels = ReviewLabels {
            kind: "Deployment",
            operation: "CREATE",
            verdict: "denied",
            mode: "enforce",
        };
        metrics.observe_review(labels, Duration::from_micros(80));
        metrics.observe_rejection(413);
        metrics.tls_handshake_failures.inc();
        let text = metrics.encode();
        for line in [
            r#"validator_webhook_reviews_total{kind="Deployment",operation="CREATE",verdict="denied",mode="enforce"} 1"#,
            r#"validator_webhook_review_duration_seconds_bucket{le="0.0001"} 1"#,
            r#"validator_webhook_review_duration_seconds_bucket{le="0.00005"} 0"#,
            "validator_webhook_reviews_in_flight 0",
            r#"validator_webhook_http_rejections_total{code="413"} 1"#,
            "validator_webhook_tls_handshake_failures_total 1",
            "validator_webhook_certificate_expiry_timestamp_seconds 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn in_flight_guard_counts_while_held() {
        let metrics = Metrics::default();
        let guard = metrics.in_flight();
        assert_eq!(metrics.reviews_in_flight.get(), 1);
        drop(guard);
        assert_eq!(metrics.reviews_in_flight.get(), 0);
    }
}
