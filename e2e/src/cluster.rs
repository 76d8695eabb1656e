//! The cluster the cases run against, whichever backend provides it: the local control plane
//! (`E2E_BACKEND=local`, the default) or a kind cluster the harness creates and deploys the
//! webhook to from the kind overlay (`E2E_BACKEND=kind`, as `just e2e` runs it). Either way the
//! webhook is installed from a copy of `deploy/` with a certificate from `validator-webhook
//! certs`, and everything is torn down when the cluster is dropped.

use std::{
    collections::BTreeMap,
    net::SocketAddrV4,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Namespace, Pod, ServiceAccount},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, LogParams, ObjectMeta, Patch, PatchParams, PostParams},
};

use crate::{
    install::{Container, Manifests},
    kind::{self, KindCluster, LocalImage},
    kubectl::Kubectl,
    local::{Assets, ControlPlane, LocalWebhook, endpoint_slice},
    paths,
};
use testkit::process::{Process, run, wait_for};

/// What the webhook logs when it has read a changed policy file.
pub const RELOADED: &str = "reloaded the policy file";

/// The label every test namespace carries, so leftovers are easy to find.
pub const NAMESPACE_LABEL: &str = "validator-webhook-e2e";

/// The webhook's namespace and Deployment, as `deploy/` names them.
pub use testkit::names::NAMESPACE as WEBHOOK_NAMESPACE;
pub const WEBHOOK_DEPLOYMENT: &str = "deployment/validator-webhook";

/// Waits, up to `timeout` (`300s`), until the webhook's Deployment has rolled out.
pub fn webhook_rolled_out(kubectl: &Kubectl, timeout: &str) -> Result<()> {
    kubectl.ok(&[
        "rollout",
        "status",
        WEBHOOK_DEPLOYMENT,
        "-n",
        WEBHOOK_NAMESPACE,
        &format!("--timeout={timeout}"),
    ])?;
    Ok(())
}

/// Which backend runs the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Local,
    Kind,
}

impl BackendKind {
    /// The backend `E2E_BACKEND` names (`local` when unset).
    pub fn from_env() -> Result<Self> {
        match std::env::var("E2E_BACKEND").as_deref() {
            Err(_) | Ok("local") => Ok(Self::Local),
            Ok("kind") => Ok(Self::Kind),
            Ok(other) => bail!("E2E_BACKEND={other:?}: the backends are `local` and `kind`"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Kind => "kind",
        }
    }
}

enum Backend {
    Local(Box<Local>),
    Kind(Box<Kind>),
}

struct Local {
    // Field order is drop order: the webhook and its test host first, then the API server.
    webhook: LocalWebhook,
    plane: ControlPlane,
}

/// The kind cluster and what the cases compare against.
pub struct Kind {
    pub cluster: KindCluster,
    /// The webhook image as the local engine has it.
    pub webhook_image: LocalImage,
    /// The egress guard's counter before the cluster was created.
    guard_before: Option<u64>,
}

pub struct Cluster {
    pub client: Client,
    pub kubectl: Kubectl,
    backend: Backend,
    work: PathBuf,
    namespaces: AtomicU32,
    /// Second instances started by local rolling restarts, to name their logs.
    surges: AtomicU32,
    /// Lines for the summary printed when the run ends.
    summary: Mutex<Vec<String>>,
}

impl Cluster {
    /// Brings up the backend named by `E2E_BACKEND`, with the webhook answering.
    pub async fn start() -> Result<Self> {
        testkit::process::clean_up_on_interrupt();
        let backend = BackendKind::from_env()?;
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let work = paths::target().join("e2e").join(format!(
            "{}-{stamp}-{}",
            backend.name(),
            std::process::id()
        ));
        std::fs::create_dir_all(&work)?;
        let started = async {
            let cluster = match backend {
                BackendKind::Local => Self::start_local(work.clone()).await?,
                BackendKind::Kind => Self::start_kind(work.clone()).await?,
            };
            cluster.wait_until_ready().await?;
            anyhow::Ok(cluster)
        };
        started
            .await
            .with_context(|| format!("logs are in {}", work.display()))
    }

    /// The local control plane, with the webhook installed from `deploy/` (certs overlay).
    pub async fn start_local(work: PathBuf) -> Result<Self> {
        let assets = Assets::locate()?;
        let binary = paths::webhook_binary()?;
        eprintln!("==> starting etcd and kube-apiserver in {}", work.display());
        let plane = ControlPlane::start(&work, &assets).await?;
        let kubectl = Kubectl::new(assets.kubectl.clone(), plane.kubeconfig.clone());
        eprintln!("==> installing deploy/overlays/certs");
        let manifests = Manifests::prepare(&work, &binary)?;
        manifests.apply(&kubectl, "certs")?;
        let container = Container::of_deployment(&manifests.render(&kubectl, "certs")?)?;
        let webhook = LocalWebhook::new(
            binary,
            &manifests,
            container,
            work.join("logs"),
            work.join("configmaps"),
        )?;
        let client = client(&plane.kubeconfig).await?;
        for name in webhook.config_maps() {
            project_config_map(&client, name, &webhook.config_map_dir(name)).await?;
        }
        eprintln!(
            "==> starting the webhook in network namespace {}",
            webhook.netns()
        );
        webhook.start()?;
        let cluster = Self {
            client,
            kubectl,
            backend: Backend::Local(Box::new(Local { webhook, plane })),
            work,
            namespaces: AtomicU32::new(0),
            surges: AtomicU32::new(0),
            summary: Mutex::default(),
        };
        cluster.publish_endpoint()?;
        Ok(cluster)
    }

    /// A kind cluster created for this run, with the webhook image `just image` built and the
    /// test image loaded, and the webhook installed from `deploy/overlays/kind` and rolled out.
    /// The pinned kubectl of the local control plane drives it, whatever kubectl the machine has.
    async fn start_kind(work: PathBuf) -> Result<Self> {
        let assets = Assets::locate()?;
        let binary = paths::webhook_binary()?;
        let webhook_image = LocalImage::inspect(&kind::webhook_image())
            .context("build the webhook image first: `just image`")?;
        eprintln!(
            "==> building the test image {} (a static pause, FROM nothing)",
            kind::TEST_IMAGE
        );
        kind::build_test_image(&work)?;
        let guard_before = guard_count().ok();
        let cluster = KindCluster::create()?;
        let kubectl = Kubectl::new(assets.kubectl.clone(), cluster.kubeconfig.clone());
        cluster.after_create(&kubectl)?;
        cluster.load(&[&kind::webhook_image(), kind::TEST_IMAGE])?;
        eprintln!("==> installing deploy/overlays/kind");
        let manifests = Manifests::prepare(&work, &binary)?;
        manifests.apply(&kubectl, "kind")?;
        let started = Instant::now();
        webhook_rolled_out(&kubectl, "300s")?;
        let rollout = started.elapsed();
        eprintln!(
            "==> the webhook rolled out in {:.1} s",
            rollout.as_secs_f64()
        );
        let client = client(&cluster.kubeconfig).await?;
        let summary = vec![
            format!(
                "image {}: {:.2} MB ({} bytes)",
                &kind::webhook_image(),
                webhook_image.size as f64 / 1e6,
                webhook_image.size
            ),
            format!(
                "kind cluster created in {:.1} s; webhook rolled out in {:.1} s",
                cluster.created_in.as_secs_f64(),
                rollout.as_secs_f64()
            ),
        ];
        Ok(Self {
            client,
            kubectl,
            backend: Backend::Kind(Box::new(Kind {
                cluster,
                webhook_image,
                guard_before,
            })),
            work,
            namespaces: AtomicU32::new(0),
            surges: AtomicU32::new(0),
            summary: Mutex::new(summary),
        })
    }

    /// The kind cluster, on the kind backend.
    pub fn kind(&self) -> Option<&Kind> {
        match &self.backend {
            Backend::Kind(kind) => Some(kind),
            Backend::Local(_) => None,
        }
    }

    /// Adds a line to the summary printed when the run ends.
    pub fn note(&self, line: String) {
        self.summary
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    /// The kubeconfig of the cluster.
    pub fn kubeconfig(&self) -> &Path {
        self.kubectl.kubeconfig()
    }

    /// Starts `program` with `args` in the local webhook's test host, beside the webhook, so the
    /// API server reaches it as it reaches the webhook, at the returned address (on another
    /// port). Its log is `<name>.log` beside the others; it stops when the process is dropped.
    pub fn spawn_beside_webhook(
        &self,
        name: &str,
        program: &Path,
        args: &[&std::ffi::OsStr],
    ) -> Result<(Process, std::net::Ipv4Addr)> {
        let Backend::Local(local) = &self.backend else {
            bail!("only the local backend runs servers beside the webhook");
        };
        let mut command = local.webhook.command_beside(program);
        command.args(args);
        let process = Process::spawn(name, command, &self.work.join("logs"))?;
        Ok((process, local.webhook.address().0))
    }

    /// Where the local webhook serves its metrics (none on kind, where it runs in pods).
    pub fn webhook_metrics_address(&self) -> Option<SocketAddrV4> {
        match &self.backend {
            Backend::Local(local) => local.webhook.metrics_address(),
            Backend::Kind(_) => None,
        }
    }

    /// The policy file the webhook reads, as its ConfigMap holds it now.
    pub async fn policy_file(&self) -> Result<String> {
        let api = Api::<ConfigMap>::namespaced(self.client.clone(), WEBHOOK_NAMESPACE);
        let config_map = api.get(POLICY_CONFIG_MAP).await?;
        config_map
            .data
            .and_then(|mut data| data.remove(POLICY_KEY))
            .context("the policy ConfigMap has no policy.yaml")
    }

    /// Replaces the policy file in its ConfigMap and has it reach the running webhook as the
    /// kubelet does: on the local backend by projecting it into the mounted directory, and
    /// returning without waiting for the one webhook process to reload; on kind by nudging the
    /// kubelet (a pod update makes it sync the pod's volumes at once rather than at its next
    /// periodic sync), and returning once every replica has logged the reload, since the API
    /// server may send the next review to any of them.
    pub async fn set_policy_file(&self, text: &str) -> Result<()> {
        // On kind, each replica's reloads so far, when the text changes (unchanged, none logs).
        let reloads = match &self.backend {
            Backend::Kind(_) if self.policy_file().await? != text => {
                Some(self.pods_logged(WEBHOOK_NAMESPACE, &[RELOADED]).await?)
            }
            _ => None,
        };
        let api = Api::<ConfigMap>::namespaced(self.client.clone(), WEBHOOK_NAMESPACE);
        let patch = serde_json::json!({ "data": { POLICY_KEY: text } });
        api.patch(
            POLICY_CONFIG_MAP,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
        match &self.backend {
            Backend::Local(local) => {
                let dir = local.webhook.config_map_dir(POLICY_CONFIG_MAP);
                project_config_map(&self.client, POLICY_CONFIG_MAP, &dir).await?;
            }
            Backend::Kind(_) => {
                let nudge = format!(
                    "e2e.validator-webhook/policy-synced={}",
                    time::OffsetDateTime::now_utc().unix_timestamp_nanos()
                );
                self.kubectl.ok(&[
                    "annotate",
                    "pods",
                    "-n",
                    WEBHOOK_NAMESPACE,
                    "-l",
                    "app.kubernetes.io/name=validator-webhook",
                    "--overwrite",
                    &nudge,
                ])?;
                if let Some(before) = &reloads {
                    self.wait_for_every_pod_to_log(WEBHOOK_NAMESPACE, &[RELOADED], before)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// How many lines holding every one of `needles` each pod in `namespace` has logged.
    pub async fn pods_logged(
        &self,
        namespace: &str,
        needles: &[&str],
    ) -> Result<BTreeMap<String, usize>> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let mut counts = BTreeMap::new();
        for pod in pods.list(&ListParams::default()).await?.items {
            let name = pod.metadata.name.unwrap_or_default();
            let log = pods.logs(&name, &LogParams::default()).await?;
            let lines = log.lines();
            let count = lines
                .filter(|line| needles.iter().all(|needle| line.contains(needle)))
                .count();
            counts.insert(name, count);
        }
        Ok(counts)
    }

    /// Waits until every pod in `namespace` has logged more lines holding `needles` than it
    /// had in `before` (a pod missing from `before` had none).
    pub async fn wait_for_every_pod_to_log(
        &self,
        namespace: &str,
        needles: &[&str],
        before: &BTreeMap<String, usize>,
    ) -> Result<()> {
        wait_for(
            &format!("every pod in {namespace} to log {needles:?}"),
            Duration::from_secs(180),
            || async {
                let now = self.pods_logged(namespace, needles).await?;
                ensure!(!now.is_empty(), "no pods in {namespace}");
                let behind: Vec<&String> = (now.iter())
                    .filter(|(pod, count)| **count <= before.get(*pod).copied().unwrap_or(0))
                    .map(|(pod, _)| pod)
                    .collect();
                ensure!(behind.is_empty(), "not yet: {behind:?}");
                Ok(())
            },
        )
        .await
    }

    /// Which webhook processes serve: the same answer before and after a change means no
    /// restart happened (the local process's start count; the pods' uids and restart counts).
    pub fn webhook_instances(&self) -> Result<String> {
        match &self.backend {
            Backend::Local(local) => Ok(format!("{} starts", local.webhook.starts())),
            Backend::Kind(_) => self.kubectl.ok(&[
                "get",
                "pods",
                "-n",
                WEBHOOK_NAMESPACE,
                "-l",
                "app.kubernetes.io/name=validator-webhook",
                "-o",
                "jsonpath={range .items[*]}{.metadata.uid} {.status.containerStatuses[0].restartCount}{'\\n'}{end}",
            ]),
        }
    }

    /// The API server's audit log, as a file of this machine (`e2e/audit-policy.yaml` says
    /// what it records).
    pub fn audit_log(&self) -> &Path {
        match &self.backend {
            Backend::Local(local) => &local.plane.audit_log,
            Backend::Kind(kind) => &kind.cluster.audit_log,
        }
    }

    /// A fresh, labelled namespace for one case.
    pub async fn namespace(&self, case: &str) -> Result<String> {
        let n = self.namespaces.fetch_add(1, Ordering::Relaxed);
        let mut name = format!("e2e-{n}-{}", case.replace('_', "-"));
        name.truncate(63);
        let name = name.trim_end_matches('-').to_owned();
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(NAMESPACE_LABEL.to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        let accounts = Api::<ServiceAccount>::namespaced(self.client.clone(), &name);
        if self.has_controllers() {
            // Pods need the account the service-account controller creates.
            wait_for(
                "the namespace's default service account",
                Duration::from_secs(30),
                || async { Ok(accounts.get("default").await?) },
            )
            .await?;
        } else {
            let account = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some("default".to_owned()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            };
            accounts.create(&PostParams::default(), &account).await?;
        }
        Ok(name)
    }

    /// Whether a controller-manager runs: always on kind; on the local backend when the
    /// assets have kube-controller-manager.
    pub fn has_controllers(&self) -> bool {
        match &self.backend {
            Backend::Local(local) => local.plane.has_controllers(),
            Backend::Kind(_) => true,
        }
    }

    /// Deletes a case's namespace without waiting for the namespace controller to finish.
    pub async fn delete_namespace(&self, name: &str) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(name, &DeleteParams::default())
            .await;
    }

    /// Takes every webhook replica away, as a failed rollout or a deleted Deployment would.
    pub async fn stop_webhook(&self) -> Result<()> {
        match &self.backend {
            Backend::Local(local) => {
                local.webhook.stop();
                self.kubectl.ok(&[
                    "delete",
                    "endpointslice",
                    "-n",
                    WEBHOOK_NAMESPACE,
                    "validator-webhook-service-e2e",
                ])?;
            }
            Backend::Kind(_) => {
                self.kubectl.ok(&[
                    "scale",
                    WEBHOOK_DEPLOYMENT,
                    "-n",
                    WEBHOOK_NAMESPACE,
                    "--replicas=0",
                ])?;
                self.kubectl.ok(&[
                    "wait",
                    "--for=delete",
                    "pod",
                    "-l",
                    "app.kubernetes.io/name=validator-webhook",
                    "-n",
                    WEBHOOK_NAMESPACE,
                    "--timeout=120s",
                ])?;
            }
        }
        Ok(())
    }

    /// Brings the webhook back and waits until the API server reaches it.
    pub async fn start_webhook(&self) -> Result<()> {
        match &self.backend {
            Backend::Local(local) => {
                local.webhook.start()?;
                self.publish_endpoint()?;
            }
            Backend::Kind(_) => {
                self.kubectl.ok(&[
                    "scale",
                    WEBHOOK_DEPLOYMENT,
                    "-n",
                    WEBHOOK_NAMESPACE,
                    "--replicas=2",
                ])?;
                webhook_rolled_out(&self.kubectl, "180s")?;
            }
        }
        self.wait_until_ready().await
    }

    /// Where `certs` wrote the webhook's certificate: running `certs` there again renews it
    /// (on the local backend the webhook reads its files from there).
    pub fn certs_dir(&self) -> PathBuf {
        self.work.join("deploy/overlays/certs/generated")
    }

    /// Applies the overlay the webhook was installed from again, as an operator does after
    /// `certs` changed the certificate: the Secret and the webhook configuration's caBundle.
    pub fn reapply(&self) -> Result<()> {
        let overlay = match &self.backend {
            Backend::Local(_) => "certs",
            Backend::Kind(_) => "kind",
        };
        let dir = self.work.join("deploy/overlays").join(overlay);
        self.kubectl.ok(&["apply", "-k", &dir.to_string_lossy()])?;
        Ok(())
    }

    /// The `/metrics` text of every webhook replica: the local process's, or each pod's
    /// through the API server's pod proxy on kind.
    pub async fn webhook_metrics(&self) -> Result<Vec<String>> {
        match &self.backend {
            Backend::Local(local) => {
                let address = local
                    .webhook
                    .metrics_address()
                    .context("the Deployment sets no VALIDATOR_WEBHOOK_METRICS_LISTEN")?;
                Ok(vec![http_get(address, "/metrics").await?])
            }
            Backend::Kind(_) => {
                let pods = self.kubectl.ok(&[
                    "get",
                    "pods",
                    "-n",
                    WEBHOOK_NAMESPACE,
                    "-l",
                    "app.kubernetes.io/name=validator-webhook",
                    "--field-selector=status.phase=Running",
                    "-o",
                    "name",
                ])?;
                pods.lines()
                    .filter_map(|line| line.strip_prefix("pod/"))
                    .map(|pod| {
                        self.kubectl.ok(&[
                            "get",
                            "--raw",
                            &format!(
                                "/api/v1/namespaces/{WEBHOOK_NAMESPACE}/pods/{pod}:9090/proxy/metrics"
                            ),
                        ])
                    })
                    .collect()
            }
        }
    }

    /// Runs `validator-webhook certs` with `args` where the webhook's certificate is, and
    /// applies the result, as an operator renewing or rotating it does.
    pub fn certs(&self, args: &[&str]) -> Result<()> {
        let mut command = Command::new(paths::webhook_binary()?);
        command
            .arg("certs")
            .arg("--out-dir")
            .arg(self.certs_dir())
            .args(args);
        run(&mut command)?;
        self.reapply()
    }

    /// The process id of the local webhook (none on kind).
    pub fn webhook_pid(&self) -> Option<u32> {
        match &self.backend {
            Backend::Local(local) => local.webhook.pid(),
            Backend::Kind(_) => None,
        }
    }

    /// Restarts the webhook as a rolling update does, without losing a request: on kind by
    /// `kubectl rollout restart`; locally, a second instance joins the Service, the first
    /// leaves it before it is stopped and started again, and then the second leaves and stops.
    pub async fn rolling_restart(&self) -> Result<()> {
        // Long enough for the API server to see an EndpointSlice change.
        const PROPAGATION: Duration = Duration::from_secs(2);
        let local = match &self.backend {
            Backend::Kind(_) => {
                self.kubectl.ok(&[
                    "rollout",
                    "restart",
                    WEBHOOK_DEPLOYMENT,
                    "-n",
                    WEBHOOK_NAMESPACE,
                ])?;
                webhook_rolled_out(&self.kubectl, "180s")?;
                return Ok(());
            }
            Backend::Local(local) => local,
        };
        let surges = self.surges.fetch_add(1, Ordering::Relaxed) + 1;
        let mut surge = local
            .webhook
            .start_surge(&format!("webhook-surge-{surges}"))?;
        let (ip, port) = local.webhook.surge_address();
        wait_listening(SocketAddrV4::new(ip, port)).await?;
        surge.ensure_running()?;
        let slice = "validator-webhook-service-e2e-surge";
        self.apply_json(&crate::local::named_endpoint_slice(slice, ip, port))?;
        tokio::time::sleep(PROPAGATION).await;
        let primary = "validator-webhook-service-e2e";
        self.kubectl
            .ok(&["delete", "endpointslice", "-n", WEBHOOK_NAMESPACE, primary])?;
        tokio::time::sleep(PROPAGATION).await;
        local.webhook.stop();
        local.webhook.start()?;
        let (ip, port) = local.webhook.address();
        wait_listening(SocketAddrV4::new(ip, port)).await?;
        local.webhook.ensure_running()?;
        self.publish_endpoint()?;
        tokio::time::sleep(PROPAGATION).await;
        self.kubectl
            .ok(&["delete", "endpointslice", "-n", WEBHOOK_NAMESPACE, slice])?;
        tokio::time::sleep(PROPAGATION).await;
        tokio::task::spawn_blocking(move || surge.stop(Duration::from_secs(20))).await?;
        Ok(())
    }

    fn apply_json(&self, object: &serde_json::Value) -> Result<()> {
        let name = object["metadata"]["name"].as_str().unwrap_or("object");
        let file = self.work.join(format!("{name}.json"));
        std::fs::write(&file, object.to_string())?;
        self.kubectl.ok(&["apply", "-f", &file.to_string_lossy()])?;
        Ok(())
    }

    /// Writes the EndpointSlice that routes the Service to the local webhook.
    fn publish_endpoint(&self) -> Result<()> {
        if let Backend::Local(local) = &self.backend {
            let (ip, port) = local.webhook.address();
            let file = self.work.join("endpointslice.json");
            std::fs::write(&file, endpoint_slice(ip, port).to_string())?;
            self.kubectl.ok(&["apply", "-f", &file.to_string_lossy()])?;
        }
        Ok(())
    }

    /// Waits until a dry-run create of a bad Deployment is denied by the webhook, which proves
    /// the whole path: configuration, Service, endpoint, TLS and the policy.
    pub async fn wait_until_ready(&self) -> Result<()> {
        let bad: Deployment = crate::manifest("bad-deployment.yaml")?;
        let api = Api::<Deployment>::namespaced(self.client.clone(), "default");
        let params = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        wait_for(
            "the webhook answering through the API server",
            Duration::from_secs(60),
            || async {
                if let Backend::Local(local) = &self.backend {
                    local.webhook.ensure_running()?;
                }
                match api.create(&params, &bad).await {
                    Err(kube::Error::Api(status))
                        if status.code == 403 && status.message.contains("denied the request") =>
                    {
                        Ok(())
                    }
                    Err(kube::Error::Api(status)) => bail!("{}", status.message),
                    Err(error) => Err(anyhow::Error::new(error)),
                    Ok(_) => bail!("a bad Deployment was admitted"),
                }
            },
        )
        .await
    }

    /// Stops everything; keeps the logs (and says where) when a case failed; prints the summary.
    pub fn finish(self, failed: bool) {
        let work = self.work.clone();
        let mut summary =
            std::mem::take(&mut *self.summary.lock().unwrap_or_else(|p| p.into_inner()));
        let kind = self.kind().map(|kind| kind.guard_before);
        drop(self);
        if let Some(before) = kind {
            summary.push(egress_guard(before));
        }
        if !summary.is_empty() {
            eprintln!("\n==> summary\n{}", summary.join("\n"));
        }
        if failed {
            eprintln!(
                "e2e: logs, kubeconfig and certificates kept in {}",
                work.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&work);
        }
    }
}

/// The egress guard's packet counter, as the engine setup script reports it (0 is the goal).
fn egress_guard(before: Option<u64>) -> String {
    match (guard_count(), before) {
        (Ok(now), Some(before)) => format!(
            "egress guard: {now} packets dropped since it was installed, {} during this run",
            now.saturating_sub(before)
        ),
        (Ok(now), None) => format!("egress guard: {now} packets dropped since it was installed"),
        (Err(error), _) => format!("egress guard: cannot read its counter: {error:#}"),
    }
}

/// The egress guard's packet counter, from the engine setup script.
/// The ConfigMap the webhook's policy file comes from, and its key.
pub const POLICY_CONFIG_MAP: &str = "validator-webhook-policy";
pub const POLICY_KEY: &str = "policy.yaml";

/// Writes the ConfigMap's keys into `dir` the way the kubelet swaps them: each file replaced
/// whole by a rename, so the webhook never reads half a file.
async fn project_config_map(client: &Client, name: &str, dir: &Path) -> Result<()> {
    let api = Api::<ConfigMap>::namespaced(client.clone(), WEBHOOK_NAMESPACE);
    let config_map = api
        .get(name)
        .await
        .with_context(|| format!("the ConfigMap {name} the Deployment mounts"))?;
    std::fs::create_dir_all(dir)?;
    for (key, value) in config_map.data.unwrap_or_default() {
        let staged = dir.join(format!("..{key}.tmp"));
        std::fs::write(&staged, value)?;
        std::fs::rename(&staged, dir.join(&key))?;
    }
    Ok(())
}

fn guard_count() -> Result<u64> {
    let script = paths::repository().join("e2e/kind/engine.sh");
    let count = run(Command::new(&script).arg("--guard-count"))?;
    count
        .trim()
        .parse()
        .with_context(|| format!("{} --guard-count printed {count:?}", script.display()))
}

/// Waits until something accepts TCP connections at `address`.
async fn wait_listening(address: SocketAddrV4) -> Result<()> {
    wait_for(
        &format!("a listener at {address}"),
        Duration::from_secs(30),
        || async { Ok(tokio::net::TcpStream::connect(address).await.map(drop)?) },
    )
    .await
}

/// A plain HTTP/1.0 GET, enough for the webhook's metrics listener.
async fn http_get(address: SocketAddrV4, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .with_context(|| format!("GET http://{address}{path} timed out"))??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("GET http://{address}{path}: no HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!(
            "GET http://{address}{path}: {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_owned())
}

async fn client(kubeconfig: &Path) -> Result<Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}
