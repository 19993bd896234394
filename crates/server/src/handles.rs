//! Handles: what the edges (the WebSocket sessions, the REST API, the web pages) hold to
//! reach the core task, what a session's outbound frames are, and the state the edges
//! share. `server.rs` wires them to the tasks; the edges never import it, and nothing
//! here imports an edge or the shell.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use switchboard_protocol::ServerMessage;
use tokio::sync::{mpsc, oneshot};

use crate::auth::CcKey;
use crate::config::{Config, ServiceConfig};
use crate::core::{Census, ClientInfo, Input, RoomInfo, SessionAuth};
use crate::ids::{Party, SessionId, Sid};
use crate::limit::KeyedLimiter;
use crate::metrics::Metrics;
use crate::outbox::DeliveryHandle;
use crate::records::LiveCall;
use crate::store::Store;

/// One frame for a session, serialized, with the journal step it waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The step of the core that sent it must be on disk first (0: nothing to wait
    /// for). See `crate::store::journal`.
    pub after: u64,
    /// The JSON text.
    pub text: String,
    /// A frame that records nothing and goes stale (audio levels, who talks, network
    /// quality): sent at once even while frames before it wait for the disk.
    pub overtakes: bool,
}

impl Frame {
    /// A frame of `msg` that waits for step `after`.
    pub fn new(msg: &ServerMessage, after: u64) -> Frame {
        let overtakes = matches!(
            msg,
            ServerMessage::PeerAudioLevels { .. }
                | ServerMessage::PeersTalking { .. }
                | ServerMessage::PeersNetworkQuality { .. }
        );
        Frame { after, text: msg.to_json(), overtakes }
    }
}

/// Outbound frames of one session.
pub type SessionTx = mpsc::Sender<Frame>;

/// Commands to the core task.
pub(crate) enum CoreCmd {
    /// A session authenticated; `welcome` is its first frame, sent once the core knows
    /// the session (so nothing offered to it right after can be missed).
    Open {
        session: SessionId,
        party: Party,
        auth: SessionAuth,
        ip: String,
        client: ClientInfo,
        tx: SessionTx,
        welcome: ServerMessage,
    },
    Input(Input),
    Census(oneshot::Sender<Census>),
    GetCall {
        service_id: String,
        sid: Sid,
        reply: oneshot::Sender<Option<LiveCall>>,
    },
    /// A live group call's record so far, and whether it began.
    GetGroupCall {
        service_id: String,
        sid: Sid,
        reply: oneshot::Sender<Option<(switchboard_protocol::record::GroupCallRecord, bool)>>,
    },
    ForceEnd {
        service_id: String,
        sid: Sid,
        user_rel_code: Option<String>,
        reply: oneshot::Sender<bool>,
    },
    /// The app server reads or controls rooms (REST).
    Room(RoomRequest),
}

/// What the REST API asks of the rooms; each answers on its `reply`.
pub(crate) enum RoomRequest {
    /// The service's live rooms.
    List { service_id: String, reply: oneshot::Sender<Vec<RoomInfo>> },
    /// One live room.
    Get { service_id: String, room_id: String, reply: oneshot::Sender<Option<RoomInfo>> },
    /// Kick users out (USER_ERROR, app_server); the users found, `None`: no room.
    Kick {
        service_id: String,
        room_id: String,
        user_ids: Vec<String>,
        user_rel_code: Option<String>,
        reply: oneshot::Sender<Option<Vec<String>>>,
    },
    /// An app control message to `user_ids` (or all); sessions reached, `None`: no room.
    Message {
        service_id: String,
        room_id: String,
        user_ids: Option<Vec<String>>,
        data: String,
        reply: oneshot::Sender<Option<usize>>,
    },
    /// End the room for everyone; whether it was live.
    Close { service_id: String, room_id: String, user_rel_code: Option<String>, reply: oneshot::Sender<bool> },
}

/// State every connection and request shares (read-mostly).
pub(crate) struct Shared {
    pub config: Config,
    pub services: HashMap<String, ServiceConfig>,
    pub cc_key: CcKey,
    pub core: CoreHandle,
    pub delivery: DeliveryHandle,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub next_session: AtomicU64,
    pub ip_limiter: Mutex<KeyedLimiter<IpAddr>>,
    pub api_limiter: Mutex<KeyedLimiter<String>>,
    /// How far the journal got (frames wait for it).
    pub committed: tokio::sync::watch::Receiver<u64>,
    /// The embedded TURN server's URLs and credential secret, if it runs.
    pub turn: Option<TurnInfo>,
}

/// What `welcome` needs to hand out TURN credentials.
#[derive(Clone)]
pub(crate) struct TurnInfo {
    /// `turn:` URLs.
    pub urls: Vec<String>,
    /// The secret credentials are derived from.
    pub secret: Vec<u8>,
    /// How long credentials are good.
    pub ttl_secs: u64,
}

/// The core is gone (the server is stopping).
#[derive(Debug)]
pub(crate) struct Stopped;

/// The way to the core task.
#[derive(Clone)]
pub(crate) struct CoreHandle(mpsc::Sender<CoreCmd>);

impl CoreHandle {
    pub fn new(tx: mpsc::Sender<CoreCmd>) -> Self {
        Self(tx)
    }

    /// Sends a command, waiting while the core's queue is full.
    pub async fn send(&self, cmd: CoreCmd) -> Result<(), Stopped> {
        self.0.send(cmd).await.map_err(|_| Stopped)
    }

    /// Asks the core something and waits for its answer.
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> CoreCmd) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| Stopped)
    }

    /// Live counts (zero once the core stopped).
    pub async fn census(&self) -> Census {
        self.ask(CoreCmd::Census).await.unwrap_or_default()
    }
}
