//! The browser SDK's constants cannot drift from the contract: every disconnect reason
//! of `crates/protocol` is in `KIT_DISCONNECT_REASON` with its number (under
//! WebPlanetKit's name for the web-only ones, SPEC §3), `DISCONNECT_SOURCE` has every
//! source with its number and name, and `START_FAIL_REASON` every start-fail reason.

use std::collections::HashMap;

use switchboard_protocol::{DisconnectReason, DisconnectSource, StartFailReason};

fn sdk() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk/web/switchboard.js");
    std::fs::read_to_string(path).expect("sdk/web/switchboard.js")
}

/// The `{ … }` object literal that follows `export const <name> = Object.freeze(`.
fn object(src: &str, name: &str) -> String {
    let start =
        src.find(&format!("export const {name} = Object.freeze({{")).unwrap_or_else(|| panic!("no {name}"));
    let body = &src[start..];
    let open = body.find('{').expect("{");
    let close = body.find("})").expect("})");
    body[open + 1..close].to_string()
}

/// `KEY: value` pairs of a flat object literal (values without quotes).
fn pairs(body: &str) -> HashMap<String, String> {
    body.split(',')
        .filter_map(|p| p.split_once(':'))
        .map(|(k, v)| (k.trim().trim_matches('\'').to_string(), v.trim().trim_matches('\'').to_string()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// WebPlanetKit's names of the web-only reasons (SPEC §3).
fn web_name(code: u16) -> Option<&'static str> {
    Some(match code {
        1601 => "WEB_RTC_ABORT_ERROR",
        1602 => "WEB_RTC_NOT_ALLOWED_ERROR",
        1603 => "WEB_RTC_NOT_FOUND_ERROR",
        1604 => "WEB_RTC_NOT_READABLE_ERROR",
        1605 => "WEB_RTC_OVERCONSTRAINED_ERROR",
        1606 => "WEB_RTC_SECURITY_ERROR",
        1607 => "WEB_RTC_TYPE_ERROR",
        1608 => "WEB_NO_MEDIA_PACKET",
        1609 => "WEB_CALL_CONNECT_FAIL_BY_SERVER",
        1610 => "WEB_CALL_CONNECT_FAIL_BY_CLIENT",
        1611 => "WEB_SIGNALING_UNEXPECTED_DISCONNECTED",
        1612 => "WEB_BROWSER_NOT_SUPPORTED",
        _ => return None,
    })
}

#[test]
fn every_disconnect_reason_is_in_the_browser_sdk_with_its_number() {
    let kit = pairs(&object(&sdk(), "KIT_DISCONNECT_REASON"));
    assert_eq!(kit.len(), DisconnectReason::ALL.len(), "{kit:?}");
    for r in DisconnectReason::ALL {
        let name = web_name(r.code()).unwrap_or(r.name());
        assert_eq!(kit.get(name).map(String::as_str), Some(r.code().to_string().as_str()), "{name}");
    }
}

#[test]
fn every_disconnect_source_is_in_the_browser_sdk() {
    let sources = pairs(&object(&sdk(), "DISCONNECT_SOURCE"));
    let all = [
        DisconnectSource::Callee,
        DisconnectSource::Caller,
        DisconnectSource::Participant,
        DisconnectSource::CloudServer,
        DisconnectSource::AppServer,
    ];
    assert_eq!(sources.len(), all.len(), "{sources:?}");
    for s in all {
        assert_eq!(sources.get(&s.code().to_string()).map(String::as_str), Some(s.name()));
    }
}

#[test]
fn every_start_fail_reason_is_in_the_browser_sdk() {
    let reasons = pairs(&object(&sdk(), "START_FAIL_REASON"));
    assert_eq!(reasons.len(), StartFailReason::ALL.len(), "{reasons:?}");
    for r in StartFailReason::ALL {
        assert_eq!(reasons.get(&r.as_str().to_uppercase()).map(String::as_str), Some(r.as_str()));
    }
}
