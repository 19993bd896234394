//! The 1-to-1 call core: a sans-IO state machine.
//!
//! [`Switch`] owns every live 1-to-1 call and knows which sessions (devices) each
//! user has, because BUSY, MULTIDEV_IN_USE and ALREADY_GOT_A_CALL are questions about
//! a user's other calls. It never touches a socket or a clock: the shell feeds it
//! [`Input`]s with the current time (epoch milliseconds), drains [`Output`]s with
//! [`Switch::poll_output`], and wakes it at [`Switch::poll_timeout`] through
//! [`Switch::handle_timeout`]. Tests drive it on simulated time without sleeping.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use switchboard_protocol::record::{CallRecord, GcallRecord, NotifyRecord};
use switchboard_protocol::{
    ids, ClientMessage, DisconnectReason, DisconnectSource, ErrorCode, MediaLine, MediaType, ServerMessage,
    StartFailReason, MAX_APP_DATA_BYTES,
};

use crate::auth::{CcClaims, CcKey};
use crate::limit::KeyedLimiter;
use crate::room::{RoomCensus, RoomOutput, RoomRules, Rooms};

mod record;
#[cfg(test)]
pub(crate) mod tests;

pub use record::LiveCall;

pub use crate::party::{Millis, Party, RoomId, SessionId, Sid};
use crate::presence::Presence;
pub use crate::presence::SessionAuth;

/// Longest `user_rel_code` accepted, in bytes.
pub const MAX_USER_REL_CODE_BYTES: usize = 128;

/// A `resume_param` is good for at least this long (or the service's maximum call
/// time, when longer), plus the reconnect grace.
const RESUME_PARAM_MIN_SECS: u64 = 86_400;

/// Per-service rules the core needs.
#[derive(Debug, Clone)]
pub struct ServiceRules {
    /// Ring timeout before NOANSWER.
    pub ring_timeout_ms: Millis,
    /// Longest connected time; 0 = none.
    pub max_call_ms: Millis,
    /// Region code for records.
    pub rc_idc: String,
    /// Whether a notify_cb URL is configured.
    pub has_notify: bool,
}

/// Core-wide settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a party may be without a session before NETWORK_UNSTABLE.
    pub reconnect_grace_ms: Millis,
    /// make_call / verify_call per second per user.
    pub calls_per_user_per_sec: f64,
    /// Burst of the above.
    pub calls_per_user_burst: f64,
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
        /// Its device kind (`BROWSER`, …; `UE_TYPE_UNDEFINED` when not said).
        ue_type: String,
    },
    /// A session's connection is gone (closed, or silent past the heartbeat timeout).
    Closed {
        /// The session.
        session: SessionId,
    },
    /// A call message from a session (`make_call`, `verify_call`, `accept_call`,
    /// `end_call`, `resume`).
    Message {
        /// The session.
        session: SessionId,
        /// The message.
        msg: ClientMessage,
    },
    /// The outcome of a notify_cb request.
    PushResult {
        /// The call.
        sid: String,
        /// 2xx within the deadline.
        ok: bool,
    },
    /// A party's media stopped (no RTP past the media timeout).
    MediaLost {
        /// The call or room.
        sid: String,
        /// The relay's party: `caller` / `callee` in a call, the user ID in a room.
        party: String,
    },
    /// The media relay offers lines to a party's connection: pass the offer on.
    RelayOffer {
        /// The call or room.
        sid: String,
        /// The relay's party.
        party: String,
        /// The relay's id for the offer.
        offer_id: u64,
        /// The SDP offer.
        sdp: String,
    },
    /// The relay graded each room participant's network (SPEC §6, 0-6).
    RelayQuality {
        /// The room.
        sid: String,
        /// User ID and grade.
        quality: Vec<(String, u8)>,
    },
    /// The relay measured the room's audio levels (0-100 per participant) and who talks.
    RelayLevels {
        /// The room.
        sid: String,
        /// User ID, level, talking.
        levels: Vec<(String, u8, bool)>,
    },
    /// The relay assigned a room participant's lines to sources.
    RelayLines {
        /// The room.
        sid: String,
        /// The relay's party (the user ID).
        party: String,
        /// Whose media each line carries.
        lines: Vec<MediaLine>,
    },
    /// The app server force-ends a call (REST): USER_ERROR, source app_server.
    ForceEnd {
        /// The service asking.
        service_id: String,
        /// The call.
        sid: String,
        /// The app's release code.
        user_rel_code: Option<String>,
    },
}

/// What the core wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a message to a session.
    Send(SessionId, ServerMessage),
    /// Call the service's notify_cb; answer with [`Input::PushResult`].
    Notify {
        /// The service whose notify_cb to call.
        service_id: String,
        /// The record.
        record: NotifyRecord,
    },
    /// Hand a party's SDP offer to the media relay; answer the session with
    /// `media_answer` (or an error) echoing `req`.
    MediaOffer {
        /// The call or room.
        sid: String,
        /// The relay's party: `caller` / `callee` in a call, the user ID in a room.
        party: String,
        /// The party's session.
        session: SessionId,
        /// Its request number.
        req: Option<u64>,
        /// The SDP offer.
        sdp: String,
    },
    /// A party's answer to the relay's offer ([`Input::RelayOffer`]).
    MediaAnswer {
        /// The call or room.
        sid: String,
        /// The relay's party.
        party: String,
        /// The offer answered.
        offer_id: u64,
        /// The SDP answer.
        sdp: String,
    },
    /// A party asks the relay for a line to send `kind` on.
    AddMedia {
        /// The call or room.
        sid: String,
        /// The relay's party.
        party: String,
        /// Audio or video.
        kind: MediaType,
    },
    /// A party left a room that goes on: release its media.
    MediaLeave {
        /// The room.
        sid: String,
        /// The relay's party (the user ID).
        party: String,
    },
    /// A room was created: its media forwards at most `speakers` loudest speakers.
    RoomMedia {
        /// The room.
        sid: String,
        /// Most speakers heard at once.
        speakers: usize,
        /// A video room.
        video: bool,
    },
    /// A room participant receives video only from these participants.
    VideoFrom {
        /// The room.
        sid: String,
        /// The receiving participant (its user ID).
        party: String,
        /// Whose video it asked for, and the size (`qvga`, `vga`, `hd`).
        from: Vec<(String, Option<String>)>,
    },
    /// A room changed: keep its snapshot (see [`crate::room::LiveRoom`]).
    LiveRoom(crate::room::LiveRoom),
    /// A room ended: its snapshot goes.
    RoomGone {
        /// The room.
        sid: String,
    },
    /// A participant left a room, for the metrics (the room may go on).
    RoomLeft {
        /// Why.
        reason: DisconnectReason,
    },
    /// The call or room is over: release its media.
    MediaEnd {
        /// The call or room.
        sid: String,
    },
    /// A room changed: deliver to on_gcall_evt_cb, in `seq` order per room.
    Gcall {
        /// The room's service.
        service_id: String,
        /// The room's callback number (1, 2, …).
        seq: u64,
        /// The record.
        record: GcallRecord,
    },
    /// A live call changed (created, verified, answered, resumed): keep its
    /// snapshot so that it can be read back and closed after a crash.
    Live(LiveCall),
    /// The call ended: deliver the record to on_call_evt_cb (and store it); the live
    /// snapshot of this `sid` is gone.
    Record {
        /// The caller's service.
        service_id: String,
        /// The record.
        record: CallRecord,
    },
}

impl From<RoomOutput> for Output {
    fn from(o: RoomOutput) -> Output {
        match o {
            RoomOutput::Send(session, msg) => Output::Send(session, msg),
            RoomOutput::MediaLeave { sid, party } => Output::MediaLeave { sid, party },
            RoomOutput::MediaEnd { sid } => Output::MediaEnd { sid },
            RoomOutput::RoomLeft { reason } => Output::RoomLeft { reason },
            RoomOutput::Gcall { service_id, seq, record } => Output::Gcall { service_id, seq, record },
            RoomOutput::RoomMedia { sid, speakers, video } => Output::RoomMedia { sid, speakers, video },
            RoomOutput::VideoFrom { sid, party, from } => Output::VideoFrom { sid, party, from },
            RoomOutput::Live(room) => Output::LiveRoom(room),
            RoomOutput::Gone { sid } => Output::RoomGone { sid },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    Connected { start_ms: Millis },
}

#[derive(Debug, Clone)]
struct Device {
    session: SessionId,
    verified: bool,
    ip: String,
}

#[derive(Debug)]
struct Call {
    sid: Sid,
    caller: Party,
    callee: Party,
    media: MediaType,
    app_data: Option<String>,
    setup_ms: Millis,
    phase: Phase,
    caller_session: Option<SessionId>,
    caller_ip: String,
    /// Callee devices: every ringing one while ringing; the answering one after.
    devices: Vec<Device>,
    /// The answering device, when it answered from a cc_param session: the `device`
    /// its `resume_param` names.
    callee_device: Option<u64>,
    callee_ip: String,
    push_failed: bool,
    ring_deadline: Option<Millis>,
    max_deadline: Option<Millis>,
    caller_lost: Option<Millis>,
    callee_lost: Option<Millis>,
    /// Connected time during which a party had no session (not billed).
    interrupted_ms: Millis,
    /// Since when a party of the connected call has been without a session.
    lost_since: Option<Millis>,
    rc_idc: String,
}

impl Call {
    fn snapshot(&self) -> LiveCall {
        LiveCall {
            sid: self.sid.to_string(),
            from_service_id: self.caller.service_id.clone(),
            from_user_id: self.caller.user_id.clone(),
            to_service_id: self.callee.service_id.clone(),
            to_user_id: self.callee.user_id.clone(),
            media_type: self.media.letter().into(),
            app_data: self.app_data.clone(),
            setup_ms: self.setup_ms,
            start_ms: match self.phase {
                Phase::Connected { start_ms } => Some(start_ms),
                Phase::Ringing => None,
            },
            srcip: self.caller_ip.clone(),
            dstip: self.callee_ip.clone(),
            rc_idc: self.rc_idc.clone(),
            interrupted_ms: self.interrupted_ms,
            lost_since_ms: self.lost_since,
        }
    }

    fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.caller_session.into_iter().chain(self.devices.iter().map(|d| d.session))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Ring,
    MaxTime,
    CallerLost,
    CalleeLost,
}

/// The 1-to-1 call core. See the module docs.
pub struct Switch {
    settings: Settings,
    services: HashMap<String, ServiceRules>,
    cc_key: CcKey,
    presence: Presence,
    calls: HashMap<Sid, Call>,
    timers: BinaryHeap<Reverse<(Millis, TimerKind, Sid)>>,
    out: VecDeque<Output>,
    call_limiter: KeyedLimiter<Party>,
    rooms: Rooms,
    /// What the rooms decided, passed on in [`Switch::poll_output`].
    room_out: VecDeque<RoomOutput>,
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
}

impl Switch {
    /// A core with these settings, services and `cc_param` key.
    pub fn new(settings: Settings, services: HashMap<String, ServiceRules>, cc_key: CcKey) -> Self {
        let room_rules = services
            .iter()
            .map(|(id, r)| {
                let rules = RoomRules {
                    max_speakers: 6,
                    max_participants: 50,
                    alone_kick_out_ms: 300_000,
                    max_call_ms: r.max_call_ms,
                    has_gcall_cb: false,
                };
                (id.clone(), rules)
            })
            .collect();
        Self::with_rooms(settings, services, room_rules, cc_key)
    }

    /// A core with room rules per service too.
    pub fn with_rooms(
        settings: Settings,
        services: HashMap<String, ServiceRules>,
        room_rules: HashMap<String, RoomRules>,
        cc_key: CcKey,
    ) -> Self {
        let call_limiter = KeyedLimiter::new(settings.calls_per_user_per_sec, settings.calls_per_user_burst);
        let rooms = Rooms::new(settings.reconnect_grace_ms, room_rules);
        Self {
            rooms,
            room_out: VecDeque::new(),
            settings,
            services,
            cc_key,
            presence: Presence::default(),
            calls: HashMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            call_limiter,
        }
    }

    /// Live counts.
    pub fn census(&self) -> Census {
        Census {
            sessions: self.presence.len(),
            calls: self.calls.len(),
            connected: self.calls.values().filter(|c| matches!(c.phase, Phase::Connected { .. })).count(),
            rooms: self.rooms.census(),
        }
    }

    /// The live call `sid` of this service (the caller's), if any.
    pub fn live_call(&self, service_id: &str, sid: &str) -> Option<LiveCall> {
        self.calls.get(sid).filter(|c| c.caller.service_id == service_id).map(Call::snapshot)
    }

    fn changed(&mut self, sid: &str) {
        if let Some(c) = self.calls.get(sid) {
            self.out.push_back(Output::Live(c.snapshot()));
        }
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front().or_else(|| self.room_out.pop_front().map(Output::from))
    }

    /// When [`Switch::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let calls = self.timers.peek().map(|Reverse((at, _, _))| *at);
        match (calls, self.rooms.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The rooms (read-only: listing them for the REST API).
    pub fn rooms(&self) -> &Rooms {
        &self.rooms
    }

    /// The app server ends a room; whether it was found.
    pub fn close_room(
        &mut self,
        now: Millis,
        service_id: &str,
        room_id: &str,
        user_rel_code: Option<String>,
    ) -> bool {
        self.rooms.force_close(now, service_id, room_id, user_rel_code, &mut self.room_out)
    }

    /// The app server kicks users out of a room; the users found, or `None` for no room.
    pub fn kick(
        &mut self,
        now: Millis,
        service_id: &str,
        room_id: &str,
        user_ids: &[String],
        user_rel_code: Option<String>,
    ) -> Option<Vec<String>> {
        self.rooms.kick(now, service_id, room_id, user_ids, user_rel_code, &mut self.room_out)
    }

    /// The app server messages a room; the sessions reached, or `None` for no room.
    pub fn app_message(
        &mut self,
        service_id: &str,
        room_id: &str,
        user_ids: Option<&[String]>,
        data: &str,
    ) -> Option<usize> {
        self.rooms.app_message(service_id, room_id, user_ids, data, &mut self.room_out)
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.rooms.handle_timeout(now, &mut self.room_out);
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, kind, sid))) = self.timers.pop() else {
                break;
            };
            let Some(call) = self.calls.get(&sid) else {
                continue;
            };
            match kind {
                TimerKind::Ring if call.ring_deadline == Some(at) && call.phase == Phase::Ringing => {
                    self.finish(
                        now,
                        &sid,
                        DisconnectReason::NoAnswer,
                        DisconnectSource::CloudServer,
                        None,
                        None,
                    );
                }
                TimerKind::MaxTime if call.max_deadline == Some(at) => {
                    self.finish(
                        now,
                        &sid,
                        DisconnectReason::MaxCallTimeExceeded,
                        DisconnectSource::CloudServer,
                        None,
                        None,
                    );
                }
                TimerKind::CallerLost if call.caller_lost == Some(at) => {
                    self.finish(
                        now,
                        &sid,
                        DisconnectReason::NetworkUnstable,
                        DisconnectSource::Caller,
                        None,
                        None,
                    );
                }
                TimerKind::CalleeLost if call.callee_lost == Some(at) => {
                    self.finish(
                        now,
                        &sid,
                        DisconnectReason::NetworkUnstable,
                        DisconnectSource::Callee,
                        None,
                        None,
                    );
                }
                _ => {}
            }
        }
    }

    /// Feeds one input at `now`.
    pub fn handle(&mut self, now: Millis, input: Input) {
        match input {
            Input::Open { session, party, auth, ip, ue_type } => self.open(session, party, auth, ip, ue_type),
            Input::Closed { session } => self.closed(now, session),
            Input::Message { session, msg } => self.message(now, session, msg),
            Input::PushResult { sid, ok } => self.push_result(now, &sid, ok),
            Input::MediaLost { sid, party } => {
                if self.rooms.is_room(&sid) {
                    return self.rooms.media_lost(now, &sid, &party, &mut self.room_out);
                }
                let Some(side) = Side::from_party(&party) else { return };
                if self.calls.get(sid.as_str()).is_some_and(|c| matches!(c.phase, Phase::Connected { .. })) {
                    self.finish(now, &sid, DisconnectReason::NetworkUnstable, side.source(), None, None);
                }
            }
            Input::RelayOffer { sid, party, offer_id, sdp } => {
                let session = if self.rooms.is_room(&sid) {
                    self.rooms.session_of(&sid, &party)
                } else {
                    self.calls.get(sid.as_str()).and_then(|c| match (&c.phase, Side::from_party(&party)) {
                        (Phase::Ringing, _) | (_, None) => None,
                        (_, Some(Side::Caller)) => c.caller_session,
                        (_, Some(Side::Callee)) => c.devices.first().map(|d| d.session),
                    })
                };
                if let Some(session) = session {
                    self.send(session, ServerMessage::MediaOffer { sid: sid.into(), offer_id, sdp });
                }
            }
            Input::RelayLines { sid, party, lines } => {
                self.rooms.media_lines(&sid, &party, lines, &mut self.room_out)
            }
            Input::RelayLevels { sid, levels } => self.rooms.levels(&sid, levels, &mut self.room_out),
            Input::RelayQuality { sid, quality } => self.rooms.quality(&sid, quality, &mut self.room_out),
            Input::ForceEnd { service_id, sid, user_rel_code } => {
                if self.calls.get(sid.as_str()).is_some_and(|c| c.caller.service_id == service_id) {
                    self.finish(
                        now,
                        &sid,
                        DisconnectReason::UserError,
                        DisconnectSource::AppServer,
                        None,
                        user_rel_code,
                    );
                }
            }
        }
    }

    fn send(&mut self, session: SessionId, msg: ServerMessage) {
        self.out.push_back(Output::Send(session, msg));
    }

    fn error(&mut self, session: SessionId, req: Option<u64>, error: ErrorCode, message: impl Into<String>) {
        self.send(session, ServerMessage::Error { req, error, reason: None, message: message.into() });
    }

    fn start_failed(
        &mut self,
        session: SessionId,
        req: Option<u64>,
        reason: StartFailReason,
        message: impl Into<String>,
    ) {
        self.send(
            session,
            ServerMessage::StartFailed { req, reason, code: reason.native_code(), message: message.into() },
        );
    }

    fn timer(&mut self, at: Millis, kind: TimerKind, sid: &Sid) {
        self.timers.push(Reverse((at, kind, sid.clone())));
    }

    fn open(&mut self, session: SessionId, party: Party, auth: SessionAuth, ip: String, ue_type: String) {
        let rung = auth == SessionAuth::Token;
        // A device that comes online while a call rings for its user rings too.
        let ringing: Vec<Sid> = self
            .presence
            .calls_of(&party)
            .iter()
            .filter(|sid| {
                self.calls.get(*sid).is_some_and(|c| c.callee == party && c.phase == Phase::Ringing)
            })
            .cloned()
            .collect();
        self.presence.open(session, party, auth, ip, ue_type);
        if rung {
            for sid in ringing {
                self.offer(session, &sid);
            }
        }
    }

    fn closed(&mut self, now: Millis, session: SessionId) {
        let Some(s) = self.presence.close(session) else {
            return;
        };
        self.rooms.session_closed(now, session);
        for sid in s.calls {
            let grace = self.settings.reconnect_grace_ms;
            let Some(call) = self.calls.get_mut(&sid) else {
                continue;
            };
            let mut timer = None;
            if call.caller_session == Some(session) {
                call.caller_session = None;
                call.caller_lost = Some(now + grace);
                if matches!(call.phase, Phase::Connected { .. }) {
                    call.lost_since.get_or_insert(now);
                }
                timer = Some((now + grace, TimerKind::CallerLost));
            } else if matches!(call.phase, Phase::Connected { .. }) {
                if call.devices.iter().any(|d| d.session == session) {
                    call.devices.clear();
                    call.callee_lost = Some(now + grace);
                    call.lost_since.get_or_insert(now);
                    timer = Some((now + grace, TimerKind::CalleeLost));
                }
            } else {
                call.devices.retain(|d| d.session != session);
                if call.devices.is_empty() && call.push_failed {
                    self.finish(
                        now,
                        &sid,
                        DisconnectReason::PushError,
                        DisconnectSource::CloudServer,
                        None,
                        None,
                    );
                }
            }
            if let Some((at, kind)) = timer {
                self.timer(at, kind, &sid);
            }
        }
    }

    fn message(&mut self, now: Millis, session: SessionId, msg: ClientMessage) {
        if self.presence.session(session).is_none() {
            return;
        }
        let msg = match self.room_message(now, session, msg) {
            Some(msg) => msg,
            None => return,
        };
        match msg {
            ClientMessage::MakeCall {
                req,
                to_user_id,
                to_service_id,
                media_type,
                app_data,
                ring_timeout_secs,
            } => self.make_call(
                now,
                session,
                req,
                to_user_id,
                to_service_id,
                media_type,
                app_data,
                ring_timeout_secs,
            ),
            ClientMessage::VerifyCall { req, cc_param } => self.verify_call(now, session, req, &cc_param),
            ClientMessage::AcceptCall { req, sid } => self.accept_call(now, session, req, &sid),
            ClientMessage::EndCall { req, sid, reason, user_rel_code } => {
                self.end_call(now, session, req, &sid, reason, user_rel_code)
            }
            ClientMessage::Resume { req, sid } => self.resume(now, session, req, &sid),
            ClientMessage::MediaOffer { req, sid, sdp } => {
                self.media_offer(session, req, sid.to_string(), sdp)
            }
            ClientMessage::MediaAnswer { sid, offer_id, sdp } => match self.connected_side(session, &sid) {
                Ok((side, _)) => self.out.push_back(Output::MediaAnswer {
                    sid: sid.to_string(),
                    party: side.party().into(),
                    offer_id,
                    sdp,
                }),
                Err(code) => self.error(session, None, code, "media answers need a connected call"),
            },
            ClientMessage::AddMedia { sid, kind } => {
                let Some(kind) = MediaType::parse(&kind) else {
                    return self.error(session, None, ErrorCode::InvalidParam, "kind must be audio or video");
                };
                match self.connected_side(session, &sid) {
                    Ok((side, _)) => self.out.push_back(Output::AddMedia {
                        sid: sid.to_string(),
                        party: side.party().into(),
                        kind,
                    }),
                    Err(code) => self.error(session, None, code, "media needs a connected call"),
                }
            }
            ClientMessage::MediaState { sid, mic_muted, video_enabled, video_paused } => self.media_state(
                session,
                sid.to_string(),
                crate::room::MediaState { mic_muted, video_enabled, video_paused },
            ),
            ClientMessage::JoinRoom { req, .. }
            | ClientMessage::LeaveRoom { req, .. }
            | ClientMessage::ShortData { req, .. }
            | ClientMessage::RequestPeerVideo { req, .. }
            | ClientMessage::RemovePeerVideo { req, .. } => {
                self.error(session, req, ErrorCode::NotFound, "no such room for this session")
            }
            ClientMessage::Hello { .. } | ClientMessage::Ping {} | ClientMessage::RefreshToken { .. } => {
                self.error(session, None, ErrorCode::WrongState, "handled by the session, not the call core")
            }
        }
    }

    /// Room messages, and messages naming a room's sid, go to the rooms; anything
    /// else comes back for the call core.
    fn room_message(&mut self, now: Millis, session: SessionId, msg: ClientMessage) -> Option<ClientMessage> {
        let s = self.presence.session(session)?;
        let token = s.auth == SessionAuth::Token;
        let who = crate::room::Sender {
            session,
            party: s.party.clone(),
            ip: s.ip.clone(),
            ue_type: s.ue_type.clone(),
        };
        let member = |rooms: &Rooms, sid: &str| rooms.media_party(session, sid);
        match msg {
            ClientMessage::JoinRoom {
                req,
                room_id,
                room_service_id,
                media_type,
                display_name,
                app_data,
                mic_muted,
                video_enabled,
            } => {
                if !token {
                    self.error(
                        session,
                        req,
                        ErrorCode::WrongState,
                        "a cc_param session can only verify its call",
                    );
                    return None;
                }
                if !self.rate_ok(now, session, req) {
                    return None;
                }
                let join = crate::room::Join {
                    req,
                    room_id,
                    room_service_id,
                    media_type,
                    display_name,
                    app_data,
                    mic_muted: mic_muted.unwrap_or(false),
                    video_enabled: video_enabled.unwrap_or(true),
                };
                self.rooms.join(now, who, join, &mut self.room_out);
                None
            }
            ClientMessage::LeaveRoom { req, sid } => {
                self.rooms.leave(now, session, req, &sid, None, None, &mut self.room_out);
                None
            }
            ClientMessage::EndCall { req, sid, reason, user_rel_code } if self.rooms.is_room(&sid) => {
                match client_end(reason, user_rel_code.as_deref()) {
                    Ok(reason) => {
                        self.rooms.leave(now, session, req, &sid, reason, user_rel_code, &mut self.room_out)
                    }
                    Err(message) => self.error(session, req, ErrorCode::InvalidParam, message),
                }
                None
            }
            ClientMessage::RequestPeerVideo { req, sid, user_id, resolution } => {
                self.rooms.peer_video(session, req, &sid, &user_id, Some(resolution), &mut self.room_out);
                None
            }
            ClientMessage::RemovePeerVideo { req, sid, user_id } => {
                self.rooms.peer_video(session, req, &sid, &user_id, None, &mut self.room_out);
                None
            }
            ClientMessage::ShortData { req, sid, data_type, data, targets } => {
                self.rooms.short_data(session, req, &sid, data_type, data, targets, &mut self.room_out);
                None
            }
            // Room sids are 32 hex digits, call sids UUIDs with dashes: a room that
            // ended is told apart from a call that ended.
            ClientMessage::Resume { req, sid } if token && crate::room::is_room_sid(&sid) => {
                self.rooms.resume(&who, req, &sid, &mut self.room_out);
                None
            }
            ClientMessage::MediaOffer { req, sid, sdp } if self.rooms.is_room(&sid) => {
                match member(&self.rooms, &sid) {
                    Some(party) => self.out.push_back(Output::MediaOffer {
                        sid: sid.to_string(),
                        party,
                        session,
                        req,
                        sdp,
                    }),
                    None => self.error(session, req, ErrorCode::NotFound, "this session is not in that room"),
                }
                None
            }
            ClientMessage::MediaAnswer { sid, offer_id, sdp } if self.rooms.is_room(&sid) => {
                if let Some(party) = member(&self.rooms, &sid) {
                    self.out.push_back(Output::MediaAnswer { sid: sid.to_string(), party, offer_id, sdp });
                }
                None
            }
            ClientMessage::AddMedia { sid, kind } if self.rooms.is_room(&sid) => {
                match (member(&self.rooms, &sid), MediaType::parse(&kind)) {
                    (Some(party), Some(kind)) => {
                        self.out.push_back(Output::AddMedia { sid: sid.to_string(), party, kind })
                    }
                    (None, _) => {
                        self.error(session, None, ErrorCode::NotFound, "this session is not in that room")
                    }
                    (_, None) => {
                        self.error(session, None, ErrorCode::InvalidParam, "kind must be audio or video")
                    }
                }
                None
            }
            ClientMessage::MediaState { sid, mic_muted, video_enabled, video_paused }
                if self.rooms.is_room(&sid) =>
            {
                let state = crate::room::MediaState { mic_muted, video_enabled, video_paused };
                self.rooms.media_state(now, session, &sid, state, &mut self.room_out);
                None
            }
            other => Some(other),
        }
    }

    fn rate_ok(&mut self, now: Millis, session: SessionId, req: Option<u64>) -> bool {
        let Some(party) = self.presence.session(session).map(|s| s.party.clone()) else {
            return false;
        };
        if self.call_limiter.allow(&party, now) {
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

    #[allow(clippy::too_many_arguments)]
    fn make_call(
        &mut self,
        now: Millis,
        session: SessionId,
        req: Option<u64>,
        to_user_id: String,
        to_service_id: Option<String>,
        media_type: String,
        app_data: Option<String>,
        ring_timeout_secs: Option<u32>,
    ) {
        if !self.rate_ok(now, session, req) {
            return;
        }
        let Some(s) = self.presence.session(session) else {
            return;
        };
        if s.auth != SessionAuth::Token {
            return self.error(
                session,
                req,
                ErrorCode::WrongState,
                "a cc_param session can only verify its call",
            );
        }
        let caller = s.party.clone();
        let caller_ip = s.ip.clone();
        let to_service_id = to_service_id.unwrap_or_else(|| caller.service_id.clone());
        use StartFailReason as F;
        if !ids::is_valid_user_id(&to_user_id) {
            return self.start_failed(
                session,
                req,
                F::InvalidUserId,
                "to_user_id must match [A-Za-z0-9_-]{1,64}",
            );
        }
        if !ids::is_valid_service_id(&to_service_id) || to_service_id != caller.service_id {
            return self.start_failed(
                session,
                req,
                F::InvalidServiceId,
                "to_service_id must be the caller's own service",
            );
        }
        let Some(media) = MediaType::parse(&media_type) else {
            return self.start_failed(session, req, F::InvalidMediaType, "media_type must be audio or video");
        };
        if app_data.as_ref().is_some_and(|d| d.len() > MAX_APP_DATA_BYTES) {
            return self.start_failed(session, req, F::TooLongAppServerData, "app_data is over 4096 bytes");
        }
        if to_user_id == caller.user_id {
            return self.start_failed(session, req, F::IdConflict, "a user cannot call itself");
        }
        let Some(rules) = self.services.get(&caller.service_id).cloned() else {
            return self.start_failed(session, req, F::InvalidServiceId, "unknown service");
        };
        let ring_ms = match ring_timeout_secs {
            Some(0) => {
                return self.start_failed(session, req, F::InvalidParam, "ring_timeout_secs must be > 0")
            }
            Some(s) => (u64::from(s) * 1000).min(rules.ring_timeout_ms),
            None => rules.ring_timeout_ms,
        };

        let callee = Party::new(to_service_id, to_user_id);
        let sid = crate::party::new_call_sid();
        let caller_calls: Vec<&Call> = self.party_calls(&caller).collect();
        let caller_in_use =
            caller_calls.iter().any(|c| c.caller == caller || matches!(c.phase, Phase::Connected { .. }));
        let caller_has_incoming =
            caller_calls.iter().any(|c| c.callee == caller && c.phase == Phase::Ringing);
        // A user in a room is busy for 1-to-1 calls, as in another call.
        let caller_in_use = caller_in_use || self.rooms.in_room(&caller);
        let callee_busy = self.party_calls(&callee).next().is_some() || self.rooms.in_room(&callee);

        let call = Call {
            sid: sid.clone(),
            caller: caller.clone(),
            callee: callee.clone(),
            media,
            app_data,
            setup_ms: now,
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
            ring_deadline: Some(now + ring_ms),
            max_deadline: None,
            caller_lost: None,
            callee_lost: None,
            interrupted_ms: 0,
            lost_since: None,
            rc_idc: rules.rc_idc.clone(),
        };
        self.calls.insert(sid.clone(), call);
        self.presence.link(session, &sid);
        self.presence.add_call(&callee, &sid);
        self.send(session, ServerMessage::CallCreated { req, sid: sid.to_string().into() });

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
            return self.finish(now, &sid, reason, source, None, None);
        }

        self.timer(now + ring_ms, TimerKind::Ring, &sid);
        if let (true, Some(param), Some(call)) = (rules.has_notify, self.cc_param(&sid), self.calls.get(&sid))
        {
            let record = NotifyRecord {
                sid: sid.to_string().into(),
                from_service_id: caller.service_id.clone(),
                from_user_id: caller.user_id.clone(),
                to_service_id: callee.service_id.clone(),
                to_user_id: callee.user_id.clone(),
                media_type: media.letter().into(),
                param,
                app_svr_data: call.app_data.clone(),
            };
            self.out.push_back(Output::Notify { service_id: caller.service_id.clone(), record });
        }
        self.send(session, ServerMessage::WaitConnected { sid: sid.to_string().into() });
        let devices: Vec<SessionId> = self.presence.devices(&callee).to_vec();
        for device in devices {
            self.offer(device, &sid);
        }
        self.changed(&sid);
    }

    /// Signs the `cc_param` of a call: bound to it and its callee, useless after
    /// its ring time (the call must also still be live when it is used).
    fn cc_param(&self, sid: &str) -> Option<String> {
        let call = self.calls.get(sid)?;
        let exp = (call.ring_deadline.unwrap_or(call.setup_ms) / 1000) + 60;
        Some(self.cc_key.sign(&CcClaims {
            sid: sid.to_string().into(),
            service_id: call.callee.service_id.clone(),
            user_id: call.callee.user_id.clone(),
            exp,
            device: None,
        }))
    }

    /// Signs the `resume_param` of the device that answered `sid` from a cc_param
    /// session. It outlives the ring time (it is good as long as the call is live and
    /// this device is still the one that answered it).
    fn resume_param(&self, now: Millis, sid: &str, device: SessionId) -> Option<String> {
        let call = self.calls.get(sid)?;
        let max_call_secs = self.services.get(&call.caller.service_id).map_or(0, |r| r.max_call_ms / 1000);
        let lifetime = max_call_secs.max(RESUME_PARAM_MIN_SECS) + self.settings.reconnect_grace_ms / 1000;
        Some(self.cc_key.sign(&CcClaims {
            sid: sid.to_string().into(),
            service_id: call.callee.service_id.clone(),
            user_id: call.callee.user_id.clone(),
            exp: now / 1000 + lifetime,
            device: Some(device.0),
        }))
    }

    /// Rings a callee device directly.
    fn offer(&mut self, session: SessionId, sid: &str) {
        let Some(ip) = self.presence.session(session).map(|s| s.ip.clone()) else {
            return;
        };
        let Some(cc_param) = self.cc_param(sid) else {
            return;
        };
        let Some(call) = self.calls.get_mut(sid) else {
            return;
        };
        if call.devices.iter().any(|d| d.session == session) {
            return;
        }
        if call.callee_ip.is_empty() {
            call.callee_ip = ip.clone();
        }
        call.devices.push(Device { session, verified: false, ip });
        let msg = ServerMessage::IncomingCall {
            sid: sid.to_string().into(),
            from_service_id: call.caller.service_id.clone(),
            from_user_id: call.caller.user_id.clone(),
            to_service_id: call.callee.service_id.clone(),
            to_user_id: call.callee.user_id.clone(),
            media_type: call.media,
            app_data: call.app_data.clone(),
            cc_param,
        };
        let sid = call.sid.clone();
        self.presence.link(session, &sid);
        self.send(session, msg);
    }

    fn party_calls<'a>(&'a self, party: &Party) -> impl Iterator<Item = &'a Call> + 'a {
        self.presence.calls_of(party).iter().filter_map(|sid| self.calls.get(sid))
    }

    fn verify_call(&mut self, now: Millis, session: SessionId, req: Option<u64>, cc_param: &str) {
        if !self.rate_ok(now, session, req) {
            return;
        }
        let Some(claims) = self.cc_key.open(cc_param) else {
            return self.start_failed(
                session,
                req,
                StartFailReason::DecodeCallParam,
                "cc_param is not valid",
            );
        };
        let Some(s) = self.presence.session(session) else {
            return;
        };
        match &s.auth {
            SessionAuth::CallParam { sid, .. } if *sid != claims.sid => {
                return self.start_failed(
                    session,
                    req,
                    StartFailReason::InvalidParam,
                    "this session belongs to another call",
                );
            }
            _ => {}
        }
        if s.party.service_id != claims.service_id {
            return self.start_failed(
                session,
                req,
                StartFailReason::InvalidServiceId,
                "cc_param is for another service",
            );
        }
        if s.party.user_id != claims.user_id {
            return self.start_failed(
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
        let Some(call) = self.calls.get_mut(claims.sid.as_str()) else {
            return self.send(session, released());
        };
        if matches!(call.phase, Phase::Connected { .. }) {
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
            return self.send(session, msg);
        }
        if claims.exp < now / 1000 {
            return self.send(session, released());
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
        self.presence.link(session, &sid);
        self.changed(&sid);
        self.send(session, msg);
    }

    fn accept_call(&mut self, now: Millis, session: SessionId, req: Option<u64>, sid: &str) {
        let Some(call) = self.calls.get_mut(sid) else {
            return self.error(session, req, ErrorCode::NotFound, "no such call for this session");
        };
        let sid = &call.sid.clone();
        if call.caller_session == Some(session) {
            return self.error(session, req, ErrorCode::WrongState, "the caller cannot accept its own call");
        }
        let Some(device) = call.devices.iter().find(|d| d.session == session).cloned() else {
            return self.error(session, req, ErrorCode::NotFound, "no such call for this session");
        };
        if call.phase != Phase::Ringing {
            return self.error(session, req, ErrorCode::WrongState, "the call is not ringing");
        }
        if !device.verified {
            return self.error(session, req, ErrorCode::WrongState, "verify_call first");
        }
        call.phase = Phase::Connected { start_ms: now };
        let from_cc_param =
            self.presence.session(session).is_some_and(|s| matches!(s.auth, SessionAuth::CallParam { .. }));
        call.callee_device = from_cc_param.then_some(session.0);
        if call.caller_lost.is_some() {
            call.lost_since = Some(now);
        }
        call.ring_deadline = None;
        call.callee_ip = device.ip.clone();
        let others: Vec<SessionId> =
            call.devices.iter().map(|d| d.session).filter(|s| *s != session).collect();
        call.devices.retain(|d| d.session == session);
        let caller_session = call.caller_session;
        let max_call_ms = self.services.get(&call.caller.service_id).map_or(0, |r| r.max_call_ms);
        if max_call_ms > 0 {
            call.max_deadline = Some(now + max_call_ms);
        }
        for other in others {
            self.drop_device(other, sid, DisconnectReason::MultidevAnswer);
        }
        let resume_param = if from_cc_param { self.resume_param(now, sid, session) } else { None };
        let connected = |req, resume_param| ServerMessage::Connected {
            req,
            sid: sid.to_string().into(),
            start_time: now / 1000,
            resume_param,
        };
        if let Some(c) = caller_session {
            self.send(c, connected(None, None));
        }
        self.send(session, connected(req, resume_param));
        self.changed(sid);
        if max_call_ms > 0 {
            self.timer(now + max_call_ms, TimerKind::MaxTime, sid);
        }
    }

    /// Tells a callee device that another device of its user took the call.
    fn drop_device(&mut self, session: SessionId, sid: &str, reason: DisconnectReason) {
        self.presence.unlink(session, sid);
        self.send(
            session,
            ServerMessage::Disconnected {
                req: None,
                sid: sid.to_string().into(),
                reason,
                source: DisconnectSource::Callee,
                by_remote: false,
                user_rel_code: None,
            },
        );
    }

    fn end_call(
        &mut self,
        now: Millis,
        session: SessionId,
        req: Option<u64>,
        sid: &str,
        reason: Option<u16>,
        user_rel_code: Option<String>,
    ) {
        let client_reason = match client_end(reason, user_rel_code.as_deref()) {
            Ok(r) => r,
            Err(message) => return self.error(session, req, ErrorCode::InvalidParam, message),
        };
        let Some(call) = self.calls.get_mut(sid) else {
            return self.error(session, req, ErrorCode::NotFound, "no such call for this session");
        };
        let is_caller = call.caller_session == Some(session);
        let is_device = call.devices.iter().any(|d| d.session == session);
        if !is_caller && !is_device {
            return self.error(session, req, ErrorCode::NotFound, "no such call for this session");
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
                self.drop_device(other, sid, DisconnectReason::MultidevDecline);
            }
        }
        self.finish(now, sid, reason, source, Some((session, req)), user_rel_code);
    }

    fn resume(&mut self, now: Millis, session: SessionId, req: Option<u64>, sid: &str) {
        let Some(s) = self.presence.session(session) else {
            return;
        };
        let party = s.party.clone();
        let auth = s.auth.clone();
        let ip = s.ip.clone();
        let Some(call) = self.calls.get_mut(sid) else {
            return self.send(
                session,
                ServerMessage::Disconnected {
                    req,
                    sid: sid.to_string().into(),
                    reason: DisconnectReason::ReleasedCall,
                    source: DisconnectSource::CloudServer,
                    by_remote: false,
                    user_rel_code: None,
                },
            );
        };
        let sid = &call.sid.clone();
        // A cc_param was pushed to every device of the callee (and may have leaked):
        // it verifies and answers a ringing call, but only the device that answered,
        // proving it with its resume_param, may take an answered call back.
        let may = match &auth {
            SessionAuth::Token => true,
            SessionAuth::CallParam { sid: bound, device } => {
                sid == bound.as_str() && device.is_some() && *device == call.callee_device
            }
        };
        let state = match call.phase {
            Phase::Ringing => "ringing",
            Phase::Connected { .. } => "connected",
        };
        let old = if may && party == call.caller {
            call.caller_lost = None;
            call.caller_ip = ip;
            call.caller_session.replace(session)
        } else if may && party == call.callee && matches!(call.phase, Phase::Connected { .. }) {
            call.callee_lost = None;
            call.callee_ip = ip.clone();
            if auth == SessionAuth::Token {
                // The user took the call over on a device of its own: the cc_param
                // device that answered can no longer take it back.
                call.callee_device = None;
            }
            let old = call.devices.first().map(|d| d.session);
            call.devices = vec![Device { session, verified: true, ip }];
            old
        } else {
            return self.error(session, req, ErrorCode::NotFound, "no such call for this session to resume");
        };
        if call.caller_lost.is_none() && call.callee_lost.is_none() {
            if let Some(t) = call.lost_since.take() {
                call.interrupted_ms += now.saturating_sub(t);
            }
        }
        if let Some(old) = old.filter(|o| *o != session) {
            self.presence.unlink(old, sid);
        }
        self.presence.link(session, sid);
        self.send(session, ServerMessage::Resumed { req, sid: sid.to_string().into(), state: state.into() });
        self.changed(sid);
    }

    /// The side `session` plays in the connected call `sid`, if any.
    fn connected_side(&self, session: SessionId, sid: &str) -> Result<(Side, &Call), ErrorCode> {
        let call = self.calls.get(sid).ok_or(ErrorCode::NotFound)?;
        let side = if call.caller_session == Some(session) {
            Side::Caller
        } else if call.devices.iter().any(|d| d.session == session) {
            Side::Callee
        } else {
            return Err(ErrorCode::NotFound);
        };
        match call.phase {
            Phase::Connected { .. } => Ok((side, call)),
            Phase::Ringing => Err(ErrorCode::WrongState),
        }
    }

    fn media_offer(&mut self, session: SessionId, req: Option<u64>, sid: String, sdp: String) {
        match self.connected_side(session, &sid) {
            Ok((side, _)) => {
                self.out.push_back(Output::MediaOffer { sid, party: side.party().into(), session, req, sdp })
            }
            Err(code) => self.error(session, req, code, "media starts once this session's call is connected"),
        }
    }

    fn media_state(&mut self, session: SessionId, sid: String, state: crate::room::MediaState) {
        let crate::room::MediaState { mic_muted, video_enabled, video_paused } = state;
        let peer = match self.connected_side(session, &sid) {
            Ok((Side::Caller, call)) => call.devices.first().map(|d| d.session),
            Ok((Side::Callee, call)) => call.caller_session,
            Err(code) => return self.error(session, None, code, "media state needs a connected call"),
        };
        if let Some(peer) = peer {
            self.send(
                peer,
                ServerMessage::PeerMediaState {
                    sid: sid.into(),
                    user_id: None,
                    mic_muted,
                    video_enabled,
                    video_paused,
                },
            );
        }
    }

    fn push_result(&mut self, now: Millis, sid: &str, ok: bool) {
        let Some(call) = self.calls.get_mut(sid) else {
            return;
        };
        if ok {
            return;
        }
        call.push_failed = true;
        if call.phase == Phase::Ringing && call.devices.is_empty() {
            self.finish(now, sid, DisconnectReason::PushError, DisconnectSource::CloudServer, None, None);
        }
    }

    /// Ends a call: tells every session still in it, forgets it, emits its record.
    fn finish(
        &mut self,
        now: Millis,
        sid: &str,
        reason: DisconnectReason,
        source: DisconnectSource,
        ender: Option<(SessionId, Option<u64>)>,
        user_rel_code: Option<String>,
    ) {
        let Some(call) = self.calls.remove(sid) else {
            return;
        };
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
            self.send(
                session,
                ServerMessage::Disconnected {
                    req,
                    sid: sid.to_string().into(),
                    reason,
                    source,
                    by_remote,
                    user_rel_code: user_rel_code.clone(),
                },
            );
        }
        for session in call.sessions() {
            self.presence.unlink(session, sid);
        }
        for party in [&call.caller, &call.callee] {
            self.presence.call_over(party, sid);
        }
        if matches!(call.phase, Phase::Connected { .. }) {
            self.out.push_back(Output::MediaEnd { sid: sid.to_string() });
        }
        let record = call.snapshot().record(now, reason, source, user_rel_code);
        self.out.push_back(Output::Record { service_id: call.caller.service_id.clone(), record });
    }
}

/// Checks what a client says when it ends a call or leaves a room: the reason must be
/// one a client may report, the release code at most 128 bytes.
fn client_end(reason: Option<u16>, user_rel_code: Option<&str>) -> Result<Option<DisconnectReason>, String> {
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

/// One end of a 1-to-1 call. Not a disconnect source (those include the server and
/// the app server), though each side is one when it ends the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Who called.
    Caller,
    /// Who was called.
    Callee,
}

impl Side {
    /// The disconnect source of this side ending the call.
    pub fn source(self) -> DisconnectSource {
        match self {
            Side::Caller => DisconnectSource::Caller,
            Side::Callee => DisconnectSource::Callee,
        }
    }

    /// The side a disconnect source is, if it is one.
    pub fn of_source(source: DisconnectSource) -> Option<Side> {
        match source {
            DisconnectSource::Caller => Some(Side::Caller),
            DisconnectSource::Callee => Some(Side::Callee),
            _ => None,
        }
    }

    /// The relay's name for this side's media party.
    pub fn party(self) -> &'static str {
        self.source().name()
    }

    /// The side the relay's media party `party` is.
    pub fn from_party(party: &str) -> Option<Side> {
        [Side::Caller, Side::Callee].into_iter().find(|s| s.party() == party)
    }
}
