//! validator-webhook: a Kubernetes validating admission webhook that admits only workloads whose
//! container image names start with an allowed prefix.
//!
//! # Module map
//!
//! Three layers, each using only the ones below it:
//!
//! | layer | module | owns |
//! |---|---|---|
//! | commands | [`cmd::cli`] | flags and their environment variables |
//! | | [`cmd::serve`] | from configuration to a running server, and back on a signal |
//! | | [`cmd::check`] | verdicts on manifests, offline |
//! | | [`cmd::certs`] | a CA, a serving certificate and the manifests that use them |
//! | webhook | [`webhook::review`] | AdmissionReview bytes -> verdict -> AdmissionResponse bytes, in the namespace's mode |
//! | | [`webhook::handler`] | routes, and how every kind of bad request is answered (413, 415, ...) |
//! | | [`webhook::server`] | the accept loop, TLS, HTTP/1.1 + HTTP/2, limits, shutdown; any [`webhook::server::Handler`] |
//! | | [`webhook::tls`] | the serving certificate and its reload |
//! | | [`webhook::policy_file`] | the policy file read at startup and reloaded, keeping the last good one |
//! | | [`webhook::watch`] | re-reading files when they change on disk (certificate, policy file) |
//! | | [`webhook::metrics`] | the Prometheus series |
//! | policy | [`policy`] | the rule, its [`policy::Verdict`] and the denial text; pure |
//! | | [`policy::config`] | the policy file's format, and the rules per namespace resolved from it and the flags |
//! | | [`policy::workload`] | where each kind keeps its pod spec and containers |
//! | | [`policy::image`] | an image reference to its name |
//! | | [`pki`] | CA and certificate issuance, for `certs`, the self-signed default and tests |

pub mod cmd;
pub mod pki;
pub mod policy;
pub mod webhook;
