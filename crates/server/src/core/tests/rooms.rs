//! Rooms: joins and leaves, every timer and reason, the app server's controls, media
//! under the participants' names, and the on_gcall_evt_cb records.

use switchboard_protocol::record::GcallRecord;
use switchboard_protocol::{DisconnectReason as R, DisconnectSource as S, ErrorCode, ServerMessage};

use super::{rules, sent, settings, H, T0};
use crate::core::{Input, Output, ServiceRules};
use crate::ids::{SessionId, Sid};
use crate::media_link::{MediaCmd, PartyKey, RelayEvent};
use crate::records::Entry;

fn room_rules(max_participants: u32, alone_s: u64, max_s: u64) -> ServiceRules {
    ServiceRules {
        max_room_participants: max_participants,
        alone_kick_out_ms: alone_s * 1000,
        max_call_ms: max_s * 1000,
        ..rules(60, 0, false)
    }
}

fn room(max_participants: u32, alone_s: u64, max_s: u64) -> H {
    H::with(settings(100.0, 100.0), room_rules(max_participants, alone_s, max_s))
}

impl H {
    pub(super) fn say(&mut self, session: impl Into<SessionId>, json: &str) -> Vec<Output> {
        self.msg(session, json);
        self.drain()
    }

    fn wait(&mut self, ms: u64) -> Vec<Output> {
        self.advance(ms);
        self.drain()
    }

    /// Opens a session for `user` and joins room `r1`; the room's sid.
    fn join(&mut self, session: impl Into<SessionId>, user: &str) -> String {
        let session: SessionId = session.into();
        self.open(session, user);
        let out = self.say(
            session,
            r#"{"type":"join_room","req":1,"room_id":"r1","media_type":"video","display_name":"N"}"#,
        );
        sent(&out, session)
            .into_iter()
            .find_map(|m| match m {
                ServerMessage::RoomJoined { sid, .. } => Some(sid.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{user} did not join: {out:?}"))
    }
}

fn disconnect(out: &[Output], session: impl Into<SessionId>) -> Option<(R, S)> {
    let session: SessionId = session.into();
    sent(out, session).into_iter().find_map(|m| match m {
        ServerMessage::Disconnected { reason, source, .. } => Some((reason, source)),
        _ => None,
    })
}

fn gcalls(out: &[Output]) -> Vec<GcallRecord> {
    out.iter()
        .filter_map(|o| match o {
            Output::Journal(Entry::Gcall { record, .. }) => Some(record.clone()),
            _ => None,
        })
        .collect()
}

fn summary(records: &[GcallRecord]) -> Vec<String> {
    records.iter().map(|r| format!("{}{} {} {}", r.sc, r.msc, r.user_id, r.online)).collect()
}

#[test]
fn joins_and_leaves_tell_everyone_and_the_app_server() {
    let mut h = room(50, 300, 0);
    h.open(1, "alice");
    let out = h.say(1, r#"{"type":"join_room","req":1,"room_id":"r1","media_type":"video","app_data":"x"}"#);
    let joined = sent(&out, 1);
    let Some(ServerMessage::RoomJoined { sid, host_id, peers, .. }) = joined.first() else {
        panic!("{out:?}")
    };
    assert_eq!(sid.len(), 32);
    assert!(sid.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!((host_id.as_str(), peers.len()), ("alice", 0));
    let sid = sid.clone();
    let first = gcalls(&out);
    assert_eq!(summary(&first), ["SC alice 1"]);
    assert_eq!((first[0].ue_type.as_str(), first[0].app_svr_data.as_deref()), ("BROWSER", Some("x")));
    assert_eq!((first[0].end_time, first[0].disconnect_reason), (0, 0));

    h.wait(1_000);
    h.open(2, "bob");
    let out = h.say(2, r#"{"type":"join_room","req":2,"room_id":"r1","media_type":"video"}"#);
    let Some(ServerMessage::RoomJoined { peers, .. }) = sent(&out, 2).into_iter().next() else { panic!() };
    assert_eq!(peers.iter().map(|p| p.user_id.as_str()).collect::<Vec<_>>(), ["alice"]);
    assert!(
        matches!(&sent(&out, 1)[..], [ServerMessage::PeerList { added, total: 1, .. }] if added[0].user_id == "bob")
    );
    assert_eq!(summary(&gcalls(&out)), ["CC bob 2"]);

    h.wait(1_000);
    let out = h.say(2, &format!(r#"{{"type":"media_state","sid":"{sid}","mic_muted":true}}"#));
    assert!(
        matches!(&sent(&out, 1)[..], [ServerMessage::PeerMediaState { user_id: Some(u), mic_muted: Some(true), .. }] if u == "bob")
    );
    assert_eq!(summary(&gcalls(&out)), ["CM bob 2"]);

    let out = h.say(2, &format!(r#"{{"type":"leave_room","req":7,"sid":"{sid}"}}"#));
    assert!(matches!(
        &sent(&out, 2)[..],
        [ServerMessage::Disconnected { req: Some(7), reason: R::Normal, source: S::Participant, .. }]
    ));
    assert!(
        matches!(&sent(&out, 1)[..], [ServerMessage::PeerList { removed, total: 0, .. }] if removed == &["bob"])
    );
    let g = gcalls(&out);
    assert_eq!(summary(&g), ["CD bob 1"]);
    assert_eq!((g[0].end_time, g[0].disconnect_reason, g[0].releaser_type), ((T0 + 2_000) / 1000, 1001, 3));
    let bob = PartyKey::Member("bob".into());
    assert!(out.iter().any(|o| matches!(o, Output::Media(MediaCmd::Leave { party, .. }) if *party == bob)));

    let out = h.say(1, &format!(r#"{{"type":"leave_room","sid":"{sid}"}}"#));
    assert_eq!(summary(&gcalls(&out)), ["ED alice 0"]);
    assert!(out.iter().any(|o| matches!(o, Output::Media(MediaCmd::End { sid: s }) if *s == sid)));
    assert_eq!(h.core.census().rooms.rooms, 0);
    // The same room ID later is a new room session.
    let again = h.join(3, "carol");
    assert_ne!(again, sid);
}

#[test]
fn a_full_room_refuses_the_next_joiner() {
    let mut h = room(2, 300, 0);
    let sid = h.join(1, "a");
    h.join(2, "b");
    h.open(3, "c");
    let out = h.say(3, r#"{"type":"join_room","req":9,"room_id":"r1","media_type":"audio"}"#);
    assert_eq!(disconnect(&out, 3), Some((R::RoomIsFull, S::CloudServer)));
    assert!(gcalls(&out).is_empty());
    assert!(sent(&out, 1).is_empty());
    assert_eq!(h.core.census().rooms.participants, 2);
    let _ = sid;
}

#[test]
fn alone_too_long_is_kicked_out_and_a_joiner_stops_the_clock() {
    let mut h = room(50, 60, 0);
    let sid = h.join(1, "a");
    h.wait(50_000);
    h.join(2, "b");
    // Not alone at 60 s.
    assert!(disconnect(&h.wait(20_000), 1).is_none());
    h.say(2, &format!(r#"{{"type":"leave_room","sid":"{sid}"}}"#));
    // Alone again from 70 s: kicked out at 130 s, not before.
    assert!(disconnect(&h.wait(59_999), 1).is_none());
    let out = h.wait(1);
    assert_eq!(disconnect(&out, 1), Some((R::AloneKickOut, S::CloudServer)));
    let g = gcalls(&out);
    assert_eq!(summary(&g), ["ED a 0"]);
    assert_eq!(g[0].disconnect_reason, 1402);
}

#[test]
fn another_instance_of_the_same_user_replaces_the_old_one() {
    let mut h = room(50, 300, 0);
    h.join(1, "a");
    h.join(2, "b");
    h.open(3, "b");
    let out = h.say(3, r#"{"type":"join_room","req":1,"room_id":"r1","media_type":"audio"}"#);
    assert_eq!(disconnect(&out, 2), Some((R::AnotherInstanceTryToJoin, S::CloudServer)));
    assert!(matches!(sent(&out, 3).first(), Some(ServerMessage::RoomJoined { .. })));
    assert_eq!(summary(&gcalls(&out)), ["CD b 1", "CC b 2"]);
    // The same session joining again is refused, nothing changes.
    let out = h.say(3, r#"{"type":"join_room","req":2,"room_id":"r1","media_type":"audio"}"#);
    assert!(matches!(sent(&out, 3).first(), Some(ServerMessage::Error { req: Some(2), .. })));
    assert!(gcalls(&out).is_empty());
}

#[test]
fn bad_room_ids_create_nothing() {
    let mut h = room(50, 300, 0);
    h.open(1, "alice");
    for (json, reason) in [
        (r#"{"type":"join_room","room_id":"a b","media_type":"audio"}"#, "invalid_room_id"),
        (r#"{"type":"join_room","room_id":"alice","media_type":"audio"}"#, "id_conflict"),
        (
            r#"{"type":"join_room","room_id":"r","media_type":"audio","room_service_id":"zzz"}"#,
            "invalid_service_id",
        ),
        (r#"{"type":"join_room","room_id":"r","media_type":"smell"}"#, "invalid_media_type"),
    ] {
        let out = h.say(1, json);
        let got = match sent(&out, 1).first() {
            Some(ServerMessage::StartFailed { reason, .. }) => reason.as_str().to_string(),
            other => panic!("{json}: {other:?}"),
        };
        assert_eq!(got, reason);
        assert!(gcalls(&out).is_empty());
    }
    assert_eq!(h.core.census().rooms.rooms, 0);
}

#[test]
fn a_user_in_a_room_is_busy_for_calls() {
    let mut h = room(50, 300, 0);
    h.join(1, "bob");
    h.open(2, "alice");
    let out = h.say(2, r#"{"type":"make_call","to_user_id":"bob","media_type":"audio"}"#);
    assert_eq!(disconnect(&out, 2), Some((R::Busy, S::Callee)));
    // And bob calling out from another device of his is MULTIDEV_IN_USE.
    h.open(3, "bob");
    let out = h.say(3, r#"{"type":"make_call","to_user_id":"alice","media_type":"audio"}"#);
    assert_eq!(disconnect(&out, 3), Some((R::MultidevInUse, S::CloudServer)));
}

#[test]
fn a_lost_session_has_the_grace_to_resume_then_times_out() {
    let mut h = room(50, 300, 0);
    let sid = h.join(1, "a");
    h.join(2, "b");
    h.closed(2);
    h.wait(5_000);
    h.open(3, "b");
    let out = h.say(3, &format!(r#"{{"type":"resume","req":4,"sid":"{sid}"}}"#));
    assert!(matches!(&sent(&out, 3)[..], [ServerMessage::Resumed { req: Some(4), .. }]));
    h.closed(3);
    let out = h.wait(9_999);
    assert!(gcalls(&out).is_empty());
    let out = h.wait(1);
    assert!(matches!(&sent(&out, 1)[..], [ServerMessage::PeerList { removed, .. }] if removed == &["b"]));
    let g = gcalls(&out);
    assert_eq!(summary(&g), ["CT b 1"]);
    assert_eq!((g[0].disconnect_reason, g[0].releaser_type), (1301, 3));
    // Resuming a room that is gone: ROOM_NOT_FOUND.
    h.say(1, &format!(r#"{{"type":"leave_room","sid":"{sid}"}}"#));
    h.open(4, "a");
    let out = h.say(4, &format!(r#"{{"type":"resume","req":5,"sid":"{sid}"}}"#));
    assert_eq!(disconnect(&out, 4), Some((R::RoomNotFound, S::CloudServer)));
}

#[test]
fn max_time_ends_the_room_for_everyone() {
    let mut h = room(50, 0, 30);
    h.join(1, "a");
    h.join(2, "b");
    let out = h.wait(30_000);
    assert_eq!(disconnect(&out, 1), Some((R::MaxCallTimeExceeded, S::CloudServer)));
    assert_eq!(disconnect(&out, 2), Some((R::MaxCallTimeExceeded, S::CloudServer)));
    assert_eq!(summary(&gcalls(&out)), ["CD a 1", "ED b 0"]);
}

#[test]
fn kick_out_and_messages_from_the_app_server() {
    let mut h = room(50, 300, 0);
    let sid = h.join(1, "a");
    h.join(2, "b");
    h.join(3, "c");
    assert_eq!(h.core.app_message("svc", "r1", Some(&["b".to_string()]), "hi"), Some(1));
    let out = h.drain();
    assert!(matches!(&sent(&out, 2)[..], [ServerMessage::AppControlMessage { data, .. }] if data == "hi"));
    assert!(sent(&out, 1).is_empty());
    assert_eq!(h.core.app_message("svc", "nope", None, "hi"), None);
    let kicked = h.core.kick(h.now, "svc", "r1", &["b".into(), "zz".into()], Some("rule-7".into()));
    assert_eq!(kicked, Some(vec!["b".to_string()]));
    let out = h.drain();
    assert!(
        matches!(&sent(&out, 2)[..], [ServerMessage::Disconnected { reason: R::UserError, source: S::AppServer, user_rel_code: Some(c), .. }] if c == "rule-7")
    );
    assert!(h.core.close_room(h.now, "svc", "r1", None));
    let out = h.drain();
    assert_eq!(disconnect(&out, 1), Some((R::UserError, S::AppServer)));
    assert_eq!(summary(&gcalls(&out)), ["CD a 1", "ED c 0"]);
    assert!(h.core.rooms("svc").iter().all(|r| r.sid != sid));
}

#[test]
fn short_data_goes_to_the_others_or_the_targets() {
    let mut h = room(50, 300, 0);
    let sid = h.join(1, "a");
    h.join(2, "b");
    h.join(3, "c");
    let out = h.say(1, &format!(r#"{{"type":"short_data","sid":"{sid}","data_type":"chat","data":"hey"}}"#));
    assert!(sent(&out, 1).is_empty());
    assert_eq!(sent(&out, 2).len() + sent(&out, 3).len(), 2);
    let out = h.say(
        1,
        &format!(r#"{{"type":"short_data","sid":"{sid}","data_type":"chat","data":"x","targets":["c"]}}"#),
    );
    assert!(sent(&out, 2).is_empty());
    assert!(
        matches!(&sent(&out, 3)[..], [ServerMessage::ShortData { from_user_id, .. }] if from_user_id == "a")
    );
    let big = "x".repeat(801);
    let out =
        h.say(1, &format!(r#"{{"type":"short_data","req":3,"sid":"{sid}","data_type":"t","data":"{big}"}}"#));
    assert!(matches!(&sent(&out, 1)[..], [ServerMessage::Error { req: Some(3), .. }]));
    // Not a member: not found.
    h.open(9, "z");
    let out =
        h.say(9, &format!(r#"{{"type":"short_data","req":4,"sid":"{sid}","data_type":"t","data":"x"}}"#));
    assert!(matches!(&sent(&out, 9)[..], [ServerMessage::Error { req: Some(4), .. }]));
}

#[test]
fn media_goes_to_the_relay_under_the_users_name() {
    let mut h = room(50, 300, 0);
    let sid = h.join(1, "a");
    let out = h.say(1, &format!(r#"{{"type":"media_offer","req":2,"sid":"{sid}","sdp":"v=0"}}"#));
    let a = PartyKey::Member("a".into());
    assert!(
        matches!(&out[..], [Output::Media(MediaCmd::Offer { party, reply, .. })] if *party == a && reply.session == SessionId(1))
    );
    let sid = Sid::new(sid);
    h.input(Input::Relay(RelayEvent::Offer {
        sid: sid.clone(),
        party: a.clone(),
        offer_id: 5,
        sdp: "o".into(),
    }));
    assert!(matches!(&sent(&h.drain(), 1)[..], [ServerMessage::MediaOffer { offer_id: 5, .. }]));
    // Media that stops times the participant out.
    h.join(2, "b");
    h.input(Input::Relay(RelayEvent::Lost { sid: sid.clone(), party: PartyKey::Member("b".into()) }));
    let out = h.drain();
    assert_eq!(disconnect(&out, 2), Some((R::NetworkUnstable, S::Participant)));
    assert_eq!(summary(&gcalls(&out)), ["CT b 1"]);
}

#[test]
fn pausing_video_reaches_the_others_and_the_app_server() {
    let mut h = room(50, 300, 0);
    let sid = h.join(1, "a");
    h.join(2, "b");
    let out = h.say(1, &format!(r#"{{"type":"media_state","sid":"{sid}","video_paused":true}}"#));
    assert!(matches!(&sent(&out, 2)[..], [ServerMessage::PeerMediaState { video_paused: Some(true), .. }]));
    assert_eq!(summary(&gcalls(&out)), ["CM a 2"]);
    // The same state again changes nothing for the app server.
    let out = h.say(1, &format!(r#"{{"type":"media_state","sid":"{sid}","video_paused":true}}"#));
    assert!(gcalls(&out).is_empty());
}

#[test]
fn leaving_with_a_reason_no_client_may_report_is_refused_and_changes_nothing() {
    let mut h = room(50, 300, 0);
    let sid = h.join(1, "a");
    h.join(2, "b");
    // 1401 ROOM_IS_FULL is the server's to say, not a client's.
    let out = h.say(1, &format!(r#"{{"type":"end_call","req":3,"sid":"{sid}","reason":1401}}"#));
    assert!(matches!(
        &sent(&out, 1)[..],
        [ServerMessage::Error { req: Some(3), error: ErrorCode::InvalidParam, .. }]
    ));
    assert!(gcalls(&out).is_empty());
    let long = "x".repeat(129);
    let out = h.say(1, &format!(r#"{{"type":"end_call","req":4,"sid":"{sid}","user_rel_code":"{long}"}}"#));
    assert!(matches!(&sent(&out, 1)[..], [ServerMessage::Error { req: Some(4), .. }]));
    assert_eq!(h.core.census().rooms.participants, 2);
    // A reason a client may give is kept: 1003 CELL_CALL.
    let out = h.say(1, &format!(r#"{{"type":"end_call","req":5,"sid":"{sid}","reason":1003}}"#));
    assert_eq!(disconnect(&out, 1), Some((R::CellCall, S::Participant)));
    assert_eq!(gcalls(&out)[0].disconnect_reason, 1003);
}
