//! The load generator: oha, pinned to its own CPU, one run per cell, and its JSON report.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::ExitStatus,
    time::Duration,
};

use serde::Deserialize;

use crate::{
    plan::{LOAD_CPU, Protocol},
    process::{self, Group},
};

/// What the API server waits for a webhook by default (`timeoutSeconds`): a slower answer is a
/// failed review, so oha counts it as an error rather than waiting.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// oha stops by itself after the run and the requests in flight; past this margin it hangs.
const HANG_MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot run oha: {0}")]
    Spawn(std::io::Error),
    #[error("oha did not finish within {0:?}; killed it")]
    Hung(Duration),
    #[error("oha failed ({status}): {stderr}")]
    Failed { status: ExitStatus, stderr: String },
    #[error("cannot read oha's report {path}: {reason}")]
    Report { path: PathBuf, reason: String },
}

/// One run of load.
#[derive(Debug, Clone)]
pub struct Load<'a> {
    pub url: &'a str,
    pub body: &'a Path,
    pub protocol: Protocol,
    pub concurrency: u32,
    pub duration: Duration,
}

/// oha and taskset, found by the prerequisites.
#[derive(Debug, Clone)]
pub struct Oha {
    pub program: PathBuf,
    pub taskset: PathBuf,
}

impl Oha {
    /// Runs `load`, keeping oha's JSON report in `report` (and its stderr next to it).
    pub fn run(&self, load: &Load<'_>, report: &Path) -> Result<Report, LoadError> {
        let stderr_path = report.with_extension("stderr");
        let mut command = process::pinned(&self.taskset, LOAD_CPU, &self.program);
        command.args(arguments(load));
        let stdout = fs::File::create(report).map_err(LoadError::Spawn)?;
        let stderr = fs::File::create(&stderr_path).map_err(LoadError::Spawn)?;
        command.stdout(stdout).stderr(stderr);

        let mut oha = Group::spawn(&mut command).map_err(LoadError::Spawn)?;
        let limit = load.duration + REQUEST_TIMEOUT + HANG_MARGIN;
        let status = match oha.wait_for(limit).map_err(LoadError::Spawn)? {
            Some(status) => status,
            None => return Err(LoadError::Hung(limit)),
        };
        drop(oha);
        if !status.success() {
            let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
            return Err(LoadError::Failed {
                status,
                stderr: stderr.trim().to_owned(),
            });
        }
        let json = fs::read(report).map_err(|e| LoadError::Report {
            path: report.to_owned(),
            reason: e.to_string(),
        })?;
        parse(&json).map_err(|reason| LoadError::Report {
            path: report.to_owned(),
            reason,
        })
    }
}

/// oha's command line for `load`.
fn arguments(load: &Load<'_>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--no-tui",
        "--output-format",
        "json",
        // Certificates are verified by the probe before any load; oha need not pay for it.
        "--insecure",
        // oha has one CPU: one runtime thread, or its threads fight each other for it.
        "--worker-threads",
        "1",
        "-m",
        "POST",
        // controller-runtime refuses any other content type (with a 200!).
        "-T",
        "application/json",
        // Requests in flight at the deadline finish and count; without it HTTP/1 counts
        // them as errors.
        "-w",
    ]
    .map(str::to_owned)
    .into();
    args.extend([
        "-D".to_owned(),
        load.body.display().to_string(),
        "-c".to_owned(),
        load.concurrency.to_string(),
        "-z".to_owned(),
        format!("{}ms", load.duration.as_millis()),
        "-t".to_owned(),
        format!("{}s", REQUEST_TIMEOUT.as_secs()),
    ]);
    if load.protocol == Protocol::Http2 {
        // One stream per connection: `-c` connections, `-c` requests in flight, as with HTTP/1.
        args.push("--http2".to_owned());
    }
    args.push(load.url.to_owned());
    args
}

/// What a run of oha measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub requests_per_second: f64,
    /// Responses by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no response, by oha's reason.
    pub errors: BTreeMap<String, u64>,
    /// `None` when no request succeeded.
    pub latency: Option<Percentiles>,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub p99_99: f64,
}

impl Percentiles {
    pub const LABELS: [&'static str; 5] = ["p50", "p90", "p99", "p99.9", "p99.99"];

    pub fn values(&self) -> [f64; 5] {
        [self.p50, self.p90, self.p99, self.p99_9, self.p99_99]
    }
}

impl Report {
    /// Responses of any status.
    pub fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// Answers other than 200, and requests without an answer: both fail a review.
    pub fn failures(&self) -> u64 {
        let not_ok: u64 = self
            .statuses
            .iter()
            .filter(|&(&status, _)| status != 200)
            .map(|(_, count)| count)
            .sum();
        not_ok + self.errors.values().sum::<u64>()
    }

    /// The failures in a few words, e.g. `503 ×2; connection error ×5`.
    pub fn describe_failures(&self) -> String {
        let statuses = self
            .statuses
            .iter()
            .filter(|&(&status, _)| status != 200)
            .map(|(status, count)| format!("HTTP {status} ×{count}"));
        let errors = self
            .errors
            .iter()
            .map(|(error, count)| format!("{error} ×{count}"));
        statuses.chain(errors).collect::<Vec<_>>().join("; ")
    }
}

/// oha 1.16's `--output-format json`, the parts used here. Times are in seconds.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    summary: RawSummary,
    latency_percentiles: RawPercentiles,
    status_code_distribution: BTreeMap<String, u64>,
    error_distribution: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSummary {
    requests_per_sec: Option<f64>,
}

#[derive(Deserialize)]
struct RawPercentiles {
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    #[serde(rename = "p99.9")]
    p99_9: Option<f64>,
    #[serde(rename = "p99.99")]
    p99_99: Option<f64>,
}

/// Parses oha's JSON report.
pub fn parse(json: &[u8]) -> Result<Report, String> {
    let raw: Raw = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let statuses = raw
        .status_code_distribution
        .into_iter()
        .map(|(status, count)| {
            let status = status
                .parse()
                .map_err(|_| format!("{status:?} is not an HTTP status"))?;
            Ok((status, count))
        })
        .collect::<Result<_, String>>()?;
    let p = raw.latency_percentiles;
    let ms = |seconds: f64| seconds * 1e3;
    let latency = (|| {
        Some(Percentiles {
            p50: ms(p.p50?),
            p90: ms(p.p90?),
            p99: ms(p.p99?),
            p99_9: ms(p.p99_9?),
            p99_99: ms(p.p99_99?),
        })
    })();
    Ok(Report {
        requests_per_second: raw.summary.requests_per_sec.unwrap_or(0.0),
        statuses,
        errors: raw.error_distribution,
        latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from a real oha 1.16.0 run against the controller-runtime peer.
    const OHA_JSON: &str = r#"{
      "summary": {"successRate": 1.0, "total": 3.007184411, "slowest": 0.041163814,
                  "fastest": 0.000380881, "average": 0.0037, "requestsPerSec": 2108.284406107212,
                  "totalData": 1084140, "sizePerRequest": 171, "sizePerSec": 360516.6},
      "metrics": {"success_rate": 1.0, "requests_per_sec": 2108.28,
                  "latency_ms": {"min": 0.381, "mean": 3.704, "p50": 2.869, "p95": 8.901, "p99": 13.507, "max": 41.164}},
      "latencyPercentiles": {"p10": 0.00114202, "p25": 0.001813142, "p50": 0.002869011,
                             "p75": 0.004726496, "p90": 0.007222922, "p95": 0.008900621,
                             "p99": 0.013506651, "p99.9": 0.039525097, "p99.99": 0.041163814},
      "statusCodeDistribution": {"200": 6340},
      "errorDistribution": {}
    }"#;

    #[test]
    fn reads_rate_percentiles_in_ms_and_statuses() {
        let report = parse(OHA_JSON.as_bytes()).unwrap();
        assert_eq!(report.requests_per_second, 2108.284406107212);
        let latency = report.latency.unwrap();
        assert!((latency.p50 - 2.869011).abs() < 1e-9, "{latency:?}");
        assert!((latency.p99_9 - 39.525097).abs() < 1e-9, "{latency:?}");
        assert!((latency.p99_99 - 41.163814).abs() < 1e-9, "{latency:?}");
        assert_eq!(report.responses(), 6340);
        assert_eq!(report.failures(), 0);
    }

    #[test]
    fn counts_other_statuses_and_transport_errors_as_failures() {
        let json = OHA_JSON
            .replace(r#"{"200": 6340}"#, r#"{"200": 100, "503": 2}"#)
            .replace(
                r#""errorDistribution": {}"#,
                r#""errorDistribution": {"connection error": 5}"#,
            );
        let report = parse(json.as_bytes()).unwrap();
        assert_eq!(report.responses(), 102);
        assert_eq!(report.failures(), 7);
        assert_eq!(
            report.describe_failures(),
            "HTTP 503 ×2; connection error ×5"
        );
    }

    #[test]
    fn a_run_where_nothing_succeeded_has_no_latency() {
        // What oha reports against a server that does not speak HTTP/2.
        let json = r#"{"summary": {"successRate": 0.0, "requestsPerSec": 0.0},
            "latencyPercentiles": {"p50": null, "p90": null, "p99": null, "p99.9": null, "p99.99": null},
            "statusCodeDistribution": {}, "errorDistribution": {"http2 error": 812}}"#;
        let report = parse(json.as_bytes()).unwrap();
        assert_eq!(report.latency, None);
        assert_eq!(report.failures(), 812);
    }

    #[test]
    fn refuses_a_report_without_the_fields_it_needs() {
        assert!(parse(br#"{"summary": {}}"#).is_err());
        assert!(parse(b"not json").is_err());
    }

    #[test]
    fn asks_oha_for_http2_with_one_stream_per_connection() {
        let load = Load {
            url: "https://127.0.0.1:8443/validate",
            body: Path::new("/b.json"),
            protocol: Protocol::Http2,
            concurrency: 64,
            duration: Duration::from_millis(2500),
        };
        let args = arguments(&load).join(" ");
        assert!(args.contains("-c 64 -z 2500ms"), "{args}");
        assert!(
            args.ends_with("--http2 https://127.0.0.1:8443/validate"),
            "{args}"
        );
        assert!(!args.contains(" -p "), "{args}");
        let http1 = arguments(&Load {
            protocol: Protocol::Http1,
            ..load
        });
        assert!(!http1.contains(&"--http2".to_owned()));
    }
}
