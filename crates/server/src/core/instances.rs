//! One call-engine instance per user, unless multi-device: an engine session that
//! signs in without `multi_device` signs the user's other engine instances out
//! (`onKickedOffline`; what they were in ends with ANOTHER_INSTANCE_TRY_TO_JOIN), as
//! TUICallEngine does with `enableMultiDeviceAbility(false)`, its default. A new session
//! of the same `instance` is that instance reconnecting, not a second login.

use switchboard_protocol::{EngineEvent, ServerMessage};

use super::Core;
use crate::clock::Now;
use crate::ids::{Party, SessionId};

impl Core {
    /// `session` of `party` signed in as `instance` without multi-device.
    pub(super) fn sign_out_elsewhere(
        &mut self,
        now: Now,
        session: SessionId,
        party: &Party,
        instance: Option<&str>,
    ) {
        let cx = &self.cx;
        let others: Vec<SessionId> = cx
            .engine_devices(party)
            .into_iter()
            .filter(|s| *s != session)
            .filter(|s| {
                let theirs = cx.presence.session(*s).and_then(|o| o.client.instance.as_deref());
                instance.is_none() || theirs != instance
            })
            .collect();
        for other in others {
            let cx = &mut self.cx;
            cx.presence.kick(other);
            cx.send(other, ServerMessage::CallEvent { call_id: None, event: EngineEvent::KickedOffline {} });
            let calls = cx.presence.session(other).map(|s| s.calls.clone()).unwrap_or_default();
            self.rooms.session_signed_out(&mut self.cx, now, other);
            self.calls.session_signed_out(&mut self.cx, now, other, calls);
            tracing::info!(session = %other, "engine instance signed out by a later login of its user");
        }
    }
}
