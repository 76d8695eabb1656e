//! The headline: validator-webhook against every other server on one cell (a typical Deployment
//! at concurrency 8, over HTTP/2 where the server speaks it), and the targets it is held to.
//! Both verdicts are compared; a target is met only if it is met for both.

use serde::Serialize;

use crate::{
    plan::{ServerKind, Verdict},
    row::Row,
};

/// The server the headline is about.
pub const SUBJECT: ServerKind = ServerKind::ValidatorWebhook;

/// What validator-webhook is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// Its requests/s at least `.1` times the peer's.
    RpsVersus(ServerKind, f64),
    /// Its p99 at most `.1` times the peer's.
    P99Versus(ServerKind, f64),
    P99BelowMs(f64),
    PeakRssBelowMib(f64),
}

pub const GOALS: [Goal; 5] = [
    Goal::RpsVersus(ServerKind::ControllerRuntime, 5.0),
    Goal::RpsVersus(ServerKind::Ceiling, 0.85),
    Goal::P99Versus(ServerKind::Ceiling, 1.2),
    Goal::P99BelowMs(1.0),
    Goal::PeakRssBelowMib(20.0),
];

impl Goal {
    fn describe(self) -> String {
        match self {
            Self::RpsVersus(peer, f) if f < 1.0 => {
                format!("req/s ≥ {:.0}% of {}", f * 100.0, peer.name())
            }
            Self::RpsVersus(peer, f) => format!("req/s ≥ {f}× {}", peer.name()),
            Self::P99Versus(peer, f) => format!("p99 ≤ {f}× {}'s", peer.name()),
            Self::P99BelowMs(limit) => format!("p99 < {limit} ms"),
            Self::PeakRssBelowMib(limit) => format!("peak RSS < {limit} MiB"),
        }
    }

    /// A measured value in the goal's unit, for people.
    pub fn format(self, value: f64) -> String {
        match self {
            Self::RpsVersus(..) | Self::P99Versus(..) => format!("{value:.2}×"),
            Self::P99BelowMs(_) => format!("{value:.3} ms"),
            Self::PeakRssBelowMib(_) => format!("{value:.1} MiB"),
        }
    }

    fn measure(self, rows: &[Row], verdict: Verdict) -> Option<f64> {
        let subject = headline_row(rows, SUBJECT, verdict)?;
        match self {
            Self::RpsVersus(peer, _) => ratio(subject.rps, headline_row(rows, peer, verdict)?.rps),
            Self::P99Versus(peer, _) => {
                ratio(subject.p99_ms, headline_row(rows, peer, verdict)?.p99_ms)
            }
            Self::P99BelowMs(_) => subject.p99_ms,
            Self::PeakRssBelowMib(_) => subject.peak_rss_mib,
        }
    }

    fn met(self, value: f64) -> bool {
        match self {
            Self::RpsVersus(_, factor) => value >= factor,
            Self::P99Versus(_, factor) => value <= factor,
            Self::P99BelowMs(limit) | Self::PeakRssBelowMib(limit) => value < limit,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    #[serde(skip)]
    pub goal: Goal,
    pub target: String,
    /// The value for allowed and for denied reviews; `null` if not measured.
    pub allowed: Option<f64>,
    pub denied: Option<f64>,
    /// `met`, `MISSED`, or `not measured` (a server it depends on did not run).
    pub status: &'static str,
}

/// validator-webhook divided by a peer, for one verdict: above 1 is better for req/s, below 1
/// is better for p99 and RSS.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub peer: ServerKind,
    pub verdict: Verdict,
    pub rps_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
    pub rss_ratio: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Headline {
    pub comparisons: Vec<Comparison>,
    pub targets: Vec<Target>,
}

/// The row of `server`'s headline cell for `verdict`, if it was measured.
pub fn headline_row(rows: &[Row], server: ServerKind, verdict: Verdict) -> Option<&Row> {
    rows.iter().find(|row| row.is_headline(server, verdict))
}

pub fn evaluate(rows: &[Row]) -> Headline {
    let mut comparisons = Vec::new();
    for peer in ServerKind::ALL.into_iter().filter(|&s| s != SUBJECT) {
        for verdict in Verdict::ALL {
            let (Some(subject), Some(other)) = (
                headline_row(rows, SUBJECT, verdict),
                headline_row(rows, peer, verdict),
            ) else {
                continue;
            };
            comparisons.push(Comparison {
                peer,
                verdict,
                rps_ratio: ratio(subject.rps, other.rps),
                p99_ratio: ratio(subject.p99_ms, other.p99_ms),
                rss_ratio: ratio(subject.peak_rss_mib, other.peak_rss_mib),
            });
        }
    }
    let targets = GOALS.map(|goal| {
        let [allowed, denied] = Verdict::ALL.map(|verdict| goal.measure(rows, verdict));
        let status = match (allowed, denied) {
            (Some(a), Some(d)) if goal.met(a) && goal.met(d) => "met",
            (Some(_), Some(_)) => "MISSED",
            _ => "not measured",
        };
        Target {
            goal,
            target: goal.describe(),
            allowed,
            denied,
            status,
        }
    });
    Headline {
        comparisons,
        targets: targets.to_vec(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (b > 0.0).then(|| a / b)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plan::{Cell, HEADLINE_CONCURRENCY, HEADLINE_PAYLOAD};

    /// A measured headline row.
    fn row(server: ServerKind, verdict: Verdict, rps: f64, p99: f64, rss: f64) -> Row {
        let cell = Cell {
            payload: HEADLINE_PAYLOAD,
            verdict,
            protocol: server.headline_protocol(),
            concurrency: HEADLINE_CONCURRENCY,
        };
        Row {
            note: None,
            rps: Some(rps),
            p50_ms: Some(p99 / 2.0),
            p90_ms: Some(p99 * 0.8),
            p99_ms: Some(p99),
            p999_ms: Some(p99 * 2.0),
            p9999_ms: Some(p99 * 3.0),
            errors: Some(0),
            peak_rss_mib: Some(rss),
            ..Row::unsupported(server, cell, "")
        }
    }

    /// validator-webhook at 20k req/s, the ceiling at 22k, controller-runtime at 3k, Flask at 450.
    pub(crate) fn rows() -> Vec<Row> {
        let mut rows = Vec::new();
        for verdict in Verdict::ALL {
            rows.push(row(
                ServerKind::ValidatorWebhook,
                verdict,
                20_000.0,
                0.8,
                9.0,
            ));
            rows.push(row(ServerKind::Ceiling, verdict, 22_000.0, 0.7, 8.0));
            rows.push(row(
                ServerKind::ControllerRuntime,
                verdict,
                3_000.0,
                8.0,
                30.0,
            ));
            rows.push(row(ServerKind::Flask, verdict, 450.0, 30.0, 40.0));
        }
        rows
    }

    #[test]
    fn compares_with_every_measured_peer_for_both_verdicts() {
        let headline = evaluate(&rows());
        assert_eq!(headline.comparisons.len(), 6);
        let versus_go = &headline.comparisons[2];
        assert_eq!(versus_go.peer, ServerKind::ControllerRuntime);
        assert!((versus_go.rps_ratio.unwrap() - 20_000.0 / 3_000.0).abs() < 1e-9);
        assert!((versus_go.p99_ratio.unwrap() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn flask_is_compared_on_http1_while_the_others_use_http2() {
        let mut rows = rows();
        assert!(headline_row(&rows, ServerKind::Flask, Verdict::Allowed).is_some());
        for row in rows.iter_mut().filter(|r| r.server == ServerKind::Ceiling) {
            row.protocol = crate::plan::Protocol::Http1;
        }
        assert!(headline_row(&rows, ServerKind::Ceiling, Verdict::Allowed).is_none());
    }

    #[test]
    fn a_target_is_met_only_when_met_for_both_verdicts() {
        let statuses = |rows: &[Row]| {
            let targets = evaluate(rows).targets.into_iter();
            targets.map(|t| (t.target, t.status)).collect::<Vec<_>>()
        };
        assert_eq!(
            statuses(&rows()),
            [
                ("req/s ≥ 5× controller-runtime".to_owned(), "met"),
                ("req/s ≥ 85% of ceiling".to_owned(), "met"), // 91%
                ("p99 ≤ 1.2× ceiling's".to_owned(), "met"),   // 1.14×
                ("p99 < 1 ms".to_owned(), "met"),
                ("peak RSS < 20 MiB".to_owned(), "met"),
            ]
        );
        let mut slow_denials = rows();
        slow_denials[4].p99_ms = Some(1.5); // validator-webhook, denied
        assert_eq!(evaluate(&slow_denials).targets[3].status, "MISSED");
        let mut without_go = rows();
        without_go.retain(|r| r.server != ServerKind::ControllerRuntime);
        assert_eq!(evaluate(&without_go).targets[0].status, "not measured");
    }
}
