//! One CA and one serving certificate for 127.0.0.1, ::1 and localhost, used by every server, so
//! every server does the same TLS work (ECDSA P-256, signed by a CA, as in a cluster).

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// The names the serving certificate is valid for: the servers listen on loopback only.
const NAMES: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot generate the benchmark certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Where the certificates are, and the CA for the probe to trust.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Generates a fresh CA and serving certificate into `dir` (`ca.crt`, `tls.crt`, `tls.key`).
pub fn generate(dir: &Path) -> Result<Pki, PkiError> {
    let now = OffsetDateTime::now_utc();
    let validity = |params: &mut CertificateParams| {
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(7);
    };

    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "validator-webhook bench CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    // rcgen makes IP SANs of the names that parse as addresses.
    let mut leaf = CertificateParams::new(NAMES.map(str::to_owned).to_vec())?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut leaf);
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &issuer)?;

    let pki = Pki {
        ca_pem: ca_cert.pem(),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
    };
    let write = |path: &Path, contents: &str| {
        fs::create_dir_all(dir)
            .and_then(|()| fs::write(path, contents))
            .map_err(|source| PkiError::Write {
                path: path.to_owned(),
                source,
            })
    };
    write(&dir.join("ca.crt"), &pki.ca_pem)?;
    write(&pki.cert, &cert.pem())?;
    write(&pki.key, &key.serialize_pem())?;
    Ok(pki)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::{
        RootCertStore,
        client::{WebPkiServerVerifier, danger::ServerCertVerifier},
        pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
    };

    use super::*;

    #[test]
    fn the_serving_certificate_verifies_for_every_loopback_name() {
        let dir = std::env::temp_dir().join(format!("bench-pki-{}", std::process::id()));
        let pki = generate(&dir).unwrap();
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let verifier = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let leaf = CertificateDer::from_pem_file(&pki.cert).unwrap();
        for name in NAMES {
            let name = ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        }
        assert!(
            verifier
                .verify_server_cert(
                    &leaf,
                    &[],
                    &ServerName::try_from("example.com").unwrap(),
                    &[],
                    UnixTime::now()
                )
                .is_err()
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
