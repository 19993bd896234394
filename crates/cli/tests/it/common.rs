//! Helpers for tests that run the `switchboard` binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

static RUNNING: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
static FREED: std::sync::Condvar = std::sync::Condvar::new();

/// At most four of these tests at once, however many test threads run: each starts a
/// server and several client processes, and more at once starve one another on two
/// cores (a 15 s wait for a line ran out once with seven).
pub struct Slot(usize);

pub fn slot() -> Slot {
    slots(1)
}

/// `n` of the four places, for a test that starts as much as `n` tests do (a deployment
/// of several nodes with its Redis and PostgreSQL): beside three of them, a tone test's
/// packet count came up short.
pub fn slots(n: usize) -> Slot {
    let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    while *running + n > 4 {
        running = FREED.wait(running).unwrap_or_else(|e| e.into_inner());
    }
    *running += n;
    Slot(n)
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
        *running -= self.0;
        FREED.notify_all();
    }
}

pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        Self::spawn_with_env(args, &[])
    }

    /// With these environment variables set too.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn switchboard");
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Proc { child, lines: rx }
    }

    /// Lines until one contains `needle` (15 s at most); returns all of them.
    pub fn until(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(needle);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("no line with {needle:?} within 15 s; saw {seen:#?}"),
            }
        }
    }
}

impl Proc {
    /// Sends SIGINT, as Ctrl-C in a terminal does.
    pub fn interrupt(&self) {
        self.signal("-INT");
    }

    /// Sends SIGTERM, as a service manager stopping it does.
    pub fn terminate(&self) {
        self.signal("-TERM");
    }

    fn signal(&self, which: &str) {
        let ok = Command::new("kill")
            .args([which, &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "could not send {which}");
    }

    /// Waits (15 s at most) for the process to exit; its exit code.
    pub fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the process did not exit within 15 s");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn json_lines(lines: &[String]) -> Vec<serde_json::Value> {
    lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

pub fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).args(args).env("RUST_LOG", "warn").output().expect("run switchboard");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A server on embedded defaults in a fresh data dir; returns it, its base URL and the data dir.
pub fn serve_defaults(tag: &str) -> (Proc, String, String) {
    let dir = std::env::temp_dir().join(format!("switchboard-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let data = dir.to_string_lossy().to_string();
    let server = Proc::spawn(&["serve", "--data-dir", &data, "--listen", &listen]);
    server.until("listening on");
    (server, format!("http://{listen}"), data)
}

/// A test CA and a server certificate it signed (`scripts/test-certs.sh`) in `dir`:
/// the paths of `ca.pem`, `cert.pem` and `key.pem`.
pub fn test_certs(dir: &std::path::Path) -> (String, String, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/test-certs.sh");
    let ok = Command::new("bash").arg(script).arg(dir).status().is_ok_and(|s| s.success());
    assert!(ok, "scripts/test-certs.sh failed (is openssl installed?)");
    let path = |f: &str| dir.join(f).to_string_lossy().to_string();
    (path("ca.pem"), path("cert.pem"), path("key.pem"))
}

/// Like [`serve_defaults`], with TLS on the listener (https, wss and TURN over TLS on
/// one port) and TURN over TLS on a port of its own too; also returns the CA to trust.
pub fn serve_tls(tag: &str) -> (Proc, String, String, String) {
    let dir = std::env::temp_dir().join(format!("switchboard-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ca, cert, key) = test_certs(&dir.join("tls"));
    let port = free_port();
    let data = dir.to_string_lossy().to_string();
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{data}\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\nturn_tls_port = 0\n"
        ),
    )
    .expect("config");
    let server = Proc::spawn(&["serve", "--config", &config.to_string_lossy()]);
    server.until("listening on");
    (server, format!("https://127.0.0.1:{port}"), data, ca)
}

/// The ended calls of `user` on a server started by [`serve_defaults`], newest first, from
/// the REST API with the demo service's credentials (as an app server reads them). */
pub fn records(url: &str, data: &str, user: &str) -> Vec<serde_json::Value> {
    let creds: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{data}/demo-service.json")).expect("demo-service.json"),
    )
    .expect("credentials");
    let auth =
        format!("{}:{}", creds["api_key"].as_str().unwrap_or(""), creds["api_secret"].as_str().unwrap_or(""));
    let out = Command::new("curl")
        .args(["-sf", "-u", &auth, &format!("{url}/v1/calls?user_id={user}")])
        .output()
        .expect("curl");
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a page of calls");
    page["calls"].as_array().cloned().unwrap_or_default()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server process, killed when dropped: a test that fails half-way leaves none behind.
pub struct Server(Child);

impl Server {
    /// SIGKILL, and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM (it drains, then exits).
    pub fn terminate(&self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: kill has no memory preconditions; the pid is our child's, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }

    /// Its exit code once it exited by itself within `within`; None if it still runs.
    pub async fn exited(&mut self, within: Duration) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits (up to 10 s) until the log file at `log` has a line containing `needle`.
pub async fn log_says(log: &std::path::Path, needle: &str) {
    for _ in 0..200 {
        if std::fs::read_to_string(log).is_ok_and(|t| t.contains(needle)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never said {needle:?}", log.display());
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The server binary on `config`, its log (RUST_LOG=info) written to `log`.
pub fn spawn_logged(config: &std::path::Path, log: &std::path::Path) -> Server {
    let child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn server");
    Server(child)
}

pub async fn wait_listening(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not listen on {port}");
}

/// A config with the `acme` service calling back to an app server on `app_port`;
/// `top` is more top-level settings (lines ending in a newline). Callbacks retry fast.
pub fn acme_config(port: u16, app_port: u16, data: &std::path::Path, top: &str) -> String {
    let secret = switchboard_tests::ACME_SECRET;
    format!(
        r#"listen = "127.0.0.1:{port}"
data_dir = "{data}"
{top}[callbacks]
retry_first_ms = 200
retry_max_ms = 500
[[service]]
id = "acme"
api_key = "acme-key"
api_secret = "{secret}"
notify_cb_url = "http://127.0.0.1:{app_port}/notify"
on_call_evt_cb_url = "http://127.0.0.1:{app_port}/call_evt"
on_gcall_evt_cb_url = "http://127.0.0.1:{app_port}/gcall_evt"
on_group_call_evt_cb_url = "http://127.0.0.1:{app_port}/group_call_evt"
"#,
        data = data.display()
    )
}

pub fn acme_token(user: &str) -> String {
    let now = switchboard_server::server::now_ms() / 1000;
    let claims = switchboard_server::auth::Claims::new("acme", user, "acme-key", now, 3600);
    switchboard_server::auth::mint_token(switchboard_tests::ACME_SECRET, &claims)
}

pub async fn acme_user(url: &str, id: &str) -> (switchboard_client::Client, switchboard_client::Events) {
    let creds = switchboard_client::Credentials::token("acme", id, acme_token(id));
    switchboard_client::Client::connect(url, creds).await.expect("connect")
}

/// Waits (up to 15 s) until the acme service has no pending callback, as its app server
/// would read it: `GET /v1/callbacks?state=pending` with its API key.
pub async fn acme_outbox_drained(url: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let client = reqwest::Client::new();
    loop {
        let pending = client
            .get(format!("{url}/v1/callbacks?state=pending"))
            .basic_auth("acme-key", Some(switchboard_tests::ACME_SECRET))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success());
        let body: serde_json::Value = match pending {
            Some(r) => r.json().await.unwrap_or_default(),
            None => serde_json::Value::Null,
        };
        if body["callbacks"].as_array().is_some_and(|c| c.is_empty()) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "acme callbacks still pending after 15 s: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
