//! What a large review costs in memory while the webhook answers it. The body is read once,
//! into a buffer of its declared length, and let go once decoded; a denial repeats a few
//! hundred bytes of an image, not the image. So a review holds its size once while its body
//! arrives, and about twice its size at most, where a 2.9 MB image once cost seven times.
//!
//! The process's allocator counts the bytes held; the tests take turns, since the count is
//! the whole process's.

mod support;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    convert::Infallible,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, header};
use hyper::body::{Body, Frame};
use serde_json::Value;
use support::padded_review;
use validator_webhook::{
    policy::Policy,
    webhook::{handler::Webhook, metrics::Metrics},
};

/// The system allocator, keeping count of the bytes held now and of the most held at once.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static MOST: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let held = HELD.fetch_add(bytes, Ordering::Relaxed) + bytes;
    MOST.fetch_max(held, Ordering::Relaxed);
}

// SAFETY: every call goes to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    /// Counted as a copy: the new block is held before the old one is given back.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size);
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        let freed = if moved.is_null() {
            new_size
        } else {
            layout.size()
        };
        HELD.fetch_sub(freed, Ordering::Relaxed);
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One measurement at a time.
static MEASURING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What answering one review took.
struct Measured {
    /// The length of its body.
    size: usize,
    /// The most bytes held at once, beyond those held before.
    most: usize,
    response: http::Response<Bytes>,
}

/// Makes a body, then has the webhook answer it, counting what it holds. The count is the
/// whole process's, so the tests take turns, making their bodies included.
async fn answer_measured(make_body: impl FnOnce() -> Vec<u8>) -> Measured {
    let _turn = MEASURING.lock().await;
    let body = Bytes::from(make_body());
    let webhook = Webhook::new(Policy::default(), Arc::new(Metrics::default()));
    let request = Request::post("/validate")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Frames::of(body.clone()))
        .unwrap();
    let before = HELD.load(Ordering::Relaxed);
    MOST.store(before, Ordering::Relaxed);
    let response = webhook.answer(request).await;
    let most = MOST.load(Ordering::Relaxed).saturating_sub(before);
    let (parts, full) = response.into_parts();
    let answer = http_body_util::BodyExt::collect(full).await.unwrap();
    Measured {
        size: body.len(),
        most,
        response: http::Response::from_parts(parts, answer.to_bytes()),
    }
}

/// A body that arrives as a connection delivers it: in frames of 16 KiB, each a buffer of its
/// own.
struct Frames {
    whole: Bytes,
    sent: usize,
}

impl Frames {
    const FRAME: usize = 16 * 1024;

    fn of(whole: Bytes) -> Self {
        Self { whole, sent: 0 }
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let start = self.sent;
        let end = (start + Self::FRAME).min(self.whole.len());
        if start == end {
            return Poll::Ready(None);
        }
        self.sent = end;
        let frame = Bytes::copy_from_slice(&self.whole[start..end]);
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

#[tokio::test]
async fn a_body_is_held_once_while_it_arrives() {
    // 4 MiB of which the policy reads a few hundred bytes: what is held is the body itself.
    let measured = answer_measured(|| padded_review(4 << 20)).await;
    let (size, most) = (mib(measured.size), mib(measured.most));
    println!("a {size:.1} MiB body: {most:.1} MiB held at most");
    assert_eq!(measured.response.status(), 200);
    assert!(
        measured.most < measured.size * 5 / 4,
        "a {size:.1} MiB body held {most:.1} MiB at once"
    );
}

#[tokio::test]
async fn a_denied_pod_with_a_long_image_costs_at_most_about_twice_its_size() {
    // The case: an image string of 2.9 MB, which the API server accepts.
    let measured = answer_measured(|| {
        let fixture = std::fs::read("tests/fixtures/image-review.json").unwrap();
        let mut review: Value = serde_json::from_slice(&fixture).unwrap();
        let image = format!("registry.example.com/{}:1.0", "a".repeat(2_900_000));
        review["request"]["object"]["spec"]["containers"][0]["image"] = Value::from(image);
        serde_json::to_vec(&review).unwrap()
    })
    .await;
    let (size, most) = (mib(measured.size), mib(measured.most));
    println!("a {size:.1} MiB review: {most:.1} MiB held at most");
    assert_eq!(measured.response.status(), 200);
    let reply: Value = serde_json::from_slice(measured.response.body()).unwrap();
    assert_eq!(reply["response"]["allowed"], false);
    assert!(
        measured.most < measured.size * 9 / 4,
        "a {size:.1} MiB review held {most:.1} MiB at once"
    );
}
