use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use tracing_subscriber::EnvFilter;
use validator_webhook::{
    certs, check,
    cli::{Cli, Command, ConfigError, LogArgs, LogFormat},
    serve,
};

fn main() -> ExitCode {
    match Cli::parse().into_command() {
        Command::Serve(args) => {
            let started = init_logging(&args.log)
                .map_err(serve::StartError::from)
                .and_then(|()| serve::serve(args));
            match started {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("validator-webhook: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check(args) => {
            let policy = match args.policy.policy() {
                Ok(policy) => policy,
                Err(error) => {
                    eprintln!("validator-webhook: {error}");
                    return ExitCode::from(check::Status::Unreadable as u8);
                }
            };
            let status = check::run(
                &policy,
                &args.files,
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            );
            ExitCode::from(status as u8)
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

fn init_logging(log: &LogArgs) -> Result<(), ConfigError> {
    let filter = EnvFilter::try_new(&log.log_level)
        .map_err(|e| ConfigError::LogLevel(log.log_level.clone(), e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match log.log_format {
        LogFormat::Plain => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
    Ok(())
}
