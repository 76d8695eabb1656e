//! `validator-webhook certs`: a CA and a serving certificate for the webhook's Service, and the
//! manifests that wire them into a cluster that has no cert-manager.

use std::path::{Path, PathBuf};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::json;

use super::cli::CertsArgs;
use crate::{pki::Issued, webhook::tls::TlsError};

/// What `certs` writes, relative to its output directory.
pub const FILES: [&str; 5] = [
    "ca.crt",
    "tls.crt",
    "tls.key",
    "secret.yaml",
    "ca-bundle-patch.yaml",
];

/// The manifests that carry an [`Issued`] certificate into a cluster.
pub trait Manifests {
    fn secret_yaml(&self, secret: &str, namespace: &str) -> String;
    fn ca_bundle_patch(&self, webhooks: usize) -> String;
}

impl Manifests for Issued {
    /// The Secret the Deployment mounts.
    fn secret_yaml(&self, secret: &str, namespace: &str) -> String {
        let manifest = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": secret, "namespace": namespace },
            "type": "kubernetes.io/tls",
            "data": {
                "ca.crt": STANDARD.encode(&self.ca_pem),
                "tls.crt": STANDARD.encode(&self.cert_pem),
                "tls.key": STANDARD.encode(&self.key_pem),
            },
        });
        yaml(&manifest)
    }

    /// A JSON patch that puts the CA into every webhook of the configuration.
    fn ca_bundle_patch(&self, webhooks: usize) -> String {
        let bundle = STANDARD.encode(&self.ca_pem);
        let operations: Vec<_> = (0..webhooks)
            .map(|i| json!({ "op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle }))
            .collect();
        yaml(&json!(operations))
    }
}

fn yaml(value: &serde_json::Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|_| value.to_string())
}

/// Runs the subcommand: writes the files and says how to use them.
pub fn run(args: &CertsArgs) -> Result<(), TlsError> {
    let issued = Issued::for_service(&args.service, &args.namespace, args.validity_days)?;
    let contents = [
        issued.ca_pem.clone(),
        issued.cert_pem.clone(),
        issued.key_pem.clone(),
        issued.secret_yaml(&args.secret, &args.namespace),
        issued.ca_bundle_patch(1),
    ];
    std::fs::create_dir_all(&args.out_dir).map_err(|source| TlsError::Write {
        path: args.out_dir.clone(),
        source,
    })?;
    for (file, content) in FILES.iter().zip(contents) {
        write(&args.out_dir.join(file), &content, *file == "tls.key")?;
    }
    println!(
        "Wrote a CA and a certificate for {}.{}.svc, valid for {} days, to {}",
        args.service,
        args.namespace,
        args.validity_days,
        args.out_dir.display()
    );
    Ok(())
}

fn write(path: &Path, content: &str, private: bool) -> Result<(), TlsError> {
    let result = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let mode = if private { 0o600 } else { 0o644 };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true).mode(mode);
        std::io::Write::write_all(&mut options.open(path)?, content.as_bytes())
    })();
    result.map_err(|source| TlsError::Write {
        path: PathBuf::from(path),
        source,
    })
}

#[cfg(test)]
mod tests {
    use rustls::{
        client::danger::ServerCertVerifier,
        pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
    };

    use super::*;

    #[test]
    fn the_serving_certificate_verifies_for_the_service_name_against_the_ca() {
        let issued =
            Issued::for_service("validator-webhook-service", "validator-webhook", 30).unwrap();
        let ca = CertificateDer::from_pem_slice(issued.ca_pem.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let provider = std::sync::Arc::new(crate::webhook::tls::provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .unwrap();
        let leaf = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        for name in [
            "validator-webhook-service.validator-webhook.svc",
            "validator-webhook-service",
        ] {
            let server = ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&leaf, &[], &server, &[], UnixTime::now())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = ServerName::try_from("other.validator-webhook.svc").unwrap();
        assert!(
            verifier
                .verify_server_cert(&leaf, &[], &other, &[], UnixTime::now())
                .is_err()
        );
    }

    #[test]
    fn the_secret_and_patch_carry_the_pem_in_base64() {
        let issued = Issued::for_service("svc", "ns", 1).unwrap();
        let secret: serde_json::Value =
            serde_saphyr::from_str(&issued.secret_yaml("tls", "ns")).unwrap();
        assert_eq!(secret["type"], "kubernetes.io/tls");
        let key = STANDARD
            .decode(secret["data"]["tls.key"].as_str().unwrap())
            .unwrap();
        assert_eq!(String::from_utf8(key).unwrap(), issued.key_pem);
        let patch: serde_json::Value = serde_saphyr::from_str(&issued.ca_bundle_patch(1)).unwrap();
        assert_eq!(patch[0]["path"], "/webhooks/0/clientConfig/caBundle");
        assert_eq!(
            STANDARD
                .decode(patch[0]["value"].as_str().unwrap())
                .unwrap(),
            issued.ca_pem.as_bytes()
        );
    }
}
