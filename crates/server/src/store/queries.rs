//! The store thread: delivery progress of the outbox (written in small groups, held and
//! retried while the disk is full so a delivered callback is not sent again after a
//! restart) and the queries of the REST API (call records, callbacks by state, a
//! failed callback retried).

use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;

use std::sync::Arc;

use super::db::{vals, Conn, Database};
use super::recovery::{claim_silent_node, close_silent_nodes, AdoptClaimed, AdoptHanded, Claimed, Wants};
use super::{alive_key, callback_columns, row_to_callback, CoreDb, StoreError, RETRY_FIRST, RETRY_MAX};
use crate::ids::Sid;
use crate::records::CallbackRow;

/// Filters of a call-record listing.
#[derive(Debug, Clone, Default)]
pub struct RecordQuery {
    /// Calls where this user is caller or callee.
    pub user_id: Option<String>,
    /// Set up at or after (epoch seconds).
    pub from: Option<u64>,
    /// Set up before (epoch seconds).
    pub to: Option<u64>,
    /// Page size.
    pub limit: u32,
    /// Continue after this `(setup_time, sid)` (newest first).
    pub cursor: Option<(u64, Sid)>,
}

enum Cmd {
    Delivered {
        id: i64,
        at_ms: u64,
        attempts: u32,
    },
    Retry {
        id: i64,
        attempts: u32,
        next_ms: u64,
        error: String,
    },
    GaveUp {
        id: i64,
        attempts: u32,
        error: String,
        dropped: bool,
    },
    GetRecord {
        service_id: String,
        sid: Sid,
        reply: oneshot::Sender<Option<serde_json::Value>>,
    },
    ListRecords {
        service_id: String,
        q: RecordQuery,
        reply: oneshot::Sender<Vec<serde_json::Value>>,
    },
    ListCallbacks {
        service_id: String,
        state: String,
        limit: u32,
        reply: oneshot::Sender<Vec<CallbackRow>>,
    },
    Retrigger {
        service_id: String,
        id: i64,
        now_ms: u64,
        reply: oneshot::Sender<Option<CallbackRow>>,
    },
    Count {
        reply: oneshot::Sender<u64>,
    },
    Leases {
        now_ms: u64,
        reply: oneshot::Sender<Leases>,
    },
    Rows {
        ids: Vec<i64>,
        reply: oneshot::Sender<Vec<CallbackRow>>,
    },
    PendingHere {
        reply: oneshot::Sender<u64>,
    },
    Owner {
        sid: String,
        reply: oneshot::Sender<Option<String>>,
    },
    TakeHanded {
        sids: Vec<String>,
        from: String,
        adopt: AdoptHanded,
        reply: oneshot::Sender<Result<Vec<String>, StoreError>>,
    },
    Claim {
        dead: String,
        silent_before_ms: u64,
        adopt: AdoptClaimed,
        reply: oneshot::Sender<Result<Option<Claimed>, StoreError>>,
    },
    Recent {
        service_id: String,
        user_id: String,
        from: u64,
        to: u64,
        limit: u32,
        reply: oneshot::Sender<Vec<serde_json::Value>>,
    },
}

/// What a lease renewal found.
#[derive(Debug, Default)]
pub struct Leases {
    /// Callbacks taken over from nodes whose leases ran out, and those of the calls
    /// closed for silent nodes: this node's to deliver now.
    pub taken: Vec<CallbackRow>,
    /// Every pending callback this node holds after the renewal, by id (PostgreSQL;
    /// `None` for one SQLite file: one node, nobody to share with).
    pub held: Option<Vec<i64>>,
}

/// Handle to the store thread.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Cmd>,
    lease: Duration,
}

/// How long delivered and dropped callbacks are kept.
const KEEP_DONE_MS: u64 = 7 * 24 * 3600 * 1000;

impl Store {
    /// Opens the database and starts the store thread. `wants` says which callbacks
    /// the records of calls it closes for a silent node go to.
    pub fn open(db: &Database, wants: Arc<dyn Wants + Send + Sync>) -> Result<Self, StoreError> {
        let core_db = CoreDb::open(db)?;
        let (tx, rx) = mpsc::channel();
        let node = Node {
            name: db.node.clone(),
            lease_ms: millis(db.lease),
            timeout_ms: millis(db.node_timeout),
            wants,
        };
        std::thread::Builder::new()
            .name("switchboard-store".into())
            .spawn(move || run(core_db, node, rx))
            .map_err(|_| StoreError::Closed)?;
        Ok(Self { tx, lease: db.lease })
    }

    /// How long this node's hold on a callback lasts unless renewed.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Renews this node's leases on its pending callbacks, and takes over those whose
    /// node let its leases run out (it died, or lost the database), and closes what
    /// nodes silent for longer than the node timeout left live: their callbacks are
    /// returned, to be delivered here. An error means the leases could not be renewed.
    pub async fn leases(&self, now_ms: u64) -> Result<Leases, StoreError> {
        self.ask(|reply| Cmd::Leases { now_ms, reply }).await
    }

    /// The pending callbacks among `ids` that this node holds.
    pub async fn rows(&self, ids: Vec<i64>) -> Result<Vec<CallbackRow>, StoreError> {
        self.ask(|reply| Cmd::Rows { ids, reply }).await
    }

    /// How many callbacks this node holds pending (all of them on one SQLite file).
    pub async fn pending_here(&self) -> Result<u64, StoreError> {
        self.ask(|reply| Cmd::PendingHere { reply }).await
    }

    /// The node that owns the live call, room or group call `sid` (`""`: the single
    /// node of an SQLite file), if it is live.
    pub async fn owner(&self, sid: &str) -> Result<Option<String>, StoreError> {
        self.ask(|reply| Cmd::Owner { sid: sid.into(), reply }).await
    }

    /// Takes over the live calls and rooms of `dead` if it has been silent in the
    /// database since before `silent_before_ms` (epoch ms); `None` if it has not.
    /// `adopt` runs them on here before they are seen to be this node's (false: they
    /// stay `dead`'s).
    pub async fn claim(
        &self,
        dead: &str,
        silent_before_ms: u64,
        adopt: AdoptClaimed,
    ) -> Result<Option<Claimed>, StoreError> {
        let dead = dead.to_string();
        self.ask(|reply| Cmd::Claim { dead, silent_before_ms, adopt, reply }).await?
    }

    /// Makes those of the live calls and rooms `sids` that node `from` (which drains)
    /// still holds this node's, and returns them. `adopt` runs them on here before they
    /// are seen to be this node's: a client that resumes one finds it (false: they stay
    /// `from`'s).
    pub async fn take_handed(
        &self,
        sids: Vec<String>,
        from: &str,
        adopt: AdoptHanded,
    ) -> Result<Vec<String>, StoreError> {
        let from = from.to_string();
        self.ask(|reply| Cmd::TakeHanded { sids, from, adopt, reply }).await?
    }

    fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_err() {
            tracing::error!("store thread is gone; delivery state not recorded");
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// A callback was delivered.
    pub fn delivered(&self, id: i64, at_ms: u64, attempts: u32) {
        self.send(Cmd::Delivered { id, at_ms, attempts });
    }

    /// A callback will be tried again.
    pub fn retry(&self, id: i64, attempts: u32, next_ms: u64, error: String) {
        self.send(Cmd::Retry { id, attempts, next_ms, error });
    }

    /// A callback gave up (`failed`) or is no longer wanted (`dropped`).
    pub fn gave_up(&self, id: i64, attempts: u32, error: String, dropped: bool) {
        self.send(Cmd::GaveUp { id, attempts, error, dropped });
    }

    /// The stored record of a call of this service.
    pub async fn get(&self, service_id: &str, sid: &Sid) -> Result<Option<serde_json::Value>, StoreError> {
        self.ask(|reply| Cmd::GetRecord { service_id: service_id.into(), sid: sid.clone(), reply }).await
    }

    /// A user's own 1-to-1 and group call records set up in `[from, to)` (epoch
    /// seconds), newest first, at most `limit`.
    pub async fn recent(
        &self,
        service_id: &str,
        user_id: &str,
        from: u64,
        to: u64,
        limit: u32,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let (service_id, user_id) = (service_id.to_string(), user_id.to_string());
        self.ask(|reply| Cmd::Recent { service_id, user_id, from, to, limit, reply }).await
    }

    /// A page of this service's call records, newest first.
    pub async fn list(&self, service_id: &str, q: RecordQuery) -> Result<Vec<serde_json::Value>, StoreError> {
        self.ask(|reply| Cmd::ListRecords { service_id: service_id.into(), q, reply }).await
    }

    /// This service's callbacks in a state, oldest first.
    pub async fn callbacks(
        &self,
        service_id: &str,
        state: &str,
        limit: u32,
    ) -> Result<Vec<CallbackRow>, StoreError> {
        self.ask(|reply| Cmd::ListCallbacks {
            service_id: service_id.into(),
            state: state.into(),
            limit,
            reply,
        })
        .await
    }

    /// Puts a `failed` callback of this service back to `pending`; returns it. A
    /// push (notify_cb) cannot be retried: its call is over.
    pub async fn retrigger(
        &self,
        service_id: &str,
        id: i64,
        now_ms: u64,
    ) -> Result<Option<CallbackRow>, StoreError> {
        self.ask(|reply| Cmd::Retrigger { service_id: service_id.into(), id, now_ms, reply }).await
    }

    /// How many call records are stored (after every queued write).
    pub async fn count(&self) -> Result<u64, StoreError> {
        self.ask(|reply| Cmd::Count { reply }).await
    }
}

impl Cmd {
    /// A copy of a delivery-progress command (the ones kept for a retry).
    fn progress(&self) -> Option<Cmd> {
        match self {
            Cmd::Delivered { id, at_ms, attempts } => {
                Some(Cmd::Delivered { id: *id, at_ms: *at_ms, attempts: *attempts })
            }
            Cmd::Retry { id, attempts, next_ms, error } => {
                Some(Cmd::Retry { id: *id, attempts: *attempts, next_ms: *next_ms, error: error.clone() })
            }
            Cmd::GaveUp { id, attempts, error, dropped } => {
                Some(Cmd::GaveUp { id: *id, attempts: *attempts, error: error.clone(), dropped: *dropped })
            }
            _ => None,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// This node, as the store thread writes it.
struct Node {
    name: String,
    lease_ms: u64,
    timeout_ms: u64,
    wants: Arc<dyn Wants + Send + Sync>,
}

fn run(mut db: CoreDb, node: Node, rx: mpsc::Receiver<Cmd>) {
    let mut last_prune = 0u64;
    // Delivery progress whose write failed for a reason that may pass (a full disk):
    // written with the next batch, so a delivered callback is not sent again after a
    // restart.
    let mut held: Vec<Cmd> = Vec::new();
    let mut wait = RETRY_FIRST;
    let alive = alive_key(&node.name);
    loop {
        let first = match rx.recv_timeout(if held.is_empty() { Duration::from_millis(1000) } else { wait }) {
            Ok(c) => Some(c),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut batch: Vec<Cmd> = std::mem::take(&mut held);
        batch.extend(first);
        // Delivery progress is not urgent: gather a few milliseconds of it into one
        // transaction, so this writer seldom contends with the journal's.
        let gather_until = std::time::Instant::now() + Duration::from_millis(5);
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(mpsc::TryRecvError::Empty)
                    if !batch.is_empty() && std::time::Instant::now() < gather_until =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => break,
            }
        }
        let now = crate::clock::now_ms();
        let progress: Vec<Cmd> = batch.iter().filter_map(Cmd::progress).collect();
        match apply(&mut db, &node, &alive, batch, now) {
            Ok(()) => {
                if wait != RETRY_FIRST {
                    tracing::warn!("delivery progress written again");
                }
                wait = RETRY_FIRST;
            }
            Err(e) if e.may_pass() => {
                if wait == RETRY_FIRST {
                    tracing::error!(error = %e, held = progress.len(), "store write failed; delivery progress held and retried");
                }
                held = progress;
                wait = (wait * 2).min(RETRY_MAX);
            }
            Err(e) => tracing::error!(error = %e, "store write failed"),
        }
        if now > last_prune + 3_600_000 {
            last_prune = now;
            let cutoff = now.saturating_sub(KEEP_DONE_MS);
            if let Err(e) = db.conn.exec(
                "DELETE FROM outbox WHERE state IN ('delivered', 'dropped') AND created_ms < $1",
                vals![cutoff],
            ) {
                tracing::warn!(error = %e, "pruning the outbox failed");
            }
        }
    }
}

fn apply(db: &mut CoreDb, node: &Node, alive: &str, batch: Vec<Cmd>, now: u64) -> Result<(), StoreError> {
    let queries = db.conn.transaction(|c| {
        // The heartbeat that recovery uses as the end time of calls cut by a crash.
        c.exec(
            "INSERT INTO meta (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
            vals![alive, now],
        )?;
        let mut queries = Vec::new();
        for cmd in batch {
            match cmd {
                Cmd::Delivered { id, at_ms, attempts } => {
                    c.exec(
                        "UPDATE outbox SET state = 'delivered', delivered_ms = $2, attempts = $3, last_error = NULL WHERE id = $1",
                        vals![id, at_ms, attempts],
                    )?;
                }
                // Only while this node holds it: another node that took it over decides.
                Cmd::Retry { id, attempts, next_ms, error } => {
                    c.exec(
                        "UPDATE outbox SET attempts = $2, next_attempt_ms = $3, last_error = $4
                         WHERE id = $1 AND state = 'pending' AND lease_node = $5",
                        vals![id, attempts, next_ms, error, &node.name],
                    )?;
                }
                Cmd::GaveUp { id, attempts, error, dropped } => {
                    let state = if dropped { "dropped" } else { "failed" };
                    c.exec(
                        "UPDATE outbox SET state = $2, attempts = $3, last_error = $4 WHERE id = $1 AND lease_node = $5",
                        vals![id, state, attempts, error, &node.name],
                    )?;
                }
                other => queries.push(other),
            }
        }
        Ok(queries)
    })?;
    // Each question on its own: one that fails leaves the others their answers (its
    // asker hears that the store failed).
    for q in queries {
        let answered = match q {
            Cmd::Leases { now_ms, reply } => leases(db, node, now_ms).map(|l| {
                let _ = reply.send(l);
            }),
            other => answer(&mut db.conn, node, other),
        };
        if let Err(e) = answered {
            tracing::warn!(error = %e, "store query failed");
        }
    }
    Ok(())
}

/// Takes over the callbacks of nodes whose leases ran out, closes what silent nodes
/// left live, then renews this node's leases (the ones just taken included).
fn leases(db: &mut CoreDb, node: &Node, now_ms: u64) -> Result<Leases, StoreError> {
    let until = now_ms.saturating_add(node.lease_ms);
    // One SQLite file has one node: nobody else's to take over, nobody to share with.
    if !db.conn.is_postgres() {
        return Ok(Leases::default());
    }
    let mut taken = take_expired(&mut db.conn, node, now_ms, until)?;
    let silent_before = now_ms.saturating_sub(node.timeout_ms);
    match close_silent_nodes(db, silent_before, now_ms, node.wants.as_ref()) {
        Ok((_, rows)) => taken.extend(rows),
        Err(e) => {
            tracing::warn!(error = %e, "closing what a silent node left live failed; tried again later")
        }
    }
    let held = db.conn.query(
        "UPDATE outbox SET lease_until_ms = $2 WHERE lease_node = $1 AND state = 'pending' RETURNING id",
        vals![&node.name, until],
    )?;
    let held = held.iter().map(|r| r.int(0)).collect::<Result<Vec<_>, _>>()?;
    Ok(Leases { taken, held: Some(held) })
}

/// Takes over the pending callbacks whose node's lease ran out.
fn take_expired(
    conn: &mut Conn,
    node: &Node,
    now_ms: u64,
    until: u64,
) -> Result<Vec<CallbackRow>, StoreError> {
    let rows = conn.query(
        concat!(
            "UPDATE outbox SET lease_node = $1, lease_until_ms = $2
             WHERE id IN (SELECT id FROM outbox
                          WHERE state = 'pending' AND lease_until_ms < $3 AND lease_node <> $1
                          ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED)
             RETURNING ",
            callback_columns!()
        ),
        vals![&node.name, until, now_ms],
    )?;
    let mut claimed = rows.iter().map(row_to_callback).collect::<Result<Vec<_>, _>>()?;
    claimed.sort_by_key(|r| r.id);
    if !claimed.is_empty() {
        tracing::warn!(callbacks = claimed.len(), "took over callbacks whose node's lease ran out");
    }
    Ok(claimed)
}

/// Moves those of the live rows `sids` that node `from` holds to node `me`, in one
/// transaction, `adopt` running them on before it commits; the sids moved.
fn take_handed(
    conn: &mut Conn,
    me: &str,
    sids: &[String],
    from: &str,
    adopt: AdoptHanded,
) -> Result<Vec<String>, StoreError> {
    conn.transaction(|c| {
        let mut moved = Vec::new();
        for sid in sids {
            let n = c
                .exec("UPDATE live_calls SET node = $2 WHERE sid = $1 AND node = $3", vals![sid, me, from])?
                + c.exec(
                    "UPDATE live_rooms SET node = $2 WHERE sid = $1 AND node = $3",
                    vals![sid, me, from],
                )?;
            if n > 0 {
                moved.push(sid.clone());
            }
        }
        if !moved.is_empty() && !adopt(&moved) {
            return Err(StoreError::Closed);
        }
        Ok(moved)
    })
}

fn answer(conn: &mut Conn, node: &Node, cmd: Cmd) -> Result<(), StoreError> {
    let parse = |s: String| serde_json::from_str::<serde_json::Value>(&s).unwrap_or(serde_json::Value::Null);
    let texts = |rows: Vec<super::db::Row>| -> Result<Vec<serde_json::Value>, StoreError> {
        rows.iter().map(|r| r.text(0).map(parse)).collect()
    };
    match cmd {
        Cmd::GetRecord { service_id, sid, reply } => {
            let v = conn.query_opt(
                // A group call's ID is its room's sid (32 hex digits).
                if sid.is_room_shaped() {
                    "SELECT record_json FROM group_call_records WHERE call_id = $1 AND service_id = $2"
                } else {
                    "SELECT record_json FROM call_records WHERE sid = $1 AND service_id = $2"
                },
                vals![sid.as_str(), service_id],
            )?;
            let _ = reply.send(v.map(|r| r.text(0)).transpose()?.map(parse));
        }
        Cmd::Recent { service_id, user_id, from, to, limit, reply } => {
            let rows = conn.query(
                "SELECT record_json, setup_time FROM call_records
                   WHERE service_id = $1 AND from_user_id = $2 AND setup_time >= $3 AND setup_time < $4
                 UNION ALL
                 SELECT record_json, setup_time FROM call_records
                   WHERE service_id = $1 AND to_user_id = $2 AND from_user_id != $2
                     AND setup_time >= $3 AND setup_time < $4
                 UNION ALL
                 SELECT g.record_json, g.setup_time FROM group_call_members m
                   JOIN group_call_records g ON g.call_id = m.call_id
                   WHERE m.service_id = $1 AND m.user_id = $2 AND m.setup_time >= $3 AND m.setup_time < $4
                 ORDER BY setup_time DESC LIMIT $5",
                vals![service_id, user_id, from, to, limit],
            )?;
            let _ = reply.send(texts(rows)?);
        }
        Cmd::ListRecords { service_id, q, reply } => {
            let (cur_t, cur_sid) =
                q.cursor.map_or((i64::MAX as u64, String::new()), |(t, s)| (t, s.to_string()));
            let rows = conn.query(
                "SELECT record_json FROM call_records
                 WHERE service_id = $1
                   AND (CAST($2 AS TEXT) IS NULL OR from_user_id = $2 OR to_user_id = $2)
                   AND setup_time >= $3 AND setup_time < $4
                   AND (setup_time < $5 OR (setup_time = $5 AND ($6 = '' OR sid < $6)))
                 ORDER BY setup_time DESC, sid DESC LIMIT $7",
                vals![
                    service_id,
                    q.user_id,
                    q.from.unwrap_or(0),
                    q.to.map_or(i64::MAX, |t| i64::try_from(t).unwrap_or(i64::MAX)),
                    cur_t,
                    cur_sid,
                    q.limit
                ],
            )?;
            let _ = reply.send(texts(rows)?);
        }
        Cmd::ListCallbacks { service_id, state, limit, reply } => {
            let rows = conn.query(
                concat!(
                    "SELECT ",
                    callback_columns!(),
                    " FROM outbox WHERE service_id = $1 AND state = $2 ORDER BY id LIMIT $3"
                ),
                vals![service_id, state, limit],
            )?;
            let _ = reply.send(rows.iter().map(row_to_callback).collect::<Result<_, _>>()?);
        }
        Cmd::Retrigger { service_id, id, now_ms, reply } => {
            // The node that retries it delivers it.
            let rows = conn.query(
                concat!(
                    "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_ms = $3, created_ms = $3,
                       lease_node = $4, lease_until_ms = $5
                     WHERE id = $1 AND service_id = $2 AND state = 'failed' AND kind != 'notify' RETURNING ",
                    callback_columns!()
                ),
                vals![id, service_id, now_ms, &node.name, now_ms.saturating_add(node.lease_ms)],
            )?;
            let _ = reply.send(rows.first().map(row_to_callback).transpose()?);
        }
        Cmd::Rows { ids, reply } => {
            let mut rows = Vec::new();
            for id in ids.into_iter().take(1000) {
                let row = conn.query_opt(
                    concat!(
                        "SELECT ",
                        callback_columns!(),
                        " FROM outbox WHERE id = $1 AND state = 'pending' AND lease_node = $2"
                    ),
                    vals![id, &node.name],
                )?;
                rows.extend(row.as_ref().map(row_to_callback).transpose()?);
            }
            let _ = reply.send(rows);
        }
        Cmd::PendingHere { reply } => {
            let n = conn
                .query_opt(
                    "SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND lease_node = $1",
                    vals![&node.name],
                )?
                .map(|r| r.int(0))
                .transpose()?;
            let _ = reply.send(n.unwrap_or(0) as u64);
        }
        Cmd::Owner { sid, reply } => {
            let node = conn
                .query_opt(
                    "SELECT node FROM live_calls WHERE sid = $1 \
                     UNION ALL SELECT node FROM live_rooms WHERE sid = $1 \
                     UNION ALL SELECT node FROM live_group_calls WHERE call_id = $1",
                    vals![&sid],
                )?
                .map(|r| r.text(0))
                .transpose()?;
            let _ = reply.send(node);
        }
        Cmd::TakeHanded { sids, from, adopt, reply } => {
            let _ = reply.send(take_handed(conn, &node.name, &sids, &from, adopt));
        }
        Cmd::Claim { dead, silent_before_ms, adopt, reply } => {
            let _ = reply.send(claim_silent_node(conn, &node.name, &dead, silent_before_ms, adopt));
        }
        Cmd::Count { reply } => {
            let n =
                conn.query_opt("SELECT COUNT(*) FROM call_records", &[])?.map(|r| r.int(0)).transpose()?;
            let _ = reply.send(n.unwrap_or(0) as u64);
        }
        Cmd::Delivered { .. } | Cmd::Retry { .. } | Cmd::GaveUp { .. } => {}
        Cmd::Leases { reply, .. } => drop(reply),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Batch, CallbackKind, NewCallback};
    use crate::store::testing::{temp_dir, All};
    use crate::store::CoreDb;
    use switchboard_protocol::record::CallRecord;

    fn record(sid: &str, user: &str, setup: u64) -> CallRecord {
        CallRecord {
            sid: Sid::new(sid),
            from_service_id: "svc".into(),
            from_user_id: user.into(),
            to_service_id: "svc".into(),
            to_user_id: "zed".into(),
            media_type: "A".into(),
            setup_time: setup,
            start_time: 0,
            end_time: setup + 5,
            duration: 0,
            srcip: String::new(),
            dstip: String::new(),
            terminate: 127,
            rel_code: 2,
            rel_code_str: "CANCEL".into(),
            user_rel_code: None,
            billing_sec: 0,
            rc_idc: "JP".into(),
            disconnect_reason: 1201,
            releaser_type: 2,
            app_svr_data: None,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    /// Records page newest first, by user and time; another service sees none of them.
    #[test]
    fn records_are_listed_newest_first_in_pages() {
        let dir = temp_dir("queries-records");
        let path = dir.join("db");
        let mut db = CoreDb::open(&Database::sqlite(&path)).expect("db");
        let mut batch = Batch::default();
        for (i, user) in ["ann", "ben", "ann", "ann"].iter().enumerate() {
            batch.add_record("svc".into(), record(&format!("s{i}"), user, 100 + i as u64), true);
        }
        batch.add_record("other".into(), record("t0", "ann", 100), false);
        db.commit(&batch, 1).expect("commit");
        let store = Store::open(&Database::sqlite(&path), Arc::new(All)).expect("store");
        runtime().block_on(async {
            let q =
                |cursor| RecordQuery { user_id: Some("ann".into()), limit: 2, cursor, ..Default::default() };
            let page = store.list("svc", q(None)).await.expect("page 1");
            let sids: Vec<&str> = page.iter().map(|r| r["sid"].as_str().unwrap_or("")).collect();
            assert_eq!(sids, ["s3", "s2"]);
            let page = store.list("svc", q(Some((102, Sid::new("s2"))))).await.expect("page 2");
            assert_eq!(page.len(), 1);
            assert_eq!(page[0]["sid"], "s0");
            let got = store.get("svc", &Sid::new("s1")).await.expect("get");
            assert_eq!(got.map(|r| r["from_user_id"].clone()), Some("ben".into()));
            assert!(store.get("other", &Sid::new("s1")).await.expect("get").is_none());
            assert_eq!(store.count().await.expect("count"), 5);
        });
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Delivery progress moves callbacks between states; a failed one can be retried,
    /// a push never (its call is over).
    #[test]
    fn callbacks_move_between_states_and_failed_ones_are_retried() {
        let dir = temp_dir("queries-callbacks");
        let path = dir.join("db");
        let mut db = CoreDb::open(&Database::sqlite(&path)).expect("db");
        let mut batch = Batch::default();
        for (key, kind) in [("a", CallbackKind::Call), ("b", CallbackKind::Call), ("c", CallbackKind::Notify)]
        {
            batch.callbacks.push(NewCallback {
                cb_id: format!("{key}-1"),
                service_id: "svc".into(),
                kind,
                key: key.into(),
                query: "q".into(),
                deadline_ms: None,
            });
        }
        let rows = db.commit(&batch, 1).expect("commit");
        let store = Store::open(&Database::sqlite(&path), Arc::new(All)).expect("store");
        store.delivered(rows[0].id, 10, 1);
        store.gave_up(rows[1].id, 3, "503".into(), false);
        store.gave_up(rows[2].id, 3, "503".into(), false);
        runtime().block_on(async {
            let state = |s: &'static str| store.callbacks("svc", s, 10);
            assert_eq!(state("delivered").await.expect("delivered").len(), 1);
            let failed = state("failed").await.expect("failed");
            assert_eq!(failed.iter().map(|c| c.cb_id.as_str()).collect::<Vec<_>>(), ["b-1", "c-1"]);
            assert!(state("pending").await.expect("pending").is_empty());
            let again = store.retrigger("svc", rows[1].id, 20).await.expect("retrigger");
            assert_eq!(again.map(|c| (c.state, c.attempts)), Some(("pending".to_string(), 0)));
            assert!(
                store.retrigger("svc", rows[2].id, 20).await.expect("push").is_none(),
                "a push is not retried"
            );
            assert!(store.retrigger("other", rows[1].id, 20).await.expect("other").is_none());
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
