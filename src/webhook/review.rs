//! One review, bytes in and bytes out: decode the AdmissionReview, ask the policy for a verdict,
//! answer with the AdmissionResponse built from the request ([`respond`]: 403 for a denial,
//! 400 for an object that cannot be read). Everything here is synchronous; the handler decides
//! what a [`ReviewError`] becomes.

use kube::core::{
    GroupVersionKind, Resource, Status,
    admission::{
        AdmissionRequest, AdmissionResponse, AdmissionReview, META_API_VERSION_V1, META_KIND,
        Operation,
    },
};
use serde_json::error::Category;

use crate::policy::{
    Input, Policy, Skipped, Verdict,
    workload::{Lenient, PodSpecAt, Workload},
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
    /// The object's kind as a metric label: see [`kind_label`].
    pub kind: &'static str,
    pub operation: &'static str,
    pub verdict: &'static str,
}

/// Reviews one AdmissionReview body with `policy`.
pub fn review(policy: &Policy, body: &[u8]) -> Result<Reviewed, ReviewError> {
    answer(policy, decode(body)?)
}

/// Reviews a body it owns, letting go of it once decoded: a large object is then held once,
/// as the fields the policy reads, rather than twice.
pub fn review_bytes(policy: &Policy, body: bytes::Bytes) -> Result<Reviewed, ReviewError> {
    let request = decode(&body)?;
    drop(body);
    answer(policy, request)
}

fn answer(policy: &Policy, request: AdmissionRequest<Workload>) -> Result<Reviewed, ReviewError> {
    let verdict = policy.evaluate(Input::of(&request));
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
    let response = respond(&verdict, &request).into_review();
    let body = serde_json::to_vec(&response).map_err(|e| ReviewError::Encode(e.to_string()))?;
    Ok(Reviewed {
        body,
        kind: kind_label(&request.kind),
        operation: operation(&request.operation),
        verdict: verdict.label(),
    })
}

/// The answer to `request`: it echoes the request's uid and version, and a denial carries its
/// message with 403 Forbidden (a policy denial) or 400 Bad Request (an unreadable object).
pub fn respond<K: Resource>(
    verdict: &Verdict<'_>,
    request: &AdmissionRequest<K>,
) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(request);
    let (code, reason) = match verdict {
        Verdict::Allowed => return response,
        Verdict::NotInspected(skipped) => {
            let resource = &request.resource.resource;
            let subresource = request.sub_resource.as_deref();
            let warning = warning(*skipped, &request.kind, resource, subresource);
            response.warnings = Some(vec![warning]);
            return response;
        }
        Verdict::Denied(_) => (403, "Forbidden"),
        Verdict::Invalid(_) => (400, "BadRequest"),
    };
    let message = denial_message(verdict, &request.kind.kind).unwrap_or_default();
    let mut response = response.deny(&message);
    response.result = Status::failure(&message, reason).with_code(code);
    response
}

/// The kinds the policy inspects, by name, and `other` for every other kind: a label takes
/// only values the webhook knows, so requests with made-up kinds cannot grow `/metrics`.
pub fn kind_label(kind: &GroupVersionKind) -> &'static str {
    const INSPECTED: [&str; 9] = [
        "Pod",
        "PodTemplate",
        "ReplicationController",
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
    ];
    match PodSpecAt::of(kind) {
        Some(_) => INSPECTED
            .into_iter()
            .find(|name| *name == kind.kind)
            .unwrap_or("other"),
        None => "other",
    }
}

/// What a denial says, or `None` for a verdict that allows.
pub fn denial_message(verdict: &Verdict<'_>, kind: &str) -> Option<String> {
    match verdict {
        Verdict::Denied(denial) => Some(denial.to_string()),
        Verdict::Invalid(invalid) => Some(format!("Cannot inspect this {kind}: {invalid}")),
        Verdict::Allowed | Verdict::NotInspected(_) => None,
    }
}

/// The warning `kubectl` prints when the policy let a request through without looking.
pub fn warning(
    skipped: Skipped,
    gvk: &GroupVersionKind,
    resource: &str,
    subresource: Option<&str>,
) -> String {
    let group_version = match gvk.group.as_str() {
        "" => gvk.version.clone(),
        group => format!("{group}/{}", gvk.version),
    };
    match skipped {
        Skipped::Kind => format!(
            "validator-webhook: {group_version} {} is not a kind the image policy inspects",
            gvk.kind
        ),
        Skipped::Subresource => format!(
            "validator-webhook: subresource {resource}/{} is not inspected by the image policy",
            subresource.unwrap_or_default()
        ),
    }
}

/// Decodes an AdmissionReview body into its request, checking the review's version.
///
/// The fast path reads only what the policy needs, in one pass. If that fails on the content of
/// the body, the body is read again with each object kept as its text and read on its own: when it is a review after all, only its object
/// is unreadable, and the policy answers that (with a 400 and the field at fault) under the
/// request's uid.
pub fn decode(body: &[u8]) -> Result<AdmissionRequest<Workload>, ReviewError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ReviewError::Empty);
    }
    match serde_json::from_slice::<AdmissionReview<Workload>>(body) {
        Ok(review) => request_of(review),
        Err(error) if error.classify() == Category::Data => {
            let generic: AdmissionReview<Lenient> = serde_json::from_slice(body)
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
fn with_unreadable_objects(request: AdmissionRequest<Lenient>) -> AdmissionRequest<Workload> {
    let lenient = |object: Lenient| object.0;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(kind: &str, object: &str) -> AdmissionRequest<Workload> {
        let json = format!(
            r#"{{"uid":"u","kind":{{"group":"","version":"v1","kind":"{kind}"}},
                "resource":{{"group":"","version":"v1","resource":"things"}},
                "operation":"CREATE","userInfo":{{}},"object":{object},"oldObject":null}}"#
        );
        serde_json::from_str(&json).unwrap()
    }

    fn answer(request: &AdmissionRequest<Workload>) -> AdmissionResponse {
        respond(&Policy::default().evaluate(Input::of(request)), request)
    }

    #[test]
    fn denial_carries_forbidden_and_the_request_uid() {
        let response = answer(&request(
            "Pod",
            r#"{"spec":{"containers":[{"name":"c","image":"nginx"}]}}"#,
        ));
        assert!(!response.allowed);
        assert_eq!(response.uid, "u");
        assert_eq!(
            (response.result.code, response.result.reason.as_str()),
            (403, "Forbidden")
        );
    }

    #[test]
    fn an_unreadable_object_is_a_bad_request() {
        let response = answer(&request("Pod", r#"{"metadata":{}}"#));
        assert!(!response.allowed);
        assert_eq!(
            (response.result.code, response.result.reason.as_str()),
            (400, "BadRequest")
        );
    }

    #[test]
    fn leaves_unknown_kinds_alone_with_a_warning() {
        let response = answer(&request("ConfigMap", r#"{"data":{}}"#));
        assert!(response.allowed);
        assert_eq!(
            response.warnings.unwrap(),
            ["validator-webhook: v1 ConfigMap is not a kind the image policy inspects"]
        );
    }
}
