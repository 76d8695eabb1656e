//! The policy's whole configuration, resolved: the rules (prefixes, exemptions, UPDATE
//! handling, mode) for every namespace, from the policy file and the flags that override it.
//! Pure: the caller reads the file; anything that wants the mode and prefixes (`serve`,
//! `check`, a generator of other policy formats) calls [`PolicyConfig::resolve`].
//!
//! The file is a small versioned YAML document:
//!
//! ```yaml
//! apiVersion: validator-webhook/v1
//! kind: Policy
//! allowedPrefixes: [msalinasc_]
//! mode: enforce            # enforce | warn | audit
//! onUpdate: all            # all | changed
//! exemptions:              # exact image references, or digests matching any reference
//! - registry.example.com/tools/debug:1.0
//! - sha256:0123…
//! namespaces:              # keyed by namespace name, which the API server sets
//!   legacy:
//!     mode: warn
//!     allowedPrefixes: [legacy_, msalinasc_]
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{DEFAULT_PREFIX, Exemptions, Mode, OnUpdate, Policy, image};

pub const API_VERSION: &str = "validator-webhook/v1";
pub const KIND: &str = "Policy";

/// What to do in one namespace: the rule, and what a denial does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub policy: Policy,
    pub mode: Mode,
}

/// The resolved configuration: the rules for every namespace, and the exceptions by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    pub default: Rules,
    pub namespaces: BTreeMap<String, Rules>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Policy::default().into()
    }
}

/// A policy enforced everywhere.
impl From<Policy> for PolicyConfig {
    fn from(policy: Policy) -> Self {
        Self {
            default: Rules {
                policy,
                mode: Mode::Enforce,
            },
            namespaces: BTreeMap::new(),
        }
    }
}

/// Settings given as flags; each replaces the file's top-level value. The file's
/// per-namespace overrides still apply on top.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub prefixes: Option<Vec<String>>,
    pub mode: Option<Mode>,
    pub on_update: Option<OnUpdate>,
}

/// Why a policy file or setting was refused: one sentence, naming the key and, for a file,
/// its line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|line| format!("line {line}: ")).unwrap_or_default())]
pub struct PolicyConfigError {
    pub line: Option<u64>,
    pub message: String,
    /// Whether a flag is at fault rather than the file.
    pub flag: bool,
}

impl PolicyConfigError {
    fn at(line: u64, message: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            message: message.into(),
            flag: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    api_version: Spanned<String>,
    kind: Spanned<String>,
    allowed_prefixes: Option<Spanned<Vec<Spanned<String>>>>,
    mode: Option<Mode>,
    on_update: Option<OnUpdate>,
    #[serde(default)]
    exemptions: Vec<Spanned<String>>,
    #[serde(default)]
    namespaces: HashMap<Spanned<String>, Namespace>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Namespace {
    allowed_prefixes: Option<Spanned<Vec<Spanned<String>>>>,
    mode: Option<Mode>,
}

impl PolicyConfig {
    /// The configuration from the policy file's text (if any) and the flags.
    pub fn resolve(file: Option<&str>, overrides: &Overrides) -> Result<Self, PolicyConfigError> {
        let file = file.map(parse).transpose()?;
        let file = file.as_ref();
        let exemptions = file
            .map(|file| exemptions(&file.exemptions))
            .transpose()?
            .unwrap_or_default();
        let on_update = overrides
            .on_update
            .or(file.and_then(|file| file.on_update))
            .unwrap_or_default();
        let policy = |prefixes: Vec<String>| {
            Ok::<_, super::PrefixError>(
                Policy::new(prefixes)?
                    .with_exemptions(exemptions.clone())
                    .with_on_update(on_update),
            )
        };
        let default_prefixes = match (&overrides.prefixes, file) {
            (Some(prefixes), _) => policy(prefixes.clone()).map_err(|error| PolicyConfigError {
                line: None,
                message: format!("--allowed-prefix: {error}"),
                flag: true,
            })?,
            (
                None,
                Some(File {
                    allowed_prefixes: Some(prefixes),
                    ..
                }),
            ) => spanned_prefixes(prefixes, "allowedPrefixes", &policy)?,
            (None, _) => {
                policy(vec![DEFAULT_PREFIX.to_owned()]).map_err(|error| PolicyConfigError {
                    line: None,
                    message: error.to_string(),
                    flag: true,
                })?
            }
        };
        let default = Rules {
            policy: default_prefixes,
            mode: overrides
                .mode
                .or(file.and_then(|file| file.mode))
                .unwrap_or_default(),
        };
        let mut namespaces = BTreeMap::new();
        for (name, namespace) in file.map(|file| &file.namespaces).into_iter().flatten() {
            let line = name.referenced.line();
            if name.value.is_empty() {
                return Err(PolicyConfigError::at(
                    line,
                    "namespaces: an override needs a namespace name, and this one is empty",
                ));
            }
            if !is_namespace_name(&name.value) {
                return Err(PolicyConfigError::at(
                    line,
                    format!(
                        "namespaces: {:?} is not a namespace name (at most 63 lower case \
                         letters, digits and '-', starting and ending with a letter or digit)",
                        name.value
                    ),
                ));
            }
            let key = format!("namespaces.{}.allowedPrefixes", name.value);
            let policy = match &namespace.allowed_prefixes {
                Some(prefixes) => spanned_prefixes(prefixes, &key, &policy)?,
                None => default.policy.clone(),
            };
            let mode = namespace.mode.unwrap_or(default.mode);
            namespaces.insert(name.value.clone(), Rules { policy, mode });
        }
        Ok(Self {
            default,
            namespaces,
        })
    }

    /// The rules for a request in `namespace`.
    pub fn rules(&self, namespace: Option<&str>) -> &Rules {
        namespace
            .and_then(|namespace| self.namespaces.get(namespace))
            .unwrap_or(&self.default)
    }
}

fn parse(text: &str) -> Result<File, PolicyConfigError> {
    let file: File = serde_saphyr::from_str(text).map_err(|error| {
        let line = error.location().map(|location| location.line());
        let message = error.without_snippet().to_string();
        // The location is given on its own; keep only the sentence.
        let message = message
            .split_once(" at line ")
            .map_or(message.as_str(), |(sentence, _)| sentence)
            .trim()
            .to_owned();
        PolicyConfigError {
            line,
            message,
            flag: false,
        }
    })?;
    if file.api_version.value != API_VERSION {
        return Err(PolicyConfigError::at(
            file.api_version.referenced.line(),
            format!(
                "apiVersion: {:?} is not {API_VERSION:?}",
                file.api_version.value
            ),
        ));
    }
    if file.kind.value != KIND {
        return Err(PolicyConfigError::at(
            file.kind.referenced.line(),
            format!("kind: {:?} is not {KIND:?}", file.kind.value),
        ));
    }
    Ok(file)
}

/// Whether `name` can name a namespace: an RFC 1123 label.
fn is_namespace_name(name: &str) -> bool {
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    name.len() <= 63
        && edge(name.bytes().next())
        && edge(name.bytes().last())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn spanned_prefixes(
    prefixes: &Spanned<Vec<Spanned<String>>>,
    key: &str,
    policy: &impl Fn(Vec<String>) -> Result<Policy, super::PrefixError>,
) -> Result<Policy, PolicyConfigError> {
    // Check each prefix alone first, so the error names its line.
    for prefix in &prefixes.value {
        policy(vec![prefix.value.clone()]).map_err(|error| {
            PolicyConfigError::at(prefix.referenced.line(), format!("{key}: {error}"))
        })?;
    }
    let all = prefixes.value.iter().map(|p| p.value.clone()).collect();
    policy(all).map_err(|error| {
        PolicyConfigError::at(prefixes.referenced.line(), format!("{key}: {error}"))
    })
}

fn exemptions(entries: &[Spanned<String>]) -> Result<Exemptions, PolicyConfigError> {
    let mut references = BTreeSet::new();
    let mut digests = BTreeSet::new();
    for entry in entries {
        let value = entry.value.as_str();
        let line = entry.referenced.line();
        if let Some(hex) = value.strip_prefix("sha256:") {
            if hex.len() != 64
                || !hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return Err(PolicyConfigError::at(
                    line,
                    format!(
                        "exemptions: {value:?} is not a digest: sha256: and 64 lower-case hex digits"
                    ),
                ));
            }
            digests.insert(value.to_owned());
        } else {
            image::name_of(value).map_err(|why| {
                PolicyConfigError::at(
                    line,
                    format!("exemptions: {value:?} is not an image reference or a sha256: digest ({why})"),
                )
            })?;
            references.insert(value.to_owned());
        }
    }
    Ok(Exemptions {
        references,
        digests,
    })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const HEADER: &str = "apiVersion: validator-webhook/v1\nkind: Policy\n";

    fn resolve(body: &str) -> Result<PolicyConfig, PolicyConfigError> {
        PolicyConfig::resolve(Some(&format!("{HEADER}{body}")), &Overrides::default())
    }

    #[test]
    fn reads_every_setting_and_the_namespace_overrides() {
        let config = resolve(
            "allowedPrefixes: [a_, b_]\nmode: warn\nonUpdate: changed\n\
             exemptions:\n- docker.io/library/busybox:1.36\n\
             - sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\
             namespaces:\n  legacy:\n    mode: audit\n  team:\n    allowedPrefixes: [team_]\n",
        )
        .unwrap();
        let default = config.rules(None);
        assert_eq!(default.mode, Mode::Warn);
        assert_eq!(default.policy.prefixes(), ["a_", "b_"]);
        assert_eq!(default.policy.on_update(), OnUpdate::Changed);
        assert!(
            default
                .policy
                .exemptions()
                .exempts("docker.io/library/busybox:1.36")
        );
        assert!(
            default.policy.exemptions().exempts(
                "x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            )
        );
        assert!(!default.policy.exemptions().exempts("busybox:1.36"));
        let legacy = config.rules(Some("legacy"));
        assert_eq!(
            (legacy.mode, legacy.policy.prefixes()),
            (Mode::Audit, &["a_".to_owned(), "b_".to_owned()][..])
        );
        let team = config.rules(Some("team"));
        assert_eq!(
            (team.mode, team.policy.prefixes()),
            (Mode::Warn, &["team_".to_owned()][..])
        );
        assert!(
            team.policy
                .exemptions()
                .exempts("docker.io/library/busybox:1.36")
        );
        assert_eq!(config.rules(Some("other")), default);
    }

    #[test]
    fn flags_replace_the_top_level_values_but_not_the_namespace_overrides() {
        let overrides = Overrides {
            prefixes: Some(vec!["flag_".into()]),
            mode: Some(Mode::Enforce),
            on_update: None,
        };
        let text = format!(
            "{HEADER}allowedPrefixes: [file_]\nmode: audit\nnamespaces:\n  n:\n    mode: warn\n"
        );
        let config = PolicyConfig::resolve(Some(&text), &overrides).unwrap();
        assert_eq!(config.default.mode, Mode::Enforce);
        assert_eq!(config.default.policy.prefixes(), ["flag_"]);
        assert_eq!(config.rules(Some("n")).mode, Mode::Warn);
        assert_eq!(config.rules(Some("n")).policy.prefixes(), ["flag_"]);
    }

    #[test]
    fn without_a_file_or_flags_enforces_the_default_prefix() {
        let config = PolicyConfig::resolve(None, &Overrides::default()).unwrap();
        assert_eq!(config, PolicyConfig::default());
    }

    #[rstest]
    #[case::unknown_key("allowedPrefix: [a_]\n", "line 3: unknown field `allowedPrefix`")]
    #[case::unknown_namespace_key(
        "namespaces:\n  n:\n    prefixes: [a_]\n",
        "line 5: unknown field `prefixes`"
    )]
    #[case::slash_prefix(
        "allowedPrefixes:\n- ok_\n- team/\n",
        "line 5: allowedPrefixes: allowed prefix \"team/\" can never match"
    )]
    #[case::colon_prefix(
        "allowedPrefixes: [\"a:\"]\n",
        "line 3: allowedPrefixes: allowed prefix \"a:\" can never match"
    )]
    #[case::upper_case_prefix(
        "namespaces:\n  n:\n    allowedPrefixes: [Team_]\n",
        "line 5: namespaces.n.allowedPrefixes: allowed prefix \"Team_\" can never match"
    )]
    #[case::no_prefixes(
        "allowedPrefixes: []\n",
        "line 3: allowedPrefixes: at least one allowed prefix is needed"
    )]
    #[case::unknown_mode("mode: deny\n", "line 3: unknown variant `deny`")]
    #[case::empty_namespace(
        "namespaces:\n  \"\":\n    mode: warn\n",
        "line 4: namespaces: an override needs a namespace name, and this one is empty"
    )]
    #[case::namespace_not_a_name(
        "namespaces:\n  Team A:\n    mode: warn\n",
        "line 4: namespaces: \"Team A\" is not a namespace name"
    )]
    #[case::bad_exemption(
        "exemptions:\n- Not/Valid\n",
        "line 4: exemptions: \"Not/Valid\" is not an image reference"
    )]
    #[case::bad_digest(
        "exemptions: [\"sha256:abc\"]\n",
        "line 3: exemptions: \"sha256:abc\" is not a digest"
    )]
    fn refuses_bad_files_naming_the_key_and_line(#[case] body: &str, #[case] start: &str) {
        let error = resolve(body).unwrap_err().to_string();
        assert!(error.starts_with(start), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
    }

    #[test]
    fn refuses_another_version_or_kind() {
        let error = PolicyConfig::resolve(
            Some("apiVersion: v2\nkind: Policy\n"),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 1: apiVersion: \"v2\" is not \"validator-webhook/v1\""
        );
        let error = PolicyConfig::resolve(
            Some("apiVersion: validator-webhook/v1\nkind: Config\n"),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 2: kind: \"Config\" is not \"Policy\""
        );
    }
}
