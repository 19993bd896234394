//! The callee's devices and their sessions: a pushed cc_param cannot take an answered
//! call over, only the device that answered resumes (with its resume_param), and a
//! token device that takes the call retires the cc_param one.

use switchboard_protocol::DisconnectReason as R;
use switchboard_protocol::DisconnectSource as S;
use switchboard_protocol::{ErrorCode, ServerMessage};

use super::calls::{connected_call, disconnect, record};
use super::{rules, sent, H};
use crate::core::{ClientInfo, Input, Output, SessionAuth};
use crate::ids::{Party, SessionId, Sid};

impl H {
    /// A session opened with a cc_param (as `hello.cc_param` proves it).
    fn open_by_param(&mut self, session: impl Into<SessionId>, param: &str) {
        let session: SessionId = session.into();
        let claims = self.core.cc_key().open(param).expect("a cc_param this core signed");
        let auth = SessionAuth::CallParam { sid: claims.sid, device: claims.device };
        let party = Party::new(claims.service_id, claims.user_id);
        let ue_type = "IOS".to_string();
        let ip = format!("10.0.1.{session}");
        let client = ClientInfo { ue_type, ..ClientInfo::default() };
        self.input(Input::Open { session, party, auth, ip, client });
    }

    fn resume(&mut self, session: impl Into<SessionId>, sid: &Sid) -> Vec<Output> {
        let session: SessionId = session.into();
        self.msg(session, &format!(r#"{{"type":"resume","req":4,"sid":"{sid}"}}"#));
        self.calls_out()
    }
}

fn is_error(out: &[Output], session: impl Into<SessionId>, code: ErrorCode) -> bool {
    let session: SessionId = session.into();
    sent(out, session).iter().any(|m| matches!(m, ServerMessage::Error { error, .. } if *error == code))
}

#[test]
fn pushed_cc_param_cannot_take_over_a_call_answered_on_a_token_device() {
    let mut h = H::new(rules(60, 0, true));
    let sid = connected_call(&mut h);
    let param = h.core.cc_param(&sid).expect("live call");
    // Whoever holds the pushed cc_param opens a session and tries to take the call.
    h.open_by_param(9, &param);
    let out = h.verify(9, &param);
    assert_eq!(disconnect(&out, 9), (R::MultidevAnswer, S::Callee, false));
    let out = h.resume(9, &sid);
    assert!(is_error(&out, 9, ErrorCode::NotFound), "{out:?}");
    assert!(sent(&out, 2).is_empty(), "the answering device is undisturbed");
    // The callee's device still owns the call: its hang-up is the callee's.
    h.msg(2, &format!(r#"{{"type":"end_call","req":5,"sid":"{sid}"}}"#));
    let out = h.calls_out();
    let rec = record(&out);
    assert_eq!((rec.disconnect_reason, rec.releaser_type), (R::Normal.code(), S::Callee.code()));
}

/// alice (session 1) calls bob; bob answers from cc_param session 2. Returns the sid,
/// the pushed cc_param, the outputs of the answer and the device's resume_param.
fn answered_by_param(h: &mut H) -> (Sid, String, Vec<Output>, String) {
    h.open(1, "alice");
    let (sid, param) = h.make();
    h.open_by_param(2, &param);
    h.verify(2, &param);
    h.msg(2, &format!(r#"{{"type":"accept_call","req":3,"sid":"{sid}"}}"#));
    let out = h.calls_out();
    let resume_param = sent(&out, 2)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::Connected { resume_param, .. } => resume_param,
            _ => None,
        })
        .expect("the cc_param device gets a resume_param");
    (sid, param, out, resume_param)
}

#[test]
fn only_the_answering_cc_param_device_resumes_with_its_resume_param() {
    let mut h = H::new(rules(60, 0, true));
    let (sid, param, out, resume_param) = answered_by_param(&mut h);
    assert!(
        sent(&out, 1).iter().all(|m| matches!(m, ServerMessage::Connected { resume_param: None, .. })),
        "the caller gets none"
    );
    // The device drops. The pushed cc_param, held by anyone, cannot resume.
    h.closed(2);
    h.open_by_param(3, &param);
    assert!(is_error(&h.resume(3, &sid), 3, ErrorCode::NotFound));
    // The device reconnects with its resume_param and is back in the call.
    h.advance(5_000);
    h.open_by_param(4, &resume_param);
    let out = h.resume(4, &sid);
    assert!(
        matches!(&sent(&out, 4)[..], [ServerMessage::Resumed { state, .. }] if state == "connected"),
        "{out:?}"
    );
    // The grace timer no longer ends the call.
    h.advance(20_000);
    assert!(h.core.live_call(h.now, "svc", &sid).is_some());
    // The resumed device is the callee now: it hears the hang-up.
    h.msg(1, &format!(r#"{{"type":"end_call","req":6,"sid":"{sid}"}}"#));
    let out = h.calls_out();
    assert_eq!(disconnect(&out, 4), (R::Normal, S::Caller, true));
}

#[test]
fn a_token_takeover_retires_the_cc_param_device() {
    let mut h = H::new(rules(60, 0, true));
    let (sid, _, _, resume_param) = answered_by_param(&mut h);
    // bob moves the call to a device signed in with his token.
    h.open(5, "bob");
    assert!(matches!(&sent(&h.resume(5, &sid), 5)[..], [ServerMessage::Resumed { .. }]));
    // The old device's resume_param no longer takes it back.
    h.open_by_param(6, &resume_param);
    assert!(is_error(&h.resume(6, &sid), 6, ErrorCode::NotFound));
}
