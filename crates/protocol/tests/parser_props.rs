//! Property tests of the client-message parser: nothing a client sends can make it
//! panic, every failure is classified, and every valid message survives a round trip.

use proptest::prelude::*;
use switchboard_protocol::message::CLIENT_TYPES;
use switchboard_protocol::{ClientMessage, ErrorCode};

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::hash_map("[a-z_]{1,12}", inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    let id = "[A-Za-z0-9_-]{1,64}";
    let text = ".{0,80}";
    prop_oneof![
        (any::<u32>(), prop::option::of(text), prop::option::of(id), prop::option::of(text)).prop_map(
            |(v, token, user_id, cc_param)| ClientMessage::Hello {
                v,
                token,
                service_id: None,
                user_id,
                cc_param,
                ue_type: None,
                engine: false,
                multi_device: false,
                instance: None,
            }
        ),
        Just(ClientMessage::Ping {}),
        (prop::option::of(any::<u64>()), id, text, prop::option::of(text), prop::option::of(any::<u32>()))
            .prop_map(|(req, to, media, app_data, ring)| ClientMessage::MakeCall {
                req,
                to_user_id: to,
                to_service_id: None,
                media_type: media,
                app_data,
                ring_timeout_secs: ring
            }),
        (prop::option::of(any::<u64>()), text)
            .prop_map(|(req, cc)| ClientMessage::VerifyCall { req, cc_param: cc }),
        (prop::option::of(any::<u64>()), text)
            .prop_map(|(req, sid)| ClientMessage::AcceptCall { req, sid: sid.into() }),
        (prop::option::of(any::<u64>()), text, prop::option::of(any::<u16>()), prop::option::of(text))
            .prop_map(|(req, sid, reason, code)| ClientMessage::EndCall {
                req,
                sid: sid.into(),
                reason,
                user_rel_code: code
            }),
        (prop::option::of(any::<u64>()), text)
            .prop_map(|(req, sid)| ClientMessage::Resume { req, sid: sid.into() }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,300}") {
        let _ = ClientMessage::parse(&s);
    }

    #[test]
    fn arbitrary_json_is_parsed_or_classified(v in json_value(), kind in prop::option::of(prop::sample::select(CLIENT_TYPES.to_vec()))) {
        let mut v = v;
        let is_object = v.is_object();
        if let (Some(k), Some(obj)) = (kind, v.as_object_mut()) {
            obj.insert("type".into(), k.into());
        }
        match ClientMessage::parse(&v.to_string()) {
            Ok(_) => {}
            Err(e) => {
                prop_assert!(matches!(e.code, ErrorCode::Malformed | ErrorCode::UnknownType));
                if kind.is_some() || !is_object {
                    prop_assert_eq!(e.code, ErrorCode::Malformed, "a known type or a non-object is never 'unknown'");
                }
            }
        }
    }

    #[test]
    fn valid_messages_round_trip(m in client_message()) {
        let text = m.to_json();
        prop_assert_eq!(ClientMessage::parse(&text).unwrap(), m);
    }

    #[test]
    fn truncated_messages_are_malformed(m in client_message(), cut in 1usize..40) {
        let text = m.to_json();
        let mut end = text.len().saturating_sub(cut);
        while !text.is_char_boundary(end) { end -= 1; }
        let e = ClientMessage::parse(&text[..end]).unwrap_err();
        prop_assert_eq!(e.code, ErrorCode::Malformed);
    }
}
