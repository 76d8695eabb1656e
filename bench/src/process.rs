//! Child processes that never outlive the runner. Each runs in a process group of its own, so
//! one signal reaches all it starts (gunicorn's workers too); the group is killed when its
//! [`Group`] drops, on SIGINT/SIGTERM/SIGHUP ([`kill_all_on_signal`]), and, if the runner is
//! killed outright, by the kernel (`PR_SET_PDEATHSIG`).

use std::{
    fs::File,
    io,
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

/// Process groups that are running, for the signal handler.
static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<i32>> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Kills every running child when the runner is interrupted, then exits with 130.
pub fn kill_all_on_signal() -> Result<(), ctrlc::Error> {
    ctrlc::set_handler(|| {
        eprintln!("\ninterrupted: stopping every server and load generator");
        for &group in live().iter() {
            signal_group(group, libc::SIGKILL);
        }
        std::process::exit(130);
    })
}

/// `program` pinned to `cpu`, its output appended to `log` if given, with only `PATH` in its
/// environment: a stray `RUST_LOG`, `GOGC` or `PYTHON*` must not change what is measured.
pub fn pinned(taskset: &Path, cpu: u32, program: &Path, log: Option<&Path>) -> io::Result<Command> {
    let mut command = Command::new(taskset);
    command.arg("--cpu-list").arg(cpu.to_string()).arg(program);
    command.env_clear().stdin(Stdio::null());
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    if let Some(log) = log {
        let file = File::options().create(true).append(true).open(log)?;
        command.stdout(file.try_clone()?).stderr(file);
    }
    Ok(command)
}

/// A running child in its own process group, killed with its group on drop.
#[derive(Debug)]
pub struct Group {
    child: Child,
}

impl Group {
    pub fn spawn(command: &mut Command) -> io::Result<Self> {
        command.process_group(0);
        // SAFETY: runs between fork and exec and only calls prctl, which is async-signal-safe.
        // The death signal follows the spawning thread: every child is spawned from the main
        // thread, which lives as long as the runner.
        unsafe {
            command.pre_exec(
                || match libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) {
                    -1 => Err(io::Error::last_os_error()),
                    _ => Ok(()),
                },
            );
        }
        let mut live = live();
        let child = command.spawn()?;
        live.push(child.id() as i32);
        Ok(Self { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the child has exited.
    pub fn exited(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits for the child to exit by itself, up to `limit`.
    pub fn wait_for(&mut self, limit: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.exited()? {
                return Ok(Some(status));
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.exited()
    }
}

impl Drop for Group {
    /// Kills the whole group at once (the leader may be gone while its workers run): a server
    /// under test has nothing to save, and a graceful stop (the webhook's waits out its
    /// shutdown delay) would only slow the run.
    fn drop(&mut self) {
        let group = self.child.id() as i32;
        signal_group(group, libc::SIGKILL);
        let _ = self.child.wait();
        live().retain(|&g| g != group);
    }
}

fn signal_group(group: i32, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions; a group already gone yields ESRCH.
    unsafe {
        libc::kill(-group, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_a_group_kills_its_grandchildren_too() {
        let mut command = Command::new("sh");
        command
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(Stdio::piped());
        let mut group = Group::spawn(&mut command).unwrap();
        let mut line = String::new();
        let stdout = group.child.stdout.take().unwrap();
        io::BufRead::read_line(&mut io::BufReader::new(stdout), &mut line).unwrap();
        let grandchild: i32 = line.trim().parse().unwrap();
        // Running, as opposed to gone or a zombie waiting for whoever adopted it.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{grandchild}/stat")).is_ok_and(|stat| {
                !stat
                    .rsplit_once(')')
                    .is_some_and(|(_, r)| r.starts_with(" Z"))
            })
        };
        assert!(alive());
        let leader = group.pid() as i32;
        assert!(live().contains(&leader));
        drop(group);
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(), "grandchild {grandchild} survived");
        assert!(!live().contains(&leader));
    }
}
