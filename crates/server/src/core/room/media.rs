//! A room's media: a participant's offers, answers and lines go to the relay under its
//! key ([`PartyKey::Member`]); what the relay reports (its offers, which line carries
//! whom, audio levels, network quality, media that stopped) comes back to the
//! participants; `request_peer_video` / `remove_peer_video` choose whose video one gets.

use std::collections::{BTreeMap, BTreeSet};

use switchboard_protocol::{ErrorCode, MediaLine, MediaType, ServerMessage};

use super::Rooms;
use crate::clock::Now;
use crate::core::Cx;
use crate::ids::{SessionId, Sid};
use crate::media_link::{MediaCmd, PartyKey, Reply};

impl Rooms {
    /// The relay's key of `session` in room `sid`, if a member.
    fn media_party(&self, session: SessionId, sid: &Sid) -> Option<PartyKey> {
        self.member(session, sid)
            .map(|(room, i)| PartyKey::Member(room.participants[i].party.user_id.clone()))
    }

    /// The session of the participant the relay knows as `party` in room `sid`.
    pub fn session_of(&self, sid: &Sid, party: &PartyKey) -> Option<SessionId> {
        let user = party.member()?;
        let room = self.rooms.get(sid)?;
        room.participants.iter().find(|p| p.party.user_id == user).and_then(|p| p.session)
    }

    /// A participant's SDP offer: to the relay, which answers the session.
    pub fn media_offer(&mut self, cx: &mut Cx, session: SessionId, req: Option<u64>, sid: &Sid, sdp: String) {
        match self.media_party(session, sid) {
            Some(party) => {
                let me = self
                    .rooms
                    .get_mut(sid)
                    .and_then(|r| r.participants.iter_mut().find(|p| p.session == Some(session)));
                if let Some(p) = me {
                    p.new_media = false;
                }
                cx.media(MediaCmd::Offer { sid: sid.clone(), party, sdp, reply: Reply { session, req } })
            }
            None => Self::not_member(cx, session, req),
        }
    }

    /// A participant's answer to the relay's offer.
    pub fn media_answer(&mut self, cx: &mut Cx, session: SessionId, sid: &Sid, offer_id: u64, sdp: String) {
        if let Some(party) = self.media_party(session, sid) {
            cx.media(MediaCmd::Answer { sid: sid.clone(), party, offer_id, sdp });
        }
    }

    /// A participant asks for a line to send `kind` on.
    pub fn add_media(&mut self, cx: &mut Cx, session: SessionId, sid: &Sid, kind: &str) {
        match (self.media_party(session, sid), MediaType::parse(kind)) {
            (Some(party), Some(kind)) => cx.media(MediaCmd::AddLine { sid: sid.clone(), party, kind }),
            (None, _) => Self::not_member(cx, session, None),
            (_, None) => cx.error(session, None, ErrorCode::InvalidParam, "kind must be audio or video"),
        }
    }

    /// `request_peer_video` (`request` is `Some(resolution)`) / `remove_peer_video`
    /// (`None`).
    pub fn peer_video(
        &mut self,
        cx: &mut Cx,
        session: SessionId,
        req: Option<u64>,
        sid: &Sid,
        user_id: &str,
        request: Option<Option<String>>,
    ) {
        let on = request.is_some();
        let Some(room) = self.rooms.get_mut(sid) else {
            return Self::not_member(cx, session, req);
        };
        let Some(i) = room.by_session(session) else {
            return Self::not_member(cx, session, req);
        };
        let present = room.participants.iter().any(|p| p.party.user_id == user_id);
        let me = &mut room.participants[i];
        if on && (!present || me.party.user_id == user_id) {
            return cx.error(session, req, ErrorCode::NotFound, "no such other participant in the room");
        }
        let before = me.video_from.get(user_id).cloned();
        match request {
            Some(resolution) => me.video_from.insert(user_id.to_string(), resolution),
            None => me.video_from.remove(user_id),
        };
        if me.video_from.get(user_id).cloned() != before {
            let from = me.video_from.iter().map(|(u, r)| (PartyKey::Member(u.clone()), r.clone())).collect();
            cx.media(MediaCmd::VideoFrom {
                sid: sid.clone(),
                party: PartyKey::Member(me.party.user_id.clone()),
                from,
            });
        }
        let msg =
            ServerMessage::PeerVideo { req, sid: sid.clone(), user_id: user_id.to_string(), requested: on };
        cx.send(session, msg);
    }

    /// The relay (re)assigned a participant's lines: tell it whose media each carries.
    pub fn media_lines(&self, cx: &mut Cx, sid: &Sid, party: &PartyKey, lines: Vec<MediaLine>) {
        if let Some(session) = self.session_of(sid, party) {
            cx.send(session, ServerMessage::MediaLines { sid: sid.clone(), lines });
        }
    }

    /// The relay's audio levels: tell everyone, and who started or stopped talking.
    pub fn levels(&mut self, cx: &mut Cx, sid: &Sid, levels: Vec<(PartyKey, u8, bool)>) {
        let Some(room) = self.rooms.get_mut(sid) else { return };
        let levels: Vec<(String, u8, bool)> =
            levels.into_iter().filter_map(|(p, l, t)| Some((p.member()?.to_string(), l, t))).collect();
        let talking: BTreeSet<String> = levels.iter().filter(|(.., t)| *t).map(|(u, ..)| u.clone()).collect();
        let active: Vec<String> = talking.difference(&room.talking).cloned().collect();
        let inactive: Vec<String> = room.talking.difference(&talking).cloned().collect();
        room.talking = talking;
        let levels: BTreeMap<String, u8> = levels.into_iter().map(|(u, l, _)| (u, l)).collect();
        for p in room.participants.iter_mut() {
            let Some(session) = p.session else { continue };
            cx.send(session, ServerMessage::PeerAudioLevels { sid: sid.clone(), levels: levels.clone() });
            // A newcomer learns who talks now; the others only what changed.
            let (active, inactive) = if p.told_talking {
                (active.clone(), inactive.clone())
            } else {
                (room.talking.iter().cloned().collect(), Vec::new())
            };
            p.told_talking = true;
            if !active.is_empty() || !inactive.is_empty() {
                cx.send(session, ServerMessage::PeersTalking { sid: sid.clone(), active, inactive });
            }
        }
    }

    /// The relay's network grades: tell everyone.
    pub fn quality(&mut self, cx: &mut Cx, sid: &Sid, quality: Vec<(PartyKey, u8)>) {
        let Some(room) = self.rooms.get(sid) else { return };
        let quality: BTreeMap<String, u8> =
            quality.into_iter().filter_map(|(p, q)| Some((p.member()?.to_string(), q))).collect();
        for session in room.participants.iter().filter_map(|p| p.session) {
            cx.send(
                session,
                ServerMessage::PeersNetworkQuality { sid: sid.clone(), quality: quality.clone() },
            );
        }
    }

    /// A participant's media stopped past the media timeout.
    pub fn media_lost(&mut self, cx: &mut Cx, now: Now, sid: &Sid, party: &PartyKey) {
        let Some(user) = party.member() else { return };
        let Some(room) = self.rooms.get(sid) else { return };
        let Some(p) = room.participants.iter().find(|p| p.party.user_id == user) else { return };
        let party = p.party.clone();
        self.time_out(cx, now, sid, &party);
    }
}
