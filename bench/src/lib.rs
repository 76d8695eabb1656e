//! The validator-webhook benchmarks, one home for all three:
//!
//! - `bench` (`just bench`, `just bench-quick`): the webhook against its cost floor and the
//!   webhooks users would otherwise write, each server alone on CPU 0 and oha on CPU 1.
//! - `ceiling`: the cost floor, the webhook's own server with a fixed-answer handler.
//! - `bench-apiserver` (`just bench-apiserver`): what the webhook adds to writes through a
//!   local kube-apiserver.
//!
//! The modules, from the bottom up:
//! - [`plan`]: the servers and the matrix (payload × verdict × protocol × concurrency).
//! - [`payloads`]: the AdmissionReview bodies, committed and derived.
//! - [`probe`]: a TLS client that sees a server come up and checks its answers.
//! - [`prereqs`]: where things are, and finding and building what a run needs.
//! - [`ceiling`]: the fixed answer, and the server that gives it.
//! - [`servers`]: how each server is started, waited for and checked.
//! - [`load`] (oha) and [`measure`] (/proc): the numbers of one cell, into a [`row`].
//! - [`runner`]: one server through the plan.
//! - [`headline`], [`chart`], [`report`]: what is written at the end.
//! - [`histogram`]: a Prometheus histogram, for `bench-apiserver`.

pub mod ceiling;
pub mod chart;
pub mod headline;
pub mod histogram;
pub mod load;
pub mod measure;
pub mod payloads;
pub mod plan;
pub mod prereqs;
pub mod probe;
pub mod report;
pub mod row;
pub mod runner;
pub mod servers;
