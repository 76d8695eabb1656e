//! The validator-webhook benchmark: the runner (`bench`) and the cost-floor server (`ceiling`).
//!
//! Where things live:
//! - [`plan`]: the matrix (payload × verdict × protocol × concurrency), quick and full.
//! - [`layout`]: where inputs are read from and results written to.
//! - [`prereqs`]: finding and building what the run needs (oha, taskset, the peers).
//! - [`pki`]: the one CA and serving certificate every server uses.
//! - [`payloads`]: the AdmissionReview bodies, committed and generated.
//! - [`answer`]: what a correct answer to a review is.
//! - [`probe`]: a small TLS client to see that a server is up and answers correctly.
//! - [`process`]: child processes that never outlive the runner.
//! - [`servers`]: how each server is started, and waited for.
//! - [`load`]: the load generator, oha, and its report.
//! - [`measure`]: CPU time and peak memory of a server, from /proc.
//! - [`runner`]: one server through the matrix, into rows.
//! - [`machine`], [`summary`], [`headline`], [`report`], [`chart`]: what is written at the end.
//! - [`ceiling`]: the cost-floor server.

pub mod answer;
pub mod ceiling;
pub mod chart;
pub mod headline;
pub mod layout;
pub mod load;
pub mod machine;
pub mod measure;
pub mod payloads;
pub mod pki;
pub mod plan;
pub mod prereqs;
pub mod probe;
pub mod process;
pub mod report;
pub mod runner;
pub mod servers;
pub mod summary;
