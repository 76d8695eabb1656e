//! What a run writes into `target/bench/`: `summary.json` (everything), `summary.md` (tables
//! ready for a README), a latency chart per payload, and the console's headline.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
};

use anyhow::Result;
use serde::Serialize;

use crate::{
    chart,
    headline::{Headline, SUBJECT, headline_row},
    plan::{HEADLINE_CONCURRENCY, HEADLINE_PAYLOAD, Mode, PayloadKind, ServerKind, Verdict},
    row::Row,
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
    pub failures: Vec<(ServerKind, String)>,
    pub headline: Headline,
    pub rows: Vec<Row>,
}

/// The machine the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    /// When the run started, UTC.
    pub date: String,
    /// `/proc/loadavg` at the start: above ~0.5 the machine was busy and the numbers are noisy.
    pub load_average: String,
}

impl Machine {
    pub fn describe() -> Self {
        let read = |path| fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'));
        let now = time::OffsetDateTime::now_utc();
        Self {
            cpu_model: model.map_or("unknown", |(_, name)| name.trim()).to_owned(),
            cores: cpuinfo
                .lines()
                .filter(|line| line.starts_with("processor"))
                .count(),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            date: format!("{} {:02}:{:02} UTC", now.date(), now.hour(), now.minute()),
            load_average: read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
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
    /// Compact bytes of each payload and verdict.
    pub payloads: Vec<(PayloadKind, Verdict, usize)>,
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
}

/// Removes what an earlier run wrote, so a quick run leaves no full run's charts beside its own
/// summary.
pub fn clean(out: &Path) -> Result<()> {
    for entry in fs::read_dir(out).into_iter().flatten() {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("summary.") || name.starts_with("latency-") {
            fs::remove_file(&path)?;
        } else if name == "raw" || name == "logs" {
            fs::remove_dir_all(&path)?;
        }
    }
    Ok(())
}

/// Writes `summary.json`, `summary.md` and a chart per measured payload; returns their paths.
pub fn write(summary: &Summary, out: &Path) -> Result<Vec<PathBuf>> {
    let mut files = vec![
        (
            "summary.json".to_owned(),
            serde_json::to_string_pretty(summary)? + "\n",
        ),
        ("summary.md".to_owned(), markdown(summary)),
    ];
    for payload in PayloadKind::ALL {
        if let Some(svg) = chart::render(&summary.rows, payload)? {
            files.push((format!("latency-{}.svg", payload.label()), svg));
        }
    }
    fs::create_dir_all(out)?;
    let mut written = Vec::new();
    for (name, contents) in files {
        fs::write(out.join(&name), contents)?;
        written.push(out.join(name));
    }
    Ok(written)
}

/// The headline comparison and the targets, for the console.
pub fn console(headline: &Headline) -> String {
    let mut text = format!(
        "Headline: {}, concurrency {HEADLINE_CONCURRENCY}, HTTP/2 (Flask and gunicorn: HTTP/1.1)\n",
        HEADLINE_PAYLOAD.title()
    );
    for c in &headline.comparisons {
        let _ = writeln!(
            text,
            "  {} / {:<19} {:<8} req/s {:>8}   p99 {:>7}   peak RSS {:>7}",
            SUBJECT.name(),
            c.peer.name(),
            c.verdict.label(),
            ratio(c.rps_ratio),
            ratio(c.p99_ratio),
            ratio(c.rss_ratio),
        );
    }
    text.push_str("Targets (validator-webhook, both verdicts):\n");
    for t in &headline.targets {
        let value = |v: Option<f64>| v.map_or_else(dash, |v| t.goal.format(v));
        let status = format!("[{}]", t.status);
        let _ = writeln!(
            text,
            "  {status:<15} {:<30} allowed {}, denied {}",
            t.target,
            value(t.allowed),
            value(t.denied)
        );
    }
    text
}

pub fn markdown(summary: &Summary) -> String {
    let (machine, setup) = (&summary.machine, &summary.setup);
    let mut md = format!(
        "# validator-webhook benchmark\n\n{}, {}: {} ({} CPUs), Linux {}, load average {} at the start.\n",
        match summary.mode {
            Mode::Quick => "Quick run (reduced matrix, short cells: indicative only)",
            Mode::Full => "Full run",
        },
        machine.date,
        machine.cpu_model,
        machine.cores,
        machine.kernel,
        machine.load_average,
    );
    let _ = writeln!(
        md,
        "Each server runs alone, pinned to CPU {}, and the load generator (`{}`) to CPU {}. Per \
         cell, a freshly started server gets {} s of warm-up, then {} s measured; `c` is the \
         number of connections (HTTP/2: one stream each); a request without an answer in {} s \
         is an error. Peak RSS and CPU time (user + system, per 10,000 reviews) are the \
         server's whole process tree's, over the measured seconds.\n",
        setup.server_cpu,
        setup.load_generator,
        setup.load_cpu,
        setup.warmup_s,
        setup.duration_s,
        setup.request_timeout_s,
    );

    let _ = writeln!(
        md,
        "## Headline: {}, concurrency {HEADLINE_CONCURRENCY}\n\nHTTP/2, except Flask and gunicorn, which speak only HTTP/1.1.\n",
        HEADLINE_PAYLOAD.title()
    );
    let headline: Vec<&Row> = ServerKind::ALL
        .iter()
        .flat_map(|&s| Verdict::ALL.map(|v| headline_row(&summary.rows, s, v)))
        .flatten()
        .collect();
    md += &cells_table(&headline, false);

    let _ = writeln!(
        md,
        "\n### {} compared\n\nIts value divided by the other server's: above 1 is better for req/s, below 1 for p99 and peak RSS.\n",
        SUBJECT.name()
    );
    let comparisons = summary.headline.comparisons.iter().map(|c| {
        let name = c.peer.name().to_owned();
        vec![
            name,
            c.verdict.label().to_owned(),
            ratio(c.rps_ratio),
            ratio(c.p99_ratio),
            ratio(c.rss_ratio),
        ]
    });
    md += &table(
        &["server", "verdict", "req/s", "p99", "peak RSS"],
        comparisons,
    );

    md += "\n### Targets\n\n";
    let targets = summary.headline.targets.iter().map(|t| {
        let value = |v: Option<f64>| v.map_or_else(dash, |v| t.goal.format(v));
        vec![
            t.target.clone(),
            value(t.allowed),
            value(t.denied),
            t.status.to_owned(),
        ]
    });
    md += &table(&["target", "allowed", "denied", "status"], targets);

    md += "\n## Servers\n\n";
    let servers = summary.servers.iter().map(|s| {
        let started = format!("{:.0} ({} starts)", s.startup_ms, s.starts);
        let binary = (s.binary_bytes).map_or_else(dash, |b| format!("{:.1}", b as f64 / 1048576.0));
        let alpn = s.alpn.clone().unwrap_or_else(|| "none".to_owned());
        vec![s.server.name().to_owned(), started, binary, alpn]
    });
    let headers = [
        "server",
        "start-up to ready, median (ms)",
        "binary (MiB)",
        "ALPN chosen",
    ];
    md += &table(&headers, servers);

    md += "\n## Payloads\n\n";
    let payloads = (setup.payloads.iter()).map(|(p, v, bytes)| {
        vec![
            p.title().to_owned(),
            v.label().to_owned(),
            count(*bytes as f64),
        ]
    });
    md += &table(&["payload", "verdict", "bytes (compact JSON)"], payloads);

    md += "\n## All cells\n";
    for payload in PayloadKind::ALL {
        let rows: Vec<&Row> = summary
            .rows
            .iter()
            .filter(|row| row.payload == payload)
            .collect();
        if !rows.is_empty() {
            let _ = write!(
                md,
                "\n### {}\n\n{}",
                payload.title(),
                cells_table(&rows, true)
            );
            if rows.iter().any(|r| r.rps.is_some()) {
                let _ = writeln!(
                    md,
                    "\n![{}](latency-{}.svg)",
                    chart::title(payload),
                    payload.label()
                );
            }
        }
    }
    if !summary.failures.is_empty() {
        md += "\n## Failures\n\n";
        for (server, error) in &summary.failures {
            let _ = writeln!(
                md,
                "- **{}**: {}",
                server.name(),
                error.lines().next().unwrap_or_default()
            );
        }
    }
    md
}

/// A table of measured rows; `all` adds the concurrency and the note.
fn cells_table(rows: &[&Row], all: bool) -> String {
    let mut headers = vec!["server", "protocol", "verdict"];
    if all {
        headers.push("c");
    }
    headers.extend([
        "req/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "peak RSS MiB",
        "CPU s / 10k",
        "errors",
    ]);
    if all {
        headers.push("note");
    }
    let lines = rows.iter().map(|row| {
        let mut cells = vec![
            row.server.name().to_owned(),
            row.protocol.label().to_owned(),
            row.verdict.label().to_owned(),
        ];
        if all {
            cells.push(row.concurrency.to_string());
        }
        cells.extend([
            row.rps.map_or_else(dash, count),
            row.p50_ms.map_or_else(dash, ms),
            row.p99_ms.map_or_else(dash, ms),
            row.p999_ms.map_or_else(dash, ms),
            row.peak_rss_mib.map_or_else(dash, |v| format!("{v:.1}")),
            row.cpu_s_per_10k.map_or_else(dash, |v| format!("{v:.2}")),
            match row.errors {
                None => dash(),
                Some(0) => "0".to_owned(),
                Some(errors) => format!("⚠ {errors}"),
            },
        ]);
        if all {
            cells.push(row.note.clone().unwrap_or_default());
        }
        cells
    });
    table(&headers, lines)
}

/// A markdown table.
fn table(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut text = format!(
        "| {} |\n|{}\n",
        headers.join(" | "),
        " --- |".repeat(headers.len())
    );
    for row in rows {
        let _ = writeln!(text, "| {} |", row.join(" | "));
    }
    text
}

fn dash() -> String {
    "—".to_owned()
}

/// Thousands separated, no decimals: `12,345`.
fn count(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// Milliseconds to three significant digits.
fn ms(value: f64) -> String {
    match value {
        v if v < 1.0 => format!("{v:.3}"),
        v if v < 10.0 => format!("{v:.2}"),
        v if v < 100.0 => format!("{v:.1}"),
        v => format!("{v:.0}"),
    }
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(dash, |v| format!("{v:.2}×"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        headline::{evaluate, tests::rows},
        plan::{Cell, Protocol},
    };

    fn summary(rows: Vec<Row>) -> Summary {
        Summary {
            mode: Mode::Quick,
            machine: Machine {
                cpu_model: "AMD EPYC".to_owned(),
                cores: 2,
                kernel: "6.1.0".to_owned(),
                date: "2026-11-23 10:34 UTC".to_owned(),
                load_average: "0.10 0.20 0.30".to_owned(),
            },
            setup: Setup {
                server_cpu: 0,
                load_cpu: 1,
                warmup_s: 0.5,
                duration_s: 2.0,
                request_timeout_s: 10.0,
                load_generator: "oha 1.16.0 --worker-threads 1 -w -t 10s".to_owned(),
                payloads: Vec::new(),
            },
            tools: BTreeMap::new(),
            servers: Vec::new(),
            failures: vec![(
                ServerKind::Gunicorn,
                "gunicorn did not start\nlog tail".to_owned(),
            )],
            headline: evaluate(&rows),
            rows,
        }
    }

    #[test]
    fn formats_numbers_for_people() {
        assert_eq!(
            [count(1234567.4), count(999.6), count(12.0)],
            ["1,234,567", "1,000", "12"]
        );
        assert_eq!(
            [ms(0.41234), ms(3.21), ms(41.23), ms(1234.5)],
            ["0.412", "3.21", "41.2", "1234"]
        );
        assert_eq!([ratio(Some(6.666)), ratio(None)], ["6.67×", "—"]);
    }

    #[test]
    fn the_headline_table_has_one_line_per_server_and_verdict() {
        let md = markdown(&summary(rows()));
        let headline = md
            .split("## Headline")
            .nth(1)
            .unwrap()
            .split("###")
            .next()
            .unwrap();
        let webhook =
            "| validator-webhook | h2 | allowed | 20,000 | 0.400 | 0.800 | 1.60 | 9.0 | — | 0 |";
        assert!(headline.contains(webhook), "{headline}");
        assert!(
            headline.contains("| flask | h1 | denied | 450 |"),
            "{headline}"
        );
        assert_eq!(headline.matches("\n| ").count(), 2 + 8);
        assert!(
            md.contains("| p99 ≤ 1.2× ceiling's | 1.14× | 1.14× | met |"),
            "{md}"
        );
        assert!(md.contains("- **gunicorn**: gunicorn did not start\n"));
    }

    #[test]
    fn flags_rows_with_errors_and_explains_unsupported_cells() {
        let mut rows = rows();
        rows[0].errors = Some(3);
        rows[0].note = Some("connection error ×3".to_owned());
        let cell = Cell {
            payload: PayloadKind::Deployment,
            verdict: Verdict::Allowed,
            protocol: Protocol::Http2,
            concurrency: 8,
        };
        rows.push(Row::unsupported(
            ServerKind::Flask,
            cell,
            "HTTP/2 not supported",
        ));
        let md = markdown(&summary(rows));
        assert!(md.contains("| ⚠ 3 | connection error ×3 |"), "{md}");
        let unsupported =
            "| flask | h2 | allowed | 8 | — | — | — | — | — | — | — | HTTP/2 not supported |";
        assert!(md.contains(unsupported), "{md}");
        assert!(md.contains(
            "![typical Deployment: latency, allowed, concurrency 8](latency-deployment.svg)"
        ));
    }

    #[test]
    fn the_console_marks_each_target() {
        let text = console(&evaluate(&rows()));
        assert!(
            text.contains("validator-webhook / controller-runtime  allowed  req/s    6.67×"),
            "{text}"
        );
        assert!(
            text.contains("[met]           req/s ≥ 85% of ceiling"),
            "{text}"
        );
        assert!(text.contains("[met]           p99 < 1 ms"), "{text}");
    }
}
