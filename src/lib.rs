//! validator-webhook: a Kubernetes validating admission webhook that admits only workloads whose
//! container image names start with an allowed prefix.

pub mod http;
pub mod image;
pub mod metrics;
pub mod policy;
pub mod review;
pub mod workload;
