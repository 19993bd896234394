//! The schema and its migrations, numbered and applied once each, in order, in a
//! transaction each, and written down in `schema_migrations`. Several nodes starting at
//! once against one PostgreSQL take turns (an advisory lock); in SQLite the write lock
//! does the same. A database made before migrations existed (SQLite, by a server of an
//! earlier version) already has migration 1's tables, which it creates only if absent.

use super::db::{vals, Conn, Place};
use super::StoreError;

/// A step of the schema: its number and its statements for each engine.
struct Migration {
    version: i64,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, sqlite: V1_SQLITE, postgres: V1_POSTGRES },
    // Nodes: who owns each live call and room, who holds each pending callback and
    // until when (a lease another node takes over once it runs out).
    Migration { version: 2, sqlite: V2, postgres: V2 },
    // A record's callback is queued once, whoever closes its call (the node that ran it,
    // or the node that closes what a silent node left); pushes may repeat (an invitee
    // invited again).
    Migration { version: 3, sqlite: V3, postgres: V3 },
];

/// The newest schema version this build knows.
pub const LATEST: i64 = 3;

/// The `pg_advisory_lock` key migrations hold ("sbschema").
const LOCK_KEY: i64 = 0x7362_7363_6865_6d61;

/// Opens a connection to the database at `place`, its schema brought up to date.
pub(super) fn open(place: &Place) -> Result<Conn, StoreError> {
    let mut conn = Conn::connect(place)?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Brings the schema up to date.
fn migrate(conn: &mut Conn) -> Result<(), StoreError> {
    let postgres = conn.is_postgres();
    if postgres {
        conn.exec("SELECT pg_advisory_lock($1)", vals![LOCK_KEY])?;
    } else {
        // WAL: readers (the REST queries) do not wait for the journal's writes.
        conn.batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    }
    let done = apply(conn, postgres);
    if postgres {
        let _ = conn.exec("SELECT pg_advisory_unlock($1)", vals![LOCK_KEY]);
    }
    done
}

fn apply(conn: &mut Conn, postgres: bool) -> Result<(), StoreError> {
    conn.batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
    )?;
    let current = conn
        .query_opt("SELECT MAX(version) FROM schema_migrations", &[])?
        .map(|r| r.opt_int(0))
        .transpose()?
        .flatten()
        .unwrap_or(0);
    if current > LATEST {
        return Err(StoreError::Config(format!(
            "the database's schema is version {current}, newer than this server's ({LATEST}): run the newer server"
        )));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        conn.transaction(|c| {
            // Another process (SQLite has no advisory lock) may have got here first.
            if c.query_opt("SELECT version FROM schema_migrations WHERE version = $1", vals![m.version])?
                .is_some()
            {
                return Ok(());
            }
            c.batch(if postgres { m.postgres } else { m.sqlite })?;
            c.exec(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)",
                vals![m.version, crate::clock::now_ms()],
            )?;
            tracing::info!(version = m.version, "database schema migrated");
            Ok(())
        })?;
    }
    Ok(())
}

/// The base schema, in the SQL both engines take (SQLite reads `BIGINT` as an integer);
/// only the outbox's row ID differs: SQLite's rowid alias, PostgreSQL's identity. Its
/// `IF NOT EXISTS` lets an SQLite file made before migrations keep its tables.
macro_rules! v1 {
    ($outbox_id:literal) => {
        concat!(
            "
CREATE TABLE IF NOT EXISTS call_records (
    sid TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    from_user_id TEXT NOT NULL,
    to_user_id TEXT NOT NULL,
    setup_time BIGINT NOT NULL,
    end_time BIGINT NOT NULL,
    disconnect_reason BIGINT NOT NULL,
    record_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS call_records_by_time ON call_records (service_id, setup_time, sid);
CREATE TABLE IF NOT EXISTS group_call_records (
    call_id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    caller_id TEXT NOT NULL,
    setup_time BIGINT NOT NULL,
    end_time BIGINT NOT NULL,
    end_reason BIGINT NOT NULL,
    record_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS group_call_members (
    call_id TEXT NOT NULL,
    service_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    setup_time BIGINT NOT NULL,
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
    id ",
            $outbox_id,
            ",
    cb_id TEXT NOT NULL,
    service_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    query TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_ms BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    delivered_ms BIGINT,
    deadline_ms BIGINT,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox (state, id);
CREATE INDEX IF NOT EXISTS outbox_by_service ON outbox (service_id, state, id);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BIGINT NOT NULL);
"
        )
    };
}

const V1_SQLITE: &str = v1!("INTEGER PRIMARY KEY AUTOINCREMENT");
const V1_POSTGRES: &str = v1!("BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY");

const V2: &str = "
ALTER TABLE live_calls ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE live_rooms ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE live_group_calls ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN lease_node TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN lease_until_ms BIGINT NOT NULL DEFAULT 0;
";

const V3: &str = "
DELETE FROM outbox WHERE kind <> 'notify'
    AND id NOT IN (SELECT MIN(id) FROM outbox WHERE kind <> 'notify' GROUP BY cb_id);
CREATE UNIQUE INDEX outbox_once ON outbox (cb_id) WHERE kind <> 'notify';
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::temp_dir;

    /// A database of a version before migrations (its tables, no `schema_migrations`)
    /// is brought up to date and keeps its rows; opening it again changes nothing.
    #[test]
    fn an_older_sqlite_database_is_migrated_and_keeps_its_rows() {
        let dir = temp_dir("schema-old");
        let path = dir.join("switchboard.db");
        {
            let old = rusqlite::Connection::open(&path).expect("old db");
            old.execute_batch(V1_SQLITE).expect("old schema");
            old.execute(
                "INSERT INTO outbox (cb_id, service_id, kind, key, query, state, created_ms, next_attempt_ms)
                 VALUES ('call-x', 'svc', 'call', 'x', 'q', 'pending', 1, 1)",
                [],
            )
            .expect("old row");
        }
        let place = Place::Sqlite(path.clone());
        let mut conn = open(&place).expect("migrated");
        let row = conn
            .query_opt("SELECT cb_id, lease_node, lease_until_ms FROM outbox", &[])
            .expect("query")
            .expect("the old row");
        assert_eq!(
            (row.text(0).unwrap(), row.text(1).unwrap(), row.int(2).unwrap()),
            ("call-x".into(), String::new(), 0)
        );
        let versions = |c: &mut Conn| {
            c.query("SELECT version FROM schema_migrations ORDER BY version", &[]).expect("versions").len()
        };
        assert_eq!(versions(&mut conn), LATEST as usize);
        drop(conn);
        let mut again = open(&place).expect("opened again");
        assert_eq!(versions(&mut again), LATEST as usize, "nothing applied twice");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
