//! What an API server checks before it believes a webhook's reply, and what makes a reply the
//! policy's denial.

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// The start of every message the policy denies with.
pub const DENIAL_PREFIX: &str = "Invalid image name";

/// The `response` of `body`, if `body` is an admission.k8s.io/v1 AdmissionReview.
pub fn response(body: &[u8]) -> Result<Value> {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let mut review: Value = serde_json::from_slice(body).context("the body is not JSON")?;
    ensure!(
        review["apiVersion"] == "admission.k8s.io/v1" && review["kind"] == "AdmissionReview",
        "not an admission.k8s.io/v1 AdmissionReview: {text}"
    );
    Ok(review["response"].take())
}

/// Checks an answer: 200, an admission.k8s.io/v1 AdmissionReview whose response echoes `uid`
/// with the expected verdict, and a denial that says why. A fast wrong answer measures nothing.
pub fn check_answer(uid: &str, allowed: bool, status: u16, body: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    ensure!(status == 200, "HTTP {status}: {text}");
    let response = response(body)?;
    ensure!(
        response["uid"] == uid,
        "uid {} instead of {uid:?}",
        response["uid"]
    );
    let message = response["status"]["message"].as_str().unwrap_or_default();
    if response["allowed"] != allowed {
        bail!(
            "allowed is {} instead of {allowed} ({message})",
            response["allowed"]
        );
    }
    ensure!(
        allowed || !message.is_empty(),
        "a denial without status.message"
    );
    Ok(())
}

/// Checks that `response` is the policy's denial: not allowed, 403 Forbidden, and a message
/// naming an invalid image.
pub fn ensure_policy_denial(response: &Value) -> Result<()> {
    ensure!(response["allowed"] == false, "allowed: {response}");
    ensure!(
        response["status"]["code"] == 403 && response["status"]["reason"] == "Forbidden",
        "not 403 Forbidden: {response}"
    );
    let message = response["status"]["message"].as_str().unwrap_or_default();
    ensure!(
        message.starts_with(DENIAL_PREFIX),
        "not the policy's denial: {response}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DENIAL: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",
        "response":{"uid":"u-1","allowed":false,
        "status":{"code":403,"reason":"Forbidden","message":"Invalid image name: spec.containers[0].image"}}}"#;

    #[test]
    fn accepts_the_expected_verdict_with_the_uid() {
        assert!(check_answer("u-1", false, 200, DENIAL.as_bytes()).is_ok());
        let allowed = DENIAL.replace("false", "true");
        assert!(check_answer("u-1", true, 200, allowed.as_bytes()).is_ok());
    }

    #[test]
    fn refuses_the_other_verdict_and_says_why_it_was_given() {
        let error = check_answer("u-1", true, 200, DENIAL.as_bytes()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "allowed is false instead of true (Invalid image name: spec.containers[0].image)"
        );
    }

    #[test]
    fn refuses_another_uid_version_or_status_and_a_bare_denial() {
        let wrong = |body: &str| check_answer("u-1", false, 200, body.as_bytes()).is_err();
        assert!(wrong(&DENIAL.replace("u-1", "u-2")));
        assert!(wrong(&DENIAL.replace("k8s.io/v1", "k8s.io/v1beta1")));
        assert!(wrong(
            &DENIAL.replace("Invalid image name: spec.containers[0].image", "")
        ));
        let error = check_answer("u-1", false, 415, b"unsupported").unwrap_err();
        assert_eq!(error.to_string(), "HTTP 415: unsupported");
    }

    #[test]
    fn a_policy_denial_is_403_forbidden_naming_an_invalid_image() {
        let denial = response(DENIAL.as_bytes()).unwrap();
        assert!(ensure_policy_denial(&denial).is_ok());
        for (from, to) in [
            ("false", "true"),
            ("403", "400"),
            ("Forbidden", "BadRequest"),
            ("Invalid image name", "Cannot inspect this"),
        ] {
            let other = response(DENIAL.replace(from, to).as_bytes()).unwrap();
            assert!(ensure_policy_denial(&other).is_err(), "{other}");
        }
    }
}
