//! A smoke test of the built container image: started with testcontainers as a cluster would
//! run it (read-only root, all capabilities dropped, the Secret mounted at /tls), it answers
//! good and bad AdmissionReviews over TLS for the Service's name, and runs as uid 65532.
//!
//! `just e2e-image` builds the image and runs this; it needs a Docker engine. testcontainers-rs
//! has no reaper container (nothing to pull): the container is removed here, explicitly on
//! success, by the container's drop on failure, and by the harness's interrupt handler on Ctrl-C.

use std::{os::unix::fs::PermissionsExt, process::Command};

use e2e::{https, paths, pki};
use testcontainers::{
    GenericImage, ImageExt,
    core::{AccessMode, IntoContainerPort, Mount, WaitFor},
    runners::AsyncRunner,
};
use testkit::process::{clean_up_on_interrupt, forget_undo, run, undo_on_interrupt};

fn image() -> (String, String) {
    let image = std::env::var("E2E_IMAGE").unwrap_or_else(|_| "validator-webhook:e2e".to_owned());
    let (name, tag) = image.rsplit_once(':').unwrap_or((&image, "latest"));
    (name.to_owned(), tag.to_owned())
}

#[tokio::test]
async fn the_image_answers_reviews_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    std::fs::set_permissions(certs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    pki::write_as_a_secret_volume(&paths::webhook_binary().unwrap(), certs.path()).unwrap();

    clean_up_on_interrupt();
    let container_name = format!("validator-webhook-e2e-image-{}", std::process::id());
    let undo = format!("removing container {container_name}");
    undo_on_interrupt(
        &undo,
        Command::new("docker").args(["rm", "--force", "--volumes", &container_name]),
    );

    let (name, tag) = image();
    let container = GenericImage::new(name, tag)
        .with_exposed_port(8443.tcp())
        .with_wait_for(WaitFor::message_on_stderr("serving reviews"))
        .with_mount(
            Mount::bind_mount(certs.path().to_string_lossy(), "/tls")
                .with_access_mode(AccessMode::ReadOnly),
        )
        .with_env_var("VALIDATOR_WEBHOOK_TLS_CERT_FILE", "/tls/tls.crt")
        .with_env_var("VALIDATOR_WEBHOOK_TLS_KEY_FILE", "/tls/tls.key")
        .with_env_var("VALIDATOR_WEBHOOK_LOG_FORMAT", "json")
        .with_readonly_rootfs(true)
        .with_cap_drop("ALL")
        .with_container_name(&container_name)
        .start()
        .await
        .expect("the image starts (is a Docker engine running, and was the image built?)");

    let port = container.get_host_port_ipv4(8443.tcp()).await.unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let ca = std::fs::read(certs.path().join("ca.crt")).unwrap();

    let health = https::request(addr, &ca, "GET", "/healthz", Vec::new())
        .await
        .unwrap();
    assert_eq!(health.status, 200);

    let (denied, uid) = https::bad_deployment_review().unwrap();
    let response = https::review(addr, &ca, denied.clone()).await.unwrap();
    assert_eq!(response["uid"], uid);
    testkit::reply::ensure_policy_denial(&response).unwrap();

    let allowed = String::from_utf8(denied)
        .unwrap()
        .replace("nginx:1.25", "msalinasc_init:1.0");
    let response = https::review(addr, &ca, allowed.into_bytes())
        .await
        .unwrap();
    assert_eq!(response["allowed"], true, "{response}");
    assert_eq!(response["uid"], uid);

    // What the engine says it runs, and what the kernel says the process is.
    let inspect = run(Command::new("docker").args([
        "inspect",
        "--format",
        "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.State.Pid}}",
        container.id(),
    ]))
    .unwrap();
    let fields: Vec<&str> = inspect.split_whitespace().collect();
    assert_eq!(fields[..2], ["65532:65532", "true"], "{inspect}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", fields[2])).unwrap();
    for field in ["Uid:", "Gid:"] {
        let ids: Vec<&str> = (status.lines())
            .find_map(|l| l.strip_prefix(field))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(ids, ["65532"; 4], "{field} of the webhook's process");
    }

    container.rm().await.unwrap();
    forget_undo(&undo);
    let gone = Command::new("docker")
        .args(["container", "inspect", &container_name])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "{container_name} is still there");
}
