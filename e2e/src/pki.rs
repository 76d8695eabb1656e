//! The local control plane's certificates: one CA, the API server's serving certificate, an
//! administrator's client certificate in `system:masters`, and the service-account key pair.
//! The product's issuer (`validator_webhook::pki::Ca`) makes them; this writes them as files.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};
use rcgen::KeyPair;
use validator_webhook::pki::Ca;

/// Paths of the PEM files, as the API server's flags and the kubeconfig want them.
pub struct Pki {
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
}

impl Pki {
    /// Generates everything into `dir`. `service_ip` is the first address of the service
    /// range, which the `kubernetes` Service gets.
    pub fn generate(dir: &Path, service_ip: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = |name: &str| dir.join(name);
        let write = |name: &str, pem: &str| -> Result<()> {
            std::fs::write(path(name), pem).with_context(|| format!("cannot write {name}"))
        };

        let ca = Ca::new("validator-webhook e2e CA", 7)?;
        write("ca.crt", &ca.cert_pem)?;

        let serving_names = [
            "127.0.0.1",
            "localhost",
            service_ip,
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .map(str::to_owned);
        let serving = ca.serving(&serving_names, "kube-apiserver")?;
        write("apiserver.crt", &serving.cert_pem)?;
        write("apiserver.key", &serving.key_pem)?;

        let admin = ca.client("validator-webhook-e2e-admin", "system:masters")?;
        write("admin.crt", &admin.cert_pem)?;
        write("admin.key", &admin.key_pem)?;

        let service_account = KeyPair::generate()?;
        write("sa.key", &service_account.serialize_pem())?;
        write("sa.pub", &service_account.public_key_pem())?;

        Ok(Self {
            ca_cert: path("ca.crt"),
            serving_cert: path("apiserver.crt"),
            serving_key: path("apiserver.key"),
            admin_cert: path("admin.crt"),
            admin_key: path("admin.key"),
            service_account_key: path("sa.key"),
            service_account_pub: path("sa.pub"),
        })
    }
}

/// Has `binary` write its certificate and key into `dir` (`certs --out-dir`), then makes them
/// world-readable, as a Secret volume's files are unless its defaultMode says otherwise.
pub fn write_as_a_secret_volume(binary: &Path, dir: &Path) -> Result<()> {
    testkit::process::run(Command::new(binary).arg("certs").arg("--out-dir").arg(dir))?;
    for file in std::fs::read_dir(dir)? {
        std::fs::set_permissions(file?.path(), std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}
