//! After a stop or a crash, before the server listens: every call and room that was
//! live is closed (its record and callbacks queued, as at the last moment the server
//! was known alive), pushes for calls that no longer exist are dropped, and the
//! callbacks still pending are handed back for delivery.

use switchboard_protocol::engine::CallEndReason;
use switchboard_protocol::record::{GroupCallRecord, InviteResult};
use switchboard_protocol::{DisconnectReason, DisconnectSource};

use super::db::{vals, Conn, Database};
use super::journal::write_steps;
use super::{alive_key, callback_columns, row_to_callback, CoreDb, StoreError};
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
    /// Group calls that were live, now recorded (ended by the server).
    pub closed_group_calls: Vec<Sid>,
    /// Pending callbacks to deliver, in queue order.
    pub pending: Vec<CallbackRow>,
    /// notify_cb requests dropped because their calls are gone.
    pub dropped_notifies: usize,
}

/// Puts the database right after a stop or crash: live calls are closed with
/// SERVER_INTERNAL_ERROR (source cloud_server) at the last moment the server was known
/// alive, their records are queued, live rooms are closed participant by participant,
/// live group calls get their records (END_BY_SERVER, each member in the call until
/// then), and stale notify_cb requests are dropped. `wants.record(service_id)`,
/// `wants.gcall(service_id)` and `wants.group_call(service_id)` say whether the service
/// takes on_call_evt_cb, on_gcall_evt_cb and on_group_call_evt_cb.
pub fn recover(database: &Database, now_ms: u64, wants: &dyn Wants) -> Result<Recovery, StoreError> {
    let mut db = CoreDb::open(database)?;
    let node = database.node.as_str();
    let end_ms = last_alive(&mut db, node)?.map_or(now_ms, |a| a.min(now_ms));
    // Alive again before reading what it left: a node taking its calls over meanwhile
    // (it holds this row while it claims) either finished, and they are not this node's
    // any more, or sees it alive, and leaves them.
    db.conn.exec(
        "INSERT INTO meta (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        vals![alive_key(node), now_ms],
    )?;
    let live = LiveRows {
        calls: pairs(
            db.conn.query("SELECT service_id, snapshot FROM live_calls WHERE node = $1", vals![node])?,
        )?,
        rooms: pairs(
            db.conn.query("SELECT service_id, snapshot FROM live_rooms WHERE node = $1", vals![node])?,
        )?,
        groups: pairs(
            db.conn
                .query("SELECT service_id, snapshot FROM live_group_calls WHERE node = $1", vals![node])?,
        )?,
    };
    let dropped_notifies = db.conn.exec(
        "UPDATE outbox SET state = 'dropped', last_error = 'server restarted; the call is gone'
         WHERE state = 'pending' AND kind = 'notify' AND lease_node = $1",
        vals![node],
    )? as usize;
    let (closed, _) = close(&mut db, live, end_ms, now_ms, wants)?;
    // This node's own (and, one SQLite file being one node, those of an older version),
    // held again before another node's takeover gets to them.
    db.conn.exec(
        "UPDATE outbox SET lease_until_ms = $2 WHERE lease_node = $1 AND state = 'pending'",
        vals![node, now_ms.saturating_add(u64::try_from(database.lease.as_millis()).unwrap_or(u64::MAX))],
    )?;
    let pending = db
        .conn
        .query(
            concat!(
                "SELECT ",
                callback_columns!(),
                " FROM outbox WHERE state = 'pending' AND lease_node = $1 ORDER BY id"
            ),
            vals![node],
        )?
        .iter()
        .map(row_to_callback)
        .collect::<Result<Vec<_>, _>>()?;
    // Alive again: no other node takes this one for silent while it starts.
    db.conn.exec(
        "INSERT INTO meta (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        vals![alive_key(node), now_ms],
    )?;
    Ok(Recovery { pending, dropped_notifies, ..closed })
}

/// Closes, as [`recover`] closes its own, what the nodes silent since before
/// `silent_before_ms` (epoch ms; they died, or lost the database for that long) left
/// live: for each such node, its calls, rooms and group calls are made this node's and
/// closed at the moment it was last known alive, in one transaction that checks the
/// silence again (a node that speaks up meanwhile keeps what it has; two nodes sweeping
/// at once close each once). Returns what was closed and the callbacks queued for it,
/// this node's to deliver.
pub fn close_silent_nodes(
    db: &mut CoreDb,
    silent_before_ms: u64,
    now_ms: u64,
    wants: &dyn Wants,
) -> Result<(Recovery, Vec<CallbackRow>), StoreError> {
    let me = db.node.clone();
    let lease_until = now_ms.saturating_add(db.lease_ms);
    let silent = db.conn.query(
        "SELECT k, v FROM meta WHERE k LIKE 'alive_ms:%' AND v < $1 AND k <> $2",
        vals![silent_before_ms, alive_key(&me)],
    )?;
    let mut all = (Recovery::default(), Vec::new());
    for row in silent {
        let key = row.text(0)?;
        let Some(node) = key.strip_prefix("alive_ms:").map(str::to_owned) else { continue };
        let end_ms = (row.int(1)? as u64).min(now_ms);
        let done = db.conn.transaction(|c| {
            let mut claim = |sql: &'static str| -> Result<Vec<(String, String)>, StoreError> {
                pairs(c.query(sql, vals![&node, &me, &key, silent_before_ms])?)
            };
            let live = LiveRows {
                calls: claim(
                    "UPDATE live_calls SET node = $2 WHERE node = $1
                       AND EXISTS (SELECT 1 FROM meta WHERE k = $3 AND v < $4) RETURNING service_id, snapshot",
                )?,
                rooms: claim(
                    "UPDATE live_rooms SET node = $2 WHERE node = $1
                       AND EXISTS (SELECT 1 FROM meta WHERE k = $3 AND v < $4) RETURNING service_id, snapshot",
                )?,
                groups: claim(
                    "UPDATE live_group_calls SET node = $2 WHERE node = $1
                       AND EXISTS (SELECT 1 FROM meta WHERE k = $3 AND v < $4) RETURNING service_id, snapshot",
                )?,
            };
            if live.calls.is_empty() && live.rooms.is_empty() && live.groups.is_empty() {
                return Ok(None);
            }
            let (closed, batch) = closing(live, end_ms, wants)?;
            let rows = write_steps(c, &me, lease_until, std::iter::once(&batch), now_ms)?;
            Ok(Some((closed, rows)))
        })?;
        let Some((closed, rows)) = done else { continue };
        tracing::warn!(
            node,
            calls = closed.closed_calls.len(),
            rooms = closed.closed_rooms.len(),
            group_calls = closed.closed_group_calls.len(),
            "closed what a silent node left live"
        );
        all.0.closed_calls.extend(closed.closed_calls);
        all.0.closed_rooms.extend(closed.closed_rooms);
        all.0.closed_group_calls.extend(closed.closed_group_calls);
        all.1.extend(rows);
    }
    Ok(all)
}

/// Runs calls and rooms this node takes over from a node that died on here, inside the
/// transaction that makes them its own (false: they are not taken).
pub type AdoptClaimed = Box<dyn FnOnce(&Claimed) -> bool + Send>;

/// Runs the calls and rooms (by sid) a draining node handed over on here, inside the
/// transaction that makes them this node's (false: they are not taken).
pub type AdoptHanded = Box<dyn FnOnce(&[String]) -> bool + Send>;

/// What this node took over from a node that died: its calls and rooms, to run on here.
#[derive(Debug, Default)]
pub struct Claimed {
    /// Its live 1-to-1 calls.
    pub calls: Vec<LiveCall>,
    /// Its live rooms, its group calls' among them.
    pub rooms: Vec<LiveRoom>,
    /// Its live call-engine group calls, as their last snapshots.
    pub group_calls: Vec<GroupCallRecord>,
    /// When it was last known alive, epoch ms.
    pub since_ms: u64,
}

/// Makes the live calls and rooms of `dead` this node's, if `dead` has been silent in
/// the database since before `silent_before_ms` (epoch ms): `None` when it was not (it
/// lives, or never wrote). `adopt` runs them on here before the commit. One transaction that holds `dead`'s heartbeat row, so a node
/// that speaks up keeps everything, and two nodes claiming at once take each call once.
/// PostgreSQL only: one SQLite file has one node.
pub fn claim_silent_node(
    conn: &mut Conn,
    me: &str,
    dead: &str,
    silent_before_ms: u64,
    adopt: AdoptClaimed,
) -> Result<Option<Claimed>, StoreError> {
    if !conn.is_postgres() || dead == me {
        return Ok(None);
    }
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
    conn.transaction(|c| {
        let alive = c.query_opt("SELECT v FROM meta WHERE k = $1 FOR UPDATE", vals![alive_key(dead)])?;
        let Some(since_ms) = alive.map(|r| r.int(0)).transpose()?.map(|v| v as u64) else { return Ok(None) };
        if since_ms >= silent_before_ms {
            return Ok(None);
        }
        let calls =
            c.query("UPDATE live_calls SET node = $2 WHERE node = $1 RETURNING snapshot", vals![dead, me])?;
        let rooms =
            c.query("UPDATE live_rooms SET node = $2 WHERE node = $1 RETURNING snapshot", vals![dead, me])?;
        let groups = c.query(
            "UPDATE live_group_calls SET node = $2 WHERE node = $1 RETURNING snapshot",
            vals![dead, me],
        )?;
        let parse = |r: &super::db::Row| -> Result<String, StoreError> { r.text(0) };
        let calls = calls
            .iter()
            .map(|r| serde_json::from_str::<LiveCall>(&parse(r)?).map_err(corrupt))
            .collect::<Result<Vec<_>, _>>()?;
        let rooms = rooms
            .iter()
            .map(|r| serde_json::from_str::<LiveRoom>(&parse(r)?).map_err(corrupt))
            .collect::<Result<Vec<_>, _>>()?;
        let group_calls = groups
            .iter()
            .map(|r| serde_json::from_str::<GroupCallRecord>(&parse(r)?).map_err(corrupt))
            .collect::<Result<Vec<_>, _>>()?;
        let claimed = Claimed { calls, rooms, group_calls, since_ms };
        // Run on here before the commit makes them this node's to see: a resume routed
        // here by the database finds them.
        let empty = claimed.calls.is_empty() && claimed.rooms.is_empty() && claimed.group_calls.is_empty();
        if !empty && !adopt(&claimed) {
            return Err(StoreError::Closed);
        }
        Ok(Some(claimed))
    })
}

/// When `node` was last known alive (its store's heartbeat), epoch ms.
fn last_alive(db: &mut CoreDb, node: &str) -> Result<Option<u64>, StoreError> {
    let row = db.conn.query_opt("SELECT v FROM meta WHERE k = $1", vals![alive_key(node)])?;
    Ok(row.map(|r| r.int(0)).transpose()?.map(|v| v as u64))
}

/// Snapshots of live calls, rooms and group calls, with their services.
struct LiveRows {
    calls: Vec<(String, String)>,
    rooms: Vec<(String, String)>,
    groups: Vec<(String, String)>,
}

fn pairs(rows: Vec<super::db::Row>) -> Result<Vec<(String, String)>, StoreError> {
    rows.iter().map(|r| Ok((r.text(0)?, r.text(1)?))).collect()
}

/// Closes `live` at `end_ms` in one step; what was closed, and the callbacks queued.
fn close(
    db: &mut CoreDb,
    live: LiveRows,
    end_ms: u64,
    now_ms: u64,
    wants: &dyn Wants,
) -> Result<(Recovery, Vec<CallbackRow>), StoreError> {
    let (closed, batch) = closing(live, end_ms, wants)?;
    Ok((closed, db.commit(&batch, now_ms)?))
}

/// The step that closes `live` at `end_ms`, and what it closes.
fn closing(live: LiveRows, end_ms: u64, wants: &dyn Wants) -> Result<(Recovery, Batch), StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
    let (reason, source) = (DisconnectReason::ServerInternalError, DisconnectSource::CloudServer);
    let mut batch = Batch::default();
    for (service_id, json) in live.calls {
        let live: LiveCall = serde_json::from_str(&json).map_err(corrupt)?;
        let record = live.record(end_ms.max(live.setup_ms), reason, source, None, None);
        let deliver = wants.record(&service_id);
        batch.add_record(service_id, record, deliver);
    }
    let closed_calls = batch.records.iter().map(|(_, r)| r.sid.clone()).collect();
    // Rooms live at the crash end there and then, for everyone in them.
    let mut closed_rooms = Vec::new();
    for (_, json) in live.rooms {
        let room: LiveRoom = serde_json::from_str(&json).map_err(corrupt)?;
        if wants.gcall(&room.service_id) {
            for (seq, record) in room.closing(end_ms.max(room.setup_ms), reason, source) {
                batch.callbacks.push(NewCallback::gcall(room.service_id.clone(), seq, &record));
            }
        }
        batch.rooms_gone.push(room.sid.clone());
        closed_rooms.push(room.sid);
    }
    // Group calls live at the crash end there too: their last snapshot, completed.
    let mut closed_group_calls = Vec::new();
    for (service_id, json) in live.groups {
        let record = ended(serde_json::from_str(&json).map_err(corrupt)?, end_ms);
        closed_group_calls.push(record.call_id.clone());
        let deliver = wants.group_call(&service_id);
        batch.add_group_record(service_id, record, deliver);
    }
    let closed = Recovery { closed_calls, closed_rooms, closed_group_calls, ..Recovery::default() };
    Ok((closed, batch))
}

/// Which callbacks each service takes, for the records a restart queues.
pub trait Wants {
    /// on_call_evt_cb.
    fn record(&self, service_id: &str) -> bool;
    /// on_gcall_evt_cb.
    fn gcall(&self, service_id: &str) -> bool;
    /// on_group_call_evt_cb.
    fn group_call(&self, service_id: &str) -> bool;
}

/// A live group call's snapshot (its record as of `snapshot.end_ms`), ended by the
/// server at `end_ms`: whoever was in the call was in it until then, an invitation that
/// rang is cancelled.
fn ended(mut snapshot: GroupCallRecord, end_ms: u64) -> GroupCallRecord {
    let end_ms = end_ms.max(snapshot.end_ms);
    for m in &mut snapshot.members {
        if m.result == InviteResult::Inviting {
            m.result = InviteResult::Cancelled;
        }
        if m.result == InviteResult::Joined && m.left_ms == 0 {
            m.in_call_ms += end_ms - snapshot.end_ms;
            m.left_ms = end_ms;
        }
    }
    snapshot.end_ms = end_ms;
    snapshot.end_reason = CallEndReason::EndByServer.into();
    snapshot
}

#[cfg(test)]
mod tests {
    use switchboard_protocol::record::{GroupCallMember, NotifyRecord};

    use super::*;
    use crate::ids::Party;
    use crate::records::{CallbackKind, Entry, LiveParticipant};
    use crate::store::testing::{temp_dir, All};

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
            callee_device: None,
        }
    }

    /// A group call as snapshot at T + 60 s: Ann (caller) in it since T, Ben in it
    /// since T + 10 s, Cy still ringing.
    fn group_call(id: &str) -> GroupCallRecord {
        let m = |user: &str, joined_ms: u64, in_call_ms: u64, result| GroupCallMember {
            user_id: user.into(),
            role: if user == "ann" { "caller" } else { "callee" }.into(),
            inviter: "ann".into(),
            result,
            invited_ms: T,
            answered_ms: joined_ms,
            joined_ms,
            left_ms: 0,
            in_call_ms,
            nickname: None,
        };
        GroupCallRecord {
            call_id: Sid::new(id),
            service_id: "svc".into(),
            caller_id: "ann".into(),
            media_type: "A".into(),
            room_id: 7,
            group_id: String::new(),
            user_data: None,
            setup_ms: T,
            begin_ms: T + 10_000,
            end_ms: T + 60_000,
            end_reason: 9,
            members: vec![
                m("ann", T, 60_000, InviteResult::Joined),
                m("ben", T + 10_000, 50_000, InviteResult::Joined),
                m("cy", 0, 0, InviteResult::Inviting),
            ],
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
        let database = Database::sqlite(&path);
        let mut db = CoreDb::open(&database).expect("db");
        let mut first = Batch::default();
        first.push(Entry::LiveCall(connected("call-a")));
        first.push(Entry::LiveRoom(room("room-r")));
        first.push(Entry::LiveGroupCall { service_id: "svc".into(), record: group_call("group-g") });
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
        db.conn.exec("INSERT INTO meta (k, v) VALUES ('alive_ms', $1)", vals![T + 62_000]).expect("alive");
        // The next step (call-a's end and record) is cut by the crash mid-transaction.
        db.conn.batch("BEGIN").expect("txn");
        db.conn.exec("DELETE FROM live_calls WHERE sid = 'call-a'", &[]).expect("half a step");
        db.conn
            .exec(
                "INSERT INTO outbox (cb_id, service_id, kind, key, query, state, attempts, created_ms, next_attempt_ms)
                 VALUES ('call-call-a', 'svc', 'call', 'call-a', 'q', 'pending', 0, 0, 0)",
                &[],
            )
            .expect("half a step");
        // Dropped without commit: what a process killed here leaves.
        drop(db);

        let r = recover(&database, T + 90_000, &All).expect("recovered");
        assert_eq!(r.closed_calls, [Sid::new("call-a")]);
        assert_eq!(r.closed_rooms, [Sid::new("room-r")]);
        assert_eq!(r.closed_group_calls, [Sid::new("group-g")]);
        assert_eq!(r.dropped_notifies, 1, "the push of a call that is gone");
        let kinds: Vec<(CallbackKind, String)> =
            r.pending.iter().map(|c| (c.kind, c.cb_id.clone())).collect();
        assert_eq!(
            kinds,
            [
                (CallbackKind::Call, "call-call-a".to_string()),
                (CallbackKind::Gcall, "gcall-room-r-3".to_string()),
                (CallbackKind::Gcall, "gcall-room-r-4".to_string()),
                (CallbackKind::GroupCall, r.pending[3].cb_id.clone()),
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
        // The group call: ended by the server when it was last known alive (T + 62 s),
        // those in it in it until then, the ringing invitation cancelled.
        let group = CoreDb::open(&database)
            .expect("db")
            .conn
            .query_opt("SELECT record_json FROM group_call_records WHERE call_id = 'group-g'", &[])
            .expect("query")
            .expect("the group call's record")
            .text(0)
            .expect("text");
        let group: serde_json::Value = serde_json::from_str(&group).expect("json");
        assert_eq!((group["end_ms"].as_u64(), group["end_reason"].as_u64()), (Some(T + 62_000), Some(9)));
        let times: Vec<(u64, u64, &str)> = group["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| {
                let n = |k: &str| m[k].as_u64().unwrap_or(u64::MAX);
                (n("left_ms"), n("in_call_ms"), m["result"].as_str().unwrap_or(""))
            })
            .collect();
        assert_eq!(
            times,
            [(T + 62_000, 62_000, "joined"), (T + 62_000, 52_000, "joined"), (0, 0, "cancelled")]
        );
        // Nothing live remains: a second restart closes nothing and re-queues the same.
        let again = recover(&database, T + 95_000, &All).expect("again");
        assert!(
            again.closed_calls.is_empty()
                && again.closed_rooms.is_empty()
                && again.closed_group_calls.is_empty()
        );
        assert_eq!(again.pending.len(), 4);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
