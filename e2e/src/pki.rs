//! The local control plane's certificates: one CA, the API server's serving certificate, an
//! administrator's client certificate in `system:masters`, and the service-account key pair.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

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
        let write = |name: &str, pem: String| -> Result<()> {
            std::fs::write(path(name), pem).with_context(|| format!("cannot write {name}"))
        };

        let mut ca = params(&[], "validator-webhook e2e CA", None)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        write("ca.crt", ca.self_signed(&ca_key)?.pem())?;
        let issuer = Issuer::new(ca, ca_key);

        let serving_names = [
            "127.0.0.1",
            "localhost",
            service_ip,
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ];
        let mut serving = params(&serving_names, "kube-apiserver", None)?;
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_key = KeyPair::generate()?;
        write(
            "apiserver.crt",
            serving.signed_by(&serving_key, &issuer)?.pem(),
        )?;
        write("apiserver.key", serving_key.serialize_pem())?;

        let mut admin = params(&[], "validator-webhook-e2e-admin", Some("system:masters"))?;
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_key = KeyPair::generate()?;
        write("admin.crt", admin.signed_by(&admin_key, &issuer)?.pem())?;
        write("admin.key", admin_key.serialize_pem())?;

        let service_account = KeyPair::generate()?;
        write("sa.key", service_account.serialize_pem())?;
        write("sa.pub", service_account.public_key_pem())?;

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

fn params(
    names: &[&str],
    common_name: &str,
    organization: Option<&str>,
) -> Result<CertificateParams> {
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    let mut params = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(organization) = organization {
        dn.push(DnType::OrganizationName, organization);
    }
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(7);
    Ok(params)
}
