//! The database (SQLite, WAL): call records, live-call snapshots and the callback
//! outbox.
//!
//! Two writers with one job each. The core task owns a [`CoreDb`] and commits what a
//! step of the call core decided (snapshots, records, new callbacks) in one
//! transaction *before* anyone is told, so a decided callback survives a crash. The
//! [`Store`] thread records delivery progress and answers queries; losing its last
//! writes in a crash only means a callback is delivered again (at least once).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use switchboard_protocol::record::CallRecord;
use switchboard_protocol::{DisconnectReason, DisconnectSource};
use tokio::sync::oneshot;

use crate::call::LiveCall;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored snapshot could not be read.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The store thread is gone.
    #[error("store is closed")]
    Closed,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
CREATE TABLE IF NOT EXISTS call_records (
    sid TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    from_user_id TEXT NOT NULL,
    to_user_id TEXT NOT NULL,
    setup_time INTEGER NOT NULL,
    end_time INTEGER NOT NULL,
    disconnect_reason INTEGER NOT NULL,
    record_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS call_records_by_time ON call_records (service_id, setup_time, sid);
CREATE TABLE IF NOT EXISTS live_rooms (
    sid TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    snapshot TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS live_calls (
    sid TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    snapshot TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cb_id TEXT NOT NULL,
    service_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    query TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    delivered_ms INTEGER,
    deadline_ms INTEGER,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox (state, id);
CREATE INDEX IF NOT EXISTS outbox_by_service ON outbox (service_id, state, id);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
";

/// What a callback is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// notify_cb.
    Notify,
    /// on_call_evt_cb.
    Call,
    /// on_gcall_evt_cb.
    Gcall,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Notify => "notify",
            Kind::Call => "call",
            Kind::Gcall => "gcall",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "notify" => Some(Kind::Notify),
            "call" => Some(Kind::Call),
            "gcall" => Some(Kind::Gcall),
            _ => None,
        }
    }
}

/// A callback as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = Callback)]
pub struct CallbackRow {
    /// Row ID (the REST API's `{id}`).
    pub id: i64,
    /// `X-Switchboard-Id`: the same on every attempt.
    pub cb_id: String,
    /// The service it goes to.
    pub service_id: String,
    /// Which callback URL.
    pub kind: Kind,
    /// Ordering key: callbacks with the same key are delivered in order (the sid).
    pub key: String,
    /// The query string, exactly as sent.
    pub query: String,
    /// `pending`, `delivered`, `failed` (gave up) or `dropped` (no longer wanted).
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Queued at, epoch ms.
    pub created_ms: u64,
    /// Next attempt, epoch ms.
    pub next_attempt_ms: u64,
    /// Delivered at, epoch ms.
    pub delivered_ms: Option<u64>,
    /// notify_cb only: give up (PUSH_ERROR) after this, epoch ms.
    pub deadline_ms: Option<u64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

fn row_to_callback(r: &rusqlite::Row<'_>) -> rusqlite::Result<CallbackRow> {
    let kind: String = r.get("kind")?;
    Ok(CallbackRow {
        id: r.get("id")?,
        cb_id: r.get("cb_id")?,
        service_id: r.get("service_id")?,
        kind: Kind::parse(&kind).unwrap_or(Kind::Call),
        key: r.get("key")?,
        query: r.get("query")?,
        state: r.get("state")?,
        attempts: r.get("attempts")?,
        created_ms: r.get::<_, i64>("created_ms")? as u64,
        next_attempt_ms: r.get::<_, i64>("next_attempt_ms")? as u64,
        delivered_ms: r.get::<_, Option<i64>>("delivered_ms")?.map(|v| v as u64),
        deadline_ms: r.get::<_, Option<i64>>("deadline_ms")?.map(|v| v as u64),
        last_error: r.get("last_error")?,
    })
}

/// A callback decided by the core, to be queued.
#[derive(Debug, Clone)]
pub struct NewCallback {
    /// `X-Switchboard-Id`.
    pub cb_id: String,
    /// The service.
    pub service_id: String,
    /// Which URL.
    pub kind: Kind,
    /// Ordering key.
    pub key: String,
    /// Query string.
    pub query: String,
    /// notify_cb deadline.
    pub deadline_ms: Option<u64>,
}

/// What one step of the core decided.
#[derive(Debug, Default)]
pub struct Batch {
    /// Live-call snapshots to keep, by caller service.
    pub live: Vec<(String, LiveCall)>,
    /// Ended calls' records, by caller service (their snapshots go).
    pub records: Vec<(String, CallRecord)>,
    /// Callbacks to queue.
    pub callbacks: Vec<NewCallback>,
    /// Live-room snapshots to keep (written before `rooms_gone`).
    pub live_rooms: Vec<crate::room::LiveRoom>,
    /// Rooms that ended: their snapshots go.
    pub rooms_gone: Vec<String>,
}

impl Batch {
    /// Adds an ended call's record, and its on_call_evt_cb when `deliver`.
    pub fn add_record(&mut self, service_id: String, record: CallRecord, deliver: bool) {
        if deliver {
            self.callbacks.push(NewCallback {
                cb_id: format!("call-{}", record.sid),
                service_id: service_id.clone(),
                kind: Kind::Call,
                key: record.sid.to_string(),
                query: record.to_query(),
                deadline_ms: None,
            });
        }
        self.records.push((service_id, record));
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
            && self.records.is_empty()
            && self.callbacks.is_empty()
            && self.live_rooms.is_empty()
            && self.rooms_gone.is_empty()
    }
}

fn open_conn(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// The core task's connection: commits each step's decisions atomically.
pub struct CoreDb {
    conn: Connection,
}

impl CoreDb {
    /// Opens the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self { conn: open_conn(path)? })
    }

    /// Writes a batch in one transaction; returns the new callbacks as stored rows.
    pub fn commit(&mut self, batch: &Batch, now_ms: u64) -> Result<Vec<CallbackRow>, StoreError> {
        Ok(self.commit_steps(std::iter::once(batch), now_ms)?.pop().unwrap_or_default())
    }

    /// Writes several batches in one transaction; returns each one's stored callbacks.
    pub fn commit_steps<'a>(
        &mut self,
        batches: impl Iterator<Item = &'a Batch>,
        now_ms: u64,
    ) -> Result<Vec<Vec<CallbackRow>>, StoreError> {
        let txn = self.conn.transaction()?;
        let mut all = Vec::new();
        {
            let mut live = txn.prepare_cached(
                "INSERT OR REPLACE INTO live_calls (sid, service_id, snapshot) VALUES (?1, ?2, ?3)",
            )?;
            let mut record = txn.prepare_cached(
                "INSERT OR IGNORE INTO call_records
                 (sid, service_id, from_user_id, to_user_id, setup_time, end_time, disconnect_reason, record_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut gone = txn.prepare_cached("DELETE FROM live_calls WHERE sid = ?1")?;
            let mut room = txn.prepare_cached(
                "INSERT OR REPLACE INTO live_rooms (sid, service_id, snapshot) VALUES (?1, ?2, ?3)",
            )?;
            let mut room_gone = txn.prepare_cached("DELETE FROM live_rooms WHERE sid = ?1")?;
            let mut cb = txn.prepare_cached(
                "INSERT INTO outbox (cb_id, service_id, kind, key, query, state, attempts, created_ms, next_attempt_ms, deadline_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6, ?7)",
            )?;
            for batch in batches {
                for r in &batch.live_rooms {
                    let json = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    room.execute(params![r.sid, r.service_id, json])?;
                }
                for sid in &batch.rooms_gone {
                    room_gone.execute(params![sid])?;
                }
                let mut rows = Vec::with_capacity(batch.callbacks.len());
                for (service_id, snap) in &batch.live {
                    let json = serde_json::to_string(snap).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    live.execute(params![snap.sid, service_id, json])?;
                }
                for (service_id, r) in &batch.records {
                    record.execute(params![
                        r.sid.as_str(),
                        service_id,
                        r.from_user_id,
                        r.to_user_id,
                        r.setup_time as i64,
                        r.end_time as i64,
                        r.disconnect_reason,
                        r.to_json().to_string()
                    ])?;
                    gone.execute(params![r.sid.as_str()])?;
                }
                for c in &batch.callbacks {
                    cb.execute(params![
                        c.cb_id,
                        c.service_id,
                        c.kind.as_str(),
                        c.key,
                        c.query,
                        now_ms as i64,
                        c.deadline_ms.map(|d| d as i64)
                    ])?;
                    rows.push(CallbackRow {
                        id: txn.last_insert_rowid(),
                        cb_id: c.cb_id.clone(),
                        service_id: c.service_id.clone(),
                        kind: c.kind,
                        key: c.key.clone(),
                        query: c.query.clone(),
                        state: "pending".into(),
                        attempts: 0,
                        created_ms: now_ms,
                        next_attempt_ms: now_ms,
                        delivered_ms: None,
                        deadline_ms: c.deadline_ms,
                        last_error: None,
                    });
                }
                all.push(rows);
            }
        }
        txn.commit()?;
        Ok(all)
    }
}

/// Work to run once a step's batch is on disk, with the step's stored callbacks
/// (empty if the write failed).
pub type AfterCommit = Box<dyn FnOnce(Vec<CallbackRow>) + Send>;

/// The journal thread: commits the core's steps in groups (one transaction for
/// every step waiting), then runs each step's continuation in order. The core task
/// never waits on disk, and nothing a step decided is announced before it is stored.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<(Batch, AfterCommit)>,
    healthy: Arc<AtomicBool>,
    room: Arc<AtomicBool>,
}

/// Keeps a reserve of free disk space for the records of calls already live: below
/// `min_free` bytes on the data directory's filesystem, nothing new starts. Without
/// it a full disk would surface late (SQLite reuses its WAL's space), mid-call.
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

/// A write that failed for a reason that may pass (a full disk, an IO error, a lock):
/// worth trying again rather than giving the step up.
fn may_pass(e: &StoreError) -> bool {
    matches!(e, StoreError::Sqlite(e) if sqlite_may_pass(e))
}

fn sqlite_may_pass(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode as C;
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, C::DiskFull | C::SystemIoFailure | C::DatabaseBusy | C::DatabaseLocked
                | C::CannotOpen | C::ReadOnly | C::OutOfMemory)
    )
}

/// Retries of a failing write wait this long at first, doubling up to the maximum.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl Journal {
    /// Opens the database at `path` and starts the journal thread, with `disk`
    /// guarding the free space of its filesystem.
    pub fn open(path: &Path, disk: Option<DiskGuard>) -> Result<Self, StoreError> {
        Self::start(CoreDb::open(path)?, disk)
    }

    /// Whether new calls may start: the last write succeeded and the disk has its
    /// reserve. While a write fails it is retried and the steps behind it (and their
    /// frames) wait.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && self.room.load(Ordering::Relaxed)
    }

    /// Starts the journal thread on `db`. A step's frames are released only once the
    /// step is on disk: a write that fails for a reason that may pass (disk full, IO
    /// error) is retried, with back-off, until it succeeds; meanwhile [`Journal::healthy`]
    /// is false (the server refuses new calls with SERVICE_BUSY) and later steps wait.
    pub fn start(mut db: CoreDb, disk: Option<DiskGuard>) -> Result<Self, StoreError> {
        let healthy = Arc::new(AtomicBool::new(true));
        let room = Arc::new(AtomicBool::new(true));
        let flag = healthy.clone();
        let has_room = room.clone();
        if let Some(d) = &disk {
            d.check(&room);
        }
        let (tx, rx) = mpsc::channel::<(Batch, AfterCommit)>();
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
                    let mut wait = RETRY_FIRST;
                    let results = loop {
                        let now = crate::clock::now_ms();
                        let results = if steps.iter().all(|(b, _)| b.is_empty()) {
                            Ok(vec![Vec::new(); steps.len()])
                        } else {
                            db.commit_steps(steps.iter().map(|(b, _)| b), now)
                        };
                        match results {
                            Ok(r) => {
                                if !flag.swap(true, Ordering::Relaxed) {
                                    tracing::warn!("database writes work again; held steps released");
                                }
                                break r;
                            }
                            Err(e) if may_pass(&e) => {
                                if flag.swap(false, Ordering::Relaxed) {
                                    tracing::error!(error = %e, steps = steps.len(), "database write failed; retrying, new calls are refused until it works");
                                }
                                std::thread::sleep(wait);
                                wait = (wait * 2).min(RETRY_MAX);
                            }
                            Err(e) => {
                                // Not the disk but the data: retrying cannot help.
                                tracing::error!(error = %e, steps = steps.len(), "database write refused; these steps' records and callbacks are lost");
                                break vec![Vec::new(); steps.len()];
                            }
                        }
                    };
                    for ((_, then), rows) in steps.drain(..).zip(results) {
                        then(rows);
                    }
                }
            })
            .map_err(|_| StoreError::Closed)?;
        Ok(Self { tx, healthy, room })
    }

    /// Queues a step: `batch` is written, then `then` runs with its callbacks.
    pub fn submit(&self, batch: Batch, then: AfterCommit) {
        if let Err(mpsc::SendError((_, then))) = self.tx.send((batch, then)) {
            tracing::error!("journal thread is gone");
            then(Vec::new());
        }
    }
}

/// What a restart found and put right.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Calls that were live when the server died, now closed with SERVER_INTERNAL_ERROR.
    pub closed_calls: Vec<String>,
    /// Rooms that were live, now closed (every participant out with
    /// SERVER_INTERNAL_ERROR).
    pub closed_rooms: Vec<String>,
    /// Pending callbacks to deliver, in queue order.
    pub pending: Vec<CallbackRow>,
    /// notify_cb requests dropped because their calls are gone.
    pub dropped_notifies: usize,
}

/// Puts the database right after a stop or crash: live calls are closed with
/// SERVER_INTERNAL_ERROR (source cloud_server) at the last moment the server was
/// known alive, their records are queued, and stale notify_cb requests are dropped.
/// `wants_record(service_id)` says whether the service takes on_call_evt_cb.
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
    let mut batch = Batch::default();
    {
        let mut stmt = db.conn.prepare("SELECT service_id, snapshot FROM live_calls")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (service_id, json) = row?;
            let live: LiveCall =
                serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let end = end_ms.max(live.setup_ms);
            let record =
                live.record(end, DisconnectReason::ServerInternalError, DisconnectSource::CloudServer, None);
            let deliver = wants_record(&service_id);
            batch.add_record(service_id, record, deliver);
        }
    }
    let closed_calls = batch.records.iter().map(|(_, r)| r.sid.to_string()).collect();
    // Rooms live at the crash end there and then, for everyone in them.
    let mut closed_rooms = Vec::new();
    {
        let mut stmt = db.conn.prepare("SELECT snapshot FROM live_rooms")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        for json in rows {
            let room: crate::room::LiveRoom =
                serde_json::from_str(&json?).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if wants_gcall(&room.service_id) {
                let end = end_ms.max(room.setup_ms);
                for (seq, record) in
                    room.closing(end, DisconnectReason::ServerInternalError, DisconnectSource::CloudServer)
                {
                    batch.callbacks.push(NewCallback {
                        cb_id: format!("gcall-{}-{seq}", room.sid),
                        service_id: room.service_id.clone(),
                        kind: Kind::Gcall,
                        key: room.sid.clone(),
                        query: record.to_query(),
                        deadline_ms: None,
                    });
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
    pub cursor: Option<(u64, String)>,
}

enum Cmd {
    Delivered { id: i64, at_ms: u64, attempts: u32 },
    Retry { id: i64, attempts: u32, next_ms: u64, error: String },
    GaveUp { id: i64, attempts: u32, error: String, dropped: bool },
    GetRecord { service_id: String, sid: String, reply: oneshot::Sender<Option<serde_json::Value>> },
    ListRecords { service_id: String, q: RecordQuery, reply: oneshot::Sender<Vec<serde_json::Value>> },
    ListCallbacks { service_id: String, state: String, limit: u32, reply: oneshot::Sender<Vec<CallbackRow>> },
    Retrigger { service_id: String, id: i64, now_ms: u64, reply: oneshot::Sender<Option<CallbackRow>> },
    Count { reply: oneshot::Sender<u64> },
}

/// Handle to the store thread.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Cmd>,
}

/// How long delivered and dropped callbacks are kept.
const KEEP_DONE_MS: u64 = 7 * 24 * 3600 * 1000;

impl Store {
    /// Opens the database at `path` and starts the store thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = open_conn(path)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("switchboard-store".into())
            .spawn(move || run(conn, rx))
            .map_err(|_| StoreError::Closed)?;
        Ok(Self { tx })
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
    pub async fn get(&self, service_id: &str, sid: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.ask(|reply| Cmd::GetRecord { service_id: service_id.into(), sid: sid.into(), reply }).await
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

fn run(mut conn: Connection, rx: mpsc::Receiver<Cmd>) {
    let mut last_prune = 0u64;
    // Delivery progress whose write failed for a reason that may pass (a full disk):
    // written with the next batch, so a delivered callback is not sent again after a
    // restart.
    let mut held: Vec<Cmd> = Vec::new();
    let mut wait = RETRY_FIRST;
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
        match apply(&mut conn, batch, now) {
            Ok(()) => {
                if wait != RETRY_FIRST {
                    tracing::warn!("delivery progress written again");
                }
                wait = RETRY_FIRST;
            }
            Err(e) if sqlite_may_pass(&e) => {
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
            let cutoff = now.saturating_sub(KEEP_DONE_MS) as i64;
            if let Err(e) = conn.execute(
                "DELETE FROM outbox WHERE state IN ('delivered', 'dropped') AND created_ms < ?1",
                params![cutoff],
            ) {
                tracing::warn!(error = %e, "pruning the outbox failed");
            }
        }
    }
}

fn apply(conn: &mut Connection, batch: Vec<Cmd>, now: u64) -> Result<(), rusqlite::Error> {
    let txn = conn.transaction()?;
    // The heartbeat that recovery uses as the end time of calls cut by a crash.
    txn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('alive_ms', ?1)", params![now as i64])?;
    let mut queries = Vec::new();
    for cmd in batch {
        match cmd {
            Cmd::Delivered { id, at_ms, attempts } => {
                txn.execute(
                    "UPDATE outbox SET state = 'delivered', delivered_ms = ?2, attempts = ?3, last_error = NULL WHERE id = ?1",
                    params![id, at_ms as i64, attempts],
                )?;
            }
            Cmd::Retry { id, attempts, next_ms, error } => {
                txn.execute(
                    "UPDATE outbox SET attempts = ?2, next_attempt_ms = ?3, last_error = ?4 WHERE id = ?1 AND state = 'pending'",
                    params![id, attempts, next_ms as i64, error],
                )?;
            }
            Cmd::GaveUp { id, attempts, error, dropped } => {
                let state = if dropped { "dropped" } else { "failed" };
                txn.execute(
                    "UPDATE outbox SET state = ?2, attempts = ?3, last_error = ?4 WHERE id = ?1",
                    params![id, state, attempts, error],
                )?;
            }
            other => queries.push(other),
        }
    }
    txn.commit()?;
    for q in queries {
        answer(conn, q)?;
    }
    Ok(())
}

fn answer(conn: &Connection, cmd: Cmd) -> Result<(), rusqlite::Error> {
    let parse = |s: String| serde_json::from_str::<serde_json::Value>(&s).unwrap_or(serde_json::Value::Null);
    match cmd {
        Cmd::GetRecord { service_id, sid, reply } => {
            let v = conn
                .query_row(
                    "SELECT record_json FROM call_records WHERE sid = ?1 AND service_id = ?2",
                    params![sid, service_id],
                    |r| r.get::<_, String>(0),
                )
                .optional()?;
            let _ = reply.send(v.map(parse));
        }
        Cmd::ListRecords { service_id, q, reply } => {
            let (cur_t, cur_sid) = q.cursor.unwrap_or((i64::MAX as u64, String::new()));
            let mut stmt = conn.prepare_cached(
                "SELECT record_json FROM call_records
                 WHERE service_id = ?1
                   AND (?2 IS NULL OR from_user_id = ?2 OR to_user_id = ?2)
                   AND setup_time >= ?3 AND setup_time < ?4
                   AND (setup_time < ?5 OR (setup_time = ?5 AND (?6 = '' OR sid < ?6)))
                 ORDER BY setup_time DESC, sid DESC LIMIT ?7",
            )?;
            let rows = stmt.query_map(
                params![
                    service_id,
                    q.user_id,
                    q.from.unwrap_or(0) as i64,
                    q.to.map_or(i64::MAX, |t| t as i64),
                    cur_t.min(i64::MAX as u64) as i64,
                    cur_sid,
                    q.limit
                ],
                |r| r.get::<_, String>(0),
            )?;
            let list = rows.collect::<Result<Vec<_>, _>>()?.into_iter().map(parse).collect();
            let _ = reply.send(list);
        }
        Cmd::ListCallbacks { service_id, state, limit, reply } => {
            let mut stmt = conn.prepare_cached(
                "SELECT * FROM outbox WHERE service_id = ?1 AND state = ?2 ORDER BY id LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![service_id, state, limit], row_to_callback)?;
            let _ = reply.send(rows.collect::<Result<Vec<_>, _>>()?);
        }
        Cmd::Retrigger { service_id, id, now_ms, reply } => {
            let changed = conn.execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_ms = ?3, created_ms = ?3
                 WHERE id = ?1 AND service_id = ?2 AND state = 'failed' AND kind != 'notify'",
                params![id, service_id, now_ms as i64],
            )?;
            let row = if changed == 1 {
                conn.query_row("SELECT * FROM outbox WHERE id = ?1", params![id], row_to_callback)
                    .optional()?
            } else {
                None
            };
            let _ = reply.send(row);
        }
        Cmd::Count { reply } => {
            let n: i64 = conn.query_row("SELECT COUNT(*) FROM call_records", [], |r| r.get(0))?;
            let _ = reply.send(n as u64);
        }
        Cmd::Delivered { .. } | Cmd::Retry { .. } | Cmd::GaveUp { .. } => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk (SQLite's SQLITE_FULL, made here with `max_page_count`): the step is
    /// held, with its frames, and written once there is room again; nothing is lost.
    #[test]
    fn a_full_disk_holds_the_step_until_it_can_be_written() {
        let dir = std::env::temp_dir().join(format!("switchboard-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("switchboard.db");
        let db = CoreDb::open(&path).expect("db");
        db.conn.execute_batch("CREATE TABLE filler (x BLOB)").expect("filler");
        for _ in 0..64 {
            db.conn.execute("INSERT INTO filler VALUES (zeroblob(32768))", []).expect("fill");
        }
        let pages: i64 = db.conn.query_row("PRAGMA page_count", [], |r| r.get(0)).expect("pages");
        db.conn.pragma_update(None, "max_page_count", pages).expect("cap");
        let journal = Journal::start(db, None).expect("journal");
        let (tx, rx) = mpsc::channel();
        let mut batch = Batch::default();
        batch.callbacks.push(NewCallback {
            cb_id: "gcall-x-1".into(),
            service_id: "svc".into(),
            kind: Kind::Gcall,
            key: "x".into(),
            query: "q".repeat(300_000),
            deadline_ms: None,
        });
        journal.submit(
            batch,
            Box::new(move |rows| {
                let _ = tx.send(rows.len());
            }),
        );
        assert!(rx.recv_timeout(Duration::from_millis(700)).is_err(), "released before it was written");
        assert!(!journal.healthy());
        // Room again: another connection frees pages, as an operator frees disk space.
        let other = Connection::open(&path).expect("second connection");
        other.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
        other.execute("DELETE FROM filler", []).expect("free pages");
        assert_eq!(rx.recv_timeout(Duration::from_secs(15)).expect("written and released"), 1);
        assert!(journal.healthy());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
