//! Child processes that never outlive the runner.
//!
//! Each child runs in a process group of its own, so one signal reaches everything it starts
//! (gunicorn's workers too). The group is killed when its [`Group`] drops, which covers a normal
//! return, an error and a panic; on SIGINT, SIGTERM or SIGHUP the handler installed by
//! [`kill_all_on_signal`] kills every live group before exiting; and if the runner is killed
//! outright, the kernel sends each child SIGKILL (`PR_SET_PDEATHSIG`).

use std::{
    ffi::OsStr,
    fs::File,
    io,
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::Mutex,
    thread,
    time::{Duration, Instant},
};

/// How long a child gets to exit after SIGTERM before the group gets SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// Process groups that are running, for the signal handler.
static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<i32>> {
    // A panic while holding the lock leaves the list intact: keep using it.
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

/// `program` pinned to `cpu`, with an environment holding only `PATH` (until the caller adds
/// to it): a stray `RUST_LOG`, `GOGC` or `PYTHON*` in the caller's shell must not change what
/// is measured.
pub fn pinned(taskset: &Path, cpu: u32, program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(taskset);
    command
        .arg("--cpu-list")
        .arg(cpu.to_string())
        .arg(program)
        .env_clear()
        .stdin(Stdio::null());
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
}

/// Appends the child's standard output and error to `log`.
pub fn log_to(command: &mut Command, log: &Path) -> io::Result<()> {
    let file = File::options().create(true).append(true).open(log)?;
    command.stdout(file.try_clone()?).stderr(file);
    Ok(())
}

/// A running child in its own process group, killed with its group on drop.
#[derive(Debug)]
pub struct Group {
    child: Child,
    exited: Option<ExitStatus>,
}

impl Group {
    pub fn spawn(command: &mut Command) -> io::Result<Self> {
        command.process_group(0);
        // SAFETY: the closure runs between fork and exec and only calls prctl, which is
        // async-signal-safe. The death signal is tied to the spawning thread: every child is
        // spawned from the main thread, which lives as long as the runner.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut live = live();
        let child = command.spawn()?;
        live.push(pid(&child));
        Ok(Self {
            child,
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the child has exited.
    pub fn exited(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        Ok(self.exited)
    }

    /// Waits for the child to exit by itself, up to `limit`.
    pub fn wait_for(&mut self, limit: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the whole group: SIGTERM, then SIGKILL after [`GRACE`].
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let group = pid(&self.child);
        // The leader may have exited while others in its group (gunicorn's workers) still run:
        // signal the group either way.
        signal_group(group, libc::SIGTERM);
        if !matches!(self.wait_for(GRACE), Ok(Some(_))) {
            signal_group(group, libc::SIGKILL);
            let _ = self.child.wait();
        }
        signal_group(group, libc::SIGKILL);
        live().retain(|&g| g != group);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.terminate();
    }
}

fn pid(child: &Child) -> i32 {
    i32::try_from(child.id()).expect("Linux process ids fit in i32")
}

fn signal_group(group: i32, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions. A group that is already gone yields
    // ESRCH, which is what we want anyway.
    unsafe {
        libc::kill(-group, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Running, as opposed to gone or a zombie waiting to be reaped by whoever adopted it.
    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
    }

    #[test]
    fn dropping_a_group_kills_its_grandchildren_too() {
        let mut command = Command::new("sh");
        command
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(Stdio::piped());
        let mut group = Group::spawn(&mut command).unwrap();
        let mut line = String::new();
        io::BufRead::read_line(
            &mut io::BufReader::new(group.child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let grandchild: i32 = line.trim().parse().unwrap();
        assert!(alive(grandchild));
        let leader = group.pid();
        assert!(live().contains(&(leader as i32)));

        drop(group);

        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(grandchild) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(grandchild), "grandchild {grandchild} survived");
        assert!(!live().contains(&(leader as i32)));
    }
}
