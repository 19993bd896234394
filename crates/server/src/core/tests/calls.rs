//! 1-to-1 calls: every server-decided path, its reasons and its record.

use switchboard_protocol::record::CallRecord;
use switchboard_protocol::DisconnectReason as R;
use switchboard_protocol::DisconnectSource as S;
use switchboard_protocol::{ErrorCode, ServerMessage, StartFailReason};

use super::{rules, sent, H, T0};
use crate::auth::{CcClaims, CcKey};
use crate::core::{Census, Input, Output};
use crate::ids::{SessionId, Sid};
use crate::media_link::MediaCmd;
use crate::records::{Entry, LiveCall};

impl H {
    /// Outputs but live-call snapshots and media ends (see `snapshots_follow_the_call`).
    pub(super) fn calls_out(&mut self) -> Vec<Output> {
        self.drain()
            .into_iter()
            .filter(|o| {
                !matches!(o, Output::Journal(Entry::LiveCall(_)) | Output::Media(MediaCmd::End { .. }))
            })
            .collect()
    }

    /// Caller session 1 (alice) calls bob; returns (sid, cc_param).
    pub(super) fn make(&mut self) -> (Sid, String) {
        self.msg(
            1,
            r#"{"type":"make_call","req":1,"to_user_id":"bob","media_type":"video","app_data":"hello"}"#,
        );
        let out = self.calls_out();
        let sid = sent(&out, 1).iter().find_map(|m| match m {
            ServerMessage::CallCreated { sid, .. } => Some(sid.clone()),
            _ => None,
        });
        let sid = sid.expect("call created");
        let param = out
            .iter()
            .find_map(|o| match o {
                Output::Journal(Entry::Notify { record, .. }) => Some(record.param.clone()),
                _ => None,
            })
            .or_else(|| self.core.cc_param(&sid))
            .unwrap_or_default();
        (sid, param)
    }

    pub(super) fn verify(&mut self, session: impl Into<SessionId>, param: &str) -> Vec<Output> {
        let session: SessionId = session.into();
        self.msg(session, &format!(r#"{{"type":"verify_call","req":2,"cc_param":"{param}"}}"#));
        self.calls_out()
    }

    pub(super) fn push_result(&mut self, sid: &Sid, ok: bool) {
        self.input(Input::PushResult { sid: sid.clone(), user: None, ok });
    }
}

pub(super) fn disconnect(out: &[Output], session: impl Into<SessionId>) -> (R, S, bool) {
    let session: SessionId = session.into();
    sent(out, session)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::Disconnected { reason, source, by_remote, .. } => {
                Some((reason, source, by_remote))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("session {session} got no disconnected in {out:?}"))
}

pub(super) fn record(out: &[Output]) -> CallRecord {
    let records: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Journal(Entry::CallEnded { record, .. }) => Some(record.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(records.len(), 1, "exactly one record in {out:?}");
    records[0].clone()
}

pub(super) fn connected_call(h: &mut H) -> Sid {
    h.open(1, "alice");
    h.open(2, "bob");
    let (sid, param) = h.make();
    h.verify(2, &param);
    h.msg(2, &format!(r#"{{"type":"accept_call","sid":"{sid}"}}"#));
    let out = h.calls_out();
    assert!(matches!(sent(&out, 1)[..], [ServerMessage::Connected { .. }]));
    assert!(matches!(sent(&out, 2)[..], [ServerMessage::Connected { .. }]));
    sid
}

#[test]
fn normal_call_and_its_record() {
    let mut h = H::new(rules(60, 0, true));
    h.open(1, "alice");
    h.open(2, "bob");
    h.msg(1, r#"{"type":"make_call","req":1,"to_user_id":"bob","media_type":"video","app_data":"hello"}"#);
    let out = h.calls_out();
    let to_caller = sent(&out, 1);
    assert!(matches!(&to_caller[0], ServerMessage::CallCreated { req: Some(1), .. }));
    assert!(matches!(&to_caller[1], ServerMessage::WaitConnected { .. }));
    assert!(
        matches!(&sent(&out, 2)[0], ServerMessage::IncomingCall { from_user_id, .. } if from_user_id == "alice")
    );
    let notify = out
        .iter()
        .find_map(|o| match o {
            Output::Journal(Entry::Notify { record, .. }) => Some(record.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((notify.to_user_id.as_str(), notify.media_type.as_str()), ("bob", "V"));
    let sid = notify.sid.clone();

    h.tick(2_500);
    let out = h.verify(2, &notify.param);
    assert!(
        matches!(&sent(&out, 2)[0], ServerMessage::Verified { req: Some(2), app_data: Some(d), .. } if d == "hello")
    );
    h.msg(2, &format!(r#"{{"type":"accept_call","sid":"{sid}"}}"#));
    h.calls_out();
    h.tick(30_400);
    h.msg(2, &format!(r#"{{"type":"end_call","req":9,"sid":"{sid}"}}"#));
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 1), (R::Normal, S::Callee, true));
    assert_eq!(disconnect(&out, 2), (R::Normal, S::Callee, false));
    assert!(matches!(&sent(&out, 2)[0], ServerMessage::Disconnected { req: Some(9), .. }));
    let r = record(&out);
    assert_eq!(r.setup_time, T0 / 1000);
    assert_eq!(r.start_time, (T0 + 2_500) / 1000);
    assert_eq!(r.end_time, (T0 + 32_900) / 1000);
    assert_eq!(r.duration, 30);
    assert_eq!(r.billing_sec, 30);
    assert_eq!((r.terminate, r.rel_code, r.rel_code_str.as_str()), (16, 1, "NORMAL"));
    assert_eq!((r.disconnect_reason, r.releaser_type), (1001, 1));
    assert_eq!((r.srcip.as_str(), r.dstip.as_str(), r.rc_idc.as_str()), ("10.0.0.1", "10.0.0.2", "JP"));
    assert_eq!(r.app_svr_data.as_deref(), Some("hello"));
    assert_eq!(h.core.census(), Census { sessions: 2, calls: 0, connected: 0, ..Census::default() });
}

#[test]
fn cancel_and_decline() {
    let mut h = H::new(rules(60, 0, true));
    h.open(1, "alice");
    h.open(2, "bob");
    let (sid, _) = h.make();
    h.msg(1, &format!(r#"{{"type":"end_call","sid":"{sid}"}}"#));
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 1), (R::Cancel, S::Caller, false));
    assert_eq!(disconnect(&out, 2), (R::Cancel, S::Caller, true));
    let r = record(&out);
    assert_eq!((r.terminate, r.rel_code, r.duration, r.start_time), (77, 2, 0, 0));

    let (sid, param) = h.make();
    h.verify(2, &param);
    h.msg(2, &format!(r#"{{"type":"end_call","sid":"{sid}"}}"#));
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 1), (R::Decline, S::Callee, true));
    let r = record(&out);
    assert_eq!((r.terminate, r.rel_code_str.as_str(), r.releaser_type), (21, "REJECT", 1));
}

#[test]
fn busy_when_callee_is_in_another_call() {
    let mut h = H::new(rules(60, 0, true));
    connected_call(&mut h);
    h.open(3, "carol");
    h.msg(3, r#"{"type":"make_call","req":1,"to_user_id":"bob","media_type":"audio"}"#);
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 3), (R::Busy, S::Callee, true));
    assert!(sent(&out, 2).is_empty(), "the busy callee is not disturbed");
    assert!(!out.iter().any(|o| matches!(o, Output::Journal(Entry::Notify { .. }))));
    let r = record(&out);
    assert_eq!((r.terminate, r.rel_code, r.disconnect_reason), (17, 4, 1202));
}

#[test]
fn ring_timeout_is_noanswer() {
    let mut h = H::new(rules(30, 0, true));
    h.open(1, "alice");
    h.open(2, "bob");
    let (_sid, _) = h.make();
    h.advance(29_999);
    assert!(h.calls_out().is_empty());
    h.advance(1);
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 1), (R::NoAnswer, S::CloudServer, false));
    assert_eq!(disconnect(&out, 2), (R::NoAnswer, S::CloudServer, false));
    let r = record(&out);
    assert_eq!((r.terminate, r.rel_code, r.end_time - r.setup_time), (18, 5, 30));
}

#[test]
fn per_call_ring_timeout_is_capped_by_the_service() {
    let mut h = H::new(rules(30, 0, true));
    h.open(1, "alice");
    h.msg(1, r#"{"type":"make_call","to_user_id":"bob","media_type":"audio","ring_timeout_secs":5}"#);
    h.calls_out();
    h.advance(5_000);
    assert_eq!(disconnect(&h.calls_out(), 1).0, R::NoAnswer);
}

#[test]
fn two_devices_first_answer_wins() {
    let mut h = H::new(rules(60, 0, true));
    h.open(1, "alice");
    h.open(2, "bob");
    h.open(3, "bob");
    let (sid, param) = h.make();
    h.verify(2, &param);
    h.verify(3, &param);
    h.msg(3, &format!(r#"{{"type":"accept_call","sid":"{sid}"}}"#));
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 2), (R::MultidevAnswer, S::Callee, false));
    assert!(matches!(sent(&out, 3)[..], [ServerMessage::Connected { .. }]));
    // The losing device can no longer act on the call.
    h.msg(2, &format!(r#"{{"type":"accept_call","req":5,"sid":"{sid}"}}"#));
    assert!(matches!(&sent(&h.calls_out(), 2)[0], ServerMessage::Error { error: ErrorCode::NotFound, .. }));
    h.msg(1, &format!(r#"{{"type":"end_call","sid":"{sid}"}}"#));
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 3), (R::Normal, S::Caller, true));
    assert_eq!(record(&out).dstip, "10.0.0.3");
}

#[test]
fn two_devices_first_decline_wins() {
    let mut h = H::new(rules(60, 0, true));
    h.open(1, "alice");
    h.open(2, "bob");
    h.open(3, "bob");
    let (sid, param) = h.make();
    h.verify(3, &param);
    h.msg(2, &format!(r#"{{"type":"end_call","sid":"{sid}"}}"#));
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 3), (R::MultidevDecline, S::Callee, false));
    assert_eq!(disconnect(&out, 2), (R::Decline, S::Callee, false));
    assert_eq!(disconnect(&out, 1), (R::Decline, S::Callee, true));
    assert_eq!(record(&out).disconnect_reason, 1002);
}

#[test]
fn caller_already_in_a_call_on_another_device() {
    let mut h = H::new(rules(60, 0, true));
    connected_call(&mut h);
    h.open(4, "alice");
    h.open(5, "dave");
    h.msg(4, r#"{"type":"make_call","to_user_id":"dave","media_type":"audio"}"#);
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 4), (R::MultidevInUse, S::CloudServer, false));
    assert!(sent(&out, 5).is_empty());
    assert_eq!(record(&out).rel_code, 6);
}

#[test]
fn caller_with_an_incoming_call_pending() {
    let mut h = H::new(rules(60, 0, true));
    h.open(1, "alice");
    h.open(2, "bob");
    h.open(3, "carol");
    h.make();
    h.msg(2, r#"{"type":"make_call","to_user_id":"carol","media_type":"audio"}"#);
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 2), (R::AlreadyGotACall, S::CloudServer, false));
    assert_eq!(record(&out).disconnect_reason, 1204);
}

#[test]
fn max_call_time() {
    let mut h = H::new(rules(60, 120, true));
    connected_call(&mut h);
    h.advance(119_999);
    assert!(h.calls_out().is_empty());
    h.advance(1);
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 1), (R::MaxCallTimeExceeded, S::CloudServer, false));
    assert_eq!(disconnect(&out, 2), (R::MaxCallTimeExceeded, S::CloudServer, false));
    let r = record(&out);
    assert_eq!((r.duration, r.billing_sec, r.rel_code, r.terminate), (120, 120, 122, 16));
}

#[test]
fn push_error_when_notify_fails_and_no_device_rang() {
    let mut h = H::new(rules(60, 0, true));
    h.open(1, "alice");
    let (sid, _) = h.make();
    h.push_result(&sid, false);
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 1), (R::PushError, S::CloudServer, false));
    assert_eq!(record(&out).rel_code, 205);
}

#[test]
fn failed_push_still_rings_online_devices() {
    let mut h = H::new(rules(60, 0, true));
    h.open(1, "alice");
    h.open(2, "bob");
    let (sid, _) = h.make();
    h.push_result(&sid, false);
    assert!(h.calls_out().is_empty());
    // ... until the last device goes away.
    h.closed(2);
    assert_eq!(disconnect(&h.calls_out(), 1).0, R::PushError);
}

#[test]
fn no_notify_url_and_callee_offline_rings_until_noanswer() {
    let mut h = H::new(rules(60, 0, false));
    h.open(1, "alice");
    h.msg(1, r#"{"type":"make_call","to_user_id":"bob","media_type":"audio"}"#);
    let out = h.calls_out();
    assert!(!out.iter().any(|o| matches!(o, Output::Journal(Entry::Notify { .. }))));
    assert!(
        !out.iter().any(|o| matches!(o, Output::Journal(Entry::CallEnded { .. }))),
        "no push to fail: it rings"
    );
    // Bob opens the app within the ring time: his device rings.
    h.advance(20_000);
    h.open(2, "bob");
    assert!(sent(&h.calls_out(), 2).iter().any(|m| matches!(m, ServerMessage::IncomingCall { .. })));
    // He closes it again; nobody answers: NOANSWER, as for any callee who does not pick up.
    h.closed(2);
    assert!(h.calls_out().is_empty());
    h.advance(40_000);
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 1), (R::NoAnswer, S::CloudServer, false));
    assert_eq!(record(&out).terminate, 18);
}

#[test]
fn verify_after_release_is_released_call() {
    let mut h = H::new(rules(60, 0, true));
    h.open(1, "alice");
    h.open(2, "bob");
    let (sid, param) = h.make();
    h.msg(1, &format!(r#"{{"type":"end_call","sid":"{sid}"}}"#));
    h.calls_out();
    let out = h.verify(2, &param);
    assert_eq!(disconnect(&out, 2), (R::ReleasedCall, S::CloudServer, false));
    assert!(!out.iter().any(|o| matches!(o, Output::Journal(Entry::CallEnded { .. }))));
}

#[test]
fn forged_or_misbound_cc_param_is_refused() {
    let mut h = H::new(rules(60, 0, true));
    h.open(1, "alice");
    h.open(2, "bob");
    h.open(3, "mallory");
    let (_sid, param) = h.make();
    let forged = CcKey::new(b"wrong".to_vec()).sign(&CcClaims {
        sid: Sid::new("x"),
        service_id: "svc".into(),
        user_id: "bob".into(),
        exp: u64::MAX,
        device: None,
    });
    let out = h.verify(2, &forged);
    assert!(matches!(
        &sent(&out, 2)[0],
        ServerMessage::StartFailed { reason: StartFailReason::DecodeCallParam, .. }
    ));
    let out = h.verify(3, &param);
    assert!(matches!(
        &sent(&out, 3)[0],
        ServerMessage::StartFailed { reason: StartFailReason::InvalidUserId, .. }
    ));
}

#[test]
fn silent_party_ends_with_network_unstable_after_grace() {
    let mut h = H::new(rules(60, 0, true));
    let sid = connected_call(&mut h);
    h.closed(2);
    h.advance(9_999);
    assert!(h.calls_out().is_empty());
    h.advance(1);
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 1), (R::NetworkUnstable, S::Callee, true));
    let r = record(&out);
    assert_eq!(
        (r.rel_code, r.rel_code_str.as_str(), r.disconnect_reason),
        (218, "SESS_KEEPALIVE_TIMEOUT", 1301)
    );
    assert!(h.core.live_call(h.now, "svc", &sid).is_none());
}

#[test]
fn reconnect_within_grace_keeps_the_call() {
    let mut h = H::new(rules(60, 0, true));
    let sid = connected_call(&mut h);
    h.closed(1);
    h.advance(5_000);
    h.open(7, "alice");
    h.msg(7, &format!(r#"{{"type":"resume","req":3,"sid":"{sid}"}}"#));
    assert!(
        matches!(&sent(&h.calls_out(), 7)[0], ServerMessage::Resumed { state, .. } if state == "connected")
    );
    h.advance(60_000);
    assert!(h.calls_out().is_empty());
    h.msg(7, &format!(r#"{{"type":"end_call","sid":"{sid}"}}"#));
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 2), (R::Normal, S::Caller, true));
    assert_eq!(record(&out).duration, 65);
}

#[test]
fn client_reasons_pass_through_and_server_reasons_are_refused() {
    let mut h = H::new(rules(60, 0, true));
    let sid = connected_call(&mut h);
    h.msg(1, &format!(r#"{{"type":"end_call","req":4,"sid":"{sid}","reason":1202}}"#));
    assert!(matches!(
        &sent(&h.calls_out(), 1)[0],
        ServerMessage::Error { req: Some(4), error: ErrorCode::InvalidParam, .. }
    ));
    h.msg(1, &format!(r#"{{"type":"end_call","sid":"{sid}","reason":1110,"user_rel_code":"E42"}}"#));
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 2), (R::UserError, S::Caller, true));
    assert!(
        matches!(&sent(&out, 2)[0], ServerMessage::Disconnected { user_rel_code: Some(c), .. } if c == "E42")
    );
    let r = record(&out);
    assert_eq!((r.user_rel_code.as_deref(), r.disconnect_reason, r.releaser_type), (Some("E42"), 1110, 2));

    let sid = connected_call(&mut h);
    h.msg(2, &format!(r#"{{"type":"end_call","sid":"{sid}","reason":1003}}"#));
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 1), (R::CellCall, S::Callee, true));
}

#[test]
fn start_failures_create_nothing() {
    let mut h = H::new(rules(60, 0, true));
    h.open(1, "alice");
    let long = "x".repeat(4097);
    for (json, want) in [
        (
            r#"{"type":"make_call","req":1,"to_user_id":"b b","media_type":"audio"}"#.to_string(),
            StartFailReason::InvalidUserId,
        ),
        (
            r#"{"type":"make_call","req":1,"to_user_id":"alice","media_type":"audio"}"#.to_string(),
            StartFailReason::IdConflict,
        ),
        (
            r#"{"type":"make_call","req":1,"to_user_id":"bob","media_type":"fax"}"#.to_string(),
            StartFailReason::InvalidMediaType,
        ),
        (
            r#"{"type":"make_call","req":1,"to_user_id":"bob","to_service_id":"other","media_type":"audio"}"#
                .to_string(),
            StartFailReason::InvalidServiceId,
        ),
        (
            format!(
                r#"{{"type":"make_call","req":1,"to_user_id":"bob","media_type":"audio","app_data":"{long}"}}"#
            ),
            StartFailReason::TooLongAppServerData,
        ),
    ] {
        h.msg(1, &json);
        let out = h.calls_out();
        assert_eq!(out.len(), 1, "{json}: {out:?}");
        assert!(
            matches!(&sent(&out, 1)[0], ServerMessage::StartFailed { req: Some(1), reason, .. } if *reason == want),
            "{json}: {out:?}"
        );
    }
    let exactly = "x".repeat(4096);
    h.msg(
        1,
        &format!(r#"{{"type":"make_call","to_user_id":"bob","media_type":"audio","app_data":"{exactly}"}}"#),
    );
    assert!(matches!(&sent(&h.calls_out(), 1)[0], ServerMessage::CallCreated { .. }));
    assert_eq!(h.core.census().calls, 1);
}

#[test]
fn make_call_rate_limit_per_user() {
    let mut h = H::new(rules(60, 0, true));
    h.open(1, "alice");
    let mut limited = 0;
    for _ in 0..12 {
        h.msg(1, r#"{"type":"make_call","to_user_id":"a b","media_type":"audio"}"#);
        if sent(&h.calls_out(), 1)
            .iter()
            .any(|m| matches!(m, ServerMessage::Error { reason: Some(R::ServiceTooManyRequests), .. }))
        {
            limited += 1;
        }
    }
    assert_eq!(limited, 2);
    h.advance(1_000);
    h.msg(1, r#"{"type":"make_call","to_user_id":"a b","media_type":"audio"}"#);
    assert!(matches!(&sent(&h.calls_out(), 1)[0], ServerMessage::StartFailed { .. }));
}

#[test]
fn late_device_rings_and_force_end_is_app_server() {
    let mut h = H::new(rules(60, 0, true));
    h.open(1, "alice");
    let (sid, _) = h.make();
    h.open(2, "bob");
    assert!(matches!(&sent(&h.calls_out(), 2)[0], ServerMessage::IncomingCall { .. }));
    assert!(!h.core.force_end(h.now, "other", &sid, None));
    assert!(h.calls_out().is_empty(), "another service cannot end it");
    assert!(h.core.force_end(h.now, "svc", &sid, Some("K1".into())));
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 1), (R::UserError, S::AppServer, false));
    assert_eq!(record(&out).releaser_type, 5);
}

#[test]
fn callee_device_gone_while_ringing_is_not_fatal() {
    let mut h = H::new(rules(60, 0, true));
    h.open(1, "alice");
    h.open(2, "bob");
    let (sid, param) = h.make();
    h.closed(2);
    assert!(h.calls_out().is_empty());
    h.open(3, "bob");
    h.verify(3, &param);
    h.msg(3, &format!(r#"{{"type":"accept_call","sid":"{sid}"}}"#));
    assert!(matches!(sent(&h.calls_out(), 1)[..], [ServerMessage::Connected { .. }]));
}

#[test]
fn snapshots_follow_the_call() {
    let mut h = H::new(rules(60, 0, true));
    h.open(1, "alice");
    h.open(2, "bob");
    h.msg(1, r#"{"type":"make_call","to_user_id":"bob","media_type":"audio","app_data":"x"}"#);
    let lives = |h: &mut H| -> Vec<LiveCall> {
        h.drain()
            .into_iter()
            .filter_map(|o| match o {
                Output::Journal(Entry::LiveCall(l)) => Some(l),
                _ => None,
            })
            .collect()
    };
    let created = lives(&mut h);
    assert_eq!(created.len(), 1);
    let sid = created[0].sid.clone();
    assert_eq!((created[0].state(), created[0].srcip.as_str()), ("ringing", "10.0.0.1"));
    assert_eq!(h.core.live_call(h.now, "svc", &sid), Some(created[0].clone()));
    assert_eq!(h.core.live_call(h.now, "other", &sid), None, "another service sees nothing");
    let param = h.core.cc_param(&sid).unwrap();
    h.verify(2, &param);
    h.msg(2, &format!(r#"{{"type":"accept_call","sid":"{sid}"}}"#));
    let live = h.core.live_call(h.now, "svc", &sid).unwrap();
    assert_eq!((live.state(), live.start_ms), ("connected", Some(T0)));
    // What a crash would record: SERVER_INTERNAL_ERROR by the server, with the time so far.
    let r = live.record(T0 + 61_500, R::ServerInternalError, S::CloudServer, None, None);
    assert_eq!((r.duration, r.billing_sec, r.terminate, r.rel_code, r.releaser_type), (61, 61, 16, 200, 4));
}

#[test]
fn time_without_a_party_is_not_billed() {
    let mut h = H::new(rules(60, 0, true));
    let sid = connected_call(&mut h);
    h.advance(10_000);
    h.closed(2);
    h.advance(4_000);
    h.open(9, "bob");
    h.msg(9, &format!(r#"{{"type":"resume","sid":"{sid}"}}"#));
    h.calls_out();
    h.advance(6_000);
    h.msg(1, &format!(r#"{{"type":"end_call","sid":"{sid}"}}"#));
    let r = record(&h.calls_out());
    assert_eq!((r.duration, r.billing_sec), (20, 16), "4 s without bob are not billed");
}
