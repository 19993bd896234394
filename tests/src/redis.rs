//! A real Redis for the tests: Debian's `redis-server` on a loopback port of its own,
//! with a password and nothing written to disk, gone with the test process.

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PASSWORD: &str = "test-redis-password-4e1d";

/// A running Redis.
pub struct Redis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Mutex<Option<Child>>,
    /// Over TLS only: its certificate, key and CA (PEM files).
    tls: Option<[String; 3]>,
}

impl Redis {
    /// Starts one, and waits until it answers.
    pub fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let redis = Redis { port, child: Mutex::new(None), tls: None };
        redis.restart();
        redis
    }

    /// Starts one that speaks TLS only, with the certificate `cert` (its key `key`,
    /// signed by `ca`: PEM files).
    pub fn start_tls(cert: &str, key: &str, ca: &str) -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let tls = Some([cert.to_string(), key.to_string(), ca.to_string()]);
        let redis = Redis { port, child: Mutex::new(None), tls };
        redis.restart();
        redis
    }

    /// Its URL, with the password.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://:{PASSWORD}@127.0.0.1:{}/", self.port)
    }

    /// Stops it at once (SIGKILL: what it held is gone, as after a crash).
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port, empty.
    pub fn restart(&self) {
        self.kill();
        let mut cmd = Command::new("redis-server");
        let port = self.port.to_string();
        match &self.tls {
            None => cmd.args(["--port", &port]),
            Some([cert, key, ca]) => cmd
                .args(["--port", "0", "--tls-port", &port, "--tls-auth-clients", "no"])
                .args(["--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca]),
        };
        cmd.args(["--bind", "127.0.0.1", "--requirepass", PASSWORD])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child =
            crate::tied::spawn(cmd, libc::SIGKILL).expect("redis-server (apt-get install redis-server)");
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
