//! Credentials: access tokens (JWT HS256, SPEC §1) and the signed `cc_param`.
//!
//! Both are HMAC-SHA256 constructions; the JWT is small enough to verify by hand,
//! which keeps the accepted algorithm pinned to HS256 (no `alg` confusion).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use switchboard_protocol::Sid;

type HmacSha256 = Hmac<Sha256>;

/// Seconds of clock skew tolerated on `exp` and `iat`.
pub const CLOCK_SKEW_SECS: u64 = 30;

/// Longest token or cc_param accepted, in bytes.
const MAX_CREDENTIAL_BYTES: usize = 4096;

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // new_from_slice accepts keys of any length for HMAC.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Whether `tag` is the HMAC-SHA256 of `data` under `key` (in constant time).
pub(crate) fn verify_mac(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.verify_slice(tag).is_ok()
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Claims of a Switchboard access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Service ID.
    pub sub: String,
    /// User ID.
    pub uid: String,
    /// The service's API key.
    pub iss: String,
    /// Issued at, epoch seconds.
    pub iat: u64,
    /// Expires at, epoch seconds.
    pub exp: u64,
    /// Not valid before, epoch seconds (optional, RFC 7519 §4.1.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

impl Claims {
    /// The claims of a token for `user_id` of a service, issued at `now` (epoch
    /// seconds) and valid for `ttl_secs`.
    pub fn new(service_id: &str, user_id: &str, api_key: &str, now: u64, ttl_secs: u64) -> Self {
        Claims {
            sub: service_id.to_string(),
            uid: user_id.to_string(),
            iss: api_key.to_string(),
            iat: now,
            exp: now.saturating_add(ttl_secs),
            nbf: None,
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, wrong algorithm, bad JSON or bad signature.
    #[error("invalid access token: {0}")]
    Invalid(&'static str),
    /// `exp` is in the past.
    #[error("access token expired")]
    Expired,
    /// The claims do not match what the client said, or the API key.
    #[error("access token does not match: {0}")]
    Mismatch(&'static str),
}

/// Whether two secrets (or MACs) are equal, in time that does not depend on where they
/// differ (only on their length).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Mints an HS256 access token.
pub fn mint_token(secret: &str, claims: &Claims) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(secret.as_bytes(), signing_input.as_bytes()));
    format!("{signing_input}.{sig}")
}

/// Reads the claims of a token without checking its signature, to find the service
/// whose secret checks it.
pub fn peek_claims(token: &str) -> Result<Claims, TokenError> {
    if token.len() > MAX_CREDENTIAL_BYTES {
        return Err(TokenError::Invalid("too long"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Invalid("not three dot-separated parts"));
    };
    #[derive(Deserialize)]
    struct Header {
        alg: String,
    }
    let header: Header = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice(&h).ok())
        .ok_or(TokenError::Invalid("bad header"))?;
    if header.alg != "HS256" {
        return Err(TokenError::Invalid("alg must be HS256"));
    }
    URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or(TokenError::Invalid("bad claims"))
}

/// Verifies a token's signature with `secret` and its times against `now` (epoch
/// seconds), and returns its claims.
pub fn verify_token(token: &str, secret: &str, api_key: &str, now: u64) -> Result<Claims, TokenError> {
    let claims = peek_claims(token)?;
    let (signing_input, sig) = token.rsplit_once('.').ok_or(TokenError::Invalid("no signature"))?;
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| TokenError::Invalid("bad signature encoding"))?;
    if !verify_mac(secret.as_bytes(), signing_input.as_bytes(), &sig) {
        return Err(TokenError::Invalid("bad signature"));
    }
    if claims.iss != api_key {
        return Err(TokenError::Mismatch("iss is not the service's API key"));
    }
    if claims.exp.saturating_add(CLOCK_SKEW_SECS) <= now {
        return Err(TokenError::Expired);
    }
    if claims.iat > now.saturating_add(CLOCK_SKEW_SECS) {
        return Err(TokenError::Invalid("issued in the future"));
    }
    if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(CLOCK_SKEW_SECS)) {
        return Err(TokenError::Invalid("not valid yet (nbf is in the future)"));
    }
    Ok(claims)
}

/// What a `cc_param` binds: one call, one callee, until a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcClaims {
    /// The call.
    pub sid: Sid,
    /// Callee's service.
    pub service_id: String,
    /// Callee.
    pub user_id: String,
    /// Useless after this (epoch seconds).
    pub exp: u64,
    /// Set only on the `resume_param` of the device that answered: the answering
    /// session, so that only this device can take the call back after a reconnect.
    pub device: Option<u64>,
}

const CC_VERSION: u8 = 1;

/// Signs and reads `cc_param`s with the server's own secret.
#[derive(Clone)]
pub struct CcKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for CcKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CcKey(..)")
    }
}

impl CcKey {
    /// A key from secret bytes (at least 32 recommended).
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self { key: key.into() }
    }

    /// Encodes claims as the opaque, signed, base64 `cc_param`.
    pub fn sign(&self, c: &CcClaims) -> String {
        let mut payload = format!("{}\n{}\n{}\n{}", c.sid, c.service_id, c.user_id, c.exp);
        if let Some(device) = c.device {
            payload.push_str(&format!("\n{device}"));
        }
        let mut bytes = Vec::with_capacity(1 + 32 + payload.len());
        bytes.push(CC_VERSION);
        bytes.extend_from_slice(&hmac_sha256(&self.key, payload.as_bytes()));
        bytes.extend_from_slice(payload.as_bytes());
        STANDARD.encode(bytes)
    }

    /// Decodes and authenticates a `cc_param`. Expiry is the caller's to judge
    /// (an expired one is `RELEASED_CALL`, not a forgery).
    pub fn open(&self, param: &str) -> Option<CcClaims> {
        if param.len() > MAX_CREDENTIAL_BYTES {
            return None;
        }
        let bytes = STANDARD.decode(param.trim()).ok()?;
        if bytes.len() < 34 || bytes[0] != CC_VERSION {
            return None;
        }
        let (tag, payload) = bytes[1..].split_at(32);
        if !verify_mac(&self.key, payload, tag) {
            return None;
        }
        let text = std::str::from_utf8(payload).ok()?;
        let mut it = text.split('\n');
        let c = CcClaims {
            sid: Sid::new(it.next()?),
            service_id: it.next()?.to_string(),
            user_id: it.next()?.to_string(),
            exp: it.next()?.parse().ok()?,
            device: match it.next() {
                None => None,
                Some(d) => Some(d.parse().ok()?),
            },
        };
        it.next().is_none().then_some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims { exp, ..Claims::new("svc", "alice", "key", 1000, 0) }
    }

    #[test]
    fn token_round_trip() {
        let t = mint_token("secret", &claims(2000));
        assert_eq!(verify_token(&t, "secret", "key", 1500).unwrap(), claims(2000));
    }

    #[test]
    fn forged_expired_and_mismatched_tokens_fail() {
        let t = mint_token("secret", &claims(2000));
        assert_eq!(verify_token(&t, "other", "key", 1500), Err(TokenError::Invalid("bad signature")));
        assert_eq!(verify_token(&t, "secret", "key", 2100), Err(TokenError::Expired));
        assert!(matches!(verify_token(&t, "secret", "nokey", 1500), Err(TokenError::Mismatch(_))));
        // Swap the payload for another user's, keep the signature.
        let other = mint_token("secret", &Claims { uid: "mallory".into(), ..claims(2000) });
        let parts: Vec<_> = t.split('.').collect();
        let oparts: Vec<_> = other.split('.').collect();
        let spliced = format!("{}.{}.{}", parts[0], oparts[1], parts[2]);
        assert!(verify_token(&spliced, "secret", "key", 1500).is_err());
        let none_alg = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#), parts[1]);
        assert!(verify_token(&none_alg, "secret", "key", 1500).is_err());
        assert!(verify_token("garbage", "secret", "key", 1500).is_err());
    }

    #[test]
    fn token_not_valid_before_nbf() {
        let early = mint_token("secret", &Claims { nbf: Some(1600), ..claims(2000) });
        assert_eq!(
            verify_token(&early, "secret", "key", 1500),
            Err(TokenError::Invalid("not valid yet (nbf is in the future)"))
        );
        assert!(verify_token(&early, "secret", "key", 1580).is_ok(), "within the clock skew");
        assert!(verify_token(&early, "secret", "key", 1700).is_ok());
    }

    #[test]
    fn cc_param_round_trip_and_forgery() {
        let k = CcKey::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let c = CcClaims {
            sid: "sid-1".into(),
            service_id: "svc".into(),
            user_id: "bob".into(),
            exp: 99,
            device: None,
        };
        let p = k.sign(&c);
        assert_eq!(k.open(&p), Some(c.clone()));
        let bound = CcClaims { device: Some(7), ..c.clone() };
        assert_eq!(k.open(&k.sign(&bound)), Some(bound));
        assert_eq!(CcKey::new(b"other".to_vec()).open(&p), None);
        let mut raw = STANDARD.decode(&p).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(k.open(&STANDARD.encode(raw)), None);
        assert_eq!(k.open("!!!"), None);
    }
}
