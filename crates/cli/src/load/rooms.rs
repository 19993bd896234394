//! `switchboard load --rooms N`: N rooms of `--room-size` (default 4) participants
//! sending audio (50 packets/s) and video (15 frames/s), each asking for the others'
//! video, plus one room of `--big-room` (default 50) audio participants of whom 5 speak
//! (the others send silence, as muted browsers do). Prints per 10 s slice the packets
//! the receivers should have got and got, loss and one-way delay; the join time (join
//! → first audio from every peer that speaks), and the server's CPU per 1,000 forwarded
//! packets from its `/metrics` and `/proc`.
//!
//! Payloads carry the send time and the sender, so every receiver knows what it missed
//! without decoding anything (the relay forwards RTP as it came either way).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use switchboard_client::{Client, Credentials, JoinConference, MediaEvent};

use super::measure::{pct, Scrape};
use super::peers::{token, PLAIN};

const SLICE: Duration = Duration::from_secs(10);
/// Speakers of the big room; the rest send silence.
const BIG_ROOM_SPEAKERS: usize = 5;

/// One participant to run.
struct Seat {
    room: String,
    /// Index of this participant (its payloads carry it).
    id: u32,
    /// The indices of the others in its room whose media it must get.
    expect_from: Vec<u32>,
    speaks: bool,
    video: bool,
}

#[derive(Default)]
struct Log {
    /// Send stamps (µs since the benchmark's epoch) of the audio it sent while speaking.
    sent: Vec<u64>,
    /// Video frames sent (stamps).
    video_sent: Vec<u64>,
    /// (send stamp, delay µs) of each audio packet received from a speaker.
    received: Vec<(u64, u64)>,
    video_received: Vec<(u64, u64)>,
    /// From the join to the first audio of every peer that speaks.
    joined_to_all_audio: Option<Duration>,
    expect_from: usize,
    /// How many receivers each of its packets should reach (its room's others).
    fanout: usize,
}

fn stamp(base: Instant) -> u64 {
    base.elapsed().as_micros() as u64
}

fn payload(base: Instant, id: u32, len: usize) -> (Vec<u8>, u64) {
    let now = stamp(base);
    let mut p = vec![0u8; len];
    p[..8].copy_from_slice(&now.to_be_bytes());
    p[8..12].copy_from_slice(&id.to_be_bytes());
    (p, now)
}

fn read(p: &[u8]) -> Option<(u64, u32)> {
    let ts = u64::from_be_bytes(p.get(..8)?.try_into().ok()?);
    let id = u32::from_be_bytes(p.get(8..12)?.try_into().ok()?);
    Some((ts, id))
}

async fn run_seat(
    server: String,
    seat: Seat,
    fanout: usize,
    base: Instant,
    window: Arc<OnceLock<(Instant, Instant)>>,
    up: tokio::sync::mpsc::UnboundedSender<()>,
) -> Result<Log> {
    let user = format!("r{}", seat.id);
    let (client, mut events) =
        Client::connect(&server, Credentials::token("load", &user, token(&user))).await?;
    let joined_at = Instant::now();
    let join = if seat.video { JoinConference::video(&seat.room) } else { JoinConference::audio(&seat.room) };
    let room = client.join_conference(join).await?;
    let options = switchboard_client::MediaOptions { video: seat.video, ..PLAIN };
    let (media, mut rx) = client.start_media_with(&room.sid, options).await?;
    let media = Arc::new(media);
    // Ask for everyone's video once they are in (those who join later are asked
    // for as they arrive).
    if seat.video {
        let (c, sid, others) = (client.clone(), room.sid.clone(), seat.expect_from.clone());
        tokio::spawn(async move {
            for other in others {
                for _ in 0..50 {
                    if c.request_peer_video(&sid, &format!("r{other}"), Some("vga")).await.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        });
    }
    // Signaling events are not measured, but must be read.
    tokio::spawn(async move { while events.next().await.is_some() {} });
    let end_of = |w: &OnceLock<(Instant, Instant)>| w.get().map(|(_, end)| *end);
    let sender = {
        let (media, window) = (media.clone(), window.clone());
        let (id, speaks, video) = (seat.id, seat.speaks, seat.video);
        tokio::spawn(async move {
            let (mut sent, mut video_sent) = (Vec::new(), Vec::new());
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // Bounded: at most 15 minutes, whatever happens to the window.
            for n in 0u64..45_000 {
                tick.tick().await;
                if end_of(&window).is_some_and(|end| Instant::now() >= end) {
                    break;
                }
                let (p, at) = payload(base, id, 80);
                // -20 dBov when speaking; silence (127) otherwise, as a muted mic sends.
                media.send_audio_with_level(p, 960, if speaks { 20 } else { 127 });
                if speaks {
                    sent.push(at);
                }
                if video && n % 3 == 0 {
                    let (p, at) = payload(base, id, 1000);
                    media.send_video(p, 6000);
                    video_sent.push(at);
                }
            }
            (sent, video_sent)
        })
    };
    let mut log = Log { expect_from: seat.expect_from.len(), fanout, ..Log::default() };
    let mut heard: HashMap<u32, ()> = HashMap::new();
    let mut told_up = false;
    loop {
        let wait = match end_of(&window) {
            Some(end) => tokio::time::Instant::from_std(end + Duration::from_secs(2)),
            None => tokio::time::Instant::now() + Duration::from_millis(500),
        };
        match tokio::time::timeout_at(wait, rx.recv()).await {
            Ok(Some(MediaEvent::Audio { payload, .. })) => {
                let Some((sent_at, from)) = read(&payload) else { continue };
                if !seat.expect_from.contains(&from) {
                    continue; // a silent one the relay let through while choosing
                }
                log.received.push((sent_at, stamp(base).saturating_sub(sent_at)));
                if heard.insert(from, ()).is_none() && heard.len() == seat.expect_from.len() {
                    log.joined_to_all_audio = Some(joined_at.elapsed());
                }
            }
            Ok(Some(MediaEvent::Video { payload, .. })) => {
                if let Some((sent_at, _)) = read(&payload) {
                    log.video_received.push((sent_at, stamp(base).saturating_sub(sent_at)));
                }
            }
            Ok(Some(MediaEvent::Connected)) if !told_up => {
                told_up = true;
                let _ = up.send(());
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) if end_of(&window).is_some() => break,
            Err(_) => {}
        }
    }
    let (sent, video_sent) = sender.await.unwrap_or_default();
    log.sent = sent;
    log.video_sent = video_sent;
    drop((client, media));
    Ok(log)
}

/// The rooms benchmark, as the module doc says.
pub(crate) async fn rooms_phase(
    server: &str,
    pid: u32,
    rooms: usize,
    room_size: usize,
    big_room: usize,
    secs: u64,
) -> Result<()> {
    if room_size < 2 && rooms > 0 {
        bail!("--room-size must be at least 2");
    }
    let base = Instant::now();
    let mut seats = Vec::new();
    let mut id = 0u32;
    for r in 0..rooms {
        let ids: Vec<u32> = (id..id + room_size as u32).collect();
        for me in &ids {
            let others = ids.iter().copied().filter(|x| x != me).collect();
            seats.push((
                room_size - 1,
                Seat { room: format!("small{r}"), id: *me, expect_from: others, speaks: true, video: true },
            ));
        }
        id += room_size as u32;
    }
    if big_room > 0 {
        let ids: Vec<u32> = (id..id + big_room as u32).collect();
        let speakers: Vec<u32> = ids.iter().copied().take(BIG_ROOM_SPEAKERS).collect();
        for me in &ids {
            let speaks = speakers.contains(me);
            let expect = speakers.iter().copied().filter(|x| x != me).collect();
            seats.push((
                big_room - 1,
                Seat { room: "big".into(), id: *me, expect_from: expect, speaks, video: false },
            ));
        }
    }
    let n = seats.len();
    println!(
        "joining {n} participants: {rooms} rooms of {room_size} (audio + video, everyone's video requested){}, all at once ...",
        if big_room > 0 { format!(" and one room of {big_room} (audio, {BIG_ROOM_SPEAKERS} speak)") } else { String::new() }
    );
    let window: Arc<OnceLock<(Instant, Instant)>> = Arc::default();
    let (up_tx, mut up_rx) = tokio::sync::mpsc::unbounded_channel();
    let tasks: Vec<_> = seats
        .into_iter()
        .map(|(fanout, seat)| {
            tokio::spawn(run_seat(server.to_string(), seat, fanout, base, window.clone(), up_tx.clone()))
        })
        .collect();
    drop(up_tx);
    let all_up = async {
        for _ in 0..n {
            up_rx.recv().await?;
        }
        Some(())
    };
    if tokio::time::timeout(Duration::from_secs(90), all_up).await.ok().flatten().is_none() {
        bail!("not every media connection came up within 90 s");
    }
    println!(
        "{n} media connections up in {:.1} s; settling, then measuring {secs} s ...",
        base.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let _ = window.set((start, end));
    let before = Scrape::take(server, pid).await;
    tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
    let after = Scrape::take(server, pid).await;
    let mut logs = Vec::with_capacity(n);
    for t in tasks {
        logs.push(t.await.map_err(|e| anyhow!("participant task: {e}"))??);
    }
    report(&logs, base, start, secs, &before, &after);
    Ok(())
}

fn report(logs: &[Log], base: Instant, start: Instant, secs: u64, before: &Scrape, after: &Scrape) {
    let from = start.duration_since(base).as_micros() as u64;
    let to = from + secs * 1_000_000;
    let slices = secs.div_ceil(SLICE.as_secs()).max(1) as usize;
    let slice_of = |t: u64| ((t - from) / (SLICE.as_micros() as u64)) as usize;
    let table = |title: &str, sent: &dyn Fn(&Log) -> &Vec<u64>, got: &dyn Fn(&Log) -> &Vec<(u64, u64)>| {
        let mut expected = vec![0u64; slices];
        let mut delays: Vec<Vec<u64>> = vec![Vec::new(); slices];
        for log in logs {
            for t in sent(log).iter().filter(|t| (from..to).contains(*t)) {
                expected[slice_of(*t)] += log.fanout as u64;
            }
            for (t, d) in got(log).iter().filter(|(t, _)| (from..to).contains(t)) {
                delays[slice_of(*t)].push(*d);
            }
        }
        println!("{title}");
        println!("slice      expected  received  loss      delay p50   p99        max");
        let mut all = Vec::new();
        for (i, d) in delays.iter_mut().enumerate() {
            d.sort_unstable();
            let loss = 100.0 * expected[i].saturating_sub(d.len() as u64) as f64 / expected[i].max(1) as f64;
            println!(
                "{:>3}-{:<3} s  {:<9} {:<9} {:<8.3}% {:>7.2} ms {:>7.2} ms {:>8.2} ms",
                i * 10,
                (i + 1) * 10,
                expected[i],
                d.len(),
                loss,
                pct(d, 0.5),
                pct(d, 0.99),
                pct(d, 1.0)
            );
            all.extend_from_slice(d);
        }
        all.len()
    };
    let audio =
        table("audio (from speakers, to every other participant of their room):", &|l| &l.sent, &|l| {
            &l.received
        });
    // In the small rooms everyone asked for everyone's video.
    let video =
        table("video (small rooms; frames, one packet each):", &|l| &l.video_sent, &|l| &l.video_received);
    let _ = (audio, video);
    let mut joins: Vec<u64> =
        logs.iter().filter_map(|l| l.joined_to_all_audio.map(|d| d.as_micros() as u64)).collect();
    joins.sort_unstable();
    let waiting = logs.iter().filter(|l| l.expect_from > 0).count();
    println!(
        "join -> first audio from every speaking peer ({} of {waiting}): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        joins.len(),
        pct(&joins, 0.5),
        pct(&joins, 0.99),
        pct(&joins, 1.0)
    );
    let window = after.at.duration_since(before.at).as_secs_f64();
    let cpu_ms = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 * 10.0;
    let delta = |name: &str, labels: &[&str]| after.metric(name, labels) - before.metric(name, labels);
    let audio_out = delta("switchboard_media_packets_out_total", &["kind=\"audio\""]);
    let video_out = delta("switchboard_media_packets_out_total", &["kind=\"video\""]);
    let forwarded = audio_out + video_out;
    println!(
        "relay over the window:  {:.0} packets/s forwarded ({:.0} audio, {:.0} video); server CPU {cpu_ms:.0} ms over {window:.1} s = {:.1} ms per 1,000 forwarded packets ({:.0} % of one core)",
        forwarded / window.max(1e-9),
        audio_out / window.max(1e-9),
        video_out / window.max(1e-9),
        cpu_ms / (forwarded / 1000.0).max(1e-9),
        100.0 * cpu_ms / 1000.0 / window.max(1e-9)
    );
    let overflow = delta("switchboard_media_dropped_total", &["reason=\"socket_overflow\""]);
    println!("kernel drops (relay socket full) over the window: {overflow:.0}");
}
