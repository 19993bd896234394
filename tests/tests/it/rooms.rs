//! Rooms (group calls) as users and app servers see them: the real server, real SDK
//! clients with real WebRTC media through the relay, and a real HTTP app server
//! receiving on_gcall_evt_cb.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchboard_client::tone::ToneEncoder;
use switchboard_client::{
    Client, ClientError, DisconnectReason as R, DisconnectSource as S, Event, Events, JoinConference,
    MakeCall, MediaEvent, Sid,
};
use switchboard_tests::room_media::{everyone_hears_everyone, start_tone, Hearer};
use switchboard_tests::*;

async fn join(h: &Harness, user: &str, room: &str) -> (Client, Events, Sid) {
    let (c, ev) = h.user(user).await;
    let joined = c.join_conference(JoinConference::audio(room).display_name(format!("{user} N"))).await;
    let joined = joined.unwrap_or_else(|e| panic!("{user} joins: {e}"));
    (c, ev, joined.sid)
}

fn gcall_summary(h: &Harness, sid: &str) -> Vec<String> {
    h.app
        .hits_on("/gcall_evt")
        .into_iter()
        .filter(|x| x.status == 200 && x.query.get("sid").map(String::as_str) == Some(sid))
        .map(|x| format!("{}{} {} {}", x.query["sc"], x.query["msc"], x.query["user_id"], x.query["online"]))
        .collect()
}

async fn wait_gcalls(h: &Harness, sid: &str, n: usize) -> Vec<String> {
    for _ in 0..200 {
        let s = gcall_summary(h, sid);
        if s.len() >= n {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} on_gcall_evt_cb for {sid}: {:?}", gcall_summary(h, sid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_participants_hear_each_other_and_the_app_server_sees_every_change() {
    let h = Harness::start().await;
    let (a, mut a_ev, sid) = join(&h, "alice", "standup").await;
    let (b, mut b_ev, sid_b) = join(&h, "bob", "standup").await;
    let (c, mut c_ev, sid_c) = join(&h, "carol", "standup").await;
    assert_eq!((sid_b.as_str(), sid_c.as_str()), (sid.as_str(), sid.as_str()));
    let added = wait_event(&mut a_ev, |e| match e {
        Event::PeerListUpdated { added, total, .. } if added.iter().any(|p| p.user_id == "carol") => {
            Some((added.clone(), *total))
        }
        _ => None,
    })
    .await;
    assert_eq!(added.1, 2);
    assert_eq!(added.0[0].display_name.as_deref(), Some("carol N"));

    let mut pa = start_tone(&a, &sid, 440.0).await;
    let mut pb = start_tone(&b, &sid, 660.0).await;
    let mut pc = start_tone(&c, &sid, 880.0).await;
    // Let every renegotiation (a line per other participant) settle, then listen.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut hearers = [
        Hearer { user: "alice", hz: 440.0, events: &mut a_ev, speaker: &mut pa },
        Hearer { user: "bob", hz: 660.0, events: &mut b_ev, speaker: &mut pb },
        Hearer { user: "carol", hz: 880.0, events: &mut c_ev, speaker: &mut pc },
    ];
    everyone_hears_everyone(&sid, &mut hearers, 3).await;

    // Mute reaches the others, and the app server as a media change.
    b.set_media_state(&sid, Some(true), None).await.expect("mute");
    let muted = wait_event(&mut a_ev, |e| match e {
        Event::PeerMediaState { user_id: Some(u), mic_muted: Some(true), .. } => Some(u.clone()),
        _ => None,
    })
    .await;
    assert_eq!(muted, "bob");

    c.leave_conference(&sid).await.expect("carol leaves");
    let removed = wait_event(&mut a_ev, |e| match e {
        Event::PeerListUpdated { removed, total, .. } if !removed.is_empty() => {
            Some((removed.clone(), *total))
        }
        _ => None,
    })
    .await;
    assert_eq!(removed, (vec!["carol".to_string()], 1));
    b.leave_conference(&sid).await.expect("bob leaves");
    a.leave_conference(&sid).await.expect("alice leaves");
    for p in [pa, pb, pc] {
        p.sender.abort();
        p.media.stop();
    }

    let seq = wait_gcalls(&h, &sid, 7).await;
    assert_eq!(
        seq,
        ["SC alice 1", "CC bob 2", "CC carol 3", "CM bob 3", "CD carol 2", "CD bob 1", "ED alice 0"]
    );
    // Every field, signed like the other callbacks.
    let hits: Vec<Hit> = h.app.hits_on("/gcall_evt").into_iter().filter(|x| x.status == 200).collect();
    let names = "sid,svc_id,id,user_svc_id,user_id,host_svc_id,host_id,sc,setup_time,start_time,end_time,online,\
                 media_type,msc,stid,ts,rel_code,rel_code_str,ue_type,display_name,disconnect_reason,releaser_type,\
                 app_svr_data";
    let now = switchboard_server::server::now_ms() / 1000;
    for hit in &hits {
        assert_eq!(hit.names.join(","), names);
        assert!(verify_as_documented(ACME_SECRET, &hit.signature, &hit.raw_query, now, 300), "{hit:?}");
        assert_eq!((hit.query["svc_id"].as_str(), hit.query["id"].as_str()), ("acme", "standup"));
        assert_eq!((hit.query["host_id"].as_str(), hit.query["media_type"].as_str()), ("alice", "A"));
    }
    let last = hits.last().expect("E");
    assert_eq!(
        (last.query["disconnect_reason"].as_str(), last.query["releaser_type"].as_str()),
        ("1001", "3")
    );
    assert_eq!(last.query["display_name"], "alice N");
    assert_eq!(last.query["ue_type"], "UE_TYPE_UNDEFINED");
    assert!(
        last.query["end_time"].parse::<u64>().expect("end_time")
            >= last.query["start_time"].parse().expect("start")
    );
    assert_eq!(h.server.census().await.rooms.rooms, 0);
}

#[tokio::test]
async fn a_full_room_refuses_and_creates_nothing() {
    let h = Harness::start_with(|c| {
        for s in &mut c.services {
            s.max_room_participants = 2;
        }
    })
    .await;
    let (_a, _ae, sid) = join(&h, "a", "small").await;
    let (_b, _be, _) = join(&h, "b", "small").await;
    let (c, _ce) = h.user("c").await;
    let err = c.join_conference(JoinConference::audio("small")).await.expect_err("full");
    assert_eq!(err, ClientError::Disconnected { reason: R::RoomIsFull, by: S::CloudServer });
    let seq = wait_gcalls(&h, &sid, 2).await;
    assert_eq!(seq, ["SC a 1", "CC b 2"]);
    // Bad room IDs are start failures.
    for (room, reason) in [("no spaces", "invalid_room_id"), ("c", "id_conflict")] {
        match c.join_conference(JoinConference::audio(room)).await {
            Err(ClientError::StartFailed { reason: r, .. }) => assert_eq!(r.as_str(), reason),
            other => panic!("{room}: {other:?}"),
        }
    }
    assert_eq!(h.server.census().await.rooms.rooms, 1);
}

#[tokio::test]
async fn alone_too_long_is_kicked_out() {
    let h = Harness::start_with(|c| {
        for s in &mut c.services {
            s.alone_kick_out_secs = 1;
        }
    })
    .await;
    let (_a, mut a_ev, sid) = join(&h, "a", "lonely").await;
    let end = disconnected(&mut a_ev).await;
    assert_eq!((end.sid.as_str(), end.reason, end.source), (sid.as_str(), R::AloneKickOut, S::CloudServer));
    assert_eq!(wait_gcalls(&h, &sid, 2).await, ["SC a 1", "ED a 0"]);
    let hit = h.app.hits_on("/gcall_evt").pop().expect("E");
    assert_eq!(hit.query["disconnect_reason"], "1402");
}

#[tokio::test]
async fn another_instance_replaces_the_old_and_a_gone_room_is_not_found() {
    let h = Harness::start().await;
    let (a, _a_ev, sid) = join(&h, "a", "r").await;
    let (b1, mut b1_ev, _) = join(&h, "b", "r").await;
    let (b2, _b2_ev, sid2) = join(&h, "b", "r").await;
    assert_eq!(sid2, sid);
    let end = disconnected(&mut b1_ev).await;
    assert_eq!((end.reason, end.source), (R::AnotherInstanceTryToJoin, S::CloudServer));
    let seq = wait_gcalls(&h, &sid, 4).await;
    assert_eq!(seq, ["SC a 1", "CC b 2", "CD b 1", "CC b 2"]);
    // Everyone leaves; b's first device tries to come back: the room is gone.
    drop(b1);
    let (x, _xe) = h.user("b").await;
    a.leave_conference(&sid).await.expect("a leaves");
    b2.leave_conference(&sid).await.expect("b leaves");
    let err = x.resume(&sid).await.expect_err("room gone");
    assert_eq!(err, ClientError::Disconnected { reason: R::RoomNotFound, by: S::CloudServer });
}

#[tokio::test]
async fn a_user_in_a_room_is_busy_for_calls() {
    let h = Harness::start().await;
    let (_bob, _be, _) = join(&h, "bob", "meeting").await;
    let (alice, mut alice_ev) = h.user("alice").await;
    let sid = alice.make_call(MakeCall::audio("bob")).await.expect("created");
    let end = disconnected(&mut alice_ev).await;
    assert_eq!((end.sid, end.reason, end.source), (sid.clone(), R::Busy, S::Callee));
    let record = h.app.record_for(&sid).await;
    assert_eq!(record.query["disconnect_reason"], "1202");
}

#[tokio::test]
async fn short_data_reaches_the_others_or_the_targets() {
    let h = Harness::start().await;
    let (a, _ae, sid) = join(&h, "a", "chat").await;
    let (_b, mut b_ev, _) = join(&h, "b", "chat").await;
    let (_c, mut c_ev, _) = join(&h, "c", "chat").await;
    a.send_short_data(&sid, "chat", "hello all", None).await.expect("sent");
    a.send_short_data(&sid, "chat", "just c", Some(vec!["c".into()])).await.expect("sent");
    let pick = |e: &Event| match e {
        Event::ShortData { from_user_id, data_type, data, .. } => {
            Some((from_user_id.clone(), data_type.clone(), data.clone()))
        }
        _ => None,
    };
    assert_eq!(wait_event(&mut b_ev, pick).await, ("a".into(), "chat".into(), "hello all".into()));
    assert_eq!(wait_event(&mut c_ev, pick).await.2, "hello all");
    assert_eq!(wait_event(&mut c_ev, pick).await.2, "just c");
    // b got nothing more: its next short data would be a third message, and there is none.
    let more = tokio::time::timeout(Duration::from_millis(300), wait_event(&mut b_ev, pick)).await;
    assert!(more.is_err(), "b got a message meant for c");
}

/// The app server's room control over REST.
async fn rest(
    h: &Harness,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
    secret: &str,
    key: &str,
) -> (u16, serde_json::Value) {
    let mut req =
        reqwest::Client::new().request(method, format!("{}{path}", h.url())).basic_auth(key, Some(secret));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_server_lists_messages_kicks_and_closes_rooms() {
    use reqwest::Method as M;
    use serde_json::json;
    let h = Harness::start().await;
    let acme = |m, p: &'static str, b| rest(&h, m, p, b, ACME_SECRET, "acme-key");
    let (_a, mut a_ev, sid) = join(&h, "a", "ops").await;
    let (_b, mut b_ev, _) = join(&h, "b", "ops").await;
    let (_c, mut c_ev, _) = join(&h, "c", "ops").await;

    let (st, v) = acme(M::GET, "/v1/rooms", None).await;
    assert_eq!(st, 200);
    assert_eq!(v["rooms"][0]["room_id"], "ops");
    assert_eq!(
        (v["rooms"][0]["sid"].as_str(), v["rooms"][0]["online"].as_u64()),
        (Some(sid.as_str()), Some(3))
    );
    assert_eq!(
        (v["rooms"][0]["host_id"].as_str(), v["rooms"][0]["media_type"].as_str()),
        (Some("a"), Some("A"))
    );
    let (st, v) = acme(M::GET, "/v1/rooms/ops", None).await;
    assert_eq!(st, 200);
    let users: Vec<&str> =
        v["participants"].as_array().expect("list").iter().filter_map(|p| p["user_id"].as_str()).collect();
    assert_eq!(users, ["a", "b", "c"]);
    assert_eq!(v["participants"][1]["display_name"], "b N");
    assert_eq!(v["participants"][1]["video_state"], "disabled");
    // Another service sees none of it.
    let (st, v) = rest(&h, M::GET, "/v1/rooms", None, OTHER_SECRET, "other-key").await;
    assert_eq!((st, v["rooms"].as_array().map(Vec::len)), (200, Some(0)));
    assert_eq!(rest(&h, M::GET, "/v1/rooms/ops", None, OTHER_SECRET, "other-key").await.0, 404);

    // App control messages: to listed users, then to everyone.
    let (st, v) =
        acme(M::POST, "/v1/rooms/ops/messages", Some(json!({"user_ids": ["b"], "data": "only b"}))).await;
    assert_eq!((st, v["delivered"].as_u64()), (200, Some(1)));
    let (st, _) = acme(M::POST, "/v1/rooms/ops/messages", Some(json!({"data": "all"}))).await;
    assert_eq!(st, 200);
    let pick = |e: &Event| match e {
        Event::AppControlMessage { data, .. } => Some(data.clone()),
        _ => None,
    };
    assert_eq!(wait_event(&mut b_ev, pick).await, "only b");
    assert_eq!(wait_event(&mut b_ev, pick).await, "all");
    assert_eq!(wait_event(&mut a_ev, pick).await, "all");
    let big = "x".repeat(3073);
    assert_eq!(acme(M::POST, "/v1/rooms/ops/messages", Some(json!({ "data": big }))).await.0, 400);
    assert_eq!(acme(M::POST, "/v1/rooms/ops/messages", Some(json!({"data": "x", "bogus": 1}))).await.0, 400);
    assert_eq!(acme(M::POST, "/v1/rooms/nope/messages", Some(json!({"data": "x"}))).await.0, 404);

    // Kick-out: USER_ERROR from the app server, with the code.
    let (st, v) =
        acme(M::POST, "/v1/rooms/ops/kick", Some(json!({"user_ids": ["c", "zed"], "user_rel_code": "spam"})))
            .await;
    assert_eq!((st, v["kicked"].clone()), (200, json!(["c"])));
    let end = disconnected(&mut c_ev).await;
    assert_eq!(
        (end.reason, end.source, end.user_rel_code.as_deref()),
        (R::UserError, S::AppServer, Some("spam"))
    );
    assert_eq!(acme(M::POST, "/v1/rooms/ops/kick", Some(json!({"user_ids": []}))).await.0, 400);

    // Force-close: everyone ends, the room is gone, the app server hears E.
    let (st, v) = acme(M::DELETE, "/v1/rooms/ops?user_rel_code=closing", None).await;
    assert_eq!((st, v["ended"].as_bool()), (200, Some(true)));
    for ev in [&mut a_ev, &mut b_ev] {
        let end = disconnected(ev).await;
        assert_eq!((end.reason, end.source), (R::UserError, S::AppServer));
    }
    assert_eq!(acme(M::DELETE, "/v1/rooms/ops", None).await.0, 404);
    let seq = wait_gcalls(&h, &sid, 6).await;
    assert_eq!(seq, ["SC a 1", "CC b 2", "CC c 3", "CD c 2", "CD a 1", "ED b 0"]);
    let hits = h.app.hits_on("/gcall_evt");
    let kicked = hits.iter().find(|x| x.query["user_id"] == "c" && x.query["msc"] == "D").expect("c's D");
    assert_eq!(
        (kicked.query["disconnect_reason"].as_str(), kicked.query["releaser_type"].as_str()),
        ("1110", "5")
    );
    let metrics =
        reqwest::get(format!("{}/metrics", h.url())).await.expect("metrics").text().await.expect("text");
    for line in [
        "switchboard_room_joins_total 3",
        "switchboard_room_leaves_total{reason=\"USER_ERROR\",code=\"1110\"} 3",
        "switchboard_rooms 0",
        "switchboard_room_participants 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line:?} in\n{metrics}");
    }
}

/// Ten speakers at different levels and one listener: the listener receives only the
/// loudest six (the relay chooses by the RTP audio level each sender puts in its
/// packets), and everyone gets the levels and who is talking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_receives_only_the_six_loudest_of_ten_speakers() {
    let h = Harness::start().await;
    let mut speakers = Vec::new();
    for i in 0..10u8 {
        let user = format!("s{i}");
        let (c, ev, sid) = join(&h, &user, "town-hall").await;
        let (media, mut rx) = c.start_media(&sid, false).await.expect("media");
        media_event(&mut rx, |e| matches!(e, MediaEvent::Connected), "media connected").await;
        let media = Arc::new(media);
        let m = media.clone();
        // s0 is the loudest (-10 dBov), each next one 5 dB quieter.
        let sender = tokio::spawn(async move {
            let mut enc = ToneEncoder::with_level(300.0 + 100.0 * f64::from(i), 10 + 5 * i).expect("encoder");
            let level = enc.level_dbov();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for _ in 0..50 * 30 {
                tick.tick().await;
                m.send_audio_with_level(enc.next_frame().expect("encode"), 960, level);
            }
        });
        speakers.push((c, ev, media, rx, sender));
    }
    let (_l, mut l_ev, sid) = join(&h, "listener", "town-hall").await;
    let (lm, mut l_rx) = _l.start_media(&sid, false).await.expect("listener media");
    media_event(&mut l_rx, |e| matches!(e, MediaEvent::Connected), "media connected").await;
    // Let the selection and the listener's lines settle, then count what arrives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    while l_rx.try_recv().is_ok() {}
    let mut packets: HashMap<String, u64> = HashMap::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Some(ev)) = tokio::time::timeout_at(end, l_rx.recv()).await {
        if let MediaEvent::Audio { mid, .. } = ev {
            *packets.entry(mid).or_default() += 1;
        }
    }
    // What the listener was told meanwhile: line owners, and who talks.
    let mut who = HashMap::new();
    let mut talking: Option<Vec<String>> = None;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(20), l_ev.next()).await {
        match e {
            Event::MediaLines { lines, .. } => who.extend(lines.into_iter().map(|l| (l.mid, l.user_id))),
            Event::Talking { active, .. } if talking.is_none() && !active.is_empty() => {
                talking = Some(active)
            }
            _ => {}
        }
    }
    let mut heard: Vec<String> = packets
        .iter()
        .filter(|(_, n)| **n > 50)
        .map(|(mid, _)| who.get(mid).cloned().unwrap_or_else(|| format!("?{mid}")))
        .collect();
    heard.sort();
    assert_eq!(heard, ["s0", "s1", "s2", "s3", "s4", "s5"], "lines and packets: {packets:?}, owners {who:?}");
    assert!(packets.len() <= 6, "at most six audio lines carry media: {packets:?}");
    // Levels and talking reach the participants.
    let ev0 = &mut speakers[9].1;
    let levels = wait_event(ev0, |e| match e {
        Event::AudioLevels { levels, .. } if levels.len() >= 10 => Some(levels.clone()),
        _ => None,
    })
    .await;
    assert!(levels["s0"] > levels["s9"], "{levels:?}");
    // The listener is told who talks (the loud ones, not the quietest) once it is in.
    let talking = match talking {
        Some(t) => t,
        None => {
            wait_event(&mut l_ev, |e| match e {
                Event::Talking { active, .. } if !active.is_empty() => Some(active.clone()),
                _ => None,
            })
            .await
        }
    };
    assert!(talking.contains(&"s0".to_string()) && !talking.contains(&"s9".to_string()), "{talking:?}");
    lm.stop();
    for (_, _, m, _, s) in speakers {
        s.abort();
        m.stop();
    }
}

/// Network quality as the relay sees it: a participant whose uplink loses every
/// fourth packet is graded bad or worse, one on a clean loopback excellent or good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_quality_shows_who_loses_packets() {
    use switchboard_client::MediaOptions;
    let h = Harness::start().await;
    let mut parties = Vec::new();
    for (user, drop_every) in [("clean", 0u32), ("lossy", 4)] {
        let (c, ev, sid) = join(&h, user, "q").await;
        let options = MediaOptions { video: false, drop_every, ..MediaOptions::default() };
        let (media, mut rx) = c.start_media_with(&sid, options).await.expect("media");
        media_event(&mut rx, |e| matches!(e, MediaEvent::Connected), "media connected").await;
        let media = Arc::new(media);
        let m = media.clone();
        let sender = tokio::spawn(async move {
            let mut enc = ToneEncoder::new(500.0).expect("encoder");
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for _ in 0..50 * 30 {
                tick.tick().await;
                m.send_audio(enc.next_frame().expect("encode"), 960);
            }
        });
        parties.push((c, ev, media, rx, sender));
    }
    // Grades come every 2 s; wait for one that has seen a few seconds of media.
    let ev = &mut parties[0].1;
    let mut last = std::collections::BTreeMap::new();
    for _ in 0..6 {
        last = wait_event(ev, |e| match e {
            Event::NetworkQuality { quality, .. } => Some(quality.clone()),
            _ => None,
        })
        .await;
        if last.get("lossy").is_some_and(|q| *q >= 4)
            && last.get("clean").is_some_and(|q| (1..=2).contains(q))
        {
            break;
        }
    }
    assert!(last.get("lossy").is_some_and(|q| *q >= 4), "{last:?}");
    assert!(last.get("clean").is_some_and(|q| (1..=2).contains(q)), "{last:?}");
    for (_, _, m, _, s) in parties {
        s.abort();
        m.stop();
    }
}

/// `ServerHandle::shutdown` stops everything the server started: its TCP port and
/// every relay shard's UDP port are free again afterwards (the core, the shards and
/// the delivery task have ended), even with a room live at the time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_core_the_relay_and_delivery() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe");
    let port = udp.local_addr().expect("addr").port();
    drop(udp);
    let h = Harness::start_with(|c| {
        c.media_bind = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        c.media_shards = 1;
    })
    .await;
    let (a, _ae, sid) = join(&h, "a", "closing").await;
    let (_m, mut rx) = a.start_media(&sid, false).await.expect("media");
    media_event(&mut rx, |e| matches!(e, MediaEvent::Connected), "media connected").await;
    let tcp = h.server.addr;
    tokio::time::timeout(Duration::from_secs(10), h.server.shutdown()).await.expect("shutdown ends");
    std::net::UdpSocket::bind(("127.0.0.1", port)).expect("the relay's UDP port is free");
    std::net::TcpListener::bind(tcp).expect("the HTTP port is free");
}

/// A participant whose device vanishes without closing its connection (no FIN, no
/// heartbeats) is taken out once its session times out and the reconnect grace has
/// passed: the others see it leave, the app server gets a T with NETWORK_UNSTABLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_that_vanishes_without_a_word_times_out() {
    let h = Harness::start_with(|c| {
        c.heartbeat_secs = 1;
        c.session_timeout_secs = 2;
        c.reconnect_grace_ms = 300;
    })
    .await;
    let (_a, mut a_ev, sid) = join(&h, "a", "quiet").await;
    let mut ghost = RawSession::connect(&h, "ghost").await;
    ghost.send(r#"{"type":"join_room","req":1,"room_id":"quiet","media_type":"audio"}"#).await;
    ghost.wait_for("room_joined").await;
    let started = std::time::Instant::now();
    // The ghost now says nothing at all, and never closes.
    let removed = wait_event(&mut a_ev, |e| match e {
        Event::PeerListUpdated { removed, .. } if !removed.is_empty() => Some(removed.clone()),
        _ => None,
    })
    .await;
    assert_eq!(removed, ["ghost"]);
    assert!(started.elapsed() >= Duration::from_secs(2), "not before the session timeout");
    let seq = wait_gcalls(&h, &sid, 3).await;
    assert_eq!(seq, ["SC a 1", "CC ghost 2", "CT ghost 1"]);
    let hit = h.app.hits_on("/gcall_evt").into_iter().find(|x| x.query["msc"] == "T").expect("T");
    assert_eq!((hit.query["disconnect_reason"].as_str(), hit.query["releaser_type"].as_str()), ("1301", "3"));
    drop(ghost);
}
