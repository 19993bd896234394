//! `switchboard load --soak MINUTES --media N`: N audio calls live at all times for
//! MINUTES, with churn: each of N caller/callee pairs (connected for the whole run) makes
//! a call, both start media, they talk for 20-60 s (50 packets/s each way, payloads
//! carrying the send time), the caller hangs up, and the pair calls again. Every minute
//! it prints the server's RSS and open file descriptors, the calls started and ended,
//! the loss and one-way delay of the packets sent in that minute, and the callback
//! backlog (records the app server still waits for, and the server's outbox). At the
//! end: every record must have arrived, RSS and fds flat, loss not growing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use switchboard_client::{Client, Credentials, Event, MakeCall, MediaEvent};

use super::measure::{rss_kib, Scrape};
use super::peers::{token, wait_for, PLAIN};

/// Delay buckets: 1 ms each up to 1 s, then one for anything later.
const BUCKETS: usize = 1001;
/// A call lasts this long at least, plus up to `CALL_SPREAD` more.
const CALL_MIN: Duration = Duration::from_secs(20);
const CALL_SPREAD: Duration = Duration::from_secs(40);
/// The sender stops this long before the hang-up, so packets in flight at the end of a
/// call are not counted as lost.
const QUIET_BEFORE_END: Duration = Duration::from_millis(500);

/// Counters of one minute of the run, by the minute a packet was sent in.
struct Minute {
    sent: AtomicU64,
    received: AtomicU64,
    delay_ms: Vec<AtomicU64>,
    started: AtomicU64,
    ended: AtomicU64,
    failed: AtomicU64,
}

impl Minute {
    fn new() -> Self {
        Self {
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            delay_ms: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            started: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// The delay (ms) below which a share `p` of this minute's packets arrived.
    fn delay_pct(&self, p: f64) -> u64 {
        let total: u64 = self.delay_ms.iter().map(|b| b.load(Ordering::Relaxed)).sum();
        let want = (total as f64 * p).ceil() as u64;
        let mut seen = 0;
        for (ms, b) in self.delay_ms.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= want && want > 0 {
                return ms as u64;
            }
        }
        0
    }

    fn max_delay(&self) -> u64 {
        self.delay_ms.iter().rposition(|b| b.load(Ordering::Relaxed) > 0).unwrap_or(0) as u64
    }
}

/// The whole run's shared counters.
struct Soak {
    base: Instant,
    minutes: Vec<Minute>,
    /// Calls ended (the caller's hang-up answered), over the run.
    ended: AtomicU64,
}

impl Soak {
    fn minute(&self, at: Instant) -> Option<&Minute> {
        self.minutes.get((at.duration_since(self.base).as_secs() / 60) as usize)
    }

    fn micros(&self) -> u64 {
        self.base.elapsed().as_micros() as u64
    }
}

/// One pair's calls, back to back, until `until`.
async fn run_pair(server: String, i: usize, soak: Arc<Soak>, until: Instant) -> Result<()> {
    let (a_id, b_id) = (format!("sa{i}"), format!("sb{i}"));
    let (a, mut a_ev) = Client::connect(&server, Credentials::token("load", &a_id, token(&a_id))).await?;
    let (b, mut b_ev) = Client::connect(&server, Credentials::token("load", &b_id, token(&b_id))).await?;
    // Pairs start spread over the first 10 s, and call lengths differ, so calls start and
    // end all the time rather than in waves.
    tokio::time::sleep(Duration::from_millis(50 * i as u64 % 10_000)).await;
    let mut seed = i as u64 * 0x9e37_79b9_7f4a_7c15 + 1;
    // The last calls run past `until`, so the last minute is under full load too.
    while Instant::now() < until {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let length = CALL_MIN + CALL_SPREAD.mul_f64((seed % 1000) as f64 / 1000.0);
        let minute = soak.minute(Instant::now());
        match one_call(&a, &mut a_ev, &b, &mut b_ev, &b_id, length, &soak).await {
            Ok(()) => {
                soak.ended.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = soak.minute(Instant::now()) {
                    m.ended.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                tracing::warn!(pair = i, error = %e, "soak call failed");
                if let Some(m) = minute {
                    m.failed.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Ok(())
}

async fn one_call(
    a: &Client,
    a_ev: &mut switchboard_client::Events,
    b: &Client,
    b_ev: &mut switchboard_client::Events,
    b_id: &str,
    length: Duration,
    soak: &Arc<Soak>,
) -> Result<()> {
    let sid = a.make_call(MakeCall::audio(b_id)).await?;
    if let Some(m) = soak.minute(Instant::now()) {
        m.started.fetch_add(1, Ordering::Relaxed);
    }
    let cc = wait_for(b_ev, |e| match e {
        Event::IncomingCall { cc_param, .. } => Some(cc_param.clone()),
        _ => None,
    })
    .await?;
    b.verify_call(&cc).await?;
    b.accept_call(&sid).await?;
    wait_for(a_ev, |e| matches!(e, Event::Connected { .. }).then_some(())).await?;
    let (started_a, started_b) =
        tokio::join!(a.start_media_with(&sid, PLAIN), b.start_media_with(&sid, PLAIN));
    let ((a_media, a_rx), (b_media, b_rx)) = (started_a?, started_b?);
    let talk_until = Instant::now() + length;
    let sending = talk_until - QUIET_BEFORE_END;
    tokio::join!(
        talk(&a_media, soak, sending),
        talk(&b_media, soak, sending),
        listen(a_rx, soak, talk_until),
        listen(b_rx, soak, talk_until),
    );
    a.end_call(&sid, None, None).await?;
    wait_for(b_ev, |e| matches!(e, Event::Disconnected { .. }).then_some(())).await?;
    drop((a_media, b_media));
    Ok(())
}

/// Sends 50 packets/s until `until`.
async fn talk(media: &switchboard_client::Media, soak: &Soak, until: Instant) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < until {
        tick.tick().await;
        let now = soak.micros();
        let mut payload = vec![0u8; 80];
        payload[..8].copy_from_slice(&now.to_be_bytes());
        media.send_audio(payload, 960);
        if let Some(m) = soak.minute(Instant::now()) {
            m.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Counts what arrives, by the minute it was sent in, until `until`.
async fn listen(mut rx: tokio::sync::mpsc::UnboundedReceiver<MediaEvent>, soak: &Soak, until: Instant) {
    let deadline = tokio::time::Instant::from_std(until);
    while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        let MediaEvent::Audio { payload, .. } = ev else { continue };
        let Some(stamp) = payload.get(..8).and_then(|s| <[u8; 8]>::try_from(s).ok()) else { continue };
        let sent_at = u64::from_be_bytes(stamp);
        let delay_ms = (soak.micros().saturating_sub(sent_at) / 1000) as usize;
        let minute = soak.minutes.get((sent_at / 60_000_000) as usize);
        if let Some(m) = minute {
            m.received.fetch_add(1, Ordering::Relaxed);
            if let Some(b) = m.delay_ms.get(delay_ms.min(BUCKETS - 1)) {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Runs the soak as the module doc says. `records` reads how many call records the app
/// server has received.
pub(crate) async fn soak_phase(
    server: &str,
    pid: u32,
    calls: usize,
    minutes: u64,
    records: impl Fn() -> u64,
) -> Result<()> {
    let base = Instant::now();
    let until = base + Duration::from_secs(minutes * 60);
    let soak = Arc::new(Soak {
        base,
        // Calls started in the last minute end up to a minute later.
        minutes: (0..minutes + 2).map(|_| Minute::new()).collect(),
        ended: AtomicU64::new(0),
    });
    println!("soak: {calls} audio calls at all times for {minutes} min, each 20-60 s, then another");
    let (rss0, fds0) = (rss_kib(pid)?, open_fds(pid));
    let records0 = records();
    let pairs: Vec<_> =
        (0..calls).map(|i| tokio::spawn(run_pair(server.to_string(), i, soak.clone(), until))).collect();
    println!(
        "min  live  media  started ended failed  sent     received loss     delay p50  p99    max    RSS MiB  fds   records due  outbox pending"
    );
    let mut first_rss = None;
    for minute in 0..minutes {
        // Each minute's packets are counted 3 s after it ends, once they had time to land.
        let report_at = base + Duration::from_secs((minute + 1) * 60 + 3);
        tokio::time::sleep_until(tokio::time::Instant::from_std(report_at)).await;
        let m = &soak.minutes[minute as usize];
        let (sent, got) = (m.sent.load(Ordering::Relaxed), m.received.load(Ordering::Relaxed));
        let loss = 100.0 * sent.saturating_sub(got) as f64 / sent.max(1) as f64;
        let scrape = Scrape::take(server, pid).await;
        let live = scrape.metric("switchboard_calls_started_total", &[])
            - scrape.metric("switchboard_calls_ended_total", &[]);
        let pending = scrape.metric("switchboard_callbacks_queued_total", &[])
            - scrape.metric("switchboard_callbacks_delivered_total", &[])
            - scrape.metric("switchboard_callbacks_failed_total", &[])
            - scrape.metric("switchboard_callbacks_dropped_total", &[]);
        let due = soak.ended.load(Ordering::Relaxed).saturating_sub(records() - records0);
        let rss = rss_kib(pid)? as f64 / 1024.0;
        if minute == 1 {
            first_rss = Some(rss);
        }
        println!(
            "{:<4} {:<5} {:<6} {:<7} {:<5} {:<6}  {:<8} {:<8} {:<7.3}% {:>5} ms {:>4} ms {:>4} ms  {:<8.1} {:<5} {:<12} {:.0}",
            minute + 1,
            live,
            scrape.metric("switchboard_media_connections", &[]),
            m.started.load(Ordering::Relaxed),
            m.ended.load(Ordering::Relaxed),
            m.failed.load(Ordering::Relaxed),
            sent,
            got,
            loss,
            m.delay_pct(0.5),
            m.delay_pct(0.99),
            m.max_delay(),
            rss,
            open_fds(pid),
            due,
            pending,
        );
    }
    for p in pairs {
        p.await.map_err(|e| anyhow!("pair task: {e}"))??;
    }
    // The last records land.
    for _ in 0..100 {
        if records() - records0 >= soak.ended.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ended = soak.ended.load(Ordering::Relaxed);
    let received = records() - records0;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss1, fds1) = (rss_kib(pid)?, open_fds(pid));
    let (sent, got) = soak.minutes.iter().fold((0, 0), |(s, g), m| {
        (s + m.sent.load(Ordering::Relaxed), g + m.received.load(Ordering::Relaxed))
    });
    println!(
        "soak done: {ended} calls ended, {received} records received ({}); {got} of {sent} packets = loss {:.4} %",
        if received >= ended { "every one" } else { "SOME MISSING" },
        100.0 * sent.saturating_sub(got) as f64 / sent.max(1) as f64
    );
    println!(
        "server RSS {:.1} MiB at start,{} {:.1} MiB at the end (all calls over); fds {fds0} at start, {fds1} at the end",
        rss0 as f64 / 1024.0,
        first_rss.map(|r| format!(" {r:.1} MiB after minute 2,")).unwrap_or_default(),
        rss1 as f64 / 1024.0
    );
    Ok(())
}
