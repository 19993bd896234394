//! After a stop or a crash, before the server listens: every call and room that was
//! live is closed (its record and callbacks queued, as at the last moment the server
//! was known alive), pushes for calls that no longer exist are dropped, and the
//! callbacks still pending are handed back for delivery.

use std::path::Path;

use rusqlite::OptionalExtension;
use switchboard_protocol::{DisconnectReason, DisconnectSource};

use super::{row_to_callback, CoreDb, StoreError};
use crate::ids::Sid;
use crate::records::{Batch, CallbackRow, LiveCall, LiveRoom, NewCallback};

/// What a restart found and put right.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Calls that were live when the server died, now closed with SERVER_INTERNAL_ERROR.
    pub closed_calls: Vec<Sid>,
    /// Rooms that were live, now closed (every participant out with
    /// SERVER_INTERNAL_ERROR).
    pub closed_rooms: Vec<Sid>,
    /// Pending callbacks to deliver, in queue order.
    pub pending: Vec<CallbackRow>,
    /// notify_cb requests dropped because their calls are gone.
    pub dropped_notifies: usize,
}

/// Puts the database right after a stop or crash: live calls are closed with
/// SERVER_INTERNAL_ERROR (source cloud_server) at the last moment the server was known
/// alive, their records are queued, live rooms are closed participant by participant,
/// and stale notify_cb requests are dropped. `wants_record(service_id)` /
/// `wants_gcall(service_id)` say whether the service takes on_call_evt_cb /
/// on_gcall_evt_cb.
pub fn recover(
    path: &Path,
    now_ms: u64,
    wants_record: impl Fn(&str) -> bool,
    wants_gcall: impl Fn(&str) -> bool,
) -> Result<Recovery, StoreError> {
    let mut db = CoreDb::open(path)?;
    let alive_ms: Option<i64> =
        db.conn.query_row("SELECT v FROM meta WHERE k = 'alive_ms'", [], |r| r.get(0)).optional()?;
    let end_ms = alive_ms.map_or(now_ms, |a| (a as u64).min(now_ms));
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
    let mut batch = Batch::default();
    {
        let mut stmt = db.conn.prepare("SELECT service_id, snapshot FROM live_calls")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (service_id, json) = row?;
            let live: LiveCall = serde_json::from_str(&json).map_err(corrupt)?;
            let end = end_ms.max(live.setup_ms);
            let (reason, source) = (DisconnectReason::ServerInternalError, DisconnectSource::CloudServer);
            let record = live.record(end, reason, source, None, None);
            let deliver = wants_record(&service_id);
            batch.add_record(service_id, record, deliver);
        }
    }
    let closed_calls = batch.records.iter().map(|(_, r)| r.sid.clone()).collect();
    // Rooms live at the crash end there and then, for everyone in them.
    let mut closed_rooms = Vec::new();
    {
        let mut stmt = db.conn.prepare("SELECT snapshot FROM live_rooms")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        for json in rows {
            let room: LiveRoom = serde_json::from_str(&json?).map_err(corrupt)?;
            if wants_gcall(&room.service_id) {
                let end = end_ms.max(room.setup_ms);
                let (reason, source) = (DisconnectReason::ServerInternalError, DisconnectSource::CloudServer);
                for (seq, record) in room.closing(end, reason, source) {
                    batch.callbacks.push(NewCallback::gcall(room.service_id.clone(), seq, &record));
                }
            }
            batch.rooms_gone.push(room.sid.clone());
            closed_rooms.push(room.sid);
        }
    }
    let dropped_notifies = db.conn.execute(
        "UPDATE outbox SET state = 'dropped', last_error = 'server restarted; the call is gone'
         WHERE state = 'pending' AND kind = 'notify'",
        [],
    )?;
    db.commit(&batch, now_ms)?;
    let pending = {
        let mut stmt = db.conn.prepare("SELECT * FROM outbox WHERE state = 'pending' ORDER BY id")?;
        let rows = stmt.query_map([], row_to_callback)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    Ok(Recovery { closed_calls, closed_rooms, pending, dropped_notifies })
}

#[cfg(test)]
mod tests {
    use rusqlite::params;
    use switchboard_protocol::record::NotifyRecord;

    use super::*;
    use crate::ids::Party;
    use crate::records::{CallbackKind, Entry, LiveParticipant};
    use crate::store::testing::temp_dir;

    const T: u64 = 1_700_000_000_000;

    fn connected(sid: &str) -> LiveCall {
        LiveCall {
            sid: Sid::new(sid),
            from_service_id: "svc".into(),
            from_user_id: "alice".into(),
            to_service_id: "svc".into(),
            to_user_id: "bob".into(),
            media_type: "V".into(),
            app_data: Some("x".into()),
            setup_ms: T,
            start_ms: Some(T + 2_000),
            srcip: "10.0.0.1".into(),
            dstip: "10.0.0.2".into(),
            rc_idc: "JP".into(),
            interrupted_ms: 0,
            lost_since_ms: None,
        }
    }

    fn room(sid: &str) -> LiveRoom {
        let p = |u: &str| LiveParticipant {
            party: Party::new("svc", u),
            joined_ms: T,
            ue_type: "BROWSER".into(),
            display_name: None,
            app_data: None,
        };
        LiveRoom {
            sid: Sid::new(sid),
            service_id: "svc".into(),
            room_id: "standup".into(),
            media_type: "A".into(),
            host: Party::new("svc", "ann"),
            setup_ms: T,
            callbacks: 2,
            participants: vec![p("ann"), p("ben")],
        }
    }

    /// The server dies in the middle of writing a step (the transaction never
    /// commits): what the step would have written is not there, and the restart closes
    /// what the steps before it left live, exactly once.
    #[test]
    fn a_crash_mid_batch_leaves_the_last_committed_state_and_recovery_closes_it() {
        let dir = temp_dir("recovery");
        let path = dir.join("switchboard.db");
        let mut db = CoreDb::open(&path).expect("db");
        let mut first = Batch::default();
        first.push(Entry::LiveCall(connected("call-a")));
        first.push(Entry::LiveRoom(room("room-r")));
        let notify = NotifyRecord {
            sid: Sid::new("call-b"),
            from_service_id: "svc".into(),
            from_user_id: "carol".into(),
            to_service_id: "svc".into(),
            to_user_id: "dave".into(),
            media_type: "A".into(),
            param: "p".into(),
            app_svr_data: None,
        };
        first.push(Entry::Notify { service_id: "svc".into(), record: notify, deadline_ms: T + 5_000 });
        db.commit(&first, T).expect("first step");
        db.conn
            .execute(
                "INSERT OR REPLACE INTO meta (k, v) VALUES ('alive_ms', ?1)",
                params![(T + 62_000) as i64],
            )
            .expect("alive");
        // The next step (call-a's end and record) is cut by the crash mid-transaction.
        {
            let txn = db.conn.transaction().expect("txn");
            txn.execute("DELETE FROM live_calls WHERE sid = 'call-a'", []).expect("half a step");
            txn.execute(
                "INSERT INTO outbox (cb_id, service_id, kind, key, query, state, attempts, created_ms, next_attempt_ms)
                 VALUES ('call-call-a', 'svc', 'call', 'call-a', 'q', 'pending', 0, 0, 0)",
                [],
            )
            .expect("half a step");
            // Dropped without commit: what a process killed here leaves.
        }
        drop(db);

        let r = recover(&path, T + 90_000, |_| true, |_| true).expect("recovered");
        assert_eq!(r.closed_calls, [Sid::new("call-a")]);
        assert_eq!(r.closed_rooms, [Sid::new("room-r")]);
        assert_eq!(r.dropped_notifies, 1, "the push of a call that is gone");
        let kinds: Vec<(CallbackKind, String)> =
            r.pending.iter().map(|c| (c.kind, c.cb_id.clone())).collect();
        assert_eq!(
            kinds,
            [
                (CallbackKind::Call, "call-call-a".to_string()),
                (CallbackKind::Gcall, "gcall-room-r-3".to_string()),
                (CallbackKind::Gcall, "gcall-room-r-4".to_string()),
            ],
            "one record per call (none from the cut step), the room's end numbered after its last callback"
        );
        let record = &r.pending[0].query;
        assert!(record.contains("disconnect_reason=1305") && record.contains("releaser_type=4"), "{record}");
        assert!(
            record.contains(&format!("end_time={}", (T + 62_000) / 1000)),
            "ended when last known alive: {record}"
        );
        assert!(r.pending[2].query.contains("sc=E"));
        // Nothing live remains: a second restart closes nothing and re-queues the same.
        let again = recover(&path, T + 95_000, |_| true, |_| true).expect("again");
        assert!(again.closed_calls.is_empty() && again.closed_rooms.is_empty());
        assert_eq!(again.pending.len(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
