//! The benchmark matrix: which servers, which cells, and for how long each cell runs.

use std::{fmt, time::Duration};

use serde::Serialize;

use crate::servers::ServerKind;

/// The server runs on this CPU, the load generator on [`LOAD_CPU`]: on a 2-core machine this
/// keeps oha from stealing the server's core, and the server's CPU time is its own.
pub const SERVER_CPU: u32 = 0;
pub const LOAD_CPU: u32 = 1;

/// The cell every comparison and target is judged on: a typical Deployment at concurrency 8,
/// over HTTP/2 where the server speaks it (the API server prefers it).
pub const HEADLINE_PAYLOAD: PayloadKind = PayloadKind::Deployment;
pub const HEADLINE_CONCURRENCY: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    /// A Pod with one container.
    Pod,
    /// A Deployment as `kubectl apply` sends it, a few KB.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive (for servers that allow it).
    #[serde(rename = "h1")]
    Http1,
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

    /// The ALPN protocol id a client offers for it.
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Self::Http1 => b"http/1.1",
            Self::Http2 => b"h2",
        }
    }
}

/// The protocol a server's headline cell uses: HTTP/2 if it speaks it.
pub fn headline_protocol(server: ServerKind) -> Protocol {
    if server.speaks_http2() {
        Protocol::Http2
    } else {
        Protocol::Http1
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

/// `deployment-denied-h2-c8`: the name of its raw oha reports. Honours width and alignment.
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
    /// Every payload, verdict, protocol and concurrency, on every server. About 13 minutes.
    pub fn full() -> Self {
        Self {
            mode: Mode::Full,
            servers: ServerKind::ALL.to_vec(),
            cells: matrix(
                &PayloadKind::ALL,
                &Verdict::ALL,
                &Protocol::ALL,
                &[1, 8, 64],
            ),
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(5),
        }
    }

    /// The headline cell and its HTTP/1.1 twin, both verdicts, 2 s each, on every server but
    /// gunicorn (the slowest to start, and in no target): under a minute, most of it the fixed
    /// cell durations.
    pub fn quick() -> Self {
        Self {
            mode: Mode::Quick,
            servers: vec![
                ServerKind::ValidatorWebhook,
                ServerKind::Ceiling,
                ServerKind::ControllerRuntime,
                ServerKind::Flask,
            ],
            cells: matrix(
                &[HEADLINE_PAYLOAD],
                &Verdict::ALL,
                &Protocol::ALL,
                &[HEADLINE_CONCURRENCY],
            ),
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(2),
        }
    }

    /// Keeps only `servers`, in the plan's order.
    pub fn only(mut self, servers: &[ServerKind]) -> Self {
        if !servers.is_empty() {
            self.servers.retain(|server| servers.contains(server));
        }
        self
    }

    /// The (payload, verdict) pairs the cells use: what each server's answers are checked on.
    pub fn reviews(&self) -> Vec<(PayloadKind, Verdict)> {
        let mut reviews: Vec<_> = self.cells.iter().map(|c| (c.payload, c.verdict)).collect();
        reviews.sort();
        reviews.dedup();
        reviews
    }

    pub fn protocols(&self) -> Vec<Protocol> {
        let mut protocols: Vec<_> = self.cells.iter().map(|c| c.protocol).collect();
        protocols.sort();
        protocols.dedup();
        protocols
    }
}

fn matrix(
    payloads: &[PayloadKind],
    verdicts: &[Verdict],
    protocols: &[Protocol],
    concurrencies: &[u32],
) -> Vec<Cell> {
    let mut cells = Vec::new();
    for &payload in payloads {
        for &verdict in verdicts {
            for &protocol in protocols {
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
    fn a_cell_is_named_for_its_report_file_and_pads_in_tables() {
        let cell = Cell {
            payload: PayloadKind::Large,
            verdict: Verdict::Denied,
            protocol: Protocol::Http2,
            concurrency: 64,
        };
        assert_eq!(cell.to_string(), "large-denied-h2-c64");
        assert_eq!(format!("[{cell:<21}]"), "[large-denied-h2-c64  ]");
    }

    #[test]
    fn the_full_matrix_has_every_combination_once() {
        let plan = Plan::full();
        assert_eq!(plan.cells.len(), 3 * 2 * 2 * 3);
        let mut names: Vec<String> = plan.cells.iter().map(Cell::to_string).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), plan.cells.len());
    }

    #[test]
    fn the_quick_run_always_has_the_headline_cell_on_the_four_headline_servers() {
        let plan = Plan::quick();
        for server in [
            ServerKind::ValidatorWebhook,
            ServerKind::Ceiling,
            ServerKind::ControllerRuntime,
            ServerKind::Flask,
        ] {
            assert!(plan.servers.contains(&server), "{server:?}");
            let protocol = headline_protocol(server);
            assert!(plan.cells.iter().any(|c| c.payload == HEADLINE_PAYLOAD
                && c.concurrency == HEADLINE_CONCURRENCY
                && c.protocol == protocol));
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
