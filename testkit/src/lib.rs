//! What the tests, the e2e harness and the benchmarks share, written once:
//!
//! - [`names`]: the webhook's namespace, Service and configuration names, as `deploy/` has them.
//! - [`tls`]: a client configuration that trusts only a given CA.
//! - [`https`]: a client that sends requests over HTTP/1.1 or HTTP/2 to a server it verifies.
//! - [`process`]: child processes stopped on drop and on Ctrl-C, and short commands run to
//!   completion.
//! - [`reply`]: whether a body is an AdmissionReview reply, and whether it is the policy's denial.
//! - [`free_port`] and [`tail`]: a port to listen on, and the end of a log for an error message.

pub mod https;
pub mod names;
pub mod process;
pub mod reply;
pub mod tls;

use std::path::Path;

/// A free TCP port on loopback.
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The last `lines` lines of a file, for error messages (empty if it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = std::env::temp_dir().join(format!("testkit-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("a.log");
        std::fs::write(&log, "1\n2\n3\n").unwrap();
        assert_eq!(tail(&log, 2), "2\n3");
        assert_eq!(tail(&log, 9), "1\n2\n3");
        assert_eq!(tail(&dir.join("missing.log"), 2), "");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn free_port_can_be_bound() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }
}
