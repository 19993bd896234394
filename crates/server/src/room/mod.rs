//! The room (group call) core: a sans-IO state machine, like the 1-to-1 core.
//!
//! A room is `(room service ID, room ID)`. The first join creates it (with a fresh
//! 32-hex `sid`), the last leave ends it. [`Rooms`] owns every live room; the
//! [`crate::call::Switch`] owns the sessions and hands room messages here with who
//! sent them, and asks [`Rooms::in_room`] when a 1-to-1 call needs to know whether a
//! user is busy. Outputs go to the same queue as the call core's; timers (alone
//! kick-out, maximum time, reconnect grace) come back through
//! [`Rooms::handle_timeout`] at [`Rooms::poll_timeout`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use switchboard_protocol::record::GcallRecord;
use switchboard_protocol::{
    DisconnectReason, DisconnectSource, ErrorCode, MediaLine, MediaType, RoomPeer, ServerMessage,
    StartFailReason, MAX_APP_CONTROL_BYTES, MAX_APP_DATA_BYTES, MAX_DISPLAY_NAME_BYTES, MAX_SHORT_DATA_BYTES,
    MAX_SHORT_DATA_TYPE_BYTES,
};

use crate::party::{Millis, Party, RoomId, SessionId, Sid};

#[cfg(test)]
mod tests;

/// What the room core wants done (the session core passes it on as its own output).
#[derive(Debug, Clone, PartialEq)]
pub enum RoomOutput {
    /// Send a message to a session.
    Send(SessionId, ServerMessage),
    /// A participant left a room that goes on: release its media.
    MediaLeave {
        /// The room.
        sid: String,
        /// The relay's party (the user ID).
        party: String,
    },
    /// The room is over: release its media.
    MediaEnd {
        /// The room.
        sid: String,
    },
    /// A participant left (for the metrics).
    RoomLeft {
        /// Why.
        reason: DisconnectReason,
    },
    /// Deliver to on_gcall_evt_cb, in `seq` order per room.
    Gcall {
        /// The room's service.
        service_id: String,
        /// The room's callback number (1, 2, …).
        seq: u64,
        /// The record.
        record: GcallRecord,
    },
    /// A room was created: its media forwards at most `speakers` loudest speakers.
    RoomMedia {
        /// The room.
        sid: String,
        /// Most speakers heard at once.
        speakers: usize,
        /// A video room (its receivers' downlinks are estimated, for simulcast).
        video: bool,
    },
    /// A room changed: keep its snapshot, so that its end can be told to the app
    /// server if the server dies under it.
    Live(LiveRoom),
    /// The room ended: its snapshot goes.
    Gone {
        /// The room.
        sid: String,
    },
    /// A participant receives video only from these participants.
    VideoFrom {
        /// The room.
        sid: String,
        /// The receiving participant (its user ID).
        party: String,
        /// Whose video it asked for, and the size (`qvga`, `vga`, `hd`).
        from: Vec<(String, Option<String>)>,
    },
}

/// What is kept of a live room (with an on_gcall_evt_cb to serve): enough to tell the
/// app server that it ended, participant by participant, after a crash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveRoom {
    /// The room session.
    pub sid: String,
    /// The room's service.
    pub service_id: String,
    /// The room ID.
    pub room_id: String,
    /// `A` or `V`.
    pub media_type: String,
    /// The host (first joiner).
    pub host: Party,
    /// Created, epoch ms.
    pub setup_ms: Millis,
    /// Callbacks sent so far (the next is number `callbacks + 1`).
    pub callbacks: u64,
    /// Who is in it.
    pub participants: Vec<LiveParticipant>,
}

/// A participant of a [`LiveRoom`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveParticipant {
    /// Who.
    pub party: Party,
    /// Joined, epoch ms.
    pub joined_ms: Millis,
    /// Device kind.
    pub ue_type: String,
    /// Display name.
    pub display_name: Option<String>,
    /// App server data.
    pub app_data: Option<String>,
}

impl LiveRoom {
    /// The callbacks that close the room at `end_ms` for `reason`: a `C`/`D` for each
    /// participant but the last, an `E`/`D` for the last one, numbered after the
    /// room's last callback.
    pub fn closing(
        &self,
        end_ms: Millis,
        reason: DisconnectReason,
        source: DisconnectSource,
    ) -> Vec<(u64, GcallRecord)> {
        let rel = reason.rel_code();
        let n = self.participants.len();
        self.participants
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let online = (n - i - 1) as u32;
                let record = GcallRecord {
                    sid: self.sid.clone().into(),
                    svc_id: self.service_id.clone(),
                    id: self.room_id.clone(),
                    user_svc_id: p.party.service_id.clone(),
                    user_id: p.party.user_id.clone(),
                    host_svc_id: self.host.service_id.clone(),
                    host_id: self.host.user_id.clone(),
                    sc: if online == 0 { 'E' } else { 'C' },
                    setup_time: self.setup_ms / 1000,
                    start_time: p.joined_ms / 1000,
                    end_time: end_ms.max(p.joined_ms) / 1000,
                    online,
                    media_type: self.media_type.clone(),
                    msc: 'D',
                    ts: end_ms,
                    rel_code: rel.code,
                    rel_code_str: rel.name.into(),
                    ue_type: p.ue_type.clone(),
                    display_name: p.display_name.clone(),
                    disconnect_reason: reason.code(),
                    releaser_type: u16::from(source.code()),
                    app_svr_data: p.app_data.clone(),
                };
                (self.callbacks + 1 + i as u64, record)
            })
            .collect()
    }
}

/// Per-service room rules.
#[derive(Debug, Clone)]
pub struct RoomRules {
    /// Most participants in one room (ROOM_IS_FULL past it).
    pub max_participants: u32,
    /// Most speakers heard at once: above it only the loudest are forwarded.
    pub max_speakers: usize,
    /// How long one may stay alone in a room (ALONE_KICK_OUT); 0 = for ever.
    pub alone_kick_out_ms: Millis,
    /// Longest life of a room (MAX_CALL_TIME_EXCEEDED); 0 = none.
    pub max_call_ms: Millis,
    /// Whether on_gcall_evt_cb is configured.
    pub has_gcall_cb: bool,
}

/// Who sends a room message: what the session core knows of the session.
#[derive(Debug, Clone)]
pub struct Sender {
    /// The session.
    pub session: SessionId,
    /// Its user.
    pub party: Party,
    /// Its address.
    pub ip: String,
    /// Its device kind.
    pub ue_type: String,
}

/// A `join_room` request.
#[derive(Debug, Clone)]
pub struct Join {
    /// Request number.
    pub req: Option<u64>,
    /// The room.
    pub room_id: String,
    /// The room's service (default: the joiner's).
    pub room_service_id: Option<String>,
    /// `audio` / `video`.
    pub media_type: String,
    /// Display name.
    pub display_name: Option<String>,
    /// App server data.
    pub app_data: Option<String>,
    /// Muted at join.
    pub mic_muted: bool,
    /// Camera on at join.
    pub video_enabled: bool,
}

/// A participant's microphone and camera, as `media_state` says (absent: unchanged).
#[derive(Debug, Clone, Copy, Default)]
pub struct MediaState {
    /// Microphone muted.
    pub mic_muted: Option<bool>,
    /// Camera on.
    pub video_enabled: Option<bool>,
    /// Camera paused.
    pub video_paused: Option<bool>,
}

/// Live counts of rooms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomCensus {
    /// Live rooms.
    pub rooms: usize,
    /// Participants in them.
    pub participants: usize,
}

/// A live room as the REST API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoomInfo {
    /// The room ID.
    pub room_id: String,
    /// The room session.
    pub sid: String,
    /// `audio` / `video`.
    pub media_type: MediaType,
    /// Participants now.
    pub online: u32,
    /// The first joiner.
    pub host_id: String,
    /// Created, epoch seconds.
    pub setup_time: u64,
    /// The participants.
    pub participants: Vec<RoomPeer>,
}

#[derive(Debug, Clone)]
struct Participant {
    party: Party,
    /// `None` while its session is gone (within the reconnect grace).
    session: Option<SessionId>,
    display_name: Option<String>,
    ue_type: String,
    app_data: Option<String>,
    mic_muted: bool,
    video_enabled: bool,
    video_paused: bool,
    joined_ms: Millis,
    /// When the reconnect grace runs out, while its session is gone.
    lost_deadline: Option<Millis>,
    /// Whose video it asked for (`request_peer_video`), at what size.
    video_from: std::collections::BTreeMap<String, Option<String>>,
    /// It was told who is talking (later it hears only the changes).
    told_talking: bool,
}

impl Participant {
    fn peer(&self) -> RoomPeer {
        RoomPeer {
            user_id: self.party.user_id.clone(),
            service_id: self.party.service_id.clone(),
            display_name: self.display_name.clone(),
            ue_type: self.ue_type.clone(),
            mic_muted: self.mic_muted,
            video_enabled: self.video_enabled,
            joined_ms: self.joined_ms,
        }
    }
}

#[derive(Debug)]
struct Room {
    sid: Sid,
    service_id: String,
    room_id: RoomId,
    media: MediaType,
    host: Party,
    setup_ms: Millis,
    participants: Vec<Participant>,
    /// When the only participant is kicked out for being alone.
    alone_deadline: Option<Millis>,
    max_deadline: Option<Millis>,
    /// Callbacks sent for this room (their order and ids).
    callbacks: u64,
    /// Who is talking now (by the relay's levels).
    talking: std::collections::BTreeSet<String>,
}

impl Room {
    fn index_of(&self, party: &Party) -> Option<usize> {
        self.participants.iter().position(|p| p.party == *party)
    }

    fn by_session(&self, session: SessionId) -> Option<usize> {
        self.participants.iter().position(|p| p.session == Some(session))
    }

    fn snapshot(&self) -> LiveRoom {
        LiveRoom {
            sid: self.sid.to_string(),
            service_id: self.service_id.clone(),
            room_id: self.room_id.to_string(),
            media_type: self.media.letter().into(),
            host: self.host.clone(),
            setup_ms: self.setup_ms,
            callbacks: self.callbacks,
            participants: self
                .participants
                .iter()
                .map(|p| LiveParticipant {
                    party: p.party.clone(),
                    joined_ms: p.joined_ms,
                    ue_type: p.ue_type.clone(),
                    display_name: p.display_name.clone(),
                    app_data: p.app_data.clone(),
                })
                .collect(),
        }
    }

    fn info(&self) -> RoomInfo {
        RoomInfo {
            room_id: self.room_id.to_string(),
            sid: self.sid.to_string(),
            media_type: self.media,
            online: self.participants.len() as u32,
            host_id: self.host.user_id.clone(),
            setup_time: self.setup_ms / 1000,
            participants: self.participants.iter().map(Participant::peer).collect(),
        }
    }
}

/// Whether `sid` has the shape of a room session's ID (32 lowercase hex digits).
pub fn is_room_sid(sid: &str) -> bool {
    sid.len() == 32 && sid.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Alone,
    MaxTime,
    Lost,
}

/// What happened to a participant, for the callback's `msc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Connected,
    Disconnected,
    TimedOut,
    Media,
}

impl Change {
    fn letter(self) -> char {
        match self {
            Change::Connected => 'C',
            Change::Disconnected => 'D',
            Change::TimedOut => 'T',
            Change::Media => 'M',
        }
    }
}

/// Every live room. See the module docs.
pub struct Rooms {
    reconnect_grace_ms: Millis,
    rules: HashMap<String, RoomRules>,
    /// `(room service, room ID)` → sid.
    by_key: HashMap<(String, RoomId), Sid>,
    rooms: HashMap<Sid, Room>,
    /// Which rooms each user is in.
    by_party: HashMap<Party, Vec<Sid>>,
    timers: BinaryHeap<Reverse<(Millis, TimerKind, Sid)>>,
    /// Participants in all rooms (kept, not counted: metrics read it often).
    participants: usize,
}

impl Rooms {
    /// No rooms yet; `rules` per service.
    pub fn new(reconnect_grace_ms: Millis, rules: HashMap<String, RoomRules>) -> Self {
        Self {
            reconnect_grace_ms,
            rules,
            by_key: HashMap::new(),
            rooms: HashMap::new(),
            by_party: HashMap::new(),
            timers: BinaryHeap::new(),
            participants: 0,
        }
    }

    /// Whether `sid` is a live room.
    pub fn is_room(&self, sid: &str) -> bool {
        self.rooms.contains_key(sid)
    }

    /// Whether the user is in a room (busy for 1-to-1 calls).
    pub fn in_room(&self, party: &Party) -> bool {
        self.by_party.get(party).is_some_and(|r| !r.is_empty())
    }

    /// Live counts.
    pub fn census(&self) -> RoomCensus {
        RoomCensus { rooms: self.rooms.len(), participants: self.participants }
    }

    /// The live rooms of a service.
    pub fn list(&self, service_id: &str) -> Vec<RoomInfo> {
        let mut rooms: Vec<RoomInfo> =
            self.rooms.values().filter(|r| r.service_id == service_id).map(Room::info).collect();
        rooms.sort_by(|a, b| a.room_id.cmp(&b.room_id));
        rooms
    }

    /// One live room of a service.
    pub fn get(&self, service_id: &str, room_id: &str) -> Option<RoomInfo> {
        let sid = self.by_key.get(&(service_id.to_string(), RoomId::parse(room_id)?))?;
        self.rooms.get(sid).map(Room::info)
    }

    /// When [`Rooms::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Millis, out: &mut VecDeque<RoomOutput>) {
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, kind, sid))) = self.timers.pop() else { break };
            let Some(room) = self.rooms.get(&sid) else { continue };
            match kind {
                TimerKind::Alone if room.alone_deadline == Some(at) && room.participants.len() == 1 => {
                    let party = room.participants[0].party.clone();
                    self.remove(
                        now,
                        &sid,
                        &party,
                        DisconnectReason::AloneKickOut,
                        DisconnectSource::CloudServer,
                        Change::Disconnected,
                        None,
                        None,
                        out,
                    );
                }
                TimerKind::MaxTime if room.max_deadline == Some(at) => {
                    self.close(
                        now,
                        &sid,
                        DisconnectReason::MaxCallTimeExceeded,
                        DisconnectSource::CloudServer,
                        None,
                        out,
                    );
                }
                TimerKind::Lost => {
                    let gone: Vec<Party> = room
                        .participants
                        .iter()
                        .filter(|p| p.lost_deadline == Some(at))
                        .map(|p| p.party.clone())
                        .collect();
                    for party in gone {
                        self.time_out(now, &sid, &party, out);
                    }
                }
                _ => {}
            }
        }
    }

    fn timer(&mut self, at: Millis, kind: TimerKind, sid: &Sid) {
        self.timers.push(Reverse((at, kind, sid.clone())));
    }

    /// `join_room`.
    pub fn join(&mut self, now: Millis, who: Sender, j: Join, out: &mut VecDeque<RoomOutput>) {
        use StartFailReason as F;
        let session = who.session;
        let fail = |out: &mut VecDeque<RoomOutput>, reason: StartFailReason, message: &str| {
            out.push_back(RoomOutput::Send(
                session,
                ServerMessage::StartFailed {
                    req: j.req,
                    reason,
                    code: reason.native_code(),
                    message: message.into(),
                },
            ));
        };
        let service_id = j.room_service_id.clone().unwrap_or_else(|| who.party.service_id.clone());
        let Some(room_id) = RoomId::parse(&j.room_id) else {
            return fail(out, F::InvalidRoomId, "room_id must match [A-Za-z0-9_-]{1,64}");
        };
        if j.room_id == who.party.user_id {
            return fail(out, F::IdConflict, "a room ID cannot be the joiner's own user ID");
        }
        if service_id != who.party.service_id {
            return fail(out, F::InvalidServiceId, "room_service_id must be the joiner's own service");
        }
        let Some(rules) = self.rules.get(&service_id).cloned() else {
            return fail(out, F::InvalidServiceId, "unknown service");
        };
        let Some(media) = MediaType::parse(&j.media_type) else {
            return fail(out, F::InvalidMediaType, "media_type must be audio or video");
        };
        if j.app_data.as_ref().is_some_and(|d| d.len() > MAX_APP_DATA_BYTES) {
            return fail(out, F::TooLongAppServerData, "app_data is over 4096 bytes");
        }
        if j.display_name.as_ref().is_some_and(|d| d.len() > MAX_DISPLAY_NAME_BYTES) {
            return fail(out, F::InvalidParam, "display_name is over 128 bytes");
        }
        let key = (service_id.clone(), room_id.clone());
        let existing = self.by_key.get(&key).cloned();
        // The same user again, from another session: the old instance gives way.
        if let Some(sid) = &existing {
            if let Some(room) = self.rooms.get(sid) {
                if let Some(i) = room.index_of(&who.party) {
                    if room.participants[i].session == Some(session) {
                        out.push_back(RoomOutput::Send(
                            session,
                            ServerMessage::Error {
                                req: j.req,
                                error: ErrorCode::WrongState,
                                reason: None,
                                message: "this session is already in the room".into(),
                            },
                        ));
                        return;
                    }
                    let sid = sid.clone();
                    self.remove(
                        now,
                        &sid,
                        &who.party,
                        DisconnectReason::AnotherInstanceTryToJoin,
                        DisconnectSource::CloudServer,
                        Change::Disconnected,
                        None,
                        None,
                        out,
                    );
                }
            }
        }
        let existing = self.by_key.get(&key).cloned();
        if let Some(room) = existing.as_ref().and_then(|sid| self.rooms.get(sid)) {
            if room.participants.len() as u32 >= rules.max_participants {
                out.push_back(RoomOutput::Send(
                    session,
                    ServerMessage::Disconnected {
                        req: j.req,
                        sid: room.sid.clone(),
                        reason: DisconnectReason::RoomIsFull,
                        source: DisconnectSource::CloudServer,
                        by_remote: false,
                        user_rel_code: None,
                    },
                ));
                return;
            }
        }
        let sid = match existing {
            Some(sid) => sid,
            None => {
                let sid = crate::party::new_room_sid();
                let max_deadline = (rules.max_call_ms > 0).then(|| now + rules.max_call_ms);
                self.rooms.insert(
                    sid.clone(),
                    Room {
                        sid: sid.clone(),
                        service_id: service_id.clone(),
                        room_id: room_id.clone(),
                        media,
                        host: who.party.clone(),
                        setup_ms: now,
                        participants: Vec::new(),
                        alone_deadline: None,
                        max_deadline,
                        callbacks: 0,
                        talking: Default::default(),
                    },
                );
                self.by_key.insert(key, sid.clone());
                out.push_back(RoomOutput::RoomMedia {
                    sid: sid.to_string(),
                    speakers: rules.max_speakers,
                    video: media == MediaType::Video,
                });
                if let Some(at) = max_deadline {
                    self.timer(at, TimerKind::MaxTime, &sid);
                }
                sid
            }
        };
        let participant = Participant {
            party: who.party.clone(),
            session: Some(session),
            display_name: j.display_name.clone(),
            ue_type: who.ue_type.clone(),
            app_data: j.app_data.clone(),
            mic_muted: j.mic_muted,
            video_enabled: j.video_enabled && media == MediaType::Video,
            video_paused: false,
            joined_ms: now,
            lost_deadline: None,
            video_from: Default::default(),
            told_talking: false,
        };
        let Some(room) = self.rooms.get_mut(&sid) else { return };
        let peers: Vec<RoomPeer> = room.participants.iter().map(Participant::peer).collect();
        let others: Vec<SessionId> = room.participants.iter().filter_map(|p| p.session).collect();
        let added = participant.peer();
        room.participants.push(participant);
        self.participants += 1;
        let total = room.participants.len() as u32;
        out.push_back(RoomOutput::Send(
            session,
            ServerMessage::RoomJoined {
                req: j.req,
                sid: sid.to_string().into(),
                room_id: room.room_id.to_string(),
                room_service_id: room.service_id.clone(),
                media_type: room.media,
                host_id: room.host.user_id.clone(),
                setup_time: room.setup_ms / 1000,
                peers,
            },
        ));
        for other in others {
            out.push_back(RoomOutput::Send(
                other,
                ServerMessage::PeerList {
                    sid: sid.to_string().into(),
                    added: vec![added.clone()],
                    removed: Vec::new(),
                    total: total - 1,
                },
            ));
        }
        self.by_party.entry(who.party.clone()).or_default().push(sid.clone());
        // Video on demand: nobody's until asked for.
        out.push_back(RoomOutput::VideoFrom {
            sid: sid.to_string(),
            party: who.party.user_id.clone(),
            from: Vec::new(),
        });
        let first = total == 1;
        self.callback(now, &sid, &who.party, if first { 'S' } else { 'C' }, Change::Connected, None, out);
        self.check_alone(now, &sid, rules.alone_kick_out_ms);
    }

    /// Starts or stops the alone kick-out clock after a change.
    fn check_alone(&mut self, now: Millis, sid: &str, alone_ms: Millis) {
        let Some(room) = self.rooms.get_mut(sid) else { return };
        if room.participants.len() == 1 && alone_ms > 0 {
            if room.alone_deadline.is_none() {
                let at = now + alone_ms;
                room.alone_deadline = Some(at);
                let sid = room.sid.clone();
                self.timer(at, TimerKind::Alone, &sid);
            }
        } else {
            room.alone_deadline = None;
        }
    }

    /// The room `sid` and the participant index of `session` in it.
    fn member(&self, session: SessionId, sid: &str) -> Option<(&Room, usize)> {
        let room = self.rooms.get(sid)?;
        room.by_session(session).map(|i| (room, i))
    }

    fn not_member(out: &mut VecDeque<RoomOutput>, session: SessionId, req: Option<u64>) {
        out.push_back(RoomOutput::Send(
            session,
            ServerMessage::Error {
                req,
                error: ErrorCode::NotFound,
                reason: None,
                message: "this session is not in that room".into(),
            },
        ));
    }

    /// `leave_room` (or `end_call` with a room's sid): `reason` a client-reported one.
    #[allow(clippy::too_many_arguments)]
    pub fn leave(
        &mut self,
        now: Millis,
        session: SessionId,
        req: Option<u64>,
        sid: &str,
        reason: Option<DisconnectReason>,
        user_rel_code: Option<String>,
        out: &mut VecDeque<RoomOutput>,
    ) {
        let Some((room, i)) = self.member(session, sid) else {
            return Self::not_member(out, session, req);
        };
        let party = room.participants[i].party.clone();
        let reason = reason.unwrap_or(DisconnectReason::Normal);
        self.remove(
            now,
            sid,
            &party,
            reason,
            DisconnectSource::Participant,
            Change::Disconnected,
            user_rel_code,
            req,
            out,
        );
    }

    /// Takes `party` out of room `sid`: tells it (answering `req`, if it has a session)
    /// and the others, releases its media, sends the callback, and ends the room when
    /// it was the last one.
    #[allow(clippy::too_many_arguments)]
    fn remove(
        &mut self,
        now: Millis,
        sid: &str,
        party: &Party,
        reason: DisconnectReason,
        source: DisconnectSource,
        change: Change,
        user_rel_code: Option<String>,
        req: Option<u64>,
        out: &mut VecDeque<RoomOutput>,
    ) {
        let Some(room) = self.rooms.get_mut(sid) else { return };
        let Some(i) = room.index_of(party) else { return };
        let p = room.participants.remove(i);
        self.participants -= 1;
        let total = room.participants.len() as u32;
        let others: Vec<SessionId> = room.participants.iter().filter_map(|q| q.session).collect();
        let service_id = room.service_id.clone();
        if let Some(session) = p.session {
            out.push_back(RoomOutput::Send(
                session,
                ServerMessage::Disconnected {
                    req,
                    sid: sid.to_string().into(),
                    reason,
                    source,
                    by_remote: false,
                    user_rel_code: user_rel_code.clone(),
                },
            ));
        }
        // Those who watched it stop: a later instance of the same user is asked for anew.
        for q in room.participants.iter_mut() {
            if q.video_from.remove(&p.party.user_id).is_none() {
                continue;
            }
            out.push_back(RoomOutput::VideoFrom {
                sid: sid.to_string(),
                party: q.party.user_id.clone(),
                from: q.video_from.clone().into_iter().collect(),
            });
        }
        for other in others {
            out.push_back(RoomOutput::Send(
                other,
                ServerMessage::PeerList {
                    sid: sid.to_string().into(),
                    added: Vec::new(),
                    removed: vec![p.party.user_id.clone()],
                    total: total.saturating_sub(1),
                },
            ));
        }
        if let Some(rooms) = self.by_party.get_mut(party) {
            rooms.retain(|r| r != sid);
            if rooms.is_empty() {
                self.by_party.remove(party);
            }
        }
        out.push_back(RoomOutput::MediaLeave { sid: sid.to_string(), party: p.party.user_id.clone() });
        out.push_back(RoomOutput::RoomLeft { reason });
        let ended = total == 0;
        let record = Gone { p, reason, source };
        self.callback(now, sid, party, if ended { 'E' } else { 'C' }, change, Some(&record), out);
        if ended {
            if let Some(room) = self.rooms.remove(sid) {
                self.by_key.remove(&(room.service_id, room.room_id));
            }
            out.push_back(RoomOutput::MediaEnd { sid: sid.to_string() });
        } else {
            let alone_ms = self.rules.get(&service_id).map_or(0, |r| r.alone_kick_out_ms);
            self.check_alone(now, sid, alone_ms);
        }
    }

    /// Ends the whole room: everyone leaves with `reason`.
    fn close(
        &mut self,
        now: Millis,
        sid: &str,
        reason: DisconnectReason,
        source: DisconnectSource,
        user_rel_code: Option<String>,
        out: &mut VecDeque<RoomOutput>,
    ) {
        let parties: Vec<Party> = self
            .rooms
            .get(sid)
            .map(|r| r.participants.iter().map(|p| p.party.clone()).collect())
            .unwrap_or_default();
        for party in parties {
            self.remove(
                now,
                sid,
                &party,
                reason,
                source,
                Change::Disconnected,
                user_rel_code.clone(),
                None,
                out,
            );
        }
    }

    /// The app server ends a room (REST): everyone leaves with USER_ERROR, source
    /// app_server. Whether the room was found.
    pub fn force_close(
        &mut self,
        now: Millis,
        service_id: &str,
        room_id: &str,
        user_rel_code: Option<String>,
        out: &mut VecDeque<RoomOutput>,
    ) -> bool {
        let Some(room_id) = RoomId::parse(room_id) else { return false };
        let Some(sid) = self.by_key.get(&(service_id.to_string(), room_id)).cloned() else {
            return false;
        };
        self.close(now, &sid, DisconnectReason::UserError, DisconnectSource::AppServer, user_rel_code, out);
        true
    }

    /// The app server kicks users out of a room (REST): they leave with USER_ERROR,
    /// source app_server. The users found.
    pub fn kick(
        &mut self,
        now: Millis,
        service_id: &str,
        room_id: &str,
        user_ids: &[String],
        user_rel_code: Option<String>,
        out: &mut VecDeque<RoomOutput>,
    ) -> Option<Vec<String>> {
        let sid = self.by_key.get(&(service_id.to_string(), RoomId::parse(room_id)?)).cloned()?;
        let mut kicked = Vec::new();
        for user in user_ids {
            let party = Party::new(service_id, user.as_str());
            if self.rooms.get(&sid).is_some_and(|r| r.index_of(&party).is_some()) {
                self.remove(
                    now,
                    &sid,
                    &party,
                    DisconnectReason::UserError,
                    DisconnectSource::AppServer,
                    Change::Disconnected,
                    user_rel_code.clone(),
                    None,
                    out,
                );
                kicked.push(user.clone());
            }
        }
        Some(kicked)
    }

    /// The app server messages a room (REST): to `user_ids`, or everyone. The number
    /// of sessions reached, or `None` when there is no such room.
    pub fn app_message(
        &mut self,
        service_id: &str,
        room_id: &str,
        user_ids: Option<&[String]>,
        data: &str,
        out: &mut VecDeque<RoomOutput>,
    ) -> Option<usize> {
        if data.len() > MAX_APP_CONTROL_BYTES {
            return Some(0);
        }
        let sid = self.by_key.get(&(service_id.to_string(), RoomId::parse(room_id)?))?;
        let room = self.rooms.get(sid)?;
        let mut n = 0;
        for p in &room.participants {
            if user_ids.is_some_and(|u| !u.contains(&p.party.user_id)) {
                continue;
            }
            if let Some(session) = p.session {
                out.push_back(RoomOutput::Send(
                    session,
                    ServerMessage::AppControlMessage { sid: sid.to_string().into(), data: data.to_string() },
                ));
                n += 1;
            }
        }
        Some(n)
    }

    /// `short_data` to the others (or `targets`).
    #[allow(clippy::too_many_arguments)]
    pub fn short_data(
        &mut self,
        session: SessionId,
        req: Option<u64>,
        sid: &str,
        data_type: String,
        data: String,
        targets: Option<Vec<String>>,
        out: &mut VecDeque<RoomOutput>,
    ) {
        let Some((room, i)) = self.member(session, sid) else {
            return Self::not_member(out, session, req);
        };
        let invalid = |out: &mut VecDeque<RoomOutput>, message: &str| {
            out.push_back(RoomOutput::Send(
                session,
                ServerMessage::Error {
                    req,
                    error: ErrorCode::InvalidParam,
                    reason: None,
                    message: message.into(),
                },
            ));
        };
        if data_type.len() > MAX_SHORT_DATA_TYPE_BYTES {
            return invalid(out, "data_type is over 100 bytes");
        }
        if data.len() > MAX_SHORT_DATA_BYTES {
            return invalid(out, "data is over 800 bytes");
        }
        let from = room.participants[i].party.user_id.clone();
        let to: Vec<SessionId> = room
            .participants
            .iter()
            .filter(|p| p.party.user_id != from)
            .filter(|p| targets.as_ref().is_none_or(|t| t.contains(&p.party.user_id)))
            .filter_map(|p| p.session)
            .collect();
        if to.is_empty() && targets.is_some() {
            return out.push_back(RoomOutput::Send(
                session,
                ServerMessage::Error {
                    req,
                    error: ErrorCode::NotFound,
                    reason: None,
                    message: "none of the targets is in the room".into(),
                },
            ));
        }
        for s in to {
            out.push_back(RoomOutput::Send(
                s,
                ServerMessage::ShortData {
                    sid: sid.to_string().into(),
                    from_user_id: from.clone(),
                    data_type: data_type.clone(),
                    data: data.clone(),
                },
            ));
        }
    }

    /// `request_peer_video` (`request` is `Some(resolution)`) / `remove_peer_video`
    /// (`None`).
    pub fn peer_video(
        &mut self,
        session: SessionId,
        req: Option<u64>,
        sid: &str,
        user_id: &str,
        request: Option<Option<String>>,
        out: &mut VecDeque<RoomOutput>,
    ) {
        let on = request.is_some();
        let Some(room) = self.rooms.get_mut(sid) else {
            return Self::not_member(out, session, req);
        };
        let Some(i) = room.by_session(session) else {
            return Self::not_member(out, session, req);
        };
        let present = room.participants.iter().any(|p| p.party.user_id == user_id);
        let me = &mut room.participants[i];
        if on && (!present || me.party.user_id == user_id) {
            return out.push_back(RoomOutput::Send(
                session,
                ServerMessage::Error {
                    req,
                    error: ErrorCode::NotFound,
                    reason: None,
                    message: "no such other participant in the room".into(),
                },
            ));
        }
        let before = me.video_from.get(user_id).cloned();
        match request {
            Some(resolution) => me.video_from.insert(user_id.to_string(), resolution),
            None => me.video_from.remove(user_id),
        };
        if me.video_from.get(user_id).cloned() != before {
            out.push_back(RoomOutput::VideoFrom {
                sid: sid.to_string(),
                party: me.party.user_id.clone(),
                from: me.video_from.clone().into_iter().collect(),
            });
        }
        out.push_back(RoomOutput::Send(
            session,
            ServerMessage::PeerVideo {
                req,
                sid: sid.to_string().into(),
                user_id: user_id.to_string(),
                requested: on,
            },
        ));
    }

    /// `media_state` in a room: tell the others and the app server.
    pub fn media_state(
        &mut self,
        now: Millis,
        session: SessionId,
        sid: &str,
        state: MediaState,
        out: &mut VecDeque<RoomOutput>,
    ) {
        let MediaState { mic_muted, video_enabled, video_paused } = state;
        let Some(room) = self.rooms.get_mut(sid) else {
            return Self::not_member(out, session, None);
        };
        let Some(i) = room.by_session(session) else {
            return Self::not_member(out, session, None);
        };
        let p = &mut room.participants[i];
        let changed = mic_muted.is_some_and(|m| m != p.mic_muted)
            || video_enabled.is_some_and(|v| v != p.video_enabled)
            || video_paused.is_some_and(|v| v != p.video_paused);
        if let Some(m) = mic_muted {
            p.mic_muted = m;
        }
        if let Some(v) = video_enabled {
            p.video_enabled = v;
        }
        if let Some(v) = video_paused {
            p.video_paused = v;
        }
        let party = p.party.clone();
        for other in room.participants.iter().filter(|q| q.party != party).filter_map(|q| q.session) {
            out.push_back(RoomOutput::Send(
                other,
                ServerMessage::PeerMediaState {
                    sid: sid.to_string().into(),
                    user_id: Some(party.user_id.clone()),
                    mic_muted,
                    video_enabled,
                    video_paused,
                },
            ));
        }
        if changed {
            self.callback(now, sid, &party, 'C', Change::Media, None, out);
        }
    }

    /// The relay's party key of `session` in room `sid` (media messages), if a member.
    pub fn media_party(&self, session: SessionId, sid: &str) -> Option<String> {
        self.member(session, sid).map(|(room, i)| room.participants[i].party.user_id.clone())
    }

    /// The session of the participant the relay knows as `party` in room `sid`.
    pub fn session_of(&self, sid: &str, party: &str) -> Option<SessionId> {
        let room = self.rooms.get(sid)?;
        room.participants.iter().find(|p| p.party.user_id == party).and_then(|p| p.session)
    }

    /// The relay (re)assigned a participant's lines: tell it whose media each carries.
    pub fn media_lines(&self, sid: &str, party: &str, lines: Vec<MediaLine>, out: &mut VecDeque<RoomOutput>) {
        if let Some(session) = self.session_of(sid, party) {
            out.push_back(RoomOutput::Send(
                session,
                ServerMessage::MediaLines { sid: sid.to_string().into(), lines },
            ));
        }
    }

    /// The relay's audio levels: tell everyone, and who started or stopped talking.
    pub fn levels(&mut self, sid: &str, levels: Vec<(String, u8, bool)>, out: &mut VecDeque<RoomOutput>) {
        let Some(room) = self.rooms.get_mut(sid) else { return };
        let talking: std::collections::BTreeSet<String> =
            levels.iter().filter(|(.., t)| *t).map(|(u, ..)| u.clone()).collect();
        let active: Vec<String> = talking.difference(&room.talking).cloned().collect();
        let inactive: Vec<String> = room.talking.difference(&talking).cloned().collect();
        room.talking = talking;
        let levels: std::collections::BTreeMap<String, u8> =
            levels.into_iter().map(|(u, l, _)| (u, l)).collect();
        for p in room.participants.iter_mut() {
            let Some(session) = p.session else { continue };
            out.push_back(RoomOutput::Send(
                session,
                ServerMessage::PeerAudioLevels { sid: sid.to_string().into(), levels: levels.clone() },
            ));
            // A newcomer learns who talks now; the others only what changed.
            let (active, inactive) = if p.told_talking {
                (active.clone(), inactive.clone())
            } else {
                (room.talking.iter().cloned().collect(), Vec::new())
            };
            p.told_talking = true;
            if !active.is_empty() || !inactive.is_empty() {
                out.push_back(RoomOutput::Send(
                    session,
                    ServerMessage::PeersTalking { sid: sid.to_string().into(), active, inactive },
                ));
            }
        }
    }

    /// The relay's network grades: tell everyone.
    pub fn quality(&mut self, sid: &str, quality: Vec<(String, u8)>, out: &mut VecDeque<RoomOutput>) {
        let Some(room) = self.rooms.get(sid) else { return };
        let quality: std::collections::BTreeMap<String, u8> = quality.into_iter().collect();
        for session in room.participants.iter().filter_map(|p| p.session) {
            out.push_back(RoomOutput::Send(
                session,
                ServerMessage::PeersNetworkQuality { sid: sid.to_string().into(), quality: quality.clone() },
            ));
        }
    }

    /// A participant's media stopped past the media timeout.
    pub fn media_lost(&mut self, now: Millis, sid: &str, party: &str, out: &mut VecDeque<RoomOutput>) {
        let Some(room) = self.rooms.get(sid) else { return };
        let Some(p) = room.participants.iter().find(|p| p.party.user_id == party) else { return };
        let party = p.party.clone();
        self.time_out(now, sid, &party, out);
    }

    /// A participant's network gave out (its session or its media, past the grace):
    /// NETWORK_UNSTABLE, source participant, `msc` T.
    fn time_out(&mut self, now: Millis, sid: &str, party: &Party, out: &mut VecDeque<RoomOutput>) {
        self.remove(
            now,
            sid,
            party,
            DisconnectReason::NetworkUnstable,
            DisconnectSource::Participant,
            Change::TimedOut,
            None,
            None,
            out,
        );
    }

    /// A session is gone: its participants wait for it to `resume` within the grace.
    pub fn session_closed(&mut self, now: Millis, session: SessionId) {
        let deadline = now + self.reconnect_grace_ms;
        let mut lost = Vec::new();
        for room in self.rooms.values_mut() {
            for p in room.participants.iter_mut().filter(|p| p.session == Some(session)) {
                p.session = None;
                p.lost_deadline = Some(deadline);
                lost.push(room.sid.clone());
            }
        }
        for sid in lost {
            self.timer(deadline, TimerKind::Lost, &sid);
        }
    }

    /// `resume` of a room: the user's new session takes its place back.
    pub fn resume(&mut self, who: &Sender, req: Option<u64>, sid: &str, out: &mut VecDeque<RoomOutput>) {
        let Some(room) = self.rooms.get_mut(sid) else {
            return out.push_back(RoomOutput::Send(
                who.session,
                ServerMessage::Disconnected {
                    req,
                    sid: sid.to_string().into(),
                    reason: DisconnectReason::RoomNotFound,
                    source: DisconnectSource::CloudServer,
                    by_remote: false,
                    user_rel_code: None,
                },
            ));
        };
        let Some(p) = room.participants.iter_mut().find(|p| p.party == who.party) else {
            return Self::not_member(out, who.session, req);
        };
        p.session = Some(who.session);
        p.lost_deadline = None;
        out.push_back(RoomOutput::Send(
            who.session,
            ServerMessage::Resumed { req, sid: sid.to_string().into(), state: "connected".into() },
        ));
    }

    /// Queues the on_gcall_evt_cb of a change of `party` in room `sid`.
    #[allow(clippy::too_many_arguments)]
    fn callback(
        &mut self,
        now: Millis,
        sid: &str,
        party: &Party,
        sc: char,
        change: Change,
        gone: Option<&Gone>,
        out: &mut VecDeque<RoomOutput>,
    ) {
        let Some(room) = self.rooms.get_mut(sid) else { return };
        if !self.rules.get(&room.service_id).is_some_and(|r| r.has_gcall_cb) {
            return;
        }
        let p = match gone {
            Some(g) => &g.p,
            None => match room.participants.iter().find(|p| p.party == *party) {
                Some(p) => p,
                None => return,
            },
        };
        let (rel, reason, source) = match gone {
            Some(g) => (g.reason.rel_code(), g.reason.code(), g.source.code()),
            None => (switchboard_protocol::RelCode { code: 0, name: "" }, 0, 0),
        };
        room.callbacks += 1;
        let record = GcallRecord {
            sid: sid.to_string().into(),
            svc_id: room.service_id.clone(),
            id: room.room_id.to_string(),
            user_svc_id: p.party.service_id.clone(),
            user_id: p.party.user_id.clone(),
            host_svc_id: room.host.service_id.clone(),
            host_id: room.host.user_id.clone(),
            sc,
            setup_time: room.setup_ms / 1000,
            start_time: p.joined_ms / 1000,
            end_time: if gone.is_some() { now / 1000 } else { 0 },
            online: room.participants.len() as u32,
            media_type: room.media.letter().into(),
            msc: change.letter(),
            ts: now,
            rel_code: rel.code,
            rel_code_str: rel.name.into(),
            ue_type: p.ue_type.clone(),
            display_name: p.display_name.clone(),
            disconnect_reason: reason,
            releaser_type: u16::from(source),
            app_svr_data: p.app_data.clone(),
        };
        out.push_back(RoomOutput::Gcall { service_id: room.service_id.clone(), seq: room.callbacks, record });
        // The snapshot follows every callback: after a crash, the room's end is told
        // with the numbers that come next. A room that just ended has none.
        if sc == 'E' {
            out.push_back(RoomOutput::Gone { sid: sid.to_string() });
        } else {
            out.push_back(RoomOutput::Live(room.snapshot()));
        }
    }
}

/// A participant that just left, for its callback.
struct Gone {
    p: Participant,
    reason: DisconnectReason,
    source: DisconnectSource,
}
