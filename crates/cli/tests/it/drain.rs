//! SIGTERM drains the server: new calls and rooms are refused with SERVICE_MAINTENANCE
//! (1503), the call and the room already live go on, and the process exits by itself
//! once they are over, their records delivered.

use std::time::Duration;

use crate::common::{acme_config, acme_user as user, free_port, log_says, spawn_logged, wait_listening};
use switchboard_client::{ClientError, DisconnectReason, JoinConference, MakeCall};
use switchboard_tests::{disconnected, pick_up, AppServer};

fn maintenance<T: std::fmt::Debug>(r: Result<T, ClientError>) -> bool {
    matches!(r, Err(ClientError::Server { reason: Some(DisconnectReason::ServiceMaintenance), .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_new_calls_are_refused_live_ones_finish_then_it_exits() {
    let _slot = crate::common::slot();
    let dir = std::env::temp_dir().join(format!("switchboard-drain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (port, app_port) = (free_port(), free_port());
    let config = dir.join("switchboard.toml");
    std::fs::write(&config, acme_config(port, app_port, &dir.join("data"), "")).unwrap();
    let app = AppServer::start_on(format!("127.0.0.1:{app_port}").parse().unwrap()).await;
    let log = dir.join("serve.log");
    let mut server = spawn_logged(&config, &log);
    wait_listening(port).await;
    let url = format!("http://127.0.0.1:{port}");

    let (alice, mut alice_ev) = user(&url, "alice").await;
    let (bob, mut bob_ev) = user(&url, "bob").await;
    let live = alice.make_call(MakeCall::audio("bob")).await.unwrap();
    pick_up(&bob, &mut bob_ev, &mut alice_ev).await;
    let (gina, _gina_ev) = user(&url, "gina").await;
    let room = gina.join_conference(JoinConference::audio("drain-room")).await.expect("gina joins").sid;

    server.terminate();
    log_says(&log, "draining").await;
    let (carol, _carol_ev) = user(&url, "carol").await;
    assert!(maintenance(carol.make_call(MakeCall::audio("dave")).await), "a new call is refused");
    assert!(
        maintenance(carol.join_conference(JoinConference::audio("new-room")).await),
        "a new room is refused"
    );
    assert_eq!(server.exited(Duration::from_millis(500)).await, None, "it waits for the live call and room");

    // The live call and room end as their users decide; then the server stops, exit 0.
    alice.end_call(&live, None, None).await.expect("ends");
    assert_eq!(disconnected(&mut bob_ev).await.reason, DisconnectReason::Normal);
    let r = app.record_for(live.as_str()).await;
    assert_eq!(r.query["disconnect_reason"], "1001");
    assert_eq!(server.exited(Duration::from_millis(500)).await, None, "the room is still live");
    gina.leave_conference(&room).await.expect("gina leaves");
    assert_eq!(server.exited(Duration::from_secs(10)).await, Some(0), "it exits once nothing is live");
    // Its last callbacks delivered before it went: the room's end.
    let room = room.to_string();
    assert!(
        app.successes()
            .iter()
            .any(|h| h.path == "/gcall_evt" && h.query.get("sid") == Some(&room) && h.query["sc"] == "E"),
        "the room's end delivered before the exit"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
