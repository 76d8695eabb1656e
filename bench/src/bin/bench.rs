//! `bench`: measures validator-webhook against its cost floor and its peers, and writes
//! `target/bench/summary.{json,md}` and `target/bench/latency-<payload>.svg`.
//!
//! Exits 1 if a server could not be started or answered a review wrongly (its results are
//! missing); a missed target is reported and is not an error.

use std::{process::ExitCode, time::Instant};

use anyhow::Context as _;
use clap::Parser;
use validator_webhook_bench::{
    headline,
    layout::Layout,
    load, machine, payloads, pki,
    plan::{LOAD_CPU, Plan, SERVER_CPU},
    prereqs::{self, step},
    process, report,
    runner::{self, Runner},
    servers::ServerKind,
    summary::{Failure, PayloadInfo, Setup, Summary},
};

/// Benchmarks validator-webhook against its cost floor (`ceiling`) and the webhooks users would
/// otherwise write (controller-runtime, Flask, gunicorn), each server on CPU 0 and oha on CPU 1.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// A reduced matrix (typical Deployment, both verdicts, HTTP/1.1 and HTTP/2, concurrency 8,
    /// 2 s per cell, no gunicorn) that finishes in under a minute.
    #[arg(long)]
    quick: bool,

    /// Measure only these servers.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SERVER")]
    servers: Vec<ServerKind>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the plan; `Ok(false)` when some server failed.
fn run(args: &Args) -> anyhow::Result<bool> {
    let started = Instant::now();
    process::kill_all_on_signal().context("cannot install the signal handler")?;
    let layout = Layout::discover().context("cannot find the runner's own directory")?;
    let plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    }
    .only(&args.servers);
    anyhow::ensure!(!plan.servers.is_empty(), "no server left to measure");

    println!("Preparing");
    if !layout.is_release() {
        step(&format!(
            "warning: {} is not a release build: the numbers mean nothing",
            layout.binaries.display()
        ));
    }
    let tools = prereqs::prepare(&layout, &plan.servers)?;
    report::clean(&layout.out)
        .with_context(|| format!("cannot clear the last results in {}", layout.out.display()))?;
    let pki = pki::generate(&layout.pki())?;
    step(&format!(
        "certificates: CA and serving certificate in {}",
        layout.pki().display()
    ));
    let payloads = payloads::prepare(&layout.committed_payloads(), &layout.payloads())?;
    for payload in payloads.iter() {
        step(&format!(
            "payload {}: {} bytes",
            payload.file.display(),
            payload.bytes
        ));
    }
    let machine = machine::describe();
    println!(
        "Measuring {} servers × {} cells ({:?} warm-up + {:?} each)",
        plan.servers.len(),
        plan.cells.len(),
        plan.warmup,
        plan.duration
    );

    let runner = Runner::new(&plan, &tools, &pki, &payloads, &layout);
    let (mut servers, mut rows, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    for &server in &plan.servers {
        match runner.run(server) {
            Ok(measured) => {
                servers.push(measured.info);
                rows.extend(measured.rows);
            }
            Err(error) => {
                eprintln!("{}: FAILED: {error}", server.name());
                failures.push(Failure {
                    server,
                    error: error.to_string(),
                });
            }
        }
    }

    let summary = Summary {
        mode: plan.mode,
        machine,
        setup: Setup {
            server_cpu: SERVER_CPU,
            load_cpu: LOAD_CPU,
            warmup_s: plan.warmup.as_secs_f64(),
            duration_s: plan.duration.as_secs_f64(),
            request_timeout_s: load::REQUEST_TIMEOUT.as_secs_f64(),
            load_generator: runner::load_generator(&tools),
            payloads: payloads
                .iter()
                .map(|p| PayloadInfo {
                    payload: p.kind,
                    verdict: p.verdict,
                    bytes: p.bytes,
                })
                .collect(),
        },
        tools: tools.versions.clone(),
        servers,
        failures,
        headline: headline::evaluate(&rows),
        rows,
    };
    let written = report::write(&summary, &layout.out)
        .with_context(|| format!("cannot write the results into {}", layout.out.display()))?;

    println!();
    print!("{}", report::console(&summary.headline));
    println!();
    for path in written {
        println!("wrote {}", path.display());
    }
    let flagged = summary.rows.iter().filter(|row| row.flagged()).count();
    if flagged > 0 {
        println!("{flagged} cells had failed requests (flagged ⚠ in summary.md)");
    }
    for failure in &summary.failures {
        eprintln!("{} failed: {}", failure.server.name(), failure.error);
    }
    println!("took {:.0} s", started.elapsed().as_secs_f64());
    Ok(summary.failures.is_empty())
}
