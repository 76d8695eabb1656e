//! Where things are: the repository, its build output, the webhook binary.

use std::path::PathBuf;

use anyhow::{Result, ensure};

pub fn repository() -> PathBuf {
    let e2e = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    e2e.parent().map(PathBuf::from).unwrap_or(e2e)
}

pub fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repository().join("target"), PathBuf::from)
}

/// The manifests the cases apply.
pub fn manifests() -> PathBuf {
    repository().join("e2e/manifests")
}

/// The API server's audit policy on both backends: writes of Deployments, with their
/// annotations (admission webhooks' audit annotations among them), and nothing else.
pub fn audit_policy() -> PathBuf {
    repository().join("e2e/audit-policy.yaml")
}

/// The webhook binary: `$VALIDATOR_WEBHOOK_BIN`, or the debug build.
pub fn webhook_binary() -> Result<PathBuf> {
    let binary = std::env::var_os("VALIDATOR_WEBHOOK_BIN")
        .map_or_else(|| target().join("debug/validator-webhook"), PathBuf::from);
    ensure!(
        binary.is_file(),
        "no webhook binary at {}: build it with `cargo build -p validator-webhook` or set VALIDATOR_WEBHOOK_BIN",
        binary.display()
    );
    Ok(binary)
}
