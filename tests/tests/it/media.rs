//! Real media through the server's relay: two SDK clients, each sending a different
//! Opus tone over WebRTC (ICE, DTLS-SRTP) to the relay on 127.0.0.1, each decoding the
//! other's frequency; and a call whose media stops ending with NETWORK_UNSTABLE.

use std::time::Duration;

use switchboard_client::tone::dominant;
use switchboard_client::{
    DisconnectReason as R, DisconnectSource as S, MakeCall, MediaEvent, MediaOptions, Sid,
};
use switchboard_tests::*;
use tokio::sync::mpsc::UnboundedReceiver;

async fn media_connected(rx: &mut UnboundedReceiver<MediaEvent>) {
    media_event(rx, |e| matches!(e, MediaEvent::Connected), "media connected").await;
}

/// An audio call between Alice and Bob with both media connections up.
struct MediaCall {
    sid: Sid,
    alice: switchboard_client::Client,
    alice_ev: switchboard_client::Events,
    bob: switchboard_client::Client,
    bob_ev: switchboard_client::Events,
    am: std::sync::Arc<switchboard_client::Media>,
    a_rx: UnboundedReceiver<MediaEvent>,
    bm: std::sync::Arc<switchboard_client::Media>,
    b_rx: UnboundedReceiver<MediaEvent>,
}

async fn media_call(h: &Harness) -> MediaCall {
    let (alice, mut alice_ev) = h.user("alice").await;
    let (bob, mut bob_ev) = h.user("bob").await;
    let sid = alice.make_call(MakeCall::audio("bob")).await.expect("call");
    pick_up(&bob, &mut bob_ev, &mut alice_ev).await;
    let (am, mut a_rx) = alice.start_media(&sid, false).await.expect("alice media");
    let (bm, mut b_rx) = bob.start_media(&sid, false).await.expect("bob media");
    media_connected(&mut a_rx).await;
    media_connected(&mut b_rx).await;
    let (am, bm) = (std::sync::Arc::new(am), std::sync::Arc::new(bm));
    MediaCall { sid, alice, alice_ev, bob, bob_ev, am, a_rx, bm, b_rx }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_party_hears_the_others_tone_through_the_relay() {
    let h = Harness::start().await;
    let MediaCall { sid, alice: _alice, mut alice_ev, bob, bob_ev: _bob_ev, am, mut a_rx, bm, mut b_rx } =
        media_call(&h).await;
    let ta = send_tone(am.clone(), 440.0, 3);
    let tb = send_tone(bm.clone(), 1000.0, 3);
    let (heard_by_alice, heard_by_bob) =
        tokio::join!(receive_tone(&mut a_rx, 100), receive_tone(&mut b_rx, 100));
    let (fa, fb) = (dominant(&heard_by_alice[24_000..]), dominant(&heard_by_bob[24_000..]));
    assert!((fa - 1000.0).abs() <= 10.0, "alice hears bob's 1000 Hz, got {fa}");
    assert!((fb - 440.0).abs() <= 10.0, "bob hears alice's 440 Hz, got {fb}");
    let (sa, sb) = (am.stats(), bm.stats());
    assert!(sa.frames_in >= 100 && sb.frames_in >= 100, "{sa:?} {sb:?}");
    assert!(sa.bytes_out > 0 && sb.bytes_out > 0);
    ta.abort();
    tb.abort();
    bob.end_call(&sid, None, None).await.unwrap();
    let a = disconnected(&mut alice_ev).await;
    assert_eq!((a.reason, a.source), (R::Normal, S::Callee));
    let r = h.app.record_for(&sid).await;
    assert!(r.query["duration"].parse::<u64>().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_whose_media_stops_ends_the_call_with_network_unstable() {
    let h = Harness::start_with(|c| c.media_timeout_ms = 1500).await;
    let MediaCall {
        sid,
        alice: _alice,
        mut alice_ev,
        bob: _bob,
        mut bob_ev,
        am,
        a_rx: _a_rx,
        bm,
        b_rx: _b_rx,
    } = media_call(&h).await;
    let ta = send_tone(am.clone(), 440.0, 10);
    // Bob's media dies (his signaling stays up).
    send_tone(bm.clone(), 1000.0, 1).await.unwrap();
    bm.stop();
    let a = disconnected(&mut alice_ev).await;
    assert_eq!((a.reason, a.source, a.by_remote), (R::NetworkUnstable, S::Callee, true));
    let b = disconnected(&mut bob_ev).await;
    assert_eq!(b.reason, R::NetworkUnstable);
    let r = h.app.record_for(&sid).await;
    assert_eq!((r.query["disconnect_reason"].as_str(), r.query["releaser_type"].as_str()), ("1301", "1"));
    ta.abort();
}

/// A VP8 key frame of `len` bytes whose body counts `n` (so each frame is recognisable).
fn vp8_frame(n: u8, len: usize) -> Vec<u8> {
    // Frame tag (key frame, shown), start code, 320x240.
    let mut f = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
    f.resize(len, n);
    f
}

async fn renegotiated(rx: &mut UnboundedReceiver<MediaEvent>) {
    media_event(rx, |e| matches!(e, MediaEvent::Renegotiated), "renegotiation").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_turned_on_in_an_audio_call_reaches_the_peer_through_a_relay_offered_line() {
    let h = Harness::start().await;
    let MediaCall { sid, alice, alice_ev: _alice_ev, bob: _bob, mut bob_ev, am, mut a_rx, bm, mut b_rx } =
        media_call(&h).await;
    let ta = send_tone(am.clone(), 440.0, 6);
    let tb = send_tone(bm.clone(), 1000.0, 6);

    // Alice turns her camera on: her offer adds a video line; Bob has none, so the
    // relay offers him one.
    am.add_video();
    renegotiated(&mut a_rx).await;
    renegotiated(&mut b_rx).await;
    let sender = {
        let am = am.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(33));
            for n in 0..60u8 {
                tick.tick().await;
                am.send_video(vp8_frame(n, 2500), 3000);
            }
        })
    };
    let mut frames = Vec::new();
    let mut audio_mids = std::collections::BTreeSet::new();
    let wait = async {
        while let Some(ev) = b_rx.recv().await {
            match ev {
                MediaEvent::Video { mid, payload } => {
                    frames.push((mid, payload));
                    if frames.len() >= 20 {
                        break;
                    }
                }
                MediaEvent::Audio { mid, .. } => {
                    audio_mids.insert(mid);
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.expect("bob receives alice's video");
    let video_mid = &frames[0].0;
    assert!(frames.iter().all(|(m, _)| m == video_mid), "one video line");
    assert!(!audio_mids.contains(video_mid), "video has its own line: {audio_mids:?} vs {video_mid}");
    for (_, payload) in &frames {
        assert_eq!(payload.len(), 2500, "frames arrive whole (repacketized across packets)");
        assert_eq!(&payload[..10], &vp8_frame(0, 10)[..]);
        assert!(payload[10..].iter().all(|b| *b == payload[10]), "frame body intact");
    }
    sender.abort();
    ta.abort();
    tb.abort();
    alice.end_call(&sid, None, None).await.unwrap();
    let b = disconnected(&mut bob_ev).await;
    assert_eq!((b.reason, b.source), (R::Normal, S::Caller));
}

/// Audio frames a party received from a call's other party while the caller sent 200
/// frames through an uplink that loses every 10th datagram; the caller sends RED unless
/// `plain`.
async fn frames_through_a_lossy_uplink(h: &Harness, caller: &str, callee: &str, plain: bool) -> u64 {
    let (a, mut a_ev) = h.user(caller).await;
    let (b, mut b_ev) = h.user(callee).await;
    let sid = a.make_call(MakeCall::audio(callee)).await.expect("call");
    pick_up(&b, &mut b_ev, &mut a_ev).await;
    let lossy = MediaOptions { drop_every: 10, plain_opus: plain, ..MediaOptions::default() };
    let (am, mut a_rx) = a.start_media_with(&sid, lossy).await.expect("caller media");
    let (bm, mut b_rx) = b.start_media(&sid, false).await.expect("callee media");
    media_connected(&mut a_rx).await;
    media_connected(&mut b_rx).await;
    let before = bm.stats().frames_in;
    send_tone(std::sync::Arc::new(am), 440.0, 4).await.expect("tone sent");
    // Until nothing more arrives for half a second: on a busy machine the last frames
    // can sit in a queue a while, and counting them early would count them lost.
    let (mut got, mut quiet) = (0, 0);
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = bm.stats().frames_in - before;
        quiet = if now == got { quiet + 1 } else { 0 };
        got = now;
        if quiet == 10 {
            break;
        }
    }
    a.end_call(&sid, None, None).await.expect("hang up");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_fills_the_frames_a_lossy_uplink_loses() {
    let h = Harness::start().await;
    let plain = frames_through_a_lossy_uplink(&h, "carol", "dave", true).await;
    let red = frames_through_a_lossy_uplink(&h, "alice", "bob", false).await;
    eprintln!("of 200 frames sent through 10 % uplink loss: plain Opus {plain} received, RED {red}");
    assert!(plain <= 190, "plain Opus loses what the uplink loses: {plain}");
    assert!(red >= 196, "RED fills the gaps: {red}");
}
