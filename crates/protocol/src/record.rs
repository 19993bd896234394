//! App-server callback records (SPEC §4) and their exact query encoding.
//!
//! Callbacks are HTTP GET requests whose query string carries every field, in the
//! order listed here, URL-encoded. Optional fields are sent as empty values so an
//! app server always sees the full set of names.

use crate::ids::Sid;

/// notify_cb: sent at every `make_call` so the app server can push `param` (as
/// `cc_param`) to the callee's devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyRecord {
    /// The call's ID.
    pub sid: Sid,
    /// Caller's service.
    pub from_service_id: String,
    /// Caller.
    pub from_user_id: String,
    /// Callee's service.
    pub to_service_id: String,
    /// Callee.
    pub to_user_id: String,
    /// `A` or `V`.
    pub media_type: String,
    /// The signed `cc_param` (base64).
    pub param: String,
    /// The caller's app data (sent as both `stid` and `app_svr_data`).
    pub app_svr_data: Option<String>,
}

impl NotifyRecord {
    /// Field names and values, in contract order.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let data = self.app_svr_data.clone().unwrap_or_default();
        vec![
            ("sid", self.sid.to_string()),
            ("from_service_id", self.from_service_id.clone()),
            ("from_user_id", self.from_user_id.clone()),
            ("to_service_id", self.to_service_id.clone()),
            ("to_user_id", self.to_user_id.clone()),
            ("type", self.media_type.clone()),
            ("param", self.param.clone()),
            ("stid", data.clone()),
            ("app_svr_data", data),
        ]
    }

    /// The URL-encoded query string.
    pub fn to_query(&self) -> String {
        encode_query(&self.to_pairs())
    }
}

/// on_call_evt_cb: the record of a 1-to-1 call, sent once when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// The call's ID (UUID with dashes, 36 chars).
    pub sid: Sid,
    /// Caller's service.
    pub from_service_id: String,
    /// Caller.
    pub from_user_id: String,
    /// Callee's service.
    pub to_service_id: String,
    /// Callee.
    pub to_user_id: String,
    /// `A` or `V`.
    pub media_type: String,
    /// When the call was created (epoch seconds).
    pub setup_time: u64,
    /// When it was answered (epoch seconds; 0 if never).
    pub start_time: u64,
    /// When it ended (epoch seconds).
    pub end_time: u64,
    /// `end_time - start_time`; 0 if never connected.
    pub duration: u64,
    /// Caller's IP address.
    pub srcip: String,
    /// Callee's IP address: the answering device, else the last verifying one, else
    /// the first one rung directly; empty if no device of the callee was reached.
    pub dstip: String,
    /// Q.850 cause: 16 when connected.
    pub terminate: u16,
    /// Debug release code.
    pub rel_code: u16,
    /// Its name.
    pub rel_code_str: String,
    /// App-defined release code, with USER_ERROR.
    pub user_rel_code: Option<String>,
    /// Billable seconds.
    pub billing_sec: u64,
    /// Region that handled the caller (ISO 3166-1 alpha-2, upper case).
    pub rc_idc: String,
    /// Disconnect reason number.
    pub disconnect_reason: u16,
    /// Disconnect source number.
    pub releaser_type: u8,
    /// The caller's app data (also sent as `stid`).
    pub app_svr_data: Option<String>,
}

impl CallRecord {
    /// Field names and values, in the order of seed 001.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let data = self.app_svr_data.clone().unwrap_or_default();
        vec![
            ("sid", self.sid.to_string()),
            ("from_service_id", self.from_service_id.clone()),
            ("from_user_id", self.from_user_id.clone()),
            ("to_service_id", self.to_service_id.clone()),
            ("to_user_id", self.to_user_id.clone()),
            ("type", self.media_type.clone()),
            ("stid", data.clone()),
            ("setup_time", self.setup_time.to_string()),
            ("start_time", self.start_time.to_string()),
            ("end_time", self.end_time.to_string()),
            ("duration", self.duration.to_string()),
            ("srcip", self.srcip.clone()),
            ("dstip", self.dstip.clone()),
            ("terminate", self.terminate.to_string()),
            ("rel_code", self.rel_code.to_string()),
            ("rel_code_str", self.rel_code_str.clone()),
            ("user_rel_code", self.user_rel_code.clone().unwrap_or_default()),
            ("billing_sec", self.billing_sec.to_string()),
            ("rc_idc", self.rc_idc.clone()),
            ("disconnect_reason", self.disconnect_reason.to_string()),
            ("releaser_type", self.releaser_type.to_string()),
            ("app_svr_data", data),
        ]
    }

    /// The URL-encoded query string.
    pub fn to_query(&self) -> String {
        encode_query(&self.to_pairs())
    }

    /// The record as a JSON object with the callback's field names, numbers as
    /// numbers and absent optional fields as `null` (the REST API's shape).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "sid": self.sid,
            "from_service_id": self.from_service_id,
            "from_user_id": self.from_user_id,
            "to_service_id": self.to_service_id,
            "to_user_id": self.to_user_id,
            "type": self.media_type,
            "stid": self.app_svr_data,
            "setup_time": self.setup_time,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "duration": self.duration,
            "srcip": self.srcip,
            "dstip": self.dstip,
            "terminate": self.terminate,
            "rel_code": self.rel_code,
            "rel_code_str": self.rel_code_str,
            "user_rel_code": self.user_rel_code,
            "billing_sec": self.billing_sec,
            "rc_idc": self.rc_idc,
            "disconnect_reason": self.disconnect_reason,
            "releaser_type": self.releaser_type,
            "app_svr_data": self.app_svr_data,
        })
    }
}

/// on_gcall_evt_cb: one participant change of a room (SPEC §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcallRecord {
    /// The room session (32 hex chars).
    pub sid: Sid,
    /// The room's service.
    pub svc_id: String,
    /// The room ID.
    pub id: String,
    /// The participant's service.
    pub user_svc_id: String,
    /// The participant.
    pub user_id: String,
    /// The host's (first joiner's) service.
    pub host_svc_id: String,
    /// The host.
    pub host_id: String,
    /// `S` started, `C` changed, `E` ended.
    pub sc: char,
    /// Room created, epoch seconds.
    pub setup_time: u64,
    /// The participant joined, epoch seconds.
    pub start_time: u64,
    /// The participant left (or the room ended), epoch seconds; 0 while in the room.
    pub end_time: u64,
    /// Participants in the room after the change.
    pub online: u32,
    /// `A` or `V`.
    pub media_type: String,
    /// `C` connected, `D` disconnected, `T` timed out, `M` media changed.
    pub msc: char,
    /// When the change happened, epoch milliseconds.
    pub ts: u64,
    /// Debug release code (0 while connected).
    pub rel_code: u16,
    /// Its name (empty while connected).
    pub rel_code_str: String,
    /// The participant's device kind.
    pub ue_type: String,
    /// The participant's display name.
    pub display_name: Option<String>,
    /// Why the participant left (0 while connected).
    pub disconnect_reason: u16,
    /// Who ended it (0 while connected).
    pub releaser_type: u16,
    /// The participant's app data (sent as both `stid` and `app_svr_data`).
    pub app_svr_data: Option<String>,
}

impl GcallRecord {
    /// Field names and values, in the order of SPEC §4.
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        let data = self.app_svr_data.clone().unwrap_or_default();
        vec![
            ("sid", self.sid.to_string()),
            ("svc_id", self.svc_id.clone()),
            ("id", self.id.clone()),
            ("user_svc_id", self.user_svc_id.clone()),
            ("user_id", self.user_id.clone()),
            ("host_svc_id", self.host_svc_id.clone()),
            ("host_id", self.host_id.clone()),
            ("sc", self.sc.to_string()),
            ("setup_time", self.setup_time.to_string()),
            ("start_time", self.start_time.to_string()),
            ("end_time", self.end_time.to_string()),
            ("online", self.online.to_string()),
            ("media_type", self.media_type.clone()),
            ("msc", self.msc.to_string()),
            ("stid", data.clone()),
            ("ts", self.ts.to_string()),
            ("rel_code", self.rel_code.to_string()),
            ("rel_code_str", self.rel_code_str.clone()),
            ("ue_type", self.ue_type.clone()),
            ("display_name", self.display_name.clone().unwrap_or_default()),
            ("disconnect_reason", self.disconnect_reason.to_string()),
            ("releaser_type", self.releaser_type.to_string()),
            ("app_svr_data", data),
        ]
    }

    /// The URL-encoded query string.
    pub fn to_query(&self) -> String {
        encode_query(&self.to_pairs())
    }
}

/// How an invitee's part in a group call came out (`result` in
/// [`GroupCallMember`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteResult {
    /// The caller, or an invitee who took part (accepted or joined).
    Joined,
    /// Rejected the invitation.
    Rejected,
    /// Did not answer in time, or could not be reached.
    NoResponse,
    /// Was in another call, or ignored the invitation.
    LineBusy,
    /// The invitation was cancelled (the call ended while it rang).
    Cancelled,
    /// The invitation rings: only in a live call's view, never in a record.
    Inviting,
}

/// One user of a group call in its record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupCallMember {
    /// The user.
    pub user_id: String,
    /// `caller` or `callee`.
    pub role: String,
    /// Who invited the user (the caller's own ID for the caller).
    pub inviter: String,
    /// How it came out.
    pub result: InviteResult,
    /// Invited (the caller: the call created), epoch milliseconds.
    pub invited_ms: u64,
    /// Accepted, rejected or ignored, epoch milliseconds (0 if never).
    pub answered_ms: u64,
    /// First in the call, epoch milliseconds (0 if never).
    pub joined_ms: u64,
    /// Last out of the call, epoch milliseconds (0 if never in).
    pub left_ms: u64,
    /// Time in the call, milliseconds (every stretch added up).
    pub in_call_ms: u64,
    /// The user's nickname (`setSelfInfo`), if it set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
}

/// on_group_call_evt_cb: the record of a call-engine group call, sent once when it
/// ends, with every invitee's outcome. (Serde: the server's snapshot of a live call.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupCallRecord {
    /// The call's ID (its room's session, 32 hex chars).
    pub call_id: Sid,
    /// The service.
    pub service_id: String,
    /// Who called.
    pub caller_id: String,
    /// `A` or `V` (at the end, after any switch).
    pub media_type: String,
    /// The call's room number (`roomID`).
    pub room_id: u32,
    /// The app's group ID (empty if none).
    pub group_id: String,
    /// The caller's `userData`.
    pub user_data: Option<String>,
    /// Created, epoch milliseconds.
    pub setup_ms: u64,
    /// First accepted (the call began), epoch milliseconds; 0 if it never began.
    pub begin_ms: u64,
    /// Ended, epoch milliseconds.
    pub end_ms: u64,
    /// Why it ended: a call-engine end reason (SPEC §6).
    pub end_reason: u8,
    /// The caller and every invitee, in the order they were invited.
    pub members: Vec<GroupCallMember>,
}

impl GroupCallRecord {
    /// Field names and values, in contract order (`members` as a JSON array).
    pub fn to_pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("call_id", self.call_id.to_string()),
            ("service_id", self.service_id.clone()),
            ("caller_id", self.caller_id.clone()),
            ("media_type", self.media_type.clone()),
            ("room_id", self.room_id.to_string()),
            ("group_id", self.group_id.clone()),
            ("user_data", self.user_data.clone().unwrap_or_default()),
            ("setup_ms", self.setup_ms.to_string()),
            ("begin_ms", self.begin_ms.to_string()),
            ("end_ms", self.end_ms.to_string()),
            ("end_reason", self.end_reason.to_string()),
            ("members", serde_json::to_string(&self.members).unwrap_or_default()),
        ]
    }

    /// The URL-encoded query string.
    pub fn to_query(&self) -> String {
        encode_query(&self.to_pairs())
    }

    /// The record as the REST API serves it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "group",
            "call_id": self.call_id,
            "service_id": self.service_id,
            "caller_id": self.caller_id,
            "media_type": self.media_type,
            "room_id": self.room_id,
            "group_id": self.group_id,
            "user_data": self.user_data,
            "setup_ms": self.setup_ms,
            "begin_ms": self.begin_ms,
            "end_ms": self.end_ms,
            "end_reason": self.end_reason,
            "members": self.members,
        })
    }
}

/// Encodes `name=value` pairs joined by `&`, percent-encoding everything but the
/// RFC 3986 unreserved characters (so a space is `%20` and `+` is `%2B`).
pub fn encode_query(pairs: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(pairs.len() * 24);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        percent_encode_into(k, &mut out);
        out.push('=');
        percent_encode_into(v, &mut out);
    }
    out
}

fn percent_encode_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_reserved_characters() {
        let q = encode_query(&[("a b", "x+y/z=é&".into()), ("k", String::new())]);
        assert_eq!(q, "a%20b=x%2By%2Fz%3D%C3%A9%26&k=");
    }

    #[test]
    fn gcall_record_has_every_spec_field_in_order() {
        let r = GcallRecord {
            sid: "0123456789abcdef0123456789abcdef".into(),
            svc_id: "svc".into(),
            id: "room-1".into(),
            user_svc_id: "svc".into(),
            user_id: "bob".into(),
            host_svc_id: "svc".into(),
            host_id: "alice".into(),
            sc: 'C',
            setup_time: 1,
            start_time: 2,
            end_time: 0,
            online: 2,
            media_type: "V".into(),
            msc: 'C',
            ts: 2500,
            rel_code: 0,
            rel_code_str: String::new(),
            ue_type: "BROWSER".into(),
            display_name: Some("Bob B".into()),
            disconnect_reason: 0,
            releaser_type: 0,
            app_svr_data: None,
        };
        let names: Vec<_> = r.to_pairs().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names.join(","),
            "sid,svc_id,id,user_svc_id,user_id,host_svc_id,host_id,sc,setup_time,start_time,end_time,\
             online,media_type,msc,stid,ts,rel_code,rel_code_str,ue_type,display_name,disconnect_reason,\
             releaser_type,app_svr_data"
        );
        assert!(r.to_query().contains("&display_name=Bob%20B&"));
    }

    #[test]
    fn call_record_has_every_seed_field_in_order() {
        let r = CallRecord {
            sid: "6364e8b3-bdac-436e-9631-0bce2498ce0c".into(),
            from_service_id: "svc".into(),
            from_user_id: "9286".into(),
            to_service_id: "svc".into(),
            to_user_id: "2809".into(),
            media_type: "V".into(),
            setup_time: 1582527400,
            start_time: 1582527404,
            end_time: 1582527434,
            duration: 30,
            srcip: "1.2.3.4".into(),
            dstip: "1.2.3.5".into(),
            terminate: 16,
            rel_code: 1,
            rel_code_str: "NORMAL".into(),
            user_rel_code: None,
            billing_sec: 25,
            rc_idc: "KR".into(),
            disconnect_reason: 1001,
            releaser_type: 1,
            app_svr_data: Some("voip.next".into()),
        };
        let names: Vec<_> = r.to_pairs().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names.len(), 22);
        assert!(r.to_query().starts_with("sid=6364e8b3-bdac-436e-9631-0bce2498ce0c&from_service_id=svc"));
        assert!(r.to_query().ends_with("releaser_type=1&app_svr_data=voip.next"));
    }
}
