//! 1-to-1 call scenarios: the real server on 127.0.0.1, real SDK clients, and a real
//! app server recording notify_cb and on_call_evt_cb.

use std::time::Duration;

use switchboard_client::{
    ClientError, DisconnectReason as R, DisconnectSource as S, MakeCall, StartFailReason,
};
use switchboard_tests::*;

const RECORD_FIELDS: [&str; 22] = [
    "sid",
    "from_service_id",
    "from_user_id",
    "to_service_id",
    "to_user_id",
    "type",
    "stid",
    "setup_time",
    "start_time",
    "end_time",
    "duration",
    "srcip",
    "dstip",
    "terminate",
    "rel_code",
    "rel_code_str",
    "user_rel_code",
    "billing_sec",
    "rc_idc",
    "disconnect_reason",
    "releaser_type",
    "app_svr_data",
];

fn field<'a>(h: &'a Hit, name: &str) -> &'a str {
    h.query.get(name).map(String::as_str).unwrap_or_else(|| panic!("field {name} missing in {h:?}"))
}

fn num(h: &Hit, name: &str) -> u64 {
    field(h, name).parse().unwrap_or_else(|_| panic!("{name} is not a number in {h:?}"))
}

/// Asserts the record's reason fields: (disconnect_reason, releaser_type, terminate, rel_code, rel_code_str).
fn assert_record_reason(h: &Hit, reason: R, source: S, terminate: u64, rel: u64, rel_str: &str) {
    assert_eq!(h.names, RECORD_FIELDS, "every field, in seed order");
    assert_eq!(num(h, "disconnect_reason"), u64::from(reason.code()), "{h:?}");
    assert_eq!(num(h, "releaser_type"), u64::from(source.code()), "{h:?}");
    assert_eq!(num(h, "terminate"), terminate, "{h:?}");
    assert_eq!(num(h, "rel_code"), rel, "{h:?}");
    assert_eq!(field(h, "rel_code_str"), rel_str, "{h:?}");
}

fn assert_unconnected(h: &Hit) {
    assert_eq!((num(h, "start_time"), num(h, "duration"), num(h, "billing_sec")), (0, 0, 0), "{h:?}");
    assert!(num(h, "end_time") >= num(h, "setup_time"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_verify_accept_and_hang_up_with_full_records() {
    let h = Harness::start().await;
    let (alice, mut alice_ev) = h.user("alice").await;
    let sid =
        alice.make_call(MakeCall::video("bob").app_data("order=42 & more")).await.expect("call created");
    assert_eq!(sid.len(), 36);
    assert_eq!(
        wait_event(&mut alice_ev, |e| matches!(e, switchboard_client::Event::WaitConnected { .. })
            .then_some(()))
        .await,
        ()
    );

    // The app server gets notify_cb with every field, and pushes `param` as cc_param.
    let n = h.app.notify_for("bob").await;
    assert_eq!(
        n.names,
        [
            "sid",
            "from_service_id",
            "from_user_id",
            "to_service_id",
            "to_user_id",
            "type",
            "param",
            "stid",
            "app_svr_data"
        ]
    );
    assert_eq!(field(&n, "sid"), sid);
    assert_eq!((field(&n, "from_service_id"), field(&n, "from_user_id")), ("acme", "alice"));
    assert_eq!((field(&n, "to_service_id"), field(&n, "to_user_id")), ("acme", "bob"));
    assert_eq!(field(&n, "type"), "V");
    assert_eq!((field(&n, "stid"), field(&n, "app_svr_data")), ("order=42 & more", "order=42 & more"));
    let cc_param = field(&n, "param").to_string();

    // Bob's phone wakes with only the cc_param.
    let (bob, mut bob_ev) = h.callee_by_cc_param(&cc_param).await;
    let v = bob.verify_call(&cc_param).await.expect("verified");
    assert_eq!((v.sid.as_str(), v.from_user_id.as_str()), (sid.as_str(), "alice"));
    assert_eq!(v.media_type, switchboard_client::MediaType::Video);
    assert_eq!(v.app_data.as_deref(), Some("order=42 & more"));
    bob.accept_call(&sid).await.expect("accepted");
    assert_eq!(connected(&mut alice_ev).await, sid);
    assert_eq!(connected(&mut bob_ev).await, sid);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    bob.end_call(&sid, None, None).await.expect("ended");
    let a = disconnected(&mut alice_ev).await;
    let b = disconnected(&mut bob_ev).await;
    assert_eq!((a.reason, a.source, a.by_remote), (R::Normal, S::Callee, true));
    assert_eq!((b.reason, b.source, b.by_remote), (R::Normal, S::Callee, false));

    let r = h.app.record_for(&sid).await;
    assert_record_reason(&r, R::Normal, S::Callee, 16, 1, "NORMAL");
    assert_eq!((field(&r, "from_service_id"), field(&r, "from_user_id")), ("acme", "alice"));
    assert_eq!((field(&r, "to_service_id"), field(&r, "to_user_id")), ("acme", "bob"));
    assert_eq!(field(&r, "type"), "V");
    assert_eq!((field(&r, "srcip"), field(&r, "dstip")), ("127.0.0.1", "127.0.0.1"));
    assert_eq!(field(&r, "rc_idc"), "JP");
    assert_eq!((field(&r, "stid"), field(&r, "app_svr_data")), ("order=42 & more", "order=42 & more"));
    assert_eq!(field(&r, "user_rel_code"), "");
    let (setup, start, end) = (num(&r, "setup_time"), num(&r, "start_time"), num(&r, "end_time"));
    assert!(setup <= start && start < end, "{r:?}");
    assert_eq!(num(&r, "duration"), end - start);
    assert!(num(&r, "duration") >= 1);
    let billing = num(&r, "billing_sec");
    assert!((1..=num(&r, "duration")).contains(&billing), "{r:?}");
    // Signed with acme's API secret over the raw query, as docs/callbacks.md tells app servers to check.
    let now = switchboard_server::server::now_ms() / 1000;
    assert!(verify_as_documented(ACME_SECRET, &r.signature, &r.raw_query, now, 300), "{r:?}");
    assert!(verify_as_documented(ACME_SECRET, &n.signature, &n.raw_query, now, 300), "{n:?}");
    assert_eq!((r.id.clone(), n.id.clone()), (format!("call-{sid}"), format!("notify-{sid}")));
    let tampered = r.raw_query.replace("duration=", "duration=9");
    assert!(!verify_as_documented(ACME_SECRET, &r.signature, &tampered, now, 300), "a tampered query fails");
    assert!(
        !verify_as_documented(OTHER_SECRET, &r.signature, &r.raw_query, now, 300),
        "another secret fails"
    );
    assert!(!verify_as_documented(ACME_SECRET, &r.signature, &r.raw_query, now + 3600, 300), "stale");
    // Once per call.
    h.settled().await;
    assert_eq!(h.app.hits_on("/call_evt").len(), 1);
    // And stored.
    assert!(h.server.store().get("acme", &sid).await.expect("store").is_some());
    assert!(h.server.store().get("other", &sid).await.expect("store").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_ring_without_push_and_caller_hangs_up() {
    let h = Harness::start().await;
    h.app.set_notify_status(503);
    let (bob, mut bob_ev) = h.user("bob").await;
    let (alice, mut alice_ev) = h.user("alice").await;
    let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    let (offered, cc) = incoming(&mut bob_ev).await;
    assert_eq!(offered, sid);
    h.app.notify_for("bob").await;
    bob.verify_call(&cc).await.unwrap();
    bob.accept_call(&sid).await.unwrap();
    connected(&mut alice_ev).await;
    alice.end_call(&sid, None, None).await.unwrap();
    let b = disconnected(&mut bob_ev).await;
    assert_eq!((b.reason, b.source, b.by_remote), (R::Normal, S::Caller, true));
    let a = disconnected(&mut alice_ev).await;
    assert_eq!((a.reason, a.source, a.by_remote), (R::Normal, S::Caller, false));
    let r = h.app.record_for(&sid).await;
    assert_record_reason(&r, R::Normal, S::Caller, 16, 1, "NORMAL");
    assert_eq!(field(&r, "type"), "A");
    assert_eq!(field(&r, "app_svr_data"), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_decline_and_busy() {
    let h = Harness::start().await;
    let (alice, mut alice_ev) = h.user("alice").await;
    let (bob, mut bob_ev) = h.user("bob").await;

    // CANCEL: caller hangs up while ringing.
    let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    incoming(&mut bob_ev).await;
    alice.end_call(&sid, None, None).await.unwrap();
    assert_eq!(disconnected(&mut bob_ev).await.reason, R::Cancel);
    let a = disconnected(&mut alice_ev).await;
    assert_eq!((a.reason, a.source, a.by_remote), (R::Cancel, S::Caller, false));
    let r = h.app.record_for(&sid).await;
    assert_record_reason(&r, R::Cancel, S::Caller, 77, 2, "CANCEL");
    assert_unconnected(&r);
    assert_eq!(field(&r, "dstip"), "127.0.0.1", "the rung device's address");

    // DECLINE: callee ends while ringing.
    let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    let (_, cc) = incoming(&mut bob_ev).await;
    bob.verify_call(&cc).await.unwrap();
    bob.end_call(&sid, None, None).await.unwrap();
    let a = disconnected(&mut alice_ev).await;
    assert_eq!((a.reason, a.source, a.by_remote), (R::Decline, S::Callee, true));
    assert_eq!(disconnected(&mut bob_ev).await.reason, R::Decline);
    let r = h.app.record_for(&sid).await;
    assert_record_reason(&r, R::Decline, S::Callee, 21, 3, "REJECT");
    assert_unconnected(&r);

    // BUSY: bob talks to carol; dave calls bob.
    let (carol, mut carol_ev) = h.user("carol").await;
    let sid_cb = carol.make_call(MakeCall::audio("bob")).await.unwrap();
    assert_eq!(pick_up(&bob, &mut bob_ev, &mut carol_ev).await, sid_cb);
    let (dave, mut dave_ev) = h.user("dave").await;
    let sid = dave.make_call(MakeCall::audio("bob")).await.unwrap();
    let d = disconnected(&mut dave_ev).await;
    assert_eq!((d.sid.as_str(), d.reason, d.source, d.by_remote), (sid.as_str(), R::Busy, S::Callee, true));
    let r = h.app.record_for(&sid).await;
    assert_record_reason(&r, R::Busy, S::Callee, 17, 4, "USER_BUSY");
    assert_unconnected(&r);
    // The busy call was never pushed, and the live call is untouched.
    assert!(h.app.hits_on("/notify").iter().all(|n| field(n, "sid") != sid));
    carol.end_call(&sid_cb, None, None).await.unwrap();
    assert_eq!(disconnected(&mut bob_ev).await.reason, R::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_after_the_ring_timeout() {
    let h = Harness::start().await;
    let (alice, mut alice_ev) = h.user("alice").await;
    let (_bob, mut bob_ev) = h.user("bob").await;
    let mut call = MakeCall::audio("bob");
    call.ring_timeout_secs = Some(1);
    let sid = alice.make_call(call).await.unwrap();
    incoming(&mut bob_ev).await;
    let a = disconnected(&mut alice_ev).await;
    assert_eq!((a.reason, a.source, a.by_remote), (R::NoAnswer, S::CloudServer, false));
    assert_eq!(disconnected(&mut bob_ev).await.reason, R::NoAnswer);
    let r = h.app.record_for(&sid).await;
    assert_record_reason(&r, R::NoAnswer, S::CloudServer, 18, 5, "NO_ANSWER");
    assert_unconnected(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_ring_and_first_answer_or_decline_wins() {
    let h = Harness::start().await;
    let (alice, mut alice_ev) = h.user("alice").await;
    let (phone, mut phone_ev) = h.user("bob").await;
    let (laptop, mut laptop_ev) = h.user("bob").await;

    let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    let (_, cc) = incoming(&mut phone_ev).await;
    incoming(&mut laptop_ev).await;
    phone.verify_call(&cc).await.unwrap();
    laptop.verify_call(&cc).await.unwrap();
    laptop.accept_call(&sid).await.unwrap();
    let p = disconnected(&mut phone_ev).await;
    assert_eq!((p.reason, p.source, p.by_remote), (R::MultidevAnswer, S::Callee, false));
    connected(&mut alice_ev).await;
    let err = phone.accept_call(&sid).await.unwrap_err();
    assert!(matches!(err, ClientError::Server { .. }), "{err:?}");
    alice.end_call(&sid, None, None).await.unwrap();
    assert_eq!(disconnected(&mut laptop_ev).await.reason, R::Normal);
    assert_eq!(disconnected(&mut alice_ev).await.reason, R::Normal);
    assert_record_reason(&h.app.record_for(&sid).await, R::Normal, S::Caller, 16, 1, "NORMAL");

    let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    let (_, cc) = incoming(&mut phone_ev).await;
    incoming(&mut laptop_ev).await;
    laptop.verify_call(&cc).await.unwrap();
    phone.end_call(&sid, None, None).await.unwrap();
    let l = disconnected(&mut laptop_ev).await;
    assert_eq!((l.reason, l.source, l.by_remote), (R::MultidevDecline, S::Callee, false));
    let a = disconnected(&mut alice_ev).await;
    assert_eq!((a.reason, a.source), (R::Decline, S::Callee));
    assert_record_reason(&h.app.record_for(&sid).await, R::Decline, S::Callee, 21, 3, "REJECT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multidev_in_use_and_already_got_a_call() {
    let h = Harness::start().await;
    let (alice, mut alice_ev) = h.user("alice").await;
    let (bob, mut bob_ev) = h.user("bob").await;
    let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    let (_, cc) = incoming(&mut bob_ev).await;

    // Bob, with a call ringing for him, tries to call carol.
    let (_carol, _carol_ev) = h.user("carol").await;
    let sid2 = bob.make_call(MakeCall::audio("carol")).await.unwrap();
    let b = wait_event(&mut bob_ev, |e| match e {
        switchboard_client::Event::Disconnected { sid, reason, source, .. } if *sid == sid2 => {
            Some((*reason, *source))
        }
        _ => None,
    })
    .await;
    assert_eq!(b, (R::AlreadyGotACall, S::CloudServer));
    assert_record_reason(
        &h.app.record_for(&sid2).await,
        R::AlreadyGotACall,
        S::CloudServer,
        17,
        9,
        "ALREADY_GOT_A_CALL",
    );

    bob.verify_call(&cc).await.unwrap();
    bob.accept_call(&sid).await.unwrap();
    connected(&mut alice_ev).await;
    // Alice, in a call on her phone, tries to call from her laptop.
    let (laptop, mut laptop_ev) = h.user("alice").await;
    let sid3 = laptop.make_call(MakeCall::audio("carol")).await.unwrap();
    let l = disconnected(&mut laptop_ev).await;
    assert_eq!((l.sid.as_str(), l.reason, l.source), (sid3.as_str(), R::MultidevInUse, S::CloudServer));
    assert_record_reason(
        &h.app.record_for(&sid3).await,
        R::MultidevInUse,
        S::CloudServer,
        17,
        6,
        "MULTI_DEV_OTHER_DEV_IN_USE",
    );
    alice.end_call(&sid, None, None).await.unwrap();
    disconnected(&mut bob_ev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_call_time_ends_the_call() {
    let h = Harness::start_with(|c| c.services[0].max_call_secs = 1).await;
    let (alice, mut alice_ev) = h.user("alice").await;
    let (bob, mut bob_ev) = h.user("bob").await;
    let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    let (_, cc) = incoming(&mut bob_ev).await;
    bob.verify_call(&cc).await.unwrap();
    bob.accept_call(&sid).await.unwrap();
    let a = disconnected(&mut alice_ev).await;
    assert_eq!((a.reason, a.source, a.by_remote), (R::MaxCallTimeExceeded, S::CloudServer, false));
    assert_eq!(disconnected(&mut bob_ev).await.reason, R::MaxCallTimeExceeded);
    let r = h.app.record_for(&sid).await;
    assert_record_reason(&r, R::MaxCallTimeExceeded, S::CloudServer, 16, 122, "MAX_CALL_TIME_EXCEED");
    assert!((num(&r, "billing_sec")) <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_error_when_notify_fails_and_callee_is_offline() {
    let h = Harness::start().await;
    let (alice, mut alice_ev) = h.user("alice").await;
    h.app.set_notify_status(500);
    let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    let a = disconnected(&mut alice_ev).await;
    assert_eq!((a.sid.as_str(), a.reason, a.source), (sid.as_str(), R::PushError, S::CloudServer));
    let r = h.app.record_for(&sid).await;
    assert_record_reason(&r, R::PushError, S::CloudServer, 127, 205, "PUSH_ERROR");
    assert_eq!(field(&r, "dstip"), "");

    // An unreachable notify_cb (nothing listens on the port) is the same.
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let h2 = Harness::start_with(|c| {
        c.services[0].notify_cb_url = Some(format!("http://127.0.0.1:{closed_port}/n"))
    })
    .await;
    let (alice, mut alice_ev) = h2.user("alice").await;
    let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    assert_eq!(disconnected(&mut alice_ev).await.reason, R::PushError);
    assert_record_reason(
        &h2.app.record_for(&sid).await,
        R::PushError,
        S::CloudServer,
        127,
        205,
        "PUSH_ERROR",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_after_release_is_released_call() {
    let h = Harness::start().await;
    let (alice, mut alice_ev) = h.user("alice").await;
    let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    let cc = field(&h.app.notify_for("bob").await, "param").to_string();
    alice.end_call(&sid, None, None).await.unwrap();
    disconnected(&mut alice_ev).await;
    h.app.record_for(&sid).await;

    // A replayed cc_param opens a session but the call is gone.
    let (bob, mut bob_ev) = h.callee_by_cc_param(&cc).await;
    let err = bob.verify_call(&cc).await.unwrap_err();
    assert_eq!(err, ClientError::Disconnected { reason: R::ReleasedCall, by: S::CloudServer });
    assert_eq!(disconnected(&mut bob_ev).await.reason, R::ReleasedCall);
    // No second record for the released call.
    h.settled().await;
    assert_eq!(h.app.hits_on("/call_evt").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_party_ends_with_network_unstable() {
    let h = Harness::start_with(|c| {
        c.heartbeat_secs = 1;
        c.session_timeout_secs = 2;
        c.reconnect_grace_ms = 300;
    })
    .await;
    let (alice, mut alice_ev) = h.user("alice").await;
    let (bob, mut bob_ev) = h.user("bob").await;
    let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    assert_eq!(pick_up(&bob, &mut bob_ev, &mut alice_ev).await, sid);
    // Bob's connection drops.
    bob.close().await;
    let a = disconnected(&mut alice_ev).await;
    assert_eq!((a.reason, a.source, a.by_remote), (R::NetworkUnstable, S::Callee, true));
    let r = h.app.record_for(&sid).await;
    assert_record_reason(&r, R::NetworkUnstable, S::Callee, 16, 218, "SESS_KEEPALIVE_TIMEOUT");

    // A session that stays open but goes silent (no heartbeats) is noticed too.
    let (carol, mut carol_ev) = h.user("carol").await;
    let mut dave = RawSession::connect(&h, "dave").await;
    let sid = carol.make_call(MakeCall::audio("dave")).await.unwrap();
    let cc = dave.wait_for("incoming_call").await["cc_param"].as_str().unwrap().to_string();
    dave.send(&format!(r#"{{"type":"verify_call","cc_param":"{cc}"}}"#)).await;
    dave.wait_for("verified").await;
    dave.send(&format!(r#"{{"type":"accept_call","sid":"{sid}"}}"#)).await;
    connected(&mut carol_ev).await;
    let started = std::time::Instant::now();
    // dave now says nothing at all.
    let c = disconnected(&mut carol_ev).await;
    assert_eq!((c.reason, c.source), (R::NetworkUnstable, S::Callee));
    assert!(started.elapsed() >= Duration::from_secs(2), "not before the session timeout");
    drop(dave);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_and_resume_within_grace() {
    let h = Harness::start_with(|c| c.reconnect_grace_ms = 3000).await;
    let (alice, mut alice_ev) = h.user("alice").await;
    let (bob, mut bob_ev) = h.user("bob").await;
    let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    assert_eq!(pick_up(&bob, &mut bob_ev, &mut alice_ev).await, sid);
    alice.close().await;
    // The server has seen her connection go (the call waits for her within the grace).
    h.sessions_down_to(1).await;
    let (alice2, mut alice2_ev) = h.user("alice").await;
    assert_eq!(alice2.resume(&sid).await.unwrap(), "connected");
    alice2.end_call(&sid, None, None).await.unwrap();
    let b = disconnected(&mut bob_ev).await;
    assert_eq!((b.reason, b.source, b.by_remote), (R::Normal, S::Caller, true));
    assert_eq!(disconnected(&mut alice2_ev).await.reason, R::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reported_reasons_pass_through_to_peer_and_record() {
    let h = Harness::start().await;
    let (alice, mut alice_ev) = h.user("alice").await;
    let (bob, mut bob_ev) = h.user("bob").await;
    for (reason, code, by_caller) in
        [(R::CellCall, None, false), (R::UserError, Some("E-1234"), true), (R::AppDestroy, None, true)]
    {
        let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
        assert_eq!(pick_up(&bob, &mut bob_ev, &mut alice_ev).await, sid);
        let (ender, peer_ev, side) =
            if by_caller { (&alice, &mut bob_ev, S::Caller) } else { (&bob, &mut alice_ev, S::Callee) };
        ender.end_call(&sid, Some(reason), code.map(String::from)).await.unwrap();
        let p = disconnected(peer_ev).await;
        assert_eq!((p.reason, p.source, p.by_remote), (reason, side, true));
        assert_eq!(p.user_rel_code.as_deref(), code);
        let own = if by_caller { &mut alice_ev } else { &mut bob_ev };
        assert_eq!(disconnected(own).await.reason, reason);
        let r = h.app.record_for(&sid).await;
        assert_eq!(num(&r, "disconnect_reason"), u64::from(reason.code()));
        assert_eq!(num(&r, "releaser_type"), u64::from(side.code()));
        assert_eq!(field(&r, "user_rel_code"), code.unwrap_or(""));
        assert_eq!(num(&r, "terminate"), 16);
    }
    // A client cannot claim a server-decided reason.
    let sid = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    let err = alice.end_call(&sid, Some(R::Busy), None).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Server { error: switchboard_client::ErrorCode::InvalidParam, .. }),
        "{err:?}"
    );
    alice.end_call(&sid, None, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_failures_create_nothing() {
    let h = Harness::start().await;
    let (alice, _ev) = h.user("alice").await;
    let cases: Vec<(MakeCall, StartFailReason)> = vec![
        (MakeCall::audio("bad id!"), StartFailReason::InvalidUserId),
        (MakeCall::audio(""), StartFailReason::InvalidUserId),
        (MakeCall::audio("x".repeat(65)), StartFailReason::InvalidUserId),
        (MakeCall::audio("alice"), StartFailReason::IdConflict),
        (
            MakeCall { media_type: "hologram".into(), ..MakeCall::audio("bob") },
            StartFailReason::InvalidMediaType,
        ),
        (MakeCall::audio("bob").app_data("x".repeat(4097)), StartFailReason::TooLongAppServerData),
        (
            MakeCall { to_service_id: Some("other".into()), ..MakeCall::audio("bob") },
            StartFailReason::InvalidServiceId,
        ),
        (
            MakeCall { to_service_id: Some("no_such!".into()), ..MakeCall::audio("bob") },
            StartFailReason::InvalidServiceId,
        ),
    ];
    for (call, want) in cases {
        match alice.make_call(call.clone()).await {
            Err(ClientError::StartFailed { reason, .. }) => assert_eq!(reason, want, "{call:?}"),
            other => panic!("{call:?} gave {other:?}"),
        }
    }
    h.settled().await;
    assert!(h.app.hits().is_empty(), "no callback for refused calls: {:?}", h.app.hits());
    assert_eq!(h.server.census().await.calls, 0);
    assert_eq!(h.server.store().count().await.unwrap(), 0);
}
