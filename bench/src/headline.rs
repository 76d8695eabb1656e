//! The headline: validator-webhook against every other server on one cell (a typical Deployment
//! at concurrency 8, over HTTP/2 where the server speaks it), and the targets it is held to.
//! Both verdicts are compared; a target is met only if it is met for both.

use serde::Serialize;

use crate::{
    plan::{HEADLINE_CONCURRENCY, HEADLINE_PAYLOAD, PayloadKind, Verdict, headline_protocol},
    servers::ServerKind,
    summary::Row,
};

/// The server the headline is about.
pub const SUBJECT: ServerKind = ServerKind::ValidatorWebhook;

/// What validator-webhook is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// Its requests/s at least `factor` times the peer's.
    RpsVersus {
        peer: ServerKind,
        factor: f64,
    },
    P99BelowMs(f64),
    PeakRssBelowMib(f64),
}

pub const GOALS: [Goal; 5] = [
    Goal::RpsVersus {
        peer: ServerKind::ControllerRuntime,
        factor: 5.0,
    },
    Goal::RpsVersus {
        peer: ServerKind::Flask,
        factor: 50.0,
    },
    Goal::RpsVersus {
        peer: ServerKind::Ceiling,
        factor: 0.8,
    },
    Goal::P99BelowMs(1.0),
    Goal::PeakRssBelowMib(20.0),
];

impl Goal {
    pub fn describe(self) -> String {
        match self {
            Self::RpsVersus { peer, factor } if factor < 1.0 => {
                format!("req/s ≥ {:.0}% of {}", factor * 100.0, peer.name())
            }
            Self::RpsVersus { peer, factor } => format!("req/s ≥ {factor}× {}", peer.name()),
            Self::P99BelowMs(limit) => format!("p99 < {limit} ms"),
            Self::PeakRssBelowMib(limit) => format!("peak RSS < {limit} MiB"),
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Self::RpsVersus { .. } => "ratio",
            Self::P99BelowMs(_) => "ms",
            Self::PeakRssBelowMib(_) => "MiB",
        }
    }

    /// A measured value in the goal's unit, for people.
    pub fn format(self, value: f64) -> String {
        match self {
            Self::RpsVersus { .. } => format!("{value:.2}×"),
            Self::P99BelowMs(_) => format!("{value:.3} ms"),
            Self::PeakRssBelowMib(_) => format!("{value:.1} MiB"),
        }
    }

    fn measure(self, rows: &[Row], verdict: Verdict) -> Option<f64> {
        let subject = headline_row(rows, SUBJECT, verdict)?;
        match self {
            Self::RpsVersus { peer, .. } => {
                ratio(subject.rps, headline_row(rows, peer, verdict)?.rps)
            }
            Self::P99BelowMs(_) => subject.p99_ms,
            Self::PeakRssBelowMib(_) => subject.peak_rss_mib,
        }
    }

    fn met(self, value: f64) -> bool {
        match self {
            Self::RpsVersus { factor, .. } => value >= factor,
            Self::P99BelowMs(limit) | Self::PeakRssBelowMib(limit) => value < limit,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Met,
    Missed,
    /// A server it depends on was not measured.
    NotMeasured,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Self::Met => "met",
            Self::Missed => "MISSED",
            Self::NotMeasured => "not measured",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    #[serde(skip)]
    pub goal: Goal,
    pub target: String,
    /// The unit of the measured values: `ratio`, `ms` or `MiB`.
    pub unit: &'static str,
    pub measured: Vec<Measurement>,
    pub status: Status,
}

/// A target's value for one verdict; `None` if not measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Measurement {
    pub verdict: Verdict,
    pub value: Option<f64>,
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
    pub payload: PayloadKind,
    pub concurrency: u32,
    pub comparisons: Vec<Comparison>,
    pub targets: Vec<Target>,
}

/// The row of `server`'s headline cell for `verdict`, if it was measured.
pub fn headline_row(rows: &[Row], server: ServerKind, verdict: Verdict) -> Option<&Row> {
    rows.iter().find(|row| {
        row.server == server
            && row.payload == HEADLINE_PAYLOAD
            && row.concurrency == HEADLINE_CONCURRENCY
            && row.protocol == headline_protocol(server)
            && row.verdict == verdict
            && row.rps.is_some()
    })
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
    let targets = GOALS
        .iter()
        .map(|&goal| {
            let measured: Vec<Measurement> = Verdict::ALL
                .iter()
                .map(|&verdict| Measurement {
                    verdict,
                    value: goal.measure(rows, verdict),
                })
                .collect();
            let values = measured.iter().map(|m| m.value);
            let status = if values.clone().any(|value| value.is_none()) {
                Status::NotMeasured
            } else if values
                .clone()
                .all(|value| value.is_some_and(|v| goal.met(v)))
            {
                Status::Met
            } else {
                Status::Missed
            };
            Target {
                goal,
                target: goal.describe(),
                unit: goal.unit(),
                measured,
                status,
            }
        })
        .collect();
    Headline {
        payload: HEADLINE_PAYLOAD,
        concurrency: HEADLINE_CONCURRENCY,
        comparisons,
        targets,
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    (b > 0.0).then(|| a / b)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::plan::{Cell, Protocol};

    /// A measured headline row.
    pub(crate) fn row(server: ServerKind, verdict: Verdict, rps: f64, p99: f64, rss: f64) -> Row {
        let cell = Cell {
            payload: HEADLINE_PAYLOAD,
            verdict,
            protocol: headline_protocol(server),
            concurrency: HEADLINE_CONCURRENCY,
        };
        let mut row = Row::unsupported(server, cell, "");
        row.note = None;
        row.rps = Some(rps);
        row.p50_ms = Some(p99 / 2.0);
        row.p90_ms = Some(p99 * 0.8);
        row.p99_ms = Some(p99);
        row.p999_ms = Some(p99 * 2.0);
        row.p9999_ms = Some(p99 * 3.0);
        row.errors = Some(0);
        row.peak_rss_mib = Some(rss);
        row
    }

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
        let peers: Vec<_> = headline
            .comparisons
            .iter()
            .map(|c| (c.peer, c.verdict))
            .collect();
        assert_eq!(peers.len(), 6, "{peers:?}");
        let versus_go = &headline.comparisons[2];
        assert_eq!(versus_go.peer, ServerKind::ControllerRuntime);
        assert!((versus_go.rps_ratio.unwrap() - 20_000.0 / 3_000.0).abs() < 1e-9);
        assert!((versus_go.p99_ratio.unwrap() - 0.1).abs() < 1e-9);
        assert!((versus_go.rss_ratio.unwrap() - 0.3).abs() < 1e-9);
    }

    #[test]
    fn flask_is_compared_on_http1_while_the_others_use_http2() {
        let mut rows = rows();
        let flask = headline_row(&rows, ServerKind::Flask, Verdict::Allowed).unwrap();
        assert_eq!(flask.protocol, Protocol::Http1);
        for row in rows.iter_mut().filter(|r| r.server == ServerKind::Ceiling) {
            row.protocol = Protocol::Http1;
        }
        assert!(headline_row(&rows, ServerKind::Ceiling, Verdict::Allowed).is_none());
    }

    #[test]
    fn a_target_is_met_only_when_met_for_both_verdicts() {
        let targets = evaluate(&rows()).targets;
        let statuses: Vec<_> = targets
            .iter()
            .map(|t| (t.target.as_str(), t.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("req/s ≥ 5× controller-runtime", Status::Met),
                ("req/s ≥ 50× flask", Status::Missed), // 44×
                ("req/s ≥ 80% of ceiling", Status::Met),
                ("p99 < 1 ms", Status::Met),
                ("peak RSS < 20 MiB", Status::Met),
            ]
        );
        let versus_flask = targets[1].measured[0];
        assert_eq!(versus_flask.verdict, Verdict::Allowed);
        assert_eq!(
            targets[1].goal.format(versus_flask.value.unwrap()),
            "44.44×"
        );

        let mut slow_denials = rows();
        let denied = slow_denials
            .iter_mut()
            .find(|r| r.server == SUBJECT && r.verdict == Verdict::Denied)
            .unwrap();
        denied.p99_ms = Some(1.5);
        assert_eq!(evaluate(&slow_denials).targets[3].status, Status::Missed);
    }

    #[test]
    fn a_target_whose_peer_did_not_run_is_not_measured() {
        let mut rows = rows();
        rows.retain(|r| r.server != ServerKind::ControllerRuntime);
        let headline = evaluate(&rows);
        assert_eq!(headline.targets[0].status, Status::NotMeasured);
        assert_eq!(headline.targets[0].measured[0].value, None);
    }
}
