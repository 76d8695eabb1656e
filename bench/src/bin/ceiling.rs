//! `ceiling`: the cost floor of validator-webhook's stack; see `validator_webhook_bench::ceiling`.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Parser;
use validator_webhook_bench::ceiling;

/// Answers every request with one fixed, allowing AdmissionReview, over validator-webhook's own
/// HTTP/1.1 + HTTP/2 and TLS stack, until a signal stops it.
#[derive(Debug, Parser)]
#[command(name = "ceiling")]
struct Args {
    /// Address to serve HTTPS on.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// PEM certificate chain.
    #[arg(long, value_name = "PATH")]
    cert: PathBuf,
    /// PEM private key.
    #[arg(long, value_name = "PATH")]
    key: PathBuf,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ceiling: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let tls = ceiling::tls_config(&args.cert, &args.key)?;
    // The same runtime as the webhook's: one worker per CPU it may run on.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        ceiling::serve(listener, tls).await;
        Ok(())
    })
}
