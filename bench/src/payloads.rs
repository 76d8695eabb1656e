//! The AdmissionReview bodies: four committed under `bench/payloads/` (a Pod and a typical
//! Deployment, each allowed and denied), and a ~1 MiB Deployment pair grown from the typical one.
//!
//! Every body is re-serialised compact before it is sent, as the API server sends reviews; the
//! committed files are indented for people. (Object keys come out sorted, which no server
//! depends on.)

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde_json::{Map, Value, json};

use crate::plan::{PayloadKind, Verdict};

/// The large payload is at least this big, compact.
pub const LARGE_BYTES: usize = 1024 * 1024;

/// Settings (environment variables) per container in the sample that sizes the growth.
const SAMPLE: usize = 100;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not JSON: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} is not a review of the expected shape: {what}")]
    Shape { path: PathBuf, what: &'static str },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// A body ready to send.
#[derive(Debug, Clone)]
pub struct Payload {
    pub kind: PayloadKind,
    pub verdict: Verdict,
    /// `request.uid`, which a correct answer echoes.
    pub uid: String,
    /// The compact body, as sent.
    pub file: PathBuf,
    pub bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Payloads(Vec<Payload>);

impl Payloads {
    pub fn get(&self, kind: PayloadKind, verdict: Verdict) -> &Payload {
        self.0
            .iter()
            .find(|p| p.kind == kind && p.verdict == verdict)
            .expect("prepare makes every payload")
    }

    pub fn iter(&self) -> impl Iterator<Item = &Payload> {
        self.0.iter()
    }
}

/// Reads the committed reviews from `committed`, grows the large ones, and writes every body
/// compact into `out`.
pub fn prepare(committed: &Path, out: &Path) -> Result<Payloads, PayloadError> {
    fs::create_dir_all(out).map_err(|source| PayloadError::Write {
        path: out.to_owned(),
        source,
    })?;
    let mut payloads = Vec::new();
    for verdict in Verdict::ALL {
        for kind in PayloadKind::ALL {
            let name = format!("{}-{}.json", kind.label(), verdict.label());
            let review = match kind {
                PayloadKind::Pod | PayloadKind::Deployment => read(&committed.join(&name))?,
                PayloadKind::Large => {
                    let source = committed.join(format!("deployment-{}.json", verdict.label()));
                    enlarge(&read(&source)?, LARGE_BYTES).ok_or(PayloadError::Shape {
                        path: source,
                        what: "a Deployment with containers, managedFields and a last-applied annotation",
                    })?
                }
            };
            let file = out.join(&name);
            let uid = review
                .pointer("/request/uid")
                .and_then(Value::as_str)
                .ok_or_else(|| PayloadError::Shape {
                    path: file.clone(),
                    what: "request.uid",
                })?
                .to_owned();
            let body = serde_json::to_vec(&review).expect("a Value always serialises");
            fs::write(&file, &body).map_err(|source| PayloadError::Write {
                path: file.clone(),
                source,
            })?;
            payloads.push(Payload {
                kind,
                verdict,
                uid,
                file,
                bytes: body.len(),
            });
        }
    }
    Ok(Payloads(payloads))
}

fn read(path: &Path) -> Result<Value, PayloadError> {
    let text = fs::read(path).map_err(|source| PayloadError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| PayloadError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// The Deployment review grown to at least `min_bytes` the way real Deployments get that big:
/// many settings passed as environment variables. Each one lands three times, as it would from
/// `kubectl apply`: in the container, in the last-applied annotation, and in `managedFields`.
/// The images, and so the verdict, are unchanged. `None` if the review lacks those parts.
pub fn enlarge(review: &Value, min_bytes: usize) -> Option<Value> {
    let grown = |count| {
        let review = with_settings(review, count)?;
        let size = serde_json::to_vec(&review).ok()?.len();
        Some((review, size))
    };
    // Every setting adds the same number of bytes (names and values have fixed widths), so two
    // sizes tell how many settings reach `min_bytes`.
    let (_, base) = grown(0)?;
    let (_, sampled) = grown(SAMPLE)?;
    if sampled <= base {
        return None; // no containers to grow
    }
    let per_setting = (sampled - base) as f64 / SAMPLE as f64;
    let mut count = (min_bytes.saturating_sub(base) as f64 / per_setting).ceil() as usize;
    loop {
        let (review, size) = grown(count)?;
        if size >= min_bytes {
            return Some(review);
        }
        count += 1;
    }
}

/// `review` with `count` more environment variables in each container.
fn with_settings(review: &Value, count: usize) -> Option<Value> {
    let mut review = review.clone();
    let uid = review.pointer("/request/uid")?.as_str()?.to_owned();
    review["request"]["uid"] = Value::String(format!("large-{uid}"));
    let object = review.pointer_mut("/request/object")?;

    let annotation = format!("/metadata/annotations/{}", LAST_APPLIED.replace('/', "~1"));
    let mut last_applied: Value =
        serde_json::from_str(object.pointer(&annotation)?.as_str()?).ok()?;
    add_env(
        last_applied.pointer_mut("/spec/template/spec/containers")?,
        count,
    )?;
    *object.pointer_mut(&annotation)? = Value::String(format!("{last_applied}\n"));

    let names = add_env(object.pointer_mut("/spec/template/spec/containers")?, count)?;
    let managed = object
        .pointer_mut("/metadata/managedFields/0/fieldsV1/f:spec/f:template/f:spec/f:containers")?
        .as_object_mut()?;
    for (container, vars) in names {
        let key = format!("k:{}", json!({ "name": container }));
        let fields = managed.entry(key).or_insert_with(|| json!({ ".": {} }));
        let env = fields
            .as_object_mut()?
            .entry("f:env")
            .or_insert_with(|| json!({ ".": {} }))
            .as_object_mut()?;
        for var in vars {
            env.insert(
                format!("k:{}", json!({ "name": var })),
                json!({ ".": {}, "f:name": {}, "f:value": {} }),
            );
        }
    }
    Some(review)
}

/// Appends `count` settings to the `env` of each container; returns the names added, by
/// container.
fn add_env(containers: &mut Value, count: usize) -> Option<Vec<(String, Vec<String>)>> {
    let mut added = Vec::new();
    for container in containers.as_array_mut()? {
        let container = container.as_object_mut()?;
        let name = container.get("name")?.as_str()?.to_owned();
        let prefix = name.to_uppercase().replace('-', "_");
        let env = container
            .entry("env")
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()?;
        let mut names = Vec::with_capacity(count);
        for i in 0..count {
            let var = format!("{prefix}_SETTING_{i:04}");
            let value =
                format!("https://config.shop.svc.cluster.local/v1/{name}/settings/{i:04}?ttl=300s");
            env.push(Value::Object(Map::from_iter([
                ("name".to_owned(), Value::String(var.clone())),
                ("value".to_owned(), Value::String(value)),
            ])));
            names.push(var);
        }
        added.push((name, names));
    }
    Some(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(name: &str) -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("payloads")
            .join(name);
        read(&path).unwrap()
    }

    fn images(review: &Value) -> Vec<String> {
        let spec = review
            .pointer("/request/object/spec/template/spec")
            .unwrap();
        ["initContainers", "containers"]
            .iter()
            .flat_map(|list| spec[list].as_array().unwrap())
            .map(|c| c["image"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn the_typical_deployment_is_what_the_benchmark_says_it_is() {
        for verdict in ["allowed", "denied"] {
            let review = committed(&format!("deployment-{verdict}.json"));
            let spec = review
                .pointer("/request/object/spec/template/spec")
                .unwrap();
            assert_eq!(spec["containers"].as_array().unwrap().len(), 3);
            assert_eq!(spec["initContainers"].as_array().unwrap().len(), 1);
            let metadata = review.pointer("/request/object/metadata").unwrap();
            assert!(metadata["annotations"][LAST_APPLIED].is_string());
            assert!(metadata["managedFields"].is_array());
            let unprefixed = images(&review)
                .iter()
                .filter(|image| !image.rsplit('/').next().unwrap().starts_with("msalinasc_"))
                .count();
            assert_eq!(unprefixed, usize::from(verdict == "denied"), "{verdict}");
        }
    }

    #[test]
    fn the_large_deployment_is_just_over_a_mebibyte_and_keeps_the_images() {
        let typical = committed("deployment-denied.json");
        let large = enlarge(&typical, LARGE_BYTES).unwrap();
        let size = serde_json::to_vec(&large).unwrap().len();
        assert!((LARGE_BYTES..LARGE_BYTES + 1024).contains(&size), "{size}");
        assert_eq!(images(&large), images(&typical));
        assert_eq!(
            large.pointer("/request/uid").unwrap(),
            "large-7b1e0c52-3f4a-4d6b-9e8f-0a1b2c3d4e04"
        );
    }

    #[test]
    fn every_added_setting_is_in_the_container_the_annotation_and_managed_fields() {
        let grown = with_settings(&committed("deployment-allowed.json"), 2).unwrap();
        let object = grown.pointer("/request/object").unwrap();
        let env = object
            .pointer("/spec/template/spec/containers/1/env")
            .unwrap();
        assert_eq!(env[0]["name"], "PROXY_SETTING_0000");
        assert_eq!(env[1]["name"], "PROXY_SETTING_0001");
        let annotation = object["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .unwrap();
        assert!(annotation.ends_with('\n'));
        let last_applied: Value = serde_json::from_str(annotation).unwrap();
        assert_eq!(
            last_applied
                .pointer("/spec/template/spec/containers/1/env/1/name")
                .unwrap(),
            "PROXY_SETTING_0001"
        );
        let managed = object
            .pointer("/metadata/managedFields/0/fieldsV1/f:spec/f:template/f:spec/f:containers")
            .unwrap();
        assert!(
            managed[r#"k:{"name":"proxy"}"#]["f:env"][r#"k:{"name":"PROXY_SETTING_0001"}"#]
                .is_object()
        );
    }

    #[test]
    fn a_review_without_a_last_applied_annotation_cannot_grow() {
        let mut review = committed("deployment-allowed.json");
        review
            .pointer_mut("/request/object/metadata/annotations")
            .unwrap()
            .as_object_mut()
            .unwrap()
            .clear();
        assert!(enlarge(&review, LARGE_BYTES).is_none());
    }

    #[test]
    fn writes_every_body_compact_with_its_uid() {
        let out = std::env::temp_dir().join(format!("bench-payloads-{}", std::process::id()));
        let payloads = prepare(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("payloads"),
            &out,
        )
        .unwrap();
        let pod = payloads.get(PayloadKind::Pod, Verdict::Denied);
        let body = fs::read_to_string(&pod.file).unwrap();
        assert!(!body.contains('\n'), "compact");
        assert_eq!(body.len(), pod.bytes);
        assert_eq!(pod.uid, "7b1e0c52-3f4a-4d6b-9e8f-0a1b2c3d4e02");
        assert_eq!(payloads.iter().count(), 6);
        fs::remove_dir_all(out).unwrap();
    }
}
