//! ID rules of the contract (SPEC §1).

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
