//! Where the run reads and writes, and everything it needs besides the repository: found,
//! checked, and built when missing or stale (only what the plan's servers need), each step
//! printed.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::SystemTime,
};

use anyhow::{Context, Result, ensure};

use testkit::process::run;

use crate::plan::ServerKind;

/// The oha whose JSON report [`crate::load`] reads.
pub const OHA_VERSION: &str = "1.16.0";

/// Where things are. Binaries are looked for next to the runner (`target/release/`), so a custom
/// `CARGO_TARGET_DIR` works; results go to `bench/` in that target directory.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The runner's directory, holding the release binaries it measures.
    pub binaries: PathBuf,
    /// `bench/` in the repository.
    pub source: PathBuf,
    /// `target/bench`: everything the run writes.
    pub out: PathBuf,
}

impl Layout {
    pub fn discover() -> Result<Self> {
        let exe = std::env::current_exe()?;
        let binaries = exe
            .parent()
            .context("the runner has no directory")?
            .to_owned();
        let target = binaries.parent().unwrap_or(&binaries);
        Ok(Self {
            source: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            out: target.join("bench"),
            binaries,
        })
    }

    pub fn peers(&self) -> PathBuf {
        self.source.join("peers")
    }
}

/// The programs a run uses.
#[derive(Debug, Clone)]
pub struct Tools {
    pub taskset: PathBuf,
    pub oha: PathBuf,
    pub servers: BTreeMap<ServerKind, PathBuf>,
    /// What produced the numbers, for the summary: tool name to version line.
    pub versions: BTreeMap<String, String>,
}

impl Tools {
    /// `program` pinned to `cpu`, its output appended to `log` if given, with only `PATH` in
    /// its environment: a stray `RUST_LOG`, `GOGC` or `PYTHON*` must not change what is
    /// measured. It dies with the runner, even one killed outright.
    pub fn pinned(&self, cpu: u32, program: &Path, log: Option<&Path>) -> std::io::Result<Command> {
        let mut command = Command::new(&self.taskset);
        command.arg("--cpu-list").arg(cpu.to_string()).arg(program);
        command.env_clear().stdin(Stdio::null());
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        if let Some(log) = log {
            let file = fs::File::options().create(true).append(true).open(log)?;
            command.stdout(file.try_clone()?).stderr(file);
        }
        // Every child is spawned from the main thread, which lives as long as the runner.
        testkit::process::die_with_spawning_thread(&mut command);
        Ok(command)
    }
}

/// Prints one preparation step.
pub fn step(what: &str) {
    println!("  · {what}");
}

/// Finds the tools and readies every server in `servers`.
pub fn prepare(layout: &Layout, servers: &[ServerKind]) -> Result<Tools> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    ensure!(
        cpus >= 2,
        "the benchmark needs 2 CPUs (servers on CPU 0, oha on CPU 1); only {cpus} is available"
    );
    if layout
        .binaries
        .file_name()
        .is_none_or(|name| name != "release")
    {
        step(&format!(
            "warning: {} is not a release build: the numbers mean nothing",
            layout.binaries.display()
        ));
    }
    let taskset = find("taskset", &[]).context("taskset is missing: apt-get install util-linux")?;
    let cargo_bin = std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo/bin"));
    let oha = find("oha", cargo_bin.as_slice()).with_context(|| {
        format!("oha is missing: cargo install oha --locked --version {OHA_VERSION}")
    })?;
    let oha_version = first_line(Command::new(&oha).arg("--version"))?;
    step(&format!("oha: {} ({oha_version})", oha.display()));
    if !oha_version.ends_with(OHA_VERSION) {
        step(&format!(
            "warning: the report parser expects oha {OHA_VERSION}"
        ));
    }
    let mut versions = BTreeMap::from([("oha".to_owned(), oha_version)]);

    let mut programs = BTreeMap::new();
    for &server in servers {
        let program = ready_server(layout, server, &mut versions)?;
        step(&format!("{}: {}", server.name(), program.display()));
        programs.insert(server, program);
    }
    Ok(Tools {
        taskset,
        oha,
        servers: programs,
        versions,
    })
}

/// Readies `server`'s program: the release binary beside the runner, the controller-runtime
/// peer built, or the Python venv; records the versions that produced the numbers.
pub fn ready_server(
    layout: &Layout,
    server: ServerKind,
    versions: &mut BTreeMap<String, String>,
) -> Result<PathBuf> {
    Ok(match server {
        ServerKind::ValidatorWebhook | ServerKind::Ceiling => {
            let binary = layout.binaries.join(server.name());
            ensure!(
                binary.is_file(),
                "{} is missing: build it first (`just bench` and `just bench-apiserver` do)",
                binary.display()
            );
            if server == ServerKind::ValidatorWebhook {
                versions.insert(
                    server.name().to_owned(),
                    first_line(Command::new(&binary).arg("--version"))?,
                );
            }
            binary
        }
        ServerKind::ControllerRuntime => {
            let go = find("go", &[PathBuf::from("/usr/local/go/bin")])
                .context("go is missing: it builds the controller-runtime peer (Go 1.26)")?;
            versions.insert(
                "go".to_owned(),
                first_line(Command::new(&go).arg("version"))?,
            );
            build_go_peer(layout, &go)?
        }
        ServerKind::Flask | ServerKind::Gunicorn => {
            let python = python_venv(layout)?;
            versions.insert(
                "python".to_owned(),
                first_line(Command::new(&python).arg("--version"))?,
            );
            match server {
                ServerKind::Flask => python,
                _ => python.with_file_name("gunicorn"),
            }
        }
    })
}

/// Builds the controller-runtime peer into `target/bench/bin/` unless it is newer than its
/// sources.
fn build_go_peer(layout: &Layout, go: &Path) -> Result<PathBuf> {
    let source = layout.peers().join("controller-runtime");
    let binary = layout.out.join("bin/cr-validator");
    let modified = |path: &Path| path.metadata().and_then(|m| m.modified()).ok();
    let built = modified(&binary).unwrap_or(SystemTime::UNIX_EPOCH);
    let stale = ["main.go", "go.mod", "go.sum"]
        .iter()
        .any(|file| modified(&source.join(file)).is_none_or(|changed| changed > built));
    if stale {
        step("controller-runtime peer: building");
        fs::create_dir_all(layout.out.join("bin"))?;
        // No VCS stamping: the peer is part of this repository, not a module release.
        run(Command::new(go)
            .current_dir(&source)
            .args(["build", "-trimpath", "-buildvcs=false", "-o"])
            .arg(&binary)
            .arg("."))?;
    }
    Ok(binary)
}

/// The Python virtual environment with the Flask peer's pinned requirements, made or
/// reinstalled unless it already has exactly them. Returns its python.
fn python_venv(layout: &Layout) -> Result<PathBuf> {
    let venv = layout.out.join("venv");
    let python = venv.join("bin/python");
    let requirements = layout.peers().join("flask/requirements.txt");
    // A copy of the requirements the venv was made with.
    let stamp = venv.join("bench-requirements.txt");
    let wanted = fs::read_to_string(&requirements)?;
    if python.is_file() && fs::read_to_string(&stamp).ok().as_ref() == Some(&wanted) {
        return Ok(python);
    }
    step(&format!(
        "Python venv: installing {} into {}",
        requirements.display(),
        venv.display()
    ));
    let python3 = find("python3", &[]).context("python3 is missing: it runs the Flask peer")?;
    run(Command::new(python3).args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))?;
    fs::write(&stamp, wanted)?;
    Ok(python)
}

/// An executable `name` on `PATH`, else in one of `also`.
fn find(name: &str, also: &[PathBuf]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(also.iter().cloned())
        .map(|dir| dir.join(name))
        .find(|file| {
            file.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The first line `command` prints.
fn first_line(command: &mut Command) -> Result<String> {
    Ok(run(command)?
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned())
}
