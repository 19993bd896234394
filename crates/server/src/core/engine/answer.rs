//! Answering: `accept` (the invitee joins the room; the first accept begins the call),
//! `reject` and `ignore`, `join_call` back into a live call one was invited to, and
//! `hangup` (the caller's before anyone answered cancels every invitation).

use switchboard_protocol::engine::{CallEndReason, CallRole};
use switchboard_protocol::{DisconnectReason, EngineEvent, ErrorCode, ServerMessage};

use super::{not_connected, room_join, tell, tell_all, Engine, State};
use crate::clock::Now;
use crate::core::room::Rooms;
use crate::core::{Cx, SessionAuth};
use crate::ids::{Party, SessionId, Sid};

/// How an invitee declines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decline {
    /// `reject`: the others see `onUserReject`.
    Reject,
    /// `ignore`: the others see `onUserLineBusy`.
    Ignore,
}

impl Engine {
    /// Who the session speaks for in call `id`: its user, if the session may act on
    /// the call (a token session, or one opened with this call's `cc_param`).
    fn speaker(&self, cx: &mut Cx, session: SessionId, req: Option<u64>, id: &Sid) -> Option<Party> {
        let s = cx.presence.session(session)?;
        let allowed = match &s.auth {
            SessionAuth::Token => true,
            SessionAuth::CallParam { sid, .. } => sid == id,
        };
        let party = s.party.clone();
        let invited = self.calls.get(id).and_then(|c| c.member(&party.user_id)).is_some();
        if !allowed || !invited || self.calls.get(id).is_some_and(|c| c.service_id != party.service_id) {
            cx.error(session, req, ErrorCode::NotFound, "no such call for this user");
            return None;
        }
        Some(party)
    }

    /// `accept`: the invitee joins the call.
    pub fn accept(
        &mut self,
        cx: &mut Cx,
        rooms: &mut Rooms,
        now: Now,
        session: SessionId,
        req: Option<u64>,
        id: &Sid,
    ) {
        let Some(party) = self.speaker(cx, session, req, id) else { return };
        let state = self.calls[id].member(&party.user_id).map(|m| m.state);
        match state {
            Some(State::Inviting) => self.enter(cx, rooms, now, session, req, id, &party),
            Some(State::InCall) => cx.error(session, req, ErrorCode::WrongState, "already in the call"),
            _ => cx.error(
                session,
                req,
                ErrorCode::WrongState,
                "the invitation is over: join_call to come back",
            ),
        }
    }

    /// `join_call`: back into a live call this user was invited to (after leaving,
    /// rejecting or missing it); the same as `accept` while its invitation rings.
    pub fn join_call(
        &mut self,
        cx: &mut Cx,
        rooms: &mut Rooms,
        now: Now,
        session: SessionId,
        req: Option<u64>,
        id: &Sid,
    ) {
        if !id.is_room_shaped() || !self.calls.contains_key(id) {
            return cx.error(session, req, ErrorCode::NotFound, "no such call for this user");
        }
        let Some(party) = self.speaker(cx, session, req, id) else { return };
        if self.calls[id].member(&party.user_id).is_some_and(|m| m.state == State::InCall)
            && rooms.session_in(id, &party) == Some(session)
        {
            return cx.error(session, req, ErrorCode::WrongState, "already in the call");
        }
        self.enter(cx, rooms, now, session, req, id, &party);
    }

    /// `party` joins the call's room from `session`: the call begins if it had not,
    /// everyone hears `onUserJoin`, the joiner `onCallBegin` and who is there.
    #[allow(clippy::too_many_arguments)]
    fn enter(
        &mut self,
        cx: &mut Cx,
        rooms: &mut Rooms,
        now: Now,
        session: SessionId,
        req: Option<u64>,
        id: &Sid,
        party: &Party,
    ) {
        let Some(call) = self.calls.get(id) else { return };
        let was = call.member(&party.user_id).map(|m| m.state);
        let nickname = cx.presence.profile(party).nickname;
        if rooms.join(cx, now, session, room_join(req, call, nickname)).is_none() {
            return;
        }
        let Some(call) = self.calls.get_mut(id) else { return };
        let Some(m) = call.member_mut(&party.user_id) else { return };
        if was == Some(State::Inviting) {
            m.answered_ms = now.wall_ms;
        }
        if !m.joined {
            m.joined_ms = now.wall_ms;
        }
        m.joined = true;
        m.state = State::InCall;
        self.changed.insert(id.clone());
        m.deadline = None;
        m.in_since = Some(now.at);
        let role = m.role();
        cx.presence.remove_invite(party, id);
        let first = call.begin_ms.is_none();
        if first {
            call.begin_ms = Some(now.wall_ms);
        }
        let call = &self.calls[id];
        // The user's other devices stop ringing.
        for other in cx.engine_devices(party).into_iter().filter(|s| *s != session) {
            if was == Some(State::Inviting) {
                not_connected(
                    cx,
                    other,
                    call,
                    &party.user_id,
                    &party.user_id,
                    CallEndReason::OtherDeviceAccepted,
                );
            }
        }
        let begin = |role| EngineEvent::CallBegin {
            room_id: call.room_number,
            call_media_type: call.media_type(),
            call_role: role,
        };
        if first {
            let caller = call.caller.clone();
            if caller != party.user_id {
                tell(cx, rooms, call, &caller, begin(CallRole::Caller));
            }
        }
        cx.call_event(session, id, begin(role));
        let joined = EngineEvent::UserJoin { user_id: party.user_id.clone() };
        tell_all(cx, rooms, call, Some(&party.user_id), joined);
        for m in call.members.iter().filter(|m| m.state == State::InCall && m.user != party.user_id) {
            cx.call_event(session, id, EngineEvent::UserJoin { user_id: m.user.clone() });
        }
    }

    /// `reject` / `ignore` of a ringing invitation.
    #[allow(clippy::too_many_arguments)]
    pub fn decline(
        &mut self,
        cx: &mut Cx,
        rooms: &mut Rooms,
        now: Now,
        session: SessionId,
        req: Option<u64>,
        id: &Sid,
        how: Decline,
    ) {
        let Some(party) = self.speaker(cx, session, req, id) else { return };
        if self.calls[id].member(&party.user_id).map(|m| m.state) != Some(State::Inviting) {
            return cx.error(
                session,
                req,
                ErrorCode::WrongState,
                "no invitation of this call rings for this user",
            );
        }
        cx.send(session, ServerMessage::Done { req });
        // The device that declined is told as seed 004 says; the user's others learn
        // that another device did.
        let (state, reason) = match how {
            Decline::Reject => (State::Rejected, CallEndReason::Reject),
            Decline::Ignore => (State::LineBusy, CallEndReason::LineBusy),
        };
        let call = &self.calls[id];
        not_connected(cx, session, call, &party.user_id, &party.user_id, reason);
        let others = cx.engine_devices(&party).into_iter().filter(|s| *s != session);
        for other in others.collect::<Vec<_>>() {
            not_connected(cx, other, call, &party.user_id, &party.user_id, CallEndReason::OtherDeviceReject);
        }
        // Told already: `failed` then tells only the others.
        if let Some(m) = self.calls.get_mut(id).and_then(|c| c.member_mut(&party.user_id)) {
            m.state = State::Cancelled;
        }
        self.failed(cx, rooms, now, id, &party.user_id, state, reason);
    }

    /// `hangup`: leave the call; the caller before anyone accepted cancels it; an
    /// invitee whose invitation rings rejects it.
    pub fn hangup(
        &mut self,
        cx: &mut Cx,
        rooms: &mut Rooms,
        now: Now,
        session: SessionId,
        req: Option<u64>,
        id: &Sid,
    ) {
        let Some(party) = self.speaker(cx, session, req, id) else { return };
        let call = &self.calls[id];
        let Some(m) = call.member(&party.user_id) else { return };
        match m.state {
            State::Inviting => self.decline(cx, rooms, now, session, req, id, Decline::Reject),
            State::InCall if rooms.session_in(id, &party) == Some(session) => {
                if m.caller && call.begin_ms.is_none() {
                    // Cancelled by the caller: every invitee hears it was the caller.
                    self.end(cx, rooms, now, id, CallEndReason::Canceled);
                    // `end` closed the room: the caller's `disconnected` answered no request.
                    cx.send(session, ServerMessage::Done { req });
                } else {
                    rooms.leave(cx, now, session, req, id, Some(DisconnectReason::Normal), None);
                }
            }
            _ => cx.error(session, req, ErrorCode::WrongState, "this session is not in the call"),
        }
    }
}
