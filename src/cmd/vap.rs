//! `validator-webhook vap`: the policy as a ValidatingAdmissionPolicy and its binding, for a
//! cluster that should enforce it in the API server itself, with no webhook (or with both).
//!
//! The CEL follows the policy step by step: the pod spec of each kind in
//! [`INSPECTED`](crate::policy::workload::INSPECTED), every list of
//! [`ContainerList::ALL`], the reference grammar as a regular expression plus the length and
//! digest checks a regular expression cannot make, then the name (the last path component,
//! without tag or digest) against the prefixes. Where CEL still decides differently from
//! `policy::image` is listed in README ("Known divergences"), and the parity suite
//! (`e2e/tests/parity.rs`) fails on anything not in that list.

use std::fmt::Write as _;

use k8s_openapi::{
    api::admissionregistration::v1::{
        MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
        ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
        ValidatingAdmissionPolicySpec, Validation, Variable,
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, ObjectMeta},
};

use crate::policy::{
    Mode, Policy,
    workload::{ContainerList, INSPECTED, INSPECTED_SUBRESOURCES, PodSpecAt},
};

/// The name of the policy and of its binding.
pub const NAME: &str = "validator-webhook";

/// The namespaces the webhook never reviews (deploy/'s namespaceSelector; a test keeps the two
/// equal), so a broken policy can always be repaired.
pub const EXEMPT_NAMESPACES: [&str; 2] = ["kube-system", "validator-webhook"];

/// What the API server does with a workload the policy refuses, for each mode.
fn validation_action(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "Deny",
        Mode::Warn => "Warn",
        Mode::Audit => "Audit",
    }
}

/// The reference grammar of distribution/reference (with OCI digests), anchored, in RE2 syntax.
/// Lengths are checked apart: RE2 cannot count past 1000 and cannot tell sha256 from the rest.
const REFERENCE: &str = concat!(
    r"^(?:(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])",
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*",
    r"|\[[a-fA-F0-9:]+\])(?::[0-9]+)?/)?",
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*",
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*",
    r"(?::[\w][\w.-]{0,127})?",
    r"(?:@(?:[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}",
    r"|[a-z0-9]+(?:[-_+.][a-z0-9]+)*:[a-zA-Z0-9=_-]+))?$",
);

/// The policy and its binding, as two YAML documents.
pub fn render(policy: &Policy, mode: Mode) -> Result<String, serde_saphyr::SerializeError> {
    let (vap, binding) = objects(policy, mode);
    Ok(format!(
        "{}---\n{}",
        serde_saphyr::to_string(&vap)?,
        serde_saphyr::to_string(&binding)?
    ))
}

/// The ValidatingAdmissionPolicy and the binding that puts it in force cluster-wide.
pub fn objects(
    policy: &Policy,
    mode: Mode,
) -> (ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding) {
    let metadata = ObjectMeta {
        name: Some(NAME.to_owned()),
        labels: Some([("app.kubernetes.io/name".to_owned(), NAME.to_owned())].into()),
        ..ObjectMeta::default()
    };
    let vap = ValidatingAdmissionPolicy {
        metadata: metadata.clone(),
        spec: Some(ValidatingAdmissionPolicySpec {
            failure_policy: Some("Fail".to_owned()),
            match_constraints: Some(match_constraints()),
            variables: Some(variables(policy)),
            validations: Some(vec![Validation {
                expression: "variables.offenders.size() == 0".to_owned(),
                message_expression: Some(message_expression()),
                reason: Some("Forbidden".to_owned()),
                ..Validation::default()
            }]),
            ..ValidatingAdmissionPolicySpec::default()
        }),
        status: None,
    };
    let binding = ValidatingAdmissionPolicyBinding {
        metadata,
        spec: ValidatingAdmissionPolicyBindingSpec {
            policy_name: NAME.to_owned(),
            validation_actions: vec![validation_action(mode).to_owned()],
            ..ValidatingAdmissionPolicyBindingSpec::default()
        },
    };
    (vap, binding)
}

/// The kinds, operations and namespaces the webhook reviews.
fn match_constraints() -> MatchResources {
    let mut groups: Vec<&str> = INSPECTED.iter().map(|k| k.group).collect();
    groups.dedup();
    let rules = groups
        .into_iter()
        .map(|group| {
            let mut resources: Vec<String> = INSPECTED
                .iter()
                .filter(|k| k.group == group)
                .map(|k| k.resource.to_owned())
                .collect();
            for sub in INSPECTED_SUBRESOURCES {
                let resource = sub.split('/').next().unwrap_or(sub);
                if resources.iter().any(|r| r == resource) {
                    resources.push(sub.to_owned());
                }
            }
            NamedRuleWithOperations {
                api_groups: Some(vec![group.to_owned()]),
                api_versions: Some(vec!["v1".to_owned()]),
                operations: Some(vec!["CREATE".to_owned(), "UPDATE".to_owned()]),
                resources: Some(resources),
                scope: Some("Namespaced".to_owned()),
                ..NamedRuleWithOperations::default()
            }
        })
        .collect();
    MatchResources {
        match_policy: Some("Equivalent".to_owned()),
        namespace_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".to_owned(),
                operator: "NotIn".to_owned(),
                values: Some(EXEMPT_NAMESPACES.map(str::to_owned).to_vec()),
            }]),
            match_labels: None,
        }),
        resource_rules: Some(rules),
        ..MatchResources::default()
    }
}

/// `request.kind` is one of the kinds at `at`.
fn is_kind_at(at: PodSpecAt) -> String {
    let kinds: Vec<String> = INSPECTED
        .iter()
        .filter(|k| k.at == at)
        .map(|k| {
            format!(
                "(request.kind.group == '{}' && request.kind.kind == '{}')",
                k.group, k.kind
            )
        })
        .collect();
    kinds.join(" || ")
}

/// A CEL chain choosing, by kind, `value(at)`; the last kind's value is the fallback, which
/// the match constraints make the only one left.
fn by_kind(value: impl Fn(PodSpecAt) -> String) -> String {
    let mut chain = String::new();
    let last = PodSpecAt::ALL.len() - 1;
    for at in &PodSpecAt::ALL[..last] {
        let _ = write!(chain, "({}) ? {} : ", is_kind_at(*at), value(*at));
    }
    chain.push_str(&value(PodSpecAt::ALL[last]));
    chain
}

/// CEL of the name of image `x` (a string expression): the last path component, without
/// digest or tag. A port is never in the last component, so its ':' is never cut.
fn name_of(x: &str) -> String {
    let repository = format!("{x}.split('@')[0]");
    format!("{repository}.substring({repository}.lastIndexOf('/') + 1).split(':')[0]")
}

/// CEL: `x` is an image reference `policy::image` accepts.
fn valid(x: &str) -> String {
    let repository = format!("{x}.split('@')[0]");
    // The name (registry and path) without the tag: at most 255 characters.
    let name = format!(
        "({repository}.lastIndexOf(':') > {repository}.lastIndexOf('/') \
         ? {repository}.substring(0, {repository}.lastIndexOf(':')) : {repository})"
    );
    let digest = format!("{x}.substring({x}.indexOf('@') + 1)");
    format!(
        "({x}.matches(r'{REFERENCE}') && {name}.size() <= 255 \
         && (!{x}.contains('@') || ({digest}.startsWith('sha256:') ? {digest}.matches(r'^sha256:[a-f0-9]{{64}}$') \
         : {digest}.startsWith('sha512:') ? {digest}.matches(r'^sha512:[a-f0-9]{{128}}$') \
         : {digest}.size() <= 1024 + {digest}.indexOf(':') + 1)))"
    )
}

/// CEL list literal of the allowed prefixes.
fn prefixes(policy: &Policy) -> String {
    let quoted: Vec<String> = policy.prefixes().iter().map(|p| format!("'{p}'")).collect();
    format!("[{}]", quoted.join(", "))
}

fn variables(policy: &Policy) -> Vec<Variable> {
    let spec = by_kind(|at| format!("object.{}", at.path()));
    let path = by_kind(|at| format!("'{}'", at.path()));
    let lists: Vec<String> = ContainerList::ALL
        .iter()
        .map(|list| {
            let field = list.field();
            let entry = match list {
                ContainerList::ImageVolumes => format!(
                    "variables.spec.{field}.filter(v, has(v.image)).map(v, ['{field}', string(v.name), \
                     has(v.image.reference) ? string(v.image.reference) : ''])"
                ),
                _ => format!(
                    "variables.spec.{field}.map(c, ['{field}', string(c.name), has(c.image) ? string(c.image) : ''])"
                ),
            };
            format!("(has(variables.spec.{field}) ? {entry} : [])")
        })
        .collect();
    [
        ("spec", spec),
        ("path", path),
        // [list field, container (or volume) name, image (or '' when it has none)]
        ("images", lists.join(" + ")),
        // [list field, name, image, why it is refused], for each refused image
        ("offenders", offenders(policy)),
    ]
    .into_iter()
    .map(|(name, expression)| Variable {
        name: name.to_owned(),
        expression,
    })
    .collect()
}

/// CEL: each image that is refused, with the webhook's words for why.
fn offenders(policy: &Policy) -> String {
    let image = "i[2]";
    let prefixes_in_words = match policy.prefixes() {
        [one] => format!("\"{one}\""),
        many => {
            let quoted: Vec<String> = many.iter().map(|p| format!("\"{p}\"")).collect();
            format!("any of {}", quoted.join(", "))
        }
    };
    let name = name_of(image);
    let why = format!(
        "{image} == '' ? (i[0] == 'volumes' ? 'is an image volume without a reference' : 'has no image') \
         : !{valid} ? 'image \"' + {image} + '\" is not a valid image reference' \
         : {prefixes}.exists(p, {name}.startsWith(p)) ? '' \
         : 'image \"' + {image} + '\" has name \"' + {name} + '\", which does not start with {prefixes_in_words}'",
        valid = valid(image),
        prefixes = prefixes(policy),
    );
    format!(
        "variables.images.map(i, [string(i[0]), string(i[1]), string(i[2]), {why}]).filter(i, i[3] != '')"
    )
}

/// The webhook's denial text, without the index of each container in its list.
fn message_expression() -> String {
    "'Invalid image name' + (variables.offenders.size() == 1 ? ': ' \
     : ' in ' + string(variables.offenders.size()) + ' containers: ') \
     + variables.offenders.map(i, variables.path + '.' + i[0] + ' \"' + i[1] + '\": ' + i[3]).join('; ')"
        .to_owned()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;

    use super::*;

    fn deployed_webhook() -> ValidatingWebhookConfiguration {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/base/validatingwebhookconfiguration.yaml"
        ))
        .unwrap();
        serde_saphyr::from_str(&text).unwrap()
    }

    #[test]
    fn prints_the_default_policy_in_force() {
        let yaml = render(&Policy::default(), Mode::Enforce).unwrap();
        insta::with_settings!({
            snapshot_path => "../../snapshots",
            prepend_module_to_snapshot => false,
        }, {
            insta::assert_snapshot!("vap__default_policy_in_force", yaml);
        });
    }

    #[test]
    fn maps_each_mode_to_its_validation_action() {
        for (mode, action) in [
            (Mode::Enforce, "Deny"),
            (Mode::Warn, "Warn"),
            (Mode::Audit, "Audit"),
        ] {
            let (_, binding) = objects(&Policy::default(), mode);
            assert_eq!(binding.spec.validation_actions, [action]);
        }
    }

    #[test]
    fn quotes_every_prefix_in_the_checks_and_the_message() {
        let policy = Policy::new(["team_", "msalinasc_"]).unwrap();
        let (vap, _) = objects(&policy, Mode::Enforce);
        let spec = vap.spec.unwrap();
        let offenders = &spec.variables.unwrap()[3].expression;
        assert!(offenders.contains("['team_', 'msalinasc_']"), "{offenders}");
        assert!(
            offenders.contains(r#"does not start with any of "team_", "msalinasc_"'"#),
            "{offenders}"
        );
    }

    /// The webhook's configuration in deploy/ and the VAP review the same requests.
    #[test]
    fn matches_what_the_deployed_webhook_reviews() {
        let webhook = deployed_webhook().webhooks.unwrap().remove(0);
        let (vap, _) = objects(&Policy::default(), Mode::Enforce);
        let constraints = vap.spec.unwrap().match_constraints.unwrap();
        assert_eq!(constraints.namespace_selector, webhook.namespace_selector);
        assert_eq!(constraints.match_policy, webhook.match_policy);
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        let vap_rules: Vec<_> = constraints
            .resource_rules
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.api_groups,
                    r.operations,
                    sorted(r.resources.unwrap_or_default()),
                )
            })
            .collect();
        let webhook_rules: Vec<_> = webhook
            .rules
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.api_groups,
                    r.operations,
                    sorted(r.resources.unwrap_or_default()),
                )
            })
            .collect();
        assert_eq!(vap_rules, webhook_rules);
    }
}
