//! `switchboard load --media N`: N two-party audio calls through the relay, set up all
//! at once, then a measured window in which every party sends 50 packets/s (80-byte
//! payloads carrying the send time). Prints loss and one-way delay per 10 s slice of
//! the window (a loss that grows with call age shows), the time from `accept_call` to
//! the first audio packet each party receives, the relay's own figures from
//! `/metrics` over the window, and the server's CPU per forwarded packet.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use switchboard_client::{Client, Credentials, Event, MakeCall, MediaEvent, Sid};

use super::measure::{cpu_ticks, pct, Scrape};
use super::peers::{token, wait_for, PLAIN};

/// Length of one reporting slice.
const SLICE: Duration = Duration::from_secs(10);

/// What one party saw.
#[derive(Default)]
struct PartyLog {
    /// Send stamps (µs since the benchmark's epoch) of what it sent.
    sent: Vec<u64>,
    /// (send stamp, one-way delay µs) of what it received.
    received: Vec<(u64, u64)>,
    /// From `accept_call` to its first received audio packet.
    first_audio: Option<Duration>,
    /// From `accept_call` to: the call connected, the relay's answer, ICE and DTLS up.
    stages: [Option<Duration>; 3],
}

struct Party {
    client: Client,
    events: switchboard_client::Events,
    media: switchboard_client::Media,
    rx: tokio::sync::mpsc::UnboundedReceiver<MediaEvent>,
    accepted: Instant,
    /// From `accept_call` to `connected`, and to the relay's answer.
    connected: Duration,
    answered: Duration,
}

/// Sets up call `i` and both parties' media; returns the two parties.
async fn setup(server: String, i: usize, ice: switchboard_client::IceTransport) -> Result<[Party; 2]> {
    let (a_id, b_id) = (format!("ma{i}"), format!("mb{i}"));
    let (a, mut a_ev) = Client::connect(&server, Credentials::token("load", &a_id, token(&a_id))).await?;
    let (b, mut b_ev) = Client::connect(&server, Credentials::token("load", &b_id, token(&b_id))).await?;
    let sid = a.make_call(MakeCall::audio(&b_id)).await?;
    let cc = wait_for(&mut b_ev, |e| match e {
        Event::IncomingCall { cc_param, .. } => Some(cc_param.clone()),
        _ => None,
    })
    .await?;
    b.verify_call(&cc).await?;
    let accepted = Instant::now();
    b.accept_call(&sid).await?;
    wait_for(&mut a_ev, |e| matches!(e, Event::Connected { .. }).then_some(())).await?;
    let connected = accepted.elapsed();
    // Both parties start their media at once, as two real apps would.
    let timed = |c: Client, sid: Sid| async move {
        let r = c.start_media_with(&sid, switchboard_client::MediaOptions { ice, ..PLAIN }).await;
        (r, accepted.elapsed())
    };
    let ((a_started, a_answered), (b_started, b_answered)) =
        tokio::join!(timed(a.clone(), sid.clone()), timed(b.clone(), sid.clone()));
    let ((a_media, a_rx), (b_media, b_rx)) = (a_started?, b_started?);
    Ok([
        Party {
            client: a,
            events: a_ev,
            media: a_media,
            rx: a_rx,
            accepted,
            connected,
            answered: a_answered,
        },
        Party {
            client: b,
            events: b_ev,
            media: b_media,
            rx: b_rx,
            accepted,
            connected,
            answered: b_answered,
        },
    ])
}

/// Runs one party: sends from now until the window's end, and logs what arrives.
async fn run_party(
    p: Party,
    base: Instant,
    window: Arc<OnceLock<(Instant, Instant)>>,
    up: tokio::sync::mpsc::UnboundedSender<()>,
) -> PartyLog {
    let Party { client, events, media, mut rx, accepted, connected, answered } = p;
    let media = Arc::new(media);
    let stop_at = |w: &OnceLock<(Instant, Instant)>| w.get().map(|(_, end)| *end);
    let sender = {
        let (media, window) = (media.clone(), window.clone());
        tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Bounded: at most 15 minutes, whatever happens to the window.
            for seq in 0u64..45_000 {
                tick.tick().await;
                if stop_at(&window).is_some_and(|end| Instant::now() >= end) {
                    break;
                }
                let now = stamp(base);
                let mut payload = vec![0u8; 80];
                payload[..8].copy_from_slice(&now.to_be_bytes());
                payload[8..16].copy_from_slice(&seq.to_be_bytes());
                media.send_audio(payload, 960);
                sent.push(now);
            }
            sent
        })
    };
    let mut log = PartyLog { stages: [Some(connected), Some(answered), None], ..PartyLog::default() };
    let mut told_up = false;
    loop {
        let wait = match stop_at(&window) {
            Some(end) => tokio::time::Instant::from_std(end + Duration::from_secs(2)),
            None => tokio::time::Instant::now() + Duration::from_millis(500),
        };
        match tokio::time::timeout_at(wait, rx.recv()).await {
            Ok(Some(MediaEvent::Audio { payload, .. })) if payload.len() >= 16 => {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&payload[..8]);
                let sent_at = u64::from_be_bytes(ts);
                log.received.push((sent_at, stamp(base).saturating_sub(sent_at)));
                if log.first_audio.is_none() {
                    log.first_audio = Some(accepted.elapsed());
                }
            }
            Ok(Some(MediaEvent::Connected)) if !told_up => {
                told_up = true;
                log.stages[2] = Some(accepted.elapsed());
                let _ = up.send(());
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) if stop_at(&window).is_some() => break,
            Err(_) => {}
        }
    }
    log.sent = sender.await.unwrap_or_default();
    drop((client, events, media));
    log
}

/// N audio calls through the relay, measured as the module doc says.
pub(crate) async fn media_phase(
    server: &str,
    pid: u32,
    calls: usize,
    secs: u64,
    ice: switchboard_client::IceTransport,
) -> Result<()> {
    let base = Instant::now();
    let cpu_at_start = (cpu_ticks(pid).unwrap_or(0), cpu_ticks(std::process::id()).unwrap_or(0));
    println!("setting up {calls} audio calls with media, all at once ...");
    println!("media transport: {ice:?}");
    let setups: Vec<_> = (0..calls).map(|i| tokio::spawn(setup(server.to_string(), i, ice))).collect();
    let window: Arc<OnceLock<(Instant, Instant)>> = Arc::default();
    let (up_tx, mut up_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut parties = Vec::with_capacity(calls * 2);
    for s in setups {
        for p in s.await.map_err(|e| anyhow!("setup task: {e}"))?? {
            parties.push(tokio::spawn(run_party(p, base, window.clone(), up_tx.clone())));
        }
    }
    drop(up_tx);
    let all_up = async {
        for _ in 0..calls * 2 {
            up_rx.recv().await?;
        }
        Some(())
    };
    if tokio::time::timeout(Duration::from_secs(60), all_up).await.ok().flatten().is_none() {
        bail!("not every media connection came up within 60 s");
    }
    let setup_secs = base.elapsed().as_secs_f64();
    let setup_cpu = |pid: u32, before: u64| cpu_ticks(pid).unwrap_or(0).saturating_sub(before) * 10;
    println!(
        "setup CPU:              server {} ms, load generator {} ms (in {setup_secs:.2} s)",
        setup_cpu(pid, cpu_at_start.0),
        setup_cpu(std::process::id(), cpu_at_start.1)
    );
    // Let the last connections settle before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let _ = window.set((start, end));
    println!("{} media sessions up in {setup_secs:.1} s; measuring {secs} s ...", calls * 2);
    let before = Scrape::take(server, pid).await;
    tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
    let after = Scrape::take(server, pid).await;
    let mut logs = Vec::with_capacity(parties.len());
    for p in parties {
        logs.push(p.await.map_err(|e| anyhow!("party task: {e}"))?);
    }
    report(&logs, base, start, secs, calls, &before, &after);
    Ok(())
}

fn report(
    logs: &[PartyLog],
    base: Instant,
    start: Instant,
    secs: u64,
    calls: usize,
    before: &Scrape,
    after: &Scrape,
) {
    let from = start.duration_since(base).as_micros() as u64;
    let to = from + secs * 1_000_000;
    let slices = secs.div_ceil(SLICE.as_secs()).max(1) as usize;
    let slice_of = |t: u64| ((t - from) / (SLICE.as_micros() as u64)) as usize;
    let mut sent = vec![0u64; slices];
    let mut got: Vec<Vec<u64>> = vec![Vec::new(); slices];
    for log in logs {
        for t in log.sent.iter().filter(|t| (from..to).contains(*t)) {
            sent[slice_of(*t)] += 1;
        }
        for (t, d) in log.received.iter().filter(|(t, _)| (from..to).contains(t)) {
            got[slice_of(*t)].push(*d);
        }
    }
    println!("media calls:            {calls} ({} sessions), {secs} s of 50 packets/s each way", calls * 2);
    println!("slice      sent      received  loss      delay p50   p99        max");
    let mut all = Vec::new();
    for (i, delays) in got.iter_mut().enumerate() {
        delays.sort_unstable();
        let loss = 100.0 * sent[i].saturating_sub(delays.len() as u64) as f64 / sent[i].max(1) as f64;
        println!(
            "{:>3}-{:<3} s  {:<9} {:<9} {:<8.3}% {:>7.2} ms {:>7.2} ms {:>8.2} ms",
            i * 10,
            (i + 1) * 10,
            sent[i],
            delays.len(),
            loss,
            pct(delays, 0.5),
            pct(delays, 0.99),
            pct(delays, 1.0)
        );
        all.extend_from_slice(delays);
    }
    all.sort_unstable();
    let total_sent: u64 = sent.iter().sum();
    let loss = 100.0 * total_sent.saturating_sub(all.len() as u64) as f64 / total_sent.max(1) as f64;
    println!(
        "whole window:           {} of {total_sent} packets = {:.0} packets/s in and out; loss {loss:.3} %; delay p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        all.len() as f64 / secs.max(1) as f64,
        pct(&all, 0.5),
        pct(&all, 0.99),
        pct(&all, 1.0)
    );
    let mut first: Vec<u64> =
        logs.iter().filter_map(|l| l.first_audio.map(|d| d.as_micros() as u64)).collect();
    first.sort_unstable();
    println!(
        "first audio after accept_call ({} of {} parties): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        first.len(),
        logs.len(),
        pct(&first, 0.5),
        pct(&first, 0.99),
        pct(&first, 1.0)
    );
    let stage = |i: usize| {
        let mut v: Vec<u64> = logs.iter().filter_map(|l| l.stages[i].map(|d| d.as_micros() as u64)).collect();
        v.sort_unstable();
        format!("{:.0} / {:.0} ms", pct(&v, 0.5), pct(&v, 0.99))
    };
    println!(
        "  stages after accept_call, p50 / p99: connected {}; relay answered {}; ICE+DTLS up {}",
        stage(0),
        stage(1),
        stage(2)
    );
    let window = after.at.duration_since(before.at).as_secs_f64();
    let cpu_ms = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 * 10.0;
    let delta = |name: &str, labels: &[&str]| after.metric(name, labels) - before.metric(name, labels);
    let forwarded = delta("switchboard_media_packets_out_total", &["kind=\"audio\""]);
    println!(
        "server CPU:             {cpu_ms:.0} ms over {window:.1} s = {:.1} µs per forwarded packet ({:.0} % of one core)",
        cpu_ms * 1000.0 / forwarded.max(1.0),
        100.0 * cpu_ms / 1000.0 / window.max(1e-9)
    );
    let overflow = delta("switchboard_media_dropped_total", &["reason=\"socket_overflow\""]);
    let turns = |le: &str| delta("switchboard_media_loop_busy_seconds_bucket", &[&format!("le=\"{le}\"")]);
    let all_turns = turns("+Inf");
    let over_10ms = all_turns - turns("0.01");
    let over_2ms = all_turns - turns("0.002");
    println!(
        "relay over the window:  {forwarded:.0} packets forwarded, {overflow:.0} dropped by the kernel (socket full); {all_turns:.0} loop turns, {over_2ms:.0} over 2 ms, {over_10ms:.0} over 10 ms"
    );
    // From the server's start: the setup burst (every offer, every DTLS handshake) too.
    let busy =
        |le: &str| after.metric("switchboard_media_loop_busy_seconds_bucket", &[&format!("le=\"{le}\"")]);
    let total = busy("+Inf");
    let longest = ["0.0001", "0.0005", "0.001", "0.002", "0.005", "0.01", "0.025", "0.05", "0.1", "0.5"]
        .iter()
        .find(|le| busy(le) >= total)
        .map_or("over 0.5".to_string(), |le| format!("at most {le}"));
    println!(
        "relay since its start:  {total:.0} loop turns (setup included), {:.0} over 10 ms; longest turn {longest} s",
        total - busy("0.01")
    );
}

/// Micros since the benchmark's epoch, stamped into every payload.
fn stamp(base: Instant) -> u64 {
    base.elapsed().as_micros() as u64
}
