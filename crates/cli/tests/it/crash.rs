//! A server killed with SIGKILL delivers, after a restart on the same data dir,
//! every callback queued before the kill, and closes the calls and rooms that were live
//! with SERVER_INTERNAL_ERROR (source cloud_server).

use std::time::Duration;

use crate::common::{
    acme_config, acme_outbox_drained, acme_token, acme_user as user, free_port, spawn_logged as spawn_server,
    wait_listening,
};
use switchboard_client::{Calls, Client, EngineEvent, Event, JoinConference, MakeCall};
use switchboard_tests::{incoming, pick_up, wait_event, AppServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_then_restart_delivers_everything_and_closes_live_calls() {
    let _slot = crate::common::slot();
    let dir = std::env::temp_dir().join(format!("switchboard-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (port, app_port) = (free_port(), free_port());
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        acme_config(
            port,
            app_port,
            &dir.join("data"),
            "reconnect_grace_ms = 60000\nnotify_timeout_ms = 30000\n",
        ),
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = spawn_server(&config, &dir.join("first.log"));
    wait_listening(port).await;

    // The app server is down the whole time the first process lives.
    // 1. A finished call: its record is queued and failing.
    let (alice, mut alice_ev) = user(&url, "alice").await;
    let (bob, mut bob_ev) = user(&url, "bob").await;
    let done = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    assert_eq!(pick_up(&bob, &mut bob_ev, &mut alice_ev).await, done);
    alice.end_call(&done, None, None).await.unwrap();
    // 2. A connected call, live at the kill.
    let (carol, mut carol_ev) = user(&url, "carol").await;
    let (dave, mut dave_ev) = user(&url, "dave").await;
    let talking = carol.make_call(MakeCall::video("dave")).await.unwrap();
    assert_eq!(pick_up(&dave, &mut dave_ev, &mut carol_ev).await, talking);
    // 3. A ringing call, live at the kill, its push still being retried.
    let (erin, _erin_ev) = user(&url, "erin").await;
    let (_frank, mut frank_ev) = user(&url, "frank").await;
    let ringing = erin.make_call(MakeCall::audio("frank")).await.unwrap();
    incoming(&mut frank_ev).await;
    // 4. A room of two, live at the kill.
    let (gina, _gina_ev) = user(&url, "gina").await;
    let (hank, _hank_ev) = user(&url, "hank").await;
    let room = gina.join_conference(JoinConference::audio("crash-room")).await.expect("gina joins").sid;
    hank.join_conference(JoinConference::audio("crash-room")).await.expect("hank joins");
    // 5. A call-engine group call, live at the kill: Ivan called Judy and Kim, Judy is
    //    in it, Kim's invitation still rings.
    let engine = |u: &'static str| {
        let url = url.clone();
        async move { Client::connect_engine(&url, "acme", u, &acme_token(u), false).await.expect(u) }
    };
    let ((ivan, _ivan_ev), (judy, mut judy_ev), (_kim, mut kim_ev)) =
        (engine("ivan").await, engine("judy").await, engine("kim").await);
    let group = ivan.calls(Calls::audio(["judy", "kim"])).await.expect("calls").call_id().clone();
    for ev in [&mut judy_ev, &mut kim_ev] {
        wait_event(ev, |e| {
            matches!(e, Event::Call { call_event: EngineEvent::CallReceived { .. }, .. }).then_some(())
        })
        .await;
    }
    judy.accept(&group).await.expect("judy accepts");
    // Every step above was answered, so it is on disk (frames go out after the commit).

    server.kill();
    let app = AppServer::start_on(format!("127.0.0.1:{app_port}").parse().unwrap()).await;
    let mut server = spawn_server(&config, &dir.join("second.log"));
    wait_listening(port).await;

    let r = app.record_for(&done).await;
    assert_eq!((r.query["disconnect_reason"].as_str(), r.query["releaser_type"].as_str()), ("1001", "2"));
    let r = app.record_for(&talking).await;
    assert_eq!((r.query["disconnect_reason"].as_str(), r.query["releaser_type"].as_str()), ("1305", "4"));
    assert_eq!((r.query["terminate"].as_str(), r.query["rel_code"].as_str()), ("16", "200"));
    assert!(r.query["start_time"].parse::<u64>().unwrap() > 0);
    assert_eq!(r.query["type"], "V");
    assert_eq!(r.query["to_user_id"], "dave");
    let end: u64 = r.query["end_time"].parse().unwrap();
    let now = switchboard_server::server::now_ms() / 1000;
    assert!(end <= now, "closed at the last moment the server was alive, not later");
    let r = app.record_for(&ringing).await;
    assert_eq!((r.query["disconnect_reason"].as_str(), r.query["releaser_type"].as_str()), ("1305", "4"));
    assert_eq!((r.query["terminate"].as_str(), r.query["duration"].as_str()), ("127", "0"));

    // The room: its two joins (queued before the kill), then its end, in order.
    let mut gcalls = Vec::new();
    for _ in 0..200 {
        gcalls = app
            .successes()
            .into_iter()
            .filter(|h| h.path == "/gcall_evt" && h.query.get("sid") == Some(&room.to_string()))
            .collect::<Vec<_>>();
        if gcalls.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seq: Vec<String> = gcalls
        .iter()
        .map(|h| {
            format!(
                "{}{} {} {} {}",
                h.query["sc"],
                h.query["msc"],
                h.query["user_id"],
                h.query["online"],
                h.query["disconnect_reason"]
            )
        })
        .collect();
    assert_eq!(seq, ["SC gina 1 0", "CC hank 2 0", "CD gina 1 1305", "ED hank 0 1305"]);
    assert_eq!(gcalls[3].id, format!("gcall-{room}-4"));

    // The group call: one record, ended by the server, Ivan and Judy in it until the
    // end, Kim's invitation cancelled.
    let hit = app.wait_for("/group_call_evt", |h| h.query["call_id"] == group.as_str()).await;
    assert_eq!(hit.query["end_reason"], "9");
    let members: serde_json::Value = serde_json::from_str(&hit.query["members"]).expect("members");
    let outcome: Vec<(&str, &str, bool)> = members
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            let (user, result) = (m["user_id"].as_str().unwrap_or(""), m["result"].as_str().unwrap_or(""));
            (user, result, m["left_ms"].as_u64().is_some_and(|l| l > 0))
        })
        .collect();
    assert_eq!(outcome, [("ivan", "joined", true), ("judy", "joined", true), ("kim", "cancelled", false)]);

    // Nothing twice, and no push for calls that no longer exist.
    acme_outbox_drained(&url).await;
    for (id, n) in app.success_counts() {
        assert_eq!(n, 1, "{id} delivered {n} times");
    }
    assert!(app.successes().iter().all(|h| h.path != "/notify"), "stale pushes after restart");
    let log = std::fs::read_to_string(dir.join("second.log")).unwrap();
    assert!(log.contains("recovered from an unclean stop"), "{log}");

    server.kill();
    let _ = std::fs::remove_dir_all(&dir);
}
