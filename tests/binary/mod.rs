//! The built `validator-webhook` binary as a child process, started as users start it: with
//! nothing from the test's environment, and its output read as text.

#![allow(dead_code)]

use std::{
    io::Write,
    path::Path,
    process::{Command, Output, Stdio},
};

pub const BIN: &str = env!("CARGO_BIN_EXE_validator-webhook");

/// `validator-webhook <args>` in the package's folder.
pub fn run(args: &[&str]) -> Output {
    run_in(".", args)
}

/// `validator-webhook <args>` in `dir`.
pub fn run_in(dir: impl AsRef<Path>, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .output()
        .unwrap()
}

/// `validator-webhook <args>` in `dir` with `input` on its stdin, written by a thread of its own
/// so that a large input cannot block on a full output pipe.
pub fn run_with_stdin(dir: impl AsRef<Path>, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    output
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
