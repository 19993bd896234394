//! Frames that record nothing do not wait for the disk. With the journal blocked (the
//! database locked by another writer, as a stalled disk would hold it), audio levels
//! keep reaching a room's participants and the relay's offers still reach the party
//! that turned its camera on; a change that is recorded (a microphone muted: its
//! on_gcall_evt_cb) waits, and arrives, with its callback, once the journal is back.

use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use switchboard_client::{Event, Events, JoinConference, MediaEvent};
use switchboard_tests::*;

/// Holds the database's write lock from another connection until told to let go.
fn lock_database(path: std::path::PathBuf) -> (std_mpsc::Receiver<()>, std_mpsc::Sender<()>) {
    let (locked_tx, locked) = std_mpsc::channel();
    let (release, release_rx) = std_mpsc::channel::<()>();
    std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(path).expect("open the database");
        conn.execute_batch("BEGIN EXCLUSIVE").expect("take the write lock");
        let _ = locked_tx.send(());
        let _ = release_rx.recv();
        conn.execute_batch("ROLLBACK").expect("let go");
    });
    (locked, release)
}

/// Waits (up to 10 s) for an event of `ev` that `pick` takes; every other one is kept.
async fn until<T>(ev: &mut Events, seen: &mut Vec<Event>, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let e =
            tokio::time::timeout_at(deadline, ev.next()).await.expect("event within 10 s").expect("events");
        if let Some(t) = pick(&e) {
            return t;
        }
        seen.push(e);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_and_relay_offers_reach_clients_while_the_journal_is_blocked() {
    let h = Harness::start().await;
    let (alice, _a_ev) = h.user("alice").await;
    let (bob, mut b_ev) = h.user("bob").await;
    let sid = alice.join_conference(JoinConference::audio("stall")).await.expect("alice joins").sid;
    bob.join_conference(JoinConference::audio("stall")).await.expect("bob joins");
    let (am, mut a_rx) = alice.start_media(&sid, false).await.expect("alice's media");
    let (_bm, mut b_rx) = bob.start_media(&sid, false).await.expect("bob's media");
    media_event(&mut a_rx, |e| matches!(e, MediaEvent::Connected), "alice's media").await;
    media_event(&mut b_rx, |e| matches!(e, MediaEvent::Connected), "bob's media").await;
    let am = Arc::new(am);
    let talker = {
        let am = am.clone();
        tokio::spawn(async move {
            let mut enc = switchboard_client::tone::ToneEncoder::new(440.0).expect("encoder");
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for _ in 0..50 * 30 {
                tick.tick().await;
                am.send_audio_with_level(enc.next_frame().expect("encode"), 960, 20);
            }
        })
    };
    let mut seen = Vec::new();
    let loud = |e: &Event| match e {
        Event::AudioLevels { levels, .. } if levels.get("alice").is_some_and(|l| *l > 0) => Some(()),
        _ => None,
    };
    until(&mut b_ev, &mut seen, loud).await;
    h.app.wait_for("/gcall_evt", |hit| hit.query["user_id"] == "bob").await;

    // The disk stalls.
    let (locked, release) = lock_database(h.config.data_dir.join("switchboard.db"));
    locked.recv_timeout(Duration::from_secs(10)).expect("database locked");
    let queued = h.server.metrics().callbacks_queued.get();
    // A recorded change: alice mutes (an on_gcall_evt_cb `M`, and bob is told).
    alice.set_media_state(&sid, Some(true), None).await.expect("mute");
    // Not recorded: audio levels, twice a second, keep reaching bob ...
    seen.clear();
    for _ in 0..3 {
        until(&mut b_ev, &mut seen, loud).await;
    }
    // ... and alice turns her camera on: the relay offers her a line, she answers.
    am.add_video();
    media_event(&mut a_rx, |e| matches!(e, MediaEvent::Renegotiated), "the relay's offer").await;
    until(&mut b_ev, &mut seen, loud).await;
    let muted = |e: &Event| matches!(e, Event::PeerMediaState { mic_muted: Some(true), .. });
    assert!(!seen.iter().any(muted), "the mute, recorded, waits for the disk: {seen:?}");
    assert_eq!(h.server.metrics().callbacks_queued.get(), queued, "nothing written meanwhile");

    // The disk is back: the held change arrives, and its callback.
    release.send(()).expect("release");
    until(&mut b_ev, &mut seen, |e| muted(e).then_some(())).await;
    let hit = h.app.wait_for("/gcall_evt", |hit| hit.query["msc"] == "M").await;
    assert_eq!(hit.query["user_id"], "alice");
    talker.abort();
}
