//! Presence: who is online, and in which calls and rooms. Every signaling session (one
//! device's connection, signed in with a token or a `cc_param`), and per user the
//! devices that can be rung, the 1-to-1 calls the user is a party of and the rooms the
//! user is in. Calls ask it who to ring and who is busy (a user in a room is busy for
//! calls, as in another call).

use std::collections::HashMap;

use crate::ids::{Party, SessionId, Sid};

/// How a session proved who it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SessionAuth {
    /// With an access token: a full user session.
    Token,
    /// With a `cc_param` only: may verify and answer that one call.
    CallParam {
        /// The call it may verify.
        sid: Sid,
        /// With a `resume_param`: the answering device it proves to be; only such a
        /// session may `resume` the call.
        device: Option<u64>,
    },
}

/// What a client said of itself in its `hello`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientInfo {
    /// Kind of device (`BROWSER`, …; `UE_TYPE_UNDEFINED` when not said).
    pub ue_type: String,
    /// A call-engine session: it gets `call_event` frames.
    pub engine: bool,
    /// Call engine: the user may be signed in on several devices at once.
    pub multi_device: bool,
    /// The SDK instance: a new session of the same instance is a reconnect.
    pub instance: Option<String>,
    /// A proxy of a session of another node (a deployment of several): it signs no
    /// other session out (its login did that where it happened).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proxy: bool,
}

/// One signaling session.
#[derive(Debug)]
pub struct Session {
    /// Whose it is.
    pub party: Party,
    /// How it signed in.
    pub auth: SessionAuth,
    /// The device's IP address.
    pub ip: String,
    /// What the client said of itself.
    pub client: ClientInfo,
    /// Signed out by a later login of the same user elsewhere (call engine without
    /// multi-device): it is rung for nothing and may do nothing.
    pub kicked: bool,
    /// The live calls this session takes part in.
    pub calls: Vec<Sid>,
}

#[derive(Debug, Default)]
struct User {
    /// Token sessions (devices that can be rung directly).
    devices: Vec<SessionId>,
    /// Live calls this user is a party of.
    calls: Vec<Sid>,
    /// Rooms this user is in.
    rooms: Vec<Sid>,
    /// Group calls whose invitation rings for this user.
    invites: Vec<Sid>,
    /// What `set_self_info` said (kept while the user is known).
    profile: Profile,
}

/// A user's nickname and avatar (`set_self_info`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Nickname.
    pub nickname: Option<String>,
    /// Avatar URL.
    pub avatar_url: Option<String>,
}

/// Every session and every user with a session or a live call.
#[derive(Debug, Default)]
pub struct Presence {
    sessions: HashMap<SessionId, Session>,
    users: HashMap<Party, User>,
}

impl Presence {
    /// A session signed in.
    pub fn open(&mut self, id: SessionId, party: Party, auth: SessionAuth, ip: String, client: ClientInfo) {
        let user = self.users.entry(party.clone()).or_default();
        if auth == SessionAuth::Token {
            user.devices.push(id);
        }
        self.sessions.insert(id, Session { party, auth, ip, client, kicked: false, calls: Vec::new() });
    }

    /// A session is gone; what it was.
    pub fn close(&mut self, id: SessionId) -> Option<Session> {
        let s = self.sessions.remove(&id)?;
        if let Some(user) = self.users.get_mut(&s.party) {
            user.devices.retain(|x| *x != id);
        }
        self.forget_if_idle(&s.party);
        Some(s)
    }

    /// A later login of the user signs this session out: it is no longer rung.
    pub fn kick(&mut self, id: SessionId) {
        let Some(s) = self.sessions.get_mut(&id) else { return };
        s.kicked = true;
        if let Some(user) = self.users.get_mut(&s.party) {
            user.devices.retain(|x| *x != id);
        }
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// A session.
    pub fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(&id)
    }

    /// The devices of a user that can be rung (token sessions).
    pub fn devices(&self, party: &Party) -> &[SessionId] {
        self.users.get(party).map_or(&[], |u| &u.devices)
    }

    /// The live calls a user is a party of.
    pub fn calls_of(&self, party: &Party) -> &[Sid] {
        self.users.get(party).map_or(&[], |u| &u.calls)
    }

    /// A user is a party of a new call (before any of its sessions is).
    pub fn add_call(&mut self, party: &Party, sid: &Sid) {
        let user = self.users.entry(party.clone()).or_default();
        if !user.calls.contains(sid) {
            user.calls.push(sid.clone());
        }
    }

    /// A session takes part in a call, and so does its user.
    pub fn link(&mut self, id: SessionId, sid: &Sid) {
        let Some(s) = self.sessions.get_mut(&id) else { return };
        if !s.calls.contains(sid) {
            s.calls.push(sid.clone());
        }
        let party = s.party.clone();
        self.add_call(&party, sid);
    }

    /// A session no longer takes part in a call (its user may still).
    pub fn unlink(&mut self, id: SessionId, sid: &Sid) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.calls.retain(|c| c != sid);
        }
    }

    /// A call is over for a user.
    pub fn call_over(&mut self, party: &Party, sid: &Sid) {
        if let Some(u) = self.users.get_mut(party) {
            u.calls.retain(|c| c != sid);
        }
        self.forget_if_idle(party);
    }

    /// A user joined a room.
    pub fn joined_room(&mut self, party: &Party, sid: &Sid) {
        let user = self.users.entry(party.clone()).or_default();
        if !user.rooms.contains(sid) {
            user.rooms.push(sid.clone());
        }
    }

    /// A user left a room.
    pub fn left_room(&mut self, party: &Party, sid: &Sid) {
        if let Some(u) = self.users.get_mut(party) {
            u.rooms.retain(|r| r != sid);
        }
        self.forget_if_idle(party);
    }

    /// Whether the user is in a room (busy for 1-to-1 calls).
    pub fn in_room(&self, party: &Party) -> bool {
        self.users.get(party).is_some_and(|u| !u.rooms.is_empty())
    }

    /// A group call's invitation rings for a user.
    pub fn add_invite(&mut self, party: &Party, call: &Sid) {
        let user = self.users.entry(party.clone()).or_default();
        if !user.invites.contains(call) {
            user.invites.push(call.clone());
        }
    }

    /// The group calls whose invitation rings for a user.
    pub fn invites_of(&self, party: &Party) -> &[Sid] {
        self.users.get(party).map_or(&[], |u| &u.invites)
    }

    /// A group call's invitation no longer rings for a user.
    pub fn remove_invite(&mut self, party: &Party, call: &Sid) {
        if let Some(u) = self.users.get_mut(party) {
            u.invites.retain(|c| c != call);
        }
        self.forget_if_idle(party);
    }

    /// A user's nickname and avatar.
    pub fn set_profile(&mut self, party: &Party, profile: Profile) {
        self.users.entry(party.clone()).or_default().profile = profile;
    }

    /// A user's nickname and avatar (none set: both `None`).
    pub fn profile(&self, party: &Party) -> Profile {
        self.users.get(party).map(|u| u.profile.clone()).unwrap_or_default()
    }

    /// Whether the user is in a call or room, or rung by a group call: busy for any new
    /// call.
    pub fn busy(&self, party: &Party) -> bool {
        self.users
            .get(party)
            .is_some_and(|u| !u.calls.is_empty() || !u.rooms.is_empty() || !u.invites.is_empty())
    }

    fn forget_if_idle(&mut self, party: &Party) {
        let idle = |u: &User| {
            u.devices.is_empty() && u.calls.is_empty() && u.rooms.is_empty() && u.invites.is_empty()
        };
        if self.users.get(party).is_some_and(idle) {
            self.users.remove(party);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_calls_and_forgetting() {
        let mut p = Presence::default();
        let bob = Party::new("s", "bob");
        p.open(SessionId(1), bob.clone(), SessionAuth::Token, "ip".into(), ClientInfo::default());
        let param = SessionAuth::CallParam { sid: Sid::new("x"), device: None };
        p.open(SessionId(2), bob.clone(), param, "ip".into(), ClientInfo::default());
        assert_eq!(p.devices(&bob), &[SessionId(1)], "only token sessions are rung");
        let sid = Sid::new("00000000-0000-4000-8000-000000000001");
        p.link(SessionId(2), &sid);
        assert_eq!(p.calls_of(&bob), std::slice::from_ref(&sid));
        p.close(SessionId(1));
        p.close(SessionId(2));
        assert_eq!(p.calls_of(&bob).len(), 1, "the call outlives the sessions (reconnect grace)");
        p.joined_room(&bob, &Sid::new("r"));
        p.call_over(&bob, &sid);
        assert!(p.in_room(&bob), "still in the room");
        p.left_room(&bob, &Sid::new("r"));
        assert!(p.users.is_empty() && p.is_empty());
    }
}
