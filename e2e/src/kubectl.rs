//! kubectl, as users run it: the cases pin what it prints.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result};

#[derive(Debug, Clone)]
pub struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
}

/// What a kubectl (or helm) run printed.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Output {
    fn from(output: std::process::Output) -> Self {
        Self {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Kubectl {
    pub fn new(binary: PathBuf, kubeconfig: PathBuf) -> Self {
        Self { binary, kubeconfig }
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `command` with this kubectl first on its PATH and `KUBECONFIG` set, for scripts.
    pub fn environment_of<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        let mut path = std::ffi::OsString::new();
        if let Some(dir) = self.binary.parent() {
            path.push(dir);
            path.push(":");
        }
        path.push(std::env::var_os("PATH").unwrap_or_default());
        command
            .env("PATH", path)
            .env("KUBECONFIG", &self.kubeconfig)
    }

    /// `kubectl <args>` as a command, for what must run without this process (an interrupt's
    /// undo).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        command
    }

    /// `kubectl <args>`, run in `dir` so that file names in messages are as given.
    pub fn run_in(&self, dir: &Path, args: &[&str]) -> Result<Output> {
        let output = Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", self.binary.display()))?;
        Ok(output.into())
    }

    /// `kubectl <args>` in the case manifests' directory.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        self.run_in(&crate::paths::manifests(), args)
    }

    /// `kubectl <args>`, failing with what kubectl said unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let output = self.run(args)?;
        anyhow::ensure!(
            output.success,
            "kubectl {} failed: {}",
            args.join(" "),
            output.stderr.trim()
        );
        Ok(output.stdout)
    }
}
