//! Image references, read the way container runtimes read them.
//!
//! The policy cares about one thing in a reference: its *name*, the last path component of the
//! repository once the registry host, tag and digest are gone. Parsing is left to
//! `container_image_dist_ref`, an implementation of the distribution/reference grammar that is
//! tested against it (registry ports, IPv6 hosts, tag and digest together), so `localhost:5000/app`
//! and `app:5000` are never confused. It allocates nothing and uses no regex: a review's images
//! are read in well under a microsecond each.

use container_image_dist_ref::{ImgRef, digest::Digest, err::Kind};

/// `tag := [\w][\w.-]{0,127}` in the reference grammar.
const MAX_TAG_LEN: usize = 128;

/// The name of the image `reference` points at: the last component of its repository path.
pub fn name_of(reference: &str) -> Result<&str, InvalidReference> {
    let parsed =
        ImgRef::new(reference).map_err(|error| InvalidReference::new(reference, error.kind()))?;
    // The parser lets a tag one character over the grammar's limit through.
    if parsed.tag().is_some_and(|tag| tag.len() > MAX_TAG_LEN) {
        return Err(InvalidReference::new(reference, Kind::TagTooLong));
    }
    if let Some(digest) = parsed.digest() {
        distribution_digest(&digest).map_err(|kind| InvalidReference::new(reference, kind))?;
    }
    let path = parsed.path().to_str();
    let name_length = path.rsplit('/').next().unwrap_or(path).len();
    // The same bytes, borrowed from `reference` rather than from the parser.
    let end = path_end(reference, &parsed);
    Ok(&reference[end - name_length..end])
}

/// A digest algorithm with upper case is distribution's form alone, which wants every component
/// to start with a letter and at least 32 hex digits after it: `mA5:` and 31 digits is no digest
/// in either grammar. The parser lets such a digest through when the upper case is not the
/// algorithm's first character, as if it were OCI's form (lower case only).
fn distribution_digest(digest: &Digest<'_>) -> Result<(), Kind> {
    let algorithm = digest.algorithm();
    if !algorithm.to_str().bytes().any(|b| b.is_ascii_uppercase()) {
        return Ok(());
    }
    if algorithm
        .parts()
        .any(|component| !component.starts_with(|c: char| c.is_ascii_alphabetic()))
    {
        return Err(Kind::AlgorithmInvalidNumericPrefix);
    }
    let encoded = digest.encoded().to_str();
    if encoded.len() < 32 {
        return Err(Kind::EncodingTooShort);
    }
    if !encoded.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Kind::EncodedInvalidChar);
    }
    Ok(())
}

/// Where the repository path ends in `reference`: before any tag or digest.
fn path_end(reference: &str, parsed: &ImgRef<'_>) -> usize {
    let suffix = parsed.tag().map_or(0, |tag| tag.len() + 1)
        + parsed
            .digest()
            .map_or(0, |digest| digest.to_str().len() + 1);
    reference.len() - suffix
}

/// Why a string is not an image reference, in the words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidReference(String);

impl InvalidReference {
    fn new(reference: &str, kind: Kind) -> Self {
        let explanation = match kind {
            _ if reference.is_empty() => "the reference is empty".to_owned(),
            _ if repository_is_upper_case(reference) => {
                "repository names must be lower case".to_owned()
            }
            Kind::PortOrTagMissing | Kind::TagMissing => "the tag is empty".to_owned(),
            Kind::TagTooLong => "the tag is longer than 128 characters".to_owned(),
            Kind::NameTooLong | Kind::HostOrPathTooLong | Kind::PathTooLong => {
                "the name is longer than 255 characters".to_owned()
            }
            Kind::PathMissing => "a path component is empty".to_owned(),
            Kind::OciRegisteredAlgorithmWrongDigestLength => {
                "the digest has the wrong length for its algorithm".to_owned()
            }
            Kind::EncodingTooShort => "the digest is shorter than 32 hex digits".to_owned(),
            Kind::EncodedMissing
            | Kind::EncodedInvalidChar
            | Kind::EncodedNonLowerHex
            | Kind::OciRegisteredDigestInvalidChar
            | Kind::EncodingTooLong => "the digest is not lower-case hex".to_owned(),
            Kind::AlgorithmMissing
            | Kind::InvalidOciAlgorithm
            | Kind::AlgorithmInvalidNumericPrefix
            | Kind::AlgorithmInvalidChar
            | Kind::AlgorithmTooLong => "the digest algorithm is not valid".to_owned(),
            // Docker's own words for everything else.
            _ => "invalid reference format".to_owned(),
        };
        Self(explanation)
    }
}

/// Whether `reference` would parse with its repository (not its digest) in lower case.
fn repository_is_upper_case(reference: &str) -> bool {
    let (repository, digest) = match reference.split_once('@') {
        Some((repository, digest)) => (repository, Some(digest)),
        None => (reference, None),
    };
    if !repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return false;
    }
    let mut lowered = repository.to_ascii_lowercase();
    if let Some(digest) = digest {
        lowered.push('@');
        lowered.push_str(digest);
    }
    ImgRef::new(&lowered).is_ok()
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
    #[case::ipv6_registry("[::1]:5000/msalinasc_app:1", "msalinasc_app")]
    #[case::separators("registry.example.com/a__b/msalinasc_c---d:tag", "msalinasc_c---d")]
    #[case::tag_of_128_characters(&format!("a/app:{}", "t".repeat(128)), "app")]
    #[case::distribution_digest_algorithm(
        "msalinasc_app@mA5:0123456789ABCDEF0123456789abcdef",
        "msalinasc_app"
    )]
    fn takes_the_last_repository_component(#[case] reference: &str, #[case] name: &str) {
        assert_eq!(name_of(reference).unwrap(), name);
    }

    #[rstest]
    #[case::empty("", "the reference is empty")]
    #[case::upper_case("Nginx", "repository names must be lower case")]
    #[case::upper_case_after_a_registry(
        "example.com/Team/app",
        "repository names must be lower case"
    )]
    #[case::short_digest(
        "nginx@sha256:abc",
        "the digest has the wrong length for its algorithm"
    )]
    #[case::upper_case_digest(
        "nginx@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
        "the digest is not lower-case hex"
    )]
    // Found by the parity suite: the parser took it as OCI's form, which has no upper case.
    #[case::upper_case_algorithm_with_31_digits(
        "msalinasc_app@mA5:25695ff086a00ab62e52ea97954640e",
        "the digest is shorter than 32 hex digits"
    )]
    #[case::upper_case_algorithm_with_a_digit_component(
        "msalinasc_app@mA5+1x:0123456789abcdef0123456789abcdef",
        "the digest algorithm is not valid"
    )]
    #[case::upper_case_algorithm_with_base64(
        "msalinasc_app@mA5:0123456789abcdef0123456789abcdef-_=",
        "the digest is not lower-case hex"
    )]
    #[case::empty_tag("nginx:", "the tag is empty")]
    #[case::leading_space(" nginx", "invalid reference format")]
    #[case::empty_path_component("foo//bar", "a path component is empty")]
    #[case::long_name(&"a".repeat(300), "the name is longer than 255 characters")]
    #[case::long_tag(&format!("app:{}", "t".repeat(129)), "the tag is longer than 128 characters")]
    #[case::long_tag_with_a_dash(
        &format!("a/app:{}-{}", "t".repeat(123), "t".repeat(5)),
        "the tag is longer than 128 characters"
    )]
    // Found by the grammar's property test: the parser took 129 characters.
    #[case::tag_of_129_characters(
        &format!("a/a:{}", "t".repeat(129)),
        "the tag is longer than 128 characters"
    )]
    #[case::tag_of_130_characters(
        &format!("a:{}", "t".repeat(130)),
        "the tag is longer than 128 characters"
    )]
    fn rejects_what_does_not_parse(#[case] reference: &str, #[case] why: &str) {
        assert_eq!(name_of(reference).unwrap_err().to_string(), why);
    }
}
