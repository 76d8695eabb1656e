//! The results, as written to `summary.json`: what ran where, one row per server and cell, and
//! the headline comparison.

use std::{collections::BTreeMap, path::PathBuf};

use serde::Serialize;

use crate::{
    headline::Headline,
    load,
    machine::Machine,
    measure::Usage,
    plan::{Cell, Mode, PayloadKind, Protocol, Verdict},
    servers::ServerKind,
};

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub mode: Mode,
    pub machine: Machine,
    pub setup: Setup,
    /// Versions of what produced the numbers.
    pub tools: BTreeMap<String, String>,
    pub servers: Vec<ServerInfo>,
    /// Servers that failed to start or answered wrongly: they have no rows.
    pub failures: Vec<Failure>,
    pub headline: Headline,
    pub rows: Vec<Row>,
}

/// How every cell was measured.
#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub server_cpu: u32,
    pub load_cpu: u32,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub request_timeout_s: f64,
    pub load_generator: String,
    pub payloads: Vec<PayloadInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PayloadInfo {
    pub payload: PayloadKind,
    pub verdict: Verdict,
    pub bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    pub server: ServerKind,
    /// From spawning to the first completed TLS handshake; the median over `starts` (the server
    /// is started afresh for every cell).
    pub startup_ms: f64,
    pub starts: usize,
    /// For compiled servers: the binary's size.
    pub binary_bytes: Option<u64>,
    /// The protocol it picked when offered h2 and http/1.1.
    pub alpn: Option<String>,
    pub log: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub server: ServerKind,
    pub error: String,
}

/// One server in one cell. Numbers are `null` where the cell could not be measured (HTTP/2 on
/// a server without it); `note` says why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub server: ServerKind,
    pub payload: PayloadKind,
    pub verdict: Verdict,
    pub protocol: Protocol,
    pub concurrency: u32,
    pub rps: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub p9999_ms: Option<f64>,
    /// Responses other than 200 plus requests without a response; anything but 0 flags the row.
    pub errors: Option<u64>,
    /// Responses received in the measured window.
    pub requests: Option<u64>,
    /// Peak resident memory of the server's process tree during the cell.
    pub peak_rss_mib: Option<f64>,
    /// Server CPU time (user + system) per 10,000 reviews.
    pub cpu_s_per_10k: Option<f64>,
    pub note: Option<String>,
}

const MIB: f64 = 1024.0 * 1024.0;

impl Row {
    fn empty(server: ServerKind, cell: Cell) -> Self {
        Self {
            server,
            payload: cell.payload,
            verdict: cell.verdict,
            protocol: cell.protocol,
            concurrency: cell.concurrency,
            rps: None,
            p50_ms: None,
            p90_ms: None,
            p99_ms: None,
            p999_ms: None,
            p9999_ms: None,
            errors: None,
            requests: None,
            peak_rss_mib: None,
            cpu_s_per_10k: None,
            note: None,
        }
    }

    pub fn measured(server: ServerKind, cell: Cell, load: &load::Report, usage: &Usage) -> Self {
        let requests = load.responses();
        let errors = load.failures();
        let latency = load
            .latency
            .map(|p| p.values().map(Some))
            .unwrap_or_default();
        let [p50_ms, p90_ms, p99_ms, p999_ms, p9999_ms] = latency;
        Self {
            rps: Some(load.requests_per_second),
            p50_ms,
            p90_ms,
            p99_ms,
            p999_ms,
            p9999_ms,
            errors: Some(errors),
            requests: Some(requests),
            peak_rss_mib: Some(usage.peak_rss_bytes as f64 / MIB),
            cpu_s_per_10k: (requests > 0).then(|| usage.cpu_seconds / requests as f64 * 10_000.0),
            note: (errors > 0).then(|| load.describe_failures()),
            ..Self::empty(server, cell)
        }
    }

    /// A cell the server cannot take part in.
    pub fn unsupported(server: ServerKind, cell: Cell, why: &str) -> Self {
        Self {
            note: Some(why.to_owned()),
            ..Self::empty(server, cell)
        }
    }

    /// Whether some requests failed: the numbers are then not the server's normal service.
    pub fn flagged(&self) -> bool {
        self.errors.is_some_and(|errors| errors > 0)
    }

    /// p50 … p99.99 in milliseconds ([`crate::load::Percentiles::LABELS`]), if measured.
    pub fn percentiles(&self) -> Option<[f64; 5]> {
        Some([
            self.p50_ms?,
            self.p90_ms?,
            self.p99_ms?,
            self.p999_ms?,
            self.p9999_ms?,
        ])
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::load::Percentiles;

    fn cell() -> Cell {
        Cell {
            payload: PayloadKind::Deployment,
            verdict: Verdict::Denied,
            protocol: Protocol::Http2,
            concurrency: 8,
        }
    }

    fn report(ok: u64, errors: u64) -> load::Report {
        load::Report {
            requests_per_second: 1000.0,
            statuses: BTreeMap::from([(200, ok)]),
            errors: BTreeMap::from([("connection error".to_owned(), errors)]),
            latency: Some(Percentiles {
                p50: 0.5,
                p90: 0.7,
                p99: 0.9,
                p99_9: 2.0,
                p99_99: 4.0,
            }),
        }
    }

    #[test]
    fn cpu_is_per_ten_thousand_responses_and_memory_in_mib() {
        let usage = Usage {
            cpu_seconds: 2.5,
            peak_rss_bytes: 12 * 1024 * 1024,
        };
        let row = Row::measured(
            ServerKind::ValidatorWebhook,
            cell(),
            &report(5000, 0),
            &usage,
        );
        assert_eq!(row.cpu_s_per_10k, Some(5.0));
        assert_eq!(row.peak_rss_mib, Some(12.0));
        assert_eq!(row.percentiles(), Some([0.5, 0.7, 0.9, 2.0, 4.0]));
        assert!(!row.flagged());
        assert_eq!(row.note, None);
    }

    #[test]
    fn failures_flag_the_row_and_say_what_they_were() {
        let usage = Usage {
            cpu_seconds: 1.0,
            peak_rss_bytes: 0,
        };
        let row = Row::measured(ServerKind::Flask, cell(), &report(10, 3), &usage);
        assert!(row.flagged());
        assert_eq!(row.errors, Some(3));
        assert_eq!(row.note.as_deref(), Some("connection error ×3"));
    }

    #[test]
    fn an_unsupported_cell_serialises_with_null_numbers_and_the_reason() {
        let row = Row::unsupported(ServerKind::Gunicorn, cell(), "HTTP/2 not supported");
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["server"], "gunicorn");
        assert_eq!(json["protocol"], "h2");
        assert_eq!(json["payload"], "deployment");
        assert!(json["rps"].is_null() && json["errors"].is_null());
        assert_eq!(json["note"], "HTTP/2 not supported");
        assert!(!row.flagged());
    }
}
