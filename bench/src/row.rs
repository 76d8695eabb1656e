//! One server in one cell: what oha and /proc measured, as a row of `summary.json`.

use serde::Serialize;

use crate::{
    load,
    measure::Usage,
    plan::{
        Cell, HEADLINE_CONCURRENCY, HEADLINE_PAYLOAD, PayloadKind, Protocol, ServerKind, Verdict,
    },
};

/// Numbers are `null` where the cell could not be measured (HTTP/2 on a server without it);
/// `note` says why.
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

impl Row {
    /// A cell the server cannot take part in, and why.
    pub fn unsupported(server: ServerKind, cell: Cell, why: &str) -> Self {
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
            note: Some(why.to_owned()),
        }
    }

    pub fn measured(server: ServerKind, cell: Cell, load: &load::Report, usage: &Usage) -> Self {
        let requests = load.responses();
        let (errors, failures) = load.failures();
        let [p50_ms, p90_ms, p99_ms, p999_ms, p9999_ms] =
            load.latency_ms.map(|l| l.map(Some)).unwrap_or_default();
        Self {
            rps: Some(load.requests_per_second),
            p50_ms,
            p90_ms,
            p99_ms,
            p999_ms,
            p9999_ms,
            errors: Some(errors),
            requests: Some(requests),
            peak_rss_mib: Some(usage.peak_rss_bytes as f64 / (1024.0 * 1024.0)),
            cpu_s_per_10k: (requests > 0).then(|| usage.cpu_seconds / requests as f64 * 10_000.0),
            note: (errors > 0).then_some(failures),
            ..Self::unsupported(server, cell, "")
        }
    }

    /// Whether `server`'s headline cell (for `verdict`) is this row, and was measured.
    pub fn is_headline(&self, server: ServerKind, verdict: Verdict) -> bool {
        self.server == server
            && self.payload == HEADLINE_PAYLOAD
            && self.concurrency == HEADLINE_CONCURRENCY
            && self.protocol == server.headline_protocol()
            && self.verdict == verdict
            && self.rps.is_some()
    }

    /// Whether some requests failed: the numbers are then not the server's normal service.
    pub fn flagged(&self) -> bool {
        self.errors.is_some_and(|errors| errors > 0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const CELL: Cell = Cell {
        payload: PayloadKind::Deployment,
        verdict: Verdict::Denied,
        protocol: Protocol::Http2,
        concurrency: 8,
    };

    #[test]
    fn cpu_is_per_ten_thousand_responses_and_failures_flag_the_row() {
        let mut report = load::Report {
            requests_per_second: 1000.0,
            statuses: BTreeMap::from([(200, 5000)]),
            errors: BTreeMap::new(),
            latency_ms: Some([0.5, 0.7, 0.9, 2.0, 4.0]),
        };
        let usage = Usage {
            cpu_seconds: 2.5,
            peak_rss_bytes: 12 * 1024 * 1024,
        };
        let row = Row::measured(ServerKind::ValidatorWebhook, CELL, &report, &usage);
        assert_eq!(
            (row.cpu_s_per_10k, row.peak_rss_mib, row.p999_ms),
            (Some(5.0), Some(12.0), Some(2.0))
        );
        assert!(!row.flagged() && row.note.is_none());
        report.errors.insert("connection error".to_owned(), 3);
        let row = Row::measured(ServerKind::Flask, CELL, &report, &usage);
        assert!(row.flagged());
        assert_eq!(row.note.as_deref(), Some("connection error ×3"));
    }

    #[test]
    fn an_unsupported_cell_serialises_with_null_numbers_and_the_reason() {
        let row = Row::unsupported(ServerKind::Gunicorn, CELL, "HTTP/2 not supported");
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(
            (json["server"].as_str(), json["protocol"].as_str()),
            (Some("gunicorn"), Some("h2"))
        );
        assert!(json["rps"].is_null() && json["errors"].is_null());
        assert_eq!(json["note"], "HTTP/2 not supported");
    }
}
