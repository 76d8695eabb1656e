//! The kind backend's cluster: created by the harness with the configuration in `e2e/kind/`,
//! given the webhook image `just image` built and a `msalinasc_` test image, and deleted when
//! dropped (on success, failure and panic; on Ctrl-C through the interrupt handler), unless
//! `KEEP_CLUSTER=1` asks to keep it.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use testkit::process::{forget_undo, run, run_showing_progress, undo_on_interrupt};

use crate::{kubectl::Kubectl, paths};

/// The cluster's name, `validator-webhook-e2e` unless `E2E_KIND_CLUSTER` names another (two
/// checkouts can then run the suite at once); `kind get kubeconfig --name …` works while it runs.
pub fn cluster_name() -> String {
    std::env::var("E2E_KIND_CLUSTER")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "validator-webhook-e2e".to_owned())
}

/// The image `deploy/overlays/kind` runs.
pub const DEPLOYED_IMAGE: &str = "validator-webhook:e2e";

/// The webhook image `just image` built: [`DEPLOYED_IMAGE`] unless `E2E_WEBHOOK_IMAGE` names
/// another tag (the same variable `just image` reads); the node then knows it by both names.
pub fn webhook_image() -> String {
    std::env::var("E2E_WEBHOOK_IMAGE")
        .ok()
        .filter(|tag| !tag.is_empty())
        .unwrap_or_else(|| DEPLOYED_IMAGE.to_owned())
}
/// A workload image the policy admits, loaded into the node so pods reach Running offline.
pub const TEST_IMAGE: &str = "msalinasc_pause:e2e";

/// A kind cluster this process created.
pub struct KindCluster {
    kind: PathBuf,
    name: String,
    pub kubeconfig: PathBuf,
    /// The API server's audit log, written in the node to a directory mounted from the host.
    pub audit_log: PathBuf,
    keep: bool,
    /// How long `kind create cluster` took.
    pub created_in: Duration,
}

impl KindCluster {
    /// Deletes a leftover cluster of the same name, then creates a fresh one from the node
    /// image kind-infra's script provides and applies what must follow the creation.
    pub fn create() -> Result<Self> {
        let kind = kind_binary()?;
        let name = cluster_name();
        let keep = keep_cluster();
        let dir = paths::target().join("kind");
        std::fs::create_dir_all(&dir)?;
        let kubeconfig = dir.join("kubeconfig");

        let leftover = run(Command::new(&kind).args(["get", "clusters"]))?;
        if leftover.lines().any(|line| line.trim() == name) {
            eprintln!("==> deleting the leftover kind cluster {name}");
            run(Command::new(&kind).args(["delete", "cluster", "--name", &name]))?;
        }

        eprintln!("==> the kind node image");
        let image = node_image()?;
        let audit = audit_directory(&dir)?;
        let config = config(&dir, &audit)?;
        eprintln!(
            "==> creating kind cluster {name} from {} with {image}",
            config.display()
        );
        let mut delete = Command::new(&kind);
        delete.args(["delete", "cluster", "--name", &name]);
        if !keep {
            undo_on_interrupt(&undo(&name), &delete);
        }
        let mut cluster = Self {
            kind,
            name,
            kubeconfig,
            audit_log: audit.join("audit.log"),
            keep,
            created_in: Duration::ZERO,
        };
        let started = Instant::now();
        run_showing_progress(
            Command::new(&cluster.kind)
                .args([
                    "create",
                    "cluster",
                    "--name",
                    &cluster.name,
                    "--image",
                    &image,
                ])
                .arg("--config")
                .arg(&config)
                .arg("--kubeconfig")
                .arg(&cluster.kubeconfig)
                .args(["--wait", "0s"]),
        )
        .context("kind create cluster failed")?;
        cluster.created_in = started.elapsed();
        eprintln!(
            "==> kind cluster {} created in {:.1} s",
            cluster.name,
            cluster.created_in.as_secs_f64()
        );
        Ok(cluster)
    }

    /// What the cluster needs after `kind create` before workloads run in it
    /// (`e2e/kind/post-create.sh`): kube-proxy's Service rules in place, so that no pod packet
    /// to a ClusterIP is routed out of the node, then CoreDNS serving `cluster.local` only, with
    /// no upstream (kubeadm's DNS addon is skipped in the config).
    pub fn after_create(&self, kubectl: &Kubectl) -> Result<()> {
        let script = paths::repository().join("e2e/kind/post-create.sh");
        let steps = run_showing_progress(
            kubectl
                .environment_of(&mut Command::new(&script))
                .arg(&self.name),
        )
        .context("e2e/kind/post-create.sh failed")?;
        eprint!("{steps}");
        Ok(())
    }

    /// The node container's name, as kind names it.
    pub fn node(&self) -> String {
        format!("{}-control-plane", self.name)
    }

    /// Loads images from the local Docker engine into the node's containerd.
    pub fn load(&self, images: &[&str]) -> Result<()> {
        eprintln!("==> loading {} into the node", images.join(" and "));
        run(Command::new(&self.kind)
            .args(["load", "docker-image", "--name", &self.name])
            .args(images))?;
        let built = webhook_image();
        if built != DEPLOYED_IMAGE && images.contains(&built.as_str()) {
            let qualified = |tag: &str| format!("docker.io/library/{tag}");
            self.node_exec(&[
                "ctr",
                "--namespace",
                "k8s.io",
                "images",
                "tag",
                "--force",
                &qualified(&built),
                &qualified(DEPLOYED_IMAGE),
            ])?;
        }
        Ok(())
    }

    /// A running container as the node sees it: its process's ids from `/proc`, and the ID of
    /// the image it runs as containerd resolves it.
    pub fn container(&self, container_id: &str) -> Result<NodeContainer> {
        let id = container_id
            .split_once("://")
            .map_or(container_id, |(_, id)| id);
        let inspect: Value = serde_json::from_str(&self.node_exec(&["crictl", "inspect", id])?)
            .context("crictl inspect printed something that is not JSON")?;
        let pid = inspect["info"]["pid"]
            .as_u64()
            .context("crictl inspect shows no pid")?;
        let image_ref = inspect["status"]["imageRef"]
            .as_str()
            .context("crictl inspect shows no imageRef")?;
        // The reference may be a digest kind's import made up; the image list knows them all.
        let images: Value =
            serde_json::from_str(&self.node_exec(&["crictl", "images", "-o", "json"])?)
                .context("crictl images printed something that is not JSON")?;
        let names = |image: &Value, field: &str| -> Vec<String> {
            (image[field].as_array().into_iter().flatten())
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        };
        let image_id = (images["images"].as_array().into_iter().flatten())
            .find(|image| {
                image["id"] == image_ref
                    || names(image, "repoDigests").iter().any(|d| d == image_ref)
                    || names(image, "repoTags").iter().any(|t| t == image_ref)
            })
            .and_then(|image| image["id"].as_str())
            .with_context(|| format!("the node has no image {image_ref}"))?
            .to_owned();
        let status = self.node_exec(&["cat", &format!("/proc/{pid}/status")])?;
        let ids = |field: &str| -> Result<u32> {
            let line = (status.lines())
                .find_map(|l| l.strip_prefix(field))
                .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
            // Real, effective, saved, filesystem: all must be the same for a plain process.
            let ids: Vec<&str> = line.split_whitespace().collect();
            ensure!(
                !ids.is_empty() && ids.iter().all(|i| *i == ids[0]),
                "{field}{line}"
            );
            Ok(ids[0].parse()?)
        };
        Ok(NodeContainer {
            uid: ids("Uid:")?,
            gid: ids("Gid:")?,
            image_id,
        })
    }

    /// Runs a command inside the node container.
    pub fn node_exec(&self, args: &[&str]) -> Result<String> {
        run(Command::new("docker")
            .arg("exec")
            .arg(self.node())
            .args(args))
    }
}

impl Drop for KindCluster {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "\n==> keeping kind cluster {name} (KEEP_CLUSTER=1); to use it:\n\n    \
                 export KUBECONFIG={}\n\n\
                 (`kind get kubeconfig --name {name}` prints it too); delete it with\n    \
                 kind delete cluster --name {name}",
                self.kubeconfig.display(),
                name = self.name
            );
            return;
        }
        eprintln!("==> deleting kind cluster {}", self.name);
        let deleted = Command::new(&self.kind)
            .args(["delete", "cluster", "--name", &self.name])
            .status();
        if !deleted.is_ok_and(|s| s.success()) {
            eprintln!(
                "warning: could not delete kind cluster {name}; `kind delete cluster --name {name}` does",
                name = self.name
            );
        }
        forget_undo(&undo(&self.name));
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

/// The placeholder in `e2e/kind/cluster.yaml` for the host directory of the audit log.
const AUDIT_DIR: &str = "E2E_AUDIT_DIR";

/// A fresh host directory for the API server's audit policy (`e2e/audit-policy.yaml`, the one
/// the local control plane reads) and log, mounted into the node.
fn audit_directory(dir: &Path) -> Result<PathBuf> {
    let audit = dir.join("audit");
    if audit.exists() {
        std::fs::remove_dir_all(&audit)
            .with_context(|| format!("cannot clear {}", audit.display()))?;
    }
    std::fs::create_dir_all(&audit)?;
    std::fs::copy(paths::audit_policy(), audit.join("policy.yaml"))
        .context("cannot copy e2e/audit-policy.yaml")?;
    Ok(audit)
}

/// `e2e/kind/cluster.yaml` with the audit directory's host path in place, written beside it in
/// `dir`.
fn config(dir: &Path, audit: &Path) -> Result<PathBuf> {
    let template = paths::repository().join("e2e/kind/cluster.yaml");
    let text = std::fs::read_to_string(&template)
        .with_context(|| format!("cannot read {}", template.display()))?;
    ensure!(
        text.matches(AUDIT_DIR).count() == 1,
        "{} names {AUDIT_DIR} not exactly once",
        template.display()
    );
    let audit = audit
        .to_str()
        .context("the audit directory's path is not UTF-8")?;
    let config = dir.join("cluster.yaml");
    std::fs::write(&config, text.replace(AUDIT_DIR, audit))?;
    Ok(config)
}

fn undo(name: &str) -> String {
    format!("deleting kind cluster {name}")
}

/// `KEEP_CLUSTER=1` keeps the cluster after the run.
fn keep_cluster() -> bool {
    std::env::var("KEEP_CLUSTER").is_ok_and(|v| v == "1")
}

/// `e2e/kind/node-image.sh`, which owns the pinned kind and node image.
fn node_image_script(arg: &str) -> Result<String> {
    let script = paths::repository().join("e2e/kind/node-image.sh");
    let out = run_showing_progress(Command::new(&script).arg(arg))
        .with_context(|| format!("{} {arg} failed", script.display()))?;
    let line = out.trim();
    if line.is_empty() || line.contains(char::is_whitespace) {
        bail!(
            "{} {arg} printed {line:?} instead of one word",
            script.display()
        );
    }
    Ok(line.to_owned())
}

/// The pinned kind binary (built from `e2e/kind/go.mod` on first use), never the PATH's.
fn kind_binary() -> Result<PathBuf> {
    Ok(PathBuf::from(node_image_script("--kind")?))
}

/// The node image to create the cluster from: the pinned `kindest/node` when the engine has
/// it or can pull it, otherwise the one built offline (built now if not cached).
fn node_image() -> Result<String> {
    node_image_script("--ensure")
}

/// A running container, from the node.
pub struct NodeContainer {
    pub uid: u32,
    pub gid: u32,
    /// `sha256:…`, the image's ID.
    pub image_id: String,
}

/// Facts about a local image, from `docker image inspect`.
pub struct LocalImage {
    /// `sha256:…`, the image ID, which is also the ID containerd gives it once loaded.
    pub id: String,
    pub size: u64,
}

impl LocalImage {
    pub fn inspect(image: &str) -> Result<Self> {
        let out = run(Command::new("docker").args([
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{.Size}}",
            image,
        ]))
        .with_context(|| format!("no image {image} in the local Docker engine"))?;
        let (id, size) = out
            .trim()
            .split_once(' ')
            .with_context(|| format!("docker image inspect printed {out:?}"))?;
        Ok(Self {
            id: id.to_owned(),
            size: size.parse()?,
        })
    }
}

/// Builds [`TEST_IMAGE`] from nothing: a static program that sleeps until SIGTERM
/// (`e2e/test-image/pause.c`, compiled with musl-gcc), alone in an image imported from a
/// tarball, so nothing is pulled.
pub fn build_test_image(work: &Path) -> Result<()> {
    let dir = work.join("test-image");
    std::fs::create_dir_all(&dir)?;
    let source = paths::repository().join("e2e/test-image/pause.c");
    let binary = dir.join("pause");
    run(Command::new("musl-gcc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(&binary)
        .arg(&source))
    .context("the test image's program is built with musl-gcc (apt-get install musl-tools)")?;
    let tarball = dir.join("rootfs.tar");
    run(Command::new("tar")
        .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
        .arg(&dir)
        .arg("-cf")
        .arg(&tarball)
        .arg("pause"))?;
    run(Command::new("docker")
        .args([
            "import",
            "--change",
            r#"ENTRYPOINT ["/pause"]"#,
            "--change",
            "USER 65532:65532",
        ])
        .arg(&tarball)
        .arg(TEST_IMAGE))?;
    Ok(())
}
