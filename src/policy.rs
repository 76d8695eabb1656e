//! The image policy: a pure function from an admission request and its configuration to the
//! response the API server gets. No I/O happens here, so every verdict can be pinned by a
//! snapshot without a socket.

use std::fmt;

use kube::core::{
    Status,
    admission::{AdmissionRequest, AdmissionResponse, Operation},
};

use crate::{
    image::{self, InvalidReference},
    workload::{Container, PodSpecAt, ShapeError, Workload},
};

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
    pub fn evaluate(&self, request: &AdmissionRequest<Workload>) -> Verdict<'_> {
        if matches!(request.operation, Operation::Delete | Operation::Connect) {
            return Verdict::Allowed;
        }
        let Some(at) = PodSpecAt::of(&request.kind) else {
            return Verdict::NotInspected(Skipped::Kind);
        };
        match request.sub_resource.as_deref() {
            None | Some("") => {}
            Some("ephemeralcontainers") if at == PodSpecAt::Spec => {}
            Some(_) => return Verdict::NotInspected(Skipped::Subresource),
        }
        let Some(object) = &request.object else {
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

    /// Decides on a request and answers it: the response echoes the request's uid and version.
    pub fn review(&self, request: &AdmissionRequest<Workload>) -> AdmissionResponse {
        self.evaluate(request).respond(request)
    }

    /// Whether an image name starts with one of the allowed prefixes.
    pub fn allows(&self, name: &str) -> bool {
        self.prefixes
            .iter()
            .any(|prefix| name.starts_with(prefix.as_str()))
    }

    fn violation(&self, container: &Container<'_>) -> Option<Violation> {
        let problem = match container.image.map(image::name_of) {
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
    /// Denied with 403 Forbidden: some container's image is not allowed.
    Denied(Denial<'p>),
    /// Denied with 400 Bad Request: the object cannot be read as its kind.
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

    pub fn respond<K: kube::core::Resource>(
        &self,
        request: &AdmissionRequest<K>,
    ) -> AdmissionResponse {
        let mut response = AdmissionResponse::from(request);
        match self {
            Self::Allowed => response,
            Self::NotInspected(skipped) => {
                response.warnings = Some(vec![skipped.warning(request)]);
                response
            }
            Self::Denied(denial) => deny(response, denial.to_string(), 403, "Forbidden"),
            Self::Invalid(invalid) => {
                let kind = &request.kind.kind;
                deny(
                    response,
                    format!("Cannot inspect this {kind}: {invalid}"),
                    400,
                    "BadRequest",
                )
            }
        }
    }
}

fn deny(
    response: AdmissionResponse,
    message: String,
    code: u16,
    reason: &str,
) -> AdmissionResponse {
    let mut response = response.deny(&message);
    response.result = Status::failure(&message, reason).with_code(code);
    response
}

/// Why a request was let through without inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    Kind,
    Subresource,
}

impl Skipped {
    fn warning<K: kube::core::Resource>(self, request: &AdmissionRequest<K>) -> String {
        let gvk = &request.kind;
        let group_version = match gvk.group.as_str() {
            "" => gvk.version.clone(),
            group => format!("{group}/{}", gvk.version),
        };
        match self {
            Self::Kind => format!(
                "validator-webhook: {group_version} {} is not a kind the image policy inspects",
                gvk.kind
            ),
            Self::Subresource => format!(
                "validator-webhook: subresource {}/{} is not inspected by the image policy",
                request.resource.resource,
                request.sub_resource.as_deref().unwrap_or_default()
            ),
        }
    }
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
}

impl Violation {
    fn describe(&self, f: &mut fmt::Formatter<'_>, prefixes: &[String]) -> fmt::Result {
        let Self {
            path,
            container,
            image,
            problem,
        } = self;
        write!(f, "{path} {container:?}: ")?;
        match problem {
            Problem::NoImage => f.write_str("has no image"),
            Problem::Unparsable(why) => {
                write!(f, "image {image:?} is not a valid image reference ({why})")
            }
            Problem::Unprefixed(name) => {
                write!(
                    f,
                    "image {image:?} has name {:?}, which does not start with ",
                    name.as_str()
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
        let verdict = policy.evaluate(&pod(&["msalinasc_app:1.0", "localhost:5000/msalinasc_db"]));
        assert_eq!(verdict.label(), "allowed");
    }

    #[test]
    fn names_the_container_the_image_and_the_prefix() {
        let request = pod(&["msalinasc_app", "nginx:1.25"]);
        let policy = Policy::default();
        let Verdict::Denied(denial) = policy.evaluate(&request) else {
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
        let Verdict::Denied(denial) = policy.evaluate(&request) else {
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
        let Verdict::Denied(denial) = policy.evaluate(&pod(&["nginx"])) else {
            panic!("not denied")
        };
        assert!(
            denial
                .to_string()
                .ends_with(r#"which does not start with any of "msalinasc_", "team_""#)
        );
        assert_eq!(policy.evaluate(&pod(&["team_api"])).label(), "allowed");
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

    #[test]
    fn denial_carries_forbidden_and_the_request_uid() {
        let request = pod(&["nginx"]);
        let response = Policy::default().review(&request);
        assert!(!response.allowed);
        assert_eq!(response.uid, "u");
        assert_eq!(
            (response.result.code, response.result.reason.as_str()),
            (403, "Forbidden")
        );
    }

    #[test]
    fn leaves_unknown_kinds_alone_with_a_warning() {
        let response = Policy::default().review(&request("ConfigMap", r#"{"data":{}}"#));
        assert!(response.allowed);
        assert_eq!(
            response.warnings.unwrap(),
            ["validator-webhook: v1 ConfigMap is not a kind the image policy inspects"]
        );
    }
}
