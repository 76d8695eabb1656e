//! The load generator: oha, pinned to its own CPU, one run per cell, and its JSON report.

use std::{collections::BTreeMap, fs, path::Path, time::Duration};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::{
    plan::{LOAD_CPU, Protocol},
    prereqs::Tools,
};
use testkit::process::Process;

/// What the API server waits for a webhook by default (`timeoutSeconds`): a slower answer is a
/// failed review, so oha counts it as an error rather than waiting.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The percentiles kept, as oha names them.
pub const PERCENTILES: [&str; 5] = ["p50", "p90", "p99", "p99.9", "p99.99"];

/// One run of load.
#[derive(Debug, Clone)]
pub struct Load<'a> {
    pub url: &'a str,
    pub body: &'a Path,
    pub protocol: Protocol,
    pub concurrency: u32,
    pub duration: Duration,
}

/// What a run of oha measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub requests_per_second: f64,
    /// Responses by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no response, by oha's reason.
    pub errors: BTreeMap<String, u64>,
    /// [`PERCENTILES`] in milliseconds; `None` when no request succeeded.
    pub latency_ms: Option<[f64; 5]>,
}

/// How oha is run, for the summary.
pub fn describe(tools: &Tools) -> String {
    let oha = tools.versions.get("oha").map_or("oha", String::as_str);
    format!(
        "{oha} --worker-threads 1 -w -t {}s",
        REQUEST_TIMEOUT.as_secs()
    )
}

/// Runs `load`, keeping oha's JSON report in `report` (and its stderr next to it).
pub fn run(tools: &Tools, load: &Load<'_>, report: &Path) -> Result<Report> {
    let stderr = report.with_extension("stderr");
    let mut command = tools.pinned(LOAD_CPU, &tools.oha, None)?;
    command.args(arguments(load));
    command
        .stdout(fs::File::create(report)?)
        .stderr(fs::File::create(&stderr)?);
    let mut oha =
        Process::start("oha", &mut command, Some(stderr.clone()))?.with_grace(Duration::ZERO);
    // oha stops by itself after the run and the requests in flight; far later it hangs.
    let limit = load.duration + REQUEST_TIMEOUT + Duration::from_secs(30);
    let Some(status) = oha.wait(limit)? else {
        bail!("oha did not finish within {limit:?}; killed it");
    };
    if !status.success() {
        bail!(
            "oha failed ({status}): {}",
            fs::read_to_string(&stderr).unwrap_or_default().trim()
        );
    }
    parse(&fs::read(report)?)
        .with_context(|| format!("cannot read oha's report {}", report.display()))
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
        // Requests in flight at the deadline finish and count; without it HTTP/1 counts them
        // as errors.
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

impl Report {
    /// Responses of any status.
    pub fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// Answers other than 200, and requests without an answer: both fail a review, e.g.
    /// `(7, "HTTP 503 ×2; connection error ×5")`.
    pub fn failures(&self) -> (u64, String) {
        let not_ok = self.statuses.iter().filter(|&(&status, _)| status != 200);
        let count = not_ok.clone().map(|(_, n)| n).sum::<u64>() + self.errors.values().sum::<u64>();
        let words = not_ok
            .map(|(status, n)| format!("HTTP {status} ×{n}"))
            .chain(self.errors.iter().map(|(error, n)| format!("{error} ×{n}")));
        (count, words.collect::<Vec<_>>().join("; "))
    }
}

/// oha 1.16's `--output-format json`, the parts used here. Times are in seconds.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    summary: RawSummary,
    latency_percentiles: BTreeMap<String, Option<f64>>,
    status_code_distribution: BTreeMap<u16, u64>,
    error_distribution: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSummary {
    requests_per_sec: Option<f64>,
}

/// Parses oha's JSON report.
pub fn parse(json: &[u8]) -> Result<Report> {
    let raw: Raw = serde_json::from_slice(json)?;
    let at = |name: &str| Some(raw.latency_percentiles.get(name).copied()?? * 1e3);
    let latency: Option<Vec<f64>> = PERCENTILES.iter().map(|name| at(name)).collect();
    Ok(Report {
        requests_per_second: raw.summary.requests_per_sec.unwrap_or(0.0),
        statuses: raw.status_code_distribution,
        errors: raw.error_distribution,
        latency_ms: latency.and_then(|values| values.try_into().ok()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from a real oha 1.16.0 run against the controller-runtime peer.
    const OHA_JSON: &str = r#"{
      "summary": {"successRate": 1.0, "total": 3.007184411, "requestsPerSec": 2108.284406107212},
      "latencyPercentiles": {"p10": 0.00114202, "p50": 0.002869011, "p90": 0.007222922,
                             "p99": 0.013506651, "p99.9": 0.039525097, "p99.99": 0.041163814},
      "statusCodeDistribution": {"200": 6340},
      "errorDistribution": {}
    }"#;

    #[test]
    fn reads_rate_percentiles_in_ms_and_statuses() {
        let report = parse(OHA_JSON.as_bytes()).unwrap();
        assert_eq!(report.requests_per_second, 2108.284406107212);
        let latency = report.latency_ms.unwrap();
        assert!((latency[0] - 2.869011).abs() < 1e-9, "{latency:?}");
        assert!((latency[4] - 41.163814).abs() < 1e-9, "{latency:?}");
        assert_eq!((report.responses(), report.failures().0), (6340, 0));
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
        assert_eq!(
            report.failures(),
            (7, "HTTP 503 ×2; connection error ×5".to_owned())
        );
    }

    #[test]
    fn a_run_where_nothing_succeeded_has_no_latency() {
        // What oha reports against a server that does not speak HTTP/2.
        let json = r#"{"summary": {"requestsPerSec": 0.0},
            "latencyPercentiles": {"p50": null, "p90": null, "p99": null, "p99.9": null, "p99.99": null},
            "statusCodeDistribution": {}, "errorDistribution": {"http2 error": 812}}"#;
        let report = parse(json.as_bytes()).unwrap();
        assert_eq!((report.latency_ms, report.failures().0), (None, 812));
        assert!(parse(br#"{"summary": {}}"#).is_err());
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
        let http1 = arguments(&Load {
            protocol: Protocol::Http1,
            ..load
        });
        assert!(!http1.contains(&"--http2".to_owned()));
    }
}
