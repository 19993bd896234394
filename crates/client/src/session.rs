//! The connection task and request/answer matching.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, Stream, StreamExt};
use switchboard_protocol::{
    ClientMessage, DisconnectReason, ServerMessage, Sid, PROTOCOL_VERSION, SIGNAL_PATH,
};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::media::RelayOffer;
use crate::{ClientError, Credentials, Event, JoinConference, MakeCall, RoomJoined, Verified};

/// How long a request waits for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<ServerMessage>>>>;

/// The `hello` the connection signs in with, shared with the connection task.
type Hello = Arc<Mutex<ClientMessage>>;

/// Reconnect back-off: the first wait, doubled up to the last.
const REDIAL_FIRST: Duration = Duration::from_millis(200);
const REDIAL_MAX: Duration = Duration::from_secs(3);
/// The grace a server that does not say gives (its default).
const DEFAULT_GRACE: Duration = Duration::from_millis(15_000);

/// The relay's offers, routed to the media connection of each call.
/// Each route carries the registration's number, so that an old media connection
/// going away does not remove a newer one's route.
/// Per call with media: its connection's number, where the relay's offers go, and where
/// word that the call moved to another node goes.
type RelayOffers =
    Arc<Mutex<HashMap<Sid, (u64, mpsc::UnboundedSender<RelayOffer>, mpsc::UnboundedSender<()>)>>>;

/// One signaling session. Cheap to clone; the connection closes when every clone
/// and the [`Events`] are dropped, or on [`Client::close`].
#[derive(Clone)]
pub struct Client {
    server_host: String,
    /// Whether the server is reached over TLS (`wss`).
    tls: bool,
    /// What a reconnect signs in with (a refreshed token, a `resume_param`).
    hello: Hello,
    out: mpsc::Sender<Outbound>,
    pending: Pending,
    relay_offers: RelayOffers,
    next_req: Arc<AtomicU64>,
    session_id: String,
    service_id: String,
    user_id: String,
    /// The transports [`Client::start_media`] lets ICE use.
    ice: crate::IceTransport,
    /// The server's TURN servers, with credentials (from the last `welcome` or
    /// `token_refreshed`).
    ice_servers: IceServers,
}

/// The TURN servers and their credentials, renewed by each reconnect and token refresh.
type IceServers = Arc<Mutex<Vec<switchboard_protocol::IceServer>>>;

enum Outbound {
    Msg(ClientMessage),
    Raw(String),
    Close,
}

/// The session's events, in the order the server sent them.
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// The next event; `None` after [`Event::Closed`] has been read.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl Stream for Events {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// `http://h:p` → `ws://h:p/v1/signal`; `ws://` and `wss://` are kept.
pub(crate) fn signal_url(server: &str) -> Result<String, ClientError> {
    let (scheme, rest) = server.split_once("://").ok_or_else(|| ClientError::InvalidUrl(server.into()))?;
    let scheme = match scheme {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        _ => return Err(ClientError::InvalidUrl(server.into())),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(ClientError::InvalidUrl(server.into()));
    }
    let has_path = rest.contains('/');
    Ok(if has_path { format!("{scheme}://{rest}") } else { format!("{scheme}://{rest}{SIGNAL_PATH}") })
}

impl Client {
    /// Connects and says hello. `server` is the base URL (`http://127.0.0.1:7880`
    /// or `ws://…`).
    ///
    /// A dropped connection is connected again and every call and room resumed
    /// ([`Event::Reconnecting`], [`Event::Reconnected`]); media goes on meanwhile.
    pub async fn connect(server: &str, credentials: Credentials) -> Result<(Client, Events), ClientError> {
        let hello = match &credentials {
            Credentials::Token { service_id, user_id, token } => ClientMessage::Hello {
                v: PROTOCOL_VERSION,
                token: Some(token.clone()),
                service_id: Some(service_id.clone()),
                user_id: Some(user_id.clone()),
                cc_param: None,
                ue_type: Some("UE_TYPE_UNDEFINED".into()),
                engine: false,
                multi_device: false,
                instance: None,
            },
            Credentials::CcParam(p) => ClientMessage::Hello {
                v: PROTOCOL_VERSION,
                token: None,
                service_id: None,
                user_id: None,
                cc_param: Some(p.clone()),
                ue_type: Some("UE_TYPE_UNDEFINED".into()),
                engine: false,
                multi_device: false,
                instance: None,
            },
        };
        Client::connect_hello(server, hello).await
    }

    /// Connects and says `hello`.
    pub(crate) async fn connect_hello(
        server: &str,
        hello: ClientMessage,
    ) -> Result<(Client, Events), ClientError> {
        let url = signal_url(server)?;
        let (ws, welcome) = dial(&url, &hello).await?;
        let Welcome { session_id, service_id, user_id, heartbeat, grace, ice_servers } = welcome;
        let (out_tx, out_rx) = mpsc::channel(256);
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let pending: Pending = Arc::default();
        let relay_offers: RelayOffers = Arc::default();
        let hello: Hello = Arc::new(Mutex::new(hello));
        let ice_servers: IceServers = Arc::new(Mutex::new(ice_servers));
        tokio::spawn(run(
            ws,
            out_rx,
            Routes { events: ev_tx, pending: pending.clone(), relay_offers: relay_offers.clone() },
            heartbeat,
            Redial { url: url.clone(), hello: hello.clone(), grace, ice_servers: ice_servers.clone() },
        ));
        let server_host = url.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or("").to_string();
        let client = Client {
            server_host,
            tls: url.starts_with("wss://"),
            hello,
            out: out_tx,
            pending,
            relay_offers,
            next_req: Arc::new(AtomicU64::new(1)),
            session_id,
            service_id,
            user_id,
            ice: crate::IceTransport::default(),
            ice_servers,
        };
        Ok((client, Events { rx: ev_rx }))
    }

    /// The same session, whose [`Client::start_media`] lets ICE use only `ice` (UDP,
    /// TCP; by default whichever works).
    pub fn with_ice_transport(mut self, ice: crate::IceTransport) -> Self {
        self.ice = ice;
        self
    }

    /// The transports this client's media may use.
    pub fn ice_transport(&self) -> crate::IceTransport {
        self.ice
    }

    /// The server's TURN servers with this session's credentials (from `welcome`,
    /// renewed by each reconnect and [`Client::refresh_token`]).
    pub fn ice_servers(&self) -> Vec<switchboard_protocol::IceServer> {
        self.ice_servers.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The server's ID for this session.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// My service.
    pub fn service_id(&self) -> &str {
        &self.service_id
    }

    /// My user ID.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    pub(crate) async fn request(
        &self,
        build: impl FnOnce(Option<u64>) -> ClientMessage,
    ) -> Result<ServerMessage, ClientError> {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().map_err(|_| ClientError::Closed)?.insert(req, tx);
        if self.out.send(Outbound::Msg(build(Some(req)))).await.is_err() {
            return Err(ClientError::Closed);
        }
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, rx).await;
        if let Ok(mut p) = self.pending.lock() {
            p.remove(&req);
        }
        match answer {
            Err(_) => Err(ClientError::Timeout),
            Ok(Err(_)) => Err(ClientError::Closed),
            Ok(Ok(ServerMessage::Error { error, reason, message, .. })) => {
                Err(ClientError::Server { error, reason, message })
            }
            Ok(Ok(ServerMessage::StartFailed { reason, message, .. })) => {
                Err(ClientError::StartFailed { reason, message })
            }
            Ok(Ok(m)) => Ok(m),
        }
    }

    /// Starts a call; resolves with its `sid` once the server created it.
    pub async fn make_call(&self, p: MakeCall) -> Result<Sid, ClientError> {
        let answer = self
            .request(|req| ClientMessage::MakeCall {
                req,
                to_user_id: p.to_user_id,
                to_service_id: p.to_service_id,
                media_type: p.media_type,
                app_data: p.app_data,
                ring_timeout_secs: p.ring_timeout_secs,
            })
            .await?;
        match answer {
            ServerMessage::CallCreated { sid, .. } => Ok(sid),
            other => Err(unexpected(other)),
        }
    }

    /// Takes up the call a `cc_param` names; it now rings on this device.
    pub async fn verify_call(&self, cc_param: &str) -> Result<Verified, ClientError> {
        let answer =
            self.request(|req| ClientMessage::VerifyCall { req, cc_param: cc_param.to_string() }).await?;
        match answer {
            ServerMessage::Verified { sid, from_service_id, from_user_id, media_type, app_data, .. } => {
                Ok(Verified { sid, from_service_id, from_user_id, media_type, app_data })
            }
            ServerMessage::Disconnected { reason, source, .. } => {
                Err(ClientError::Disconnected { reason, by: source })
            }
            other => Err(unexpected(other)),
        }
    }

    /// Answers a verified call; resolves when it is connected.
    pub async fn accept_call(&self, sid: &Sid) -> Result<(), ClientError> {
        match self.request(|req| ClientMessage::AcceptCall { req, sid: sid.clone() }).await? {
            ServerMessage::Connected { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Ends a call (cancel, decline or hang up). `reason` is a client-reported reason
    /// (CELL_CALL, USER_ERROR with `user_rel_code`, …); `None` lets the server
    /// decide from the call's state.
    pub async fn end_call(
        &self,
        sid: &Sid,
        reason: Option<DisconnectReason>,
        user_rel_code: Option<String>,
    ) -> Result<(), ClientError> {
        let answer = self
            .request(|req| ClientMessage::EndCall {
                req,
                sid: sid.clone(),
                reason: reason.map(|r| r.code()),
                user_rel_code,
            })
            .await?;
        match answer {
            ServerMessage::Disconnected { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// After reconnecting: takes this session back into a live call.
    pub async fn resume(&self, sid: &Sid) -> Result<String, ClientError> {
        match self.request(|req| ClientMessage::Resume { req, sid: sid.clone() }).await? {
            ServerMessage::Resumed { state, .. } => Ok(state),
            ServerMessage::Disconnected { reason, source, .. } => {
                Err(ClientError::Disconnected { reason, by: source })
            }
            other => Err(unexpected(other)),
        }
    }

    /// Joins (or creates) a room; resolves once this session is in it (`evtConnected`).
    /// A room that refuses the join (ROOM_IS_FULL, …) rejects with
    /// [`ClientError::Disconnected`]; bad parameters with [`ClientError::StartFailed`].
    /// Media then starts with [`Client::start_media`] on the room's `sid`.
    pub async fn join_conference(&self, p: JoinConference) -> Result<RoomJoined, ClientError> {
        let answer = self
            .request(|req| ClientMessage::JoinRoom {
                req,
                room_id: p.room_id,
                room_service_id: p.room_service_id,
                media_type: p.media_type,
                display_name: p.display_name,
                app_data: p.app_data,
                mic_muted: Some(!p.mic_on),
                video_enabled: Some(p.camera_on),
            })
            .await?;
        room_joined(answer)
    }

    /// Leaves a room; resolves once the server took this session out.
    pub async fn leave_conference(&self, sid: &Sid) -> Result<(), ClientError> {
        match self.request(|req| ClientMessage::LeaveRoom { req, sid: sid.clone() }).await? {
            ServerMessage::Disconnected { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Starts receiving `user_id`'s video in room `sid` (`requestPeerVideo`): the relay
    /// forwards nobody's video until asked, and asks the sender for a keyframe so that
    /// it decodes at once. `resolution` is `qvga`, `vga` or `hd`.
    pub async fn request_peer_video(
        &self,
        sid: &Sid,
        user_id: &str,
        resolution: Option<&str>,
    ) -> Result<(), ClientError> {
        let answer = self
            .request(|req| ClientMessage::RequestPeerVideo {
                req,
                sid: sid.clone(),
                user_id: user_id.to_string(),
                resolution: resolution.map(str::to_string),
            })
            .await?;
        match answer {
            ServerMessage::PeerVideo { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Stops receiving `user_id`'s video in room `sid` (`removePeerVideo`).
    pub async fn remove_peer_video(&self, sid: &Sid, user_id: &str) -> Result<(), ClientError> {
        let answer = self
            .request(|req| ClientMessage::RemovePeerVideo {
                req,
                sid: sid.clone(),
                user_id: user_id.to_string(),
            })
            .await?;
        match answer {
            ServerMessage::PeerVideo { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Sends short data (`data_type` ≤ 100 bytes, `data` ≤ 800 bytes) to the other
    /// participants of room `sid`, or only to `targets`.
    pub async fn send_short_data(
        &self,
        sid: &Sid,
        data_type: &str,
        data: &str,
        targets: Option<Vec<String>>,
    ) -> Result<(), ClientError> {
        let msg = ClientMessage::ShortData {
            req: None,
            sid: sid.clone(),
            data_type: data_type.to_string(),
            data: data.to_string(),
            targets,
        };
        self.out.send(Outbound::Msg(msg)).await.map_err(|_| ClientError::Closed)
    }

    /// Hands a fresh access token without dropping the session; resolves with its expiry.
    /// A reconnect signs in with it too.
    pub async fn refresh_token(&self, token: &str) -> Result<u64, ClientError> {
        if let Ok(mut hello) = self.hello.lock() {
            if let ClientMessage::Hello { token: t @ Some(_), .. } = &mut *hello {
                *t = Some(token.to_string());
            }
        }
        match self.request(|req| ClientMessage::RefreshToken { req, token: token.to_string() }).await? {
            ServerMessage::TokenRefreshed { expires_at, ice_servers, .. } => {
                if !ice_servers.is_empty() {
                    if let Ok(mut s) = self.ice_servers.lock() {
                        *s = ice_servers;
                    }
                }
                Ok(expires_at)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Sends a raw text frame (for tests of the server's input handling).
    pub async fn send_raw(&self, text: impl Into<String>) -> Result<(), ClientError> {
        self.out.send(Outbound::Raw(text.into())).await.map_err(|_| ClientError::Closed)
    }

    /// The `host:port` of the signaling server (to pick the local address media uses).
    /// The server's HTTP base URL (`http://host:port`, `https://…` for `wss`).
    pub(crate) fn http_base(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.server_host)
    }

    /// The access token this client signs in with (the latest refreshed one).
    pub(crate) fn token(&self) -> Option<String> {
        match self.hello.lock().ok()?.clone() {
            ClientMessage::Hello { token, .. } => token,
            _ => None,
        }
    }

    pub(crate) fn server_host(&self) -> &str {
        &self.server_host
    }

    /// Sends a WebRTC offer for call `sid` to the server's relay; returns its answer.
    pub(crate) async fn media_offer(&self, sid: &Sid, sdp: String) -> Result<String, ClientError> {
        match self.request(|req| ClientMessage::MediaOffer { req, sid: sid.clone(), sdp }).await? {
            ServerMessage::MediaAnswer { sdp, .. } => Ok(sdp),
            other => Err(unexpected(other)),
        }
    }

    /// Sends the answer to the relay's offer for call `sid`.
    pub(crate) fn media_answer(&self, sid: &Sid, offer_id: u64, sdp: String) {
        let msg = ClientMessage::MediaAnswer { sid: sid.clone(), offer_id, sdp };
        let _ = self.out.try_send(Outbound::Msg(msg));
    }

    /// Asks the relay for a line to send `kind` on in call `sid`.
    pub(crate) fn add_media(&self, sid: &Sid, kind: &str) {
        let msg = ClientMessage::AddMedia { sid: sid.clone(), kind: kind.to_string() };
        let _ = self.out.try_send(Outbound::Msg(msg));
    }

    /// Routes the relay's offers for call `sid` to the first returned receiver, and word
    /// that the call moved to another node (`resumed.new_media`) to the second.
    pub(crate) fn register_media(
        &self,
        sid: &Sid,
    ) -> (u64, mpsc::UnboundedReceiver<RelayOffer>, mpsc::UnboundedReceiver<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (moved_tx, moved_rx) = mpsc::unbounded_channel();
        let token = self.next_req.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.relay_offers.lock() {
            m.insert(sid.clone(), (token, tx, moved_tx));
        }
        (token, rx, moved_rx)
    }

    /// Stops routing the relay's offers for call `sid`.
    pub(crate) fn unregister_media(&self, sid: &Sid, token: u64) {
        if let Ok(mut m) = self.relay_offers.lock() {
            if m.get(sid).is_some_and(|(t, _, _)| *t == token) {
                m.remove(sid);
            }
        }
    }

    /// Tells the peer my microphone / camera state.
    pub async fn set_media_state(
        &self,
        sid: &Sid,
        mic_muted: Option<bool>,
        video_enabled: Option<bool>,
    ) -> Result<(), ClientError> {
        self.out
            .send(Outbound::Msg(ClientMessage::MediaState {
                sid: sid.clone(),
                mic_muted,
                video_enabled,
                video_paused: None,
            }))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = self.out.send(Outbound::Close).await;
    }
}

/// The answer of a join (`join_room`, and the engine's `calls`, `accept`, `join_call`
/// of a group call): in the room, or refused by it.
pub(crate) fn room_joined(m: ServerMessage) -> Result<RoomJoined, ClientError> {
    match m {
        ServerMessage::RoomJoined {
            sid,
            room_id,
            room_service_id,
            media_type,
            host_id,
            setup_time,
            peers,
            ..
        } => Ok(RoomJoined { sid, room_id, room_service_id, media_type, host_id, setup_time, peers }),
        ServerMessage::Disconnected { reason, source, .. } => {
            Err(ClientError::Disconnected { reason, by: source })
        }
        other => Err(unexpected(other)),
    }
}

pub(crate) fn unexpected(m: ServerMessage) -> ClientError {
    ClientError::Server {
        error: switchboard_protocol::ErrorCode::Internal,
        reason: None,
        message: format!("unexpected answer {}", m.to_json()),
    }
}

fn to_event(m: &ServerMessage) -> Option<Event> {
    Some(match m.clone() {
        ServerMessage::WaitConnected { sid } => Event::WaitConnected { sid },
        ServerMessage::IncomingCall {
            sid,
            from_service_id,
            from_user_id,
            media_type,
            app_data,
            cc_param,
            ..
        } => Event::IncomingCall { sid, from_service_id, from_user_id, media_type, app_data, cc_param },
        ServerMessage::Verified { sid, from_service_id, from_user_id, media_type, app_data, .. } => {
            Event::Verified(Verified { sid, from_service_id, from_user_id, media_type, app_data })
        }
        ServerMessage::Connected { sid, start_time, resume_param, .. } => {
            Event::Connected { sid, start_time, resume_param }
        }
        ServerMessage::Disconnected { sid, reason, source, by_remote, user_rel_code, .. } => {
            Event::Disconnected { sid, reason, source, by_remote, user_rel_code }
        }
        ServerMessage::TokenExpiring { expires_at } => Event::TokenExpiring { expires_at },
        ServerMessage::PeerMediaState { sid, user_id, mic_muted, video_enabled, video_paused } => {
            Event::PeerMediaState { sid, user_id, mic_muted, video_enabled, video_paused }
        }
        ServerMessage::PeerList { sid, added, removed, total } => {
            Event::PeerListUpdated { sid, added, removed, total }
        }
        ServerMessage::MediaLines { sid, lines } => Event::MediaLines { sid, lines },
        ServerMessage::PeerAudioLevels { sid, levels } => Event::AudioLevels { sid, levels },
        ServerMessage::PeersTalking { sid, active, inactive } => Event::Talking { sid, active, inactive },
        ServerMessage::PeersNetworkQuality { sid, quality } => Event::NetworkQuality { sid, quality },
        ServerMessage::ShortData { sid, from_user_id, data_type, data } => {
            Event::ShortData { sid, from_user_id, data_type, data }
        }
        ServerMessage::AppControlMessage { sid, data } => Event::AppControlMessage { sid, data },
        ServerMessage::Error { req: None, error, reason, message } => Event::Error { error, reason, message },
        ServerMessage::CallEvent { call_id, event } => Event::Call { call_id, call_event: event },
        _ => return None,
    })
}

fn req_of(m: &ServerMessage) -> Option<u64> {
    match m {
        ServerMessage::Error { req, .. }
        | ServerMessage::StartFailed { req, .. }
        | ServerMessage::CallCreated { req, .. }
        | ServerMessage::Verified { req, .. }
        | ServerMessage::Connected { req, .. }
        | ServerMessage::Disconnected { req, .. }
        | ServerMessage::Resumed { req, .. }
        | ServerMessage::MediaAnswer { req, .. }
        | ServerMessage::TokenRefreshed { req, .. }
        | ServerMessage::RoomJoined { req, .. }
        | ServerMessage::Done { req }
        | ServerMessage::PeerVideo { req, .. } => *req,
        _ => None,
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Where the connection task delivers what the server sends.
struct Routes {
    events: mpsc::UnboundedSender<Event>,
    pending: Pending,
    relay_offers: RelayOffers,
}

/// What `welcome` told.
struct Welcome {
    session_id: String,
    service_id: String,
    user_id: String,
    heartbeat: Duration,
    grace: Duration,
    ice_servers: Vec<switchboard_protocol::IceServer>,
}

/// Connects, says hello, waits for `welcome`.
async fn dial(url: &str, hello: &ClientMessage) -> Result<(Ws, Welcome), ClientError> {
    // Signaling frames are small: modest buffers keep thousands of sessions cheap.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let tls = if url.starts_with("wss:") {
        Some(tokio_tungstenite::Connector::Rustls(crate::tls::client_config()?))
    } else {
        None
    };
    let connect = tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, tls);
    let (mut ws, _) = connect.await.map_err(|e| match e {
        tokio_tungstenite::tungstenite::Error::Http(resp) if resp.status().as_u16() == 429 => {
            ClientError::Refused {
                reason: DisconnectReason::ServiceTooManyRequests,
                message: "too many connections from this address".into(),
            }
        }
        other => ClientError::Connect(other.to_string()),
    })?;
    ws.send(Message::Text(hello.to_json().into())).await.map_err(|e| ClientError::Connect(e.to_string()))?;
    let welcome = loop {
        let frame =
            tokio::time::timeout(REQUEST_TIMEOUT, ws.next()).await.map_err(|_| ClientError::Timeout)?;
        match frame {
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerMessage>(&t) {
                Ok(m) => break m,
                Err(e) => return Err(ClientError::Connect(format!("bad frame from server: {e}"))),
            },
            Some(Ok(Message::Close(_))) | None => return Err(ClientError::Closed),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ClientError::Connect(e.to_string())),
        }
    };
    match welcome {
        ServerMessage::Welcome {
            session_id,
            service_id,
            user_id,
            heartbeat_secs,
            reconnect_grace_ms,
            ice_servers,
            ..
        } => {
            let grace = reconnect_grace_ms.map_or(DEFAULT_GRACE, Duration::from_millis);
            let heartbeat = Duration::from_secs(u64::from(heartbeat_secs.max(1)));
            Ok((ws, Welcome { session_id, service_id, user_id, heartbeat, grace, ice_servers }))
        }
        ServerMessage::Error { reason, message, .. } => {
            Err(ClientError::Refused { reason: reason.unwrap_or(DisconnectReason::AuthError), message })
        }
        other => Err(ClientError::Connect(format!("expected welcome, got {other:?}"))),
    }
}

/// How the connection task connects again after a drop.
struct Redial {
    url: String,
    hello: Hello,
    grace: Duration,
    ice_servers: IceServers,
}

impl Redial {
    /// Connects again, backing off, until the grace is over.
    async fn again(&self) -> Option<Ws> {
        let until = tokio::time::Instant::now() + self.grace;
        let mut wait = REDIAL_FIRST;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            tokio::time::sleep(wait.min(left)).await;
            wait = (wait * 2).min(REDIAL_MAX);
            let hello = self.hello.lock().ok()?.clone();
            match tokio::time::timeout(left, dial(&self.url, &hello)).await {
                Ok(Ok((ws, welcome))) => {
                    if let Ok(mut s) = self.ice_servers.lock() {
                        *s = welcome.ice_servers;
                    }
                    return Some(ws);
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "reconnect failed; trying again"),
                Err(_) => return None,
            }
        }
    }
}

/// Why [`serve`] stopped.
enum Stop {
    /// We closed it, or the server closed it on purpose: no reconnect.
    Closed(String),
    /// Lost (no close frame, an error, or a close that invites a reconnect).
    Lost(String),
}

/// Close codes after which the client connects again: going away (heartbeat timeout,
/// server stopping), abnormal, internal error, restart, try again later, and policy
/// (token expired: its calls wait for a reconnect with a fresh token).
fn invites_reconnect(code: u16) -> bool {
    matches!(code, 1001 | 1006 | 1008 | 1011 | 1012 | 1013 | 1014)
}

async fn run(
    mut ws: Ws,
    mut out: mpsc::Receiver<Outbound>,
    routes: Routes,
    heartbeat: Duration,
    redial: Redial,
) {
    // The calls and rooms this client is in: resumed after a reconnect.
    let mut live: std::collections::BTreeSet<Sid> = std::collections::BTreeSet::new();
    let reason = loop {
        let why = match serve(&mut ws, &mut out, &routes, heartbeat, &redial.hello, &mut live).await {
            Stop::Closed(why) => break why,
            Stop::Lost(why) => why,
        };
        // Requests sent on the lost connection will not be answered.
        if let Ok(mut p) = routes.pending.lock() {
            p.clear();
        }
        tracing::debug!(reason = %why, "signaling connection lost; reconnecting");
        let _ = routes.events.send(Event::Reconnecting { reason: why.clone() });
        let Some(new) = redial.again().await else {
            break format!("{why}; not back within the reconnect grace");
        };
        ws = new;
        for sid in &live {
            let resume = ClientMessage::Resume { req: None, sid: sid.clone() };
            if ws.send(Message::Text(resume.to_json().into())).await.is_err() {
                break;
            }
        }
        let _ = routes.events.send(Event::Reconnected);
    };
    if let Ok(mut p) = routes.pending.lock() {
        p.clear();
    }
    let _ = routes.events.send(Event::Closed { reason });
}

/// Serves one connection until it ends.
async fn serve(
    ws: &mut Ws,
    out: &mut mpsc::Receiver<Outbound>,
    routes: &Routes,
    heartbeat: Duration,
    hello: &Hello,
    live: &mut std::collections::BTreeSet<Sid>,
) -> Stop {
    let Routes { events, pending, relay_offers } = routes;
    let mut ping = tokio::time::interval(heartbeat);
    ping.tick().await;
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    let Ok(m) = serde_json::from_str::<ServerMessage>(&t) else {
                        tracing::warn!(frame = %t, "unreadable frame from server");
                        continue;
                    };
                    if let ServerMessage::MediaOffer { sid, offer_id, sdp } = &m {
                        let media = relay_offers.lock().ok().and_then(|r| r.get(sid).map(|(_, tx, _)| tx.clone()));
                        match media {
                            Some(media) => { let _ = media.send(RelayOffer { id: *offer_id, sdp: sdp.clone() }); }
                            None => tracing::debug!(%sid, "relay offer for a call without media"),
                        }
                        continue;
                    }
                    if let ServerMessage::Resumed { sid, new_media: true, .. } = &m {
                        // The call moved to another node: its media starts over there.
                        if let Some((_, _, moved)) = relay_offers.lock().ok().as_ref().and_then(|r| r.get(sid)) {
                            let _ = moved.send(());
                        }
                    }
                    track(&m, live, hello);
                    if let Some(ev) = to_event(&m) {
                        let _ = events.send(ev);
                    }
                    if let Some(req) = req_of(&m) {
                        let waiter = pending.lock().ok().and_then(|mut p| p.remove(&req));
                        if let Some(w) = waiter {
                            let _ = w.send(m);
                        }
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.as_ref().map_or(1005, |f| u16::from(f.code));
                    let why = frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_else(|| "closed".into());
                    return if invites_reconnect(code) { Stop::Lost(why) } else { Stop::Closed(why) };
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Stop::Lost(e.to_string()),
                None => return Stop::Lost("connection lost".into()),
            },
            cmd = out.recv() => {
                let frame = match cmd {
                    Some(Outbound::Msg(m)) => m.to_json(),
                    Some(Outbound::Raw(t)) => t,
                    Some(Outbound::Close) | None => {
                        let _ = ws.close(None).await;
                        return Stop::Closed("closed by client".into());
                    }
                };
                if let Err(e) = ws.send(Message::Text(frame.into())).await {
                    return Stop::Lost(e.to_string());
                }
            }
            _ = ping.tick() => {
                if ws.send(Message::Text(ClientMessage::Ping {}.to_json().into())).await.is_err() {
                    return Stop::Lost("send failed".into());
                }
            }
        }
    }
}

/// Keeps `live` (the calls and rooms to resume after a reconnect) and the `hello` a
/// reconnect signs in with (a callee that answered from a cc_param session comes back
/// with its `resume_param`).
fn track(m: &ServerMessage, live: &mut std::collections::BTreeSet<Sid>, hello: &Hello) {
    match m {
        ServerMessage::CallCreated { sid, .. }
        | ServerMessage::RoomJoined { sid, .. }
        | ServerMessage::Resumed { sid, .. } => {
            live.insert(sid.clone());
        }
        ServerMessage::Connected { sid, resume_param, .. } => {
            live.insert(sid.clone());
            if let (Some(param), Ok(mut hello)) = (resume_param, hello.lock()) {
                if let ClientMessage::Hello { cc_param: c @ Some(_), .. } = &mut *hello {
                    *c = Some(param.clone());
                }
            }
        }
        ServerMessage::Disconnected { sid, .. } => {
            live.remove(sid);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::signal_url;

    #[test]
    fn urls() {
        assert_eq!(signal_url("http://127.0.0.1:7880").unwrap(), "ws://127.0.0.1:7880/v1/signal");
        assert_eq!(signal_url("ws://h:1/").unwrap(), "ws://h:1/v1/signal");
        assert_eq!(signal_url("https://h/custom/path").unwrap(), "wss://h/custom/path");
        assert!(signal_url("ftp://h").is_err());
        assert!(signal_url("nope").is_err());
    }
}
