//! How results are written: `text` for people, `json` for programs, `junit` for CI test
//! reports, `github` for workflow annotations on the file and line. Results are written as they
//! come (JUnit holds one file's results at a time), so output never waits for the whole run.

use std::io::{self, Write};

use clap::ValueEnum;

use super::report::{Outcome, Report, Summary};

/// `--output`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per document, then a summary counting every verdict.
    #[default]
    Text,
    /// One JSON document: `{"results": [...], "summary": {...}}`.
    Json,
    /// A JUnit XML report: a test suite per file, a test case per document.
    Junit,
    /// GitHub Actions workflow commands: an error annotation per denied or invalid document, a
    /// warning per warned or audited one.
    Github,
}

/// Where results go.
pub trait Sink {
    fn report(&mut self, report: &Report) -> io::Result<()>;
    fn finish(&mut self, summary: &Summary) -> io::Result<()>;
}

/// The sink for `format`; `quiet` keeps only denials (warned and audited ones too) and errors
/// in `text` and `github`.
pub fn sink<'w>(format: Format, quiet: bool, out: &'w mut dyn Write) -> Box<dyn Sink + 'w> {
    match format {
        Format::Text => Box::new(Text { out, quiet }),
        Format::Json => Box::new(Json { out, first: true }),
        Format::Junit => Box::new(Junit {
            out,
            file: Vec::new(),
            started: false,
        }),
        Format::Github => Box::new(Github { out, quiet }),
    }
}

struct Text<'w> {
    out: &'w mut dyn Write,
    quiet: bool,
}

impl Sink for Text<'_> {
    fn report(&mut self, report: &Report) -> io::Result<()> {
        let verdict = report.finding.verdict;
        if self.quiet && !verdict.is_shown_when_quiet() {
            return Ok(());
        }
        write!(
            self.out,
            "{}: {}: {}",
            report.place(),
            report.subject(),
            verdict.text()
        )?;
        match (&report.finding.message, verdict) {
            (Some(message), Outcome::NotInspected | Outcome::Skipped) => {
                writeln!(self.out, " ({message})")
            }
            (Some(message), _) => writeln!(self.out, ": {message}"),
            (None, _) => writeln!(self.out),
        }
    }

    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        if !self.quiet {
            writeln!(self.out, "{summary}")?;
        }
        self.out.flush()
    }
}

struct Json<'w> {
    out: &'w mut dyn Write,
    first: bool,
}

impl Sink for Json<'_> {
    fn report(&mut self, report: &Report) -> io::Result<()> {
        let separator = if self.first {
            "{\"results\":[\n"
        } else {
            ",\n"
        };
        self.first = false;
        self.out.write_all(separator.as_bytes())?;
        serde_json::to_writer(&mut *self.out, report).map_err(io::Error::other)
    }

    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        let start = if self.first { "{\"results\":[" } else { "\n" };
        write!(self.out, "{start}],\"summary\":")?;
        serde_json::to_writer(&mut *self.out, summary).map_err(io::Error::other)?;
        writeln!(self.out, "}}")?;
        self.out.flush()
    }
}

struct Junit<'w> {
    out: &'w mut dyn Write,
    /// The current file's results; a test suite's counts come before its cases.
    file: Vec<Report>,
    started: bool,
}

impl Junit<'_> {
    fn flush_file(&mut self) -> io::Result<()> {
        let Some(first) = self.file.first() else {
            return Ok(());
        };
        let count = |outcomes: &[Outcome]| {
            self.file
                .iter()
                .filter(|r| outcomes.contains(&r.finding.verdict))
                .count()
        };
        writeln!(
            self.out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">",
            xml(&first.file),
            self.file.len(),
            count(&[Outcome::Denied]),
            count(&[Outcome::Invalid]),
            count(&[Outcome::NotInspected, Outcome::Skipped]),
        )?;
        for report in &self.file {
            write!(
                self.out,
                "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\"",
                xml(&report.file),
                xml(&format!("{} ({})", report.subject(), report.place())),
                xml(&report.file),
            )?;
            if let Some(line) = report.line {
                write!(self.out, " line=\"{line}\"")?;
            }
            let message = xml(report.finding.message.as_deref().unwrap_or_default());
            match report.finding.verdict {
                Outcome::Allowed => writeln!(self.out, "/>")?,
                // Passed, with what the webhook would say.
                Outcome::Warned | Outcome::Audited => writeln!(
                    self.out,
                    "><system-out>{}: {message}</system-out></testcase>",
                    report.finding.verdict.text()
                )?,
                Outcome::Denied => writeln!(
                    self.out,
                    "><failure type=\"denied\" message=\"{message}\">{message}</failure></testcase>"
                )?,
                Outcome::Invalid => writeln!(
                    self.out,
                    "><error type=\"invalid\" message=\"{message}\">{message}</error></testcase>"
                )?,
                Outcome::NotInspected | Outcome::Skipped => writeln!(
                    self.out,
                    "><skipped message=\"{}: {message}\"/></testcase>",
                    report.finding.verdict.text()
                )?,
            }
        }
        writeln!(self.out, "  </testsuite>")?;
        self.file.clear();
        Ok(())
    }
}

impl Sink for Junit<'_> {
    fn report(&mut self, report: &Report) -> io::Result<()> {
        if !self.started {
            self.started = true;
            writeln!(self.out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
            writeln!(self.out, "<testsuites name=\"validator-webhook check\">")?;
        }
        if self.file.first().is_some_and(|r| r.file != report.file) {
            self.flush_file()?;
        }
        self.file.push(report.clone());
        Ok(())
    }

    fn finish(&mut self, _summary: &Summary) -> io::Result<()> {
        if !self.started {
            writeln!(self.out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
            writeln!(self.out, "<testsuites name=\"validator-webhook check\">")?;
        }
        self.flush_file()?;
        writeln!(self.out, "</testsuites>")?;
        self.out.flush()
    }
}

/// Text as an XML attribute value or element content.
fn xml(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\n' => escaped.push_str("&#10;"),
            c if u32::from(c) < 0x20 && c != '\t' => {}
            c => escaped.push(c),
        }
    }
    escaped
}

struct Github<'w> {
    out: &'w mut dyn Write,
    quiet: bool,
}

impl Sink for Github<'_> {
    fn report(&mut self, report: &Report) -> io::Result<()> {
        let finding = &report.finding;
        let title = match finding.verdict {
            Outcome::Denied => "denied by the image policy",
            Outcome::Warned => "denied by the image policy in warn mode: admitted with warnings",
            Outcome::Audited => "denied by the image policy in audit mode: admitted and recorded",
            Outcome::Invalid => "cannot be checked",
            Outcome::NotInspected if !self.quiet => "not inspected by the image policy",
            _ => return Ok(()),
        };
        let level = match finding.verdict {
            verdict if verdict.is_failure() => "error",
            Outcome::Warned | Outcome::Audited => "warning",
            _ => "notice",
        };
        write!(self.out, "::{level} file={}", property(&report.file))?;
        if let Some(line) = report.line {
            write!(self.out, ",line={line}")?;
        }
        writeln!(
            self.out,
            ",title={}::{}",
            property(&format!("{} {title}", report.subject())),
            data(finding.message.as_deref().unwrap_or_default())
        )
    }

    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        if !self.quiet {
            writeln!(self.out, "{summary}")?;
        }
        self.out.flush()
    }
}

/// A workflow command's message.
fn data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value.
fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}
