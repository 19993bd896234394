//! 1-to-1 calls: ringing ([`ringing`]), answering ([`answer`]), resuming after a lost
//! connection ([`resume`]), media signalling ([`media`]) and ending with a record
//! ([`end`]). [`Calls`] owns every live call; what they share with rooms (presence,
//! timers, the output queue) is the core's [`Cx`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use switchboard_protocol::{DisconnectReason, DisconnectSource, MediaType};

use super::{Cx, Timer};
use crate::clock::{Millis, Now};
use crate::ids::{Party, SessionId, Sid};
use crate::media_link::PartyKey;
use crate::records::{Entry, LiveCall};

mod adopt;
mod answer;
mod end;
mod engine;
mod media;
mod resume;
mod ringing;

pub(crate) use end::client_end;
#[cfg(test)]
pub(crate) use engine::room_number;
pub use ringing::MakeCall;

/// Longest `user_rel_code` accepted, in bytes.
pub const MAX_USER_REL_CODE_BYTES: usize = 128;

/// What a call's timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CallTimer {
    /// The ring time ran out.
    Ring,
    /// The maximum call time ran out.
    MaxTime,
    /// The caller's reconnect grace ran out.
    CallerLost,
    /// The callee's reconnect grace ran out.
    CalleeLost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    /// Answered at `start_ms` on the wall clock (recorded), `start` on the monotonic one
    /// (billing).
    Connected {
        start_ms: Millis,
        start: Instant,
    },
}

#[derive(Debug, Clone)]
struct Device {
    session: SessionId,
    verified: bool,
    ip: String,
}

#[derive(Debug)]
struct Call {
    sid: Sid,
    caller: Party,
    callee: Party,
    media: MediaType,
    app_data: Option<String>,
    setup_ms: Millis,
    phase: Phase,
    caller_session: Option<SessionId>,
    caller_ip: String,
    /// Callee devices: every ringing one while ringing; the answering one after.
    devices: Vec<Device>,
    /// The answering device, when it answered from a cc_param session: the `device`
    /// its `resume_param` names.
    callee_device: Option<u64>,
    callee_ip: String,
    push_failed: bool,
    /// When its `cc_param` expires (epoch seconds): a minute after its ring time.
    cc_exp: u64,
    ring_deadline: Option<Instant>,
    max_deadline: Option<Instant>,
    caller_lost: Option<Instant>,
    callee_lost: Option<Instant>,
    /// Connected time during which a party had no session (not billed).
    interrupted: Duration,
    /// Since when a party of the connected call has been without a session.
    lost_since: Option<Instant>,
    rc_idc: String,
    /// The caller's and the callee's next `resumed` tells them to start a new media
    /// connection (the call was taken over from a node that died).
    new_media: [bool; 2],
}

impl Call {
    fn snapshot(&self, now: Now) -> LiveCall {
        LiveCall {
            sid: self.sid.clone(),
            from_service_id: self.caller.service_id.clone(),
            from_user_id: self.caller.user_id.clone(),
            to_service_id: self.callee.service_id.clone(),
            to_user_id: self.callee.user_id.clone(),
            media_type: self.media.letter().into(),
            app_data: self.app_data.clone(),
            setup_ms: self.setup_ms,
            start_ms: match self.phase {
                Phase::Connected { start_ms, .. } => Some(start_ms),
                Phase::Ringing => None,
            },
            srcip: self.caller_ip.clone(),
            dstip: self.callee_ip.clone(),
            rc_idc: self.rc_idc.clone(),
            interrupted_ms: self.interrupted.as_millis() as Millis,
            lost_since_ms: self.lost_since.map(|t| now.wall_of(t)),
            callee_device: self.callee_device,
        }
    }

    /// Connected time not counting the stretches a party was gone, up to `now`.
    fn billable_ms(&self, now: Now) -> Option<Millis> {
        let Phase::Connected { start, .. } = self.phase else { return None };
        let lost_now = self.lost_since.map_or(Duration::ZERO, |t| now.at.saturating_duration_since(t));
        let billable =
            now.at.saturating_duration_since(start).saturating_sub(self.interrupted).saturating_sub(lost_now);
        Some(billable.as_millis() as Millis)
    }

    fn connected(&self) -> bool {
        matches!(self.phase, Phase::Connected { .. })
    }

    fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.caller_session.into_iter().chain(self.devices.iter().map(|d| d.session))
    }

    /// The session the relay's `party` is, in a connected call.
    fn session_of(&self, party: &PartyKey) -> Option<SessionId> {
        match (self.phase, party) {
            (Phase::Ringing, _) | (_, PartyKey::Member(_)) => None,
            (_, PartyKey::Caller) => self.caller_session,
            (_, PartyKey::Callee) => self.devices.first().map(|d| d.session),
        }
    }
}

/// One end of a 1-to-1 call. Not a disconnect source (those include the server and the
/// app server), though each side is one when it ends the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Who called.
    Caller,
    /// Who was called.
    Callee,
}

impl Side {
    /// The disconnect source of this side ending the call.
    pub fn source(self) -> DisconnectSource {
        match self {
            Side::Caller => DisconnectSource::Caller,
            Side::Callee => DisconnectSource::Callee,
        }
    }

    /// The side a disconnect source is, if it is one.
    pub fn of_source(source: DisconnectSource) -> Option<Side> {
        match source {
            DisconnectSource::Caller => Some(Side::Caller),
            DisconnectSource::Callee => Some(Side::Callee),
            _ => None,
        }
    }

    /// The relay's key for this side's media.
    pub fn party(self) -> PartyKey {
        match self {
            Side::Caller => PartyKey::Caller,
            Side::Callee => PartyKey::Callee,
        }
    }

    /// The side the relay's `party` is, if a call's.
    pub fn of_party(party: &PartyKey) -> Option<Side> {
        match party {
            PartyKey::Caller => Some(Side::Caller),
            PartyKey::Callee => Some(Side::Callee),
            PartyKey::Member(_) => None,
        }
    }
}

/// Every live 1-to-1 call. See the module docs.
#[derive(Default)]
pub(crate) struct Calls {
    calls: HashMap<Sid, Call>,
}

impl Calls {
    /// Live calls, and of them connected.
    pub fn counts(&self) -> (usize, usize) {
        (self.calls.len(), self.calls.values().filter(|c| c.connected()).count())
    }

    /// The live call `sid` of this service (the caller's), if any.
    pub fn live_call(&self, now: Now, service_id: &str, sid: &Sid) -> Option<LiveCall> {
        self.calls.get(sid).filter(|c| c.caller.service_id == service_id).map(|c| c.snapshot(now))
    }

    /// The session of the relay's `party` in call `sid`.
    pub fn session_of(&self, sid: &Sid, party: &PartyKey) -> Option<SessionId> {
        self.calls.get(sid).and_then(|c| c.session_of(party))
    }

    /// A call's timer fired; `at` is when it was set for.
    pub fn timer(&mut self, cx: &mut Cx, now: Now, at: Instant, sid: &Sid, kind: CallTimer) {
        let Some(call) = self.calls.get(sid) else { return };
        let ended = match kind {
            CallTimer::Ring if call.ring_deadline == Some(at) && call.phase == Phase::Ringing => {
                Some((DisconnectReason::NoAnswer, DisconnectSource::CloudServer))
            }
            CallTimer::MaxTime if call.max_deadline == Some(at) => {
                Some((DisconnectReason::MaxCallTimeExceeded, DisconnectSource::CloudServer))
            }
            CallTimer::CallerLost if call.caller_lost == Some(at) => {
                Some((DisconnectReason::NetworkUnstable, DisconnectSource::Caller))
            }
            CallTimer::CalleeLost if call.callee_lost == Some(at) => {
                Some((DisconnectReason::NetworkUnstable, DisconnectSource::Callee))
            }
            _ => None,
        };
        if let Some((reason, source)) = ended {
            self.finish(cx, now, sid, reason, source, None, None);
        }
    }

    /// Writes the call's snapshot down (it changed).
    fn changed(&self, cx: &mut Cx, now: Now, sid: &Sid) {
        if let Some(c) = self.calls.get(sid) {
            cx.journal(Entry::LiveCall(c.snapshot(now)));
        }
    }

    fn party_calls<'a>(&'a self, cx: &'a Cx, party: &Party) -> impl Iterator<Item = &'a Call> + 'a {
        cx.presence.calls_of(party).iter().filter_map(|sid| self.calls.get(sid))
    }

    fn set_timer(cx: &mut Cx, at: Instant, kind: CallTimer, sid: &Sid) {
        cx.timer(at, Timer::Call(sid.clone(), kind));
    }
}
