//! `validator-webhook check` as a CI gate: every document its own verdict, the server's answers,
//! real sizes, format by parsing, non-manifests skipped, exit codes 0-3 and machine output.
//! Inputs are files in `tests/fixtures/check/`; outputs are pinned in `snapshots/check__*.snap`.

mod binary;

use std::process::Output;

use binary::{run_in, run_with_stdin, stderr, stdout};
use rstest::rstest;

const FIXTURES: &str = "tests/fixtures/check";

fn check(args: &[&str]) -> Output {
    run_in(FIXTURES, &[&["check"], args].concat())
}

/// `check <args> -`, reading `input` from stdin.
fn check_stdin(args: &[&str], input: &[u8]) -> Output {
    run_with_stdin(FIXTURES, &[&["check"], args, &["-"]].concat(), input)
}

fn snapshot(name: &str, output: &Output) {
    insta::with_settings!({
        snapshot_path => "../snapshots",
        prepend_module_to_snapshot => false,
    }, {
        insta::assert_snapshot!(format!("check__{name}"), stdout(output));
    });
}

/// One fixture (or a few) per numbered defect of the issue, each with the exit status it must
/// give and its text output pinned.
#[rstest]
#[case::a_denial_is_not_hidden_by_a_document_without_kind(&["denial-then-no-kind.yaml"], 1)]
#[case::a_wrong_shaped_pod_gets_the_servers_field_path(&["wrong-shape.yaml"], 2)]
#[case::a_custom_resource_review_without_uid_is_not_inspected(&["custom-resource-template-false.json"], 0)]
#[case::a_v1beta1_review_is_read_offline(&["review-v1beta1.json"], 1)]
#[case::a_yaml_flow_mapping_is_yaml(&["flow.yaml"], 1)]
#[case::concatenated_json_objects_are_a_stream(&["concatenated.json"], 1)]
#[case::utf8_with_a_byte_order_mark(&["utf8-bom.yaml"], 0)]
#[case::utf16_with_a_byte_order_mark(&["utf16-bom.yaml"], 1)]
#[case::non_manifests_are_skipped_with_a_reason(
    &["kustomization.yaml", "Chart.yaml", "values.yaml", "template.yaml"],
    0
)]
#[case::a_duplicate_key_is_named_without_parser_internals(&["duplicate-key.yaml"], 2)]
#[case::an_unreadable_file_is_counted(&["no-such-file.yaml", "flow.yaml"], 2)]
#[case::a_kind_with_a_pod_template_passes_unless_strict(&["rollout.yaml"], 0)]
#[case::strict_fails_a_kind_with_a_pod_template(&["--strict", "rollout.yaml"], 1)]
#[case::a_directory_is_walked_minus_excludes(&["repo", "--exclude", "vendor"], 1)]
#[case::quiet_prints_only_denials_and_errors(&["--quiet", "denial-then-no-kind.yaml", "values.yaml"], 1)]
#[case::json_output(&["--output", "json", "denial-then-no-kind.yaml", "no-such-file.yaml"], 2)]
#[case::junit_output(&["--output", "junit", "denial-then-no-kind.yaml", "duplicate-key.yaml"], 2)]
#[case::github_output(&["--output", "github", "denial-then-no-kind.yaml", "duplicate-key.yaml"], 2)]
#[case::each_object_is_judged_by_the_rules_of_its_namespace(
    &["--policy-file", "policy-namespaces.yaml", "namespaces.yaml"],
    1
)]
#[case::denials_in_warn_and_audit_namespaces_pass_the_gate(
    &["--policy-file", "policy-namespaces.yaml", "--namespace", "legacy", "staged.yaml"],
    0
)]
#[case::an_object_without_namespace_is_judged_in_default(
    &["--policy-file", "policy-namespaces.yaml", "staged.yaml"],
    1
)]
#[case::quiet_prints_warned_and_audited_objects(
    &["--quiet", "--policy-file", "policy-namespaces.yaml", "namespaces.yaml"],
    1
)]
#[case::github_output_warns_for_warned_and_audited_objects(
    &["--output", "github", "--policy-file", "policy-namespaces.yaml", "namespaces.yaml"],
    1
)]
#[case::junit_output_passes_warned_and_audited_objects(
    &["--output", "junit", "--policy-file", "policy-namespaces.yaml", "staged.yaml"],
    1
)]
#[case::the_mode_flag_applies_where_the_file_sets_none(&["--mode", "audit", "flow.yaml"], 0)]
#[case::an_update_is_judged_against_its_old_object(
    &["--on-update", "changed", "../reviews/deployment-update-keeps-bad-image.json", "../reviews/deployment-update-adds-bad-image.json"],
    1
)]
fn check_reports_every_document(#[case] args: &[&str], #[case] status: i32) {
    let output = check(args);
    assert_eq!(
        output.status.code(),
        Some(status),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let thread = std::thread::current();
    let test = thread.name().and_then(|name| name.rsplit("::").next());
    snapshot(case_name(test.unwrap_or_default()), &output);
}

/// `case_07_utf8_with_a_byte_order_mark` to `utf8_with_a_byte_order_mark`.
fn case_name(test: &str) -> &str {
    let rest = test.strip_prefix("case_").unwrap_or(test);
    rest.split_once('_').map_or(rest, |(_, name)| name)
}

#[test]
fn json_output_has_the_documented_schema() {
    let output = check(&["--output", "json", "denial-then-no-kind.yaml"]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let first = &json["results"][0];
    let mut keys: Vec<_> = first.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "apiVersion",
            "document",
            "file",
            "kind",
            "line",
            "message",
            "name",
            "namespace",
            "verdict",
            "violations"
        ]
    );
    let mut violation: Vec<_> = first["violations"][0]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    violation.sort();
    assert_eq!(violation, ["container", "image", "name", "path", "reason"]);
    assert_eq!(
        json["summary"],
        serde_json::json!({"allowed": 1, "denied": 1, "warned": 0, "audited": 0, "not_inspected": 0, "skipped": 1, "invalid": 0})
    );
}

/// More documents than any parser budget, and a `kubectl get pods -A -o yaml`-sized List, read
/// from stdin in one stream.
#[test]
fn a_long_stream_and_a_30000_pod_list_are_read_whole() {
    let mut stream = String::new();
    for i in 0..2000 {
        stream.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{i}}}\ndata: {{k: v}}\n"
        ));
    }
    stream.push_str("---\napiVersion: v1\nkind: List\nitems:\n");
    for i in 0..30_000 {
        let image = if i == 29_999 {
            "nginx"
        } else {
            "msalinasc_app"
        };
        stream.push_str(&format!(
            "- apiVersion: v1\n  kind: Pod\n  metadata: {{name: p{i}, namespace: ns}}\n  \
             spec:\n    containers:\n    - name: app\n      image: {image}\n"
        ));
    }
    let output = check_stdin(&[], stream.as_bytes());
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let stdout = stdout(&output);
    let denied: Vec<_> = stdout
        .lines()
        .filter(|l| l.contains(": denied: "))
        .collect();
    assert_eq!(
        denied,
        [
            "-:10002: Pod ns/p29999: denied: Invalid image name: spec.containers[0] \"app\": image \"nginx\" \
          has name \"nginx\", which does not start with \"msalinasc_\""
        ]
    );
    assert_eq!(
        stdout.lines().last(),
        Some(
            "29999 allowed, 1 denied, 0 warned, 0 audited, 2000 not inspected, 0 skipped, 0 invalid"
        )
    );
}

#[test]
fn a_document_over_the_size_guard_is_named_and_the_next_one_still_read() {
    let mut stream = String::from("apiVersion: v1\nkind: ConfigMap\ndata:\n");
    let line = format!("  k: {}\n", "x".repeat(1 << 20));
    for _ in 0..129 {
        stream.push_str(&line);
    }
    stream.push_str("---\napiVersion: v1\nkind: Pod\nmetadata: {name: after}\nspec: {containers: [{name: a, image: nginx}]}\n");
    let output = check_stdin(&[], stream.as_bytes());
    assert_eq!(output.status.code(), Some(2));
    let stdout = stdout(&output);
    assert!(
        stdout.starts_with("-:1: document 1: invalid: the document is larger than 128 MiB, the limit for one document\n"),
        "{stdout}"
    );
    assert!(stdout.contains("-:134: Pod after: denied"), "{stdout}");
}

#[rstest]
#[case::unknown_output(&["--output", "xml", "flow.yaml"])]
#[case::no_path(&[])]
#[case::bad_exclude(&["--exclude", "a[", "repo"])]
#[case::bad_prefix(&["--allowed-prefix", "Team_", "flow.yaml"])]
fn a_usage_or_configuration_error_exits_3(#[case] args: &[&str]) {
    let output = check(args);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
}
