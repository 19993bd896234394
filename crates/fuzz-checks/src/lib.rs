//! What each fuzz target checks, one function per target, each taking the raw input.
//! `fuzz/fuzz_targets/*.rs` hand libFuzzer's inputs to these (nightly, AddressSanitizer:
//! `bash scripts/fuzz.sh`); `tests/corpus.rs` replays the committed corpus and seeds
//! (`fuzz/corpus/<target>/`, `fuzz/seeds/<target>/`) through them as ordinary tests on
//! stable, so every input that once mattered is checked by every test run.

use std::time::{Duration, Instant};

use switchboard_protocol::record::encode_query;
use switchboard_protocol::ClientMessage;
use switchboard_server::auth::{mint_token, peek_claims, verify_token, CcClaims, CcKey, Claims};
use switchboard_server::ids::Sid;
use switchboard_server::media::{PartyKey, Relay};

/// What a target checks of one input (it panics when the check fails).
pub type Check = fn(&[u8]);

/// The fuzz targets, by name: the directories of their corpus and seeds.
pub const TARGETS: [(&str, Check); 5] = [
    ("signal_message", signal_message),
    ("cc_param", cc_param),
    ("token", token),
    ("relay_sdp", relay_sdp),
    ("callback_query", callback_query),
];

/// The signaling message parser: any text a client sends is answered with a message or
/// an error in our words, never a panic.
pub fn signal_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = ClientMessage::parse(text) {
        // Errors are ours: no parser debug output, no addresses.
        assert!(!e.message.contains("0x"), "{}", e.message);
        assert!(e.message.len() < 1024, "error message of {} bytes", e.message.len());
    }
}

/// The cc_param decoder: any string is refused or opens to the claims that were signed;
/// what is signed always opens to itself.
pub fn cc_param(data: &[u8]) {
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
        sid: field(parts.next()).into(),
        service_id: field(parts.next()),
        user_id: field(parts.next()),
        exp: data.len() as u64 * 7919,
        device: (data.len() % 2 == 1).then_some(data.len() as u64),
    };
    assert_eq!(key.open(&key.sign(&claims)), Some(claims.clone()));
    assert_eq!(CcKey::new(b"another-key".to_vec()).open(&key.sign(&claims)), None);
}

const SECRET: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

/// The access-token verifier: any string is refused with a reason or verifies; only a
/// token signed with the secret verifies.
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = peek_claims(text);
    if let Ok(c) = verify_token(text, SECRET, "key", 1_800_000_000) {
        // Only what was signed with SECRET verifies: minting the same claims gives a
        // token that verifies too.
        assert!(verify_token(&mint_token(SECRET, &c), SECRET, "key", 1_800_000_000).is_ok());
    }
    // A token minted with fuzzed claims (a user ID as long as IDs get, so the token stays
    // under the 4,096-byte limit) verifies with its secret, never with another.
    let uid: String = text.chars().take(64).collect();
    let claims = Claims { iat: 1_799_999_000, exp: 1_800_000_100, ..Claims::new("svc", &uid, "key", 0, 0) };
    let token = mint_token(SECRET, &claims);
    assert_eq!(verify_token(&token, SECRET, "key", 1_800_000_000).ok(), Some(claims));
    assert!(verify_token(&token, "other", "key", 1_800_000_000).is_err());
}

/// The relay's SDP path: any offer is answered with SDP or refused in our words, never a
/// panic, and the relay stays usable.
pub fn relay_sdp(data: &[u8]) {
    switchboard_server::media::init_crypto();
    let Ok(sdp) = std::str::from_utf8(data) else { return };
    // One DTLS certificate for every relay, as the server has (one per process): making
    // one per input spent the time in key generation.
    let cert = switchboard_dtls::certificate();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 3478));
    let mut relay = Relay::new(addr, cert, Duration::from_secs(10));
    let now = Instant::now();
    let (sid, party) = (Sid::new("sid"), PartyKey::Caller);
    match relay.offer(now, &sid, &party, sdp) {
        Ok(answer) => assert!(answer.starts_with("v=0"), "{answer}"),
        Err(why) => assert!(why.starts_with("the "), "not our words: {why}"),
    }
    // The same party offering again (a renegotiation or a reconnect) is handled too.
    let _ = relay.offer(now, &sid, &party, sdp);
    relay.handle_timeout(now + Duration::from_secs(1));
    while relay.poll_transmit().is_some() {}
    while relay.poll_event().is_some() {}
}

/// The callback query encoder: whatever the field values, an app server decoding the
/// query (as any form decoder does) gets exactly the names and values back, in order.
pub fn callback_query(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(String, String)> = text
        .split('\u{1}')
        .map(|p| match p.split_once('\u{2}') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => ("f".to_string(), p.to_string()),
        })
        .collect();
    let refs: Vec<(&str, String)> = pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let query = encode_query(&refs);
    // Only unreserved characters, '%' escapes and the separators.
    assert!(query.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%=&".contains(&b)), "{query}");
    let back: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    assert_eq!(back, pairs);
}
