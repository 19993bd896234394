//! Rooms (group calls): membership ([`membership`]: join, leave, kick, close, the
//! alone and maximum-time timers, sessions lost and resumed), messaging
//! ([`messaging`]: short data, app control messages, microphone and camera state),
//! media ([`media`]: offers, line owners, levels, network quality, video on demand)
//! and the on_gcall_evt_cb records ([`records`]).
//!
//! A room is `(room service ID, room ID)`. The first join creates it (with a fresh
//! 32-hex `sid`), the last leave ends it. [`Rooms`] owns every live room; what rooms
//! share with calls (presence, timers, the output queue) is the core's [`Cx`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use switchboard_protocol::{MediaType, RoomPeer};

use super::Cx;
use crate::clock::{Millis, Now};
use crate::ids::{Party, RoomId, SessionId, Sid};
use crate::records::{LiveParticipant, LiveRoom};

mod adopt;
mod media;
mod membership;
mod messaging;
mod records;

/// What a room's timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RoomTimer {
    /// The only participant has been alone too long.
    Alone,
    /// The room's maximum time ran out.
    MaxTime,
    /// A participant's reconnect grace ran out.
    Lost,
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
    /// A call-engine group call's room ([`crate::core::engine`]): joined only through
    /// its call, never alone-kicked (the call ends itself).
    pub call: bool,
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
    pub sid: Sid,
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
    /// Joined, on the wall clock (recorded).
    joined_ms: Millis,
    /// When the reconnect grace runs out, while its session is gone.
    lost_deadline: Option<Instant>,
    /// Whose video it asked for (`request_peer_video`), at what size.
    video_from: BTreeMap<String, Option<String>>,
    /// It was told who is talking (later it hears only the changes).
    told_talking: bool,
    /// Its next `resumed` tells it to start a new media connection (the room was taken
    /// over from a node that died).
    new_media: bool,
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
    alone_deadline: Option<Instant>,
    max_deadline: Option<Instant>,
    /// Callbacks sent for this room (their order and ids).
    callbacks: u64,
    /// Who is talking now (by the relay's levels).
    talking: BTreeSet<String>,
    /// A group call's room (see [`Join::call`]).
    call: bool,
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
            sid: self.sid.clone(),
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
            sid: self.sid.clone(),
            media_type: self.media,
            online: self.participants.len() as u32,
            host_id: self.host.user_id.clone(),
            setup_time: self.setup_ms / 1000,
            participants: self.participants.iter().map(Participant::peer).collect(),
        }
    }
}

/// Every live room. See the module docs.
#[derive(Default)]
pub(crate) struct Rooms {
    /// `(room service, room ID)` → sid.
    by_key: HashMap<(String, RoomId), Sid>,
    rooms: HashMap<Sid, Room>,
    /// Participants in all rooms (kept, not counted: metrics read it often).
    participants: usize,
}

impl Rooms {
    /// Whether `sid` is a live room.
    pub fn contains(&self, sid: &Sid) -> bool {
        self.rooms.contains_key(sid)
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

    /// The sid of a service's live room.
    pub(crate) fn sid_of(&self, service_id: &str, room_id: &str) -> Option<Sid> {
        self.by_key.get(&(service_id.to_string(), RoomId::parse(room_id)?)).cloned()
    }

    /// The session of `party` in room `sid`, if it is in and connected.
    pub fn session_in(&self, sid: &Sid, party: &Party) -> Option<SessionId> {
        let room = self.rooms.get(sid)?;
        room.index_of(party).and_then(|i| room.participants[i].session)
    }

    /// Whether `party` is in room `sid` (connected or within its reconnect grace).
    pub fn has_member(&self, sid: &Sid, party: &Party) -> bool {
        self.rooms.get(sid).is_some_and(|r| r.index_of(party).is_some())
    }

    /// The room `sid` and the participant index of `session` in it.
    fn member(&self, session: SessionId, sid: &Sid) -> Option<(&Room, usize)> {
        let room = self.rooms.get(sid)?;
        room.by_session(session).map(|i| (room, i))
    }

    /// A room's timer fired; `at` is when it was set for.
    pub fn timer(&mut self, cx: &mut Cx, now: Now, at: Instant, sid: &Sid, kind: RoomTimer) {
        self.fire(cx, now, at, sid, kind);
    }
}
