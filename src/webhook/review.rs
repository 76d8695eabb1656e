//! One review, bytes in and bytes out: decode the AdmissionReview, ask the policy of the
//! request's namespace for a verdict, answer with the AdmissionResponse built from the request
//! and the namespace's [`Mode`] ([`respond`]: in `enforce`, 403 for a denial and 400 for an
//! object that cannot be read; in `warn`, allowed with one warning per offending image; in
//! `audit`, allowed with the would-be denial as an audit annotation). Everything here is
//! synchronous; the handler decides what a [`ReviewError`] becomes.

use kube::core::{
    GroupVersionKind, Resource, Status,
    admission::{
        AdmissionRequest, AdmissionResponse, AdmissionReview, META_API_VERSION_V1, META_KIND,
        Operation,
    },
};
use serde_json::error::Category;

use crate::policy::{
    Denial, Input, Mode, Skipped, Verdict,
    config::PolicyConfig,
    workload::{Lenient, PodSpecAt, Workload},
};

/// The audit annotation that holds the would-be denial in `warn` and `audit` modes. The API
/// server stores it as `<webhook name>/violations` and refuses a key with a `/` of its own
/// (`checkKeyFormat` in k8s.io/apiserver `pkg/admission/attributes.go` wants exactly one).
pub const VIOLATIONS_ANNOTATION: &str = "violations";

/// The API server keeps a request's warnings while their text adds up to at most this many
/// characters (runes); past it, it cuts every warning to [`MAX_WARNING_CHARS`] and drops
/// those that come later (`truncateAtTotalRunes` in k8s.io/apiserver
/// `pkg/endpoints/filters/warning.go`, v0.36).
pub const MAX_WARNINGS_CHARS: usize = 4 * 1024;

/// What the API server cuts each warning to once over [`MAX_WARNINGS_CHARS`]
/// (`truncateItemRunes`, same file).
pub const MAX_WARNING_CHARS: usize = 256;

/// The most the [`VIOLATIONS_ANNOTATION`] holds, in bytes: the would-be denial's clauses in
/// order while they fit, then `…and N more`. The API server writes the annotation into every
/// audit event of the request, and an audit backend that truncates events drops one still over
/// its limit whole (`--audit-log-truncate-max-event-size`, 100 KiB by default).
pub const MAX_ANNOTATION_BYTES: usize = 4 * 1024;

/// The length the AdmissionResponse API asks warnings to keep to where possible
/// (`warnings` in k8s.io/api `admission/v1/types.go`).
pub const SHORT_WARNING_CHARS: usize = 120;

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
    /// The mode the verdict was applied in: `enforce`, `warn` or `audit`.
    pub mode: &'static str,
}

/// Reviews one AdmissionReview body with the rules `config` has for its namespace.
pub fn review(config: &PolicyConfig, body: &[u8]) -> Result<Reviewed, ReviewError> {
    answer(config, decode(body)?)
}

/// Reviews a body it owns, letting go of it once decoded: a large object is then held once,
/// as the fields the policy reads, rather than twice.
pub fn review_bytes(config: &PolicyConfig, body: bytes::Bytes) -> Result<Reviewed, ReviewError> {
    let request = decode(&body)?;
    drop(body);
    answer(config, request)
}

fn answer(
    config: &PolicyConfig,
    request: AdmissionRequest<Workload>,
) -> Result<Reviewed, ReviewError> {
    let rules = config.rules(request.namespace.as_deref());
    let verdict = rules
        .policy
        .evaluate_update(Input::of(&request), request.old_object.as_ref());
    let mode = rules.mode;
    // Made once the verdict is known: recording a field later would format the span twice.
    // An allowed or uninspected review logs at debug only, so unless debug is on it gets no
    // span: formatting its fields was most of what logging cost a review that logs nothing.
    let logged = matches!(verdict, Verdict::Denied(_) | Verdict::Invalid(_))
        || tracing::enabled!(tracing::Level::DEBUG);
    if !logged {
        return reply(&verdict, mode, &request);
    }
    let span = tracing::info_span!(
        "review",
        uid = %request.uid,
        kind = %request.kind.kind,
        namespace = %request.namespace.as_deref().unwrap_or_default(),
        name = %request.name,
        operation = %operation(&request.operation),
        verdict = %verdict.label(),
        mode = %mode.label(),
    );
    let _entered = span.enter();
    match (&verdict, mode) {
        (Verdict::Denied(denial), Mode::Enforce) => tracing::info!(%denial, "denied"),
        (Verdict::Denied(denial), _) => tracing::info!(%denial, "would deny"),
        (Verdict::Invalid(why), _) => tracing::warn!(%why, "cannot inspect"),
        (Verdict::NotInspected(_), _) => tracing::debug!("not inspected"),
        (Verdict::Allowed, _) => tracing::debug!("allowed"),
    }
    reply(&verdict, mode, &request)
}

/// The reply body to `request` and the labels it is counted under.
fn reply(
    verdict: &Verdict<'_>,
    mode: Mode,
    request: &AdmissionRequest<Workload>,
) -> Result<Reviewed, ReviewError> {
    let response = respond(verdict, mode, request).into_review();
    let body = serde_json::to_vec(&response).map_err(|e| ReviewError::Encode(e.to_string()))?;
    Ok(Reviewed {
        body,
        kind: kind_label(&request.kind),
        operation: operation(&request.operation),
        verdict: verdict.label(),
        mode: mode.label(),
    })
}

/// The answer to `request`: it echoes the request's uid and version. In `enforce` mode a
/// denial carries its message with 403 Forbidden (a policy denial) or 400 Bad Request (an
/// unreadable object); in `warn` and `audit` the request is allowed and the message goes to
/// the audit annotation [`VIOLATIONS_ANNOTATION`], and in `warn` also to [`warnings`].
pub fn respond<K: Resource>(
    verdict: &Verdict<'_>,
    mode: Mode,
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
    if mode != Mode::Enforce {
        if mode == Mode::Warn {
            response.warnings = Some(warnings(verdict, &message));
        }
        response.audit_annotations.insert(
            VIOLATIONS_ANNOTATION.to_owned(),
            annotation(verdict, message),
        );
        return response;
    }
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

/// The warnings of a would-be denial in `warn` mode, one per offending image, within the API
/// server's limits however many there are: each is the denial's clause for that image, or
/// without its field path when that is over [`SHORT_WARNING_CHARS`], cut to
/// [`MAX_WARNING_CHARS`] if still longer; those past [`MAX_WARNINGS_CHARS`] in all are
/// counted in a last `…and N more` warning.
pub fn warnings(verdict: &Verdict<'_>, message: &str) -> Vec<String> {
    let each: Vec<String> = match verdict {
        Verdict::Denied(denial) => clauses_within(denial, SHORT_WARNING_CHARS),
        _ => vec![cut(message.to_owned(), MAX_WARNING_CHARS)],
    };
    within(
        each,
        MAX_WARNINGS_CHARS,
        0,
        |w| w.chars().count(),
        |n| format!("…and {n} more images the policy does not allow"),
    )
}

/// Each clause of `denial`, whole when it has at most `whole_up_to` characters, else without its
/// field path and with the image shortened, cut to [`MAX_WARNING_CHARS`].
fn clauses_within(denial: &Denial<'_>, whole_up_to: usize) -> Vec<String> {
    denial
        .violations
        .iter()
        .zip(denial.clauses())
        .map(|(violation, clause)| {
            if clause.chars().count() <= whole_up_to {
                clause
            } else {
                cut(
                    denial.short_clause(violation, SHORT_IMAGE_CHARS),
                    MAX_WARNING_CHARS,
                )
            }
        })
        .collect()
}

/// The [`VIOLATIONS_ANNOTATION`] of a would-be denial, within [`MAX_ANNOTATION_BYTES`]: the
/// message whole when it fits; otherwise its heading (with the count of all offending
/// containers) and its clauses while they fit, each cut as in [`warnings`] when over
/// [`MAX_WARNING_CHARS`], then `…and N more`. Another message is cut to the limit.
pub fn annotation(verdict: &Verdict<'_>, message: String) -> String {
    if message.len() <= MAX_ANNOTATION_BYTES {
        return message;
    }
    let Verdict::Denied(denial) = verdict else {
        return cut_bytes(message, MAX_ANNOTATION_BYTES);
    };
    let heading = denial.heading();
    let clauses = clauses_within(denial, MAX_WARNING_CHARS);
    let budget = MAX_ANNOTATION_BYTES - heading.len();
    let kept = within(clauses, budget, SEPARATOR.len(), str::len, |n| {
        format!("…and {n} more")
    });
    heading + &kept.join(SEPARATOR)
}

/// Between the clauses of a denial message.
const SEPARATOR: &str = "; ";

/// `items` in order while they fit in `budget`, as `length` measures them with `separator`
/// between two; when some do not, a last item `more(how many were left out)`, which fits in
/// the room kept for it ([`MORE_CHARS`]).
fn within(
    items: Vec<String>,
    budget: usize,
    separator: usize,
    length: fn(&str) -> usize,
    more: impl Fn(usize) -> String,
) -> Vec<String> {
    let total = items.len();
    let all =
        items.iter().map(|item| length(item)).sum::<usize>() + separator * total.saturating_sub(1);
    if all <= budget {
        return items;
    }
    let mut kept = Vec::new();
    let mut used = 0;
    for (i, item) in items.into_iter().enumerate() {
        let needed = length(&item) + if i == 0 { 0 } else { separator };
        // Room for the last item, which says how many were left out, unless none will be.
        let reserve = if i + 1 == total { 0 } else { MORE_CHARS };
        if used + needed + reserve > budget {
            kept.push(more(total - i));
            break;
        }
        used += needed;
        kept.push(item);
    }
    kept
}

/// How much of a long image a shortened warning shows, its start and its end.
const SHORT_IMAGE_CHARS: usize = 48;

/// Room kept for the `…and N more` warning or clause.
const MORE_CHARS: usize = 64;

/// `text` cut to at most `max` bytes (at a character boundary), ending with `…` when cut.
fn cut_bytes(mut text: String, max: usize) -> String {
    if text.len() > max {
        let end = (0..=max - '…'.len_utf8())
            .rev()
            .find(|&at| text.is_char_boundary(at))
            .unwrap_or(0);
        text.truncate(end);
        text.push('…');
    }
    text
}

/// `text` cut to at most `max` characters, ending with `…` when cut.
fn cut(mut text: String, max: usize) -> String {
    if let Some((at, _)) = text.char_indices().nth(max.saturating_sub(1))
        && text.chars().count() > max
    {
        text.truncate(at);
        text.push('…');
    }
    text
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
    use crate::policy::Policy;

    fn request(kind: &str, object: &str) -> AdmissionRequest<Workload> {
        let json = format!(
            r#"{{"uid":"u","kind":{{"group":"","version":"v1","kind":"{kind}"}},
                "resource":{{"group":"","version":"v1","resource":"things"}},
                "operation":"CREATE","userInfo":{{}},"object":{object},"oldObject":null}}"#
        );
        serde_json::from_str(&json).unwrap()
    }

    fn answer(request: &AdmissionRequest<Workload>) -> AdmissionResponse {
        answer_in(Mode::Enforce, request)
    }

    fn answer_in(mode: Mode, request: &AdmissionRequest<Workload>) -> AdmissionResponse {
        respond(
            &Policy::default().evaluate(Input::of(request)),
            mode,
            request,
        )
    }

    /// A Pod with `count` containers, each with an image of about `length` characters (a long
    /// path) named `app-<i>`, which no prefix allows.
    fn pod_with_bad_images(count: usize, length: usize) -> AdmissionRequest<Workload> {
        let containers: Vec<String> = (0..count)
            .map(|i| {
                let path = "p/".repeat(length / 2);
                format!(r#"{{"name":"c{i}","image":"example.com/{path}app-{i}:1"}}"#)
            })
            .collect();
        request(
            "Pod",
            &format!(r#"{{"spec":{{"containers":[{}]}}}}"#, containers.join(",")),
        )
    }

    #[test]
    fn warn_mode_allows_with_one_warning_per_offending_image() {
        let response = answer_in(
            Mode::Warn,
            &request(
                "Pod",
                r#"{"spec":{"containers":[{"name":"a","image":"nginx"},{"name":"b","image":"msalinasc_ok"},{"name":"c","image":"redis:7"}]}}"#,
            ),
        );
        assert!(response.allowed);
        assert_eq!(
            response.warnings.unwrap(),
            [
                r#"spec.containers[0] "a": image "nginx" has name "nginx", which does not start with "msalinasc_""#,
                r#"spec.containers[2] "c": image "redis:7" has name "redis", which does not start with "msalinasc_""#,
            ]
        );
        assert!(
            response.audit_annotations[VIOLATIONS_ANNOTATION]
                .starts_with("Invalid image name in 2 containers: ")
        );
    }

    #[test]
    fn audit_mode_allows_with_the_denial_as_an_annotation_and_no_warning() {
        let request = request(
            "Pod",
            r#"{"spec":{"containers":[{"name":"a","image":"nginx"}]}}"#,
        );
        let enforced = answer(&request);
        let audited = answer_in(Mode::Audit, &request);
        assert!(audited.allowed);
        assert_eq!(audited.warnings, None);
        assert_eq!(
            audited.audit_annotations[VIOLATIONS_ANNOTATION],
            enforced.result.message
        );
    }

    #[test]
    fn an_unreadable_object_is_only_recorded_outside_enforce() {
        let response = answer_in(Mode::Audit, &request("Pod", r#"{"metadata":{}}"#));
        assert!(response.allowed);
        assert!(response.audit_annotations[VIOLATIONS_ANNOTATION].starts_with("Cannot inspect"));
    }

    #[rstest::rstest]
    #[case::few_short(3, 10)]
    #[case::many_short(500, 10)]
    #[case::few_long(3, 200)]
    #[case::many_long(100, 200)]
    fn warnings_stay_within_the_api_servers_limits(#[case] count: usize, #[case] length: usize) {
        let response = answer_in(Mode::Warn, &pod_with_bad_images(count, length));
        let warnings = response.warnings.unwrap();
        let lengths: Vec<usize> = warnings.iter().map(|w| w.chars().count()).collect();
        assert!(
            lengths.iter().all(|l| *l <= MAX_WARNING_CHARS),
            "{lengths:?}"
        );
        assert!(
            lengths.iter().sum::<usize>() <= MAX_WARNINGS_CHARS,
            "{lengths:?}"
        );
        let listed = if warnings.len() < count {
            let listed = warnings.len() - 1;
            assert_eq!(
                warnings[listed],
                format!(
                    "…and {} more images the policy does not allow",
                    count - listed
                )
            );
            listed
        } else {
            assert_eq!(warnings.len(), count);
            count
        };
        // Each listed image, however shortened, with its name and the prefix.
        for (i, warning) in warnings[..listed].iter().enumerate() {
            let end = format!(r#":1" has name "app-{i}", which does not start with "msalinasc_""#);
            assert!(warning.ends_with(&end), "{warning}");
        }
    }

    #[rstest::rstest]
    #[case::few_short(3, 10)]
    #[case::many_short(500, 10)]
    #[case::few_long(3, 200)]
    #[case::many_long(100, 200)]
    fn the_audit_annotation_stays_within_its_limit(#[case] count: usize, #[case] length: usize) {
        let request = pod_with_bad_images(count, length);
        let message = answer(&request).result.message;
        let response = answer_in(Mode::Audit, &request);
        let annotation = &response.audit_annotations[VIOLATIONS_ANNOTATION];
        if message.len() <= MAX_ANNOTATION_BYTES {
            assert_eq!(*annotation, message, "whole when it fits");
            return;
        }
        assert!(
            annotation.len() <= MAX_ANNOTATION_BYTES,
            "{}",
            annotation.len()
        );
        let body = annotation
            .strip_prefix(&format!("Invalid image name in {count} containers: "))
            .unwrap_or_else(|| panic!("the heading counts every container: {annotation}"));
        let clauses: Vec<&str> = body.split("; ").collect();
        let (listed, more) = clauses.split_at(clauses.len() - 1);
        assert_eq!(more, [format!("…and {} more", count - listed.len())]);
        assert!(!listed.is_empty(), "{annotation}");
        // Each listed image in order, however shortened, with its name and the prefix.
        for (i, clause) in listed.iter().enumerate() {
            assert!(clause.chars().count() <= MAX_WARNING_CHARS, "{clause}");
            let end = format!(r#"has name "app-{i}", which does not start with "msalinasc_""#);
            assert!(clause.ends_with(&end), "{clause}");
        }
    }

    #[test]
    fn the_audit_annotation_of_an_unreadable_object_is_cut_to_its_limit() {
        let long = "x".repeat(3 * MAX_ANNOTATION_BYTES);
        let body = format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{
                "uid":"u","kind":{{"group":"","version":"v1","kind":"Pod"}},
                "resource":{{"group":"","version":"v1","resource":"pods"}},"operation":"CREATE",
                "userInfo":{{}},"object":{{"spec":{{"containers":"{long}"}}}}}}}}"#
        );
        let response = answer_in(Mode::Audit, &decode(body.as_bytes()).unwrap());
        let annotation = &response.audit_annotations[VIOLATIONS_ANNOTATION];
        assert!(
            annotation.starts_with("Cannot inspect this Pod: "),
            "{annotation}"
        );
        assert!(
            annotation.len() <= MAX_ANNOTATION_BYTES,
            "{}",
            annotation.len()
        );
        assert!(annotation.ends_with('…'), "{annotation}");
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
