//! A room's on_gcall_evt_cb records: one per change, numbered in order per room, each
//! followed by the room's snapshot (so that after a crash its end is told with the
//! numbers that come next).

use switchboard_protocol::record::GcallRecord;
use switchboard_protocol::{DisconnectReason, DisconnectSource, RelCode};

use super::{Participant, Rooms};
use crate::clock::Now;
use crate::core::Cx;
use crate::ids::{Party, Sid};
use crate::records::Entry;

/// What happened to a participant, for the callback's `msc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    Connected,
    Disconnected,
    TimedOut,
    Media,
}

impl Change {
    fn letter(self) -> char {
        match self {
            Change::Connected => 'C',
            Change::Disconnected => 'D',
            Change::TimedOut => 'T',
            Change::Media => 'M',
        }
    }
}

/// A participant that just left, for its callback.
pub(super) struct Gone {
    pub p: Participant,
    pub reason: DisconnectReason,
    pub source: DisconnectSource,
}

impl Rooms {
    /// Queues the on_gcall_evt_cb of a change of `party` in room `sid` (with `sc` `S`,
    /// `C` or `E`), when the service takes it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn callback(
        &mut self,
        cx: &mut Cx,
        now: Now,
        sid: &Sid,
        party: &Party,
        sc: char,
        change: Change,
        gone: Option<&Gone>,
    ) {
        let Some(room) = self.rooms.get_mut(sid) else { return };
        if !cx.services.get(&room.service_id).is_some_and(|r| r.has_gcall_cb) {
            return;
        }
        let p = match gone {
            Some(g) => &g.p,
            None => match room.participants.iter().find(|p| p.party == *party) {
                Some(p) => p,
                None => return,
            },
        };
        let (rel, reason, source) = match gone {
            Some(g) => (g.reason.rel_code(), g.reason.code(), g.source.code()),
            None => (RelCode { code: 0, name: "" }, 0, 0),
        };
        room.callbacks += 1;
        let record = GcallRecord {
            sid: sid.clone(),
            svc_id: room.service_id.clone(),
            id: room.room_id.to_string(),
            user_svc_id: p.party.service_id.clone(),
            user_id: p.party.user_id.clone(),
            host_svc_id: room.host.service_id.clone(),
            host_id: room.host.user_id.clone(),
            sc,
            setup_time: room.setup_ms / 1000,
            start_time: p.joined_ms / 1000,
            end_time: if gone.is_some() { now.wall_ms / 1000 } else { 0 },
            online: room.participants.len() as u32,
            media_type: room.media.letter().into(),
            msc: change.letter(),
            ts: now.wall_ms,
            rel_code: rel.code,
            rel_code_str: rel.name.into(),
            ue_type: p.ue_type.clone(),
            display_name: p.display_name.clone(),
            disconnect_reason: reason,
            releaser_type: u16::from(source),
            app_svr_data: p.app_data.clone(),
        };
        cx.journal(Entry::Gcall { service_id: room.service_id.clone(), seq: room.callbacks, record });
        // The snapshot follows every callback: after a crash, the room's end is told with
        // the numbers that come next. A room that just ended has none.
        if sc == 'E' {
            cx.journal(Entry::RoomGone(sid.clone()));
        } else {
            cx.journal(Entry::LiveRoom(room.snapshot()));
        }
    }
}
