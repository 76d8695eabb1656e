//! `just bench-apiserver`: what a webhook adds to a write through a real API server.
//!
//! Starts the local control plane with the webhook installed from `deploy/`, and beside it, in
//! the same test host, two more webhook servers: the ceiling (the product's own server
//! answering a fixed review with the request's uid, unread; `validator_webhook_bench::ceiling`)
//! and the controller-runtime peer of `bench/peers/controller-runtime`. Each has its own
//! Service, EndpointSlice and certificate, and a copy of the shipped
//! ValidatingWebhookConfiguration that differs only in its names, the Service it calls and its
//! CA bundle. Then sends the benchmark's typical Deployment as concurrent server-side dry-run
//! creates, in rounds that alternate between five admission set-ups, one in force at a time:
//! this webhook, the ceiling webhook, the controller-runtime webhook, this webhook's
//! ValidatingAdmissionPolicy twin (`validator-webhook vap`, Deny) and no admission check.
//! Reports the client-side latency of each and what each adds over no check, per round and
//! pooled; the API server's own `apiserver_admission_webhook_admission_duration_seconds` (per
//! webhook) or `apiserver_validating_admission_policy_check_duration_seconds`; the webhook's
//! `validator_webhook_review_duration_seconds`; and the CPU seconds every process of the run
//! (etcd, kube-apiserver, kube-controller-manager, the three webhooks, this client) spent in
//! each. Results go to `target/bench/apiserver.md`.

use std::{
    collections::BTreeMap,
    ffi::OsStr,
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
use serde_json::{Value, json};
use testkit::{
    names::{CONFIGURATION, NAMESPACE, WEBHOOK},
    process::{Process, wait_for},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use validator_webhook_bench::{
    histogram::Histogram,
    plan::ServerKind,
    prereqs::{self, Layout},
    servers::Pki,
};

#[derive(Parser)]
#[command(
    about = "What validator-webhook, its ceiling and its peers add to a write through a real kube-apiserver"
)]
struct Args {
    /// Dry-run creates per round and admission set-up.
    #[arg(long, env = "BENCH_APISERVER_REQUESTS", default_value_t = 2000)]
    requests: usize,
    /// Creates in flight at once; one series per value.
    #[arg(long, env = "BENCH_APISERVER_CONCURRENCY", value_delimiter = ',', default_values_t = [1, 16])]
    concurrency: Vec<usize>,
    /// Rounds per concurrency, each measuring every admission set-up once.
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
    let layout = Layout::discover()?;
    let mut versions = BTreeMap::new();
    let ceiling = prereqs::ready_server(&layout, ServerKind::Ceiling, &mut versions)?;
    let controller_runtime =
        prereqs::ready_server(&layout, ServerKind::ControllerRuntime, &mut versions)?;
    let work = paths::target().join("bench-apiserver");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    testkit::process::clean_up_on_interrupt();
    let cluster = Cluster::start_local(work.clone()).await?;
    let outcome = async {
        cluster.wait_until_ready().await?;
        let shipped = Configuration::save(&cluster, &work)?;
        let peers = vec![
            Peer::start(&cluster, &work, Admission::Ceiling, &ceiling, &shipped).await?,
            Peer::start(
                &cluster,
                &work,
                Admission::ControllerRuntime,
                &controller_runtime,
                &shipped,
            )
            .await?,
        ];
        let report = run(&cluster, &args, &work, shipped, &peers, &versions).await;
        // The peers stop before their test host goes.
        drop(peers);
        report
    }
    .await;
    cluster.finish(outcome.is_err());
    let report = outcome?;
    let out = paths::target().join("bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("apiserver.md"), &report)?;
    println!("\n{report}\nwritten to {}/apiserver.md", out.display());
    Ok(())
}

/// The report, as markdown.
async fn run(
    cluster: &Cluster,
    args: &Args,
    work: &Path,
    shipped: Configuration,
    peers: &[Peer],
    versions: &BTreeMap<String, String>,
) -> Result<String> {
    let namespace = cluster.namespace("bench").await?;
    let deployments = Api::<Deployment>::namespaced(cluster.client.clone(), &namespace);
    let deployment = typical_deployment()?;
    let vap = Vap::save(work)?;
    let configuration = |admission: Admission| -> Option<&Configuration> {
        match admission {
            Admission::Webhook => Some(&shipped),
            Admission::Vap | Admission::None => None,
            peer => (peers.iter())
                .find(|p| p.admission == peer)
                .map(|p| &p.configuration),
        }
    };
    let configurations: Vec<&Configuration> = Admission::ALL
        .into_iter()
        .filter_map(configuration)
        .collect();
    let set_ups = Setups {
        configurations: &configurations,
        vap: &vap,
        deployments: &deployments,
        deployment: &deployment,
    };
    let mut pids: Vec<u32> = peers.iter().map(Peer::pid).collect();
    pids.extend(cluster.webhook_pid());

    let mut markdown = String::from(
        "| concurrency | admission | creates/s | p50 ms | p99 ms | mean ms | added p50 ms | added p99 ms | added mean ms |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut per_round = String::from(
        "| concurrency | admission | added p50 ms, each round | median | added mean ms, each round | median |\n\
         |---:|---|---|---:|---|---:|\n",
    );
    let mut measured = String::from(
        "| concurrency | admission | calls | API server's mean ms | its p50 ms (est.) | its p99 ms (est.) | webhook's own mean ms | its p99 ms (est.) |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut cpu_table = String::from(
        "| concurrency | admission | CPU seconds per 1,000 creates, by process |\n|---:|---|---|\n",
    );
    let mut target = String::new();
    for &concurrency in &args.concurrency {
        let mut results: Vec<Measured> =
            Admission::ALL.iter().map(|_| Measured::default()).collect();
        for round in 1..=args.rounds {
            for (i, &admission) in Admission::ALL.iter().enumerate() {
                eprintln!(
                    "==> concurrency {concurrency}, round {round}/{}: {}",
                    args.rounds,
                    admission.name()
                );
                for peer in peers {
                    peer.ensure_running()?;
                }
                set_ups.remove_all(cluster).await?;
                match admission {
                    Admission::Vap => vap.install(cluster, &deployments).await?,
                    Admission::None => {}
                    webhook => {
                        (configuration(webhook).context("no configuration")?)
                            .install(cluster, &deployments, &deployment)
                            .await?;
                    }
                }
                load(&deployments, &deployment, concurrency, concurrency * 20).await?;
                let before = Snapshot::read(cluster, work, &pids).await?;
                let (latencies, took) =
                    load(&deployments, &deployment, concurrency, args.requests).await?;
                let after = Snapshot::read(cluster, work, &pids).await?;
                let calls = after.since(&before);
                match configuration(admission) {
                    Some(configuration) => {
                        let own = calls.webhook(&configuration.webhook).count;
                        ensure!(
                            own >= args.requests as u64,
                            "the API server called {} {own} times for {} creates",
                            configuration.webhook,
                            args.requests
                        );
                        ensure!(
                            calls.any_webhook.count == own,
                            "another webhook ran while only {} was configured",
                            configuration.webhook
                        );
                    }
                    // The policy was shown in force before the load (`Vap::install`); the
                    // API server's check histogram is not exported for every check.
                    None if admission == Admission::Vap => ensure!(
                        calls.any_webhook.count == 0,
                        "a webhook ran while only the ValidatingAdmissionPolicy was configured"
                    ),
                    None => ensure!(
                        calls.any_webhook.count == 0 && calls.vap.count == 0,
                        "an admission check ran while none was configured"
                    ),
                }
                results[i].add(latencies, took, calls);
            }
        }
        set_ups.remove_all(cluster).await?;
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
        let mut medians = BTreeMap::new();
        for (i, &admission) in Admission::ALL.iter().enumerate() {
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
            if admission != Admission::None {
                let rounds = results[i].rounds.iter().zip(&results[none].rounds);
                let p50: Vec<f64> = rounds
                    .clone()
                    .map(|(own, base)| own.p50 - base.p50)
                    .collect();
                let mean: Vec<f64> = rounds.map(|(own, base)| own.mean - base.mean).collect();
                let list = |values: &[f64]| {
                    (values.iter().map(|v| format!("{v:.2}")))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                per_round += &format!(
                    "| {concurrency} | {} | {} | {:.2} | {} | {:.2} |\n",
                    admission.name(),
                    list(&p50),
                    median(&p50),
                    list(&mean),
                    median(&mean),
                );
                medians.insert(admission, median(&p50));
            }
            let calls = results[i].calls.as_ref().context("no round ran")?;
            let (theirs, ours) = match admission {
                Admission::Webhook => (Some(calls.webhook(WEBHOOK)), Some(&calls.webhook_own)),
                Admission::Vap => (Some(calls.vap.clone()), None),
                Admission::None => (None, None),
                peer => (configuration(peer).map(|c| calls.webhook(&c.webhook)), None),
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
        if let (Some(ours), Some(ceiling)) = (
            medians.get(&Admission::Webhook),
            medians.get(&Admission::Ceiling),
        ) {
            target += &format!(
                "- concurrency {concurrency}: this webhook adds {ours:.2} ms at p50, the ceiling \
                 webhook {ceiling:.2} ms (medians of {} rounds): {}\n",
                args.rounds,
                within_ten_percent(*ours, *ceiling)
            );
        }
    }
    cluster.delete_namespace(&namespace).await;
    Ok(format!(
        "Server-side dry-run creates of the typical Deployment, {} rounds of {} per admission \
         set-up, alternating in each round; {}; {}.\n\n{markdown}\nWhat each adds at p50 and on \
         average, round by round (against the same round's run without a check):\n\n{per_round}\n\
         Target, this webhook's added p50 within 10% of the ceiling webhook's:\n\n{target}\n\
         {measured}\nThe API server records a ValidatingAdmissionPolicy's check duration only \
         when it denies or fails to evaluate, so the VAP twin, admitting the typical Deployment, \
         has no samples there: its cost shows in the API server's CPU time below.\n\n{cpu_table}",
        args.rounds,
        args.requests,
        machine(),
        (versions.iter())
            .map(|(tool, version)| format!("{tool}: {version}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Whether `ours` is within 10% of `ceiling`, in words.
fn within_ten_percent(ours: f64, ceiling: f64) -> String {
    let over = ours - ceiling;
    if over <= 0.10 * ceiling.abs() {
        format!("met ({over:+.2} ms)")
    } else if ceiling > 0.0 {
        format!(
            "missed by {over:.2} ms ({:.0}% of the ceiling's)",
            100.0 * over / ceiling
        )
    } else {
        format!("missed by {over:.2} ms")
    }
}

/// The median of `values` (the mean of the middle two when their number is even).
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The CPU model and how many CPUs this process may use.
fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            (info.lines())
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".to_owned());
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    format!("{cpus} CPUs ({model}) shared by every process of the run")
}

/// What a create goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Admission {
    Webhook,
    Ceiling,
    ControllerRuntime,
    Vap,
    None,
}

impl Admission {
    const ALL: [Self; 5] = [
        Self::Webhook,
        Self::Ceiling,
        Self::ControllerRuntime,
        Self::Vap,
        Self::None,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Webhook => "this webhook",
            Self::Ceiling => "ceiling webhook",
            Self::ControllerRuntime => "controller-runtime webhook",
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
    /// Each round's latencies, summarised.
    rounds: Vec<Series>,
    calls: Option<Snapshot>,
}

impl Measured {
    fn add(&mut self, latencies: Vec<Duration>, took: Duration, calls: Snapshot) {
        self.rounds.push(Series::of(latencies.clone(), took));
        self.latencies.extend(latencies);
        self.elapsed += took;
        self.calls = Some(match self.calls.take() {
            None => calls,
            Some(earlier) => earlier.plus(&calls),
        });
    }
}

/// Every admission check a round may put in force.
struct Setups<'a> {
    configurations: &'a [&'a Configuration],
    vap: &'a Vap,
    deployments: &'a Api<Deployment>,
    deployment: &'a Deployment,
}

impl Setups<'_> {
    /// Takes every admission check away and waits until the API server admits a bad Deployment
    /// and calls no webhook for the typical one.
    async fn remove_all(&self, cluster: &Cluster) -> Result<()> {
        let mut delete = vec!["delete", "validatingwebhookconfiguration"];
        delete.extend(self.configurations.iter().map(|c| c.name.as_str()));
        delete.extend(["--ignore-not-found", "--wait"]);
        cluster.kubectl.ok(&delete)?;
        self.vap.delete(cluster)?;
        let bad: Deployment = e2e::manifest("bad-deployment.yaml")?;
        wait_for(
            "the API server to stop checking",
            Duration::from_secs(60),
            || async {
                if let Err(error) = self.deployments.create(&dry_run(), &bad).await {
                    bail!("still denied: {error}");
                }
                let before = webhook_calls(cluster, None).await?;
                self.deployments.create(&dry_run(), self.deployment).await?;
                ensure!(
                    webhook_calls(cluster, None).await? == before,
                    "a webhook is still called"
                );
                Ok(())
            },
        )
        .await
    }
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

/// A ValidatingWebhookConfiguration, kept so it can be deleted and put back.
struct Configuration {
    /// The object's name.
    name: String,
    /// Its webhook's name, which the API server's metrics carry.
    webhook: String,
    file: PathBuf,
}

impl Configuration {
    /// The shipped one, as the cluster has it.
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
        Ok(Self {
            name: CONFIGURATION.to_owned(),
            webhook: WEBHOOK.to_owned(),
            file,
        })
    }

    /// A copy that calls the Service `service` of the webhook's namespace, trusting `ca_pem`;
    /// its object and webhook are named after the Service.
    fn calling(&self, service: &str, ca_pem: &str, work: &Path) -> Result<Self> {
        let mut object: Value = serde_json::from_str(&std::fs::read_to_string(&self.file)?)?;
        let webhook = format!("{service}.{NAMESPACE}.svc");
        object["metadata"]["name"] = json!(service);
        let entry = (object["webhooks"].get_mut(0))
            .filter(|entry| entry.is_object())
            .context("the shipped configuration has no webhook")?;
        entry["name"] = json!(webhook);
        entry["clientConfig"]["service"]["name"] = json!(service);
        entry["clientConfig"]["caBundle"] =
            serde_json::to_value(k8s_openapi::ByteString(ca_pem.as_bytes().to_vec()))?;
        let file = work.join(format!("{service}.validatingwebhookconfiguration.json"));
        std::fs::write(&file, object.to_string())?;
        Ok(Self {
            name: service.to_owned(),
            webhook,
            file,
        })
    }

    /// Applies the configuration and waits until the API server calls its webhook for the
    /// typical Deployment.
    async fn install(
        &self,
        cluster: &Cluster,
        deployments: &Api<Deployment>,
        deployment: &Deployment,
    ) -> Result<()> {
        cluster
            .kubectl
            .ok(&["apply", "-f", &self.file.to_string_lossy()])?;
        wait_for(
            &format!("the API server to call {}", self.webhook),
            Duration::from_secs(60),
            || async {
                let before = webhook_calls(cluster, Some(&self.webhook)).await?;
                deployments.create(&dry_run(), deployment).await?;
                ensure!(
                    webhook_calls(cluster, Some(&self.webhook)).await? > before,
                    "not called yet"
                );
                Ok(())
            },
        )
        .await
    }
}

/// A webhook server run beside this one in its test host, and the configuration that calls it.
struct Peer {
    admission: Admission,
    configuration: Configuration,
    process: std::sync::Mutex<Process>,
}

impl Peer {
    /// Starts `program` as `admission`'s server, with a certificate for a Service of its own,
    /// and routes that Service to it; installs nothing yet.
    async fn start(
        cluster: &Cluster,
        work: &Path,
        admission: Admission,
        program: &Path,
        shipped: &Configuration,
    ) -> Result<Self> {
        let (service, port, extra) = match admission {
            // The API server refuses an answer whose uid is not its request's.
            Admission::Ceiling => ("bench-ceiling", 10443, "--echo-uid"),
            Admission::ControllerRuntime => ("bench-controller-runtime", 10444, "--http2=true"),
            other => bail!("{} is not a peer webhook", other.name()),
        };
        let dir = work.join(service);
        let pki = Pki::issue_for(service, &dir)?;
        let listen = format!("0.0.0.0:{port}");
        let args: [&OsStr; 7] = [
            "--listen".as_ref(),
            listen.as_ref(),
            "--cert".as_ref(),
            pki.cert.as_os_str(),
            "--key".as_ref(),
            pki.key.as_os_str(),
            extra.as_ref(),
        ];
        let (process, ip) = cluster.spawn_beside_webhook(service, program, &args)?;
        let address = SocketAddrV4::new(ip, port);
        wait_for(
            &format!("{} listening at {address}", admission.name()),
            Duration::from_secs(30),
            || async { Ok(TcpStream::connect(address).await.map(drop)?) },
        )
        .await?;
        let routes = [
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": { "name": service, "namespace": NAMESPACE },
                "spec": { "ports": [{ "name": "https", "port": 443, "targetPort": port }] },
            }),
            json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": service,
                    "namespace": NAMESPACE,
                    "labels": { "kubernetes.io/service-name": service },
                },
                "addressType": "IPv4",
                "endpoints": [{ "addresses": [ip.to_string()], "conditions": { "ready": true } }],
                "ports": [{ "name": "https", "port": port, "protocol": "TCP" }],
            }),
        ];
        let file = dir.join("routes.json");
        let list = json!({ "apiVersion": "v1", "kind": "List", "items": routes });
        std::fs::write(&file, list.to_string())?;
        cluster
            .kubectl
            .ok(&["apply", "-f", &file.to_string_lossy()])?;
        Ok(Self {
            admission,
            configuration: shipped.calling(service, &pki.ca_pem, work)?,
            process: std::sync::Mutex::new(process),
        })
    }

    fn ensure_running(&self) -> Result<()> {
        (self.process.lock().unwrap_or_else(|p| p.into_inner())).ensure_running()
    }

    fn pid(&self) -> u32 {
        (self.process.lock().unwrap_or_else(|p| p.into_inner())).pid()
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

/// The API server's `/metrics`.
async fn apiserver_metrics(cluster: &Cluster) -> Result<String> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    (cluster.client.request_text(request).await).context("cannot read the API server's /metrics")
}

/// How often the API server has called the webhook named `webhook` (any webhook when `None`)
/// for a create.
async fn webhook_calls(cluster: &Cluster, webhook: Option<&str>) -> Result<u64> {
    let text = apiserver_metrics(cluster).await?;
    Ok(webhook_histogram(&text, webhook).count)
}

/// The API server's calls to `webhook` (to any webhook when `None`) for creates; empty until
/// the first.
fn webhook_histogram(text: &str, webhook: Option<&str>) -> Histogram {
    let mut labels = vec![("operation", "CREATE")];
    labels.extend(webhook.map(|name| ("name", name)));
    Histogram::parse(text, APISERVER_FAMILY, &labels).unwrap_or_else(|_| Histogram::empty())
}

/// The admission checks and CPU time of a stretch of time.
struct Snapshot {
    /// The calls to each webhook of a configuration, as the API server measured them.
    webhooks: BTreeMap<String, Histogram>,
    /// The calls to every webhook, as the API server measured them.
    any_webhook: Histogram,
    /// This webhook's reviews, as it measured them.
    webhook_own: Histogram,
    /// The policy checks, as the API server measured them.
    vap: Histogram,
    /// CPU seconds (user + system) by process.
    cpu: BTreeMap<String, f64>,
}

impl Snapshot {
    /// Reads the API server's and the webhook's metrics, and the CPU time of the run's
    /// processes and of `pids`.
    async fn read(cluster: &Cluster, work: &Path, pids: &[u32]) -> Result<Self> {
        let text = apiserver_metrics(cluster).await?;
        let webhooks = webhook_names(&text)
            .into_iter()
            .map(|name| {
                let histogram = webhook_histogram(&text, Some(&name));
                (name, histogram)
            })
            .collect();
        // The family appears once the policy has been checked for the first time.
        let vap = Histogram::parse(&text, VAP_FAMILY, &[("policy", "validator-webhook")])
            .unwrap_or_else(|_| Histogram::empty());
        let address = (cluster.webhook_metrics_address())
            .context("the webhook's metrics address is unknown")?;
        let webhook_own = Histogram::parse(&scrape(address).await?, WEBHOOK_FAMILY, &[])?;
        Ok(Self {
            webhooks,
            any_webhook: webhook_histogram(&text, None),
            webhook_own,
            vap,
            cpu: cpu_seconds(work, pids),
        })
    }

    /// The API server's calls to `webhook`.
    fn webhook(&self, webhook: &str) -> Histogram {
        (self.webhooks.get(webhook).cloned()).unwrap_or_else(Histogram::empty)
    }

    fn since(&self, earlier: &Self) -> Self {
        Self {
            webhooks: (self.webhooks.iter())
                .map(|(name, now)| (name.clone(), now.since(&earlier.webhook(name))))
                .collect(),
            any_webhook: self.any_webhook.since(&earlier.any_webhook),
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
        let mut webhooks = self.webhooks.clone();
        for (name, histogram) in &other.webhooks {
            let sum = match webhooks.get(name) {
                Some(mine) => mine.plus(histogram),
                None => histogram.clone(),
            };
            webhooks.insert(name.clone(), sum);
        }
        Self {
            webhooks,
            any_webhook: self.any_webhook.plus(&other.any_webhook),
            webhook_own: self.webhook_own.plus(&other.webhook_own),
            vap: self.vap.plus(&other.vap),
            cpu,
        }
    }
}

/// The webhook names the API server's admission histogram has series for.
fn webhook_names(text: &str) -> std::collections::BTreeSet<String> {
    (text.lines())
        .filter(|line| line.starts_with(APISERVER_FAMILY))
        .filter_map(|line| {
            let (_, rest) = line.split_once("name=\"")?;
            Some(rest.split_once('"')?.0.to_owned())
        })
        .collect()
}

/// CPU seconds of every process of the run (those whose command line names its work
/// directory, those of `pids`, and this client), by program name.
fn cpu_seconds(work: &Path, pids: &[u32]) -> BTreeMap<String, f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let work = work.to_string_lossy().into_owned();
    let me = std::process::id().to_string();
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let mut cpu = BTreeMap::new();
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
        } else if cmdline.contains(&work) || pids.contains(&pid) {
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
