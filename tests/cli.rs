//! The binary as users run it: `check` exit codes, startup mistakes in one sentence, the
//! printed curl line working as pasted, and a clean exit on SIGTERM.

mod binary;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use binary::{BIN, run, run_with_stdin, stderr, stdout};

#[test]
fn check_passes_a_good_manifest() {
    let output = run(&["check", "examples/deployment-good.yaml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "examples/deployment-good.yaml:1: Deployment web: allowed\n1 allowed, 0 denied, 0 warned, 0 audited, 0 not inspected, 0 skipped, 0 invalid\n"
    );
}

#[test]
fn check_denies_with_the_webhook_message() {
    let output = run(&[
        "check",
        "examples/deployment-good.yaml",
        "examples/deployment-bad.yaml",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains(
        "examples/deployment-bad.yaml:3: Deployment web: denied: Invalid image name: spec.template.spec.initContainers[0] \"init\": \
         image \"nginx:1.25\" has name \"nginx\", which does not start with \"msalinasc_\"\n"
    ));
}

#[test]
fn check_reads_admission_reviews_from_stdin() {
    let review = std::fs::read("examples/review-bad-deployment.json").unwrap();
    let output = run_with_stdin(".", &["check", "-"], &review);
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).starts_with("-:1: Deployment shop/web: denied: Invalid image name"));
}

#[test]
fn check_says_which_input_it_cannot_read() {
    let output = run(&["check", "no-such-file.yaml", "examples/deployment-bad.yaml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stdout(&output).starts_with("no-such-file.yaml: input: invalid: cannot read: "),
        "{}",
        stdout(&output)
    );
}

#[test]
fn check_takes_prefixes_from_the_environment() {
    let output = Command::new(BIN)
        .args(["check", "examples/deployment-bad.yaml"])
        .env("VALIDATOR_WEBHOOK_ALLOWED_PREFIX", "msalinasc_,nginx")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
}

#[test]
fn a_certificate_without_its_key_is_refused_in_one_sentence() {
    let output = run(&["serve", "--tls-cert-file", "tls.crt"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "validator-webhook: --tls-cert-file is set but --tls-key-file is not: give both TLS files or neither\n"
    );
}

#[test]
fn a_prefix_that_cannot_match_is_refused_in_one_sentence() {
    let output = run(&["--allowed-prefix", "Team_"]);
    assert_eq!(output.status.code(), Some(1));
    let error = stderr(&output);
    assert!(
        error.starts_with(
            "validator-webhook: invalid --allowed-prefix: allowed prefix \"Team_\" can never match"
        ),
        "{error}"
    );
    assert_eq!(error.lines().count(), 1);
}

#[test]
fn an_unreadable_certificate_is_named() {
    let output = run(&[
        "--tls-cert-file",
        "/nonexistent/tls.crt",
        "--tls-key-file",
        "/nonexistent/tls.key",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("validator-webhook: cannot read /nonexistent/tls.crt: "),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_bad_policy_file_stops_the_start_in_one_sentence_naming_flag_key_and_line() {
    let (_dir, path) = policy_file(
        "apiVersion: validator-webhook/v1\nkind: Policy\nmode: enforce\nallowedPrefixes:\n- ok_\n- Team_\n",
    );
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("VALIDATOR_WEBHOOK_POLICY_FILE", &path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let error = stderr(&output);
    assert!(
        error.starts_with(&format!(
            "validator-webhook: invalid --policy-file {}: line 6: allowedPrefixes: allowed prefix \"Team_\" can never match",
            path.display()
        )),
        "{error}"
    );
    assert_eq!(error.lines().count(), 1, "{error}");
}

/// `text` as `policy.yaml` in a new directory, removed when the first value is dropped.
fn policy_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn an_unknown_mode_flag_is_refused() {
    let output = run(&["--mode", "deny"]);
    // A usage error, which every command answers with 3 (`check` documents it).
    assert_eq!(output.status.code(), Some(3));
    assert!(
        stderr(&output).contains("invalid value 'deny' for '--mode"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn check_reads_the_policy_file_and_the_flags_override_it() {
    let (_dir, path) = policy_file(
        "apiVersion: validator-webhook/v1\nkind: Policy\nallowedPrefixes: [msalinasc_, nginx]\n",
    );
    let file = path.to_str().unwrap();
    let with_file = run(&[
        "check",
        "--policy-file",
        file,
        "examples/deployment-bad.yaml",
    ]);
    assert_eq!(with_file.status.code(), Some(0), "{}", stdout(&with_file));
    let overridden = run(&[
        "check",
        "--policy-file",
        file,
        "--allowed-prefix",
        "msalinasc_",
        "examples/deployment-bad.yaml",
    ]);
    assert_eq!(overridden.status.code(), Some(1), "{}", stdout(&overridden));
}

/// A running `validator-webhook serve` on free ports, its log written to a file, stopped with
/// SIGTERM when dropped.
struct Served {
    child: std::process::Child,
    /// Held open: the server would fail writing to a closed pipe.
    _stdout: BufReader<std::process::ChildStdout>,
    log: std::path::PathBuf,
    /// The curl line it printed once listening.
    curl: String,
}

impl Served {
    /// Starts the server with `args` besides its listen addresses, and waits for its curl line.
    fn start(args: &[&str], tmp: &std::path::Path) -> Self {
        let port = testkit::free_port().unwrap();
        let listen = format!("127.0.0.1:{port}");
        let metrics = format!("127.0.0.1:{}", testkit::free_port().unwrap());
        let log = tmp.join(format!("serve-{port}.log"));
        let mut child = Command::new(BIN)
            .args(["--listen", &listen, "--metrics-listen", &metrics])
            .args(args)
            .env("TMPDIR", tmp)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let curl = line_containing(&mut stdout, "curl ");
        Self {
            child,
            _stdout: stdout,
            log,
            curl,
        }
    }

    /// The word after `flag` in the printed curl line.
    fn curl_argument(&self, flag: &str) -> String {
        let mut words = self
            .curl
            .split_whitespace()
            .skip_while(|word| *word != flag);
        words.nth(1).unwrap().to_owned()
    }

    /// The review file the printed curl line posts.
    fn curl_posts(&self) -> String {
        let mut words = self.curl.split_whitespace();
        words
            .find_map(|word| word.strip_prefix('@'))
            .unwrap()
            .to_owned()
    }

    /// The printed curl line's URL with `path` in place of its own.
    fn url(&self, path: &str) -> String {
        let url = self.curl.split_whitespace().last().unwrap();
        format!("{}{path}", url.strip_suffix("/validate").unwrap())
    }

    /// The log's lines so far.
    fn log_lines(&self) -> Vec<String> {
        let log = std::fs::read_to_string(&self.log).unwrap();
        log.lines().map(str::to_owned).collect()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        self.child.wait().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// The first line of `output` holding `needle`, within 20 s.
fn line_containing(output: &mut impl BufRead, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        if output.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.contains(needle) {
            return line.trim().to_owned();
        }
    }
    panic!("the server never printed {needle:?}");
}

/// Runs a printed curl line, quietly but for errors.
fn curl(line: &str) -> Output {
    Command::new("sh")
        .args(["-c", &format!("{line} --silent --show-error")])
        .output()
        .unwrap()
}

#[test]
fn the_printed_curl_line_gets_a_denial_and_sigterm_exits_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut served = Served::start(&[], tmp.path());
    assert!(served.curl.starts_with("curl --cacert "), "{}", served.curl);

    let output = curl(&served.curl);
    assert!(output.status.success(), "curl failed: {}", stderr(&output));
    let response = testkit::reply::response(&output.stdout).unwrap();
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    testkit::reply::ensure_policy_denial(&response).unwrap();

    assert_eq!(served.terminate().code(), Some(0));
}

#[test]
fn the_log_line_of_a_denial_shows_a_long_image_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let mut served = Served::start(&["--log-format", "json"], tmp.path());
    // The printed line posts the example review: post it with a 2.9 MB image instead.
    let example = served.curl_posts();
    let image = format!("registry.example.com/{}:1.0", "a".repeat(2_900_000));
    let review = std::fs::read_to_string(&example).unwrap();
    let review = review.replacen("\"nginx:1.25\"", &format!("{image:?}"), 1);
    let posted = tmp.path().join("long-image.json");
    std::fs::write(&posted, review).unwrap();
    let output = curl(&served.curl.replace(&example, &posted.to_string_lossy()));
    assert!(output.status.success(), "curl failed: {}", stderr(&output));
    testkit::reply::ensure_policy_denial(&testkit::reply::response(&output.stdout).unwrap())
        .unwrap();

    let lines = served.log_lines();
    let denied = (lines.iter())
        .find(|line| line.contains("\"denied\""))
        .unwrap_or_else(|| panic!("no denial logged: {lines:?}"));
    assert!(denied.len() < 2048, "{} bytes: {denied:.300}", denied.len());
    assert!(
        denied.contains(&format!("({} bytes, sha256:", image.len())),
        "{denied}"
    );
    assert_eq!(served.terminate().code(), Some(0));
}

#[test]
fn sigterm_fails_readiness_and_serves_on_for_the_shutdown_delay() {
    let tmp = tempfile::tempdir().unwrap();
    let mut served = Served::start(&["--shutdown-delay", "3s"], tmp.path());
    let ca = served.curl_argument("--cacert");
    let status = |path: &str| {
        let output = Command::new("curl")
            .args([
                "--silent",
                "--output",
                "/dev/null",
                "--write-out",
                "%{http_code}",
            ])
            .args(["--cacert", &ca, &served.url(path)])
            .output()
            .unwrap();
        stdout(&output)
    };
    assert_eq!(status("/readyz"), "200");

    let signalled = Instant::now();
    let pid = served.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(500));
    // Taken off the Service's endpoints, and still answering whoever has not noticed yet.
    assert_eq!(status("/readyz"), "503");
    assert_eq!(status("/healthz"), "200");
    let exit = served.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
    assert!(
        signalled.elapsed() >= Duration::from_secs(3),
        "exited {:?} after SIGTERM, before the 3 s delay",
        signalled.elapsed()
    );
}

#[test]
fn certs_refuses_a_validity_of_zero_days() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let output = run(&[
        "certs",
        "--validity-days",
        "0",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--validity-days"),
        "{}",
        stderr(&output)
    );
    assert!(!out.exists(), "nothing is written");
}

#[test]
fn two_servers_without_certificates_keep_their_own_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let first = Served::start(&[], tmp.path());
    let second = Served::start(&[], tmp.path());
    assert_ne!(
        first.curl_argument("--cacert"),
        second.curl_argument("--cacert")
    );
    let output = curl(&first.curl);
    assert!(
        output.status.success(),
        "the first curl line stopped working: {}",
        stderr(&output)
    );
}
