//! The webhook over HTTPS: reviews, routes, the server, its certificate and its metrics.

pub mod budget;
pub mod handler;
pub mod metrics;
pub mod policy_file;
pub mod review;
pub mod server;
pub mod tls;
pub mod watch;
