//! The message contract's tests: every type listed, parse errors that never echo
//! the frame, and the wire shapes.

use super::*;

#[test]
fn parse_known_unknown_and_malformed() {
    let m = ClientMessage::parse(r#"{"type":"make_call","req":7,"to_user_id":"bob","media_type":"audio"}"#)
        .unwrap();
    assert!(matches!(m, ClientMessage::MakeCall { req: Some(7), .. }));
    let e = ClientMessage::parse(r#"{"type":"teleport","req":3}"#).unwrap_err();
    assert_eq!((e.code, e.req), (ErrorCode::UnknownType, Some(3)));
    let e = ClientMessage::parse(r#"{"type":"make_call","req":4}"#).unwrap_err();
    assert_eq!((e.code, e.req), (ErrorCode::Malformed, Some(4)));
    let e = ClientMessage::parse("not json").unwrap_err();
    assert_eq!(e.code, ErrorCode::Malformed);
}

#[test]
fn server_message_shape() {
    let m = ServerMessage::Disconnected {
        req: None,
        sid: "s".into(),
        reason: DisconnectReason::Decline,
        source: DisconnectSource::Callee,
        by_remote: true,
        user_rel_code: None,
    };
    assert_eq!(
        m.to_json(),
        r#"{"type":"disconnected","sid":"s","reason":{"code":1002,"name":"DECLINE"},"source":{"code":1,"name":"callee"},"by_remote":true}"#
    );
    let back: ServerMessage = serde_json::from_str(&m.to_json()).unwrap();
    assert_eq!(back, m);
}

#[test]
fn malformed_errors_never_echo_the_frame() {
    let long = "x".repeat(5000);
    for frame in [
        format!(r#"{{"type":"make_call","to_user_id":{long}}}"#),
        format!(r#"{{"type":"make_call","to_user_id":"bob","ring_timeout_secs":"{long}"}}"#),
        format!(r#"["{long}"]"#),
        format!(r#"{{"type":"end_call","sid":7,"x":"{long}"}}"#),
    ] {
        let e = ClientMessage::parse(&frame).unwrap_err();
        assert!(e.message.len() < 200 && !e.message.contains("xxx"), "{}", e.message);
    }
    let e = ClientMessage::parse(r#"{"type":"accept_call"}"#).unwrap_err();
    assert_eq!(e.message, "malformed message: missing field sid");
}

/// One message of every client type. The match is exhaustive: a new variant does
/// not compile until it is added here, and then the test checks `CLIENT_TYPES`.
fn one_of_each() -> Vec<ClientMessage> {
    let all = vec![
        ClientMessage::Hello {
            v: 1,
            token: None,
            service_id: None,
            user_id: None,
            cc_param: None,
            ue_type: None,
            engine: false,
            multi_device: false,
            instance: None,
        },
        ClientMessage::Ping {},
        ClientMessage::MakeCall {
            req: None,
            to_user_id: "b".into(),
            to_service_id: None,
            media_type: "audio".into(),
            app_data: None,
            ring_timeout_secs: None,
        },
        ClientMessage::VerifyCall { req: None, cc_param: "p".into() },
        ClientMessage::AcceptCall { req: None, sid: "s".into() },
        ClientMessage::EndCall { req: None, sid: "s".into(), reason: None, user_rel_code: None },
        ClientMessage::Resume { req: None, sid: "s".into() },
        ClientMessage::MediaOffer { req: None, sid: "s".into(), sdp: "v=0".into() },
        ClientMessage::MediaAnswer { sid: "s".into(), offer_id: 1, sdp: "v=0".into() },
        ClientMessage::AddMedia { sid: "s".into(), kind: "video".into() },
        ClientMessage::MediaState {
            sid: "s".into(),
            mic_muted: None,
            video_enabled: None,
            video_paused: None,
        },
        ClientMessage::JoinRoom {
            req: None,
            room_id: "r".into(),
            room_service_id: None,
            media_type: "audio".into(),
            display_name: None,
            app_data: None,
            mic_muted: None,
            video_enabled: None,
        },
        ClientMessage::LeaveRoom { req: None, sid: "s".into() },
        ClientMessage::ShortData {
            req: None,
            sid: "s".into(),
            data_type: "t".into(),
            data: "d".into(),
            targets: None,
        },
        ClientMessage::RequestPeerVideo { req: None, sid: "s".into(), user_id: "u".into(), resolution: None },
        ClientMessage::RemovePeerVideo { req: None, sid: "s".into(), user_id: "u".into() },
        ClientMessage::RefreshToken { req: None, token: "t".into() },
        ClientMessage::Calls {
            req: None,
            user_ids: vec!["b".into()],
            media_type: "audio".into(),
            timeout_secs: None,
            user_data: None,
            room_id: None,
            group_id: None,
        },
        ClientMessage::Accept { req: None, call_id: "s".into() },
        ClientMessage::Reject { req: None, call_id: "s".into() },
        ClientMessage::Ignore { req: None, call_id: "s".into() },
        ClientMessage::Hangup { req: None, call_id: "s".into() },
        ClientMessage::InviteUser { req: None, call_id: "s".into(), user_ids: vec![], timeout_secs: None },
        ClientMessage::JoinCall { req: None, call_id: "s".into() },
        ClientMessage::SwitchCallMedia { req: None, call_id: "s".into(), media_type: "audio".into() },
        ClientMessage::SetSelfInfo { req: None, nickname: None, avatar_url: None },
    ];
    for m in &all {
        match m {
            ClientMessage::Hello { .. }
            | ClientMessage::Ping {}
            | ClientMessage::MakeCall { .. }
            | ClientMessage::VerifyCall { .. }
            | ClientMessage::AcceptCall { .. }
            | ClientMessage::EndCall { .. }
            | ClientMessage::Resume { .. }
            | ClientMessage::MediaOffer { .. }
            | ClientMessage::MediaAnswer { .. }
            | ClientMessage::AddMedia { .. }
            | ClientMessage::MediaState { .. }
            | ClientMessage::JoinRoom { .. }
            | ClientMessage::LeaveRoom { .. }
            | ClientMessage::ShortData { .. }
            | ClientMessage::RequestPeerVideo { .. }
            | ClientMessage::RemovePeerVideo { .. }
            | ClientMessage::RefreshToken { .. }
            | ClientMessage::Calls { .. }
            | ClientMessage::Accept { .. }
            | ClientMessage::Reject { .. }
            | ClientMessage::Ignore { .. }
            | ClientMessage::Hangup { .. }
            | ClientMessage::InviteUser { .. }
            | ClientMessage::JoinCall { .. }
            | ClientMessage::SwitchCallMedia { .. }
            | ClientMessage::SetSelfInfo { .. } => {}
        }
    }
    all
}

#[test]
fn client_types_list_every_message() {
    let all = one_of_each();
    assert_eq!(all.len(), CLIENT_TYPES.len());
    for m in all {
        let json: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        let t = json["type"].as_str().unwrap().to_string();
        assert!(CLIENT_TYPES.contains(&t.as_str()), "{t} is not in CLIENT_TYPES");
        // A malformed frame of this type is malformed, not unknown.
        let e = ClientMessage::parse(&format!(r#"{{"type":"{t}","v":"x","sid":7,"req":1}}"#));
        if let Err(e) = e {
            assert_eq!(e.code, ErrorCode::Malformed, "{t}");
        }
    }
}

#[test]
fn every_client_type_is_listed() {
    for t in CLIENT_TYPES {
        let e = ClientMessage::parse(&format!(r#"{{"type":"{t}","bogus_only":1}}"#));
        if let Err(e) = e {
            assert_eq!(e.code, ErrorCode::Malformed, "{t}");
        }
    }
}
