//! Who and when, as every core names them: leaf types shared by the call core and the
//! room core (neither imports the other's).

/// Epoch milliseconds.
pub type Millis = u64;
/// A signaling session (one connection of one device), numbered by the shell.
pub type SessionId = u64;

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
