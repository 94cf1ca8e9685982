//! The path classifier (spec §1) against its independent model: a path the filter leaves alone
//! ("not DCR") must not be readable as the registration path by any upstream in the model, and
//! what it serves literally is literal (`dcr_guard_core::path::model::check` asserts both).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    for base in ["/register", "/open-banking/v3.3/register"] {
        dcr_guard_core::path::model::check(base, path);
    }
    // Deterministic.
    assert_eq!(
        dcr_guard_core::path::classify("/register", path),
        dcr_guard_core::path::classify("/register", path)
    );
});
