//! PostgreSQL as the store (a real cluster from Debian's packages, a database per test):
//! records, callbacks and recovery as with SQLite; several nodes on one database, each
//! delivering its own callbacks; a node that stops has its callbacks delivered by
//! another once its lease runs out, and what it left live closed by another once it is
//! silent for the node timeout, each exactly once.

use std::time::Duration;

use switchboard_client::{JoinConference, MakeCall, Sid};
use switchboard_server::Config;
use switchboard_tests::postgres;
use switchboard_tests::*;

fn on_postgres(url: &str, node: &str) -> impl FnOnce(&mut Config) {
    let (url, node) = (url.to_string(), node.to_string());
    move |c: &mut Config| {
        c.database_url = Some(url);
        c.node_id = Some(node);
        c.outbox_lease_ms = 1500;
        c.callbacks.retry_first_ms = 200;
        c.callbacks.retry_max_ms = 400;
    }
}

async fn ended_call(h: &Harness, caller: &str, callee: &str) -> Sid {
    let (a, mut a_ev) = h.user(caller).await;
    let (b, mut b_ev) = h.user(callee).await;
    let sid = a.make_call(MakeCall::audio(callee)).await.expect("created");
    assert_eq!(pick_up(&b, &mut b_ev, &mut a_ev).await, sid);
    a.end_call(&sid, None, None).await.expect("ended");
    disconnected(&mut b_ev).await;
    sid
}

use postgres::query as rows;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_postgres_keeps_records_and_callbacks_there_and_recovers_from_it() {
    let url = postgres::database("records");
    let h = Harness::start_with(on_postgres(&url, "n1")).await;
    let sid = ended_call(&h, "ann", "ben").await;
    let hit = h.app.record_for(sid.as_str()).await;
    assert_eq!(hit.query["disconnect_reason"], "1001");
    h.settled().await;
    let stored =
        h.server.store().get("acme", &sid).await.expect("query").expect("the record, from PostgreSQL");
    assert_eq!(stored["from_user_id"], "ann");
    let delivered = h.server.store().callbacks("acme", "delivered", 10).await.expect("callbacks");
    assert!(delivered.iter().any(|c| c.cb_id == format!("call-{sid}")), "{delivered:?}");
    let versions: Vec<i64> = rows(&url, "SELECT version FROM schema_migrations ORDER BY version")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 3], "every migration applied once");

    // A call live when the node stops is closed by the node when it comes back, from
    // what PostgreSQL kept.
    let (a, mut a_ev) = h.user("cat").await;
    let (b, mut b_ev) = h.user("dan").await;
    let live = a.make_call(MakeCall::audio("dan")).await.expect("created");
    pick_up(&b, &mut b_ev, &mut a_ev).await;
    let owner: Vec<String> = rows(&url, "SELECT node FROM live_calls").iter().map(|r| r.get(0)).collect();
    assert_eq!(owner, ["n1"], "the live call, marked with its node");
    let config = h.config.clone();
    let app = h.app.clone();
    let _dir = RemovedOnDrop(config.data_dir.clone());
    h.server.shutdown().await;
    let again = switchboard_server::start(config).await.expect("the node starts again");
    let rec = app.record_for(live.as_str()).await;
    assert_eq!(rec.query["disconnect_reason"], "1305", "closed by the restart: {:?}", rec.query);
    assert!(rows(&url, "SELECT sid FROM live_calls").is_empty());
    assert_eq!(app.success_counts().values().max(), Some(&1), "each callback once");
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_postgres_and_a_stopped_nodes_callbacks_are_delivered_once_by_the_other() {
    let url = postgres::database("nodes");
    let a = Harness::start_with(on_postgres(&url, "node-a")).await;
    let b = Harness::start_with(on_postgres(&url, "node-b")).await;
    // Node A's app server is down for now: its record keeps failing, held by A's lease.
    a.app.set_status_all(503);
    let on_a = ended_call(&a, "ann", "ben").await;
    let on_b = ended_call(&b, "cat", "dan").await;
    b.app.record_for(on_b.as_str()).await;
    a.app.wait_for("/call_evt", |h| h.status == 503).await;
    // While A lives it renews its lease: B never takes the callback over.
    tokio::time::sleep(Duration::from_millis(3 * 1500)).await;
    assert!(
        b.app.hits_on("/call_evt").iter().all(|h| h.query.get("sid") != Some(&on_a.to_string())),
        "B delivered a callback A still held"
    );
    let held: Vec<String> = rows(&url, "SELECT lease_node FROM outbox WHERE state = 'pending'")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(held, ["node-a"]);

    // A stops with the callback undelivered: once its lease runs out, B delivers it.
    let stopped = std::time::Instant::now();
    let Harness { server, app: a_app, .. } = a;
    server.shutdown().await;
    let hit = b.app.record_for(on_a.as_str()).await;
    let took = stopped.elapsed();
    assert_eq!(hit.query["from_user_id"], "ann");
    assert!(took < Duration::from_secs(10), "taken over after {took:?}");
    b.settled().await;
    assert!(a_app.hits_on("/call_evt").iter().all(|h| h.status == 503), "A's attempts all failed");
    assert_eq!(b.app.success_counts().get(&format!("call-{on_a}")), Some(&1));
    assert_eq!(b.app.success_counts().get(&format!("call-{on_b}")), Some(&1));
    let states: Vec<(String, String)> =
        rows(&url, "SELECT cb_id, state FROM outbox WHERE kind = 'call' ORDER BY id")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert_eq!(
        states,
        [
            (format!("call-{on_a}"), "delivered".to_string()),
            (format!("call-{on_b}"), "delivered".to_string())
        ]
    );
    println!("a stopped node's callback delivered by the other node after {took:?} (lease 1.5 s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarting_mid_call_loses_and_doubles_nothing() {
    let cluster = postgres::own_cluster();
    let url = cluster.url("postgres");
    let h = Harness::start_with(on_postgres(&url, "n1")).await;
    let (a, mut a_ev) = h.user("ann").await;
    let (b, mut b_ev) = h.user("ben").await;
    let sid = a.make_call(MakeCall::audio("ben")).await.expect("created");
    pick_up(&b, &mut b_ev, &mut a_ev).await;

    // PostgreSQL dies mid-call; the call ends while it is down. The end is held (its
    // record is not written yet) and goes out once PostgreSQL is back.
    cluster.kill();
    let ending = {
        let sid = sid.clone();
        tokio::spawn(async move { a.end_call(&sid, None, None).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let refused = h.user("cat").await.0.make_call(MakeCall::audio("dan")).await;
    assert!(
        matches!(
            refused,
            Err(switchboard_client::ClientError::Server {
                reason: Some(switchboard_client::DisconnectReason::ServiceBusy),
                ..
            })
        ),
        "a new call while the database is out of reach: SERVICE_BUSY, got {refused:?}"
    );
    cluster.restart();
    ending.await.expect("task").expect("ended once the database is back");
    let ended = disconnected(&mut b_ev).await;
    assert_eq!(ended.reason, switchboard_client::DisconnectReason::Normal);
    let rec = h.app.record_for(sid.as_str()).await;
    assert_eq!(rec.query["disconnect_reason"], "1001");

    // Back to normal without a restart of the server: new calls go through.
    let next = ended_call(&h, "eve", "fay").await;
    h.app.record_for(next.as_str()).await;
    h.settled().await;
    let counts = h.app.success_counts();
    assert_eq!(
        (counts.get(&format!("call-{sid}")), counts.get(&format!("call-{next}"))),
        (Some(&1), Some(&1))
    );
    assert_eq!(rows(&url, "SELECT sid FROM call_records").len(), 2, "no record lost");
    let queued = rows(&url, "SELECT cb_id FROM outbox WHERE kind = 'call'");
    assert_eq!(queued.len(), 2, "each record's callback queued once");
    drop(h);
    cluster.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_silent_node_left_live_is_closed_once_by_another() {
    let url = postgres::database("silent");
    let node = |name: &str| {
        let on = on_postgres(&url, name);
        move |c: &mut Config| {
            on(c);
            c.node_timeout_ms = 3000;
        }
    };
    let a = Harness::start_with(node("node-a")).await;
    let b = Harness::start_with(node("node-b")).await;
    let (ann, mut ann_ev) = a.user("ann").await;
    let (ben, mut ben_ev) = a.user("ben").await;
    let sid = ann.make_call(MakeCall::audio("ben")).await.expect("created");
    pick_up(&ben, &mut ben_ev, &mut ann_ev).await;
    let (cat, _cat_ev) = a.user("cat").await;
    let room = cat.join_conference(JoinConference::audio("silent-room")).await.expect("joins").sid;

    // A stops, and its heartbeat with it, leaving the call and the room live in the
    // database. B closes them once A is silent for the node timeout.
    let config_a = a.config.clone();
    let Harness { server, app: a_app, .. } = a;
    let stopped = std::time::Instant::now();
    server.shutdown().await;
    let rec = b.app.record_for(sid.as_str()).await;
    println!("a silent node's call closed by another after {:?} (node timeout 3 s)", stopped.elapsed());
    assert_eq!((rec.query["disconnect_reason"].as_str(), rec.query["releaser_type"].as_str()), ("1305", "4"));
    b.app
        .wait_for("/gcall_evt", |h| {
            h.status == 200 && h.query.get("sid") == Some(&room.to_string()) && h.query["sc"] == "E"
        })
        .await;
    let live: Vec<String> = rows(&url, "SELECT node FROM live_calls UNION ALL SELECT node FROM live_rooms")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(live.is_empty(), "nothing left live: {live:?}");

    // A comes back under its name: nothing of its own is left to close, nothing doubles.
    let again = switchboard_server::start(config_a).await.expect("A starts again");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    b.settled().await;
    assert_eq!(b.app.success_counts().get(&format!("call-{sid}")), Some(&1));
    assert!(a_app.hits_on("/call_evt").is_empty(), "A queued no second record");
    let records: Vec<String> = rows(&url, "SELECT sid FROM call_records").iter().map(|r| r.get(0)).collect();
    assert_eq!(records, [sid.to_string()]);
    again.shutdown().await;
}
