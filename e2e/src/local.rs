//! The local backend: etcd, kube-apiserver and kube-controller-manager as child processes on
//! loopback, and the webhook binary in a test host, reached by the API server through the
//! shipped Service exactly as in a cluster: `--enable-aggregator-routing` resolves the Service
//! to its EndpointSlice, which points at the test host (no kube-proxy, no kubelet). The
//! controller-manager gives namespaces their `default` service account and turns Deployments
//! into ReplicaSets and Pods, each of which the webhook reviews; the Pods stay Pending.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
    time::Duration,
};

use anyhow::{Context, Result, ensure};
use base64::{Engine, engine::general_purpose::STANDARD};

use crate::{
    install::{Container, Manifests},
    kubectl::Kubectl,
    netns::TestHost,
    paths,
    pki::Pki,
};
use testkit::process::{Process, run};

/// The ClusterIP range. It is on loopback so that nothing dialled by mistake leaves the
/// machine; with aggregator routing no ClusterIP is dialled at all.
const SERVICE_RANGE: &str = "127.100.0.0/24";
const KUBERNETES_SERVICE_IP: &str = "127.100.0.1";

/// The binaries: `$KUBEBUILDER_ASSETS` (as setup-envtest lays them out), or the pinned build
/// that `just control-plane` makes.
pub struct Assets {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kubectl: PathBuf,
    /// Absent from setup-envtest's assets; the pinned build has it.
    pub kube_controller_manager: Option<PathBuf>,
}

impl Assets {
    pub fn locate() -> Result<Self> {
        let dir = match std::env::var_os("KUBEBUILDER_ASSETS") {
            Some(dir) => PathBuf::from(dir),
            None => {
                let script = paths::repository().join("e2e/control-plane/build.sh");
                PathBuf::from(run(Command::new(&script).arg("--print-dir"))?.trim())
            }
        };
        let controller_manager = dir.join("kube-controller-manager");
        let assets = Self {
            etcd: dir.join("etcd"),
            kube_apiserver: dir.join("kube-apiserver"),
            kubectl: dir.join("kubectl"),
            kube_controller_manager: controller_manager.is_file().then_some(controller_manager),
        };
        for binary in [&assets.etcd, &assets.kube_apiserver, &assets.kubectl] {
            ensure!(
                binary.is_file(),
                "{} is missing: build the control plane with `just control-plane`, or point \
                 KUBEBUILDER_ASSETS at a directory holding etcd, kube-apiserver and kubectl",
                binary.display()
            );
        }
        Ok(assets)
    }
}

/// etcd, kube-apiserver and (when the assets have it) kube-controller-manager, running.
pub struct ControlPlane {
    pub kubeconfig: PathBuf,
    /// The API server's audit log: writes of Deployments, with admission annotations.
    pub audit_log: PathBuf,
    pub kubectl: PathBuf,
    // Dropped in reverse order of start: the controller-manager, the API server, etcd.
    controller_manager: Option<Process>,
    apiserver: Process,
    etcd: Process,
}

impl ControlPlane {
    pub async fn start(dir: &Path, assets: &Assets) -> Result<Self> {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let pki = Pki::generate(&dir.join("pki"), KUBERNETES_SERVICE_IP)?;

        let (client, peer, secure) = (
            testkit::free_port()?,
            testkit::free_port()?,
            testkit::free_port()?,
        );
        let etcd_data = dir.join("etcd");
        std::fs::create_dir_all(&etcd_data)?;
        set_mode(&etcd_data, 0o700)?;
        let mut etcd = Command::new(&assets.etcd);
        etcd.arg("--name=e2e")
            .arg(format!("--data-dir={}", etcd_data.display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=e2e=http://127.0.0.1:{peer}"))
            .args([
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ]);
        let etcd = Process::spawn("etcd", etcd, &logs)?;

        let mut apiserver = Command::new(&assets.kube_apiserver);
        apiserver
            .arg(format!("--etcd-servers=http://127.0.0.1:{client}"))
            .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
            .arg(format!("--secure-port={secure}"))
            .arg(format!("--cert-dir={}", dir.join("apiserver").display()))
            .arg(format!("--tls-cert-file={}", pki.serving_cert.display()))
            .arg(format!(
                "--tls-private-key-file={}",
                pki.serving_key.display()
            ))
            .arg(format!("--client-ca-file={}", pki.ca_cert.display()))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!(
                "--service-account-key-file={}",
                pki.service_account_pub.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                pki.service_account_key.display()
            ))
            .arg(format!("--service-cluster-ip-range={SERVICE_RANGE}"))
            .args([
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                "--profiling=false",
            ])
            // Admission webhooks' audit annotations land here (the audit case reads them).
            .arg(format!(
                "--audit-policy-file={}",
                paths::audit_policy().display()
            ))
            .arg(format!(
                "--audit-log-path={}",
                dir.join("audit.log").display()
            ))
            // Resolve webhook Services through their EndpointSlices, as for aggregated APIs.
            .arg("--enable-aggregator-routing=true")
            // The `kubernetes` Service would get a loopback endpoint, which validation refuses.
            .arg("--endpoint-reconciler-type=none");
        for proxy in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            apiserver.env_remove(proxy);
        }
        let apiserver = Process::spawn("kube-apiserver", apiserver, &logs)?;

        let kubeconfig = dir.join("kubeconfig");
        write_kubeconfig(&kubeconfig, &format!("https://127.0.0.1:{secure}"), &pki)?;
        let mut plane = Self {
            kubeconfig,
            audit_log: dir.join("audit.log"),
            kubectl: assets.kubectl.clone(),
            controller_manager: None,
            apiserver,
            etcd,
        };
        plane.wait_ready().await?;
        match &assets.kube_controller_manager {
            Some(binary) => {
                plane.controller_manager = Some(start_controller_manager(
                    binary,
                    dir,
                    &plane.kubeconfig,
                    &pki,
                )?);
            }
            None => eprintln!(
                "==> KUBEBUILDER_ASSETS has no kube-controller-manager, so namespaces get no \
                 `default` service account and Deployments no ReplicaSets or Pods"
            ),
        }
        Ok(plane)
    }

    /// Whether controllers run (namespaces get service accounts, Deployments get pods).
    pub fn has_controllers(&self) -> bool {
        self.controller_manager.is_some()
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let kubectl = Kubectl::new(self.kubectl.clone(), self.kubeconfig.clone());
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            self.etcd.ensure_running()?;
            self.apiserver.ensure_running()?;
            if kubectl
                .run(&["get", "--raw", "/readyz"])
                .is_ok_and(|o| o.success)
            {
                return Ok(());
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "kube-apiserver was not ready after 90 s{}",
                self.apiserver.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// kube-controller-manager with only the controllers a workload's life through the webhook
/// needs, talking to the API server as the administrator.
fn start_controller_manager(
    binary: &Path,
    dir: &Path,
    kubeconfig: &Path,
    pki: &Pki,
) -> Result<Process> {
    let mut command = Command::new(binary);
    command
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!(
            "--authentication-kubeconfig={}",
            kubeconfig.display()
        ))
        .arg(format!(
            "--authorization-kubeconfig={}",
            kubeconfig.display()
        ))
        .args(["--bind-address=127.0.0.1", "--leader-elect=false"])
        .arg(format!("--secure-port={}", testkit::free_port()?))
        .arg(format!(
            "--cert-dir={}",
            dir.join("controller-manager").display()
        ))
        .arg(format!(
            "--service-account-private-key-file={}",
            pki.service_account_key.display()
        ))
        .arg(format!("--root-ca-file={}", pki.ca_cert.display()))
        .arg(format!("--controllers={CONTROLLERS}"));
    Process::spawn("kube-controller-manager", command, &dir.join("logs"))
}

/// Service accounts and their tokens' CA, Deployments to ReplicaSets to Pods, namespace
/// deletion and the garbage collector it relies on.
const CONTROLLERS: &str = "serviceaccount-controller,serviceaccount-token-controller,\
root-ca-certificate-publisher-controller,deployment-controller,replicaset-controller,\
namespace-controller,garbage-collector-controller";

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn write_kubeconfig(path: &Path, server: &str, pki: &Pki) -> Result<()> {
    let data = |file: &Path| -> Result<String> {
        Ok(STANDARD.encode(
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?,
        ))
    };
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "validator-webhook-e2e", "cluster": {
            "server": server,
            "certificate-authority-data": data(&pki.ca_cert)?,
        }}],
        "users": [{ "name": "admin", "user": {
            "client-certificate-data": data(&pki.admin_cert)?,
            "client-key-data": data(&pki.admin_key)?,
        }}],
        "contexts": [{ "name": "validator-webhook-e2e", "context": {
            "cluster": "validator-webhook-e2e", "user": "admin",
        }}],
        "current-context": "validator-webhook-e2e",
    });
    std::fs::write(path, serde_json::to_string_pretty(&kubeconfig)?)?;
    set_mode(path, 0o600)
}

/// The webhook as the shipped Deployment would run it, but as a process in a test host.
pub struct LocalWebhook {
    binary: PathBuf,
    container: Container,
    certs: PathBuf,
    /// Where the Deployment's ConfigMaps are projected, one directory each, as the kubelet
    /// would mount them.
    config_maps: PathBuf,
    host: TestHost,
    logs: PathBuf,
    process: Mutex<Option<Process>>,
    starts: Mutex<u32>,
}

impl LocalWebhook {
    pub fn new(
        binary: PathBuf,
        manifests: &Manifests,
        container: Container,
        logs: PathBuf,
        config_maps: PathBuf,
    ) -> Result<Self> {
        let host = TestHost::create(std::process::id())?;
        Ok(Self {
            binary,
            container,
            certs: manifests.certs.clone(),
            config_maps,
            host,
            logs,
            process: Mutex::new(None),
            starts: Mutex::new(0),
        })
    }

    pub fn address(&self) -> (Ipv4Addr, u16) {
        (self.host.ip, self.container.port)
    }

    /// The directory a mounted ConfigMap is projected into.
    pub fn config_map_dir(&self, name: &str) -> PathBuf {
        self.config_maps.join(name)
    }

    /// The ConfigMaps the Deployment mounts, by name.
    pub fn config_maps(&self) -> impl Iterator<Item = &str> {
        self.container
            .config_maps
            .iter()
            .map(|(_, name)| name.as_str())
    }

    /// Starts the binary with the Deployment's arguments and environment; the Secret's mount
    /// path is where `certs` wrote the files, and each ConfigMap's is its projection.
    pub fn start(&self) -> Result<()> {
        let command = self.command(&[]);
        let starts = {
            let mut starts = self.starts.lock().unwrap_or_else(|p| p.into_inner());
            *starts += 1;
            *starts
        };
        let name = if starts == 1 {
            "webhook".to_owned()
        } else {
            format!("webhook-{starts}")
        };
        let process = Process::spawn(&name, command, &self.logs)?;
        *self.process.lock().unwrap_or_else(|p| p.into_inner()) = Some(process);
        Ok(())
    }

    /// The binary as the Deployment runs it, with some variables of its environment changed.
    fn command(&self, overrides: &[(&str, String)]) -> std::process::Command {
        let mount = format!("{}/", self.certs.display());
        let env: Vec<(String, String)> = (self.container.env.iter())
            .map(|(name, value)| {
                if let Some((_, value)) = overrides.iter().find(|(n, _)| n == name) {
                    return (name.clone(), value.clone());
                }
                let mut value = value.replace("/tls/", &mount);
                for (path, config_map) in &self.container.config_maps {
                    let local = self.config_map_dir(config_map);
                    value = value.replace(&format!("{path}/"), &format!("{}/", local.display()));
                }
                (name.clone(), value)
            })
            .collect();
        let mut command = self.host.command(&self.binary, &env);
        command.args(&self.container.args);
        command
    }

    /// `program` as a process of the test host, with an empty environment: another server the
    /// API server can reach at the webhook's address.
    pub fn command_beside(&self, program: &Path) -> std::process::Command {
        self.host.command(program, &[])
    }

    /// A second instance beside the first, as a rolling update surges one: the same files, on
    /// the port after the webhook's and the port after the metrics port. Its address is
    /// [`Self::surge_address`]; it stops when the returned process is dropped.
    pub fn start_surge(&self, name: &str) -> Result<Process> {
        let metrics = self.metrics_address().map_or(0, |a| a.port());
        let command = self.command(&[
            (
                "VALIDATOR_WEBHOOK_LISTEN",
                format!("0.0.0.0:{}", self.container.port + 1),
            ),
            (
                "VALIDATOR_WEBHOOK_METRICS_LISTEN",
                format!("0.0.0.0:{}", metrics + 1),
            ),
        ]);
        Process::spawn(name, command, &self.logs)
    }

    pub fn surge_address(&self) -> (Ipv4Addr, u16) {
        (self.host.ip, self.container.port + 1)
    }

    /// The process id of the running instance.
    pub fn pid(&self) -> Option<u32> {
        (self.process.lock().unwrap_or_else(|p| p.into_inner()))
            .as_ref()
            .map(Process::pid)
    }

    /// SIGTERM, as the kubelet does, and wait for the exit.
    pub fn stop(&self) {
        if let Some(mut process) = self
            .process
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            process.stop(Duration::from_secs(20));
        }
    }

    pub fn ensure_running(&self) -> Result<()> {
        match self
            .process
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            Some(process) => process.ensure_running(),
            None => anyhow::bail!("the webhook is stopped"),
        }
    }

    /// Where the webhook serves `/metrics`: the test host's address and the port of the
    /// Deployment's `VALIDATOR_WEBHOOK_METRICS_LISTEN`.
    pub fn metrics_address(&self) -> Option<SocketAddrV4> {
        let (_, listen) = (self.container.env.iter())
            .find(|(name, _)| name == "VALIDATOR_WEBHOOK_METRICS_LISTEN")?;
        let port = listen.rsplit_once(':')?.1.parse().ok()?;
        Some(SocketAddrV4::new(self.host.ip, port))
    }

    /// How often the webhook was started.
    pub fn starts(&self) -> u32 {
        *self.starts.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn netns(&self) -> &str {
        self.host.name()
    }
}

impl Drop for LocalWebhook {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The EndpointSlice the endpoints controller would write for the Service if the Deployment's
/// pod ran at the test host's address.
pub fn endpoint_slice(ip: Ipv4Addr, port: u16) -> serde_json::Value {
    named_endpoint_slice("validator-webhook-service-e2e", ip, port)
}

/// An EndpointSlice of the webhook's Service, named `name`.
pub fn named_endpoint_slice(name: &str, ip: Ipv4Addr, port: u16) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": "validator-webhook",
            "labels": {
                "kubernetes.io/service-name": "validator-webhook-service",
                "endpointslice.kubernetes.io/managed-by": "e2e.validator-webhook",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{ "addresses": [ip.to_string()], "conditions": { "ready": true } }],
        "ports": [{ "name": "https", "port": port, "protocol": "TCP" }],
    })
}
