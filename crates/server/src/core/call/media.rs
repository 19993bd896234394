//! Media signalling of a connected call: a party's offers and answers go to the relay
//! under the party's key, the relay's offers and answers come back to the party's
//! session; `add_media` and `media_state` (mute, camera) likewise; media that stops
//! ends the call.

use switchboard_protocol::{DisconnectReason, ErrorCode, MediaType, ServerMessage};

use super::{Call, Calls, Side};
use crate::clock::Now;
use crate::core::room::MediaState;
use crate::core::Cx;
use crate::ids::{SessionId, Sid};
use crate::media_link::{MediaCmd, PartyKey, Reply};

impl Calls {
    /// The side `session` plays in the connected call `sid`, if any.
    fn connected_side(&self, session: SessionId, sid: &Sid) -> Result<(Side, &Call), ErrorCode> {
        let call = self.calls.get(sid).ok_or(ErrorCode::NotFound)?;
        let side = if call.caller_session == Some(session) {
            Side::Caller
        } else if call.devices.iter().any(|d| d.session == session) {
            Side::Callee
        } else {
            return Err(ErrorCode::NotFound);
        };
        if call.connected() {
            Ok((side, call))
        } else {
            Err(ErrorCode::WrongState)
        }
    }

    /// A party's SDP offer: to the relay, which answers the session.
    pub fn media_offer(&mut self, cx: &mut Cx, session: SessionId, req: Option<u64>, sid: &Sid, sdp: String) {
        match self.connected_side(session, sid) {
            Ok((side, _)) => {
                if let Some(call) = self.calls.get_mut(sid) {
                    call.new_media[side as usize] = false;
                }
                let reply = Reply { session, req };
                cx.media(MediaCmd::Offer { sid: sid.clone(), party: side.party(), sdp, reply })
            }
            Err(code) => cx.error(session, req, code, "media starts once this session's call is connected"),
        }
    }

    /// A party's answer to the relay's offer.
    pub fn media_answer(&mut self, cx: &mut Cx, session: SessionId, sid: &Sid, offer_id: u64, sdp: String) {
        match self.connected_side(session, sid) {
            Ok((side, _)) => {
                cx.media(MediaCmd::Answer { sid: sid.clone(), party: side.party(), offer_id, sdp })
            }
            Err(code) => cx.error(session, None, code, "media answers need a connected call"),
        }
    }

    /// A party asks for a line to send `kind` on.
    pub fn add_media(&mut self, cx: &mut Cx, session: SessionId, sid: &Sid, kind: &str) {
        let Some(kind) = MediaType::parse(kind) else {
            return cx.error(session, None, ErrorCode::InvalidParam, "kind must be audio or video");
        };
        match self.connected_side(session, sid) {
            Ok((side, _)) => cx.media(MediaCmd::AddLine { sid: sid.clone(), party: side.party(), kind }),
            Err(code) => cx.error(session, None, code, "media needs a connected call"),
        }
    }

    /// A party's microphone or camera changed: the peer is told.
    pub fn media_state(&mut self, cx: &mut Cx, session: SessionId, sid: &Sid, state: MediaState) {
        let MediaState { mic_muted, video_enabled, video_paused } = state;
        let peer = match self.connected_side(session, sid) {
            Ok((Side::Caller, call)) => call.devices.first().map(|d| d.session),
            Ok((Side::Callee, call)) => call.caller_session,
            Err(code) => return cx.error(session, None, code, "media state needs a connected call"),
        };
        if let Some(peer) = peer {
            let msg = ServerMessage::PeerMediaState {
                sid: sid.clone(),
                user_id: None,
                mic_muted,
                video_enabled,
                video_paused,
            };
            cx.send(peer, msg);
        }
    }

    /// A party's media stopped past the media timeout: NETWORK_UNSTABLE, by that side.
    pub fn media_lost(&mut self, cx: &mut Cx, now: Now, sid: &Sid, party: &PartyKey) {
        let Some(side) = Side::of_party(party) else { return };
        if self.calls.get(sid).is_some_and(|c| c.connected()) {
            self.finish(cx, now, sid, DisconnectReason::NetworkUnstable, side.source(), None, None);
        }
    }
}
