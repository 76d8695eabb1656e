//! One server through the plan: start it and check its answers, then start it afresh for every
//! cell (so a cell's peak memory and caches are its own, not left by a 1 MiB × 64 burst, and a
//! quick run measures the headline cell as the full run does), warm up, measure, stop.

use std::fs;

use anyhow::{Context, Result};

use crate::{
    load::{self, Load},
    measure::Window,
    payloads::Payload,
    plan::{Plan, Protocol, ServerKind},
    prereqs::{Layout, Tools},
    report::ServerInfo,
    row::Row,
    servers::{self, Pki},
};

pub struct Runner<'a> {
    pub plan: &'a Plan,
    pub tools: &'a Tools,
    pub pki: &'a Pki,
    pub payloads: &'a [Payload],
    pub layout: &'a Layout,
}

impl Runner<'_> {
    pub fn run(&self, kind: ServerKind) -> Result<(ServerInfo, Vec<Row>)> {
        let start = || servers::start(kind, self.tools, self.pki, self.layout);
        let server = start()?;
        let alpn = server.alpn.clone();
        println!(
            "{}: ready in {:.0} ms (ALPN: {}), log {}",
            kind.name(),
            server.startup.as_secs_f64() * 1e3,
            alpn.as_deref().unwrap_or("none"),
            server.log.display()
        );
        let reviews: Vec<&Payload> = (self.payloads.iter())
            .filter(|p| {
                self.plan
                    .cells
                    .iter()
                    .any(|c| (c.payload, c.verdict) == (p.kind, p.verdict))
            })
            .collect();
        server.check_answers(&reviews)?;
        println!("{}: answers every review correctly", kind.name());
        let mut startups = vec![server.startup];
        drop(server);

        let raw = self.layout.out.join("raw").join(kind.name());
        fs::create_dir_all(&raw)?;
        let mut rows = Vec::new();
        for (i, &cell) in self.plan.cells.iter().enumerate() {
            let row = if cell.protocol == Protocol::Http2 && !kind.speaks_http2() {
                Row::unsupported(kind, cell, "HTTP/2 not supported")
            } else {
                let mut server = start()?;
                startups.push(server.startup);
                let payload = (self.payloads.iter())
                    .find(|p| (p.kind, p.verdict) == (cell.payload, cell.verdict))
                    .context("no such payload")?;
                let url = server.url();
                let load = |duration| Load {
                    url: &url,
                    body: &payload.file,
                    protocol: cell.protocol,
                    concurrency: cell.concurrency,
                    duration,
                };
                let warmup = load::run(
                    self.tools,
                    &load(self.plan.warmup),
                    &raw.join(format!("{cell}.warmup.json")),
                );
                warmup.with_context(|| format!("{cell}: warming up"))?;
                server.check_alive()?;
                let window = Window::open(server.pid()).with_context(|| format!("{cell}"))?;
                let report = load::run(
                    self.tools,
                    &load(self.plan.duration),
                    &raw.join(format!("{cell}.json")),
                )
                .with_context(|| format!("{cell}"))?;
                let usage = window.close().with_context(|| format!("{cell}"))?;
                server.check_alive()?;
                Row::measured(kind, cell, &report, &usage)
            };
            println!(
                "  [{:>2}/{}] {cell:<28} {}",
                i + 1,
                self.plan.cells.len(),
                progress(&row)
            );
            rows.push(row);
        }
        startups.sort();
        let info = ServerInfo {
            server: kind,
            startup_ms: startups[startups.len() / 2].as_secs_f64() * 1e3,
            starts: startups.len(),
            // The interpreters' size says nothing of the servers.
            binary_bytes: (!matches!(kind, ServerKind::Flask | ServerKind::Gunicorn))
                .then(|| Some(self.tools.servers.get(&kind)?.metadata().ok()?.len()))
                .flatten(),
            alpn,
        };
        Ok((info, rows))
    }
}

/// One line per cell while the run goes on.
fn progress(row: &Row) -> String {
    let (Some(rps), Some(p99)) = (row.rps, row.p99_ms) else {
        return row.note.clone().unwrap_or_default();
    };
    let mut line = format!(
        "{rps:>9.0} req/s  p99 {p99:>8.3} ms  {:>6.1} MiB  {:>6.2} CPU s/10k",
        row.peak_rss_mib.unwrap_or_default(),
        row.cpu_s_per_10k.unwrap_or_default()
    );
    if let (true, Some(note)) = (row.flagged(), &row.note) {
        line += &format!("  ⚠ {}", note);
    }
    line
}
