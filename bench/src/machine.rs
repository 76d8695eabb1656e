//! The machine the numbers come from, for the summary.

use serde::Serialize;
use time::OffsetDateTime;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    /// Logical CPUs.
    pub cores: usize,
    pub kernel: String,
    /// When the run started, UTC, RFC 3339.
    pub date: String,
    /// `/proc/loadavg`'s 1, 5 and 15-minute averages at the start: above ~0.5 the machine was
    /// busy and the numbers are noisy.
    pub load_average: Option<String>,
}

pub fn describe() -> Machine {
    let read = |path| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    Machine {
        cpu_model: cpu_model(&cpuinfo).unwrap_or("unknown").to_owned(),
        cores: cpuinfo
            .lines()
            .filter(|line| line.starts_with("processor"))
            .count(),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        date: rfc3339(OffsetDateTime::now_utc()),
        load_average: read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .map(str::to_owned)
            .reduce(|a, b| format!("{a} {b}")),
    }
}

/// The first `model name` in /proc/cpuinfo.
fn cpu_model(cpuinfo: &str) -> Option<&str> {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == "model name")
        .map(|(_, value)| value.trim())
}

fn rfc3339(at: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_model_name() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\
                       processor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(cpuinfo), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor\t: 0\n"), None);
    }

    #[test]
    fn formats_the_date_as_rfc3339_utc() {
        let at = OffsetDateTime::from_unix_timestamp(1_795_430_096).unwrap();
        assert_eq!(rfc3339(at), "2026-11-23T10:34:56Z");
    }
}
