//! The access-token verifier (see `switchboard_fuzz_checks::token`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz_checks::token(data));
