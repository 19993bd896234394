//! Who is who, as every part of the server names them: typed IDs (a call's or room's
//! [`Sid`], a room's [`RoomId`], a connection's [`SessionId`]), the user key
//! [`Party`], and where new sids come from ([`IdSource`]). A leaf: it imports nothing
//! of the server.

use std::borrow::Borrow;
use std::fmt;

pub use switchboard_protocol::Sid;

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
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
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

/// Where the cores get the sids of new calls and rooms. Injected, so that tests name
/// them predictably and a cluster can later make them unique across nodes.
pub trait IdSource: Send {
    /// A new 1-to-1 call's sid: a UUID with dashes (36 chars).
    fn call_sid(&mut self) -> Sid;
    /// A new room session's sid: 32 lowercase hex digits.
    fn room_sid(&mut self) -> Sid;
    /// A new group call's room number (`roomID`): 1 to 2^31 - 1, so that every
    /// language's numbers hold it.
    fn room_number(&mut self) -> u32;
}

/// Random version-4 UUIDs: what the server uses.
#[derive(Debug, Default)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn call_sid(&mut self) -> Sid {
        Sid::new(uuid::Uuid::new_v4().to_string())
    }

    fn room_sid(&mut self) -> Sid {
        Sid::new(uuid::Uuid::new_v4().simple().to_string())
    }

    fn room_number(&mut self) -> u32 {
        (uuid::Uuid::new_v4().as_u128() as u32 & 0x7fff_ffff).max(1)
    }
}

/// Sids numbered 1, 2, … in the shapes of [`RandomIds`]: for tests on simulated time.
#[derive(Debug, Default)]
pub struct CountingIds(u64);

impl IdSource for CountingIds {
    fn call_sid(&mut self) -> Sid {
        self.0 += 1;
        Sid::new(format!("00000000-0000-4000-8000-{:012x}", self.0))
    }

    fn room_sid(&mut self) -> Sid {
        self.0 += 1;
        Sid::new(format!("{:032x}", self.0))
    }

    fn room_number(&mut self) -> u32 {
        self.0 += 1;
        1000 + self.0 as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_have_the_shapes_of_the_contract() {
        for ids in [&mut RandomIds as &mut dyn IdSource, &mut CountingIds::default()] {
            let call = ids.call_sid();
            assert_eq!(call.as_str().len(), 36);
            assert!(!call.is_room_shaped());
            let room = ids.room_sid();
            assert!(room.is_room_shaped(), "{room}");
        }
        assert!(RoomId::parse("r-1_A").is_some());
        assert!(RoomId::parse("").is_none() && RoomId::parse("a b").is_none());
    }
}
