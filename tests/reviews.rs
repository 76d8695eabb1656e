//! Every review fixture, posted to the webhook's review function: the full AdmissionReview
//! reply is pinned in `snapshots/`, and the contract the API server enforces is checked too.

use std::path::{Path, PathBuf};

use rstest::rstest;
use serde_json::Value;
use validator_webhook::{policy::Policy, webhook::review};

fn snapshot_name(path: &Path) -> String {
    format!("review__{}", path.file_stem().unwrap().to_string_lossy())
}

#[rstest]
fn answers_every_fixture_as_pinned(#[files("tests/fixtures/reviews/*.json")] path: PathBuf) {
    let body = std::fs::read(&path).unwrap();
    let reviewed = review::review(&Policy::default(), &body).unwrap();
    let reply: Value = serde_json::from_slice(&reviewed.body).unwrap();
    let request: Value = serde_json::from_slice(&body).unwrap();

    // What any API server checks before it believes a reply.
    assert_eq!(reply["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(reply["kind"], "AdmissionReview");
    assert_eq!(reply["response"]["uid"], request["request"]["uid"]);

    // What the fixture's name promises.
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let response = &reply["response"];
    let message = response["status"]["message"].as_str().unwrap_or_default();
    if name.ends_with("-allowed") || name.ends_with("-not-inspected") || name.contains("from-bad") {
        assert_eq!(response["allowed"], true, "{name}: {message}");
    } else if name.ends_with("-denied") || name.contains("offenders") || name.contains("to-bad") {
        assert_eq!(response["allowed"], false, "{name}");
        assert_eq!(response["status"]["code"], 403);
        assert_eq!(response["status"]["reason"], "Forbidden");
        assert!(
            message.starts_with("Invalid image name"),
            "{name}: {message}"
        );
    }
    if name.ends_with("-not-inspected") {
        assert_eq!(
            response["warnings"].as_array().map(Vec::len),
            Some(1),
            "{name}"
        );
    }

    insta::with_settings!({
        snapshot_path => "../snapshots",
        prepend_module_to_snapshot => false,
        input_file => &path,
        omit_expression => true,
    }, {
        insta::assert_json_snapshot!(snapshot_name(&path), reply);
    });
}

#[rstest]
#[case::second_prefix_allows("team_api:1.0", true)]
#[case::first_prefix_allows("msalinasc_api:1.0", true)]
#[case::neither_allows("api:1.0", false)]
fn any_configured_prefix_allows(#[case] image: &str, #[case] allowed: bool) {
    let policy = Policy::new(["msalinasc_", "team_"]).unwrap();
    let fixture = std::fs::read_to_string("tests/fixtures/reviews/pod-allowed.json").unwrap();
    let body = fixture.replace("registry.example.com/shop/msalinasc_app:2.1", image);
    let reviewed = review::review(&policy, body.as_bytes()).unwrap();
    let reply: Value = serde_json::from_slice(&reviewed.body).unwrap();
    assert_eq!(reply["response"]["allowed"], allowed, "{reply}");
    if !allowed {
        insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!("review__two_prefixes_denied", reply["response"]["status"]["message"].as_str().unwrap());
        });
    }
}
