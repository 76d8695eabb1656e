//! `just bench-apiserver`: what the webhook adds to a write through a real API server.
//!
//! Starts the local control plane with the webhook installed from `deploy/`, then sends the
//! benchmark's typical Deployment as concurrent server-side dry-run creates, in rounds that
//! alternate between the ValidatingWebhookConfiguration present and deleted. Reports the
//! client-side latency of both, the difference, the API server's own
//! `apiserver_admission_webhook_admission_duration_seconds` for the webhook, and the webhook's
//! `validator_webhook_review_duration_seconds` over the same calls. Results go to
//! `target/bench/apiserver.md`.

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
use e2e::{cluster::Cluster, paths, process::wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, api::PostParams};
use serde_json::Value;
use testkit::names::{CONFIGURATION, WEBHOOK};
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
    e2e::process::clean_up_on_interrupt();
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

    let mut markdown = String::from(
        "| concurrency | webhook | creates/s | p50 ms | p99 ms | mean ms |\n\
         |---:|---|---:|---:|---:|---:|\n",
    );
    let mut added = String::from(
        "| concurrency | added p50 ms | added p99 ms | added mean ms | calls | API server's mean ms | its p50 ms (est.) | its p99 ms (est.) | webhook's own mean ms | its p50 ms (est.) | its p99 ms (est.) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for &concurrency in &args.concurrency {
        let mut with = Vec::new();
        let mut without = Vec::new();
        let mut seen: Option<Calls> = None;
        let mut elapsed = [Duration::ZERO; 2];
        for round in 1..=args.rounds {
            eprintln!(
                "==> concurrency {concurrency}, round {round}/{}: with the webhook",
                args.rounds
            );
            configuration.install(cluster).await?;
            load(&deployments, &deployment, concurrency, concurrency * 20).await?;
            let before = Calls::read(cluster).await?;
            let (latencies, took) =
                load(&deployments, &deployment, concurrency, args.requests).await?;
            let calls = Calls::read(cluster).await?.since(&before);
            ensure!(
                calls.apiserver.count >= args.requests as u64,
                "the API server called the webhook {} times for {} creates",
                calls.apiserver.count,
                args.requests
            );
            seen = Some(match seen {
                None => calls,
                Some(earlier) => earlier.plus(&calls),
            });
            with.extend(latencies);
            elapsed[0] += took;

            eprintln!(
                "==> concurrency {concurrency}, round {round}/{}: without it",
                args.rounds
            );
            configuration.remove(cluster, &deployments).await?;
            load(&deployments, &deployment, concurrency, concurrency * 20).await?;
            let (latencies, took) =
                load(&deployments, &deployment, concurrency, args.requests).await?;
            without.extend(latencies);
            elapsed[1] += took;
        }
        configuration.install(cluster).await?;
        let Calls { apiserver, webhook } = seen.context("no round ran")?;
        let with = Series::of(with, elapsed[0]);
        let without = Series::of(without, elapsed[1]);
        for (name, series) in [("configured", &with), ("not configured", &without)] {
            markdown += &format!(
                "| {concurrency} | {name} | {:.0} | {:.2} | {:.2} | {:.2} |\n",
                series.rate, series.p50, series.p99, series.mean
            );
        }
        let ms =
            |seconds: Option<f64>| seconds.map_or("-".to_owned(), |s| format!("{:.3}", s * 1e3));
        added += &format!(
            "| {concurrency} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} |\n",
            with.p50 - without.p50,
            with.p99 - without.p99,
            with.mean - without.mean,
            apiserver.count,
            ms(apiserver.mean()),
            ms(apiserver.quantile(0.5)),
            ms(apiserver.quantile(0.99)),
            ms(webhook.mean()),
            ms(webhook.quantile(0.5)),
            ms(webhook.quantile(0.99)),
        );
    }
    cluster.delete_namespace(&namespace).await;
    Ok(format!(
        "Server-side dry-run creates of the typical Deployment, {} rounds of {} per configuration.\n\n{markdown}\n{added}",
        args.rounds, args.requests
    ))
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

    /// Deletes the configuration and waits until the API server stops calling the webhook.
    async fn remove(&self, cluster: &Cluster, deployments: &Api<Deployment>) -> Result<()> {
        cluster.kubectl.ok(&[
            "delete",
            "validatingwebhookconfiguration",
            CONFIGURATION,
            "--wait",
        ])?;
        let bad: Deployment = e2e::manifest("bad-deployment.yaml")?;
        wait_for(
            "the API server to stop calling the webhook",
            Duration::from_secs(30),
            || async {
                match deployments.create(&dry_run(), &bad).await {
                    Ok(_) => Ok(()),
                    Err(error) => bail!("still denied: {error}"),
                }
            },
        )
        .await
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
const WEBHOOK_FAMILY: &str = "validator_webhook_review_duration_seconds";

/// The webhook calls of a stretch of time, as the API server and as the webhook measured them.
struct Calls {
    apiserver: Histogram,
    webhook: Histogram,
}

impl Calls {
    async fn read(cluster: &Cluster) -> Result<Self> {
        let request = http::Request::get("/metrics").body(Vec::new())?;
        let text = (cluster.client.request_text(request).await)
            .context("cannot read the API server's /metrics")?;
        let apiserver = Histogram::parse(
            &text,
            APISERVER_FAMILY,
            &[("name", WEBHOOK), ("operation", "CREATE")],
        )?;
        let address = (cluster.webhook_metrics_address())
            .context("the webhook's metrics address is unknown")?;
        let webhook = Histogram::parse(&scrape(address).await?, WEBHOOK_FAMILY, &[])?;
        Ok(Self { apiserver, webhook })
    }

    fn since(&self, earlier: &Self) -> Self {
        Self {
            apiserver: self.apiserver.since(&earlier.apiserver),
            webhook: self.webhook.since(&earlier.webhook),
        }
    }

    fn plus(&self, other: &Self) -> Self {
        Self {
            apiserver: self.apiserver.plus(&other.apiserver),
            webhook: self.webhook.plus(&other.webhook),
        }
    }
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
