//! The command line. Every flag can also be set by an environment variable
//! `VALIDATOR_WEBHOOK_<FLAG>`, which is how the Deployment configures it.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    policy::{
        Mode, OnUpdate,
        config::{Overrides, PolicyConfig},
    },
    webhook::policy_file::{self, PolicyFileError},
};

#[derive(Debug, Parser)]
#[command(
    name = "validator-webhook",
    version,
    about = "Admits only workloads whose container image names start with an allowed prefix.",
    long_about = "Admits only workloads whose container image names start with an allowed prefix.\n\n\
        Without a subcommand it serves reviews, as `serve` does.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

impl Cli {
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve AdmissionReviews over HTTPS (the default).
    Serve(ServeArgs),
    /// Evaluate manifests or AdmissionReview files offline, with the same policy and messages.
    ///
    /// Reads YAML (several documents per file) or JSON (one object, or several concatenated):
    /// Kubernetes objects, `List`s of them, or AdmissionReviews, and reports every document.
    /// Each is judged as the webhook would judge it in its namespace (an object that names none
    /// goes to --namespace, or `default`): with that namespace's prefixes and mode from
    /// --policy-file and the flags. A denial in a namespace in `warn` or `audit` mode is
    /// reported as `warned` or `audited` and does not fail the check.
    /// Exits 0 when everything is allowed, warned, audited, not inspected or skipped, 1 when
    /// anything is denied, 2 when some input cannot be read, and 3 on a usage or configuration
    /// error.
    Check(CheckArgs),
    /// Write a CA, a serving certificate for the webhook's Service, the Secret holding them and
    /// the patch that puts the CA into the ValidatingWebhookConfiguration: what a cluster
    /// without cert-manager needs (`kubectl apply -k deploy/overlays/certs`).
    Certs(CertsArgs),
    /// Print a ValidatingAdmissionPolicy and its binding that enforce the same policy in the API
    /// server itself, without the webhook (`validator-webhook vap | kubectl apply -f -`).
    Vap(VapArgs),
}

/// The policy's settings. Each flag overrides the same setting in `--policy-file`; what
/// neither sets takes its default.
#[derive(Debug, Clone, Args)]
pub struct PolicyArgs {
    /// An image name prefix to allow; repeat the flag (or separate with commas) to allow
    /// several. Default: `msalinasc_`.
    #[arg(
        long = "allowed-prefix",
        value_name = "PREFIX",
        env = "VALIDATOR_WEBHOOK_ALLOWED_PREFIX",
        value_delimiter = ','
    )]
    pub allowed_prefixes: Vec<String>,

    /// What a denial does: `enforce` denies; `warn` admits with a warning per offending image;
    /// `audit` admits and records the denial in the audit log and in metrics. Default: `enforce`.
    #[arg(long, value_enum, env = "VALIDATOR_WEBHOOK_MODE")]
    pub mode: Option<Mode>,

    /// Which images of an UPDATE are judged: `all`, or only those the old object does not
    /// have (`changed`). Default: `all`.
    #[arg(long, value_enum, env = "VALIDATOR_WEBHOOK_ON_UPDATE")]
    pub on_update: Option<OnUpdate>,

    /// A YAML policy file (prefixes, mode, per-namespace overrides, exemptions), reloaded when
    /// it changes.
    #[arg(long, value_name = "PATH", env = "VALIDATOR_WEBHOOK_POLICY_FILE")]
    pub policy_file: Option<PathBuf>,
}

impl PolicyArgs {
    /// The settings given as flags.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            prefixes: (!self.allowed_prefixes.is_empty()).then(|| self.allowed_prefixes.clone()),
            mode: self.mode,
            on_update: self.on_update,
        }
    }

    /// The whole configuration: the policy file, if any, with the flags over it.
    pub fn config(&self) -> Result<PolicyConfig, ConfigError> {
        policy_file::load(self.policy_file.as_deref(), &self.overrides())
            .map_err(ConfigError::Policy)
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS listener for reviews and health checks.
    #[arg(
        long,
        value_name = "ADDR",
        env = "VALIDATOR_WEBHOOK_LISTEN",
        default_value = "0.0.0.0:8443"
    )]
    pub listen: SocketAddr,

    /// Address of the plain-HTTP listener for Prometheus metrics.
    #[arg(
        long,
        value_name = "ADDR",
        env = "VALIDATOR_WEBHOOK_METRICS_LISTEN",
        default_value = "0.0.0.0:9090"
    )]
    pub metrics_listen: SocketAddr,

    /// PEM certificate chain to serve; reloaded when it changes. Without it, a self-signed
    /// certificate for localhost is generated.
    #[arg(long, value_name = "PATH", env = "VALIDATOR_WEBHOOK_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of the certificate; reloaded when it changes.
    #[arg(long, value_name = "PATH", env = "VALIDATOR_WEBHOOK_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// How long to go on serving after SIGTERM or SIGINT, reporting not ready on /readyz and
    /// answering HTTP/1.1 with `Connection: close`, so the endpoint leaves the Service before
    /// the listener closes; e.g. `5s`, `500ms`, or `0` to stop at once.
    #[arg(
        long,
        value_name = "DURATION",
        env = "VALIDATOR_WEBHOOK_SHUTDOWN_DELAY",
        default_value = "5s",
        value_parser = parse_duration
    )]
    pub shutdown_delay: Duration,

    /// Seconds that reviews in flight get to finish once the listener has closed.
    #[arg(
        long,
        value_name = "SECONDS",
        env = "VALIDATOR_WEBHOOK_SHUTDOWN_TIMEOUT",
        default_value_t = 15
    )]
    pub shutdown_timeout: u64,

    /// Open HTTPS connections allowed at once. Over it, a newcomer closes the oldest connection
    /// that has not sent a request yet, or is closed at once if there is none.
    #[arg(
        long,
        value_name = "COUNT",
        env = "VALIDATOR_WEBHOOK_MAX_CONNECTIONS",
        default_value_t = crate::webhook::server::MAX_CONNECTIONS,
        value_parser = parse_count
    )]
    pub max_connections: usize,

    /// How long a connection may stay open with no request in progress; e.g. `120s`.
    #[arg(
        long,
        value_name = "DURATION",
        env = "VALIDATOR_WEBHOOK_IDLE_TIMEOUT",
        default_value = "120s",
        value_parser = parse_positive_duration
    )]
    pub idle_timeout: Duration,

    /// Bytes of request bodies held in memory at once, e.g. `16Mi`; a review over it waits
    /// briefly, then gets 429 with Retry-After. Default: a quarter of the container's memory
    /// limit (cgroup v2 or v1), or 64Mi without one.
    #[arg(
        long,
        value_name = "BYTES",
        env = "VALIDATOR_WEBHOOK_MAX_BODY_MEMORY",
        value_parser = parse_bytes
    )]
    pub max_body_memory: Option<u64>,

    #[command(flatten)]
    pub policy: PolicyArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

impl ServeArgs {
    /// The certificate and key files, which come together or not at all.
    pub fn tls_files(&self) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Ok(Some((cert.clone(), key.clone()))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError::HalfTls {
                set: "--tls-cert-file",
                missing: "--tls-key-file",
            }),
            (None, Some(_)) => Err(ConfigError::HalfTls {
                set: "--tls-key-file",
                missing: "--tls-cert-file",
            }),
        }
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout)
    }
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|e| format!("{e} (write e.g. 5s, 500ms or 0)"))
}

fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    match parse_duration(value)? {
        Duration::ZERO => Err("must be more than zero (write e.g. 120s)".to_owned()),
        duration => Ok(duration),
    }
}

fn parse_count(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) | Err(_) => Err("must be a whole number of at least 1".to_owned()),
        Ok(count) => Ok(count),
    }
}

/// A byte count, plain or with a binary suffix: `1048576`, `512Ki`, `16Mi`, `1Gi`.
fn parse_bytes(value: &str) -> Result<u64, String> {
    let invalid = || format!("{value:?} is not a size (write e.g. 16Mi, 512Ki or 1048576)");
    let (digits, unit) = match value.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => value.split_at(at),
        None => (value, ""),
    };
    let shift = match unit {
        "" => 0,
        "Ki" => 10,
        "Mi" => 20,
        "Gi" => 30,
        _ => return Err(invalid()),
    };
    let count: u64 = digits.parse().map_err(|_| invalid())?;
    match count.checked_mul(1 << shift) {
        Some(0) => Err("must be more than zero".to_owned()),
        Some(bytes) => Ok(bytes),
        None => Err(invalid()),
    }
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format: `plain` for people, `json` for log pipelines.
    #[arg(
        long,
        value_enum,
        env = "VALIDATOR_WEBHOOK_LOG_FORMAT",
        default_value = "plain"
    )]
    pub log_format: LogFormat,

    /// Log level or filter directives, e.g. `info` or `validator_webhook=debug`.
    #[arg(
        long,
        value_name = "FILTER",
        env = "VALIDATOR_WEBHOOK_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,

    /// Files or directories to check (directories are walked for .yaml, .yml and .json files);
    /// `-` reads standard input.
    #[arg(
        required_unless_present = "cluster",
        conflicts_with = "cluster",
        value_name = "PATH"
    )]
    pub files: Vec<PathBuf>,

    /// Check the workloads of a live cluster instead of files: every Pod, PodTemplate,
    /// ReplicationController, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job and CronJob,
    /// listed with the kubeconfig `kubectl` would use.
    #[arg(long, env = "VALIDATOR_WEBHOOK_CLUSTER")]
    pub cluster: bool,

    /// The namespace of objects that name none, as `kubectl apply -n` gives it (default:
    /// `default`; kubectl itself would use the kubeconfig context's). With --cluster: the
    /// namespace to list (default: the kubeconfig context's).
    #[arg(
        long,
        short = 'n',
        value_name = "NAMESPACE",
        env = "VALIDATOR_WEBHOOK_NAMESPACE"
    )]
    pub namespace: Option<String>,

    /// With --cluster: list every namespace.
    #[arg(
        long,
        short = 'A',
        env = "VALIDATOR_WEBHOOK_ALL_NAMESPACES",
        conflicts_with = "namespace"
    )]
    pub all_namespaces: bool,

    /// Leave out walked files and directories that match this glob (e.g. `**/templates/**`,
    /// `values*.yaml`); repeat the flag for several.
    #[arg(
        long,
        value_name = "GLOB",
        env = "VALIDATOR_WEBHOOK_EXCLUDE",
        value_delimiter = ','
    )]
    pub exclude: Vec<String>,

    /// How to write the results.
    #[arg(
        long,
        value_enum,
        env = "VALIDATOR_WEBHOOK_OUTPUT",
        default_value = "text"
    )]
    pub output: crate::cmd::check::output::Format,

    /// Also fail on kinds the policy does not inspect that carry a pod template (Argo
    /// Rollouts, OpenKruise workloads, `extensions/v1beta1` Deployments).
    #[arg(long, env = "VALIDATOR_WEBHOOK_STRICT")]
    pub strict: bool,

    /// Print only denials (warned and audited ones too) and documents that cannot be read.
    #[arg(long, short, env = "VALIDATOR_WEBHOOK_QUIET")]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// The webhook's Service; the certificate is for `<service>.<namespace>.svc`.
    #[arg(
        long,
        env = "VALIDATOR_WEBHOOK_SERVICE",
        default_value = "validator-webhook-service"
    )]
    pub service: String,

    /// The namespace of the Service and the Secret.
    #[arg(
        long,
        env = "VALIDATOR_WEBHOOK_NAMESPACE",
        default_value = "validator-webhook"
    )]
    pub namespace: String,

    /// The Secret the Deployment mounts.
    #[arg(
        long,
        env = "VALIDATOR_WEBHOOK_SECRET",
        default_value = "validator-webhook-tls"
    )]
    pub secret: String,

    /// How long a new CA and the serving certificate are valid (the certificate never outlives
    /// its CA).
    #[arg(
        long,
        value_name = "DAYS",
        env = "VALIDATOR_WEBHOOK_VALIDITY_DAYS",
        default_value_t = 365,
        value_parser = clap::value_parser!(i64).range(1..=36500)
    )]
    pub validity_days: i64,

    /// Where to write ca.crt, ca.key, tls.crt, tls.key, ca-bundle.crt, secret.yaml and
    /// ca-bundle-patch.yaml. A CA already there is kept: a run renews the serving certificate.
    #[arg(
        long,
        value_name = "DIR",
        env = "VALIDATOR_WEBHOOK_OUT_DIR",
        default_value = "deploy/overlays/certs/generated"
    )]
    pub out_dir: PathBuf,

    /// One stage of replacing the CA, applied (`kubectl apply -k`) and rolled out before the
    /// next: `begin` adds a new CA to the published bundle, `switch` issues the serving
    /// certificate from it, `finish` drops the old CA from the bundle.
    #[arg(
        long,
        value_enum,
        value_name = "STAGE",
        env = "VALIDATOR_WEBHOOK_ROTATE_CA"
    )]
    pub rotate_ca: Option<CaRotation>,
}

/// The stages of a CA rotation, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CaRotation {
    /// Create the next CA and publish a bundle of the current and the next.
    Begin,
    /// Issue the serving certificate from the next CA, which becomes the current one.
    Switch,
    /// Publish only the current CA, forgetting the old one.
    Finish,
}

#[derive(Debug, Clone, Args)]
pub struct VapArgs {
    /// The prefixes and the mode (`enforce` → Deny, `warn` → Warn, `audit` → Audit), from the
    /// flags or the policy file as `serve` reads them.
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// A configuration that cannot start, in one sentence naming the flag.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{set} is set but {missing} is not: give both TLS files or neither")]
    HalfTls {
        set: &'static str,
        missing: &'static str,
    },
    #[error(transparent)]
    Policy(PolicyFileError),
    #[error("invalid --log-level {0:?}: {1}")]
    LogLevel(String, String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("validator-webhook").chain(args.iter().copied()))
            .unwrap()
            .into_command()
    }

    #[test]
    fn serves_by_default_with_the_default_prefix() {
        let Command::Serve(args) = parse(&[]) else {
            panic!("not serve")
        };
        assert_eq!(args.listen.to_string(), "0.0.0.0:8443");
        assert_eq!(args.metrics_listen.to_string(), "0.0.0.0:9090");
        assert_eq!(
            args.policy.config().unwrap().default.policy.prefixes(),
            ["msalinasc_"]
        );
        assert_eq!(args.policy.config().unwrap().default.mode, Mode::Enforce);
        assert!(args.tls_files().unwrap().is_none());
        assert_eq!(args.shutdown_delay, Duration::from_secs(5));
    }

    #[test]
    fn takes_the_shutdown_delay_as_a_duration() {
        for (given, expected) in [
            ("0", Duration::ZERO),
            ("1500ms", Duration::from_millis(1500)),
        ] {
            let Command::Serve(args) = parse(&["--shutdown-delay", given]) else {
                panic!("not serve")
            };
            assert_eq!(args.shutdown_delay, expected, "{given}");
        }
        let refused = Cli::try_parse_from(["validator-webhook", "--shutdown-delay", "soon"]);
        assert!(
            refused
                .unwrap_err()
                .to_string()
                .contains("--shutdown-delay")
        );
    }

    #[test]
    fn takes_connection_and_memory_limits() {
        let Command::Serve(args) = parse(&[]) else {
            panic!("not serve")
        };
        assert_eq!(args.max_connections, 1000);
        assert_eq!(args.idle_timeout, Duration::from_secs(120));
        assert_eq!(args.max_body_memory, None);
        let Command::Serve(args) = parse(&[
            "--max-connections",
            "50",
            "--idle-timeout",
            "30s",
            "--max-body-memory",
            "16Mi",
        ]) else {
            panic!("not serve")
        };
        assert_eq!(args.max_connections, 50);
        assert_eq!(args.idle_timeout, Duration::from_secs(30));
        assert_eq!(args.max_body_memory, Some(16 << 20));
        for (flag, value) in [
            ("--max-connections", "0"),
            ("--idle-timeout", "0"),
            ("--max-body-memory", "16MB"),
            ("--max-body-memory", "0"),
        ] {
            let refused = Cli::try_parse_from(["validator-webhook", flag, value]);
            let message = refused.unwrap_err().to_string();
            assert!(message.contains(flag), "{flag} {value}: {message}");
        }
    }

    #[test]
    fn takes_several_prefixes_repeated_or_comma_separated() {
        let Command::Serve(args) = parse(&[
            "serve",
            "--allowed-prefix",
            "a_,b_",
            "--allowed-prefix",
            "c_",
        ]) else {
            panic!("not serve")
        };
        assert_eq!(args.policy.allowed_prefixes, ["a_", "b_", "c_"]);
    }

    #[test]
    fn refuses_a_certificate_without_its_key_in_one_sentence() {
        let Command::Serve(args) = parse(&["--tls-cert-file", "tls.crt"]) else {
            panic!("not serve")
        };
        assert_eq!(
            args.tls_files().unwrap_err().to_string(),
            "--tls-cert-file is set but --tls-key-file is not: give both TLS files or neither"
        );
    }

    #[test]
    fn check_needs_at_least_one_file() {
        let parsed = Cli::try_parse_from(["validator-webhook", "check"]);
        assert!(parsed.is_err());
        let Command::Check(args) = parse(&["check", "-"]) else {
            panic!("not check")
        };
        assert_eq!(args.files, [PathBuf::from("-")]);
    }

    #[test]
    fn vap_takes_the_prefixes_and_the_mode() {
        let Command::Vap(args) = parse(&["vap", "--allowed-prefix", "a_", "--mode", "warn"]) else {
            panic!("not vap")
        };
        assert_eq!(args.policy.allowed_prefixes, ["a_"]);
        assert_eq!(args.policy.config().unwrap().default.mode, Mode::Warn);
        let Command::Vap(args) = parse(&["vap"]) else {
            panic!("not vap")
        };
        assert_eq!(args.policy.config().unwrap().default.mode, Mode::Enforce);
    }

    #[test]
    fn every_flag_has_an_environment_variable() {
        use clap::CommandFactory;
        let command = Cli::command();
        let mut missing = Vec::new();
        for sub in std::iter::once(&command).chain(command.get_subcommands()) {
            for arg in sub.get_arguments() {
                let is_flag = arg.get_long().is_some()
                    && !matches!(arg.get_id().as_str(), "help" | "version");
                if is_flag && arg.get_env().is_none() {
                    missing.push(format!(
                        "{} --{}",
                        sub.get_name(),
                        arg.get_long().unwrap_or_default()
                    ));
                }
                if let Some(env) = arg.get_env() {
                    let expected = format!(
                        "VALIDATOR_WEBHOOK_{}",
                        arg.get_long()
                            .unwrap_or_default()
                            .to_uppercase()
                            .replace('-', "_")
                    );
                    assert_eq!(env.to_str(), Some(expected.as_str()));
                }
            }
        }
        assert!(missing.is_empty(), "flags without env: {missing:?}");
    }
}
