//! The servers under test: each started pinned to its CPU on a free loopback port with the
//! benchmark's certificate, waited for until it completes a TLS handshake, checked on every
//! review it will be measured with, and stopped.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    ceiling,
    payloads::Payload,
    plan::{Protocol, SERVER_CPU, ServerKind, Verdict},
    prereqs::{Layout, Tools},
    probe::Client,
};
use testkit::process::Process;

/// Python servers import for about a second on a busy machine; far more is a hang.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

/// The benchmark's certificate: a CA, and the serving certificate it signed.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// Issues them with the webhook's own `certs` code into `dir`, for the webhook's Service.
    pub fn issue(dir: &Path) -> Result<Self> {
        Self::issue_for(testkit::names::SERVICE, dir)
    }

    /// Issues them into `dir` for the Service `service` of the webhook's namespace.
    pub fn issue_for(service: &str, dir: &Path) -> Result<Self> {
        let issued =
            validator_webhook::pki::Issued::for_service(service, testkit::names::NAMESPACE, 7)?;
        fs::create_dir_all(dir)?;
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        fs::write(dir.join("ca.crt"), &issued.ca_pem)?;
        fs::write(&cert, &issued.cert_pem)?;
        fs::write(&key, &issued.key_pem)?;
        Ok(Self {
            ca_pem: issued.ca_pem,
            cert,
            key,
        })
    }
}

/// A server that has come up.
pub struct Running {
    pub kind: ServerKind,
    pub addr: SocketAddr,
    /// From spawning to the first completed TLS handshake.
    pub startup: Duration,
    /// The protocol it picks when offered HTTP/2 and HTTP/1.1.
    pub alpn: Option<String>,
    pub log: PathBuf,
    client: Client,
    process: Process,
}

/// Starts `kind` and waits until it completes a TLS handshake.
pub fn start(kind: ServerKind, tools: &Tools, pki: &Pki, layout: &Layout) -> Result<Running> {
    let program = tools.servers.get(&kind).context("not prepared")?;
    // Both listeners are open at once, so the ports differ. (Another process could take one
    // before the server binds it; on a benchmark machine nobody races for ports.)
    let (first, second) = (
        TcpListener::bind(loopback(0))?,
        TcpListener::bind(loopback(0))?,
    );
    let (addr, metrics) = (first.local_addr()?, second.local_addr()?);
    drop((first, second));
    let logs = layout.out.join("logs");
    fs::create_dir_all(&logs)?;
    let log = logs.join(format!("{}.log", kind.name()));
    let client = Client::new(addr, &pki.ca_pem)?;

    let mut command = tools.pinned(SERVER_CPU, program, Some(&log))?;
    let (listen, cert, key) = (addr.to_string(), &pki.cert, &pki.key);
    let flask = layout.peers().join("flask");
    match kind {
        ServerKind::ValidatorWebhook => command
            .args([
                "serve",
                "--listen",
                &listen,
                "--metrics-listen",
                &metrics.to_string(),
            ])
            .arg("--tls-cert-file")
            .arg(cert)
            .arg("--tls-key-file")
            .arg(key)
            // As in a cluster: JSON lines, denials at info.
            .args(["--log-format", "json", "--log-level", "info"]),
        ServerKind::Ceiling => command
            .args(["--listen", &listen, "--cert"])
            .arg(cert)
            .arg("--key")
            .arg(key),
        ServerKind::ControllerRuntime => command
            .args(["--listen", &listen, "--http2=true", "--cert"])
            .arg(cert)
            .arg("--key")
            .arg(key),
        // PYTHONDONTWRITEBYTECODE: no __pycache__ in the source tree.
        ServerKind::Flask => command
            .current_dir(flask)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .args(["app.py", "--listen", &listen, "--cert"])
            .arg(cert)
            .arg("--key")
            .arg(key),
        // gunicorn.conf.py sizes it for one core.
        ServerKind::Gunicorn => command
            .current_dir(flask)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .args(["-c", "gunicorn.conf.py", "-b", &listen, "--certfile"])
            .arg(cert)
            .arg("--keyfile")
            .arg(key)
            .arg("app:app"),
    };
    let started = Instant::now();
    // A server under test has nothing to save: it is killed at once.
    let mut process =
        Process::start(kind.name(), &mut command, Some(log.clone()))?.with_grace(Duration::ZERO);
    loop {
        let error = match client.handshake() {
            Ok(alpn) => {
                let startup = started.elapsed();
                return Ok(Running {
                    kind,
                    addr,
                    startup,
                    alpn,
                    log,
                    client,
                    process,
                });
            }
            Err(error) => error,
        };
        if let Some(status) = process.exited()? {
            bail!(
                "{} exited ({status}) while starting; the end of its log {}:\n{}",
                kind.name(),
                log.display(),
                testkit::tail(&log, 15)
            );
        }
        if started.elapsed() > STARTUP_LIMIT {
            bail!(
                "{} did not complete a TLS handshake within {STARTUP_LIMIT:?} ({error:#}); the end of its log {}:\n{}",
                kind.name(),
                log.display(),
                testkit::tail(&log, 15)
            );
        }
        thread::sleep(Duration::from_millis(5));
    }
}

impl Running {
    pub fn url(&self) -> String {
        format!("https://{}/validate", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// An error if the server has died.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.process.exited()? {
            None => Ok(()),
            Some(status) => bail!(
                "{} exited ({status}) under load; the end of its log {}:\n{}",
                self.kind.name(),
                self.log.display(),
                testkit::tail(&self.log, 15)
            ),
        }
    }

    /// Asks every review over every protocol the server speaks, and checks each answer: the
    /// ceiling allows everything with its own uid, every other server reviews.
    pub fn check_answers(&self, payloads: &[&Payload]) -> Result<()> {
        for payload in payloads {
            let body = fs::read(&payload.file)?;
            let (uid, allowed) = match self.kind {
                ServerKind::Ceiling => (ceiling::UID, true),
                _ => (payload.uid.as_str(), payload.verdict == Verdict::Allowed),
            };
            for protocol in Protocol::ALL
                .into_iter()
                .filter(|&p| p == Protocol::Http1 || self.kind.speaks_http2())
            {
                let review = format!("{}-{}", payload.kind.label(), payload.verdict.label());
                let (status, answer) = (self.client.post(protocol, &body)).with_context(|| {
                    format!(
                        "{} could not be asked the {review} review over {}",
                        self.kind.name(),
                        protocol.label()
                    )
                })?;
                testkit::reply::check_answer(uid, allowed, status, &answer).with_context(|| {
                    format!(
                        "{} answered the {review} review wrongly over {}",
                        self.kind.name(),
                        protocol.label()
                    )
                })?;
            }
        }
        Ok(())
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}
