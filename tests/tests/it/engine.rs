//! The call-engine face through the real server: a group call with invitations over
//! WebSocket engine sessions, the pushes to each invitee, the signed group call record
//! at on_group_call_evt_cb, and the same record at `GET /v1/calls/{id}`; a pushed
//! invitee answering with only its `cc_param`; the Rust SDK's engine face with real
//! media through the call's room.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use switchboard_client::{
    CallEndReason, CallEngine, CallEvent, CallEvents, CallMediaType, CallParams, CallRole, Calls, Client,
    EngineEvent, Entered, Event, Events, MediaEvent, Sid,
};
use switchboard_tests::*;

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_call_rings_pushes_and_records_every_invitee() {
    let h = Harness::start().await;
    let mut alice = RawSession::engine(&h, "alice").await;
    let mut bob = RawSession::engine(&h, "bob").await;
    let mut carol = RawSession::engine(&h, "carol").await;
    alice
        .send(r#"{"type":"calls","req":1,"user_ids":["bob","carol","dan"],"media_type":"audio","user_data":"team sync","group_id":"g1"}"#)
        .await;
    let joined = alice.wait_for("room_joined").await;
    assert_eq!(joined["req"], 1);
    let id = joined["sid"].as_str().expect("the call's ID").to_string();
    let room_id: u32 = joined["room_id"].as_str().and_then(|r| r.parse().ok()).expect("a numeric room");

    let received = bob.wait_event("onCallReceived").await;
    assert_eq!(received["call_id"], id.as_str());
    assert_eq!(
        received["event"],
        serde_json::json!({"name": "onCallReceived", "callerId": "alice", "calleeIdList": ["bob", "carol", "dan"],
                           "groupId": "g1", "callMediaType": 1, "userData": "team sync"})
    );
    carol.wait_event("onCallReceived").await;
    // Every invitee is pushed, Dan (no device online) too, each with a cc_param of its own.
    let mut params = Vec::new();
    for user in ["bob", "carol", "dan"] {
        let push = h.app.wait_for("/notify", |hit| hit.query["to_user_id"] == user).await;
        assert_eq!(push.query["sid"], id);
        params.push(push.query["param"].clone());
    }
    params.dedup();
    assert_eq!(params.len(), 3);
    // Live over REST while it rings: everyone invited is `inviting`.
    let url = format!("{}/v1/calls/{id}", h.url());
    let get = || async {
        let resp = reqwest::Client::new()
            .get(&url)
            .basic_auth("acme-key", Some(ACME_SECRET))
            .send()
            .await
            .expect("GET");
        assert_eq!(resp.status().as_u16(), 200);
        resp.json::<Value>().await.expect("JSON")
    };
    let results = |v: &Value| -> Vec<String> {
        let members = v["members"].as_array().cloned().unwrap_or_default();
        members
            .iter()
            .map(|m| {
                format!("{} {}", m["user_id"].as_str().unwrap_or(""), m["result"].as_str().unwrap_or(""))
            })
            .collect()
    };
    let live = get().await;
    assert_eq!((live["state"].as_str(), live["end_ms"].as_u64()), (Some("ringing"), Some(0)));
    assert_eq!(results(&live), ["alice joined", "bob inviting", "carol inviting", "dan inviting"]);

    // Bob accepts; Carol rejects; Dan's device wakes up by the push and ignores it.
    bob.send(&format!(r#"{{"type":"accept","req":2,"call_id":"{id}"}}"#)).await;
    assert_eq!(bob.wait_for("room_joined").await["sid"], id.as_str());
    let begin = alice.wait_event("onCallBegin").await;
    assert_eq!(
        begin["event"],
        serde_json::json!({"name": "onCallBegin", "roomID": room_id, "callMediaType": 1, "callRole": 1})
    );
    assert_eq!(alice.wait_event("onUserJoin").await["event"]["userId"], "bob");
    let live = get().await;
    assert_eq!(live["state"], "connected");
    assert_eq!(results(&live), ["alice joined", "bob joined", "carol inviting", "dan inviting"]);
    carol.send(&format!(r#"{{"type":"reject","req":3,"call_id":"{id}"}}"#)).await;
    assert_eq!(carol.wait_event("onCallCancelled").await["event"]["userId"], "carol");
    assert_eq!(alice.wait_event("onUserReject").await["event"]["userId"], "carol");
    let dan_param = &params[2];
    let mut dan = RawSession::open(&h).await;
    dan.send(&format!(r#"{{"type":"hello","v":1,"cc_param":"{dan_param}","engine":true}}"#)).await;
    dan.wait_for("welcome").await;
    dan.send(&format!(r#"{{"type":"ignore","req":4,"call_id":"{id}"}}"#)).await;
    assert_eq!(dan.wait_for("done").await["req"], 4);
    assert_eq!(alice.wait_event("onUserLineBusy").await["event"]["userId"], "dan");

    // Bob hangs up: the call is over for Alice too.
    bob.send(&format!(r#"{{"type":"hangup","req":5,"call_id":"{id}"}}"#)).await;
    let end = bob.wait_event("onCallEnd").await;
    assert_eq!((end["event"]["callRole"].as_u64(), end["event"]["reason"].as_u64()), (Some(2), Some(1)));
    assert_eq!(alice.wait_event("onUserLeave").await["event"]["userId"], "bob");
    assert_eq!(alice.wait_event("onCallEnd").await["event"]["callRole"], 1);

    // One signed record, with every invitee's outcome.
    let hit = h.app.wait_for("/group_call_evt", |hit| hit.query["call_id"] == id).await;
    assert!(verify_as_documented(ACME_SECRET, &hit.signature, &hit.raw_query, now_secs(), 300));
    assert_eq!(
        hit.names,
        [
            "call_id",
            "service_id",
            "caller_id",
            "media_type",
            "room_id",
            "group_id",
            "user_data",
            "setup_ms",
            "begin_ms",
            "end_ms",
            "end_reason",
            "members"
        ]
    );
    assert_eq!((hit.query["caller_id"].as_str(), hit.query["end_reason"].as_str()), ("alice", "1"));
    let members: Value = serde_json::from_str(&hit.query["members"]).expect("members is JSON");
    let results: Vec<(&str, &str)> = members
        .as_array()
        .expect("an array")
        .iter()
        .map(|m| (m["user_id"].as_str().unwrap_or(""), m["result"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        results,
        [("alice", "joined"), ("bob", "joined"), ("carol", "rejected"), ("dan", "line_busy")]
    );

    // The same record over REST, under the call's ID.
    let v = get().await;
    assert_eq!((v["kind"].as_str(), v["room_id"].as_u64()), (Some("group"), Some(u64::from(room_id))));
    assert_eq!(v["state"], "ended");
    assert_eq!(v["members"], members);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_frames_go_to_engine_sessions_only_and_strangers_are_refused() {
    let h = Harness::start().await;
    let mut alice = RawSession::engine(&h, "alice").await;
    let mut plain_bob = RawSession::connect(&h, "bob").await;
    alice.send(r#"{"type":"calls","req":1,"user_ids":["bob","carol"],"media_type":"video"}"#).await;
    let id = alice.wait_for("room_joined").await["sid"].as_str().expect("id").to_string();
    // A PlanetKit-face session of an invitee is not rung by a group call (it could not
    // answer one), and hears no engine frames.
    plain_bob.send(r#"{"type":"ping"}"#).await;
    assert_eq!(plain_bob.wait_for("pong").await["type"], "pong");
    let mut eve = RawSession::engine(&h, "eve").await;
    eve.send(&format!(r#"{{"type":"join_call","req":2,"call_id":"{id}"}}"#)).await;
    let refused = eve.wait_for("error").await;
    assert_eq!((refused["req"].as_u64(), refused["error"].as_str()), (Some(2), Some("not_found")));
    // A plain session cannot start one.
    plain_bob.send(r#"{"type":"calls","req":3,"user_ids":["alice","carol"],"media_type":"audio"}"#).await;
    let refused = plain_bob.wait_for("error").await;
    assert_eq!(refused["error"], "wrong_state");
    alice.send(&format!(r#"{{"type":"hangup","req":4,"call_id":"{id}"}}"#)).await;
    assert_eq!(alice.wait_event("onCallCancelled").await["event"]["userId"], "alice");
    let hit = h.app.wait_for("/group_call_evt", |hit| hit.query["call_id"] == id).await;
    assert_eq!(hit.query["end_reason"], "6");
}

/// A user of `acme` signed in to the Rust SDK as a call-engine session.
async fn engine_user(h: &Harness, user: &str) -> (Client, Events) {
    Client::connect_engine(&h.url(), "acme", user, &h.token("acme", user), false)
        .await
        .expect("engine session")
}

/// The next call-engine event named `name`.
async fn call_event(ev: &mut Events, name: &str) -> (Option<Sid>, EngineEvent) {
    wait_event(ev, |e| match e {
        Event::Call { call_id, call_event } if call_event.name() == name => {
            Some((call_id.clone(), call_event.clone()))
        }
        _ => None,
    })
    .await
}

/// A user of `acme` signed in to the Rust SDK's `CallEngine`.
async fn engine_login(h: &Harness, user: &str) -> (CallEngine, CallEvents) {
    CallEngine::login(&h.url(), "acme", user, &h.token("acme", user)).await.expect("login")
}

/// The next `CallEngine` event named `name` for which `pick` holds.
async fn engine_event(ev: &mut CallEvents, name: &str, pick: impl Fn(&EngineEvent) -> bool) -> CallEvent {
    let wait = async {
        while let Some(e) = ev.next().await {
            if e.event.name() == name && pick(&e.event) {
                return e;
            }
        }
        panic!("the events ended before {name}");
    };
    tokio::time::timeout(std::time::Duration::from_secs(15), wait)
        .await
        .unwrap_or_else(|_| panic!("no {name} within 15 s"))
}

/// Whether a volume or network quality event names every one of `users`.
fn names_all(e: &EngineEvent, users: &[&str]) -> bool {
    match e {
        EngineEvent::UserVoiceVolumeChanged { volume_map } => {
            users.iter().all(|u| volume_map.get(*u).is_some_and(|v| *v <= 100))
        }
        EngineEvent::UserNetworkQualityChanged { network_quality_list } => {
            users.iter().all(|u| network_quality_list.iter().any(|q| q.user_id == *u))
        }
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_call_engine_makes_a_group_call_and_its_media_flows() {
    let h = Harness::start().await;
    let (alice, mut alice_ev) = engine_login(&h, "alice").await;
    let (bob, mut bob_ev) = engine_login(&h, "bob").await;
    let (carol, mut carol_ev) = engine_login(&h, "carol").await;
    let id = alice.calls(["bob", "carol"], CallMediaType::Audio, CallParams::default()).await.expect("calls");
    let rung = engine_event(&mut bob_ev, "onCallReceived", |_| true).await;
    assert_eq!(rung.call_id.as_ref(), Some(&id));
    assert!(matches!(rung.event, EngineEvent::CallReceived { ref caller_id, .. } if caller_id == "alice"));
    engine_event(&mut carol_ev, "onCallReceived", |_| true).await;
    carol.reject(&id).await.expect("reject");
    let rejected = engine_event(&mut alice_ev, "onUserReject", |_| true).await;
    assert_eq!(rejected.event, EngineEvent::UserReject { user_id: "carol".into() });
    bob.accept(&id).await.expect("accept");
    let begin = engine_event(&mut alice_ev, "onCallBegin", |_| true).await;
    assert!(matches!(begin.event, EngineEvent::CallBegin { call_role: CallRole::Caller, .. }));

    // The call's media is its room's: Alice's tone reaches Bob.
    let (am, mut a_rx) = alice.start_media(&id, false).await.expect("alice's media");
    let (bm, mut b_rx) = bob.start_media(&id, false).await.expect("bob's media");
    media_event(&mut a_rx, |e| matches!(e, MediaEvent::Connected), "alice's media connected").await;
    media_event(&mut b_rx, |e| matches!(e, MediaEvent::Connected), "bob's media connected").await;
    let tones = [send_tone(std::sync::Arc::new(am), 440.0, 4), send_tone(std::sync::Arc::new(bm), 660.0, 4)];
    let pcm = receive_tone(&mut b_rx, 100).await;
    let hz = switchboard_client::tone::power(&pcm[24_000..], 440.0)
        / switchboard_client::tone::power(&pcm[24_000..], 1000.0);
    assert!(hz > 100.0, "bob hears alice's 440 Hz (power ratio 440/1000 Hz: {hz})");
    // The room's reports in the engine's words: volumes and quality naming both,
    // and Bob's microphone closing.
    for ev in [&mut alice_ev, &mut bob_ev] {
        let volumes = engine_event(ev, "onUserVoiceVolumeChanged", |e| names_all(e, &["alice", "bob"])).await;
        assert_eq!(volumes.call_id.as_ref(), Some(&id));
        engine_event(ev, "onUserNetworkQualityChanged", |e| names_all(e, &["alice", "bob"])).await;
    }
    bob.close_microphone(&id).await.expect("close microphone");
    let muted = engine_event(&mut alice_ev, "onUserAudioAvailable", |e| {
        matches!(e, EngineEvent::UserAudioAvailable { user_id, is_audio_available: false } if user_id == "bob")
    })
    .await;
    assert_eq!(muted.call_id.as_ref(), Some(&id));
    tones.iter().for_each(|t| t.abort());

    bob.hangup(&id).await.expect("hangup");
    let end = engine_event(&mut alice_ev, "onCallEnd", |_| true).await;
    assert!(matches!(end.event, EngineEvent::CallEnd { reason: CallEndReason::Hangup, .. }), "{end:?}");
    let hit = h.app.wait_for("/group_call_evt", |hit| hit.query["call_id"] == id.as_str()).await;
    assert_eq!(hit.query["end_reason"], "1");
}

/// A 1-to-1 call through the Rust `CallEngine`: both ends hear both users' volume and
/// network quality from the relay, and the peer's microphone closing by its user ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_to_one_engine_call_reports_volumes_quality_and_the_peers_microphone() {
    let h = Harness::start().await;
    let (dan, mut dan_ev) = engine_login(&h, "dan").await;
    let (erin, mut erin_ev) = engine_login(&h, "erin").await;
    let id = dan.calls(["erin"], CallMediaType::Audio, CallParams::default()).await.expect("calls");
    engine_event(&mut erin_ev, "onCallReceived", |_| true).await;
    erin.accept(&id).await.expect("accept");
    for ev in [&mut dan_ev, &mut erin_ev] {
        engine_event(ev, "onCallBegin", |_| true).await;
    }
    let (dm, mut d_rx) = dan.start_media(&id, false).await.expect("dan's media");
    let (em, mut e_rx) = erin.start_media(&id, false).await.expect("erin's media");
    media_event(&mut d_rx, |e| matches!(e, MediaEvent::Connected), "dan's media connected").await;
    media_event(&mut e_rx, |e| matches!(e, MediaEvent::Connected), "erin's media connected").await;
    let tones = [send_tone(std::sync::Arc::new(dm), 440.0, 5), send_tone(std::sync::Arc::new(em), 660.0, 5)];
    for ev in [&mut dan_ev, &mut erin_ev] {
        let volumes = engine_event(ev, "onUserVoiceVolumeChanged", |e| names_all(e, &["dan", "erin"])).await;
        assert_eq!(volumes.call_id.as_ref(), Some(&id));
        let quality =
            engine_event(ev, "onUserNetworkQualityChanged", |e| names_all(e, &["dan", "erin"])).await;
        assert_eq!(quality.call_id.as_ref(), Some(&id));
    }
    erin.close_microphone(&id).await.expect("close microphone");
    engine_event(&mut dan_ev, "onUserAudioAvailable", |e| {
        matches!(e, EngineEvent::UserAudioAvailable { user_id, is_audio_available: false } if user_id == "erin")
    })
    .await;
    tones.iter().for_each(|t| t.abort());
    dan.hangup(&id).await.expect("hangup");
    for ev in [&mut dan_ev, &mut erin_ev] {
        let end = engine_event(ev, "onCallEnd", |_| true).await;
        assert!(matches!(end.event, EngineEvent::CallEnd { reason: CallEndReason::Hangup, .. }), "{end:?}");
    }
    // Signed out by the app: no error follows.
    dan.logout().await;
    assert_eq!(dan_ev.next().await, None);
}

/// The engine events of `ev` until `last` (by name), inclusive.
async fn events_until(ev: &mut Events, last: &str) -> Vec<EngineEvent> {
    let mut seen = Vec::new();
    loop {
        let (_, e) = wait_event(ev, |e| match e {
            Event::Call { call_id, call_event } => Some((call_id.clone(), call_event.clone())),
            _ => None,
        })
        .await;
        let done = e.name() == last;
        seen.push(e);
        if done {
            return seen;
        }
    }
}

fn cancelled(user: &str) -> EngineEvent {
    EngineEvent::CallCancelled { user_id: user.into() }
}

fn not_connected(reason: CallEndReason, user: &str) -> EngineEvent {
    EngineEvent::CallNotConnected { reason, user_id: user.into() }
}

/// Every way a 1-to-1 engine call ends, through the Rust SDK: the events at both ends
/// follow seed 004's onCallCancelled rules, and on_call_evt_cb has the matching reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_engine_calls_end_every_way_with_seed_004_events_and_the_record() {
    let h = Harness::start().await;
    let call = |caller: Client, callee: &str, timeout: Option<u32>| {
        let callee = callee.to_string();
        async move {
            let calls = Calls { timeout_secs: timeout, ..Calls::audio([callee]) };
            let Entered::OneToOne { sid } = caller.calls(calls).await.expect("calls") else {
                panic!("1-to-1")
            };
            sid
        }
    };

    // Answered, then hung up by the caller.
    let (a, mut a_ev) = engine_user(&h, "a1").await;
    let (b, mut b_ev) = engine_user(&h, "b1").await;
    let sid = call(a.clone(), "b1", None).await;
    call_event(&mut b_ev, "onCallReceived").await;
    b.accept(&sid).await.expect("accept");
    call_event(&mut a_ev, "onCallBegin").await;
    a.hangup(&sid).await.expect("hangup");
    for (ev, role) in [(&mut a_ev, CallRole::Caller), (&mut b_ev, CallRole::Called)] {
        let (_, end) = call_event(ev, "onCallEnd").await;
        assert!(
            matches!(end, EngineEvent::CallEnd { call_role, reason: CallEndReason::Hangup, .. } if call_role == role)
        );
    }
    assert_eq!(h.app.record_for(sid.as_str()).await.query["disconnect_reason"], "1001");

    // Rejected.
    let (a, mut a_ev) = engine_user(&h, "a2").await;
    let (b, mut b_ev) = engine_user(&h, "b2").await;
    let sid = call(a.clone(), "b2", None).await;
    call_event(&mut b_ev, "onCallReceived").await;
    b.reject(&sid).await.expect("reject");
    let at_a = events_until(&mut a_ev, "onCallNotConnected").await;
    assert_eq!(
        at_a,
        [
            EngineEvent::UserReject { user_id: "b2".into() },
            cancelled("a2"),
            not_connected(CallEndReason::Reject, "a2")
        ]
    );
    assert_eq!(events_until(&mut b_ev, "onCallCancelled").await, [cancelled("b2")]);
    assert_eq!(h.app.record_for(sid.as_str()).await.query["disconnect_reason"], "1002");

    // No response within the invitation's timeout.
    let (a, mut a_ev) = engine_user(&h, "a3").await;
    let (_b, mut b_ev) = engine_user(&h, "b3").await;
    let sid = call(a.clone(), "b3", Some(1)).await;
    call_event(&mut b_ev, "onCallReceived").await;
    let at_a = events_until(&mut a_ev, "onCallNotConnected").await;
    assert_eq!(
        at_a,
        [
            EngineEvent::UserNoResponse { user_id: "b3".into() },
            cancelled("a3"),
            not_connected(CallEndReason::NoResponse, "a3")
        ]
    );
    assert_eq!(events_until(&mut b_ev, "onCallCancelled").await, [cancelled("b3")]);
    assert_eq!(h.app.record_for(sid.as_str()).await.query["disconnect_reason"], "1203");

    // Line busy: the callee is in another call.
    let (c, mut c_ev) = engine_user(&h, "c4").await;
    let (b, mut b_ev) = engine_user(&h, "b4").await;
    let other = call(c.clone(), "b4", None).await;
    call_event(&mut b_ev, "onCallReceived").await;
    b.accept(&other).await.expect("accept");
    call_event(&mut c_ev, "onCallBegin").await;
    let (a, mut a_ev) = engine_user(&h, "a4").await;
    let sid = call(a.clone(), "b4", None).await;
    let at_a = events_until(&mut a_ev, "onCallNotConnected").await;
    assert_eq!(
        at_a,
        [
            EngineEvent::UserLineBusy { user_id: "b4".into() },
            cancelled("a4"),
            not_connected(CallEndReason::LineBusy, "a4")
        ]
    );
    assert_eq!(h.app.record_for(sid.as_str()).await.query["disconnect_reason"], "1202");

    // Ignored: the caller sees line busy.
    let (a, mut a_ev) = engine_user(&h, "a5").await;
    let (b, mut b_ev) = engine_user(&h, "b5").await;
    let sid = call(a.clone(), "b5", None).await;
    call_event(&mut b_ev, "onCallReceived").await;
    b.ignore(&sid).await.expect("ignore");
    let at_a = events_until(&mut a_ev, "onCallNotConnected").await;
    assert_eq!(at_a[0], EngineEvent::UserLineBusy { user_id: "b5".into() });
    assert_eq!(events_until(&mut b_ev, "onCallCancelled").await, [cancelled("b5")]);
    assert_eq!(h.app.record_for(sid.as_str()).await.query["disconnect_reason"], "1202");

    // Cancelled by the caller: both hear it was the caller.
    let (a, mut a_ev) = engine_user(&h, "a6").await;
    let (_b, mut b_ev) = engine_user(&h, "b6").await;
    let sid = call(a.clone(), "b6", None).await;
    call_event(&mut b_ev, "onCallReceived").await;
    a.hangup(&sid).await.expect("cancel");
    assert_eq!(events_until(&mut a_ev, "onCallCancelled").await, [cancelled("a6")]);
    assert_eq!(events_until(&mut b_ev, "onCallCancelled").await, [cancelled("a6")]);
    assert_eq!(h.app.record_for(sid.as_str()).await.query["disconnect_reason"], "1201");

    // The callee cannot be reached: no device online and its push fails.
    h.app.set_notify_status(500);
    let (a, mut a_ev) = engine_user(&h, "a7").await;
    let sid = call(a.clone(), "nobody7", None).await;
    let at_a = events_until(&mut a_ev, "onCallNotConnected").await;
    assert_eq!(
        at_a,
        [
            EngineEvent::UserNoResponse { user_id: "nobody7".into() },
            cancelled("a7"),
            not_connected(CallEndReason::Offline, "a7")
        ]
    );
    assert_eq!(h.app.record_for(sid.as_str()).await.query["disconnect_reason"], "1302");
}

/// `queryRecentCalls`: a user's own 1-to-1 and group calls, never another user's, over
/// the REST route authorised by the user's token (and open to pages of any origin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_recent_calls_returns_a_users_calls_and_never_another_users() {
    let h = Harness::start().await;
    let (alice, mut alice_ev) = engine_user(&h, "alice").await;
    let (bob, mut bob_ev) = engine_user(&h, "bob").await;
    let (carol, mut carol_ev) = engine_user(&h, "carol").await;
    let Entered::Group(room) = alice.calls(Calls::audio(["bob", "carol"])).await.expect("calls") else {
        panic!("a group call")
    };
    call_event(&mut bob_ev, "onCallReceived").await;
    call_event(&mut carol_ev, "onCallReceived").await;
    bob.accept(&room.sid).await.expect("accept");
    carol.reject(&room.sid).await.expect("reject");
    call_event(&mut alice_ev, "onCallBegin").await;
    bob.hangup(&room.sid).await.expect("hangup");
    call_event(&mut alice_ev, "onCallEnd").await;
    h.app.wait_for("/group_call_evt", |hit| hit.query["call_id"] == room.sid.as_str()).await;
    // A 1-to-1 call between two others, missed by its callee.
    let (dan, _dan_ev) = engine_user(&h, "dan").await;
    let (_erin, mut erin_ev) = engine_user(&h, "erin").await;
    let Entered::OneToOne { sid } = dan.calls(Calls::audio(["erin"])).await.expect("calls") else {
        panic!("1-to-1")
    };
    call_event(&mut erin_ev, "onCallReceived").await;
    dan.hangup(&sid).await.expect("cancel");
    h.app.record_for(sid.as_str()).await;

    let summary = |calls: Vec<switchboard_client::RecentCall>| -> Vec<(String, String, String, u8)> {
        calls.into_iter().map(|c| (c.call_id, c.scene, c.result, c.role)).collect()
    };
    let group = room.sid.to_string();
    let all = switchboard_client::RecentCallsQuery::default();
    assert_eq!(
        summary(alice.query_recent_calls(all.clone()).await.unwrap()),
        [(group.clone(), "GROUP_CALL".into(), "OUTGOING".into(), 1)]
    );
    assert_eq!(
        summary(bob.query_recent_calls(all.clone()).await.unwrap()),
        [(group.clone(), "GROUP_CALL".into(), "INCOMING".into(), 2)]
    );
    assert_eq!(
        summary(carol.query_recent_calls(all.clone()).await.unwrap()),
        [(group.clone(), "GROUP_CALL".into(), "MISSED".into(), 2)]
    );
    assert_eq!(
        summary(_erin.query_recent_calls(all.clone()).await.unwrap()),
        [(sid.to_string(), "SINGLE_CALL".into(), "MISSED".into(), 2)]
    );
    let missed = switchboard_client::RecentCallsQuery { result: Some("MISSED".into()), ..all.clone() };
    assert!(bob.query_recent_calls(missed).await.unwrap().is_empty());
    let bob_calls = bob.query_recent_calls(all).await.unwrap();
    assert_eq!(bob_calls[0].invite_list, ["bob", "carol"]);
    assert_eq!(bob_calls[0].inviter, "alice");

    // No token, a forged one, a bad filter: refused; a page on another origin may ask.
    let http = reqwest::Client::new();
    let url = format!("{}/v1/me/calls", h.url());
    assert_eq!(http.get(&url).send().await.unwrap().status().as_u16(), 401);
    let forged = format!("{}x", h.token("acme", "bob"));
    assert_eq!(http.get(&url).bearer_auth(forged).send().await.unwrap().status().as_u16(), 401);
    let bad = http.get(format!("{url}?result=ALL")).bearer_auth(h.token("acme", "bob")).send().await.unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let pre = http
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.headers()["access-control-allow-origin"], "*");
    assert!(pre.headers()["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
}

/// A user flooding `GET /v1/me/calls` gets 429 past its own budget; another user and
/// the app server's API are not held back by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_flooding_its_call_history_is_rate_limited_alone() {
    let h = Harness::start_with(|c| {
        c.limits.api_per_service_per_sec = 0.1;
        c.limits.api_per_service_burst = 3.0;
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/me/calls", h.url());
    let ask = |user: &str| http.get(&url).bearer_auth(h.token("acme", user)).send();
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(ask("mallory").await.unwrap().status().as_u16());
    }
    assert_eq!(codes, [200, 200, 200, 429, 429]);
    let refused = ask("mallory").await.unwrap();
    assert_eq!(
        refused.headers()["access-control-allow-origin"],
        "*",
        "a page on another origin reads the refusal"
    );
    assert_eq!(ask("alice").await.unwrap().status().as_u16(), 200, "another user has a budget of its own");
    let api = http.get(format!("{}/v1/calls", h.url())).basic_auth("acme-key", Some(ACME_SECRET)).send();
    assert_eq!(api.await.unwrap().status().as_u16(), 200, "the app server's API has its own");
}
