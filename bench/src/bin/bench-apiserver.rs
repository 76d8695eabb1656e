//! `just bench-apiserver`: what the webhook adds to a write through a real API server.
//!
//! Starts the local control plane with the webhook installed from `deploy/`, then sends the
//! benchmark's typical Deployment as concurrent server-side dry-run creates, in rounds that
//! alternate between three admission set-ups: this webhook (the ValidatingWebhookConfiguration
//! of `deploy/`), its ValidatingAdmissionPolicy twin (`validator-webhook vap`, Deny) and no
//! admission check at all. Reports the client-side latency of each and what each adds over no
//! check, the API server's own `apiserver_admission_webhook_admission_duration_seconds` or
//! `apiserver_validating_admission_policy_check_duration_seconds`, the webhook's
//! `validator_webhook_review_duration_seconds`, and the CPU seconds every process of the run
//! (etcd, kube-apiserver, kube-controller-manager, the webhook, this client) spent in each.
//! Results go to `target/bench/apiserver.md`.

use std::{
    net::SocketAddrV4,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use e2e::{cluster::Cluster, paths};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, api::PostParams};
use serde_json::Value;
use testkit::{
    names::{CONFIGURATION, WEBHOOK},
    process::wait_for,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use validator_webhook_bench::histogram::Histogram;

#[derive(Parser)]
#[command(about = "What validator-webhook adds to a write through a real kube-apiserver")]
struct Args {
    /// Dry-run creates per round and configuration.
    #[arg(long, env = "BENCH_APISERVER_REQUESTS", default_value_t = 2000)]
    requests: usize,
    /// Creates in flight at once; one series per value.
    #[arg(long, env = "BENCH_APISERVER_CONCURRENCY", value_delimiter = ',', default_values_t = [1, 16])]
    concurrency: Vec<usize>,
    /// Rounds per concurrency, each measuring with and then without the webhook.
    #[arg(long, env = "BENCH_APISERVER_ROUNDS", default_value_t = 3)]
    rounds: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.requests > 0 && args.rounds > 0,
        "--requests and --rounds must be at least 1"
    );
    ensure!(
        args.concurrency.iter().all(|&c| c > 0),
        "--concurrency values must be at least 1"
    );
    let work = paths::target().join("bench-apiserver");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    testkit::process::clean_up_on_interrupt();
    let cluster = Cluster::start_local(work.clone()).await?;
    let outcome = run(&cluster, &args, &work).await;
    cluster.finish(outcome.is_err());
    let report = outcome?;
    let out = paths::target().join("bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("apiserver.md"), &report)?;
    println!("\n{report}\nwritten to {}/apiserver.md", out.display());
    Ok(())
}

/// The report, as markdown.
async fn run(cluster: &Cluster, args: &Args, work: &Path) -> Result<String> {
    cluster.wait_until_ready().await?;
    let namespace = cluster.namespace("bench").await?;
    let deployments = Api::<Deployment>::namespaced(cluster.client.clone(), &namespace);
    let deployment = typical_deployment()?;
    let configuration = Configuration::save(cluster, work)?;

    let vap = Vap::save(work)?;

    let mut markdown = String::from(
        "| concurrency | admission | creates/s | p50 ms | p99 ms | mean ms | added p50 ms | added p99 ms | added mean ms |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut measured = String::from(
        "| concurrency | admission | calls | API server's mean ms | its p50 ms (est.) | its p99 ms (est.) | webhook's own mean ms | its p99 ms (est.) |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut cpu_table = String::from(
        "| concurrency | admission | CPU seconds per 1,000 creates, by process |\n|---:|---|---|\n",
    );
    for &concurrency in &args.concurrency {
        let mut results: Vec<Measured> =
            Admission::ALL.iter().map(|_| Measured::default()).collect();
        for round in 1..=args.rounds {
            for (i, admission) in Admission::ALL.iter().enumerate() {
                eprintln!(
                    "==> concurrency {concurrency}, round {round}/{}: {}",
                    args.rounds,
                    admission.name()
                );
                remove_all(cluster, &configuration, &vap, &deployments).await?;
                match admission {
                    Admission::Webhook => configuration.install(cluster).await?,
                    Admission::Vap => vap.install(cluster, &deployments).await?,
                    Admission::None => {}
                }
                load(&deployments, &deployment, concurrency, concurrency * 20).await?;
                let before = Snapshot::read(cluster, work).await?;
                let (latencies, took) =
                    load(&deployments, &deployment, concurrency, args.requests).await?;
                let after = Snapshot::read(cluster, work).await?;
                let calls = after.since(&before);
                match admission {
                    Admission::Webhook => ensure!(
                        calls.webhook_apiserver.count >= args.requests as u64,
                        "the API server called the webhook {} times for {} creates",
                        calls.webhook_apiserver.count,
                        args.requests
                    ),
                    // The policy was shown in force before the load (`Vap::install`); the
                    // API server's check histogram is not exported for every check.
                    Admission::Vap => {}
                    Admission::None => ensure!(
                        calls.webhook_apiserver.count == 0 && calls.vap.count == 0,
                        "an admission check ran while none was configured"
                    ),
                }
                results[i].add(latencies, took, calls);
            }
        }
        remove_all(cluster, &configuration, &vap, &deployments).await?;
        configuration.install(cluster).await?;
        let series: Vec<Series> = results
            .iter_mut()
            .map(|m| Series::of(std::mem::take(&mut m.latencies), m.elapsed))
            .collect();
        let none = Admission::ALL
            .iter()
            .position(|a| *a == Admission::None)
            .context("no baseline")?;
        let ms =
            |seconds: Option<f64>| seconds.map_or("-".to_owned(), |s| format!("{:.3}", s * 1e3));
        for (i, admission) in Admission::ALL.iter().enumerate() {
            let (own, base) = (&series[i], &series[none]);
            markdown += &format!(
                "| {concurrency} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                admission.name(),
                own.rate,
                own.p50,
                own.p99,
                own.mean,
                own.p50 - base.p50,
                own.p99 - base.p99,
                own.mean - base.mean,
            );
            let calls = results[i].calls.as_ref().context("no round ran")?;
            let (theirs, ours) = match admission {
                Admission::Webhook => (Some(&calls.webhook_apiserver), Some(&calls.webhook_own)),
                Admission::Vap => (Some(&calls.vap), None),
                Admission::None => (None, None),
            };
            if let Some(theirs) = theirs {
                measured += &format!(
                    "| {concurrency} | {} | {} | {} | {} | {} | {} | {} |\n",
                    admission.name(),
                    theirs.count,
                    ms(theirs.mean()),
                    ms(theirs.quantile(0.5)),
                    ms(theirs.quantile(0.99)),
                    ms(ours.and_then(Histogram::mean)),
                    ms(ours.and_then(|h| h.quantile(0.99))),
                );
            }
            let creates = (args.requests * args.rounds) as f64 / 1000.0;
            let cpu: Vec<String> = calls
                .cpu
                .iter()
                .map(|(process, seconds)| format!("{process} {:.2}", seconds / creates))
                .collect();
            cpu_table += &format!(
                "| {concurrency} | {} | {} |\n",
                admission.name(),
                cpu.join(", ")
            );
        }
    }
    cluster.delete_namespace(&namespace).await;
    Ok(format!(
        "Server-side dry-run creates of the typical Deployment, {} rounds of {} per admission set-up, \
         alternating in each round.\n\n{markdown}\n{measured}\n{cpu_table}",
        args.rounds, args.requests
    ))
}

/// What a create goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Webhook,
    Vap,
    None,
}

impl Admission {
    const ALL: [Self; 3] = [Self::Webhook, Self::Vap, Self::None];

    fn name(self) -> &'static str {
        match self {
            Self::Webhook => "this webhook",
            Self::Vap => "VAP twin",
            Self::None => "no admission check",
        }
    }
}

/// One admission set-up's measurements, over its rounds.
#[derive(Default)]
struct Measured {
    latencies: Vec<Duration>,
    elapsed: Duration,
    calls: Option<Snapshot>,
}

impl Measured {
    fn add(&mut self, latencies: Vec<Duration>, took: Duration, calls: Snapshot) {
        self.latencies.extend(latencies);
        self.elapsed += took;
        self.calls = Some(match self.calls.take() {
            None => calls,
            Some(earlier) => earlier.plus(&calls),
        });
    }
}

/// Takes every admission check away and waits until the API server admits a bad Deployment.
async fn remove_all(
    cluster: &Cluster,
    configuration: &Configuration,
    vap: &Vap,
    deployments: &Api<Deployment>,
) -> Result<()> {
    configuration.delete(cluster)?;
    vap.delete(cluster)?;
    let bad: Deployment = e2e::manifest("bad-deployment.yaml")?;
    wait_for(
        "the API server to stop checking",
        Duration::from_secs(60),
        || async {
            match deployments.create(&dry_run(), &bad).await {
                Ok(_) => Ok(()),
                Err(error) => bail!("still denied: {error}"),
            }
        },
    )
    .await
}

/// `validator-webhook vap` in force (Deny), kept in a file to apply and delete.
struct Vap(PathBuf);

impl Vap {
    fn save(work: &Path) -> Result<Self> {
        let printed = std::process::Command::new(paths::webhook_binary()?)
            .arg("vap")
            .output()?;
        ensure!(
            printed.status.success(),
            "validator-webhook vap failed: {}",
            String::from_utf8_lossy(&printed.stderr)
        );
        let file = work.join("vap.yaml");
        std::fs::write(&file, &printed.stdout)?;
        Ok(Self(file))
    }

    async fn install(&self, cluster: &Cluster, deployments: &Api<Deployment>) -> Result<()> {
        cluster
            .kubectl
            .ok(&["apply", "-f", &self.0.to_string_lossy()])?;
        let bad: Deployment = e2e::manifest("bad-deployment.yaml")?;
        wait_for(
            "the ValidatingAdmissionPolicy to deny",
            Duration::from_secs(60),
            || async {
                match deployments.create(&dry_run(), &bad).await {
                    Err(kube::Error::Api(status))
                        if status.message.contains("ValidatingAdmissionPolicy") =>
                    {
                        Ok(())
                    }
                    Err(error) => bail!("{error}"),
                    Ok(_) => bail!("still admitted"),
                }
            },
        )
        .await
    }

    fn delete(&self, cluster: &Cluster) -> Result<()> {
        cluster.kubectl.ok(&[
            "delete",
            "--ignore-not-found",
            "--wait",
            "-f",
            &self.0.to_string_lossy(),
        ])?;
        Ok(())
    }
}

/// The benchmark's typical Deployment as a client would send it: the admitted object of
/// `bench/payloads/deployment-allowed.json` without what the API server sets.
fn typical_deployment() -> Result<Deployment> {
    let path = paths::repository().join("bench/payloads/deployment-allowed.json");
    let review: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    let mut object = review["request"]["object"].clone();
    forget_server_fields(&mut object).context("no request.object")?;
    object["metadata"]
        .as_object_mut()
        .context("no metadata")?
        .remove("namespace");
    Ok(serde_json::from_value(object)?)
}

/// Removes the status and the metadata the API server sets, so the object can be sent as a
/// client would.
fn forget_server_fields(object: &mut Value) -> Result<()> {
    object
        .as_object_mut()
        .context("not an object")?
        .remove("status");
    let metadata = object["metadata"].as_object_mut().context("no metadata")?;
    for field in [
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
    ] {
        metadata.remove(field);
    }
    Ok(())
}

/// The shipped ValidatingWebhookConfiguration, kept so it can be deleted and put back.
struct Configuration(PathBuf);

impl Configuration {
    fn save(cluster: &Cluster, work: &Path) -> Result<Self> {
        let text = cluster.kubectl.ok(&[
            "get",
            "validatingwebhookconfiguration",
            CONFIGURATION,
            "-o",
            "json",
        ])?;
        let mut object: Value = serde_json::from_str(&text)?;
        forget_server_fields(&mut object)?;
        let file = work.join("validatingwebhookconfiguration.json");
        std::fs::write(&file, object.to_string())?;
        Ok(Self(file))
    }

    /// Puts the configuration back (when it is not there) and waits until the API server
    /// calls the webhook again.
    async fn install(&self, cluster: &Cluster) -> Result<()> {
        cluster
            .kubectl
            .ok(&["apply", "-f", &self.0.to_string_lossy()])?;
        cluster.wait_until_ready().await
    }

    fn delete(&self, cluster: &Cluster) -> Result<()> {
        cluster.kubectl.ok(&[
            "delete",
            "validatingwebhookconfiguration",
            CONFIGURATION,
            "--ignore-not-found",
            "--wait",
        ])?;
        Ok(())
    }
}

fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..PostParams::default()
    }
}

/// Sends `requests` dry-run creates, `concurrency` at a time; every one must be admitted.
async fn load(
    deployments: &Api<Deployment>,
    deployment: &Deployment,
    concurrency: usize,
    requests: usize,
) -> Result<(Vec<Duration>, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (deployments, deployment, next) =
                (deployments.clone(), deployment.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(requests / concurrency + 1);
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let sent = Instant::now();
                    deployments
                        .create(&dry_run(), &deployment)
                        .await
                        .context("a dry-run create of the typical Deployment failed")?;
                    latencies.push(sent.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    for worker in workers {
        latencies.extend(worker.await??);
    }
    Ok((latencies, started.elapsed()))
}

const APISERVER_FAMILY: &str = "apiserver_admission_webhook_admission_duration_seconds";
const VAP_FAMILY: &str = "apiserver_validating_admission_policy_check_duration_seconds";
const WEBHOOK_FAMILY: &str = "validator_webhook_review_duration_seconds";

/// The admission checks and CPU time of a stretch of time.
struct Snapshot {
    /// The webhook calls, as the API server measured them.
    webhook_apiserver: Histogram,
    /// The webhook calls, as the webhook measured them.
    webhook_own: Histogram,
    /// The policy checks, as the API server measured them.
    vap: Histogram,
    /// CPU seconds (user + system) by process.
    cpu: std::collections::BTreeMap<String, f64>,
}

impl Snapshot {
    async fn read(cluster: &Cluster, work: &Path) -> Result<Self> {
        let request = http::Request::get("/metrics").body(Vec::new())?;
        let text = (cluster.client.request_text(request).await)
            .context("cannot read the API server's /metrics")?;
        let webhook_apiserver = Histogram::parse(
            &text,
            APISERVER_FAMILY,
            &[("name", WEBHOOK), ("operation", "CREATE")],
        )?;
        // The family appears once the policy has been checked for the first time.
        let vap = Histogram::parse(&text, VAP_FAMILY, &[("policy", "validator-webhook")])
            .unwrap_or(Histogram {
                buckets: Vec::new(),
                count: 0,
                sum: 0.0,
            });
        let address = (cluster.webhook_metrics_address())
            .context("the webhook's metrics address is unknown")?;
        let webhook_own = Histogram::parse(&scrape(address).await?, WEBHOOK_FAMILY, &[])?;
        Ok(Self {
            webhook_apiserver,
            webhook_own,
            vap,
            cpu: cpu_seconds(work),
        })
    }

    fn since(&self, earlier: &Self) -> Self {
        Self {
            webhook_apiserver: self.webhook_apiserver.since(&earlier.webhook_apiserver),
            webhook_own: self.webhook_own.since(&earlier.webhook_own),
            vap: self.vap.since(&earlier.vap),
            cpu: (self.cpu.iter())
                .map(|(name, now)| {
                    let before = earlier.cpu.get(name).copied().unwrap_or(0.0);
                    (name.clone(), now - before)
                })
                .collect(),
        }
    }

    fn plus(&self, other: &Self) -> Self {
        let mut cpu = self.cpu.clone();
        for (name, seconds) in &other.cpu {
            *cpu.entry(name.clone()).or_default() += seconds;
        }
        Self {
            webhook_apiserver: self.webhook_apiserver.plus(&other.webhook_apiserver),
            webhook_own: self.webhook_own.plus(&other.webhook_own),
            vap: self.vap.plus(&other.vap),
            cpu,
        }
    }
}

/// CPU seconds of every process of the run (those whose command line names its work
/// directory, and this client), by program name.
fn cpu_seconds(work: &Path) -> std::collections::BTreeMap<String, f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let work = work.to_string_lossy().into_owned();
    let me = std::process::id().to_string();
    let mut cpu = std::collections::BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return cpu;
    };
    for entry in entries.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
        let name = if pid == me {
            "client".to_owned()
        } else if cmdline.contains(&work) {
            let program = cmdline.split('\0').next().unwrap_or_default();
            program.rsplit('/').next().unwrap_or(program).to_owned()
        } else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state is the 3rd field, utime the 14th.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks_used: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<f64>().ok()))
            .sum();
        *cpu.entry(name).or_default() += ticks_used / ticks;
    }
    cpu
}

/// `GET /metrics` over plain HTTP/1.0, as a Prometheus scraper would.
async fn scrape(address: SocketAddrV4) -> Result<String> {
    let mut stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot reach the webhook's metrics on {address}"))?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: webhook\r\n\r\n")
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) =
        (response.split_once("\r\n\r\n")).context("the webhook's metrics response has no body")?;
    ensure!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "the webhook's metrics answered {}",
        head.lines().next().unwrap_or_default()
    );
    Ok(body.to_owned())
}

/// Client-side latencies of one configuration, in milliseconds.
struct Series {
    rate: f64,
    p50: f64,
    p99: f64,
    mean: f64,
}

impl Series {
    fn of(mut latencies: Vec<Duration>, elapsed: Duration) -> Self {
        latencies.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let at = |q: f64| {
            let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
            ms(latencies[rank - 1])
        };
        Self {
            rate: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: at(0.5),
            p99: at(0.99),
            mean: latencies.iter().copied().map(ms).sum::<f64>() / latencies.len() as f64,
        }
    }
}
