//! Inviting: `calls` (a 1-to-1 call for one invitee, a group call for more), the
//! invitations rung on every engine device and pushed through notify_cb, devices that
//! come online while one rings, `invite_user` mid-call, and failed pushes.

use std::time::Duration;

use switchboard_protocol::engine::{CallEndReason, DEFAULT_INVITE_TIMEOUT_SECS};
use switchboard_protocol::record::NotifyRecord;
use switchboard_protocol::{
    ids, DisconnectReason, EngineEvent, ErrorCode, MediaType, ServerMessage, StartFailReason,
};

use super::{room_join, tell, tell_all, Engine, GroupCall, Member, State};
use crate::auth::CcClaims;
use crate::clock::{Millis, Now};
use crate::core::call::{Calls, MakeCall};
use crate::core::room::Rooms;
use crate::core::{app_data_too_long, Cx, SessionAuth, Timer};
use crate::ids::{SessionId, Sid};
use crate::records::Entry;

/// Longest `group_id`, in bytes.
const MAX_GROUP_ID_BYTES: usize = 128;

/// A `calls` request.
#[derive(Debug, Clone)]
pub struct CallsMsg {
    /// The invitees.
    pub user_ids: Vec<String>,
    /// `audio` / `video`.
    pub media_type: String,
    /// Ring time of each invitation, seconds.
    pub timeout_secs: Option<u32>,
    /// App data.
    pub user_data: Option<String>,
    /// The room number asked for.
    pub room_id: Option<u32>,
    /// The app's group ID.
    pub group_id: Option<String>,
}

impl Engine {
    /// `calls`: a 1-to-1 call for one invitee (and no room or group), a group call for
    /// more.
    #[allow(clippy::too_many_arguments)]
    pub fn calls(
        &mut self,
        cx: &mut Cx,
        rooms: &mut Rooms,
        calls: &mut Calls,
        now: Now,
        session: SessionId,
        req: Option<u64>,
        m: CallsMsg,
    ) {
        use StartFailReason as F;
        let Some(s) = cx.presence.session(session) else { return };
        if s.auth != SessionAuth::Token || !s.client.engine {
            let message = "calls needs a call-engine session (hello with a token and engine: true)";
            return cx.error(session, req, ErrorCode::WrongState, message);
        }
        let caller = s.party.clone();
        if m.user_ids.len() == 1 && m.room_id.is_none() && m.group_id.is_none() {
            let make = MakeCall {
                to_user_id: m.user_ids[0].clone(),
                to_service_id: None,
                media_type: m.media_type,
                app_data: m.user_data,
                ring_timeout_secs: Some(m.timeout_secs.unwrap_or(DEFAULT_INVITE_TIMEOUT_SECS)),
            };
            return calls.make_call(cx, now, session, req, make);
        }
        if !cx.rate_ok(now, session, req) {
            return;
        }
        let Some(rules) = cx.services.get(&caller.service_id).cloned() else {
            return cx.start_failed(session, req, F::InvalidServiceId, "unknown service");
        };
        let Some(media) = MediaType::parse(&m.media_type) else {
            return cx.start_failed(session, req, F::InvalidMediaType, "media_type must be audio or video");
        };
        if app_data_too_long(m.user_data.as_ref()) {
            return cx.start_failed(session, req, F::TooLongAppServerData, "user_data is over 4096 bytes");
        }
        if m.group_id.as_ref().is_some_and(|g| g.len() > MAX_GROUP_ID_BYTES) {
            return cx.start_failed(session, req, F::InvalidParam, "group_id is over 128 bytes");
        }
        let invitees = match check_invitees(&m.user_ids, &caller.user_id, rules.max_room_participants, 1) {
            Ok(users) => users,
            Err((reason, message)) => return cx.start_failed(session, req, reason, message),
        };
        if invitees.is_empty() {
            return cx.start_failed(session, req, F::InvalidUserId, "user_ids names nobody");
        }
        let Some(timeout_ms) = timeout_ms(m.timeout_secs, rules.ring_timeout_ms) else {
            return cx.start_failed(session, req, F::InvalidParam, "timeout_secs must be > 0");
        };
        if cx.presence.busy(&caller) {
            let msg = ServerMessage::Error {
                req,
                error: ErrorCode::WrongState,
                reason: Some(DisconnectReason::MultidevInUse),
                message: "already in a call or room, or rung by one".into(),
            };
            return cx.send(session, msg);
        }
        let room_number = match m.room_id {
            Some(0) => return cx.start_failed(session, req, F::InvalidRoomId, "room_id must be > 0"),
            Some(n) => n,
            None => free_room_number(cx, rooms, &caller.service_id),
        };
        let mut call = GroupCall {
            id: Sid::new(""),
            service_id: caller.service_id.clone(),
            caller: caller.user_id.clone(),
            media,
            room_number,
            group_id: m.group_id.unwrap_or_default(),
            user_data: m.user_data,
            timeout_ms,
            setup_ms: now.wall_ms,
            begin_ms: None,
            members: Vec::new(),
            last_failure: CallEndReason::NoResponse,
            opening: true,
        };
        // The caller is in the room from the start; `room_joined` answers `calls`.
        let nickname = cx.presence.profile(&caller).nickname;
        let Some(id) = rooms.join(cx, now, session, room_join(req, &call, nickname)) else { return };
        call.id = id.clone();
        let mut me = Member::new(&caller.user_id, &caller.user_id, now);
        me.caller = true;
        me.state = State::InCall;
        me.joined = true;
        me.joined_ms = now.wall_ms;
        me.in_since = Some(now.at);
        call.members.push(me);
        self.calls.insert(id.clone(), call);
        for user in &invitees {
            self.invite(cx, rooms, now, &id, user, &caller.user_id);
        }
        // Rung once they are all invited: `onCallReceived` lists every invitee.
        if let Some(call) = self.calls.get_mut(&id) {
            call.opening = false;
        }
        let call = &self.calls[&id];
        for m in call.members.iter().filter(|m| m.state == State::Inviting) {
            for device in cx.engine_devices(&call.party(&m.user)) {
                ring(cx, call, device);
            }
        }
        self.check_end(cx, rooms, now, &id, CallEndReason::LineBusy);
    }

    /// `invite_user`: a participant invites more users into its group call.
    #[allow(clippy::too_many_arguments)]
    pub fn invite_user(
        &mut self,
        cx: &mut Cx,
        rooms: &mut Rooms,
        now: Now,
        session: SessionId,
        req: Option<u64>,
        id: &Sid,
        user_ids: Vec<String>,
        timeout_secs: Option<u32>,
    ) {
        let Some(party) = cx.presence.session(session).map(|s| s.party.clone()) else { return };
        let in_call = self.calls.get(id).is_some_and(|_| rooms.session_in(id, &party) == Some(session));
        if !in_call {
            return cx.error(session, req, ErrorCode::NotFound, "this session is not in that group call");
        }
        let Some(call) = self.calls.get_mut(id) else { return };
        let max = cx.services.get(&call.service_id).map_or(2, |r| r.max_room_participants);
        let taken =
            call.members.iter().filter(|m| matches!(m.state, State::Inviting | State::InCall)).count();
        let invitees = match check_invitees(&user_ids, &call.caller, max, taken) {
            Ok(users) => users,
            Err((_, message)) => return cx.error(session, req, ErrorCode::InvalidParam, message),
        };
        if let Some(ms) = timeout_secs {
            let ring_ms = cx.services.get(&call.service_id).map_or(0, |r| r.ring_timeout_ms);
            match timeout_ms(Some(ms), ring_ms) {
                Some(ms) => call.timeout_ms = ms,
                None => return cx.error(session, req, ErrorCode::InvalidParam, "timeout_secs must be > 0"),
            }
        }
        if !cx.rate_ok(now, session, req) {
            return;
        }
        cx.send(session, ServerMessage::Done { req });
        for user in &invitees {
            self.invite(cx, rooms, now, id, user, &party.user_id);
        }
    }

    /// Rings `user` for call `id` (unless it is in it or rung already): line busy if it
    /// is in another call or room, or rung by one.
    fn invite(&mut self, cx: &mut Cx, rooms: &mut Rooms, now: Now, id: &Sid, user: &str, inviter: &str) {
        let Some(call) = self.calls.get_mut(id) else { return };
        if call.member(user).is_some_and(|m| matches!(m.state, State::Inviting | State::InCall)) {
            return;
        }
        let party = call.party(user);
        let busy = cx.presence.busy(&party);
        let deadline = Cx::after(now, call.timeout_ms);
        let fresh = Member::new(user, inviter, now);
        match call.member_mut(user) {
            Some(m) => {
                let joined = (m.joined, m.joined_ms, m.left_ms, m.in_call);
                *m = fresh;
                (m.joined, m.joined_ms, m.left_ms, m.in_call) = joined;
            }
            None => call.members.push(fresh),
        }
        let call = &self.calls[id];
        let inviting = EngineEvent::UserInviting { user_id: user.to_string() };
        if call.opening {
            // The first invitees learn of each other from `onCallReceived`.
            tell(cx, rooms, call, &call.caller, inviting);
        } else {
            tell_all(cx, rooms, call, Some(user), inviting);
        }
        if busy {
            return self.failed(cx, rooms, now, id, user, State::LineBusy, CallEndReason::LineBusy);
        }
        let Some(call) = self.calls.get_mut(id) else { return };
        let Some(m) = call.member_mut(user) else { return };
        m.state = State::Inviting;
        m.deadline = Some(deadline);
        self.changed.insert(id.clone());
        cx.presence.add_invite(&party, id);
        cx.timer(deadline, Timer::Invite(id.clone(), user.to_string()));
        let call = &self.calls[id];
        if !call.opening {
            for device in cx.engine_devices(&party) {
                ring(cx, call, device);
            }
        }
        let has_notify = cx.services.get(&call.service_id).is_some_and(|r| r.has_notify);
        if has_notify {
            let param = cc_param(cx, call, user, now);
            let record = NotifyRecord {
                sid: id.clone(),
                from_service_id: call.service_id.clone(),
                from_user_id: call.caller.clone(),
                to_service_id: call.service_id.clone(),
                to_user_id: user.to_string(),
                media_type: call.media.letter().into(),
                param,
                app_svr_data: call.user_data.clone(),
            };
            let deadline_ms = now.wall_ms + cx.settings.notify_timeout_ms;
            cx.journal(Entry::Notify { service_id: call.service_id.clone(), record, deadline_ms });
        }
    }

    /// A token session opened: an engine device rings for every invitation ringing for
    /// its user.
    pub fn device_online(&mut self, cx: &mut Cx, session: SessionId) {
        let Some(s) = cx.presence.session(session).filter(|s| s.client.engine) else { return };
        let party = s.party.clone();
        for id in cx.presence.invites_of(&party).to_vec() {
            if let Some(call) = self.calls.get(&id) {
                ring(cx, call, session);
            }
        }
    }

    /// A push (notify_cb) to an invitee failed: if none of its devices rings either, it
    /// cannot be reached (no response, reason Offline).
    pub fn push_result(&mut self, cx: &mut Cx, rooms: &mut Rooms, now: Now, id: &Sid, user: &str, ok: bool) {
        let Some(call) = self.calls.get(id) else { return };
        let ringing = call.member(user).is_some_and(|m| m.state == State::Inviting);
        if ok || !ringing || !cx.engine_devices(&call.party(user)).is_empty() {
            return;
        }
        self.failed(cx, rooms, now, id, user, State::NoResponse, CallEndReason::Offline);
    }
}

impl Member {
    fn new(user: &str, inviter: &str, now: Now) -> Member {
        Member {
            user: user.to_string(),
            caller: false,
            inviter: inviter.to_string(),
            state: State::Cancelled,
            joined: false,
            invited_ms: now.wall_ms,
            answered_ms: 0,
            joined_ms: 0,
            left_ms: 0,
            in_call: Duration::ZERO,
            in_since: None,
            deadline: None,
        }
    }
}

/// Sends `onCallReceived` to one device.
fn ring(cx: &mut Cx, call: &GroupCall, session: SessionId) {
    let me = cx.presence.profile(&call.party(&call.caller));
    let event = EngineEvent::CallReceived {
        caller_id: call.caller.clone(),
        callee_id_list: call.callee_ids(),
        group_id: call.group_id.clone(),
        call_media_type: call.media_type(),
        user_data: call.user_data.clone().unwrap_or_default(),
        caller_nickname: me.nickname,
        caller_avatar_url: me.avatar_url,
    };
    cx.call_event(session, &call.id, event);
}

/// The `cc_param` pushed to an invitee: lets a device that wakes up for it open a
/// session and accept or reject this call only, until a minute after it stops ringing.
fn cc_param(cx: &Cx, call: &GroupCall, user: &str, now: Now) -> String {
    cx.cc_key.sign(&CcClaims {
        sid: call.id.clone(),
        service_id: call.service_id.clone(),
        user_id: user.to_string(),
        exp: (now.wall_ms + call.timeout_ms) / 1000 + 60,
        device: None,
    })
}

/// The invitees of a request, checked and without repeats: valid IDs, not the caller,
/// at most `max` in the call with the `taken` places.
fn check_invitees(
    user_ids: &[String],
    caller: &str,
    max: u32,
    taken: usize,
) -> Result<Vec<String>, (StartFailReason, String)> {
    let mut users: Vec<String> = Vec::new();
    for u in user_ids {
        if !ids::is_valid_user_id(u) {
            return Err((
                StartFailReason::InvalidUserId,
                "every user ID must match [A-Za-z0-9_-]{1,64}".into(),
            ));
        }
        if u == caller {
            return Err((StartFailReason::IdConflict, "the caller cannot invite itself".into()));
        }
        if !users.contains(u) {
            users.push(u.clone());
        }
    }
    if users.len() + taken > max as usize {
        let message = format!("at most {max} in one call, the caller included");
        return Err((StartFailReason::InvalidParam, message));
    }
    Ok(users)
}

/// An invitation's ring time: `secs` (default 30 s), at most the service's ring time;
/// `None` for 0.
fn timeout_ms(secs: Option<u32>, service_ms: Millis) -> Option<Millis> {
    let secs = secs.unwrap_or(DEFAULT_INVITE_TIMEOUT_SECS);
    (secs > 0).then(|| (u64::from(secs) * 1000).min(service_ms.max(1000)))
}

/// A room number no live room of the service has (the join refuses a taken one, in
/// the unlikely case that 64 draws all were).
fn free_room_number(cx: &mut Cx, rooms: &Rooms, service_id: &str) -> u32 {
    let mut n = cx.ids.room_number();
    for _ in 0..64 {
        if rooms.sid_of(service_id, &n.to_string()).is_none() {
            break;
        }
        n = cx.ids.room_number();
    }
    n
}
