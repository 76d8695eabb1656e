//! The image policy: a pure function from what a request asks and its configuration to a
//! [`Verdict`]. No I/O happens here, and no HTTP: the review layer (`webhook::review`) turns the
//! verdict into the AdmissionResponse. The denial text users read is [`Denial`]'s `Display`.
//! What a verdict does (deny, warn or only record) is the [`Mode`], applied by the review layer.

pub mod config;
pub mod image;
pub mod workload;

use std::{collections::BTreeSet, fmt};

use kube::core::{
    GroupVersionKind,
    admission::{AdmissionRequest, Operation},
};

use self::{
    image::InvalidReference,
    workload::{Container, ContainerList, PodSpecAt, ShapeError, Workload},
};

/// What the policy reads of an admission request.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub operation: &'a Operation,
    pub kind: &'a GroupVersionKind,
    /// `None` or empty for the object itself.
    pub subresource: Option<&'a str>,
    pub object: Option<&'a Workload>,
}

impl<'a> Input<'a> {
    pub fn of(request: &'a AdmissionRequest<Workload>) -> Self {
        Self {
            operation: &request.operation,
            kind: &request.kind,
            subresource: request.sub_resource.as_deref(),
            object: request.object.as_ref(),
        }
    }
}

/// The prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "msalinasc_";

/// What a verdict that would deny does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny the request.
    #[default]
    Enforce,
    /// Allow it, with one response warning per offending image.
    Warn,
    /// Allow it, and record the would-be denial in the audit log and in metrics only.
    Audit,
}

impl Mode {
    /// The mode as written on the command line, in the policy file and in metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Warn => "warn",
            Self::Audit => "audit",
        }
    }
}

/// Which images of an UPDATE are judged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUpdate {
    /// Every image of the new object.
    #[default]
    All,
    /// Only images the old object does not already have, so scaling or relabelling a workload
    /// admitted before the policy is not blocked.
    Changed,
}

/// Images let through whatever their name: exact references, and digests (`sha256:…`) that
/// match any reference pinned to them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exemptions {
    pub references: BTreeSet<String>,
    pub digests: BTreeSet<String>,
}

impl Exemptions {
    pub fn exempts(&self, image: &str) -> bool {
        self.references.contains(image)
            || image
                .rsplit_once('@')
                .is_some_and(|(_, digest)| self.digests.contains(digest))
    }

    pub fn is_empty(&self) -> bool {
        self.references.is_empty() && self.digests.is_empty()
    }
}

/// What an admitted workload must satisfy: every image name starts with an allowed prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    prefixes: Vec<String>,
    exemptions: Exemptions,
    on_update: OnUpdate,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            prefixes: vec![DEFAULT_PREFIX.to_owned()],
            exemptions: Exemptions::default(),
            on_update: OnUpdate::default(),
        }
    }
}

/// A prefix that no image name could ever start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("at least one allowed prefix is needed")]
    None,
    #[error("an allowed prefix cannot be empty, since it would allow every image")]
    Empty,
    #[error(
        "allowed prefix {0:?} can never match: image names hold only lower case letters, \
         digits, '.', '_' and '-', and start with a letter or digit"
    )]
    Unmatchable(String),
}

impl Policy {
    pub fn new<I, S>(prefixes: I) -> Result<Self, PrefixError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let prefixes: Vec<String> = prefixes.into_iter().map(Into::into).collect();
        if prefixes.is_empty() {
            return Err(PrefixError::None);
        }
        for prefix in &prefixes {
            if prefix.is_empty() {
                return Err(PrefixError::Empty);
            }
            let allowed =
                |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b);
            let starts_well = prefix
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric());
            if !starts_well || !prefix.bytes().all(allowed) {
                return Err(PrefixError::Unmatchable(prefix.clone()));
            }
        }
        Ok(Self {
            prefixes,
            ..Self::default()
        })
    }

    /// The same policy, letting `exemptions` through.
    pub fn with_exemptions(mut self, exemptions: Exemptions) -> Self {
        self.exemptions = exemptions;
        self
    }

    /// The same policy, judging UPDATEs as `on_update` says.
    pub fn with_on_update(mut self, on_update: OnUpdate) -> Self {
        self.on_update = on_update;
        self
    }

    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }

    pub fn exemptions(&self) -> &Exemptions {
        &self.exemptions
    }

    pub fn on_update(&self) -> OnUpdate {
        self.on_update
    }

    /// Decides on a request, judging every image of its object.
    pub fn evaluate(&self, input: Input<'_>) -> Verdict<'_> {
        self.evaluate_update(input, None)
    }

    /// Decides on a request whose old object (on UPDATE) is `old_object`: with
    /// [`OnUpdate::Changed`], images the old object already has are not judged again.
    pub fn evaluate_update(&self, input: Input<'_>, old_object: Option<&Workload>) -> Verdict<'_> {
        if matches!(input.operation, Operation::Delete | Operation::Connect) {
            return Verdict::Allowed;
        }
        let Some(at) = PodSpecAt::of(input.kind) else {
            return Verdict::NotInspected(Skipped::Kind);
        };
        match input.subresource {
            None | Some("") => {}
            Some("ephemeralcontainers") if at == PodSpecAt::Spec => {}
            Some(_) => return Verdict::NotInspected(Skipped::Subresource),
        }
        let Some(object) = input.object else {
            return Verdict::Invalid(Invalid::NoObject);
        };
        let containers = match object.containers(at) {
            Ok(containers) => containers,
            Err(shape) => return Verdict::Invalid(Invalid::Shape(shape)),
        };
        let unchanged: BTreeSet<&str> = match (input.operation, self.on_update, old_object) {
            (Operation::Update, OnUpdate::Changed, Some(old)) => old
                .containers(at)
                .unwrap_or_default()
                .iter()
                .filter_map(|container| container.image)
                .collect(),
            _ => BTreeSet::new(),
        };
        let violations: Vec<Violation> = containers
            .iter()
            .filter(|container| !container.image.is_some_and(|i| unchanged.contains(i)))
            .filter_map(|container| self.violation(container))
            .collect();
        if violations.is_empty() {
            Verdict::Allowed
        } else {
            Verdict::Denied(Denial {
                violations,
                prefixes: &self.prefixes,
            })
        }
    }

    /// Whether an image name starts with one of the allowed prefixes.
    pub fn allows(&self, name: &str) -> bool {
        self.prefixes
            .iter()
            .any(|prefix| name.starts_with(prefix.as_str()))
    }

    fn violation(&self, container: &Container<'_>) -> Option<Violation> {
        if container
            .image
            .is_some_and(|image| self.exemptions.exempts(image))
        {
            return None;
        }
        let problem = match container.image.map(image::name_of) {
            None if container.list == ContainerList::ImageVolumes => Problem::NoReference,
            None => Problem::NoImage,
            Some(Err(invalid)) => Problem::Unparsable(invalid),
            Some(Ok(name)) if self.allows(name) => return None,
            Some(Ok(name)) => Problem::Unprefixed(Shown::new(name)),
        };
        Some(Violation {
            path: container.path().to_string(),
            container: container.name.to_owned(),
            image: Shown::new(container.image.unwrap_or_default()),
            problem,
        })
    }
}

/// The outcome of a review.
#[derive(Debug)]
pub enum Verdict<'p> {
    Allowed,
    /// Allowed, with a warning that the policy did not look.
    NotInspected(Skipped),
    /// Denied: some container's image is not allowed.
    Denied(Denial<'p>),
    /// Denied: the object cannot be read as its kind.
    Invalid(Invalid),
}

impl Verdict<'_> {
    /// A stable, low-cardinality name for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::NotInspected(_) => "not_inspected",
            Self::Denied(_) => "denied",
            Self::Invalid(_) => "invalid",
        }
    }
}

/// Why a request was let through without inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    Kind,
    Subresource,
}

/// Why an object could not be inspected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("the request carries no object")]
    NoObject,
    #[error(transparent)]
    Shape(#[from] ShapeError),
}

/// Every container whose image is not allowed, and the prefixes it was held to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial<'p> {
    pub violations: Vec<Violation>,
    prefixes: &'p [String],
}

impl Denial<'_> {
    /// The prefixes the images were held to.
    pub fn prefixes(&self) -> &[String] {
        self.prefixes
    }

    /// What the message says before its clauses: `Invalid image name: `, or with the count of
    /// containers when there are several.
    pub fn heading(&self) -> String {
        match self.violations.as_slice() {
            [_] => "Invalid image name: ".to_owned(),
            many => format!("Invalid image name in {} containers: ", many.len()),
        }
    }

    /// One clause per offending container, as the denial message lists them.
    pub fn clauses(&self) -> impl Iterator<Item = String> + '_ {
        self.violations
            .iter()
            .map(|violation| Clause(violation, self.prefixes, true).to_string())
    }

    /// The clause of `violation` without its field path and container name, and with an image
    /// over `max_image_chars` shortened in its middle: the image, its name and the prefixes.
    pub fn short_clause(&self, violation: &Violation, max_image_chars: usize) -> String {
        let shortened = Violation {
            image: violation.image.at_most(max_image_chars),
            ..violation.clone()
        };
        Clause(&shortened, self.prefixes, false).to_string()
    }
}

/// A violation's clause; with `.2` false, without the field path and container name.
struct Clause<'a>(&'a Violation, &'a [String], bool);

impl fmt::Display for Clause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(violation, prefixes, located) = *self;
        // Without an image, only the location says which container is meant.
        let no_image = matches!(violation.problem, Problem::NoImage | Problem::NoReference);
        if located || no_image {
            write!(f, "{} {:?}: ", violation.path, violation.container)?;
        }
        violation.describe(f, prefixes)
    }
}

/// The denial message users see in `kubectl`: one line, one clause per offending container.
impl fmt::Display for Denial<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.heading())?;
        for (i, violation) in self.violations.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}", Clause(violation, self.prefixes, true))?;
        }
        Ok(())
    }
}

/// One container whose image is not allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Field path, e.g. `spec.template.spec.initContainers[0]`.
    pub path: String,
    pub container: String,
    pub image: Shown,
    pub problem: Problem,
}

/// An image reference, or a name, as a denial shows it: whole and quoted, or, when longer than
/// [`Shown::WHOLE`] bytes, its beginning, its length and a short hash to tell it apart. An
/// object may carry an image of megabytes; its denial and log line stay small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// All of it, or its first [`Shown::HEAD`] bytes (to a character boundary).
    text: String,
    /// The whole length in bytes and the first 12 hex digits of its SHA-256, when cut.
    cut: Option<(usize, String)>,
}

impl Shown {
    /// Longest text shown whole.
    pub const WHOLE: usize = 256;
    /// How much of a longer one is shown.
    pub const HEAD: usize = 64;

    pub fn new(text: &str) -> Self {
        if text.len() <= Self::WHOLE {
            return Self {
                text: text.to_owned(),
                cut: None,
            };
        }
        let end = (0..=Self::HEAD)
            .rev()
            .find(|&at| text.is_char_boundary(at))
            .unwrap_or(0);
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        let hash: String = digest.as_ref()[..6]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Self {
            text: text[..end].to_owned(),
            cut: Some((text.len(), hash)),
        }
    }
}

impl Shown {
    /// The text unquoted, for machine-readable output: all of it, or when cut its beginning,
    /// its length and its hash as [`fmt::Display`] shows them.
    pub fn plain(&self) -> String {
        match &self.cut {
            None => self.text.clone(),
            Some((length, hash)) => {
                format!("{}\u{2026} ({length} bytes, sha256:{hash})", self.text)
            }
        }
    }

    /// The same image in at most about `max_chars` characters of text: one shown whole but
    /// longer loses its middle to `…`; one already cut keeps less of its beginning.
    pub fn at_most(&self, max_chars: usize) -> Self {
        let chars = self.text.chars().count();
        if chars <= max_chars {
            return self.clone();
        }
        let text = match self.cut {
            Some(_) => self.text.chars().take(max_chars).collect(),
            None => {
                let keep = max_chars.saturating_sub(1) / 2;
                let head: String = self.text.chars().take(keep).collect();
                let tail: String = self.text.chars().skip(chars - keep).collect();
                format!("{head}\u{2026}{tail}")
            }
        };
        Self {
            text,
            cut: self.cut.clone(),
        }
    }
}

/// Quoted as Rust's `Debug` quotes a string; a cut one as `"head"… (N bytes, sha256:abc…)`.
impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)?;
        match &self.cut {
            None => Ok(()),
            Some((length, hash)) => write!(f, "\u{2026} ({length} bytes, sha256:{hash})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The image's name, which starts with no allowed prefix.
    Unprefixed(Shown),
    Unparsable(InvalidReference),
    NoImage,
    /// An image volume whose `image` source names no `reference`.
    NoReference,
}

impl Violation {
    fn describe(&self, f: &mut fmt::Formatter<'_>, prefixes: &[String]) -> fmt::Result {
        let Self { image, problem, .. } = self;
        match problem {
            Problem::NoImage => f.write_str("has no image"),
            Problem::NoReference => f.write_str("is an image volume without a reference"),
            Problem::Unparsable(why) => {
                write!(f, "image {image} is not a valid image reference ({why})")
            }
            Problem::Unprefixed(name) => {
                write!(
                    f,
                    "image {image} has name {name}, which does not start with "
                )?;
                match prefixes {
                    [one] => write!(f, "{one:?}"),
                    many => {
                        f.write_str("any of ")?;
                        for (i, prefix) in many.iter().enumerate() {
                            let separator = if i == 0 { "" } else { ", " };
                            write!(f, "{separator}{prefix:?}")?;
                        }
                        Ok(())
                    }
                }
            }
        }
    }

    /// Why this container's image is not allowed: its clause of the denial without the field
    /// path and container name, e.g. `image "nginx" has name "nginx", which does not start
    /// with "msalinasc_"`.
    pub fn reason<'a>(&'a self, prefixes: &'a [String]) -> Reason<'a> {
        Reason {
            violation: self,
            prefixes,
        }
    }
}

/// See [`Violation::reason`].
pub struct Reason<'a> {
    violation: &'a Violation,
    prefixes: &'a [String],
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.violation.describe(f, self.prefixes)
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn request(kind: &str, object: &str) -> AdmissionRequest<Workload> {
        let (group, kind) = kind.split_once('/').unwrap_or(("", kind));
        let json = format!(
            r#"{{"uid":"u","kind":{{"group":"{group}","version":"v1","kind":"{kind}"}},
                "resource":{{"group":"{group}","version":"v1","resource":"things"}},
                "operation":"CREATE","userInfo":{{}},"object":{object},"oldObject":null}}"#
        );
        serde_json::from_str(&json).unwrap()
    }

    fn pod(images: &[&str]) -> AdmissionRequest<Workload> {
        let containers: Vec<String> = images
            .iter()
            .enumerate()
            .map(|(i, image)| format!(r#"{{"name":"c{i}","image":"{image}"}}"#))
            .collect();
        request(
            "Pod",
            &format!(r#"{{"spec":{{"containers":[{}]}}}}"#, containers.join(",")),
        )
    }

    #[test]
    fn allows_prefixed_images() {
        let policy = Policy::default();
        let request = pod(&["msalinasc_app:1.0", "localhost:5000/msalinasc_db"]);
        let verdict = policy.evaluate(Input::of(&request));
        assert_eq!(verdict.label(), "allowed");
    }

    #[test]
    fn shows_a_long_image_cut_with_its_length_and_hash() {
        let short = "a".repeat(Shown::WHOLE);
        assert_eq!(Shown::new(&short).to_string(), format!("{short:?}"));
        let long = format!("{}é", "a".repeat(Shown::HEAD - 1));
        let long = long.repeat(10);
        let shown = Shown::new(&long).to_string();
        let head = "a".repeat(Shown::HEAD - 1);
        assert!(
            shown.starts_with(&format!(
                "\"{head}\"\u{2026} ({} bytes, sha256:",
                long.len()
            )),
            "{shown}"
        );
        assert_ne!(shown, Shown::new(&long.replace('é', "e")).to_string());
    }

    #[test]
    fn names_the_container_the_image_and_the_prefix() {
        let request = pod(&["msalinasc_app", "nginx:1.25"]);
        let policy = Policy::default();
        let Verdict::Denied(denial) = policy.evaluate(Input::of(&request)) else {
            panic!("not denied")
        };
        assert_eq!(
            denial.to_string(),
            r#"Invalid image name: spec.containers[1] "c1": image "nginx:1.25" has name "nginx", which does not start with "msalinasc_""#
        );
    }

    #[test]
    fn counts_and_separates_several_offenders() {
        let request = pod(&["nginx", "Redis"]);
        let policy = Policy::default();
        let Verdict::Denied(denial) = policy.evaluate(Input::of(&request)) else {
            panic!("not denied")
        };
        assert_eq!(
            denial.to_string(),
            "Invalid image name in 2 containers: \
             spec.containers[0] \"c0\": image \"nginx\" has name \"nginx\", which does not start with \"msalinasc_\"; \
             spec.containers[1] \"c1\": image \"Redis\" is not a valid image reference (repository names must be lower case)"
        );
    }

    #[test]
    fn lists_every_allowed_prefix() {
        let policy = Policy::new(["msalinasc_", "team_"]).unwrap();
        let request = pod(&["nginx"]);
        let Verdict::Denied(denial) = policy.evaluate(Input::of(&request)) else {
            panic!("not denied")
        };
        assert!(
            denial
                .to_string()
                .ends_with(r#"which does not start with any of "msalinasc_", "team_""#)
        );
        let request = pod(&["team_api"]);
        assert_eq!(policy.evaluate(Input::of(&request)).label(), "allowed");
    }

    #[rstest]
    #[case::none(&[], PrefixError::None)]
    #[case::empty(&[""], PrefixError::Empty)]
    #[case::upper_case(&["Team_"], PrefixError::Unmatchable("Team_".into()))]
    #[case::slash(&["team/"], PrefixError::Unmatchable("team/".into()))]
    #[case::leading_dot(&[".x"], PrefixError::Unmatchable(".x".into()))]
    fn refuses_prefixes_that_cannot_work(#[case] prefixes: &[&str], #[case] error: PrefixError) {
        assert_eq!(Policy::new(prefixes.iter().copied()), Err(error));
    }
}
