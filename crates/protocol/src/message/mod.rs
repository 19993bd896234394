//! Signaling messages: JSON text frames over the WebSocket at [`crate::SIGNAL_PATH`].
//!
//! Every frame is one object with a `type` field. Requests may carry a client-chosen
//! `req` number; the server echoes it in the direct answer (`call_created`,
//! `verified`, `start_failed`, `error`, …) so a client can match answers to requests.
//! Field names never change within a protocol version; new optional fields may appear.

use serde::{Deserialize, Serialize};

use crate::ids::Sid;
use crate::reason::{DisconnectReason, DisconnectSource, StartFailReason};

/// Audio-only or audio+video call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    /// Voice call (`A` in callbacks).
    Audio,
    /// Video call (`V` in callbacks).
    Video,
}

impl MediaType {
    /// Parses the wire spelling (`audio` / `video`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "audio" => Some(MediaType::Audio),
            "video" => Some(MediaType::Video),
            _ => None,
        }
    }

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Audio => "audio",
            MediaType::Video => "video",
        }
    }

    /// The callback letter: `A` or `V`.
    pub fn letter(self) -> &'static str {
        match self {
            MediaType::Audio => "A",
            MediaType::Video => "V",
        }
    }
}

/// A frame sent by a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// First frame of every session: who the client is.
    ///
    /// Either `token` (an access token; `service_id`/`user_id`, when given, must match
    /// its claims) or `cc_param` alone (a callee that may verify that one call).
    Hello {
        /// Protocol version the client speaks.
        v: u32,
        /// Access token (JWT HS256 minted by the app server).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// The service the client believes it belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service_id: Option<String>,
        /// The user the client believes it is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
        /// A callee's `cc_param`, instead of a token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cc_param: Option<String>,
        /// Kind of device (`BROWSER`, `ANDROID`, …), informational.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ue_type: Option<String>,
        /// A call-engine session: it gets `call_event` frames.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        engine: bool,
        /// Call engine: this user may be signed in on several devices at once
        /// (`enableMultiDeviceAbility(true)`). Without it, this session signs out the
        /// user's other engine instances (`onKickedOffline`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        multi_device: bool,
        /// The SDK instance (≤ 64 bytes): a new session of the same instance is a
        /// reconnect, never a second login.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<String>,
    },
    /// Heartbeat; the server answers `pong`.
    Ping {},
    /// Start a 1-to-1 call.
    MakeCall {
        /// Request number echoed in the answer.
        #[serde(default)]
        req: Option<u64>,
        /// The callee.
        to_user_id: String,
        /// The callee's service; defaults to the caller's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to_service_id: Option<String>,
        /// `audio` or `video`.
        media_type: String,
        /// Opaque app server data (≤ 4,096 bytes), echoed in callbacks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        app_data: Option<String>,
        /// Per-call ring timeout, at most the service's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ring_timeout_secs: Option<u32>,
    },
    /// Callee: take up the call that a `cc_param` names.
    VerifyCall {
        /// Request number echoed in the answer.
        #[serde(default)]
        req: Option<u64>,
        /// The `cc_param` from the push or from `incoming_call`.
        cc_param: String,
    },
    /// Callee: answer a verified call.
    AcceptCall {
        /// Request number echoed in an error.
        #[serde(default)]
        req: Option<u64>,
        /// The call.
        sid: Sid,
    },
    /// Either side: end the call (cancel, decline or hang up).
    EndCall {
        /// Request number echoed in the answer.
        #[serde(default)]
        req: Option<u64>,
        /// The call.
        sid: Sid,
        /// A client-reported reason code (e.g. 1003 CELL_CALL, 1110 USER_ERROR).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<u16>,
        /// App-defined release code, with USER_ERROR.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_rel_code: Option<String>,
    },
    /// After a reconnect: take this session back into a live call.
    Resume {
        /// Request number echoed in the answer.
        #[serde(default)]
        req: Option<u64>,
        /// The call.
        sid: Sid,
    },
    /// Connected call: the client's WebRTC offer (SDP) for its connection to the
    /// server's media relay. Answered with `media_answer`.
    MediaOffer {
        /// Request number echoed in the answer.
        #[serde(default)]
        req: Option<u64>,
        /// The call.
        sid: Sid,
        /// The SDP offer.
        sdp: String,
    },
    /// Connected call: the client's answer to the relay's `media_offer` (lines the
    /// relay added to the client's media connection).
    MediaAnswer {
        /// The call.
        sid: Sid,
        /// The `offer_id` of the offer answered.
        offer_id: u64,
        /// The SDP answer.
        sdp: String,
    },
    /// Connected call: I want to send a kind of media my connection has no line for
    /// (video turned on in an audio call). The relay adds a `sendrecv` line and sends
    /// `media_offer`. After the first offer only the relay offers, so offers never cross.
    AddMedia {
        /// The call.
        sid: Sid,
        /// `audio` or `video`.
        kind: String,
    },
    /// Connected call: my microphone or camera changed; relayed to the peer.
    MediaState {
        /// The call.
        sid: Sid,
        /// Microphone muted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mic_muted: Option<bool>,
        /// Camera sending.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        video_enabled: Option<bool>,
        /// Camera paused for a moment (`pauseMyVideo`): the video line stays, nothing
        /// is sent on it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        video_paused: Option<bool>,
    },
    /// Join (or create) the room `(room_service_id, room_id)`. Answered with
    /// `room_joined`, or `start_failed` (nothing created) or `disconnected` (the room
    /// refused the join: ROOM_IS_FULL, …). Media then goes as in a call, with the
    /// room's `sid`: `media_offer`, `media_answer`, `add_media`, `media_state`.
    JoinRoom {
        /// Request number echoed in the answer.
        #[serde(default)]
        req: Option<u64>,
        /// The room (`[A-Za-z0-9_-]{1,64}`; not the joiner's own user ID).
        room_id: String,
        /// The room's service; defaults to the joiner's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room_service_id: Option<String>,
        /// `audio` or `video`; the first join sets the room's.
        media_type: String,
        /// Shown to the others (≤ 128 bytes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_name: Option<String>,
        /// Opaque app server data (≤ 4,096 bytes), echoed in on_gcall_evt_cb.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        app_data: Option<String>,
        /// Joining with the microphone muted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mic_muted: Option<bool>,
        /// Joining with the camera on (video rooms).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        video_enabled: Option<bool>,
    },
    /// Leave the room; answered with `disconnected` (NORMAL, source participant).
    LeaveRoom {
        /// Request number echoed in the answer.
        #[serde(default)]
        req: Option<u64>,
        /// The room session.
        sid: Sid,
    },
    /// A small message to the other participants (all, or `targets`).
    ShortData {
        /// Request number echoed in an error.
        #[serde(default)]
        req: Option<u64>,
        /// The room session.
        sid: Sid,
        /// What kind of data, app-defined (≤ 100 bytes).
        data_type: String,
        /// The data (≤ 800 bytes).
        data: String,
        /// User IDs to send to; all the others when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        targets: Option<Vec<String>>,
    },
    /// In a room: start receiving a participant's video (`requestPeerVideo`). Nobody's
    /// video is forwarded to a participant before it asks. Answered `peer_video`.
    RequestPeerVideo {
        /// Request number echoed in the answer.
        #[serde(default)]
        req: Option<u64>,
        /// The room session.
        sid: Sid,
        /// Whose video.
        user_id: String,
        /// `qvga`, `vga` or `hd` (the layer wanted when the sender offers several).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resolution: Option<String>,
    },
    /// In a room: stop receiving a participant's video (`removePeerVideo`). Answered
    /// `peer_video`.
    RemovePeerVideo {
        /// Request number echoed in the answer.
        #[serde(default)]
        req: Option<u64>,
        /// The room session.
        sid: Sid,
        /// Whose video.
        user_id: String,
    },
    /// Call-engine face: call one user (a 1-to-1 call, answered `call_created` as
    /// `make_call` is) or several (a group call: answered `room_joined` with the call's
    /// ID as its `sid`; every invitee gets `call_event` `onCallReceived`). Needs an
    /// engine session (`hello` with `engine: true`).
    Calls {
        /// Request number echoed in the answer.
        #[serde(default)]
        req: Option<u64>,
        /// The invitees (at least one).
        user_ids: Vec<String>,
        /// `audio` or `video`.
        media_type: String,
        /// How long each invitation rings, seconds (default 30, at most the service's
        /// ring time).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_secs: Option<u32>,
        /// Opaque app data (≤ 4,096 bytes), in `onCallReceived` and the records.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_data: Option<String>,
        /// The group call's room number (default: a free one drawn by the server).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room_id: Option<u32>,
        /// The app's group ID, echoed in `onCallReceived`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group_id: Option<String>,
    },
    /// Call-engine face: answer an invitation. A 1-to-1 call is answered `verified` then
    /// `connected`; a group call `room_joined`.
    Accept {
        /// Request number echoed in the answer.
        #[serde(default)]
        req: Option<u64>,
        /// The call.
        call_id: Sid,
    },
    /// Call-engine face: decline an invitation (the inviter sees `onUserReject`).
    Reject {
        /// Request number echoed in the answer (`done`).
        #[serde(default)]
        req: Option<u64>,
        /// The call.
        call_id: Sid,
    },
    /// Call-engine face: let an invitation go as if busy (the inviter sees
    /// `onUserLineBusy`).
    Ignore {
        /// Request number echoed in the answer (`done`).
        #[serde(default)]
        req: Option<u64>,
        /// The call.
        call_id: Sid,
    },
    /// Call-engine face: leave the call; the inviter before anyone answered cancels every
    /// invitation. Answered `disconnected`.
    Hangup {
        /// Request number echoed in the answer.
        #[serde(default)]
        req: Option<u64>,
        /// The call.
        call_id: Sid,
    },
    /// Call-engine face: invite more users into a group call, by any participant.
    /// Answered `done`.
    InviteUser {
        /// Request number echoed in the answer.
        #[serde(default)]
        req: Option<u64>,
        /// The call.
        call_id: Sid,
        /// The new invitees.
        user_ids: Vec<String>,
        /// How long each invitation rings, seconds (default 30).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_secs: Option<u32>,
    },
    /// Call-engine face: join a live group call this user was invited to (after leaving,
    /// rejecting or missing it). Answered `room_joined`.
    JoinCall {
        /// Request number echoed in the answer.
        #[serde(default)]
        req: Option<u64>,
        /// The call.
        call_id: Sid,
    },
    /// Call-engine face: this user's nickname and avatar (`setSelfInfo`), shown to the
    /// invitees of its calls (`onCallReceived`) and kept in group call records, for as
    /// long as the user has a session. Answered `done`.
    SetSelfInfo {
        /// Request number echoed in the answer.
        #[serde(default)]
        req: Option<u64>,
        /// Nickname (≤ 128 bytes; empty clears it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nickname: Option<String>,
        /// Avatar URL (≤ 512 bytes; empty clears it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        avatar_url: Option<String>,
    },
    /// Call-engine face: switch the call's media type (`switchCallMediaType`): video to
    /// audio in any call, audio to video in a 1-to-1 call. Everyone in it hears
    /// `onCallMediaTypeChanged`; answered `done`.
    SwitchCallMedia {
        /// Request number echoed in the answer.
        #[serde(default)]
        req: Option<u64>,
        /// The call.
        call_id: Sid,
        /// `audio` or `video`.
        media_type: String,
    },
    /// Hand a fresh access token without dropping the session.
    RefreshToken {
        /// Request number echoed in the answer.
        #[serde(default)]
        req: Option<u64>,
        /// The new token; must name the same service and user.
        token: String,
    },
}

/// Stable error kinds of the `error` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, or a known type with missing/ill-typed fields.
    Malformed,
    /// A `type` this server does not know.
    UnknownType,
    /// The message is valid but not in this state (e.g. `accept_call` by the caller).
    WrongState,
    /// No such call for this session.
    NotFound,
    /// A frame over 64 KiB.
    FrameTooLarge,
    /// Authentication failed; `reason` says how (1501, 1502, 1303, 1511).
    Auth,
    /// Rate limited; `reason` is 1512.
    RateLimited,
    /// A parameter is out of range.
    InvalidParam,
    /// The server failed.
    Internal,
}

/// A TURN server as `RTCPeerConnection` takes it (`iceServers`), in `welcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `turn:host:port?transport=udp`, `turn:host:port?transport=tcp`, `turns:…`.
    pub urls: Vec<String>,
    /// `expiry:user` (TURN REST convention).
    pub username: String,
    /// base64(HMAC-SHA1(secret, username)).
    pub credential: String,
}

/// A frame sent by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Answer to `hello`: the session is open.
    Welcome {
        /// Protocol version of the server.
        v: u32,
        /// This session's ID (one per connection/device).
        session_id: String,
        /// The authenticated service.
        service_id: String,
        /// The authenticated user.
        user_id: String,
        /// Send `ping` at least this often.
        heartbeat_secs: u32,
        /// When the access token expires (epoch seconds), if a token was used.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_expires_at: Option<u64>,
        /// How long after this session drops its calls and rooms wait for a `resume`
        /// from a new one (milliseconds): how long a client should try to reconnect.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reconnect_grace_ms: Option<u64>,
        /// TURN servers for media when nothing else gets through, with short-lived
        /// credentials (`RTCPeerConnection`'s `iceServers`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<IceServer>,
    },
    /// Answer to `ping`.
    Pong {},
    /// A request could not be carried out. The session stays open, except after a
    /// refused `hello` (`auth`) and after `frame_too_large`.
    Error {
        /// The request's number, if it had one and could be read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The kind of error.
        error: ErrorCode,
        /// The contract reason, where one applies (e.g. 1501, 1512).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<DisconnectReason>,
        /// Words for a human.
        message: String,
    },
    /// `make_call` or `verify_call` was refused; nothing was created.
    StartFailed {
        /// The request's number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The start-fail reason (`invalid_user_id`, …).
        reason: StartFailReason,
        /// Its native number.
        code: u16,
        /// Words for a human.
        message: String,
    },
    /// `make_call` created the call.
    CallCreated {
        /// The request's number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The call's ID (UUID with dashes).
        sid: Sid,
    },
    /// Caller: the callee is being rung (`evtWaitConnected`).
    WaitConnected {
        /// The call.
        sid: Sid,
    },
    /// Callee: a call is offered directly (no push service needed).
    IncomingCall {
        /// The call.
        sid: Sid,
        /// Caller's service.
        from_service_id: String,
        /// Caller.
        from_user_id: String,
        /// Callee's service.
        to_service_id: String,
        /// Callee.
        to_user_id: String,
        /// `audio` or `video`.
        media_type: MediaType,
        /// The caller's app data.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        app_data: Option<String>,
        /// Pass to `verify_call`.
        cc_param: String,
    },
    /// Callee: `verify_call` succeeded (`evtVerified`); the call rings here.
    Verified {
        /// The request's number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The call.
        sid: Sid,
        /// Caller's service.
        from_service_id: String,
        /// Caller.
        from_user_id: String,
        /// `audio` or `video`.
        media_type: MediaType,
        /// The caller's app data.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        app_data: Option<String>,
    },
    /// Both sides: the call is answered (`evtConnected`).
    Connected {
        /// The `accept_call` request's number (on the answering session only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The call.
        sid: Sid,
        /// Epoch seconds of the answer.
        start_time: u64,
        /// Only to a callee that answered from a cc_param session: the credential its
        /// device reconnects with (`hello.cc_param`) to `resume` the call. The pushed
        /// `cc_param` cannot resume an answered call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume_param: Option<String>,
    },
    /// The call ended for this session (`evtDisconnected`).
    Disconnected {
        /// The request's number, when this answers a request (e.g. a late `verify_call`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The call.
        sid: Sid,
        /// Why.
        reason: DisconnectReason,
        /// Who.
        source: DisconnectSource,
        /// Whether the source is the remote party of this session.
        by_remote: bool,
        /// App-defined release code, with USER_ERROR.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_rel_code: Option<String>,
    },
    /// Answer to `resume`: this session is back in the call.
    Resumed {
        /// The request's number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The call.
        sid: Sid,
        /// `ringing` or `connected`.
        state: String,
        /// The call moved to another node (the one that ran it died): the relay that
        /// carries its media now has no connection of this party's, so the client
        /// starts a new one (a new peer connection: new DTLS, new ICE) with a
        /// `media_offer`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        new_media: bool,
    },
    /// The access token expires soon (`onUserSigExpired`); send `refresh_token`.
    TokenExpiring {
        /// Epoch seconds.
        expires_at: u64,
    },
    /// Answer to `media_offer`: the relay's SDP answer (ICE-lite, one UDP port).
    MediaAnswer {
        /// The request's number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The call.
        sid: Sid,
        /// The SDP answer.
        sdp: String,
    },
    /// The relay renegotiates the client's media connection: it adds `sendonly` lines
    /// because another party sends more than the client's lines can carry (video turned
    /// on in an audio call, another member in a room). Answer with `media_answer`.
    MediaOffer {
        /// The call.
        sid: Sid,
        /// Echoed in `media_answer`: an answer to an older offer is ignored.
        offer_id: u64,
        /// The SDP offer.
        sdp: String,
    },
    /// The peer's microphone or camera changed (`evtPeerMicMuted`,
    /// `evtVideoEnabledByPeer`, …).
    PeerMediaState {
        /// The call or room session.
        sid: Sid,
        /// In a room: whose state changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
        /// Peer's microphone muted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mic_muted: Option<bool>,
        /// Peer's camera sending.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        video_enabled: Option<bool>,
        /// Peer's camera paused (`evtPeersVideoPaused` / `evtPeersVideoResumed`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        video_paused: Option<bool>,
    },
    /// Answer to `join_room`: this session is in the room (`evtConnected`).
    RoomJoined {
        /// The request's number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The room session's ID (32 hex chars), used for media and leaving.
        sid: Sid,
        /// The room.
        room_id: String,
        /// The room's service.
        room_service_id: String,
        /// The room's media type.
        media_type: MediaType,
        /// The first joiner.
        host_id: String,
        /// When the room was created, epoch seconds.
        setup_time: u64,
        /// Everyone else in the room.
        peers: Vec<RoomPeer>,
    },
    /// Participants joined or left (`evtPeerListUpdated`).
    PeerList {
        /// The room session.
        sid: Sid,
        /// Who joined.
        added: Vec<RoomPeer>,
        /// Who left (user IDs).
        removed: Vec<String>,
        /// How many others are in the room now.
        total: u32,
    },
    /// Which media line of this session's connection carries whose media: sent when
    /// the relay (re)assigns lines in a room.
    MediaLines {
        /// The room session.
        sid: Sid,
        /// Every line that carries someone's media now.
        lines: Vec<MediaLine>,
    },
    /// Every participant's audio level (0-100), twice a second (`evtPeersAudioLevel`).
    PeerAudioLevels {
        /// The room session.
        sid: Sid,
        /// User ID → level.
        levels: std::collections::BTreeMap<String, u8>,
    },
    /// Every participant's network quality as the relay sees it, every 2 s
    /// (`evtPeersNetworkQuality`): 0 unknown, 1 excellent, 2 good, 3 poor, 4 bad,
    /// 5 very bad, 6 down.
    PeersNetworkQuality {
        /// The room session.
        sid: Sid,
        /// User ID → grade.
        quality: std::collections::BTreeMap<String, u8>,
    },
    /// Who started and who stopped talking (`evtPeersTalkingStatusUpdated`).
    PeersTalking {
        /// The room session.
        sid: Sid,
        /// Started talking.
        active: Vec<String>,
        /// Stopped talking.
        inactive: Vec<String>,
    },
    /// Answer to `request_peer_video` / `remove_peer_video`.
    PeerVideo {
        /// The request's number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The room session.
        sid: Sid,
        /// Whose video.
        user_id: String,
        /// Whether it is now forwarded to this session.
        requested: bool,
    },
    /// Another participant's short data (`evtShortDataReceived`).
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
    /// Call-engine face: something happened in a call (an engine session only).
    CallEvent {
        /// The call (none for `onKickedOffline`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<Sid>,
        /// What, as seed 004 names it.
        event: crate::engine::EngineEvent,
    },
    /// Answer to a request that has nothing else to say (`reject`, `ignore`,
    /// `invite_user`).
    Done {
        /// The request's number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
    },
    /// Answer to `refresh_token`.
    TokenRefreshed {
        /// The request's number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        req: Option<u64>,
        /// The new expiry, epoch seconds.
        expires_at: u64,
        /// The TURN servers again, with fresh credentials (as in `welcome`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<IceServer>,
    },
}

/// A participant of a room, as the others see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomPeer {
    /// The user.
    pub user_id: String,
    /// The user's service.
    pub service_id: String,
    /// Display name, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Kind of device (`BROWSER`, …).
    pub ue_type: String,
    /// Microphone muted.
    pub mic_muted: bool,
    /// Camera sending.
    pub video_enabled: bool,
    /// When the participant joined, epoch milliseconds.
    pub joined_ms: u64,
}

/// One media line of a room connection and whose media it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaLine {
    /// The line's `a=mid`.
    pub mid: String,
    /// Whose media.
    pub user_id: String,
    /// `audio` or `video`.
    pub kind: MediaType,
}

/// Why a client frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// `malformed` or `unknown_type`.
    pub code: ErrorCode,
    /// The `req` number, when it could be read.
    pub req: Option<u64>,
    /// Words for a human.
    pub message: String,
}

/// Message types a client may send, in the order of [`ClientMessage`].
pub const CLIENT_TYPES: &[&str] = &[
    "hello",
    "ping",
    "make_call",
    "verify_call",
    "accept_call",
    "end_call",
    "resume",
    "refresh_token",
    "media_offer",
    "media_answer",
    "add_media",
    "media_state",
    "join_room",
    "leave_room",
    "short_data",
    "request_peer_video",
    "remove_peer_video",
    "calls",
    "accept",
    "reject",
    "ignore",
    "hangup",
    "invite_user",
    "join_call",
    "switch_call_media",
    "set_self_info",
];

impl ClientMessage {
    /// The request number, if the message has one.
    pub fn req(&self) -> Option<u64> {
        use ClientMessage as M;
        match self {
            M::Hello { .. }
            | M::Ping {}
            | M::MediaAnswer { .. }
            | M::AddMedia { .. }
            | M::MediaState { .. } => None,
            M::MakeCall { req, .. }
            | M::VerifyCall { req, .. }
            | M::AcceptCall { req, .. }
            | M::EndCall { req, .. }
            | M::Resume { req, .. }
            | M::MediaOffer { req, .. }
            | M::JoinRoom { req, .. }
            | M::LeaveRoom { req, .. }
            | M::ShortData { req, .. }
            | M::RequestPeerVideo { req, .. }
            | M::RemovePeerVideo { req, .. }
            | M::Calls { req, .. }
            | M::Accept { req, .. }
            | M::Reject { req, .. }
            | M::Ignore { req, .. }
            | M::Hangup { req, .. }
            | M::InviteUser { req, .. }
            | M::JoinCall { req, .. }
            | M::SwitchCallMedia { req, .. }
            | M::SetSelfInfo { req, .. }
            | M::RefreshToken { req, .. } => *req,
        }
    }

    /// Reads one client frame, telling a malformed frame from an unknown type.
    pub fn parse(text: &str) -> Result<ClientMessage, ParseError> {
        match serde_json::from_str::<ClientMessage>(text) {
            Ok(m) => Ok(m),
            Err(e) => {
                #[derive(Deserialize)]
                struct Envelope {
                    #[serde(rename = "type")]
                    kind: Option<serde_json::Value>,
                    req: Option<serde_json::Value>,
                }
                // Only a JSON object is a message at all (serde would also read a
                // struct from an array).
                let is_object = text.trim_start().starts_with('{');
                let env = serde_json::from_str::<Envelope>(text).ok().filter(|_| is_object);
                let req = env.as_ref().and_then(|e| e.req.as_ref()).and_then(|v| v.as_u64());
                let kind = env.and_then(|e| e.kind);
                match kind {
                    Some(serde_json::Value::String(t)) if !CLIENT_TYPES.contains(&t.as_str()) => {
                        Err(ParseError {
                            code: ErrorCode::UnknownType,
                            req,
                            message: format!("unknown message type {:?}", truncate(&t, 64)),
                        })
                    }
                    _ => Err(ParseError { code: ErrorCode::Malformed, req, message: malformed(&e) }),
                }
            }
        }
    }

    /// The JSON text of this message.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl ServerMessage {
    /// The JSON text of this message.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The call this message is about, if any.
    pub fn sid(&self) -> Option<&Sid> {
        match self {
            ServerMessage::CallCreated { sid, .. }
            | ServerMessage::WaitConnected { sid }
            | ServerMessage::IncomingCall { sid, .. }
            | ServerMessage::Verified { sid, .. }
            | ServerMessage::Connected { sid, .. }
            | ServerMessage::Disconnected { sid, .. }
            | ServerMessage::Resumed { sid, .. }
            | ServerMessage::MediaAnswer { sid, .. }
            | ServerMessage::MediaOffer { sid, .. }
            | ServerMessage::PeerMediaState { sid, .. }
            | ServerMessage::RoomJoined { sid, .. }
            | ServerMessage::PeerList { sid, .. }
            | ServerMessage::MediaLines { sid, .. }
            | ServerMessage::ShortData { sid, .. }
            | ServerMessage::PeerVideo { sid, .. }
            | ServerMessage::PeerAudioLevels { sid, .. }
            | ServerMessage::PeersTalking { sid, .. }
            | ServerMessage::PeersNetworkQuality { sid, .. }
            | ServerMessage::AppControlMessage { sid, .. } => Some(sid),
            _ => None,
        }
    }
}

/// What was wrong with a frame, in our words: serde's messages quote the client's
/// values (unbounded, and not ours to echo), so only the position and, for a missing
/// field, the field's name (from our own schema) are kept.
fn malformed(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("line {}, column {}", e.line(), e.column());
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            format!("malformed message: not valid JSON ({at})")
        }
        Category::Data => {
            let text = e.to_string();
            let missing = text
                .strip_prefix("missing field `")
                .and_then(|r| r.split_once('`'))
                .map(|(name, _)| name)
                .filter(|name| name.len() <= 32 && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            match missing {
                Some(name) => format!("malformed message: missing field {name}"),
                None => format!(
                    "malformed message: a field is missing or has the wrong type or value, or the type is not a message type ({at})"
                ),
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
