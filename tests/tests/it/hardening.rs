//! Regression tests for the holes found by probing the server from outside (issue 8):
//! each drives the real server the way the attacker or careless client did.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_client::{
    Client, ClientError, Credentials, DisconnectReason as R, DisconnectSource as S, ErrorCode, Event,
    MakeCall, Sid,
};
use switchboard_server::auth::{CcClaims, CcKey};
use switchboard_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one test's own server logged, at every level: the log of the threads of the
/// test's runtime (the other tests of this binary log elsewhere).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().map(|l| l.clone()).unwrap_or_default()).into_owned()
    }
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut l) = self.0.lock() {
            l.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `test` on a runtime of its own (two workers, as the other tests here) whose
/// threads log into the [`Log`] it is given.
fn with_log<F: std::future::Future<Output = ()>>(test: impl FnOnce(Log) -> F) {
    let log = Log::default();
    let buf = log.0.clone();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogWriter(buf.clone()))
            .finish(),
    );
    let workers = dispatch.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        // The guard lives as long as the worker thread: the thread logs here until it ends.
        .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&workers)))
        .build()
        .expect("runtime");
    let _here = tracing::dispatcher::set_default(&dispatch);
    rt.block_on(test(log));
}

/// The key this server signs cc_params with (it lives in the data dir).
fn cc_key(h: &Harness) -> CcKey {
    CcKey::new(switchboard_server::config::server_secret(&h.config.data_dir).expect("server secret"))
}

/// alice calls bob and bob answers on his token device.
async fn answered_call(h: &Harness) -> (Client, switchboard_client::Events, Client, Sid) {
    let (alice, mut a_ev) = h.user("alice").await;
    let (bob, mut b_ev) = h.user("bob").await;
    let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    assert_eq!(pick_up(&bob, &mut b_ev, &mut a_ev).await, sid);
    (alice, a_ev, bob, sid)
}

fn now_secs() -> u64 {
    switchboard_server::server::now_ms() / 1000
}

/// Finding 1: the pushed cc_param could take over a call answered on the callee's
/// token device. Now it cannot; the callee keeps the call and its hang-up is the callee's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_cc_param_cannot_take_over_an_answered_call() {
    let h = Harness::start().await;
    let (_alice, mut a_ev, bob, sid) = answered_call(&h).await;
    let param = h.app.notify_for("bob").await.query["param"].clone();

    let (intruder, _i_ev) = h.callee_by_cc_param(&param).await;
    match intruder.verify_call(&param).await {
        Err(ClientError::Disconnected { reason: R::MultidevAnswer, .. }) => {}
        other => panic!("verify of an answered call: {other:?}"),
    }
    match intruder.resume(&sid).await {
        Err(ClientError::Server { error: ErrorCode::NotFound, .. }) => {}
        other => panic!("resume from the pushed cc_param must fail: {other:?}"),
    }
    match intruder.end_call(&sid, None, None).await {
        Err(ClientError::Server { error: ErrorCode::NotFound, .. }) => {}
        other => panic!("end_call from the intruder must fail: {other:?}"),
    }
    // bob's device still owns the call.
    bob.end_call(&sid, None, None).await.expect("bob hangs up");
    assert_eq!(disconnected(&mut a_ev).await.reason, R::Normal);
    let rec = h.app.record_for(&sid).await;
    assert_eq!(rec.query["releaser_type"], "1", "the callee ended it");
}

/// A callee that answered from a cc_param session gets a resume_param; after a
/// reconnect, that (and only that) brings its device back into the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cc_param_device_resumes_with_its_resume_param() {
    let h = Harness::start_with(|c| c.reconnect_grace_ms = 10_000).await;
    let (alice, mut a_ev) = h.user("alice").await;
    let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    let param = h.app.notify_for("bob").await.query["param"].clone();
    let (bob, mut b_ev) = h.callee_by_cc_param(&param).await;
    bob.verify_call(&param).await.expect("verified");
    bob.accept_call(&sid).await.expect("accepted");
    let resume_param = wait_event(&mut b_ev, |e| match e {
        Event::Connected { resume_param, .. } => Some(resume_param.clone()),
        _ => None,
    })
    .await
    .expect("a cc_param device gets a resume_param");
    bob.close().await;
    drop(bob);
    // The pushed cc_param cannot resume the call...
    let (other, _o) = h.callee_by_cc_param(&param).await;
    assert!(matches!(other.resume(&sid).await, Err(ClientError::Server { error: ErrorCode::NotFound, .. })));
    // ...the device's resume_param can.
    let (bob2, _b2) = h.callee_by_cc_param(&resume_param).await;
    assert_eq!(bob2.resume(&sid).await.expect("resumed"), "connected");
    bob2.end_call(&sid, None, None).await.expect("hang up");
    let ended = disconnected(&mut a_ev).await;
    assert_eq!((ended.reason, ended.source), (R::Normal, S::Callee));
}

/// Finding 2: a cc_param past its expiry (ring deadline + 60 s) still opened a
/// session that could resume and end the call. Now `hello` refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_cc_param_is_refused_at_hello() {
    let h = Harness::start().await;
    let (_alice, mut a_ev, bob, sid) = answered_call(&h).await;
    // A cc_param of this very call, signed by this server, whose time is up (as the
    // pushed one is, a minute after the ring deadline).
    let expired = cc_key(&h).sign(&CcClaims {
        sid: sid.clone(),
        service_id: "acme".into(),
        user_id: "bob".into(),
        exp: now_secs() - 1,
        device: None,
    });
    match Client::connect(&h.url(), Credentials::CcParam(expired)).await {
        Err(ClientError::Refused { reason: R::ReleasedCall, .. }) => {}
        Err(e) => panic!("expected RELEASED_CALL, got {e:?}"),
        Ok(_) => panic!("an expired cc_param opened a session"),
    }
    // The call is untouched.
    bob.end_call(&sid, None, None).await.expect("bob hangs up");
    assert_eq!(disconnected(&mut a_ev).await.reason, R::Normal);
}

async fn connect_from(source: &str, server: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{source}:0").parse().expect("source addr")).expect("bind source");
    socket.connect(server).await.expect("tcp connect")
}

/// Whether the server closes `tcp` within `within` (EOF or reset).
async fn closed_by_server(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before closing is fine: keep reading to the end.
            Ok(Ok(_)) => continue,
        }
    }
}

/// Finding 3: connections that never sent a request were held forever, and the
/// per-IP limit did not count them. Now they must finish a request head within the
/// header timeout, and one address cannot hold more than `pending_per_ip` of them.
#[test]
fn silent_connections_time_out_and_are_capped_per_address() {
    with_log(|log| async move {
        let h = Harness::start_with(|c| {
            c.limits.header_timeout_ms = 1_000;
            c.limits.pending_per_ip = 20;
        })
        .await;
        let addr = h.server.addr;
        // An attacker on 127.0.0.2 opens silent and half-sent connections up to the cap.
        let mut held = Vec::new();
        for i in 0..20 {
            let mut tcp = connect_from("127.0.0.2", addr).await;
            if i % 2 == 1 {
                tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.expect("half a request");
            }
            held.push(tcp);
        }
        // Past the cap, its new connections are closed at once.
        let mut over = connect_from("127.0.0.2", addr).await;
        assert!(
            closed_by_server(&mut over, Duration::from_millis(500)).await,
            "over the cap: closed at once"
        );
        // Users from elsewhere are not locked out meanwhile: a call from start to its record.
        let (_alice, mut a_ev, bob, sid) = answered_call(&h).await;
        let health = reqwest::get(format!("{}/healthz", h.url())).await.expect("healthz while attacked");
        assert!(health.status().is_success());
        bob.end_call(&sid, None, None).await.expect("bob hangs up");
        assert_eq!(disconnected(&mut a_ev).await.reason, R::Normal);
        assert_eq!(h.app.record_for(&sid).await.query["disconnect_reason"], "1001");
        // Every held connection is closed once the header timeout passes.
        for (i, tcp) in held.iter_mut().enumerate() {
            assert!(
                closed_by_server(tcp, Duration::from_secs(5)).await,
                "held connection {i} was not closed"
            );
        }
        // Then the address may connect again, and what happened is visible.
        let mut again = connect_from("127.0.0.2", addr).await;
        again.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        let _ = again.read_to_string(&mut answer).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let metrics = reqwest::get(format!("{}/metrics", h.url())).await.unwrap().text().await.unwrap();
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("switchboard_connections_refused_total ") && !l.ends_with(" 0")),
            "{metrics}"
        );
        assert!(log.text().contains("too many unauthenticated connections"), "the refusal is logged");
    });
}

/// Finding 4: garbage SDP was answered with the parser's debug output, including a
/// live heap address. Now the error says what was wrong in our words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sdp_errors_are_in_our_words() {
    let h = Harness::start().await;
    let mut alice = RawSession::connect(&h, "alice").await;
    let mut bob = RawSession::connect(&h, "bob").await;
    alice.send(r#"{"type":"make_call","req":1,"to_user_id":"bob","media_type":"audio"}"#).await;
    let incoming = bob.wait_for("incoming_call").await;
    let sid = incoming["sid"].as_str().unwrap().to_string();
    let cc = incoming["cc_param"].as_str().unwrap().to_string();
    bob.send(&format!(r#"{{"type":"verify_call","req":2,"cc_param":"{cc}"}}"#)).await;
    bob.wait_for("verified").await;
    bob.send(&format!(r#"{{"type":"accept_call","req":3,"sid":"{sid}"}}"#)).await;
    alice.wait_for("connected").await;
    let garbage = [
        "garbage".to_string(),
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n".into(),
        "v=0\r\nm=audio x\r\n\u{0}\u{1}".into(),
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n".into(),
    ];
    for (i, sdp) in garbage.iter().enumerate() {
        let frame = serde_json::json!({"type": "media_offer", "req": 10 + i, "sid": sid, "sdp": sdp});
        alice.send(&frame.to_string()).await;
        let e = alice.wait_for("error").await;
        assert_eq!(e["error"], "invalid_param", "{e}");
        let message = e["message"].as_str().unwrap();
        assert!(message.starts_with("the SDP offer"), "offer {i}: {message}");
        for leak in ["0x", "Pointer", "Error", "{", "expected", "Unexpected"] {
            assert!(!message.contains(leak), "offer {i} leaks {leak:?}: {message}");
        }
    }
    // The call is fine.
    alice.send(&format!(r#"{{"type":"end_call","req":30,"sid":"{sid}"}}"#)).await;
    assert_eq!(bob.wait_for("disconnected").await["reason"]["code"], 1001);
}

/// Finding 5: the URL of a notify_cb that failed (its query holds the cc_param) was
/// logged. Nothing secret-bearing reaches the log now, at any level.
#[test]
fn no_cc_param_or_token_reaches_the_log() {
    with_log(|log| async move {
        let h = Harness::start_with(|c| c.notify_timeout_ms = 1_000).await;
        // notify_cb refuses connections: every attempt fails until the push is given up.
        h.app.stop().await;
        let token = h.token("acme", "alice");
        let (alice, mut a_ev) = Client::connect(&h.url(), Credentials::token("acme", "alice", token.clone()))
            .await
            .expect("alice connects");
        let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
        assert_eq!(disconnected(&mut a_ev).await.reason, R::PushError);
        // The push's cc_param, as the server signed it (it is the only one for this call).
        let key = cc_key(&h);
        let mut rows = h.server.store().callbacks("acme", "dropped", 100).await.unwrap_or_default();
        rows.extend(h.server.store().callbacks("acme", "failed", 100).await.unwrap_or_default());
        let row = rows.iter().find(|r| r.key == sid).unwrap_or_else(|| panic!("the push in {rows:?}"));
        let param = url::form_urlencoded::parse(row.query.as_bytes())
            .find(|(k, _)| k == "param")
            .map(|(_, v)| v.into_owned())
            .expect("param in the stored query");
        assert!(key.open(&param).is_some(), "that is the real cc_param");
        let log = log.text();
        assert!(log.contains("could not connect"), "the failure itself is logged: {log}");
        let encoded: String = url::form_urlencoded::byte_serialize(param.as_bytes()).collect();
        for secret in [param.as_str(), encoded.as_str(), token.as_str(), ACME_SECRET, "param="] {
            assert!(!log.contains(secret), "the log holds {secret:?}");
        }
    });
}

/// Finding 6a: invalid UTF-8 in a text frame after hello dropped the connection with
/// no close frame. Now: close 1007 and a log line.
#[test]
fn invalid_utf8_is_closed_with_1007() {
    with_log(|log| async move {
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        use tokio_tungstenite::tungstenite::Message;
        let h = Harness::start().await;
        let mut raw = RawSession::connect(&h, "mallory").await;
        let bad = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
        assert!(raw.send_frame(Message::Frame(bad)).await);
        assert_eq!(raw.next().await, RawFrame::Close(Some(1007)));
        assert!(log.text().contains("text frame is not valid UTF-8"));
    });
}

/// Finding 6b: a burst of hundreds of frames in one write overflowed the session's
/// queue and the session vanished with no close frame. Now every frame is answered
/// or refused, or the session is closed with a close code; a bystander call is fine.
#[test]
fn a_burst_of_frames_gets_answers_or_a_close_code() {
    with_log(|log| async move {
        let h = Harness::start().await;
        let (_alice, mut a_ev, bob, sid) = answered_call(&h).await;

        // Mallory writes 450 frames in one go, then reads.
        let url = format!("ws://{}{}", h.server.addr, switchboard_protocol::SIGNAL_PATH);
        let (mut tcp, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("connect");
        {
            use futures_util::{SinkExt, StreamExt};
            use tokio_tungstenite::tungstenite::Message;
            let hello = format!(r#"{{"type":"hello","v":1,"token":"{}"}}"#, h.token("acme", "mallory"));
            tcp.send(Message::Text(hello.into())).await.unwrap();
            loop {
                let m = tcp.next().await.expect("welcome").expect("welcome");
                if m.to_text().unwrap_or_default().contains("welcome") {
                    break;
                }
            }
            for i in 0..450 {
                let f = format!(
                    r#"{{"type":"end_call","req":{i},"sid":"00000000-0000-0000-0000-000000000000"}}"#
                );
                tcp.feed(Message::Text(f.into())).await.unwrap();
            }
            tcp.flush().await.unwrap();
            let (mut answered, mut close) = (0, None);
            while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), tcp.next()).await {
                match m {
                    Ok(Message::Text(_)) => answered += 1,
                    Ok(Message::Close(c)) => {
                        close = Some(c.map(|c| u16::from(c.code)));
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => panic!("the session ended without a close frame after {answered} answers: {e}"),
                }
            }
            match close {
                Some(code) => {
                    assert!(code.is_some(), "a close frame carries a code");
                    assert!(log.text().contains("closing session"), "the close is logged");
                }
                None => assert_eq!(answered, 450, "every frame answered when the session stays open"),
            }
            eprintln!("burst: {answered} answers, then close {close:?}");
        }
        // The bystander call is untouched: it ends normally, with its record.
        bob.end_call(&sid, None, None).await.expect("bob hangs up");
        assert_eq!(disconnected(&mut a_ev).await.reason, R::Normal);
        assert_eq!(h.app.record_for(&sid).await.query["disconnect_reason"], "1001");
    });
}

/// Also seen: database files were world-readable (they hold live cc_params).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::start().await;
    let (alice, _a) = h.user("alice").await;
    alice.make_call(MakeCall::audio("bob")).await.unwrap();
    h.app.notify_for("bob").await;
    let dir = &h.config.data_dir;
    assert_eq!(std::fs::metadata(dir).unwrap().permissions().mode() & 0o777, 0o700, "data dir");
    for name in ["switchboard.db", "switchboard.db-wal", "switchboard.db-shm", "server-secret"] {
        let mode = std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} is {mode:o}");
    }
}

/// Also seen: a token with `nbf` in the future was accepted, and repeated query
/// parameters (`?user_id=a&user_id=b`) were taken (one of them, silently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_not_yet_valid_and_repeated_parameters_are_refused() {
    let h = Harness::start().await;
    let now = now_secs();
    let early = switchboard_server::auth::mint_token(
        ACME_SECRET,
        &switchboard_server::auth::Claims {
            nbf: Some(now + 600),
            ..switchboard_server::auth::Claims::new("acme", "alice", "acme-key", now, 3600)
        },
    );
    match Client::connect(&h.url(), Credentials::token("acme", "alice", early)).await {
        Err(ClientError::Refused { reason: R::ServiceAccessTokenError, .. }) => {}
        Err(e) => panic!("expected 1501, got {e:?}"),
        Ok(_) => panic!("a token not valid yet opened a session"),
    }
    let http = reqwest::Client::new();
    let get = |q: &str| {
        http.get(format!("{}/v1/calls?{q}", h.url())).basic_auth("acme-key", Some(ACME_SECRET)).send()
    };
    assert_eq!(get("user_id=alice").await.unwrap().status(), 200);
    let twice = get("user_id=alice&user_id=bob").await.unwrap();
    assert_eq!(twice.status(), 400);
    let body: serde_json::Value = twice.json().await.unwrap();
    assert!(body["message"].as_str().unwrap_or_default().contains("more than once"), "{body}");
}

/// Noted by earlier sessions: an expired token did not close an open session. Now the
/// session ends 30 s (the clock skew) past `exp` unless the token was refreshed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_when_its_token_expires_unless_refreshed() {
    let h = Harness::start().await;
    // Expired 27 s ago: still inside the 30 s skew, so hello is accepted.
    let token = format!(r#"{{"type":"hello","v":1,"token":"{}"}}"#, h.token_with("acme", "mallory", -27));
    let mut raw = RawSession::open(&h).await;
    raw.send(&token).await;
    raw.wait_for("welcome").await;
    let started = std::time::Instant::now();
    let e = raw.wait_for("error").await;
    assert_eq!((e["error"].as_str(), e["reason"]["code"].as_u64()), (Some("auth"), Some(1303)), "{e}");
    assert_eq!(raw.next().await, RawFrame::Close(Some(1008)));
    assert!(started.elapsed() < Duration::from_secs(8), "closed {:?} after welcome", started.elapsed());
    // A refreshed session stays.
    let (alice, _a) =
        Client::connect(&h.url(), Credentials::token("acme", "alice", h.token_with("acme", "alice", -27)))
            .await
            .expect("alice connects");
    alice.refresh_token(&h.token("acme", "alice")).await.expect("refreshed");
    tokio::time::sleep(Duration::from_secs(5)).await;
    alice.make_call(MakeCall::audio("bob")).await.expect("the refreshed session is open");
}

/// Behind a load balancer: the client address a forwarded header names counts (here in
/// the record's `srcip`) only when the connection comes from a trusted proxy, and then
/// the nearest hop that is no proxy, not whatever the client wrote at the front; from
/// anyone else the header is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_client_addresses_count_only_from_trusted_proxies() {
    for (trusted, srcip) in [(vec!["127.0.0.0/8".to_string()], "203.0.113.9"), (Vec::new(), "127.0.0.1")] {
        let h = Harness::start_with(|c| c.trusted_proxies = trusted.clone()).await;
        let forwarded = [("x-forwarded-for", "198.51.100.20, 203.0.113.9")];
        let mut alice = RawSession::connect_with_headers(&h, "alice", &forwarded).await;
        let (bob, mut bob_ev) = h.user("bob").await;
        alice.send(r#"{"type":"make_call","req":1,"to_user_id":"bob","media_type":"audio"}"#).await;
        let (sid, cc) = incoming(&mut bob_ev).await;
        bob.verify_call(&cc).await.expect("verified");
        bob.end_call(&sid, None, None).await.expect("declined");
        let r = h.app.record_for(sid.as_ref()).await;
        let field = |k: &str| r.query.get(k).cloned().unwrap_or_default();
        assert_eq!(
            (field("srcip"), field("dstip")),
            (srcip.to_string(), "127.0.0.1".to_string()),
            "{trusted:?}"
        );
    }
}

/// A TCP load balancer speaking the PROXY protocol (v1 and v2) from a trusted address:
/// the client its header names is the one recorded; from that address a connection with
/// no header is closed unanswered, and a client elsewhere is served as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_protocol_header_from_a_trusted_balancer_names_the_client() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let h = Harness::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.2".into()];
        c.proxy_protocol = true;
    })
    .await;
    // What the balancer at 127.0.0.2 opens its connections with.
    let mut v2 = vec![0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
    v2.extend_from_slice(&[0x21, 0x11, 0, 12, 198, 51, 100, 7, 127, 0, 0, 1, 0x9C, 0x40, 0x1F, 0x40]);
    let from_balancer = || async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind("127.0.0.2:0".parse().expect("address")).expect("bind 127.0.0.2");
        socket.connect(h.server.addr).await.expect("connect")
    };
    let (bob, mut bob_ev) = h.user("bob").await;
    for (header, client) in
        [(b"PROXY TCP4 203.0.113.5 127.0.0.1 40000 7880\r\n".to_vec(), "203.0.113.5"), (v2, "198.51.100.7")]
    {
        let mut tcp = from_balancer().await;
        tcp.write_all(&header).await.expect("header");
        let url = format!("ws://{}{}", h.server.addr, switchboard_protocol::SIGNAL_PATH);
        let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp).await.expect("upgrade");
        let hello = format!(r#"{{"type":"hello","v":1,"token":"{}"}}"#, h.token("acme", "alice"));
        ws.send(Message::Text(hello.into())).await.expect("hello");
        let call = r#"{"type":"make_call","req":1,"to_user_id":"bob","media_type":"audio"}"#;
        ws.send(Message::Text(call.into())).await.expect("make_call");
        let (sid, cc) = incoming(&mut bob_ev).await;
        bob.verify_call(&cc).await.expect("verified");
        bob.end_call(&sid, None, None).await.expect("declined");
        let r = h.app.record_for(sid.as_ref()).await;
        let field = |k: &str| r.query.get(k).cloned().unwrap_or_default();
        assert_eq!((field("srcip"), field("dstip")), (client.to_string(), "127.0.0.1".to_string()));
    }
    // From the balancer's address without a header: closed, unanswered.
    let mut bare = from_balancer().await;
    bare.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("request");
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), bare.read_to_end(&mut got)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{:?}", String::from_utf8_lossy(&got));
}
