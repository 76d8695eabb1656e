use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use validator_webhook::cmd::{
    certs, check,
    cli::{Cli, Command, ConfigError, LogArgs, LogFormat},
    serve, vap,
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // `check` promises 3 for a usage error; help and version are not errors.
            return match error.use_stderr() {
                true => ExitCode::from(check::Status::Usage as u8),
                false => ExitCode::SUCCESS,
            };
        }
    };
    match cli.into_command() {
        Command::Serve(args) => {
            // The guard flushes the log when serving ends.
            let started = init_logging(&args.log)
                .map_err(serve::StartError::from)
                .and_then(|_flush_on_exit| serve::serve(args));
            match started {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("validator-webhook: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check(args) => {
            let config = match args.policy.config() {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("validator-webhook: {error}");
                    return ExitCode::from(check::Status::Usage as u8);
                }
            };
            let options = check::Options {
                format: args.output,
                quiet: args.quiet,
                strict: args.strict,
                exclude: args.exclude,
                namespace: args.namespace.clone(),
            };
            let out = &mut std::io::BufWriter::new(std::io::stdout().lock());
            let checked = if args.cluster {
                let scope = match (args.all_namespaces, args.namespace) {
                    (true, _) => check::cluster::Scope::All,
                    (false, Some(namespace)) => check::cluster::Scope::Namespace(namespace),
                    (false, None) => check::cluster::Scope::Default,
                };
                check::cluster::run(&config, &scope, &options, out)
            } else {
                check::run(&config, &args.files, &options, out)
            };
            match checked {
                Ok(status) => ExitCode::from(status as u8),
                Err(error) => {
                    eprintln!("validator-webhook: {error}");
                    ExitCode::from(check::Status::Usage as u8)
                }
            }
        }
        Command::Vap(args) => {
            let printed = args
                .policy
                .config()
                .map_err(|error| error.to_string())
                .and_then(|config| {
                    vap::render(&config.default.policy, config.default.mode)
                        .map_err(|error| error.to_string())
                });
            match printed {
                Ok(yaml) => {
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("validator-webhook: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Certs(args) => match certs::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("validator-webhook: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Logs go to stderr from a thread of their own, in batches: a review formats its line and
/// moves on instead of waiting for a write per denial. Nothing is dropped when the queue fills.
fn init_logging(log: &LogArgs) -> Result<WorkerGuard, ConfigError> {
    let filter = EnvFilter::try_new(&log.log_level)
        .map_err(|e| ConfigError::LogLevel(log.log_level.clone(), e.to_string()))?;
    let stderr = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    let (writer, guard) = NonBlockingBuilder::default()
        // The default queue of 128k lines is preallocated: megabytes for a burst of denials.
        .buffered_lines_limit(4096)
        .lossy(false)
        .thread_name("log-writer")
        .finish(stderr);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    match log.log_format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    Ok(guard)
}
