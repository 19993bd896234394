//! The call-engine face (seed 004, TUICallEvent): the events an app written the Tencent
//! way listens for, with exactly seed 004's names, payload fields and types, and the
//! numbers they carry (SPEC §6).
//!
//! On the wire an event is the `event` of a `call_event` frame, tagged by `name`:
//! `{"type":"call_event","call_id":"…","event":{"name":"onUserReject","userId":"carol"}}`.
//! The server sends the call's life (invitations, answers, begin, end, media type);
//! the SDKs add what they see themselves (volumes and network quality from the room's
//! frames, a user's audio and video, an expired token) under the same names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Default invitation timeout of this face, seconds.
pub const DEFAULT_INVITE_TIMEOUT_SECS: u32 = 30;

macro_rules! number_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $v:ident = $n:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(into = "u8", try_from = "u8")]
        pub enum $name {
            $($(#[$vdoc])* $v = $n),+
        }

        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                v as u8
            }
        }

        impl TryFrom<u8> for $name {
            type Error = String;
            fn try_from(n: u8) -> Result<Self, String> {
                match n {
                    $($n => Ok($name::$v),)+
                    _ => Err(format!("{} is not a {}", n, stringify!($name))),
                }
            }
        }
    };
}

number_enum!(
    /// `callMediaType`: what a call carries.
    CallMediaType {
        /// Not known.
        Unknown = 0,
        /// Voice only.
        Audio = 1,
        /// Voice and video.
        Video = 2,
    }
);

number_enum!(
    /// `callRole`: whether this user called or was called.
    CallRole {
        /// No call.
        None = 0,
        /// The inviter.
        Caller = 1,
        /// An invitee.
        Called = 2,
    }
);

number_enum!(
    /// Why a call ended, or why it never connected for someone (`onCallEnd.reason`,
    /// `onCallNotConnected.reason`).
    CallEndReason {
        /// Not known.
        Unknown = 0,
        /// Someone hung up.
        Hangup = 1,
        /// The invitee rejected it.
        Reject = 2,
        /// The invitee did not answer in time.
        NoResponse = 3,
        /// The invitee could not be reached.
        Offline = 4,
        /// The invitee was in another call.
        LineBusy = 5,
        /// The inviter cancelled it before it was answered.
        Canceled = 6,
        /// Another device of this user answered.
        OtherDeviceAccepted = 7,
        /// Another device of this user rejected it.
        OtherDeviceReject = 8,
        /// The server ended it.
        EndByServer = 9,
    }
);

number_enum!(
    /// A user's network quality (`onUserNetworkQualityChanged`), as the relay grades it.
    NetworkQualityGrade {
        /// Not known yet.
        Unknown = 0,
        /// Excellent.
        Excellent = 1,
        /// Good.
        Good = 2,
        /// Poor.
        Poor = 3,
        /// Bad.
        Bad = 4,
        /// Very bad.
        Vbad = 5,
        /// No media getting through.
        Down = 6,
    }
);

impl CallMediaType {
    /// The engine's number for a call's media type.
    pub fn of(media: crate::MediaType) -> Self {
        match media {
            crate::MediaType::Audio => CallMediaType::Audio,
            crate::MediaType::Video => CallMediaType::Video,
        }
    }

    /// The media type this number means, if audio or video.
    pub fn media(self) -> Option<crate::MediaType> {
        match self {
            CallMediaType::Audio => Some(crate::MediaType::Audio),
            CallMediaType::Video => Some(crate::MediaType::Video),
            CallMediaType::Unknown => None,
        }
    }
}

/// One user's network quality in `onUserNetworkQualityChanged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkQuality {
    /// The user.
    pub user_id: String,
    /// The grade.
    pub quality: NetworkQualityGrade,
}

/// A TUICallEvent (seed 004), tagged by its `name` on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all_fields = "camelCase")]
pub enum EngineEvent {
    /// A request of this call failed, or something went wrong that the app must show.
    #[serde(rename = "onError")]
    Error {
        /// The code: a disconnect reason's or start failure's number.
        code: i32,
        /// What happened.
        msg: String,
    },
    /// An invitation to a call (to every device of an invitee).
    #[serde(rename = "onCallReceived")]
    CallReceived {
        /// The inviter.
        caller_id: String,
        /// Everyone invited so far (the receiver too).
        callee_id_list: Vec<String>,
        /// The group, if the app gave one (empty otherwise).
        group_id: String,
        /// Audio or video.
        call_media_type: CallMediaType,
        /// The inviter's `userData` (empty if none).
        user_data: String,
        /// The inviter's nickname (`setSelfInfo`), if it set one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller_nickname: Option<String>,
        /// The inviter's avatar URL (`setSelfInfo`), if it set one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caller_avatar_url: Option<String>,
    },
    /// The call is over for this user before it began (see seed 004's rules: the
    /// inviter's ID when the inviter cancelled, the user's own otherwise).
    #[serde(rename = "onCallCancelled")]
    CallCancelled {
        /// Whose doing, as seed 004 says.
        user_id: String,
    },
    /// The call connected for this user.
    #[serde(rename = "onCallBegin")]
    CallBegin {
        /// The call's room.
        #[serde(rename = "roomID")]
        room_id: u32,
        /// Audio or video.
        call_media_type: CallMediaType,
        /// Caller or callee.
        call_role: CallRole,
    },
    /// The call that began is over for this user.
    #[serde(rename = "onCallEnd")]
    CallEnd {
        /// The call's room.
        #[serde(rename = "roomID")]
        room_id: u32,
        /// Audio or video.
        call_media_type: CallMediaType,
        /// Caller or callee.
        call_role: CallRole,
        /// How long this user was in the call, seconds.
        total_time: f64,
        /// Why it ended.
        reason: CallEndReason,
    },
    /// The call's media type changed.
    #[serde(rename = "onCallMediaTypeChanged")]
    CallMediaTypeChanged {
        /// Before.
        old_call_media_type: CallMediaType,
        /// After.
        new_call_media_type: CallMediaType,
    },
    /// An invitee rejected the call.
    #[serde(rename = "onUserReject")]
    UserReject {
        /// Who.
        user_id: String,
    },
    /// An invitee did not answer in time (or could not be reached).
    #[serde(rename = "onUserNoResponse")]
    UserNoResponse {
        /// Who.
        user_id: String,
    },
    /// An invitee was in another call (or ignored the invitation).
    #[serde(rename = "onUserLineBusy")]
    UserLineBusy {
        /// Who.
        user_id: String,
    },
    /// Someone joined the call.
    #[serde(rename = "onUserJoin")]
    UserJoin {
        /// Who.
        user_id: String,
    },
    /// Someone left the call.
    #[serde(rename = "onUserLeave")]
    UserLeave {
        /// Who.
        user_id: String,
    },
    /// Someone was invited (at the start or mid-call).
    #[serde(rename = "onUserInviting")]
    UserInviting {
        /// Who.
        user_id: String,
    },
    /// Whether a user sends video.
    #[serde(rename = "onUserVideoAvailable")]
    UserVideoAvailable {
        /// Who.
        user_id: String,
        /// Whether the user's camera is on.
        is_video_available: bool,
    },
    /// Whether a user sends audio.
    #[serde(rename = "onUserAudioAvailable")]
    UserAudioAvailable {
        /// Who.
        user_id: String,
        /// Whether the user's microphone is on.
        is_audio_available: bool,
    },
    /// Every user's volume, 0-100.
    #[serde(rename = "onUserVoiceVolumeChanged")]
    UserVoiceVolumeChanged {
        /// User ID → volume.
        volume_map: BTreeMap<String, u8>,
    },
    /// Every user's network quality.
    #[serde(rename = "onUserNetworkQualityChanged")]
    UserNetworkQualityChanged {
        /// One entry per user.
        network_quality_list: Vec<NetworkQuality>,
    },
    /// This user signed in elsewhere (without multi-device), and this instance is out.
    #[serde(rename = "onKickedOffline")]
    KickedOffline {},
    /// This user's access token expired.
    #[serde(rename = "onUserSigExpired")]
    UserSigExpired {},
    /// The call did not connect for this user (or is over for it before it began), and
    /// why.
    #[serde(rename = "onCallNotConnected")]
    CallNotConnected {
        /// Why.
        reason: CallEndReason,
        /// The user it did not connect for: the receiver itself.
        user_id: String,
    },
}

impl EngineEvent {
    /// The event's seed 004 name (`onUserReject`, …).
    pub fn name(&self) -> &'static str {
        match self {
            EngineEvent::Error { .. } => "onError",
            EngineEvent::CallReceived { .. } => "onCallReceived",
            EngineEvent::CallCancelled { .. } => "onCallCancelled",
            EngineEvent::CallBegin { .. } => "onCallBegin",
            EngineEvent::CallEnd { .. } => "onCallEnd",
            EngineEvent::CallMediaTypeChanged { .. } => "onCallMediaTypeChanged",
            EngineEvent::UserReject { .. } => "onUserReject",
            EngineEvent::UserNoResponse { .. } => "onUserNoResponse",
            EngineEvent::UserLineBusy { .. } => "onUserLineBusy",
            EngineEvent::UserJoin { .. } => "onUserJoin",
            EngineEvent::UserLeave { .. } => "onUserLeave",
            EngineEvent::UserInviting { .. } => "onUserInviting",
            EngineEvent::UserVideoAvailable { .. } => "onUserVideoAvailable",
            EngineEvent::UserAudioAvailable { .. } => "onUserAudioAvailable",
            EngineEvent::UserVoiceVolumeChanged { .. } => "onUserVoiceVolumeChanged",
            EngineEvent::UserNetworkQualityChanged { .. } => "onUserNetworkQualityChanged",
            EngineEvent::KickedOffline {} => "onKickedOffline",
            EngineEvent::UserSigExpired {} => "onUserSigExpired",
            EngineEvent::CallNotConnected { .. } => "onCallNotConnected",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_carry_seed_004_names_fields_and_types() {
        let cases = [
            (
                EngineEvent::CallReceived {
                    caller_id: "alice".into(),
                    callee_id_list: vec!["bob".into(), "carol".into()],
                    group_id: String::new(),
                    call_media_type: CallMediaType::Video,
                    user_data: "x".into(),
                    caller_nickname: None,
                    caller_avatar_url: None,
                },
                json!({"name": "onCallReceived", "callerId": "alice", "calleeIdList": ["bob", "carol"],
                       "groupId": "", "callMediaType": 2, "userData": "x"}),
            ),
            (
                EngineEvent::CallEnd {
                    room_id: 7,
                    call_media_type: CallMediaType::Audio,
                    call_role: CallRole::Called,
                    total_time: 12.5,
                    reason: CallEndReason::Hangup,
                },
                json!({"name": "onCallEnd", "roomID": 7, "callMediaType": 1, "callRole": 2,
                       "totalTime": 12.5, "reason": 1}),
            ),
            (
                EngineEvent::UserVideoAvailable { user_id: "bob".into(), is_video_available: true },
                json!({"name": "onUserVideoAvailable", "userId": "bob", "isVideoAvailable": true}),
            ),
            (
                EngineEvent::UserNetworkQualityChanged {
                    network_quality_list: vec![NetworkQuality {
                        user_id: "bob".into(),
                        quality: NetworkQualityGrade::Good,
                    }],
                },
                json!({"name": "onUserNetworkQualityChanged",
                       "networkQualityList": [{"userId": "bob", "quality": 2}]}),
            ),
            (EngineEvent::KickedOffline {}, json!({"name": "onKickedOffline"})),
            (
                EngineEvent::CallMediaTypeChanged {
                    old_call_media_type: CallMediaType::Audio,
                    new_call_media_type: CallMediaType::Video,
                },
                json!({"name": "onCallMediaTypeChanged", "oldCallMediaType": 1, "newCallMediaType": 2}),
            ),
        ];
        for (event, wire) in cases {
            assert_eq!(serde_json::to_value(&event).unwrap(), wire);
            assert_eq!(wire["name"], event.name());
            let back: EngineEvent = serde_json::from_value(wire).unwrap();
            assert_eq!(back, event);
        }
    }

    #[test]
    fn numbers_are_spec_6() {
        assert_eq!(u8::from(CallEndReason::EndByServer), 9);
        assert_eq!(u8::from(CallEndReason::OtherDeviceAccepted), 7);
        assert_eq!(u8::from(CallRole::Caller), 1);
        assert!(CallMediaType::try_from(3).is_err());
        assert!(serde_json::from_value::<EngineEvent>(json!({"name": "onCallBegin", "roomID": 1,
            "callMediaType": 5, "callRole": 1}))
        .is_err());
    }
}
