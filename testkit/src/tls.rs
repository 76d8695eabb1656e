//! The TLS client side of every test: it trusts only the CA it is given.

use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, pem::PemObject},
};

/// A client configuration that trusts only the certificates in `ca_pem` and offers `alpn`
/// (nothing offered when empty).
pub fn client_config(ca_pem: &[u8], alpn: &[&[u8]]) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.context("the CA is not PEM")?)?;
    }
    ensure!(!roots.is_empty(), "the CA holds no certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|id| id.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_ca_without_a_certificate() {
        let error = client_config(b"not a certificate", &[]).unwrap_err();
        assert_eq!(error.to_string(), "the CA holds no certificate");
    }
}
