//! The callback query encoder (see `switchboard_fuzz_checks::callback_query`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz_checks::callback_query(data));
