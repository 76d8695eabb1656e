//! Everything a run needs besides the repository: found, checked, and built when missing or
//! stale, each step printed. Only what the plan's servers need is prepared.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
};

use crate::{layout::Layout, servers::ServerKind};

/// The oha whose JSON report [`crate::load`] was written against.
pub const OHA_VERSION: &str = "1.16.0";

const BUILD_HINT: &str =
    "cargo build --release -p validator-webhook -p validator-webhook-bench (or: just bench)";

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(
        "taskset is missing: it pins each server and the load generator to their own CPU. \
         Install it with: apt-get install util-linux"
    )]
    NoTaskset,
    #[error("oha is missing. Install it with: cargo install oha --locked --version {OHA_VERSION}")]
    NoOha,
    #[error(
        "go is missing: it builds the controller-runtime peer. Install Go 1.26 (https://go.dev/dl/)"
    )]
    NoGo,
    #[error("python3 is missing: it runs the Flask peer")]
    NoPython,
    #[error("{0} is missing. Build it first: {BUILD_HINT}")]
    NotBuilt(PathBuf),
    #[error("the benchmark needs 2 CPUs (servers on CPU 0, oha on CPU 1); only {0} is available")]
    TooFewCpus(usize),
    #[error("`{command}` failed ({status}):\n{output}")]
    Failed {
        command: String,
        status: String,
        output: String,
    },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The programs a run uses.
#[derive(Debug, Clone)]
pub struct Tools {
    pub taskset: PathBuf,
    pub oha: PathBuf,
    servers: BTreeMap<ServerKind, PathBuf>,
    /// What produced the numbers, for the summary: tool name to version line.
    pub versions: BTreeMap<String, String>,
}

impl Tools {
    /// The program that runs `server`, if it was prepared.
    pub fn program(&self, server: ServerKind) -> Option<&Path> {
        self.servers.get(&server).map(PathBuf::as_path)
    }
}

/// Finds the tools and readies every server in `servers`.
pub fn prepare(layout: &Layout, servers: &[ServerKind]) -> Result<Tools, PrepareError> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus < 2 {
        return Err(PrepareError::TooFewCpus(cpus));
    }
    let taskset = find("taskset", &[]).ok_or(PrepareError::NoTaskset)?;
    step(&format!("taskset: {}", taskset.display()));

    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .map(|home| home.join("bin"));
    let oha = find("oha", cargo_bin.as_slice()).ok_or(PrepareError::NoOha)?;
    let oha_version = output(Command::new(&oha).arg("--version"))?;
    step(&format!("oha: {} ({oha_version})", oha.display()));
    if !oha_version.ends_with(OHA_VERSION) {
        step(&format!(
            "warning: the report parser expects oha {OHA_VERSION}; \
             cargo install oha --locked --version {OHA_VERSION}"
        ));
    }
    let mut versions = BTreeMap::from([("oha".to_owned(), oha_version)]);

    let mut programs = BTreeMap::new();
    for &server in servers {
        let program = match server {
            ServerKind::ValidatorWebhook | ServerKind::Ceiling => {
                let binary = layout.binary(server.name());
                if !binary.is_file() {
                    return Err(PrepareError::NotBuilt(binary));
                }
                if server == ServerKind::ValidatorWebhook {
                    versions.insert(
                        server.name().to_owned(),
                        output(Command::new(&binary).arg("--version"))?,
                    );
                }
                step(&format!("{}: {}", server.name(), binary.display()));
                binary
            }
            ServerKind::ControllerRuntime => {
                let (binary, go_version) = build_go_peer(layout)?;
                versions.insert("go".to_owned(), go_version);
                binary
            }
            ServerKind::Flask | ServerKind::Gunicorn => {
                let python = python_venv(layout)?;
                versions
                    .entry("python".to_owned())
                    .or_insert(output(Command::new(&python).arg("--version"))?);
                if server == ServerKind::Flask {
                    python
                } else {
                    python.with_file_name("gunicorn")
                }
            }
        };
        programs.insert(server, program);
    }
    Ok(Tools {
        taskset,
        oha,
        servers: programs,
        versions,
    })
}

/// Prints one preparation step.
pub fn step(what: &str) {
    println!("  · {what}");
}

/// Builds the controller-runtime peer into `target/bench/bin/` unless it is newer than its
/// sources. Returns the binary and Go's version.
fn build_go_peer(layout: &Layout) -> Result<(PathBuf, String), PrepareError> {
    let go = find("go", &[PathBuf::from("/usr/local/go/bin")]).ok_or(PrepareError::NoGo)?;
    let go_version = output(Command::new(&go).arg("version"))?;
    let source = layout.peers().join("controller-runtime");
    let binary = layout.bin().join("cr-validator");
    let stale = match modified(&binary) {
        None => true,
        Some(built) => ["main.go", "go.mod", "go.sum"]
            .iter()
            .any(|file| modified(&source.join(file)).is_none_or(|changed| changed > built)),
    };
    if stale {
        step(&format!(
            "controller-runtime peer: building {} ({go_version})",
            binary.display()
        ));
        run(Command::new(&go)
            .current_dir(&source)
            // No VCS stamping: the peer is part of this repository, not a module release.
            .args(["build", "-trimpath", "-buildvcs=false", "-o"])
            .arg(&binary)
            .arg("."))?;
    } else {
        step(&format!(
            "controller-runtime peer: {} is up to date",
            binary.display()
        ));
    }
    Ok((binary, go_version))
}

/// Makes the Python virtual environment with the Flask peer's pinned requirements, unless it
/// already has exactly them. Returns its python.
fn python_venv(layout: &Layout) -> Result<PathBuf, PrepareError> {
    let venv = layout.venv();
    let python = venv.join("bin/python");
    let requirements = layout.peers().join("flask/requirements.txt");
    // A copy of the requirements the venv was made with: when they change, reinstall.
    let stamp = venv.join("bench-requirements.txt");
    let wanted = fs::read_to_string(&requirements).ok();
    if python.is_file() && wanted.is_some() && fs::read_to_string(&stamp).ok() == wanted {
        step(&format!("Python venv: {} is up to date", venv.display()));
        return Ok(python);
    }
    if !python.is_file() {
        let python3 = find("python3", &[]).ok_or(PrepareError::NoPython)?;
        step(&format!("Python venv: creating {}", venv.display()));
        run(Command::new(python3).args(["-m", "venv"]).arg(&venv))?;
    }
    step(&format!(
        "Python venv: installing {}",
        requirements.display()
    ));
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))?;
    fs::copy(&requirements, &stamp).map_err(|source| PrepareError::Write {
        path: stamp,
        source,
    })?;
    Ok(python)
}

/// An executable `name` on `PATH`, else in one of `also`.
fn find(name: &str, also: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(also.iter().cloned())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn modified(path: &Path) -> Option<SystemTime> {
    path.metadata().and_then(|m| m.modified()).ok()
}

fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command` to completion; its output goes into the error if it fails.
fn run(command: &mut Command) -> Result<String, PrepareError> {
    let result = command.output().map_err(|source| PrepareError::Spawn {
        command: describe(command),
        source,
    })?;
    let mut text = String::from_utf8_lossy(&result.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&result.stderr));
    if !result.status.success() {
        return Err(PrepareError::Failed {
            command: describe(command),
            status: result.status.to_string(),
            output: text.trim().to_owned(),
        });
    }
    Ok(text)
}

/// The first line `command` prints.
fn output(command: &mut Command) -> Result<String, PrepareError> {
    Ok(run(command)?
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned())
}
