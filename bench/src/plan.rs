//! The matrix: which servers, which cells (payload × verdict × protocol × concurrency), and
//! for how long each cell runs.

use std::{fmt, time::Duration};

use serde::Serialize;

/// Each server runs on this CPU, oha on [`LOAD_CPU`]: the server's core and CPU time are its own.
pub const SERVER_CPU: u32 = 0;
pub const LOAD_CPU: u32 = 1;

/// The cell every comparison and target is judged on: a typical Deployment at concurrency 8,
/// over HTTP/2 where the server speaks it (the API server prefers it).
pub const HEADLINE_PAYLOAD: PayloadKind = PayloadKind::Deployment;
pub const HEADLINE_CONCURRENCY: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    /// The webhook, as shipped.
    ValidatorWebhook,
    /// Its own server answering without reviewing: the cost floor.
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

    /// The name in reports; for the Rust servers, also the binary's.
    pub fn name(self) -> &'static str {
        match self {
            Self::ValidatorWebhook => "validator-webhook",
            Self::Ceiling => "ceiling",
            Self::ControllerRuntime => "controller-runtime",
            Self::Flask => "flask",
            Self::Gunicorn => "gunicorn",
        }
    }

    /// Neither Python server offers HTTP/2.
    pub fn speaks_http2(self) -> bool {
        !matches!(self, Self::Flask | Self::Gunicorn)
    }

    /// The protocol of its headline cell.
    pub fn headline_protocol(self) -> Protocol {
        if self.speaks_http2() {
            Protocol::Http2
        } else {
            Protocol::Http1
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    /// A Pod with one container.
    Pod,
    /// A Deployment as `kubectl apply` sends it, about 10 KB.
    Deployment,
    /// The same Deployment grown to about 1 MiB.
    Large,
}

impl PayloadKind {
    pub const ALL: [Self; 3] = [Self::Pod, Self::Deployment, Self::Large];

    pub fn label(self) -> &'static str {
        match self {
            Self::Pod => "pod",
            Self::Deployment => "deployment",
            Self::Large => "large",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Self::Pod => "Pod (one container)",
            Self::Deployment => "typical Deployment",
            Self::Large => "large Deployment (~1 MiB)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allowed,
    Denied,
}

impl Verdict {
    pub const ALL: [Self; 2] = [Self::Allowed, Self::Denied];

    pub fn label(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive (where the server allows it).
    #[serde(rename = "h1")]
    Http1,
    /// HTTP/2, one stream per connection.
    #[serde(rename = "h2")]
    Http2,
}

impl Protocol {
    pub const ALL: [Self; 2] = [Self::Http1, Self::Http2];

    pub fn label(self) -> &'static str {
        match self {
            Self::Http1 => "h1",
            Self::Http2 => "h2",
        }
    }

    /// The ALPN id a client offers for it.
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Self::Http1 => b"http/1.1",
            Self::Http2 => b"h2",
        }
    }
}

/// One measurement of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub payload: PayloadKind,
    pub verdict: Verdict,
    pub protocol: Protocol,
    pub concurrency: u32,
}

/// `deployment-denied-h2-c8`, the name of its raw oha report. Honours width and alignment.
impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&format!(
            "{}-{}-{}-c{}",
            self.payload.label(),
            self.verdict.label(),
            self.protocol.label(),
            self.concurrency
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Quick,
    Full,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    pub servers: Vec<ServerKind>,
    pub cells: Vec<Cell>,
    /// Load before each measurement, thrown away: it fills connection pools, caches and
    /// allocator arenas, so the measurement sees the server in its steady state.
    pub warmup: Duration,
    pub duration: Duration,
}

impl Plan {
    /// Every payload, verdict, protocol and concurrency, on every server: about 13 minutes.
    pub fn full() -> Self {
        Self {
            mode: Mode::Full,
            servers: ServerKind::ALL.to_vec(),
            cells: matrix(&PayloadKind::ALL, &[1, 8, 64]),
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(5),
        }
    }

    /// The headline cell and its HTTP/1.1 twin, both verdicts, 2 s each, on every server but
    /// gunicorn (the slowest to start, and in no target): under a minute.
    pub fn quick() -> Self {
        Self {
            mode: Mode::Quick,
            servers: ServerKind::ALL[..4].to_vec(),
            cells: matrix(&[HEADLINE_PAYLOAD], &[HEADLINE_CONCURRENCY]),
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(2),
        }
    }

    /// Keeps only `servers` (all if empty), in the plan's order.
    pub fn only(mut self, servers: &[ServerKind]) -> Self {
        if !servers.is_empty() {
            self.servers.retain(|server| servers.contains(server));
        }
        self
    }
}

/// Every verdict and protocol for each payload and concurrency.
fn matrix(payloads: &[PayloadKind], concurrencies: &[u32]) -> Vec<Cell> {
    let mut cells = Vec::new();
    for &payload in payloads {
        for verdict in Verdict::ALL {
            for protocol in Protocol::ALL {
                for &concurrency in concurrencies {
                    cells.push(Cell {
                        payload,
                        verdict,
                        protocol,
                        concurrency,
                    });
                }
            }
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_matrix_has_every_combination_once() {
        let plan = Plan::full();
        let mut names: Vec<String> = plan.cells.iter().map(Cell::to_string).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 3 * 2 * 2 * 3);
        assert!(names.contains(&"large-denied-h2-c64".to_owned()));
    }

    #[test]
    fn the_quick_run_has_the_headline_cell_of_the_four_headline_servers() {
        let plan = Plan::quick();
        let headline = [
            ServerKind::ValidatorWebhook,
            ServerKind::Ceiling,
            ServerKind::ControllerRuntime,
            ServerKind::Flask,
        ];
        assert_eq!(plan.servers, headline);
        for server in headline {
            assert!(plan.cells.iter().any(|c| c.payload == HEADLINE_PAYLOAD
                && c.concurrency == HEADLINE_CONCURRENCY
                && c.protocol == server.headline_protocol()));
        }
    }

    #[test]
    fn only_keeps_the_plan_order_and_an_empty_filter_keeps_all() {
        let plan = Plan::full().only(&[ServerKind::Flask, ServerKind::ValidatorWebhook]);
        assert_eq!(
            plan.servers,
            [ServerKind::ValidatorWebhook, ServerKind::Flask]
        );
        assert_eq!(Plan::full().only(&[]).servers, ServerKind::ALL);
    }
}
