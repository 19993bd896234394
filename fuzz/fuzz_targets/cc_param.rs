//! The cc_param decoder (see `switchboard_fuzz_checks::cc_param`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz_checks::cc_param(data));
