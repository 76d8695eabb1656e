//! The servers under test: how each is started, pinned to its CPU on a free loopback port with
//! the benchmark's certificate, waited for until it completes a TLS handshake, and stopped.

use std::{
    fs,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    thread,
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    answer::Expected,
    ceiling,
    payloads::Payload,
    pki::Pki,
    plan::SERVER_CPU,
    prereqs::Tools,
    probe::{self, Client},
    process::{self, Group},
};

/// Python servers import for about a second on a busy machine; far more is a hang.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

/// How often a starting server is tried: fine enough to time start-up in milliseconds.
const STARTUP_POLL: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    /// The webhook, as shipped.
    ValidatorWebhook,
    /// Its stack answering without reviewing: the cost floor.
    Ceiling,
    /// Go, controller-runtime's webhook server.
    ControllerRuntime,
    /// Python, Flask on its own (Werkzeug) server.
    Flask,
    /// Python, the same Flask app on gunicorn.
    Gunicorn,
}

impl ServerKind {
    pub const ALL: [Self; 5] = [
        Self::ValidatorWebhook,
        Self::Ceiling,
        Self::ControllerRuntime,
        Self::Flask,
        Self::Gunicorn,
    ];

    /// The name in reports; for the Rust binaries, also the binary's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ValidatorWebhook => "validator-webhook",
            Self::Ceiling => "ceiling",
            Self::ControllerRuntime => "controller-runtime",
            Self::Flask => "flask",
            Self::Gunicorn => "gunicorn",
        }
    }

    /// Neither Python server offers HTTP/2 (see bench/peers/README.md).
    pub fn speaks_http2(self) -> bool {
        !matches!(self, Self::Flask | Self::Gunicorn)
    }

    /// Whether the binary's size means something: compiled servers, not interpreters.
    pub fn has_own_binary(self) -> bool {
        matches!(
            self,
            Self::ValidatorWebhook | Self::Ceiling | Self::ControllerRuntime
        )
    }

    /// The correct answer to `payload`: the ceiling, by design, allows everything with its
    /// own uid; every other server reviews.
    pub fn expected(self, payload: &Payload) -> Expected {
        match self {
            Self::Ceiling => Expected {
                uid: ceiling::UID.to_owned(),
                allowed: true,
            },
            _ => Expected {
                uid: payload.uid.clone(),
                allowed: payload.verdict == crate::plan::Verdict::Allowed,
            },
        }
    }

    /// The command line serving on `ports` (reviews, and metrics for the webhook), and where
    /// it runs.
    fn command(
        self,
        taskset: &Path,
        program: &Path,
        pki: &Pki,
        ports: [u16; 2],
        peers: &Path,
    ) -> Command {
        let mut command = process::pinned(taskset, SERVER_CPU, program);
        let listen = loopback(ports[0]).to_string();
        match self {
            Self::ValidatorWebhook => {
                command
                    .args(["serve", "--listen", &listen, "--metrics-listen"])
                    .arg(loopback(ports[1]).to_string())
                    .arg("--tls-cert-file")
                    .arg(&pki.cert)
                    .arg("--tls-key-file")
                    .arg(&pki.key)
                    // As in a cluster: JSON lines, denials at info.
                    .args(["--log-format", "json", "--log-level", "info"]);
            }
            Self::Ceiling => {
                command
                    .args(["--listen", &listen, "--cert"])
                    .arg(&pki.cert)
                    .arg("--key")
                    .arg(&pki.key);
            }
            Self::ControllerRuntime => {
                command
                    .args(["--listen", &listen, "--http2=true", "--cert"])
                    .arg(&pki.cert)
                    .arg("--key")
                    .arg(&pki.key);
            }
            Self::Flask => {
                command
                    .current_dir(peers.join("flask"))
                    // No __pycache__ in the source tree.
                    .env("PYTHONDONTWRITEBYTECODE", "1")
                    .args(["app.py", "--listen", &listen, "--cert"])
                    .arg(&pki.cert)
                    .arg("--key")
                    .arg(&pki.key);
            }
            Self::Gunicorn => {
                // gunicorn.conf.py sizes it for one core.
                command
                    .current_dir(peers.join("flask"))
                    .env("PYTHONDONTWRITEBYTECODE", "1")
                    .args(["-c", "gunicorn.conf.py", "-b", &listen, "--certfile"])
                    .arg(&pki.cert)
                    .arg("--keyfile")
                    .arg(&pki.key)
                    .arg("app:app");
            }
        }
        command
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{server} was not prepared")]
    NotPrepared { server: &'static str },
    #[error("cannot start {server}: {source}")]
    Spawn {
        server: &'static str,
        source: std::io::Error,
    },
    #[error("{server} exited ({status}) {when}; the end of its log {}:\n{tail}", log.display())]
    Exited {
        server: &'static str,
        status: ExitStatus,
        when: &'static str,
        log: PathBuf,
        tail: String,
    },
    #[error("{server} did not complete a TLS handshake within {limit:?} ({last}); the end of its log {}:\n{tail}", log.display())]
    NotReady {
        server: &'static str,
        limit: Duration,
        last: probe::ProbeError,
        log: PathBuf,
        tail: String,
    },
    #[error("cannot probe {server}: {source}")]
    Probe {
        server: &'static str,
        source: probe::ProbeError,
    },
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
    pub client: Client,
    group: Group,
}

/// Starts `kind` and waits until it completes a TLS handshake.
pub fn start(
    kind: ServerKind,
    tools: &Tools,
    pki: &Pki,
    peers: &Path,
    logs: &Path,
) -> Result<Running, ServerError> {
    let server = kind.name();
    let program = tools
        .program(kind)
        .ok_or(ServerError::NotPrepared { server })?;
    let spawn_error = |source| ServerError::Spawn { server, source };
    let ports = free_ports().map_err(spawn_error)?;
    let addr = loopback(ports[0]);
    let log = logs.join(format!("{server}.log"));
    let client =
        Client::new(addr, &pki.ca_pem).map_err(|source| ServerError::Probe { server, source })?;

    let mut command = kind.command(&tools.taskset, program, pki, ports, peers);
    fs::create_dir_all(logs).map_err(spawn_error)?;
    process::log_to(&mut command, &log).map_err(spawn_error)?;
    let started = Instant::now();
    let mut group = Group::spawn(&mut command).map_err(spawn_error)?;
    loop {
        let last = match client.handshake() {
            Ok(alpn) => {
                return Ok(Running {
                    kind,
                    addr,
                    startup: started.elapsed(),
                    alpn,
                    log,
                    client,
                    group,
                });
            }
            Err(error) => error,
        };
        if let Some(status) = group.exited().map_err(spawn_error)? {
            return Err(ServerError::Exited {
                server,
                status,
                when: "while starting",
                tail: tail(&log),
                log,
            });
        }
        if started.elapsed() > STARTUP_LIMIT {
            return Err(ServerError::NotReady {
                server,
                limit: STARTUP_LIMIT,
                last,
                tail: tail(&log),
                log,
            });
        }
        thread::sleep(STARTUP_POLL);
    }
}

impl Running {
    pub fn url(&self) -> String {
        format!("https://{}/validate", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.group.pid()
    }

    /// An error if the server has died.
    pub fn check_alive(&mut self) -> Result<(), ServerError> {
        let server = self.kind.name();
        match self.group.exited() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(ServerError::Exited {
                server,
                status,
                when: "under load",
                log: self.log.clone(),
                tail: tail(&self.log),
            }),
            Err(source) => Err(ServerError::Spawn { server, source }),
        }
    }

    pub fn stop(self) {
        self.group.stop();
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Two loopback ports nobody listens on now. (Another process could take one before the server
/// binds it; on a benchmark machine nobody races for ports.)
fn free_ports() -> std::io::Result<[u16; 2]> {
    // Both listeners are open at once, so the ports differ.
    let first = TcpListener::bind(loopback(0))?;
    let second = TcpListener::bind(loopback(0))?;
    Ok([first.local_addr()?.port(), second.local_addr()?.port()])
}

/// The last lines of a log, for an error message.
fn tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
