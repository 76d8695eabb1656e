//! `validator-webhook serve`: from configuration to a running server, and back on a signal.

use std::{io, net::SocketAddr, path::PathBuf, sync::Arc};

use super::cli::{ConfigError, ServeArgs};
use crate::{
    pki::SelfSigned,
    webhook::{
        budget::{self, BodyBudget},
        handler::Webhook,
        metrics::{self, Metrics},
        policy_file::{self, PolicyFile, PolicyFileError},
        server::{self, ServeError, Server, Timeouts},
        tls::{CertStore, Loaded, TlsError},
    },
};

/// An AdmissionReview of a Deployment with an unapproved init container image, written next to
/// the generated certificate so the printed `curl` line works as it is.
const EXAMPLE_REVIEW: &str = include_str!("../../examples/review-bad-deployment.json");

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Policy(#[from] PolicyFileError),
    #[error("cannot configure TLS: {0}")]
    TlsConfig(#[from] rustls::Error),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("cannot start the runtime: {0}")]
    Runtime(io::Error),
}

pub fn serve(args: ServeArgs) -> Result<(), StartError> {
    let metrics = Arc::new(Metrics::default());
    // Read before anything starts, so a bad file or flag stops the start.
    let policy_file = match &args.policy.policy_file {
        Some(path) => Some(Arc::new(PolicyFile::load(
            path.clone(),
            args.policy.overrides(),
            metrics.clone(),
        )?)),
        None => None,
    };
    let config = match &policy_file {
        Some(file) => file.config(),
        None => policy_file::shared(args.policy.config()?),
    };
    let tls_files = args.tls_files()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    runtime.block_on(async move {
        let (certificates, try_it) = match tls_files {
            Some((cert, key)) => (CertStore::from_files(cert, key, metrics.clone())?, None),
            None => {
                let (generated, try_it) = local_certificate(args.listen)?;
                (
                    CertStore::fixed(Loaded::generated(&generated)?, metrics.clone()),
                    Some(try_it),
                )
            }
        };
        let certificates = Arc::new(certificates);
        let _watch = certificates.watch()?;
        let _policy_watch = policy_file.as_ref().map(PolicyFile::watch).transpose()?;
        let (prefixes, mode, namespaces) = {
            let config = config.load();
            (
                config.default.policy.prefixes().to_vec(),
                config.default.mode.label(),
                config.namespaces.keys().cloned().collect::<Vec<_>>(),
            )
        };
        let budget = match args.max_body_memory {
            Some(bytes) => bytes,
            None => budget::from_memory_limit(budget::container_memory_limit()),
        };
        tracing::info!(bytes = budget, "request bodies held in memory at once");
        let webhook = Arc::new(
            Webhook::shared(config, metrics.clone()).with_body_budget(BodyBudget::new(budget)),
        );
        let readiness = webhook.readiness();
        let timeouts = Timeouts {
            shutdown_delay: args.shutdown_delay,
            drain: args.shutdown_timeout(),
            idle: args.idle_timeout,
            ..Timeouts::default()
        };
        let tls = crate::webhook::tls::server_config(certificates)?;
        let listener = server::listen(args.listen, "--listen").await?;
        let metrics_listener = server::listen(args.metrics_listen, "--metrics-listen").await?;
        let metrics_addr = metrics_listener.local_addr().map_err(StartError::Runtime)?;
        let server = Server::new(listener, tls, webhook, timeouts)
            .with_readiness(readiness)
            .with_connection_metrics(metrics.connection_metrics())
            .with_max_connections(args.max_connections);
        tracing::info!(
            listen = %server.local_addr(),
            metrics = %metrics_addr,
            ?prefixes,
            mode,
            ?namespaces,
            policy_file = ?args.policy.policy_file,
            "serving reviews on /validate"
        );
        if let Some(try_it) = try_it {
            println!("{try_it}");
        }
        let metrics_task = tokio::spawn(metrics::serve(metrics_listener, metrics));
        server.run(shutdown_signal()).await;
        metrics_task.abort();
        Ok(())
    })
}

/// Generates a certificate for local use, writes it and an example review to the temporary
/// directory, and returns it with a `curl` line that exercises the webhook.
fn local_certificate(listen: SocketAddr) -> Result<(SelfSigned, String), TlsError> {
    let ip = listen.ip();
    let host = if ip.is_unspecified() || ip.is_loopback() {
        "localhost".to_owned()
    } else {
        ip.to_string()
    };
    let mut names = vec!["localhost", "127.0.0.1", "::1"];
    if host != "localhost" {
        names.push(&host);
    }
    let generated = SelfSigned::generate(&names)?;
    let dir = std::env::temp_dir().join("validator-webhook");
    let cert: PathBuf = dir.join("localhost.crt");
    generated
        .write_cert(&cert)
        .map_err(|source| TlsError::Write {
            path: cert.clone(),
            source,
        })?;
    let example = dir.join("review-bad-deployment.json");
    std::fs::write(&example, EXAMPLE_REVIEW).map_err(|source| TlsError::Write {
        path: example.clone(),
        source,
    })?;
    let authority = match listen.ip() {
        std::net::IpAddr::V6(_) if host != "localhost" => format!("[{host}]:{}", listen.port()),
        _ => format!("{host}:{}", listen.port()),
    };
    tracing::info!(certificate = %cert.display(), "no --tls-cert-file given: serving a self-signed certificate");
    let try_it = format!(
        "Try it:\n  curl --cacert {} -H 'Content-Type: application/json' --data-binary @{} https://{authority}/validate\n",
        cert.display(),
        example.display(),
    );
    Ok((generated, try_it))
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => tracing::info!("received SIGTERM"),
        result = tokio::signal::ctrl_c() => match result {
            Ok(()) => tracing::info!("received SIGINT"),
            Err(error) => tracing::warn!(%error, "cannot listen for SIGINT"),
        },
    }
}
