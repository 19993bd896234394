//! The Switchboard Rust SDK.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchboard_client::ClientError> {
//! use switchboard_client::{Client, Credentials, Event, MakeCall};
//! let (alice, mut events) = Client::connect(
//!     "http://127.0.0.1:7880",
//!     Credentials::token("demo", "alice", "<access token>"),
//! )
//! .await?;
//! let sid = alice.make_call(MakeCall::audio("bob")).await?;
//! while let Some(event) = events.next().await {
//!     if let Event::Disconnected { reason, .. } = event {
//!         println!("{sid} ended: {reason}");
//!         break;
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! One [`Client`] is one signaling session (one device). Requests are `async` and
//! resolve with the server's answer; everything the server tells on its own comes as
//! an [`Event`] on the [`Events`] stream, named as in the contract (`WaitConnected`,
//! `Verified`, `Connected`, `Disconnected`, `IncomingCall`).

mod call_engine;
mod engine;
mod ice_tcp;
mod media;
mod session;
mod tls;
#[cfg(feature = "tone")]
pub mod tone;
mod turn;

pub use call_engine::{CallEngine, CallEvent, CallEvents, CallParams, LoginOptions, SIGNALING_LOST};
pub use engine::{Calls, Entered, RecentCall, RecentCallsQuery};
pub use media::{
    connect_media, connect_media_with, BoxFuture, IceTransport, Media, MediaEvent, MediaOptions,
    MediaSignaling, MediaStats, RelayOffer,
};
pub use session::{Client, Events};
pub use switchboard_protocol::{
    engine::{CallEndReason, CallMediaType, CallRole, NetworkQuality, NetworkQualityGrade},
    DisconnectReason, DisconnectSource, EngineEvent, ErrorCode, MediaLine, MediaType, RoomPeer, Sid,
    StartFailReason,
};

/// How a client proves who it is.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// An access token minted by the app server (or `switchboard token`).
    Token {
        /// My service.
        service_id: String,
        /// My user ID.
        user_id: String,
        /// The JWT.
        token: String,
    },
    /// Only a `cc_param`: this session can verify and answer that one call.
    CcParam(String),
}

impl Credentials {
    /// Token credentials.
    pub fn token(
        service_id: impl Into<String>,
        user_id: impl Into<String>,
        token: impl Into<String>,
    ) -> Self {
        Credentials::Token { service_id: service_id.into(), user_id: user_id.into(), token: token.into() }
    }
}

/// Parameters of [`Client::make_call`].
#[derive(Debug, Clone)]
pub struct MakeCall {
    /// The callee.
    pub to_user_id: String,
    /// The callee's service (default: mine).
    pub to_service_id: Option<String>,
    /// `audio` or `video` (a string, so that a wrong one reaches the server and is
    /// answered with `invalid_media_type`).
    pub media_type: String,
    /// App server data (≤ 4,096 bytes).
    pub app_data: Option<String>,
    /// Ring timeout for this call (capped by the service's).
    pub ring_timeout_secs: Option<u32>,
}

impl MakeCall {
    /// An audio call to `to_user_id`.
    pub fn audio(to_user_id: impl Into<String>) -> Self {
        Self {
            to_user_id: to_user_id.into(),
            to_service_id: None,
            media_type: "audio".into(),
            app_data: None,
            ring_timeout_secs: None,
        }
    }

    /// A video call to `to_user_id`.
    pub fn video(to_user_id: impl Into<String>) -> Self {
        Self { media_type: "video".into(), ..Self::audio(to_user_id) }
    }

    /// With app server data.
    pub fn app_data(mut self, data: impl Into<String>) -> Self {
        self.app_data = Some(data.into());
        self
    }
}

/// Parameters of [`Client::join_conference`].
#[derive(Debug, Clone)]
pub struct JoinConference {
    /// The room.
    pub room_id: String,
    /// The room's service (default: mine).
    pub room_service_id: Option<String>,
    /// `audio` or `video`.
    pub media_type: String,
    /// Shown to the others.
    pub display_name: Option<String>,
    /// App server data (≤ 4,096 bytes), in on_gcall_evt_cb.
    pub app_data: Option<String>,
    /// Join with the microphone on (default true).
    pub mic_on: bool,
    /// Join with the camera on (video rooms; default true).
    pub camera_on: bool,
}

impl JoinConference {
    /// An audio room.
    pub fn audio(room_id: impl Into<String>) -> Self {
        Self {
            room_id: room_id.into(),
            room_service_id: None,
            media_type: "audio".into(),
            display_name: None,
            app_data: None,
            mic_on: true,
            camera_on: true,
        }
    }

    /// A video room.
    pub fn video(room_id: impl Into<String>) -> Self {
        Self { media_type: "video".into(), ..Self::audio(room_id) }
    }

    /// With a display name.
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }
}

/// What [`Client::join_conference`] resolves with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoomJoined {
    /// The room session (32 hex chars): media and leaving use it.
    pub sid: Sid,
    /// The room.
    pub room_id: String,
    /// The room's service.
    pub room_service_id: String,
    /// The room's media type.
    pub media_type: MediaType,
    /// The first joiner.
    pub host_id: String,
    /// Room created, epoch seconds.
    pub setup_time: u64,
    /// Everyone else in the room.
    pub peers: Vec<RoomPeer>,
}

/// What `verify_call` learned about the call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    /// The call.
    pub sid: Sid,
    /// Caller's service.
    pub from_service_id: String,
    /// Caller.
    pub from_user_id: String,
    /// Audio or video.
    pub media_type: MediaType,
    /// The caller's app data.
    pub app_data: Option<String>,
}

/// Something the server told this session. Serializes as one JSON object with an
/// `event` field (`wait_connected`, `incoming_call`, …), as the CLI prints it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The callee is being rung (`evtWaitConnected`).
    WaitConnected {
        /// The call.
        sid: Sid,
    },
    /// A call is offered directly to this device (`onCallReceived`).
    IncomingCall {
        /// The call.
        sid: Sid,
        /// Caller's service.
        from_service_id: String,
        /// Caller.
        from_user_id: String,
        /// Audio or video.
        media_type: MediaType,
        /// The caller's app data.
        app_data: Option<String>,
        /// Pass to [`Client::verify_call`].
        cc_param: String,
    },
    /// `verify_call` succeeded (`evtVerified`).
    Verified(Verified),
    /// The call is answered (`evtConnected`).
    Connected {
        /// The call.
        sid: Sid,
        /// Epoch seconds.
        start_time: u64,
        /// Answered from a cc_param session: connect with this as the cc_param
        /// ([`Credentials::CcParam`]) to `resume` the call after a reconnect.
        resume_param: Option<String>,
    },
    /// The call ended (`evtDisconnected`).
    Disconnected {
        /// The call.
        sid: Sid,
        /// Why.
        reason: DisconnectReason,
        /// Who.
        source: DisconnectSource,
        /// Whether the source is the remote party.
        by_remote: bool,
        /// App-defined release code.
        user_rel_code: Option<String>,
    },
    /// The peer's microphone or camera changed (`evtPeerMicMuted` / `evtPeerMicUnmuted`,
    /// `evtVideoEnabledByPeer` / `evtVideoDisabledByPeer`).
    PeerMediaState {
        /// The call or room.
        sid: Sid,
        /// In a room: whose state changed.
        user_id: Option<String>,
        /// Peer's microphone muted.
        mic_muted: Option<bool>,
        /// Peer's camera sending.
        video_enabled: Option<bool>,
        /// Peer's camera paused.
        video_paused: Option<bool>,
    },
    /// Participants joined or left a room (`evtPeerListUpdated`).
    PeerListUpdated {
        /// The room session.
        sid: Sid,
        /// Who joined.
        added: Vec<RoomPeer>,
        /// Who left.
        removed: Vec<String>,
        /// How many others are in the room now.
        total: u32,
    },
    /// Which media line of this session's room connection carries whose media.
    MediaLines {
        /// The room session.
        sid: Sid,
        /// The lines.
        lines: Vec<MediaLine>,
    },
    /// Every participant's audio level, 0-100, twice a second (`evtPeersAudioLevel`).
    AudioLevels {
        /// The room session.
        sid: Sid,
        /// User ID → level.
        levels: std::collections::BTreeMap<String, u8>,
    },
    /// Every participant's network quality, every 2 s (`evtPeersNetworkQuality`):
    /// 0 unknown, 1 excellent, 2 good, 3 poor, 4 bad, 5 very bad, 6 down.
    NetworkQuality {
        /// The room session.
        sid: Sid,
        /// User ID → grade.
        quality: std::collections::BTreeMap<String, u8>,
    },
    /// Who started and stopped talking (`evtPeersTalkingStatusUpdated`).
    Talking {
        /// The room session.
        sid: Sid,
        /// Started.
        active: Vec<String>,
        /// Stopped.
        inactive: Vec<String>,
    },
    /// Short data from another participant (`evtShortDataReceived`).
    ShortData {
        /// The room session.
        sid: Sid,
        /// The sender.
        from_user_id: String,
        /// Its type.
        data_type: String,
        /// The data.
        data: String,
    },
    /// A message from the app server (`evtAppControlMessageReceived`).
    AppControlMessage {
        /// The room session.
        sid: Sid,
        /// The data.
        data: String,
    },
    /// The access token expires soon (`onUserSigExpired`): call [`Client::refresh_token`].
    TokenExpiring {
        /// Epoch seconds.
        expires_at: u64,
    },
    /// The server refused something that was not a request of ours (or flooded).
    Error {
        /// Kind.
        error: ErrorCode,
        /// Contract reason, if any.
        reason: Option<DisconnectReason>,
        /// Words.
        message: String,
    },
    /// The signaling connection dropped; the client is connecting again (with back-off,
    /// within the server's reconnect grace). Calls, rooms and their media go on.
    Reconnecting {
        /// Why the connection dropped.
        reason: String,
    },
    /// Connected again: every call and room of this client was resumed on the new
    /// connection (one that ended meanwhile gets its [`Event::Disconnected`]).
    Reconnected,
    /// Call engine: a TUICallEvent (seed 004) of a call (an engine session only,
    /// [`Client::connect_engine`]); printed by the CLI as
    /// `{"event":"call","call_id":…,"name":"onUserJoin","userId":…}`.
    Call {
        /// The call (none for `onKickedOffline`).
        call_id: Option<Sid>,
        /// The event, with seed 004's name and fields.
        #[serde(flatten)]
        call_event: switchboard_protocol::EngineEvent,
    },
    /// The signaling connection is gone for good (closed by us or the server, or not
    /// back within the reconnect grace).
    Closed {
        /// Why, if known.
        reason: String,
    },
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// The server URL is not usable.
    #[error("invalid server URL: {0}")]
    InvalidUrl(String),
    /// Could not connect (refused, HTTP error, TLS…).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The server refused the session (bad token, rate limit, …).
    #[error("refused: {reason}: {message}")]
    Refused {
        /// Contract reason (1501, 1502, 1303, 1511, 1512).
        reason: DisconnectReason,
        /// Words.
        message: String,
    },
    /// `make_call` / `verify_call` refused before a call existed.
    #[error("start failed: {}: {message}", reason.as_str())]
    StartFailed {
        /// The start-fail reason.
        reason: StartFailReason,
        /// Words.
        message: String,
    },
    /// The call ended instead (e.g. RELEASED_CALL on a late verify).
    #[error("call ended: {reason} by {}", by.name())]
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// Who (the disconnect source).
        by: DisconnectSource,
    },
    /// The server answered with an error.
    #[error("{error:?}: {message}")]
    Server {
        /// Kind.
        error: ErrorCode,
        /// Contract reason, if any.
        reason: Option<DisconnectReason>,
        /// Words.
        message: String,
    },
    /// The connection closed before the answer came.
    #[error("connection closed")]
    Closed,
    /// No answer in time.
    #[error("timed out waiting for the server")]
    Timeout,
}
