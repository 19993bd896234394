//! Messages between a room's participants: short data from one to the others (or to
//! targets), app control messages from the app server, and a participant's microphone
//! and camera state.

use switchboard_protocol::{
    ErrorCode, ServerMessage, MAX_APP_CONTROL_BYTES, MAX_SHORT_DATA_BYTES, MAX_SHORT_DATA_TYPE_BYTES,
};

use super::records::Change;
use super::{MediaState, Rooms};
use crate::clock::Now;
use crate::core::Cx;
use crate::ids::{SessionId, Sid};

impl Rooms {
    /// The app server messages a room (REST): to `user_ids`, or everyone. The number of
    /// sessions reached, or `None` when there is no such room.
    pub fn app_message(
        &mut self,
        cx: &mut Cx,
        service_id: &str,
        room_id: &str,
        user_ids: Option<&[String]>,
        data: &str,
    ) -> Option<usize> {
        if data.len() > MAX_APP_CONTROL_BYTES {
            return Some(0);
        }
        let sid = self.sid_of(service_id, room_id)?;
        let room = self.rooms.get(&sid)?;
        let mut n = 0;
        for p in &room.participants {
            if user_ids.is_some_and(|u| !u.contains(&p.party.user_id)) {
                continue;
            }
            if let Some(session) = p.session {
                cx.send(
                    session,
                    ServerMessage::AppControlMessage { sid: sid.clone(), data: data.to_string() },
                );
                n += 1;
            }
        }
        Some(n)
    }

    /// `short_data` to the others (or `targets`).
    #[allow(clippy::too_many_arguments)]
    pub fn short_data(
        &mut self,
        cx: &mut Cx,
        session: SessionId,
        req: Option<u64>,
        sid: &Sid,
        data_type: String,
        data: String,
        targets: Option<Vec<String>>,
    ) {
        let Some((room, i)) = self.member(session, sid) else {
            return Self::not_member(cx, session, req);
        };
        if data_type.len() > MAX_SHORT_DATA_TYPE_BYTES {
            return cx.error(session, req, ErrorCode::InvalidParam, "data_type is over 100 bytes");
        }
        if data.len() > MAX_SHORT_DATA_BYTES {
            return cx.error(session, req, ErrorCode::InvalidParam, "data is over 800 bytes");
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
            return cx.error(session, req, ErrorCode::NotFound, "none of the targets is in the room");
        }
        for s in to {
            let msg = ServerMessage::ShortData {
                sid: sid.clone(),
                from_user_id: from.clone(),
                data_type: data_type.clone(),
                data: data.clone(),
            };
            cx.send(s, msg);
        }
    }

    /// `media_state` in a room: tell the others and the app server.
    pub fn media_state(&mut self, cx: &mut Cx, now: Now, session: SessionId, sid: &Sid, state: MediaState) {
        let MediaState { mic_muted, video_enabled, video_paused } = state;
        let Some(room) = self.rooms.get_mut(sid) else {
            return Self::not_member(cx, session, None);
        };
        let Some(i) = room.by_session(session) else {
            return Self::not_member(cx, session, None);
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
            let msg = ServerMessage::PeerMediaState {
                sid: sid.clone(),
                user_id: Some(party.user_id.clone()),
                mic_muted,
                video_enabled,
                video_paused,
            };
            cx.send(other, msg);
        }
        if changed {
            self.callback(cx, now, sid, &party, 'C', Change::Media, None);
        }
    }
}
