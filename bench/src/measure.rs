//! What a server costs during a cell, for its whole process tree (gunicorn is an arbiter and its
//! workers): CPU seconds, and the peak resident set size. The kernel keeps each process's peak
//! (`VmHWM`); writing `5` to `/proc/PID/clear_refs` resets it, so a cell's peak is its own.

use std::fs;

use anyhow::{Context, Result};
use procfs::process::{Process, all_processes};

/// CPU time and peak memory of a tree over one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
}

/// An open measurement window over the tree below `root`.
#[derive(Debug)]
pub struct Window {
    root: i32,
    ticks: u64,
}

impl Window {
    /// Resets the peak RSS of every process in the tree and notes their CPU time so far.
    pub fn open(root: u32) -> Result<Self> {
        let root = root as i32;
        let members = tree(root)?;
        for process in &members {
            // A worker that exited since the scan has no peak to reset.
            let reset = fs::write(format!("/proc/{}/clear_refs", process.pid), "5");
            if process.pid == root {
                reset.context("cannot reset the server's peak RSS")?;
            }
        }
        Ok(Self {
            root,
            ticks: ticks(&members),
        })
    }

    /// CPU time since [`Window::open`], and the peak RSS summed over the tree (pages forked
    /// workers share count once per process: an upper bound).
    pub fn close(self) -> Result<Usage> {
        let members = tree(self.root)?;
        let peak_kib: u64 = members.iter().filter_map(|p| p.status().ok()?.vmhwm).sum();
        let ticks = ticks(&members).saturating_sub(self.ticks);
        Ok(Usage {
            cpu_seconds: ticks as f64 / procfs::ticks_per_second() as f64,
            peak_rss_bytes: peak_kib * 1024,
        })
    }
}

/// `root` and every process below it; processes that vanish meanwhile are left out.
fn tree(root: i32) -> Result<Vec<Process>> {
    let parents: Vec<(i32, i32)> = all_processes()?
        .filter_map(|p| p.ok()?.stat().ok())
        .map(|stat| (stat.pid, stat.ppid))
        .collect();
    let mut pids = vec![root];
    let mut next = 0;
    while let Some(&parent) = pids.get(next) {
        pids.extend(
            parents
                .iter()
                .filter(|&&(_, ppid)| ppid == parent)
                .map(|&(pid, _)| pid),
        );
        next += 1;
    }
    let root = Process::new(root).context("the server has exited")?;
    Ok(std::iter::once(root)
        .chain(pids[1..].iter().filter_map(|&pid| Process::new(pid).ok()))
        .collect())
}

/// utime + stime + cutime + cstime: the processes and their reaped children, so a worker that
/// exits during a cell still counts (in its parent).
fn ticks(members: &[Process]) -> u64 {
    let ticks = |p: &Process| {
        let stat = p.stat().ok()?;
        Some(stat.utime + stat.stime + stat.cutime.max(0) as u64 + stat.cstime.max(0) as u64)
    };
    members.iter().filter_map(ticks).sum()
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader, Write},
        process::{Command, Stdio},
    };

    use super::*;

    #[test]
    fn counts_the_cpu_of_a_reaped_child_and_the_memory_of_the_tree() {
        // On a line from us, the shell runs a child that spins, then says so and waits.
        let script = "read go; sh -c 'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done'; echo done; sleep 30";
        let mut shell = (Command::new("sh").args(["-c", script]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let window = Window::open(shell.id()).unwrap();
        writeln!(shell.stdin.as_mut().unwrap(), "go").unwrap();
        let mut line = String::new();
        BufReader::new(shell.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let usage = window.close().unwrap();
        shell.kill().unwrap();
        shell.wait().unwrap();
        assert_eq!(line, "done\n");
        assert!(usage.cpu_seconds >= 0.01, "{usage:?}");
        assert!(usage.peak_rss_bytes > 0, "{usage:?}");
    }
}
