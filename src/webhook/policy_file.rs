//! The policy file: read at startup (a bad file stops the start), reloaded when it changes (a
//! bad file then keeps the last good configuration, logs why in one sentence and counts a
//! failed reload). Reviews read the configuration through a [`SharedConfig`].

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use arc_swap::ArcSwap;

use super::{
    metrics::{Metrics, ReloadLabels},
    watch::WatchGuard,
};
use crate::policy::config::{Overrides, PolicyConfig, PolicyConfigError};

/// The configuration reviews use, replaced as a whole on reload.
pub type SharedConfig = Arc<ArcSwap<PolicyConfig>>;

/// A [`SharedConfig`] that holds `config`.
pub fn shared(config: PolicyConfig) -> SharedConfig {
    Arc::new(ArcSwap::from_pointee(config))
}

/// Why the policy file was refused, in one sentence naming the flag, the file and the line.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("cannot read --policy-file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid --policy-file {path}: {error}")]
    Invalid {
        path: PathBuf,
        error: PolicyConfigError,
    },
    #[error("invalid {0}")]
    Flag(PolicyConfigError),
    #[error("cannot watch {path} for changes: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

/// Reads the policy file at `path` (if any) and resolves it with the flags' `overrides`.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<PolicyConfig, PolicyFileError> {
    let text = path.map(read).transpose()?;
    resolve(path, text.as_deref(), overrides)
}

fn read(path: &Path) -> Result<String, PolicyFileError> {
    std::fs::read_to_string(path).map_err(|source| PolicyFileError::Read {
        path: path.to_owned(),
        source,
    })
}

fn resolve(
    path: Option<&Path>,
    text: Option<&str>,
    overrides: &Overrides,
) -> Result<PolicyConfig, PolicyFileError> {
    PolicyConfig::resolve(text, overrides).map_err(|error| match path {
        Some(path) if !error.flag => PolicyFileError::Invalid {
            path: path.to_owned(),
            error,
        },
        _ => PolicyFileError::Flag(error),
    })
}

/// A policy file being served from, and the flags that override it.
pub struct PolicyFile {
    path: PathBuf,
    overrides: Overrides,
    current: SharedConfig,
    fingerprint: Mutex<u64>,
    metrics: Arc<Metrics>,
}

impl PolicyFile {
    /// Reads the file; an error here is a startup error.
    pub fn load(
        path: PathBuf,
        overrides: Overrides,
        metrics: Arc<Metrics>,
    ) -> Result<Self, PolicyFileError> {
        let text = read(&path)?;
        let config = resolve(Some(&path), Some(&text), &overrides)?;
        Ok(Self {
            fingerprint: Mutex::new(fingerprint(&text)),
            path,
            overrides,
            current: shared(config),
            metrics,
        })
    }

    /// The configuration reviews should read; it follows reloads.
    pub fn config(&self) -> SharedConfig {
        self.current.clone()
    }

    /// Re-reads the file; returns whether the configuration changed. On error the current
    /// configuration stays.
    pub fn reload(&self) -> Result<bool, PolicyFileError> {
        let result = (|| {
            let text = read(&self.path)?;
            let new = fingerprint(&text);
            let mut seen = self
                .fingerprint
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if *seen == new {
                return Ok(false);
            }
            // Seen even when refused: a bad file is reported once, not every minute.
            *seen = new;
            let config = resolve(Some(&self.path), Some(&text), &self.overrides)?;
            self.current.store(Arc::new(config));
            Ok(true)
        })();
        let label = match &result {
            Ok(false) => return result,
            Ok(true) => "success",
            Err(_) => "failure",
        };
        self.metrics
            .policy_reloads
            .get_or_create(&ReloadLabels { result: label })
            .inc();
        result
    }

    /// Reloads whenever the file changes, until the returned guard is dropped.
    pub fn watch(self: &Arc<Self>) -> Result<WatchGuard, PolicyFileError> {
        let file = Arc::downgrade(self);
        super::watch::watch(&[&self.path], move || {
            let file = file.clone();
            async move {
                let Some(file) = file.upgrade() else { return };
                match file.reload() {
                    Ok(true) => {
                        let config = file.current.load();
                        tracing::info!(
                            mode = config.default.mode.label(),
                            prefixes = ?config.default.policy.prefixes(),
                            namespaces = config.namespaces.len(),
                            "reloaded the policy file"
                        );
                    }
                    Ok(false) => {}
                    Err(error) => tracing::warn!("kept the last good policy: {error}"),
                }
            }
        })
        .map_err(|(path, source)| PolicyFileError::Watch { path, source })
    }
}

fn fingerprint(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Mode;

    const GOOD: &str = "apiVersion: validator-webhook/v1\nkind: Policy\nmode: warn\n";

    #[test]
    fn reload_swaps_on_change_and_keeps_the_last_good_policy_on_a_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, GOOD).unwrap();
        let metrics = Arc::new(Metrics::default());
        let file = PolicyFile::load(path.clone(), Overrides::default(), metrics.clone()).unwrap();
        let config = file.config();
        assert_eq!(config.load().default.mode, Mode::Warn);
        assert!(!file.reload().unwrap(), "nothing changed");

        std::fs::write(&path, format!("{GOOD}mode: nope\n")).unwrap();
        let error = file.reload().unwrap_err().to_string();
        assert!(
            error.starts_with(&format!(
                "invalid --policy-file {}: line 4: ",
                path.display()
            )),
            "{error}"
        );
        assert_eq!(config.load().default.mode, Mode::Warn, "kept the last good");

        std::fs::write(&path, GOOD.replace("warn", "audit")).unwrap();
        assert!(file.reload().unwrap());
        assert_eq!(config.load().default.mode, Mode::Audit);
        let text = metrics.encode();
        for line in [
            r#"validator_webhook_policy_reloads_total{result="failure"} 1"#,
            r#"validator_webhook_policy_reloads_total{result="success"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn a_bad_file_at_startup_is_one_sentence_naming_the_flag_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(
            &path,
            format!("{GOOD}namespaces:\n  \"\": {{mode: audit}}\n"),
        )
        .unwrap();
        let error = PolicyFile::load(path.clone(), Overrides::default(), Arc::default())
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            format!(
                "invalid --policy-file {}: line 5: namespaces: an override needs a namespace name, and this one is empty",
                path.display()
            )
        );
    }
}
