//! Disconnect reasons, sources, start-fail reasons and release codes (SPEC §3, §4).
//!
//! The numbers are the contract: the same on client and server, on the wire and in
//! the call record.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! disconnect_reasons {
    ($($variant:ident = $code:literal, $name:literal, $when:literal;)*) => {
        /// Why a call ended. Serialized on the wire as `{"code": 1001, "name": "NORMAL"}`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DisconnectReason {
            $(#[doc = $when] $variant,)*
        }

        impl DisconnectReason {
            /// Every reason, in code order.
            pub const ALL: &'static [DisconnectReason] = &[$(DisconnectReason::$variant,)*];

            /// The contract number, e.g. 1001 for `NORMAL`.
            pub fn code(self) -> u16 {
                match self { $(DisconnectReason::$variant => $code,)* }
            }

            /// The contract name, e.g. `NORMAL`.
            pub fn name(self) -> &'static str {
                match self { $(DisconnectReason::$variant => $name,)* }
            }

            /// The reason with this number, if any.
            pub fn from_code(code: u16) -> Option<Self> {
                match code { $($code => Some(DisconnectReason::$variant),)* _ => None }
            }

            /// When it is given, in a sentence (the contract's words; `docs/reasons.md`).
            pub fn when(self) -> &'static str {
                match self { $(DisconnectReason::$variant => $when,)* }
            }
        }
    };
}

disconnect_reasons! {
    Normal = 1001, "NORMAL", "Ended without error.";
    Decline = 1002, "DECLINE", "The callee declined while it rang.";
    CellCall = 1003, "CELL_CALL", "A cellular call interrupted (client-reported).";
    InternalError = 1109, "INTERNAL_ERROR", "Internal error.";
    UserError = 1110, "USER_ERROR", "App-defined; carries `user_rel_code`.";
    InternalKitError = 1111, "INTERNAL_KIT_ERROR", "Platform error in the client kit.";
    AudioTxNoSrc = 1112, "AUDIO_TX_NO_SRC", "Microphone produced nothing (client-reported).";
    Cancel = 1201, "CANCEL", "The caller hung up before the callee answered.";
    Busy = 1202, "BUSY", "The callee is in another call or in a room.";
    NoAnswer = 1203, "NOANSWER", "Nobody answered within the ring time (also when the callee had no device online and the service has no push).";
    AlreadyGotACall = 1204, "ALREADY_GOT_A_CALL", "The caller already has an incoming call pending.";
    MultidevInUse = 1205, "MULTIDEV_IN_USE", "The same user is already in a call on another device.";
    MultidevAnswer = 1206, "MULTIDEV_ANSWER", "Answered on another device of the same user.";
    MultidevDecline = 1207, "MULTIDEV_DECLINE", "Declined on another device of the same user.";
    MaxCallTimeExceeded = 1208, "MAX_CALL_TIME_EXCEEDED", "Maximum call time reached.";
    NetworkUnstable = 1301, "NETWORK_UNSTABLE", "A side was gone (no session, or no media) past the reconnect grace.";
    PushError = 1302, "PUSH_ERROR", "notify_cb failed (no 2xx within notify_timeout_ms) and no device of the callee was ringing.";
    AuthError = 1303, "AUTH_ERROR", "Authentication failed: an expired token, a credential for another user or service, a forged cc_param.";
    ReleasedCall = 1304, "RELEASED_CALL", "The call named (by a cc_param or a resume) has already ended.";
    ServerInternalError = 1305, "SERVER_INTERNAL_ERROR", "Server internal error.";
    UnavailableNetwork = 1308, "UNAVAILABLE_NETWORK", "Local network gone (client-reported).";
    AppDestroy = 1309, "APP_DESTROY", "App or device closed (client-reported).";
    SystemSleep = 1310, "SYSTEM_SLEEP", "Device slept (client-reported).";
    SystemLogoff = 1311, "SYSTEM_LOGOFF", "OS logoff (client-reported).";
    MtuExceeded = 1312, "MTU_EXCEEDED", "MTU exceeded.";
    AppServerDataError = 1313, "APP_SERVER_DATA_ERROR", "App server data could not be delivered.";
    DesktopScreenLocked = 1314, "DESKTOP_SCREEN_LOCKED", "Screen locked (client-reported).";
    RoomIsFull = 1401, "ROOM_IS_FULL", "Group: participant limit reached.";
    AloneKickOut = 1402, "ALONE_KICK_OUT", "Group: alone in the room too long.";
    RoomNotFound = 1404, "ROOM_NOT_FOUND", "Group: room torn down while joining.";
    AnotherInstanceTryToJoin = 1405, "ANOTHER_INSTANCE_TRY_TO_JOIN", "Group: same user joined from another instance.";
    ServiceAccessTokenError = 1501, "SERVICE_ACCESS_TOKEN_ERROR", "The access token is not valid (malformed, bad signature, issued in the future).";
    ServiceInvalidId = 1502, "SERVICE_INVALID_ID", "The credential names no service here, or an ID breaks the ID rules.";
    ServiceMaintenance = 1503, "SERVICE_MAINTENANCE", "The server is in maintenance (draining): no new calls.";
    ServiceBusy = 1504, "SERVICE_BUSY", "The server cannot take a new call now (over capacity, or its disk cannot record it).";
    ServiceInternalError = 1505, "SERVICE_INTERNAL_ERROR", "Gateway internal error.";
    ServiceHttpError = 1506, "SERVICE_HTTP_ERROR", "Client-side: HTTP error reaching the server.";
    ServiceHttpConnectionTimeOut = 1507, "SERVICE_HTTP_CONNECTION_TIME_OUT", "Client-side: connection timed out.";
    ServiceHttpInvalidPeerCert = 1508, "SERVICE_HTTP_INVALID_PEER_CERT", "Client-side: invalid peer certificate.";
    ServiceHttpConnectFail = 1509, "SERVICE_HTTP_CONNECT_FAIL", "Client-side: connect failed.";
    ServiceHttpInvalidUrl = 1510, "SERVICE_HTTP_INVALID_URL", "Client-side: invalid URL.";
    ServiceIncompatiblePlanetkitVer = 1511, "SERVICE_INCOMPATIBLE_PLANETKIT_VER", "The client speaks a protocol version this server no longer does.";
    ServiceTooManyRequests = 1512, "SERVICE_TOO_MANY_REQUESTS", "Too many requests: a rate limit (connections per address, calls per user, messages per session).";
    WebMediaAbort = 1601, "WEB_GUM_ABORT_ERROR", "Web: getUserMedia AbortError.";
    WebMediaNotAllowed = 1602, "WEB_GUM_NOT_ALLOWED_ERROR", "Web: getUserMedia NotAllowedError.";
    WebMediaNotFound = 1603, "WEB_GUM_NOT_FOUND_ERROR", "Web: getUserMedia NotFoundError.";
    WebMediaNotReadable = 1604, "WEB_GUM_NOT_READABLE_ERROR", "Web: getUserMedia NotReadableError.";
    WebMediaOverconstrained = 1605, "WEB_GUM_OVERCONSTRAINED_ERROR", "Web: getUserMedia OverconstrainedError.";
    WebMediaSecurity = 1606, "WEB_GUM_SECURITY_ERROR", "Web: getUserMedia SecurityError.";
    WebMediaType = 1607, "WEB_GUM_TYPE_ERROR", "Web: getUserMedia TypeError.";
    WebNoMediaPackets = 1608, "WEB_NO_MEDIA_PACKETS", "Web: no media packets.";
    WebConnectFailedByServer = 1609, "WEB_CONNECT_FAILED_BY_SERVER", "Web: connect failed by server.";
    WebPeerConnectionDisconnected = 1610, "WEB_PEER_CONNECTION_DISCONNECTED", "Web: peer connection stayed disconnected 30 s.";
    WebSignalingDropped = 1611, "WEB_SIGNALING_DROPPED", "Web: signaling dropped.";
    WebBrowserNotSupported = 1612, "WEB_BROWSER_NOT_SUPPORTED", "Web: browser not supported.";
}

impl DisconnectReason {
    /// Whether a client may report this reason in `end_call`. Reasons the server
    /// decides (BUSY, NOANSWER, PUSH_ERROR, …) cannot be claimed by a client.
    pub fn is_client_reportable(self) -> bool {
        use DisconnectReason::*;
        matches!(
            self,
            Normal
                | CellCall
                | InternalError
                | UserError
                | InternalKitError
                | AudioTxNoSrc
                | UnavailableNetwork
                | AppDestroy
                | SystemSleep
                | SystemLogoff
                | MtuExceeded
                | DesktopScreenLocked
        ) || (1601..=1612).contains(&self.code())
    }

    /// The debug release code written to the call record (`rel_code`, `rel_code_str`).
    pub fn rel_code(self) -> RelCode {
        use DisconnectReason::*;
        match self {
            Normal => RelCode::NORMAL,
            Cancel => RelCode::CANCEL,
            Decline => RelCode::REJECT,
            Busy => RelCode::USER_BUSY,
            NoAnswer => RelCode::NO_ANSWER,
            MultidevInUse => RelCode::MULTI_DEV_OTHER_DEV_IN_USE,
            MultidevAnswer => RelCode::MULTI_DEV_ANSWER,
            MultidevDecline => RelCode::MULTI_DEV_REJECT,
            MaxCallTimeExceeded => RelCode::MAX_CALL_TIME_EXCEED,
            PushError => RelCode::PUSH_ERROR,
            AuthError | ServiceAccessTokenError => RelCode::AUTH_ERROR,
            NetworkUnstable => RelCode::SESS_KEEPALIVE_TIMEOUT,
            AlreadyGotACall => RelCode::ALREADY_GOT_A_CALL,
            UserError => RelCode::USER_RELEASE,
            InternalError | ServerInternalError | ServiceInternalError => RelCode::INTERNAL_ERROR,
            r if r.is_client_reportable() => RelCode::CLIENT_RELEASE,
            _ => RelCode::INTERNAL_ERROR,
        }
    }

    /// The Q.850 cause for the call record's `terminate`, for a call that never
    /// connected. A connected call is always 16.
    pub fn q850_unconnected(self) -> u16 {
        use DisconnectReason::*;
        match self {
            Busy | MultidevInUse | AlreadyGotACall => 17,
            NoAnswer => 18,
            Decline | MultidevDecline => 21,
            Cancel => 77,
            _ => 127,
        }
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

#[derive(Serialize, Deserialize)]
struct CodeName<'a> {
    code: u16,
    #[serde(borrow, default)]
    name: std::borrow::Cow<'a, str>,
}

impl Serialize for DisconnectReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        CodeName { code: self.code(), name: self.name().into() }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for DisconnectReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let cn = CodeName::deserialize(d)?;
        DisconnectReason::from_code(cn.code)
            .ok_or_else(|| D::Error::custom(format!("unknown disconnect reason {}", cn.code)))
    }
}

/// Who ended a call. Serialized as `{"code": 1, "name": "callee"}`; the number is
/// `releaser_type` in the call record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectSource {
    /// The 1-to-1 callee.
    Callee,
    /// The 1-to-1 caller.
    Caller,
    /// A group-call participant.
    Participant,
    /// The Switchboard server.
    CloudServer,
    /// The customer's app server (through the REST API).
    AppServer,
}

impl DisconnectSource {
    /// The contract number (`releaser_type`).
    pub fn code(self) -> u8 {
        match self {
            DisconnectSource::Callee => 1,
            DisconnectSource::Caller => 2,
            DisconnectSource::Participant => 3,
            DisconnectSource::CloudServer => 4,
            DisconnectSource::AppServer => 5,
        }
    }

    /// The lowercase name the web SDK uses.
    pub fn name(self) -> &'static str {
        match self {
            DisconnectSource::Callee => "callee",
            DisconnectSource::Caller => "caller",
            DisconnectSource::Participant => "participant",
            DisconnectSource::CloudServer => "cloud_server",
            DisconnectSource::AppServer => "app_server",
        }
    }

    /// The source with this number, if any.
    pub fn from_code(code: u8) -> Option<Self> {
        [Self::Callee, Self::Caller, Self::Participant, Self::CloudServer, Self::AppServer]
            .into_iter()
            .find(|s| s.code() == code)
    }
}

impl Serialize for DisconnectSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        CodeName { code: self.code().into(), name: self.name().into() }.serialize(s)
    }
}

impl<'de> Deserialize<'de> for DisconnectSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let cn = CodeName::deserialize(d)?;
        u8::try_from(cn.code)
            .ok()
            .and_then(DisconnectSource::from_code)
            .ok_or_else(|| D::Error::custom(format!("unknown disconnect source {}", cn.code)))
    }
}

/// Why `makeCall` / `verifyCall` was refused before any call existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFailReason {
    /// A parameter is missing or malformed.
    InvalidParam,
    /// The object already exists (e.g. a duplicate request).
    AlreadyExist,
    /// The `cc_param` could not be decoded or its signature is wrong.
    DecodeCallParam,
    /// The caller called itself.
    IdConflict,
    /// A user ID breaks the ID rules or does not match the session.
    InvalidUserId,
    /// A service ID breaks the ID rules or names another service.
    InvalidServiceId,
    /// The API key is not known.
    InvalidApiKey,
    /// A room ID breaks the ID rules.
    InvalidRoomId,
    /// App server data is over 4,096 bytes.
    TooLongAppServerData,
    /// Web only.
    BrowserNotSupported,
    /// The media type is neither `audio` nor `video`.
    InvalidMediaType,
    /// Something failed inside the server.
    InternalInitializationError,
}

impl StartFailReason {
    /// Every start-fail reason.
    pub const ALL: [StartFailReason; 12] = [
        StartFailReason::InvalidParam,
        StartFailReason::AlreadyExist,
        StartFailReason::DecodeCallParam,
        StartFailReason::IdConflict,
        StartFailReason::InvalidUserId,
        StartFailReason::InvalidServiceId,
        StartFailReason::InvalidApiKey,
        StartFailReason::InvalidRoomId,
        StartFailReason::TooLongAppServerData,
        StartFailReason::BrowserNotSupported,
        StartFailReason::InvalidMediaType,
        StartFailReason::InternalInitializationError,
    ];

    /// The native SDK number (NONE 0, INVALID_PARAM 1, …, INTERNAL 999).
    pub fn native_code(self) -> u16 {
        use StartFailReason::*;
        match self {
            InvalidParam => 1,
            AlreadyExist => 2,
            DecodeCallParam => 3,
            IdConflict => 5,
            InvalidUserId => 7,
            InvalidServiceId => 8,
            InvalidApiKey => 9,
            InvalidRoomId => 10,
            TooLongAppServerData => 11,
            InvalidMediaType => 1,
            BrowserNotSupported | InternalInitializationError => 999,
        }
    }

    /// The web SDK string, e.g. `invalid_user_id`.
    pub fn as_str(self) -> &'static str {
        use StartFailReason::*;
        match self {
            InvalidParam => "invalid_param",
            AlreadyExist => "already_exist",
            DecodeCallParam => "decode_call_param",
            IdConflict => "id_conflict",
            InvalidUserId => "invalid_user_id",
            InvalidServiceId => "invalid_service_id",
            InvalidApiKey => "invalid_api_key",
            InvalidRoomId => "invalid_room_id",
            TooLongAppServerData => "too_long_app_server_data",
            BrowserNotSupported => "browser_not_supported",
            InvalidMediaType => "invalid_media_type",
            InternalInitializationError => "internal_initialization_error",
        }
    }
}

/// The debug release code of a call record (`rel_code` and `rel_code_str`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelCode {
    /// The number, e.g. 2.
    pub code: u16,
    /// Its name, e.g. `CANCEL`.
    pub name: &'static str,
}

#[allow(missing_docs)]
impl RelCode {
    pub const NORMAL: RelCode = RelCode { code: 1, name: "NORMAL" };
    pub const CANCEL: RelCode = RelCode { code: 2, name: "CANCEL" };
    pub const REJECT: RelCode = RelCode { code: 3, name: "REJECT" };
    pub const USER_BUSY: RelCode = RelCode { code: 4, name: "USER_BUSY" };
    pub const NO_ANSWER: RelCode = RelCode { code: 5, name: "NO_ANSWER" };
    pub const MULTI_DEV_OTHER_DEV_IN_USE: RelCode = RelCode { code: 6, name: "MULTI_DEV_OTHER_DEV_IN_USE" };
    pub const MULTI_DEV_ANSWER: RelCode = RelCode { code: 7, name: "MULTI_DEV_ANSWER" };
    pub const MULTI_DEV_REJECT: RelCode = RelCode { code: 8, name: "MULTI_DEV_REJECT" };
    /// Switchboard's own: the caller had an incoming call pending.
    pub const ALREADY_GOT_A_CALL: RelCode = RelCode { code: 9, name: "ALREADY_GOT_A_CALL" };
    /// Switchboard's own: a party ended the call with USER_ERROR and a user_rel_code.
    pub const USER_RELEASE: RelCode = RelCode { code: 10, name: "USER_RELEASE" };
    /// Switchboard's own: a party ended the call with a client-reported reason.
    pub const CLIENT_RELEASE: RelCode = RelCode { code: 11, name: "CLIENT_RELEASE" };
    pub const MAX_CALL_TIME_EXCEED: RelCode = RelCode { code: 122, name: "MAX_CALL_TIME_EXCEED" };
    pub const INTERNAL_ERROR: RelCode = RelCode { code: 200, name: "INTERNAL_ERROR" };
    pub const AUTH_ERROR: RelCode = RelCode { code: 202, name: "AUTH_ERROR" };
    pub const PUSH_ERROR: RelCode = RelCode { code: 205, name: "PUSH_ERROR" };
    pub const SESS_KEEPALIVE_TIMEOUT: RelCode = RelCode { code: 218, name: "SESS_KEEPALIVE_TIMEOUT" };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in DisconnectReason::ALL {
            assert!(seen.insert(r.code()));
            assert_eq!(DisconnectReason::from_code(r.code()), Some(*r));
            let json = serde_json::to_string(r).unwrap();
            assert_eq!(serde_json::from_str::<DisconnectReason>(&json).unwrap(), *r);
        }
        assert_eq!(DisconnectReason::ALL.len(), 55);
    }

    #[test]
    fn spec_numbers() {
        assert_eq!(DisconnectReason::Normal.code(), 1001);
        assert_eq!(DisconnectReason::ServiceTooManyRequests.code(), 1512);
        assert_eq!(DisconnectReason::MultidevDecline.name(), "MULTIDEV_DECLINE");
        assert_eq!(DisconnectSource::AppServer.code(), 5);
        assert_eq!(
            serde_json::to_string(&DisconnectSource::Callee).unwrap(),
            r#"{"code":1,"name":"callee"}"#
        );
        assert_eq!(StartFailReason::TooLongAppServerData.native_code(), 11);
        assert_eq!(
            serde_json::to_string(&StartFailReason::DecodeCallParam).unwrap(),
            r#""decode_call_param""#
        );
    }

    #[test]
    fn client_cannot_claim_server_reasons() {
        assert!(DisconnectReason::CellCall.is_client_reportable());
        assert!(DisconnectReason::WebSignalingDropped.is_client_reportable());
        assert!(!DisconnectReason::Busy.is_client_reportable());
        assert!(!DisconnectReason::PushError.is_client_reportable());
    }
}
