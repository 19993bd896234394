//! The relay's SDP path: any offer is answered with SDP or refused in our words,
//! never a panic, and the relay stays usable.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use switchboard_server::media::Relay;

fuzz_target!(|data: &[u8]| {
    switchboard_server::media::init_crypto();
    // The relay catches panics of the WebRTC stack on hostile SDP (and refuses the
    // offer); libFuzzer's hook would abort on those too. With the default hook back, a
    // panic that escapes the relay still aborts the run (libfuzzer-sys catches it).
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| drop(std::panic::take_hook()));
    let Ok(sdp) = std::str::from_utf8(data) else { return };
    // One DTLS certificate for every relay, as the server has (one per process):
    // making one per input spent the time in key generation.
    let cert = switchboard_dtls::certificate();
    let mut relay = Relay::new("127.0.0.1:3478".parse().unwrap(), cert, Duration::from_secs(10));
    let now = Instant::now();
    match relay.offer(now, "sid", "caller", sdp) {
        Ok(answer) => assert!(answer.starts_with("v=0"), "{answer}"),
        Err(why) => assert!(why.starts_with("the "), "not our words: {why}"),
    }
    // The same party offering again (a renegotiation or a reconnect) is handled too.
    let _ = relay.offer(now, "sid", "caller", sdp);
    relay.handle_timeout(now + Duration::from_secs(1));
    while relay.poll_transmit().is_some() {}
    while relay.poll_event().is_some() {}
});
