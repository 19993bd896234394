//! Callbacks through app-server outages: every record arrives, in order per call,
//! each id's first successful delivery once; a dead app server of one service does
//! not hold up another's.

use std::time::Duration;

use switchboard_client::{DisconnectReason as R, MakeCall, Sid};
use switchboard_tests::*;

fn fast_retries(c: &mut switchboard_server::Config) {
    c.callbacks.retry_first_ms = 200;
    c.callbacks.retry_max_ms = 800;
    c.notify_timeout_ms = 30_000;
}

async fn connected_call(h: &Harness, caller: &str, callee: &str) -> (Sid, Party2) {
    let (a, mut a_ev) = h.user(caller).await;
    let (b, mut b_ev) = h.user(callee).await;
    let sid = a.make_call(MakeCall::audio(callee)).await.expect("created");
    assert_eq!(pick_up(&b, &mut b_ev, &mut a_ev).await, sid);
    (sid, Party2 { a, a_ev, b, b_ev })
}

struct Party2 {
    a: switchboard_client::Client,
    a_ev: switchboard_client::Events,
    #[allow(dead_code)]
    b: switchboard_client::Client,
    b_ev: switchboard_client::Events,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_survive_503_then_refused_connections_and_arrive_in_order() {
    let mut h = Harness::start_with(fast_retries).await;
    // Phase 1: the app server answers 503 to everything.
    h.app.set_status_all(503);
    let mut ended = Vec::new();
    for i in 0..4 {
        let (sid, mut p) = connected_call(&h, &format!("a{i}"), &format!("b{i}")).await;
        p.a.end_call(&sid, None, None).await.unwrap();
        assert_eq!(disconnected(&mut p.b_ev).await.reason, R::Normal);
        ended.push(sid);
    }
    // One call stays up through the whole outage; its push keeps being retried.
    let (live_sid, mut live) = connected_call(&h, "x", "y").await;
    h.app.wait_for("/call_evt", |hit| hit.status == 503).await;

    // Phase 2: nothing listens at all.
    h.app.stop().await;
    let failures_before = h.app.hits().len();
    // Attempts go on while it is down (each refused, and retried later).
    let retried = h.server.metrics().callbacks_retried.get();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.server.metrics().callbacks_retried.get() < retried + 2 {
        assert!(tokio::time::Instant::now() < deadline, "no attempt while the app server is down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.app.hits().len(), failures_before, "nothing can arrive while it is down");

    // Phase 3: it comes back.
    h.app.set_status_all(0);
    h.app.restart().await;
    for sid in &ended {
        let r = h.app.record_for(sid).await;
        assert_eq!(r.query["disconnect_reason"], "1001");
    }
    // The live call's push is delivered late, and its record only after it.
    h.app.wait_for("/notify", |hit| hit.status == 200 && hit.query["sid"] == live_sid).await;
    live.a.end_call(&live_sid, None, None).await.unwrap();
    h.app.record_for(&live_sid).await;

    let ok = h.app.successes();
    let pos =
        |path: &str| ok.iter().position(|hit| hit.path == path && hit.query["sid"] == live_sid).unwrap();
    assert!(pos("/notify") < pos("/call_evt"), "notify before record for the same call");
    // Each id's first successful delivery, once.
    h.settled().await;
    for (id, n) in h.app.success_counts() {
        assert_eq!(n, 1, "{id} delivered {n} times");
    }
    // The ended calls' pushes were dropped (the calls were over), never delivered late.
    for sid in &ended {
        assert!(
            !ok.iter().any(|hit| hit.path == "/notify" && hit.query["sid"] == *sid),
            "stale push for {sid}"
        );
    }
    assert_eq!(h.server.metrics().callbacks_failed.get(), 0);
    let _ = disconnected(&mut live.a_ev).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_app_server_of_one_service_does_not_delay_another() {
    // `other` calls back into a black hole that accepts connections and never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_url = format!("http://{}", hole.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = hole.accept().await {
            held.push(sock);
            if held.len() > 1000 {
                break;
            }
        }
    });
    let h = Harness::start_with(|c| {
        fast_retries(c);
        c.callback_timeout_ms = 30_000;
        c.callbacks.per_service_concurrency = 2;
        c.services[1].notify_cb_url = Some(format!("{hole_url}/notify"));
        c.services[1].on_call_evt_cb_url = Some(format!("{hole_url}/call_evt"));
    })
    .await;
    // Fill other's lanes with stuck deliveries.
    for i in 0..4 {
        let (a, _a_ev) = h.user_of("other", &format!("o{i}")).await;
        let (_b, _b_ev) = h.user_of("other", &format!("p{i}")).await;
        let sid = a.make_call(MakeCall::audio(format!("p{i}"))).await.unwrap();
        a.end_call(&sid, None, None).await.unwrap();
    }
    // acme's callbacks go through at once.
    let (sid, p) = connected_call(&h, "alice", "bob").await;
    p.a.end_call(&sid, None, None).await.unwrap();
    let r = h.app.record_for(&sid).await;
    assert_eq!(r.query["from_service_id"], "acme");
    let queued = h.server.metrics().callbacks_queued.get();
    let delivered = h.server.metrics().callbacks_delivered.get();
    assert!(delivered < queued, "other's callbacks are still stuck ({delivered}/{queued})");
}
