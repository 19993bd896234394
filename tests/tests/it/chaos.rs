//! Chaos: the app server flaps (refuses connections, then answers, every 0.7 s) while
//! 200 calls are made, answered and hung up. Every call's record must reach it exactly
//! once per callback id, no call may be left open, and the server must go on serving.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use switchboard_client::{DisconnectReason as R, MakeCall};
use switchboard_tests::*;

/// Caller/callee pairs working at once, and calls each pair makes one after another.
const PAIRS: usize = 20;
const CALLS_EACH: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_once_while_the_app_server_flaps_through_200_calls() {
    let mut h = Harness::start_with(|c| {
        c.callbacks.retry_first_ms = 100;
        c.callbacks.retry_max_ms = 1000;
        // Many calls per user in a short time is what this test is about.
        c.limits.calls_per_user_per_sec = 100.0;
        c.limits.calls_per_user_burst = 100.0;
    })
    .await;

    // The flapping: down (connections refused) and up again, until the calls are done.
    let done = Arc::new(AtomicBool::new(false));
    let app = std::mem::replace(&mut h.app, AppServer::start().await);
    let flapper = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut app = app;
            let mut flaps = 0;
            while !done.load(Ordering::Relaxed) {
                app.stop().await;
                tokio::time::sleep(Duration::from_millis(700)).await;
                app.restart().await;
                tokio::time::sleep(Duration::from_millis(700)).await;
                flaps += 1;
            }
            (app, flaps)
        })
    };

    let mut pairs = Vec::new();
    for i in 0..PAIRS {
        let (caller, callee) = (format!("flap-a{i}"), format!("flap-b{i}"));
        let (a, a_ev) = h.user(&caller).await;
        let (b, b_ev) = h.user(&callee).await;
        pairs.push(tokio::spawn(async move {
            let (mut a_ev, mut b_ev) = (a_ev, b_ev);
            let mut sids = Vec::new();
            for _ in 0..CALLS_EACH {
                let sid = a.make_call(MakeCall::audio(&callee)).await.expect("call");
                pick_up(&b, &mut b_ev, &mut a_ev).await;
                // A short call: the 200 calls span several outages.
                tokio::time::sleep(Duration::from_millis(400)).await;
                a.end_call(&sid, None, None).await.expect("hang up");
                let ended = disconnected(&mut b_ev).await;
                assert_eq!((ended.sid.as_str(), ended.reason), (sid.as_str(), R::Normal));
                sids.push(sid);
            }
            sids
        }));
    }
    let mut sids = Vec::new();
    for p in pairs {
        sids.extend(p.await.expect("pair"));
    }
    done.store(true, Ordering::Relaxed);
    let (app, flaps) = flapper.await.expect("flapper");
    assert_eq!(sids.len(), PAIRS * CALLS_EACH);
    assert!(flaps >= 2, "the app server went down and up {flaps} times during the calls");

    // Every record arrives (retried through the outages), each callback id once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let delivered: Vec<Hit> = app.successes().into_iter().filter(|h| h.path == "/call_evt").collect();
        let got: std::collections::HashSet<&str> =
            delivered.iter().filter_map(|h| h.query.get("sid").map(String::as_str)).collect();
        if sids.iter().all(|s| got.contains(s.as_str())) {
            let mut per_id: HashMap<&str, usize> = HashMap::new();
            for hit in &delivered {
                *per_id.entry(hit.id.as_str()).or_default() += 1;
            }
            let twice: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
            assert!(twice.is_empty(), "delivered more than once: {twice:?}");
            assert_eq!(per_id.len(), sids.len(), "one record per call");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} records delivered after 60 s",
            got.len(),
            sids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing left open, nothing left to deliver, and the server still serves.
    let census = h.server.census().await;
    assert_eq!((census.calls, census.connected), (0, 0), "{census:?}");
    assert_eq!(h.server.store().callbacks("acme", "pending", 10).await.expect("pending").len(), 0);
    let (x, mut x_ev) = h.user("after-x").await;
    let (y, mut y_ev) = h.user("after-y").await;
    let sid = x.make_call(MakeCall::audio("after-y")).await.expect("a call after the chaos");
    pick_up(&y, &mut y_ev, &mut x_ev).await;
    x.end_call(&sid, None, None).await.expect("hang up");
    assert_eq!(disconnected(&mut y_ev).await.reason, R::Normal);
}
