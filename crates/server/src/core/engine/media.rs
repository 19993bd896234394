//! `switch_call_media` of a group call: from video to audio (everyone stops sending
//! video; the room's video forwarding simply has nothing to carry). A group call's room
//! is made for its media type, so audio to video is refused.

use switchboard_protocol::engine::CallMediaType;
use switchboard_protocol::{EngineEvent, ErrorCode, MediaType, ServerMessage};

use super::{tell_all, Engine};
use crate::clock::Now;
use crate::core::room::Rooms;
use crate::core::Cx;
use crate::ids::{SessionId, Sid};

impl Engine {
    /// `switch_call_media` by someone in the group call.
    #[allow(clippy::too_many_arguments)]
    pub fn switch_media(
        &mut self,
        cx: &mut Cx,
        rooms: &mut Rooms,
        _now: Now,
        session: SessionId,
        req: Option<u64>,
        id: &Sid,
        media_type: &str,
    ) {
        let Some(party) = cx.presence.session(session).map(|s| s.party.clone()) else { return };
        let Some(call) = self.calls.get_mut(id).filter(|_| rooms.session_in(id, &party) == Some(session))
        else {
            return cx.error(session, req, ErrorCode::NotFound, "this session is not in that group call");
        };
        let Some(media) = MediaType::parse(media_type) else {
            return cx.error(session, req, ErrorCode::InvalidParam, "media_type must be audio or video");
        };
        if media == call.media {
            return cx.send(session, ServerMessage::Done { req });
        }
        if media == MediaType::Video {
            let message = "a group call switches from video to audio only (its room was made for audio)";
            return cx.error(session, req, ErrorCode::InvalidParam, message);
        }
        let old = CallMediaType::of(call.media);
        call.media = media;
        self.changed.insert(id.clone());
        cx.send(session, ServerMessage::Done { req });
        let event = EngineEvent::CallMediaTypeChanged {
            old_call_media_type: old,
            new_call_media_type: CallMediaType::of(media),
        };
        tell_all(cx, rooms, &self.calls[id], None, event);
    }
}
