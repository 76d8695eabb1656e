//! The webhook's verdict on one parsed document, without I/O: a Kubernetes object is evaluated
//! as the API server would send it on CREATE, an AdmissionReview as it is, a `List` item by
//! item, each with the rules and mode the policy configuration has for its namespace
//! ([`PolicyConfig::rules`], as the webhook looks them up). Objects are read by the webhook's own decoder ([`Workload::from_value`], the path
//! `review::decode` falls back to), so a wrong-shaped workload gets the server's field-path
//! message, and a kind the policy does not inspect is never decoded at all.

use kube::core::{GroupVersionKind, admission::Operation};
use serde_json::{Map, Value};

use super::report::{Finding, Outcome, Violation};
use crate::{
    policy::{
        Input, Mode, Problem, Skipped, Verdict, config::PolicyConfig, workload::PodSpecAt,
        workload::Workload,
    },
    webhook::review,
};

/// Why a Helm template is skipped.
pub const TEMPLATE: &str =
    "a Helm template: render it first, e.g. `helm template CHART | validator-webhook check -`";
const KUSTOMIZATION: &str = "a kustomization, not a Kubernetes object: check what it builds, e.g. \
     `kustomize build DIR | validator-webhook check -`";
const CHART: &str = "Helm chart metadata (Chart.yaml), not a Kubernetes object";
const NO_KIND: &str = "not a Kubernetes object: it has no kind, like values or other data";

/// What is known about a document besides its content.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The file's name without its directory, e.g. `kustomization.yaml`.
    pub file_name: Option<&'a str>,
    /// The text holds `{{`: a template if it is not a finished object.
    pub template: bool,
}

/// The policy, where objects go, and how strictly `check` reads not-inspected kinds.
#[derive(Debug, Clone, Copy)]
pub struct Evaluator<'p> {
    pub config: &'p PolicyConfig,
    /// The namespace of objects that name none.
    pub namespace: &'p str,
    /// Deny kinds the policy does not inspect that carry a pod template.
    pub strict: bool,
}

impl Evaluator<'_> {
    /// The findings for one document: one, or one per item of a `List`.
    pub fn evaluate(&self, document: Value, context: Context<'_>, out: &mut Vec<Finding>) {
        let map = match document {
            Value::Null => return,
            Value::Object(map) => map,
            other => {
                let shape = match other {
                    Value::Array(_) => "a sequence",
                    Value::String(_) => "a string",
                    _ => "a scalar",
                };
                let finding = if context.template {
                    Finding::new(Outcome::Skipped, TEMPLATE)
                } else {
                    Finding::new(
                        Outcome::Skipped,
                        format!("not a Kubernetes object: the document is {shape}"),
                    )
                };
                out.push(finding);
                return;
            }
        };
        if let Some(Value::Array(_)) = map.get("items")
            && kind_of(&map).is_some_and(|kind| kind.ends_with("List"))
        {
            let Some(Value::Array(items)) = into_items(map) else {
                return;
            };
            for item in items {
                self.evaluate(item, context, out);
            }
            return;
        }
        out.push(self.object(map, context));
    }

    /// The finding for one object that is not a `List`.
    pub fn object(&self, map: Map<String, Value>, context: Context<'_>) -> Finding {
        let Some(kind) = kind_of(&map).map(str::to_owned) else {
            return Finding::new(Outcome::Skipped, skip_reason(&map, context));
        };
        let api_version = map.get("apiVersion").and_then(Value::as_str);
        if api_version.is_some_and(|v| v.starts_with("kustomize.config.k8s.io/")) {
            return Finding::new(Outcome::Skipped, KUSTOMIZATION);
        }
        if kind == "AdmissionReview" && api_version.is_some_and(|v| v.starts_with("admission.")) {
            return self.review(map);
        }
        let metadata = |field: &str| {
            map.get("metadata")
                .and_then(|m| m.get(field))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let mut finding = Finding {
            api_version: api_version.map(str::to_owned),
            kind: Some(kind.clone()),
            namespace: metadata("namespace"),
            name: metadata("name").or_else(|| metadata("generateName")),
            verdict: Outcome::Allowed,
            message: None,
            violations: Vec::new(),
        };
        let Some(api_version) = api_version else {
            finding.verdict = Outcome::Invalid;
            finding.message = Some("the object has no apiVersion".to_owned());
            return finding;
        };
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, &kind);
        let inspected = PodSpecAt::of(&gvk).is_some();
        if context.template && inspected {
            return Finding::new(Outcome::Skipped, TEMPLATE);
        }
        if !inspected {
            // Allowed with the server's warning, whatever the rest of the object holds.
            let warning = review::warning(Skipped::Kind, &gvk, "", None);
            match pod_template(&map).filter(|_| self.strict) {
                Some(at) => {
                    finding.verdict = Outcome::Denied;
                    finding.message = Some(format!(
                        "{warning}, and it carries a pod template at {at} whose images would go \
                         unchecked (--strict)"
                    ));
                }
                None => {
                    finding.verdict = Outcome::NotInspected;
                    finding.message = Some(warning);
                }
            }
            return finding;
        }
        let workload = Workload::from_value(Value::Object(map));
        // As the API server would send it on CREATE, in the namespace it would land in.
        let input = Input {
            operation: &Operation::Create,
            kind: &gvk,
            subresource: None,
            object: Some(&workload),
        };
        let namespace = finding.namespace.as_deref().unwrap_or(self.namespace);
        let rules = self.config.rules(Some(namespace));
        let verdict = rules.policy.evaluate(input);
        self.judge(finding, &gvk, "", None, verdict, rules.mode)
    }

    /// An AdmissionReview, decoded by the webhook's decoder. Offline nothing needs its `uid`,
    /// and `v1beta1` reads the same as `v1`, so neither is asked for.
    fn review(&self, mut map: Map<String, Value>) -> Finding {
        map.insert(
            "apiVersion".to_owned(),
            Value::String("admission.k8s.io/v1".to_owned()),
        );
        if let Some(Value::Object(request)) = map.get_mut("request") {
            request
                .entry("uid")
                .or_insert_with(|| Value::String(String::new()));
        }
        let decoded = serde_json::to_vec(&map)
            .map_err(|e| e.to_string())
            .and_then(|body| review::decode(&body).map_err(|e| e.to_string()));
        let request = match decoded {
            Ok(request) => request,
            Err(why) => return Finding::new(Outcome::Invalid, why),
        };
        let gvk = &request.kind;
        let api_version = match gvk.group.as_str() {
            "" => gvk.version.clone(),
            group => format!("{group}/{}", gvk.version),
        };
        let finding = Finding {
            api_version: Some(api_version),
            kind: Some(gvk.kind.clone()),
            namespace: request.namespace.clone().filter(|ns| !ns.is_empty()),
            name: Some(request.name.clone()).filter(|name| !name.is_empty()),
            verdict: Outcome::Allowed,
            message: None,
            violations: Vec::new(),
        };
        // As the webhook answers it: the rules of the request's namespace, and an UPDATE judged
        // against its old object.
        let rules = self.config.rules(request.namespace.as_deref());
        let verdict = rules
            .policy
            .evaluate_update(Input::of(&request), request.old_object.as_ref());
        self.judge(
            finding,
            gvk,
            &request.resource.resource,
            request.sub_resource.as_deref(),
            verdict,
            rules.mode,
        )
    }

    /// The policy's verdict in `mode`, in the webhook's words: a denial outside `enforce` is
    /// reported as warned or audited, with the same message and violations.
    fn judge(
        &self,
        mut finding: Finding,
        gvk: &GroupVersionKind,
        resource: &str,
        subresource: Option<&str>,
        verdict: Verdict<'_>,
        mode: Mode,
    ) -> Finding {
        match &verdict {
            Verdict::Allowed => {}
            Verdict::NotInspected(skipped) => {
                finding.verdict = Outcome::NotInspected;
                finding.message = Some(review::warning(*skipped, gvk, resource, subresource));
            }
            Verdict::Denied(denial) => {
                finding.verdict = match mode {
                    Mode::Enforce => Outcome::Denied,
                    Mode::Warn => Outcome::Warned,
                    Mode::Audit => Outcome::Audited,
                };
                finding.message = Some(denial.to_string());
                finding.violations = denial
                    .violations
                    .iter()
                    .map(|v| Violation {
                        path: v.path.clone(),
                        container: v.container.clone(),
                        image: v.image.plain(),
                        name: match &v.problem {
                            Problem::Unprefixed(name) => Some(name.plain()),
                            _ => None,
                        },
                        reason: v.reason(denial.prefixes()).to_string(),
                    })
                    .collect();
            }
            Verdict::Invalid(_) => {
                finding.verdict = Outcome::Invalid;
                finding.message = review::denial_message(&verdict, &gvk.kind);
            }
        }
        finding
    }
}

fn kind_of(map: &Map<String, Value>) -> Option<&str> {
    map.get("kind")
        .and_then(Value::as_str)
        .filter(|kind| !kind.is_empty())
}

fn into_items(mut map: Map<String, Value>) -> Option<Value> {
    map.remove("items")
}

/// Why a document without a kind is skipped.
fn skip_reason(map: &Map<String, Value>, context: Context<'_>) -> &'static str {
    let file = context.file_name.unwrap_or_default();
    if context.template {
        TEMPLATE
    } else if matches!(
        file,
        "kustomization.yaml" | "kustomization.yml" | "Kustomization"
    ) || ["resources", "bases", "patchesStrategicMerge", "components"]
        .iter()
        .any(|key| map.contains_key(*key))
    {
        KUSTOMIZATION
    } else if matches!(file, "Chart.yaml" | "Chart.yml")
        || (map.contains_key("name")
            && map.contains_key("version")
            && map
                .get("apiVersion")
                .is_some_and(|v| v == "v1" || v == "v2"))
    {
        CHART
    } else {
        NO_KIND
    }
}

/// Where an object of a kind the policy does not inspect keeps a pod spec with containers, if it
/// has one: Argo Rollouts, OpenKruise workloads, `extensions/v1beta1` Deployments.
fn pod_template(map: &Map<String, Value>) -> Option<&'static str> {
    let paths: [(&[&str], &str); 4] = [
        (&["spec", "template", "spec"], "spec.template.spec"),
        (
            &["spec", "jobTemplate", "spec", "template", "spec"],
            "spec.jobTemplate.spec.template.spec",
        ),
        (&["template", "spec"], "template.spec"),
        (&["spec"], "spec"),
    ];
    paths.into_iter().find_map(|(path, name)| {
        let mut at = map.get(path[0])?;
        for field in &path[1..] {
            at = at.get(field)?;
        }
        at.get("containers")
            .is_some_and(Value::is_array)
            .then_some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(strict: bool, document: Value, file_name: Option<&str>) -> Vec<Finding> {
        let config = PolicyConfig::default();
        let mut out = Vec::new();
        Evaluator {
            config: &config,
            namespace: "default",
            strict,
        }
        .evaluate(
            document,
            Context {
                file_name,
                template: false,
            },
            &mut out,
        );
        out
    }

    #[test]
    fn a_kind_not_inspected_is_never_decoded() {
        let object = serde_json::json!({"apiVersion": "example.com/v1", "kind": "Thing",
            "metadata": {"name": "x"}, "spec": {"template": false, "containers": "nginx"}});
        let [finding] = &findings(false, object, None)[..] else {
            panic!("one finding")
        };
        assert_eq!(finding.verdict, Outcome::NotInspected);
        assert_eq!(
            finding.message.as_deref(),
            Some("validator-webhook: example.com/v1 Thing is not a kind the image policy inspects")
        );
    }

    #[test]
    fn strict_denies_a_kind_not_inspected_that_carries_a_pod_template() {
        let rollout = serde_json::json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "r"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        assert_eq!(
            findings(false, rollout.clone(), None)[0].verdict,
            Outcome::NotInspected
        );
        let strict = &findings(true, rollout, None)[0];
        assert_eq!(strict.verdict, Outcome::Denied);
        assert!(
            strict
                .message
                .as_deref()
                .unwrap()
                .contains("pod template at spec.template.spec")
        );
    }

    #[test]
    fn explains_documents_that_are_not_objects() {
        let reason = |document: Value, file: Option<&str>| {
            findings(false, document, file)[0].message.clone().unwrap()
        };
        assert_eq!(
            reason(serde_json::json!({"resources": ["a.yaml"]}), None),
            KUSTOMIZATION
        );
        assert_eq!(
            reason(
                serde_json::json!({"apiVersion": "v2", "name": "c", "version": "1.0.0"}),
                None
            ),
            CHART
        );
        assert_eq!(
            reason(serde_json::json!({"replicas": 2}), Some("values.yaml")),
            NO_KIND
        );
    }
}
