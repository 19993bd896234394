//! The relay's SDP path (see `switchboard_fuzz_checks::relay_sdp`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The relay catches panics of the WebRTC stack on hostile SDP (and refuses the
    // offer); libFuzzer's hook would abort on those too. With the default hook back, a
    // panic that escapes the relay still aborts the run (libfuzzer-sys catches it).
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| drop(std::panic::take_hook()));
    switchboard_fuzz_checks::relay_sdp(data)
});
