//! `switchboard load-callbacks`: queues N call records in a fresh database (as after
//! an app-server outage), starts a server on it and times how fast the backlog reaches
//! a local app server.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use axum::routing::get;
use axum::Router;
use switchboard_client::Sid;

use super::app::{app_record, AppServer};
use super::peers::SECRET;

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
    use switchboard_server::store::{CoreDb, Database};

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
    let mut db = CoreDb::open(&Database::sqlite(&data.join("switchboard.db")))?;
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
