//! The call-engine face (seed 004): group calls with invitations, on the room
//! machinery. A group call is a room ([`Rooms`], joined with [`room::Join::call`]) plus
//! its invitation list: the caller joins the room at once, each invitee rings
//! ([`invite`]: on every engine device, and by notify_cb) until it accepts, rejects,
//! ignores or times out ([`answer`]), and the call ends ([`GroupCall`] gone, room
//! closed, [`records`] written) when fewer than two remain after it began, or when
//! every invitation failed before anyone accepted. The call's ID is its room's sid.
//!
//! A call with one invitee and no room number is the core's 1-to-1 call
//! ([`super::call`]), which speaks the same events to engine sessions.
//!
//! Events follow seed 004 case by case: whoever's invitation fails gets
//! `onCallCancelled` with its own ID (the inviter's ID when the inviter cancelled), plus
//! `onCallNotConnected` with the reason; everyone still in the call or ringing hears
//! `onUserReject` / `onUserNoResponse` / `onUserLineBusy` / `onUserJoin` /
//! `onUserLeave` / `onUserInviting` about the others.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use switchboard_protocol::engine::{CallEndReason, CallMediaType, CallRole};
use switchboard_protocol::{DisconnectReason, DisconnectSource, EngineEvent, MediaType};

use super::room::{self, Rooms};
use super::{Cx, LeftCallRoom};
use crate::clock::{Millis, Now};
use crate::ids::{Party, SessionId, Sid};

mod adopt;
mod answer;
mod invite;
mod media;
mod records;

pub use answer::Decline;
pub use invite::CallsMsg;

/// Where an invitee stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Its invitation rings.
    Inviting,
    /// In the call (the room).
    InCall,
    /// Rejected the invitation.
    Rejected,
    /// Did not answer in time, or could not be reached.
    NoResponse,
    /// Busy elsewhere, or ignored the invitation.
    LineBusy,
    /// The invitation was cancelled.
    Cancelled,
    /// Was in the call and left.
    Left,
}

#[derive(Debug, Clone)]
struct Member {
    user: String,
    caller: bool,
    inviter: String,
    state: State,
    /// Ever in the call.
    joined: bool,
    invited_ms: Millis,
    answered_ms: Millis,
    joined_ms: Millis,
    left_ms: Millis,
    /// Time in the call before the current stretch.
    in_call: Duration,
    /// Since when it is in the call (monotonic).
    in_since: Option<Instant>,
    /// When its invitation runs out.
    deadline: Option<Instant>,
}

impl Member {
    fn role(&self) -> CallRole {
        if self.caller {
            CallRole::Caller
        } else {
            CallRole::Called
        }
    }

    fn time_in_call(&self, now: Now) -> Duration {
        self.in_call + self.in_since.map_or(Duration::ZERO, |t| now.at.saturating_duration_since(t))
    }

    /// Out of the call (it left, or the call ended), at `now`.
    fn out(&mut self, now: Now, state: State) {
        self.in_call = self.time_in_call(now);
        self.in_since = None;
        self.left_ms = now.wall_ms;
        self.state = state;
    }
}

#[derive(Debug)]
struct GroupCall {
    id: Sid,
    service_id: String,
    caller: String,
    media: MediaType,
    room_number: u32,
    group_id: String,
    user_data: Option<String>,
    /// How long an invitation rings.
    timeout_ms: Millis,
    setup_ms: Millis,
    /// The first accept, on the wall clock.
    begin_ms: Option<Millis>,
    members: Vec<Member>,
    /// The last failure of an invitation (the end reason when nobody accepted).
    last_failure: CallEndReason,
    /// Its first invitations are going out: not over before they all did.
    opening: bool,
}

impl GroupCall {
    fn member(&self, user: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.user == user)
    }

    fn member_mut(&mut self, user: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.user == user)
    }

    fn party(&self, user: &str) -> Party {
        Party::new(self.service_id.as_str(), user)
    }

    fn count(&self, state: State) -> usize {
        self.members.iter().filter(|m| m.state == state).count()
    }

    /// Everyone invited who is not out: in the call or ringing.
    fn callee_ids(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| !m.caller && matches!(m.state, State::Inviting | State::InCall))
            .map(|m| m.user.clone())
            .collect()
    }

    fn media_type(&self) -> CallMediaType {
        CallMediaType::of(self.media)
    }
}

/// Every live group call. See the module docs.
#[derive(Default)]
pub(crate) struct Engine {
    calls: HashMap<Sid, GroupCall>,
    /// Calls whose invitees changed this step: their snapshots are journaled at its
    /// end ([`Engine::snapshot_changed`]).
    changed: BTreeSet<Sid>,
}

/// The sessions that hear about `user` in `call`: its room session while in the call,
/// its engine devices while its invitation rings.
fn sessions_of(cx: &Cx, rooms: &Rooms, call: &GroupCall, m: &Member) -> Vec<SessionId> {
    match m.state {
        State::InCall => rooms.session_in(&call.id, &call.party(&m.user)).into_iter().collect(),
        State::Inviting => cx.engine_devices(&call.party(&m.user)),
        _ => Vec::new(),
    }
}

/// Tells `user` of `call`.
fn tell(cx: &mut Cx, rooms: &Rooms, call: &GroupCall, user: &str, event: EngineEvent) {
    let Some(m) = call.member(user) else { return };
    for s in sessions_of(cx, rooms, call, m) {
        cx.call_event(s, &call.id, event.clone());
    }
}

/// Tells everyone in `call` or rung by it, but `except`.
fn tell_all(cx: &mut Cx, rooms: &Rooms, call: &GroupCall, except: Option<&str>, event: EngineEvent) {
    for m in call.members.iter().filter(|m| Some(m.user.as_str()) != except) {
        for s in sessions_of(cx, rooms, call, m) {
            cx.call_event(s, &call.id, event.clone());
        }
    }
}

/// Tells every engine device of `user` that its invitation is over: `onCallCancelled`
/// with `by` (seed 004: the inviter's ID when the inviter cancelled, the user's own
/// otherwise) and `onCallNotConnected` with the reason.
fn invitation_over(cx: &mut Cx, call: &GroupCall, user: &str, by: &str, reason: CallEndReason) {
    for s in cx.engine_devices(&call.party(user)) {
        not_connected(cx, s, call, user, by, reason);
    }
}

fn not_connected(
    cx: &mut Cx,
    session: SessionId,
    call: &GroupCall,
    user: &str,
    by: &str,
    reason: CallEndReason,
) {
    cx.call_event(session, &call.id, EngineEvent::CallCancelled { user_id: by.to_string() });
    cx.call_event(session, &call.id, EngineEvent::CallNotConnected { reason, user_id: user.to_string() });
}

/// The engine's end reason for a room departure.
fn end_reason(reason: DisconnectReason) -> CallEndReason {
    match reason {
        DisconnectReason::Normal | DisconnectReason::Decline => CallEndReason::Hangup,
        _ => CallEndReason::EndByServer,
    }
}

impl Engine {
    /// Live group calls.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Someone left a group call's room: hung up, gave out, was kicked. The call ends
    /// if fewer than two remain after it began.
    pub fn left_room(&mut self, cx: &mut Cx, rooms: &mut Rooms, now: Now, l: LeftCallRoom) {
        let Some(call) = self.calls.get_mut(&l.sid) else { return };
        // Another device of the same user took its place.
        if rooms.has_member(&l.sid, &l.party) {
            return;
        }
        let Some(m) = call.member_mut(&l.party.user_id) else { return };
        if m.state != State::InCall {
            return;
        }
        m.out(now, State::Left);
        let (role, total) = (m.role(), m.in_call);
        self.changed.insert(l.sid.clone());
        let reason = end_reason(l.reason);
        if let Some(session) = l.session {
            let begun = call.begin_ms.is_some();
            if begun {
                let event = EngineEvent::CallEnd {
                    room_id: call.room_number,
                    call_media_type: call.media_type(),
                    call_role: role,
                    total_time: total.as_secs_f64(),
                    reason,
                };
                cx.call_event(session, &call.id, event);
            }
        }
        let call = &self.calls[&l.sid];
        tell_all(cx, rooms, call, None, EngineEvent::UserLeave { user_id: l.party.user_id.clone() });
        self.check_end(cx, rooms, now, &l.sid, reason);
    }

    /// Ends the call when it is over: fewer than two in it after it began; nobody in it;
    /// or, before anyone accepted, no invitation left ringing.
    fn check_end(&mut self, cx: &mut Cx, rooms: &mut Rooms, now: Now, id: &Sid, reason: CallEndReason) {
        let Some(call) = self.calls.get(id).filter(|c| !c.opening) else { return };
        let (in_call, inviting) = (call.count(State::InCall), call.count(State::Inviting));
        let end = if call.begin_ms.is_some() {
            (in_call < 2).then_some(reason)
        } else if in_call == 0 {
            Some(CallEndReason::Canceled)
        } else {
            (inviting == 0).then_some(call.last_failure)
        };
        if let Some(reason) = end {
            self.end(cx, rooms, now, id, reason);
        }
    }

    /// Ends the call: invitations still ringing are cancelled, who is in it hears
    /// `onCallEnd` (or, if it never began, the caller `onCallCancelled`), the room
    /// closes, and the record is written.
    fn end(&mut self, cx: &mut Cx, rooms: &mut Rooms, now: Now, id: &Sid, reason: CallEndReason) {
        let Some(mut call) = self.calls.remove(id) else { return };
        let begun = call.begin_ms.is_some();
        for i in 0..call.members.len() {
            let m = call.members[i].clone();
            match m.state {
                State::Inviting => {
                    call.members[i].state = State::Cancelled;
                    call.members[i].deadline = None;
                    cx.presence.remove_invite(&call.party(&m.user), id);
                    invitation_over(cx, &call, &m.user, &m.inviter, CallEndReason::Canceled);
                }
                State::InCall => {
                    let session = rooms.session_in(id, &call.party(&m.user));
                    call.members[i].out(now, State::Left);
                    let Some(session) = session else { continue };
                    if begun {
                        let event = EngineEvent::CallEnd {
                            room_id: call.room_number,
                            call_media_type: call.media_type(),
                            call_role: m.role(),
                            total_time: call.members[i].in_call.as_secs_f64(),
                            reason,
                        };
                        cx.call_event(session, id, event);
                    } else {
                        not_connected(cx, session, &call, &m.user, &m.user, reason);
                    }
                }
                _ => {}
            }
        }
        rooms.close(cx, now, id, DisconnectReason::Normal, DisconnectSource::CloudServer, None);
        self.record(cx, now, &call, reason);
    }

    /// An invitation's timer fired: no response.
    pub fn invite_timer(
        &mut self,
        cx: &mut Cx,
        rooms: &mut Rooms,
        now: Now,
        at: Instant,
        id: &Sid,
        user: &str,
    ) {
        let due = self
            .calls
            .get(id)
            .and_then(|c| c.member(user))
            .is_some_and(|m| m.state == State::Inviting && m.deadline == Some(at));
        if due {
            self.failed(cx, rooms, now, id, user, State::NoResponse, CallEndReason::NoResponse);
        }
    }

    /// `user`'s invitation failed (`state`): it is told, the others hear of it, and the
    /// call ends if that was the last hope.
    #[allow(clippy::too_many_arguments)]
    fn failed(
        &mut self,
        cx: &mut Cx,
        rooms: &mut Rooms,
        now: Now,
        id: &Sid,
        user: &str,
        state: State,
        reason: CallEndReason,
    ) {
        let Some(call) = self.calls.get_mut(id) else { return };
        let Some(m) = call.member_mut(user) else { return };
        let was_ringing = m.state == State::Inviting;
        self.changed.insert(id.clone());
        m.state = state;
        m.deadline = None;
        if matches!(state, State::Rejected | State::LineBusy) {
            m.answered_ms = now.wall_ms;
        }
        call.last_failure = reason;
        let party = call.party(user);
        cx.presence.remove_invite(&party, id);
        let call = &self.calls[id];
        if was_ringing {
            invitation_over(cx, call, user, user, reason);
        }
        let about = user.to_string();
        let event = match state {
            State::Rejected => EngineEvent::UserReject { user_id: about },
            State::LineBusy => EngineEvent::UserLineBusy { user_id: about },
            _ => EngineEvent::UserNoResponse { user_id: about },
        };
        tell_all(cx, rooms, call, Some(user), event);
        self.check_end(cx, rooms, now, id, reason);
    }
}

/// A member's way into the call's room, under its nickname.
fn room_join(req: Option<u64>, call: &GroupCall, nickname: Option<String>) -> room::Join {
    room::Join {
        req,
        room_id: call.room_number.to_string(),
        room_service_id: Some(call.service_id.clone()),
        media_type: call.media.as_str().to_string(),
        display_name: nickname,
        app_data: None,
        mic_muted: false,
        video_enabled: true,
        call: true,
    }
}
