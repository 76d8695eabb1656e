//! What users see when a real API server calls the webhook: each case runs in a fresh
//! namespace of the cluster the backend provides (see `e2e::cluster`), checks what `kubectl`
//! prints (pinned in `snapshots/`) and what a client library gets back.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use anyhow::{Context, Result, ensure};
use e2e::{
    cluster::{BackendKind, Cluster, Kind, WEBHOOK_DEPLOYMENT, WEBHOOK_NAMESPACE},
    install::Manifests,
    kind,
    load::Load,
    manifest, overlays, paths,
    process::wait_for,
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

const WEBHOOK: &str = "validator-webhook.validator-webhook.svc";

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
            kind_overlay_differs_only_in_image_pull_policy_and_certificate,
            denied_deployment_never_creates_a_replica_set,
            renewal_and_staged_ca_rotation_under_load_lose_no_admission,
        ],
        OnKindOnly: [
            webhook_pods_are_ready_as_uid_65532_from_the_image_just_built,
            admitted_deployment_pods_reach_running,
            rolling_restart_under_load_loses_no_admission,
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
    let output = cluster.kubectl.run(args)?;
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

/// Creating `file` through the API must fail with 403 Forbidden carrying the webhook's message.
async fn client_denied<K>(
    cluster: &Cluster,
    namespace: &str,
    file: &str,
    params: &PostParams,
) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
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
    let ns = cluster.namespace("rejects-deployment").await?;
    let stderr = kubectl_denied(
        &cluster,
        &["create", "-n", &ns, "-f", "bad-deployment.yaml"],
    )?;
    snapshot("kubectl_create_bad_deployment", &stderr);
    client_denied::<Deployment>(&cluster, &ns, "bad-deployment.yaml", &PostParams::default())
        .await?;
    let listed = cluster.kubectl.run(&["get", "deployments", "-n", &ns])?;
    ensure!(
        listed.stderr.contains("No resources found"),
        "something was created: {}",
        listed.stdout
    );
    cluster.delete_namespace(&ns).await;
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
    let mut current = api.get("web").await?;
    let spec = current
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .expect("a pod spec");
    spec.containers[0].image = Some("nginx:1.25".to_owned());
    match api.replace("web", &PostParams::default(), &current).await {
        Err(kube::Error::Api(status)) => ensure!(
            status.code == 403 && status.reason == "Forbidden",
            "{status:?}"
        ),
        other => anyhow::bail!("the update was not denied: {other:?}"),
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
    let ns = cluster.namespace("rejects-init-container").await?;
    let stderr = kubectl_denied(&cluster, &["create", "-n", &ns, "-f", "bad-init-pod.yaml"])?;
    snapshot("kubectl_create_pod_with_bad_init_container", &stderr);
    client_denied::<Pod>(&cluster, &ns, "bad-init-pod.yaml", &PostParams::default()).await?;
    cluster.delete_namespace(&ns).await;
    Ok(())
}

async fn rejects_pod_with_unprefixed_image_volume(cluster: Arc<Cluster>) -> Result<()> {
    let ns = cluster.namespace("rejects-image-volume").await?;
    let stderr = kubectl_denied(
        &cluster,
        &["create", "-n", &ns, "-f", "bad-image-volume-pod.yaml"],
    )?;
    ensure!(
        stderr.contains(r#"spec.volumes[0] "tools": image "docker.io/attacker/cryptominer:latest" has name "cryptominer""#),
        "the denial does not name the image volume: {stderr}"
    );
    snapshot("kubectl_create_pod_with_bad_image_volume", &stderr);
    client_denied::<Pod>(
        &cluster,
        &ns,
        "bad-image-volume-pod.yaml",
        &PostParams::default(),
    )
    .await?;
    cluster.delete_namespace(&ns).await;
    Ok(())
}

async fn rejects_podtemplate_with_unprefixed_image(cluster: Arc<Cluster>) -> Result<()> {
    let ns = cluster.namespace("rejects-podtemplate").await?;
    let stderr = kubectl_denied(
        &cluster,
        &["create", "-n", &ns, "-f", "bad-podtemplate.yaml"],
    )?;
    snapshot("kubectl_create_bad_podtemplate", &stderr);
    client_denied::<PodTemplate>(
        &cluster,
        &ns,
        "bad-podtemplate.yaml",
        &PostParams::default(),
    )
    .await?;
    cluster.delete_namespace(&ns).await;
    Ok(())
}

async fn rejects_cronjob_with_unprefixed_image(cluster: Arc<Cluster>) -> Result<()> {
    let ns = cluster.namespace("rejects-cronjob").await?;
    let stderr = kubectl_denied(&cluster, &["create", "-n", &ns, "-f", "bad-cronjob.yaml"])?;
    snapshot("kubectl_create_bad_cronjob", &stderr);
    client_denied::<CronJob>(&cluster, &ns, "bad-cronjob.yaml", &PostParams::default()).await?;
    cluster.delete_namespace(&ns).await;
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
            status.code == 403 && status.message.contains("Invalid image name"),
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
        kubectl_blocking(
            &cluster,
            &[
                "rollout",
                "status",
                WEBHOOK_DEPLOYMENT,
                "-n",
                WEBHOOK_NAMESPACE,
                "--timeout=180s",
            ],
        )
        .await?;
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
        e2e::process::run(&mut command).with_context(|| format!("certs, stage {stage}"))?;
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
