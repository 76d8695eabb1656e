//! The results for people: `summary.md` (tables ready for a README), the console's headline,
//! and writing everything into `target/bench/`.

use std::{
    fmt::Write as _,
    fs, io,
    path::{Path, PathBuf},
};

use crate::{
    chart,
    headline::{Headline, SUBJECT, Target},
    plan::{HEADLINE_CONCURRENCY, HEADLINE_PAYLOAD, Mode, PayloadKind, Verdict},
    servers::ServerKind,
    summary::{Row, Summary},
};

/// What earlier runs wrote and this one replaces: a quick run must not leave a full run's charts
/// lying next to its own summary.
pub fn clean(out: &Path) -> io::Result<()> {
    let Ok(entries) = fs::read_dir(out) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let stale = name.starts_with("summary.") || name.starts_with("latency-");
        if stale {
            fs::remove_file(&path)?;
        } else if name == "raw" || name == "logs" {
            fs::remove_dir_all(&path)?;
        }
    }
    Ok(())
}

/// Writes `summary.json`, `summary.md` and a chart per measured payload; returns their paths.
pub fn write(summary: &Summary, out: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(out)?;
    let mut written = Vec::new();
    let mut put = |name: String, contents: &[u8]| {
        let path = out.join(name);
        fs::write(&path, contents)?;
        written.push(path);
        io::Result::Ok(())
    };
    let json = serde_json::to_vec_pretty(summary).map_err(io::Error::other)?;
    put("summary.json".to_owned(), &json)?;
    put("summary.md".to_owned(), markdown(summary).as_bytes())?;
    for payload in PayloadKind::ALL {
        let series = chart::series(&summary.rows, payload);
        if let Some(svg) = chart::render(&chart::title(payload), &series) {
            let svg = svg.map_err(io::Error::other)?;
            put(format!("latency-{}.svg", payload.label()), svg.as_bytes())?;
        }
    }
    Ok(written)
}

/// The headline comparison and the targets, for the console.
pub fn console(headline: &Headline) -> String {
    let mut text = format!(
        "Headline: {}, concurrency {}, HTTP/2 (Flask and gunicorn: HTTP/1.1)\n",
        headline.payload.title(),
        headline.concurrency
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
    for target in &headline.targets {
        let _ = writeln!(
            text,
            "  {:<15} {:<30} {}",
            format!("[{}]", target.status.label()),
            target.target,
            measured(target)
        );
    }
    text
}

pub fn markdown(summary: &Summary) -> String {
    let mut md = String::new();
    let machine = &summary.machine;
    let setup = &summary.setup;
    let mode = match summary.mode {
        Mode::Quick => "Quick run (reduced matrix, short cells: indicative only)",
        Mode::Full => "Full run",
    };
    let _ = writeln!(md, "# validator-webhook benchmark\n");
    let _ = writeln!(
        md,
        "{mode}, {}: {} ({} CPUs), Linux {}{}.",
        machine.date,
        machine.cpu_model,
        machine.cores,
        machine.kernel,
        machine
            .load_average
            .as_ref()
            .map(|load| format!(", load average {load} at the start"))
            .unwrap_or_default(),
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
        "## Headline: {}, concurrency {}\n\nHTTP/2, except Flask and gunicorn, which speak only HTTP/1.1.\n",
        HEADLINE_PAYLOAD.title(),
        HEADLINE_CONCURRENCY
    );
    let mut headline_rows = Vec::new();
    for server in ServerKind::ALL {
        for verdict in Verdict::ALL {
            if let Some(row) = crate::headline::headline_row(&summary.rows, server, verdict) {
                headline_rows.push(measurement_cells(
                    row,
                    &[Column::Server, Column::Protocol, Column::Verdict],
                ));
            }
        }
    }
    md.push_str(&table(
        &measurement_headers(&[Column::Server, Column::Protocol, Column::Verdict]),
        &headline_rows,
    ));

    let _ = writeln!(
        md,
        "\n### {} compared\n\nvalidator-webhook's value divided by the other server's: above 1 is better for req/s, below 1 is better for p99 and peak RSS.\n",
        SUBJECT.name()
    );
    let comparisons: Vec<Vec<String>> = summary
        .headline
        .comparisons
        .iter()
        .map(|c| {
            vec![
                c.peer.name().to_owned(),
                c.verdict.label().to_owned(),
                ratio(c.rps_ratio),
                ratio(c.p99_ratio),
                ratio(c.rss_ratio),
            ]
        })
        .collect();
    md.push_str(&table(
        &["server", "verdict", "req/s", "p99", "peak RSS"],
        &comparisons,
    ));

    md.push_str("\n### Targets\n\n");
    let targets: Vec<Vec<String>> = summary
        .headline
        .targets
        .iter()
        .map(|t| {
            let mut cells = vec![t.target.clone()];
            cells.extend(
                t.measured
                    .iter()
                    .map(|m| m.value.map_or_else(dash, |v| t.goal.format(v))),
            );
            cells.push(t.status.label().to_owned());
            cells
        })
        .collect();
    md.push_str(&table(&["target", "allowed", "denied", "status"], &targets));

    md.push_str("\n## Servers\n\n");
    let servers: Vec<Vec<String>> = summary
        .servers
        .iter()
        .map(|s| {
            vec![
                s.server.name().to_owned(),
                format!("{:.0} ({} starts)", s.startup_ms, s.starts),
                s.binary_bytes
                    .map_or_else(dash, |b| format!("{:.1}", b as f64 / 1024.0 / 1024.0)),
                s.alpn.clone().unwrap_or_else(|| "none".to_owned()),
            ]
        })
        .collect();
    md.push_str(&table(
        &[
            "server",
            "start-up to ready, median (ms)",
            "binary (MiB)",
            "ALPN chosen",
        ],
        &servers,
    ));

    md.push_str("\n## Payloads\n\n");
    let payloads: Vec<Vec<String>> = setup
        .payloads
        .iter()
        .map(|p| {
            vec![
                p.payload.title().to_owned(),
                p.verdict.label().to_owned(),
                count(p.bytes as f64),
            ]
        })
        .collect();
    md.push_str(&table(
        &["payload", "verdict", "bytes (compact JSON)"],
        &payloads,
    ));

    md.push_str("\n## All cells\n");
    for payload in PayloadKind::ALL {
        let rows: Vec<Vec<String>> = summary
            .rows
            .iter()
            .filter(|row| row.payload == payload)
            .map(|row| {
                let mut cells = measurement_cells(row, FULL_KEYS);
                cells.push(row.note.clone().unwrap_or_default());
                cells
            })
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(md, "\n### {}\n", payload.title());
        let mut headers = measurement_headers(FULL_KEYS);
        headers.push("note");
        md.push_str(&table(&headers, &rows));
        if !chart::series(&summary.rows, payload).is_empty() {
            let _ = writeln!(
                md,
                "\n![{}](latency-{}.svg)",
                chart::title(payload),
                payload.label()
            );
        }
    }

    if !summary.failures.is_empty() {
        md.push_str("\n## Failures\n\n");
        for failure in &summary.failures {
            let _ = writeln!(
                md,
                "- **{}**: {}",
                failure.server.name(),
                failure.error.lines().next().unwrap_or_default()
            );
        }
    }
    md
}

/// The columns that say which cell a row is.
#[derive(Clone, Copy)]
enum Column {
    Server,
    Verdict,
    Protocol,
    Concurrency,
}

const FULL_KEYS: &[Column] = &[
    Column::Server,
    Column::Verdict,
    Column::Protocol,
    Column::Concurrency,
];

const MEASUREMENTS: [&str; 7] = [
    "req/s",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "peak RSS MiB",
    "CPU s / 10k",
    "errors",
];

fn measurement_headers(keys: &[Column]) -> Vec<&'static str> {
    let mut headers: Vec<&str> = keys
        .iter()
        .map(|key| match key {
            Column::Server => "server",
            Column::Verdict => "verdict",
            Column::Protocol => "protocol",
            Column::Concurrency => "c",
        })
        .collect();
    headers.extend(MEASUREMENTS);
    headers
}

fn measurement_cells(row: &Row, keys: &[Column]) -> Vec<String> {
    let mut cells: Vec<String> = keys
        .iter()
        .map(|key| match key {
            Column::Server => row.server.name().to_owned(),
            Column::Verdict => row.verdict.label().to_owned(),
            Column::Protocol => row.protocol.label().to_owned(),
            Column::Concurrency => row.concurrency.to_string(),
        })
        .collect();
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
    cells
}

/// A markdown table.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut text = line(&mut headers.iter().copied());
    text.push_str(&line(&mut headers.iter().map(|_| "---")));
    for row in rows {
        text.push_str(&line(&mut row.iter().map(String::as_str)));
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

/// `allowed 6.10×, denied 5.02×`.
fn measured(target: &Target) -> String {
    target
        .measured
        .iter()
        .map(|m| {
            let value = m.value.map_or_else(dash, |v| target.goal.format(v));
            format!("{} {value}", m.verdict.label())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        headline::{evaluate, tests::rows},
        machine::Machine,
        plan::{Cell, Protocol},
        summary::{Failure, Setup},
    };

    fn summary(rows: Vec<Row>) -> Summary {
        Summary {
            mode: Mode::Quick,
            machine: Machine {
                cpu_model: "AMD EPYC".to_owned(),
                cores: 2,
                kernel: "6.1.0".to_owned(),
                date: "2026-11-23T10:34:56Z".to_owned(),
                load_average: Some("0.10 0.20 0.30".to_owned()),
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
            tools: Default::default(),
            servers: Vec::new(),
            failures: vec![Failure {
                server: ServerKind::Gunicorn,
                error: "gunicorn did not start\nlog tail".to_owned(),
            }],
            headline: evaluate(&rows),
            rows,
        }
    }

    #[test]
    fn formats_numbers_for_people() {
        assert_eq!(count(1234567.4), "1,234,567");
        assert_eq!(count(999.6), "1,000");
        assert_eq!(count(12.0), "12");
        assert_eq!(ms(0.41234), "0.412");
        assert_eq!(ms(3.21), "3.21");
        assert_eq!(ms(41.23), "41.2");
        assert_eq!(ms(1234.5), "1234");
        assert_eq!(ratio(Some(6.666)), "6.67×");
        assert_eq!(ratio(None), "—");
    }

    #[test]
    fn renders_a_markdown_table() {
        let text = table(&["a", "b"], &[vec!["1".to_owned(), "2".to_owned()]]);
        assert_eq!(text, "| a | b |\n| --- | --- |\n| 1 | 2 |\n");
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
        assert!(
            headline.contains(
                "| validator-webhook | h2 | allowed | 20,000 | 0.400 | 0.800 | 1.60 | 9.0 | — | 0 |"
            ),
            "{headline}"
        );
        assert!(
            headline.contains("| flask | h1 | denied | 450 |"),
            "{headline}"
        );
        assert_eq!(headline.matches("\n| ").count(), 2 + 8);
        assert!(
            md.contains("| req/s ≥ 50× flask | 44.44× | 44.44× | MISSED |"),
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
        assert!(
            md.contains(
                "| flask | allowed | h2 | 8 | — | — | — | — | — | — | — | HTTP/2 not supported |"
            ),
            "{md}"
        );
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
        assert!(text.contains("[MISSED]        req/s ≥ 50× flask"), "{text}");
        assert!(text.contains("[met]           p99 < 1 ms"), "{text}");
    }
}
