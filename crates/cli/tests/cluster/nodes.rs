//! Deployments of two and three nodes, each the real binary in a process of its own, on one
//! PostgreSQL and one Redis (Debian's, started by the test on loopback ports of their
//! own): any node takes any client, and a call or room lives on one node, its owner.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{
    acme_config, acme_user as user, free_port, log_says, spawn_logged, wait_listening, Server,
};
use switchboard_client::{
    tone, Client, DisconnectReason as R, DisconnectSource as S, Event, JoinConference, MakeCall, MediaEvent,
    Sid,
};
use switchboard_tests::balancer::Balancer;
use switchboard_tests::redis::Redis;
use switchboard_tests::room_media::{everyone_hears_everyone, start_tone, Hearer};
use switchboard_tests::{
    connected, disconnected, incoming, media_event, pick_up, receive_tone, send_tone, wait_event, AppServer,
    Hit,
};

const SECRET: &str = "a deployment secret of the tests, 32+ bytes";

/// The nodes of a deployment and what they run on.
struct Deployment {
    /// Each node's process and base URL.
    nodes: Vec<(Server, String)>,
    app: AppServer,
    redis: Redis,
    dir: PathBuf,
}

/// `n` nodes on a fresh database of the tests' PostgreSQL and a Redis of their own.
async fn deploy(tag: &str, n: usize) -> Deployment {
    deploy_on(tag, n, &switchboard_tests::postgres::database(tag), "").await
}

/// `n` nodes on the database at `db` and a Redis of their own; `extra`: more top-level
/// settings of each.
async fn deploy_on(tag: &str, n: usize, db: &str, extra: &str) -> Deployment {
    let dir = std::env::temp_dir().join(format!("switchboard-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let redis = Redis::start();
    let app_port = free_port();
    let app = AppServer::start_on(format!("127.0.0.1:{app_port}").parse().unwrap()).await;
    let mut nodes = Vec::new();
    for i in 1..=n {
        let port = free_port();
        let top = format!(
            "database_url = \"{db}\"\nnode_id = \"node{i}\"\nredis_url = \"{}\"\ncluster_secret = \"{SECRET}\"\n{extra}",
            redis.url()
        );
        let config = dir.join(format!("node{i}.toml"));
        std::fs::write(&config, acme_config(port, app_port, &dir.join(format!("data{i}")), &top)).unwrap();
        let server = spawn_logged(&config, &dir.join(format!("node{i}.log")));
        nodes.push((server, format!("http://127.0.0.1:{port}")));
        wait_listening(port).await;
    }
    Deployment { nodes, app, redis, dir }
}

impl Deployment {
    /// A load balancer in front of nodes 1 and 2: new connections go to node 1 while it
    /// takes them, then to node 2.
    async fn balancer(&self) -> Balancer {
        let port = |i: usize| {
            let url = &self.nodes[i].1;
            url.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()).expect("a port")
        };
        Balancer::start(vec![port(0), port(1)]).await
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_one_room_and_a_call_that_rings_a_callee_on_two_other_nodes() {
    let _slot = crate::common::slots(2);
    let d = deploy("cluster", 3).await;
    let url = |i: usize| d.nodes[i].1.as_str();

    // A room with a member on each node: one room (one sid), and each hears the others.
    let (alice, mut alice_ev) = user(url(0), "alice").await;
    let (bob, mut bob_ev) = user(url(1), "bob").await;
    let (carol, mut carol_ev) = user(url(2), "carol").await;
    let mut sids = Vec::new();
    for c in [&alice, &bob, &carol] {
        sids.push(c.join_conference(JoinConference::audio("all-hands")).await.expect("joins").sid);
    }
    let sid = sids[0].clone();
    assert!(sids.iter().all(|s| *s == sid), "one room across the nodes: {sids:?}");
    let mut pa = start_tone(&alice, &sid, 440.0).await;
    let mut pb = start_tone(&bob, &sid, 660.0).await;
    let mut pc = start_tone(&carol, &sid, 880.0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut hearers = [
        Hearer { user: "alice", hz: 440.0, events: &mut alice_ev, speaker: &mut pa },
        Hearer { user: "bob", hz: 660.0, events: &mut bob_ev, speaker: &mut pb },
        Hearer { user: "carol", hz: 880.0, events: &mut carol_ev, speaker: &mut pc },
    ];
    everyone_hears_everyone(&sid, &mut hearers, 2).await;
    for (p, c) in [(pa, &alice), (pb, &bob), (pc, &carol)] {
        p.sender.abort();
        c.leave_conference(&sid).await.expect("leaves");
    }
    // The room's end reaches the app server once.
    let room = sid.to_string();
    let ends = || {
        d.app
            .successes()
            .iter()
            .filter(|h| h.path == "/gcall_evt" && h.query.get("sid") == Some(&room) && h.query["sc"] == "E")
            .count()
    };
    for _ in 0..200 {
        if ends() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ends(), 1, "the room's end, once");

    // Dave on node 1 calls Erin, signed in on nodes 2 and 3: both of her devices ring.
    let (dave, mut dave_ev) = user(url(0), "dave").await;
    let (phone, mut phone_ev) = user(url(1), "erin").await;
    let (laptop, mut laptop_ev) = user(url(2), "erin").await;
    let call = dave.make_call(MakeCall::audio("erin")).await.expect("calls");
    let (rung, cc) = incoming(&mut phone_ev).await;
    assert_eq!(rung, call);
    assert_eq!(incoming(&mut laptop_ev).await.0, call);
    phone.verify_call(&cc).await.expect("the phone verifies");
    laptop.verify_call(&cc).await.expect("the laptop verifies");
    laptop.accept_call(&call).await.expect("the laptop answers");
    let p = disconnected(&mut phone_ev).await;
    assert_eq!((p.reason, p.source), (R::MultidevAnswer, S::Callee), "the phone stops ringing");
    assert_eq!(connected(&mut dave_ev).await, call);

    // Tones both ways through node 1's relay.
    let (mut d_rx, mut l_rx, tones) = tones_both_ways((&dave, 440.0), (&laptop, 660.0), &call, 4).await;
    for (rx, hz, other) in [(&mut l_rx, 440.0, 660.0), (&mut d_rx, 660.0, 440.0)] {
        let pcm = receive_tone(rx, 100).await;
        let ratio = tone::power(&pcm[24_000..], hz) / tone::power(&pcm[24_000..], other);
        assert!(ratio > 100.0, "{hz} Hz heard over {other} Hz: power ratio {ratio}");
    }
    tones.iter().for_each(|t| t.abort());

    // Erin hangs up on her laptop; one record, of a normal end by the callee.
    laptop.end_call(&call, None, None).await.expect("hangs up");
    assert_eq!(disconnected(&mut dave_ev).await.reason, R::Normal);
    let record = one_record_each(&d.app, &[&call]).await;
    assert_eq!(record[0].query["disconnect_reason"], "1001");
}

type Heard = tokio::sync::mpsc::UnboundedReceiver<MediaEvent>;

/// `a` and `b` start their media in the call `sid` and, once both are connected, send
/// `a_hz` and `b_hz` for `secs` seconds: what each receives, and the senders.
async fn tones_both_ways(
    (a, a_hz): (&Client, f64),
    (b, b_hz): (&Client, f64),
    sid: &Sid,
    secs: u32,
) -> (Heard, Heard, [tokio::task::JoinHandle<()>; 2]) {
    let (am, mut a_rx) = a.start_media(sid, false).await.expect("the first side's media");
    let (bm, mut b_rx) = b.start_media(sid, false).await.expect("the second side's media");
    media_event(&mut a_rx, |e| matches!(e, MediaEvent::Connected), "the first side's media connected").await;
    media_event(&mut b_rx, |e| matches!(e, MediaEvent::Connected), "the second side's media connected").await;
    let tones = [send_tone(Arc::new(am), a_hz, secs), send_tone(Arc::new(bm), b_hz, secs)];
    (a_rx, b_rx, tones)
}

/// Each of `sids` has its call record delivered to the app server, once (the first
/// record, returned in order).
async fn one_record_each(app: &AppServer, sids: &[&Sid]) -> Vec<Hit> {
    let mut first = Vec::new();
    for sid in sids {
        first.push(app.record_for(sid.as_str()).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for sid in sids {
        let n = app
            .successes()
            .iter()
            .filter(|h| h.path == "/call_evt" && h.query["sid"] == sid.as_str())
            .count();
        assert_eq!(n, 1, "one record of {sid}");
    }
    first
}

/// The next second of audio on `rx` (after what arrived before) is the tone `hz`, not
/// `other`.
async fn still_hears(rx: &mut Heard, hz: f64, other: f64, what: &str) {
    while rx.try_recv().is_ok() {}
    let pcm = receive_tone(rx, 50).await;
    let ratio = tone::power(&pcm[12_000..], hz) / tone::power(&pcm[12_000..], other);
    assert!(ratio > 100.0, "{what}: {hz} Hz heard over {other} Hz: power ratio {ratio}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_postgres_restarting_mid_call_end_nothing_and_lose_or_double_no_record() {
    let _slot = crate::common::slots(2);
    let pg = switchboard_tests::postgres::own_cluster();
    let db = pg.url("postgres");
    let d = deploy_on("cluster-restarts", 2, &db, "").await;
    let url = |i: usize| d.nodes[i].1.as_str();

    // A call owned by node 1 with its callee on node 2, tones both ways.
    let (dave, mut dave_ev) = user(url(0), "dave").await;
    let (erin, mut erin_ev) = user(url(1), "erin").await;
    // Signed in before Redis restarts: its node must list her again for her to ring.
    let (_gina, mut gina_ev) = user(url(1), "gina").await;
    let call = dave.make_call(MakeCall::audio("erin")).await.expect("calls");
    assert_eq!(pick_up(&erin, &mut erin_ev, &mut dave_ev).await, call);
    let (mut d_rx, mut e_rx, tones) = tones_both_ways((&dave, 440.0), (&erin, 660.0), &call, 30).await;
    still_hears(&mut e_rx, 440.0, 660.0, "erin, before").await;

    // Redis restarts empty: the call goes on, and the nodes list their users again.
    d.redis.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    d.redis.restart();
    still_hears(&mut e_rx, 440.0, 660.0, "erin, with Redis back").await;
    still_hears(&mut d_rx, 660.0, 440.0, "dave, with Redis back").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (frank, mut frank_ev) = user(url(0), "frank").await;
    let second = frank.make_call(MakeCall::audio("gina")).await.expect("a new call after Redis is back");
    assert_eq!(incoming(&mut gina_ev).await.0, second, "it rings on the other node");
    frank.end_call(&second, None, None).await.expect("cancels");
    disconnected(&mut frank_ev).await;

    // PostgreSQL restarts: the call goes on.
    pg.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.restart();
    still_hears(&mut e_rx, 440.0, 660.0, "erin, with PostgreSQL back").await;
    still_hears(&mut d_rx, 660.0, 440.0, "dave, with PostgreSQL back").await;
    tones.iter().for_each(|t| t.abort());

    // Erin hangs up through node 2; each call has its one record.
    erin.end_call(&call, None, None).await.expect("hangs up");
    assert_eq!(disconnected(&mut dave_ev).await.reason, R::Normal);
    one_record_each(&d.app, &[&call, &second]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_sends_new_calls_elsewhere_and_its_clients_calls_go_on_after_it_exits() {
    let _slot = crate::common::slots(2);
    let mut d = deploy("cluster-drain", 2).await;
    let lb = d.balancer().await;
    let url = |i: usize| d.nodes[i].1.clone();

    // Gina signs in through the balancer (node 1); Frank on node 2 calls her: the call
    // lives on node 2, with Gina's signaling through node 1.
    let (gina, mut gina_ev) = user(&lb.url, "gina").await;
    let (frank, mut frank_ev) = user(&url(1), "frank").await;
    let call = frank.make_call(MakeCall::audio("gina")).await.expect("calls");
    assert_eq!(pick_up(&gina, &mut gina_ev, &mut frank_ev).await, call);
    let (mut g_rx, mut f_rx, tones) = tones_both_ways((&gina, 440.0), (&frank, 660.0), &call, 30).await;

    // Node 1's own call: Dave (node 1) calls Erin (node 2).
    let (dave, mut dave_ev) = user(&url(0), "dave").await;
    let (erin, mut erin_ev) = user(&url(1), "erin").await;
    let own = dave.make_call(MakeCall::audio("erin")).await.expect("calls");
    assert_eq!(pick_up(&erin, &mut erin_ev, &mut dave_ev).await, own);
    let (harry, mut harry_ev) = user(&url(0), "harry").await;
    let (ivan, mut ivan_ev) = user(&url(1), "ivan").await;

    // Node 1 drains: Harry's new call from it is made on node 2.
    d.nodes[0].0.terminate();
    log_says(&d.dir.join("node1.log"), "draining").await;
    let third = harry.make_call(MakeCall::audio("ivan")).await.expect("a new call through a draining node");
    assert_eq!(pick_up(&ivan, &mut ivan_ev, &mut harry_ev).await, third);
    harry.end_call(&third, None, None).await.expect("hangs up");
    disconnected(&mut ivan_ev).await;

    // Node 1 stays while its own call lasts, and exits once it ends.
    assert_eq!(d.nodes[0].0.exited(Duration::from_millis(500)).await, None, "it waits for its call");
    dave.end_call(&own, None, None).await.expect("hangs up");
    disconnected(&mut erin_ev).await;
    assert_eq!(d.nodes[0].0.exited(Duration::from_secs(15)).await, Some(0), "it exits once it owns nothing");

    // Gina's client comes back through the balancer, on node 2; her call never stopped.
    wait_event(&mut gina_ev, |e| matches!(e, Event::Reconnected).then_some(())).await;
    still_hears(&mut f_rx, 440.0, 660.0, "frank, after gina's node went").await;
    still_hears(&mut g_rx, 660.0, 440.0, "gina, after her node went").await;
    tones.iter().for_each(|t| t.abort());
    gina.end_call(&call, None, None).await.expect("gina hangs up through node 2");
    assert_eq!(disconnected(&mut frank_ev).await.reason, R::Normal);
    one_record_each(&d.app, &[&call, &own, &third]).await;
}

/// The owner of a call and a room is killed: another node takes both over, every party
/// comes back to it (the SDKs reconnect, resume and start new media on its relay), the
/// tones are heard again, and the call's one record, with its sid, arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_killed_mid_call_another_node_takes_its_call_and_room_over() {
    let _slot = crate::common::slots(2);
    let mut d = deploy("cluster-kill", 3).await;
    // Clients of node 1 come back through the balancer, on node 2.
    let lb = d.balancer().await;
    let url = |i: usize| d.nodes[i].1.clone();

    // A room on node 1, with a member on each node.
    let (ann, mut ann_ev) = user(&lb.url, "ann").await;
    let (ben, mut ben_ev) = user(&url(1), "ben").await;
    let (cy, mut cy_ev) = user(&url(2), "cy").await;
    let mut sids = Vec::new();
    for c in [&ann, &ben, &cy] {
        sids.push(c.join_conference(JoinConference::audio("standup")).await.expect("joins").sid);
    }
    let room = sids[0].clone();
    let (mut pa, mut pb, mut pc) = (
        start_tone(&ann, &room, 440.0).await,
        start_tone(&ben, &room, 660.0).await,
        start_tone(&cy, &room, 880.0).await,
    );
    // A call on node 1: Dave (node 1) calls Erin (node 3).
    let (dave, mut dave_ev) = user(&lb.url, "dave").await;
    let (erin, mut erin_ev) = user(&url(2), "erin").await;
    let call = dave.make_call(MakeCall::audio("erin")).await.expect("calls");
    assert_eq!(pick_up(&erin, &mut erin_ev, &mut dave_ev).await, call);
    let (mut d_rx, mut e_rx, tones) = tones_both_ways((&dave, 523.0), (&erin, 784.0), &call, 60).await;
    still_hears(&mut e_rx, 523.0, 784.0, "erin, before").await;

    d.nodes[0].0.kill();
    let killed = tokio::time::Instant::now();
    // Audio again on both sides of the call, from the new owner's relay.
    audio_again(&mut e_rx).await;
    audio_again(&mut d_rx).await;
    println!("the call's audio again {:.1} s after the kill", killed.elapsed().as_secs_f64());
    // The room too: everyone hears everyone again (once the relay's speaker lines
    // settled, as after a join).
    for p in [&mut pa, &mut pb, &mut pc] {
        audio_again(&mut p.rx).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut hearers = [
        Hearer { user: "ann", hz: 440.0, events: &mut ann_ev, speaker: &mut pa },
        Hearer { user: "ben", hz: 660.0, events: &mut ben_ev, speaker: &mut pb },
        Hearer { user: "cy", hz: 880.0, events: &mut cy_ev, speaker: &mut pc },
    ];
    everyone_hears_everyone(&room, &mut hearers, 2).await;
    println!("the room heard again {:.1} s after the kill", killed.elapsed().as_secs_f64());
    still_hears(&mut e_rx, 523.0, 784.0, "erin, after the kill").await;
    still_hears(&mut d_rx, 784.0, 523.0, "dave, after the kill").await;
    tones.iter().for_each(|t| t.abort());

    // The call goes on under its sid: Erin hangs up, Dave hears it, one record.
    erin.end_call(&call, None, None).await.expect("hangs up on the new owner");
    assert_eq!(disconnected(&mut dave_ev).await.reason, R::Normal);
    let record = one_record_each(&d.app, &[&call]).await;
    assert_eq!(record[0].query["disconnect_reason"], R::Normal.code().to_string());
}

/// Waits for the next audio on `rx` (after what arrived before): media is back.
async fn audio_again(rx: &mut Heard) {
    while rx.try_recv().is_ok() {}
    let first = async {
        while let Some(e) = rx.recv().await {
            if matches!(e, MediaEvent::Audio { .. }) {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(40), first).await.expect("audio again within 40 s of the kill");
}
