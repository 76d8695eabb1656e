//! What users see when a real API server calls the webhook: each case runs in a fresh
//! namespace of the cluster the backend provides (see `e2e::cluster`), checks what `kubectl`
//! prints (pinned in `snapshots/`) and what a client library gets back.

use std::{future::Future, pin::Pin, sync::Arc};

use anyhow::{Result, ensure};
use e2e::{cluster::Cluster, install::Manifests, manifest, overlays, paths};
use k8s_openapi::api::{apps::v1::Deployment, batch::v1::CronJob, core::v1::Pod};
use kube::{Api, Resource, api::PostParams};
use libtest_mimic::{Arguments, Failed, Trial};
use serde::{Serialize, de::DeserializeOwned};

const WEBHOOK: &str = "validator-webhook.validator-webhook.svc";

type Case = fn(Arc<Cluster>) -> Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// Names each case after its function.
macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        vec![$((stringify!($case), (|cluster| Box::pin($case(cluster))) as Case)),*]
    };
}

/// The cases, in the order they run. The one that stops the webhook runs last.
fn cases() -> Vec<(&'static str, Case)> {
    cases![
        admits_deployment_with_prefixed_images,
        rejects_deployment_with_unprefixed_images,
        rejects_update_to_unprefixed_image,
        rejects_pod_with_unprefixed_init_container,
        rejects_cronjob_with_unprefixed_image,
        rejects_server_side_dry_run,
        rejects_debug_container_with_unprefixed_image,
        admits_anything_in_exempt_namespaces,
        every_overlay_passes_server_side_dry_run,
        kind_overlay_differs_only_in_image_pull_policy_and_certificate,
        fails_closed_while_the_webhook_is_down,
    ]
}

fn main() -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    // The cases share one webhook, and one of them stops it.
    args.test_threads = Some(1);
    let runtime = Arc::new(tokio::runtime::Runtime::new().expect("a tokio runtime"));
    if args.list {
        let trials = cases()
            .into_iter()
            .map(|(name, _)| Trial::test(name, || Ok(())))
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
    let trials = cases()
        .into_iter()
        .map(|(name, case)| {
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
