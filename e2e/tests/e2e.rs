//! What users see when a real API server calls the webhook: each case runs in a fresh
//! namespace of the cluster the backend provides (see `e2e::cluster`), checks what `kubectl`
//! prints (pinned in `snapshots/`) and what a client library gets back.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use anyhow::{Context, Result, ensure};
use e2e::{
    cluster::{
        BackendKind, Cluster, Kind, RELOADED, WEBHOOK_DEPLOYMENT, WEBHOOK_NAMESPACE,
        webhook_rolled_out,
    },
    helm::{self, Helm},
    install::Manifests,
    kind,
    load::Load,
    manifest, overlays, paths,
};
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    batch::v1::CronJob,
    core::v1::{Container, Pod, PodTemplate},
};
use kube::{
    Api, Resource,
    api::{ListParams, PostParams},
};
use libtest_mimic::{Arguments, Failed, Trial};
use serde::{Serialize, de::DeserializeOwned};
use testkit::{
    names::WEBHOOK,
    process::{forget_undo, undo_on_interrupt, wait_for},
};

type Case = fn(Arc<Cluster>) -> Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// Where a case runs. The local control plane has no kubelet, no kube-proxy, no image store
/// and no Deployment of the webhook, so what needs pods to really run, or the webhook's own
/// pods, is shown on kind only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runs {
    OnBoth,
    OnKindOnly,
}

impl Runs {
    fn on(self, backend: BackendKind) -> bool {
        self == Runs::OnBoth || backend == BackendKind::Kind
    }
}

/// Names each case after its function, with the backends it runs on.
macro_rules! cases {
    ($($runs:ident: [$($case:ident),* $(,)?]),* $(,)?) => {
        vec![$($((stringify!($case), Runs::$runs, (|cluster| Box::pin($case(cluster))) as Case)),*),*]
    };
}

/// The cases, in the order they run. The one that stops the webhook runs last.
fn cases() -> Vec<(&'static str, Runs, Case)> {
    cases![
        OnBoth: [
            admits_deployment_with_prefixed_images,
            rejects_deployment_with_unprefixed_images,
            rejects_update_to_unprefixed_image,
            rejects_pod_with_unprefixed_init_container,
            rejects_pod_with_unprefixed_image_volume,
            rejects_podtemplate_with_unprefixed_image,
            rejects_cronjob_with_unprefixed_image,
            rejects_server_side_dry_run,
            rejects_debug_container_with_unprefixed_image,
            admits_anything_in_exempt_namespaces,
            every_overlay_passes_server_side_dry_run,
            vap_passes_server_side_dry_run_in_every_mode,
            kind_overlay_differs_only_in_image_pull_policy_and_certificate,
            denied_deployment_never_creates_a_replica_set,
            warns_and_admits_in_a_namespace_in_warn_mode,
            admits_and_records_an_audit_annotation_in_a_namespace_in_audit_mode,
            policy_file_change_takes_effect_without_a_restart,
            check_cluster_reports_what_enforcement_would_deny,
            renewal_and_staged_ca_rotation_under_load_lose_no_admission,
        ],
        OnKindOnly: [
            webhook_pods_are_ready_as_uid_65532_from_the_image_just_built,
            admitted_deployment_pods_reach_running,
            rolling_restart_under_load_loses_no_admission,
            helm_upgrade_under_load_loses_no_admission_and_applies_the_new_prefix,
        ],
        OnBoth: [fails_closed_while_the_webhook_is_down],
    ]
}

fn main() -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    // The cases share one webhook, and one of them stops it.
    args.test_threads = Some(1);
    let backend = match BackendKind::from_env() {
        Ok(backend) => backend,
        Err(error) => {
            eprintln!("e2e: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let (cases, elsewhere): (Vec<_>, Vec<_>) = cases()
        .into_iter()
        .partition(|(_, runs, _)| runs.on(backend));
    if !elsewhere.is_empty() {
        let names: Vec<_> = elsewhere.iter().map(|(name, _, _)| *name).collect();
        eprintln!(
            "e2e: {} backend: {} cases; these run on kind only: {}",
            backend.name(),
            cases.len(),
            names.join(", ")
        );
    }
    let runtime = Arc::new(tokio::runtime::Runtime::new().expect("a tokio runtime"));
    if args.list {
        let trials = cases
            .into_iter()
            .map(|(name, _, _)| Trial::test(name, || Ok(())))
            .collect();
        return libtest_mimic::run(&args, trials).exit_code();
    }
    let cluster = match runtime.block_on(Cluster::start()) {
        Ok(cluster) => Arc::new(cluster),
        Err(error) => {
            eprintln!("e2e: cannot bring up the cluster: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let trials = cases
        .into_iter()
        .map(|(name, _, case)| {
            let (cluster, runtime) = (cluster.clone(), runtime.clone());
            Trial::test(name, move || {
                runtime
                    .block_on(case(cluster))
                    .map_err(|e| Failed::from(format!("{e:#}")))
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    match Arc::try_unwrap(cluster) {
        Ok(cluster) => cluster.finish(conclusion.has_failed()),
        Err(_) => eprintln!("e2e: a case still holds the cluster; it stops at exit"),
    }
    conclusion.exit_code()
}

/// Pins what kubectl printed.
fn snapshot(name: &str, stderr: &str) {
    insta::with_settings!({
        snapshot_path => "../../snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(format!("e2e__{name}"), stderr.trim_end());
    });
}

/// `kubectl <args>` must fail with a denial from the webhook; returns what it printed.
fn kubectl_denied(cluster: &Cluster, args: &[&str]) -> Result<String> {
    // An update can lose a race with a controller writing the object's status; the API server
    // then answers 409 Conflict before admission is asked, so that is tried again, a few times.
    let mut output = cluster.kubectl.run(args)?;
    for _ in 0..5 {
        if output.success || !output.stderr.contains("(Conflict)") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        output = cluster.kubectl.run(args)?;
    }
    ensure!(
        !output.success,
        "kubectl {} succeeded: {}",
        args.join(" "),
        output.stdout
    );
    let expected =
        format!("admission webhook \"{WEBHOOK}\" denied the request: Invalid image name");
    ensure!(
        output.stderr.contains(&expected),
        "not the webhook's denial: {}",
        output.stderr
    );
    Ok(output.stderr)
}

/// A namespaced kind a manifest in `e2e/manifests/` can be read as and created through the API.
trait Manifest:
    Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + Serialize
    + std::fmt::Debug
{
}

impl<K> Manifest for K where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
{
}

/// Creating `file` in a new namespace named after `case` is denied by the webhook twice: by
/// `kubectl create`, whose stderr is pinned as snapshot `e2e__<name>` and returned, and through
/// the client library. Nothing of the kind is left in the namespace.
async fn create_denied<K: Manifest>(
    cluster: &Cluster,
    case: &str,
    file: &str,
    name: &str,
) -> Result<String> {
    let ns = cluster.namespace(case).await?;
    let stderr = kubectl_denied(cluster, &["create", "-n", &ns, "-f", file])?;
    snapshot(name, &stderr);
    client_denied::<K>(cluster, &ns, file, &PostParams::default()).await?;
    let left = Api::<K>::namespaced(cluster.client.clone(), &ns)
        .list(&Default::default())
        .await?;
    ensure!(
        left.items.is_empty(),
        "something was created: {:?}",
        left.items
    );
    cluster.delete_namespace(&ns).await;
    Ok(stderr)
}

/// Creating `file` through the API must fail with 403 Forbidden carrying the webhook's message.
async fn client_denied<K: Manifest>(
    cluster: &Cluster,
    namespace: &str,
    file: &str,
    params: &PostParams,
) -> Result<()> {
    let object: K = manifest(file)?;
    let api = Api::<K>::namespaced(cluster.client.clone(), namespace);
    match api.create(params, &object).await {
        Err(kube::Error::Api(status)) => {
            ensure!(
                status.code == 403,
                "code {} instead of 403: {}",
                status.code,
                status.message
            );
            ensure!(
                status.reason == "Forbidden",
                "reason {:?} instead of Forbidden",
                status.reason
            );
            let prefix =
                format!("admission webhook \"{WEBHOOK}\" denied the request: Invalid image name");
            ensure!(
                status.message.starts_with(&prefix),
                "unexpected message: {}",
                status.message
            );
            Ok(())
        }
        Err(other) => Err(other.into()),
        Ok(_) => anyhow::bail!("the API server admitted {file}"),
    }
}

/// The policy file as it is, with `overrides` (YAML at the indentation of a namespace's
/// keys) for namespace `ns`.
fn with_namespace_override(original: &str, ns: &str, overrides: &str) -> String {
    format!("{}\nnamespaces:\n  {ns}:\n{overrides}", original.trim_end())
}

/// Runs `case` with the policy file set to `policy`, and puts the original back whatever
/// happens. Kind's kubelet takes a moment to project the change; the case waits for it.
async fn with_policy_file<F, Fut>(cluster: &Cluster, policy: String, case: F) -> Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let original = cluster.policy_file().await?;
    cluster.set_policy_file(&policy).await?;
    let result = case().await;
    let restored = cluster.set_policy_file(&original).await;
    result.and(restored)
}

/// Waits until a server-side dry run of `file` in `ns` is admitted: the webhook has the
/// policy that admits it.
async fn wait_until_admitted(cluster: &Cluster, ns: &str, file: &str) -> Result<()> {
    wait_for(
        "the webhook to reload the policy file",
        Duration::from_secs(180),
        || async {
            let output =
                cluster
                    .kubectl
                    .run(&["create", "--dry-run=server", "-n", ns, "-f", file])?;
            ensure!(output.success, "{}", output.stderr);
            Ok(())
        },
    )
    .await
}

async fn warns_and_admits_in_a_namespace_in_warn_mode(cluster: Arc<Cluster>) -> Result<()> {
    let ns = cluster.namespace("warn-mode").await?;
    let original = cluster.policy_file().await?;
    let policy = with_namespace_override(&original, &ns, "    mode: warn\n");
    with_policy_file(&cluster, policy, || async {
        wait_until_admitted(&cluster, &ns, "bad-deployment.yaml").await?;
        let output = cluster
            .kubectl
            .run(&["create", "-n", &ns, "-f", "bad-deployment.yaml"])?;
        ensure!(output.success, "not admitted: {}", output.stderr);
        ensure!(
            output.stdout.trim() == "deployment.apps/web created",
            "{}",
            output.stdout
        );
        let warnings = output
            .stderr
            .lines()
            .filter(|line| line.starts_with("Warning: "))
            .count();
        ensure!(
            warnings == 2,
            "one warning per offending image: {}",
            output.stderr
        );
        snapshot("kubectl_create_bad_deployment_in_warn_mode", &output.stderr);
        Ok(())
    })
    .await?;
    cluster.delete_namespace(&ns).await;
    Ok(())
}

async fn admits_and_records_an_audit_annotation_in_a_namespace_in_audit_mode(
    cluster: Arc<Cluster>,
) -> Result<()> {
    let ns = cluster.namespace("audit-mode").await?;
    let original = cluster.policy_file().await?;
    let policy = with_namespace_override(&original, &ns, "    mode: audit\n");
    with_policy_file(&cluster, policy, || async {
        wait_until_admitted(&cluster, &ns, "bad-deployment.yaml").await?;
        let output = cluster
            .kubectl
            .run(&["create", "-n", &ns, "-f", "bad-deployment.yaml"])?;
        ensure!(output.success, "not admitted: {}", output.stderr);
        ensure!(
            !output.stderr.contains("Warning:"),
            "audit mode warned: {}",
            output.stderr
        );
        let log = cluster.audit_log();
        let key = format!("{WEBHOOK}/violations");
        let annotation = wait_for("the audit annotation", Duration::from_secs(20), || async {
            let text = std::fs::read_to_string(log)
                .with_context(|| format!("cannot read the audit log {}", log.display()))?;
            text.lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter(|event| {
                    event["verb"] == "create"
                        && event["objectRef"]["namespace"] == ns.as_str()
                        && event["stage"] == "ResponseComplete"
                        && event["responseStatus"]["code"] == 201
                })
                .find_map(|event| event["annotations"][&key].as_str().map(str::to_owned))
                .context("no create of the Deployment with the annotation yet")
        })
        .await?;
        ensure!(
            annotation.starts_with("Invalid image name in 2 containers: "),
            "{annotation}"
        );
        Ok(())
    })
    .await?;
    cluster.delete_namespace(&ns).await;
    Ok(())
}

async fn policy_file_change_takes_effect_without_a_restart(cluster: Arc<Cluster>) -> Result<()> {
    let ns = cluster.namespace("policy-reload").await?;
    let elsewhere = cluster.namespace("policy-reload-elsewhere").await?;
    let before = cluster.webhook_instances()?;
    kubectl_denied(
        &cluster,
        &["create", "-n", &ns, "-f", "bad-deployment.yaml"],
    )?;
    let original = cluster.policy_file().await?;
    let policy = with_namespace_override(
        &original,
        &ns,
        "    allowedPrefixes: [msalinasc_, busybox, envoy]\n",
    );
    with_policy_file(&cluster, policy, || async {
        wait_until_admitted(&cluster, &ns, "bad-deployment.yaml").await?;
        let created = cluster
            .kubectl
            .ok(&["create", "-n", &ns, "-f", "bad-deployment.yaml"])?;
        ensure!(created.trim() == "deployment.apps/web created", "{created}");
        // The override is for that namespace only.
        kubectl_denied(
            &cluster,
            &["create", "-n", &elsewhere, "-f", "bad-deployment.yaml"],
        )?;
        Ok(())
    })
    .await?;
    let after = cluster.webhook_instances()?;
    ensure!(
        before == after,
        "the webhook restarted: {before:?} then {after:?}"
    );
    cluster.delete_namespace(&ns).await;
    cluster.delete_namespace(&elsewhere).await;
    Ok(())
}

async fn admits_deployment_with_prefixed_images(cluster: Arc<Cluster>) -> Result<()> {
    let ns = cluster.namespace("admits-good").await?;
    let created = cluster
        .kubectl
        .ok(&["create", "-n", &ns, "-f", "good-deployment.yaml"])?;
    ensure!(created.trim() == "deployment.apps/web created", "{created}");
    let image = cluster.kubectl.ok(&[
        "get",
        "deployment/web",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])?;
    ensure!(
        image == "registry.example.com:5000/shop/msalinasc_web:2.1",
        "{image}"
    );
    cluster.delete_namespace(&ns).await;
    Ok(())
}

async fn rejects_deployment_with_unprefixed_images(cluster: Arc<Cluster>) -> Result<()> {
    create_denied::<Deployment>(
        &cluster,
        "rejects-deployment",
        "bad-deployment.yaml",
        "kubectl_create_bad_deployment",
    )
    .await?;
    Ok(())
}

async fn rejects_update_to_unprefixed_image(cluster: Arc<Cluster>) -> Result<()> {
    let ns = cluster.namespace("rejects-update").await?;
    cluster
        .kubectl
        .ok(&["create", "-n", &ns, "-f", "good-deployment.yaml"])?;
    let stderr = kubectl_denied(
        &cluster,
        &["replace", "-n", &ns, "-f", "bad-deployment.yaml"],
    )?;
    snapshot("kubectl_replace_with_bad_deployment", &stderr);
    let stderr = kubectl_denied(
        &cluster,
        &[
            "set",
            "image",
            "-n",
            &ns,
            "deployment/web",
            "web=nginx:1.25",
        ],
    )?;
    snapshot("kubectl_set_image_to_bad_image", &stderr);

    let api = Api::<Deployment>::namespaced(cluster.client.clone(), &ns);
    let mut attempts = 0;
    loop {
        let mut current = api.get("web").await?;
        let spec = current
            .spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut())
            .expect("a pod spec");
        spec.containers[0].image = Some("nginx:1.25".to_owned());
        match api.replace("web", &PostParams::default(), &current).await {
            // A controller wrote the status between the get and the replace: read it again.
            Err(kube::Error::Api(status)) if status.code == 409 && attempts < 5 => attempts += 1,
            Err(kube::Error::Api(status)) => {
                ensure!(
                    status.code == 403 && status.reason == "Forbidden",
                    "{status:?}"
                );
                break;
            }
            other => anyhow::bail!("the update was not denied: {other:?}"),
        }
    }
    let image = api
        .get("web")
        .await?
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers[0].image.clone());
    ensure!(
        image
            == Some(Some(
                "registry.example.com:5000/shop/msalinasc_web:2.1".to_owned()
            )),
        "{image:?}"
    );
    cluster.delete_namespace(&ns).await;
    Ok(())
}

async fn rejects_pod_with_unprefixed_init_container(cluster: Arc<Cluster>) -> Result<()> {
    create_denied::<Pod>(
        &cluster,
        "rejects-init-container",
        "bad-init-pod.yaml",
        "kubectl_create_pod_with_bad_init_container",
    )
    .await?;
    Ok(())
}

async fn rejects_pod_with_unprefixed_image_volume(cluster: Arc<Cluster>) -> Result<()> {
    let stderr = create_denied::<Pod>(
        &cluster,
        "rejects-image-volume",
        "bad-image-volume-pod.yaml",
        "kubectl_create_pod_with_bad_image_volume",
    )
    .await?;
    ensure!(
        stderr.contains(r#"spec.volumes[0] "tools": image "docker.io/attacker/cryptominer:latest" has name "cryptominer""#),
        "the denial does not name the image volume: {stderr}"
    );
    Ok(())
}

async fn rejects_podtemplate_with_unprefixed_image(cluster: Arc<Cluster>) -> Result<()> {
    create_denied::<PodTemplate>(
        &cluster,
        "rejects-podtemplate",
        "bad-podtemplate.yaml",
        "kubectl_create_bad_podtemplate",
    )
    .await?;
    Ok(())
}

async fn rejects_cronjob_with_unprefixed_image(cluster: Arc<Cluster>) -> Result<()> {
    create_denied::<CronJob>(
        &cluster,
        "rejects-cronjob",
        "bad-cronjob.yaml",
        "kubectl_create_bad_cronjob",
    )
    .await?;
    Ok(())
}

async fn rejects_server_side_dry_run(cluster: Arc<Cluster>) -> Result<()> {
    let ns = cluster.namespace("rejects-dry-run").await?;
    let stderr = kubectl_denied(
        &cluster,
        &[
            "apply",
            "--dry-run=server",
            "-n",
            &ns,
            "-f",
            "bad-deployment.yaml",
        ],
    )?;
    snapshot("kubectl_apply_dry_run_server_bad_deployment", &stderr);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    client_denied::<Deployment>(&cluster, &ns, "bad-deployment.yaml", &dry_run).await?;
    cluster.delete_namespace(&ns).await;
    Ok(())
}

async fn rejects_debug_container_with_unprefixed_image(cluster: Arc<Cluster>) -> Result<()> {
    let ns = cluster.namespace("rejects-debug").await?;
    cluster
        .kubectl
        .ok(&["create", "-n", &ns, "-f", "good-pod.yaml"])?;
    let stderr = kubectl_denied(
        &cluster,
        &[
            "debug",
            "-n",
            &ns,
            "pod/web",
            "--image=busybox:1.36",
            "--container=debugger",
        ],
    )?;
    snapshot("kubectl_debug_with_bad_image", &stderr);
    cluster.kubectl.ok(&[
        "debug",
        "-n",
        &ns,
        "pod/web",
        "--image=msalinasc_debug:1.0",
        "--container=debugger",
    ])?;
    let added = cluster.kubectl.ok(&[
        "get",
        "pod/web",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.ephemeralContainers[*].image}",
    ])?;
    ensure!(
        added == "msalinasc_debug:1.0",
        "ephemeral containers: {added:?}"
    );
    cluster.delete_namespace(&ns).await;
    Ok(())
}

async fn admits_anything_in_exempt_namespaces(cluster: Arc<Cluster>) -> Result<()> {
    for ns in ["kube-system", "validator-webhook"] {
        let created = cluster
            .kubectl
            .ok(&["create", "-n", ns, "-f", "bad-deployment.yaml"])?;
        ensure!(
            created.trim() == "deployment.apps/web created",
            "{ns}: {created}"
        );
        cluster
            .kubectl
            .ok(&["delete", "-n", ns, "deployment/web", "--wait=false"])?;
    }
    Ok(())
}

async fn fails_closed_while_the_webhook_is_down(cluster: Arc<Cluster>) -> Result<()> {
    let ns = cluster.namespace("fails-closed").await?;
    cluster.stop_webhook().await?;
    // Until the API server notices the endpoint is gone it may still try the old address;
    // either way the create must fail, and never be admitted unchecked.
    let mut stderr = String::new();
    for _ in 0..50 {
        let output = cluster
            .kubectl
            .run(&["create", "-n", &ns, "-f", "good-deployment.yaml"])?;
        ensure!(
            !output.success,
            "created while the webhook was down: {}",
            output.stdout
        );
        stderr = output.stderr;
        if stderr.contains("no endpoints available") || stderr.contains("connection refused") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // What follows the URL depends on the cluster's Service routing; the rest is the API server's.
    let url = "/validate?timeout=5s\": ";
    let stable = stderr
        .split_once(url)
        .map(|(head, _)| format!("{head}{url}…"))
        .unwrap_or(stderr.clone());
    snapshot("kubectl_create_while_webhook_down", &stable);

    cluster.start_webhook().await?;
    let created = cluster
        .kubectl
        .ok(&["create", "-n", &ns, "-f", "good-deployment.yaml"])?;
    ensure!(created.trim() == "deployment.apps/web created", "{created}");
    cluster.delete_namespace(&ns).await;
    Ok(())
}

/// Both webhook pods are Ready (so the readiness probe passes) and never restarted (so the
/// liveness probe passes), their process runs as uid 65532 as the kernel sees it, and the image
/// they run is the one `just image` just built, by image ID.
async fn webhook_pods_are_ready_as_uid_65532_from_the_image_just_built(
    cluster: Arc<Cluster>,
) -> Result<()> {
    let kind = on_kind(&cluster)?;
    let pods = webhook_pods(&cluster).await?;
    ensure!(pods.len() == 2, "{} webhook pods instead of 2", pods.len());
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.context("a pod without a spec")?;
        let container = (spec.containers.iter())
            .find(|c| c.name == "webhook")
            .context("no webhook container")?;
        ensure!(
            probe_path(container, true) == Some("/readyz"),
            "{name}: readiness probe"
        );
        ensure!(
            probe_path(container, false) == Some("/healthz"),
            "{name}: liveness probe"
        );
        let status = pod.status.context("a pod without a status")?;
        let ready =
            (status.conditions.iter().flatten()).any(|c| c.type_ == "Ready" && c.status == "True");
        ensure!(ready, "{name} is not Ready: {:?}", status.conditions);
        let container = (status.container_statuses.iter().flatten())
            .find(|c| c.name == "webhook")
            .context("no status of the webhook container")?;
        ensure!(container.ready, "{name}: the container is not ready");
        ensure!(
            container.restart_count == 0,
            "{name}: restarted {} times (liveness?)",
            container.restart_count
        );
        let id = container
            .container_id
            .as_deref()
            .context("no container ID")?;
        let running = kind.cluster.container(id)?;
        ensure!(
            running.uid == 65532 && running.gid == 65532,
            "{name} runs as uid {} gid {}",
            running.uid,
            running.gid
        );
        ensure!(
            running.image_id == kind.webhook_image.id,
            "{name} runs image {} ({}), not {} as built: {}",
            running.image_id,
            container.image_id,
            &kind::webhook_image(),
            kind.webhook_image.id
        );
    }
    Ok(())
}

/// A Deployment the policy admits, with an image the node has, gets pods that reach Running.
async fn admitted_deployment_pods_reach_running(cluster: Arc<Cluster>) -> Result<()> {
    on_kind(&cluster)?;
    let ns = cluster.namespace("reach-running").await?;
    let created = cluster
        .kubectl
        .ok(&["create", "-n", &ns, "-f", "running-deployment.yaml"])?;
    ensure!(
        created.trim() == "deployment.apps/pause created",
        "{created}"
    );
    let started = std::time::Instant::now();
    kubectl_blocking(
        &cluster,
        &[
            "rollout",
            "status",
            "deployment/pause",
            "-n",
            &ns,
            "--timeout=180s",
        ],
    )
    .await?;
    let pods = Api::<Pod>::namespaced(cluster.client.clone(), &ns)
        .list(&ListParams::default().labels("app=pause"))
        .await?;
    ensure!(
        pods.items.len() == 2,
        "{} pods instead of 2",
        pods.items.len()
    );
    for pod in &pods.items {
        let status = pod.status.as_ref().context("a pod without a status")?;
        ensure!(
            status.phase.as_deref() == Some("Running"),
            "{:?} is {:?}",
            pod.metadata.name,
            status.phase
        );
        let image = (status.container_statuses.iter().flatten())
            .map(|c| c.image.as_str())
            .collect::<Vec<_>>();
        ensure!(
            image.iter().all(|i| i.ends_with(kind::TEST_IMAGE)),
            "{image:?}"
        );
    }
    eprintln!(
        "    2 pods of {} Running {:.1} s after the create",
        kind::TEST_IMAGE,
        started.elapsed().as_secs_f64()
    );
    cluster.delete_namespace(&ns).await;
    Ok(())
}

/// A denied Deployment leaves nothing for the controllers to act on: while an admitted one in
/// the same namespace gets its ReplicaSet, the denied one never does; and a ReplicaSet made
/// directly with a bad image is denied too.
async fn denied_deployment_never_creates_a_replica_set(cluster: Arc<Cluster>) -> Result<()> {
    ensure!(
        cluster.has_controllers(),
        "this case needs kube-controller-manager, which KUBEBUILDER_ASSETS lacks"
    );
    let ns = cluster.namespace("no-replica-set").await?;
    kubectl_denied(
        &cluster,
        &["create", "-n", &ns, "-f", "bad-deployment.yaml"],
    )?;
    cluster
        .kubectl
        .ok(&["create", "-n", &ns, "-f", "running-deployment.yaml"])?;
    let replica_sets = Api::<ReplicaSet>::namespaced(cluster.client.clone(), &ns);
    let owners = wait_for(
        "a ReplicaSet for the admitted Deployment",
        Duration::from_secs(60),
        || async {
            let owners: Vec<String> = (replica_sets.list(&ListParams::default()).await?.items)
                .iter()
                .flat_map(|rs| rs.metadata.owner_references.iter().flatten())
                .map(|owner| format!("{}/{}", owner.kind, owner.name))
                .collect();
            ensure!(!owners.is_empty(), "no ReplicaSet yet");
            Ok(owners)
        },
    )
    .await?;
    ensure!(
        owners == ["Deployment/pause"],
        "ReplicaSets owned by {owners:?}"
    );
    let listed = cluster
        .kubectl
        .ok(&["get", "deployments", "-n", &ns, "-o", "name"])?;
    ensure!(listed.trim() == "deployment.apps/pause", "{listed}");

    let bad: Deployment = manifest("bad-deployment.yaml")?;
    let replica_set = ReplicaSet {
        metadata: bad.metadata.clone(),
        spec: bad
            .spec
            .map(|spec| k8s_openapi::api::apps::v1::ReplicaSetSpec {
                replicas: spec.replicas,
                selector: spec.selector,
                template: Some(spec.template),
                ..Default::default()
            }),
        ..ReplicaSet::default()
    };
    match replica_sets
        .create(&PostParams::default(), &replica_set)
        .await
    {
        Err(kube::Error::Api(status)) => ensure!(
            status.code == 403 && status.message.contains(testkit::reply::DENIAL_PREFIX),
            "{}",
            status.message
        ),
        other => anyhow::bail!("a ReplicaSet with unprefixed images was not denied: {other:?}"),
    }
    cluster.delete_namespace(&ns).await;
    Ok(())
}

/// Eight clients create through the API server for at least 60 s while the webhook's
/// Deployment is restarted twice: every good Deployment is admitted and every bad one denied,
/// with no request lost to a pod going away.
async fn rolling_restart_under_load_loses_no_admission(cluster: Arc<Cluster>) -> Result<()> {
    const CLIENTS: usize = 8;
    const AT_LEAST: Duration = Duration::from_secs(60);
    on_kind(&cluster)?;
    let ns = cluster.namespace("restart-under-load").await?;
    let load = Load::start(
        &cluster.client,
        &ns,
        CLIENTS,
        manifest("good-deployment.yaml")?,
        manifest("bad-deployment.yaml")?,
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut rollouts = Vec::new();
    for _ in 0..2 {
        let started = std::time::Instant::now();
        kubectl_blocking(
            &cluster,
            &[
                "rollout",
                "restart",
                WEBHOOK_DEPLOYMENT,
                "-n",
                WEBHOOK_NAMESPACE,
            ],
        )
        .await?;
        let kubectl = cluster.kubectl.clone();
        tokio::task::spawn_blocking(move || webhook_rolled_out(&kubectl, "180s")).await??;
        rollouts.push(format!("{:.1} s", started.elapsed().as_secs_f64()));
    }
    if let Some(rest) = AT_LEAST.checked_sub(load.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let tally = load.stop().await?;
    let line = format!(
        "restart under load ({CLIENTS} clients, 2 rolling restarts taking {}): {tally}",
        rollouts.join(" and ")
    );
    eprintln!("    {line}");
    for error in &tally.first_errors {
        eprintln!("    failed: {error}");
    }
    cluster.note(line);
    ensure!(
        tally.failed == 0,
        "{} requests failed during the restarts; the first: {:?}",
        tally.failed,
        tally.first_errors
    );
    ensure!(
        tally.admitted > 0 && tally.denied > 0,
        "no load was made: {tally}"
    );
    cluster.delete_namespace(&ns).await;
    Ok(())
}

/// The chart's release in the Helm case, in a namespace of the same name: its objects are
/// named apart from `deploy/`'s, which stay installed.
const HELM_RELEASE: &str = "vw-helm";

/// `helm install` of the chart (prefixes `msalinasc_` and `old_`), then `helm upgrade` to
/// `msalinasc_` and `new_` while eight clients create through the API server: no admission is
/// lost while the pods take the new policy, and once they have `new_` is admitted and `old_`
/// denied with the policy's message. `deploy/`'s ValidatingWebhookConfiguration is set aside
/// for the case, so that only the chart's webhook judges, and put back afterwards (also on
/// failure and on Ctrl-C).
async fn helm_upgrade_under_load_loses_no_admission_and_applies_the_new_prefix(
    cluster: Arc<Cluster>,
) -> Result<()> {
    on_kind(&cluster)?;
    let work = tempfile::tempdir()?;
    let helm = Helm::build(work.path())?;
    let ns = cluster.namespace("helm-upgrade").await?;

    // deploy/'s configuration, as it can be created again.
    let mut saved: serde_json::Value = serde_json::from_str(&cluster.kubectl.ok(&[
        "get",
        "validatingwebhookconfiguration",
        testkit::names::CONFIGURATION,
        "-o",
        "json",
    ])?)?;
    if let Some(metadata) = saved["metadata"].as_object_mut() {
        for field in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
        ] {
            metadata.remove(field);
        }
    }
    let saved_file = work.path().join("deploy-configuration.json");
    std::fs::write(&saved_file, saved.to_string())?;
    let saved_file = saved_file.to_string_lossy().into_owned();
    const RESTORE: &str = "restore deploy/'s ValidatingWebhookConfiguration";
    undo_on_interrupt(
        RESTORE,
        &cluster.kubectl.command(&["create", "-f", &saved_file]),
    );
    cluster.kubectl.ok(&[
        "delete",
        "validatingwebhookconfiguration",
        testkit::names::CONFIGURATION,
    ])?;

    const UNINSTALL: &str = "uninstall the chart's e2e release";
    let kubeconfig = cluster.kubeconfig().to_string_lossy().into_owned();
    let uninstall = [
        "uninstall",
        HELM_RELEASE,
        "--namespace",
        HELM_RELEASE,
        "--kubeconfig",
        &kubeconfig,
        "--wait",
    ];
    const DELETE_NAMESPACE: &str = "delete the chart's e2e namespace";
    let delete_namespace = [
        "delete",
        "namespace",
        HELM_RELEASE,
        "--ignore-not-found",
        "--wait=false",
    ];
    undo_on_interrupt(
        DELETE_NAMESPACE,
        &cluster.kubectl.command(&delete_namespace),
    );
    undo_on_interrupt(UNINSTALL, &helm.command(&uninstall));
    let outcome = install_and_upgrade_the_chart(&cluster, &helm, &ns).await;

    let uninstalled = helm.ok(&uninstall);
    forget_undo(UNINSTALL);
    let deleted = cluster.kubectl.ok(&delete_namespace);
    forget_undo(DELETE_NAMESPACE);
    let restored = cluster.kubectl.ok(&["create", "-f", &saved_file]);
    forget_undo(RESTORE);
    // The cases after this one need deploy/'s webhook judging again.
    let restored = match restored {
        Ok(_) => {
            let judging = format!("admission webhook \"{WEBHOOK}\" denied");
            wait_for(
                "deploy/'s webhook judging again",
                Duration::from_secs(60),
                || async {
                    let denied = verdict(&cluster, &ns, "nginx:1").await?.unwrap_or_default();
                    ensure!(denied.starts_with(&judging), "{denied:?}");
                    Ok(())
                },
            )
            .await
        }
        Err(error) => Err(error),
    };
    cluster.delete_namespace(&ns).await;
    outcome?;
    uninstalled.context("helm uninstall")?;
    deleted?;
    restored.context("restoring deploy/'s ValidatingWebhookConfiguration")?;
    Ok(())
}

async fn install_and_upgrade_the_chart(cluster: &Cluster, helm: &Helm, ns: &str) -> Result<()> {
    const CLIENTS: usize = 8;
    const AT_LEAST: Duration = Duration::from_secs(30);
    let built = kind::webhook_image();
    let (repository, tag) = built
        .rsplit_once(':')
        .with_context(|| format!("{built} has no tag"))?;
    let chart = helm::chart().to_string_lossy().into_owned();
    let kubeconfig = cluster.kubeconfig().to_string_lossy().into_owned();
    let release = |verb: &'static str, extra: Vec<String>| {
        let mut args: Vec<String> = [
            verb,
            HELM_RELEASE,
            &chart,
            "--namespace",
            HELM_RELEASE,
            "--kubeconfig",
            &kubeconfig,
            "--wait",
            "--timeout",
            "180s",
        ]
        .map(str::to_owned)
        .into();
        args.extend(extra);
        args
    };

    // As the chart's README quick start does it.
    let started = std::time::Instant::now();
    cluster.kubectl.ok(&["create", "namespace", HELM_RELEASE])?;
    cluster.kubectl.ok(&[
        "label",
        "namespace",
        HELM_RELEASE,
        "pod-security.kubernetes.io/enforce=restricted",
    ])?;
    let install = release(
        "install",
        vec![
            "--set".to_owned(),
            format!("image.repository={repository},image.tag={tag},image.pullPolicy=Never"),
            "--set".to_owned(),
            "allowedPrefixes={msalinasc_,old_}".to_owned(),
        ],
    );
    helm.ok(&install.iter().map(String::as_str).collect::<Vec<_>>())?;
    let installed_in = started.elapsed();
    // The configuration is in place once the API server asks the chart's webhook.
    wait_for(
        "the chart's webhook judging",
        Duration::from_secs(60),
        || async {
            ensure!(
                verdict(cluster, ns, "old_app:1").await?.is_none(),
                "old_ denied"
            );
            ensure!(
                verdict(cluster, ns, "nginx:1").await?.is_some(),
                "nginx admitted"
            );
            Ok(())
        },
    )
    .await?;

    let load = Load::start(
        &cluster.client,
        ns,
        CLIENTS,
        manifest("good-deployment.yaml")?,
        manifest("bad-deployment.yaml")?,
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let started = std::time::Instant::now();
    let upgrade = release(
        "upgrade",
        vec![
            "--reuse-values".to_owned(),
            "--set".to_owned(),
            "allowedPrefixes={msalinasc_,new_}".to_owned(),
        ],
    );
    // Off the runtime's threads, so the load keeps going.
    let helm_run = helm.clone();
    let upgraded = tokio::task::spawn_blocking(move || {
        helm_run.ok(&upgrade.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await?
    .map(drop);
    // The prefixes live in the policy ConfigMap, which the pods reload once the kubelet has
    // refreshed their volume (no rollout): wait until every answer is the new policy's.
    let webhook = format!("{HELM_RELEASE}-validator-webhook.{HELM_RELEASE}.svc");
    let expected = format!(
        "admission webhook \"{webhook}\" denied the request: Invalid image name: \
         spec.template.spec.containers[0] \"web\": image \"old_app:1\" has name \"old_app\", \
         which does not start with any of \"msalinasc_\", \"new_\""
    );
    let in_force = || async {
        ensure!(
            verdict(cluster, ns, "new_app:1").await?.is_none(),
            "new_app:1 denied"
        );
        let denied = verdict(cluster, ns, "old_app:1").await?;
        ensure!(
            denied.as_deref() == Some(expected.as_str()),
            "old_app:1: {denied:?}, not {expected:?}"
        );
        Ok(())
    };
    // The API server keeps its connection to one pod, so an answer with the new prefixes says
    // nothing of the other replica: wait until every pod has logged the reload, then for the
    // answers.
    let upgraded = async {
        upgraded?;
        let reloaded = [RELOADED, "new_"];
        (cluster.wait_for_every_pod_to_log(HELM_RELEASE, &reloaded, &Default::default())).await?;
        wait_for(
            "the new prefixes in force",
            Duration::from_secs(60),
            in_force,
        )
        .await
    }
    .await;
    let upgrade_took = started.elapsed();
    if let Some(rest) = AT_LEAST.checked_sub(load.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let tally = load.stop().await?;
    upgraded?;
    let line = format!(
        "helm install in {:.1} s; helm upgrade under load ({CLIENTS} clients, {:.1} s until the new prefixes were in force): {tally}",
        installed_in.as_secs_f64(),
        upgrade_took.as_secs_f64()
    );
    eprintln!("    {line}");
    for error in &tally.first_errors {
        eprintln!("    failed: {error}");
    }
    cluster.note(line);
    ensure!(
        tally.failed == 0,
        "{} requests failed during the upgrade; the first: {:?}",
        tally.failed,
        tally.first_errors
    );
    ensure!(
        tally.admitted > 0 && tally.denied > 0,
        "no load was made: {tally}"
    );

    // Every pod answers with the new prefixes from now on.
    for _ in 0..10 {
        in_force().await?;
    }
    Ok(())
}

/// A server-side dry-run create of `good-deployment.yaml` with `image`: `None` when admitted,
/// the message when the policy denied it, an error otherwise.
async fn verdict(cluster: &Cluster, ns: &str, image: &str) -> Result<Option<String>> {
    let mut deployment: Deployment = manifest("good-deployment.yaml")?;
    let containers = (deployment.spec.as_mut())
        .and_then(|spec| spec.template.spec.as_mut())
        .map(|spec| &mut spec.containers)
        .context("good-deployment.yaml has no pod spec")?;
    containers[0].image = Some(image.to_owned());
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match Api::<Deployment>::namespaced(cluster.client.clone(), ns)
        .create(&params, &deployment)
        .await
    {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(Some(status.message)),
        Err(error) => Err(error.into()),
    }
}

/// Clients create through the API server while the serving certificate is renewed with
/// `certs` and then the CA is replaced in its three stages, each applied as an operator would
/// and waited for: every good Deployment is admitted and every bad one denied throughout.
async fn renewal_and_staged_ca_rotation_under_load_lose_no_admission(
    cluster: Arc<Cluster>,
) -> Result<()> {
    const CLIENTS: usize = 4;
    let ns = cluster.namespace("certificate-rotation").await?;
    let load = Load::start(
        &cluster.client,
        &ns,
        CLIENTS,
        manifest("good-deployment.yaml")?,
        manifest("bad-deployment.yaml")?,
    );
    let dir = cluster.certs_dir();
    let started = std::time::Instant::now();
    let stages: [(&str, &[&str]); 4] = [
        // A different validity each time the serving certificate changes, so that its expiry
        // tells which certificate a replica serves.
        ("renew", &["--validity-days", "300"]),
        ("begin", &["--rotate-ca", "begin"]),
        (
            "switch",
            &["--rotate-ca", "switch", "--validity-days", "200"],
        ),
        ("finish", &["--rotate-ca", "finish"]),
    ];
    let mut timings = Vec::new();
    for (stage, args) in stages {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let stage_started = std::time::Instant::now();
        let binary = paths::webhook_binary()?;
        let mut command = std::process::Command::new(binary);
        command.arg("certs").arg("--out-dir").arg(&dir).args(args);
        testkit::process::run(&mut command).with_context(|| format!("certs, stage {stage}"))?;
        cluster.reapply()?;
        let expiry = not_after(&std::fs::read(dir.join("tls.crt"))?)?;
        wait_for(
            &format!("every replica serving the certificate of stage {stage}"),
            Duration::from_secs(180),
            || async {
                let metrics = cluster.webhook_metrics().await?;
                let served: Vec<_> = metrics.iter().map(|text| served_expiry(text)).collect();
                ensure!(
                    !served.is_empty() && served.iter().all(|s| *s == Some(expiry)),
                    "replicas serve certificates expiring at {served:?}, not {expiry}"
                );
                Ok(())
            },
        )
        .await?;
        timings.push(format!(
            "{stage} {:.1} s",
            stage_started.elapsed().as_secs_f64()
        ));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tally = load.stop().await?;
    let line = format!(
        "certificate renewal and CA rotation under load ({CLIENTS} clients; {} ; {:.0} s): {tally}",
        timings.join(", "),
        started.elapsed().as_secs_f64()
    );
    eprintln!("    {line}");
    for error in &tally.first_errors {
        eprintln!("    failed: {error}");
    }
    cluster.note(line);
    ensure!(
        tally.failed == 0,
        "{} requests failed during the rotation; the first: {:?}",
        tally.failed,
        tally.first_errors
    );
    ensure!(
        tally.admitted > 0 && tally.denied > 0,
        "no load was made: {tally}"
    );
    let bundle = std::fs::read_to_string(dir.join("ca-bundle.crt"))?;
    let ca = std::fs::read_to_string(dir.join("ca.crt"))?;
    ensure!(
        bundle == ca,
        "the rotation did not end with one CA published"
    );
    cluster.delete_namespace(&ns).await;
    Ok(())
}

/// When a PEM certificate expires, in seconds since the Unix epoch.
fn not_after(pem: &[u8]) -> Result<i64> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let der = CertificateDer::from_pem_slice(pem).context("tls.crt holds no certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)?;
    Ok(cert.validity().not_after.timestamp())
}

/// The expiry of the certificate a replica serves, from its metrics.
fn served_expiry(metrics: &str) -> Option<i64> {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("validator_webhook_certificate_expiry_timestamp_seconds ")
        })
        .and_then(|value| value.trim().parse().ok())
}

fn on_kind(cluster: &Cluster) -> Result<&Kind> {
    cluster
        .kind()
        .context("this case runs on the kind backend only")
}

/// The webhook's pods that are not terminating.
async fn webhook_pods(cluster: &Cluster) -> Result<Vec<Pod>> {
    let pods = Api::<Pod>::namespaced(cluster.client.clone(), WEBHOOK_NAMESPACE)
        .list(&ListParams::default().labels("app.kubernetes.io/name=validator-webhook"))
        .await?;
    Ok(pods
        .items
        .into_iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .collect())
}

/// The HTTPS path of a container's readiness (or liveness) probe.
fn probe_path(container: &Container, readiness: bool) -> Option<&str> {
    let probe = if readiness {
        container.readiness_probe.as_ref()
    } else {
        container.liveness_probe.as_ref()
    }?;
    let get = probe.http_get.as_ref()?;
    (get.scheme.as_deref() == Some("HTTPS")).then_some(get.path.as_deref()?)
}

/// A kubectl command that waits (a rollout), off the runtime's threads so the load keeps going.
async fn kubectl_blocking(cluster: &Cluster, args: &[&str]) -> Result<String> {
    let kubectl = cluster.kubectl.clone();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kubectl.ok(&args)
    })
    .await?
}

async fn every_overlay_passes_server_side_dry_run(cluster: Arc<Cluster>) -> Result<()> {
    overlays::install_cert_manager_crds(&cluster.kubectl)?;
    let work = tempfile::tempdir()?;
    let manifests = Manifests::prepare(work.path(), &paths::webhook_binary()?)?;
    for overlay in ["certs", "cert-manager", "kind"] {
        let rendered = cluster
            .kubectl
            .ok(&["kustomize", &manifests.overlay(overlay).to_string_lossy()])?;
        let file = work.path().join(format!("{overlay}.yaml"));
        std::fs::write(&file, rendered)?;
        let applied =
            cluster
                .kubectl
                .ok(&["apply", "--dry-run=server", "-f", &file.to_string_lossy()])?;
        ensure!(
            applied.contains("validatingwebhookconfiguration"),
            "{overlay}: {applied}"
        );
    }
    let base = cluster.kubectl.run(&[
        "kustomize",
        &paths::repository().join("deploy/base").to_string_lossy(),
    ])?;
    ensure!(base.success, "deploy/base does not render: {}", base.stderr);
    Ok(())
}

/// What `validator-webhook vap` prints is accepted by the API server as it is, in every mode.
async fn vap_passes_server_side_dry_run_in_every_mode(cluster: Arc<Cluster>) -> Result<()> {
    let work = tempfile::tempdir()?;
    for mode in ["enforce", "warn", "audit"] {
        let printed = std::process::Command::new(paths::webhook_binary()?)
            .args([
                "vap",
                "--mode",
                mode,
                "--allowed-prefix",
                "msalinasc_,team_",
            ])
            .output()?;
        ensure!(
            printed.status.success(),
            "vap --mode {mode} failed: {}",
            String::from_utf8_lossy(&printed.stderr)
        );
        let file = work.path().join(format!("vap-{mode}.yaml"));
        std::fs::write(&file, &printed.stdout)?;
        let applied =
            cluster
                .kubectl
                .ok(&["apply", "--dry-run=server", "-f", &file.to_string_lossy()])?;
        for object in [
            "validatingadmissionpolicy.admissionregistration.k8s.io/validator-webhook",
            "validatingadmissionpolicybinding.admissionregistration.k8s.io/validator-webhook",
        ] {
            ensure!(
                applied.contains(&format!("{object} created (server dry run)")),
                "{mode}: {applied}"
            );
        }
    }
    Ok(())
}

/// The kind overlay is the certs overlay with the locally loaded image: nothing else may differ
/// from the base, or the kind e2e would test something other than what users deploy.
async fn kind_overlay_differs_only_in_image_pull_policy_and_certificate(
    cluster: Arc<Cluster>,
) -> Result<()> {
    let work = tempfile::tempdir()?;
    let manifests = Manifests::prepare(work.path(), &paths::webhook_binary()?)?;
    let base = manifests.render(&cluster.kubectl, "../base")?;
    let kind = manifests.render(&cluster.kubectl, "kind")?;
    let mut extra = Vec::new();
    for mut object in kind {
        let key = overlays::key(&object);
        let Some(original) = base.iter().find(|o| overlays::key(o) == key) else {
            extra.push(key);
            continue;
        };
        if key == "Deployment/validator-webhook/validator-webhook" {
            let container = &mut object["spec"]["template"]["spec"]["containers"][0];
            ensure!(
                container["image"] == "validator-webhook:e2e",
                "{}",
                container["image"]
            );
            ensure!(
                container["imagePullPolicy"] == "Never",
                "{}",
                container["imagePullPolicy"]
            );
            container["image"] =
                original["spec"]["template"]["spec"]["containers"][0]["image"].clone();
            container["imagePullPolicy"] =
                original["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"].clone();
        }
        if key == "ValidatingWebhookConfiguration//validator-webhook" {
            let client_config = &mut object["webhooks"][0]["clientConfig"];
            ensure!(
                client_config["caBundle"].is_string(),
                "no caBundle in the kind overlay"
            );
            client_config.as_object_mut().map(|c| c.remove("caBundle"));
        }
        ensure!(&object == original, "the kind overlay changes {key}");
    }
    ensure!(
        extra == ["Secret/validator-webhook/validator-webhook-tls"],
        "the kind overlay adds {extra:?}"
    );
    Ok(())
}

/// `validator-webhook check --cluster`, run against the cluster as a user would before turning
/// enforcement on: the webhook exempts kube-system, so a Deployment there with bad images exists
/// and must be reported denied, while the good one in the case's namespace is allowed.
async fn check_cluster_reports_what_enforcement_would_deny(cluster: Arc<Cluster>) -> Result<()> {
    let ns = cluster.namespace("check-cluster").await?;
    cluster
        .kubectl
        .ok(&["create", "-n", &ns, "-f", "good-deployment.yaml"])?;
    let exempt = format!("unchecked-{ns}");
    let dir = tempfile::tempdir()?;
    let manifest = dir.path().join("exempt.yaml");
    let bad = std::fs::read_to_string(paths::manifests().join("bad-deployment.yaml"))?;
    std::fs::write(
        &manifest,
        bad.replacen("name: web", &format!("name: {exempt}"), 1),
    )?;
    let manifest = manifest.to_string_lossy().into_owned();
    cluster
        .kubectl
        .ok(&["create", "-n", "kube-system", "-f", &manifest])?;
    let checked = check_cluster(&cluster, &ns, &exempt);
    let _ = cluster.kubectl.run(&[
        "delete",
        "-n",
        "kube-system",
        &format!("deployment/{exempt}"),
        "--wait=false",
    ]);
    cluster.delete_namespace(&ns).await;
    checked
}

fn check_cluster(cluster: &Cluster, ns: &str, exempt: &str) -> Result<()> {
    let check = |args: &[&str]| -> Result<std::process::Output> {
        std::process::Command::new(paths::webhook_binary()?)
            .arg("check")
            .arg("--cluster")
            .args(args)
            .env_clear()
            .env("KUBECONFIG", cluster.kubeconfig())
            .output()
            .context("cannot run validator-webhook check --cluster")
    };
    let all = check(&["-A", "--output", "json"])?;
    let stderr = String::from_utf8_lossy(&all.stderr);
    ensure!(
        all.status.code() == Some(1),
        "exit {:?}: {stderr}",
        all.status.code()
    );
    let report: serde_json::Value = serde_json::from_slice(&all.stdout)?;
    let results = report["results"].as_array().context("no results")?;
    let find = |namespace: &str, name: &str| {
        results
            .iter()
            .find(|r| r["kind"] == "Deployment" && r["namespace"] == namespace && r["name"] == name)
    };
    let denied = find("kube-system", exempt).context("the exempt Deployment is not reported")?;
    ensure!(denied["verdict"] == "denied", "{denied}");
    let message = denied["message"].as_str().unwrap_or_default();
    ensure!(
        message.starts_with(
            "Invalid image name in 2 containers: spec.template.spec.initContainers[0] \"init\""
        ),
        "{message}"
    );
    let allowed = find(ns, "web").context("the good Deployment is not reported")?;
    ensure!(allowed["verdict"] == "allowed", "{allowed}");

    let one = check(&["-n", ns])?;
    let stdout = String::from_utf8_lossy(&one.stdout);
    ensure!(
        one.status.code() == Some(0),
        "exit {:?}: {stdout}",
        one.status.code()
    );
    ensure!(
        stdout
            .lines()
            .any(|line| line == format!("cluster: Deployment {ns}/web: allowed")),
        "{stdout}"
    );
    Ok(())
}
