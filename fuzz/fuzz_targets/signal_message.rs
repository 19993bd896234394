//! The signaling message parser: any text a client sends is answered with a message or
//! an error in our words, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_protocol::ClientMessage;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match ClientMessage::parse(text) {
        Ok(_) => {}
        Err(e) => {
            // Errors are ours: no parser debug output, no addresses.
            assert!(!e.message.contains("0x"), "{}", e.message);
            assert!(e.message.len() < 1024, "error message of {} bytes", e.message.len());
        }
    }
});
