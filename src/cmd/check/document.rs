//! One document's text to its findings. The format is found by parsing, not by the first
//! character: text that reads as JSON values (one, or several concatenated as `kubectl` accepts
//! them) is JSON, anything else is YAML, flow or block. The items of a `List` are evaluated as
//! the parser reaches them, so a 30,000-Pod `kubectl get -o yaml` never exists as one tree.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor, value::MapAccessDeserializer,
};
use serde_json::{Map, Value, value::RawValue};
use serde_saphyr::{MessageFormatter, UserMessageFormatter};

use super::{
    evaluate::{Context, Evaluator, TEMPLATE},
    input::{Chunk, MAX_DOCUMENT_BYTES},
    report::{Finding, Outcome},
};

/// The findings of one document and the line it starts on.
#[derive(Debug)]
pub struct Parsed {
    pub line: usize,
    pub findings: Vec<Finding>,
}

/// Parses a chunk of input into its documents (a chunk holds several when it is a JSON stream)
/// and evaluates each, handing them to `emit` in order.
pub fn parse(
    chunk: &Chunk,
    evaluator: &Evaluator<'_>,
    context: Context<'_>,
    emit: &mut dyn FnMut(Parsed),
) {
    let line = chunk.content_line();
    if chunk.oversized {
        let why = format!(
            "the document is larger than {} MiB, the limit for one document",
            MAX_DOCUMENT_BYTES / (1024 * 1024)
        );
        return emit(invalid(line, why));
    }
    if let Some(at) = chunk.not_utf8 {
        return emit(invalid(
            at,
            "the text is not UTF-8 (nor UTF-16 with a byte order mark)",
        ));
    }
    if chunk.is_blank() {
        return;
    }
    let text = chunk.text.as_str();
    let seed = || DocumentSeed { evaluator, context };
    let json_error = if text.trim_start().starts_with(['{', '[']) {
        match json_values(text) {
            Ok(values) => {
                for raw in values {
                    let offset = raw.get().as_ptr() as usize - text.as_ptr() as usize;
                    let line = chunk.line + text[..offset].matches('\n').count();
                    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
                    let findings = seed()
                        .deserialize(&mut deserializer)
                        .unwrap_or_else(|e| vec![Finding::new(Outcome::Invalid, json_message(&e))]);
                    emit(Parsed { line, findings });
                }
                return;
            }
            Err(error) => Some(error),
        }
    } else {
        None
    };
    let options = yaml_options();
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        seed().deserialize(de)
    });
    match parsed {
        Ok(findings) => emit(Parsed { line, findings }),
        Err(_) if context.template => emit(Parsed {
            line,
            findings: vec![Finding::new(Outcome::Skipped, TEMPLATE)],
        }),
        Err(yaml) => match json_error {
            // It looked like JSON, and is not YAML either: say what JSON says.
            Some(json)
                if text.trim_start()[1..]
                    .trim_start()
                    .starts_with(['"', '{', '[', '}']) =>
            {
                emit(invalid(
                    chunk.line + json.line().saturating_sub(1),
                    format!("not valid JSON: {}", json_message(&json)),
                ))
            }
            _ => {
                let at = yaml
                    .location()
                    .map_or(line, |l| chunk.line + (l.line() as usize).saturating_sub(1));
                emit(invalid(
                    at,
                    format!("not valid YAML: {}", yaml_message(&yaml)),
                ))
            }
        },
    }
}

fn invalid(line: usize, why: impl Into<String>) -> Parsed {
    Parsed {
        line,
        findings: vec![Finding::new(Outcome::Invalid, why)],
    }
}

/// Every JSON value in `text`, or the first error.
fn json_values(text: &str) -> Result<Vec<&RawValue>, serde_json::Error> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<&RawValue>()
        .collect()
}

/// The budget is the per-document size guard, not a count of nodes: a `List` of 30,000 Pods
/// has millions. Aliases stay limited, which is what stops a "billion laughs".
fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = Some(MAX_DOCUMENT_BYTES);
    budget.max_events = usize::MAX;
    budget.max_nodes = usize::MAX;
    budget.max_documents = usize::MAX;
    budget.max_total_scalar_bytes = MAX_DOCUMENT_BYTES;
    budget.max_total_comment_bytes = MAX_DOCUMENT_BYTES;
    options.budget = Some(budget);
    options.with_snippet = false;
    options
}

/// A YAML error in words a user can act on, without its location (the caller gives the line
/// in the user's file) or the parser's internals.
fn yaml_message(error: &serde_saphyr::Error) -> String {
    if let serde_saphyr::Error::Budget { .. } = error {
        return "the document is too large or too deeply nested to read".to_owned();
    }
    UserMessageFormatter
        .format_message(error.without_snippet())
        .into_owned()
}

/// A JSON error without the position serde_json appends (the caller gives the line).
fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}

/// Reads one document, evaluating a `List`'s items one at a time as they are parsed.
#[derive(Clone, Copy)]
struct DocumentSeed<'a> {
    evaluator: &'a Evaluator<'a>,
    context: Context<'a>,
}

impl DocumentSeed<'_> {
    fn evaluate(self, document: Value) -> Vec<Finding> {
        let mut findings = Vec::new();
        self.evaluator
            .evaluate(document, self.context, &mut findings);
        findings
    }
}

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_> {
    type Value = Vec<Finding>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DocumentSeed<'_> {
    type Value = Vec<Finding>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        let mut items = None;
        while let Some(key) = access.next_key::<String>()? {
            if key == "items" {
                items = Some(access.next_value_seed(ItemsSeed(self))?);
            } else {
                let value: Value = access.next_value()?;
                map.insert(key, value);
            }
        }
        let is_list = map
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|kind| kind.ends_with("List"));
        match items {
            Some(Items::Evaluated(findings)) if is_list => Ok(findings),
            Some(Items::Other(value)) => {
                map.insert("items".to_owned(), value);
                Ok(self.evaluate(Value::Object(map)))
            }
            _ => Ok(self.evaluate(Value::Object(map))),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        while access.next_element::<IgnoredAny>()?.is_some() {}
        Ok(self.evaluate(Value::Array(Vec::new())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(self.evaluate(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(self.evaluate(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(self.evaluate(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(self.evaluate(Value::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.evaluate(Value::from(v)))
    }
}

/// A document's `items`: evaluated one by one when they are a sequence, kept otherwise.
enum Items {
    Evaluated(Vec<Finding>),
    Other(Value),
}

struct ItemsSeed<'a>(DocumentSeed<'a>);

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_> {
    type Value = Items;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemsSeed<'_> {
    type Value = Items;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the items of a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut findings = Vec::new();
        while let Some(item) = access.next_element::<Value>()? {
            self.0
                .evaluator
                .evaluate(item, self.0.context, &mut findings);
        }
        Ok(Items::Evaluated(findings))
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Self::Value, A::Error> {
        de::Deserialize::deserialize(MapAccessDeserializer::new(access)).map(Items::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Items::Other(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Items::Other(Value::Null))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Items::Other(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Items::Other(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Items::Other(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Items::Other(Value::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Items::Other(Value::from(v)))
    }
}
