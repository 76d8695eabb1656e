//! The other overlays of `deploy/`, checked against a real API server by server-side dry run,
//! with cert-manager's CustomResourceDefinitions installed for the cert-manager overlay.

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result};
use serde_json::Value;

use testkit::process::run;

use crate::kubectl::Kubectl;

/// The cert-manager release whose CRDs the cert-manager overlay is checked against.
pub const CERT_MANAGER: &str = "github.com/cert-manager/cert-manager@v1.21.2";

/// cert-manager's CRDs, from its Go module (which carries them as plain YAML).
pub fn cert_manager_crds() -> Result<PathBuf> {
    let json = run(Command::new("go").args(["mod", "download", "-json", CERT_MANAGER]))
        .context("cert-manager's CRDs come from its Go module: is Go installed?")?;
    let module: Value = serde_json::from_str(&json)?;
    let dir = module["Dir"]
        .as_str()
        .context("go mod download printed no Dir")?;
    Ok(PathBuf::from(dir).join("deploy/crds"))
}

/// Installs cert-manager's CRDs and waits until the API server serves them.
pub fn install_cert_manager_crds(kubectl: &Kubectl) -> Result<()> {
    let crds = cert_manager_crds()?;
    // Server-side: the CRDs are too large for the last-applied annotation.
    kubectl.ok(&["apply", "--server-side", "-f", &crds.to_string_lossy()])?;
    kubectl.ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/certificates.cert-manager.io",
        "crd/issuers.cert-manager.io",
    ])?;
    Ok(())
}

/// Identifies an object across renderings.
pub fn key(object: &Value) -> String {
    format!(
        "{}/{}/{}",
        object["kind"].as_str().unwrap_or_default(),
        object["metadata"]["namespace"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default()
    )
}
