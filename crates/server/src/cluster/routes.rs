//! Where a client's messages go, as the node holding its WebSocket (the edge) sees it:
//! each call or room lives on one node (its owner), and a message about it goes there.
//! Sans IO: what a message is about ([`target`]), and what the session learned of the
//! owners from the frames it was sent ([`Routes`]).

use std::collections::{BTreeSet, HashMap};

use switchboard_protocol::ClientMessage;

use crate::ids::Party;

/// What a client message is about, for finding the node that must handle it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Nothing that lives elsewhere: this node's core handles it.
    Here,
    /// The live call, room or group call of this sid (or call ID).
    Sid(String),
    /// The room `(service, room_id)`: the node placed for it.
    Room { service_id: String, room_id: String },
    /// A new call, on this node, that rings these users: their devices on other
    /// nodes must be reachable from here first.
    Ring(Vec<Party>),
    /// `verify_call`: the call its `cc_param` names.
    CallParam(String),
}

/// The users whose devices `msg`, sent by `me`, rings: a new call's callees, a group
/// call's invitees (on whichever node runs it, their devices on other nodes must be
/// reachable from there first).
pub(crate) fn ringees(msg: &ClientMessage, me: &Party) -> Vec<Party> {
    use ClientMessage as M;
    match (msg, target(msg, me)) {
        (_, Target::Ring(users)) => users,
        (M::InviteUser { user_ids, .. }, _) => {
            user_ids.iter().map(|u| Party::new(me.service_id.clone(), u.clone())).collect()
        }
        _ => Vec::new(),
    }
}

/// What `msg`, sent by `me`, is about.
pub(crate) fn target(msg: &ClientMessage, me: &Party) -> Target {
    use ClientMessage as M;
    match msg {
        M::MakeCall { to_user_id, to_service_id, .. } => Target::Ring(vec![Party::new(
            to_service_id.clone().unwrap_or_else(|| me.service_id.clone()),
            to_user_id.clone(),
        )]),
        M::Calls { user_ids, .. } => {
            Target::Ring(user_ids.iter().map(|u| Party::new(me.service_id.clone(), u.clone())).collect())
        }
        M::JoinRoom { room_id, room_service_id, .. } => Target::Room {
            service_id: room_service_id.clone().unwrap_or_else(|| me.service_id.clone()),
            room_id: room_id.clone(),
        },
        M::VerifyCall { cc_param, .. } => Target::CallParam(cc_param.clone()),
        M::AcceptCall { sid, .. }
        | M::EndCall { sid, .. }
        | M::Resume { sid, .. }
        | M::MediaOffer { sid, .. }
        | M::MediaAnswer { sid, .. }
        | M::AddMedia { sid, .. }
        | M::MediaState { sid, .. }
        | M::LeaveRoom { sid, .. }
        | M::ShortData { sid, .. }
        | M::RequestPeerVideo { sid, .. }
        | M::RemovePeerVideo { sid, .. } => Target::Sid(sid.as_str().to_string()),
        M::Accept { call_id, .. }
        | M::Reject { call_id, .. }
        | M::Ignore { call_id, .. }
        | M::Hangup { call_id, .. }
        | M::InviteUser { call_id, .. }
        | M::JoinCall { call_id, .. }
        | M::SwitchCallMedia { call_id, .. } => Target::Sid(call_id.as_str().to_string()),
        M::Hello { .. } | M::Ping {} | M::RefreshToken { .. } | M::SetSelfInfo { .. } => Target::Here,
    }
}

/// Where a call or room lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// On this node.
    Here,
    /// On that node.
    Node(String),
}

/// How many sids a session remembers (it forgets them all past this: they are found
/// again).
const MAX_SIDS: usize = 256;
/// The longest sid taken from a frame.
const MAX_SID_BYTES: usize = 128;

/// What one session learned of where its calls and rooms live, and which nodes hold a
/// proxy of it (and must hear when it ends).
#[derive(Debug, Default)]
pub(crate) struct Routes {
    sids: HashMap<String, Route>,
    owners: BTreeSet<String>,
    /// The calls and rooms the session is in (not the ones it only rang for): the ones
    /// its node resumes for it when they move.
    joined: BTreeSet<String>,
}

impl Routes {
    /// A frame of `text` came from `from` (`None`: this node's core): every sid it
    /// names lives there. What another node said wins over this node's own frames.
    pub fn learn(&mut self, text: &str, from: Option<&str>) {
        if let Some(node) = from {
            self.owners.insert(node.to_string());
        }
        self.membership(text);
        for sid in sids_in(text) {
            if self.sids.len() >= MAX_SIDS && !self.sids.contains_key(sid) {
                self.sids.clear();
            }
            match from {
                Some(node) => {
                    self.sids.insert(sid.to_string(), Route::Node(node.to_string()));
                }
                None => {
                    self.sids.entry(sid.to_string()).or_insert(Route::Here);
                }
            }
        }
    }

    /// Keeps [`Routes::joined`] from the frames that put the session in a call or room,
    /// or take it out.
    fn membership(&mut self, text: &str) {
        const IN: [&str; 4] = ["call_created", "connected", "room_joined", "resumed"];
        let Some(kind) = text.strip_prefix("{\"type\":\"").and_then(|t| t.split('"').next()) else { return };
        let joins = IN.contains(&kind);
        if !joins && kind != "disconnected" {
            return;
        }
        // The frame's own sid comes first: `sid` of a call or room frame, `call_id` of none
        // of these.
        let Some(sid) = sids_in(text).next() else { return };
        if joins {
            if self.joined.len() < MAX_SIDS {
                self.joined.insert(sid.to_string());
            }
        } else {
            self.joined.remove(sid);
        }
    }

    /// Whether the session is in call or room `sid` (not only rung for it).
    pub fn is_in(&self, sid: &str) -> bool {
        self.joined.contains(sid)
    }

    /// Where `sid` lives, if known.
    pub fn get(&self, sid: &str) -> Option<&Route> {
        self.sids.get(sid)
    }

    /// Remembers where `sid` lives.
    pub fn set(&mut self, sid: &str, route: Route) {
        if self.sids.len() >= MAX_SIDS {
            self.sids.clear();
        }
        self.sids.insert(sid.to_string(), route);
    }

    /// Marks `node` as holding a proxy of this session; true the first time.
    pub fn opened(&mut self, node: &str) -> bool {
        self.owners.insert(node.to_string())
    }

    /// `node` is gone: the sids that lived there, forgotten.
    pub fn forget(&mut self, node: &str) -> Vec<String> {
        self.owners.remove(node);
        let gone: Vec<String> = self
            .sids
            .iter()
            .filter(|(_, r)| **r == Route::Node(node.to_string()))
            .map(|(s, _)| s.clone())
            .collect();
        gone.iter().for_each(|s| {
            self.sids.remove(s);
        });
        gone
    }

    /// Forgets where `sid` lives (to be looked up again).
    pub fn forget_sid(&mut self, sid: &str) {
        self.sids.remove(sid);
    }

    /// The nodes holding a proxy of this session.
    pub fn owners(&self) -> impl Iterator<Item = &String> {
        self.owners.iter()
    }
}

/// The values of every `"sid"` and `"call_id"` key in a frame's JSON text. A match
/// is always a key: inside a JSON string, quotes are escaped.
fn sids_in(text: &str) -> impl Iterator<Item = &str> {
    ["\"sid\":\"", "\"call_id\":\""].into_iter().flat_map(move |key| {
        text.match_indices(key).filter_map(move |(at, _)| {
            let rest = &text[at + key.len()..];
            let end = rest.find('"')?;
            let sid = &rest[..end];
            (!sid.is_empty() && sid.len() <= MAX_SID_BYTES && !sid.contains('\\')).then_some(sid)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::Sid;

    #[test]
    fn messages_name_what_they_are_about() {
        let me = Party::new("acme", "alice");
        let join =
            ClientMessage::parse(r#"{"type":"join_room","room_id":"r1","media_type":"audio"}"#).unwrap();
        assert_eq!(target(&join, &me), Target::Room { service_id: "acme".into(), room_id: "r1".into() });
        let call = ClientMessage::parse(
            r#"{"type":"make_call","to_user_id":"bob","to_service_id":"beta","media_type":"audio"}"#,
        )
        .unwrap();
        assert_eq!(target(&call, &me), Target::Ring(vec![Party::new("beta", "bob")]));
        let end =
            ClientMessage::EndCall { req: None, sid: Sid::new("s-1"), reason: None, user_rel_code: None };
        assert_eq!(target(&end, &me), Target::Sid("s-1".into()));
        let hang = ClientMessage::Hangup { req: None, call_id: Sid::new("c-1") };
        assert_eq!(target(&hang, &me), Target::Sid("c-1".into()));
        let invite = ClientMessage::InviteUser {
            req: None,
            call_id: Sid::new("c-1"),
            user_ids: vec!["dan".into()],
            timeout_secs: None,
        };
        assert_eq!(target(&invite, &me), Target::Sid("c-1".into()), "to the call's node");
        assert_eq!(ringees(&invite, &me), [Party::new("acme", "dan")], "which rings dan's devices");
        assert_eq!(ringees(&call, &me), [Party::new("beta", "bob")]);
        assert!(ringees(&hang, &me).is_empty());
        assert_eq!(target(&ClientMessage::Ping {}, &me), Target::Here);
    }

    #[test]
    fn frames_teach_where_sids_live_and_another_nodes_word_wins() {
        let mut r = Routes::default();
        r.learn(r#"{"type":"call_created","req":1,"sid":"s-here"}"#, None);
        r.learn(r#"{"type":"room_joined","sid":"s-there","members":[{"sid":"x\"y"}]}"#, Some("n2"));
        r.learn(r#"{"type":"call_event","call_id":"c-9","sdp":"a=\"sid\":\"nope\""}"#, Some("n3"));
        assert_eq!(r.get("s-here"), Some(&Route::Here));
        assert_eq!(r.get("s-there"), Some(&Route::Node("n2".into())));
        assert_eq!(r.get("c-9"), Some(&Route::Node("n3".into())));
        assert_eq!(r.get("nope"), None, "a quoted key inside a string is no key");
        // This node's frame about a sid another node owns changes nothing.
        r.learn(r#"{"type":"error","sid":"s-there"}"#, None);
        assert_eq!(r.get("s-there"), Some(&Route::Node("n2".into())));
        assert_eq!(r.owners().collect::<Vec<_>>(), ["n2", "n3"]);
        assert!(!r.opened("n2"));
        assert!(r.opened("n4"));
        // Only the calls and rooms the session is in are resumed for it when they move.
        r.learn(r#"{"type":"incoming_call","sid":"s-rung","cc_param":"x"}"#, Some("n2"));
        r.learn(r#"{"type":"connected","sid":"s-there","start_time":1}"#, Some("n2"));
        r.learn(r#"{"type":"room_joined","req":1,"sid":"r-1","members":[]}"#, Some("n3"));
        assert!(r.is_in("s-there") && r.is_in("r-1") && !r.is_in("s-rung"));
        r.learn(r#"{"type":"disconnected","sid":"r-1","reason":1}"#, Some("n3"));
        assert!(!r.is_in("r-1"));
        // n2 dies: what lived there is forgotten, and said.
        let mut gone = r.forget("n2");
        gone.sort();
        assert_eq!(gone, ["s-rung", "s-there"]);
        assert_eq!(r.get("s-there"), None);
        assert_eq!(r.owners().collect::<Vec<_>>(), ["n3", "n4"]);
    }
}
