//! One connection to the database, SQLite or PostgreSQL, behind one small interface, so
//! that the journal, the store thread and recovery say each thing once.
//!
//! Statements are written in the SQL both engines speak (`INSERT … ON CONFLICT`,
//! `RETURNING`, `CAST`), with PostgreSQL's numbered placeholders (`$1`), which SQLite
//! reads as `?1`. Values are integers, text or NULL ([`Val`]). A PostgreSQL connection
//! that breaks (a restart, a network cut) is opened again at the next statement; the
//! error in between is one that [`StoreError::may_pass`] says to retry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::StoreError;

/// Where the database is.
#[derive(Clone, PartialEq, Eq)]
pub enum Place {
    /// An SQLite file (the embedded default: one process).
    Sqlite(PathBuf),
    /// A PostgreSQL server, as a `postgres://user:password@host:port/db` URL or a
    /// `key=value` connection string (several nodes share it), and the CA file its TLS
    /// certificate chains to (with `sslmode=require`; default: the system's roots).
    Postgres(String, Option<PathBuf>),
}

impl std::fmt::Debug for Place {
    // The PostgreSQL URL may carry a password: only where it is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Sqlite(p) => write!(f, "Sqlite({})", p.display()),
            Place::Postgres(url, _) => match url.parse::<postgres::Config>() {
                Ok(c) => write!(f, "Postgres({:?}/{})", c.get_hosts(), c.get_dbname().unwrap_or("")),
                Err(_) => f.write_str("Postgres(?)"),
            },
        }
    }
}

/// The database of this node: where it is, and the node's name in it (the live calls
/// and rooms it owns and the callbacks it holds a lease on are marked with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    /// Where.
    pub place: Place,
    /// This node's name; empty for the one process of the embedded default.
    pub node: String,
    /// How long a node's claim on a pending callback lasts without being renewed: after
    /// a node dies, another one delivers its callbacks once this has passed.
    pub lease: Duration,
    /// How long a node may go without a heartbeat in the database before the others
    /// close the calls and rooms it left live (PostgreSQL only).
    pub node_timeout: Duration,
}

impl Database {
    /// The embedded default: an SQLite file, one node.
    pub fn sqlite(path: &Path) -> Self {
        Database {
            place: Place::Sqlite(path.to_path_buf()),
            node: String::new(),
            lease: DEFAULT_LEASE,
            node_timeout: DEFAULT_NODE_TIMEOUT,
        }
    }

    /// A PostgreSQL database shared by nodes, this one named `node`.
    pub fn postgres(url: &str, node: &str) -> Self {
        Database {
            place: Place::Postgres(url.into(), None),
            node: node.into(),
            lease: DEFAULT_LEASE,
            node_timeout: DEFAULT_NODE_TIMEOUT,
        }
    }
}

/// A callback lease's default length.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The default silence after which a node counts as gone.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(30);

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    /// NULL.
    Null,
    /// An integer (BIGINT in PostgreSQL, INTEGER in SQLite).
    Int(i64),
    /// Text.
    Text(String),
}

macro_rules! int_vals {
    ($($t:ty),*) => {$(
        impl From<$t> for Val {
            fn from(v: $t) -> Val {
                Val::Int(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_vals!(i64, i32, u8, u16, u32, u64);

impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.into())
    }
}

impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}

impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Text(v.clone())
    }
}

impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map_or(Val::Null, Into::into)
    }
}

/// The values of a statement: `vals![a, b, c]`.
macro_rules! vals {
    ($($v:expr),* $(,)?) => { &[$($crate::store::db::Val::from($v)),*] };
}
pub(crate) use vals;

/// A row of a result, its columns in the order the statement named them.
#[derive(Debug, Clone)]
pub struct Row(Vec<Val>);

impl Row {
    fn at(&self, i: usize) -> Result<&Val, StoreError> {
        self.0.get(i).ok_or_else(|| StoreError::Corrupt(format!("no column {i}")))
    }

    /// Column `i` as an integer.
    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_int(i)?.ok_or_else(|| StoreError::Corrupt(format!("column {i} is NULL")))
    }

    /// Column `i` as an integer, or NULL.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(*v)),
            Val::Text(t) => Err(StoreError::Corrupt(format!("column {i} is text: {t:.40}"))),
        }
    }

    /// Column `i` as text.
    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        self.opt_text(i)?.ok_or_else(|| StoreError::Corrupt(format!("column {i} is NULL")))
    }

    /// Column `i` as text, or NULL.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Text(t) => Ok(Some(t.clone())),
            Val::Int(v) => Err(StoreError::Corrupt(format!("column {i} is an integer: {v}"))),
        }
    }
}

/// One connection. See the module docs.
pub struct Conn {
    inner: Inner,
}

enum Inner {
    Sqlite(Sqlite),
    Postgres(Box<Postgres>),
}

struct Sqlite {
    conn: rusqlite::Connection,
    /// Statements as SQLite reads them (`?1` for `$1`), by their text's [`key`].
    sql: HashMap<(usize, usize), String>,
}

struct Postgres {
    config: postgres::Config,
    /// TLS, with `sslmode=require`.
    tls: Option<crate::backend_tls::PgTls>,
    client: Option<postgres::Client>,
    statements: HashMap<(usize, usize), postgres::Statement>,
    /// A transaction is open: a connection lost now is not opened again behind its back
    /// (the rest would run outside it); the transaction fails instead.
    in_transaction: bool,
}

impl Conn {
    /// Opens a connection (PostgreSQL's at its first statement). The schema is
    /// `schema::open`'s business.
    pub fn connect(place: &Place) -> Result<Conn, StoreError> {
        let inner = match place {
            Place::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path)?;
                conn.busy_timeout(Duration::from_secs(10))?;
                Inner::Sqlite(Sqlite { conn, sql: HashMap::new() })
            }
            Place::Postgres(url, ca_file) => {
                let mut config: postgres::Config =
                    url.parse().map_err(|e| StoreError::Config(format!("database_url: {e}")))?;
                // `require` is TLS with the certificate checked (libpq's `verify-full`);
                // `prefer` (the default) stays plain, as before TLS was offered.
                let tls = match config.get_ssl_mode() {
                    postgres::config::SslMode::Require => Some(
                        crate::backend_tls::PgTls::new(ca_file.as_deref())
                            .map_err(|e| StoreError::Config(format!("database TLS: {e}")))?,
                    ),
                    _ => None,
                };
                if config.get_connect_timeout().is_none() {
                    config.connect_timeout(Duration::from_secs(3));
                }
                // A server that vanished without a word (a cut cable) is noticed within
                // seconds, also mid-statement: unacknowledged data fails the connection.
                config
                    .keepalives(true)
                    .keepalives_idle(Duration::from_secs(5))
                    .keepalives_interval(Duration::from_secs(2))
                    .keepalives_retries(3)
                    .tcp_user_timeout(Duration::from_secs(10));
                config.application_name("switchboard");
                Inner::Postgres(Box::new(Postgres {
                    config,
                    tls,
                    client: None,
                    statements: HashMap::new(),
                    in_transaction: false,
                }))
            }
        };
        Ok(Conn { inner })
    }

    /// Whether this is PostgreSQL (several nodes may share it).
    pub fn is_postgres(&self) -> bool {
        matches!(self.inner, Inner::Postgres(_))
    }

    /// Runs statements without values, separated by `;`.
    pub fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        match &mut self.inner {
            Inner::Sqlite(s) => Ok(s.conn.execute_batch(sql)?),
            Inner::Postgres(p) => p.run(|c| c.batch_execute(sql)),
        }
    }

    /// Runs a statement; the number of rows it changed.
    pub fn exec(&mut self, sql: &'static str, vals: &[Val]) -> Result<u64, StoreError> {
        match &mut self.inner {
            Inner::Sqlite(s) => {
                let mut stmt = s.prepare(sql)?;
                Ok(stmt.execute(rusqlite::params_from_iter(vals.iter()))? as u64)
            }
            Inner::Postgres(p) => {
                let stmt = p.prepare(sql)?;
                p.run(|c| c.execute(&stmt, &pg_params(vals)))
            }
        }
    }

    /// Runs a query; its rows.
    pub fn query(&mut self, sql: &'static str, vals: &[Val]) -> Result<Vec<Row>, StoreError> {
        match &mut self.inner {
            Inner::Sqlite(s) => {
                let mut stmt = s.prepare(sql)?;
                let n = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(vals.iter()))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let mut row = Vec::with_capacity(n);
                    for i in 0..n {
                        row.push(sqlite_val(r.get_ref(i)?));
                    }
                    out.push(Row(row));
                }
                Ok(out)
            }
            Inner::Postgres(p) => {
                let stmt = p.prepare(sql)?;
                let rows = p.run(|c| c.query(&stmt, &pg_params(vals)))?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    /// Runs a query that returns at most one row.
    pub fn query_opt(&mut self, sql: &'static str, vals: &[Val]) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, vals)?.into_iter().next())
    }

    /// Runs `f` in a transaction: committed if it returns Ok, rolled back otherwise.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.batch("BEGIN")?;
        self.set_in_transaction(true);
        let done = f(self).and_then(|v| self.batch("COMMIT").map(|()| v));
        self.set_in_transaction(false);
        if done.is_err() && self.connected() {
            let _ = self.batch("ROLLBACK");
        }
        done
    }

    fn set_in_transaction(&mut self, open: bool) {
        if let Inner::Postgres(p) = &mut self.inner {
            p.in_transaction = open;
        }
    }

    /// Whether a connection is there (SQLite's always is): nothing to roll back on a
    /// PostgreSQL connection that was lost, and no reason to open one for it.
    fn connected(&self) -> bool {
        match &self.inner {
            Inner::Sqlite(_) => true,
            Inner::Postgres(p) => p.client.as_ref().is_some_and(|c| !c.is_closed()),
        }
    }
}

impl Sqlite {
    fn prepare(&mut self, sql: &'static str) -> Result<rusqlite::CachedStatement<'_>, StoreError> {
        let text = self.sql.entry(key(sql)).or_insert_with(|| sqlite_placeholders(sql));
        Ok(self.conn.prepare_cached(text)?)
    }
}

impl Postgres {
    /// The live client, connecting (again) when there is none.
    fn client(&mut self) -> Result<&mut postgres::Client, StoreError> {
        if self.client.as_ref().is_some_and(|c| c.is_closed()) {
            self.client = None;
        }
        if self.client.is_none() && self.in_transaction {
            return Err(StoreError::Lost);
        }
        if self.client.is_none() {
            self.statements.clear();
            let client = match &self.tls {
                Some(tls) => self.config.connect(tls.clone())?,
                None => self.config.connect(postgres::NoTls)?,
            };
            self.client = Some(client);
        }
        self.client.as_mut().ok_or(StoreError::Closed)
    }

    /// Runs `f` on the client; a connection found broken is dropped, to be opened again
    /// next time.
    fn run<T>(
        &mut self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let client = self.client()?;
        let out = f(client);
        if let Err(e) = &out {
            if client.is_closed() {
                self.client = None;
            } else if e.code().is_some_and(|c| matches!(c.code(), "0A000" | "26000")) {
                // A prepared statement the server no longer accepts (the schema changed
                // under it): prepared again next time.
                self.statements.clear();
            }
        }
        Ok(out?)
    }

    fn prepare(&mut self, sql: &'static str) -> Result<postgres::Statement, StoreError> {
        self.client()?;
        if let Some(s) = self.statements.get(&key(sql)) {
            return Ok(s.clone());
        }
        let stmt = self.run(|c| c.prepare(sql))?;
        self.statements.insert(key(sql), stmt.clone());
        Ok(stmt)
    }
}

/// A statement's cache key: where its `'static` text is and how long (no hashing of
/// the text on every statement).
fn key(sql: &'static str) -> (usize, usize) {
    (sql.as_ptr() as usize, sql.len())
}

/// `$1` as SQLite's `?1` (no statement here has a `$` in a literal).
fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

fn sqlite_val(v: rusqlite::types::ValueRef<'_>) -> Val {
    use rusqlite::types::ValueRef as V;
    match v {
        V::Null => Val::Null,
        V::Integer(i) => Val::Int(i),
        V::Real(f) => Val::Int(f as i64),
        V::Text(t) | V::Blob(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
    }
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Val::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
        })
    }
}

fn pg_params(vals: &[Val]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    vals.iter().map(|v| v as &(dyn postgres::types::ToSql + Sync)).collect()
}

impl postgres::types::ToSql for Val {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        match self {
            Val::Null => Ok(postgres::types::IsNull::Yes),
            Val::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                _ => Err(format!("an integer for a {ty} parameter").into()),
            },
            Val::Text(t) => t.as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn pg_row(row: &postgres::Row) -> Result<Row, StoreError> {
    use postgres::types::Type;
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Val::Int),
            Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map(|v| Val::Int(v.into())),
            Type::INT2 => row.try_get::<_, Option<i16>>(i)?.map(|v| Val::Int(v.into())),
            Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map(|v| Val::Int(v.into())),
            _ => row.try_get::<_, Option<String>>(i)?.map(Val::Text),
        };
        out.push(v.unwrap_or(Val::Null));
    }
    Ok(Row(out))
}

/// A PostgreSQL error with what the server said (its code and message) or why the
/// connection failed; its own `Display` is often only "db error".
pub(super) fn describe(e: &postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("{} ({})", db.message(), db.code().code()),
        (None, Some(source)) => format!("{e}: {source}"),
        (None, None) => e.to_string(),
    }
}

/// Whether a PostgreSQL error may pass. Only bad data (class 22) and a broken
/// constraint (class 23) cannot: anything else (the connection, a restart, a server
/// read-only after a failover, a password being changed, a schema in the middle of a
/// migration) is retried, which holds the steps behind it and shows the node unhealthy
/// rather than dropping what it decided.
pub(super) fn postgres_may_pass(e: &postgres::Error) -> bool {
    match e.code() {
        Some(code) => !(code.code().starts_with("22") || code.code().starts_with("23")),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_sqlites() {
        assert_eq!(sqlite_placeholders("a = $1 AND b = $12 OR c = '$'"), "a = ?1 AND b = ?12 OR c = '$'");
    }

    #[test]
    fn a_postgres_place_does_not_print_its_password() {
        let p = Place::Postgres("postgres://u:hunter2@127.0.0.1:5432/db".into(), None);
        let shown = format!("{p:?}");
        assert!(!shown.contains("hunter2") && shown.contains("db"), "{shown}");
    }
}
