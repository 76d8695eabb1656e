//! Any string as an image reference: a name, borrowed from the reference, that is one non-empty
//! path component; or a reason in words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use validator_webhook::policy::image::name_of;

fuzz_target!(|data: &[u8]| {
    let Ok(reference) = std::str::from_utf8(data) else {
        return;
    };
    match name_of(reference) {
        Ok(name) => {
            assert!(
                !name.is_empty() && !name.contains(['/', ':', '@']),
                "{name:?}"
            );
            assert!(reference.contains(name));
        }
        Err(why) => assert!(!why.to_string().is_empty()),
    }
});
