//! The image policy: a pure function from what a request asks and its configuration to a
//! [`Verdict`]. No I/O happens here, and no HTTP: the review layer (`webhook::review`) turns the
//! verdict into the AdmissionResponse. The denial text users read is [`Denial`]'s `Display`.

pub mod image;
pub mod workload;

use std::fmt;

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

/// What an admitted workload must satisfy: every image name starts with an allowed prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    prefixes: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            prefixes: vec![DEFAULT_PREFIX.to_owned()],
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
        Ok(Self { prefixes })
    }

    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }

    /// Decides on a request.
    pub fn evaluate(&self, input: Input<'_>) -> Verdict<'_> {
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
        let violations: Vec<Violation> = containers
            .iter()
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
        let problem = match container.image.map(image::name_of) {
            None if container.list == ContainerList::ImageVolumes => Problem::NoReference,
            None => Problem::NoImage,
            Some(Err(invalid)) => Problem::Unparsable(invalid),
            Some(Ok(name)) if self.allows(name) => return None,
            Some(Ok(name)) => Problem::Unprefixed(name.to_owned()),
        };
        Some(Violation {
            path: container.path().to_string(),
            container: container.name.to_owned(),
            image: container.image.unwrap_or_default().to_owned(),
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
}

/// The denial message users see in `kubectl`: one line, one clause per offending container.
impl fmt::Display for Denial<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.violations.as_slice() {
            [_] => write!(f, "Invalid image name: ")?,
            many => write!(f, "Invalid image name in {} containers: ", many.len())?,
        }
        for (i, violation) in self.violations.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            violation.describe(f, self.prefixes)?;
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
    pub image: String,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The image's name, which starts with no allowed prefix.
    Unprefixed(String),
    Unparsable(InvalidReference),
    NoImage,
    /// An image volume whose `image` source names no `reference`.
    NoReference,
}

impl Violation {
    fn describe(&self, f: &mut fmt::Formatter<'_>, prefixes: &[String]) -> fmt::Result {
        let Self {
            path, container, ..
        } = self;
        write!(f, "{path} {container:?}: {}", self.reason(prefixes))
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
        let Violation { image, problem, .. } = self.violation;
        match problem {
            Problem::NoImage => f.write_str("has no image"),
            Problem::NoReference => f.write_str("is an image volume without a reference"),
            Problem::Unparsable(why) => {
                write!(f, "image {image:?} is not a valid image reference ({why})")
            }
            Problem::Unprefixed(name) => {
                write!(
                    f,
                    "image {image:?} has name {:?}, which does not start with ",
                    name.as_str()
                )?;
                match self.prefixes {
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
