//! The image reference parser against the reference grammar of distribution/reference, which
//! container runtimes follow: references generated from the grammar parse, with the last path
//! component as their name; near misses made from them (one rule broken) are refused.
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain '/'] path-component ['/' path-component]*
//! domain           := host [':' port-number]
//! host             := domain-name | IPv4address | '[' IPv6address ']'
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! path-component   := alpha-numeric [separator alpha-numeric]*
//! alpha-numeric    := [a-z0-9]+
//! separator        := [_.] | '__' | [-]+
//! tag              := [\w][\w.-]{0,127}
//! digest           := algorithm ':' hex   (sha256: 64, sha512: 128 lower-case hex digits)
//! ```

use proptest::prelude::*;
use validator_webhook::policy::image::name_of;

fn alpha_numeric() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}"
}

fn separator() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("_".to_owned()),
        Just(".".to_owned()),
        Just("__".to_owned()),
        "-{1,3}"
    ]
}

fn path_component() -> impl Strategy<Value = String> {
    (
        alpha_numeric(),
        prop::collection::vec((separator(), alpha_numeric()), 0..3),
    )
        .prop_map(|(first, rest)| {
            rest.into_iter()
                .fold(first, |component, (sep, next)| component + &sep + &next)
        })
}

fn domain_component() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9]", "[a-zA-Z0-9][a-zA-Z0-9-]{0,6}[a-zA-Z0-9]"]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        // A domain name with a dot, so that it reads as a registry and not a path.
        (
            domain_component(),
            prop::collection::vec(domain_component(), 1..3)
        )
            .prop_map(|(first, rest)| format!("{first}.{}", rest.join("."))),
        Just("localhost".to_owned()),
        (0u8..=255, 0u8..=255, 0u8..=255, 0u8..=255)
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        prop_oneof![
            Just("[::1]"),
            Just("[fe80::1]"),
            Just("[2001:db8::ff00:42:8329]")
        ]
        .prop_map(str::to_owned),
    ]
}

fn domain() -> impl Strategy<Value = String> {
    (host(), prop::option::of(1u16..=65535)).prop_map(|(host, port)| match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

fn tag() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"
}

fn digest() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{64}".prop_map(|hex| format!("sha256:{hex}")),
        "[0-9a-f]{128}".prop_map(|hex| format!("sha512:{hex}"))
    ]
}

/// A reference the grammar accepts, and its name.
#[derive(Debug, Clone)]
struct Valid {
    domain: Option<String>,
    path: Vec<String>,
    tag: Option<String>,
    digest: Option<String>,
}

impl Valid {
    fn reference(&self) -> String {
        let mut reference = String::new();
        if let Some(domain) = &self.domain {
            reference.push_str(domain);
            reference.push('/');
        }
        reference.push_str(&self.path.join("/"));
        if let Some(tag) = &self.tag {
            reference.push(':');
            reference.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            reference.push('@');
            reference.push_str(digest);
        }
        reference
    }

    fn name(&self) -> &str {
        self.path.last().map(String::as_str).unwrap_or_default()
    }
}

fn valid() -> impl Strategy<Value = Valid> {
    (
        prop::option::of(domain()),
        prop::collection::vec(path_component(), 1..4),
        prop::option::of(tag()),
        prop::option::of(digest()),
    )
        .prop_map(|(domain, path, tag, digest)| Valid {
            domain,
            path,
            tag,
            digest,
        })
}

/// One rule of the grammar broken in an otherwise valid reference.
fn near_miss() -> impl Strategy<Value = (String, &'static str)> {
    (valid(), 0..9usize, any::<prop::sample::Index>()).prop_map(|(mut valid, rule, index)| {
        let last = valid.path.len() - 1;
        let broken = match rule {
            0 => {
                // Upper case in the name (in a first component it would read as a registry).
                let name = &mut valid.path[last];
                let at = index.index(name.len());
                name.insert(at, 'A');
                "upper case in the name"
            }
            1 => {
                valid
                    .path
                    .insert(index.index(valid.path.len() + 1), String::new());
                "an empty path component"
            }
            2 => {
                valid.path[last].insert(0, '_');
                "a name starting with a separator"
            }
            3 => {
                valid.path[last].push('-');
                "a name ending with a separator"
            }
            4 => {
                valid.path[last].push_str("___x");
                "three underscores"
            }
            5 => {
                valid.tag = Some(format!("-{}", valid.tag.take().unwrap_or_default()));
                "a tag starting with '-'"
            }
            6 => {
                valid.tag = Some("t".repeat(129));
                "a tag of 129 characters"
            }
            7 => {
                valid.digest = Some(format!("sha256:{}", "a".repeat(63)));
                "a sha256 digest of 63 digits"
            }
            _ => {
                valid.path[last].push(' ');
                "a space"
            }
        };
        (valid.reference(), broken)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn references_from_the_grammar_parse_to_their_last_path_component(valid in valid()) {
        let reference = valid.reference();
        prop_assert_eq!(name_of(&reference), Ok(valid.name()), "{}", reference);
    }

    #[test]
    fn near_misses_are_refused((reference, broken) in near_miss()) {
        prop_assert!(name_of(&reference).is_err(), "{} ({}) was accepted", reference, broken);
    }
}
