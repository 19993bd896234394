//! The journal: what each step of the core decided, written before anything the step
//! said goes out.
//!
//! The core numbers its steps (1, 2, …) and hands each step's [`Batch`] to the journal
//! thread, which commits every step waiting in one transaction and then publishes the
//! number of the last step on disk ([`Journal::committed`]). A frame a step sent
//! carries that step's number, and its session sends it only once the journal got that
//! far (steps that wrote nothing number their frames 0: nothing to wait for). A write
//! that fails for a reason that may pass (disk full, IO error) is retried with back-off;
//! meanwhile [`Journal::healthy`] is false (the server refuses new calls with
//! SERVICE_BUSY) and later steps wait behind it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use tokio::sync::watch;

use super::db::{vals, Conn, Database};
use super::{StoreError, RETRY_FIRST, RETRY_MAX};
use crate::records::{Batch, CallbackRow};

/// The core task's connection: commits each step's decisions atomically.
pub struct CoreDb {
    pub(super) conn: Conn,
    /// This node: the owner of the live rows it writes, the holder of its callbacks.
    pub(super) node: String,
    pub(super) lease_ms: u64,
}

impl CoreDb {
    /// Opens the database.
    pub fn open(db: &Database) -> Result<Self, StoreError> {
        let lease_ms = u64::try_from(db.lease.as_millis()).unwrap_or(u64::MAX);
        Ok(Self { conn: super::schema::open(&db.place)?, node: db.node.clone(), lease_ms })
    }

    /// Writes a batch in one transaction; returns the new callbacks as stored rows.
    pub fn commit(&mut self, batch: &Batch, now_ms: u64) -> Result<Vec<CallbackRow>, StoreError> {
        self.commit_steps(std::iter::once(batch), now_ms)
    }

    /// Writes several batches in one transaction; returns their stored callbacks, in
    /// order. The new callbacks are leased to this node (it delivers what it decided).
    pub fn commit_steps<'a>(
        &mut self,
        batches: impl Iterator<Item = &'a Batch>,
        now_ms: u64,
    ) -> Result<Vec<CallbackRow>, StoreError> {
        let node = self.node.as_str();
        let lease_until = now_ms.saturating_add(self.lease_ms);
        self.conn.transaction(|c| write_steps(c, node, lease_until, batches, now_ms))
    }
}

/// Writes batches in the transaction open on `c`, the live rows marked as `node`'s and
/// the new callbacks leased to it until `lease_until`; the stored callbacks, in order.
pub(super) fn write_steps<'a>(
    c: &mut Conn,
    node: &str,
    lease_until: u64,
    batches: impl Iterator<Item = &'a Batch>,
    now_ms: u64,
) -> Result<Vec<CallbackRow>, StoreError> {
    let mut rows = Vec::new();
    for batch in batches {
        for r in &batch.live_rooms {
            c.exec(
                "INSERT INTO live_rooms (sid, service_id, snapshot, node) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (sid) DO UPDATE SET snapshot = excluded.snapshot
                 WHERE live_rooms.node = excluded.node",
                vals![r.sid.as_str(), &r.service_id, json(r)?, node],
            )?;
        }
        for sid in &batch.rooms_gone {
            c.exec("DELETE FROM live_rooms WHERE sid = $1 AND node = $2", vals![sid.as_str(), node])?;
        }
        for (service_id, snap) in &batch.live {
            c.exec(
                "INSERT INTO live_calls (sid, service_id, snapshot, node) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (sid) DO UPDATE SET snapshot = excluded.snapshot
                 WHERE live_calls.node = excluded.node",
                vals![snap.sid.as_str(), service_id, json(snap)?, node],
            )?;
        }
        for (service_id, r) in &batch.records {
            c.exec(
                "INSERT INTO call_records
                 (sid, service_id, from_user_id, to_user_id, setup_time, end_time, disconnect_reason, record_json)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                vals![
                    r.sid.as_str(),
                    service_id,
                    &r.from_user_id,
                    &r.to_user_id,
                    r.setup_time,
                    r.end_time,
                    r.disconnect_reason,
                    r.to_json().to_string()
                ],
            )?;
            c.exec("DELETE FROM live_calls WHERE sid = $1 AND node = $2", vals![r.sid.as_str(), node])?;
        }
        for (service_id, r) in &batch.live_group_calls {
            c.exec(
                "INSERT INTO live_group_calls (call_id, service_id, snapshot, node) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (call_id) DO UPDATE SET snapshot = excluded.snapshot
                 WHERE live_group_calls.node = excluded.node",
                vals![r.call_id.as_str(), service_id, json(r)?, node],
            )?;
        }
        for (service_id, r) in &batch.group_records {
            c.exec(
                "DELETE FROM live_group_calls WHERE call_id = $1 AND node = $2",
                vals![r.call_id.as_str(), node],
            )?;
            c.exec(
                "INSERT INTO group_call_records
                 (call_id, service_id, caller_id, setup_time, end_time, end_reason, record_json)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                vals![
                    r.call_id.as_str(),
                    service_id,
                    &r.caller_id,
                    r.setup_ms / 1000,
                    r.end_ms / 1000,
                    r.end_reason,
                    r.to_json().to_string()
                ],
            )?;
            for m in &r.members {
                c.exec(
                    "INSERT INTO group_call_members (call_id, service_id, user_id, setup_time)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    vals![r.call_id.as_str(), service_id, &m.user_id, r.setup_ms / 1000],
                )?;
            }
        }
        for cb in &batch.callbacks {
            // A record's callback already queued by another node (its call closed
            // twice: by its node and by one that took its silence for death) is not
            // queued again; one this node queued itself (a write retried after its
            // commit's answer was lost) is handed on again, to be delivered once.
            let inserted = c.query_opt(
                "INSERT INTO outbox (cb_id, service_id, kind, key, query, state, attempts, created_ms,
                   next_attempt_ms, deadline_ms, lease_node, lease_until_ms)
                 VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $7, $8, $9)
                 ON CONFLICT (cb_id) WHERE kind <> 'notify' DO UPDATE SET lease_until_ms = excluded.lease_until_ms
                   WHERE outbox.lease_node = excluded.lease_node AND outbox.state = 'pending'
                 RETURNING id",
                    vals![
                        &cb.cb_id,
                        &cb.service_id,
                        cb.kind.as_str(),
                        &cb.key,
                        &cb.query,
                        now_ms,
                        cb.deadline_ms,
                        node,
                        lease_until
                    ],
            )?;
            let Some(id) = inserted.map(|r| r.int(0)).transpose()? else { continue };
            rows.push(CallbackRow {
                id,
                cb_id: cb.cb_id.clone(),
                service_id: cb.service_id.clone(),
                kind: cb.kind,
                key: cb.key.clone(),
                query: cb.query.clone(),
                state: "pending".into(),
                attempts: 0,
                created_ms: now_ms,
                next_attempt_ms: now_ms,
                delivered_ms: None,
                deadline_ms: cb.deadline_ms,
                last_error: None,
            });
        }
    }
    Ok(rows)
}

/// A snapshot as its row keeps it.
fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Where the callbacks of committed steps go (the delivery task), in commit order.
pub type OnCommit = Box<dyn FnMut(Vec<CallbackRow>) + Send>;

/// The journal thread. See the module docs.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<(u64, Batch)>,
    committed: watch::Receiver<u64>,
    healthy: Arc<AtomicBool>,
    room: Arc<AtomicBool>,
}

/// Keeps a reserve of free disk space for the records of calls already live: below
/// `min_free` bytes on the data directory's filesystem, nothing new starts. Without it
/// a full disk would surface late (SQLite reuses its WAL's space), mid-call.
#[derive(Debug, Clone)]
pub struct DiskGuard {
    /// The directory whose filesystem holds the database.
    pub dir: std::path::PathBuf,
    /// Free bytes below which new calls and rooms are refused; 0 turns the guard off.
    pub min_free: u64,
}

/// How often the free space is read while nothing is written.
const DISK_CHECK_EVERY: Duration = Duration::from_secs(1);

impl DiskGuard {
    /// Free bytes available to the server on the guarded filesystem, if readable.
    pub fn free_bytes(&self) -> Option<u64> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: statvfs only writes the struct it is given; all-zero is a valid value of it.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is NUL-terminated and outlives the call; `st` is a valid out-pointer.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return None;
        }
        Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }

    /// Reads the free space and updates `room`, logging each change.
    fn check(&self, room: &AtomicBool) {
        if self.min_free == 0 {
            return;
        }
        let Some(free) = self.free_bytes() else { return };
        let ok = free >= self.min_free;
        if room.swap(ok, Ordering::Relaxed) != ok {
            if ok {
                tracing::warn!(
                    free_bytes = free,
                    "free disk space is back above min_free_disk_bytes; new calls are accepted again"
                );
            } else {
                tracing::error!(
                    free_bytes = free,
                    min_free_disk_bytes = self.min_free,
                    "free disk space is below min_free_disk_bytes; new calls and rooms are refused with SERVICE_BUSY until there is room"
                );
            }
        }
    }
}

impl Journal {
    /// Opens the database at `path` and starts the journal thread, with `disk` guarding
    /// the free space of its filesystem and `on_commit` taking the new callbacks.
    pub fn open(db: &Database, disk: Option<DiskGuard>, on_commit: OnCommit) -> Result<Self, StoreError> {
        Self::start(CoreDb::open(db)?, disk, on_commit)
    }

    /// Whether new calls may start: the last write succeeded and the disk has its
    /// reserve. While a write fails it is retried and the steps behind it (and their
    /// frames) wait.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.room.load(Ordering::Relaxed)
    }

    /// The number of the last step on disk (steps that wrote nothing count as written
    /// once the ones before them are). Frames of a step wait until it gets there.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Starts the journal thread on `db`. See the module docs.
    pub fn start(
        mut db: CoreDb,
        disk: Option<DiskGuard>,
        mut on_commit: OnCommit,
    ) -> Result<Self, StoreError> {
        let healthy = Arc::new(AtomicBool::new(true));
        let room = Arc::new(AtomicBool::new(true));
        let (flag, has_room) = (healthy.clone(), room.clone());
        if let Some(d) = &disk {
            d.check(&room);
        }
        let (published, committed) = watch::channel(0u64);
        let (tx, rx) = mpsc::channel::<(u64, Batch)>();
        std::thread::Builder::new()
            .name("switchboard-journal".into())
            .spawn(move || {
                let mut steps = Vec::with_capacity(256);
                let mut checked = std::time::Instant::now();
                loop {
                    let first = match rx.recv_timeout(DISK_CHECK_EVERY) {
                        Ok(s) => Some(s),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    };
                    if let Some(d) = &disk {
                        if first.is_none() || checked.elapsed() >= DISK_CHECK_EVERY / 4 {
                            d.check(&has_room);
                            checked = std::time::Instant::now();
                        }
                    }
                    let Some(first) = first else { continue };
                    steps.push(first);
                    while steps.len() < 1024 {
                        match rx.try_recv() {
                            Ok(s) => steps.push(s),
                            Err(_) => break,
                        }
                    }
                    let rows = write(&mut db, &steps, &flag);
                    if !rows.is_empty() {
                        on_commit(rows);
                    }
                    if let Some((last, _)) = steps.last() {
                        published.send_replace(*last);
                    }
                    steps.clear();
                }
            })
            .map_err(|_| StoreError::Closed)?;
        Ok(Self { tx, committed, healthy, room })
    }

    /// Queues step `seq`'s batch (steps are numbered in order by the one core task).
    pub fn submit(&self, seq: u64, batch: Batch) {
        if self.tx.send((seq, batch)).is_err() {
            tracing::error!("journal thread is gone");
        }
    }
}

/// Writes a group of steps, retrying what may pass; the stored callbacks.
fn write(db: &mut CoreDb, steps: &[(u64, Batch)], healthy: &AtomicBool) -> Vec<CallbackRow> {
    if steps.iter().all(|(_, b)| b.is_empty()) {
        return Vec::new();
    }
    let mut wait = RETRY_FIRST;
    loop {
        match db.commit_steps(steps.iter().map(|(_, b)| b), crate::clock::now_ms()) {
            Ok(rows) => {
                if !healthy.swap(true, Ordering::Relaxed) {
                    tracing::warn!("database writes work again; held steps released");
                }
                return rows;
            }
            Err(e) if e.may_pass() => {
                if healthy.swap(false, Ordering::Relaxed) {
                    tracing::error!(error = %e, steps = steps.len(), "database write failed; retrying, new calls are refused until it works");
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(RETRY_MAX);
            }
            Err(e) => {
                // Not the disk or the connection but the data: retrying cannot help.
                tracing::error!(error = %e, steps = steps.len(), "database write refused; these steps' records and callbacks are lost");
                return Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Sid;
    use crate::records::{CallbackKind, Entry, LiveCall, NewCallback};
    use crate::store::testing::temp_dir;
    use switchboard_protocol::{DisconnectReason, DisconnectSource};

    fn callback(key: &str, query: String) -> NewCallback {
        NewCallback {
            cb_id: format!("gcall-{key}-1"),
            service_id: "svc".into(),
            kind: CallbackKind::Gcall,
            key: key.into(),
            query,
            deadline_ms: None,
        }
    }

    fn live(sid: &str) -> LiveCall {
        LiveCall {
            sid: Sid::new(sid),
            from_service_id: "svc".into(),
            from_user_id: "alice".into(),
            to_service_id: "svc".into(),
            to_user_id: "bob".into(),
            media_type: "A".into(),
            app_data: None,
            setup_ms: 1_000,
            start_ms: None,
            srcip: "10.0.0.1".into(),
            dstip: String::new(),
            rc_idc: "JP".into(),
            interrupted_ms: 0,
            lost_since_ms: None,
            callee_device: None,
        }
    }

    fn wait_for(rx: &mut watch::Receiver<u64>, step: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while *rx.borrow_and_update() < step {
            assert!(std::time::Instant::now() < deadline, "step {step} not committed");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Steps are written in order and published one by one; their callbacks reach the
    /// delivery once, in order.
    #[test]
    fn steps_are_committed_in_order_and_their_callbacks_handed_on() {
        let dir = temp_dir("journal-order");
        let (tx, rx) = mpsc::channel();
        let journal = Journal::open(
            &Database::sqlite(&dir.join("db")),
            None,
            Box::new(move |rows| {
                let _ = tx.send(rows);
            }),
        )
        .expect("journal");
        let mut committed = journal.committed();
        for seq in 1..=3u64 {
            let mut batch = Batch::default();
            batch.live.push(("svc".into(), live(&format!("call-{seq}"))));
            batch.callbacks.push(callback(&format!("k{seq}"), format!("q{seq}")));
            journal.submit(seq, batch);
        }
        journal.submit(4, Batch::default());
        wait_for(&mut committed, 4);
        let rows: Vec<CallbackRow> = rx.try_iter().flatten().collect();
        assert_eq!(rows.iter().map(|r| r.query.as_str()).collect::<Vec<_>>(), ["q1", "q2", "q3"]);
        assert!(rows.windows(2).all(|w| w[0].id < w[1].id));
        let n: i64 = rusqlite::Connection::open(dir.join("db"))
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM live_calls", [], |r| r.get(0)))
            .expect("count");
        assert_eq!(n, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A record's callback is queued once: written again by this node (a retry after a
    /// lost answer) it is handed on again under the same id; written by another node
    /// (closing the call twice) it is not queued again.
    #[test]
    fn a_records_callback_is_queued_once_whoever_writes_it() {
        let dir = temp_dir("journal-once");
        let path = dir.join("db");
        let mut db = CoreDb::open(&Database::sqlite(&path)).expect("db");
        let mut batch = Batch::default();
        batch.callbacks.push(NewCallback {
            cb_id: "call-x".into(),
            service_id: "svc".into(),
            kind: CallbackKind::Call,
            key: "x".into(),
            query: "q".into(),
            deadline_ms: None,
        });
        let first = db.commit(&batch, 1).expect("first");
        let again = db.commit(&batch, 2).expect("again");
        assert_eq!(
            again.iter().map(|r| r.id).collect::<Vec<_>>(),
            [first[0].id],
            "the same row, handed on again"
        );
        db.node = "other".into();
        assert!(db.commit(&batch, 3).expect("by another").is_empty(), "not queued by another node");
        let n = db.conn.query_opt("SELECT COUNT(*) FROM outbox", &[]).expect("count").expect("row").int(0);
        assert_eq!(n.expect("int"), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A node that another took a call over from (it was taken for dead) writes over
    /// nothing of it: neither its snapshot nor, when it ends the call, the live row; its
    /// record is the call's one if it comes first, ignored if not.
    #[test]
    fn a_node_writes_over_nothing_of_a_call_another_node_took_over() {
        let dir = temp_dir("journal-fence");
        let mut db = CoreDb::open(&Database::sqlite(&dir.join("db"))).expect("db");
        db.node = "n1".into();
        let mut first = Batch::default();
        first.push(Entry::LiveCall(live("s1")));
        db.commit(&first, 1).expect("n1 writes its call");
        db.conn.exec("UPDATE live_calls SET node = 'n2'", &[]).expect("n2 claims it");
        let mut changed = live("s1");
        changed.srcip = "10.9.9.9".into();
        let mut zombie = Batch::default();
        zombie.push(Entry::LiveCall(changed.clone()));
        db.commit(&zombie, 2).expect("n1 writes again");
        let mut ended = Batch::default();
        let record = changed.record(5_000, DisconnectReason::Normal, DisconnectSource::Caller, None, None);
        ended.push(Entry::CallEnded { service_id: "svc".into(), record, deliver: false });
        db.commit(&ended, 3).expect("n1 ends it");
        let row =
            db.conn.query_opt("SELECT node, snapshot FROM live_calls", &[]).expect("q").expect("still live");
        assert_eq!(row.text(0).expect("node"), "n2");
        assert!(!row.text(1).expect("snapshot").contains("10.9.9.9"), "n2's snapshot stands");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A full disk (SQLite's SQLITE_FULL, made here with `max_page_count`): the step is
    /// held, and with it the steps behind it, and written once there is room again;
    /// nothing is lost.
    #[test]
    fn a_full_disk_holds_the_step_until_it_can_be_written() {
        let dir = temp_dir("journal-full");
        let path = dir.join("switchboard.db");
        let mut db = CoreDb::open(&Database::sqlite(&path)).expect("db");
        db.conn.batch("CREATE TABLE filler (x BLOB)").expect("filler");
        for _ in 0..64 {
            db.conn.exec("INSERT INTO filler VALUES (zeroblob(32768))", &[]).expect("fill");
        }
        let pages =
            db.conn.query_opt("PRAGMA page_count", &[]).expect("pages").expect("a row").int(0).expect("int");
        db.conn.batch(&format!("PRAGMA max_page_count = {pages}")).expect("cap");
        let (tx, rx) = mpsc::channel();
        let journal = Journal::start(
            db,
            None,
            Box::new(move |rows| {
                let _ = tx.send(rows.len());
            }),
        )
        .expect("journal");
        let mut committed = journal.committed();
        let mut batch = Batch::default();
        batch.callbacks.push(callback("x", "q".repeat(300_000)));
        journal.submit(1, batch);
        journal.submit(2, Batch::default());
        assert!(rx.recv_timeout(Duration::from_millis(700)).is_err(), "released before it was written");
        assert_eq!(*committed.borrow_and_update(), 0, "nothing published");
        assert!(!journal.healthy());
        // Room again: another connection frees pages, as an operator frees disk space.
        let other = rusqlite::Connection::open(&path).expect("second connection");
        other.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
        other.execute("DELETE FROM filler", []).expect("free pages");
        assert_eq!(rx.recv_timeout(Duration::from_secs(15)).expect("written and released"), 1);
        wait_for(&mut committed, 2);
        assert!(journal.healthy());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
