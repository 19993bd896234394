//! The call-engine face on simulated time: group calls with invitations (accept,
//! reject, ignore, timeout, busy, cancel, invite mid-call, join back), seed 004's
//! events case by case, the record, and the 1-to-1 call behind a one-invitee `calls`.

use switchboard_protocol::engine::{CallEndReason as E, CallMediaType, CallRole};
use switchboard_protocol::record::{GroupCallRecord, InviteResult};
use switchboard_protocol::{
    DisconnectReason as R, EngineEvent as Ev, ErrorCode, ServerMessage, StartFailReason,
};

use super::{rules, sent, settings, H, T0};
use crate::core::{ClientInfo, Output};
use crate::ids::Sid;
use crate::records::Entry;

pub(super) const ALICE: u64 = 1;
pub(super) const BOB: u64 = 2;
const CAROL: u64 = 3;
const DAN: u64 = 4;

pub(super) fn engine() -> H {
    let mut h = H::with(settings(100.0, 100.0), rules(60, 0, true));
    for (s, user) in [(ALICE, "alice"), (BOB, "bob"), (CAROL, "carol"), (DAN, "dan")] {
        h.open_as(s, user, true);
    }
    h
}

/// The engine events `session` got in `out`.
pub(super) fn events(out: &[Output], session: u64) -> Vec<Ev> {
    sent(out, session)
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::CallEvent { event, .. } => Some(event),
            _ => None,
        })
        .collect()
}

pub(super) fn user(id: &str) -> String {
    id.to_string()
}

/// The sid of the 1-to-1 call `session` was told was created.
pub(super) fn created(out: &[Output], session: u64) -> Sid {
    sent(out, session)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::CallCreated { sid, .. } => Some(sid),
            _ => None,
        })
        .expect("a 1-to-1 call")
}

/// The room number in the caller's `room_joined`.
fn room_id_of(out: &[Output]) -> String {
    sent(out, ALICE)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::RoomJoined { room_id, .. } => Some(room_id),
            _ => None,
        })
        .expect("room_joined")
}

fn record(out: &[Output]) -> Option<GroupCallRecord> {
    out.iter().find_map(|o| match o {
        Output::Journal(Entry::GroupCallEnded { record, .. }) => Some(record.clone()),
        _ => None,
    })
}

/// Alice calls `users` (video); the call's ID.
fn call(h: &mut H, users: &[&str]) -> (Sid, Vec<Output>) {
    let ids = users.iter().map(|u| format!("{u:?}")).collect::<Vec<_>>().join(",");
    let out = h.say(ALICE, &format!(r#"{{"type":"calls","req":1,"user_ids":[{ids}],"media_type":"video"}}"#));
    let id = sent(&out, ALICE)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::RoomJoined { req: Some(1), sid, .. } => Some(sid),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no room_joined for calls: {out:?}"));
    (id, out)
}

#[test]
fn a_group_call_rings_everyone_and_each_answer_is_heard_as_seed_004_says() {
    let mut h = engine();
    let (id, out) = call(&mut h, &["bob", "carol", "dan"]);
    assert!(id.is_room_shaped(), "a group call's ID is its room's sid");
    let received = Ev::CallReceived {
        caller_id: user("alice"),
        callee_id_list: vec![user("bob"), user("carol"), user("dan")],
        group_id: String::new(),
        call_media_type: CallMediaType::Video,
        user_data: String::new(),
        caller_nickname: None,
        caller_avatar_url: None,
    };
    for s in [BOB, CAROL, DAN] {
        assert!(events(&out, s).contains(&received), "{s}: {:?}", events(&out, s));
    }
    let pushes: Vec<String> = out
        .iter()
        .filter_map(|o| match o {
            Output::Journal(Entry::Notify { record, .. }) => Some(record.to_user_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(pushes, ["bob", "carol", "dan"], "one push per invitee");
    let inviting: Vec<Ev> = events(&out, ALICE);
    assert!(inviting.contains(&Ev::UserInviting { user_id: user("dan") }), "{inviting:?}");
    // One snapshot of the live call per step, for a restart after a crash to complete.
    let snapshots: Vec<Vec<InviteResult>> = out
        .iter()
        .filter_map(|o| match o {
            Output::Journal(Entry::LiveGroupCall { record, .. }) => {
                Some(record.members.iter().map(|m| m.result).collect())
            }
            _ => None,
        })
        .collect();
    use InviteResult::{Inviting, Joined};
    assert_eq!(snapshots, [vec![Joined, Inviting, Inviting, Inviting]]);

    // Bob accepts: the call begins.
    let out = h.say(BOB, &format!(r#"{{"type":"accept","req":2,"call_id":"{id}"}}"#));
    assert!(sent(&out, BOB).iter().any(|m| matches!(m, ServerMessage::RoomJoined { req: Some(2), .. })));
    let room_id = match events(&out, BOB).first() {
        Some(Ev::CallBegin {
            room_id,
            call_role: CallRole::Called,
            call_media_type: CallMediaType::Video,
        }) => *room_id,
        other => panic!("bob: {other:?}"),
    };
    assert!(events(&out, BOB).contains(&Ev::UserJoin { user_id: user("alice") }));
    assert_eq!(
        events(&out, ALICE),
        [
            Ev::CallBegin { room_id, call_media_type: CallMediaType::Video, call_role: CallRole::Caller },
            Ev::UserJoin { user_id: user("bob") }
        ]
    );
    assert_eq!(events(&out, CAROL), [Ev::UserJoin { user_id: user("bob") }], "the ringing hear it too");

    // Carol rejects: she hears her own ID; the others hear onUserReject.
    h.tick(1000);
    let out = h.say(CAROL, &format!(r#"{{"type":"reject","req":3,"call_id":"{id}"}}"#));
    assert!(sent(&out, CAROL).contains(&ServerMessage::Done { req: Some(3) }));
    assert_eq!(
        events(&out, CAROL),
        [
            Ev::CallCancelled { user_id: user("carol") },
            Ev::CallNotConnected { reason: E::Reject, user_id: user("carol") }
        ]
    );
    for s in [ALICE, BOB, DAN] {
        assert_eq!(events(&out, s), [Ev::UserReject { user_id: user("carol") }], "{s}");
    }

    // Dan does not answer in 30 s (the engine's default invitation timeout).
    h.advance(28_000);
    assert!(h.drain().is_empty());
    h.advance(2_000);
    let out = h.drain();
    assert_eq!(events(&out, DAN)[0], Ev::CallCancelled { user_id: user("dan") });
    assert_eq!(events(&out, ALICE), [Ev::UserNoResponse { user_id: user("dan") }]);
    assert!(record(&out).is_none(), "two are still in the call");

    // Bob hangs up: fewer than two remain, the call ends for Alice too.
    h.advance(10_000);
    let out = h.say(BOB, &format!(r#"{{"type":"hangup","req":4,"call_id":"{id}"}}"#));
    assert!(sent(&out, BOB)
        .iter()
        .any(|m| matches!(m, ServerMessage::Disconnected { req: Some(4), reason: R::Normal, .. })));
    match &events(&out, BOB)[..] {
        [Ev::CallEnd { call_role: CallRole::Called, reason: E::Hangup, total_time, .. }] => {
            assert!((*total_time - 41.0).abs() < 0.01, "{total_time}")
        }
        other => panic!("bob: {other:?}"),
    }
    let alice = events(&out, ALICE);
    assert_eq!(alice[0], Ev::UserLeave { user_id: user("bob") });
    assert!(
        matches!(alice[1], Ev::CallEnd { call_role: CallRole::Caller, reason: E::Hangup, .. }),
        "{alice:?}"
    );
    assert!(
        sent(&out, ALICE).iter().any(|m| matches!(m, ServerMessage::Disconnected { .. })),
        "the room closed"
    );
    let rec = record(&out).expect("the group call's record");
    assert_eq!((rec.caller_id.as_str(), rec.end_reason, rec.room_id), ("alice", 1, room_id));
    let results: Vec<(&str, InviteResult)> =
        rec.members.iter().map(|m| (m.user_id.as_str(), m.result)).collect();
    assert_eq!(
        results,
        [
            ("alice", InviteResult::Joined),
            ("bob", InviteResult::Joined),
            ("carol", InviteResult::Rejected),
            ("dan", InviteResult::NoResponse)
        ]
    );
    assert_eq!(rec.members[1].in_call_ms, 41_000);
    assert_eq!((rec.setup_ms, rec.begin_ms, rec.end_ms), (T0, T0, T0 + 41_000));
}

#[test]
fn the_caller_cancelling_tells_every_invitee_it_was_the_caller() {
    let mut h = engine();
    let (id, _) = call(&mut h, &["bob", "carol"]);
    let out = h.say(ALICE, &format!(r#"{{"type":"hangup","req":5,"call_id":"{id}"}}"#));
    for s in [BOB, CAROL] {
        assert_eq!(events(&out, s)[0], Ev::CallCancelled { user_id: user("alice") }, "{s}");
    }
    assert_eq!(events(&out, ALICE)[0], Ev::CallCancelled { user_id: user("alice") });
    assert!(sent(&out, ALICE).contains(&ServerMessage::Done { req: Some(5) }));
    let rec = record(&out).expect("record");
    assert_eq!((rec.end_reason, rec.begin_ms), (u8::from(E::Canceled), 0));
    assert!(rec.members[1..].iter().all(|m| m.result == InviteResult::Cancelled));
    // The room is gone with the call: a new call may take its users.
    let (_, out) = call(&mut h, &["bob", "carol"]);
    assert!(events(&out, BOB).iter().any(|e| matches!(e, Ev::CallReceived { .. })));
}

#[test]
fn busy_and_rejected_invitees_end_a_call_nobody_accepted() {
    let mut h = engine();
    h.say(BOB, r#"{"type":"join_room","req":1,"room_id":"elsewhere","media_type":"audio"}"#);
    let (id, out) = call(&mut h, &["bob", "carol"]);
    assert!(events(&out, ALICE).contains(&Ev::UserLineBusy { user_id: user("bob") }), "in a room is busy");
    assert!(events(&out, BOB).is_empty(), "a busy invitee is not rung");
    let out = h.say(CAROL, &format!(r#"{{"type":"reject","call_id":"{id}"}}"#));
    assert_eq!(
        events(&out, ALICE),
        [
            Ev::UserReject { user_id: user("carol") },
            Ev::CallCancelled { user_id: user("alice") },
            Ev::CallNotConnected { reason: E::Reject, user_id: user("alice") }
        ]
    );
    let rec = record(&out).expect("record");
    assert_eq!(rec.end_reason, u8::from(E::Reject));
    assert_eq!(rec.members[1].result, InviteResult::LineBusy);
}

#[test]
fn ignore_is_line_busy_and_a_user_rung_by_a_group_call_is_busy_for_others() {
    let mut h = engine();
    let (id, _) = call(&mut h, &["bob", "carol"]);
    // Dan calls Bob 1-to-1 while Alice's invitation rings for him: BUSY.
    let out = h.say(DAN, r#"{"type":"make_call","req":1,"to_user_id":"bob","media_type":"audio"}"#);
    assert!(sent(&out, DAN).iter().any(|m| matches!(m, ServerMessage::Disconnected { reason: R::Busy, .. })));
    let out = h.say(BOB, &format!(r#"{{"type":"ignore","call_id":"{id}"}}"#));
    assert_eq!(events(&out, ALICE), [Ev::UserLineBusy { user_id: user("bob") }]);
    assert_eq!(events(&out, CAROL), [Ev::UserLineBusy { user_id: user("bob") }]);
}

#[test]
fn invite_user_mid_call_and_join_call_for_those_invited_only() {
    let mut h = engine();
    let (id, joined) = call(&mut h, &["bob", "carol"]);
    h.say(BOB, &format!(r#"{{"type":"accept","call_id":"{id}"}}"#));
    h.say(CAROL, &format!(r#"{{"type":"reject","call_id":"{id}"}}"#));
    // Bob invites Dan: everyone hears onUserInviting, Dan is rung.
    let out = h.say(BOB, &format!(r#"{{"type":"invite_user","req":7,"call_id":"{id}","user_ids":["dan"]}}"#));
    assert!(sent(&out, BOB).contains(&ServerMessage::Done { req: Some(7) }));
    for s in [ALICE, BOB] {
        assert_eq!(events(&out, s), [Ev::UserInviting { user_id: user("dan") }], "{s}");
    }
    match &events(&out, DAN)[..] {
        [Ev::CallReceived { callee_id_list, .. }] => assert_eq!(callee_id_list, &["bob", "dan"]),
        other => panic!("dan: {other:?}"),
    }
    // Carol changes her mind and joins; Eve, never invited, cannot.
    let out = h.say(CAROL, &format!(r#"{{"type":"join_call","req":8,"call_id":"{id}"}}"#));
    assert!(sent(&out, CAROL).iter().any(|m| matches!(m, ServerMessage::RoomJoined { req: Some(8), .. })));
    assert!(events(&out, ALICE).contains(&Ev::UserJoin { user_id: user("carol") }));
    h.open_as(5u64, "eve", true);
    let out = h.say(5, &format!(r#"{{"type":"join_call","req":9,"call_id":"{id}"}}"#));
    assert!(
        matches!(sent(&out, 5)[..], [ServerMessage::Error { req: Some(9), error: ErrorCode::NotFound, .. }]),
        "{out:?}"
    );
    // Nor can anyone walk into the call's room by its number.
    let room_number = room_id_of(&joined);
    let out = h.say(
        5,
        &format!(r#"{{"type":"join_room","req":10,"room_id":"{room_number}","media_type":"audio"}}"#),
    );
    assert!(
        matches!(
            sent(&out, 5)[..],
            [ServerMessage::StartFailed { reason: StartFailReason::InvalidRoomId, .. }]
        ),
        "a call's room is joined through its call: {out:?}"
    );
}

#[test]
fn calls_needs_an_engine_session_and_checks_its_invitees() {
    let mut h = engine();
    h.open_as(9u64, "plain", false);
    let out = h.say(9, r#"{"type":"calls","req":1,"user_ids":["bob","carol"],"media_type":"audio"}"#);
    assert!(matches!(sent(&out, 9)[..], [ServerMessage::Error { error: ErrorCode::WrongState, .. }]));
    let out = h.say(ALICE, r#"{"type":"calls","req":1,"user_ids":["bob","alice"],"media_type":"audio"}"#);
    assert!(matches!(
        sent(&out, ALICE)[..],
        [ServerMessage::StartFailed { reason: StartFailReason::IdConflict, .. }]
    ));
    let out = h.say(ALICE, r#"{"type":"calls","req":1,"user_ids":["bob","no spaces"],"media_type":"audio"}"#);
    assert!(matches!(
        sent(&out, ALICE)[..],
        [ServerMessage::StartFailed { reason: StartFailReason::InvalidUserId, .. }]
    ));
    let out = h.say(ALICE, r#"{"type":"calls","req":1,"user_ids":[],"media_type":"audio"}"#);
    assert!(matches!(
        sent(&out, ALICE)[..],
        [ServerMessage::StartFailed { reason: StartFailReason::InvalidUserId, .. }]
    ));
    let too_many: Vec<String> = (0..50).map(|i| format!("\"u{i}\"")).collect();
    let out = h.say(
        ALICE,
        &format!(r#"{{"type":"calls","user_ids":[{}],"media_type":"audio"}}"#, too_many.join(",")),
    );
    assert!(matches!(
        sent(&out, ALICE)[..],
        [ServerMessage::StartFailed { reason: StartFailReason::InvalidParam, .. }]
    ));
}

#[test]
fn switch_call_media_video_to_audio_in_a_group_call_and_both_ways_one_to_one() {
    let mut h = engine();
    let (id, _) = call(&mut h, &["bob", "carol"]);
    h.say(BOB, &format!(r#"{{"type":"accept","call_id":"{id}"}}"#));
    let out = h.say(
        BOB,
        &format!(r#"{{"type":"switch_call_media","req":1,"call_id":"{id}","media_type":"audio"}}"#),
    );
    assert!(sent(&out, BOB).contains(&ServerMessage::Done { req: Some(1) }));
    let changed = Ev::CallMediaTypeChanged {
        old_call_media_type: CallMediaType::Video,
        new_call_media_type: CallMediaType::Audio,
    };
    for s in [ALICE, BOB, CAROL] {
        assert_eq!(events(&out, s), std::slice::from_ref(&changed), "{s}: in the call or rung by it");
    }
    let out = h.say(
        BOB,
        &format!(r#"{{"type":"switch_call_media","req":2,"call_id":"{id}","media_type":"video"}}"#),
    );
    assert!(matches!(sent(&out, BOB)[..], [ServerMessage::Error { error: ErrorCode::InvalidParam, .. }]));
    let out = h.say(
        DAN,
        &format!(r#"{{"type":"switch_call_media","req":3,"call_id":"{id}","media_type":"audio"}}"#),
    );
    assert!(matches!(sent(&out, DAN)[..], [ServerMessage::Error { error: ErrorCode::NotFound, .. }]));
    h.say(ALICE, &format!(r#"{{"type":"hangup","call_id":"{id}"}}"#));

    // 1-to-1: audio to video and back, and the record says what it ended as.
    let out = h.say(ALICE, r#"{"type":"calls","req":4,"user_ids":["dan"],"media_type":"audio"}"#);
    let sid = created(&out, ALICE);
    h.say(DAN, &format!(r#"{{"type":"accept","call_id":"{sid}"}}"#));
    let out = h.say(
        DAN,
        &format!(r#"{{"type":"switch_call_media","req":5,"call_id":"{sid}","media_type":"video"}}"#),
    );
    let up = Ev::CallMediaTypeChanged {
        old_call_media_type: CallMediaType::Audio,
        new_call_media_type: CallMediaType::Video,
    };
    assert_eq!((events(&out, ALICE), events(&out, DAN)), (vec![up.clone()], vec![up]));
    let out = h.say(ALICE, &format!(r#"{{"type":"hangup","call_id":"{sid}"}}"#));
    let media = out.iter().find_map(|o| match o {
        Output::Journal(Entry::CallEnded { record, .. }) => Some(record.media_type.clone()),
        _ => None,
    });
    assert_eq!(media.as_deref(), Some("V"));
}

#[test]
fn without_multi_device_a_later_login_signs_the_earlier_instance_out() {
    let mut h = H::with(settings(100.0, 100.0), rules(60, 0, true));
    let single = |instance: &str| ClientInfo {
        engine: true,
        instance: Some(instance.into()),
        ..ClientInfo::default()
    };
    h.open_with(1u64, "alice", single("laptop"));
    h.open_as(BOB, "bob", true);
    let out = h.say(1, r#"{"type":"calls","req":1,"user_ids":["bob"],"media_type":"audio"}"#);
    let sid = created(&out, 1u64);
    h.say(BOB, &format!(r#"{{"type":"accept","call_id":"{sid}"}}"#));

    // A proxy of a session of another node signs nobody out here.
    h.open_with(4u64, "alice", ClientInfo { proxy: true, ..single("phone") });
    assert!(sent(&h.drain(), 1u64).is_empty(), "the laptop stays signed in");
    h.closed(4u64);
    h.drain();

    // The same instance reconnecting is not a second login.
    h.open_with(5u64, "alice", single("laptop"));
    assert!(h.drain().is_empty());
    // Another instance is: the laptop is signed out, its call ends for Bob with 1405.
    h.open_with(6u64, "alice", single("phone"));
    let out = h.drain();
    for s in [1u64, 5] {
        assert!(
            sent(&out, s).contains(&ServerMessage::CallEvent { call_id: None, event: Ev::KickedOffline {} }),
            "{s}: {out:?}"
        );
    }
    assert!(sent(&out, BOB)
        .iter()
        .any(|m| matches!(m, ServerMessage::Disconnected { reason: R::AnotherInstanceTryToJoin, .. })));
    let out = h.say(1, r#"{"type":"calls","req":9,"user_ids":["bob"],"media_type":"audio"}"#);
    assert!(matches!(
        sent(&out, 1u64)[..],
        [ServerMessage::Error { req: Some(9), reason: Some(R::AnotherInstanceTryToJoin), .. }]
    ));
    // A signed-out instance is not rung; the phone is.
    let out = h.say(BOB, r#"{"type":"calls","req":2,"user_ids":["alice"],"media_type":"audio"}"#);
    assert!(events(&out, 1).is_empty() && events(&out, 5).is_empty());
    assert!(matches!(events(&out, 6)[..], [Ev::CallReceived { .. }]));
    // With multi-device, nobody is signed out.
    h.open_with(7u64, "alice", ClientInfo { multi_device: true, ..single("tablet") });
    assert!(sent(&h.drain(), 6u64).is_empty());
}

#[test]
fn bad_requests_change_nothing_and_floods_are_rate_limited() {
    let mut h = engine();
    let (id, _) = call(&mut h, &["bob", "carol"]);
    h.say(BOB, &format!(r#"{{"type":"accept","call_id":"{id}"}}"#));
    // Dan, not in the call, cannot invite; nobody is rung.
    let out = h.say(DAN, &format!(r#"{{"type":"invite_user","req":1,"call_id":"{id}","user_ids":["eve"]}}"#));
    assert!(matches!(
        sent(&out, DAN)[..],
        [ServerMessage::Error { req: Some(1), error: ErrorCode::NotFound, .. }]
    ));
    assert_eq!(out.len(), 1, "{out:?}");
    // Inviting someone busy: line busy at once, the call goes on.
    h.open_as(5u64, "eve", true);
    h.say(5, r#"{"type":"join_room","req":1,"room_id":"elsewhere","media_type":"audio"}"#);
    let out =
        h.say(ALICE, &format!(r#"{{"type":"invite_user","req":2,"call_id":"{id}","user_ids":["eve"]}}"#));
    assert!(events(&out, BOB).contains(&Ev::UserLineBusy { user_id: user("eve") }), "{out:?}");
    assert!(record(&out).is_none());
    // Carol accepts; Bob leaves (two remain) and comes back with join_call.
    h.say(CAROL, &format!(r#"{{"type":"accept","call_id":"{id}"}}"#));
    h.say(BOB, &format!(r#"{{"type":"hangup","call_id":"{id}"}}"#));
    let out = h.say(BOB, &format!(r#"{{"type":"join_call","req":3,"call_id":"{id}"}}"#));
    assert!(
        sent(&out, BOB).iter().any(|m| matches!(m, ServerMessage::RoomJoined { req: Some(3), .. })),
        "{out:?}"
    );
    assert!(events(&out, ALICE).contains(&Ev::UserJoin { user_id: user("bob") }));
    // Everyone leaves: accepting the call that is over is refused.
    for s in [ALICE, BOB] {
        h.say(s, &format!(r#"{{"type":"hangup","call_id":"{id}"}}"#));
    }
    let out = h.say(DAN, &format!(r#"{{"type":"accept","req":4,"call_id":"{id}"}}"#));
    assert!(matches!(
        sent(&out, DAN)[..],
        [ServerMessage::Error { req: Some(4), error: ErrorCode::NotFound, .. }]
    ));

    // An invitation flood: the per-user call rate (burst 10 here) stops it.
    let mut h = H::with(settings(1.0, 3.0), rules(60, 0, true));
    h.open_as(ALICE, "alice", true);
    let mut refused = 0;
    for i in 0..6 {
        let out = h.say(
            ALICE,
            &format!(r#"{{"type":"calls","req":{i},"user_ids":["u{i}a","u{i}b"],"media_type":"audio"}}"#),
        );
        if sent(&out, ALICE)
            .iter()
            .any(|m| matches!(m, ServerMessage::Error { error: ErrorCode::RateLimited, .. }))
        {
            refused += 1;
        } else if let Some(id) = sent(&out, ALICE).iter().find_map(|m| match m {
            ServerMessage::RoomJoined { sid, .. } => Some(sid.clone()),
            _ => None,
        }) {
            h.say(ALICE, &format!(r#"{{"type":"hangup","call_id":"{id}"}}"#));
        }
    }
    assert_eq!(refused, 3, "a burst of 3, then refused");
}

#[test]
fn set_self_info_shows_the_callers_nickname_to_invitees_and_in_the_record() {
    let mut h = engine();
    let out = h.say(
        ALICE,
        r#"{"type":"set_self_info","req":1,"nickname":"Alice A.","avatar_url":"https://x/a.png"}"#,
    );
    assert!(sent(&out, ALICE).contains(&ServerMessage::Done { req: Some(1) }));
    let long = "n".repeat(129);
    let out = h.say(BOB, &format!(r#"{{"type":"set_self_info","req":2,"nickname":"{long}"}}"#));
    assert!(matches!(sent(&out, BOB)[..], [ServerMessage::Error { error: ErrorCode::InvalidParam, .. }]));
    let (id, out) = call(&mut h, &["bob", "carol"]);
    match &events(&out, BOB)[..] {
        [Ev::CallReceived { caller_nickname, caller_avatar_url, .. }] => {
            assert_eq!(
                (caller_nickname.as_deref(), caller_avatar_url.as_deref()),
                (Some("Alice A."), Some("https://x/a.png"))
            )
        }
        other => panic!("bob: {other:?}"),
    }
    let out = h.say(ALICE, &format!(r#"{{"type":"hangup","call_id":"{id}"}}"#));
    let rec = record(&out).expect("record");
    assert_eq!(rec.members[0].nickname.as_deref(), Some("Alice A."));
    assert_eq!(rec.members[1].nickname, None);
}
