//! Group calls taken over from a node that died: run on here from their last snapshot
//! (the record as it stood), with their rooms ([`crate::core::room`]'s adoption). Who was
//! in the call is in its room, within the reconnect grace; an invitation that rang
//! rings on (its devices were rung already) for a full invitation time.

use std::time::Duration;

use switchboard_protocol::engine::{CallEndReason, DEFAULT_INVITE_TIMEOUT_SECS};
use switchboard_protocol::record::{GroupCallRecord, InviteResult};
use switchboard_protocol::MediaType;

use super::{Engine, GroupCall, Member, State};
use crate::clock::{Millis, Now};
use crate::core::{Cx, Timer};

impl Engine {
    /// Runs the group call `record` (a dead node's, claimed by this node with its room)
    /// on here.
    pub fn adopt(&mut self, cx: &mut Cx, now: Now, record: GroupCallRecord) {
        let id = record.call_id.clone();
        if self.calls.contains_key(&id) {
            return;
        }
        let at_snapshot = now.instant_of(record.end_ms);
        let timeout_ms = Millis::from(DEFAULT_INVITE_TIMEOUT_SECS) * 1000;
        let members: Vec<Member> = record
            .members
            .iter()
            .map(|m| {
                let state = match m.result {
                    InviteResult::Joined if m.left_ms == 0 => State::InCall,
                    InviteResult::Joined => State::Left,
                    InviteResult::Rejected => State::Rejected,
                    InviteResult::NoResponse => State::NoResponse,
                    InviteResult::LineBusy => State::LineBusy,
                    InviteResult::Cancelled => State::Cancelled,
                    InviteResult::Inviting => State::Inviting,
                };
                Member {
                    user: m.user_id.clone(),
                    caller: m.role == "caller",
                    inviter: m.inviter.clone(),
                    state,
                    joined: m.result == InviteResult::Joined,
                    invited_ms: m.invited_ms,
                    answered_ms: m.answered_ms,
                    joined_ms: m.joined_ms,
                    left_ms: m.left_ms,
                    in_call: Duration::from_millis(m.in_call_ms),
                    in_since: (state == State::InCall).then_some(at_snapshot),
                    deadline: (state == State::Inviting).then(|| Cx::after(now, timeout_ms)),
                }
            })
            .collect();
        let call = GroupCall {
            id: id.clone(),
            service_id: record.service_id,
            caller: record.caller_id,
            media: if record.media_type == "V" { MediaType::Video } else { MediaType::Audio },
            room_number: record.room_id,
            group_id: record.group_id,
            user_data: record.user_data,
            timeout_ms,
            setup_ms: record.setup_ms,
            begin_ms: (record.begin_ms > 0).then_some(record.begin_ms),
            members,
            last_failure: CallEndReason::NoResponse,
            opening: false,
        };
        for m in call.members.iter().filter(|m| m.state == State::Inviting) {
            cx.presence.add_invite(&call.party(&m.user), &id);
            if let Some(at) = m.deadline {
                cx.timer(at, Timer::Invite(id.clone(), m.user.clone()));
            }
        }
        self.calls.insert(id.clone(), call);
        self.changed.insert(id);
    }
}
