//! Calls that change nodes. Taken over from a node that died (or handed over by one that
//! drains), another node's core runs them on from their last snapshot. Both parties are
//! without a session there, so each gets the reconnect grace to `resume`, and its
//! `resumed` tells it to start a new media connection: the relay there never had one of
//! its. The node that hands a call over lets go of it without a word ([`Calls::release`]).

use std::time::Duration;

use switchboard_protocol::{DisconnectReason, DisconnectSource, MediaType};

use super::{Call, CallTimer, Calls, Phase};
use crate::clock::{Millis, Now};
use crate::core::Cx;
use crate::ids::{Party, SessionId, Sid};
use crate::records::LiveCall;

impl Calls {
    /// Runs `live` (a dead node's call, claimed by this node) on here. `since_ms`: when
    /// that node was last known alive; the time since is not billed. A call that was
    /// still ringing ends (SERVER_INTERNAL_ERROR, cloud server): its ringing devices
    /// were the dead node's to reach, and nobody here can ring them on.
    pub fn adopt(&mut self, cx: &mut Cx, now: Now, live: LiveCall, since_ms: Millis) {
        if self.calls.contains_key(&live.sid) {
            return;
        }
        let caller = Party::new(live.from_service_id.clone(), live.from_user_id.clone());
        let callee = Party::new(live.to_service_id.clone(), live.to_user_id.clone());
        let rules = cx.services.get(&caller.service_id);
        let (ring_ms, max_call_ms) = rules.map_or((0, 0), |r| (r.ring_timeout_ms, r.max_call_ms));
        let phase = match live.start_ms {
            Some(start_ms) => Phase::Connected { start_ms, start: now.instant_of(start_ms) },
            None => Phase::Ringing,
        };
        let grace = Cx::after(now, cx.settings.reconnect_grace_ms);
        let lost_since = now.instant_of(live.lost_since_ms.unwrap_or(since_ms));
        let max_deadline = match phase {
            Phase::Connected { start, .. } if max_call_ms > 0 => {
                Some((start + Duration::from_millis(max_call_ms)).max(now.at))
            }
            _ => None,
        };
        let sid = live.sid.clone();
        let call = Call {
            sid: sid.clone(),
            caller,
            callee,
            media: if live.media_type == "V" { MediaType::Video } else { MediaType::Audio },
            app_data: live.app_data,
            setup_ms: live.setup_ms,
            phase,
            caller_session: None,
            caller_ip: live.srcip,
            devices: Vec::new(),
            callee_device: live.callee_device,
            callee_ip: live.dstip,
            push_failed: false,
            cc_exp: (live.setup_ms + ring_ms) / 1000 + 60,
            ring_deadline: None,
            max_deadline,
            caller_lost: Some(grace),
            callee_lost: Some(grace),
            interrupted: Duration::from_millis(live.interrupted_ms),
            lost_since: Some(lost_since),
            rc_idc: live.rc_idc,
            new_media: [true, true],
        };
        let ringing = call.phase == Phase::Ringing;
        // Both users are busy here now, as they were there.
        cx.presence.add_call(&call.caller, &sid);
        cx.presence.add_call(&call.callee, &sid);
        self.calls.insert(sid.clone(), call);
        if ringing {
            let (reason, source) = (DisconnectReason::ServerInternalError, DisconnectSource::CloudServer);
            return self.finish(cx, now, &sid, reason, source, None, None);
        }
        Calls::set_timer(cx, grace, CallTimer::CallerLost, &sid);
        Calls::set_timer(cx, grace, CallTimer::CalleeLost, &sid);
        if let Some(at) = max_deadline {
            Calls::set_timer(cx, at, CallTimer::MaxTime, &sid);
        }
        self.changed(cx, now, &sid);
    }

    /// The connected calls, as snapshots: what a draining node hands over (a ringing
    /// one stays, and soon ends or connects).
    pub fn movable(&self, now: Now) -> Vec<LiveCall> {
        self.calls.values().filter(|c| c.connected()).map(|c| c.snapshot(now)).collect()
    }

    /// Lets go of call `sid`, handed over to another node: no record, nothing said, its
    /// relay connections left to go on until their clients move. The sessions in it.
    pub fn release(&mut self, cx: &mut Cx, sid: &Sid) -> Vec<SessionId> {
        let Some(call) = self.calls.remove(sid) else { return Vec::new() };
        let sessions: Vec<SessionId> = call.sessions().collect();
        for s in &sessions {
            cx.presence.unlink(*s, sid);
        }
        cx.presence.call_over(&call.caller, sid);
        cx.presence.call_over(&call.callee, sid);
        sessions
    }
}
