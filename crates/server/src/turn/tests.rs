//! The TURN server's decisions on made-up clients and time: the credential dance, a
//! relayed exchange with the relay's media address both ways (Send/Data indications
//! and channels), and every refusal that keeps it from being an open relay.

use super::*;

const SECRET: &[u8] = b"turn-secret";
const NOW: u64 = 1_700_000_000;

fn turn() -> Turn {
    Turn::new(Settings {
        secret: SECRET.to_vec(),
        peers: vec!["127.0.0.1:5000".parse().unwrap()],
        max_allocations_per_user: 2,
        bytes_per_sec: 10_000,
    })
}

fn client(port: u16) -> Client {
    Client { transport: Transport::Udp, addr: SocketAddr::from(([10, 0, 0, 1], port)) }
}

/// The last reply to `c`, parsed by `f`.
fn reply<T>(t: &mut Turn, c: Client, f: impl Fn(&Message) -> T) -> T {
    let mut last = None;
    while let Some(o) = t.poll() {
        if let Output::ToClient(to, bytes) = o {
            if to == c {
                last = Some(bytes);
            }
        }
    }
    let bytes = last.expect("a reply");
    f(&Message::parse(&bytes).expect("a STUN reply"))
}

fn code(m: &Message) -> Option<u16> {
    m.get(attr::ERROR_CODE).map(|v| u16::from(v[2]) * 100 + u16::from(v[3]))
}

struct Creds {
    username: String,
    key: [u8; 16],
    nonce: String,
}

/// The two-step Allocate of a client with `user`'s credentials (`ttl` from NOW): the
/// credentials and the relayed address.
fn allocate(
    t: &mut Turn,
    c: Client,
    user: &str,
    password_of: Option<&str>,
    at: Instant,
    port: u16,
) -> (Creds, Option<SocketAddr>) {
    let tid = [1u8; 12];
    let first = Builder::new(method::ALLOCATE, Class::Request, tid)
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        .build();
    t.handle_client(at, NOW, c, &first, &mut || None);
    let nonce = reply(t, c, |m| {
        assert_eq!(code(m), Some(401));
        m.text(attr::NONCE).expect("a nonce").to_string()
    });
    let (username, password) = credentials(SECRET, user, NOW, 600);
    let password = password_of.map_or(password, str::to_string);
    let key = stun::long_term_key(&username, REALM, &password);
    let second = Builder::new(method::ALLOCATE, Class::Request, [2; 12])
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        .attr(attr::USERNAME, username.as_bytes())
        .attr(attr::REALM, REALM.as_bytes())
        .attr(attr::NONCE, nonce.as_bytes())
        .integrity(&key)
        .build();
    let relayed = SocketAddr::from(([127, 0, 0, 1], port));
    t.handle_client(at, NOW, c, &second, &mut || Some(relayed));
    let got = reply(t, c, |m| {
        if m.class == Class::Success {
            assert!(m.integrity_ok(&key));
            m.xor_addresses(attr::XOR_RELAYED_ADDRESS).first().copied()
        } else {
            None
        }
    });
    (Creds { username, key, nonce }, got)
}

fn signed(method: u16, creds: &Creds, add: impl FnOnce(Builder) -> Builder) -> Vec<u8> {
    let b = Builder::new(method, Class::Request, [3; 12])
        .attr(attr::USERNAME, creds.username.as_bytes())
        .attr(attr::REALM, REALM.as_bytes())
        .attr(attr::NONCE, creds.nonce.as_bytes());
    add(b).integrity(&creds.key).build()
}

#[test]
fn a_client_allocates_and_relays_to_the_media_address_both_ways() {
    let (mut t, c, now) = (turn(), client(1000), Instant::now());
    let (creds, relayed) = allocate(&mut t, c, "alice", None, now, 40000);
    let relayed = relayed.expect("allocated");
    let media: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    // Without a permission nothing goes through.
    let send = Builder::new(method::SEND, Class::Indication, [4; 12])
        .xor_address(attr::XOR_PEER_ADDRESS, media)
        .attr(attr::DATA, b"stun check")
        .build();
    t.handle_client(now, NOW, c, &send, &mut || None);
    assert_eq!(t.poll(), None);
    t.handle_client(
        now,
        NOW,
        c,
        &signed(method::CREATE_PERMISSION, &creds, |b| b.xor_address(attr::XOR_PEER_ADDRESS, media)),
        &mut || None,
    );
    assert_eq!(reply(&mut t, c, |m| m.class), Class::Success);
    t.handle_client(now, NOW, c, &send, &mut || None);
    assert_eq!(t.poll(), Some(Output::ToPeer { relayed, peer: media, data: b"stun check".to_vec() }));
    // The media address answers: a Data indication to the client.
    t.handle_peer(now, relayed, media, b"answer");
    let (peer, data) = reply(&mut t, c, |m| {
        (m.xor_addresses(attr::XOR_PEER_ADDRESS)[0], m.get(attr::DATA).unwrap().to_vec())
    });
    assert_eq!((peer, data.as_slice()), (media, &b"answer"[..]));
    // A channel: ChannelData both ways.
    t.handle_client(
        now,
        NOW,
        c,
        &signed(method::CHANNEL_BIND, &creds, |b| {
            b.attr(attr::CHANNEL_NUMBER, &[0x40, 0x01, 0, 0]).xor_address(attr::XOR_PEER_ADDRESS, media)
        }),
        &mut || None,
    );
    assert_eq!(reply(&mut t, c, |m| m.class), Class::Success);
    t.handle_client(now, NOW, c, &stun::channel_data(0x4001, b"rtp", false), &mut || None);
    assert_eq!(t.poll(), Some(Output::ToPeer { relayed, peer: media, data: b"rtp".to_vec() }));
    t.handle_peer(now, relayed, media, b"rtp back");
    assert_eq!(t.poll(), Some(Output::ToClient(c, stun::channel_data(0x4001, b"rtp back", false))));
    // Refresh with lifetime 0 ends it; its socket is released.
    t.handle_client(
        now,
        NOW,
        c,
        &signed(method::REFRESH, &creds, |b| b.attr(attr::LIFETIME, &0u32.to_be_bytes())),
        &mut || None,
    );
    let mut outs = Vec::new();
    while let Some(o) = t.poll() {
        outs.push(o);
    }
    assert!(outs.contains(&Output::Release(relayed)));
    assert!(t.is_empty());
}

#[test]
fn it_is_no_open_relay_and_wrong_or_expired_credentials_get_nothing() {
    let (mut t, c, now) = (turn(), client(1000), Instant::now());
    let (creds, relayed) = allocate(&mut t, c, "alice", None, now, 40000);
    assert!(relayed.is_some());
    // A permission or a channel to anyone else: 403.
    for other in ["192.0.2.1:5000", "127.0.0.1:22"] {
        let other: SocketAddr = other.parse().unwrap();
        t.handle_client(
            now,
            NOW,
            c,
            &signed(method::CHANNEL_BIND, &creds, |b| {
                b.attr(attr::CHANNEL_NUMBER, &[0x40, 0x02, 0, 0]).xor_address(attr::XOR_PEER_ADDRESS, other)
            }),
            &mut || None,
        );
        assert_eq!(reply(&mut t, c, code), Some(403), "{other}");
    }
    let far: SocketAddr = "192.0.2.1:5000".parse().unwrap();
    t.handle_client(
        now,
        NOW,
        c,
        &signed(method::CREATE_PERMISSION, &creds, |b| b.xor_address(attr::XOR_PEER_ADDRESS, far)),
        &mut || None,
    );
    assert_eq!(reply(&mut t, c, code), Some(403));
    // A send to another port of the relay's own address goes nowhere either.
    let media: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    t.handle_client(
        now,
        NOW,
        c,
        &signed(method::CREATE_PERMISSION, &creds, |b| b.xor_address(attr::XOR_PEER_ADDRESS, media)),
        &mut || None,
    );
    let _ = reply(&mut t, c, |m| m.class);
    let ssh = Builder::new(method::SEND, Class::Indication, [4; 12])
        .xor_address(attr::XOR_PEER_ADDRESS, "127.0.0.1:22".parse().unwrap())
        .attr(attr::DATA, b"x")
        .build();
    t.handle_client(now, NOW, c, &ssh, &mut || None);
    assert_eq!(t.poll(), None);
    assert!(t.stats().forbidden >= 4);

    // Wrong password, and credentials that expired: 401, nothing allocated.
    let (_, none) = allocate(&mut t, client(2000), "bob", Some("guess"), now, 40001);
    assert_eq!(none, None);
    let (username, password) = credentials(SECRET, "bob", NOW - 700, 600);
    let stale_key = stun::long_term_key(&username, REALM, &password);
    let nonce = t.nonce(NOW);
    let req = Builder::new(method::ALLOCATE, Class::Request, [5; 12])
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        .attr(attr::USERNAME, username.as_bytes())
        .attr(attr::REALM, REALM.as_bytes())
        .attr(attr::NONCE, nonce.as_bytes())
        .integrity(&stale_key)
        .build();
    t.handle_client(now, NOW, client(2001), &req, &mut || Some("127.0.0.1:40002".parse().unwrap()));
    assert_eq!(reply(&mut t, client(2001), code), Some(401));
    assert_eq!(t.len(), 1);

    // A user's allocations are bounded.
    let (_, second) = allocate(&mut t, client(1001), "alice", None, now, 40003);
    let (_, third) = allocate(&mut t, client(1002), "alice", None, now, 40004);
    assert!(second.is_some() && third.is_none());
}

#[test]
fn an_allocation_relays_within_its_budget_and_expires() {
    let (mut t, c, now) = (turn(), client(1000), Instant::now());
    let (creds, relayed) = allocate(&mut t, c, "alice", None, now, 40000);
    let relayed = relayed.unwrap();
    let media: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    t.handle_client(
        now,
        NOW,
        c,
        &signed(method::CHANNEL_BIND, &creds, |b| {
            b.attr(attr::CHANNEL_NUMBER, &[0x40, 0x01, 0, 0]).xor_address(attr::XOR_PEER_ADDRESS, media)
        }),
        &mut || None,
    );
    let _ = reply(&mut t, c, |m| m.class);
    // 10 kB/s: twenty 1000-byte packets at once, ten get through.
    for _ in 0..20 {
        t.handle_client(now, NOW, c, &stun::channel_data(0x4001, &[0; 1000], false), &mut || None);
    }
    let sent = std::iter::from_fn(|| t.poll()).filter(|o| matches!(o, Output::ToPeer { .. })).count();
    assert_eq!(sent, 10);
    assert_eq!(t.stats().over_budget, 10);
    // Past its lifetime (600 s) it is gone.
    t.expire(now + Duration::from_secs(601));
    assert!(t.is_empty());
    assert_eq!(t.poll(), Some(Output::Release(relayed)));
}
