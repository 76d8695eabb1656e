//! `just soak`: load through the API server on the local control plane for `SOAK_SECONDS`
//! (default 120) with `SOAK_CLIENTS` clients (default 4), while the serving certificate is
//! renewed, the CA is replaced in its three stages and the webhook is restarted the way a
//! rolling update does it. Prints the reviews, the failures, and the webhook's resident memory
//! and open descriptors at the start, at their peak and at the end; exits non-zero on any
//! failure, so a regression is a number.

use std::{
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use e2e::{cluster::Cluster, load::Load, manifest, paths};

/// What happens between two pauses, in turn, for as long as the soak lasts.
const STEPS: [Step; 6] = [
    Step::Renew,
    Step::Restart,
    Step::Rotate("begin"),
    Step::Rotate("switch"),
    Step::Restart,
    Step::Rotate("finish"),
];
const PAUSE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
enum Step {
    Renew,
    Rotate(&'static str),
    Restart,
}

/// The webhook process's resident memory (bytes) and open descriptors, once a second.
#[derive(Default)]
struct Samples(Vec<(u64, usize)>);

impl Samples {
    fn line(&self) -> String {
        let (Some(first), Some(last)) = (self.0.first(), self.0.last()) else {
            return "no sample of the webhook process".to_owned();
        };
        let peak_rss = self.0.iter().map(|s| s.0).max().unwrap_or(0);
        let peak_fds = self.0.iter().map(|s| s.1).max().unwrap_or(0);
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        format!(
            "webhook RSS: start {:.1} MiB, peak {:.1} MiB, end {:.1} MiB; descriptors: start {}, peak {}, end {} ({} samples)",
            mib(first.0),
            mib(peak_rss),
            mib(last.0),
            first.1,
            peak_fds,
            last.1,
            self.0.len()
        )
    }
}

fn sample(pid: u32) -> Option<(u64, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((kib * 1024, fds))
}

fn env_number(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(value) => value
            .parse()
            .with_context(|| format!("{name}={value:?} is not a whole number")),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match soak().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("soak: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn soak() -> Result<bool> {
    let seconds = env_number("SOAK_SECONDS", 120)?;
    let clients = usize::try_from(env_number("SOAK_CLIENTS", 4)?)?;
    testkit::process::clean_up_on_interrupt();
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let work = paths::target()
        .join("soak")
        .join(format!("{stamp}-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let cluster = Arc::new(Cluster::start_local(work).await?);
    cluster
        .wait_until_ready()
        .await
        .context("the webhook did not come up")?;
    let outcome = run(&cluster, seconds, clients).await;
    let failed = !matches!(outcome, Ok(true));
    match Arc::try_unwrap(cluster) {
        Ok(cluster) => cluster.finish(failed),
        Err(_) => eprintln!("soak: the cluster is still in use; it stops at exit"),
    }
    outcome
}

async fn run(cluster: &Arc<Cluster>, seconds: u64, clients: usize) -> Result<bool> {
    let ns = cluster.namespace("soak").await?;
    let samples = Arc::new(Mutex::new(Samples::default()));
    let sampler = {
        let (cluster, samples) = (cluster.clone(), samples.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Some(sample) = cluster.webhook_pid().and_then(sample) {
                    samples
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                        .push(sample);
                }
            }
        })
    };
    eprintln!("==> soak: {seconds} s, {clients} clients");
    let load = Load::start(
        &cluster.client,
        &ns,
        clients,
        manifest("good-deployment.yaml")?,
        manifest("bad-deployment.yaml")?,
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut renewals, mut stages, mut restarts) = (0, 0, 0);
    let mut steps = STEPS.iter().cycle();
    let result = async {
        while Instant::now() + PAUSE < deadline {
            tokio::time::sleep(PAUSE).await;
            match steps.next() {
                Some(Step::Renew) => {
                    cluster.certs(&[])?;
                    renewals += 1;
                }
                Some(Step::Rotate(stage)) => {
                    cluster.certs(&["--rotate-ca", stage])?;
                    stages += 1;
                }
                Some(Step::Restart) => {
                    cluster.rolling_restart().await?;
                    restarts += 1;
                }
                None => {}
            }
        }
        if let Some(rest) = deadline.checked_duration_since(Instant::now()) {
            tokio::time::sleep(rest).await;
        }
        anyhow::Ok(())
    }
    .await;
    let tally = load.stop().await?;
    sampler.abort();
    result?;
    let lines = [
        format!(
            "soak: {} reviews through the API server ({tally}), {clients} clients",
            tally.admitted + tally.denied + tally.failed
        ),
        format!(
            "during it: {renewals} certificate renewals, {stages} CA rotation stages ({} full rotations), {restarts} rolling restarts",
            stages / 3
        ),
        samples.lock().unwrap_or_else(|p| p.into_inner()).line(),
        format!("failures: {} (goal: 0)", tally.failed),
    ];
    for line in lines {
        println!("{line}");
        cluster.note(line);
    }
    for error in &tally.first_errors {
        println!("failed: {error}");
    }
    cluster.delete_namespace(&ns).await;
    Ok(tally.failed == 0 && tally.admitted > 0 && tally.denied > 0)
}
