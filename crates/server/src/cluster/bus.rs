//! What nodes say to each other, and how a node knows it came from a node of its
//! deployment: every message is sealed (AES-256-GCM) with a key derived from the
//! deployment's `cluster_secret`, so one who can read or write Redis can neither read it
//! (frames carry `cc_param`s) nor forge one; it names its sender and addressee, is taken
//! only by the node it names, only for a minute, and only once.

use std::collections::{HashSet, VecDeque};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use serde::{Deserialize, Serialize};

use crate::core::{ClientInfo, SessionAuth};
use crate::ids::Party;
use crate::records::{LiveCall, LiveRoom};

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

/// A client session on another node, as a proxy here needs it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Remote {
    pub party: Party,
    pub auth: SessionAuth,
    pub ip: String,
    pub client: ClientInfo,
}

/// One message between nodes: about one client session, or calls changing nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum BusMsg {
    /// Edge → owner: a message of the client, as it sent it (checked by the edge), with
    /// who the client is: the owner opens a proxy of it if it has none.
    Msg { client: ClientId, remote: Remote, text: String },
    /// Edge → owner: the client's session ended.
    Closed { client: ClientId },
    /// Owner → edge: a frame for the client, already on the owner's disk.
    Frame { client: ClientId, text: String, overtakes: bool },
    /// Owner → edge: the owner opened a proxy of the client (to ring it): tell it when
    /// the client's session ends.
    Adopted { client: ClientId },
    /// Owner → edge: the owner let go of the client's proxy (it did not read its
    /// frames): the client must come back (reconnect and resume).
    Dropped { client: ClientId },
    /// Edge → owner: no such session here (any more): drop its proxy.
    Gone { client: ClientId },
    /// A draining node → another: take over those of these calls and rooms whose live
    /// rows the sender still holds; say `TookOver` with the same `id`.
    Handover { id: u64, calls: Vec<LiveCall>, rooms: Vec<LiveRoom> },
    /// The answer to `Handover`: these run here now.
    TookOver { id: u64, sids: Vec<String> },
    /// Owner → edge: the calls and rooms `sids` the client is in live on node `to` now
    /// (this node handed them over): the edge resumes them there for the client.
    Moved { client: ClientId, to: String, sids: Vec<String> },
}

#[derive(Serialize, Deserialize)]
struct Envelope<S, M> {
    from: S,
    to: S,
    ts: u64,
    m: M,
}

/// The bus's keys, derived from the deployment's secret: one seals messages, one signs
/// what the nodes keep in Redis.
pub(crate) struct BusKey {
    aead: LessSafeKey,
    mac: [u8; 32],
}

impl std::fmt::Debug for BusKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusKey(..)")
    }
}

/// Why a message off the bus was not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    #[error("not sealed by a node of this deployment")]
    Seal,
    #[error("not a bus message")]
    Malformed,
    #[error("addressed to node {0:?}")]
    Elsewhere(String),
    #[error("{0} ms old")]
    Stale(u64),
    #[error("taken before (a replay)")]
    Replayed,
}

impl BusKey {
    /// The key for the deployment's `secret`.
    pub fn new(secret: &[u8]) -> Self {
        let bytes = crate::auth::hmac_sha256(secret, b"switchboard cluster bus v2");
        // A 32-byte key always makes an AES-256 key.
        let key = UnboundKey::new(&AES_256_GCM, &bytes).expect("a 32-byte AES-256 key");
        let mac = crate::auth::hmac_sha256(secret, b"switchboard cluster values v1");
        BusKey { aead: LessSafeKey::new(key), mac }
    }

    /// `msg` from `from` to `to`, sealed: a random nonce, then the ciphertext and tag.
    pub fn seal(&self, from: &str, to: &str, now_ms: u64, msg: &BusMsg) -> Vec<u8> {
        let env = Envelope { from, to, ts: now_ms, m: msg };
        let mut body = serde_json::to_vec(&env).unwrap_or_default();
        let nonce: [u8; NONCE_LEN] = rand::random();
        if self
            .aead
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body)
            .is_err()
        {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(NONCE_LEN + body.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out
    }

    /// The sender and the message, if `bytes` were sealed with this key, for `me`, and
    /// are fresh. (Replays are [`Replays`]' to catch.)
    pub fn open(&self, me: &str, now_ms: u64, bytes: &[u8]) -> Result<(String, BusMsg), Refused> {
        if bytes.len() <= NONCE_LEN {
            return Err(Refused::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Refused::Malformed)?;
        let mut body = sealed.to_vec();
        let json = self.aead.open_in_place(nonce, Aad::empty(), &mut body).map_err(|_| Refused::Seal)?;
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

    /// Signs a value this node keeps in Redis (a user's presence): 64 hex digits first.
    pub fn sign(&self, secret_use: &str, value: &str) -> String {
        let mut out = crate::auth::to_hex(&self.mac(secret_use, value));
        out.push_str(value);
        out
    }

    /// The value of a signed one, if its signature holds.
    pub fn verify<'a>(&self, secret_use: &str, signed: &'a str) -> Option<&'a str> {
        let (tag, value) = (signed.get(..64)?, signed.get(64..)?);
        let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        let tag: Option<Vec<u8>> =
            tag.as_bytes().chunks(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect();
        let key = crate::auth::hmac_sha256(&self.mac, secret_use.as_bytes());
        crate::auth::verify_mac(&key, value.as_bytes(), &tag?).then_some(value)
    }

    fn mac(&self, secret_use: &str, value: &str) -> [u8; 32] {
        let key = crate::auth::hmac_sha256(&self.mac, secret_use.as_bytes());
        crate::auth::hmac_sha256(&key, value.as_bytes())
    }
}

/// The nonces of the messages taken in the last minute (older ones are stale anyway):
/// a message replayed from Redis is refused.
#[derive(Debug, Default)]
pub(crate) struct Replays {
    seen: HashSet<[u8; NONCE_LEN]>,
    order: VecDeque<(u64, [u8; NONCE_LEN])>,
}

impl Replays {
    /// Whether `bytes` (a sealed message) arrive for the first time at `now_ms`.
    pub fn first(&mut self, now_ms: u64, bytes: &[u8]) -> bool {
        while self.order.front().is_some_and(|(at, _)| now_ms.saturating_sub(*at) > 2 * MAX_AGE_MS) {
            if let Some((_, n)) = self.order.pop_front() {
                self.seen.remove(&n);
            }
        }
        let Some(nonce) = bytes.get(..NONCE_LEN).and_then(|n| <[u8; NONCE_LEN]>::try_from(n).ok()) else {
            return false;
        };
        if !self.seen.insert(nonce) {
            return false;
        }
        self.order.push_back((now_ms, nonce));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> BusMsg {
        let remote = Remote {
            party: Party::new("acme", "bob"),
            auth: SessionAuth::Token,
            ip: "127.0.0.1".into(),
            client: ClientInfo::default(),
        };
        BusMsg::Msg { client: ClientId { boot: 9, session: 7 }, remote, text: "{\"cc\":\"secret\"}".into() }
    }

    fn same(a: &BusMsg, b: &BusMsg) -> bool {
        serde_json::to_string(a).ok() == serde_json::to_string(b).ok()
    }

    #[test]
    fn a_sealed_message_opens_only_for_its_node_with_the_key_while_fresh() {
        let key = BusKey::new(b"0123456789abcdef0123456789abcdef");
        let sealed = key.seal("n1", "n2", 1_000_000, &msg());
        let (from, got) = key.open("n2", 1_000_500, &sealed).expect("opens");
        assert!(from == "n1" && same(&got, &msg()));
        assert_eq!(key.open("n3", 1_000_500, &sealed).err(), Some(Refused::Elsewhere("n2".into())));
        assert_eq!(key.open("n2", 1_061_000, &sealed).err(), Some(Refused::Stale(61_000)));
        let other = BusKey::new(b"another secret, another deployment");
        assert_eq!(other.open("n2", 1_000_500, &sealed).err(), Some(Refused::Seal));
        // What Redis sees says nothing of the message.
        assert!(!String::from_utf8_lossy(&sealed).contains("secret"));
    }

    #[test]
    fn a_changed_byte_junk_or_a_replay_is_refused() {
        let key = BusKey::new(b"0123456789abcdef0123456789abcdef");
        let mut sealed = key.seal("n1", "n2", 5, &msg());
        let mut replays = Replays::default();
        assert!(replays.first(5, &sealed));
        assert!(!replays.first(6, &sealed), "the same message again");
        assert!(replays.first(6, &key.seal("n1", "n2", 6, &msg())), "the same content, sealed anew");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(key.open("n2", 5, &sealed).err(), Some(Refused::Seal));
        assert_eq!(key.open("n2", 5, b"short").err(), Some(Refused::Malformed));
        assert_eq!(key.open("n2", 5, &[0xff; 80]).err(), Some(Refused::Seal));
    }

    #[test]
    fn signed_values_hold_only_unchanged() {
        let key = BusKey::new(b"0123456789abcdef0123456789abcdef");
        let signed = key.sign("presence", "{\"boot\":1}");
        assert_eq!(key.verify("presence", &signed), Some("{\"boot\":1}"));
        assert_eq!(key.verify("registry", &signed), None, "signed for another use");
        assert_eq!(key.verify("presence", &signed.replace("1}", "2}")), None);
        assert_eq!(key.verify("presence", "short"), None);
        assert_eq!(BusKey::new(b"another secret, another deployment").verify("presence", &signed), None);
    }
}
