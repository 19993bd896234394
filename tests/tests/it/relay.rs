//! The media relay with more than two parties in one session, as the group-call rooms
//! will use it: the real relay (its UDP socket on 127.0.0.1) and real SDK media
//! connections (ICE, DTLS-SRTP), negotiating through the relay's command interface
//! instead of a call's signaling session.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_client::{
    connect_media, BoxFuture, ClientError, Media, MediaEvent, MediaSignaling, RelayOffer,
};
use switchboard_protocol::MediaType;
use switchboard_server::ids::{SessionId, Sid};
use switchboard_server::media::{MediaCmd, MediaRelay, PartyKey, RelayEvent, Reply};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

use switchboard_tests::media_event;

const SID: &str = "room-1";

type OfferRoutes = Arc<Mutex<HashMap<PartyKey, UnboundedSender<RelayOffer>>>>;
/// Where each offer's answer goes, by its request number.
type Answers = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<String, String>>>>>;

/// Negotiates one party's connection straight with the relay.
struct Direct {
    relay: MediaRelay,
    party: PartyKey,
    answers: Answers,
}

fn sid() -> Sid {
    Sid::new(SID)
}

impl MediaSignaling for Direct {
    fn offer(&self, sdp: String) -> BoxFuture<'static, Result<String, ClientError>> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let req = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, answer) = oneshot::channel();
        self.answers.lock().expect("answers").insert(req, tx);
        let reply = Reply { session: SessionId(0), req: Some(req) };
        self.relay.send(MediaCmd::Offer { sid: sid(), party: self.party.clone(), sdp, reply });
        Box::pin(async move {
            answer.await.map_err(|_| ClientError::Closed)?.map_err(|e| ClientError::Connect(e.to_string()))
        })
    }

    fn answer(&self, offer_id: u64, sdp: String) {
        self.relay.send(MediaCmd::Answer { sid: sid(), party: self.party.clone(), offer_id, sdp });
    }

    fn add_media(&self, kind: &str) {
        let kind = if kind == "video" { MediaType::Video } else { MediaType::Audio };
        self.relay.send(MediaCmd::AddLine { sid: sid(), party: self.party.clone(), kind });
    }
}

struct Room {
    relay: MediaRelay,
    routes: OfferRoutes,
    answers: Answers,
    /// Relay offers lost on the way, per party (a signaling connection that dropped).
    lose: Arc<Mutex<HashMap<PartyKey, usize>>>,
}

impl Room {
    async fn start() -> Room {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let socket = switchboard_server::media::SocketSettings {
            bind: "127.0.0.1:0".parse().expect("address"),
            advertise: None,
            buffer_bytes: 0,
            shards: 1,
            tcp_port: None,
        };
        let relay =
            MediaRelay::start(socket, Duration::from_secs(30), tx, Arc::default()).await.expect("relay");
        let routes: OfferRoutes = Arc::default();
        let answers: Answers = Arc::default();
        let lose: Arc<Mutex<HashMap<PartyKey, usize>>> = Arc::default();
        let (r, a, l) = (routes.clone(), answers.clone(), lose.clone());
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if let RelayEvent::Answer { reply, result, .. } = &ev {
                    let to = reply.req.and_then(|req| a.lock().ok().and_then(|mut m| m.remove(&req)));
                    if let Some(to) = to {
                        let _ = to.send(result.clone());
                    }
                }
                if let RelayEvent::Offer { party, offer_id, sdp, .. } = ev {
                    if let Some(n) = l.lock().expect("lose").get_mut(&party).filter(|n| **n > 0) {
                        *n -= 1;
                        continue;
                    }
                    let to = r.lock().ok().and_then(|m| m.get(&party).cloned());
                    if let Some(to) = to {
                        let _ = to.send(RelayOffer { id: offer_id, sdp });
                    }
                }
            }
        });
        Room { relay, routes, answers, lose }
    }

    /// A member joins: its media connection, its events, and a sender of its name.
    async fn join(
        &self,
        name: &str,
    ) -> (Arc<Media>, UnboundedReceiver<MediaEvent>, tokio::task::JoinHandle<()>) {
        let (tx, offers) = mpsc::unbounded_channel();
        let party = PartyKey::Member(name.to_string());
        self.routes.lock().expect("routes").insert(party.clone(), tx);
        let signaling = Direct { relay: self.relay.clone(), party, answers: self.answers.clone() };
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let (media, mut rx) = connect_media(Box::new(signaling), offers, ip, false).await.expect("media");
        media_event(&mut rx, |e| matches!(e, MediaEvent::Connected), "media connected").await;
        let media = Arc::new(media);
        let m = media.clone();
        let tag = name.as_bytes().to_vec();
        let sender = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for _ in 0..1500 {
                tick.tick().await;
                m.send_audio(tag.clone(), 960);
            }
        });
        (media, rx, sender)
    }
}

/// Who a member hears, and on which line: sender name → (mid, packets), over `window`.
async fn heard(
    rx: &mut UnboundedReceiver<MediaEvent>,
    window: Duration,
) -> BTreeMap<String, (String, usize)> {
    let mut out: BTreeMap<String, (String, usize)> = BTreeMap::new();
    let end = tokio::time::Instant::now() + window;
    while let Ok(Some(ev)) = tokio::time::timeout_at(end, rx.recv()).await {
        if let MediaEvent::Audio { mid, payload } = ev {
            let from = String::from_utf8_lossy(&payload).to_string();
            let e = out.entry(from).or_insert((mid.clone(), 0));
            assert_eq!(e.0, mid, "one sender, one line");
            e.1 += 1;
        }
    }
    out
}

fn senders(h: &BTreeMap<String, (String, usize)>) -> Vec<&str> {
    h.iter().filter(|(_, (_, n))| *n >= 20).map(|(s, _)| s.as_str()).collect()
}

/// Listens in 1-second windows (while the relay's offers settle) until a window has
/// `expected` as its senders, or 15 windows passed; returns the last window.
async fn hears(
    rx: &mut UnboundedReceiver<MediaEvent>,
    expected: &[&str],
) -> BTreeMap<String, (String, usize)> {
    let mut last = BTreeMap::new();
    for _ in 0..15 {
        last = heard(rx, Duration::from_secs(1)).await;
        if senders(&last) == expected {
            break;
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_parties_each_hear_both_others_on_separate_lines_and_a_newcomer_reuses_a_leavers_lines() {
    let room = Room::start().await;
    let (_a, mut a_rx, a_send) = room.join("ann").await;
    let (_b, mut b_rx, b_send) = room.join("ben").await;
    let (_c, mut c_rx, c_send) = room.join("cat").await;
    let (ha, hb, hc) = tokio::join!(
        hears(&mut a_rx, &["ben", "cat"]),
        hears(&mut b_rx, &["ann", "cat"]),
        hears(&mut c_rx, &["ann", "ben"])
    );
    assert_eq!(senders(&ha), ["ben", "cat"], "{ha:?}");
    assert_eq!(senders(&hb), ["ann", "cat"], "{hb:?}");
    assert_eq!(senders(&hc), ["ann", "ben"], "{hc:?}");
    assert_ne!(ha["ben"].0, ha["cat"].0, "each sender on its own line");
    assert!(!ha.contains_key("ann") && !hb.contains_key("ben"), "nobody hears themself");
    let cat_at_ann = ha["cat"].0.clone();

    // Cat leaves; Ann and Ben still hear each other; Dan takes Cat's lines.
    room.relay.send(MediaCmd::Leave { sid: sid(), party: PartyKey::Member("cat".into()) });
    c_send.abort();
    let (_d, mut d_rx, d_send) = room.join("dan").await;
    let (ha, hd) = tokio::join!(hears(&mut a_rx, &["ben", "dan"]), hears(&mut d_rx, &["ann", "ben"]));
    assert_eq!(senders(&ha), ["ben", "dan"], "{ha:?}");
    assert_eq!(senders(&hd), ["ann", "ben"], "{hd:?}");
    assert_eq!(ha["dan"].0, cat_at_ann, "dan reuses the line cat had at ann");
    for s in [a_send, b_send, d_send] {
        s.abort();
    }
    room.relay.send(MediaCmd::End { sid: sid() });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_relay_offer_is_sent_again_and_video_turned_on_later_still_arrives() {
    let room = Room::start().await;
    let (ann, _a_rx, a_send) = room.join("ann").await;
    let (_ben, mut b_rx, b_send) = room.join("ben").await;
    // Ann turns video on. Ben's offer (a line to receive it on) is lost once.
    room.lose.lock().expect("lose").insert(PartyKey::Member("ben".into()), 1);
    ann.add_video();
    let video = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(40));
        for n in 0..400u32 {
            tick.tick().await;
            let mut frame = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
            frame.extend_from_slice(&n.to_be_bytes());
            ann.send_video(frame, 3600);
        }
    });
    let wait = async {
        let mut frames = 0;
        while let Some(ev) = b_rx.recv().await {
            if matches!(ev, MediaEvent::Video { .. }) {
                frames += 1;
                if frames >= 10 {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), wait).await.expect("ben gets ann's video after the resend");
    assert_eq!(
        room.lose.lock().expect("lose")[&PartyKey::Member("ben".into())],
        0,
        "the first offer was indeed lost"
    );
    for t in [a_send, b_send, video] {
        t.abort();
    }
}

/// The relay's ICE-TCP port takes connections from anyone, so it keeps only the ones a
/// peer connection claims (by the STUN username of their first frame): one whose first
/// frame is not a STUN request of a party is closed at once, one that sends nothing
/// within 5 s too, and the relay goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_tcp_connections_nobody_claims_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (tx, _rx) = mpsc::unbounded_channel();
    let socket = switchboard_server::media::SocketSettings {
        bind: "127.0.0.1:0".parse().expect("address"),
        advertise: None,
        buffer_bytes: 0,
        shards: 1,
        tcp_port: Some(0),
    };
    let relay = MediaRelay::start(socket, Duration::from_secs(30), tx, Arc::default()).await.expect("relay");
    let port = relay.advertised_tcp[0];
    let closed = |mut s: tokio::net::TcpStream, within: Duration| async move {
        let mut buf = [0u8; 64];
        matches!(tokio::time::timeout(within, s.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
    };
    // A framed packet that is no party's STUN request.
    let mut garbage = tokio::net::TcpStream::connect(port).await.expect("connect");
    let mut frame = 20u16.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0x42; 20]);
    garbage.write_all(&frame).await.expect("write");
    assert!(closed(garbage, Duration::from_secs(2)).await, "an unclaimed connection is closed");
    // Silence.
    let silent = tokio::net::TcpStream::connect(port).await.expect("connect");
    assert!(closed(silent, Duration::from_secs(8)).await, "a silent connection is closed");
    // Still accepting.
    let again = tokio::net::TcpStream::connect(port).await;
    assert!(again.is_ok());
    relay.shutdown().await;
}

/// `welcome`'s ICE servers: the embedded TURN server (UDP, TCP, and the `turns:` URL of
/// a TLS-terminating load balancer in front of it), then a coturn run apart, each with
/// TURN REST credentials for this user that its own secret signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_hands_out_the_embedded_and_the_external_turn_servers_with_their_credentials() {
    let external = vec![
        "turn:turn.example.net:3478?transport=udp".to_string(),
        "turns:turn.example.net:5349?transport=tcp".to_string(),
    ];
    let h = switchboard_tests::Harness::start_with(|c| {
        c.turn_tls_url = Some("turns:turn.example.com:443?transport=tcp".into());
        c.turn_servers = vec![switchboard_server::config::ExternalTurn {
            urls: external.clone(),
            secret: "sh4red".into(),
        }];
    })
    .await;
    let (alice, _events) = h.user("alice").await;
    let servers = alice.ice_servers();
    assert_eq!(servers.len(), 2, "{servers:?}");
    let embedded = &servers[0];
    assert!(
        embedded.urls.iter().any(|u| u.starts_with("turn:") && u.ends_with("?transport=udp")),
        "{embedded:?}"
    );
    assert!(
        embedded.urls.iter().any(|u| u.starts_with("turn:") && u.ends_with("?transport=tcp")),
        "{embedded:?}"
    );
    assert!(embedded.urls.contains(&"turns:turn.example.com:443?transport=tcp".to_string()), "{embedded:?}");
    // Plain http here: no `turns:` at the listener's own address.
    assert!(
        !embedded.urls.iter().any(|u| u.contains("127.0.0.1") && u.starts_with("turns:")),
        "{embedded:?}"
    );
    let ext = &servers[1];
    assert_eq!(ext.urls, external);
    let (expiry, user) = ext.username.split_once(':').expect("expiry:user");
    assert_eq!(user, "acme:alice");
    let expiry: u64 = expiry.parse().expect("a number");
    let now = switchboard_server::server::now_ms() / 1000;
    assert!(expiry > now && expiry <= now + h.config.turn_credential_ttl_secs + 5, "{expiry} vs {now}");
    let ttl = h.config.turn_credential_ttl_secs;
    let (_, expected) = switchboard_server::turn::credentials(b"sh4red", "acme:alice", expiry - ttl, ttl);
    assert_eq!(ext.credential, expected, "HMAC-SHA1 of the username with the shared secret, base64");
    assert_ne!(ext.credential, embedded.credential);
}
