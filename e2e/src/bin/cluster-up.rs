//! `just cluster-up`: the local control plane with the webhook installed from `deploy/`, kept
//! running until interrupted, for trying `kubectl apply` by hand.

use std::time::Duration;

use anyhow::{Context, Result};
use e2e::{cluster::Cluster, local::Assets, paths};

#[tokio::main]
async fn main() -> Result<()> {
    let dir = paths::target().join("local-cluster");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    testkit::process::clean_up_on_interrupt();
    let cluster = Cluster::start_local(dir.clone()).await?;
    cluster
        .wait_until_ready()
        .await
        .context("the webhook did not come up")?;
    let kubeconfig = dir.join("kubeconfig");
    let kubectl = Assets::locate()?.kubectl;
    println!(
        "\nThe control plane is up, with validator-webhook installed from deploy/overlays/certs.\n\
         Try it (kubectl {} matches the API server):\n\n\
         export KUBECONFIG={}\n\
         kubectl create namespace demo\n\
         kubectl apply -n demo -f e2e/manifests/bad-deployment.yaml\n\
         kubectl run -n demo bad --image=nginx:1.25\n\n\
         {}\n\
         Logs are in {}. Press Ctrl-C to stop.",
        kubectl.display(),
        kubeconfig.display(),
        if cluster.has_controllers() {
            "kube-controller-manager runs: namespaces get their `default` service account and\n\
             Deployments their ReplicaSets and Pods, which the webhook reviews too; no kubelet\n\
             runs, so Pods stay Pending."
        } else {
            "No kube-controller-manager (KUBEBUILDER_ASSETS lacks it): Deployments get no pods, and\n\
             a namespace needs `kubectl create serviceaccount default` before it takes a Pod."
        },
        dir.join("logs").display(),
    );
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
