//! Routing: each client message and each relay event to the 1-to-1 call, room or
//! group call it is for (by the message's type and the sid's shape: a UUID is a call's,
//! 32 hex digits a room's or a group call's).

use switchboard_protocol::{ClientMessage, DisconnectReason, ErrorCode, ServerMessage};

use super::presence::Profile;
use super::{call, engine, room, Core, Cx, SessionAuth};
use crate::clock::Now;
use crate::ids::SessionId;
use crate::media_link::RelayEvent;

impl Core {
    /// Routes a client's message to the call or room it is for.
    pub(super) fn message(&mut self, now: Now, session: SessionId, msg: ClientMessage) {
        use ClientMessage as M;
        let Some(s) = self.cx.presence.session(session) else { return };
        let token = s.auth == SessionAuth::Token;
        if s.kicked {
            let msg = ServerMessage::Error {
                req: msg.req(),
                error: ErrorCode::WrongState,
                reason: Some(DisconnectReason::AnotherInstanceTryToJoin),
                message: "this instance was signed out: the user signed in elsewhere".into(),
            };
            return self.cx.send(session, msg);
        }
        let (cx, calls, rooms, engine) = (&mut self.cx, &mut self.calls, &mut self.rooms, &mut self.engine);
        match msg {
            M::Calls { req, user_ids, media_type, timeout_secs, user_data, room_id, group_id } => {
                let calls_msg =
                    engine::CallsMsg { user_ids, media_type, timeout_secs, user_data, room_id, group_id };
                engine.calls(cx, rooms, calls, now, session, req, calls_msg)
            }
            M::Accept { req, call_id } if call_id.is_room_shaped() => {
                engine.accept(cx, rooms, now, session, req, &call_id)
            }
            M::Reject { req, call_id } if call_id.is_room_shaped() => {
                engine.decline(cx, rooms, now, session, req, &call_id, engine::Decline::Reject)
            }
            M::Ignore { req, call_id } if call_id.is_room_shaped() => {
                engine.decline(cx, rooms, now, session, req, &call_id, engine::Decline::Ignore)
            }
            M::Hangup { req, call_id } if call_id.is_room_shaped() => {
                engine.hangup(cx, rooms, now, session, req, &call_id)
            }
            M::InviteUser { req, call_id, user_ids, timeout_secs } => {
                engine.invite_user(cx, rooms, now, session, req, &call_id, user_ids, timeout_secs)
            }
            M::JoinCall { req, call_id } => engine.join_call(cx, rooms, now, session, req, &call_id),
            M::SetSelfInfo { req, nickname, avatar_url } => {
                set_self_info(cx, session, req, nickname, avatar_url)
            }
            M::SwitchCallMedia { req, call_id, media_type } if call_id.is_room_shaped() => {
                engine.switch_media(cx, rooms, now, session, req, &call_id, &media_type)
            }
            M::SwitchCallMedia { req, call_id, media_type } => {
                calls.switch_media(cx, now, session, req, &call_id, &media_type)
            }
            M::Accept { req, call_id } => calls.engine_accept(cx, now, session, req, &call_id),
            M::Reject { req, call_id } => {
                calls.engine_decline(cx, now, session, req, &call_id, DisconnectReason::Decline)
            }
            M::Ignore { req, call_id } => {
                calls.engine_decline(cx, now, session, req, &call_id, DisconnectReason::Busy)
            }
            M::Hangup { req, call_id } => calls.end_call(cx, now, session, req, &call_id, None, None),
            M::JoinRoom { req, .. } if !token => {
                cx.error(session, req, ErrorCode::WrongState, "a cc_param session can only verify its call")
            }
            M::JoinRoom {
                req,
                room_id,
                room_service_id,
                media_type,
                display_name,
                app_data,
                mic_muted,
                video_enabled,
            } => {
                if cx.rate_ok(now, session, req) {
                    let join = room::Join {
                        req,
                        room_id,
                        room_service_id,
                        media_type,
                        display_name,
                        app_data,
                        mic_muted: mic_muted.unwrap_or(false),
                        video_enabled: video_enabled.unwrap_or(true),
                        call: false,
                    };
                    rooms.join(cx, now, session, join);
                }
            }
            M::LeaveRoom { req, sid } => rooms.leave(cx, now, session, req, &sid, None, None),
            M::ShortData { req, sid, data_type, data, targets } => {
                rooms.short_data(cx, session, req, &sid, data_type, data, targets)
            }
            M::RequestPeerVideo { req, sid, user_id, resolution } => {
                rooms.peer_video(cx, session, req, &sid, &user_id, Some(resolution))
            }
            M::RemovePeerVideo { req, sid, user_id } => {
                rooms.peer_video(cx, session, req, &sid, &user_id, None)
            }
            M::EndCall { req, sid, reason, user_rel_code } if rooms.contains(&sid) => {
                match call::client_end(reason, user_rel_code.as_deref()) {
                    Ok(reason) => rooms.leave(cx, now, session, req, &sid, reason, user_rel_code),
                    Err(message) => cx.error(session, req, ErrorCode::InvalidParam, message),
                }
            }
            // A room that ended is told apart from a call that ended by its sid's shape.
            M::Resume { req, sid } if token && sid.is_room_shaped() => rooms.resume(cx, session, req, &sid),
            M::MediaOffer { req, sid, sdp } if rooms.contains(&sid) => {
                rooms.media_offer(cx, session, req, &sid, sdp)
            }
            M::MediaAnswer { sid, offer_id, sdp } if rooms.contains(&sid) => {
                rooms.media_answer(cx, session, &sid, offer_id, sdp)
            }
            M::AddMedia { sid, kind } if rooms.contains(&sid) => rooms.add_media(cx, session, &sid, &kind),
            M::MediaState { sid, mic_muted, video_enabled, video_paused } if rooms.contains(&sid) => {
                let state = room::MediaState { mic_muted, video_enabled, video_paused };
                rooms.media_state(cx, now, session, &sid, state)
            }
            M::MakeCall { req, to_user_id, to_service_id, media_type, app_data, ring_timeout_secs } => {
                let make =
                    call::MakeCall { to_user_id, to_service_id, media_type, app_data, ring_timeout_secs };
                calls.make_call(cx, now, session, req, make)
            }
            M::VerifyCall { req, cc_param } => calls.verify_call(cx, now, session, req, &cc_param),
            M::AcceptCall { req, sid } => calls.accept_call(cx, now, session, req, &sid),
            M::EndCall { req, sid, reason, user_rel_code } => {
                calls.end_call(cx, now, session, req, &sid, reason, user_rel_code)
            }
            M::Resume { req, sid } => calls.resume(cx, now, session, req, &sid),
            M::MediaOffer { req, sid, sdp } => calls.media_offer(cx, session, req, &sid, sdp),
            M::MediaAnswer { sid, offer_id, sdp } => calls.media_answer(cx, session, &sid, offer_id, sdp),
            M::AddMedia { sid, kind } => calls.add_media(cx, session, &sid, &kind),
            M::MediaState { sid, mic_muted, video_enabled, video_paused } => calls.media_state(
                cx,
                session,
                &sid,
                room::MediaState { mic_muted, video_enabled, video_paused },
            ),
            M::Hello { .. } | M::Ping {} | M::RefreshToken { .. } => {
                cx.error(session, None, ErrorCode::WrongState, "handled by the session, not the call core")
            }
        }
    }

    /// Routes what the relay reports to the call or room it is about.
    pub(super) fn relay(&mut self, now: Now, event: RelayEvent) {
        let (cx, calls, rooms) = (&mut self.cx, &mut self.calls, &mut self.rooms);
        match event {
            RelayEvent::Answer { sid, reply, result, .. } => {
                // The session that offered, if it is still open (a reconnect offers anew).
                if cx.presence.session(reply.session).is_none() {
                    return;
                }
                let msg = match result {
                    Ok(sdp) => ServerMessage::MediaAnswer { req: reply.req, sid, sdp },
                    Err(message) => ServerMessage::Error {
                        req: reply.req,
                        error: ErrorCode::InvalidParam,
                        reason: None,
                        message,
                    },
                };
                cx.send(reply.session, msg);
            }
            RelayEvent::Offer { sid, party, offer_id, sdp } => {
                let session = if rooms.contains(&sid) {
                    rooms.session_of(&sid, &party)
                } else {
                    calls.session_of(&sid, &party)
                };
                if let Some(session) = session {
                    cx.send(session, ServerMessage::MediaOffer { sid, offer_id, sdp });
                }
            }
            RelayEvent::Lost { sid, party } if rooms.contains(&sid) => {
                rooms.media_lost(cx, now, &sid, &party)
            }
            RelayEvent::Lost { sid, party } => calls.media_lost(cx, now, &sid, &party),
            RelayEvent::Lines { sid, party, lines } => rooms.media_lines(cx, &sid, &party, lines),
            RelayEvent::Levels { sid, levels } if rooms.contains(&sid) => rooms.levels(cx, &sid, levels),
            RelayEvent::Levels { sid, levels } => calls.levels(cx, &sid, levels),
            RelayEvent::Quality { sid, quality } if rooms.contains(&sid) => rooms.quality(cx, &sid, quality),
            RelayEvent::Quality { sid, quality } => calls.quality(cx, &sid, quality),
        }
    }
}

/// Longest avatar URL `set_self_info` takes, in bytes.
const MAX_AVATAR_URL_BYTES: usize = 512;

/// `set_self_info`: the user's nickname and avatar, for its invitees and records.
fn set_self_info(
    cx: &mut Cx,
    session: SessionId,
    req: Option<u64>,
    nickname: Option<String>,
    avatar_url: Option<String>,
) {
    let Some(party) =
        cx.presence.session(session).filter(|s| s.auth == SessionAuth::Token).map(|s| s.party.clone())
    else {
        return cx.error(session, req, ErrorCode::WrongState, "a cc_param session has no profile");
    };
    if nickname.as_ref().is_some_and(|n| n.len() > switchboard_protocol::MAX_DISPLAY_NAME_BYTES) {
        return cx.error(session, req, ErrorCode::InvalidParam, "nickname is over 128 bytes");
    }
    if avatar_url.as_ref().is_some_and(|a| a.len() > MAX_AVATAR_URL_BYTES) {
        return cx.error(session, req, ErrorCode::InvalidParam, "avatar_url is over 512 bytes");
    }
    let mut p: Profile = cx.presence.profile(&party);
    if let Some(n) = nickname {
        p.nickname = (!n.is_empty()).then_some(n);
    }
    if let Some(a) = avatar_url {
        p.avatar_url = (!a.is_empty()).then_some(a);
    }
    cx.presence.set_profile(&party, p);
    cx.send(session, ServerMessage::Done { req });
}
