//! validator-webhook: a Kubernetes validating admission webhook that admits only workloads whose
//! container image names start with an allowed prefix.
//!
//! Where things live:
//! - [`policy`]: the rule and the denial text; pure.
//! - [`image`]: an image reference to its name.
//! - [`workload`]: where each kind keeps its containers.
//! - [`review`]: AdmissionReview bytes in, bytes out.
//! - [`http`]: routes, and how every kind of bad request is answered.
//! - [`server`]: listeners, TLS connections, graceful shutdown.
//! - [`tls`]: the serving certificate and its reload.
//! - [`metrics`]: the Prometheus series.
//! - [`cli`], [`serve`], [`check`], [`certs`]: the command line and its subcommands.

pub mod certs;
pub mod check;
pub mod cli;
pub mod http;
pub mod image;
pub mod metrics;
pub mod policy;
pub mod review;
pub mod serve;
pub mod server;
pub mod tls;
pub mod workload;
