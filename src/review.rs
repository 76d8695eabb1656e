//! One review, bytes in and bytes out: decode the AdmissionReview, ask the policy, encode the
//! answer. Everything here is synchronous; the HTTP layer decides what a [`ReviewError`] becomes.

use kube::core::{
    DynamicObject, Resource,
    admission::{AdmissionRequest, AdmissionReview, META_API_VERSION_V1, META_KIND, Operation},
};
use serde_json::error::Category;

use crate::{
    policy::{Policy, Verdict},
    workload::Workload,
};

/// Why a body could not be reviewed. All but the last are the client's mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("the request body is empty; expected an AdmissionReview")]
    Empty,
    #[error("the request body is not JSON: {0}")]
    NotJson(String),
    #[error("the request body is not an AdmissionReview: {0}")]
    NotAReview(String),
    #[error(
        "the AdmissionReview is {0}; this webhook speaks {META_API_VERSION_V1} AdmissionReview"
    )]
    UnsupportedVersion(String),
    #[error("the AdmissionReview has no request")]
    NoRequest,
    #[error("the response could not be encoded: {0}")]
    Encode(String),
}

/// A review's answer and what to say about it in logs and metrics.
#[derive(Debug)]
pub struct Reviewed {
    /// The AdmissionReview response, serialised.
    pub body: Vec<u8>,
    pub kind: String,
    pub operation: &'static str,
    pub verdict: &'static str,
}

/// Reviews one AdmissionReview body with `policy`.
pub fn review(policy: &Policy, body: &[u8]) -> Result<Reviewed, ReviewError> {
    let request = decode(body)?;
    let verdict = policy.evaluate(&request);
    // Made once the verdict is known: recording a field later would format the span twice.
    let span = tracing::info_span!(
        "review",
        uid = %request.uid,
        kind = %request.kind.kind,
        namespace = %request.namespace.as_deref().unwrap_or_default(),
        name = %request.name,
        operation = %operation(&request.operation),
        verdict = %verdict.label(),
    );
    let _entered = span.enter();
    match &verdict {
        Verdict::Denied(denial) => tracing::info!(%denial, "denied"),
        Verdict::Invalid(why) => tracing::warn!(%why, "cannot inspect"),
        Verdict::NotInspected(_) => tracing::debug!("not inspected"),
        Verdict::Allowed => tracing::debug!("allowed"),
    }
    let response = verdict.respond(&request).into_review();
    let body = serde_json::to_vec(&response).map_err(|e| ReviewError::Encode(e.to_string()))?;
    Ok(Reviewed {
        body,
        kind: request.kind.kind,
        operation: operation(&request.operation),
        verdict: verdict.label(),
    })
}

/// Decodes an AdmissionReview body into its request, checking the review's version.
///
/// The fast path reads only what the policy needs, in one pass. If that fails on the content of
/// the body, the body is read again generically: when it is a review after all, only its object
/// is unreadable, and the policy answers that (with a 400 and the field at fault) under the
/// request's uid.
pub fn decode(body: &[u8]) -> Result<AdmissionRequest<Workload>, ReviewError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ReviewError::Empty);
    }
    match serde_json::from_slice::<AdmissionReview<Workload>>(body) {
        Ok(review) => request_of(review),
        Err(error) if error.classify() == Category::Data => {
            let generic: AdmissionReview<DynamicObject> = serde_json::from_slice(body)
                .map_err(|_| ReviewError::NotAReview(error.to_string()))?;
            request_of(generic).map(with_unreadable_objects)
        }
        Err(error) => Err(ReviewError::NotJson(error.to_string())),
    }
}

fn request_of<K: Resource>(review: AdmissionReview<K>) -> Result<AdmissionRequest<K>, ReviewError> {
    if review.types.kind != META_KIND {
        return Err(ReviewError::NotAReview(format!(
            "its kind is {:?}",
            review.types.kind
        )));
    }
    if review.types.api_version != META_API_VERSION_V1 {
        return Err(ReviewError::UnsupportedVersion(format!(
            "{:?}",
            review.types.api_version
        )));
    }
    review.try_into().map_err(|_| ReviewError::NoRequest)
}

/// The same request, its objects read leniently.
fn with_unreadable_objects(request: AdmissionRequest<DynamicObject>) -> AdmissionRequest<Workload> {
    let lenient = |object: DynamicObject| {
        Workload::from_value(serde_json::to_value(object).unwrap_or(serde_json::Value::Null))
    };
    AdmissionRequest {
        types: request.types,
        uid: request.uid,
        kind: request.kind,
        resource: request.resource,
        sub_resource: request.sub_resource,
        request_kind: request.request_kind,
        request_resource: request.request_resource,
        request_sub_resource: request.request_sub_resource,
        name: request.name,
        namespace: request.namespace,
        operation: request.operation,
        user_info: request.user_info,
        object: request.object.map(lenient),
        old_object: request.old_object.map(lenient),
        dry_run: request.dry_run,
        options: request.options,
    }
}

fn operation(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}
