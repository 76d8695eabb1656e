//! The cluster the cases run against, whichever backend provides it: the local control plane
//! (`E2E_BACKEND=local`, the default) or a kind cluster with the webhook deployed from the kind
//! overlay (`E2E_BACKEND=kind`, set up by `just e2e`).

use std::{
    net::SocketAddrV4,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Namespace, ServiceAccount},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ObjectMeta, PostParams},
};

use crate::{
    install::{Container, Manifests},
    kubectl::Kubectl,
    local::{Assets, ControlPlane, LocalWebhook, endpoint_slice},
    paths,
    process::wait_for,
};

/// The label every test namespace carries, so leftovers are easy to find.
pub const NAMESPACE_LABEL: &str = "validator-webhook-e2e";

enum Backend {
    Local(Box<Local>),
    Kind,
}

struct Local {
    // Field order is drop order: the webhook and its test host first, then the API server.
    webhook: LocalWebhook,
    _plane: ControlPlane,
}

pub struct Cluster {
    pub client: Client,
    pub kubectl: Kubectl,
    backend: Backend,
    work: PathBuf,
    namespaces: AtomicU32,
}

impl Cluster {
    /// Brings up the backend named by `E2E_BACKEND`, with the webhook answering.
    pub async fn start() -> Result<Self> {
        crate::process::clean_up_on_interrupt();
        let backend = std::env::var("E2E_BACKEND").unwrap_or_else(|_| "local".to_owned());
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let work = paths::target()
            .join("e2e")
            .join(format!("{backend}-{stamp}-{}", std::process::id()));
        std::fs::create_dir_all(&work)?;
        let started = async {
            let cluster = match backend.as_str() {
                "local" => Self::start_local(work.clone()).await?,
                "kind" => Self::start_kind(work.clone()).await?,
                other => bail!("E2E_BACKEND={other:?}: the backends are `local` and `kind`"),
            };
            cluster.wait_until_ready().await?;
            Ok(cluster)
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
        let webhook = LocalWebhook::new(binary, &manifests, container, work.join("logs"))?;
        eprintln!(
            "==> starting the webhook in network namespace {}",
            webhook.netns()
        );
        webhook.start()?;
        let client = client(&plane.kubeconfig).await?;
        let cluster = Self {
            client,
            kubectl,
            backend: Backend::Local(Box::new(Local {
                webhook,
                _plane: plane,
            })),
            work,
            namespaces: AtomicU32::new(0),
        };
        cluster.publish_endpoint()?;
        Ok(cluster)
    }

    /// A kind cluster that `just e2e` created and deployed the webhook to; `KUBECONFIG` points
    /// at it and `kubectl` is on the PATH.
    async fn start_kind(work: PathBuf) -> Result<Self> {
        let kubeconfig = std::env::var_os("KUBECONFIG")
            .map(PathBuf::from)
            .context("E2E_BACKEND=kind needs KUBECONFIG pointing at the kind cluster")?;
        let kubectl = Kubectl::new(PathBuf::from("kubectl"), kubeconfig.clone());
        let client = client(&kubeconfig).await?;
        Ok(Self {
            client,
            kubectl,
            backend: Backend::Kind,
            work,
            namespaces: AtomicU32::new(0),
        })
    }

    /// The kubeconfig of the cluster.
    pub fn kubeconfig(&self) -> &Path {
        self.kubectl.kubeconfig()
    }

    /// Where the local webhook serves its metrics (none on kind, where it runs in pods).
    pub fn webhook_metrics_address(&self) -> Option<SocketAddrV4> {
        match &self.backend {
            Backend::Local(local) => local.webhook.metrics_address(),
            Backend::Kind => None,
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
        if let Backend::Local(_) = self.backend {
            // No controller-manager runs, so nothing creates the account pods default to.
            let account = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some("default".to_owned()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            };
            Api::<ServiceAccount>::namespaced(self.client.clone(), &name)
                .create(&PostParams::default(), &account)
                .await?;
        }
        Ok(name)
    }

    /// Deletes a case's namespace without waiting (the local backend has no namespace
    /// controller to finish the deletion).
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
                    "validator-webhook",
                    "validator-webhook-service-e2e",
                ])?;
            }
            Backend::Kind => {
                self.kubectl.ok(&[
                    "scale",
                    "deployment/validator-webhook",
                    "-n",
                    "validator-webhook",
                    "--replicas=0",
                ])?;
                self.kubectl.ok(&[
                    "wait",
                    "--for=delete",
                    "pod",
                    "-l",
                    "app.kubernetes.io/name=validator-webhook",
                    "-n",
                    "validator-webhook",
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
            Backend::Kind => {
                self.kubectl.ok(&[
                    "scale",
                    "deployment/validator-webhook",
                    "-n",
                    "validator-webhook",
                    "--replicas=2",
                ])?;
                self.kubectl.ok(&[
                    "rollout",
                    "status",
                    "deployment/validator-webhook",
                    "-n",
                    "validator-webhook",
                    "--timeout=180s",
                ])?;
            }
        }
        self.wait_until_ready().await
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

    /// Stops everything; keeps the logs (and says where) when a case failed.
    pub fn finish(self, failed: bool) {
        let work = self.work.clone();
        drop(self);
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

async fn client(kubeconfig: &Path) -> Result<Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}
