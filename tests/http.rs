//! The HTTP contract, in process: each request fixture goes through the same handler the
//! server runs, without a socket, and its status, headers and body are pinned in `snapshots/`.

use std::{convert::Infallible, path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use rstest::rstest;
use serde::Deserialize;
use serde_json::Value;
use validator_webhook::{
    policy::Policy,
    webhook::{handler::Webhook, metrics::Metrics},
};

#[derive(Deserialize)]
struct Fixture {
    method: String,
    path: String,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    body: Option<String>,
    body_file: Option<PathBuf>,
    body_size: Option<usize>,
}

impl Fixture {
    fn load(path: &PathBuf) -> (Self, Bytes) {
        let fixture: Self =
            serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let body = match (&fixture.body, &fixture.body_file, fixture.body_size) {
            (Some(text), _, _) => Bytes::from(text.clone()),
            (_, Some(file), _) => {
                Bytes::from(std::fs::read(path.parent().unwrap().join(file)).unwrap())
            }
            (_, _, Some(size)) => Bytes::from(vec![b' '; size]),
            _ => Bytes::new(),
        };
        (fixture, body)
    }
}

fn app() -> Webhook {
    Webhook::new(Policy::default(), Arc::new(Metrics::default()))
}

/// Status, the headers that carry meaning, and the body (as JSON where it is JSON).
async fn describe(response: http::Response<Full<Bytes>>) -> Value {
    let status = response.status().as_u16();
    let headers: serde_json::Map<String, Value> = ["content-type", "allow", "connection"]
        .into_iter()
        .filter_map(|name| {
            let value = response.headers().get(name)?.to_str().ok()?;
            Some((name.to_owned(), Value::from(value)))
        })
        .collect();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&body)));
    serde_json::json!({ "status": status, "headers": headers, "body": body })
}

#[rstest]
#[tokio::test]
async fn answers_every_request_fixture_as_pinned(
    #[files("tests/fixtures/http/*.yaml")] path: PathBuf,
) {
    let (fixture, body) = Fixture::load(&path);
    let mut request = Request::builder()
        .method(fixture.method.as_str())
        .uri(fixture.path.as_str());
    for (name, value) in &fixture.headers {
        request = request.header(name, value);
    }
    let response = app().answer(request.body(Full::new(body)).unwrap()).await;
    let described = describe(response).await;

    // Every error answer says why, as a Status.
    if described["status"].as_u64() != Some(200)
        && described["headers"]["content-type"] == "application/json"
    {
        assert_eq!(described["body"]["kind"], "Status");
        assert_eq!(described["body"]["code"], described["status"]);
        assert!(!described["body"]["message"].as_str().unwrap().is_empty());
    }

    let name = format!("http__{}", path.file_stem().unwrap().to_string_lossy());
    insta::with_settings!({
        snapshot_path => "../snapshots",
        prepend_module_to_snapshot => false,
        input_file => &path,
        omit_expression => true,
    }, {
        insta::assert_json_snapshot!(name, described);
    });
}

#[tokio::test]
async fn stops_being_ready_when_draining_but_stays_alive() {
    let app = app();
    app.readiness().set(false);
    let get = |path: &str| Request::get(path).body(Full::new(Bytes::new())).unwrap();
    assert_eq!(
        app.answer(get("/readyz")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(app.answer(get("/healthz")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_body_that_never_finishes_times_out() {
    let app = app().with_body_limits(1024, Duration::from_millis(200));
    let body = StreamBody::new(stalled_after(b"{\"apiVersion\":"));
    let request = Request::post("/validate")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), app.answer(request))
        .await
        .expect("handler hung");
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(response.headers()["connection"], "close");
}

#[tokio::test]
async fn counts_reviews_and_rejections_in_metrics() {
    let app = app();
    let review = std::fs::read("tests/fixtures/reviews/deployment-denied.json").unwrap();
    let post = |body: Vec<u8>| {
        Request::post("/validate")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    app.answer(post(review)).await;
    app.answer(post(b"nope".to_vec())).await;
    let text = app.metrics().encode();
    assert!(text.contains(r#"validator_webhook_reviews_total{kind="Deployment",operation="CREATE",verdict="denied",mode="enforce"} 1"#), "{text}");
    assert!(
        text.contains(r#"validator_webhook_http_rejections_total{code="400"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("validator_webhook_review_duration_seconds_count 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_kind_the_policy_does_not_inspect_is_counted_as_other() {
    let app = app();
    let review = std::fs::read_to_string("tests/fixtures/reviews/deployment-denied.json").unwrap();
    let mut review: serde_json::Value = serde_json::from_str(&review).unwrap();
    for (n, kind) in ["MadeUpKind1", "MadeUpKind2", "Deployment"]
        .iter()
        .enumerate()
    {
        let gvk = &mut review["request"]["kind"];
        gvk["group"] = "example.com".into();
        gvk["kind"] = (*kind).into();
        review["request"]["uid"] = format!("kind-{n}").into();
        let request = Request::post("/validate")
            .body(Full::new(Bytes::from(review.to_string())))
            .unwrap();
        assert_eq!(app.answer(request).await.status(), StatusCode::OK);
    }
    let text = app.metrics().encode();
    assert!(
        text.contains(r#"validator_webhook_reviews_total{kind="other",operation="CREATE",verdict="not_inspected",mode="enforce"} 3"#),
        "{text}"
    );
    assert!(!text.contains("MadeUpKind"), "{text}");
    assert!(
        !text.contains(r#"kind="Deployment""#),
        "an example.com Deployment is not the apps one: {text}"
    );
}

/// A body that yields `first` and then never ends, like a client that stalls mid-body.
fn stalled_after(
    first: &'static [u8],
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    struct Stalled(Option<Result<Frame<Bytes>, Infallible>>);
    impl futures_core::Stream for Stalled {
        type Item = Result<Frame<Bytes>, Infallible>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            match self.0.take() {
                Some(frame) => std::task::Poll::Ready(Some(frame)),
                None => std::task::Poll::Pending,
            }
        }
    }
    Stalled(Some(Ok(Frame::data(Bytes::from_static(first)))))
}
