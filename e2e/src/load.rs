//! Steady load through the API server: clients making server-side dry-run creates of a good
//! and a bad Deployment in turn, each of which the API server sends to the webhook, so that
//! every answer that is not the expected admission or denial is an admission lost.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Result;
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client, api::PostParams};
use tokio::task::JoinSet;

/// What the clients saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Good Deployments the API server admitted.
    pub admitted: u64,
    /// Bad Deployments the webhook denied with its policy message.
    pub denied: u64,
    /// Everything else: errors, timeouts, a bad Deployment admitted, a good one denied.
    pub failed: u64,
    /// The first few failures, as the client saw them.
    pub first_errors: Vec<String>,
    pub elapsed: Duration,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.admitted += other.admitted;
        self.denied += other.denied;
        self.failed += other.failed;
        for error in other.first_errors {
            if self.first_errors.len() < FIRST_ERRORS {
                self.first_errors.push(error);
            }
        }
    }

    fn fail(&mut self, error: String) {
        self.failed += 1;
        if self.first_errors.len() < FIRST_ERRORS {
            self.first_errors.push(error);
        }
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} admitted, {} denied, {} failed in {:.1} s",
            self.admitted,
            self.denied,
            self.failed,
            self.elapsed.as_secs_f64()
        )
    }
}

const FIRST_ERRORS: usize = 5;

/// Clients running until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    clients: JoinSet<Tally>,
    started: Instant,
}

impl Load {
    /// Starts `clients` clients creating `good` and `bad` in `namespace` by server-side dry run.
    pub fn start(
        client: &Client,
        namespace: &str,
        clients: usize,
        good: Deployment,
        bad: Deployment,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut set = JoinSet::new();
        for _ in 0..clients {
            let api = Api::<Deployment>::namespaced(client.clone(), namespace);
            let (good, bad, stop) = (good.clone(), bad.clone(), stop.clone());
            set.spawn(async move { one_client(api, good, bad, &stop).await });
        }
        Self {
            stop,
            clients: set,
            started: Instant::now(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the clients after their current request and adds up what they saw.
    pub async fn stop(mut self) -> Result<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = Tally::default();
        while let Some(tally) = self.clients.join_next().await {
            total.add(tally?);
        }
        total.elapsed = self.started.elapsed();
        Ok(total)
    }
}

async fn one_client(
    api: Api<Deployment>,
    good: Deployment,
    bad: Deployment,
    stop: &AtomicBool,
) -> Tally {
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut tally = Tally::default();
    let mut expect_denial = true;
    while !stop.load(Ordering::Relaxed) {
        expect_denial = !expect_denial;
        let object = if expect_denial { &bad } else { &good };
        let answer = api.create(&params, object).await;
        match (expect_denial, answer) {
            (false, Ok(_)) => tally.admitted += 1,
            (true, Err(kube::Error::Api(status)))
                if status.code == 403 && status.message.contains(testkit::reply::DENIAL_PREFIX) =>
            {
                tally.denied += 1;
            }
            (true, Ok(_)) => tally.fail("a bad Deployment was admitted".to_owned()),
            (_, Err(error)) => tally.fail(error.to_string()),
        }
    }
    tally
}
