//! Where the benchmark reads its inputs and writes its results.
//!
//! Binaries are looked for next to the runner itself (`target/release/`), so a custom
//! `CARGO_TARGET_DIR` works; results go to `bench/` in that target directory.

use std::{
    io,
    path::{Path, PathBuf},
};

#[derive(Debug, Clone)]
pub struct Layout {
    /// The workspace root (the repository).
    pub root: PathBuf,
    /// The directory holding the runner and the release binaries it measures.
    pub binaries: PathBuf,
    /// `target/bench`: everything the run writes.
    pub out: PathBuf,
}

impl Layout {
    pub fn discover() -> io::Result<Self> {
        let exe = std::env::current_exe()?;
        let binaries = exe
            .parent()
            .ok_or_else(|| io::Error::other("the runner has no directory"))?
            .to_owned();
        let target = binaries.parent().unwrap_or(&binaries).to_owned();
        Ok(Self {
            // The bench crate sits in the workspace root.
            root: Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("bench/ is inside the workspace")
                .to_owned(),
            out: target.join("bench"),
            binaries,
        })
    }

    /// Whether the binaries are an optimised build: numbers from a debug build mean nothing.
    pub fn is_release(&self) -> bool {
        self.binaries
            .file_name()
            .is_some_and(|name| name == "release")
    }

    pub fn binary(&self, name: &str) -> PathBuf {
        self.binaries.join(name)
    }

    pub fn peers(&self) -> PathBuf {
        self.root.join("bench/peers")
    }

    pub fn committed_payloads(&self) -> PathBuf {
        self.root.join("bench/payloads")
    }

    /// Built peers.
    pub fn bin(&self) -> PathBuf {
        self.out.join("bin")
    }

    pub fn venv(&self) -> PathBuf {
        self.out.join("venv")
    }

    pub fn pki(&self) -> PathBuf {
        self.out.join("pki")
    }

    /// The bodies as sent.
    pub fn payloads(&self) -> PathBuf {
        self.out.join("payloads")
    }

    /// Each server's stdout and stderr.
    pub fn logs(&self) -> PathBuf {
        self.out.join("logs")
    }

    /// oha's own report of every cell.
    pub fn raw(&self) -> PathBuf {
        self.out.join("raw")
    }
}
