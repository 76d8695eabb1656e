//! `validator-webhook check`: the webhook's verdicts on manifests before they reach a cluster,
//! one line per document, for people and for CI.
//!
//! | module | concept |
//! |---|---|
//! | [`input`] | files, directories, stdin; decoding; cutting the stream into documents |
//! | [`document`] | a document's text to findings: JSON or YAML by parsing, `List`s streamed |
//! | [`evaluate`] | a parsed document to the webhook's verdict, in the webhook's words |
//! | [`report`] | a verdict in its place (file, document, line) and the summary |
//! | [`output`] | text, json, junit, github |
//! | [`cluster`] | `--cluster`: the inspected workloads of a live cluster |

pub mod cluster;
pub mod document;
pub mod evaluate;
pub mod input;
pub mod output;
pub mod report;

use std::{io::Write, path::PathBuf};

use self::{
    document::Parsed,
    evaluate::{Context, Evaluator},
    input::{Chunks, Excludes, Source},
    output::{Format, Sink},
    report::{Finding, Outcome, Report, Summary},
};
use crate::policy::config::PolicyConfig;

/// The process exit status of a check: the worst of its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Everything allowed, not inspected or skipped, or denied only in a namespace in `warn`
    /// or `audit` mode.
    Passed = 0,
    Denied = 1,
    /// Some input cannot be read, or some document cannot be read as its kind.
    Unreadable = 2,
    /// A usage or configuration error: nothing was checked.
    Usage = 3,
}

impl Status {
    fn of(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Allowed
            | Outcome::NotInspected
            | Outcome::Skipped
            | Outcome::Warned
            | Outcome::Audited => Self::Passed,
            Outcome::Denied => Self::Denied,
            Outcome::Invalid => Self::Unreadable,
        }
    }
}

/// How to check and report.
#[derive(Debug, Default)]
pub struct Options {
    pub format: Format,
    pub quiet: bool,
    pub strict: bool,
    /// `--exclude` globs for walked directories.
    pub exclude: Vec<String>,
    /// The namespace of objects that name none, as `kubectl apply -n` gives it.
    pub namespace: Option<String>,
}

/// The namespace of objects that name none when `--namespace` does not say: the one `kubectl`
/// uses with a kubeconfig context that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Receives results, counts them and writes them out.
pub struct Recorder<'w> {
    sink: Box<dyn Sink + 'w>,
    summary: Summary,
    status: Status,
    error: Option<std::io::Error>,
}

impl<'w> Recorder<'w> {
    pub fn new(options: &Options, out: &'w mut dyn Write) -> Self {
        Self {
            sink: output::sink(options.format, options.quiet, out),
            summary: Summary::default(),
            status: Status::Passed,
            error: None,
        }
    }

    pub fn record(&mut self, report: &Report) {
        self.summary.count(report.finding.verdict);
        self.status = self.status.max(Status::of(report.finding.verdict));
        if self.error.is_none()
            && let Err(error) = self.sink.report(report)
        {
            self.error = Some(error);
        }
    }

    /// Writes the summary; the status, or `Err` when the output could not be written.
    pub fn finish(mut self) -> Result<Status, std::io::Error> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        self.sink.finish(&self.summary)?;
        Ok(self.status)
    }
}

/// Checks every path (`-` is standard input, a directory is walked), writing results to `out`.
/// A problem writing the output is returned as an error.
pub fn run(
    config: &PolicyConfig,
    paths: &[PathBuf],
    options: &Options,
    out: &mut dyn Write,
) -> Result<Status, String> {
    let excludes = Excludes::new(&options.exclude)?;
    let evaluator = Evaluator {
        config,
        namespace: options.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
        strict: options.strict,
    };
    let mut recorder = Recorder::new(options, out);
    for source in input::sources(paths, &excludes) {
        match source {
            Ok(source) => check_source(&evaluator, &source, &mut recorder),
            Err((file, why)) => recorder.record(&unreadable(file, None, why)),
        }
    }
    recorder
        .finish()
        .map_err(|e| format!("cannot write the results: {e}"))
}

fn unreadable(file: String, line: Option<usize>, why: String) -> Report {
    Report {
        file,
        document: None,
        line,
        finding: Finding::new(Outcome::Invalid, why),
    }
}

/// Reads one input a document at a time and records a result per document.
fn check_source(evaluator: &Evaluator<'_>, source: &Source, recorder: &mut Recorder<'_>) {
    let file = source.name();
    let reader = match source.open() {
        Ok(reader) => reader,
        Err(error) => {
            return recorder.record(&unreadable(file, None, format!("cannot read: {error}")));
        }
    };
    let file_name = match source {
        Source::File(path) => path.file_name().and_then(|n| n.to_str()),
        Source::Stdin => None,
    };
    let mut document = 0;
    for chunk in Chunks::new(reader) {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                let why = format!("cannot read: {error}");
                return recorder.record(&unreadable(file, None, why));
            }
        };
        let context = Context {
            file_name,
            template: chunk.text.contains("{{"),
        };
        document::parse(&chunk, evaluator, context, &mut |parsed: Parsed| {
            document += 1;
            for finding in parsed.findings {
                recorder.record(&Report {
                    file: file.clone(),
                    document: Some(document),
                    line: Some(parsed.line),
                    finding,
                });
            }
        });
    }
}
