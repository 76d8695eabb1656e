//! `check --cluster`: every object of every kind the policy inspects, listed from a live cluster
//! and reported like a file: what the webhook would deny there today, before it is turned on.
//!
//! The kubeconfig is found as `kubectl` finds it (`KUBECONFIG`, `~/.kube/config`, or the
//! in-cluster service account). Objects are listed 500 at a time, so a large cluster is never
//! held in memory at once.

use kube::{
    Api, Client, Config,
    api::{ApiResource, DynamicObject, ListParams},
    core::GroupVersionKind,
};
use serde_json::Value;

use super::{
    Options, Recorder, Status,
    evaluate::{Context, Evaluator},
    report::{Finding, Outcome, Report},
};
use crate::policy::config::PolicyConfig;

/// Which namespaces to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The kubeconfig context's namespace, as `kubectl get` uses it.
    Default,
    Namespace(String),
    All,
}

/// Every kind the policy inspects, with its plural.
const KINDS: [(&str, &str, &str, &str); 9] = [
    ("", "v1", "Pod", "pods"),
    ("", "v1", "PodTemplate", "podtemplates"),
    ("", "v1", "ReplicationController", "replicationcontrollers"),
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "ReplicaSet", "replicasets"),
    ("apps", "v1", "StatefulSet", "statefulsets"),
    ("apps", "v1", "DaemonSet", "daemonsets"),
    ("batch", "v1", "Job", "jobs"),
    ("batch", "v1", "CronJob", "cronjobs"),
];

/// How many objects one list request asks for.
const PAGE: u32 = 500;

/// Lists and checks every inspected workload in `scope`. A kubeconfig that cannot be loaded is
/// an `Err` (a configuration error); a kind that cannot be listed is an invalid result.
pub fn run(
    policy: &PolicyConfig,
    scope: &Scope,
    options: &Options,
    out: &mut dyn std::io::Write,
) -> Result<Status, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))?;
    runtime.block_on(async {
        let config = Config::infer()
            .await
            .map_err(|e| format!("cannot load a kubeconfig for --cluster: {e}"))?;
        let namespace = match scope {
            Scope::Default => Some(config.default_namespace.clone()),
            Scope::Namespace(namespace) => Some(namespace.clone()),
            Scope::All => None,
        };
        let client = Client::try_from(config)
            .map_err(|e| format!("cannot make a client for --cluster: {e}"))?;
        // Every listed object names its namespace.
        let evaluator = Evaluator {
            config: policy,
            namespace: super::DEFAULT_NAMESPACE,
            strict: options.strict,
        };
        let mut recorder = Recorder::new(options, out);
        for (group, version, kind, plural) in KINDS {
            let resource = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, version, kind),
                plural,
            );
            let api: Api<DynamicObject> = match &namespace {
                Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
                None => Api::all_with(client.clone(), &resource),
            };
            list_kind(&api, &resource, &evaluator, &mut recorder).await;
        }
        recorder
            .finish()
            .map_err(|e| format!("cannot write the results: {e}"))
    })
}

async fn list_kind(
    api: &Api<DynamicObject>,
    resource: &ApiResource,
    evaluator: &Evaluator<'_>,
    recorder: &mut Recorder<'_>,
) {
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = match api.list(&params).await {
            Ok(page) => page,
            Err(error) => {
                let why = format!("cannot list {}: {}", resource.plural, reason(&error));
                return recorder.record(&Report {
                    file: "cluster".to_owned(),
                    document: None,
                    line: None,
                    finding: Finding::new(Outcome::Invalid, why),
                });
            }
        };
        for object in page.items {
            let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
            // Items of a list carry no kind of their own.
            if let Value::Object(map) = &mut value {
                map.insert("apiVersion".to_owned(), resource.api_version.clone().into());
                map.insert("kind".to_owned(), resource.kind.clone().into());
            }
            let mut findings = Vec::new();
            evaluator.evaluate(value, Context::default(), &mut findings);
            for finding in findings {
                recorder.record(&Report {
                    file: "cluster".to_owned(),
                    document: None,
                    line: None,
                    finding,
                });
            }
        }
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return,
        }
    }
}

/// The API server's own words when it answered, the transport's otherwise.
fn reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}
