//! One server through the plan: start it, check its answers, measure every cell, stop it.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use crate::{
    answer::{self, WrongAnswer},
    layout::Layout,
    load::{self, Load, LoadError, Oha},
    measure::{MeasureError, ProcessTree},
    payloads::Payloads,
    pki::Pki,
    plan::{Cell, Plan, Protocol},
    prereqs::Tools,
    probe::ProbeError,
    servers::{self, Running, ServerError, ServerKind},
    summary::{Row, ServerInfo},
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("{server} answered the {review} review wrongly over {protocol}: {error}")]
    WrongAnswer {
        server: &'static str,
        review: String,
        protocol: &'static str,
        error: WrongAnswer,
    },
    #[error("{server} could not be asked the {review} review over {protocol}: {error}")]
    NoAnswer {
        server: &'static str,
        review: String,
        protocol: &'static str,
        error: ProbeError,
    },
    #[error("{cell}: {error}")]
    Load { cell: String, error: LoadError },
    #[error("{cell}: {error}")]
    Measure { cell: String, error: MeasureError },
    #[error("cannot create {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A server's results.
#[derive(Debug, Clone)]
pub struct Measured {
    pub info: ServerInfo,
    pub rows: Vec<Row>,
}

pub struct Runner<'a> {
    plan: &'a Plan,
    tools: &'a Tools,
    pki: &'a Pki,
    payloads: &'a Payloads,
    layout: &'a Layout,
    oha: Oha,
}

impl<'a> Runner<'a> {
    pub fn new(
        plan: &'a Plan,
        tools: &'a Tools,
        pki: &'a Pki,
        payloads: &'a Payloads,
        layout: &'a Layout,
    ) -> Self {
        let oha = Oha {
            program: tools.oha.clone(),
            taskset: tools.taskset.clone(),
        };
        Self {
            plan,
            tools,
            pki,
            payloads,
            layout,
            oha,
        }
    }

    /// Starts the server once to check its answers, then once more for every cell: a cell's
    /// peak memory and its caches are then its own, not left over from the cell before (a
    /// 1 MiB × 64 burst stays in the allocator), and a quick run measures the headline cell as
    /// the full run does.
    pub fn run(&self, kind: ServerKind) -> Result<Measured, RunError> {
        let name = kind.name();
        let server = self.start(kind)?;
        println!(
            "{name}: ready in {:.0} ms (ALPN: {}), log {}",
            server.startup.as_secs_f64() * 1e3,
            server.alpn.as_deref().unwrap_or("none"),
            server.log.display()
        );
        self.check_answers(&server)?;
        let (alpn, log) = (server.alpn.clone(), server.log.clone());
        let mut startups = vec![server.startup];
        server.stop();

        let raw = self.layout.raw().join(name);
        fs::create_dir_all(&raw).map_err(|source| RunError::Output {
            path: raw.clone(),
            source,
        })?;
        let mut rows = Vec::with_capacity(self.plan.cells.len());
        for (i, &cell) in self.plan.cells.iter().enumerate() {
            let row = if cell.protocol == Protocol::Http2 && !kind.speaks_http2() {
                Row::unsupported(kind, cell, "HTTP/2 not supported")
            } else {
                let mut server = self.start(kind)?;
                startups.push(server.startup);
                let row = self.measure(&mut server, cell, &raw)?;
                server.stop();
                row
            };
            println!(
                "  [{:>2}/{}] {cell:<28} {}",
                i + 1,
                self.plan.cells.len(),
                progress(&row)
            );
            rows.push(row);
        }

        let binary_bytes = kind
            .has_own_binary()
            .then(|| self.tools.program(kind))
            .flatten()
            .and_then(|program| program.metadata().ok())
            .map(|metadata| metadata.len());
        let info = ServerInfo {
            server: kind,
            startup_ms: median(&mut startups).as_secs_f64() * 1e3,
            starts: startups.len(),
            binary_bytes,
            alpn,
            log,
        };
        Ok(Measured { info, rows })
    }

    fn start(&self, kind: ServerKind) -> Result<Running, ServerError> {
        servers::start(
            kind,
            self.tools,
            self.pki,
            &self.layout.peers(),
            &self.layout.logs(),
        )
    }

    /// Asks every review the plan uses, over every protocol the plan uses that the server
    /// speaks, and checks each answer.
    fn check_answers(&self, server: &Running) -> Result<(), RunError> {
        let name = server.kind.name();
        for (payload, verdict) in self.plan.reviews() {
            let payload = self.payloads.get(payload, verdict);
            let body = fs::read(&payload.file).map_err(|source| RunError::Output {
                path: payload.file.clone(),
                source,
            })?;
            let expected = server.kind.expected(payload);
            let review = format!("{}-{}", payload.kind.label(), payload.verdict.label());
            for protocol in self.plan.protocols() {
                if protocol == Protocol::Http2 && !server.kind.speaks_http2() {
                    continue;
                }
                let answer = server
                    .client
                    .post(protocol, "/validate", &body)
                    .map_err(|error| RunError::NoAnswer {
                        server: name,
                        review: review.clone(),
                        protocol: protocol.label(),
                        error,
                    })?;
                answer::check(&expected, answer.status, &answer.body).map_err(|error| {
                    RunError::WrongAnswer {
                        server: name,
                        review: review.clone(),
                        protocol: protocol.label(),
                        error,
                    }
                })?;
            }
        }
        println!("{name}: answers every review correctly");
        Ok(())
    }

    /// Warms up, then measures one cell: oha's numbers and the server's CPU time and peak RSS
    /// over the measured window only.
    fn measure(&self, server: &mut Running, cell: Cell, raw: &Path) -> Result<Row, RunError> {
        let payload = self.payloads.get(cell.payload, cell.verdict);
        let url = server.url();
        let load = |duration| Load {
            url: &url,
            body: &payload.file,
            protocol: cell.protocol,
            concurrency: cell.concurrency,
            duration,
        };
        let load_error = |error| RunError::Load {
            cell: cell.to_string(),
            error,
        };
        let measure_error = |error| RunError::Measure {
            cell: cell.to_string(),
            error,
        };

        self.oha
            .run(
                &load(self.plan.warmup),
                &raw.join(format!("{cell}.warmup.json")),
            )
            .map_err(load_error)?;
        server.check_alive()?;
        let window = ProcessTree::new(server.pid())
            .start()
            .map_err(measure_error)?;
        let report = self
            .oha
            .run(&load(self.plan.duration), &raw.join(format!("{cell}.json")))
            .map_err(load_error)?;
        let usage = window.finish().map_err(measure_error)?;
        server.check_alive()?;
        Ok(Row::measured(server.kind, cell, &report, &usage))
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
    if row.flagged() {
        line.push_str(&format!(
            "  ⚠ {} errors: {}",
            row.errors.unwrap_or_default(),
            row.note.as_deref().unwrap_or_default()
        ));
    }
    line
}

/// The middle value (the upper one of an even count); `durations` is not empty.
fn median(durations: &mut [Duration]) -> Duration {
    durations.sort();
    durations[durations.len() / 2]
}

/// How oha was run, for the summary.
pub fn load_generator(tools: &Tools) -> String {
    format!(
        "{} --worker-threads 1 -w -t {}s",
        tools.versions.get("oha").map_or("oha", String::as_str),
        load::REQUEST_TIMEOUT.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_start_up_ignores_one_slow_start() {
        let ms = Duration::from_millis;
        assert_eq!(median(&mut [ms(900), ms(16), ms(15), ms(17)]), ms(17));
        assert_eq!(median(&mut [ms(15), ms(900), ms(16)]), ms(16));
        assert_eq!(median(&mut [ms(5)]), ms(5));
    }
}
