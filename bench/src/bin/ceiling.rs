//! `ceiling`: the cost floor of validator-webhook's stack; see `validator_webhook_bench::ceiling`.

use std::{net::SocketAddr, path::PathBuf};

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
    /// Answer with the uid of each request, as an API server requires, found by a byte search
    /// rather than a parse.
    #[arg(long)]
    echo_uid: bool,
}

// The same runtime as the webhook's: one worker per CPU it may run on.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = (tokio::net::TcpListener::bind(args.listen).await)
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    ceiling::serve(listener, &args.cert, &args.key, args.echo_uid).await
}
