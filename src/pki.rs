//! Certificate issuance, in one place: the CA and serving certificate `certs` writes for a
//! cluster, and the self-signed certificate `serve` uses without one (tests use both; the e2e
//! local control plane issues its API server's and administrator's certificates with [`Ca`]).

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
        let ca = Ca::new(&format!("{service}.{namespace} webhook CA"), days)?;
        let dns_names = [
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
            format!("{service}.{namespace}"),
            service.to_owned(),
        ];
        let leaf = ca.serving(&dns_names, &format!("{service}.{namespace}.svc"))?;
        Ok(Self {
            ca_pem: ca.pem,
            cert_pem: leaf.cert_pem,
            key_pem: leaf.key_pem,
        })
    }
}

/// A CA that signs only end-entity certificates, every one valid as long as itself.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

/// A certificate and its private key, as PEM.
pub struct KeyedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// A new CA named `common_name`, valid from an hour ago (for clocks a little behind) for
    /// `days`.
    pub fn new(common_name: &str, days: i64) -> Result<Self, rcgen::Error> {
        let now = OffsetDateTime::now_utc();
        let (not_before, not_after) = (now - Duration::hours(1), now + Duration::days(days));
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name = name(common_name);
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.not_before = not_before;
        ca.not_after = not_after;
        let ca_key = KeyPair::generate()?;
        let pem = ca.self_signed(&ca_key)?.pem();
        Ok(Self {
            pem,
            issuer: Issuer::new(ca, ca_key),
            not_before,
            not_after,
        })
    }

    /// A serving certificate for `names` (DNS names or IP addresses).
    pub fn serving(&self, names: &[String], common_name: &str) -> Result<KeyedCert, rcgen::Error> {
        let mut leaf = CertificateParams::new(names.to_vec())?;
        leaf.distinguished_name = name(common_name);
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(leaf)
    }

    /// A client certificate for the user `common_name` in the group `organization`, as
    /// Kubernetes reads them.
    pub fn client(&self, common_name: &str, organization: &str) -> Result<KeyedCert, rcgen::Error> {
        let mut leaf = CertificateParams::new(Vec::<String>::new())?;
        leaf.distinguished_name = name(common_name);
        leaf.distinguished_name
            .push(DnType::OrganizationName, organization);
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(leaf)
    }

    fn sign(&self, mut leaf: CertificateParams) -> Result<KeyedCert, rcgen::Error> {
        leaf.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf.not_before = self.not_before;
        leaf.not_after = self.not_after;
        let key = KeyPair::generate()?;
        let cert = leaf.signed_by(&key, &self.issuer)?;
        Ok(KeyedCert {
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
