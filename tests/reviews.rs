//! Review fixtures, posted to the webhook's review function: each case says what the reply
//! must be (allowed, warned, or denied with 403 or 400), and the full AdmissionReview reply is
//! pinned in `snapshots/`. Image references are one table over one base review; modes,
//! `--on-update` and the policy file are tables over the same fixtures.

use std::path::{Path, PathBuf};

use rstest::rstest;
use serde_json::Value;
use validator_webhook::{
    policy::{
        Mode, OnUpdate, Policy,
        config::{Overrides, PolicyConfig},
    },
    webhook::review,
};

/// What the reply must be.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Allowed,
    /// Allowed, with a warning that the policy did not look.
    Warned,
    /// Allowed in `warn` mode: this many warnings, and the would-be denial as an annotation.
    WarnedEach(usize),
    /// Allowed in `audit` mode: no warning, and the would-be denial as an annotation.
    Audited,
    /// Denied by the policy: 403 Forbidden, "Invalid image name ...".
    Forbidden,
    /// Denied because the object cannot be read: 400 Bad Request.
    BadRequest,
}

/// Reviews `body` with `policy` and checks the reply against `expect` and what any API server
/// checks before it believes a reply.
fn reply_to(config: &PolicyConfig, body: &[u8], expect: Expect) -> Value {
    let reviewed = review::review(config, body).unwrap();
    let reply: Value = serde_json::from_slice(&reviewed.body).unwrap();
    let request: Value = serde_json::from_slice(body).unwrap();
    testkit::reply::response(&reviewed.body).unwrap();
    assert_eq!(reply["response"]["uid"], request["request"]["uid"]);

    let response = &reply["response"];
    let message = response["status"]["message"].as_str().unwrap_or_default();
    let warnings = response["warnings"].as_array().map(Vec::len);
    let annotation = &response["auditAnnotations"][review::VIOLATIONS_ANNOTATION];
    if !matches!(expect, Expect::WarnedEach(_) | Expect::Audited) {
        assert_eq!(response.get("auditAnnotations"), None);
    }
    match expect {
        Expect::Allowed => {
            assert_eq!(response["allowed"], true, "{message}");
            assert_eq!(warnings, None);
        }
        Expect::WarnedEach(count) => {
            assert_eq!(response["allowed"], true, "{message}");
            assert_eq!(warnings, Some(count));
            assert!(annotation.is_string(), "{response}");
        }
        Expect::Audited => {
            assert_eq!(response["allowed"], true, "{message}");
            assert_eq!(warnings, None);
            assert!(annotation.is_string(), "{response}");
        }
        Expect::Warned => {
            assert_eq!(response["allowed"], true, "{message}");
            assert_eq!(warnings, Some(1));
        }
        Expect::Forbidden => testkit::reply::ensure_policy_denial(response).unwrap(),
        Expect::BadRequest => {
            assert_eq!(response["allowed"], false);
            assert_eq!(response["status"]["code"], 400);
            assert_eq!(response["status"]["reason"], "BadRequest");
            assert!(message.starts_with("Cannot inspect this "), "{message}");
        }
    }
    reply
}

fn pin(name: &str, input: &Path, reply: &Value) {
    insta::with_settings!({
        snapshot_path => "../snapshots",
        prepend_module_to_snapshot => false,
        input_file => input,
        omit_expression => true,
    }, {
        insta::assert_json_snapshot!(format!("review__{name}"), reply);
    });
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(format!("tests/fixtures/reviews/{name}.json"))
}

#[rstest]
#[case::connect_allowed("connect-allowed", Expect::Allowed)]
#[case::containers_not_a_list("containers-not-a-list", Expect::BadRequest)]
#[case::create_without_object("create-without-object", Expect::BadRequest)]
#[case::cronjob_allowed("cronjob-allowed", Expect::Allowed)]
#[case::cronjob_denied("cronjob-denied", Expect::Forbidden)]
#[case::cronjob_two_offenders("cronjob-two-offenders", Expect::Forbidden)]
#[case::daemonset_allowed("daemonset-allowed", Expect::Allowed)]
#[case::daemonset_denied("daemonset-denied", Expect::Forbidden)]
#[case::delete_allowed("delete-allowed", Expect::Allowed)]
#[case::deployment_allowed("deployment-allowed", Expect::Allowed)]
#[case::deployment_as_kubectl_sends_it("deployment-as-kubectl-sends-it", Expect::Allowed)]
#[case::deployment_denied_init_container("deployment-denied-init-container", Expect::Forbidden)]
#[case::deployment_denied("deployment-denied", Expect::Forbidden)]
#[case::deployment_three_offenders("deployment-three-offenders", Expect::Forbidden)]
#[case::deployment_update_from_bad_image("deployment-update-from-bad-image", Expect::Allowed)]
#[case::deployment_update_to_bad_image("deployment-update-to-bad-image", Expect::Forbidden)]
#[case::deployment_update_keeps_bad_image("deployment-update-keeps-bad-image", Expect::Forbidden)]
#[case::deployment_update_adds_bad_image("deployment-update-adds-bad-image", Expect::Forbidden)]
#[case::deployment_without_template("deployment-without-template", Expect::BadRequest)]
#[case::generate_name_allowed("generate-name-allowed", Expect::Allowed)]
#[case::image_not_a_string("image-not-a-string", Expect::BadRequest)]
#[case::ingress_not_inspected("ingress-not-inspected", Expect::Warned)]
#[case::job_allowed("job-allowed", Expect::Allowed)]
#[case::job_denied("job-denied", Expect::Forbidden)]
#[case::pod_allowed("pod-allowed", Expect::Allowed)]
#[case::pod_denied_init_container("pod-denied-init-container", Expect::Forbidden)]
#[case::pod_denied("pod-denied", Expect::Forbidden)]
#[case::pod_ephemeralcontainers_allowed("pod-ephemeralcontainers-allowed", Expect::Allowed)]
#[case::pod_ephemeralcontainers_denied("pod-ephemeralcontainers-denied", Expect::Forbidden)]
#[case::pod_status_subresource_not_inspected(
    "pod-status-subresource-not-inspected",
    Expect::Warned
)]
#[case::replicaset_allowed("replicaset-allowed", Expect::Allowed)]
#[case::replicaset_denied("replicaset-denied", Expect::Forbidden)]
#[case::replicationcontroller_allowed("replicationcontroller-allowed", Expect::Allowed)]
#[case::replicationcontroller_denied("replicationcontroller-denied", Expect::Forbidden)]
#[case::statefulset_allowed("statefulset-allowed", Expect::Allowed)]
#[case::statefulset_denied("statefulset-denied", Expect::Forbidden)]
#[case::unknown_group_not_inspected("unknown-group-not-inspected", Expect::Warned)]
#[case::unknown_kind_not_inspected("unknown-kind-not-inspected", Expect::Warned)]
#[case::pod_image_volume_denied("pod-image-volume-denied", Expect::Forbidden)]
#[case::pod_image_volume_allowed("pod-image-volume-allowed", Expect::Allowed)]
#[case::pod_image_volume_without_reference_denied(
    "pod-image-volume-without-reference-denied",
    Expect::Forbidden
)]
#[case::deployment_image_volume_denied("deployment-image-volume-denied", Expect::Forbidden)]
#[case::cronjob_image_volume_denied("cronjob-image-volume-denied", Expect::Forbidden)]
#[case::podtemplate_allowed("podtemplate-allowed", Expect::Allowed)]
#[case::podtemplate_denied("podtemplate-denied", Expect::Forbidden)]
#[case::podtemplate_image_volume_denied("podtemplate-image-volume-denied", Expect::Forbidden)]
fn answers_each_fixture(#[case] name: &str, #[case] expect: Expect) {
    let path = fixture(name);
    let body = std::fs::read(&path).unwrap();
    let reply = reply_to(&PolicyConfig::default(), &body, expect);
    pin(name, &path, &reply);
}

#[test]
fn every_fixture_has_a_case() {
    // Without whitespace, so a case that rustfmt wrapped still reads `("name",Expect::`.
    let source: String = std::fs::read_to_string(file!())
        .unwrap()
        .split_whitespace()
        .collect();
    for entry in std::fs::read_dir("tests/fixtures/reviews").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "json") {
            let name = path.file_stem().unwrap().to_string_lossy();
            assert!(
                source.contains(&format!("(\"{name}\",Expect::")),
                "{} has no case in answers_each_fixture",
                path.display()
            );
        }
    }
}

const IMAGE_REVIEW: &str = "tests/fixtures/image-review.json";

/// The base review (a Pod with one container, `app`) with `uid` and `image`; `None` leaves
/// the container without an image.
fn image_review(uid: &str, image: Option<&str>) -> Vec<u8> {
    let mut review: Value = serde_json::from_slice(&std::fs::read(IMAGE_REVIEW).unwrap()).unwrap();
    review["request"]["uid"] = Value::from(uid);
    let container = review
        .pointer_mut("/request/object/spec/containers/0")
        .and_then(Value::as_object_mut)
        .expect("the base review has a container");
    assert!(
        container.contains_key("image"),
        "the base review sets an image"
    );
    match image {
        Some(image) => container.insert("image".into(), Value::from(image)),
        None => container.remove("image"),
    };
    serde_json::to_vec(&review).unwrap()
}

#[rstest]
#[case::bad_digest_denied(
    "image-bad-digest-denied",
    "00000000-0000-4000-8000-7d62512af642",
    Some("msalinasc_app@sha256:abc"),
    Expect::Forbidden
)]
#[case::bare_name_denied(
    "image-bare-name-denied",
    "00000000-0000-4000-8000-9a4d45d0b376",
    Some("nginx"),
    Expect::Forbidden
)]
#[case::docker_library_allowed(
    "image-docker-library-allowed",
    "00000000-0000-4000-8000-10263fcaae36",
    Some("docker.io/library/msalinasc_app"),
    Expect::Allowed
)]
#[case::empty_denied(
    "image-empty-denied",
    "00000000-0000-4000-8000-5dc4b7c909a9",
    Some(""),
    Expect::Forbidden
)]
#[case::missing_denied(
    "image-missing-denied",
    "00000000-0000-4000-8000-6b6ba1f4ef01",
    None,
    Expect::Forbidden
)]
#[case::prefix_in_namespace_denied(
    "image-prefix-in-namespace-denied",
    "00000000-0000-4000-8000-06f36efd4efb",
    Some("msalinasc/app"),
    Expect::Forbidden
)]
#[case::prefix_in_path_denied(
    "image-prefix-in-path-denied",
    "00000000-0000-4000-8000-b5abb5926f86",
    Some("example.com/msalinasc_team/app"),
    Expect::Forbidden
)]
#[case::prefix_in_tag_denied(
    "image-prefix-in-tag-denied",
    "00000000-0000-4000-8000-60431367790b",
    Some("app:msalinasc_x"),
    Expect::Forbidden
)]
#[case::registry_port_path_digest_allowed(
    "image-registry-port-path-digest-allowed",
    "00000000-0000-4000-8000-f223ea4cbde4",
    Some(
        "registry.example.com:5000/team/msalinasc_api@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    ),
    Expect::Allowed
)]
#[case::registry_with_port_allowed(
    "image-registry-with-port-allowed",
    "00000000-0000-4000-8000-7a45e73f4cc9",
    Some("localhost:5000/msalinasc_app"),
    Expect::Allowed
)]
#[case::tag_allowed(
    "image-tag-allowed",
    "00000000-0000-4000-8000-7b5a74ec68aa",
    Some("msalinasc_app:1.0"),
    Expect::Allowed
)]
#[case::tag_and_digest_allowed(
    "image-tag-and-digest-allowed",
    "00000000-0000-4000-8000-5b0f6b01b1de",
    Some(
        "msalinasc_app:1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    ),
    Expect::Allowed
)]
#[case::upper_case_denied(
    "image-upper-case-denied",
    "00000000-0000-4000-8000-e2a4228c8310",
    Some("MSALINASC_App"),
    Expect::Forbidden
)]
fn judges_each_image_reference(
    #[case] name: &str,
    #[case] uid: &str,
    #[case] image: Option<&str>,
    #[case] expect: Expect,
) {
    let body = image_review(uid, image);
    let reply = reply_to(&PolicyConfig::default(), &body, expect);
    pin(name, Path::new(IMAGE_REVIEW), &reply);
}

#[rstest]
#[case::second_prefix_allows("team_api:1.0", Expect::Allowed)]
#[case::first_prefix_allows("msalinasc_api:1.0", Expect::Allowed)]
#[case::neither_allows("api:1.0", Expect::Forbidden)]
fn any_configured_prefix_allows(#[case] image: &str, #[case] expect: Expect) {
    let policy = Policy::new(["msalinasc_", "team_"]).unwrap();
    let mut review: Value =
        serde_json::from_slice(&std::fs::read(fixture("pod-allowed")).unwrap()).unwrap();
    let field = review
        .pointer_mut("/request/object/spec/containers/0/image")
        .expect("pod-allowed has an image to replace");
    *field = Value::from(image);
    let reply = reply_to(
        &policy.into(),
        &serde_json::to_vec(&review).unwrap(),
        expect,
    );
    if let Expect::Forbidden = expect {
        insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!("review__two_prefixes_denied", reply["response"]["status"]["message"].as_str().unwrap());
        });
    }
}

/// The default policy applied in `mode`.
fn in_mode(mode: Mode) -> PolicyConfig {
    let overrides = Overrides {
        mode: Some(mode),
        ..Overrides::default()
    };
    PolicyConfig::resolve(None, &overrides).unwrap()
}

#[rstest]
#[case::enforce_denied(Mode::Enforce, "deployment-denied", Expect::Forbidden)]
#[case::warn_denied(Mode::Warn, "deployment-denied", Expect::WarnedEach(1))]
#[case::warn_three_offenders(Mode::Warn, "deployment-three-offenders", Expect::WarnedEach(3))]
#[case::warn_allowed(Mode::Warn, "deployment-allowed", Expect::Allowed)]
#[case::warn_image_volume(Mode::Warn, "pod-image-volume-denied", Expect::WarnedEach(1))]
#[case::warn_not_inspected(Mode::Warn, "ingress-not-inspected", Expect::Warned)]
#[case::warn_unreadable(Mode::Warn, "containers-not-a-list", Expect::WarnedEach(1))]
#[case::audit_denied(Mode::Audit, "deployment-denied", Expect::Audited)]
#[case::audit_three_offenders(Mode::Audit, "deployment-three-offenders", Expect::Audited)]
#[case::audit_allowed(Mode::Audit, "deployment-allowed", Expect::Allowed)]
#[case::audit_unreadable(Mode::Audit, "containers-not-a-list", Expect::Audited)]
fn answers_in_each_mode(#[case] mode: Mode, #[case] name: &str, #[case] expect: Expect) {
    let path = fixture(name);
    let body = std::fs::read(&path).unwrap();
    let reply = reply_to(&in_mode(mode), &body, expect);
    if mode == Mode::Enforce {
        let enforced = reply_to(&PolicyConfig::default(), &body, expect);
        assert_eq!(reply, enforced, "enforce is the default");
        return;
    }
    pin(&format!("mode-{}-{name}", mode.label()), &path, &reply);
}

/// `pod-denied` with a hundred containers, none of whose images is allowed.
fn a_hundred_offenders() -> Vec<u8> {
    let mut review: Value =
        serde_json::from_slice(&std::fs::read(fixture("pod-denied")).unwrap()).unwrap();
    let containers: Vec<Value> = (0..100)
        .map(|i| serde_json::json!({"name": format!("c{i}"), "image": format!("registry.example.com/team/tools/sidecar-{i}:1.0")}))
        .collect();
    review["request"]["object"]["spec"]["containers"] = Value::from(containers);
    serde_json::to_vec(&review).unwrap()
}

#[test]
fn audit_mode_caps_the_annotation_of_a_hundred_offenders() {
    let reply = reply_to(
        &in_mode(Mode::Audit),
        &a_hundred_offenders(),
        Expect::Audited,
    );
    let annotation = reply["response"]["auditAnnotations"][review::VIOLATIONS_ANNOTATION]
        .as_str()
        .unwrap();
    assert!(
        annotation.len() <= review::MAX_ANNOTATION_BYTES,
        "{}",
        annotation.len()
    );
    assert!(
        annotation.starts_with("Invalid image name in 100 containers: "),
        "{annotation}"
    );
    assert!(annotation.ends_with(" more"), "{annotation}");
    pin(
        "mode-audit-a-hundred-offenders",
        &fixture("pod-denied"),
        &reply,
    );
}

#[test]
fn warn_mode_fits_a_hundred_offenders_into_the_api_servers_limits() {
    let body = a_hundred_offenders();
    let reply = reply_to(&in_mode(Mode::Warn), &body, Expect::WarnedEach(35));
    let warnings = reply["response"]["warnings"].as_array().unwrap();
    let total: usize = warnings
        .iter()
        .map(|w| w.as_str().unwrap().chars().count())
        .sum();
    assert!(total <= review::MAX_WARNINGS_CHARS, "{total}");
    pin(
        "mode-warn-a-hundred-offenders",
        &fixture("pod-denied"),
        &reply,
    );
}

#[rstest]
#[case::all_keeps(OnUpdate::All, "deployment-update-keeps-bad-image", Expect::Forbidden)]
#[case::changed_keeps(
    OnUpdate::Changed,
    "deployment-update-keeps-bad-image",
    Expect::Allowed
)]
#[case::changed_adds(
    OnUpdate::Changed,
    "deployment-update-adds-bad-image",
    Expect::Forbidden
)]
#[case::changed_to_bad(OnUpdate::Changed, "deployment-update-to-bad-image", Expect::Forbidden)]
#[case::changed_create(OnUpdate::Changed, "deployment-denied", Expect::Forbidden)]
fn on_update_changed_judges_only_new_images(
    #[case] on_update: OnUpdate,
    #[case] name: &str,
    #[case] expect: Expect,
) {
    let overrides = Overrides {
        on_update: Some(on_update),
        ..Overrides::default()
    };
    let config = PolicyConfig::resolve(None, &overrides).unwrap();
    let path = fixture(name);
    let body = std::fs::read(&path).unwrap();
    let reply = reply_to(&config, &body, expect);
    let default = reply_to(&PolicyConfig::default(), &body, Expect::Forbidden);
    if on_update == OnUpdate::All {
        assert_eq!(reply, default, "all is the default");
    } else if reply != default {
        pin(&format!("on-update-changed-{name}"), &path, &reply);
    }
}

const POLICY_FILE: &str = "tests/fixtures/policy.yaml";

/// `tests/fixtures/policy.yaml` with the request's namespace set to `namespace`.
#[rstest]
#[case::exempt_reference("shop", "deployment-denied", Expect::Allowed)]
#[case::exempt_digest_and_reference("shop", "deployment-three-offenders", Expect::Forbidden)]
#[case::namespace_in_warn("legacy", "deployment-three-offenders", Expect::WarnedEach(2))]
#[case::namespace_with_its_prefix("team-a", "deployment-allowed", Expect::Forbidden)]
#[case::namespace_not_listed("other", "pod-image-volume-denied", Expect::Forbidden)]
fn judges_with_the_policy_file(
    #[case] namespace: &str,
    #[case] name: &str,
    #[case] expect: Expect,
) {
    let text = std::fs::read_to_string(POLICY_FILE).unwrap();
    let config = PolicyConfig::resolve(Some(&text), &Overrides::default()).unwrap();
    let path = fixture(name);
    let mut review: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    review["request"]["namespace"] = Value::from(namespace);
    let reply = reply_to(&config, &serde_json::to_vec(&review).unwrap(), expect);
    pin(
        &format!("policy-file-{namespace}-{name}"),
        Path::new(POLICY_FILE),
        &reply,
    );
}

#[rstest]
#[case::long_valid_denied(
    "image-long-denied",
    "00000000-0000-4000-8000-3c1f0b7e2a55",
    format!(
        "registry.example.com:5000/{}nginx:{}@sha512:{}",
        "team/".repeat(10),
        "t".repeat(128),
        "0123456789abcdef".repeat(8)
    )
)]
#[case::long_invalid_denied(
    "image-long-invalid-denied",
    "00000000-0000-4000-8000-8e0d5c2b9f14",
    format!("registry.example.com/{}:1.0", "a".repeat(3_000_000))
)]
fn shows_a_long_image_cut_with_its_length_and_hash(
    #[case] name: &str,
    #[case] uid: &str,
    #[case] image: String,
) {
    let body = image_review(uid, Some(&image));
    let reply = reply_to(&PolicyConfig::default(), &body, Expect::Forbidden);
    let message = reply["response"]["status"]["message"].as_str().unwrap();
    assert!(message.len() < 512, "{} bytes: {message}", message.len());
    assert!(message.contains(&format!("({} bytes, sha256:", image.len())));
    pin(name, Path::new(IMAGE_REVIEW), &reply);
}
