//! Who is in a room: joining (the first join creates the room), leaving (the last one
//! ends it), the same user joining again from another device, kick-out and close by
//! the app server, the alone and maximum-time timers, and sessions lost and resumed
//! within the reconnect grace.

use std::time::Instant;

use switchboard_protocol::{
    DisconnectReason, DisconnectSource, ErrorCode, MediaType, RoomPeer, ServerMessage, StartFailReason,
    MAX_DISPLAY_NAME_BYTES,
};

use super::records::{Change, Gone};
use super::{Join, Participant, Room, RoomTimer, Rooms};
use crate::clock::Now;
use crate::core::{app_data_too_long, Cx, LeftCallRoom, Timer};
use crate::ids::{Party, RoomId, SessionId, Sid};
use crate::media_link::{MediaCmd, PartyKey};

/// How a participant leaves, for [`Rooms::remove`].
pub(super) struct Leaving {
    pub reason: DisconnectReason,
    pub source: DisconnectSource,
    pub change: Change,
    pub user_rel_code: Option<String>,
    /// The request it answers, if the participant asked to leave.
    pub req: Option<u64>,
}

impl Leaving {
    fn by(reason: DisconnectReason, source: DisconnectSource) -> Leaving {
        Leaving { reason, source, change: Change::Disconnected, user_rel_code: None, req: None }
    }
}

impl Rooms {
    /// `join_room`, or a group call's room joined for its call: the room's sid once
    /// joined (`None`: refused, and the session told why).
    pub fn join(&mut self, cx: &mut Cx, now: Now, session: SessionId, j: Join) -> Option<Sid> {
        use StartFailReason as F;
        let s = cx.presence.session(session)?;
        let (party, ue_type) = (s.party.clone(), s.client.ue_type.clone());
        let fail = |cx: &mut Cx, reason: StartFailReason, message: &str| {
            cx.start_failed(session, j.req, reason, message);
            None
        };
        let service_id = j.room_service_id.clone().unwrap_or_else(|| party.service_id.clone());
        let Some(room_id) = RoomId::parse(&j.room_id) else {
            return fail(cx, F::InvalidRoomId, "room_id must match [A-Za-z0-9_-]{1,64}");
        };
        if j.room_id == party.user_id {
            return fail(cx, F::IdConflict, "a room ID cannot be the joiner's own user ID");
        }
        if service_id != party.service_id {
            return fail(cx, F::InvalidServiceId, "room_service_id must be the joiner's own service");
        }
        let Some(rules) = cx.services.get(&service_id).cloned() else {
            return fail(cx, F::InvalidServiceId, "unknown service");
        };
        let Some(media) = MediaType::parse(&j.media_type) else {
            return fail(cx, F::InvalidMediaType, "media_type must be audio or video");
        };
        if app_data_too_long(j.app_data.as_ref()) {
            return fail(cx, F::TooLongAppServerData, "app_data is over 4096 bytes");
        }
        if j.display_name.as_ref().is_some_and(|d| d.len() > MAX_DISPLAY_NAME_BYTES) {
            return fail(cx, F::InvalidParam, "display_name is over 128 bytes");
        }
        let key = (service_id.clone(), room_id.clone());
        if let Some(room) = self.by_key.get(&key).and_then(|sid| self.rooms.get(sid)) {
            if room.call != j.call {
                let message = if room.call {
                    "that room is a call's: answer or join the call instead"
                } else {
                    "that room number is taken by a room"
                };
                return fail(cx, F::InvalidRoomId, message);
            }
        }
        // The same user again, from another session: the old instance gives way.
        if let Some(sid) = self.by_key.get(&key).cloned() {
            if let Some(i) = self.rooms.get(&sid).and_then(|r| r.index_of(&party)) {
                if self.rooms.get(&sid).is_some_and(|r| r.participants[i].session == Some(session)) {
                    let message = "this session is already in the room";
                    cx.error(session, j.req, ErrorCode::WrongState, message);
                    return None;
                }
                let leaving =
                    Leaving::by(DisconnectReason::AnotherInstanceTryToJoin, DisconnectSource::CloudServer);
                self.remove(cx, now, &sid, &party, leaving);
            }
        }
        let existing = self.by_key.get(&key).cloned();
        if let Some(room) = existing.as_ref().and_then(|sid| self.rooms.get(sid)) {
            if room.participants.len() as u32 >= rules.max_room_participants {
                let msg = ServerMessage::Disconnected {
                    req: j.req,
                    sid: room.sid.clone(),
                    reason: DisconnectReason::RoomIsFull,
                    source: DisconnectSource::CloudServer,
                    by_remote: false,
                    user_rel_code: None,
                };
                cx.send(session, msg);
                return None;
            }
        }
        let sid = match existing {
            Some(sid) => sid,
            None => {
                let sid = cx.ids.room_sid();
                let max_deadline = (rules.max_call_ms > 0).then(|| Cx::after(now, rules.max_call_ms));
                let room = Room {
                    sid: sid.clone(),
                    service_id: service_id.clone(),
                    room_id: room_id.clone(),
                    media,
                    host: party.clone(),
                    setup_ms: now.wall_ms,
                    participants: Vec::new(),
                    alone_deadline: None,
                    max_deadline,
                    callbacks: 0,
                    talking: Default::default(),
                    call: j.call,
                };
                self.rooms.insert(sid.clone(), room);
                self.by_key.insert(key, sid.clone());
                let video = media == MediaType::Video;
                cx.media(MediaCmd::Room { sid: sid.clone(), speakers: rules.max_room_speakers, video });
                if let Some(at) = max_deadline {
                    cx.timer(at, Timer::Room(sid.clone(), RoomTimer::MaxTime));
                }
                sid
            }
        };
        let participant = Participant {
            party: party.clone(),
            session: Some(session),
            display_name: j.display_name.clone(),
            ue_type,
            app_data: j.app_data.clone(),
            mic_muted: j.mic_muted,
            video_enabled: j.video_enabled && media == MediaType::Video,
            video_paused: false,
            joined_ms: now.wall_ms,
            lost_deadline: None,
            video_from: Default::default(),
            told_talking: false,
            new_media: false,
        };
        let room = self.rooms.get_mut(&sid)?;
        let peers: Vec<RoomPeer> = room.participants.iter().map(Participant::peer).collect();
        let others: Vec<SessionId> = room.participants.iter().filter_map(|p| p.session).collect();
        let added = participant.peer();
        room.participants.push(participant);
        self.participants += 1;
        let total = room.participants.len() as u32;
        cx.send(
            session,
            ServerMessage::RoomJoined {
                req: j.req,
                sid: sid.clone(),
                room_id: room.room_id.to_string(),
                room_service_id: room.service_id.clone(),
                media_type: room.media,
                host_id: room.host.user_id.clone(),
                setup_time: room.setup_ms / 1000,
                peers,
            },
        );
        for other in others {
            let msg = ServerMessage::PeerList {
                sid: sid.clone(),
                added: vec![added.clone()],
                removed: Vec::new(),
                total: total - 1,
            };
            cx.send(other, msg);
        }
        cx.presence.joined_room(&party, &sid);
        // Video on demand: nobody's until asked for.
        let party_key = PartyKey::Member(party.user_id.clone());
        cx.media(MediaCmd::VideoFrom { sid: sid.clone(), party: party_key, from: Vec::new() });
        let first = total == 1;
        self.callback(cx, now, &sid, &party, if first { 'S' } else { 'C' }, Change::Connected, None);
        self.check_alone(cx, now, &sid, rules.alone_kick_out_ms);
        Some(sid)
    }

    /// Starts or stops the alone kick-out clock after a change.
    fn check_alone(&mut self, cx: &mut Cx, now: Now, sid: &Sid, alone_ms: u64) {
        let Some(room) = self.rooms.get_mut(sid) else { return };
        if room.participants.len() == 1 && alone_ms > 0 && !room.call {
            if room.alone_deadline.is_none() {
                let at = Cx::after(now, alone_ms);
                room.alone_deadline = Some(at);
                cx.timer(at, Timer::Room(sid.clone(), RoomTimer::Alone));
            }
        } else {
            room.alone_deadline = None;
        }
    }

    /// Tells `session` it is not in that room.
    pub(super) fn not_member(cx: &mut Cx, session: SessionId, req: Option<u64>) {
        cx.error(session, req, ErrorCode::NotFound, "this session is not in that room");
    }

    /// `leave_room` (or `end_call` with a room's sid): `reason` a client-reported one.
    #[allow(clippy::too_many_arguments)]
    pub fn leave(
        &mut self,
        cx: &mut Cx,
        now: Now,
        session: SessionId,
        req: Option<u64>,
        sid: &Sid,
        reason: Option<DisconnectReason>,
        user_rel_code: Option<String>,
    ) {
        let Some((room, i)) = self.member(session, sid) else {
            return Self::not_member(cx, session, req);
        };
        let party = room.participants[i].party.clone();
        let leaving = Leaving {
            reason: reason.unwrap_or(DisconnectReason::Normal),
            source: DisconnectSource::Participant,
            change: Change::Disconnected,
            user_rel_code,
            req,
        };
        self.remove(cx, now, sid, &party, leaving);
    }

    /// Takes `party` out of room `sid`: tells it (answering `req`, if it has a session)
    /// and the others, releases its media, sends the callback, and ends the room when
    /// it was the last one.
    pub(super) fn remove(&mut self, cx: &mut Cx, now: Now, sid: &Sid, party: &Party, how: Leaving) {
        let Some(room) = self.rooms.get_mut(sid) else { return };
        let Some(i) = room.index_of(party) else { return };
        let p = room.participants.remove(i);
        self.participants -= 1;
        let total = room.participants.len() as u32;
        let others: Vec<SessionId> = room.participants.iter().filter_map(|q| q.session).collect();
        let service_id = room.service_id.clone();
        if let Some(session) = p.session {
            let msg = ServerMessage::Disconnected {
                req: how.req,
                sid: sid.clone(),
                reason: how.reason,
                source: how.source,
                by_remote: false,
                user_rel_code: how.user_rel_code.clone(),
            };
            cx.send(session, msg);
        }
        // Those who watched it stop: a later instance of the same user is asked for anew.
        for q in room.participants.iter_mut() {
            if q.video_from.remove(&p.party.user_id).is_none() {
                continue;
            }
            let from = q.video_from.iter().map(|(u, r)| (PartyKey::Member(u.clone()), r.clone())).collect();
            cx.media(MediaCmd::VideoFrom {
                sid: sid.clone(),
                party: PartyKey::Member(q.party.user_id.clone()),
                from,
            });
        }
        for other in others {
            let msg = ServerMessage::PeerList {
                sid: sid.clone(),
                added: Vec::new(),
                removed: vec![p.party.user_id.clone()],
                total: total.saturating_sub(1),
            };
            cx.send(other, msg);
        }
        cx.presence.left_room(party, sid);
        if room.call {
            cx.left_call_room(LeftCallRoom {
                sid: sid.clone(),
                party: party.clone(),
                session: p.session,
                reason: how.reason,
            });
        }
        cx.media(MediaCmd::Leave { sid: sid.clone(), party: PartyKey::Member(p.party.user_id.clone()) });
        cx.room_left(how.reason);
        let ended = total == 0;
        let gone = Gone { p, reason: how.reason, source: how.source };
        self.callback(cx, now, sid, party, if ended { 'E' } else { 'C' }, how.change, Some(&gone));
        if ended {
            if let Some(room) = self.rooms.remove(sid) {
                self.by_key.remove(&(room.service_id, room.room_id));
            }
            cx.media(MediaCmd::End { sid: sid.clone() });
        } else {
            let alone_ms = cx.services.get(&service_id).map_or(0, |r| r.alone_kick_out_ms);
            self.check_alone(cx, now, sid, alone_ms);
        }
    }

    /// Ends the whole room: everyone leaves with `reason`.
    pub(crate) fn close(
        &mut self,
        cx: &mut Cx,
        now: Now,
        sid: &Sid,
        reason: DisconnectReason,
        source: DisconnectSource,
        user_rel_code: Option<String>,
    ) {
        let parties: Vec<Party> = self
            .rooms
            .get(sid)
            .map(|r| r.participants.iter().map(|p| p.party.clone()).collect())
            .unwrap_or_default();
        for party in parties {
            let leaving = Leaving { user_rel_code: user_rel_code.clone(), ..Leaving::by(reason, source) };
            self.remove(cx, now, sid, &party, leaving);
        }
    }

    /// The app server ends a room (REST): everyone leaves with USER_ERROR, source
    /// app_server. Whether the room was found.
    pub fn force_close(
        &mut self,
        cx: &mut Cx,
        now: Now,
        service_id: &str,
        room_id: &str,
        user_rel_code: Option<String>,
    ) -> bool {
        let Some(sid) = self.sid_of(service_id, room_id) else { return false };
        let (reason, source) = (DisconnectReason::UserError, DisconnectSource::AppServer);
        self.close(cx, now, &sid, reason, source, user_rel_code);
        true
    }

    /// The app server kicks users out of a room (REST): they leave with USER_ERROR,
    /// source app_server. The users found.
    pub fn kick(
        &mut self,
        cx: &mut Cx,
        now: Now,
        service_id: &str,
        room_id: &str,
        user_ids: &[String],
        user_rel_code: Option<String>,
    ) -> Option<Vec<String>> {
        let sid = self.sid_of(service_id, room_id)?;
        let mut kicked = Vec::new();
        for user in user_ids {
            let party = Party::new(service_id, user.as_str());
            if self.rooms.get(&sid).is_some_and(|r| r.index_of(&party).is_some()) {
                let leaving = Leaving {
                    user_rel_code: user_rel_code.clone(),
                    ..Leaving::by(DisconnectReason::UserError, DisconnectSource::AppServer)
                };
                self.remove(cx, now, &sid, &party, leaving);
                kicked.push(user.clone());
            }
        }
        Some(kicked)
    }

    /// A participant's network gave out (its session or its media, past the grace):
    /// NETWORK_UNSTABLE, source participant, `msc` T.
    pub(super) fn time_out(&mut self, cx: &mut Cx, now: Now, sid: &Sid, party: &Party) {
        let leaving = Leaving {
            change: Change::TimedOut,
            ..Leaving::by(DisconnectReason::NetworkUnstable, DisconnectSource::Participant)
        };
        self.remove(cx, now, sid, party, leaving);
    }

    /// A later login of the user elsewhere signed `session` out: it leaves every room
    /// it is in (ANOTHER_INSTANCE_TRY_TO_JOIN, source cloud_server).
    pub fn session_signed_out(&mut self, cx: &mut Cx, now: Now, session: SessionId) {
        let inside: Vec<(Sid, Party)> = self
            .rooms
            .values()
            .flat_map(|r| {
                r.participants
                    .iter()
                    .filter(|p| p.session == Some(session))
                    .map(|p| (r.sid.clone(), p.party.clone()))
            })
            .collect();
        for (sid, party) in inside {
            let leaving =
                Leaving::by(DisconnectReason::AnotherInstanceTryToJoin, DisconnectSource::CloudServer);
            self.remove(cx, now, &sid, &party, leaving);
        }
    }

    /// A session is gone: its participants wait for it to `resume` within the grace.
    pub fn session_closed(&mut self, cx: &mut Cx, now: Now, session: SessionId) {
        let deadline = Cx::after(now, cx.settings.reconnect_grace_ms);
        for room in self.rooms.values_mut() {
            for p in room.participants.iter_mut().filter(|p| p.session == Some(session)) {
                p.session = None;
                p.lost_deadline = Some(deadline);
                cx.timer(deadline, Timer::Room(room.sid.clone(), RoomTimer::Lost));
            }
        }
    }

    /// `resume` of a room: the user's new session takes its place back.
    pub fn resume(&mut self, cx: &mut Cx, session: SessionId, req: Option<u64>, sid: &Sid) {
        let Some(party) = cx.presence.session(session).map(|s| s.party.clone()) else { return };
        let Some(room) = self.rooms.get_mut(sid) else {
            let msg = ServerMessage::Disconnected {
                req,
                sid: sid.clone(),
                reason: DisconnectReason::RoomNotFound,
                source: DisconnectSource::CloudServer,
                by_remote: false,
                user_rel_code: None,
            };
            return cx.send(session, msg);
        };
        let Some(p) = room.participants.iter_mut().find(|p| p.party == party) else {
            return Self::not_member(cx, session, req);
        };
        p.session = Some(session);
        p.lost_deadline = None;
        // Told again at every resume until it offers media here.
        let new_media = p.new_media;
        cx.send(
            session,
            ServerMessage::Resumed { req, sid: sid.clone(), state: "connected".into(), new_media },
        );
    }

    /// A room's timer: alone too long, maximum time, a participant's grace.
    pub(super) fn fire(&mut self, cx: &mut Cx, now: Now, at: Instant, sid: &Sid, kind: RoomTimer) {
        let Some(room) = self.rooms.get(sid) else { return };
        match kind {
            RoomTimer::Alone if room.alone_deadline == Some(at) && room.participants.len() == 1 => {
                let party = room.participants[0].party.clone();
                let leaving = Leaving::by(DisconnectReason::AloneKickOut, DisconnectSource::CloudServer);
                self.remove(cx, now, sid, &party, leaving);
            }
            RoomTimer::MaxTime if room.max_deadline == Some(at) => {
                let (reason, source) = (DisconnectReason::MaxCallTimeExceeded, DisconnectSource::CloudServer);
                self.close(cx, now, sid, reason, source, None);
            }
            RoomTimer::Lost => {
                let gone: Vec<Party> = room
                    .participants
                    .iter()
                    .filter(|p| p.lost_deadline == Some(at))
                    .map(|p| p.party.clone())
                    .collect();
                for party in gone {
                    self.time_out(cx, now, sid, &party);
                }
            }
            _ => {}
        }
    }
}
