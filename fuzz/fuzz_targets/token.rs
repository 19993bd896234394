//! The access-token verifier: any string is refused with a reason or verifies; only
//! a token signed with the secret verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_server::auth::{mint_token, peek_claims, verify_token, Claims};

const SECRET: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = peek_claims(text);
    if let Ok(c) = verify_token(text, SECRET, "key", 1_800_000_000) {
        // Only what was signed with SECRET verifies: minting the same claims gives a
        // token that verifies too.
        assert!(verify_token(&mint_token(SECRET, &c), SECRET, "key", 1_800_000_000).is_ok());
    }
    // A token minted with fuzzed claims (a user ID as long as IDs get, so the token
    // stays under the 4,096-byte limit) verifies with its secret, never with another.
    let uid: String = text.chars().take(64).collect();
    let claims = Claims { iat: 1_799_999_000, exp: 1_800_000_100, ..Claims::new("svc", &uid, "key", 0, 0) };
    let token = mint_token(SECRET, &claims);
    assert_eq!(verify_token(&token, SECRET, "key", 1_800_000_000).ok(), Some(claims));
    assert!(verify_token(&token, "other", "key", 1_800_000_000).is_err());
});
