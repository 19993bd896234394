//! The Rust SDK across a dropped signaling connection: Alice's WebSocket goes through a
//! TCP proxy the test cuts (as a NAT or a network change does); her media goes to the
//! relay directly. Her client connects again, resumes the call and keeps its media, and
//! the relay's later offers reach her media through the same `Client`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchboard_client::tone::dominant;
use switchboard_client::{
    Client, Credentials, DisconnectReason as R, Event, Events, MakeCall, MediaEvent, Sid,
};
use switchboard_tests::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc::UnboundedReceiver};

/// A TCP proxy to the server: `cut` drops every connection through it; with `refuse`
/// it also stops forwarding new ones.
struct Proxy {
    url: String,
    cut: broadcast::Sender<()>,
    refuse: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    async fn start(server: &str) -> Proxy {
        let target: SocketAddr =
            server.trim_start_matches("http://").trim_end_matches('/').parse().expect("server address");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (cut, _) = broadcast::channel(8);
        let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, no) = (cut.clone(), refuse.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if no.load(std::sync::atomic::Ordering::Relaxed) {
                    continue;
                }
                let mut cut = tx.subscribe();
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = cut.recv() => {}
                    }
                });
            }
        });
        Proxy { url, cut, refuse }
    }

    fn cut(&self) {
        let _ = self.cut.send(());
    }
}

async fn reconnecting(ev: &mut switchboard_client::Events) {
    wait_event(ev, |e| matches!(e, Event::Reconnecting { .. }).then_some(())).await;
}

async fn reconnected(ev: &mut switchboard_client::Events) {
    wait_event(ev, |e| matches!(e, Event::Reconnected).then_some(())).await;
}

/// The dominant frequency Alice or Bob hears in the next 100 audio frames.
async fn heard(rx: &mut UnboundedReceiver<MediaEvent>) -> f64 {
    dominant(&receive_tone(rx, 100).await[24_000..])
}

/// Alice, connected through `proxy`, calls Bob (connected directly), who answers.
async fn call_through(h: &Harness, proxy: &Proxy) -> (Client, Events, Client, Events, Sid) {
    let (alice, mut alice_ev) =
        Client::connect(&proxy.url, Credentials::token("acme", "alice", h.token("acme", "alice")))
            .await
            .expect("alice connects through the proxy");
    let (bob, mut bob_ev) = h.user("bob").await;
    let sid = alice.make_call(MakeCall::audio("bob")).await.expect("call");
    pick_up(&bob, &mut bob_ev, &mut alice_ev).await;
    (alice, alice_ev, bob, bob_ev, sid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_and_its_media_survive_a_cut_signaling_connection() {
    let h = Harness::start_with(|c| c.reconnect_grace_ms = 5000).await;
    let proxy = Proxy::start(&h.url()).await;
    let (alice, mut alice_ev, bob, mut bob_ev, sid) = call_through(&h, &proxy).await;
    let (am, mut a_rx) = alice.start_media(&sid, false).await.expect("alice media");
    let (bm, mut b_rx) = bob.start_media(&sid, false).await.expect("bob media");
    let (am, bm) = (Arc::new(am), Arc::new(bm));
    let (ta, tb) = (send_tone(am.clone(), 440.0, 60), send_tone(bm.clone(), 1000.0, 60));
    let (fa, fb) = tokio::join!(heard(&mut a_rx), heard(&mut b_rx));
    assert!((fa - 1000.0).abs() <= 10.0 && (fb - 440.0).abs() <= 10.0, "{fa} {fb}");

    // Cut twice: each time Alice's client comes back and resumes the call.
    for _ in 0..2 {
        proxy.cut();
        reconnecting(&mut alice_ev).await;
        reconnected(&mut alice_ev).await;
    }
    // Requests work on the new connection.
    alice.set_media_state(&sid, Some(true), None).await.expect("media state");
    wait_event(&mut bob_ev, |e| {
        matches!(e, Event::PeerMediaState { mic_muted: Some(true), .. }).then_some(())
    })
    .await;
    // The media never stopped.
    let (fa, fb) = tokio::join!(heard(&mut a_rx), heard(&mut b_rx));
    assert!((fa - 1000.0).abs() <= 10.0 && (fb - 440.0).abs() <= 10.0, "{fa} {fb}");

    // Bob turns his camera on after the reconnect: the relay's offer of a line for it
    // reaches Alice's media through the same client, and his video arrives.
    bm.add_video();
    media_event(
        &mut a_rx,
        |e| matches!(e, MediaEvent::Renegotiated),
        "alice's media takes the relay's new offer",
    )
    .await;
    let video = {
        let bm = bm.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(40));
            for n in 0..400u32 {
                tick.tick().await;
                let mut frame = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
                frame.extend_from_slice(&n.to_be_bytes());
                bm.send_video(frame, 3600);
            }
        })
    };
    media_event(&mut a_rx, |e| matches!(e, MediaEvent::Video { .. }), "bob's video reaches alice").await;
    video.abort();
    ta.abort();
    tb.abort();

    bob.end_call(&sid, None, None).await.expect("end");
    let a = disconnected(&mut alice_ev).await;
    assert_eq!(a.reason, R::Normal);
    let r = h.app.record_for(&sid).await;
    assert_eq!(r.query["disconnect_reason"], "1001", "{:?}", r.query);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_not_back_within_the_grace_is_closed_and_its_call_ends_network_unstable() {
    let h = Harness::start_with(|c| c.reconnect_grace_ms = 2000).await;
    let proxy = Proxy::start(&h.url()).await;
    let (alice, mut alice_ev, _bob, mut bob_ev, sid) = call_through(&h, &proxy).await;
    proxy.refuse.store(true, std::sync::atomic::Ordering::Relaxed);
    proxy.cut();
    reconnecting(&mut alice_ev).await;
    let reason = wait_event(&mut alice_ev, |e| match e {
        Event::Closed { reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(reason.contains("reconnect grace"), "{reason}");
    let b = disconnected(&mut bob_ev).await;
    assert_eq!((b.reason, b.by_remote), (R::NetworkUnstable, true));
    let r = h.app.record_for(&sid).await;
    assert_eq!(r.query["disconnect_reason"], "1301");
    // A request on the closed client fails at once.
    assert!(alice.end_call(&sid, None, None).await.is_err());
}
