//! Who and when, as every core names them: leaf types shared by the call core and the
//! room core (neither imports the other's), and the typed IDs they key their state by,
//! so a call's sid, a room's ID and a session cannot be mixed up.

use std::borrow::Borrow;
use std::fmt;

/// Epoch milliseconds.
pub type Millis = u64;

/// A signaling session (one connection of one device), numbered by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl From<u64> for SessionId {
    fn from(n: u64) -> Self {
        SessionId(n)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A user: `(service_id, user_id)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Party {
    /// The service.
    pub service_id: String,
    /// The user.
    pub user_id: String,
}

impl Party {
    /// A party from its two IDs.
    pub fn new(service_id: impl Into<String>, user_id: impl Into<String>) -> Self {
        Self { service_id: service_id.into(), user_id: user_id.into() }
    }
}

pub use switchboard_protocol::Sid;

/// A new 1-to-1 call's sid: a UUID with dashes.
pub fn new_call_sid() -> Sid {
    Sid::new(uuid::Uuid::new_v4().to_string())
}

/// A new room session's sid: 32 hex digits.
pub fn new_room_sid() -> Sid {
    Sid::new(uuid::Uuid::new_v4().simple().to_string())
}

/// A room's ID within its service: `[A-Za-z0-9_-]{1,64}`, chosen by the app.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct RoomId(String);

impl RoomId {
    /// The ID if it is a valid room ID.
    pub fn parse(id: &str) -> Option<RoomId> {
        switchboard_protocol::ids::is_valid_room_id(id).then(|| RoomId(id.to_string()))
    }

    /// The ID as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for RoomId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for RoomId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for RoomId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_have_the_shapes_of_spec() {
        let call = new_call_sid();
        assert_eq!(call.as_str().len(), 36);
        let room = new_room_sid();
        assert_eq!(room.as_str().len(), 32);
        assert!(room.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        let mut map = std::collections::HashMap::new();
        map.insert(call.clone(), 1);
        assert_eq!(map.get(call.as_str()), Some(&1), "looked up by the &str a client sends");
        assert!(RoomId::parse("r-1_A").is_some());
        assert!(RoomId::parse("").is_none() && RoomId::parse("a b").is_none());
    }
}
