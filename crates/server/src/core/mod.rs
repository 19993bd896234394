//! The core: every call and room of the server, as one sans-IO state machine.
//!
//! [`Core`] owns presence (who is online, with which devices, in which calls and
//! rooms), the 1-to-1 calls ([`call`]) and the rooms ([`room`]) as peers, one timer
//! wheel and one output queue, and routes what comes in to the one it is for. It never
//! touches a socket or a clock: the shell feeds it [`Input`]s at a [`Now`], drains
//! [`Output`]s with [`Core::poll_output`], and wakes it at [`Core::poll_timeout`]
//! through [`Core::handle_timeout`]. Timers run on the monotonic clock; the wall clock
//! is only written into records. New sids come from the [`IdSource`] it is given.
//! Tests drive it on simulated time without sleeping.
//!
//! A new kind of call goes beside [`call`] and [`room`]: a peer module owning its own
//! state, its timers in [`Timer`], its messages routed in [`Core::message`] and its
//! relay events in [`Core::relay`], writing through the same [`Cx`].

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use switchboard_protocol::{
    ClientMessage, DisconnectReason, EngineEvent, ErrorCode, ServerMessage, StartFailReason,
    MAX_APP_DATA_BYTES,
};

use crate::auth::CcKey;
use crate::clock::{Millis, Now};
use crate::ids::{IdSource, Party, SessionId, Sid};
use crate::limit::KeyedLimiter;
use crate::media_link::{MediaCmd, RelayEvent};
use crate::records::{Entry, LiveCall};

pub mod call;
pub mod engine;
mod instances;
pub mod presence;
pub mod room;
mod routing;
mod timers;

#[cfg(test)]
mod tests;

pub use presence::{ClientInfo, SessionAuth};
pub use room::{RoomCensus, RoomInfo};

use presence::Presence;
use timers::Timers;

/// Per-service rules the core needs.
#[derive(Debug, Clone)]
pub struct ServiceRules {
    /// Ring timeout before NOANSWER.
    pub ring_timeout_ms: Millis,
    /// Longest connected time of a call, and longest life of a room; 0 = none.
    pub max_call_ms: Millis,
    /// Region code for records.
    pub rc_idc: String,
    /// Whether a notify_cb URL is configured.
    pub has_notify: bool,
    /// Whether an on_call_evt_cb URL is configured (records are kept either way).
    pub has_call_cb: bool,
    /// Whether an on_gcall_evt_cb URL is configured.
    pub has_gcall_cb: bool,
    /// Whether an on_group_call_evt_cb URL is configured.
    pub has_group_call_cb: bool,
    /// Most participants in one room (ROOM_IS_FULL past it).
    pub max_room_participants: u32,
    /// Most speakers heard at once in a room: above it only the loudest are forwarded.
    pub max_room_speakers: usize,
    /// How long one may stay alone in a room (ALONE_KICK_OUT); 0 = for ever.
    pub alone_kick_out_ms: Millis,
}

/// Core-wide settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a party may be without a session before NETWORK_UNSTABLE.
    pub reconnect_grace_ms: Millis,
    /// make_call / verify_call / join_room per second per user.
    pub calls_per_user_per_sec: f64,
    /// Burst of the above.
    pub calls_per_user_burst: f64,
    /// How long a push (notify_cb) may take, retries included, before PUSH_ERROR.
    pub notify_timeout_ms: Millis,
}

/// What happens to the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// A session authenticated.
    Open {
        /// The session.
        session: SessionId,
        /// Who it is.
        party: Party,
        /// How it proved it.
        auth: SessionAuth,
        /// Its remote IP address.
        ip: String,
        /// What the client said of itself.
        client: ClientInfo,
    },
    /// A session's connection is gone (closed, or silent past the heartbeat timeout).
    Closed {
        /// The session.
        session: SessionId,
    },
    /// A call or room message from a session.
    Message {
        /// The session.
        session: SessionId,
        /// The message.
        msg: ClientMessage,
    },
    /// The outcome of a notify_cb request.
    PushResult {
        /// The call.
        sid: Sid,
        /// The invitee pushed to, for a group call (one push per invitee).
        user: Option<String>,
        /// 2xx within the deadline.
        ok: bool,
    },
    /// What the media relay reports.
    Relay(RelayEvent),
    /// Calls and rooms of a node that died, claimed by this one: they go on here from
    /// their snapshots, every party within its reconnect grace. `since_ms`: when that
    /// node was last known alive.
    Adopt {
        /// Its calls.
        calls: Vec<LiveCall>,
        /// Its rooms (its group calls' too).
        rooms: Vec<crate::records::LiveRoom>,
        /// Its call-engine group calls, as their last snapshots.
        group_calls: Vec<switchboard_protocol::record::GroupCallRecord>,
        /// Epoch ms.
        since_ms: Millis,
    },
}

/// What the core wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a message to a session.
    Send(SessionId, ServerMessage),
    /// Tell the media relay.
    Media(MediaCmd),
    /// Write this down before anything this step sent goes out (see `docs/architecture.md`).
    Journal(Entry),
    /// A participant left a room, for the metrics (the room may go on).
    RoomLeft {
        /// Why.
        reason: DisconnectReason,
    },
}

/// Counts of live state, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Open sessions.
    pub sessions: usize,
    /// Live calls.
    pub calls: usize,
    /// Of which connected.
    pub connected: usize,
    /// Live rooms and their participants.
    pub rooms: RoomCensus,
    /// Live call-engine group calls (each also one of `rooms`).
    pub group_calls: usize,
}

/// What a timer is for; the owner checks, when it fires, that it is still due.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A 1-to-1 call's.
    Call(Sid, call::CallTimer),
    /// A room's.
    Room(Sid, room::RoomTimer),
    /// A group call's invitation to a user ran out.
    Invite(Sid, String),
}

/// Someone left a group call's room (for the call engine to act on).
#[derive(Debug, Clone)]
pub(crate) struct LeftCallRoom {
    pub sid: Sid,
    pub party: Party,
    /// Its session, if it had one (not while within its reconnect grace).
    pub session: Option<SessionId>,
    pub reason: DisconnectReason,
}

/// What calls and rooms share: settings and rules, presence, the timer wheel, the
/// output queue, the ID source, the `cc_param` key and the per-user rate limit.
pub(crate) struct Cx {
    pub settings: Settings,
    pub services: HashMap<String, ServiceRules>,
    pub cc_key: CcKey,
    pub presence: Presence,
    pub ids: Box<dyn IdSource>,
    timers: Timers<Timer>,
    out: VecDeque<Output>,
    limiter: KeyedLimiter<Party>,
    /// The monotonic origin of the rate limiter's milliseconds.
    epoch: Instant,
    /// Departures from group calls' rooms this step, for the engine.
    left: Vec<LeftCallRoom>,
}

impl Cx {
    pub fn send(&mut self, session: SessionId, msg: ServerMessage) {
        self.out.push_back(Output::Send(session, msg));
    }

    pub fn media(&mut self, cmd: MediaCmd) {
        self.out.push_back(Output::Media(cmd));
    }

    pub fn journal(&mut self, entry: Entry) {
        self.out.push_back(Output::Journal(entry));
    }

    pub fn room_left(&mut self, reason: DisconnectReason) {
        self.out.push_back(Output::RoomLeft { reason });
    }

    pub fn left_call_room(&mut self, left: LeftCallRoom) {
        self.left.push(left);
    }

    /// Whether `session` is a call-engine session (worth building its events for).
    pub fn is_engine(&self, session: SessionId) -> bool {
        self.presence.session(session).is_some_and(|s| s.client.engine)
    }

    /// A call-engine session's event.
    pub fn call_event(&mut self, session: SessionId, call_id: &Sid, event: EngineEvent) {
        if self.is_engine(session) {
            self.send(session, ServerMessage::CallEvent { call_id: Some(call_id.clone()), event });
        }
    }

    /// The user's devices that take call-engine events.
    pub fn engine_devices(&self, party: &Party) -> Vec<SessionId> {
        self.presence.devices(party).iter().copied().filter(|s| self.is_engine(*s)).collect()
    }

    pub fn error(
        &mut self,
        session: SessionId,
        req: Option<u64>,
        error: ErrorCode,
        message: impl Into<String>,
    ) {
        self.send(session, ServerMessage::Error { req, error, reason: None, message: message.into() });
    }

    pub fn start_failed(
        &mut self,
        session: SessionId,
        req: Option<u64>,
        reason: StartFailReason,
        message: impl Into<String>,
    ) {
        let msg =
            ServerMessage::StartFailed { req, reason, code: reason.native_code(), message: message.into() };
        self.send(session, msg);
    }

    pub fn timer(&mut self, at: Instant, timer: Timer) {
        self.timers.push(at, timer);
    }

    /// `ms` from `now` on the monotonic clock.
    pub fn after(now: Now, ms: Millis) -> Instant {
        now.at + Duration::from_millis(ms)
    }

    /// Whether the session's user may start another call or join another room now;
    /// if not it is told SERVICE_TOO_MANY_REQUESTS.
    pub fn rate_ok(&mut self, now: Now, session: SessionId, req: Option<u64>) -> bool {
        let Some(party) = self.presence.session(session).map(|s| s.party.clone()) else {
            return false;
        };
        let ms = now.at.saturating_duration_since(self.epoch).as_millis() as u64;
        if self.limiter.allow(&party, ms) {
            return true;
        }
        self.send(
            session,
            ServerMessage::Error {
                req,
                error: ErrorCode::RateLimited,
                reason: Some(DisconnectReason::ServiceTooManyRequests),
                message: "too many call requests for this user; slow down".into(),
            },
        );
        false
    }
}

/// The core. See the module docs.
pub struct Core {
    cx: Cx,
    calls: call::Calls,
    rooms: room::Rooms,
    engine: engine::Engine,
}

impl Core {
    /// A core with these settings, per-service rules, `cc_param` key and ID source,
    /// starting at `now`.
    pub fn new(
        now: Now,
        settings: Settings,
        services: HashMap<String, ServiceRules>,
        cc_key: CcKey,
        ids: Box<dyn IdSource>,
    ) -> Self {
        let limiter = KeyedLimiter::new(settings.calls_per_user_per_sec, settings.calls_per_user_burst);
        Core {
            cx: Cx {
                settings,
                services,
                cc_key,
                presence: Presence::default(),
                ids,
                timers: Timers::default(),
                out: VecDeque::new(),
                limiter,
                epoch: now.at,
                left: Vec::new(),
            },
            calls: call::Calls::default(),
            rooms: room::Rooms::default(),
            engine: engine::Engine::default(),
        }
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.cx.out.pop_front()
    }

    /// When [`Core::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.cx.timers.next()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Now) {
        while let Some((at, timer)) = self.cx.timers.pop_due(now.at) {
            match timer {
                Timer::Call(sid, kind) => self.calls.timer(&mut self.cx, now, at, &sid, kind),
                Timer::Room(sid, kind) => self.rooms.timer(&mut self.cx, now, at, &sid, kind),
                Timer::Invite(sid, user) => {
                    self.engine.invite_timer(&mut self.cx, &mut self.rooms, now, at, &sid, &user)
                }
            }
            self.settle(now);
        }
    }

    /// Lets the engine act on departures from its calls' rooms (a departure may end a
    /// call, which empties its room: repeated until nothing is left), then keep the
    /// snapshots of the group calls that changed.
    fn settle(&mut self, now: Now) {
        while !self.cx.left.is_empty() {
            let left = std::mem::take(&mut self.cx.left);
            for l in left {
                self.engine.left_room(&mut self.cx, &mut self.rooms, now, l);
            }
        }
        self.engine.snapshot_changed(&mut self.cx, now);
    }

    /// Feeds one input at `now`.
    pub fn handle(&mut self, now: Now, input: Input) {
        match input {
            Input::Open { session, party, auth, ip, client } => {
                let rung = auth == SessionAuth::Token;
                self.cx.presence.open(session, party.clone(), auth, ip, client.clone());
                if rung && client.engine && !client.multi_device && !client.proxy {
                    self.sign_out_elsewhere(now, session, &party, client.instance.as_deref());
                }
                if rung {
                    // A device that comes online while a call rings for its user rings too.
                    self.calls.device_online(&mut self.cx, now, session);
                    self.engine.device_online(&mut self.cx, session);
                }
            }
            Input::Closed { session } => {
                if let Some(s) = self.cx.presence.close(session) {
                    self.rooms.session_closed(&mut self.cx, now, session);
                    self.calls.session_closed(&mut self.cx, now, session, s.calls);
                }
            }
            Input::Message { session, msg } => self.message(now, session, msg),
            Input::PushResult { sid, user: Some(user), ok } => {
                self.engine.push_result(&mut self.cx, &mut self.rooms, now, &sid, &user, ok)
            }
            Input::PushResult { sid, user: None, ok } => self.calls.push_result(&mut self.cx, now, &sid, ok),
            Input::Relay(event) => self.relay(now, event),
            Input::Adopt { calls, rooms, group_calls, since_ms } => {
                for call in calls {
                    self.calls.adopt(&mut self.cx, now, call, since_ms);
                }
                for room in rooms {
                    let call = group_calls.iter().any(|g| g.call_id == room.sid);
                    self.rooms.adopt(&mut self.cx, now, room, call);
                }
                for group_call in group_calls {
                    self.engine.adopt(&mut self.cx, now, group_call);
                }
            }
        }
        self.settle(now);
    }

    /// Live counts.
    pub fn census(&self) -> Census {
        let (calls, connected) = self.calls.counts();
        let (sessions, rooms, group_calls) = (self.cx.presence.len(), self.rooms.census(), self.engine.len());
        Census { sessions, calls, connected, rooms, group_calls }
    }

    /// Live rooms and their participants (cheap: kept, not counted).
    pub fn room_census(&self) -> RoomCensus {
        self.rooms.census()
    }

    /// The connected calls and the rooms (not a group call's), as snapshots: what a
    /// draining node hands over to another.
    pub fn movable(&self, now: Now) -> (Vec<LiveCall>, Vec<crate::records::LiveRoom>) {
        (self.calls.movable(now), self.rooms.movable())
    }

    /// Lets go of the calls and rooms `sids`, handed over to another node (which runs
    /// them on from their snapshots): no record, nothing said, their relay connections
    /// left to go on until the clients move. The sessions in them, for the shell to let
    /// go of too: their clients come back and resume on the new owner.
    pub fn release(&mut self, sids: &[Sid]) -> Vec<SessionId> {
        let mut sessions = Vec::new();
        for sid in sids {
            sessions.extend(self.calls.release(&mut self.cx, sid));
            sessions.extend(self.rooms.release(&mut self.cx, sid));
        }
        sessions.sort();
        sessions.dedup();
        sessions
    }

    /// The live call `sid` of this service (the caller's), if any.
    pub fn live_call(&self, now: Now, service_id: &str, sid: &Sid) -> Option<LiveCall> {
        self.calls.live_call(now, service_id, sid)
    }

    /// A live group call of `service_id` (REST): its record so far and whether it
    /// began.
    pub fn live_group_call(
        &self,
        now: Now,
        service_id: &str,
        id: &Sid,
    ) -> Option<(switchboard_protocol::record::GroupCallRecord, bool)> {
        self.engine.live(&self.cx, now, service_id, id)
    }

    /// The app server force-ends a call (REST): USER_ERROR, source app_server. Whether
    /// it was a live call of this service.
    pub fn force_end(
        &mut self,
        now: Now,
        service_id: &str,
        sid: &Sid,
        user_rel_code: Option<String>,
    ) -> bool {
        self.calls.force_end(&mut self.cx, now, service_id, sid, user_rel_code)
    }

    /// The live rooms of a service.
    pub fn rooms(&self, service_id: &str) -> Vec<RoomInfo> {
        self.rooms.list(service_id)
    }

    /// One live room of a service.
    pub fn room(&self, service_id: &str, room_id: &str) -> Option<RoomInfo> {
        self.rooms.get(service_id, room_id)
    }

    /// The app server ends a room (REST); whether it was found.
    pub fn close_room(
        &mut self,
        now: Now,
        service_id: &str,
        room_id: &str,
        user_rel_code: Option<String>,
    ) -> bool {
        let closed = self.rooms.force_close(&mut self.cx, now, service_id, room_id, user_rel_code);
        self.settle(now);
        closed
    }

    /// The app server kicks users out of a room (REST); the users found, or `None` for
    /// no room.
    pub fn kick(
        &mut self,
        now: Now,
        service_id: &str,
        room_id: &str,
        user_ids: &[String],
        user_rel_code: Option<String>,
    ) -> Option<Vec<String>> {
        let kicked = self.rooms.kick(&mut self.cx, now, service_id, room_id, user_ids, user_rel_code);
        self.settle(now);
        kicked
    }

    /// The app server messages a room (REST); the sessions reached, or `None` for no
    /// room.
    pub fn app_message(
        &mut self,
        service_id: &str,
        room_id: &str,
        user_ids: Option<&[String]>,
        data: &str,
    ) -> Option<usize> {
        self.rooms.app_message(&mut self.cx, service_id, room_id, user_ids, data)
    }
}

#[cfg(test)]
impl Core {
    /// The `cc_param` of a ringing call, as its push carries it.
    pub(crate) fn cc_param(&self, sid: &Sid) -> Option<String> {
        self.calls.cc_param(&self.cx, sid)
    }

    /// The key `cc_param`s are signed with.
    pub(crate) fn cc_key(&self) -> &CcKey {
        &self.cx.cc_key
    }
}

/// Checks `app_data` of a new call or room membership.
pub(crate) fn app_data_too_long(app_data: Option<&String>) -> bool {
    app_data.is_some_and(|d| d.len() > MAX_APP_DATA_BYTES)
}
