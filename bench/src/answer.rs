//! What a correct answer to a benchmark review is. Every server is checked on every review it
//! will be measured with before any load is sent: a fast wrong answer measures nothing.

use serde_json::Value;

/// The answer a server must give to one review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub uid: String,
    pub allowed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WrongAnswer(String);

/// Checks an HTTP answer against `expected`: 200, an admission.k8s.io/v1 AdmissionReview whose
/// response echoes the uid and has the expected verdict, and a denial that says why.
pub fn check(expected: &Expected, status: u16, body: &[u8]) -> Result<(), WrongAnswer> {
    let wrong = |what: String| Err(WrongAnswer(what));
    if status != 200 {
        return wrong(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    let Ok(review) = serde_json::from_slice::<Value>(body) else {
        return wrong("the body is not JSON".to_owned());
    };
    if review["apiVersion"] != "admission.k8s.io/v1" || review["kind"] != "AdmissionReview" {
        return wrong(format!(
            "not an admission.k8s.io/v1 AdmissionReview: apiVersion {}, kind {}",
            review["apiVersion"], review["kind"]
        ));
    }
    let response = &review["response"];
    if response["uid"] != expected.uid.as_str() {
        return wrong(format!(
            "uid {} instead of {:?}",
            response["uid"], expected.uid
        ));
    }
    if response["allowed"] != expected.allowed {
        return wrong(format!(
            "allowed is {} instead of {}{}",
            response["allowed"],
            expected.allowed,
            match response["status"]["message"].as_str() {
                Some(message) => format!(" ({message})"),
                None => String::new(),
            }
        ));
    }
    if !expected.allowed
        && response["status"]["message"]
            .as_str()
            .is_none_or(str::is_empty)
    {
        return wrong("a denial without status.message".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(allowed: bool) -> Expected {
        Expected {
            uid: "u-1".to_owned(),
            allowed,
        }
    }

    const DENIAL: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",
        "response":{"uid":"u-1","allowed":false,
        "status":{"code":403,"reason":"Forbidden","message":"Invalid image name: spec.template.spec.containers[1].image"}}}"#;

    #[test]
    fn accepts_the_expected_verdict_with_the_uid() {
        assert_eq!(check(&expected(false), 200, DENIAL.as_bytes()), Ok(()));
        let allowed = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u-1","allowed":true}}"#;
        assert_eq!(check(&expected(true), 200, allowed.as_bytes()), Ok(()));
    }

    #[test]
    fn refuses_the_other_verdict_and_says_why_it_was_given() {
        let error = check(&expected(true), 200, DENIAL.as_bytes()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "allowed is false instead of true (Invalid image name: spec.template.spec.containers[1].image)"
        );
    }

    #[test]
    fn refuses_another_uid_a_bare_denial_and_an_error_status() {
        let other_uid = DENIAL.replace("u-1", "u-2");
        assert!(check(&expected(false), 200, other_uid.as_bytes()).is_err());
        let bare = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u-1","allowed":false}}"#;
        assert!(check(&expected(false), 200, bare.as_bytes()).is_err());
        let error = check(&expected(false), 415, b"unsupported").unwrap_err();
        assert_eq!(error.to_string(), "HTTP 415: unsupported");
    }

    #[test]
    fn refuses_a_review_of_another_version() {
        let v1beta1 = DENIAL.replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1");
        assert!(check(&expected(false), 200, v1beta1.as_bytes()).is_err());
    }
}
