//! Certificate issuance, in one place: the CA and serving certificate `certs` writes for a
//! cluster, and the self-signed certificate `serve` uses without one (tests use both).

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A CA, and a serving certificate it signed for the Service's DNS names.
pub struct Issued {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// Issues a certificate for `service` in `namespace`, valid for `days`.
    pub fn for_service(service: &str, namespace: &str, days: i64) -> Result<Self, rcgen::Error> {
        let now = OffsetDateTime::now_utc();
        let not_before = now - Duration::hours(1);

        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name = name(&format!("{service}.{namespace} webhook CA"));
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.not_before = not_before;
        ca.not_after = now + Duration::days(days);
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let dns_names = vec![
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
            format!("{service}.{namespace}"),
            service.to_owned(),
        ];
        let mut leaf = CertificateParams::new(dns_names)?;
        leaf.distinguished_name = name(&format!("{service}.{namespace}.svc"));
        leaf.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.not_before = not_before;
        leaf.not_after = now + Duration::days(days);
        let key = KeyPair::generate()?;
        let cert = leaf.signed_by(&key, &issuer)?;
        Ok(Self {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// A self-signed certificate for local use, as PEM.
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
}

impl SelfSigned {
    /// A certificate valid for `names` (DNS names or IP addresses).
    pub fn generate(names: &[&str]) -> Result<Self, rcgen::Error> {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let generated = rcgen::generate_simple_self_signed(names)?;
        Ok(Self {
            cert_pem: generated.cert.pem(),
            key_pem: generated.signing_key.serialize_pem(),
        })
    }

    /// Writes the certificate (not the key) where clients can trust it.
    pub fn write_cert(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, &self.cert_pem)
    }
}
