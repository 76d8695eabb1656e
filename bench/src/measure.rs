//! What a server costs during a cell, read from /proc for its whole process tree (gunicorn is an
//! arbiter and its workers): CPU seconds, and the peak resident set size.
//!
//! The kernel keeps each process's peak RSS (`VmHWM`); writing `5` to `/proc/PID/clear_refs`
//! resets it to the current RSS, so a cell's peak is its own, not the start-up's.

use std::{fs, io, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot reset the peak RSS in {path}: {source}")]
    Reset { path: PathBuf, source: io::Error },
    #[error("{path} is not in the expected format")]
    Format { path: PathBuf },
}

/// The fields of `/proc/PID/stat` used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// utime + stime + cutime + cstime, in clock ticks: the process and its reaped children,
    /// so a worker that exits during a cell still counts (in its parent).
    pub ticks: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // rest: " S ppid pgrp ...": field 3 (state) is index 0.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        ppid: u32::try_from(field(4)?).ok()?,
        ticks: field(14)? + field(15)? + field(16)? + field(17)?,
    })
}

/// `VmHWM` from `/proc/PID/status`, in KiB.
pub fn parse_peak_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let mut words = line["VmHWM:".len()..].split_whitespace();
    let kib = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(kib)
}

/// `root` and every process below it, given each process's parent.
pub fn tree(root: u32, parents: &[(u32, u32)]) -> Vec<u32> {
    let mut members = vec![root];
    let mut next = 0;
    while let Some(&parent) = members.get(next) {
        members.extend(
            parents
                .iter()
                .filter(|&&(pid, ppid)| ppid == parent && pid != root)
                .map(|&(pid, _)| pid),
        );
        next += 1;
    }
    members
}

/// A server's process tree, by its root's pid.
#[derive(Debug, Clone, Copy)]
pub struct ProcessTree {
    root: u32,
}

/// CPU time and peak memory of a tree over one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
}

/// An open measurement window; [`Window::finish`] closes it.
#[derive(Debug)]
pub struct Window {
    tree: ProcessTree,
    ticks: u64,
}

impl ProcessTree {
    pub fn new(root: u32) -> Self {
        Self { root }
    }

    /// Resets the peak RSS of every process in the tree and notes their CPU time so far.
    pub fn start(self) -> Result<Window, MeasureError> {
        let members = self.members()?;
        for &(pid, _) in &members {
            let path = proc_path(pid, "clear_refs");
            match fs::write(&path, "5") {
                Ok(()) => {}
                // A worker that exited since the scan has no peak to reset.
                Err(error) if pid != self.root && error.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(MeasureError::Reset { path, source }),
            }
        }
        Ok(Window {
            tree: self,
            ticks: members.iter().map(|(_, stat)| stat.ticks).sum(),
        })
    }

    /// Every process in the tree with its stat. Processes that vanish while /proc is scanned
    /// are skipped; the root vanishing is an error.
    fn members(self) -> Result<Vec<(u32, Stat)>, MeasureError> {
        let all = all_stats()?;
        let parents: Vec<(u32, u32)> = all.iter().map(|&(pid, stat)| (pid, stat.ppid)).collect();
        let members: Vec<(u32, Stat)> = tree(self.root, &parents)
            .into_iter()
            .filter_map(|pid| all.iter().find(|&&(p, _)| p == pid).copied())
            .collect();
        if members.is_empty() {
            let path = proc_path(self.root, "stat");
            return Err(MeasureError::Read {
                source: io::Error::new(io::ErrorKind::NotFound, "the server has exited"),
                path,
            });
        }
        Ok(members)
    }
}

impl Window {
    /// CPU time since [`ProcessTree::start`], and the peak RSS summed over the tree. The sum
    /// counts pages that forked workers share more than once: an upper bound, as a pod's
    /// memory accounting would see it before sharing.
    pub fn finish(self) -> Result<Usage, MeasureError> {
        let members = self.tree.members()?;
        let ticks: u64 = members.iter().map(|(_, stat)| stat.ticks).sum();
        let mut peak_kib = 0;
        for &(pid, _) in &members {
            let path = proc_path(pid, "status");
            match fs::read_to_string(&path) {
                Ok(status) => {
                    peak_kib += parse_peak_rss_kib(&status).ok_or(MeasureError::Format { path })?;
                }
                Err(error) if pid != self.tree.root && error.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(MeasureError::Read { path, source }),
            }
        }
        Ok(Usage {
            cpu_seconds: ticks.saturating_sub(self.ticks) as f64 / clock_ticks_per_second(),
            peak_rss_bytes: peak_kib * 1024,
        })
    }
}

fn proc_path(pid: u32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

/// The stat of every process on the machine.
fn all_stats() -> Result<Vec<(u32, Stat)>, MeasureError> {
    let read_error = |source| MeasureError::Read {
        path: PathBuf::from("/proc"),
        source,
    };
    let mut stats = Vec::new();
    for entry in fs::read_dir("/proc").map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Gone since the directory was listed: not ours to count.
        let Ok(text) = fs::read_to_string(proc_path(pid, "stat")) else {
            continue;
        };
        if let Some(stat) = parse_stat(&text) {
            stats.push((pid, stat));
        }
    }
    Ok(stats)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_command_name_holding_spaces_and_parentheses() {
        // From a real gunicorn worker, the name altered to be awkward.
        let line = "4242 (gunicorn: (worker) x) S 4200 4200 4200 0 -1 4194560 2048 0 0 0 \
                    311 42 7 3 20 0 5 0 123456 98765432 4321 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ppid: 4200,
                ticks: 311 + 42 + 7 + 3
            })
        );
    }

    #[test]
    fn refuses_a_truncated_stat() {
        assert_eq!(
            parse_stat("4242 (sh) S 1 4242 4242 0 -1 0 0 0 0 0 311"),
            None
        );
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn reads_the_peak_rss_in_kib() {
        let status =
            "Name:\tcr-validator\nVmPeak:\t 1265432 kB\nVmHWM:\t   14236 kB\nVmRSS:\t   13000 kB\n";
        assert_eq!(parse_peak_rss_kib(status), Some(14236));
        assert_eq!(parse_peak_rss_kib("Name:\tkthreadd\n"), None);
        assert_eq!(parse_peak_rss_kib("VmHWM:\t 12 MB\n"), None);
    }

    #[test]
    fn the_tree_holds_children_and_grandchildren_only() {
        // 10 is the arbiter; 11 and 12 its workers; 13 a worker's child; 20 unrelated.
        let parents = [(1, 0), (10, 1), (11, 10), (12, 10), (13, 11), (20, 1)];
        let mut members = tree(10, &parents);
        members.sort();
        assert_eq!(members, [10, 11, 12, 13]);
        assert_eq!(tree(99, &parents), [99]);
    }

    #[test]
    fn measures_this_process() {
        let window = ProcessTree::new(std::process::id()).start().unwrap();
        let mut spin = 0u64;
        for i in 0..20_000_000u64 {
            spin = spin.wrapping_add(i * i);
        }
        std::hint::black_box(spin);
        let usage = window.finish().unwrap();
        assert!(usage.peak_rss_bytes > 1024 * 1024, "{usage:?}");
        assert!(usage.cpu_seconds >= 0.0, "{usage:?}");
    }
}
