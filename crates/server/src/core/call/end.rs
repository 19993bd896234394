//! Ending a call: `end_call` (cancel, decline or hang up, or a reason the client
//! reports), the app server's force-end, and [`Calls::finish`], which tells everyone
//! still in the call and writes its record.

use switchboard_protocol::{DisconnectReason, DisconnectSource, ErrorCode, ServerMessage};

use super::{Calls, Phase, Side, MAX_USER_REL_CODE_BYTES};
use crate::clock::Now;
use crate::core::Cx;
use crate::ids::{SessionId, Sid};
use crate::media_link::MediaCmd;
use crate::records::Entry;

/// Checks what a client says when it ends a call or leaves a room: the reason must be
/// one a client may report, the release code at most 128 bytes.
pub(crate) fn client_end(
    reason: Option<u16>,
    user_rel_code: Option<&str>,
) -> Result<Option<DisconnectReason>, String> {
    let reason = match reason.map(|c| (c, DisconnectReason::from_code(c))) {
        None => None,
        Some((_, Some(r))) if r.is_client_reportable() => Some(r),
        Some((c, _)) => return Err(format!("reason {c} is not one a client may report")),
    };
    if user_rel_code.is_some_and(|c| c.len() > MAX_USER_REL_CODE_BYTES) {
        return Err("user_rel_code is over 128 bytes".into());
    }
    Ok(reason)
}

impl Calls {
    /// `end_call`: the caller cancels or hangs up, a callee device declines or hangs up.
    #[allow(clippy::too_many_arguments)]
    pub fn end_call(
        &mut self,
        cx: &mut Cx,
        now: Now,
        session: SessionId,
        req: Option<u64>,
        sid: &Sid,
        reason: Option<u16>,
        user_rel_code: Option<String>,
    ) {
        let client_reason = match client_end(reason, user_rel_code.as_deref()) {
            Ok(r) => r,
            Err(message) => return cx.error(session, req, ErrorCode::InvalidParam, message),
        };
        let Some(call) = self.calls.get_mut(sid) else {
            return cx.error(session, req, ErrorCode::NotFound, "no such call for this session");
        };
        let is_caller = call.caller_session == Some(session);
        let is_device = call.devices.iter().any(|d| d.session == session);
        if !is_caller && !is_device {
            return cx.error(session, req, ErrorCode::NotFound, "no such call for this session");
        }
        let ringing = call.phase == Phase::Ringing;
        let source = if is_caller { DisconnectSource::Caller } else { DisconnectSource::Callee };
        let state_reason = match (ringing, is_caller) {
            (true, true) => DisconnectReason::Cancel,
            (true, false) => DisconnectReason::Decline,
            (false, _) => DisconnectReason::Normal,
        };
        let reason = match client_reason {
            Some(DisconnectReason::Normal) | None => state_reason,
            Some(r) => r,
        };
        if ringing && is_device {
            let others: Vec<SessionId> =
                call.devices.iter().map(|d| d.session).filter(|s| *s != session).collect();
            call.devices.retain(|d| d.session == session);
            for other in others {
                self.drop_device(cx, other, sid, DisconnectReason::MultidevDecline);
            }
        }
        self.finish(cx, now, sid, reason, source, Some((session, req)), user_rel_code);
    }

    /// The app server ends a call (REST): USER_ERROR, source app_server. Whether it was
    /// a live call of this service.
    pub fn force_end(
        &mut self,
        cx: &mut Cx,
        now: Now,
        service_id: &str,
        sid: &Sid,
        user_rel_code: Option<String>,
    ) -> bool {
        if self.calls.get(sid).is_none_or(|c| c.caller.service_id != service_id) {
            return false;
        }
        let (reason, source) = (DisconnectReason::UserError, DisconnectSource::AppServer);
        self.finish(cx, now, sid, reason, source, None, user_rel_code);
        true
    }

    /// Ends a call: tells every session still in it (answering `ender`'s request),
    /// forgets it, releases its media and writes its record.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish(
        &mut self,
        cx: &mut Cx,
        now: Now,
        sid: &Sid,
        reason: DisconnectReason,
        source: DisconnectSource,
        ender: Option<(SessionId, Option<u64>)>,
        user_rel_code: Option<String>,
    ) {
        let Some(call) = self.calls.remove(sid) else { return };
        let billable = call.billable_ms(now);
        let recipients: Vec<(SessionId, Side)> = call
            .caller_session
            .map(|s| (s, Side::Caller))
            .into_iter()
            .chain(call.devices.iter().map(|d| (d.session, Side::Callee)))
            .collect();
        for (session, side) in recipients {
            // Ended by the other side of the call (not by the server or the app server).
            let by_remote = Side::of_source(source).is_some_and(|s| s != side);
            let req = ender.filter(|(s, _)| *s == session).and_then(|(_, r)| r);
            cx.send(
                session,
                ServerMessage::Disconnected {
                    req,
                    sid: sid.clone(),
                    reason,
                    source,
                    by_remote,
                    user_rel_code: user_rel_code.clone(),
                },
            );
            if cx.is_engine(session) {
                for event in call.ended(side, reason, billable) {
                    cx.call_event(session, sid, event);
                }
            }
        }
        for session in call.sessions() {
            cx.presence.unlink(session, sid);
        }
        for party in [&call.caller, &call.callee] {
            cx.presence.call_over(party, sid);
        }
        if call.connected() {
            cx.media(MediaCmd::End { sid: sid.clone() });
        }
        let record = call.snapshot(now).record(now.wall_ms, reason, source, user_rel_code, billable);
        let service_id = call.caller.service_id.clone();
        let deliver = cx.services.get(&service_id).is_some_and(|s| s.has_call_cb);
        cx.journal(Entry::CallEnded { service_id, record, deliver });
    }
}
