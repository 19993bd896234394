//! The signaling message parser (see `switchboard_fuzz_checks::signal_message`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_fuzz_checks::signal_message(data));
