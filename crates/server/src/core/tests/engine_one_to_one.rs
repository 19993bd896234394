//! The call-engine face of a 1-to-1 call on simulated time: a one-invitee `calls` is
//! the core's 1-to-1 call, with seed 004's events at each end, the same record, and
//! both users' volume and network quality from the relay.

use switchboard_protocol::engine::{
    CallEndReason as E, CallMediaType, CallRole, NetworkQuality, NetworkQualityGrade,
};
use switchboard_protocol::{DisconnectReason as R, EngineEvent as Ev, ServerMessage};

use super::engine::{created, engine, events, user, ALICE, BOB};
use super::{rules, sent, settings, H};
use crate::core::{Input, Output};
use crate::media_link::{MediaCmd, PartyKey, RelayEvent};
use crate::records::Entry;

#[test]
fn one_invitee_is_the_one_to_one_call_with_seed_004_events() {
    let mut h = engine();
    let out =
        h.say(ALICE, r#"{"type":"calls","req":1,"user_ids":["bob"],"media_type":"audio","user_data":"x"}"#);
    let sid = created(&out, ALICE);
    assert!(!sid.is_room_shaped());
    assert_eq!(
        events(&out, BOB),
        [Ev::CallReceived {
            caller_id: user("alice"),
            callee_id_list: vec![user("bob")],
            group_id: String::new(),
            call_media_type: CallMediaType::Audio,
            user_data: user("x"),
            caller_nickname: None,
            caller_avatar_url: None,
        }]
    );
    let out = h.say(BOB, &format!(r#"{{"type":"accept","req":2,"call_id":"{sid}"}}"#));
    let begin = |role| Ev::CallBegin {
        room_id: crate::core::call::room_number(&sid),
        call_media_type: CallMediaType::Audio,
        call_role: role,
    };
    assert_eq!(events(&out, ALICE), [begin(CallRole::Caller)]);
    assert_eq!(events(&out, BOB), [begin(CallRole::Called)]);
    assert!(sent(&out, BOB).iter().any(|m| matches!(m, ServerMessage::Connected { req: Some(2), .. })));
    h.tick(5_000);
    let out = h.say(ALICE, &format!(r#"{{"type":"hangup","req":3,"call_id":"{sid}"}}"#));
    for (s, role) in [(ALICE, CallRole::Caller), (BOB, CallRole::Called)] {
        match &events(&out, s)[..] {
            [Ev::CallEnd { call_role, reason: E::Hangup, total_time, .. }] if *call_role == role => {
                assert!((total_time - 5.0).abs() < 0.01)
            }
            other => panic!("{s}: {other:?}"),
        }
    }

    // Rejected: the caller hears onUserReject and its own onCallCancelled; the callee its own.
    let out = h.say(ALICE, r#"{"type":"calls","req":4,"user_ids":["bob"],"media_type":"audio"}"#);
    let sid = created(&out, ALICE);
    let out = h.say(BOB, &format!(r#"{{"type":"reject","req":5,"call_id":"{sid}"}}"#));
    assert_eq!(
        events(&out, ALICE),
        [
            Ev::UserReject { user_id: user("bob") },
            Ev::CallCancelled { user_id: user("alice") },
            Ev::CallNotConnected { reason: E::Reject, user_id: user("alice") }
        ]
    );
    assert_eq!(events(&out, BOB)[0], Ev::CallCancelled { user_id: user("bob") });
    assert!(sent(&out, BOB)
        .iter()
        .any(|m| matches!(m, ServerMessage::Disconnected { req: Some(5), reason: R::Decline, .. })));
    let ended = out.iter().any(
        |o| matches!(o, Output::Journal(Entry::CallEnded { record, .. }) if record.disconnect_reason == 1002),
    );
    assert!(ended, "the same record as a PlanetKit call: DECLINE");
}

#[test]
fn a_one_to_one_engine_call_hears_both_volumes_and_network_qualities() {
    let mut h = engine();
    let out = h.say(ALICE, r#"{"type":"calls","req":1,"user_ids":["bob"],"media_type":"audio"}"#);
    let sid = created(&out, ALICE);
    let out = h.say(BOB, &format!(r#"{{"type":"accept","req":2,"call_id":"{sid}"}}"#));
    // The relay measures the call as a room of two, before either side offers.
    let measured = out.iter().position(
        |o| matches!(o, Output::Media(MediaCmd::Room { sid: s, speakers: 2, video: false }) if *s == sid),
    );
    let connected = out.iter().position(|o| matches!(o, Output::Send(_, ServerMessage::Connected { .. })));
    assert!(measured.is_some() && measured < connected, "{out:?}");

    h.input(Input::Relay(RelayEvent::Levels {
        sid: sid.clone(),
        levels: vec![(PartyKey::Caller, 40, true), (PartyKey::Callee, 3, false)],
    }));
    h.input(Input::Relay(RelayEvent::Quality {
        sid: sid.clone(),
        quality: vec![(PartyKey::Caller, 1), (PartyKey::Callee, 4)],
    }));
    let out = h.drain();
    for s in [ALICE, BOB] {
        assert_eq!(
            events(&out, s),
            [
                Ev::UserVoiceVolumeChanged {
                    volume_map: [(user("alice"), 40), (user("bob"), 3)].into_iter().collect()
                },
                Ev::UserNetworkQualityChanged {
                    network_quality_list: vec![
                        NetworkQuality { user_id: user("alice"), quality: NetworkQualityGrade::Excellent },
                        NetworkQuality { user_id: user("bob"), quality: NetworkQualityGrade::Bad },
                    ]
                },
            ],
            "session {s}"
        );
    }

    // A PlanetKit call between sessions that are not the engine's is not measured.
    let mut h = H::with(settings(100.0, 100.0), rules(60, 0, true));
    h.open(ALICE, "alice");
    let (sid, param) = h.make();
    h.open(BOB, "bob");
    h.verify(BOB, &param);
    let out = h.say(BOB, &format!(r#"{{"type":"accept_call","req":3,"sid":"{sid}"}}"#));
    assert!(sent(&out, BOB).iter().any(|m| matches!(m, ServerMessage::Connected { .. })), "{out:?}");
    assert!(!out.iter().any(|o| matches!(o, Output::Media(MediaCmd::Room { .. }))));
}
