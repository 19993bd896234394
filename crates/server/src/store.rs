//! The database: call records in SQLite, written by one thread so that signaling
//! never waits on disk.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::{params, Connection, OptionalExtension};
use switchboard_protocol::record::CallRecord;
use tokio::sync::oneshot;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite said no.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The writer thread is gone.
    #[error("store is closed")]
    Closed,
}

enum Cmd {
    Record { service_id: String, record: Box<CallRecord> },
    Get { service_id: String, sid: String, reply: oneshot::Sender<Option<String>> },
    Count { reply: oneshot::Sender<u64> },
}

/// Handle to the database thread.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Cmd>,
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
    query TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS call_records_by_time ON call_records (service_id, setup_time);
";

impl Store {
    /// Opens (creating if needed) the database at `path` and starts its thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(SCHEMA)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("switchboard-store".into())
            .spawn(move || run(conn, rx))
            .map_err(|_| StoreError::Closed)?;
        Ok(Self { tx })
    }

    /// Queues a call record for writing.
    pub fn record(&self, service_id: &str, record: &CallRecord) {
        let cmd = Cmd::Record { service_id: service_id.to_string(), record: Box::new(record.clone()) };
        if self.tx.send(cmd).is_err() {
            tracing::error!(sid = %record.sid, "store is closed; call record not written");
        }
    }

    /// The stored record of a call of this service, as its callback query string.
    pub async fn get(&self, service_id: &str, sid: &str) -> Result<Option<String>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Get { service_id: service_id.into(), sid: sid.into(), reply })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// How many call records are stored (after every queued write).
    pub async fn count(&self) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Cmd::Count { reply }).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }
}

fn run(mut conn: Connection, rx: mpsc::Receiver<Cmd>) {
    while let Ok(first) = rx.recv() {
        // Batch whatever else is queued into one transaction.
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        if let Err(e) = apply(&mut conn, batch) {
            tracing::error!(error = %e, "store write failed");
        }
    }
}

fn apply(conn: &mut Connection, batch: Vec<Cmd>) -> Result<(), rusqlite::Error> {
    let txn = conn.transaction()?;
    let mut replies = Vec::new();
    {
        let mut insert = txn.prepare_cached(
            "INSERT OR REPLACE INTO call_records
             (sid, service_id, from_user_id, to_user_id, setup_time, end_time, disconnect_reason, query)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for cmd in batch {
            match cmd {
                Cmd::Record { service_id, record } => {
                    insert.execute(params![
                        record.sid,
                        service_id,
                        record.from_user_id,
                        record.to_user_id,
                        record.setup_time as i64,
                        record.end_time as i64,
                        record.disconnect_reason,
                        record.to_query()
                    ])?;
                }
                other => replies.push(other),
            }
        }
    }
    txn.commit()?;
    for cmd in replies {
        match cmd {
            Cmd::Get { service_id, sid, reply } => {
                let q = conn
                    .query_row(
                        "SELECT query FROM call_records WHERE sid = ?1 AND service_id = ?2",
                        params![sid, service_id],
                        |r| r.get::<_, String>(0),
                    )
                    .optional()?;
                let _ = reply.send(q);
            }
            Cmd::Count { reply } => {
                let n: i64 = conn.query_row("SELECT COUNT(*) FROM call_records", [], |r| r.get(0))?;
                let _ = reply.send(n as u64);
            }
            Cmd::Record { .. } => {}
        }
    }
    Ok(())
}
