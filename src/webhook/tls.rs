//! The serving certificate: loaded from PEM files and reloaded when they change on disk (as
//! cert-manager and the kubelet rotate a mounted Secret), or generated for local use.

use std::{
    fmt,
    hash::{DefaultHasher, Hash, Hasher},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use arc_swap::ArcSwap;
use rustls::{
    ServerConfig,
    crypto::{CryptoProvider, ring},
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

use super::metrics::{Metrics, ReloadLabels};
pub use super::watch::WatchGuard;
use crate::pki::SelfSigned;

/// How long a pair that does not load (a file missing, cut short, or the key of another
/// certificate) is given to settle, as a writer that replaces the two files one at a time
/// leaves it for a moment, before the reload counts as failed.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(3);
const SETTLE_RETRY: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("{path} is not a usable certificate: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("the private key in {key} cannot be used with the certificate in {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot watch {path} for changes: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

/// A certificate chain with its key, and when the leaf expires.
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
}

impl Loaded {
    /// Reads a PEM certificate chain and private key, checking that they belong together.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        cert: &Path,
        key: &Path,
    ) -> Result<Self, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::BadCertificate {
                path: cert.to_owned(),
                reason: e.to_string(),
            })?;
        let Some(leaf) = chain.first() else {
            return Err(TlsError::NoCertificate {
                path: cert.to_owned(),
            });
        };
        let not_after = not_after(leaf).map_err(|reason| TlsError::BadCertificate {
            path: cert.to_owned(),
            reason,
        })?;
        let private_key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| TlsError::NoKey {
            path: key.to_owned(),
        })?;
        let certified = CertifiedKey::from_der(chain, private_key, &provider()).map_err(|e| {
            TlsError::Mismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            key: Arc::new(certified),
            not_after,
        })
    }

    /// A generated certificate, ready to serve.
    pub fn generated(generated: &SelfSigned) -> Result<Self, TlsError> {
        let unnamed = Path::new("generated certificate");
        Self::from_pem(
            generated.cert_pem.as_bytes(),
            generated.key_pem.as_bytes(),
            unnamed,
            unnamed,
        )
    }

    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        Self::from_pem(&cert_pem, &key_pem, cert, key)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn not_after(leaf: &CertificateDer<'_>) -> Result<i64, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf).map_err(|e| e.to_string())?;
    Ok(parsed.validity().not_after.timestamp())
}

pub fn provider() -> CryptoProvider {
    ring::default_provider()
}

/// TLS settings for the webhook listener: TLS 1.2 and 1.3, HTTP/2 preferred over HTTP/1.1.
pub fn server_config(
    certificates: Arc<dyn ResolvesServerCert>,
) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The certificate handed to each new TLS connection. Swapping it never disturbs connections
/// that are already established.
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
    files: Option<Files>,
    metrics: Arc<Metrics>,
}

struct Files {
    cert: PathBuf,
    key: PathBuf,
    fingerprint: Mutex<u64>,
}

impl CertStore {
    /// Serves the certificate in `cert` and `key`, and can reload it from there.
    pub fn from_files(
        cert: PathBuf,
        key: PathBuf,
        metrics: Arc<Metrics>,
    ) -> Result<Self, TlsError> {
        let (cert_pem, key_pem) = (read(&cert)?, read(&key)?);
        let loaded = Loaded::from_pem(&cert_pem, &key_pem, &cert, &key)?;
        let files = Files {
            cert,
            key,
            fingerprint: Mutex::new(fingerprint(&cert_pem, &key_pem)),
        };
        Ok(Self::new(loaded, Some(files), metrics))
    }

    /// Serves a fixed certificate.
    pub fn fixed(loaded: Loaded, metrics: Arc<Metrics>) -> Self {
        Self::new(loaded, None, metrics)
    }

    fn new(loaded: Loaded, files: Option<Files>, metrics: Arc<Metrics>) -> Self {
        metrics.certificate_expiry.set(loaded.not_after);
        Self {
            current: ArcSwap::new(loaded.key),
            files,
            metrics,
        }
    }

    /// Re-reads the files; returns whether the served certificate changed. On error the
    /// current certificate stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let result = self.load_changed();
        self.count(&result);
        result
    }

    /// Reloads as [`Self::reload`] does, but gives a pair that does not load
    /// [`SETTLE_TIMEOUT`] to become whole before counting a failure.
    pub async fn reload_settled(&self) -> Result<bool, TlsError> {
        let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        loop {
            let result = self.load_changed();
            if result.is_err() && tokio::time::Instant::now() + SETTLE_RETRY < deadline {
                tokio::time::sleep(SETTLE_RETRY).await;
                continue;
            }
            self.count(&result);
            return result;
        }
    }

    fn count(&self, result: &Result<bool, TlsError>) {
        let label = match result {
            Ok(false) => return,
            Ok(true) => "success",
            Err(_) => "failure",
        };
        self.metrics
            .certificate_reloads
            .get_or_create(&ReloadLabels { result: label })
            .inc();
    }

    fn load_changed(&self) -> Result<bool, TlsError> {
        let Some(files) = &self.files else {
            return Ok(false);
        };
        (|| {
            let (cert_pem, key_pem) = (read(&files.cert)?, read(&files.key)?);
            let new = fingerprint(&cert_pem, &key_pem);
            let mut seen = files
                .fingerprint
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if *seen == new {
                return Ok(false);
            }
            let loaded = Loaded::from_pem(&cert_pem, &key_pem, &files.cert, &files.key)?;
            self.current.store(loaded.key);
            self.metrics.certificate_expiry.set(loaded.not_after);
            *seen = new;
            Ok(true)
        })()
    }

    /// Reloads whenever the certificate files change, until the returned guard is dropped.
    pub fn watch(self: &Arc<Self>) -> Result<Option<WatchGuard>, TlsError> {
        let Some(files) = &self.files else {
            return Ok(None);
        };
        let store = Arc::downgrade(self);
        let guard = super::watch::watch(&[&files.cert, &files.key], move || {
            let store = store.clone();
            async move {
                let Some(store) = store.upgrade() else { return };
                match store.reload_settled().await {
                    Ok(true) => tracing::info!("reloaded the serving certificate"),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "kept the current certificate"),
                }
            }
        })
        .map_err(|(path, source)| TlsError::Watch { path, source })?;
        Ok(Some(guard))
    }
}

fn fingerprint(cert_pem: &[u8], key_pem: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    (cert_pem, key_pem).hash(&mut hasher);
    hasher.finish()
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = self.files.as_ref().map(|files| (&files.cert, &files.key));
        f.debug_struct("CertStore")
            .field("files", &files)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::watch::SETTLE_DELAY;

    fn write_pair(dir: &Path, generated: &SelfSigned) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert, &generated.cert_pem).unwrap();
        std::fs::write(&key, &generated.key_pem).unwrap();
        (cert, key)
    }

    #[test]
    fn refuses_a_key_that_belongs_to_another_certificate() {
        let (one, two) = (
            SelfSigned::generate(&["a"]).unwrap(),
            SelfSigned::generate(&["b"]).unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, &one.cert_pem).unwrap();
        std::fs::write(&key, &two.key_pem).unwrap();
        let error = Loaded::from_files(&cert, &key).err().unwrap();
        assert!(matches!(error, TlsError::Mismatch { .. }), "{error}");
    }

    #[test]
    fn names_the_file_that_holds_no_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("tls.crt");
        std::fs::write(&cert, "not pem").unwrap();
        let error = Loaded::from_files(&cert, &cert).err().unwrap();
        assert_eq!(
            error.to_string(),
            format!("{} holds no PEM certificate", cert.display())
        );
    }

    fn reloads(metrics: &Metrics, result: &'static str) -> u64 {
        metrics
            .certificate_reloads
            .get_or_create(&ReloadLabels { result })
            .get()
    }

    #[tokio::test]
    async fn a_pair_written_one_file_at_a_time_is_one_success_and_no_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), &SelfSigned::generate(&["first"]).unwrap());
        let metrics = Arc::new(Metrics::default());
        let store =
            Arc::new(CertStore::from_files(cert.clone(), key.clone(), metrics.clone()).unwrap());
        let _watch = store.watch().unwrap();
        let before = store.current.load_full();

        // A writer that replaces the certificate, then the key well after the watch has
        // noticed: in between, the files hold a certificate and the key of another.
        let next = SelfSigned::generate(&["second"]).unwrap();
        std::fs::write(&cert, &next.cert_pem).unwrap();
        tokio::time::sleep(SETTLE_DELAY + Duration::from_millis(500)).await;
        std::fs::write(&key, &next.key_pem).unwrap();

        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while Arc::ptr_eq(&before, &store.current.load_full()) {
            assert!(tokio::time::Instant::now() < deadline, "never reloaded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(SETTLE_DELAY * 2).await;
        assert_eq!(
            reloads(&metrics, "failure"),
            0,
            "a half-written pair counted as a failure"
        );
        assert_eq!(reloads(&metrics, "success"), 1);
    }

    #[tokio::test]
    async fn a_pair_that_stays_broken_is_counted_once_as_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), &SelfSigned::generate(&["first"]).unwrap());
        let metrics = Arc::new(Metrics::default());
        let store = CertStore::from_files(cert, key.clone(), metrics.clone()).unwrap();
        std::fs::write(&key, "garbage").unwrap();
        assert!(store.reload_settled().await.is_err());
        assert_eq!(reloads(&metrics, "failure"), 1);
        assert_eq!(reloads(&metrics, "success"), 0);
    }

    #[test]
    fn reload_swaps_only_when_the_files_change_and_keeps_the_old_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path(), &SelfSigned::generate(&["first"]).unwrap());
        let metrics = Arc::new(Metrics::default());
        let store = CertStore::from_files(cert.clone(), key.clone(), metrics).unwrap();
        let before = store.current.load_full();

        assert!(!store.reload().unwrap(), "nothing changed");
        std::fs::write(&key, "garbage").unwrap();
        assert!(store.reload().is_err());
        assert!(
            Arc::ptr_eq(&before, &store.current.load_full()),
            "kept the old certificate"
        );

        write_pair(dir.path(), &SelfSigned::generate(&["second"]).unwrap());
        assert!(store.reload().unwrap());
        assert_ne!(before.cert, store.current.load_full().cert);
    }
}
