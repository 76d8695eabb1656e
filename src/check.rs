//! `validator-webhook check`: the webhook's verdicts on manifests, before they reach a cluster.
//!
//! Each Kubernetes object is evaluated as the API server would send it on CREATE; an
//! AdmissionReview is evaluated as it is. The messages are the webhook's own.

use std::{
    fmt,
    io::{self, Read, Write},
    path::Path,
};

use kube::core::admission::AdmissionRequest;
use serde_json::{Value, json};

use crate::{policy::Policy, review, workload::Workload};

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
    let request = match kind.as_str() {
        "" => return Err("not a Kubernetes object: it has no kind".to_owned()),
        "AdmissionReview" => {
            let body = serde_json::to_vec(&document).map_err(|e| e.to_string())?;
            review::decode(&body).map_err(|e| e.to_string())?
        }
        _ => as_create(&document)?,
    };
    findings.push(evaluate(policy, &request));
    Ok(())
}

/// The request the API server would send to create `object`.
fn as_create(object: &Value) -> Result<AdmissionRequest<Workload>, String> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or("the object has no apiVersion")?;
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let metadata = object.get("metadata");
    let field = |name: &str| {
        metadata
            .and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let request = json!({
        "uid": "",
        "kind": { "group": group, "version": version, "kind": kind },
        "resource": { "group": group, "version": version, "resource": format!("{}s", kind.to_lowercase()) },
        "name": field("name"),
        "namespace": field("namespace"),
        "operation": "CREATE",
        "userInfo": {},
        "object": object,
        "oldObject": null,
    });
    serde_json::from_str(&request.to_string()).map_err(|e| e.to_string())
}

fn evaluate(policy: &Policy, request: &AdmissionRequest<Workload>) -> Finding {
    let name = if request.name.is_empty() {
        "(unnamed)"
    } else {
        request.name.as_str()
    };
    let object = match request.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        Some(namespace) => format!("{} {namespace}/{name}", request.kind.kind),
        None => format!("{} {name}", request.kind.kind),
    };
    let response = policy.review(request);
    let outcome = if !response.allowed {
        Outcome::Denied(response.result.message)
    } else if let Some(warnings) = response.warnings {
        Outcome::NotInspected(warnings.join("; "))
    } else {
        Outcome::Allowed
    };
    Finding { object, outcome }
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
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"nginx"}]}}]}"#;
        assert_eq!(check(text).unwrap().len(), 1);
    }

    #[test]
    fn says_which_document_is_not_an_object() {
        assert_eq!(
            check("kind: Pod\n---\njust: data\n").unwrap_err(),
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
