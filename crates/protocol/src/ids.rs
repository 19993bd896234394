//! IDs of the contract: the rules of user, room and service IDs, and the typed ID of a
//! call or room session ([`Sid`]).

use std::borrow::Borrow;
use std::fmt;

/// The ID of a 1-to-1 call (a UUID with dashes, 36 chars) or of a room session (32
/// lowercase hex chars), issued by the server. On the wire it is a plain string; a
/// client may send any string (a sid the server never issued is simply not found).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Sid(String);

impl Sid {
    /// A sid from its wire form.
    pub fn new(sid: impl Into<String>) -> Sid {
        Sid(sid.into())
    }

    /// The sid as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it has the shape of a room session's sid (32 lowercase hex digits): a
    /// room that ended is told apart from a 1-to-1 call that ended.
    pub fn is_room_shaped(&self) -> bool {
        self.0.len() == 32 && self.0.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

impl std::ops::Deref for Sid {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Sid {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Sid {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Sid {
    fn from(s: String) -> Sid {
        Sid(s)
    }
}

impl From<&str> for Sid {
    fn from(s: &str) -> Sid {
        Sid(s.to_string())
    }
}

impl From<Sid> for String {
    fn from(sid: Sid) -> String {
        sid.0
    }
}

impl PartialEq<str> for Sid {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Sid {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for Sid {
    fn eq(&self, other: &String) -> bool {
        self.0 == *other
    }
}

impl PartialEq<Sid> for str {
    fn eq(&self, other: &Sid) -> bool {
        self == other.0
    }
}

impl PartialEq<Sid> for &str {
    fn eq(&self, other: &Sid) -> bool {
        *self == other.0
    }
}

impl PartialEq<Sid> for String {
    fn eq(&self, other: &Sid) -> bool {
        *self == other.0
    }
}

/// Longest user, room or service ID, in bytes.
pub const MAX_ID_BYTES: usize = 64;

/// A user ID: `[A-Za-z0-9_-]+`, at most 64 bytes.
pub fn is_valid_user_id(id: &str) -> bool {
    valid(id, |c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// A room ID follows the user ID rule.
pub fn is_valid_room_id(id: &str) -> bool {
    is_valid_user_id(id)
}

/// A service ID: `[A-Za-z0-9.-]+`, at most 64 bytes.
pub fn is_valid_service_id(id: &str) -> bool {
    valid(id, |c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
}

fn valid(id: &str, allowed: impl Fn(u8) -> bool) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES && id.bytes().all(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_are_looked_up_by_their_wire_form() {
        let call = Sid::new("6364e8b3-bdac-436e-9631-0bce2498ce0c");
        let room = Sid::new("0123456789abcdef0123456789abcdef");
        assert!(room.is_room_shaped() && !call.is_room_shaped());
        let mut map = std::collections::HashMap::new();
        map.insert(call.clone(), 1);
        assert_eq!(map.get(call.as_str()), Some(&1), "looked up by the &str a client sends");
        assert_eq!(serde_json::to_string(&call).unwrap(), "\"6364e8b3-bdac-436e-9631-0bce2498ce0c\"");
    }

    #[test]
    fn id_rules() {
        assert!(is_valid_user_id("alice_01-x"));
        assert!(!is_valid_user_id(""));
        assert!(!is_valid_user_id("a.b"));
        assert!(!is_valid_user_id(&"a".repeat(65)));
        assert!(is_valid_user_id(&"a".repeat(64)));
        assert!(is_valid_service_id("com.example-app"));
        assert!(!is_valid_service_id("svc_1"));
        assert!(!is_valid_service_id("é"));
    }
}
