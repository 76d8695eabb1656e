//! The AdmissionReview bodies. `bench/payloads/` holds an allowed Pod and an allowed typical
//! Deployment; each denied twin has one image replaced by an unprefixed `nginx:1.25`, and the
//! ~1 MiB pair is grown from the Deployment. Bodies are sent compact, as the API server sends
//! them (the committed files are indented for people).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::plan::{PayloadKind, Verdict};

/// The large payload is at least this big, compact.
pub const LARGE_BYTES: usize = 1024 * 1024;

/// The image the denied twin of each committed review replaces with `nginx:1.25`.
const DENIED_SWAP: [(&str, &str); 2] = [
    ("pod", "registry.example.com/shop/msalinasc_web:2.4.1"),
    (
        "deployment",
        "registry.example.com/shop/msalinasc_nginx:1.25",
    ),
];

const LAST_APPLIED: &str =
    "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration";

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

/// Every payload and verdict, written compact into `out`.
pub fn prepare(committed: &Path, out: &Path) -> Result<Vec<Payload>> {
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut payloads = Vec::new();
    for kind in PayloadKind::ALL {
        for verdict in Verdict::ALL {
            let review = review(committed, kind, verdict)?;
            let file = out.join(format!("{}-{}.json", kind.label(), verdict.label()));
            let body = serde_json::to_vec(&review)?;
            fs::write(&file, &body).with_context(|| format!("cannot write {}", file.display()))?;
            payloads.push(Payload {
                kind,
                verdict,
                uid: review["request"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                file,
                bytes: body.len(),
            });
        }
    }
    Ok(payloads)
}

/// The review of `kind` with `verdict`.
pub fn review(committed: &Path, kind: PayloadKind, verdict: Verdict) -> Result<Value> {
    let base = match kind {
        PayloadKind::Pod => "pod",
        PayloadKind::Deployment | PayloadKind::Large => "deployment",
    };
    let path = committed.join(format!("{base}-allowed.json"));
    let mut text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut tag = String::new();
    if verdict == Verdict::Denied {
        let (_, image) = DENIED_SWAP
            .iter()
            .find(|(name, _)| *name == base)
            .context("no swap")?;
        ensure!(
            text.contains(image),
            "{} has no {image} to deny",
            path.display()
        );
        text = text.replace(image, "nginx:1.25");
        tag.push_str("denied-");
    }
    let mut review: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    if kind == PayloadKind::Large {
        enlarge(&mut review, LARGE_BYTES)
            .with_context(|| format!("{} cannot be grown", path.display()))?;
        tag.push_str("large-");
    }
    let uid = review
        .pointer_mut("/request/uid")
        .context("no request.uid")?;
    *uid = Value::String(format!("{tag}{}", uid.as_str().unwrap_or_default()));
    Ok(review)
}

/// Grows the Deployment review to at least `min_bytes` the way real Deployments get that big:
/// many settings as environment variables. Every setting adds the same number of bytes, so two
/// sizes tell how many reach `min_bytes`.
fn enlarge(review: &mut Value, min_bytes: usize) -> Option<()> {
    let size = |count| {
        Some(
            serde_json::to_vec(&with_settings(review, count)?)
                .ok()?
                .len(),
        )
    };
    let (base, sample) = (size(0)?, size(100)?);
    let per_setting = (sample.checked_sub(base)? as f64 / 100.0).max(1.0);
    let mut count = (min_bytes.saturating_sub(base) as f64 / per_setting) as usize;
    while size(count)? < min_bytes {
        count += 1;
    }
    *review = with_settings(review, count)?;
    Some(())
}

/// `review` with `count` more settings in each container, each where `kubectl apply` puts it:
/// the container, the last-applied annotation and `managedFields`. The images are unchanged.
fn with_settings(review: &Value, count: usize) -> Option<Value> {
    let mut review = review.clone();
    let object = review.pointer_mut("/request/object")?;
    let mut last_applied: Value =
        serde_json::from_str(object.pointer(LAST_APPLIED)?.as_str()?).ok()?;
    let containers = "/spec/template/spec/containers";
    let managed = "/metadata/managedFields/0/fieldsV1/f:spec/f:template/f:spec/f:containers";
    let names: Vec<String> = (object.pointer(containers)?.as_array()?.iter())
        .filter_map(|c| Some(c["name"].as_str()?.to_owned()))
        .collect();
    for (c, name) in names.iter().enumerate() {
        for i in 0..count {
            let var = format!("{}_SETTING_{i:04}", name.to_uppercase().replace('-', "_"));
            let value =
                format!("https://config.shop.svc.cluster.local/v1/{name}/settings/{i:04}?ttl=300s");
            for doc in [&mut *object, &mut last_applied] {
                let container = doc.pointer_mut(&format!("{containers}/{c}"))?;
                let env = container.as_object_mut()?.entry("env").or_insert(json!([]));
                env.as_array_mut()?
                    .push(json!({ "name": var, "value": value }));
            }
            (object.pointer_mut(managed)?.as_object_mut()?)
                .entry(format!("k:{}", json!({ "name": name })))
                .or_insert(json!({ ".": {} }))
                .as_object_mut()?
                .entry("f:env")
                .or_insert(json!({ ".": {} }))
                .as_object_mut()?
                .insert(
                    format!("k:{}", json!({ "name": var })),
                    json!({ ".": {}, "f:name": {}, "f:value": {} }),
                );
        }
    }
    *object.pointer_mut(LAST_APPLIED)? = Value::String(format!("{last_applied}\n"));
    Some(review)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("payloads")
    }

    fn images(review: &Value) -> Vec<String> {
        let object = &review["request"]["object"];
        let spec = object
            .pointer("/spec/template/spec")
            .unwrap_or(&object["spec"]);
        ["initContainers", "containers"]
            .iter()
            .filter_map(|list| spec[list].as_array())
            .flatten()
            .map(|c| c["image"].as_str().unwrap().to_owned())
            .collect()
    }

    fn unprefixed(review: &Value) -> usize {
        let name = |image: &str| image.rsplit('/').next().unwrap_or_default().to_owned();
        images(review)
            .iter()
            .filter(|i| !name(i).starts_with("msalinasc_"))
            .count()
    }

    #[test]
    fn each_denied_review_has_exactly_one_unprefixed_image() {
        for kind in PayloadKind::ALL {
            let allowed = review(&committed(), kind, Verdict::Allowed).unwrap();
            let denied = review(&committed(), kind, Verdict::Denied).unwrap();
            assert_eq!(
                (unprefixed(&allowed), unprefixed(&denied)),
                (0, 1),
                "{kind:?}"
            );
            assert_ne!(allowed["request"]["uid"], denied["request"]["uid"]);
        }
    }

    #[test]
    fn the_typical_deployment_is_what_the_benchmark_says_it_is() {
        let review = review(&committed(), PayloadKind::Deployment, Verdict::Allowed).unwrap();
        assert_eq!(
            images(&review).len(),
            4,
            "three containers and an init container"
        );
        let object = &review["request"]["object"];
        assert!(object.pointer(LAST_APPLIED).is_some_and(Value::is_string));
        assert!(object["metadata"]["managedFields"].is_array());
    }

    #[test]
    fn the_large_deployment_is_just_over_a_mebibyte_everywhere_kubectl_puts_a_setting() {
        let typical = review(&committed(), PayloadKind::Deployment, Verdict::Denied).unwrap();
        let large = review(&committed(), PayloadKind::Large, Verdict::Denied).unwrap();
        let size = serde_json::to_vec(&large).unwrap().len();
        assert!((LARGE_BYTES..LARGE_BYTES + 1024).contains(&size), "{size}");
        assert_eq!(images(&large), images(&typical));
        let object = &large["request"]["object"];
        let env = object
            .pointer("/spec/template/spec/containers/1/env")
            .unwrap();
        assert_eq!(env[0]["name"], "PROXY_SETTING_0000");
        let annotation = object.pointer(LAST_APPLIED).unwrap().as_str().unwrap();
        assert!(annotation.contains("PROXY_SETTING_0001") && annotation.ends_with('\n'));
        let managed = "/metadata/managedFields/0/fieldsV1/f:spec/f:template/f:spec/f:containers";
        let proxy = &object.pointer(managed).unwrap()[r#"k:{"name":"proxy"}"#];
        assert!(proxy["f:env"][r#"k:{"name":"PROXY_SETTING_0001"}"#].is_object());
    }

    #[test]
    fn writes_every_body_compact_with_its_uid() {
        let out = std::env::temp_dir().join(format!("bench-payloads-{}", std::process::id()));
        let payloads = prepare(&committed(), &out).unwrap();
        assert_eq!(payloads.len(), 6);
        let pod = &payloads[1];
        assert_eq!((pod.kind, pod.verdict), (PayloadKind::Pod, Verdict::Denied));
        let body = fs::read_to_string(&pod.file).unwrap();
        assert_eq!((body.contains('\n'), body.len()), (false, pod.bytes));
        assert_eq!(pod.uid, "denied-7b1e0c52-3f4a-4d6b-9e8f-0a1b2c3d4e01");
        fs::remove_dir_all(out).unwrap();
    }
}
