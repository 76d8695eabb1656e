//! Installing the shipped `deploy/` manifests: a copy of them, a certificate made by
//! `validator-webhook certs` into the certs overlay, and `kubectl apply -k`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};
use serde_json::Value;

use testkit::process::run;

use crate::{kubectl::Kubectl, paths};

/// The copied manifests and the certificate generated for them.
pub struct Manifests {
    pub deploy: PathBuf,
    /// Where `certs` wrote ca.crt, tls.crt and tls.key.
    pub certs: PathBuf,
}

impl Manifests {
    /// Copies `deploy/` into `work` and generates the certificate the certs overlay expects.
    pub fn prepare(work: &Path, webhook: &Path) -> Result<Self> {
        let deploy = work.join("deploy");
        copy_dir(&paths::repository().join("deploy"), &deploy)?;
        let certs = deploy.join("overlays/certs/generated");
        run(Command::new(webhook)
            .arg("certs")
            .arg("--out-dir")
            .arg(&certs))?;
        Ok(Self { deploy, certs })
    }

    pub fn overlay(&self, name: &str) -> PathBuf {
        self.deploy.join("overlays").join(name)
    }

    pub fn apply(&self, kubectl: &Kubectl, overlay: &str) -> Result<()> {
        let dir = self.overlay(overlay);
        kubectl.ok(&["apply", "-k", &dir.to_string_lossy()])?;
        Ok(())
    }

    /// The objects an overlay renders to.
    pub fn render(&self, kubectl: &Kubectl, overlay: &str) -> Result<Vec<Value>> {
        let dir = self.overlay(overlay);
        let yaml = kubectl.ok(&["kustomize", &dir.to_string_lossy()])?;
        serde_saphyr::from_multiple(&yaml)
            .context("kubectl kustomize printed something that is not YAML")
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The webhook container of a rendered Deployment: its arguments and environment.
pub struct Container {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The container port named by the Service's `targetPort`.
    pub port: u16,
    /// ConfigMaps mounted as directories: (mount path, ConfigMap name).
    pub config_maps: Vec<(String, String)>,
}

impl Container {
    pub fn of_deployment(objects: &[Value]) -> Result<Self> {
        let deployment = objects
            .iter()
            .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "validator-webhook")
            .context("the manifests hold no validator-webhook Deployment")?;
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        };
        let env = container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                Some((
                    e["name"].as_str()?.to_owned(),
                    e["value"].as_str()?.to_owned(),
                ))
            })
            .collect();
        let port = container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "https")
            .and_then(|p| p["containerPort"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .context("the webhook container has no port named https")?;
        let volumes = &deployment["spec"]["template"]["spec"]["volumes"];
        let config_maps = container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|mount| {
                let volume = volumes
                    .as_array()?
                    .iter()
                    .find(|v| v["name"] == mount["name"])?;
                Some((
                    mount["mountPath"].as_str()?.to_owned(),
                    volume["configMap"]["name"].as_str()?.to_owned(),
                ))
            })
            .collect();
        Ok(Self {
            args: strings(&container["args"]),
            env,
            port,
            config_maps,
        })
    }
}
