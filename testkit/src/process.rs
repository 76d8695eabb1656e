//! Child processes that never outlive the run that started them. Each runs in a process group
//! of its own, so one signal reaches all it starts (gunicorn's workers too). A [`Process`] is
//! stopped when dropped; an interrupt (Ctrl-C, SIGTERM, SIGHUP) kills every one still running
//! and runs the commands registered to undo what the run made outside itself (network
//! namespaces, a kind cluster, containers), newest first.

use std::{
    ffi::{OsStr, OsString},
    fs::File,
    io,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Mutex, MutexGuard, Once},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// What an interrupt must clean up: the process groups still running, and the commands that
/// undo what the run made, by what they undo.
static LEFTOVERS: Mutex<Leftovers> = Mutex::new(Leftovers {
    groups: Vec::new(),
    undo: Vec::new(),
});

struct Leftovers {
    groups: Vec<i32>,
    undo: Vec<(String, Vec<OsString>)>,
}

fn leftovers() -> MutexGuard<'static, Leftovers> {
    LEFTOVERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Installs the interrupt handler (once, however often it is called): it kills every running
/// child's group, runs every registered undo command, newest first, then exits with 130.
pub fn clean_up_on_interrupt() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            eprintln!("\ninterrupted: stopping what this run started");
            let leftovers = leftovers();
            for &group in &leftovers.groups {
                signal_group(group, libc::SIGKILL);
            }
            for (what, argv) in leftovers.undo.iter().rev() {
                let Some((program, args)) = argv.split_first() else {
                    continue;
                };
                eprintln!("interrupted: {what}");
                let _ = Command::new(program)
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .status();
            }
            std::process::exit(130);
        });
        if let Err(error) = installed {
            eprintln!("warning: cannot clean up on Ctrl-C: {error}");
        }
    });
}

/// Registers `command` to run if the run is interrupted before [`forget_undo`] is called with
/// the same `what` (which also names it in the message printed then).
pub fn undo_on_interrupt(what: &str, command: &Command) {
    let argv = std::iter::once(command.get_program().to_owned())
        .chain(command.get_args().map(ToOwned::to_owned))
        .collect();
    leftovers().undo.push((what.to_owned(), argv));
}

/// The thing registered as `what` was undone (or is kept on purpose).
pub fn forget_undo(what: &str) {
    leftovers().undo.retain(|(w, _)| w != what);
}

fn signal_group(group: i32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; a group already gone yields ESRCH.
    unsafe {
        libc::kill(-group, signal);
    }
}

/// Makes the child of `command` receive SIGKILL when the thread that spawns it ends
/// (`PR_SET_PDEATHSIG`), so it dies even if the run is killed outright. Only for a child
/// spawned from a thread that lives as long as the run, such as the main thread.
pub fn die_with_spawning_thread(command: &mut Command) -> &mut Command {
    // SAFETY: runs between fork and exec and only calls prctl, which is async-signal-safe.
    unsafe {
        command.pre_exec(
            || match libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) {
                -1 => Err(io::Error::last_os_error()),
                _ => Ok(()),
            },
        )
    }
}

/// A running child in a process group of its own. Dropping it stops it: SIGTERM to the group,
/// then SIGKILL once its grace (5 s unless [`Process::with_grace`] says otherwise) has passed.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    /// Where its output goes, quoted when it fails.
    log: Option<PathBuf>,
    grace: Duration,
    stopped: bool,
}

impl Process {
    /// Starts `command` with stdin closed and its output in `<logs>/<name>.log`.
    pub fn spawn(name: &str, mut command: Command, logs: &Path) -> Result<Self> {
        let log = logs.join(format!("{name}.log"));
        let file =
            File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        Self::start(name, &mut command, Some(log))
    }

    /// Starts `command` with the input and output it was given; `log` is where that output
    /// goes, if anywhere.
    pub fn start(name: &str, command: &mut Command, log: Option<PathBuf>) -> Result<Self> {
        command.process_group(0);
        // The lock is held across the spawn so an interrupt cannot fall between the two.
        let mut leftovers = leftovers();
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", command.get_program()))?;
        leftovers.groups.push(group_of(&child));
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
            grace: Duration::from_secs(5),
            stopped: false,
        })
    }

    /// How long a stop on drop waits after SIGTERM; zero kills at once.
    #[must_use]
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where its output goes, if it was given one.
    pub fn log(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Fails if the process has already exited, quoting the end of its log.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.exited()? {
            None => Ok(()),
            Some(status) => bail!("{} exited with {status}{}", self.name, self.log_tail(20)),
        }
    }

    /// `; the end of <log>:` and its last `lines` lines, for an error message (empty without a
    /// log).
    pub fn log_tail(&self, lines: usize) -> String {
        self.log.as_ref().map_or_else(String::new, |log| {
            format!(
                "; the end of {}:\n{}",
                log.display(),
                crate::tail(log, lines)
            )
        })
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait(&mut self, limit: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.exited()? {
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.exited()
    }

    /// SIGTERM to its group, then SIGKILL to the group once `grace` has passed (at once when
    /// zero), since the leader may be gone while what it started runs on.
    pub fn stop(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let group = group_of(&self.child);
        if !grace.is_zero() && matches!(self.exited(), Ok(None)) {
            signal_group(group, libc::SIGTERM);
            let deadline = Instant::now() + grace;
            while matches!(self.exited(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        signal_group(group, libc::SIGKILL);
        let _ = self.child.wait();
        leftovers().groups.retain(|&g| g != group);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(self.grace);
    }
}

/// A child spawned by [`Process::start`] leads its group, so the group's id is its pid.
fn group_of(child: &Child) -> i32 {
    i32::try_from(child.id()).expect("a pid fits in pid_t")
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A command that runs `program` as root: directly when this process is root, otherwise
/// through `sudo -n` (a CI runner's passwordless sudo), which never prompts.
pub fn privileged(program: impl AsRef<OsStr>) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut command = Command::new("sudo");
        command.arg("-n").arg(program);
        command
    }
}

/// Runs a short command to completion with stdin closed, returning its stdout; if it fails,
/// the error quotes its stderr (its stdout when stderr is empty).
pub fn run(command: &mut Command) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    if !output.status.success() {
        let said = match String::from_utf8_lossy(&output.stderr).trim() {
            "" => String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            stderr => stderr.to_owned(),
        };
        bail!(
            "{:?} {:?} failed ({}): {said}",
            command.get_program(),
            command.get_args().collect::<Vec<_>>(),
            output.status,
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a long command to completion with its progress (stderr) shown, returning its stdout.
pub fn run_showing_progress(command: &mut Command) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    if !output.status.success() {
        bail!(
            "{:?} {:?} failed ({}); its output is above",
            command.get_program(),
            command.get_args().collect::<Vec<_>>(),
            output.status
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Polls `check` until it succeeds or `timeout` passes, returning its last error.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() >= deadline => {
                return Err(error.context(format!("{what}: still failing after {timeout:?}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> Vec<i32> {
        leftovers().groups.clone()
    }

    #[test]
    fn dropping_a_process_kills_its_grandchildren_too() {
        let mut command = Command::new("sh");
        command
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(Stdio::piped());
        let mut process = Process::start("sh", &mut command, None)
            .unwrap()
            .with_grace(Duration::ZERO);
        let mut line = String::new();
        let stdout = process.child.stdout.take().unwrap();
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
        let leader = process.pid() as i32;
        assert!(groups().contains(&leader));
        drop(process);
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(), "grandchild {grandchild} survived");
        assert!(!groups().contains(&leader));
    }

    #[test]
    fn a_stop_asks_with_sigterm_first() {
        let logs = std::env::temp_dir().join(format!("testkit-process-{}", std::process::id()));
        std::fs::create_dir_all(&logs).unwrap();
        // The shell waits on a background sleep, so the group's SIGTERM reaches the trap and
        // the sleep alike, and the shell reports nothing about a background job.
        let script = "trap 'echo terminated; exit 0' TERM; echo up; sleep 1000 & wait";
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        let mut process = Process::spawn("trapper", command, &logs).unwrap();
        let log = process.log().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(5);
        while crate::tail(&log, 1) != "up" && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        process.ensure_running().unwrap();
        process.stop(Duration::from_secs(5));
        assert_eq!(crate::tail(&log, 1), "terminated");
        let error = process.ensure_running().unwrap_err().to_string();
        assert!(
            error.starts_with("trapper exited with exit status: 0; the end of ")
                && error.ends_with(":\nup\nterminated"),
            "{error}"
        );
        drop(process);
        std::fs::remove_dir_all(&logs).unwrap();
    }

    #[test]
    fn run_quotes_what_a_failed_command_said() {
        let error = run(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]))
            .unwrap_err()
            .to_string();
        assert!(error.ends_with("failed (exit status: 3): err"), "{error}");
        let error = run(Command::new("sh").args(["-c", "echo only-out; exit 1"]))
            .unwrap_err()
            .to_string();
        assert!(error.ends_with(": only-out"), "{error}");
        assert_eq!(run(Command::new("echo").arg("hi")).unwrap(), "hi\n");
    }
}
