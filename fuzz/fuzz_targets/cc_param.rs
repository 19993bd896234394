//! The cc_param decoder: any string is refused or opens to the claims that were
//! signed; what is signed always opens to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_server::auth::{CcClaims, CcKey};

fuzz_target!(|data: &[u8]| {
    let key = CcKey::new(b"fuzz-key-fuzz-key-fuzz-key-01234".to_vec());
    if let Ok(text) = std::str::from_utf8(data) {
        // Without the key nothing forged opens.
        if let Some(c) = key.open(text) {
            assert_eq!(key.open(&key.sign(&c)), Some(c));
        }
    }
    // Round trip of fuzzed claims: fields never hold the separator, and are as long as
    // IDs get (64 bytes; a sid is 36), so the param stays under the 4,096-byte limit.
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('|');
    let field = |p: Option<&str>| p.unwrap_or("").replace('\n', "").chars().take(64).collect::<String>();
    let claims = CcClaims {
        sid: field(parts.next()),
        service_id: field(parts.next()),
        user_id: field(parts.next()),
        exp: data.len() as u64 * 7919,
        device: (data.len() % 2 == 1).then_some(data.len() as u64),
    };
    assert_eq!(key.open(&key.sign(&claims)), Some(claims.clone()));
    assert_eq!(CcKey::new(b"another-key".to_vec()).open(&key.sign(&claims)), None);
});
