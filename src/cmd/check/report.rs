//! What `check` says about one document: its verdict, message and offending containers, and
//! the summary that counts every verdict.

use serde::Serialize;

/// The verdict on one document, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allowed,
    /// A kind the policy does not inspect: the webhook allows it with a warning.
    NotInspected,
    /// Not a Kubernetes object (a kustomization, chart metadata, values) or a template that must
    /// be rendered first.
    Skipped,
    Denied,
    /// Denied by the rules of a namespace in `warn` mode: the webhook admits it with a warning
    /// per offending image.
    Warned,
    /// Denied by the rules of a namespace in `audit` mode: the webhook admits it and records the
    /// would-be denial in the audit log and metrics.
    Audited,
    /// The document cannot be read, or cannot be read as its kind.
    Invalid,
}

impl Outcome {
    /// How text output names the verdict.
    pub fn text(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::NotInspected => "not inspected",
            Self::Skipped => "skipped",
            Self::Denied => "denied",
            Self::Warned => "warned",
            Self::Audited => "audited",
            Self::Invalid => "invalid",
        }
    }

    /// Whether it fails the check (exit status 1 or 2).
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Denied | Self::Invalid)
    }

    /// Whether `--quiet` still prints it: a failure, or a would-be denial that passes.
    pub fn is_shown_when_quiet(self) -> bool {
        self.is_failure() || matches!(self, Self::Warned | Self::Audited)
    }
}

/// One container whose image is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Field path, e.g. `spec.template.spec.initContainers[0]`.
    pub path: String,
    pub container: String,
    pub image: String,
    /// The image's name, when the reference parses.
    pub name: Option<String>,
    pub reason: String,
}

/// The verdict on one object, before it is placed in its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub verdict: Outcome,
    pub message: Option<String>,
    pub violations: Vec<Violation>,
}

impl Finding {
    pub fn new(verdict: Outcome, message: impl Into<String>) -> Self {
        Self {
            api_version: None,
            kind: None,
            namespace: None,
            name: None,
            verdict,
            message: Some(message.into()),
            violations: Vec::new(),
        }
    }

    /// `Deployment shop/web`, or `None` for a document that is not an object.
    pub fn object(&self) -> Option<String> {
        let kind = self.kind.as_deref()?;
        let name = self.name.as_deref().unwrap_or("(unnamed)");
        Some(match self.namespace.as_deref() {
            Some(namespace) => format!("{kind} {namespace}/{name}"),
            None => format!("{kind} {name}"),
        })
    }
}

/// A finding in its place: which input, which document, which line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub file: String,
    /// The document's position in its input, from 1; `None` when the input could not be read.
    pub document: Option<usize>,
    /// The line the document starts on (or the line at fault), from 1.
    pub line: Option<usize>,
    #[serde(flatten)]
    pub finding: Finding,
}

impl Report {
    /// How text output and annotations name the document: `Deployment shop/web` or `document 2`.
    pub fn subject(&self) -> String {
        self.finding
            .object()
            .unwrap_or_else(|| match self.document {
                Some(document) => format!("document {document}"),
                None => "input".to_owned(),
            })
    }

    /// `file:line`, or the file alone.
    pub fn place(&self) -> String {
        match self.line {
            Some(line) => format!("{}:{line}", self.file),
            None => self.file.clone(),
        }
    }
}

/// Every verdict, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub allowed: usize,
    pub denied: usize,
    pub warned: usize,
    pub audited: usize,
    pub not_inspected: usize,
    pub skipped: usize,
    pub invalid: usize,
}

impl Summary {
    pub fn count(&mut self, outcome: Outcome) {
        *match outcome {
            Outcome::Allowed => &mut self.allowed,
            Outcome::Denied => &mut self.denied,
            Outcome::Warned => &mut self.warned,
            Outcome::Audited => &mut self.audited,
            Outcome::NotInspected => &mut self.not_inspected,
            Outcome::Skipped => &mut self.skipped,
            Outcome::Invalid => &mut self.invalid,
        } += 1;
    }

    pub fn total(&self) -> usize {
        self.allowed
            + self.denied
            + self.warned
            + self.audited
            + self.not_inspected
            + self.skipped
            + self.invalid
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} allowed, {} denied, {} warned, {} audited, {} not inspected, {} skipped, {} invalid",
            self.allowed,
            self.denied,
            self.warned,
            self.audited,
            self.not_inspected,
            self.skipped,
            self.invalid
        )
    }
}
