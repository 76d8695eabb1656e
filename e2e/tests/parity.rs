//! Parity: the policy in process, the webhook through the API server and the
//! ValidatingAdmissionPolicy that `validator-webhook vap` prints decide every generated case
//! alike, or the difference is one of the known divergences listed in README.
//!
//! The cases are drawn from the image reference grammar and its edges (registry hosts with
//! ports and IPv6, nested paths, tags, digests, both, upper case, empty, separators and lengths
//! at the limits, the prefix in a component that is not the last, the prefix exactly), in every
//! list of every kind the policy inspects. Each case is one server-side dry run: the VAP is
//! bound with `--mode warn`, so its verdict comes back as a warning while the webhook, which the
//! API server calls after it, decides the request. `PARITY_CASES` (default 2000) and
//! `PARITY_SEED` (printed on every run) reproduce a run.

use std::{
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use e2e::{cluster::Cluster, paths};
use futures::{StreamExt, stream};
use http_body_util::BodyExt;
use kube::core::{GroupVersionKind, admission::Operation};
use proptest::{
    prelude::*,
    strategy::ValueTree,
    test_runner::{Config, RngAlgorithm, TestRng, TestRunner},
};
use serde_json::{Value, json};
use testkit::process::wait_for;
use validator_webhook::policy::{
    Input, Policy, Verdict,
    workload::{INSPECTED, InspectedKind, Workload},
};

const PREFIX: &str = "msalinasc_";
/// An image every decider allows, to fill the lists around the image under test.
const GOOD: &str = "registry.example.com:5000/team/msalinasc_ok:1";
/// Requests in flight at once.
const CONCURRENCY: usize = 12;

fn main() -> ExitCode {
    let cases: usize = std::env::var("PARITY_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let seed: u64 = std::env::var("PARITY_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    eprintln!("parity: {cases} cases, PARITY_SEED={seed}");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("parity: no tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let cluster = match runtime.block_on(Cluster::start()) {
        Ok(cluster) => Arc::new(cluster),
        Err(error) => {
            eprintln!("parity: cannot bring up the cluster: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(&cluster, cases, seed));
    let failed = match &outcome {
        Ok(()) => false,
        Err(error) => {
            eprintln!(
                "parity: FAILED: {error:#}\nparity: reproduce with PARITY_SEED={seed} PARITY_CASES={cases}"
            );
            true
        }
    };
    match Arc::try_unwrap(cluster) {
        Ok(cluster) => cluster.finish(failed),
        Err(_) => eprintln!("parity: the cluster is still held; it stops at exit"),
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One generated request.
#[derive(Debug, Clone)]
struct Case {
    kind: InspectedKind,
    /// A debug container added to a running Pod (`pods/ephemeralcontainers`).
    ephemeral: bool,
    /// The images under test, in the lists they were put in.
    images: Vec<(List, Option<String>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Init,
    Regular,
    Volume,
}

/// What one decider said about a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allowed,
    /// Denied, with the number of offending containers the message counts.
    Denied(usize),
}

async fn run(cluster: &Cluster, cases: usize, seed: u64) -> Result<()> {
    let policy = Policy::new([PREFIX])?;
    let namespace = cluster.namespace("parity").await?;
    let vap = install_vap(cluster)?;
    let result = async {
        let base = base_pod(cluster, &namespace).await?;
        wait_for_vap(cluster, &namespace).await?;
        let mut generator = Generator::new(seed);
        let started = Instant::now();
        let client = &cluster.client;
        let mut tally = Tally::default();
        // Cases the API server's validation refuses never reach admission: draw until enough did.
        while tally.compared < cases {
            let batch = generator.take((cases - tally.compared) * 5 / 4 + 8);
            let decided: Vec<Result<Decided>> = stream::iter(batch)
                .map(|case| {
                    let (namespace, base, policy) = (&namespace, &base, &policy);
                    async move {
                        let local = decide_locally(policy, &case, base);
                        let remote = decide_remotely(client, namespace, &case, base).await?;
                        Ok((
                            case,
                            remote.map(|(webhook, vap, said)| (local, webhook, vap, said)),
                        ))
                    }
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for one in decided {
                tally.add(one?);
            }
            ensure!(
                tally.compared * 4 >= tally.refused_by_validation,
                "most cases never reach admission: {tally:?}"
            );
        }
        tally.report(started.elapsed())
    }
    .await;
    let _ = cluster
        .kubectl
        .run(&["delete", "-f", &vap.to_string_lossy()]);
    cluster.delete_namespace(&namespace).await;
    result
}

/// Applies `validator-webhook vap --mode warn`; returns the file, to delete it afterwards.
fn install_vap(cluster: &Cluster) -> Result<std::path::PathBuf> {
    let printed = std::process::Command::new(paths::webhook_binary()?)
        .args(["vap", "--mode", "warn", "--allowed-prefix", PREFIX])
        .output()?;
    ensure!(
        printed.status.success(),
        "vap failed: {}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let file = paths::target().join(format!("parity-vap-{}.yaml", std::process::id()));
    std::fs::write(&file, &printed.stdout)?;
    cluster
        .kubectl
        .ok(&["apply", "-f", &file.to_string_lossy()])?;
    Ok(file)
}

/// The running Pod that the debug-container cases add to.
async fn base_pod(cluster: &Cluster, namespace: &str) -> Result<Value> {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "base"},
        "spec": {"containers": [{"name": "app", "image": GOOD}]},
    });
    let (status, _, body) = send(
        &cluster.client,
        http::Method::POST,
        &format!("/api/v1/namespaces/{namespace}/pods"),
        &pod,
    )
    .await?;
    ensure!(status == 201, "cannot create the base pod: {status} {body}");
    Ok(serde_json::from_str(&body)?)
}

/// Waits until the VAP warns about a bad Pod (policies reach the API server's cache in a while).
async fn wait_for_vap(cluster: &Cluster, namespace: &str) -> Result<()> {
    let pod = pod_json(&[(List::Regular, Some("nginx".to_owned()))]);
    let path = format!("/api/v1/namespaces/{namespace}/pods?dryRun=All");
    wait_for(
        "the ValidatingAdmissionPolicy warning",
        Duration::from_secs(60),
        || async {
            let (_, warnings, body) =
                send(&cluster.client, http::Method::POST, &path, &pod).await?;
            match vap_decision(&warnings)? {
                Decision::Denied(_) => Ok(()),
                Decision::Allowed => bail!("no warning yet ({body})"),
            }
        },
    )
    .await
}

/// Sends one request; returns the status, the Warning headers and the body.
async fn send(
    client: &kube::Client,
    method: http::Method,
    path: &str,
    body: &Value,
) -> Result<(u16, Vec<String>, String)> {
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(serde_json::to_vec(body)?))?;
    let response = client.send(request).await?;
    let status = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((
        status,
        warnings,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// How many containers a denial message counts: "Invalid image name: ..." is one,
/// "Invalid image name in 3 containers: ..." three.
fn counted(message: &str) -> Option<usize> {
    let rest = &message[message.find("Invalid image name")? + "Invalid image name".len()..];
    if rest.starts_with(':') {
        return Some(1);
    }
    rest.strip_prefix(" in ")?.split(' ').next()?.parse().ok()
}

fn vap_decision(warnings: &[String]) -> Result<Decision> {
    let ours: Vec<&String> = warnings
        .iter()
        .filter(|w| w.contains("ValidatingAdmissionPolicy 'validator-webhook'"))
        .collect();
    match ours.as_slice() {
        [] => Ok(Decision::Allowed),
        [one] => counted(one)
            .map(Decision::Denied)
            .with_context(|| format!("the VAP failed rather than decided: {one}")),
        many => bail!("several VAP warnings: {many:?}"),
    }
}

/// The webhook's and the VAP's decisions, or `None` when the API server's own validation
/// refused the object before admission (a 422): no admission check saw it.
async fn decide_remotely(
    client: &kube::Client,
    namespace: &str,
    case: &Case,
    base: &Value,
) -> Result<Option<(Decision, Decision, String)>> {
    let (method, path, body) = if case.ephemeral {
        (
            http::Method::PUT,
            format!("/api/v1/namespaces/{namespace}/pods/base/ephemeralcontainers?dryRun=All"),
            with_debug_containers(base, &case.images),
        )
    } else {
        let prefix = match case.kind.group {
            "" => "/api/v1".to_owned(),
            group => format!("/apis/{group}/v1"),
        };
        (
            http::Method::POST,
            format!(
                "{prefix}/namespaces/{namespace}/{}?dryRun=All",
                case.kind.resource
            ),
            object(case),
        )
    };
    let (status, warnings, text) = send(client, method, &path, &body).await?;
    let webhook = match status {
        200 | 201 => Decision::Allowed,
        403 if text.contains("denied the request") => {
            let message: Value = serde_json::from_str(&text)?;
            let message = message["message"].as_str().unwrap_or_default();
            Decision::Denied(counted(message).with_context(|| format!("webhook said {message}"))?)
        }
        422 => return Ok(None),
        _ => bail!("{status} for {case:?}: {text}"),
    };
    let said = format!("webhook: {text}; warnings: {warnings:?}");
    Ok(Some((webhook, vap_decision(&warnings)?, said)))
}

fn decide_locally(policy: &Policy, case: &Case, base: &Value) -> Decision {
    let (object, operation, subresource) = if case.ephemeral {
        (
            with_debug_containers(base, &case.images),
            Operation::Update,
            Some("ephemeralcontainers"),
        )
    } else {
        (object(case), Operation::Create, None)
    };
    let workload: Workload =
        serde_json::from_value(object.clone()).unwrap_or_else(|_| Workload::from_value(object));
    let kind = GroupVersionKind::gvk(case.kind.group, "v1", case.kind.kind);
    let input = Input {
        operation: &operation,
        kind: &kind,
        subresource,
        object: Some(&workload),
    };
    match policy.evaluate(input) {
        Verdict::Allowed | Verdict::NotInspected(_) => Decision::Allowed,
        Verdict::Denied(denial) => Decision::Denied(denial.violations.len()),
        Verdict::Invalid(_) => Decision::Denied(0),
    }
}

/// The base Pod with each image under test as a debug container.
fn with_debug_containers(base: &Value, images: &[(List, Option<String>)]) -> Value {
    let mut pod = base.clone();
    let debug: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, (_, image))| container(&format!("debug{i}"), image.as_deref()))
        .collect();
    pod["spec"]["ephemeralContainers"] = Value::Array(debug);
    pod
}

fn container(name: &str, image: Option<&str>) -> Value {
    match image {
        Some(image) => json!({"name": name, "image": image}),
        None => json!({"name": name}),
    }
}

/// A pod spec with the images under test in their lists, and one good container so that every
/// spec is valid without them.
fn pod_spec(images: &[(List, Option<String>)], restart: &str) -> Value {
    let mut init = Vec::new();
    let mut regular = vec![container("app", Some(GOOD))];
    let mut volumes = Vec::new();
    for (i, (list, image)) in images.iter().enumerate() {
        match list {
            List::Init => init.push(container(&format!("init{i}"), image.as_deref())),
            List::Regular => regular.push(container(&format!("c{i}"), image.as_deref())),
            List::Volume => volumes.push(match image {
                Some(reference) => {
                    json!({"name": format!("v{i}"), "image": {"reference": reference}})
                }
                None => json!({"name": format!("v{i}"), "image": {"pullPolicy": "IfNotPresent"}}),
            }),
        }
    }
    json!({
        "restartPolicy": restart,
        "initContainers": init,
        "containers": regular,
        "volumes": volumes,
    })
}

fn pod_json(images: &[(List, Option<String>)]) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "parity"},
        "spec": pod_spec(images, "Always"),
    })
}

/// The case's object, as a client would create it.
fn object(case: &Case) -> Value {
    let labels = json!({"app": "parity"});
    let template = |restart: &str| json!({"metadata": {"labels": labels}, "spec": pod_spec(&case.images, restart)});
    let api_version = match case.kind.group {
        "" => "v1".to_owned(),
        group => format!("{group}/v1"),
    };
    let mut object = match case.kind.kind {
        "Pod" => pod_json(&case.images),
        "PodTemplate" => json!({"template": template("Always")}),
        "ReplicationController" => json!({"spec": {"template": template("Always")}}),
        "Job" => json!({"spec": {"template": template("Never")}}),
        "CronJob" => json!({"spec": {"schedule": "0 0 * * *",
            "jobTemplate": {"spec": {"template": template("Never")}}}}),
        // Deployment, ReplicaSet, StatefulSet, DaemonSet
        _ => json!({"spec": {"selector": {"matchLabels": labels}, "template": template("Always")}}),
    };
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(case.kind.kind);
    object["metadata"] = json!({"name": "parity"});
    object
}

/// A case, and what the policy, the webhook and the VAP decided (with what the API server
/// said), unless the API server's validation refused it first.
type Decided = (Case, Option<(Decision, Decision, Decision, String)>);

/// The decisions so far.
#[derive(Debug, Default)]
struct Tally {
    compared: usize,
    denied: usize,
    refused_by_validation: usize,
    known: std::collections::BTreeMap<&'static str, usize>,
    disagreements: Vec<String>,
}

impl Tally {
    fn add(&mut self, (case, decisions): Decided) {
        let Some((local, webhook, vap, said)) = decisions else {
            self.refused_by_validation += 1;
            return;
        };
        self.compared += 1;
        if local != Decision::Allowed {
            self.denied += 1;
        }
        if local != webhook {
            self.disagreements.push(format!(
                "in process {local:?}, webhook {webhook:?}: {case:?}"
            ));
        } else if webhook != vap {
            match known_divergence(&case, webhook, vap) {
                Some(class) => *self.known.entry(class).or_default() += 1,
                None => self.disagreements.push(format!(
                    "webhook {webhook:?}, VAP {vap:?}: {case:?}\n    {said}"
                )),
            }
        }
    }

    /// Fails on any disagreement that is not a known divergence.
    fn report(&self, elapsed: Duration) -> Result<()> {
        eprintln!(
            "parity: {} cases decided three ways ({} denied), {} refused by the API server's \
             validation before admission, in {:.1} s; known divergences: {:?}",
            self.compared,
            self.denied,
            self.refused_by_validation,
            elapsed.as_secs_f64(),
            self.known
        );
        if !self.disagreements.is_empty() {
            for line in self.disagreements.iter().take(30) {
                eprintln!("parity: DISAGREE {line}");
            }
            bail!("{} disagreements", self.disagreements.len());
        }
        Ok(())
    }
}

/// The documented classes where the VAP decides differently (README, "Known divergences").
///
/// One only: a bracketed IPv6 registry host. The VAP checks its characters (`[a-fA-F0-9:]`, as
/// distribution's grammar does); the webhook parses the address and refuses some, such as
/// `[:::]`, as invalid references. The webhook is then the stricter, by those images alone.
fn known_divergence(case: &Case, webhook: Decision, vap: Decision) -> Option<&'static str> {
    let offenders = |decision| match decision {
        Decision::Allowed => 0,
        Decision::Denied(count) => count,
    };
    let ipv6_hosts = case
        .images
        .iter()
        .filter(|(_, image)| image.as_deref().is_some_and(|i| i.starts_with('[')))
        .count();
    let refused_by_the_webhook_alone = offenders(webhook).saturating_sub(offenders(vap));
    (offenders(vap) < offenders(webhook) && refused_by_the_webhook_alone <= ipv6_hosts)
        .then_some("IPv6 registry host")
}

// ---- generators ----

fn hex(n: usize) -> BoxedStrategy<String> {
    proptest::collection::vec(
        proptest::sample::select(b"0123456789abcdef".to_vec()),
        n..=n,
    )
    .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
    .boxed()
}

fn lower(max: usize) -> BoxedStrategy<String> {
    proptest::string::string_regex(&format!("[a-z0-9]{{1,{max}}}"))
        .expect("a valid regex")
        .boxed()
}

fn separator() -> BoxedStrategy<String> {
    prop_oneof![
        12 => Just("_"), 6 => Just("."), 6 => Just("-"), 2 => Just("__"), 2 => Just("--"), 2 => Just("---"),
        1 => // not separators of the grammar
        Just("___"), 1 => Just(".."), 1 => Just("_-"), 1 => Just("-_"), 1 => Just("._"),
    ]
    .prop_map(str::to_owned)
    .boxed()
}

fn component() -> BoxedStrategy<String> {
    (
        lower(6),
        proptest::option::weighted(0.4, (separator(), lower(6))),
    )
        .prop_map(|(a, more)| match more {
            Some((sep, b)) => format!("{a}{sep}{b}"),
            None => a,
        })
        .boxed()
}

/// The last path component, where the prefix matters.
fn last_component() -> BoxedStrategy<String> {
    prop_oneof![
        30 => component().prop_map(|c| format!("{PREFIX}{c}")),
        6 => component(),
        1 => Just(PREFIX.to_owned()),
        1 => Just("msalinasc".to_owned()),
        1 => Just(PREFIX.trim_end_matches('_').to_owned() + "-x"),
        1 => component().prop_map(|c| format!("{}{c}", PREFIX.to_uppercase())),
        1 => component().prop_map(|c| format!("Msalinasc_{c}")),
        1 => component().prop_map(|c| format!("_{PREFIX}{c}")),
        1 => component().prop_map(|c| format!("{c}{PREFIX}")),
        1 => separator().prop_map(|s| format!("{PREFIX}{s}x")),
    ]
    .boxed()
}

fn domain() -> BoxedStrategy<String> {
    let host = prop_oneof![
        4 => Just("localhost"),
        6 => Just("registry.example.com"),
        2 => Just("Registry.Example.COM"),
        2 => Just("reg-1.example"),
        2 => Just("a"),
        2 => Just("198.18.0.1"),
        2 => Just("[::1]"),
        2 => Just("[2001:db8::1]"),
        1 => Just("[fe80::1%eth0]"),
        // Characters of an IPv6 address, in forms the webhook's parser refuses or accepts.
        1 => Just("[:::]"),
        1 => Just("[1::2::3]"),
        1 => Just("[1:2:3:4:5:6:7::]"),
        1 => Just("[::ffff:102:304]"),
        1 => Just("-bad.example"),
        1 => Just("bad-.example"),
        1 => Just("x_y.example"),
        1 => Just("msalinasc_reg.example"),
    ];
    let port = prop_oneof![
        12 => Just(""), 3 => Just(":5000"), 1 => Just(":0"), 1 => Just(":"), 1 => Just(":abc"), 1 => Just(":65536"),
    ];
    (host, port).prop_map(|(h, p)| format!("{h}{p}/")).boxed()
}

fn tag() -> BoxedStrategy<String> {
    prop_oneof![
        10 => Just(String::new()),
        3 => Just(":latest".to_owned()), 3 => Just(":1.0".to_owned()), 2 => Just(":V1_x-y.z".to_owned()),
        1 => Just(format!(":{}", "t".repeat(128))), 1 => Just(format!(":{}", "t".repeat(129))),
        1 => Just(":.bad".to_owned()), 1 => Just(":".to_owned()), 1 => Just(":-bad".to_owned()),
        1 => Just(format!(":{PREFIX}x")), 1 => Just(":_ok".to_owned()),
    ]
    .boxed()
}

fn digest() -> BoxedStrategy<String> {
    prop_oneof![
        16 => Just(String::new()),
        5 => hex(64).prop_map(|h| format!("@sha256:{h}")),
        1 => hex(63).prop_map(|h| format!("@sha256:{h}")),
        1 => hex(65).prop_map(|h| format!("@sha256:{h}")),
        1 => hex(64).prop_map(|h| format!("@sha256:{}", h.to_uppercase())),
        1 => hex(128).prop_map(|h| format!("@sha512:{h}")),
        1 => hex(96).prop_map(|h| format!("@sha384:{h}")),
        1 => hex(32).prop_map(|h| format!("@md5:{h}")),
        1 => hex(31).prop_map(|h| format!("@md5:{h}")),
        // Upper case after the algorithm's first character: distribution's form only.
        1 => hex(31).prop_map(|h| format!("@mA5:{h}")),
        1 => hex(32).prop_map(|h| format!("@mA5:{h}")),
        1 => hex(64).prop_map(|h| format!("@SHA256:{h}")),
        1 => hex(64).prop_map(|h| format!("@sha256+b64u:{h}")),
        1 => Just("@sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564".to_owned()),
        1 => Just("@multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8".to_owned()),
        1 => Just("@sha256:".to_owned()),
        1 => Just("@".to_owned()),
    ]
    .boxed()
}

/// A reference built from the grammar's parts, some of them outside it.
fn structured() -> BoxedStrategy<String> {
    (
        proptest::option::weighted(0.5, domain()),
        proptest::collection::vec(
            prop_oneof![3 => component(), 1 => component().prop_map(|c| format!("{PREFIX}{c}"))],
            0..3,
        ),
        last_component(),
        tag(),
        digest(),
    )
        .prop_map(|(domain, path, last, tag, digest)| {
            let mut reference = domain.unwrap_or_default();
            for c in path {
                reference.push_str(&c);
                reference.push('/');
            }
            format!("{reference}{last}{tag}{digest}")
        })
        .boxed()
}

/// A reference whose name is `length` characters long, around the 255 limit.
fn long() -> BoxedStrategy<String> {
    (250usize..=260, tag(), any::<bool>())
        .prop_map(|(length, tag, with_domain)| {
            let head = if with_domain {
                "registry.example.com/".to_owned()
            } else {
                String::new()
            };
            let fill = length.saturating_sub(head.len() + PREFIX.len());
            format!("{head}{PREFIX}{}{tag}", "a".repeat(fill))
        })
        .boxed()
}

/// A structured reference with one character inserted or replaced.
fn mutated() -> BoxedStrategy<String> {
    (
        structured(),
        any::<proptest::sample::Index>(),
        proptest::sample::select(vec![
            'A', '/', ':', '@', '_', '-', '.', '[', ']', '%', '+', '=', '~', 'é',
        ]),
        any::<bool>(),
    )
        .prop_map(|(reference, at, c, replace)| {
            let chars: Vec<char> = reference.chars().collect();
            let i = at.index(chars.len() + 1);
            let mut out: String = chars[..i].iter().collect();
            out.push(c);
            let skip = if replace && i < chars.len() { i + 1 } else { i };
            out.extend(&chars[skip..]);
            out
        })
        .boxed()
}

fn image() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        12 => structured().prop_map(Some),
        4 => mutated().prop_map(Some),
        2 => long().prop_map(Some),
        2 => proptest::string::string_regex("[a-zA-Z0-9:/@._\\-]{1,24}")
            .expect("a valid regex")
            .prop_map(Some),
        1 => Just(Some(String::new())),
        1 => Just(Some(PREFIX.to_owned())),
        1 => Just(None),
    ]
    .boxed()
}

fn case() -> BoxedStrategy<Case> {
    let images = proptest::collection::vec(
        (
            prop_oneof![1 => Just(List::Init), 3 => Just(List::Regular), 1 => Just(List::Volume)],
            image(),
        ),
        1..=2,
    );
    (0..=INSPECTED.len(), images)
        .prop_map(|(kind, images)| {
            let ephemeral = kind == INSPECTED.len();
            Case {
                kind: INSPECTED[if ephemeral { 0 } else { kind }],
                ephemeral,
                images,
            }
        })
        .boxed()
}

/// Cases drawn from `seed`: the same seed gives the same cases.
struct Generator {
    runner: TestRunner,
    strategy: BoxedStrategy<Case>,
}

impl Generator {
    fn new(seed: u64) -> Self {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
        Self {
            runner: TestRunner::new_with_rng(Config::default(), rng),
            strategy: case(),
        }
    }

    fn take(&mut self, n: usize) -> Vec<Case> {
        (0..n)
            .filter_map(|_| {
                self.strategy
                    .new_tree(&mut self.runner)
                    .ok()
                    .map(|t| t.current())
            })
            .collect()
    }
}
