//! A real PostgreSQL for the tests: Debian's `postgresql` binaries, one cluster per test
//! process in a temporary directory, listening on a loopback port of its own with a
//! password (SCRAM), and a fresh database per test ([`database`]). The cluster goes
//! with the test process (the kernel stops it when the thread that started it, which
//! lives as long as the process, is gone).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The user and password the tests' cluster knows.
const USER: &str = "switchboard";
const PASSWORD: &str = "test-password-9f3c";

/// A running cluster.
pub struct Cluster {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    /// The postmaster, to stop or restart (tests of PostgreSQL going away).
    child: Mutex<Option<Child>>,
    as_user: Option<(u32, u32)>,
    /// It takes TLS (as well as plain connections) with the certificate in its directory.
    tls: bool,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The tests' cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| start(None).unwrap_or_else(|e| panic!("PostgreSQL for the tests: {e}")))
}

/// A cluster of the caller's own (to stop and restart without disturbing other tests).
pub fn own_cluster() -> Cluster {
    off_runtime(|| start(None).unwrap_or_else(|e| panic!("PostgreSQL for the tests: {e}")))
}

/// A cluster of the caller's own that also takes TLS, with the certificate `cert` and its
/// key `key` (PEM files).
pub fn own_cluster_tls(cert: &Path, key: &Path) -> Cluster {
    off_runtime(|| start(Some((cert, key))).unwrap_or_else(|e| panic!("PostgreSQL for the tests: {e}")))
}

/// A new, empty database on the tests' cluster; its URL (with the password).
pub fn database(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let tag = tag.replace(|ch: char| !ch.is_ascii_alphanumeric(), "_");
    let name = format!("sb_{tag}_{}", N.fetch_add(1, Ordering::Relaxed));
    let c = off_runtime(cluster);
    query(&c.url("postgres"), &format!("CREATE DATABASE {name}"));
    c.url(&name)
}

/// Runs `sql` on the database at `url`; its rows. Callable from async tests (the
/// blocking client runs on a thread of its own).
pub fn query(url: &str, sql: &str) -> Vec<postgres::Row> {
    off_runtime(|| {
        let mut c = postgres::Client::connect(url, postgres::NoTls).expect("connect to the test database");
        c.simple_query("SELECT 1").expect("alive");
        if sql.trim_start().to_ascii_uppercase().starts_with("SELECT") {
            c.query(sql, &[]).expect("query")
        } else {
            c.batch_execute(sql).expect("statement");
            Vec::new()
        }
    })
}

/// Runs `f` on a thread of its own: PostgreSQL's blocking client starts a runtime, which
/// a thread of the tests' runtime may not.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
}

impl Cluster {
    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// Stops the server at once (an immediate shutdown: every process of it quits
    /// without a checkpoint, as in a crash; committed data survives, as on a real server),
    /// waits for it to be gone.
    pub fn kill(&self) {
        off_runtime(|| self.kill_now());
    }

    fn kill_now(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill has no memory preconditions; the pid is our child's, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGQUIT) };
            }
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data (after [`Cluster::kill`]).
    pub fn restart(&self) {
        off_runtime(|| self.restart_now());
    }

    fn restart_now(&self) {
        self.kill_now();
        let child = spawn_postmaster(&self.dir, self.port, self.as_user, self.tls).expect("restart postgres");
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        wait_ready(&self.url("postgres")).expect("postgres ready again");
    }
}

/// Debian's binaries of the newest PostgreSQL installed.
fn bin_dir() -> Result<PathBuf, String> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("/usr/lib/postgresql: {e} (apt-get install postgresql)"))?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().ok_or_else(|| "no PostgreSQL in /usr/lib/postgresql".into())
}

/// PostgreSQL refuses to run as root: as root, the cluster runs as the `postgres` user.
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").ok()?;
    // SAFETY: `name` is NUL-terminated; getpwnam returns NULL or a pointer to a static entry,
    // read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: `pw` is non-NULL and points to a valid passwd entry.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn command(bin: &Path, as_user: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(bin);
    if let Some((uid, gid)) = as_user {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn start(tls: Option<(&Path, &Path)>) -> Result<Cluster, String> {
    let as_user = run_as();
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("switchboard-pg-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    remove_stale_clusters();
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let pwfile = dir.join("pw");
    std::fs::write(&pwfile, PASSWORD).map_err(|e| e.to_string())?;
    if let Some((uid, gid)) = as_user {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    let data = dir.join("data");
    let out = command(&bin_dir()?.join("initdb"), as_user)
        .arg("-D")
        .arg(&data)
        .args(["-U", USER, "-A", "scram-sha-256", "--no-sync", "-E", "UTF8", "--locale=C"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    // Its certificate and key, the key readable by the server's user only (PostgreSQL
    // refuses it otherwise).
    if let Some((cert, key)) = tls {
        for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
            let to = dir.join(to);
            std::fs::copy(from, &to).map_err(|e| format!("{}: {e}", from.display()))?;
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(|e| e.to_string())?;
            if let Some((uid, gid)) = as_user {
                std::os::unix::fs::chown(&to, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
            }
        }
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = spawn_postmaster(&dir, port, as_user, tls.is_some())?;
    let cluster = Cluster { port, dir, child: Mutex::new(Some(child)), as_user, tls: tls.is_some() };
    wait_ready(&cluster.url("postgres"))?;
    Ok(cluster)
}

/// Starts the postmaster, to stop when the test process ends.
fn spawn_postmaster(dir: &Path, port: u16, as_user: Option<(u32, u32)>, tls: bool) -> Result<Child, String> {
    let mut cmd = command(&bin_dir()?.join("postgres"), as_user);
    cmd.arg("-D")
        .arg(dir.join("data"))
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(dir)
        // No fsync (the machine does not crash under the tests), but every commit is
        // written before it is acknowledged: a PostgreSQL that dies keeps what it said
        // it committed.
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off"])
        .args(["-c", "max_connections=300", "-c", "log_min_messages=fatal"]);
    if tls {
        cmd.args(["-c", "ssl=on"])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", dir.join("server.crt").display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", dir.join("server.key").display()));
    }
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    crate::tied::spawn(cmd, libc::SIGQUIT).map_err(|e| format!("postgres: {e}"))
}

fn wait_ready(url: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match postgres::Client::connect(url, postgres::NoTls) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(format!("postgres did not start: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Clusters of test processes that are gone (each is ~40 MB).
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.strip_prefix("switchboard-pg-").and_then(|p| p.split('-').next()?.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
