//! The database (SQLite, WAL): call records, live call and room snapshots, and the
//! callback outbox. The record types it keeps are [`crate::records`]'; this module only
//! keeps them.
//!
//! Two writers with one job each. The [`journal`] thread commits what each step of the
//! core decided (snapshots, records, new callbacks) in one transaction, steps grouped,
//! and publishes how far it got: a frame that a step sent goes out only once that step
//! is on disk. The [`queries`] thread ([`Store`]) records delivery progress and answers
//! the REST API; losing its last writes in a crash only means a callback is delivered
//! again (at least once). At start, [`recovery`] puts the database right after a crash.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::records::{CallbackKind, CallbackRow};

pub mod journal;
pub mod queries;
pub mod recovery;

pub use journal::{CoreDb, DiskGuard, Journal};
pub use queries::{RecordQuery, Store};
pub use recovery::{recover, Recovery, Wants};

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
CREATE TABLE IF NOT EXISTS group_call_records (
    call_id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    caller_id TEXT NOT NULL,
    setup_time INTEGER NOT NULL,
    end_time INTEGER NOT NULL,
    end_reason INTEGER NOT NULL,
    record_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS group_call_members (
    call_id TEXT NOT NULL,
    service_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    setup_time INTEGER NOT NULL,
    PRIMARY KEY (call_id, user_id)
);
CREATE INDEX IF NOT EXISTS group_call_members_by_user ON group_call_members (service_id, user_id, setup_time);
CREATE INDEX IF NOT EXISTS call_records_by_from ON call_records (service_id, from_user_id, setup_time);
CREATE INDEX IF NOT EXISTS call_records_by_to ON call_records (service_id, to_user_id, setup_time);
CREATE TABLE IF NOT EXISTS live_group_calls (
    call_id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    snapshot TEXT NOT NULL
);
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

fn open_conn(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

fn row_to_callback(r: &rusqlite::Row<'_>) -> rusqlite::Result<CallbackRow> {
    let kind: String = r.get("kind")?;
    Ok(CallbackRow {
        id: r.get("id")?,
        cb_id: r.get("cb_id")?,
        service_id: r.get("service_id")?,
        kind: CallbackKind::parse(&kind).unwrap_or(CallbackKind::Call),
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

#[cfg(test)]
pub(crate) mod testing {
    /// A fresh directory for a test's database.
    pub fn temp_dir(tag: &str) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("switchboard-store-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
