//! What one review costs, without sockets: `cargo bench --bench review` prints the time to turn
//! an AdmissionReview body into the reply body (decode, policy, encode) for each payload in
//! `bench/payloads/` and `tests/fixtures/reviews/`, as compact JSON, which is what the API server
//! sends.

use std::{
    hint::black_box,
    path::Path,
    time::{Duration, Instant},
};

use validator_webhook::{
    policy::{Policy, config::PolicyConfig},
    webhook::review,
};

/// Median time per review over several rounds of `iterations`.
fn measure(policy: &PolicyConfig, body: &[u8]) -> Duration {
    let iterations = (2_000_000 / body.len().max(1)).clamp(20, 20_000) as u32;
    let mut rounds: Vec<Duration> = (0..7)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..iterations {
                black_box(
                    review::review(policy, black_box(body))
                        .map(|r| r.body.len())
                        .ok(),
                );
            }
            started.elapsed() / iterations
        })
        .collect();
    rounds.sort();
    rounds[rounds.len() / 2]
}

fn main() {
    let policy: PolicyConfig = Policy::default().into();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let payloads = [
        ("bench/payloads", "pod-allowed"),
        ("bench/payloads", "deployment-allowed"),
        ("tests/fixtures/reviews", "deployment-as-kubectl-sends-it"),
        ("tests/fixtures/reviews", "deployment-update-to-bad-image"),
        ("tests/fixtures/reviews", "cronjob-two-offenders"),
    ];
    println!(
        "{:<34} {:>9} {:>12} {:>10}",
        "payload", "bytes", "µs/review", "MB/s"
    );
    for (dir, name) in payloads {
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let path = root.join(dir).join(format!("{name}.json"));
        let Ok(body) = std::fs::read(&path) else {
            println!("{name:<34} (missing {})", path.display());
            continue;
        };
        // The API server sends compact JSON; the files are indented for reading.
        let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON payload");
        let body = serde_json::to_vec(&body).expect("JSON");
        let took = measure(&policy, &body);
        let mbps = body.len() as f64 / took.as_secs_f64() / 1e6;
        println!(
            "{name:<34} {:>9} {:>12.2} {:>10.0}",
            body.len(),
            took.as_secs_f64() * 1e6,
            mbps
        );
    }
}
