//! `switchboard load`: the signaling benchmark.
//!
//! Spawns a real server process (this binary, `serve`) with a generated config, runs
//! a real HTTP app server in this process (notify_cb hands the `cc_param` to the
//! callee, as a push would; on_call_evt_cb counts records), and drives concurrent
//! caller/callee pairs through the full 1-to-1 flow with the Rust SDK. Then it
//! connects idle clients and reads the server's RSS from /proc.
//! Everything listens on and talks to 127.0.0.1 only, and every loop is bounded.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use axum::routing::get;
use axum::Router;
use switchboard_client::{Client, Credentials, Event, Events, MakeCall};
use tokio::sync::mpsc;

mod app;
mod backlog;
mod engine;
mod measure;
mod media;
mod peers;
mod rooms;
mod soak;

use app::{app_notify, app_record, AppServer};
pub use backlog::{run_backlog, BacklogArgs};
pub(crate) use measure::raise_fd_limit;
use measure::{ms, percentile, rss_kib};
use peers::{token, wait_for, SECRET};

#[derive(clap::Args)]
pub struct LoadArgs {
    /// Total number of calls to run.
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// Calls in flight at once (caller/callee pairs).
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Idle connected clients for the memory figure (0 skips that phase).
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Server binary to spawn (default: this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Media benchmark instead: this many concurrent audio calls through the relay,
    /// each side sending 50 packets/s.
    #[arg(long, default_value_t = 0)]
    media: usize,
    /// Rooms benchmark instead: this many rooms of `--room-size` with audio and video,
    /// plus one room of `--big-room` audio participants (5 of them speaking).
    #[arg(long, default_value_t = 0)]
    rooms: usize,
    /// Participants of each small room.
    #[arg(long, default_value_t = 4)]
    room_size: usize,
    /// Participants of the big audio room (0: none).
    #[arg(long, default_value_t = 50)]
    big_room: usize,
    /// Seconds of media measured (after every call's media is up), reported per 10 s.
    #[arg(long, default_value_t = 60)]
    media_secs: u64,
    /// Call-engine benchmark instead: this many group calls of 4 (a caller and three
    /// invitees, who accept when rung), all invited at once; signaling only.
    #[arg(long, default_value_t = 0)]
    engine: usize,
    /// Soak instead: this many minutes of `--media` concurrent audio calls (200 if not
    /// given) with churn, reported every minute.
    #[arg(long, default_value_t = 0)]
    soak: u64,
    /// Pin the server to CPU 0 and this load generator to CPU 1 (with `taskset`), so
    /// that the server's figures are not those of a CPU shared with its clients. The
    /// server starts confined, so it runs one relay shard, as it would for an operator
    /// who gives it one core.
    #[arg(long)]
    pin: bool,
    /// With `--media`: how the calls' media reaches the relay (`udp`, `tcp`: ICE-TCP,
    /// `turn-udp`, `turn-tcp`, `turn-tls`: through the server's TURN server; `turn-tls`
    /// needs `--tls-cert`).
    #[arg(long, value_enum, default_value = "udp")]
    ice_transport: crate::clients::IceArg,
    /// The spawned server speaks TLS with this certificate chain (PEM): https, wss and
    /// TURN over TLS on its one port. Its CA must be trusted here (`SSL_CERT_FILE`).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The key of `--tls-cert` (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// The spawned server keeps its records in this PostgreSQL database (an empty one:
    /// the load's records stay there) instead of SQLite; `SWITCHBOARD_DATABASE_URL` too.
    #[arg(long, env = "SWITCHBOARD_DATABASE_URL")]
    database_url: Option<String>,
    /// Spawn this many nodes of one deployment (needs `--database-url` and
    /// `--redis-url`); the calls' callers and callees are spread over them, each callee
    /// on another node than its caller.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// The Redis that joins the nodes (`redis://:password@127.0.0.1:6379/`; with one
    /// node too, to measure what it costs).
    #[arg(long, env = "SWITCHBOARD_REDIS_URL")]
    redis_url: Option<String>,
}

/// Spawns one server (a node) with its config and data in `dir` (`top`: more top-level
/// settings) and waits until it listens; the process, its pid and its base URL.
async fn spawn_node(
    a: &LoadArgs,
    bin: &std::path::Path,
    dir: &std::path::Path,
    top: &str,
    app_url: &str,
) -> Result<(tokio::process::Child, u32, String)> {
    std::fs::create_dir_all(dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config = format!(
        r#"listen = "127.0.0.1:{port}"
data_dir = "{data}"
{top}[limits]
connects_per_ip_per_sec = 1000000.0
connects_per_ip_burst = 1000000.0
pending_per_ip = 100000
messages_per_session_per_sec = 10000.0
messages_per_session_burst = 10000.0
calls_per_user_per_sec = 10000.0
calls_per_user_burst = 10000.0
[[service]]
id = "load"
api_key = "load-key"
api_secret = "{SECRET}"
notify_cb_url = "{app_url}/notify"
on_call_evt_cb_url = "{app_url}/call_evt"
"#,
        data = dir.join("data").display()
    );
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, config)?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    // Pinned, the server starts confined to CPU 0, as an operator would confine it:
    // it sees one core and sizes itself for one (one relay shard, one worker thread).
    let mut command = if a.pin {
        let mut c = tokio::process::Command::new("taskset");
        c.args(["-c", "0"]).arg(bin);
        c
    } else {
        tokio::process::Command::new(bin)
    };
    let mut child = command
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let pid = child.id().ok_or_else(|| anyhow!("server exited at once"))?;
    let scheme = if a.tls_cert.is_none() { "http" } else { "https" };
    let up = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("server exited with {status}; see {}", dir.join("server.log").display());
        }
        if up.elapsed() > Duration::from_secs(20) {
            bail!("server did not listen within 20 s; see {}", dir.join("server.log").display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((child, pid, format!("{scheme}://127.0.0.1:{port}")))
}

/// Moves every thread of process `pid` (this load generator) to CPU `cpu`.
fn pin(pid: u32, cpu: u32) -> Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    if !status.success() {
        bail!("taskset could not pin {pid} to CPU {cpu}");
    }
    Ok(())
}

struct Pair {
    caller: (Client, Events),
    callee: (Client, Events),
    callee_id: String,
    pushes: mpsc::UnboundedReceiver<(String, String)>,
}

async fn run_pair(mut p: Pair, calls: usize) -> Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(calls);
    let (caller, caller_ev) = (&p.caller.0, &mut p.caller.1);
    let (callee, callee_ev) = (&p.callee.0, &mut p.callee.1);
    for _ in 0..calls {
        let t0 = Instant::now();
        let sid = caller.make_call(MakeCall::audio(&p.callee_id)).await?;
        let (pushed_sid, param) = tokio::time::timeout(Duration::from_secs(30), p.pushes.recv())
            .await
            .map_err(|_| anyhow!("no push within 30 s"))?
            .ok_or_else(|| anyhow!("push channel closed"))?;
        if pushed_sid != sid {
            bail!("push for {pushed_sid}, expected {sid}");
        }
        callee.verify_call(&param).await?;
        callee.accept_call(&sid).await?;
        wait_for(caller_ev, |e| matches!(e, Event::Connected { sid: s, .. } if *s == sid).then_some(()))
            .await?;
        out.push(t0.elapsed());
        caller.end_call(&sid, None, None).await?;
        wait_for(callee_ev, |e| matches!(e, Event::Disconnected { sid: s, .. } if *s == sid).then_some(()))
            .await?;
        wait_for(caller_ev, |e| matches!(e, Event::Disconnected { sid: s, .. } if *s == sid).then_some(()))
            .await?;
    }
    Ok(out)
}

pub async fn run(a: LoadArgs) -> Result<()> {
    if a.concurrency == 0 || a.calls < a.concurrency {
        bail!("--calls must be at least --concurrency (> 0)");
    }
    raise_fd_limit();
    let app = Arc::new(AppServer::default());
    let router = Router::new()
        .route("/notify", get(app_notify))
        .route("/call_evt", get(app_record))
        .with_state(app.clone());
    let app_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app_url = format!("http://{}", app_listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(app_listener, router).await;
    });

    let dir = std::env::temp_dir().join(format!("switchboard-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    if a.ice_transport == crate::clients::IceArg::TurnTls && a.tls_cert.is_none() {
        bail!("--ice-transport turn-tls needs --tls-cert and --tls-key (the server's TLS)");
    }
    if a.nodes == 0 || (a.nodes > 1 && (a.database_url.is_none() || a.redis_url.is_none())) {
        bail!("--nodes above 1 needs --database-url and --redis-url");
    }
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => {
            format!("tls_cert = {:?}\ntls_key = {:?}\n", cert.canonicalize()?, key.canonicalize()?)
        }
        _ => String::new(),
    };
    let bin = match &a.server_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?,
    };
    let mut children = Vec::new();
    let mut servers = Vec::new();
    let mut pids = Vec::new();
    for n in 0..a.nodes {
        let node = if a.nodes == 1 { "load".to_string() } else { format!("load{}", n + 1) };
        let mut top = tls.clone();
        if let Some(url) = &a.database_url {
            top.push_str(&format!("database_url = {url:?}\nnode_id = {node:?}\n"));
        }
        if let Some(url) = &a.redis_url {
            top.push_str(&format!("redis_url = {url:?}\ncluster_secret = \"{SECRET}\"\n"));
        }
        let (child, pid, server) = spawn_node(&a, &bin, &dir.join(&node), &top, &app_url).await?;
        let rss = rss_kib(pid)?;
        println!("node {node}: pid {pid} on {server}; RSS at start {:.1} MiB", rss as f64 / 1024.0);
        children.push(child);
        servers.push(server);
        pids.push(pid);
    }
    let (server, pid) = (servers[0].clone(), pids[0]);
    let mut child = children.remove(0);
    if a.pin {
        pin(std::process::id(), 1)?;
        println!("pinned: server on CPU 0, load generator on CPU 1");
    }
    if a.rooms > 0 {
        let result = rooms::rooms_phase(&server, pid, a.rooms, a.room_size, a.big_room, a.media_secs).await;
        child.kill().await.ok();
        std::fs::remove_dir_all(&dir).ok();
        return result;
    }
    if a.engine > 0 {
        let result = engine::engine_phase(&server, pid, a.engine).await;
        child.kill().await.ok();
        std::fs::remove_dir_all(&dir).ok();
        return result;
    }
    if a.soak > 0 {
        let calls = if a.media > 0 { a.media } else { 200 };
        let records = || app.records.load(Ordering::Relaxed);
        let result = soak::soak_phase(&server, pid, calls, a.soak, records).await;
        child.kill().await.ok();
        std::fs::remove_dir_all(&dir).ok();
        return result;
    }
    if a.media > 0 {
        let result = media::media_phase(&server, pid, a.media, a.media_secs, a.ice_transport.into()).await;
        child.kill().await.ok();
        std::fs::remove_dir_all(&dir).ok();
        return result;
    }

    // Phase 1: calls.
    let mut pairs = Vec::with_capacity(a.concurrency);
    for i in 0..a.concurrency {
        let (caller_id, callee_id) = (format!("caller{i}"), format!("callee{i}"));
        let (at, to) = (&servers[i % servers.len()], &servers[(i + 1) % servers.len()]);
        let caller = Client::connect(at, Credentials::token("load", &caller_id, token(&caller_id))).await?;
        let callee = Client::connect(to, Credentials::token("load", &callee_id, token(&callee_id))).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        app.pushes.lock().map_err(|_| anyhow!("lock"))?.insert(callee_id.clone(), tx);
        pairs.push(Pair { caller, callee, callee_id, pushes: rx });
    }
    let per_pair = a.calls / a.concurrency;
    let total = per_pair * a.concurrency;
    println!("running {total} calls, {} at a time ...", a.concurrency);
    let started = Instant::now();
    let tasks: Vec<_> = pairs.into_iter().map(|p| tokio::spawn(run_pair(p, per_pair))).collect();
    let mut latencies = Vec::with_capacity(total);
    for t in tasks {
        latencies.extend(t.await.map_err(|e| anyhow!("pair task: {e}"))??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let rate = total as f64 / elapsed.as_secs_f64();
    let wait = Instant::now();
    while app.records.load(Ordering::Relaxed) < total as u64 && wait.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let records = app.records.load(Ordering::Relaxed);
    let records_secs = started.elapsed().as_secs_f64();
    let rss_calls = rss_kib(pid)?;
    println!("calls completed:        {total} in {:.2} s = {rate:.0} calls/s", elapsed.as_secs_f64());
    println!(
        "setup latency (makeCall -> connected on both sides): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0))
    );
    println!(
        "callbacks received:     {} notify_cb, {records}/{total} on_call_evt_cb; the last record {records_secs:.2} s after the first call = {:.0} records/s",
        app.notifies.load(Ordering::Relaxed),
        records as f64 / records_secs
    );
    println!("server RSS after calls: {:.1} MiB (the first node)", rss_calls as f64 / 1024.0);

    // Phase 2: idle clients.
    if a.idle > 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib(pid)?;
        let t = Instant::now();
        let mut idle = Vec::with_capacity(a.idle);
        for chunk_start in (0..a.idle).step_by(250) {
            let batch = (chunk_start..(chunk_start + 250).min(a.idle)).map(|i| {
                let server = server.clone();
                async move {
                    let id = format!("idle{i}");
                    Client::connect(&server, Credentials::token("load", &id, token(&id))).await
                }
            });
            for c in futures_util::future::join_all(batch).await {
                idle.push(c.map_err(|e| anyhow!("idle client: {e}"))?);
            }
        }
        let connect_secs = t.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_kib(pid)?;
        let per_k = (after.saturating_sub(before)) as f64 / 1024.0 / (a.idle as f64 / 1000.0);
        println!(
            "idle clients:           {} connected in {connect_secs:.1} s; server RSS {:.1} MiB -> {:.1} MiB = {per_k:.2} MiB per 1,000 idle clients",
            a.idle,
            before as f64 / 1024.0,
            after as f64 / 1024.0
        );
        drop(idle);
    }
    child.kill().await.ok();
    for mut c in children {
        c.kill().await.ok();
    }
    std::fs::remove_dir_all(&dir).ok();
    if records < total as u64 {
        bail!("only {records} of {total} call records reached the app server");
    }
    Ok(())
}
