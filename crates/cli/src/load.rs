//! `switchboard load`: the signaling benchmark.
//!
//! Spawns a real server process (this binary, `serve`) with a generated config, runs
//! a real HTTP app server in this process (notify_cb hands the `cc_param` to the
//! callee, as a push would; on_call_evt_cb counts records), and drives concurrent
//! caller/callee pairs through the full 1-to-1 flow with the Rust SDK. Then it
//! connects idle clients and reads the server's RSS from /proc.
//! Everything listens on and talks to 127.0.0.1 only, and every loop is bounded.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::Router;
use switchboard_client::{Client, Credentials, Event, Events, MakeCall, Sid};
use switchboard_server::auth::{mint_token, Claims};
use tokio::sync::mpsc;

const SECRET: &str = "4c6f61642d7465737420736563726574206f6e6c792c206e6576657220757365";

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

#[derive(Default)]
struct AppServer {
    pushes: Mutex<HashMap<String, mpsc::UnboundedSender<(String, String)>>>,
    records: AtomicU64,
    notifies: AtomicU64,
}

async fn app_notify(State(app): State<Arc<AppServer>>, RawQuery(q): RawQuery) -> &'static str {
    app.notifies.fetch_add(1, Ordering::Relaxed);
    let q: HashMap<String, String> =
        url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned().collect();
    if let (Some(to), Some(sid), Some(param)) = (q.get("to_user_id"), q.get("sid"), q.get("param")) {
        if let Some(tx) = app.pushes.lock().ok().and_then(|p| p.get(to).cloned()) {
            let _ = tx.send((sid.clone(), param.clone()));
        }
    }
    "ok"
}

async fn app_record(State(app): State<Arc<AppServer>>) -> &'static str {
    app.records.fetch_add(1, Ordering::Relaxed);
    "ok"
}

/// Raises the soft open-file limit to the hard one (many sockets, one process).
pub(crate) fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS"))
}

pub(crate) fn token(user: &str) -> String {
    let now = switchboard_server::server::now_ms() / 1000;
    mint_token(SECRET, &Claims::new("load", user, "load-key", now, 7200))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) async fn wait_for<T>(events: &mut Events, mut pick: impl FnMut(&Event) -> Option<T>) -> Result<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.next())
            .await
            .map_err(|_| anyhow!("no event within 30 s"))?
            .ok_or_else(|| anyhow!("event stream closed"))?;
        if let Event::Closed { reason } = &ev {
            bail!("connection closed: {reason}");
        }
        if let Some(t) = pick(&ev) {
            return Ok(t);
        }
    }
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

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = std::env::temp_dir().join(format!("switchboard-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = format!(
        r#"listen = "127.0.0.1:{port}"
data_dir = "{data}"
[limits]
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
    let bin = match a.server_bin {
        Some(b) => b,
        None => std::env::current_exe()?,
    };
    let log = std::fs::File::create(dir.join("server.log"))?;
    // Pinned, the server starts confined to CPU 0, as an operator would confine it:
    // it sees one core and sizes itself for one (one relay shard, one worker thread).
    let mut command = if a.pin {
        let mut c = tokio::process::Command::new("taskset");
        c.args(["-c", "0"]).arg(&bin);
        c
    } else {
        tokio::process::Command::new(&bin)
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
    let server = format!("http://127.0.0.1:{port}");
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
    let rss_start = rss_kib(pid)?;
    println!("server pid {pid} on {server}; RSS at start {:.1} MiB", rss_start as f64 / 1024.0);
    if a.pin {
        pin(std::process::id(), 1)?;
        println!("pinned: server on CPU 0, load generator on CPU 1");
    }
    if a.rooms > 0 {
        let result =
            crate::load_rooms::rooms_phase(&server, pid, a.rooms, a.room_size, a.big_room, a.media_secs)
                .await;
        child.kill().await.ok();
        std::fs::remove_dir_all(&dir).ok();
        return result;
    }
    if a.soak > 0 {
        let calls = if a.media > 0 { a.media } else { 200 };
        let records = || app.records.load(Ordering::Relaxed);
        let result = crate::load_soak::soak_phase(&server, pid, calls, a.soak, records).await;
        child.kill().await.ok();
        std::fs::remove_dir_all(&dir).ok();
        return result;
    }
    if a.media > 0 {
        let result = crate::load_media::media_phase(&server, pid, a.media, a.media_secs).await;
        child.kill().await.ok();
        std::fs::remove_dir_all(&dir).ok();
        return result;
    }

    // Phase 1: calls.
    let mut pairs = Vec::with_capacity(a.concurrency);
    for i in 0..a.concurrency {
        let (caller_id, callee_id) = (format!("caller{i}"), format!("callee{i}"));
        let caller =
            Client::connect(&server, Credentials::token("load", &caller_id, token(&caller_id))).await?;
        let callee =
            Client::connect(&server, Credentials::token("load", &callee_id, token(&callee_id))).await?;
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
    let rss_calls = rss_kib(pid)?;
    println!("calls completed:        {total} in {:.2} s = {rate:.0} calls/s", elapsed.as_secs_f64());
    println!(
        "setup latency (makeCall -> connected on both sides): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0))
    );
    println!(
        "callbacks received:     {} notify_cb, {records}/{total} on_call_evt_cb",
        app.notifies.load(Ordering::Relaxed)
    );
    println!("server RSS after calls: {:.1} MiB", rss_calls as f64 / 1024.0);

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
    std::fs::remove_dir_all(&dir).ok();
    if records < total as u64 {
        bail!("only {records} of {total} call records reached the app server");
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct BacklogArgs {
    /// Call records to queue.
    #[arg(long, default_value_t = 50_000)]
    records: usize,
    /// Requests in flight per service (the server's `per_service_concurrency`).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Server binary to spawn (default: this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
}

pub async fn run_backlog(a: BacklogArgs) -> Result<()> {
    use switchboard_protocol::record::CallRecord;
    use switchboard_server::records::{Batch, CallbackKind, NewCallback};
    use switchboard_server::store::CoreDb;

    let app = Arc::new(AppServer::default());
    let first_at = Arc::new(Mutex::new(None::<Instant>));
    let router = Router::new().route("/call_evt", get(app_record)).with_state(app.clone());
    let app_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app_url = format!("http://{}", app_listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(app_listener, router).await;
    });

    let dir = std::env::temp_dir().join(format!("switchboard-backlog-{}", std::process::id()));
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let now = switchboard_server::server::now_ms();
    let template = CallRecord {
        sid: Sid::new(""),
        from_service_id: "load".into(),
        from_user_id: "caller".into(),
        to_service_id: "load".into(),
        to_user_id: "callee".into(),
        media_type: "A".into(),
        setup_time: now / 1000 - 60,
        start_time: now / 1000 - 55,
        end_time: now / 1000,
        duration: 55,
        srcip: "127.0.0.1".into(),
        dstip: "127.0.0.1".into(),
        terminate: 16,
        rel_code: 1,
        rel_code_str: "NORMAL".into(),
        user_rel_code: None,
        billing_sec: 55,
        rc_idc: "KR".into(),
        disconnect_reason: 1001,
        releaser_type: 1,
        app_svr_data: Some("order=1234".into()),
    };
    let t = Instant::now();
    let mut db = CoreDb::open(&data.join("switchboard.db"))?;
    for chunk in (0..a.records).collect::<Vec<_>>().chunks(5_000) {
        let mut batch = Batch::default();
        for i in chunk {
            let sid = format!("00000000-0000-4000-8000-{i:012}");
            let record = CallRecord { sid: sid.clone().into(), ..template.clone() };
            batch.callbacks.push(NewCallback {
                cb_id: format!("call-{sid}"),
                service_id: "load".into(),
                kind: CallbackKind::Call,
                key: sid,
                query: record.to_query(),
                deadline_ms: None,
            });
        }
        db.commit(&batch, now)?;
    }
    drop(db);
    println!("queued {} records in {:.2} s", a.records, t.elapsed().as_secs_f64());

    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config_path = dir.join("config.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"listen = "127.0.0.1:{port}"
data_dir = "{data}"
[callbacks]
per_service_concurrency = {conc}
[[service]]
id = "load"
api_key = "load-key"
api_secret = "{SECRET}"
on_call_evt_cb_url = "{app_url}/call_evt"
"#,
            data = data.display(),
            conc = a.concurrency
        ),
    )?;
    let bin = match a.server_bin {
        Some(b) => b,
        None => std::env::current_exe()?,
    };
    let started = Instant::now();
    let mut child = tokio::process::Command::new(&bin)
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let total = a.records as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n = app.records.load(Ordering::Relaxed);
        if n > 0 {
            first_at.lock().map_err(|_| anyhow!("lock"))?.get_or_insert_with(Instant::now);
        }
        if n >= total || Instant::now() > deadline {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("server exited with {status}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all = started.elapsed();
    let first = first_at.lock().map_err(|_| anyhow!("lock"))?.map_or(all, |f| f.duration_since(started));
    let n = app.records.load(Ordering::Relaxed);
    let drain = all.saturating_sub(first);
    println!(
        "delivered {n}/{total} records; first after {:.2} s (start-up and recovery)",
        first.as_secs_f64()
    );
    println!(
        "delivery throughput:    {:.0} records/s ({n} in {:.2} s, {} in flight)",
        n as f64 / drain.as_secs_f64().max(1e-9),
        drain.as_secs_f64(),
        a.concurrency
    );
    child.kill().await.ok();
    std::fs::remove_dir_all(&dir).ok();
    if n < total {
        bail!("only {n} of {total} records were delivered");
    }
    Ok(())
}

/// CPU time (user + system) of a process, from /proc, in clock ticks (1/100 s).
pub(crate) fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc stat")?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    Ok(f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0))
}
