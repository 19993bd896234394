//! The call-engine face of a 1-to-1 call: `accept`, `reject` and `ignore` of a ringing
//! call by a callee device, and the seed 004 events an engine session hears at each
//! step of the call (ringing, connected, ended), derived from the same reasons the
//! PlanetKit face sees.

use std::collections::BTreeMap;
use std::time::Duration;

use switchboard_protocol::engine::{
    CallEndReason, CallMediaType, CallRole, NetworkQuality, NetworkQualityGrade,
};
use switchboard_protocol::{DisconnectReason, DisconnectSource, EngineEvent, ErrorCode};

use super::{Call, Calls, Device, Phase, Side};
use crate::clock::Now;
use crate::core::presence::Profile;
use crate::core::{Cx, SessionAuth};
use crate::ids::{SessionId, Sid};
use crate::media_link::PartyKey;

/// A 1-to-1 call's `roomID`: a number drawn from its sid, the same on both sides.
pub(crate) fn room_number(sid: &Sid) -> u32 {
    let hex: String = sid.as_str().chars().filter(char::is_ascii_hexdigit).collect();
    let tail = &hex[hex.len().saturating_sub(8)..];
    (u32::from_str_radix(tail, 16).unwrap_or(1) & 0x7fff_ffff).max(1)
}

/// The engine's reason for a call that connected and ended.
fn end_reason(reason: DisconnectReason) -> CallEndReason {
    match reason {
        DisconnectReason::Normal => CallEndReason::Hangup,
        r if r.is_client_reportable() => CallEndReason::Hangup,
        _ => CallEndReason::EndByServer,
    }
}

impl Call {
    fn media_type(&self) -> CallMediaType {
        CallMediaType::of(self.media)
    }

    /// `onCallReceived` for a callee device; `caller` is the caller's profile.
    pub(super) fn received(&self, caller: Profile) -> EngineEvent {
        EngineEvent::CallReceived {
            caller_id: self.caller.user_id.clone(),
            callee_id_list: vec![self.callee.user_id.clone()],
            group_id: String::new(),
            call_media_type: self.media_type(),
            user_data: self.app_data.clone().unwrap_or_default(),
            caller_nickname: caller.nickname,
            caller_avatar_url: caller.avatar_url,
        }
    }

    /// `onCallBegin` for one side.
    pub(super) fn begin(&self, side: Side) -> EngineEvent {
        EngineEvent::CallBegin {
            room_id: room_number(&self.sid),
            call_media_type: self.media_type(),
            call_role: role(side),
        }
    }

    /// What one side hears when the call ends with `reason`, by seed 004's rules.
    pub(super) fn ended(
        &self,
        side: Side,
        reason: DisconnectReason,
        billable: Option<u64>,
    ) -> Vec<EngineEvent> {
        let (caller, callee) = (self.caller.user_id.clone(), self.callee.user_id.clone());
        if let Some(ms) = billable.filter(|_| self.connected()) {
            return vec![EngineEvent::CallEnd {
                room_id: room_number(&self.sid),
                call_media_type: self.media_type(),
                call_role: role(side),
                total_time: Duration::from_millis(ms).as_secs_f64(),
                reason: end_reason(reason),
            }];
        }
        use DisconnectReason as D;
        let why = match reason {
            D::Cancel => CallEndReason::Canceled,
            D::Decline => CallEndReason::Reject,
            D::NoAnswer => CallEndReason::NoResponse,
            D::PushError => CallEndReason::Offline,
            D::Busy => CallEndReason::LineBusy,
            D::MultidevAnswer => CallEndReason::OtherDeviceAccepted,
            D::MultidevDecline => CallEndReason::OtherDeviceReject,
            _ => CallEndReason::EndByServer,
        };
        let mut events = Vec::new();
        match side {
            Side::Caller => {
                let about = callee.clone();
                match reason {
                    D::Decline => events.push(EngineEvent::UserReject { user_id: about }),
                    D::NoAnswer | D::PushError => events.push(EngineEvent::UserNoResponse { user_id: about }),
                    D::Busy => events.push(EngineEvent::UserLineBusy { user_id: about }),
                    D::Cancel => {}
                    other => events
                        .push(EngineEvent::Error { code: i32::from(other.code()), msg: other.to_string() }),
                }
                events.push(EngineEvent::CallCancelled { user_id: caller.clone() });
                events.push(EngineEvent::CallNotConnected { reason: why, user_id: caller });
            }
            Side::Callee => {
                // Cancelled by the caller: the caller's ID; otherwise the callee's own.
                let by = if reason == D::Cancel { caller } else { callee.clone() };
                events.push(EngineEvent::CallCancelled { user_id: by });
                events.push(EngineEvent::CallNotConnected { reason: why, user_id: callee });
            }
        }
        events
    }
}

fn role(side: Side) -> CallRole {
    match side {
        Side::Caller => CallRole::Caller,
        Side::Callee => CallRole::Called,
    }
}

impl Calls {
    /// `accept` of a ringing 1-to-1 call by a callee device (an engine device it rings
    /// on, or a session opened with its `cc_param`): `verify_call` and `accept_call` in
    /// one.
    pub fn engine_accept(&mut self, cx: &mut Cx, now: Now, session: SessionId, req: Option<u64>, sid: &Sid) {
        if !self.claim_device(cx, session, req, sid) {
            return;
        }
        if let Some(d) =
            self.calls.get_mut(sid).and_then(|c| c.devices.iter_mut().find(|d| d.session == session))
        {
            d.verified = true;
        }
        self.accept_call(cx, now, session, req, sid);
    }

    /// `reject` (DECLINE) or `ignore` (BUSY) of a ringing 1-to-1 call by a callee
    /// device; the user's other devices stop ringing.
    pub fn engine_decline(
        &mut self,
        cx: &mut Cx,
        now: Now,
        session: SessionId,
        req: Option<u64>,
        sid: &Sid,
        reason: DisconnectReason,
    ) {
        if !self.claim_device(cx, session, req, sid) {
            return;
        }
        let Some(call) = self.calls.get_mut(sid) else { return };
        let others: Vec<SessionId> =
            call.devices.iter().map(|d| d.session).filter(|s| *s != session).collect();
        call.devices.retain(|d| d.session == session);
        for other in others {
            self.drop_device(cx, other, sid, DisconnectReason::MultidevDecline);
        }
        self.finish(cx, now, sid, reason, DisconnectSource::Callee, Some((session, req)), None);
    }

    /// Whether `session` is a callee device of the ringing call `sid` (adding a
    /// session opened with its `cc_param`); if not, it is told why.
    fn claim_device(&mut self, cx: &mut Cx, session: SessionId, req: Option<u64>, sid: &Sid) -> bool {
        let Some(s) = cx.presence.session(session) else { return false };
        let (party, ip) = (s.party.clone(), s.ip.clone());
        let by_param = matches!(&s.auth, SessionAuth::CallParam { sid: own, .. } if own == sid);
        let Some(call) = self.calls.get_mut(sid).filter(|c| c.callee == party) else {
            cx.error(session, req, ErrorCode::NotFound, "no such call for this user");
            return false;
        };
        if call.phase != Phase::Ringing {
            cx.error(session, req, ErrorCode::WrongState, "the call is not ringing");
            return false;
        }
        if !call.devices.iter().any(|d| d.session == session) {
            if !by_param {
                cx.error(session, req, ErrorCode::NotFound, "no such call for this session");
                return false;
            }
            call.devices.push(Device { session, verified: false, ip });
            cx.presence.link(session, sid);
        }
        true
    }
}

impl Calls {
    /// `switch_call_media` of a 1-to-1 call by either side: both hear
    /// `onCallMediaTypeChanged`, and the record carries the media type it ended with.
    pub fn switch_media(
        &mut self,
        cx: &mut Cx,
        now: Now,
        session: SessionId,
        req: Option<u64>,
        sid: &Sid,
        media_type: &str,
    ) {
        let Some(call) = self.calls.get_mut(sid).filter(|c| c.sessions().any(|s| s == session)) else {
            return cx.error(session, req, ErrorCode::NotFound, "no such call for this session");
        };
        let Some(media) = switchboard_protocol::MediaType::parse(media_type) else {
            return cx.error(session, req, ErrorCode::InvalidParam, "media_type must be audio or video");
        };
        cx.send(session, switchboard_protocol::ServerMessage::Done { req });
        if media == call.media {
            return;
        }
        let old = call.media_type();
        call.media = media;
        let event = EngineEvent::CallMediaTypeChanged {
            old_call_media_type: old,
            new_call_media_type: call.media_type(),
        };
        let sessions: Vec<SessionId> = call.sessions().collect();
        for s in sessions {
            cx.call_event(s, sid, event.clone());
        }
        self.changed(cx, now, sid);
    }
}

impl Calls {
    /// The relay's audio levels of an engine call (every 500 ms): both users' volume,
    /// 0-100, to its engine sessions.
    pub fn levels(&mut self, cx: &mut Cx, sid: &Sid, levels: Vec<(PartyKey, u8, bool)>) {
        let Some(call) = self.calls.get(sid).filter(|c| c.connected()) else { return };
        let volume_map: BTreeMap<String, u8> =
            levels.into_iter().filter_map(|(p, level, _)| Some((call.user_of(&p)?, level))).collect();
        call.tell(cx, EngineEvent::UserVoiceVolumeChanged { volume_map });
    }

    /// The relay's network grades of an engine call (every 2 s), to its engine
    /// sessions.
    pub fn quality(&mut self, cx: &mut Cx, sid: &Sid, quality: Vec<(PartyKey, u8)>) {
        let Some(call) = self.calls.get(sid).filter(|c| c.connected()) else { return };
        let network_quality_list = quality
            .into_iter()
            .filter_map(|(p, grade)| {
                Some(NetworkQuality {
                    user_id: call.user_of(&p)?,
                    quality: NetworkQualityGrade::try_from(grade).unwrap_or(NetworkQualityGrade::Unknown),
                })
            })
            .collect();
        call.tell(cx, EngineEvent::UserNetworkQualityChanged { network_quality_list });
    }
}

impl Call {
    /// The user ID of the relay's party of this call.
    fn user_of(&self, party: &PartyKey) -> Option<String> {
        match Side::of_party(party)? {
            Side::Caller => Some(self.caller.user_id.clone()),
            Side::Callee => Some(self.callee.user_id.clone()),
        }
    }

    /// An event for both sides' engine sessions.
    fn tell(&self, cx: &mut Cx, event: EngineEvent) {
        for session in self.sessions() {
            cx.call_event(session, &self.sid, event.clone());
        }
    }
}
