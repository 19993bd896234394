//! The record of a group call, written once when it ends: every invitee's outcome and
//! times, for on_group_call_evt_cb and `GET /v1/calls/{id}`.

use switchboard_protocol::engine::CallEndReason;
use switchboard_protocol::record::{GroupCallMember, GroupCallRecord, InviteResult};

use super::{Engine, GroupCall, State};
use crate::clock::Now;
use crate::core::Cx;
use crate::ids::Sid;
use crate::records::Entry;

impl Engine {
    /// Writes the ended call's record down (and queues its callback if the service
    /// takes one); its live snapshot goes.
    pub(super) fn record(&mut self, cx: &mut Cx, now: Now, call: &GroupCall, reason: CallEndReason) {
        self.changed.remove(&call.id);
        let record = as_of(cx, now, call, reason);
        let deliver = cx.services.get(&call.service_id).is_some_and(|r| r.has_group_call_cb);
        cx.journal(Entry::GroupCallEnded { service_id: call.service_id.clone(), record, deliver });
    }

    /// A live call of `service_id` as it stands (REST): its record so far, with
    /// `end_ms` and `end_reason` 0, and whether it began.
    pub fn live(&self, cx: &Cx, now: Now, service_id: &str, id: &Sid) -> Option<(GroupCallRecord, bool)> {
        let call = self.calls.get(id).filter(|c| c.service_id == service_id)?;
        let mut record = as_of(cx, now, call, CallEndReason::Unknown);
        (record.end_ms, record.end_reason) = (0, 0);
        Some((record, call.begin_ms.is_some()))
    }

    /// Journals a snapshot of every live call whose invitees changed this step: the
    /// record as if the call ended now, which a restart after a crash completes and
    /// delivers ([`crate::store::recover`]).
    pub fn snapshot_changed(&mut self, cx: &mut Cx, now: Now) {
        for id in std::mem::take(&mut self.changed) {
            if let Some(call) = self.calls.get(&id) {
                let record = as_of(cx, now, call, CallEndReason::EndByServer);
                cx.journal(Entry::LiveGroupCall { service_id: call.service_id.clone(), record });
            }
        }
    }
}

/// The call's record as it stands at `now`, ended with `reason`.
fn as_of(cx: &Cx, now: Now, call: &GroupCall, reason: CallEndReason) -> GroupCallRecord {
    let members = call
        .members
        .iter()
        .map(|m| GroupCallMember {
            user_id: m.user.clone(),
            role: if m.caller { "caller" } else { "callee" }.into(),
            inviter: m.inviter.clone(),
            result: match m.state {
                _ if m.joined => InviteResult::Joined,
                State::Rejected => InviteResult::Rejected,
                State::NoResponse => InviteResult::NoResponse,
                State::LineBusy => InviteResult::LineBusy,
                State::Inviting => InviteResult::Inviting,
                _ => InviteResult::Cancelled,
            },
            invited_ms: m.invited_ms,
            answered_ms: m.answered_ms,
            joined_ms: m.joined_ms,
            // Still in the call (a live snapshot): not left yet, whatever an
            // earlier stretch said.
            left_ms: if m.state == State::InCall { 0 } else { m.left_ms },
            in_call_ms: m.time_in_call(now).as_millis() as u64,
            nickname: cx.presence.profile(&call.party(&m.user)).nickname,
        })
        .collect();
    GroupCallRecord {
        call_id: call.id.clone(),
        service_id: call.service_id.clone(),
        caller_id: call.caller.clone(),
        media_type: call.media.letter().into(),
        room_id: call.room_number,
        group_id: call.group_id.clone(),
        user_data: call.user_data.clone(),
        setup_ms: call.setup_ms,
        begin_ms: call.begin_ms.unwrap_or(0),
        end_ms: now.wall_ms,
        end_reason: reason.into(),
        members,
    }
}
