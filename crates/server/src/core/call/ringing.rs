//! Ringing: `make_call` (checks, busy rules, the push to notify_cb), the callee's
//! devices rung directly (and any that comes online while it rings), the signed
//! `cc_param`, and the push's outcome.

use switchboard_protocol::record::NotifyRecord;
use switchboard_protocol::{
    ids, DisconnectReason, DisconnectSource, MediaType, ServerMessage, StartFailReason,
};

use super::{Call, CallTimer, Calls, Device, Phase};
use crate::auth::CcClaims;
use crate::clock::Now;
use crate::core::{app_data_too_long, Cx, SessionAuth};
use crate::ids::{Party, SessionId, Sid};
use crate::records::Entry;

/// A `make_call` request.
#[derive(Debug, Clone)]
pub struct MakeCall {
    /// The callee.
    pub to_user_id: String,
    /// The callee's service (default: the caller's).
    pub to_service_id: Option<String>,
    /// `audio` / `video`.
    pub media_type: String,
    /// App server data.
    pub app_data: Option<String>,
    /// Ring time of this call, at most the service's.
    pub ring_timeout_secs: Option<u32>,
}

impl Calls {
    /// `make_call`: creates the call and rings the callee, or ends it at once (busy,
    /// in use, already got a call), or refuses it (`start_failed`).
    pub fn make_call(&mut self, cx: &mut Cx, now: Now, session: SessionId, req: Option<u64>, m: MakeCall) {
        if !cx.rate_ok(now, session, req) {
            return;
        }
        let Some(s) = cx.presence.session(session) else { return };
        if s.auth != SessionAuth::Token {
            return cx.error(
                session,
                req,
                switchboard_protocol::ErrorCode::WrongState,
                "a cc_param session can only verify its call",
            );
        }
        let caller = s.party.clone();
        let caller_ip = s.ip.clone();
        let to_service_id = m.to_service_id.unwrap_or_else(|| caller.service_id.clone());
        use StartFailReason as F;
        if !ids::is_valid_user_id(&m.to_user_id) {
            return cx.start_failed(
                session,
                req,
                F::InvalidUserId,
                "to_user_id must match [A-Za-z0-9_-]{1,64}",
            );
        }
        if !ids::is_valid_service_id(&to_service_id) || to_service_id != caller.service_id {
            return cx.start_failed(
                session,
                req,
                F::InvalidServiceId,
                "to_service_id must be the caller's own service",
            );
        }
        let Some(media) = MediaType::parse(&m.media_type) else {
            return cx.start_failed(session, req, F::InvalidMediaType, "media_type must be audio or video");
        };
        if app_data_too_long(m.app_data.as_ref()) {
            return cx.start_failed(session, req, F::TooLongAppServerData, "app_data is over 4096 bytes");
        }
        if m.to_user_id == caller.user_id {
            return cx.start_failed(session, req, F::IdConflict, "a user cannot call itself");
        }
        let Some(rules) = cx.services.get(&caller.service_id).cloned() else {
            return cx.start_failed(session, req, F::InvalidServiceId, "unknown service");
        };
        let ring_ms = match m.ring_timeout_secs {
            Some(0) => {
                return cx.start_failed(session, req, F::InvalidParam, "ring_timeout_secs must be > 0")
            }
            Some(s) => (u64::from(s) * 1000).min(rules.ring_timeout_ms),
            None => rules.ring_timeout_ms,
        };

        let callee = Party::new(to_service_id, m.to_user_id);
        let sid = cx.ids.call_sid();
        let caller_calls: Vec<&Call> = self.party_calls(cx, &caller).collect();
        // A user in a room is busy for 1-to-1 calls, as in another call.
        let caller_in_use =
            caller_calls.iter().any(|c| c.caller == caller || c.connected()) || cx.presence.in_room(&caller);
        let caller_has_incoming =
            caller_calls.iter().any(|c| c.callee == caller && c.phase == Phase::Ringing);
        // Busy: in another call or a room, or rung by a group call.
        let callee_busy = cx.presence.busy(&callee);

        let ring_deadline = Cx::after(now, ring_ms);
        let call = Call {
            sid: sid.clone(),
            caller: caller.clone(),
            callee: callee.clone(),
            media,
            app_data: m.app_data,
            setup_ms: now.wall_ms,
            phase: Phase::Ringing,
            caller_session: Some(session),
            caller_ip,
            devices: Vec::new(),
            callee_device: None,
            callee_ip: String::new(),
            // Without a notify_cb URL there is no push to fail: the call rings the
            // callee's devices (and any that comes online) until its ring time ends
            // with NOANSWER, as for a callee who does not pick up.
            push_failed: false,
            cc_exp: (now.wall_ms + ring_ms) / 1000 + 60,
            ring_deadline: Some(ring_deadline),
            max_deadline: None,
            caller_lost: None,
            callee_lost: None,
            interrupted: std::time::Duration::ZERO,
            lost_since: None,
            rc_idc: rules.rc_idc.clone(),
            new_media: [false, false],
        };
        self.calls.insert(sid.clone(), call);
        cx.presence.link(session, &sid);
        cx.presence.add_call(&callee, &sid);
        cx.send(session, ServerMessage::CallCreated { req, sid: sid.clone() });

        let early = if caller_in_use {
            Some((DisconnectReason::MultidevInUse, DisconnectSource::CloudServer))
        } else if caller_has_incoming {
            Some((DisconnectReason::AlreadyGotACall, DisconnectSource::CloudServer))
        } else if callee_busy {
            Some((DisconnectReason::Busy, DisconnectSource::Callee))
        } else {
            None
        };
        if let Some((reason, source)) = early {
            return self.finish(cx, now, &sid, reason, source, None, None);
        }

        Calls::set_timer(cx, ring_deadline, CallTimer::Ring, &sid);
        if let (true, Some(param)) = (rules.has_notify, self.cc_param(cx, &sid)) {
            if let Some(call) = self.calls.get(&sid) {
                let record = NotifyRecord {
                    sid: sid.clone(),
                    from_service_id: caller.service_id.clone(),
                    from_user_id: caller.user_id.clone(),
                    to_service_id: callee.service_id.clone(),
                    to_user_id: callee.user_id.clone(),
                    media_type: media.letter().into(),
                    param,
                    app_svr_data: call.app_data.clone(),
                };
                let deadline_ms = now.wall_ms + cx.settings.notify_timeout_ms;
                cx.journal(Entry::Notify { service_id: caller.service_id.clone(), record, deadline_ms });
            }
        }
        cx.send(session, ServerMessage::WaitConnected { sid: sid.clone() });
        let devices: Vec<SessionId> = cx.presence.devices(&callee).to_vec();
        for device in devices {
            self.ring(cx, device, &sid);
        }
        self.changed(cx, now, &sid);
    }

    /// A token session opened: it rings for every call ringing for its user.
    pub fn device_online(&mut self, cx: &mut Cx, _now: Now, session: SessionId) {
        let Some(party) = cx.presence.session(session).map(|s| s.party.clone()) else { return };
        let ringing: Vec<Sid> = cx
            .presence
            .calls_of(&party)
            .iter()
            .filter(|sid| {
                self.calls.get(*sid).is_some_and(|c| c.callee == party && c.phase == Phase::Ringing)
            })
            .cloned()
            .collect();
        for sid in ringing {
            self.ring(cx, session, &sid);
        }
    }

    /// Signs the `cc_param` of a call: bound to it and its callee, useless a minute
    /// after its ring time (the call must also still be live when it is used).
    pub(crate) fn cc_param(&self, cx: &Cx, sid: &Sid) -> Option<String> {
        let call = self.calls.get(sid)?;
        Some(cx.cc_key.sign(&CcClaims {
            sid: sid.clone(),
            service_id: call.callee.service_id.clone(),
            user_id: call.callee.user_id.clone(),
            exp: call.cc_exp,
            device: None,
        }))
    }

    /// Rings a callee device directly.
    fn ring(&mut self, cx: &mut Cx, session: SessionId, sid: &Sid) {
        let Some(ip) = cx.presence.session(session).map(|s| s.ip.clone()) else { return };
        let Some(cc_param) = self.cc_param(cx, sid) else { return };
        let Some(call) = self.calls.get_mut(sid) else { return };
        if call.devices.iter().any(|d| d.session == session) {
            return;
        }
        if call.callee_ip.is_empty() {
            call.callee_ip = ip.clone();
        }
        call.devices.push(Device { session, verified: false, ip });
        let msg = ServerMessage::IncomingCall {
            sid: sid.clone(),
            from_service_id: call.caller.service_id.clone(),
            from_user_id: call.caller.user_id.clone(),
            to_service_id: call.callee.service_id.clone(),
            to_user_id: call.callee.user_id.clone(),
            media_type: call.media,
            app_data: call.app_data.clone(),
            cc_param,
        };
        // Built for call-engine devices only: most are not, and this is every call's path.
        let received = cx.is_engine(session).then(|| call.received(cx.presence.profile(&call.caller)));
        cx.presence.link(session, sid);
        cx.send(session, msg);
        if let Some(event) = received {
            cx.call_event(session, sid, event);
        }
    }

    /// The push (notify_cb) was accepted or failed. A failed push ends the call only
    /// when no device of the callee rings.
    pub fn push_result(&mut self, cx: &mut Cx, now: Now, sid: &Sid, ok: bool) {
        let Some(call) = self.calls.get_mut(sid) else { return };
        if ok {
            return;
        }
        call.push_failed = true;
        if call.phase == Phase::Ringing && call.devices.is_empty() {
            self.finish(cx, now, sid, DisconnectReason::PushError, DisconnectSource::CloudServer, None, None);
        }
    }
}
