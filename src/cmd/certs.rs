//! `validator-webhook certs`: a CA and a serving certificate for the webhook's Service, and the
//! manifests that wire them into a cluster that has no cert-manager.
//!
//! The output directory is the state: a CA found there is kept, so a run renews the serving
//! certificate while the `caBundle` the API server trusts stays the same. Replacing the CA
//! takes three runs, each applied and rolled out before the next, so that at every moment the
//! published bundle holds the CA of every serving certificate a replica may still present:
//!
//! | stage | ca.crt/ca.key (signs) | bundle | serving certificate |
//! |---|---|---|---|
//! | `--rotate-ca begin` | old | old + next | unchanged (old) |
//! | `--rotate-ca switch` | next (old kept as ca-old.crt) | old + next | new, from next |
//! | `--rotate-ca finish` | next | next | unchanged (next) |

use std::path::{Path, PathBuf};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::json;

use super::cli::{CaRotation, CertsArgs};
use crate::pki::{Ca, PkiError};

/// The CA that signs the serving certificate.
const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
/// The CA a rotation moves to, between `begin` and `switch`.
const NEXT_CERT: &str = "ca-next.crt";
const NEXT_KEY: &str = "ca-next.key";
/// The CA a rotation moves away from, between `switch` and `finish`; still trusted.
const OLD_CERT: &str = "ca-old.crt";
const TLS_CERT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";
/// Every CA clients should trust now: what the Secret's ca.crt and the caBundle carry.
const BUNDLE: &str = "ca-bundle.crt";
const SECRET: &str = "secret.yaml";
const PATCH: &str = "ca-bundle-patch.yaml";

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA in {cert} and {key} cannot be used: {source}")]
    Ca {
        cert: PathBuf,
        key: PathBuf,
        source: PkiError,
    },
    #[error("cannot issue a certificate: {0}")]
    Issue(#[from] PkiError),
    #[error(
        "{cert} has no key beside it ({key}), so it cannot sign a new serving certificate: replace the CA with --rotate-ca begin, then switch and finish"
    )]
    NoCaKey { cert: PathBuf, key: PathBuf },
    #[error("no CA in {0} to rotate: run certs without --rotate-ca first")]
    NoCa(PathBuf),
    #[error("no serving certificate in {0}: run certs without --rotate-ca first")]
    NoServing(PathBuf),
    #[error("a CA rotation is already under way in {dir}: its next stage is --rotate-ca {next}")]
    RotationUnderway { dir: PathBuf, next: &'static str },
    #[error("no CA rotation to {stage} in {dir}: its next stage is {next}")]
    OutOfOrder {
        dir: PathBuf,
        stage: &'static str,
        next: &'static str,
    },
}

/// The output directory, and what a previous run left there.
struct State {
    dir: PathBuf,
    current: Option<Stored>,
    next: Option<Stored>,
    old: Option<String>,
}

/// A CA certificate, with its key when there is one.
struct Stored {
    cert_pem: String,
    key_pem: Option<String>,
}

impl State {
    fn read(dir: &Path) -> Result<Self, CertsError> {
        let file = |name: &str| read_if_present(&dir.join(name));
        let stored = |cert: &str, key: &str| -> Result<Option<Stored>, CertsError> {
            Ok(file(cert)?.map(|cert_pem| Stored {
                cert_pem,
                key_pem: None,
            }))
            .and_then(|stored| match stored {
                Some(mut stored) => {
                    stored.key_pem = file(key)?;
                    Ok(Some(stored))
                }
                None => Ok(None),
            })
        };
        Ok(Self {
            dir: dir.to_owned(),
            current: stored(CA_CERT, CA_KEY)?,
            next: stored(NEXT_CERT, NEXT_KEY)?,
            old: file(OLD_CERT)?,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The stage a rotation under way goes to next, if one is.
    fn rotation_next(&self) -> Option<&'static str> {
        if self.next.is_some() {
            Some("switch")
        } else if self.old.is_some() {
            Some("finish")
        } else {
            None
        }
    }

    /// The current CA, able to sign.
    fn signing_ca(&self) -> Result<Option<Ca>, CertsError> {
        let Some(current) = &self.current else {
            return Ok(None);
        };
        let (cert, key) = (self.path(CA_CERT), self.path(CA_KEY));
        let Some(key_pem) = &current.key_pem else {
            return Err(CertsError::NoCaKey { cert, key });
        };
        Ca::from_pem(&current.cert_pem, key_pem)
            .map(Some)
            .map_err(|source| CertsError::Ca { cert, key, source })
    }

    /// Every CA to trust, oldest first.
    fn bundle(&self) -> String {
        let certs = [
            self.old.as_deref(),
            self.current.as_ref().map(|ca| ca.cert_pem.as_str()),
            self.next.as_ref().map(|ca| ca.cert_pem.as_str()),
        ];
        certs.into_iter().flatten().collect()
    }
}

fn read_if_present(path: &Path) -> Result<Option<String>, CertsError> {
    match std::fs::read_to_string(path) {
        Ok(content) => Ok(Some(content)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CertsError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Runs the subcommand: writes the files and says how to use them.
pub fn run(args: &CertsArgs) -> Result<(), CertsError> {
    let dir = &args.out_dir;
    std::fs::create_dir_all(dir).map_err(|source| CertsError::Write {
        path: dir.clone(),
        source,
    })?;
    let mut state = State::read(dir)?;
    let (service, namespace, days) = (&args.service, &args.namespace, args.validity_days);
    let done = match args.rotate_ca {
        None => {
            let ca = match state.signing_ca()? {
                Some(ca) => ca,
                None => {
                    let ca = Ca::generate(service, namespace, days)?;
                    write(&state.path(CA_KEY), &ca.key_pem, true)?;
                    write(&state.path(CA_CERT), &ca.cert_pem, false)?;
                    state.current = Some(Stored {
                        cert_pem: ca.cert_pem.clone(),
                        key_pem: Some(ca.key_pem.clone()),
                    });
                    ca
                }
            };
            issue(&state, &ca, service, namespace, days)?;
            format!(
                "Wrote a certificate for {service}.{namespace}.svc, valid for {days} days (at most as long as the CA in {CA_CERT}), to {}",
                dir.display()
            )
        }
        Some(CaRotation::Begin) => {
            if let Some(next) = state.rotation_next() {
                return Err(CertsError::RotationUnderway {
                    dir: dir.clone(),
                    next,
                });
            }
            if state.current.is_none() {
                return Err(CertsError::NoCa(dir.clone()));
            }
            serving_present(&state)?;
            let ca = Ca::generate(service, namespace, days)?;
            write(&state.path(NEXT_KEY), &ca.key_pem, true)?;
            write(&state.path(NEXT_CERT), &ca.cert_pem, false)?;
            state.next = Some(Stored {
                cert_pem: ca.cert_pem,
                key_pem: Some(ca.key_pem),
            });
            format!(
                "Wrote a new CA to {}, and a bundle of the current and the new CA. Apply it, wait until every client trusts the bundle, then run certs --rotate-ca switch",
                dir.join(NEXT_CERT).display()
            )
        }
        Some(CaRotation::Switch) => {
            let Some(next) = state.next.take() else {
                return Err(CertsError::OutOfOrder {
                    dir: dir.clone(),
                    stage: "switch to",
                    next: state.rotation_next().unwrap_or("--rotate-ca begin"),
                });
            };
            let Some(next_key) = &next.key_pem else {
                return Err(CertsError::NoCaKey {
                    cert: state.path(NEXT_CERT),
                    key: state.path(NEXT_KEY),
                });
            };
            let ca = Ca::from_pem(&next.cert_pem, next_key).map_err(|source| CertsError::Ca {
                cert: state.path(NEXT_CERT),
                key: state.path(NEXT_KEY),
                source,
            })?;
            // Written in an order that a crash at any point leaves a state a rerun completes.
            if let Some(current) = state.current.take().filter(|c| c.cert_pem != next.cert_pem) {
                write(&state.path(OLD_CERT), &current.cert_pem, false)?;
                state.old = Some(current.cert_pem);
            }
            write(&state.path(CA_KEY), &ca.key_pem, true)?;
            write(&state.path(CA_CERT), &ca.cert_pem, false)?;
            remove(&state.path(NEXT_KEY))?;
            remove(&state.path(NEXT_CERT))?;
            state.current = Some(next);
            issue(&state, &ca, service, namespace, days)?;
            "Issued the serving certificate from the new CA; the bundle still holds both. Apply it, wait until every replica serves the new certificate, then run certs --rotate-ca finish".to_owned()
        }
        Some(CaRotation::Finish) => {
            if state.next.is_some() || state.old.is_none() {
                return Err(CertsError::OutOfOrder {
                    dir: dir.clone(),
                    stage: "finish",
                    next: if state.next.is_some() {
                        "--rotate-ca switch"
                    } else {
                        "--rotate-ca begin"
                    },
                });
            }
            serving_present(&state)?;
            state.old = None;
            remove(&state.path(OLD_CERT))?;
            "Dropped the old CA from the bundle. Apply it to finish the rotation".to_owned()
        }
    };
    publish(&state, &args.secret, namespace)?;
    println!("{done}.");
    Ok(())
}

fn issue(
    state: &State,
    ca: &Ca,
    service: &str,
    namespace: &str,
    days: i64,
) -> Result<(), CertsError> {
    let serving = ca.issue(service, namespace, days)?;
    // The key first: a reader that sees the new certificate finds its key already there.
    write(&state.path(TLS_KEY), &serving.key_pem, true)?;
    write(&state.path(TLS_CERT), &serving.cert_pem, false)
}

fn serving_present(state: &State) -> Result<(), CertsError> {
    if state.path(TLS_CERT).exists() && state.path(TLS_KEY).exists() {
        Ok(())
    } else {
        Err(CertsError::NoServing(state.dir.clone()))
    }
}

/// Writes the bundle, and the Secret and patch that carry the state into a cluster.
fn publish(state: &State, secret: &str, namespace: &str) -> Result<(), CertsError> {
    let read = |name: &str| {
        let path = state.path(name);
        std::fs::read_to_string(&path).map_err(|source| CertsError::Read { path, source })
    };
    let published = Published {
        bundle_pem: state.bundle(),
        cert_pem: read(TLS_CERT)?,
        key_pem: read(TLS_KEY)?,
    };
    write(&state.path(BUNDLE), &published.bundle_pem, false)?;
    write(
        &state.path(SECRET),
        &published.secret_yaml(secret, namespace),
        true,
    )?;
    write(&state.path(PATCH), &published.ca_bundle_patch(1), false)
}

/// What a cluster is given: the CAs to trust, and the serving certificate with its key.
pub struct Published {
    pub bundle_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Published {
    /// The Secret the Deployment mounts.
    pub fn secret_yaml(&self, secret: &str, namespace: &str) -> String {
        let manifest = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": secret, "namespace": namespace },
            "type": "kubernetes.io/tls",
            "data": {
                "ca.crt": STANDARD.encode(&self.bundle_pem),
                "tls.crt": STANDARD.encode(&self.cert_pem),
                "tls.key": STANDARD.encode(&self.key_pem),
            },
        });
        yaml(&manifest)
    }

    /// A JSON patch that puts the bundle into every webhook of the configuration.
    pub fn ca_bundle_patch(&self, webhooks: usize) -> String {
        let bundle = STANDARD.encode(&self.bundle_pem);
        let operations: Vec<_> = (0..webhooks)
            .map(|i| json!({ "op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": bundle }))
            .collect();
        yaml(&json!(operations))
    }
}

fn yaml(value: &serde_json::Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|_| value.to_string())
}

/// Replaces `path` whole: readers see the old content or the new, never a part.
fn write(path: &Path, content: &str, private: bool) -> Result<(), CertsError> {
    let mut staging = path.as_os_str().to_owned();
    staging.push(".tmp");
    let staging = PathBuf::from(staging);
    let result = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let mode = if private { 0o600 } else { 0o644 };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true).mode(mode);
        std::io::Write::write_all(&mut options.open(&staging)?, content.as_bytes())?;
        std::fs::rename(&staging, path)
    })();
    result.map_err(|source| CertsError::Write {
        path: PathBuf::from(path),
        source,
    })
}

fn remove(path: &Path) -> Result<(), CertsError> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(CertsError::Write {
            path: path.to_owned(),
            source: error,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_and_patch_carry_the_pem_in_base64() {
        let published = Published {
            bundle_pem: "bundle".to_owned(),
            cert_pem: "cert".to_owned(),
            key_pem: "key".to_owned(),
        };
        let secret: serde_json::Value =
            serde_saphyr::from_str(&published.secret_yaml("tls", "ns")).unwrap();
        assert_eq!(secret["type"], "kubernetes.io/tls");
        let decode = |value: &serde_json::Value| {
            String::from_utf8(STANDARD.decode(value.as_str().unwrap()).unwrap()).unwrap()
        };
        assert_eq!(decode(&secret["data"]["tls.key"]), "key");
        assert_eq!(decode(&secret["data"]["ca.crt"]), "bundle");
        let patch: serde_json::Value =
            serde_saphyr::from_str(&published.ca_bundle_patch(1)).unwrap();
        assert_eq!(patch[0]["path"], "/webhooks/0/clientConfig/caBundle");
        assert_eq!(decode(&patch[0]["value"]), "bundle");
    }
}
