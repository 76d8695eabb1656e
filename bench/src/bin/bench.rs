//! `bench`: measures validator-webhook against its cost floor and its peers, and writes
//! `target/bench/summary.{json,md}` and `target/bench/latency-<payload>.svg`.
//!
//! Exits 1 if a server could not be started or answered a review wrongly (its results are
//! missing); a missed target is a result, not an error.

use std::{process::ExitCode, time::Instant};

use anyhow::Context as _;
use clap::Parser;
use validator_webhook_bench::{
    headline, load, payloads,
    plan::{LOAD_CPU, Plan, SERVER_CPU, ServerKind},
    prereqs::{self, Layout, step},
    report::{self, Machine, Setup, Summary},
    runner::Runner,
    servers::Pki,
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
    match run(&Args::parse()) {
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
    testkit::process::clean_up_on_interrupt();
    let layout = Layout::discover()?;
    let plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    }
    .only(&args.servers);
    anyhow::ensure!(!plan.servers.is_empty(), "no server left to measure");

    println!("Preparing");
    let tools = prereqs::prepare(&layout, &plan.servers)?;
    report::clean(&layout.out).with_context(|| format!("cannot clear {}", layout.out.display()))?;
    let pki = Pki::issue(&layout.out.join("pki"))?;
    let payloads = payloads::prepare(
        &layout.source.join("payloads"),
        &layout.out.join("payloads"),
    )?;
    for payload in &payloads {
        step(&format!(
            "payload {}: {} bytes",
            payload.file.display(),
            payload.bytes
        ));
    }
    let machine = Machine::describe();
    println!(
        "Measuring {} servers × {} cells ({:?} warm-up + {:?} each)",
        plan.servers.len(),
        plan.cells.len(),
        plan.warmup,
        plan.duration
    );

    let runner = Runner {
        plan: &plan,
        tools: &tools,
        pki: &pki,
        payloads: &payloads,
        layout: &layout,
    };
    let (mut servers, mut rows, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    for &server in &plan.servers {
        match runner.run(server) {
            Ok((info, measured)) => {
                servers.push(info);
                rows.extend(measured);
            }
            Err(error) => {
                eprintln!("{}: FAILED: {error:#}", server.name());
                failures.push((server, format!("{error:#}")));
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
            load_generator: load::describe(&tools),
            payloads: payloads
                .iter()
                .map(|p| (p.kind, p.verdict, p.bytes))
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

    print!("\n{}\n", report::console(&summary.headline));
    for path in written {
        println!("wrote {}", path.display());
    }
    let flagged = summary.rows.iter().filter(|row| row.flagged()).count();
    if flagged > 0 {
        println!("{flagged} cells had failed requests (flagged ⚠ in summary.md)");
    }
    for (server, error) in &summary.failures {
        eprintln!("{} failed: {error}", server.name());
    }
    println!("took {:.0} s", started.elapsed().as_secs_f64());
    Ok(summary.failures.is_empty())
}
