//! The Switchboard wire contract, shared by the server and every SDK.
//!
//! Everything here is plain data: signaling messages ([`message`]), the disconnect
//! reasons and sources with their numbers ([`reason`]), the ID rules ([`ids`]) and
//! the app-server callback records with their exact query encoding ([`record`]).
//! No IO happens in this crate.

pub mod engine;
pub mod ids;
pub mod message;
pub mod reason;
pub mod record;
pub mod reference;
pub mod stun;

pub use engine::EngineEvent;
pub use ids::Sid;
pub use message::{
    ClientMessage, ErrorCode, IceServer, MediaLine, MediaType, ParseError, RoomPeer, ServerMessage,
};
pub use reason::{DisconnectReason, DisconnectSource, RelCode, StartFailReason};

/// Signaling protocol version spoken by this crate. A client announcing an older
/// major version is refused with `SERVICE_INCOMPATIBLE_PLANETKIT_VER` (1511).
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest signaling frame the server accepts, in bytes.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Largest `app_data` (app server data) a caller may attach to a call, in bytes.
pub const MAX_APP_DATA_BYTES: usize = 4096;

/// Path of the signaling WebSocket endpoint on the server.
pub const SIGNAL_PATH: &str = "/v1/signal";

/// Longest `display_name` of a room participant, in bytes.
pub const MAX_DISPLAY_NAME_BYTES: usize = 128;

/// Longest `data_type` of short data, in bytes.
pub const MAX_SHORT_DATA_TYPE_BYTES: usize = 100;

/// Longest `data` of short data, in bytes.
pub const MAX_SHORT_DATA_BYTES: usize = 800;

/// Longest app control message the app server may send to a room, in bytes.
pub const MAX_APP_CONTROL_BYTES: usize = 3072;
