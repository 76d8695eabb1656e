//! A test host: a network namespace joined to this one by a veth pair, so the webhook has an
//! address the API server may route to (EndpointSlices refuse loopback addresses) while the
//! traffic never leaves the machine. Addresses come from 198.18.0.0/15, the range set aside
//! for benchmark testing.

use std::{net::Ipv4Addr, process::Command};

use anyhow::{Context, Result};

use testkit::process::{self, privileged, run};

pub struct TestHost {
    name: String,
    host_side: String,
    /// The host's address on the veth pair.
    pub gateway: Ipv4Addr,
    /// The test host's address: where the webhook listens.
    pub ip: Ipv4Addr,
}

impl TestHost {
    /// Creates the namespace `vwe2e-<id>` with a /30 of its own, picked from `id`.
    pub fn create(id: u32) -> Result<Self> {
        let slot = id % 16384;
        let base = Ipv4Addr::new(198, 18, (slot / 64) as u8, ((slot % 64) * 4) as u8);
        let [a, b, c, d] = base.octets();
        let host = Self {
            name: format!("vwe2e-{id}"),
            host_side: format!("vwe{slot}h"),
            gateway: Ipv4Addr::new(a, b, c, d + 1),
            ip: Ipv4Addr::new(a, b, c, d + 2),
        };
        let peer = format!("vwe{slot}n");
        let _ = privileged("ip").args(["netns", "del", &host.name]).output();
        run(privileged("ip").args(["netns", "add", &host.name])).context(
            "the local backend creates a network namespace for the webhook, which needs root \
             (CAP_NET_ADMIN and CAP_SYS_ADMIN): run the tests as root, or with passwordless sudo",
        )?;
        process::undo_on_interrupt(
            &host.undo(),
            privileged("ip").args(["netns", "del", &host.name]),
        );
        let ns = host.name.as_str();
        let steps: [&[&str]; 6] = [
            &[
                "link",
                "add",
                &host.host_side,
                "type",
                "veth",
                "peer",
                "name",
                &peer,
                "netns",
                ns,
            ],
            &[
                "addr",
                "add",
                &format!("{}/30", host.gateway),
                "dev",
                &host.host_side,
            ],
            &["link", "set", &host.host_side, "up"],
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/30", host.ip),
                "dev",
                &peer,
            ],
            &["-n", ns, "link", "set", &peer, "up"],
            &["-n", ns, "link", "set", "lo", "up"],
        ];
        for step in steps {
            run(privileged("ip").args(step))?;
        }
        Ok(host)
    }

    /// A command that runs `program` inside the test host with exactly the environment `env`.
    pub fn command(&self, program: &std::path::Path, env: &[(String, String)]) -> Command {
        let mut command = if process::is_root() {
            let mut command = Command::new("ip");
            command.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
            command
        } else {
            // sudo resets the environment; env(1) sets it again on the far side.
            let mut command = privileged("env");
            command
                .arg("-i")
                .args(env.iter().map(|(k, v)| format!("{k}={v}")))
                .arg("ip");
            command
        };
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn undo(&self) -> String {
        format!("deleting network namespace {}", self.name)
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and with it the host's end.
        let _ = privileged("ip").args(["netns", "del", &self.name]).output();
        process::forget_undo(&self.undo());
    }
}
