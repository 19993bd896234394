//! Answering: `verify_call` (the callee proves it with the pushed `cc_param`),
//! `accept_call` (the first device to answer wins; the others are told), and the
//! `resume_param` a cc_param device gets to take its call back after a reconnect.

use switchboard_protocol::{DisconnectReason, DisconnectSource, ErrorCode, ServerMessage, StartFailReason};

use super::{CallTimer, Calls, Device, Phase, Side};
use crate::auth::CcClaims;
use crate::clock::Now;
use crate::core::{Cx, SessionAuth};
use crate::ids::{SessionId, Sid};
use crate::media_link::MediaCmd;

/// A `resume_param` is good for at least this long (or the service's maximum call
/// time, when longer), plus the reconnect grace.
const RESUME_PARAM_MIN_SECS: u64 = 86_400;

impl Calls {
    /// `verify_call`: a callee device takes up the call its `cc_param` names.
    pub fn verify_call(
        &mut self,
        cx: &mut Cx,
        now: Now,
        session: SessionId,
        req: Option<u64>,
        cc_param: &str,
    ) {
        if !cx.rate_ok(now, session, req) {
            return;
        }
        let Some(claims) = cx.cc_key.open(cc_param) else {
            return cx.start_failed(session, req, StartFailReason::DecodeCallParam, "cc_param is not valid");
        };
        let Some(s) = cx.presence.session(session) else { return };
        if let SessionAuth::CallParam { sid, .. } = &s.auth {
            if *sid != claims.sid {
                return cx.start_failed(
                    session,
                    req,
                    StartFailReason::InvalidParam,
                    "this session belongs to another call",
                );
            }
        }
        if s.party.service_id != claims.service_id {
            return cx.start_failed(
                session,
                req,
                StartFailReason::InvalidServiceId,
                "cc_param is for another service",
            );
        }
        if s.party.user_id != claims.user_id {
            return cx.start_failed(
                session,
                req,
                StartFailReason::InvalidUserId,
                "cc_param is for another user",
            );
        }
        let ip = s.ip.clone();
        let released = || ServerMessage::Disconnected {
            req,
            sid: claims.sid.clone(),
            reason: DisconnectReason::ReleasedCall,
            source: DisconnectSource::CloudServer,
            by_remote: false,
            user_rel_code: None,
        };
        let Some(call) = self.calls.get_mut(&claims.sid) else {
            return cx.send(session, released());
        };
        if call.connected() {
            let msg = if call.devices.iter().any(|d| d.session == session) {
                ServerMessage::Error {
                    req,
                    error: ErrorCode::WrongState,
                    reason: None,
                    message: "already connected".into(),
                }
            } else {
                ServerMessage::Disconnected {
                    req,
                    sid: claims.sid.clone(),
                    reason: DisconnectReason::MultidevAnswer,
                    source: DisconnectSource::Callee,
                    by_remote: false,
                    user_rel_code: None,
                }
            };
            return cx.send(session, msg);
        }
        if claims.exp < now.wall_ms / 1000 {
            return cx.send(session, released());
        }
        match call.devices.iter_mut().find(|d| d.session == session) {
            Some(d) => d.verified = true,
            None => call.devices.push(Device { session, verified: true, ip: ip.clone() }),
        }
        call.callee_ip = ip;
        let msg = ServerMessage::Verified {
            req,
            sid: call.sid.clone(),
            from_service_id: call.caller.service_id.clone(),
            from_user_id: call.caller.user_id.clone(),
            media_type: call.media,
            app_data: call.app_data.clone(),
        };
        let sid = call.sid.clone();
        cx.presence.link(session, &sid);
        self.changed(cx, now, &sid);
        cx.send(session, msg);
    }

    /// `accept_call` from a verified callee device: connected; the other devices are
    /// told another one answered.
    pub fn accept_call(&mut self, cx: &mut Cx, now: Now, session: SessionId, req: Option<u64>, sid: &Sid) {
        let Some(call) = self.calls.get_mut(sid) else {
            return cx.error(session, req, ErrorCode::NotFound, "no such call for this session");
        };
        if call.caller_session == Some(session) {
            return cx.error(session, req, ErrorCode::WrongState, "the caller cannot accept its own call");
        }
        let Some(device) = call.devices.iter().find(|d| d.session == session).cloned() else {
            return cx.error(session, req, ErrorCode::NotFound, "no such call for this session");
        };
        if call.phase != Phase::Ringing {
            return cx.error(session, req, ErrorCode::WrongState, "the call is not ringing");
        }
        if !device.verified {
            return cx.error(session, req, ErrorCode::WrongState, "verify_call first");
        }
        call.phase = Phase::Connected { start_ms: now.wall_ms, start: now.at };
        let from_cc_param =
            cx.presence.session(session).is_some_and(|s| matches!(s.auth, SessionAuth::CallParam { .. }));
        call.callee_device = from_cc_param.then_some(session.0);
        if call.caller_lost.is_some() {
            call.lost_since = Some(now.at);
        }
        call.ring_deadline = None;
        call.callee_ip = device.ip.clone();
        let others: Vec<SessionId> =
            call.devices.iter().map(|d| d.session).filter(|s| *s != session).collect();
        call.devices.retain(|d| d.session == session);
        let caller_session = call.caller_session;
        let max_call_ms = cx.services.get(&call.caller.service_id).map_or(0, |r| r.max_call_ms);
        let max_deadline = (max_call_ms > 0).then(|| Cx::after(now, max_call_ms));
        call.max_deadline = max_deadline;
        for other in others {
            self.drop_device(cx, other, sid, DisconnectReason::MultidevAnswer);
        }
        let resume_param = if from_cc_param { self.resume_param(cx, now, sid, session) } else { None };
        // A call-engine side hears both users' volume and network quality
        // (onUserVoiceVolumeChanged, onUserNetworkQualityChanged): the relay measures
        // them as it does in a room of two, from the first offer on.
        if caller_session.is_some_and(|c| cx.is_engine(c)) || cx.is_engine(session) {
            cx.media(MediaCmd::Room { sid: sid.clone(), speakers: 2, video: false });
        }
        let connected = |req, resume_param| ServerMessage::Connected {
            req,
            sid: sid.clone(),
            start_time: now.wall_ms / 1000,
            resume_param,
        };
        if let Some(c) = caller_session {
            cx.send(c, connected(None, None));
        }
        cx.send(session, connected(req, resume_param));
        if let Some(call) = self.calls.get(sid) {
            let (to_caller, to_callee) = (call.begin(Side::Caller), call.begin(Side::Callee));
            if let Some(c) = caller_session {
                cx.call_event(c, sid, to_caller);
            }
            cx.call_event(session, sid, to_callee);
        }
        self.changed(cx, now, sid);
        if let Some(at) = max_deadline {
            Calls::set_timer(cx, at, CallTimer::MaxTime, sid);
        }
    }

    /// Tells a callee device that another device of its user took (or declined) the
    /// call.
    pub(super) fn drop_device(
        &mut self,
        cx: &mut Cx,
        session: SessionId,
        sid: &Sid,
        reason: DisconnectReason,
    ) {
        if let Some(call) = self.calls.get(sid).filter(|_| cx.is_engine(session)) {
            for event in call.ended(Side::Callee, reason, None) {
                cx.call_event(session, sid, event);
            }
        }
        cx.presence.unlink(session, sid);
        cx.send(
            session,
            ServerMessage::Disconnected {
                req: None,
                sid: sid.clone(),
                reason,
                source: DisconnectSource::Callee,
                by_remote: false,
                user_rel_code: None,
            },
        );
    }

    /// Signs the `resume_param` of the device that answered `sid` from a cc_param
    /// session. It outlives the ring time (it is good as long as the call is live and
    /// this device is still the one that answered it).
    fn resume_param(&self, cx: &Cx, now: Now, sid: &Sid, device: SessionId) -> Option<String> {
        let call = self.calls.get(sid)?;
        let max_call_secs = cx.services.get(&call.caller.service_id).map_or(0, |r| r.max_call_ms / 1000);
        let lifetime = max_call_secs.max(RESUME_PARAM_MIN_SECS) + cx.settings.reconnect_grace_ms / 1000;
        Some(cx.cc_key.sign(&CcClaims {
            sid: sid.clone(),
            service_id: call.callee.service_id.clone(),
            user_id: call.callee.user_id.clone(),
            exp: now.wall_ms / 1000 + lifetime,
            device: Some(device.0),
        }))
    }
}
