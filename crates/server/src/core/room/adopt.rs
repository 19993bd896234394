//! Rooms that change nodes: taken over from a node that died (or handed over by one that
//! drains), run on from their last snapshot, every participant without a session (each
//! `resume`s within the reconnect grace, and starts a new media connection: the relay
//! there has none of theirs).

use std::time::Duration;

use switchboard_protocol::MediaType;

use super::{Participant, Room, RoomTimer, Rooms};
use crate::clock::Now;
use crate::core::{Cx, Timer};
use crate::ids::{RoomId, SessionId, Sid};
use crate::media_link::MediaCmd;
use crate::records::{Entry, LiveRoom};

impl Rooms {
    /// Runs `live` (a dead node's room, claimed by this node) on here; `call`: a group
    /// call's room (its call is adopted too).
    pub fn adopt(&mut self, cx: &mut Cx, now: Now, live: LiveRoom, call: bool) {
        let Some(room_id) = RoomId::parse(&live.room_id) else { return };
        let key = (live.service_id.clone(), room_id.clone());
        if self.rooms.contains_key(&live.sid) || self.by_key.contains_key(&key) {
            return;
        }
        let (speakers, max_ms) = cx
            .services
            .get(&live.service_id)
            .map_or((usize::MAX, 0), |r| (r.max_room_speakers, r.max_call_ms));
        let media = if live.media_type == "V" { MediaType::Video } else { MediaType::Audio };
        let grace = Cx::after(now, cx.settings.reconnect_grace_ms);
        let max_deadline =
            (max_ms > 0).then(|| (now.instant_of(live.setup_ms) + Duration::from_millis(max_ms)).max(now.at));
        let participants: Vec<Participant> = live
            .participants
            .into_iter()
            .map(|p| Participant {
                party: p.party,
                session: None,
                display_name: p.display_name,
                ue_type: p.ue_type,
                app_data: p.app_data,
                mic_muted: false,
                video_enabled: media == MediaType::Video,
                video_paused: false,
                joined_ms: p.joined_ms,
                lost_deadline: Some(grace),
                video_from: Default::default(),
                told_talking: false,
                new_media: true,
            })
            .collect();
        let sid = live.sid;
        self.participants += participants.len();
        let room = Room {
            sid: sid.clone(),
            service_id: live.service_id,
            room_id,
            media,
            host: live.host,
            setup_ms: live.setup_ms,
            participants,
            alone_deadline: None,
            max_deadline,
            callbacks: live.callbacks,
            talking: Default::default(),
            call,
        };
        for p in &room.participants {
            cx.presence.joined_room(&p.party, &sid);
        }
        cx.journal(Entry::LiveRoom(room.snapshot()));
        self.rooms.insert(sid.clone(), room);
        self.by_key.insert(key, sid.clone());
        cx.media(MediaCmd::Room { sid: sid.clone(), speakers, video: media == MediaType::Video });
        cx.timer(grace, Timer::Room(sid.clone(), RoomTimer::Lost));
        if let Some(at) = max_deadline {
            cx.timer(at, Timer::Room(sid, RoomTimer::MaxTime));
        }
    }

    /// The rooms (not a group call's, which its call engine runs), as snapshots: what a
    /// draining node hands over.
    pub fn movable(&self) -> Vec<LiveRoom> {
        self.rooms.values().filter(|r| !r.call).map(Room::snapshot).collect()
    }

    /// Lets go of room `sid`, handed over to another node: nothing said, no callback.
    /// The sessions in it.
    pub fn release(&mut self, cx: &mut Cx, sid: &Sid) -> Vec<SessionId> {
        let Some(room) = self.rooms.remove(sid) else { return Vec::new() };
        for p in &room.participants {
            cx.presence.left_room(&p.party, sid);
        }
        self.by_key.remove(&(room.service_id.clone(), room.room_id.clone()));
        self.participants = self.participants.saturating_sub(room.participants.len());
        room.participants.iter().filter_map(|p| p.session).collect()
    }
}
