//! Any body the API server (or anyone reaching the port) may send to the review decoder: the
//! answer is a review serialised as JSON or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use validator_webhook::{policy::config::PolicyConfig, webhook::review};

fuzz_target!(|body: &[u8]| {
    let config = PolicyConfig::default();
    if let Ok(reviewed) = review::review(&config, body) {
        let answer: serde_json::Value =
            serde_json::from_slice(&reviewed.body).expect("the answer is JSON");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert!(answer["response"]["allowed"].is_boolean());
    }
});
