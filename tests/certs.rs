//! `certs` as an operator runs it, again and again over months: a rerun renews the serving
//! certificate under the same CA, and a CA rotation goes through stages in which every
//! certificate a replica may serve verifies against the published bundle.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Arc,
};

use rustls::{
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

const BIN: &str = env!("CARGO_BIN_EXE_validator-webhook");
const SERVICE: &str = "validator-webhook-service.validator-webhook.svc";

fn certs(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("certs")
        .arg("--out-dir")
        .arg(dir)
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

fn certs_ok(dir: &Path, args: &[&str]) {
    let output = certs(dir, args);
    assert!(
        output.status.success(),
        "certs {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Whether `leaf` verifies for the Service's name against exactly the CAs in `bundle`.
fn verifies(leaf: &str, bundle: &str) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    for ca in ders(bundle) {
        roots.add(ca).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
        .build()
        .unwrap();
    let leaf = &ders(leaf)[0];
    let name = ServerName::try_from(SERVICE).unwrap();
    verifier
        .verify_server_cert(leaf, &[], &name, &[], UnixTime::now())
        .is_ok()
}

/// The same question put to OpenSSL, whose chain building picks a CA by subject and key
/// identifier rather than trying each.
fn openssl_verifies(dir: &Path, leaf: &str, bundle: &str) -> bool {
    let (leaf_file, bundle_file) = (dir.join("leaf.pem"), dir.join("bundle.pem"));
    std::fs::write(&leaf_file, leaf).unwrap();
    std::fs::write(&bundle_file, bundle).unwrap();
    let output = Command::new("openssl")
        .args([
            "verify",
            "-purpose",
            "sslserver",
            "-verify_hostname",
            SERVICE,
            "-CAfile",
        ])
        .arg(&bundle_file)
        .arg(&leaf_file)
        .output()
        .expect("openssl is installed");
    output.status.success()
}

struct KeyIds {
    subject: Option<Vec<u8>>,
    authority: Option<Vec<u8>>,
    subject_name: String,
}

fn key_ids(pem: &str) -> KeyIds {
    let der = &ders(pem)[0];
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let mut ids = KeyIds {
        subject: None,
        authority: None,
        subject_name: cert.subject().to_string(),
    };
    for extension in cert.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => ids.subject = Some(id.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                ids.authority = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
            }
            _ => {}
        }
    }
    ids
}

fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("generated");
    (temp, dir)
}

#[test]
fn a_rerun_keeps_the_ca_and_renews_only_the_serving_certificate() {
    let (_temp, dir) = tempdir();
    certs_ok(&dir, &[]);
    let (ca, leaf, bundle) = (
        read(&dir, "ca.crt"),
        read(&dir, "tls.crt"),
        read(&dir, "ca-bundle.crt"),
    );
    assert_eq!(ders(&bundle).len(), 1);
    assert!(verifies(&leaf, &bundle));

    certs_ok(&dir, &[]);
    assert_eq!(read(&dir, "ca.crt"), ca, "the CA was replaced");
    assert_eq!(
        read(&dir, "ca-bundle.crt"),
        bundle,
        "the published bundle changed"
    );
    let renewed = read(&dir, "tls.crt");
    assert_ne!(renewed, leaf, "the serving certificate was not renewed");
    assert_ne!(read(&dir, "tls.key"), "", "no key");
    assert!(verifies(&renewed, &bundle));
    assert!(openssl_verifies(&dir, &renewed, &bundle));
}

#[test]
fn every_certificate_names_its_key_and_its_issuers_key() {
    let (_temp, dir) = tempdir();
    certs_ok(&dir, &[]);
    let (ca, leaf) = (
        key_ids(&read(&dir, "ca.crt")),
        key_ids(&read(&dir, "tls.crt")),
    );
    let ca_id = ca
        .subject
        .clone()
        .expect("the CA has a subject key identifier");
    assert!(
        leaf.subject.is_some(),
        "the serving certificate has no subject key identifier"
    );
    assert_eq!(
        leaf.authority,
        Some(ca_id),
        "the serving certificate's AKI is not its CA's SKI"
    );
    assert_eq!(
        ca.authority, ca.subject,
        "a self-signed CA's AKI is its own SKI"
    );
}

#[test]
fn a_staged_rotation_keeps_every_served_certificate_trusted() {
    let (temp, dir) = tempdir();
    certs_ok(&dir, &[]);
    let (old_ca, old_leaf) = (read(&dir, "ca.crt"), read(&dir, "tls.crt"));

    // Stage 1: the bundle gains the next CA; replicas still serve the old certificate.
    certs_ok(&dir, &["--rotate-ca", "begin"]);
    let next_ca = read(&dir, "ca-next.crt");
    let bundle = read(&dir, "ca-bundle.crt");
    assert_eq!(bundle, format!("{old_ca}{next_ca}"));
    assert_eq!(
        read(&dir, "tls.crt"),
        old_leaf,
        "begin must not change the served certificate"
    );
    assert_ne!(
        key_ids(&old_ca).subject_name,
        key_ids(&next_ca).subject_name,
        "two CAs with one subject confuse chain building"
    );
    assert!(verifies(&old_leaf, &bundle));

    // Stage 2: the serving certificate comes from the next CA; both CAs still published.
    certs_ok(&dir, &["--rotate-ca", "switch"]);
    let new_leaf = read(&dir, "tls.crt");
    assert_eq!(read(&dir, "ca-bundle.crt"), bundle);
    assert_eq!(read(&dir, "ca.crt"), next_ca);
    assert!(verifies(&new_leaf, &next_ca) && !verifies(&new_leaf, &old_ca));
    for leaf in [&old_leaf, &new_leaf] {
        assert!(verifies(leaf, &bundle));
        assert!(
            openssl_verifies(temp.path(), leaf, &bundle),
            "openssl: {leaf}"
        );
    }
    // A renewal in the middle of a rotation signs with the CA now current.
    certs_ok(&dir, &[]);
    assert!(verifies(&read(&dir, "tls.crt"), &next_ca));

    // Stage 3: only the next CA is published.
    certs_ok(&dir, &["--rotate-ca", "finish"]);
    assert_eq!(read(&dir, "ca-bundle.crt"), next_ca);
    assert!(!dir.join("ca-old.crt").exists() && !dir.join("ca-next.crt").exists());
    let secret = read(&dir, "secret.yaml");
    assert!(
        secret.contains(&base64_of(&next_ca)),
        "the Secret's ca.crt is not the bundle"
    );
    let patch = read(&dir, "ca-bundle-patch.yaml");
    assert!(
        patch.contains(&base64_of(&next_ca)),
        "the caBundle is not the bundle"
    );
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn rotation_stages_out_of_order_are_refused_with_the_next_stage() {
    let (_temp, dir) = tempdir();
    let output = certs(&dir, &["--rotate-ca", "begin"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("run certs without --rotate-ca first")
    );

    certs_ok(&dir, &[]);
    for stage in ["switch", "finish"] {
        let output = certs(&dir, &["--rotate-ca", stage]);
        assert_eq!(output.status.code(), Some(1), "{stage}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("its next stage is --rotate-ca begin"),
            "{stderr}"
        );
    }
    certs_ok(&dir, &["--rotate-ca", "begin"]);
    for stage in ["begin", "finish"] {
        let output = certs(&dir, &["--rotate-ca", stage]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("next stage is --rotate-ca switch"),
            "{stage}: {stderr}"
        );
    }
}

#[test]
fn a_ca_without_its_key_is_not_silently_replaced() {
    let (_temp, dir) = tempdir();
    certs_ok(&dir, &[]);
    let ca = read(&dir, "ca.crt");
    std::fs::remove_file(dir.join("ca.key")).unwrap();
    let output = certs(&dir, &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--rotate-ca begin"), "{stderr}");
    assert_eq!(read(&dir, "ca.crt"), ca);
    // The way out works without the old key.
    for stage in ["begin", "switch", "finish"] {
        certs_ok(&dir, &["--rotate-ca", stage]);
    }
    assert!(verifies(
        &read(&dir, "tls.crt"),
        &read(&dir, "ca-bundle.crt")
    ));
}
