//! The image's runtime half, without a container engine: the static binary alone in an
//! otherwise empty, read-only root directory, as the image's numeric non-root user, serving a
//! real review over TLS. What works here works on `FROM scratch`.
//!
//! `just e2e-static` builds the binary for the musl target and runs this test with
//! `VALIDATOR_WEBHOOK_STATIC_BIN` pointing at it.

use std::{
    net::SocketAddr,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use e2e::{IMAGE_USER, https, pki};
use testkit::process::privileged;

fn static_binary() -> PathBuf {
    let binary = std::env::var_os("VALIDATOR_WEBHOOK_STATIC_BIN").map(PathBuf::from).expect(
        "VALIDATOR_WEBHOOK_STATIC_BIN names the static binary; `just e2e-static` builds it and sets it",
    );
    assert!(binary.is_file(), "{} does not exist", binary.display());
    binary
}

/// A root holding nothing but `/validator-webhook` and the mounted Secret's files in `/tls`.
fn empty_root(binary: &Path) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::copy(binary, root.path().join("validator-webhook")).unwrap();
    pki::write_as_a_secret_volume(binary, &root.path().join("tls")).unwrap();
    root
}

#[tokio::test]
async fn serves_a_review_from_an_empty_read_only_root() {
    let binary = static_binary();
    let root = empty_root(&binary);
    let mut entries: Vec<String> = walk(root.path());
    entries.sort();
    assert_eq!(
        entries,
        [
            "tls",
            "tls/ca-bundle-patch.yaml",
            "tls/ca-bundle.crt",
            "tls/ca.crt",
            "tls/ca.key",
            "tls/secret.yaml",
            "tls/tls.crt",
            "tls/tls.key",
            "validator-webhook"
        ]
    );

    let (port, metrics) = (testkit::free_port().unwrap(), testkit::free_port().unwrap());
    // A private mount namespace in which the root is bind-mounted read-only, then chroot into it
    // as the image's user: no libc, no /etc, no shell, nothing writable. `timeout` ends it even
    // if this test dies before it can.
    let script = r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec timeout --foreground 120 chroot "$@""#;
    let server = privileged("unshare")
        .process_group(0)
        .args([
            "--mount",
            "--fork",
            "--kill-child",
            "--",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(root.path())
        .arg(format!("--userspec={IMAGE_USER}"))
        .arg(root.path())
        .args(["/validator-webhook", "serve"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .args([
            "--tls-cert-file",
            "/tls/tls.crt",
            "--tls-key-file",
            "/tls/tls.key",
        ])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect(
            "unshare and chroot (util-linux, coreutils) run the binary as root or through sudo",
        );
    let mut group = Group(server);
    let server = &mut group.0;

    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ca = std::fs::read(root.path().join("tls/ca.crt")).unwrap();
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(response) = https::request(addr, &ca, "GET", "/readyz", Vec::new()).await {
            ready = response.status == 200;
            break;
        }
        if let Ok(Some(status)) = server.try_wait() {
            let mut log = String::new();
            std::io::Read::read_to_string(server.stderr.as_mut().unwrap(), &mut log).unwrap();
            panic!("the binary exited with {status} in the empty root:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the webhook never became ready in the empty root");

    let (review, uid) = https::bad_deployment_review().unwrap();
    let response = https::review(addr, &ca, review).await.unwrap();
    assert_eq!(response["uid"], uid);
    testkit::reply::ensure_policy_denial(&response).unwrap();
}

/// The server's process group, stopped when the test ends however it ends.
struct Group(std::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = privileged("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            found.push(
                path.strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    found
}
