//! Image references, read the way container runtimes read them.
//!
//! The policy cares about one thing in a reference: its *name*, the last path component of the
//! repository once the registry host, tag and digest are gone. Parsing is left to `oci-spec`,
//! which follows the distribution grammar (implicit `docker.io/library/`, registry ports, tag
//! and digest together), so `localhost:5000/app` and `app:5000` are never confused.

use std::{cell::RefCell, collections::HashMap, fmt};

use oci_spec::distribution::Reference;

/// How many references each thread remembers. The same images recur in every Deployment,
/// ReplicaSet and Pod of a workload, and parsing one costs microseconds (a regex search).
const REMEMBERED: usize = 1024;

thread_local! {
    static PARSED: RefCell<HashMap<Box<str>, Result<ImageName, InvalidReference>>> =
        RefCell::new(HashMap::new());
}

/// The name of an image: the last component of its repository path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName(String);

impl ImageName {
    /// Parses `reference` and returns its name.
    pub fn of(reference: &str) -> Result<Self, InvalidReference> {
        PARSED.with_borrow_mut(|parsed| {
            if let Some(known) = parsed.get(reference) {
                return known.clone();
            }
            if parsed.len() >= REMEMBERED {
                parsed.clear();
            }
            let name = Self::parse(reference);
            parsed.insert(reference.into(), name.clone());
            name
        })
    }

    fn parse(reference: &str) -> Result<Self, InvalidReference> {
        let parsed: Reference = reference
            .parse()
            .map_err(|error| InvalidReference::new(reference, error))?;
        let repository = parsed.repository();
        let name = repository.rsplit('/').next().unwrap_or(repository);
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn starts_with_any<S: AsRef<str>>(&self, prefixes: &[S]) -> bool {
        prefixes
            .iter()
            .any(|prefix| self.0.starts_with(prefix.as_ref()))
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a string is not an image reference, in the words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidReference(String);

impl InvalidReference {
    fn new(reference: &str, error: oci_spec::distribution::ParseError) -> Self {
        // The grammar reports upper case as a bare format error; say what is actually wrong.
        let explanation = if reference.is_empty() {
            "the reference is empty".to_owned()
        } else if reference.bytes().any(|b| b.is_ascii_uppercase())
            && reference.to_ascii_lowercase().parse::<Reference>().is_ok()
        {
            "repository names must be lower case".to_owned()
        } else {
            error.to_string()
        };
        Self(explanation)
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[rstest]
    #[case::bare_name("nginx", "nginx")]
    #[case::tag("msalinasc_app:1.0", "msalinasc_app")]
    #[case::registry_with_port("localhost:5000/msalinasc_app", "msalinasc_app")]
    #[case::registry_port_path_digest(
        &format!("registry.example.com:5000/team/msalinasc_api@{DIGEST}"),
        "msalinasc_api"
    )]
    #[case::tag_and_digest(&format!("msalinasc_app:1.0@{DIGEST}"), "msalinasc_app")]
    #[case::explicit_library("docker.io/library/msalinasc_app", "msalinasc_app")]
    #[case::prefix_only_in_namespace("msalinasc/app", "app")]
    #[case::prefix_only_in_path("example.com/msalinasc_team/app", "app")]
    #[case::prefix_only_in_tag("app:msalinasc_x", "app")]
    #[case::port_is_not_a_tag("localhost:5000/app:5000", "app")]
    fn takes_the_last_repository_component(#[case] reference: &str, #[case] name: &str) {
        assert_eq!(ImageName::of(reference).unwrap().as_str(), name);
    }

    #[rstest]
    #[case::empty("", "the reference is empty")]
    #[case::upper_case("Nginx", "repository names must be lower case")]
    #[case::short_digest("nginx@sha256:abc", "invalid reference format")]
    #[case::empty_tag("nginx:", "invalid reference format")]
    #[case::leading_space(" nginx", "invalid reference format")]
    #[case::empty_path_component("foo//bar", "invalid reference format")]
    fn rejects_what_does_not_parse(#[case] reference: &str, #[case] why: &str) {
        assert_eq!(ImageName::of(reference).unwrap_err().to_string(), why);
    }

    #[test]
    fn a_remembered_reference_gives_the_same_answer() {
        for reference in ["localhost:5000/msalinasc_app", "Nginx", "a:1", "a:1"] {
            assert_eq!(ImageName::of(reference), ImageName::parse(reference));
            assert_eq!(ImageName::of(reference), ImageName::parse(reference));
        }
    }

    #[test]
    fn matches_any_of_several_prefixes() {
        let name = ImageName::of("team_api:2").unwrap();
        assert!(name.starts_with_any(&["msalinasc_", "team_"]));
        assert!(!name.starts_with_any(&["msalinasc_"]));
    }
}
