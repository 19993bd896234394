//! Bad input gets a clear error with its reason code; the server stays up and
//! other calls are untouched.

use std::time::Duration;

use switchboard_client::{Client, ClientError, Credentials, DisconnectReason as R, MakeCall};
use switchboard_tests::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_on_one_session_leaves_other_calls_alone() {
    let h = Harness::start().await;
    // A live call that must survive everything below.
    let (carol, mut carol_ev) = h.user("carol").await;
    let (dave, mut dave_ev) = h.user("dave").await;
    let sid = carol.make_call(MakeCall::audio("dave")).await.unwrap();
    assert_eq!(pick_up(&dave, &mut dave_ev, &mut carol_ev).await, sid);

    let mut m = RawSession::connect(&h, "mallory").await;
    m.send("{not json").await;
    let e = m.wait_for("error").await;
    assert_eq!(e["error"], "malformed");
    m.send(r#"{"type":"teleport","req":5}"#).await;
    let e = m.wait_for("error").await;
    assert_eq!((e["error"].as_str(), e["req"].as_u64()), (Some("unknown_type"), Some(5)));
    m.send(r#"{"type":"make_call","req":6}"#).await;
    let e = m.wait_for("error").await;
    assert_eq!((e["error"].as_str(), e["req"].as_u64()), (Some("malformed"), Some(6)));
    m.send(r#"{"type":"hello","v":1}"#).await;
    assert_eq!(m.wait_for("error").await["error"], "wrong_state");
    // Someone else's call: not found, and the call is untouched.
    m.send(&format!(r#"{{"type":"end_call","req":7,"sid":"{sid}"}}"#)).await;
    let e = m.wait_for("error").await;
    assert_eq!((e["error"].as_str(), e["req"].as_u64()), (Some("not_found"), Some(7)));
    m.send(&format!(r#"{{"type":"accept_call","req":8,"sid":"{sid}"}}"#)).await;
    assert_eq!(m.wait_for("error").await["error"], "not_found");
    // Media messages for someone else's call, and a kind that does not exist.
    m.send(&format!(r#"{{"type":"media_offer","req":9,"sid":"{sid}","sdp":"v=0"}}"#)).await;
    assert_eq!(m.wait_for("error").await["error"], "not_found");
    m.send(&format!(r#"{{"type":"media_answer","sid":"{sid}","offer_id":1,"sdp":"v=0"}}"#)).await;
    assert_eq!(m.wait_for("error").await["error"], "not_found");
    m.send(&format!(r#"{{"type":"add_media","sid":"{sid}","kind":"hologram"}}"#)).await;
    assert_eq!(m.wait_for("error").await["error"], "invalid_param");
    m.send(&format!(r#"{{"type":"add_media","sid":"{sid}","kind":"video"}}"#)).await;
    assert_eq!(m.wait_for("error").await["error"], "not_found");
    assert!(m.send_frame(Message::Binary(vec![1, 2, 3].into())).await);
    assert_eq!(m.wait_for("error").await["error"], "malformed");
    // Wrong state: the caller tries to accept its own call.
    let (eve, _eve_ev) = h.user("eve").await;
    let own = eve.make_call(MakeCall::audio("frank")).await.unwrap();
    match eve.accept_call(&own).await {
        Err(ClientError::Server { error: switchboard_client::ErrorCode::WrongState, .. }) => {}
        other => panic!("{other:?}"),
    }
    // A frame over 64 KiB: error, then close 1009.
    let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(70 * 1024));
    m.send_frame(Message::Text(big.into())).await;
    let mut saw_error = false;
    let code = loop {
        match m.next().await {
            RawFrame::Json(v) if v["error"] == "frame_too_large" => saw_error = true,
            RawFrame::Json(_) => {}
            RawFrame::Close(code) => break code,
            RawFrame::Gone => break None,
        }
    };
    assert!(saw_error);
    assert_eq!(code, Some(1009));

    // The server is up, and the call goes on to a normal end with its record.
    let (_new, _ev) = h.user("newcomer").await;
    dave.end_call(&sid, None, None).await.unwrap();
    let c = disconnected(&mut carol_ev).await;
    assert_eq!(c.reason, R::Normal);
    let r = h.app.record_for(&sid).await;
    assert_eq!(r.query["disconnect_reason"], "1001");
    assert!(r.query["duration"].parse::<u64>().is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_user_per_ip_and_per_session() {
    let h = Harness::start_with(|c| {
        c.limits.calls_per_user_per_sec = 1.0;
        c.limits.calls_per_user_burst = 3.0;
        c.limits.connects_per_ip_per_sec = 1.0;
        c.limits.connects_per_ip_burst = 6.0;
        c.limits.messages_per_session_per_sec = 5.0;
        c.limits.messages_per_session_burst = 10.0;
    })
    .await;
    // Per user: the fourth call request in a burst is refused with 1512.
    let (alice, _a) = h.user("alice").await;
    let mut limited = 0;
    for _ in 0..4 {
        match alice.make_call(MakeCall::audio("no such")).await {
            Err(ClientError::Server { reason: Some(R::ServiceTooManyRequests), .. }) => limited += 1,
            Err(ClientError::StartFailed { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(limited, 1);
    // Per session: a flood of messages is answered with rate_limited 1512.
    let mut flood = RawSession::connect(&h, "flooder").await;
    for _ in 0..30 {
        flood.send(r#"{"type":"ping"}"#).await;
    }
    let e = flood.wait_for("error").await;
    assert_eq!((e["error"].as_str(), e["reason"]["code"].as_u64()), (Some("rate_limited"), Some(1512)));
    // Per IP: connections past the burst are refused with 429 / 1512.
    let mut refused = 0;
    for i in 0..6 {
        let creds = Credentials::token("acme", format!("u{i}"), h.token("acme", &format!("u{i}")));
        if let Err(ClientError::Refused { reason: R::ServiceTooManyRequests, .. }) =
            Client::connect(&h.url(), creds).await
        {
            refused += 1;
        }
    }
    assert!(refused >= 2, "refused {refused}");
    // After a pause the address may connect again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(Client::connect(&h.url(), Credentials::token("acme", "late", h.token("acme", "late")))
        .await
        .is_ok());
}
