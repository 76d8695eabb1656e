//! Certificate issuance, in one place: the CA and serving certificate `certs` writes for a
//! cluster, and the self-signed certificate `serve` uses without one (tests use both; the e2e
//! local control plane issues its API server's and administrator's certificates with [`Ca`]).
//!
//! Every certificate carries key identifiers (subject and authority), and every CA a subject
//! of its own (its creation time is part of it), so that a client trusting an old and a new CA
//! at once during a rotation finds the right one for each certificate.

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
    /// Issues a new CA and a certificate for `service` in `namespace`, both valid for `days`.
    pub fn for_service(service: &str, namespace: &str, days: i64) -> Result<Self, PkiError> {
        let ca = Ca::generate(service, namespace, days)?;
        let serving = ca.issue(service, namespace, days)?;
        Ok(Self {
            ca_pem: ca.cert_pem,
            cert_pem: serving.cert_pem,
            key_pem: serving.key_pem,
        })
    }
}

/// A CA certificate and its private key, as PEM.
#[derive(Clone)]
pub struct Ca {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate and its private key, as PEM.
pub struct KeyedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// A new CA for the webhook of `service` in `namespace`, valid for `days`.
    pub fn generate(service: &str, namespace: &str, days: i64) -> Result<Self, PkiError> {
        Self::new(&format!("{service}.{namespace} webhook CA"), days)
    }

    /// A new CA named `common_name` (and its key identifier), valid from an hour ago (for
    /// clocks a little behind) for `days`.
    pub fn new(common_name: &str, days: i64) -> Result<Self, PkiError> {
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        // Two CAs with one subject make clients that pick a CA by name pick the wrong one: the
        // subject names the key, as the key identifier does.
        let id: String = (ca.key_identifier(&key).iter().take(8))
            .map(|byte| format!("{byte:02x}"))
            .collect();
        ca.distinguished_name = name(&format!("{common_name} {id}"));
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.use_authority_key_identifier_extension = true;
        ca.not_before = now - Duration::hours(1);
        ca.not_after = now + Duration::days(days);
        let cert = ca.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A CA written before, from its certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let ca = Self {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        };
        let issuer = ca.issuer()?;
        let certificate = parse(cert_pem)?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(issuer.key());
        if certificate.public_key != spki {
            return Err(PkiError::Mismatch);
        }
        Ok(ca)
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, rcgen::Error> {
        let key = KeyPair::from_pem(&self.key_pem)?;
        Issuer::from_ca_cert_pem(&self.cert_pem, key)
    }

    /// A serving certificate for `service` in `namespace`, valid for `days` (but not beyond
    /// the CA), signed by this CA.
    pub fn issue(&self, service: &str, namespace: &str, days: i64) -> Result<KeyedCert, PkiError> {
        let dns_names = [
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
            format!("{service}.{namespace}"),
            service.to_owned(),
        ];
        let mut leaf = CertificateParams::new(dns_names.to_vec())?;
        leaf.distinguished_name = name(&format!("{service}.{namespace}.svc"));
        leaf.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(leaf, Some(days))
    }

    /// A serving certificate for `names` (DNS names or IP addresses), valid as long as the CA.
    pub fn serving(&self, names: &[String], common_name: &str) -> Result<KeyedCert, PkiError> {
        let mut leaf = CertificateParams::new(names.to_vec())?;
        leaf.distinguished_name = name(common_name);
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(leaf, None)
    }

    /// A client certificate for the user `common_name` in the group `organization`, as
    /// Kubernetes reads them, valid as long as the CA.
    pub fn client(&self, common_name: &str, organization: &str) -> Result<KeyedCert, PkiError> {
        let mut leaf = CertificateParams::new(Vec::<String>::new())?;
        leaf.distinguished_name = name(common_name);
        leaf.distinguished_name
            .push(DnType::OrganizationName, organization);
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(leaf, None)
    }

    /// Signs `leaf` as an end entity with key identifiers, valid from an hour ago for `days`,
    /// never beyond the CA (as long as the CA without `days`).
    fn sign(&self, mut leaf: CertificateParams, days: Option<i64>) -> Result<KeyedCert, PkiError> {
        let issuer = self.issuer()?;
        let ca_not_after = OffsetDateTime::from_unix_timestamp(parse(&self.cert_pem)?.not_after)
            .map_err(|_| PkiError::Parse)?;
        let now = OffsetDateTime::now_utc();
        // Explicitly not a CA, which also gives the certificate its subject key identifier.
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.use_authority_key_identifier_extension = true;
        leaf.not_before = now - Duration::hours(1);
        leaf.not_after = match days {
            Some(days) => (now + Duration::days(days)).min(ca_not_after),
            None => ca_not_after,
        };
        let key = KeyPair::generate()?;
        let cert = leaf.signed_by(&key, &issuer)?;
        Ok(KeyedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(transparent)]
    Generate(#[from] rcgen::Error),
    #[error("not a PEM X.509 certificate")]
    Parse,
    #[error("the key does not belong to the certificate")]
    Mismatch,
}

/// What issuance needs to know of a certificate.
struct Parsed {
    public_key: Vec<u8>,
    /// Seconds since the Unix epoch.
    not_after: i64,
}

fn parse(pem: &str) -> Result<Parsed, PkiError> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|_| PkiError::Parse)?;
    let (_, certificate) =
        x509_parser::parse_x509_certificate(&der).map_err(|_| PkiError::Parse)?;
    Ok(Parsed {
        public_key: certificate.public_key().raw.to_vec(),
        not_after: certificate.validity().not_after.timestamp(),
    })
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
