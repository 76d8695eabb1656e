//! Every HTTP request the webhook answers, and the one table of how bad input is answered.
//!
//! | request                                   | answer                         |
//! |-------------------------------------------|--------------------------------|
//! | `POST /validate` with an AdmissionReview  | 200, the AdmissionReview reply |
//! | `GET /healthz`                            | 200 while the process runs     |
//! | `GET /readyz`                             | 200, or 503 once draining      |
//! | any other path                            | 404                            |
//! | another method on a known path            | 405 with `Allow`               |
//! | `Content-Type` other than JSON            | 415                            |
//! | body over [`MAX_BODY_BYTES`]              | 413, without reading it all    |
//! | body not complete within the body timeout | 408                            |
//! | no room in the [`BodyBudget`] within its wait | 429 with `Retry-After`     |
//! | client gone before its body arrived       | nothing anyone reads; counted apart, not a 400 |
//! | empty, not JSON, not an AdmissionReview   | 400                            |
//!
//! Every error answer is a JSON `Status` saying why, as the API server writes its own.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};

use super::policy_file::{self, SharedConfig};
use super::{
    budget::{BodyBudget, DEFAULT_BUDGET},
    metrics::{Metrics, ReviewLabels},
    review::{self, ReviewError},
    server::{Handler, Readiness},
};
use crate::policy::config::PolicyConfig;

/// An AdmissionReview carries the object and, on UPDATE, the old object: both can be near the
/// API server's 3 MiB object limit, so allow a little over twice that.
pub const MAX_BODY_BYTES: usize = 7 * 1024 * 1024;

/// How long a client may take to send a request body once its headers are in.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub const VALIDATE_PATH: &str = "/validate";

/// The webhook's routes: the policy, its metrics and whether it takes reviews.
pub struct Webhook {
    config: SharedConfig,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    max_body_bytes: usize,
    body_timeout: Duration,
    budget: BodyBudget,
}

impl Handler for Webhook {
    fn handle(
        &self,
        request: Request<Incoming>,
    ) -> impl Future<Output = Response<Full<Bytes>>> + Send {
        self.answer(request)
    }
}

impl Webhook {
    /// A webhook with a fixed configuration (a [`crate::policy::Policy`] is one enforced
    /// everywhere).
    pub fn new(config: impl Into<PolicyConfig>, metrics: Arc<Metrics>) -> Self {
        Self::shared(policy_file::shared(config.into()), metrics)
    }

    /// A webhook that reviews with whatever configuration `config` holds at the time, which a
    /// policy file's reload replaces.
    pub fn shared(config: SharedConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            config,
            metrics,
            readiness: Readiness::default(),
            max_body_bytes: MAX_BODY_BYTES,
            body_timeout: BODY_TIMEOUT,
            budget: BodyBudget::new(DEFAULT_BUDGET),
        }
    }

    /// Bounds the bytes of request bodies held at once.
    pub fn with_body_budget(mut self, budget: BodyBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Shortens the body limits, so tests can reach them quickly.
    pub fn with_body_limits(mut self, max_bytes: usize, timeout: Duration) -> Self {
        self.max_body_bytes = max_bytes;
        self.body_timeout = timeout;
        self
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// What `/readyz` reports; the server clears it when it starts shutting down, so the
    /// Service stops sending reviews.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// Answers any request, with any body (tests send bodies of their own).
    pub async fn answer<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let answer = match (request.method(), request.uri().path()) {
            (&Method::POST, VALIDATE_PATH) => self.validate(request).await,
            (&Method::GET | &Method::HEAD, "/healthz") => Ok(text(StatusCode::OK, "ok")),
            (&Method::GET | &Method::HEAD, "/readyz") => Ok(if self.readiness.is_ready() {
                text(StatusCode::OK, "ok")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
            }),
            (_, VALIDATE_PATH) => Err(Rejection::MethodNotAllowed("POST")),
            (_, "/healthz" | "/readyz") => Err(Rejection::MethodNotAllowed("GET, HEAD")),
            (_, path) => Err(Rejection::NotFound(path.to_owned())),
        };
        answer.unwrap_or_else(|rejection| {
            let response = rejection.response();
            if let Rejection::ClientGone(_) = rejection {
                self.metrics.client_disconnects.inc();
                tracing::debug!(%rejection, "client gone");
                return response;
            }
            self.metrics.observe_rejection(response.status().as_u16());
            if response.status().is_server_error() {
                tracing::error!(%rejection, "review failed");
            } else {
                tracing::debug!(%rejection, "request rejected");
            }
            response
        })
    }

    async fn validate<B>(&self, request: Request<B>) -> Result<Response<Full<Bytes>>, Rejection>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let _in_flight = self.metrics.in_flight();
        check_content_type(request.headers().get(header::CONTENT_TYPE))?;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_body_bytes as u64) {
            return Err(Rejection::TooLarge(self.max_body_bytes));
        }
        let body = request.into_body();
        let body = tokio::time::timeout(self.body_timeout, self.read_body(body, declared));
        let body = body
            .await
            .map_err(|_| Rejection::Timeout(self.body_timeout))??;
        let reviewed = review::review_bytes(&self.config.load(), body)?;
        let labels = ReviewLabels {
            kind: reviewed.kind,
            operation: reviewed.operation,
            verdict: reviewed.verdict,
            mode: reviewed.mode,
        };
        self.metrics.observe_review(labels, started.elapsed());
        Ok(json(StatusCode::OK, reviewed.body))
    }
}

impl Webhook {
    /// Reads a body into one buffer, within the body limit and the memory budget. With a
    /// declared length the buffer is reserved and allocated once, so the body is never copied
    /// from frame to frame.
    async fn read_body<B>(&self, body: B, declared: Option<u64>) -> Result<Bytes, Rejection>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let declared = declared.map_or(0, |length| length as usize);
        let mut reservation = match self.budget.reserve(declared).await {
            Some(reservation) => reservation,
            None => return Err(Rejection::Busy),
        };
        let mut buffer = BytesMut::with_capacity(declared);
        let mut body = std::pin::pin!(body);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| Rejection::from_body_error(error.into()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let length = buffer.len() + data.len();
            if length > self.max_body_bytes {
                return Err(Rejection::TooLarge(self.max_body_bytes));
            }
            if !reservation.grow_to(length) {
                return Err(Rejection::Busy);
            }
            buffer.extend_from_slice(&data);
        }
        Ok(buffer.freeze())
    }
}

fn check_content_type(value: Option<&HeaderValue>) -> Result<(), Rejection> {
    let Some(value) = value else { return Ok(()) };
    let media_type = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default();
    if media_type.trim().eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(Rejection::MediaType(
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ))
    }
}

/// Every way a request is refused before or instead of a review.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("no such path {0:?}; reviews are posted to {VALIDATE_PATH}")]
    NotFound(String),
    #[error("method not allowed; this path takes {0}")]
    MethodNotAllowed(&'static str),
    #[error("content type {0:?} is not supported; send application/json")]
    MediaType(String),
    #[error("the request body is larger than the {0} byte limit")]
    TooLarge(usize),
    #[error("the request body did not arrive within {0:?}")]
    Timeout(Duration),
    #[error("the request body could not be read: {0}")]
    Unreadable(String),
    #[error("the client went away before its request body arrived: {0}")]
    ClientGone(String),
    #[error("too many large reviews at once; retry shortly")]
    Busy,
    #[error(transparent)]
    Review(#[from] ReviewError),
}

impl Rejection {
    /// The status and `Status.reason` each rejection gets: the table in the module docs.
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
            Self::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            Self::MediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
            Self::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "Timeout"),
            Self::Busy => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
            Self::Review(ReviewError::Encode(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
            }
            Self::Unreadable(_) | Self::ClientGone(_) | Self::Review(_) => {
                (StatusCode::BAD_REQUEST, "BadRequest")
            }
        }
    }

    /// A body that failed to arrive: its client went away (the connection closed mid-body, or
    /// an HTTP/2 stream was reset), or sent something that is not a body.
    fn from_body_error(error: Box<dyn std::error::Error + Send + Sync>) -> Self {
        let mut gone = false;
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
        while let Some(error) = cause {
            if let Some(hyper) = error.downcast_ref::<hyper::Error>() {
                gone |= hyper.is_incomplete_message() || hyper.is_canceled() || hyper.is_closed();
            } else if let Some(h2) = error.downcast_ref::<h2::Error>() {
                gone |= h2.is_reset() || h2.is_io() || h2.is_go_away();
            } else if let Some(io) = error.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::{
                    BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof,
                };
                gone |= matches!(
                    io.kind(),
                    UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
                );
            }
            cause = error.source();
        }
        if gone {
            Self::ClientGone(error.to_string())
        } else {
            Self::Unreadable(error.to_string())
        }
    }

    fn response(&self) -> Response<Full<Bytes>> {
        let (status, reason) = self.status();
        let body = serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": self.to_string(),
            "reason": reason,
            "code": status.as_u16(),
        });
        let mut response = json(status, body.to_string().into_bytes());
        if let Self::MethodNotAllowed(allow) = self {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Self::Busy = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Self::TooLarge(_) | Self::Timeout(_) | Self::Busy = self {
            // The rest of the body may still be on its way: don't read it, end the connection.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
