//! The database (SQLite with WAL by default, PostgreSQL for several nodes, one interface:
//! [`db`]): call records, live call and room snapshots, and the callback outbox. The
//! record types it keeps are [`crate::records`]'; this module only keeps them.
//!
//! Two writers with one job each. The [`journal`] thread commits what each step of the
//! core decided (snapshots, records, new callbacks) in one transaction, steps grouped,
//! and publishes how far it got: a frame that a step sent goes out only once that step
//! is on disk. The [`queries`] thread ([`Store`]) records delivery progress and answers
//! the REST API; losing its last writes in a crash only means a callback is delivered
//! again (at least once). At start, [`recovery`] puts the database right after a crash.

use std::time::Duration;

use crate::records::{CallbackKind, CallbackRow};

pub mod db;
pub mod journal;
pub mod queries;
pub mod recovery;
mod schema;

pub use db::{Database, Place};
pub use journal::{CoreDb, DiskGuard, Journal};
pub use queries::{Leases, RecordQuery, Store};
pub use recovery::{recover, Claimed, Recovery, Wants};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL said no, or could not be reached.
    #[error("postgres: {}", db::describe(.0))]
    Postgres(#[from] postgres::Error),
    /// The database is not one this server can use (its URL, its schema's version).
    #[error("database: {0}")]
    Config(String),
    /// A stored snapshot could not be read.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The store thread is gone.
    #[error("store is closed")]
    Closed,
    /// The connection to the database was lost in the middle of a transaction (which
    /// did not happen; it is tried again on a new one).
    #[error("database connection lost mid-transaction")]
    Lost,
}

impl StoreError {
    /// A write that failed for a reason that may pass (a full disk, an IO error, a lock,
    /// PostgreSQL restarting or out of reach): worth trying again rather than giving the
    /// step up.
    pub fn may_pass(&self) -> bool {
        match self {
            StoreError::Sqlite(e) => sqlite_may_pass(e),
            StoreError::Postgres(e) => db::postgres_may_pass(e),
            StoreError::Lost => true,
            StoreError::Config(_) | StoreError::Corrupt(_) | StoreError::Closed => false,
        }
    }
}

/// The columns of an outbox row, in [`row_to_callback`]'s order (a literal, for
/// `concat!`).
macro_rules! callback_columns {
    () => {
        "id, cb_id, service_id, kind, key, query, state, attempts, created_ms, next_attempt_ms, \
         delivered_ms, deadline_ms, last_error"
    };
}
pub(crate) use callback_columns;

fn row_to_callback(r: &db::Row) -> Result<CallbackRow, StoreError> {
    let kind = r.text(3)?;
    Ok(CallbackRow {
        id: r.int(0)?,
        cb_id: r.text(1)?,
        service_id: r.text(2)?,
        kind: CallbackKind::parse(&kind).unwrap_or(CallbackKind::Call),
        key: r.text(4)?,
        query: r.text(5)?,
        state: r.text(6)?,
        attempts: u32::try_from(r.int(7)?).unwrap_or(u32::MAX),
        created_ms: r.int(8)? as u64,
        next_attempt_ms: r.int(9)? as u64,
        delivered_ms: r.opt_int(10)?.map(|v| v as u64),
        deadline_ms: r.opt_int(11)?.map(|v| v as u64),
        last_error: r.opt_text(12)?,
    })
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

/// The meta key of a node's last sign of life (the end time of its calls cut by a crash).
fn alive_key(node: &str) -> String {
    if node.is_empty() {
        "alive_ms".into()
    } else {
        format!("alive_ms:{node}")
    }
}

/// Retries of a failing write wait this long at first, doubling up to the maximum.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

#[cfg(test)]
pub(crate) mod testing {
    /// Every service takes every callback.
    pub struct All;

    impl super::Wants for All {
        fn record(&self, _: &str) -> bool {
            true
        }
        fn gcall(&self, _: &str) -> bool {
            true
        }
        fn group_call(&self, _: &str) -> bool {
            true
        }
    }

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
