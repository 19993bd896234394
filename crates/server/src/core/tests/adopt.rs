//! Calls and rooms taken over from a node that died: another core runs them on from
//! their last snapshots, each party within its reconnect grace, with the same sid and
//! one record.

use switchboard_protocol::{DisconnectReason as R, DisconnectSource as S, ServerMessage};

use super::calls::{connected_call, disconnect, record};
use super::{rules, sent, H};
use crate::core::{Input, Output};
use crate::ids::{SessionId, Sid};
use crate::media_link::MediaCmd;
use crate::records::{Entry, LiveRoom};

/// A second core (another node) at the same moment as `h`.
fn other_node(h: &H) -> H {
    let mut b = H::new(rules(60, 0, true));
    b.now = h.now;
    b
}

fn resumed(out: &[Output], session: impl Into<SessionId>) -> Option<bool> {
    sent(out, session).into_iter().find_map(|m| match m {
        ServerMessage::Resumed { new_media, .. } => Some(new_media),
        _ => None,
    })
}

#[test]
fn a_connected_call_goes_on_on_another_node_with_its_sid_and_one_record() {
    let mut a = H::new(rules(60, 0, true));
    let sid = connected_call(&mut a);
    a.tick(20_000);
    let live = a.core.live_call(a.now, "svc", &sid).expect("live");
    // Node A dies now; node B claims the call 3 s later.
    let mut b = other_node(&a);
    let since_ms = b.now.wall_ms;
    b.tick(3_000);
    b.input(Input::Adopt { calls: vec![live], rooms: Vec::new(), group_calls: Vec::new(), since_ms });
    assert!(b.calls_out().is_empty(), "nobody to tell yet");
    b.open(11, "alice");
    b.open(12, "bob");
    b.msg(11, &format!(r#"{{"type":"resume","req":1,"sid":"{sid}"}}"#));
    b.msg(12, &format!(r#"{{"type":"resume","req":1,"sid":"{sid}"}}"#));
    let out = b.calls_out();
    assert_eq!((resumed(&out, 11), resumed(&out, 12)), (Some(true), Some(true)), "both start new media");
    // Their media goes to this node's relay, as before.
    b.msg(11, &format!(r#"{{"type":"media_offer","req":2,"sid":"{sid}","sdp":"v=0"}}"#));
    assert!(matches!(&b.drain()[..], [Output::Media(MediaCmd::Offer { .. })]));
    // A later reconnect is an ordinary one.
    b.open(13, "alice");
    b.msg(13, &format!(r#"{{"type":"resume","req":3,"sid":"{sid}"}}"#));
    assert_eq!(resumed(&b.calls_out(), 13), Some(false));
    b.advance(10_000);
    b.msg(12, &format!(r#"{{"type":"end_call","req":4,"sid":"{sid}"}}"#));
    let out = b.calls_out();
    assert_eq!(disconnect(&out, 13), (R::Normal, S::Callee, true));
    let r = record(&out);
    assert_eq!(r.sid, sid);
    assert_eq!(r.disconnect_reason, R::Normal.code());
    assert_eq!(r.duration, 33, "20 s on A, 3 s moving, 10 s on B: one call from answer to end");
}

#[test]
fn a_call_taken_over_that_nobody_resumes_ends_after_the_grace() {
    let mut a = H::new(rules(60, 0, true));
    let sid = connected_call(&mut a);
    let live = a.core.live_call(a.now, "svc", &sid).expect("live");
    let mut b = other_node(&a);
    let since_ms = b.now.wall_ms;
    b.input(Input::Adopt { calls: vec![live], rooms: Vec::new(), group_calls: Vec::new(), since_ms });
    b.advance(9_999);
    assert!(b.calls_out().is_empty());
    b.advance(1);
    let r = record(&b.calls_out());
    assert_eq!((r.sid, r.disconnect_reason), (sid, R::NetworkUnstable.code()));
}

#[test]
fn a_call_still_ringing_when_its_node_died_ends_with_its_record() {
    let mut a = H::new(rules(60, 0, true));
    a.open(1, "alice");
    let (sid, _) = a.make();
    let live = a.core.live_call(a.now, "svc", &sid).expect("live");
    let mut b = other_node(&a);
    let since_ms = b.now.wall_ms;
    b.input(Input::Adopt { calls: vec![live], rooms: Vec::new(), group_calls: Vec::new(), since_ms });
    let r = record(&b.calls_out());
    assert_eq!((r.sid, r.disconnect_reason), (sid.clone(), R::ServerInternalError.code()));
    b.open(11, "alice");
    b.msg(11, &format!(r#"{{"type":"resume","req":1,"sid":"{sid}"}}"#));
    assert_eq!(disconnect(&b.calls_out(), 11).0, R::ReleasedCall);
}

#[test]
fn a_room_goes_on_on_another_node_for_those_who_come_back() {
    let mut a = H::new(rules(60, 0, false));
    for (session, user) in [(1u64, "ann"), (2, "ben")] {
        a.open(session, user);
        a.msg(session, r#"{"type":"join_room","req":1,"room_id":"r1","media_type":"audio"}"#);
    }
    let room: LiveRoom = a
        .drain()
        .into_iter()
        .rev()
        .find_map(|o| match o {
            Output::Journal(Entry::LiveRoom(r)) => Some(r),
            _ => None,
        })
        .expect("the room's snapshot");
    assert_eq!(room.participants.len(), 2);
    let sid: Sid = room.sid.clone();
    let mut b = other_node(&a);
    let since_ms = b.now.wall_ms;
    b.input(Input::Adopt { calls: Vec::new(), rooms: vec![room], group_calls: Vec::new(), since_ms });
    let out = b.drain();
    assert!(out.iter().any(|o| matches!(o, Output::Media(MediaCmd::Room { sid: s, .. }) if *s == sid)));
    assert_eq!(b.core.room("svc", "r1").map(|r| r.online), Some(2));
    b.open(11, "ann");
    b.msg(11, &format!(r#"{{"type":"resume","req":1,"sid":"{sid}"}}"#));
    assert_eq!(resumed(&b.drain(), 11), Some(true));
    // Ben never comes back: he leaves at the end of his grace, Ann stays.
    b.advance(10_000);
    let out = b.drain();
    assert!(
        sent(&out, 11)
            .iter()
            .any(|m| matches!(m, ServerMessage::PeerList { removed, .. } if removed == &["ben"])),
        "{out:?}"
    );
    assert_eq!(b.core.room("svc", "r1").map(|r| r.online), Some(1));
}

#[test]
fn a_draining_node_hands_over_its_connected_calls_and_lets_go_of_them_without_a_word() {
    let mut a = H::new(rules(60, 0, true));
    let sid = connected_call(&mut a);
    a.open(3, "cat");
    a.open(4, "dan");
    a.msg(3, r#"{"type":"make_call","req":1,"to_user_id":"dan","media_type":"audio"}"#);
    let ringing = sent(&a.calls_out(), 3)
        .iter()
        .find_map(|m| match m {
            ServerMessage::CallCreated { sid, .. } => Some(sid.clone()),
            _ => None,
        })
        .expect("created");
    let (calls, rooms) = a.core.movable(a.now);
    assert_eq!(calls.iter().map(|c| &c.sid).collect::<Vec<_>>(), [&sid], "not the ringing one");
    assert!(rooms.is_empty());
    let sessions = a.core.release(std::slice::from_ref(&sid));
    assert_eq!(sessions, [SessionId(1), SessionId(2)]);
    assert!(a.drain().is_empty(), "no record, no word, the relay left alone");
    assert!(a.core.live_call(a.now, "svc", &sid).is_none());
    assert!(a.core.live_call(a.now, "svc", &ringing).is_some());
    // The node that took it runs it on.
    let mut b = other_node(&a);
    let since_ms = b.now.wall_ms;
    b.input(Input::Adopt { calls, rooms, group_calls: Vec::new(), since_ms });
    b.open(11, "alice");
    b.msg(11, &format!(r#"{{"type":"resume","req":1,"sid":"{sid}"}}"#));
    assert_eq!(resumed(&b.calls_out(), 11), Some(true));
}

#[test]
fn a_group_call_goes_on_on_another_node_and_its_ringing_invitee_may_still_accept() {
    use super::engine::{engine, events, user};
    use switchboard_protocol::record::InviteResult;
    use switchboard_protocol::EngineEvent as Ev;
    let mut a = engine();
    a.msg(1, r#"{"type":"calls","req":1,"user_ids":["bob","carol","dan"],"media_type":"audio"}"#);
    let id = sent(&a.drain(), 1)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::RoomJoined { sid, .. } => Some(sid),
            _ => None,
        })
        .expect("the group call's room");
    a.msg(2, &format!(r#"{{"type":"accept","req":2,"call_id":"{id}"}}"#));
    a.msg(3, &format!(r#"{{"type":"reject","req":3,"call_id":"{id}"}}"#));
    let out = a.drain();
    let record = out.iter().rev().find_map(|o| match o {
        Output::Journal(Entry::LiveGroupCall { record, .. }) => Some(record.clone()),
        _ => None,
    });
    let room = out.iter().rev().find_map(|o| match o {
        Output::Journal(Entry::LiveRoom(r)) => Some(r.clone()),
        _ => None,
    });
    let (record, room) = (record.expect("the call's snapshot"), room.expect("its room's snapshot"));
    // Node A dies; B takes the call over, with its room.
    let mut b = engine();
    b.now = a.now;
    b.drain();
    let since_ms = b.now.wall_ms;
    b.input(Input::Adopt { calls: Vec::new(), rooms: vec![room], group_calls: vec![record], since_ms });
    b.drain();
    for s in [1, 2] {
        b.msg(s, &format!(r#"{{"type":"resume","req":5,"sid":"{id}"}}"#));
        assert_eq!(resumed(&b.drain(), s), Some(true), "session {s} is back and starts new media");
    }
    // Dan's invitation rang on A, and still does here: he accepts, and the others hear it.
    b.msg(4, &format!(r#"{{"type":"accept","req":6,"call_id":"{id}"}}"#));
    let out = b.drain();
    assert!(
        sent(&out, 4).iter().any(|m| matches!(m, ServerMessage::RoomJoined { req: Some(6), .. })),
        "{out:?}"
    );
    assert!(events(&out, 1).contains(&Ev::UserJoin { user_id: user("dan") }), "{:?}", events(&out, 1));
    for s in [1, 2, 4] {
        b.msg(s, &format!(r#"{{"type":"hangup","req":7,"call_id":"{id}"}}"#));
    }
    let ended: Vec<_> = b
        .drain()
        .into_iter()
        .filter_map(|o| match o {
            Output::Journal(Entry::GroupCallEnded { record, .. }) => Some(record),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 1, "one record");
    let results: Vec<(String, InviteResult)> =
        ended[0].members.iter().map(|m| (m.user_id.clone(), m.result)).collect();
    assert_eq!(ended[0].call_id, id);
    assert_eq!(
        results,
        [
            (user("alice"), InviteResult::Joined),
            (user("bob"), InviteResult::Joined),
            (user("carol"), InviteResult::Rejected),
            (user("dan"), InviteResult::Joined)
        ]
    );
}
