//! Child processes of the harness: their output goes to a log file, they are stopped when
//! dropped, and an interrupt (Ctrl-C, SIGTERM) stops them too, and undoes what the harness
//! registered: network namespaces, a kind cluster, containers.

use std::{
    ffi::OsString,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Mutex, Once},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

/// What an interrupt must clean up: processes still running, and the commands that undo what
/// the harness made, by key.
static LEFTOVERS: Mutex<Leftovers> = Mutex::new(Leftovers {
    pids: Vec::new(),
    undo: Vec::new(),
});

struct Leftovers {
    pids: Vec<u32>,
    undo: Vec<(String, Vec<OsString>)>,
}

/// Installs the interrupt handler once: it stops every child, runs every registered undo
/// command (newest first), then exits.
pub fn clean_up_on_interrupt() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            eprintln!("\ninterrupted: stopping what the harness started");
            let leftovers = LEFTOVERS.lock().unwrap_or_else(|p| p.into_inner());
            for pid in &leftovers.pids {
                signal(*pid, libc::SIGKILL);
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

/// Registers `command` to run if the harness is interrupted before [`forget_undo`] is called
/// with the same `what` (which also names it in the message printed then).
pub fn undo_on_interrupt(what: &str, command: &Command) {
    let argv = std::iter::once(command.get_program().to_owned())
        .chain(command.get_args().map(ToOwned::to_owned))
        .collect();
    LEFTOVERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .undo
        .push((what.to_owned(), argv));
}

/// The thing registered as `what` was undone (or is kept on purpose).
pub fn forget_undo(what: &str) {
    LEFTOVERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .undo
        .retain(|(w, _)| w != what);
}

fn signal(pid: u32, signal: i32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// A running child process whose output goes to `<logs>/<name>.log`.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    pub fn spawn(name: &str, mut command: Command, logs: &Path) -> Result<Self> {
        let log = logs.join(format!("{name}.log"));
        let file =
            File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", command.get_program()))?;
        LEFTOVERS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pids
            .push(child.id());
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Fails if the process has already exited, quoting the end of its log.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => anyhow::bail!(
                "{} exited with {status}; the end of {}:\n{}",
                self.name,
                self.log.display(),
                testkit::tail(&self.log, 20)
            ),
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.child.id(), libc::SIGTERM);
            let deadline = Instant::now() + grace;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let pid = self.child.id();
        LEFTOVERS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pids
            .retain(|p| *p != pid);
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A command that runs `program` as root: directly when this process is root, otherwise
/// through `sudo -n` (a CI runner's passwordless sudo), which never prompts.
pub fn privileged(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut command = Command::new("sudo");
        command.arg("-n").arg(program);
        command
    }
}

/// Runs a short command to completion, failing with its stderr if it fails.
pub fn run(command: &mut Command) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {:?}", command.get_program()))?;
    if !output.status.success() {
        anyhow::bail!(
            "{:?} {:?} failed ({}): {}",
            command.get_program(),
            command.get_args().collect::<Vec<_>>(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
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
        anyhow::bail!(
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
    Fut: std::future::Future<Output = Result<T>>,
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
