//! Handles: what the edges (the WebSocket sessions, the REST API, the web pages) and
//! the delivery task hold to reach the call core and the delivery task, and the state
//! the edges share. `server.rs` wires them to the tasks; the edges never import it,
//! and nothing here imports an edge or the shell.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use switchboard_protocol::ServerMessage;
use tokio::sync::{mpsc, oneshot};

use crate::auth::CcKey;
use crate::call::{Census, Input, LiveCall, SessionAuth, SessionId};
use crate::config::{Config, ServiceConfig};
use crate::limit::KeyedLimiter;
use crate::metrics::Metrics;
use crate::outbox::Failure;
use crate::store::{CallbackRow, Store};

/// Outbound frames of one session, already serialized.
pub type SessionTx = mpsc::Sender<String>;

/// Commands to the core task.
pub(crate) enum CoreCmd {
    /// A session authenticated; `welcome` is its first frame, sent once the core knows
    /// the session (so nothing offered to it right after can be missed).
    Open {
        session: SessionId,
        party: crate::call::Party,
        auth: SessionAuth,
        ip: String,
        ue_type: String,
        tx: SessionTx,
        welcome: ServerMessage,
    },
    Input(Input),
    Census(oneshot::Sender<Census>),
    GetCall {
        service_id: String,
        sid: String,
        reply: oneshot::Sender<Option<LiveCall>>,
    },
    ForceEnd {
        service_id: String,
        sid: String,
        user_rel_code: Option<String>,
        reply: oneshot::Sender<bool>,
    },
    /// A session's outbox overflowed: forget its sender so its connection closes.
    DropSession(SessionId),
    /// The app server reads or controls rooms (REST).
    Room(RoomRequest),
}

/// What the REST API asks of the rooms; each answers on its `reply`.
pub(crate) enum RoomRequest {
    /// The service's live rooms.
    List { service_id: String, reply: oneshot::Sender<Vec<crate::room::RoomInfo>> },
    /// One live room.
    Get { service_id: String, room_id: String, reply: oneshot::Sender<Option<crate::room::RoomInfo>> },
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
}

/// Commands to the delivery task.
pub(crate) enum DeliveryCmd {
    /// Stored callbacks to deliver.
    Enqueue(Vec<CallbackRow>),
    /// An attempt finished.
    Done { service_id: String, key: String, id: i64, result: Result<(), Failure> },
}

/// The call core is gone (the server is stopping).
#[derive(Debug)]
pub(crate) struct Stopped;

/// The way to the call core task.
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

    /// Sends a command unless the core's queue is full.
    pub fn try_send(&self, cmd: CoreCmd) -> bool {
        self.0.try_send(cmd).is_ok()
    }

    /// Sends an input.
    pub async fn input(&self, input: Input) -> Result<(), Stopped> {
        self.send(CoreCmd::Input(input)).await
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

/// The way to the callback delivery task.
#[derive(Clone)]
pub(crate) struct DeliveryHandle(mpsc::UnboundedSender<DeliveryCmd>);

impl DeliveryHandle {
    pub fn new(tx: mpsc::UnboundedSender<DeliveryCmd>) -> Self {
        Self(tx)
    }

    /// Hands a command to the delivery task; false once it stopped.
    pub fn send(&self, cmd: DeliveryCmd) -> bool {
        self.0.send(cmd).is_ok()
    }
}
