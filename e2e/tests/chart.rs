//! The Helm chart in `charts/validator-webhook`: it lints, renders with every optional feature
//! off and on, each render passes a server-side dry run on the local API server, its default
//! render is `deploy/overlays/certs` (the source of truth) object for object, its schema names
//! a mistyped key, its generated certificate survives upgrades, and its README's values table
//! is the one generated from its schema.
//!
//! Helm is the pinned build of `e2e/helm/build.sh`; kubectl, etcd and kube-apiserver are the
//! pinned control plane (`just control-plane`).

use std::{
    collections::BTreeSet, future::Future, path::PathBuf, pin::Pin, process::Command, sync::Arc,
};

use anyhow::{Context, Result, bail, ensure};
use base64::{Engine, engine::general_purpose::STANDARD};
use e2e::{
    helm::{Helm, chart},
    install::Manifests,
    kubectl::Kubectl,
    local::{Assets, ControlPlane},
    overlays, paths,
};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::{Value, json};
use testkit::{names::NAMESPACE, process::run};

/// The release name the chart is compared under (in `deploy/`'s namespace): with it, its
/// objects are named exactly as in `deploy/`.
const RELEASE: &str = "validator-webhook";

/// The prometheus-operator release whose CRDs the ServiceMonitor and PrometheusRule are
/// checked against (its Go module carries them as plain YAML).
const PROMETHEUS_OPERATOR: &str = "github.com/prometheus-operator/prometheus-operator@v0.90.1";

/// Labels the chart adds to every object's metadata, as Helm charts do, and deploy/ has not.
const HELM_LABELS: [&str; 4] = [
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
    "helm.sh/chart",
];

/// Labels deploy/base gives its objects, and the chart every object. deploy/'s overlays do not
/// give them to the objects they add (the certificate's), the chart does.
const BASE_LABELS: [&str; 2] = ["app.kubernetes.io/name", "app.kubernetes.io/part-of"];

/// When the chart renews its generated certificate; deploy/'s certificate is renewed by hand.
const NOT_AFTER: &str = "validator-webhook/not-after";

/// Where the README's values table starts and ends.
const TABLE_START: &str = "<!-- values table: generated from values.schema.json by e2e/tests/chart.rs (UPDATE_CHART_README=1 rewrites it) -->";
const TABLE_END: &str = "<!-- end of values table -->";

struct Env {
    helm: Helm,
    kubectl: Kubectl,
    work: PathBuf,
    _plane: ControlPlane,
}

type Case = fn(Arc<Env>) -> Pin<Box<dyn Future<Output = Result<()>> + Send>>;

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        vec![$((stringify!($case), (|env| Box::pin($case(env))) as Case)),*]
    };
}

fn cases() -> Vec<(&'static str, Case)> {
    cases![
        lint_passes_with_every_values_file,
        default_render_is_the_certs_overlay,
        cert_manager_render_is_the_cert_manager_overlay,
        every_render_passes_server_side_dry_run,
        schema_names_a_mistyped_key,
        schema_refuses_a_secret_source_without_its_ca,
        generated_certificate_survives_upgrades_and_is_renewed_near_its_end,
        readme_values_table_is_generated_from_the_schema,
    ]
}

fn main() -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    // One API server, and one case installs a release in it.
    args.test_threads = Some(1);
    if args.list {
        let trials = cases()
            .into_iter()
            .map(|(name, _)| Trial::test(name, || Ok(())))
            .collect();
        return libtest_mimic::run(&args, trials).exit_code();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => Arc::new(runtime),
        Err(error) => {
            eprintln!("chart: no tokio runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let env = match runtime.block_on(Env::start()) {
        Ok(env) => Arc::new(env),
        Err(error) => {
            eprintln!("chart: cannot start: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let work = env.work.clone();
    let trials = cases()
        .into_iter()
        .map(|(name, case)| {
            let (env, runtime) = (env.clone(), runtime.clone());
            Trial::test(name, move || {
                runtime
                    .block_on(case(env))
                    .map_err(|e| Failed::from(format!("{e:#}")))
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(env);
    if conclusion.has_failed() {
        eprintln!(
            "chart: renders, logs and kubeconfig kept in {}",
            work.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    conclusion.exit_code()
}

impl Env {
    async fn start() -> Result<Self> {
        testkit::process::clean_up_on_interrupt();
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let work = paths::target()
            .join("e2e")
            .join(format!("chart-{stamp}-{}", std::process::id()));
        std::fs::create_dir_all(&work)?;
        let helm = Helm::build(&work)?;
        let assets = Assets::locate()?;
        eprintln!("==> starting etcd and kube-apiserver in {}", work.display());
        let plane = ControlPlane::start(&work, &assets)
            .await
            .with_context(|| format!("logs are in {}", work.display()))?;
        let kubectl = Kubectl::new(assets.kubectl.clone(), plane.kubeconfig.clone());
        // Helm installs into a namespace that exists, as the README's quick start makes it.
        kubectl.ok(&["create", "namespace", NAMESPACE])?;
        Ok(Self {
            helm,
            kubectl,
            work,
            _plane: plane,
        })
    }
}

/// `helm template` of the chart as the release the comparisons use.
trait Template {
    fn template(&self, extra: &[&str]) -> Result<String>;
}

impl Template for Helm {
    fn template(&self, extra: &[&str]) -> Result<String> {
        let chart = chart().to_string_lossy().into_owned();
        let mut args = vec!["template", RELEASE, &chart, "--namespace", NAMESPACE];
        args.extend_from_slice(extra);
        self.ok(&args)
    }
}

/// The values files under `ci/`, one per optional feature, sorted.
fn ci_values() -> Result<Vec<PathBuf>> {
    let dir = chart().join("ci");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|f| f.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    ensure!(!files.is_empty(), "no values files in {}", dir.display());
    Ok(files)
}

fn objects(yaml: &str) -> Result<Vec<Value>> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(yaml).context("a render that is not YAML")?;
    Ok(documents.into_iter().filter(|d| !d.is_null()).collect())
}

async fn lint_passes_with_every_values_file(env: Arc<Env>) -> Result<()> {
    let chart = chart().to_string_lossy().into_owned();
    env.helm.ok(&["lint", "--strict", &chart])?;
    for values in ci_values()? {
        let values = values.to_string_lossy();
        env.helm
            .ok(&["lint", "--strict", &chart, "--values", &values])?;
    }
    Ok(())
}

/// The object as deploy/ would have it: Helm's labels dropped, and the certificate reduced to
/// its shape (which keys hold PEM of which kind), since every render makes a new one.
fn comparable(mut object: Value) -> Result<Value> {
    let key = overlays::key(&object);
    drop_labels(&mut object, &HELM_LABELS);
    if object["kind"] == "Secret" {
        if let Some(metadata) = object
            .pointer_mut("/metadata")
            .and_then(Value::as_object_mut)
        {
            let annotations = metadata
                .get_mut("annotations")
                .and_then(Value::as_object_mut);
            if let Some(annotations) = annotations {
                annotations.remove(NOT_AFTER);
                if annotations.is_empty() {
                    metadata.remove("annotations");
                }
            }
        }
        let data = object["data"]
            .as_object_mut()
            .with_context(|| format!("{key} has no data"))?;
        for (name, value) in data.iter_mut() {
            *value = json!(pem_shape(value).with_context(|| format!("{key} {name}"))?);
        }
    }
    if object["kind"] == "ValidatingWebhookConfiguration" {
        for webhook in object["webhooks"].as_array_mut().into_iter().flatten() {
            if let Some(bundle) = webhook.pointer_mut("/clientConfig/caBundle") {
                *bundle = json!(pem_shape(bundle).with_context(|| format!("{key} caBundle"))?);
            }
        }
    }
    Ok(object)
}

/// Removes `labels` from the object's metadata, and the labels map when that empties it.
fn drop_labels(object: &mut Value, labels: &[&str]) {
    let Some(metadata) = object
        .pointer_mut("/metadata")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if let Some(map) = metadata.get_mut("labels").and_then(Value::as_object_mut) {
        for label in labels {
            map.remove(*label);
        }
        if map.is_empty() {
            metadata.remove("labels");
        }
    }
}

/// "PEM CERTIFICATE" or "PEM PRIVATE KEY" (any key algorithm): what base64 `value` holds.
fn pem_shape(value: &Value) -> Result<String> {
    let text = value.as_str().context("not a string")?;
    let pem = String::from_utf8(STANDARD.decode(text).context("not base64")?)?;
    let label = pem
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"))
        .context("not PEM")?;
    let shape = if label.ends_with("PRIVATE KEY") {
        "PRIVATE KEY"
    } else {
        label
    };
    Ok(format!("PEM {shape}"))
}

/// Compares the chart's objects with an overlay's, by kind, namespace and name. `only_in_overlay`
/// is what the chart does not render, by design.
fn same_objects(chart: Vec<Value>, overlay: Vec<Value>, only_in_overlay: &[&str]) -> Result<()> {
    let mut differences = Vec::new();
    let mut overlay: Vec<(String, Value)> = (overlay.into_iter())
        .map(|o| Ok((overlays::key(&o), comparable(o)?)))
        .collect::<Result<_>>()?;
    for object in chart {
        let key = overlays::key(&object);
        let object = comparable(object)?;
        match overlay.iter().position(|(k, _)| *k == key) {
            Some(i) => {
                let (_, expected) = overlay.remove(i);
                let mut object = object;
                if expected["metadata"]["labels"].is_null() {
                    drop_labels(&mut object, &BASE_LABELS);
                }
                if object != expected {
                    let mut paths = Vec::new();
                    differing_paths(&object, &expected, "", &mut paths);
                    differences.push(format!("{key} differs at {}", paths.join(", ")));
                }
            }
            None => differences.push(format!("{key} is only in the chart")),
        }
    }
    let left: BTreeSet<&str> = overlay.iter().map(|(k, _)| k.as_str()).collect();
    let allowed: BTreeSet<&str> = only_in_overlay.iter().copied().collect();
    if left != allowed {
        differences.push(format!(
            "only in the overlay: {left:?}; the chart leaves out by design: {allowed:?}"
        ));
    }
    ensure!(differences.is_empty(), "{}", differences.join("\n"));
    Ok(())
}

/// Where `chart` and `overlay` differ, as JSON pointers with both values.
fn differing_paths(chart: &Value, overlay: &Value, at: &str, paths: &mut Vec<String>) {
    match (chart, overlay) {
        (Value::Object(c), Value::Object(o)) => {
            let keys: BTreeSet<&String> = c.keys().chain(o.keys()).collect();
            for key in keys {
                let (c, o) = (
                    c.get(key).unwrap_or(&Value::Null),
                    o.get(key).unwrap_or(&Value::Null),
                );
                differing_paths(c, o, &format!("{at}/{key}"), paths);
            }
        }
        (Value::Array(c), Value::Array(o)) if c.len() == o.len() => {
            for (i, (c, o)) in c.iter().zip(o).enumerate() {
                differing_paths(c, o, &format!("{at}/{i}"), paths);
            }
        }
        _ if chart != overlay => paths.push(format!("{at} (chart {chart}, overlay {overlay})")),
        _ => {}
    }
}

/// The overlay's render, with the certificate `validator-webhook certs` makes for it.
fn overlay(env: &Env, name: &str) -> Result<Vec<Value>> {
    let work = tempfile::tempdir_in(&env.work)?;
    let manifests = Manifests::prepare(work.path(), &paths::webhook_binary()?)?;
    manifests.render(&env.kubectl, name)
}

/// Every webhook's caBundle is the CA in the Secret the pods mount.
fn ca_bundle_is_the_secrets_ca(objects: &[Value]) -> Result<()> {
    let secret = (objects.iter())
        .find(|o| o["kind"] == "Secret")
        .context("no Secret")?;
    let configuration = (objects.iter())
        .find(|o| o["kind"] == "ValidatingWebhookConfiguration")
        .context("no ValidatingWebhookConfiguration")?;
    for webhook in configuration["webhooks"].as_array().into_iter().flatten() {
        ensure!(
            webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"],
            "the caBundle of {} is not the Secret's ca.crt",
            webhook["name"]
        );
    }
    Ok(())
}

async fn default_render_is_the_certs_overlay(env: Arc<Env>) -> Result<()> {
    let chart = objects(&env.helm.template(&[])?)?;
    let overlay = overlay(&env, "certs")?;
    ca_bundle_is_the_secrets_ca(&chart)?;
    ca_bundle_is_the_secrets_ca(&overlay)?;
    // Helm installs into an existing namespace: the README's quick start creates it with the
    // same Pod Security label.
    same_objects(chart, overlay, &["Namespace//validator-webhook"])
}

async fn cert_manager_render_is_the_cert_manager_overlay(env: Arc<Env>) -> Result<()> {
    let chart = objects(
        &env.helm
            .template(&["--set", "certificate.source=certManager"])?,
    )?;
    let overlay = overlay(&env, "cert-manager")?;
    same_objects(chart, overlay, &["Namespace//validator-webhook"])
}

async fn every_render_passes_server_side_dry_run(env: Arc<Env>) -> Result<()> {
    overlays::install_cert_manager_crds(&env.kubectl)?;
    install_prometheus_operator_crds(&env.kubectl)?;
    let mut renders = vec![("default".to_owned(), env.helm.template(&[])?)];
    for values in ci_values()? {
        let name = values
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        renders.push((
            name,
            env.helm
                .template(&["--values", &values.to_string_lossy()])?,
        ));
    }
    let dir = env.work.join("renders");
    std::fs::create_dir_all(&dir)?;
    for (name, yaml) in renders {
        let file = dir.join(format!("{name}.rendered.yaml"));
        std::fs::write(&file, &yaml)?;
        let applied = env
            .kubectl
            .ok(&["apply", "--dry-run=server", "-f", &file.to_string_lossy()])
            .with_context(|| format!("the render with {name}"))?;
        let rendered = objects(&yaml)?.len();
        let lines = applied.lines().count();
        ensure!(
            lines == rendered && applied.contains("validatingwebhookconfiguration"),
            "{name}: {rendered} objects rendered, but kubectl said:\n{applied}"
        );
    }
    Ok(())
}

/// prometheus-operator's ServiceMonitor and PrometheusRule CRDs, from its Go module.
fn install_prometheus_operator_crds(kubectl: &Kubectl) -> Result<()> {
    let json = run(Command::new("go").args(["mod", "download", "-json", PROMETHEUS_OPERATOR]))
        .context("prometheus-operator's CRDs come from its Go module: is Go installed?")?;
    let module: Value = serde_json::from_str(&json)?;
    let dir = PathBuf::from(
        module["Dir"]
            .as_str()
            .context("go mod download printed no Dir")?,
    )
    .join("example/prometheus-operator-crd");
    for crd in ["servicemonitors", "prometheusrules"] {
        let file = dir.join(format!("monitoring.coreos.com_{crd}.yaml"));
        // Server-side: the CRDs are too large for the last-applied annotation.
        kubectl.ok(&["apply", "--server-side", "-f", &file.to_string_lossy()])?;
    }
    kubectl.ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    ])?;
    Ok(())
}

async fn schema_names_a_mistyped_key(env: Arc<Env>) -> Result<()> {
    let chart = chart().to_string_lossy().into_owned();
    for (set, key) in [
        ("replicaz=2", "replicaz"),
        ("image.tga=1.0", "tga"),
        ("networkPolicy.enable=true", "enable"),
    ] {
        let output = env.helm.run(&["template", RELEASE, &chart, "--set", set])?;
        ensure!(!output.success, "--set {set} rendered");
        ensure!(
            output
                .stderr
                .contains("values don't meet the specifications of the schema")
                && output.stderr.contains(&format!("'{key}'")),
            "--set {set} failed without naming {key}: {}",
            output.stderr.trim()
        );
    }
    Ok(())
}

async fn schema_refuses_a_secret_source_without_its_ca(env: Arc<Env>) -> Result<()> {
    let output = env.helm.run(&[
        "template",
        RELEASE,
        &chart().to_string_lossy(),
        "--set",
        "certificate.source=secret",
        "--set",
        "certificate.secret.name=my-tls",
    ])?;
    ensure!(!output.success, "a secret source without caBundle rendered");
    ensure!(
        output.stderr.contains("caBundle"),
        "the error does not name caBundle: {}",
        output.stderr.trim()
    );
    Ok(())
}

/// The Secret and caBundle of the installed release.
fn installed_certificate(env: &Env) -> Result<(Value, String)> {
    let secret: Value = serde_json::from_str(&env.kubectl.ok(&[
        "get",
        "secret",
        "-n",
        NAMESPACE,
        "validator-webhook-tls",
        "-o",
        "json",
    ])?)?;
    let bundle = env.kubectl.ok(&[
        "get",
        "validatingwebhookconfiguration",
        "validator-webhook",
        "-o",
        "jsonpath={.webhooks[0].clientConfig.caBundle}",
    ])?;
    Ok((secret, bundle))
}

fn certificates_in(bundle: &str) -> Result<usize> {
    let pem = String::from_utf8(STANDARD.decode(bundle).context("caBundle is not base64")?)?;
    Ok(pem.matches("-----BEGIN CERTIFICATE-----").count())
}

async fn generated_certificate_survives_upgrades_and_is_renewed_near_its_end(
    env: Arc<Env>,
) -> Result<()> {
    let chart = chart().to_string_lossy().into_owned();
    let kubeconfig = env.kubectl.kubeconfig().to_string_lossy().into_owned();
    let helm = |verb: &str, extra: &[&str]| -> Result<String> {
        let mut args = vec![
            verb,
            RELEASE,
            &chart,
            "--namespace",
            NAMESPACE,
            "--kubeconfig",
            &kubeconfig,
        ];
        args.extend_from_slice(extra);
        env.helm.ok(&args)
    };
    helm("install", &[])?;
    let installed = async {
        let (first, bundle) = installed_certificate(&env)?;
        ensure!(
            bundle == first["data"]["ca.crt"].as_str().unwrap_or_default(),
            "the installed caBundle is not the Secret's CA"
        );

        helm("upgrade", &["--set", "replicas=3"])?;
        let (second, bundle) = installed_certificate(&env)?;
        ensure!(
            second["data"] == first["data"],
            "an upgrade changed the certificate"
        );
        ensure!(bundle == first["data"]["ca.crt"].as_str().unwrap_or_default());

        // With its end (365 days away) inside the renewal window, the next upgrade renews it,
        // and bundles the old CA with the new one.
        helm(
            "upgrade",
            &["--set", "certificate.generate.renewDaysBefore=400"],
        )?;
        let (renewed, bundle) = installed_certificate(&env)?;
        ensure!(
            renewed["data"]["tls.crt"] != first["data"]["tls.crt"]
                && renewed["data"]["ca.crt"] != first["data"]["ca.crt"],
            "an upgrade within renewDaysBefore of the end kept the certificate"
        );
        let old_ca = STANDARD.decode(first["data"]["ca.crt"].as_str().unwrap_or_default())?;
        let pem = String::from_utf8(STANDARD.decode(&bundle)?)?;
        ensure!(
            certificates_in(&bundle)? == 2 && pem.ends_with(&String::from_utf8(old_ca)?),
            "the renewed caBundle does not carry the old CA after the new one"
        );
        let ends = renewed["metadata"]["annotations"][NOT_AFTER]
            .as_str()
            .context("no not-after annotation")?;
        // The chart writes UTC in this same layout, so the text orders as the time does.
        ensure!(
            utc_in_days(364).as_str() < ends && ends <= utc_in_days(365).as_str(),
            "renewed until {ends}, not for the 365 days of validityDays"
        );
        Ok(())
    }
    .await;
    let uninstalled = env.helm.ok(&[
        "uninstall",
        RELEASE,
        "--namespace",
        NAMESPACE,
        "--kubeconfig",
        &kubeconfig,
    ]);
    installed?;
    uninstalled?;
    Ok(())
}

/// The time `days` from now, as the chart writes it: RFC 3339 in UTC, whole seconds.
fn utc_in_days(days: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

async fn readme_values_table_is_generated_from_the_schema(_env: Arc<Env>) -> Result<()> {
    let read = |name: &str| -> Result<String> {
        let path = chart().join(name);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let schema: Value = serde_json::from_str(&read("values.schema.json")?)?;
    let values: Value = serde_saphyr::from_str(&read("values.yaml")?)?;
    let mut rows = Vec::new();
    table_rows(&schema, &values, "", &mut rows)?;
    let table = format!(
        "{TABLE_START}\n| Key | Type | Default | Description |\n|---|---|---|---|\n{}\n{TABLE_END}",
        rows.join("\n")
    );
    let readme = read("README.md")?;
    let (head, rest) = readme
        .split_once(TABLE_START)
        .context("README.md has no values table start marker")?;
    let (_, tail) = rest
        .split_once(TABLE_END)
        .context("README.md has no values table end marker")?;
    let generated = format!("{head}{table}{tail}");
    if generated == readme {
        return Ok(());
    }
    if std::env::var_os("UPDATE_CHART_README").is_some() {
        std::fs::write(chart().join("README.md"), generated)?;
        eprintln!("rewrote the values table of charts/validator-webhook/README.md");
        return Ok(());
    }
    bail!(
        "the values table in charts/validator-webhook/README.md is not the one values.schema.json \
         gives; rewrite it with `UPDATE_CHART_README=1 cargo test -p e2e --test chart -- readme`"
    )
}

/// One row per leaf of the schema: its dotted key, type, default (from values.yaml) and
/// description. Objects with properties of their own are walked, not listed.
fn table_rows(schema: &Value, values: &Value, prefix: &str, rows: &mut Vec<String>) -> Result<()> {
    let properties = schema["properties"]
        .as_object()
        .with_context(|| format!("{prefix}: no properties"))?;
    for (name, property) in properties {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if key == "global" {
            continue;
        }
        let default = &values[name];
        // Walked when its keys are described one by one; otherwise one row for the object.
        let described = property["properties"]
            .as_object()
            .is_some_and(|p| p.values().all(|p| p["description"].is_string()));
        if described {
            table_rows(property, default, &key, rows)?;
            continue;
        }
        let kind = match (&property["type"], &property["anyOf"]) {
            (Value::String(kind), _) => kind.clone(),
            (_, Value::Array(any)) => (any.iter())
                .filter_map(|a| a["type"].as_str())
                .collect::<Vec<_>>()
                .join(" or "),
            _ => bail!("{key}: no type in the schema"),
        };
        let description = property["description"]
            .as_str()
            .with_context(|| format!("{key}: no description in the schema"))?;
        ensure!(!default.is_null(), "{key}: not in values.yaml");
        let enumerated = match property["enum"].as_array() {
            Some(choices) => format!(
                " One of {}.",
                (choices.iter())
                    .map(|c| format!("`{}`", c.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => String::new(),
        };
        rows.push(format!(
            "| `{key}` | {kind} | `{default}` | {}{enumerated} |",
            description.replace('|', "\\|")
        ));
    }
    Ok(())
}
