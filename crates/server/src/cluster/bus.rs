//! What nodes say to each other, and how a node knows it came from a node of its
//! deployment: every message is signed with a key derived from the deployment's
//! `cluster_secret` (HMAC-SHA256 over the whole message, the sender, the addressee and
//! the time included), so a client that can reach Redis cannot inject signaling, and a
//! message is taken only by the node it names and only for a minute.

use serde::{Deserialize, Serialize};

use crate::core::{ClientInfo, SessionAuth};
use crate::ids::Party;

/// The Redis channel a node listens on.
pub(crate) fn channel(node: &str) -> String {
    format!("sb:bus:{node}")
}

/// How old a message may be when it arrives (the nodes' clocks must agree to this).
const MAX_AGE_MS: u64 = 60_000;

/// A client session on its node (its edge): the node's process (`boot`, drawn at
/// start, so that a restarted node's new sessions are never taken for its old ones) and
/// the session's number there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct ClientId {
    pub boot: u64,
    pub session: u64,
}

/// One message between nodes, each about one client session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum BusMsg {
    /// Edge → owner: open a proxy of this client's session (before its first message).
    Open { client: ClientId, party: Party, auth: SessionAuth, ip: String, info: ClientInfo },
    /// Edge → owner: a message of the client, as it sent it (checked by the edge).
    Msg { client: ClientId, text: String },
    /// Edge → owner: the client's session ended.
    Closed { client: ClientId },
    /// Owner → edge: a frame for the client, already on the owner's disk.
    Frame { client: ClientId, text: String, overtakes: bool },
    /// Edge → owner: no such session here (any more): drop its proxy.
    Gone { client: ClientId },
}

#[derive(Serialize, Deserialize)]
struct Envelope<S, M> {
    from: S,
    to: S,
    ts: u64,
    m: M,
}

/// The bus's signing key, derived from the deployment's secret.
#[derive(Clone)]
pub(crate) struct BusKey(Vec<u8>);

impl std::fmt::Debug for BusKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusKey(..)")
    }
}

/// Why a message off the bus was not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    #[error("not signed by a node of this deployment")]
    Signature,
    #[error("not a bus message")]
    Malformed,
    #[error("addressed to node {0:?}")]
    Elsewhere(String),
    #[error("{0} ms old")]
    Stale(u64),
}

impl BusKey {
    /// The key for the deployment's `secret`.
    pub fn new(secret: &[u8]) -> Self {
        BusKey(crate::auth::hmac_sha256(secret, b"switchboard cluster bus v1").to_vec())
    }

    /// `msg` from `from` to `to`, signed: 64 hex digits of the tag, then the JSON.
    pub fn seal(&self, from: &str, to: &str, now_ms: u64, msg: &BusMsg) -> String {
        let env = Envelope { from, to, ts: now_ms, m: msg };
        let json = serde_json::to_string(&env).unwrap_or_default();
        let mut out = crate::auth::to_hex(&crate::auth::hmac_sha256(&self.0, json.as_bytes()));
        out.push_str(&json);
        out
    }

    /// The sender and the message, if `text` is signed with this key, addressed to
    /// `me` and fresh.
    pub fn open(&self, me: &str, now_ms: u64, text: &[u8]) -> Result<(String, BusMsg), Refused> {
        if text.len() < 64 {
            return Err(Refused::Malformed);
        }
        let (tag, json) = text.split_at(64);
        let tag = from_hex(tag).ok_or(Refused::Malformed)?;
        if !crate::auth::verify_mac(&self.0, json, &tag) {
            return Err(Refused::Signature);
        }
        let env: Envelope<String, BusMsg> = serde_json::from_slice(json).map_err(|_| Refused::Malformed)?;
        if env.to != me {
            return Err(Refused::Elsewhere(env.to));
        }
        let age = now_ms.saturating_sub(env.ts);
        if age > MAX_AGE_MS {
            return Err(Refused::Stale(age));
        }
        Ok((env.from, env.m))
    }
}

fn from_hex(hex: &[u8]) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    hex.chunks(2).map(|p| Some(digit(p[0])? << 4 | digit(*p.get(1)?)?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_msg() -> BusMsg {
        BusMsg::Open {
            client: ClientId { boot: 9, session: 7 },
            party: Party::new("acme", "bob"),
            auth: SessionAuth::Token,
            ip: "127.0.0.1".into(),
            info: ClientInfo::default(),
        }
    }

    #[test]
    fn a_sealed_message_opens_only_for_its_node_with_the_key_while_fresh() {
        let key = BusKey::new(b"0123456789abcdef0123456789abcdef");
        let sealed = key.seal("n1", "n2", 1_000_000, &open_msg());
        assert_eq!(key.open("n2", 1_000_500, sealed.as_bytes()), Ok(("n1".into(), open_msg())));
        assert_eq!(key.open("n3", 1_000_500, sealed.as_bytes()), Err(Refused::Elsewhere("n2".into())));
        assert_eq!(key.open("n2", 1_061_000, sealed.as_bytes()), Err(Refused::Stale(61_000)));
        let other = BusKey::new(b"another secret, another deployment");
        assert_eq!(other.open("n2", 1_000_500, sealed.as_bytes()), Err(Refused::Signature));
    }

    #[test]
    fn a_changed_byte_or_junk_is_refused() {
        let key = BusKey::new(b"0123456789abcdef0123456789abcdef");
        let client = ClientId { boot: 3, session: 1 };
        let sealed = key.seal("n1", "n2", 5, &BusMsg::Msg { client, text: "{}".into() });
        // Another sender, addressee or session under the same tag.
        let forged = sealed.replace("\"session\":1", "\"session\":2");
        assert_eq!(key.open("n2", 5, forged.as_bytes()), Err(Refused::Signature));
        assert_eq!(key.open("n2", 5, b"short"), Err(Refused::Malformed));
        assert_eq!(key.open("n2", 5, &[0xff; 80]), Err(Refused::Malformed));
    }
}
