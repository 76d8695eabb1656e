//! `validator-webhook check`: the webhook's verdicts on manifests, before they reach a cluster.
//!
//! Each Kubernetes object is evaluated as the API server would send it on CREATE; an
//! AdmissionReview is evaluated as it is. The messages are the webhook's own.

use std::{
    fmt,
    io::{self, Read, Write},
    path::Path,
};

use kube::core::{GroupVersionKind, admission::Operation};
use serde_json::Value;

use crate::{
    policy::{Input, Policy, Verdict, workload::Workload},
    webhook::review,
};

/// What `check` concluded about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// e.g. `Deployment shop/web`.
    pub object: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    NotInspected(String),
    Denied(String),
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Allowed => write!(f, "{}: allowed", self.object),
            Outcome::NotInspected(why) => write!(f, "{}: not inspected ({why})", self.object),
            Outcome::Denied(why) => write!(f, "{}: denied: {why}", self.object),
        }
    }
}

/// The process exit status of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Passed = 0,
    Denied = 1,
    Unreadable = 2,
}

/// Checks every file (`-` is standard input), printing a line per object to `out` and
/// problems with the input to `err`.
pub fn run(
    policy: &Policy,
    files: &[impl AsRef<Path>],
    out: &mut impl Write,
    err: &mut impl Write,
) -> Status {
    let mut status = Status::Passed;
    let (mut allowed, mut denied) = (0, 0);
    for file in files {
        let file = file.as_ref();
        let name = file.display();
        let findings = read(file).and_then(|text| check_text(policy, &text));
        match findings {
            Ok(findings) => {
                for finding in findings {
                    let _ = writeln!(out, "{name}: {finding}");
                    if let Outcome::Denied(_) = finding.outcome {
                        denied += 1;
                        status = status.max(Status::Denied);
                    } else {
                        allowed += 1;
                    }
                }
            }
            Err(problem) => {
                let _ = writeln!(err, "{name}: {problem}");
                status = Status::Unreadable;
            }
        }
    }
    let _ = writeln!(out, "{allowed} allowed, {denied} denied");
    status
}

fn read(file: &Path) -> Result<String, String> {
    let mut text = String::new();
    let result = if file == Path::new("-") {
        io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::File::open(file)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map(|_| ())
    };
    result
        .map(|()| text)
        .map_err(|e| format!("cannot read: {e}"))
}

/// Checks the documents in a YAML or JSON text.
pub fn check_text(policy: &Policy, text: &str) -> Result<Vec<Finding>, String> {
    let documents: Vec<Value> = if text.trim_start().starts_with(['{', '[']) {
        vec![serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?]
    } else {
        serde_saphyr::from_multiple(text).map_err(|e| format!("not valid YAML: {e}"))?
    };
    let mut findings = Vec::new();
    for (index, document) in documents.into_iter().enumerate() {
        check_document(policy, document, &mut findings)
            .map_err(|problem| format!("document {}: {problem}", index + 1))?;
    }
    Ok(findings)
}

fn check_document(
    policy: &Policy,
    document: Value,
    findings: &mut Vec<Finding>,
) -> Result<(), String> {
    if document.is_null() {
        return Ok(());
    }
    let kind = document
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let items = document.get("items").and_then(Value::as_array);
    if kind.ends_with("List") && items.is_some() {
        for item in items.into_iter().flatten() {
            check_document(policy, item.clone(), findings)?;
        }
        return Ok(());
    }
    let finding = match kind.as_str() {
        "" => return Err("not a Kubernetes object: it has no kind".to_owned()),
        "AdmissionReview" => {
            let body = serde_json::to_vec(&document).map_err(|e| e.to_string())?;
            let request = review::decode(&body).map_err(|e| e.to_string())?;
            let object = Object {
                kind: &request.kind,
                resource: &request.resource.resource,
                name: &request.name,
                namespace: request.namespace.as_deref(),
            };
            object.finding(
                policy.evaluate(Input::of(&request)),
                request.sub_resource.as_deref(),
            )
        }
        _ => {
            let api_version = document
                .get("apiVersion")
                .and_then(Value::as_str)
                .ok_or("the object has no apiVersion")?;
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let kind = GroupVersionKind::gvk(group, version, &kind);
            let metadata = |field: &str| {
                document
                    .get("metadata")
                    .and_then(|m| m.get(field))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let (name, namespace) = (metadata("name"), metadata("namespace"));
            let workload = Workload::from_value(document);
            // As the API server would send it on CREATE.
            let input = Input {
                operation: &Operation::Create,
                kind: &kind,
                subresource: None,
                object: Some(&workload),
            };
            let object = Object {
                kind: &kind,
                resource: "",
                name: &name,
                namespace: Some(namespace.as_str()),
            };
            object.finding(policy.evaluate(input), None)
        }
    };
    findings.push(finding);
    Ok(())
}

/// The object a verdict is about, as the finding names it.
struct Object<'a> {
    kind: &'a GroupVersionKind,
    resource: &'a str,
    name: &'a str,
    namespace: Option<&'a str>,
}

impl Object<'_> {
    fn finding(&self, verdict: Verdict<'_>, subresource: Option<&str>) -> Finding {
        let name = if self.name.is_empty() {
            "(unnamed)"
        } else {
            self.name
        };
        let kind = &self.kind.kind;
        let object = match self.namespace.filter(|ns| !ns.is_empty()) {
            Some(namespace) => format!("{kind} {namespace}/{name}"),
            None => format!("{kind} {name}"),
        };
        let outcome = match &verdict {
            Verdict::Allowed => Outcome::Allowed,
            Verdict::NotInspected(skipped) => Outcome::NotInspected(review::warning(
                *skipped,
                self.kind,
                self.resource,
                subresource,
            )),
            Verdict::Denied(_) | Verdict::Invalid(_) => {
                Outcome::Denied(review::denial_message(&verdict, kind).unwrap_or_default())
            }
        };
        Finding { object, outcome }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Vec<String>, String> {
        let findings = check_text(&Policy::default(), text)?;
        Ok(findings.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn evaluates_every_document_of_a_yaml_stream() {
        let text = "
apiVersion: v1
kind: Pod
metadata: {name: ok, namespace: shop}
spec: {containers: [{name: app, image: msalinasc_app}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: '@daily'
  jobTemplate: {spec: {template: {spec: {containers: [{name: job, image: busybox}]}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
";
        assert_eq!(
            check(text).unwrap(),
            [
                "Pod shop/ok: allowed",
                "CronJob nightly: denied: Invalid image name: spec.jobTemplate.spec.template.spec.containers[0] \"job\": \
                 image \"busybox\" has name \"busybox\", which does not start with \"msalinasc_\"",
                "ConfigMap settings: not inspected (validator-webhook: v1 ConfigMap is not a kind the image policy inspects)",
            ]
        );
    }

    #[test]
    fn opens_lists() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"nginx"}]}},
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"b"},"spec":{"containers":[{"name":"c","image":"msalinasc_b"}]}}]}"#;
        assert_eq!(
            check(text).unwrap(),
            [
                "Pod a: denied: Invalid image name: spec.containers[0] \"c\": image \"nginx\" has name \"nginx\", \
                 which does not start with \"msalinasc_\"",
                "Pod b: allowed",
            ]
        );
    }

    #[test]
    fn says_which_document_is_not_an_object() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\njust: data\n";
        assert_eq!(
            check(text).unwrap_err(),
            "document 2: not a Kubernetes object: it has no kind"
        );
        assert_eq!(
            check("kind: Pod\n").unwrap_err(),
            "document 1: the object has no apiVersion"
        );
    }

    #[test]
    fn exit_status_is_the_worst_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.yaml");
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&good, "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: msalinasc_a}]}\n").unwrap();
        std::fs::write(&bad, "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec: {containers: [{name: c, image: nginx}]}\n").unwrap();
        let missing = dir.path().join("missing.yaml");
        let run =
            |files: &[&Path]| run(&Policy::default(), files, &mut Vec::new(), &mut Vec::new());
        assert_eq!(run(&[&good]), Status::Passed);
        assert_eq!(run(&[&good, &bad]), Status::Denied);
        assert_eq!(run(&[&bad, &missing]), Status::Unreadable);
    }
}
