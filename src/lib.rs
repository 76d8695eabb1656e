//! validator-webhook: a Kubernetes validating admission webhook that admits only workloads whose
//! container image names start with an allowed prefix.

pub mod image;
pub mod policy;
pub mod workload;
