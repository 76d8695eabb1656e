//! The command line and its subcommands.

pub mod certs;
pub mod check;
pub mod cli;
pub mod serve;
pub mod vap;
