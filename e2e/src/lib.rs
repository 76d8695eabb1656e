//! The end-to-end harness of validator-webhook: a real kube-apiserver calls the webhook through
//! the manifests in `deploy/`, and the cases in `tests/e2e.rs` check what users see.
//!
//! - [`cluster`]: the cluster the cases use, from either backend.
//! - [`local`]: etcd, kube-apiserver and the webhook as local processes.
//! - [`kind`]: a kind cluster created, loaded and deleted by the harness.
//! - [`load`]: clients creating through the API server, counting what they get back.
//! - [`netns`]: the test host the webhook runs in, so the API server can route to it.
//! - [`install`]: `deploy/` copied, given a certificate and applied.
//! - [`overlays`]: the other overlays, dry-run against the API server.
//! - [`https`]: talking to the webhook directly, as the API server does.
//! - [`helm`]: the pinned Helm and the chart.
//! - [`pki`], [`kubectl`], [`paths`]: the pieces those are made of (child processes are
//!   `testkit::process`).

pub mod cluster;
pub mod helm;
pub mod https;
pub mod install;
pub mod kind;
pub mod kubectl;
pub mod load;
pub mod local;
pub mod netns;
pub mod overlays;
pub mod paths;
pub mod pki;

use anyhow::{Context, Result};

/// The numeric user and group the image runs as, which the Deployment's securityContext names.
pub const IMAGE_USER: &str = "65532:65532";
use serde::de::DeserializeOwned;

/// A manifest from `e2e/manifests/`, as a typed object.
pub fn manifest<K: DeserializeOwned>(file: &str) -> Result<K> {
    let path = paths::manifests().join(file);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    serde_saphyr::from_str(&text)
        .with_context(|| format!("{} is not a valid object", path.display()))
}
