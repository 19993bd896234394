//! The call-engine face (seed 004, TUICallEngine's shape) of the Rust SDK: sign in as
//! an engine session ([`Client::connect_engine`]), call one user or several
//! ([`Client::calls`]), answer ([`Client::accept`], [`Client::reject`],
//! [`Client::ignore`]), leave ([`Client::hangup`]), [`Client::invite_user`],
//! [`Client::join_call`] and [`Client::switch_call_media`]; every TUICallEvent arrives
//! as [`crate::Event::Call`]. A group call's media is a room's: start it with
//! [`Client::start_media`] on the call ID.

use switchboard_protocol::{ClientMessage, ServerMessage, Sid, PROTOCOL_VERSION};

use crate::session::{room_joined, unexpected};
use crate::{Client, ClientError, Events, RoomJoined};

/// Parameters of [`Client::calls`].
#[derive(Debug, Clone, Default)]
pub struct Calls {
    /// The invitees: one is a 1-to-1 call, several a group call.
    pub user_ids: Vec<String>,
    /// `audio` or `video`.
    pub media_type: String,
    /// Each invitation's ring time, seconds (default 30).
    pub timeout_secs: Option<u32>,
    /// App data, in `onCallReceived` and the records.
    pub user_data: Option<String>,
    /// The group call's room number.
    pub room_id: Option<u32>,
    /// The app's group ID (makes even a one-invitee call a group call).
    pub group_id: Option<String>,
}

impl Calls {
    /// Calls `users` with audio.
    pub fn audio<S: Into<String>>(users: impl IntoIterator<Item = S>) -> Self {
        Calls {
            user_ids: users.into_iter().map(Into::into).collect(),
            media_type: "audio".into(),
            ..Calls::default()
        }
    }

    /// Calls `users` with video.
    pub fn video<S: Into<String>>(users: impl IntoIterator<Item = S>) -> Self {
        Calls { media_type: "video".into(), ..Calls::audio(users) }
    }
}

/// A call this session is in, as `calls`, `accept` or `join_call` resolved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entered {
    /// A 1-to-1 call (created and ringing, or answered): media with
    /// [`Client::start_media`] on its sid once connected, as any call.
    OneToOne {
        /// The call's ID.
        sid: Sid,
    },
    /// A group call: this session is in its room (the room's `sid` is the call ID).
    Group(RoomJoined),
}

impl Entered {
    /// The call's ID.
    pub fn call_id(&self) -> &Sid {
        match self {
            Entered::OneToOne { sid } => sid,
            Entered::Group(room) => &room.sid,
        }
    }
}

fn done(m: ServerMessage) -> Result<(), ClientError> {
    match m {
        ServerMessage::Done { .. } | ServerMessage::Disconnected { .. } => Ok(()),
        other => Err(unexpected(other)),
    }
}

impl Client {
    /// Connects as a call-engine session of `user_id` (it is rung by group calls and
    /// gets [`crate::Event::Call`]). Without `multi_device` (TUICallEngine's default) this
    /// signs the user's other engine instances out; with it every device rings.
    pub async fn connect_engine(
        server: &str,
        service_id: &str,
        user_id: &str,
        token: &str,
        multi_device: bool,
    ) -> Result<(Client, Events), ClientError> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let hello = ClientMessage::Hello {
            v: PROTOCOL_VERSION,
            token: Some(token.to_string()),
            service_id: Some(service_id.to_string()),
            user_id: Some(user_id.to_string()),
            cc_param: None,
            ue_type: Some("UE_TYPE_UNDEFINED".into()),
            engine: true,
            multi_device,
            // One per client: its reconnects are not a second login.
            instance: Some(format!("rust-{:x}-{nanos:x}", std::process::id())),
        };
        Client::connect_hello(server, hello).await
    }

    /// `calls`: one invitee is a 1-to-1 call (resolves once created; it rings), several
    /// a group call (resolves once this session is in its room; the invitees ring).
    pub async fn calls(&self, p: Calls) -> Result<Entered, ClientError> {
        let answer = self
            .request(|req| ClientMessage::Calls {
                req,
                user_ids: p.user_ids,
                media_type: p.media_type,
                timeout_secs: p.timeout_secs,
                user_data: p.user_data,
                room_id: p.room_id,
                group_id: p.group_id,
            })
            .await?;
        match answer {
            ServerMessage::CallCreated { sid, .. } => Ok(Entered::OneToOne { sid }),
            other => room_joined(other).map(Entered::Group),
        }
    }

    /// `accept` of the call `call_id` that rings for this user: a 1-to-1 call resolves
    /// connected, a group call once in its room.
    pub async fn accept(&self, call_id: &Sid) -> Result<Entered, ClientError> {
        match self.request(|req| ClientMessage::Accept { req, call_id: call_id.clone() }).await? {
            ServerMessage::Connected { sid, .. } => Ok(Entered::OneToOne { sid }),
            other => room_joined(other).map(Entered::Group),
        }
    }

    /// `reject` of a ringing call (the caller hears `onUserReject`).
    pub async fn reject(&self, call_id: &Sid) -> Result<(), ClientError> {
        done(self.request(|req| ClientMessage::Reject { req, call_id: call_id.clone() }).await?)
    }

    /// `ignore` of a ringing call (the caller hears `onUserLineBusy`).
    pub async fn ignore(&self, call_id: &Sid) -> Result<(), ClientError> {
        done(self.request(|req| ClientMessage::Ignore { req, call_id: call_id.clone() }).await?)
    }

    /// `hangup`: leave the call (the caller before anyone answered cancels it).
    pub async fn hangup(&self, call_id: &Sid) -> Result<(), ClientError> {
        done(self.request(|req| ClientMessage::Hangup { req, call_id: call_id.clone() }).await?)
    }

    /// `invite_user`: more invitees into a group call this session is in.
    pub async fn invite_user(&self, call_id: &Sid, user_ids: Vec<String>) -> Result<(), ClientError> {
        let msg =
            |req| ClientMessage::InviteUser { req, call_id: call_id.clone(), user_ids, timeout_secs: None };
        done(self.request(msg).await?)
    }

    /// `join_call`: back into a live group call this user was invited to.
    pub async fn join_call(&self, call_id: &Sid) -> Result<RoomJoined, ClientError> {
        room_joined(self.request(|req| ClientMessage::JoinCall { req, call_id: call_id.clone() }).await?)
    }

    /// `set_self_info`: this user's nickname and avatar, shown to its invitees
    /// (`onCallReceived`) and kept in group call records (empty strings clear them).
    pub async fn set_self_info(
        &self,
        nickname: Option<&str>,
        avatar_url: Option<&str>,
    ) -> Result<(), ClientError> {
        let msg = |req| ClientMessage::SetSelfInfo {
            req,
            nickname: nickname.map(str::to_string),
            avatar_url: avatar_url.map(str::to_string),
        };
        done(self.request(msg).await?)
    }

    /// `switch_call_media` (`audio` / `video`): everyone hears `onCallMediaTypeChanged`.
    pub async fn switch_call_media(&self, call_id: &Sid, media_type: &str) -> Result<(), ClientError> {
        let msg = |req| ClientMessage::SwitchCallMedia {
            req,
            call_id: call_id.clone(),
            media_type: media_type.into(),
        };
        done(self.request(msg).await?)
    }
}

/// Filters of [`Client::query_recent_calls`].
#[derive(Debug, Clone, Default)]
pub struct RecentCallsQuery {
    /// Set up at or after this, epoch milliseconds.
    pub begin: Option<u64>,
    /// Set up before this, epoch milliseconds.
    pub end: Option<u64>,
    /// Only `MISSED`, `INCOMING` or `OUTGOING` calls.
    pub result: Option<String>,
    /// At most this many (1-100, default 20).
    pub limit: Option<u32>,
}

/// One of this user's calls, as `queryRecentCalls` gives it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentCall {
    /// The call's ID.
    pub call_id: String,
    /// `SINGLE_CALL` or `GROUP_CALL`.
    pub scene: String,
    /// Who called.
    pub inviter: String,
    /// Who was invited.
    pub invite_list: Vec<String>,
    /// 1 audio, 2 video.
    pub media_type: u8,
    /// 1 caller, 2 callee.
    pub role: u8,
    /// `OUTGOING`, `INCOMING` or `MISSED`.
    pub result: String,
    /// Set up, epoch milliseconds.
    pub begin_time: u64,
    /// Seconds this user was in the call.
    pub total_time: u64,
}

#[derive(serde::Deserialize)]
struct RecentCalls {
    calls: Vec<RecentCall>,
}

impl Client {
    /// `queryRecentCalls`: this user's own recent calls, 1-to-1 and group, newest
    /// first, from the server's REST route authorised by this client's access token.
    pub async fn query_recent_calls(&self, q: RecentCallsQuery) -> Result<Vec<RecentCall>, ClientError> {
        let token = self.token().ok_or(ClientError::Closed)?;
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(b) = q.begin {
            params.push(("begin", b.to_string()));
        }
        if let Some(e) = q.end {
            params.push(("end", e.to_string()));
        }
        if let Some(r) = q.result {
            params.push(("result", r));
        }
        if let Some(l) = q.limit {
            params.push(("limit", l.to_string()));
        }
        let query = switchboard_protocol::record::encode_query(&params);
        let url = format!("{}/v1/me/calls?{query}", self.http_base());
        let resp = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| ClientError::Connect(e.to_string()))?;
        let body: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ClientError::Connect(format!("unexpected answer: {e}")))?;
        if !status.is_success() {
            let message = body["message"].as_str().unwrap_or("refused").to_string();
            let error = if status.as_u16() == 401 {
                switchboard_protocol::ErrorCode::Auth
            } else {
                switchboard_protocol::ErrorCode::InvalidParam
            };
            return Err(ClientError::Server { error, reason: None, message });
        }
        serde_json::from_value::<RecentCalls>(body)
            .map(|r| r.calls)
            .map_err(|e| ClientError::Connect(format!("unexpected answer: {e}")))
    }
}
