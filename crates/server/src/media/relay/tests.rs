//! The relay core with real str0m clients on simulated time: every datagram goes
//! through a simulated network (with loss where a test wants it), no sockets, no sleeps.

use std::collections::VecDeque;

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Frequency, MediaTime};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

use super::*;

const RELAY: &str = "10.9.0.1:3478";
const SID: &str = "call";

/// A room member's key, by its name.
fn key(name: &str) -> PartyKey {
    PartyKey::Member(name.into())
}

fn sid(s: &str) -> Sid {
    Sid::new(s)
}

struct Client {
    name: String,
    /// The session it is in.
    sid: Sid,
    addr: SocketAddr,
    rtc: Rtc,
    /// Lines the client sends on, by kind.
    send: Vec<(MediaKind, Mid)>,
    /// Media received per line (frames, bytes).
    got: HashMap<Mid, (u64, u64)>,
    keyframe_requests: u64,
    offers_seen: u64,
    /// Answer every relay offer with garbage (a client that refuses).
    refuses: bool,
    ts: u64,
    /// Whose media each line carries, as the relay last said (`RelayEvent::Lines`).
    owners: HashMap<String, String>,
}

struct Net {
    now: Instant,
    relay: Relay,
    clients: Vec<Client>,
    /// In flight: (deliver at, from, to, bytes).
    wire: VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    /// Drop every n-th datagram sent from the relay to a client (0: none).
    drop_every: u64,
    sent_by_relay: u64,
    dropped: u64,
    offers: u64,
    /// Wall time spent in the relay's datagram and timer handling (the benchmark).
    relay_busy: Duration,
}

const LATENCY: Duration = Duration::from_millis(5);

impl Net {
    fn new() -> Net {
        let now = Instant::now();
        let cert = switchboard_dtls::certificate();
        Net {
            now,
            relay: Relay::new(RELAY.parse().unwrap(), cert, Duration::from_secs(10)),
            clients: Vec::new(),
            wire: VecDeque::new(),
            drop_every: 0,
            sent_by_relay: 0,
            dropped: 0,
            offers: 0,
            relay_busy: Duration::ZERO,
        }
    }

    /// A client joins with lines of `kinds` (sendrecv) and offers them to the relay.
    fn join(&mut self, name: &str, kinds: &[MediaKind]) -> usize {
        self.join_with(name, kinds, false)
    }

    /// [`Net::join`], offering (and then sending) Opus in RED if `red`, as browsers do.
    fn join_with(&mut self, name: &str, kinds: &[MediaKind], red: bool) -> usize {
        self.join_session(SID, name, kinds, red)
    }

    /// [`Net::join_with`] in session `sid`.
    fn join_session(&mut self, sid: &str, name: &str, kinds: &[MediaKind], red: bool) -> usize {
        let n = self.clients.len() + 1;
        let addr: SocketAddr = format!("10.9.{}.{}:5000", 1 + n / 250, n % 250).parse().unwrap();
        let mut rtc = Rtc::builder().enable_opus(true, red).build(self.now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut change = rtc.sdp_api();
        let send: Vec<(MediaKind, Mid)> =
            kinds.iter().map(|k| (*k, change.add_media(*k, Direction::SendRecv, None, None, None))).collect();
        let (offer, pending) = change.apply().unwrap();
        let answer = self
            .relay
            .offer(self.now, &Sid::new(sid), &key(name), &offer.to_sdp_string())
            .expect("relay answers");
        assert!(answer.contains("a=end-of-candidates"), "{answer}");
        assert!(!answer.contains("trickle"), "{answer}");
        rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
        self.clients.push(Client {
            name: name.into(),
            sid: Sid::new(sid),
            addr,
            rtc,
            send,
            got: HashMap::new(),
            keyframe_requests: 0,
            offers_seen: 0,
            refuses: false,
            ts: 0,
            owners: HashMap::new(),
        });
        self.clients.len() - 1
    }

    /// A call: parties `a` and `b` joined with audio, one after the other.
    fn audio_call() -> Net {
        let mut net = Net::new();
        for name in ["a", "b"] {
            net.join(name, &[MediaKind::Audio]);
            net.run(Duration::from_millis(200), false);
        }
        net
    }

    fn client(&self, name: &str) -> usize {
        self.clients.iter().position(|c| c.name == name).unwrap()
    }

    /// Runs the network for `d` of simulated time; every client sends audio every
    /// 20 ms and video every 33 ms on the lines it sends on.
    fn run(&mut self, d: Duration, media: bool) {
        let end = self.now + d;
        let mut next_audio = self.now;
        let mut next_video = self.now;
        while self.now < end {
            if media && self.now >= next_audio {
                next_audio += Duration::from_millis(20);
                for c in &mut self.clients {
                    c.ts += 960;
                    let ts = c.ts;
                    for (_, mid) in c.send.iter().filter(|(k, _)| *k == MediaKind::Audio) {
                        write(
                            &mut c.rtc,
                            *mid,
                            Codec::Opus,
                            MediaTime::new(ts, Frequency::FORTY_EIGHT_KHZ),
                            self.now,
                            vec![7u8; 80],
                        );
                    }
                }
            }
            if media && self.now >= next_video {
                next_video += Duration::from_millis(33);
                for c in &mut self.clients {
                    let ts = c.ts * 90 / 48;
                    for (_, mid) in c.send.iter().filter(|(k, _)| *k == MediaKind::Video) {
                        // A VP8 frame: keyframe bit clear (P bit 0) on every one is fine
                        // for forwarding; 2,500 bytes span two packets.
                        let mut frame = vec![0u8; 2500];
                        frame[..3].copy_from_slice(&[0x10, 0x02, 0x00]);
                        write(
                            &mut c.rtc,
                            *mid,
                            Codec::Vp8,
                            MediaTime::new(ts, Frequency::NINETY_KHZ),
                            self.now,
                            frame,
                        );
                    }
                }
            }
            self.step();
            let mut next = self.now + Duration::from_millis(5);
            if let Some(t) = self.relay.poll_timeout() {
                next = next.min(t.max(self.now));
            }
            if let Some((t, ..)) = self.wire.front() {
                next = next.min(*t);
            }
            next = next.min(next_audio.max(self.now)).min(end);
            self.now = next.max(self.now + Duration::from_micros(100));
        }
    }

    /// Polls everything at `now` and moves due datagrams.
    fn step(&mut self) {
        let now = self.now;
        let busy = std::time::Instant::now();
        self.relay.handle_timeout(now);
        self.relay_busy += busy.elapsed();
        let relay_addr: SocketAddr = RELAY.parse().unwrap();
        for i in 0..self.clients.len() {
            let c = &mut self.clients[i];
            let _ = c.rtc.handle_input(Input::Timeout(now));
            loop {
                match c.rtc.poll_output() {
                    Ok(Output::Timeout(_)) | Err(_) => break,
                    Ok(Output::Transmit(t)) => {
                        self.wire.push_back((now + LATENCY, c.addr, t.destination, t.contents.to_vec()))
                    }
                    Ok(Output::Event(Event::MediaData(d))) => {
                        let e = c.got.entry(d.mid).or_default();
                        e.0 += 1;
                        e.1 += d.data.len() as u64;
                    }
                    Ok(Output::Event(Event::KeyframeRequest(_))) => c.keyframe_requests += 1,
                    Ok(Output::Event(_)) => {}
                }
            }
        }
        while let Some(t) = self.relay.poll_transmit() {
            self.sent_by_relay += 1;
            if self.drop_every > 0 && self.sent_by_relay.is_multiple_of(self.drop_every) {
                self.dropped += 1;
                continue;
            }
            self.wire.push_back((now + LATENCY, relay_addr, t.destination, t.contents.to_vec()));
        }
        while let Some(ev) = self.relay.poll_event() {
            if let RelayEvent::Lines { party, lines, .. } = &ev {
                let i = self.client(&party.to_string());
                self.clients[i].owners.extend(lines.iter().map(|l| (l.mid.clone(), l.user_id.clone())));
            }
            if let RelayEvent::Offer { party, offer_id, sdp, .. } = ev {
                self.offers += 1;
                let i = self.client(&party.to_string());
                let c = &mut self.clients[i];
                c.offers_seen += 1;
                let answer = if c.refuses {
                    // Parseable, but not an answer to this offer.
                    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n".to_string()
                } else {
                    let offer = SdpOffer::from_sdp_string(&sdp).unwrap();
                    c.rtc.sdp_api().accept_offer(offer).unwrap().to_sdp_string()
                };
                let sid = self.clients[i].sid.clone();
                self.relay.answer(now, &sid, &party, offer_id, &answer);
            }
        }
        let mut keep = VecDeque::new();
        while let Some((at, from, to, bytes)) = self.wire.pop_front() {
            if at > now {
                keep.push_back((at, from, to, bytes));
                continue;
            }
            if to == relay_addr {
                let busy = std::time::Instant::now();
                self.relay.handle_datagram(now, from, &bytes);
                self.relay_busy += busy.elapsed();
            } else if let Some(c) = self.clients.iter_mut().find(|c| c.addr == to) {
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source: from,
                        destination: to,
                        contents: bytes.as_slice().try_into().unwrap(),
                    },
                );
                let _ = c.rtc.handle_input(input);
            }
        }
        self.wire = keep;
    }

    /// Frames `name` received on its lines, most first.
    fn frames(&self, name: &str) -> Vec<u64> {
        let mut v: Vec<u64> = self.clients[self.client(name)].got.values().map(|(f, _)| *f).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    }
}

fn write(rtc: &mut Rtc, mid: Mid, codec: Codec, time: MediaTime, now: Instant, data: Vec<u8>) {
    let Some(writer) = rtc.writer(mid) else { return };
    let Some(pt) = writer.payload_params().find(|p| p.spec().codec == codec).map(|p| p.pt()) else { return };
    let _ = writer.write(pt, now, time, data);
}

#[test]
fn three_parties_each_hear_both_others_on_separate_lines() {
    let mut net = Net::new();
    for name in ["a", "b", "c"] {
        net.join(name, &[MediaKind::Audio]);
        net.run(Duration::from_millis(200), false);
    }
    net.run(Duration::from_secs(3), false);
    net.run(Duration::from_secs(5), true);
    for name in ["a", "b", "c"] {
        let f = net.frames(name);
        assert_eq!(f.len(), 2, "{name} receives on two lines: {f:?}");
        // 5 s of 50 packets/s from each other party; the first few may precede the
        // relay's lines being answered.
        assert!(f.iter().all(|n| *n >= 200), "{name}: {f:?}");
    }
    let stats = net.relay.stats();
    assert_eq!(stats.connections, 3);
    assert!(stats.packets_out[0] >= 2 * stats.packets_in[0] - 60, "{stats:?}");
    assert_eq!(stats.answers_refused, 0);
}

#[test]
fn a_packet_is_forwarded_by_the_call_that_receives_it() {
    let mut net = Net::audio_call();
    net.run(Duration::from_secs(2), true);
    // Everything in flight delivered, nothing left to send.
    net.run(Duration::from_millis(50), false);
    while net.relay.poll_transmit().is_some() {}

    // One audio packet from a, handed to the relay: it must come out for b at once,
    // not after a timer turn of the relay (str0m stamps written packets on a timeout).
    let now = net.now + Duration::from_millis(1);
    let a = net.client("a");
    let b_addr = net.clients[net.client("b")].addr;
    let c = &mut net.clients[a];
    let mid = c.send[0].1;
    write(
        &mut c.rtc,
        mid,
        Codec::Opus,
        MediaTime::new(c.ts + 960, Frequency::FORTY_EIGHT_KHZ),
        now,
        vec![7u8; 80],
    );
    let _ = c.rtc.handle_input(Input::Timeout(now));
    let mut datagrams = Vec::new();
    while let Ok(out) = c.rtc.poll_output() {
        match out {
            Output::Transmit(t) => datagrams.push(t.contents.to_vec()),
            Output::Timeout(_) => break,
            Output::Event(_) => {}
        }
    }
    assert!(!datagrams.is_empty(), "a sent its packet");
    let from = c.addr;
    for d in &datagrams {
        net.relay.handle_datagram(now, from, d);
    }
    let mut to_b = 0;
    while let Some(t) = net.relay.poll_transmit() {
        // RTP, not RTCP (payload types 192-223 in the second byte's place).
        let rtp = t.contents.get(1).is_some_and(|b| !(192..=223).contains(b));
        to_b += usize::from(t.destination == b_addr && rtp);
    }
    assert_eq!(to_b, 1, "forwarded within handle_datagram");
}

#[test]
fn a_late_video_joiner_gets_a_keyframe_at_once_and_a_leaver_frees_its_lines() {
    let mut net = Net::new();
    net.join("a", &[MediaKind::Audio, MediaKind::Video]);
    net.join("b", &[MediaKind::Audio, MediaKind::Video]);
    net.run(Duration::from_secs(2), false);
    net.run(Duration::from_secs(2), true);
    let a = net.client("a");
    let before = net.clients[a].keyframe_requests;
    // c joins late: the relay asks a (and b) for a keyframe for it straight away,
    // without waiting for c to ask or for a periodic keyframe.
    net.join("c", &[MediaKind::Audio, MediaKind::Video]);
    net.run(Duration::from_millis(800), true);
    assert!(net.clients[a].keyframe_requests > before, "a was asked for a keyframe for c");
    assert!(net.relay.stats().keyframes_for_new_receivers >= 2, "{:?}", net.relay.stats());
    net.run(Duration::from_secs(2), true);
    let c_lines = net.frames("c");
    assert_eq!(c_lines.len(), 4, "c gets audio and video of a and b: {c_lines:?}");
    assert!(c_lines.iter().all(|n| *n > 20), "{c_lines:?}");
    // b leaves; d joins and reuses b's lines at a and c (no new lines for them).
    net.relay.leave(net.now, &sid(SID), &key("b"));
    let offers_before = net.offers;
    net.join("d", &[MediaKind::Audio, MediaKind::Video]);
    net.run(Duration::from_secs(3), true);
    let d_lines = net.frames("d");
    assert_eq!(d_lines.len(), 4, "d gets a and c: {d_lines:?}");
    // a and c were not offered new lines: b's are reused. Only d gets offers.
    let a_offers = net.clients[a].offers_seen;
    assert_eq!(net.clients[net.client("c")].offers_seen, 1, "c got one offer (for b), none for d");
    assert_eq!(a_offers, 1, "a got one offer (for c), none for d");
    assert!(net.offers > offers_before);
}

#[test]
fn a_client_that_refuses_every_offer_causes_no_offer_storm() {
    let mut net = Net::new();
    net.join("a", &[MediaKind::Audio]);
    net.join("b", &[MediaKind::Audio]);
    net.run(Duration::from_secs(1), false);
    // c refuses everything the relay offers it (it needs a line for b's audio).
    let c = net.join("c", &[MediaKind::Audio]);
    net.clients[c].refuses = true;
    net.run(Duration::from_secs(30), false);
    let offers = net.clients[c].offers_seen;
    // Back-off 0.5, 1, 2, 4, 8, 16 s: a handful of offers in 30 s, not one per round trip.
    assert!((3..=8).contains(&offers), "c was offered {offers} times in 30 s");
    assert!(net.relay.stats().answers_refused >= 3);
    // The others are unaffected: a and b still hear each other.
    net.run(Duration::from_secs(2), true);
    assert!(net.frames("a")[0] > 50 && net.frames("b")[0] > 50);
}

#[test]
fn video_survives_loss_by_nack() {
    let mut net = Net::new();
    net.join("a", &[MediaKind::Video]);
    net.join("b", &[MediaKind::Video]);
    net.run(Duration::from_secs(2), false);
    // One datagram in 25 from the relay to the clients is lost (4 %).
    net.drop_every = 25;
    net.run(Duration::from_secs(10), true);
    net.drop_every = 0;
    net.run(Duration::from_secs(1), false);
    assert!(net.dropped > 40, "loss was simulated: {}", net.dropped);
    // 10 s at 30 frames/s; without retransmission about 8 % of two-packet frames
    // would be lost for good.
    for name in ["a", "b"] {
        let f = net.frames(name);
        assert!(f[0] >= 290, "{name} got {f:?} of ~300 frames despite {} dropped datagrams", net.dropped);
    }
}

#[test]
fn offers_without_a_forwardable_codec_are_refused_in_our_words() {
    let mut net = Net::new();
    let mut rtc = Rtc::builder().build(net.now);
    rtc.add_local_candidate(Candidate::host("10.9.1.9:5000".parse().unwrap(), "udp").unwrap());
    let mut change = rtc.sdp_api();
    change.add_channel("chat".into());
    let (offer, _) = change.apply().unwrap();
    let e = net.relay.offer(net.now, &sid(SID), &key("x"), &offer.to_sdp_string()).unwrap_err();
    assert!(e.starts_with("the SDP offer"), "{e}");
    assert_eq!(net.relay.stats().connections, 0);
}

#[test]
fn a_plain_browser_offer_is_answered_as_browsers_expect() {
    // Shaped like Chromium's: BUNDLE, one host candidate, trickle advertised, RED,
    // telephone-event, VP8 and H.264 with RTX (also the relay_sdp fuzz seed).
    let offer = include_str!("../../../../../fuzz/seeds/relay_sdp/browser-offer.sdp");
    let mut net = Net::new();
    let answer = net.relay.offer(net.now, &sid(SID), &key("browser"), offer).expect("answered");
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(!answer.contains("trickle"), "the relay does not trickle: {answer}");
    // One host candidate, in the bundle-tag section, ended there.
    assert_eq!(answer.matches("a=candidate:").count(), 1, "{answer}");
    assert_eq!(answer.matches("a=end-of-candidates").count(), 1, "{answer}");
    let first_section = answer.split("m=").nth(1).unwrap_or_default();
    assert!(first_section.contains("a=candidate:") && first_section.contains("a=end-of-candidates"));
    assert!(answer.contains("opus/48000/2") && answer.contains("VP8/90000"), "{answer}");
    SdpAnswer::from_sdp_string(&answer).expect("the answer is valid SDP");
}

#[test]
fn an_offer_that_makes_str0m_panic_is_refused_and_the_relay_goes_on() {
    // Found by the relay_sdp fuzz target: payload type 102 declared in both sections
    // with different parameters made str0m panic ("Pt locked multiple times").
    let offer = include_str!("../../../../../fuzz/seeds/relay_sdp/pt-in-two-sections.sdp");
    let mut net = Net::new();
    let e = net.relay.offer(net.now, &sid(SID), &key("mallory"), offer).unwrap_err();
    assert!(e.starts_with("the "), "{e}");
    // The relay still serves.
    net.join("a", &[MediaKind::Audio]);
    net.join("b", &[MediaKind::Audio]);
    net.run(Duration::from_secs(2), false);
    net.run(Duration::from_secs(2), true);
    assert!(net.frames("a")[0] > 50 && net.frames("b")[0] > 50);
}

impl Net {
    /// Video frames `name` received so far, per sending party (by the relay's line owners).
    fn video_from(&self, name: &str) -> HashMap<String, u64> {
        let c = &self.clients[self.client(name)];
        let mut out = HashMap::new();
        for (mid, (frames, _)) in &c.got {
            if c.rtc.media(*mid).is_some_and(|m| m.kind() == MediaKind::Video) {
                let owner = c.owners.get(&mid.to_string()).cloned().unwrap_or_default();
                *out.entry(owner).or_insert(0) += frames;
            }
        }
        out
    }
}

#[test]
fn in_a_room_video_goes_only_to_those_who_asked_and_a_switch_gets_a_keyframe() {
    let mut net = Net::new();
    for name in ["a", "b", "c"] {
        net.relay.set_video_from(net.now, &sid(SID), &key(name), Vec::new());
        net.join(name, &[MediaKind::Audio, MediaKind::Video]);
    }
    net.run(Duration::from_secs(2), false);
    net.run(Duration::from_secs(2), true);
    for name in ["a", "b", "c"] {
        assert!(net.video_from(name).values().all(|n| *n == 0), "{name} got video unasked");
        assert_eq!(net.frames(name).iter().filter(|n| **n > 50).count(), 2, "{name} hears both others");
    }
    // a asks for b's video: b is asked for a keyframe at once; c's video stays away.
    let b = net.client("b");
    let before = net.clients[b].keyframe_requests;
    net.relay.set_video_from(net.now, &sid(SID), &key("a"), vec![(key("b"), None)]);
    net.run(Duration::from_millis(500), true);
    assert!(net.clients[b].keyframe_requests > before, "b asked for a keyframe for a");
    net.run(Duration::from_secs(2), true);
    let got = net.video_from("a");
    assert!(got.get("b").copied().unwrap_or(0) > 30, "{got:?}");
    assert_eq!(got.get("c").copied().unwrap_or(0), 0, "{got:?}");
    // a switches to c: b's video stops reaching a, c's starts (on the same line).
    let c = net.client("c");
    let (b_before, c_kf) = (got.get("b").copied().unwrap_or(0), net.clients[c].keyframe_requests);
    net.relay.set_video_from(net.now, &sid(SID), &key("a"), vec![(key("c"), None)]);
    net.run(Duration::from_secs(2), true);
    assert!(net.clients[c].keyframe_requests > c_kf, "c asked for a keyframe for a");
    let got = net.video_from("a");
    assert!(got.get("c").copied().unwrap_or(0) > 30, "{got:?}");
    // Frames on a's line are now c's: what b sent before the switch stays counted
    // under the line's new owner, so compare the totals instead.
    let total: u64 = got.values().sum();
    assert!(total > b_before + 30, "{got:?}");
    assert!(net.video_from("b").values().all(|n| *n == 0) && net.video_from("c").values().all(|n| *n == 0));
}

/// Audio from `from` as `to` received it: (frames, bytes).
fn heard(net: &Net, to: &str, from: &str) -> (u64, u64) {
    let c = &net.clients[net.client(to)];
    let mid = c.owners.iter().find(|(_, user)| *user == from).map(|(mid, _)| mid.clone());
    mid.and_then(|m| c.got.get(&Mid::from(m.as_str())).copied()).unwrap_or_default()
}

#[test]
fn red_audio_is_forwarded_to_red_receivers_and_unwrapped_for_the_others() {
    let mut net = Net::new();
    net.join_with("alice", &[MediaKind::Audio], true);
    net.run(Duration::from_millis(200), false);
    net.join_with("bob", &[MediaKind::Audio], false);
    net.run(Duration::from_millis(200), false);
    net.join_with("carol", &[MediaKind::Audio], true);
    net.run(Duration::from_secs(3), false);
    net.run(Duration::from_secs(4), true);
    // Alice sends RED: each packet carries her previous frame too.
    let stats = net.relay.stats();
    assert!(stats.bytes_in[0] / stats.packets_in[0] > 120, "RED on the way in: {stats:?}");
    // Bob did not take RED: he gets Alice's 80-byte frames, the primary only.
    let (frames, bytes) = heard(&net, "bob", "alice");
    assert!(frames >= 150, "bob hears alice: {frames}");
    assert_eq!(bytes, frames * 80, "bob gets the primary of each RED packet");
    // Carol took RED: her stack unwraps it (and could recover from it).
    let (frames, bytes) = heard(&net, "carol", "alice");
    assert!(frames >= 150 && bytes == frames * 80, "carol hears alice: {frames} frames, {bytes} bytes");
    // Plain Opus from Bob reaches both RED clients as plain Opus.
    for to in ["alice", "carol"] {
        let (frames, bytes) = heard(&net, to, "bob");
        assert!(frames >= 150 && bytes == frames * 80, "{to} hears bob: {frames} frames, {bytes} bytes");
    }

    // With every 10th datagram from the relay lost, the RED receiver fills the gaps.
    let (bob0, carol0) = (heard(&net, "bob", "alice").0, heard(&net, "carol", "alice").0);
    net.drop_every = 10;
    net.run(Duration::from_secs(4), true);
    net.drop_every = 0;
    let (bob1, carol1) = (heard(&net, "bob", "alice").0 - bob0, heard(&net, "carol", "alice").0 - carol0);
    assert!(carol1 > bob1 + 10, "RED recovers lost frames: carol {carol1} vs bob {bob1}");
    assert!(carol1 >= 195, "carol misses almost nothing of 200: {carol1}");
}

#[test]
fn audio_lines_exchange_no_transport_feedback_and_video_lines_keep_it() {
    let mut net = Net::audio_call();
    net.run(Duration::from_secs(3), true);
    let before = net.sent_by_relay;
    net.run(Duration::from_secs(10), true);
    // 10 s of 50 packets/s to each of the two, and a few reports. Transport-wide
    // feedback every 50 ms would add 400 (and the clients as many back).
    let sent = net.sent_by_relay - before;
    assert!((1000..1040).contains(&sent), "the relay sent {sent} datagrams");
    // And the audio itself is all there (13 s at 50 packets/s).
    for name in ["a", "b"] {
        let f = net.frames(name);
        assert!(f.len() == 1 && f[0] >= 640, "{name} received {f:?}");
    }

    // An audio and video offer: the answer keeps transport-cc on video only.
    let mut rtc = Rtc::builder().build(net.now);
    rtc.add_local_candidate(Candidate::host("10.9.1.9:5000".parse().unwrap(), "udp").unwrap());
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    change.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    let (offer, _) = change.apply().unwrap();
    let offer = offer.to_sdp_string();
    assert!(offer.matches("transport-wide-cc").count() == 2, "str0m offers it on both: {offer}");
    let answer = net.relay.offer(net.now, &sid("other"), &key("c"), &offer).unwrap();
    let video = answer.find("m=video").unwrap();
    assert!(!answer[..video].contains("transport"), "{answer}");
    assert!(
        answer[video..].contains("transport-wide-cc") && answer[video..].contains("transport-cc"),
        "{answer}"
    );
}

/// A benchmark, not a test (run it with `--ignored --nocapture`, in release): the
/// relay core's own time per forwarded packet, str0m included, without sockets or
/// the kernel, for 150 two-party audio calls over 20 s of simulated time.
#[test]
#[ignore]
fn bench_core_per_forwarded_packet() {
    let mut net = Net::new();
    for call in 0..150 {
        for side in ["a", "b"] {
            net.join_session(&format!("call-{call}"), &format!("{side}{call}"), &[MediaKind::Audio], false);
        }
    }
    net.run(Duration::from_secs(3), true);
    let (busy, before) = (net.relay_busy, net.relay.stats().packets_out[0]);
    net.run(Duration::from_secs(20), true);
    let forwarded = net.relay.stats().packets_out[0] - before;
    let per = (net.relay_busy - busy).as_secs_f64() * 1e6 / forwarded as f64;
    println!("relay core: {forwarded} packets forwarded, {per:.2} µs each");
    assert!(forwarded > 290_000, "{forwarded}");
}
