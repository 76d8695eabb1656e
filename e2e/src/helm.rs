//! The pinned Helm (`e2e/helm/build.sh`), with its configuration, cache and data kept in a
//! work directory, and the chart it installs.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, ensure};

use testkit::process::run;

use crate::{kubectl::Output, paths};

/// The chart in `charts/validator-webhook`.
pub fn chart() -> PathBuf {
    paths::repository().join("charts/validator-webhook")
}

#[derive(Clone)]
pub struct Helm {
    binary: PathBuf,
    home: PathBuf,
}

impl Helm {
    /// Builds the pinned helm once (cached by version); its state goes under `work`.
    pub fn build(work: &Path) -> Result<Self> {
        let script = paths::repository().join("e2e/helm/build.sh");
        let dir = run(&mut Command::new(&script)).context("e2e/helm/build.sh failed")?;
        let binary = PathBuf::from(dir.trim()).join("helm");
        ensure!(binary.is_file(), "{} is missing", binary.display());
        let home = work.join("helm");
        std::fs::create_dir_all(&home)?;
        Ok(Self { binary, home })
    }

    /// `helm <args>` as a command, for what must run without this process (an interrupt's undo).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command.args(args);
        command
    }

    pub fn run(&self, args: &[&str]) -> Result<Output> {
        let output = self
            .command(args)
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .current_dir(paths::repository())
            .output()
            .with_context(|| format!("cannot run {}", self.binary.display()))?;
        Ok(output.into())
    }

    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let output = self.run(args)?;
        ensure!(
            output.success,
            "helm {} failed: {}{}",
            args.join(" "),
            output.stdout.trim(),
            output.stderr.trim()
        );
        Ok(output.stdout)
    }
}
