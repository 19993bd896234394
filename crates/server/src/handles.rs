//! Handles: what the edges (the WebSocket sessions, the REST API, the web pages) hold to
//! reach the core task, what a session's outbound frames are, and the state the edges
//! share. `server.rs` wires them to the tasks; the edges never import it, and nothing
//! here imports an edge or the shell.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use switchboard_protocol::{IceServer, ServerMessage};
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
    /// the session (so nothing offered to it right after can be missed). A proxy of a
    /// client connected to another node has none: that node welcomed it.
    Open {
        session: SessionId,
        party: Party,
        auth: SessionAuth,
        ip: String,
        client: ClientInfo,
        tx: SessionTx,
        welcome: Option<ServerMessage>,
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
    /// Stop taking new calls and rooms (the node drains before it stops); those live go
    /// on.
    Drain,
    /// The number of the last step handed to the journal.
    Step(oneshot::Sender<u64>),
    /// The connected calls and the rooms, as snapshots (to hand over to another node).
    Movable(oneshot::Sender<(Vec<LiveCall>, Vec<crate::records::LiveRoom>)>),
    /// Let go of these calls and rooms (another node runs them now); the sessions that
    /// were in them (their clients resume them there).
    Release(Vec<Sid>, oneshot::Sender<Vec<SessionId>>),
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
    /// The load balancers whose forwarded client addresses are believed.
    pub proxies: crate::proxies::TrustedProxies,
}

/// What `welcome` needs to hand out the embedded TURN server's credentials.
#[derive(Clone)]
pub(crate) struct TurnInfo {
    /// `turn:` URLs (UDP and TCP), and a `turns:` one when TLS is terminated in front.
    pub urls: Vec<String>,
    /// TURN over TLS shares the signaling listener's port: `turns:` at the host and port
    /// the client reached signaling by.
    pub tls_shared: bool,
    /// TURN over TLS on a port of its own: `turns:` at that host, this port.
    pub tls_port: Option<u16>,
    /// The secret credentials are derived from.
    pub secret: Vec<u8>,
    /// How long credentials are good.
    pub ttl_secs: u64,
}

/// The ICE servers `welcome` hands `user` (`service:user`) who reached signaling at
/// `host` (the Host header): the embedded TURN server, then the external ones, each with
/// TURN REST credentials good for the configured time.
pub(crate) fn ice_servers(shared: &Shared, user: &str, host: Option<&str>, now_secs: u64) -> Vec<IceServer> {
    let ttl = shared.config.turn_credential_ttl_secs;
    let mut out = Vec::new();
    if let Some(t) = &shared.turn {
        let mut urls = t.urls.clone();
        if let Some((name, port)) = host.and_then(split_host) {
            if t.tls_shared {
                urls.push(format!("turns:{name}:{}?transport=tcp", port.unwrap_or(443)));
            }
            if let Some(p) = t.tls_port {
                urls.push(format!("turns:{name}:{p}?transport=tcp"));
            }
        }
        let (username, credential) = crate::turn::credentials(&t.secret, user, now_secs, t.ttl_secs);
        out.push(IceServer { urls, username, credential });
    }
    for ext in &shared.config.turn_servers {
        let (username, credential) = crate::turn::credentials(ext.secret.as_bytes(), user, now_secs, ttl);
        out.push(IceServer { urls: ext.urls.clone(), username, credential });
    }
    out
}

/// A Host header's name and port (`example.com:8443`, `[::1]:443`, `example.com`);
/// None for what is not a plain host.
fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !n.is_empty() && (!n.contains(':') || n.ends_with(']')) => (n, Some(p.parse().ok()?)),
        _ => (host, None),
    };
    let plain = |b: u8| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b);
    (!name.is_empty() && name.bytes().all(plain)).then_some((name, port))
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

    /// Sends a command unless the core's queue is full (from a thread that may not wait
    /// on the core).
    pub fn try_send(&self, cmd: CoreCmd) -> Result<(), Stopped> {
        self.0.try_send(cmd).map_err(|_| Stopped)
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

#[cfg(test)]
mod tests {
    use super::split_host;

    #[test]
    fn host_headers_split_into_name_and_port() {
        assert_eq!(split_host("example.com:8443"), Some(("example.com", Some(8443))));
        assert_eq!(split_host("example.com"), Some(("example.com", None)));
        assert_eq!(split_host("127.0.0.1:7880"), Some(("127.0.0.1", Some(7880))));
        assert_eq!(split_host("[::1]:443"), Some(("[::1]", Some(443))));
        assert_eq!(split_host("[::1]"), Some(("[::1]", None)));
        // Nothing a URL could be built from.
        assert_eq!(split_host("a b:1"), None);
        assert_eq!(split_host("evil.com/x?"), None);
        assert_eq!(split_host("h:port"), None);
        assert_eq!(split_host(""), None);
    }
}
