//! A party without a connection: its session closed, the call waits for it through the
//! reconnect grace (the time is not billed), and `resume` on a new session takes its
//! place back.

use switchboard_protocol::{DisconnectReason, DisconnectSource, ErrorCode, ServerMessage};

use super::{CallTimer, Calls, Device, Phase};
use crate::clock::Now;
use crate::core::{Cx, SessionAuth};
use crate::ids::{SessionId, Sid};

impl Calls {
    /// A session is gone: a connected call waits `reconnect_grace_ms` for its party; a
    /// ringing device just stops ringing (the call ends when it was the last one and
    /// the push failed).
    pub fn session_closed(&mut self, cx: &mut Cx, now: Now, session: SessionId, calls: Vec<Sid>) {
        let grace = cx.settings.reconnect_grace_ms;
        for sid in calls {
            let Some(call) = self.calls.get_mut(&sid) else { continue };
            let deadline = Cx::after(now, grace);
            if call.caller_session == Some(session) {
                call.caller_session = None;
                call.caller_lost = Some(deadline);
                if call.connected() {
                    call.lost_since.get_or_insert(now.at);
                }
                Calls::set_timer(cx, deadline, CallTimer::CallerLost, &sid);
            } else if call.connected() {
                if call.devices.iter().any(|d| d.session == session) {
                    call.devices.clear();
                    call.callee_lost = Some(deadline);
                    call.lost_since.get_or_insert(now.at);
                    Calls::set_timer(cx, deadline, CallTimer::CalleeLost, &sid);
                }
            } else {
                call.devices.retain(|d| d.session != session);
                if call.devices.is_empty() && call.push_failed {
                    self.finish(
                        cx,
                        now,
                        &sid,
                        DisconnectReason::PushError,
                        DisconnectSource::CloudServer,
                        None,
                        None,
                    );
                }
            }
        }
    }

    /// A later login of the user elsewhere signed `session` out: the calls it is in
    /// end (ANOTHER_INSTANCE_TRY_TO_JOIN, source cloud_server); the ones it only rang
    /// for ring on without it.
    pub fn session_signed_out(&mut self, cx: &mut Cx, now: Now, session: SessionId, calls: Vec<Sid>) {
        for sid in calls {
            let Some(call) = self.calls.get_mut(&sid) else { continue };
            let in_it = call.caller_session == Some(session)
                || (call.connected() && call.devices.iter().any(|d| d.session == session));
            if in_it {
                let (reason, source) =
                    (DisconnectReason::AnotherInstanceTryToJoin, DisconnectSource::CloudServer);
                self.finish(cx, now, &sid, reason, source, None, None);
            } else {
                call.devices.retain(|d| d.session != session);
                cx.presence.unlink(session, &sid);
            }
        }
    }

    /// `resume`: a party's new session takes its place in the call back.
    pub fn resume(&mut self, cx: &mut Cx, now: Now, session: SessionId, req: Option<u64>, sid: &Sid) {
        let Some(s) = cx.presence.session(session) else { return };
        let party = s.party.clone();
        let auth = s.auth.clone();
        let ip = s.ip.clone();
        let Some(call) = self.calls.get_mut(sid) else {
            return cx.send(
                session,
                ServerMessage::Disconnected {
                    req,
                    sid: sid.clone(),
                    reason: DisconnectReason::ReleasedCall,
                    source: DisconnectSource::CloudServer,
                    by_remote: false,
                    user_rel_code: None,
                },
            );
        };
        // A cc_param was pushed to every device of the callee (and may have leaked):
        // it verifies and answers a ringing call, but only the device that answered,
        // proving it with its resume_param, may take an answered call back.
        let may = match &auth {
            SessionAuth::Token => true,
            SessionAuth::CallParam { sid: bound, device } => {
                sid == bound && device.is_some() && *device == call.callee_device
            }
        };
        let state = match call.phase {
            Phase::Ringing => "ringing",
            Phase::Connected { .. } => "connected",
        };
        let (old, side) = if may && party == call.caller {
            call.caller_lost = None;
            call.caller_ip = ip;
            (call.caller_session.replace(session), 0)
        } else if may && party == call.callee && call.connected() {
            call.callee_lost = None;
            call.callee_ip = ip.clone();
            if auth == SessionAuth::Token {
                // The user took the call over on a device of its own: the cc_param
                // device that answered can no longer take it back.
                call.callee_device = None;
            }
            let old = call.devices.first().map(|d| d.session);
            call.devices = vec![Device { session, verified: true, ip }];
            (old, 1)
        } else {
            return cx.error(session, req, ErrorCode::NotFound, "no such call for this session to resume");
        };
        if call.caller_lost.is_none() && call.callee_lost.is_none() {
            if let Some(t) = call.lost_since.take() {
                call.interrupted += now.at.saturating_duration_since(t);
            }
        }
        if let Some(old) = old.filter(|o| *o != session) {
            cx.presence.unlink(old, sid);
        }
        cx.presence.link(session, sid);
        // Told again at every resume until the party offers media here.
        let new_media = call.new_media[side];
        cx.send(session, ServerMessage::Resumed { req, sid: sid.clone(), state: state.into(), new_media });
        self.changed(cx, now, sid);
    }
}
