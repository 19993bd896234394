//! Nodes of one deployment, joined by Redis (with `redis_url`). Any node takes any
//! client; each call and room lives on one node, its owner, which runs it in its core as
//! a single node does, and whose relay carries its media. What lives where:
//!
//! - **Registry**: `sb:node:{node}`, written every second with a 3 s expiry: the node is up.
//! - **Placement**: `sb:room:{service}:{room_id}` names the node a room is created on,
//!   set once by a script that replaces it only when that node is gone (never two).
//! - **Presence**: `sb:presence:{service}:{user}`, one field per signed-in session
//!   (`{node}/{session}`): the devices a call from another node must ring.
//! - **Bus**: the channel `sb:bus:{node}`, signed messages (see [`bus`]). A client's
//!   node (its edge) relays the client's messages about a call or room to the owner;
//!   the owner runs a proxy session for it ([`proxies`]) and relays its frames back.
//!
//! Which node owns a live call or room is also in the database (its live row's node),
//! where an edge that does not know a sid looks it up ([`edge`]).

pub(crate) mod bus;
pub(crate) mod directory;
pub(crate) mod edge;
pub(crate) mod proxies;
pub(crate) mod routes;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot, watch};

use crate::auth::CcKey;
use crate::clock::now_ms;
use crate::core::{Input, SessionAuth};
use crate::handles::{CoreCmd, CoreHandle, RoomRequest};
use crate::ids::{Party, Sid};
use crate::metrics::Metrics;
use crate::store::Store;
use bus::Remote;
use bus::{BusKey, BusMsg};
use proxies::ProxyCmd;

/// How often a node says it is up. Its entry lives three beats: a node's death is seen
/// 2-4 s after it, which is most of the time its calls are silent before they move.
const ALIVE_EVERY: Duration = Duration::from_secs(1);

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis refused or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The configuration lacks what a cluster needs.
    #[error("cluster: {0}")]
    Config(&'static str),
    /// TLS to Redis cannot be set up.
    #[error("redis TLS: {0}")]
    Tls(String),
}

/// The way to send to other nodes: signed messages on their bus channels.
#[derive(Clone)]
pub(crate) struct Link {
    me: Arc<str>,
    /// This process among the node's lives (drawn at start).
    boot: u64,
    metrics: Arc<Metrics>,
    key: Arc<BusKey>,
    conn: ConnectionManager,
}

impl Link {
    /// Sends `msg` to `to`, trying again for up to `within` while Redis cannot be
    /// reached or nobody listens on `to`'s channel (it is subscribing again after Redis
    /// came back, or it is gone); false if it never got there.
    pub async fn send(&self, to: &str, msg: &BusMsg, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        let mut pause = Duration::from_millis(50);
        loop {
            let text = self.key.seal(&self.me, to, now_ms(), msg);
            let sent: Result<i64, _> = redis::cmd("PUBLISH")
                .arg(bus::channel(to))
                .arg(text)
                .query_async(&mut self.conn.clone())
                .await;
            match sent {
                Ok(n) if n > 0 => {
                    self.metrics.bus_sent.inc();
                    return true;
                }
                Ok(_) => tracing::debug!(to, "bus: nobody listens on the node's channel"),
                Err(e) => tracing::debug!(to, error = %e, "bus: cannot publish"),
            }
            if tokio::time::Instant::now() + pause > deadline {
                tracing::warn!(to, "bus: a message not delivered");
                self.metrics.bus_undelivered.inc();
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}

/// How long a client's message may wait for its owner's node (the client then hears
/// SERVICE_BUSY), a frame for a client the edge's node, and a session's end.
pub(crate) const TO_OWNER: Duration = Duration::from_millis(1500);
pub(crate) const TO_EDGE: Duration = Duration::from_secs(30);
pub(crate) const ENDED: Duration = Duration::from_secs(5);

/// What another node says to one of this node's client sessions.
#[derive(Debug)]
pub(crate) enum Relayed {
    /// A frame for the client.
    Frame { from: String, text: String, overtakes: bool },
    /// `from` holds a proxy of the session (to be told when it ends).
    Owner { from: String },
    /// `from` let go of the session's proxy: the client must come back.
    Dropped { from: String },
    /// `from` is gone (it died). `moved`: a node took its calls and rooms over (the
    /// edge resumes them there for the client); else they are over.
    OwnerGone { from: String, moved: bool },
    /// `from` handed the calls and rooms `sids` over to node `to`: the edge resumes them
    /// there for the client.
    Moved { to: String, sids: Vec<String> },
}

/// This node's membership of the deployment.
pub(crate) struct Cluster {
    link: Link,
    /// This node's client sessions, by number: where frames from other nodes go, and
    /// who they are (to list them again after Redis lost them).
    locals: Mutex<HashMap<u64, Local>>,
    proxies: mpsc::UnboundedSender<ProxyCmd>,
    store: Store,
    cc_key: CcKey,
    core: CoreHandle,
    services: Vec<String>,
    /// This node takes no new calls or rooms: its clients' go to other nodes.
    draining: AtomicBool,
    /// The nodes that hold proxies of this node's sessions, with those sessions: when one
    /// is gone, its calls and rooms are over for them.
    owners: Mutex<HashMap<String, HashSet<u64>>>,
    /// What Redis held of this node must be written again (it restarted empty).
    rejoin: AtomicBool,
    replays: Mutex<bus::Replays>,
    /// Handovers of this draining node waiting for the other node's word (the sids it
    /// took), by id.
    handovers: Mutex<HashMap<u64, oneshot::Sender<Vec<String>>>>,
    /// Until when this draining node stays up after handing its calls over: its relay
    /// carries their media until the clients have moved.
    lingers_until: Mutex<Option<tokio::time::Instant>>,
}

/// One client session of this node.
struct Local {
    tx: mpsc::Sender<Relayed>,
    remote: Remote,
}

/// The deployment this node is one of, if any (with `redis_url`): what the signaling
/// edge needs to reach the other nodes.
#[derive(Clone)]
pub(crate) struct Nodes(pub Option<Arc<Cluster>>);

/// The `cc_param` key of a deployment: the same on every node, so that a callee woken
/// by a push may reach any of them.
pub(crate) fn cc_key(secret: &str) -> CcKey {
    CcKey::new(crate::auth::hmac_sha256(secret.as_bytes(), b"switchboard cc_param v1").to_vec())
}

/// Joins the deployment: this node says it is up and listens on its bus channel.
pub(crate) async fn start(
    config: &crate::config::Config,
    core: CoreHandle,
    committed: watch::Receiver<u64>,
    store: Store,
    cc_key: CcKey,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> Result<Arc<Cluster>, ClusterError> {
    let (Some(url), Some(node), Some(secret)) = (&config.redis_url, &config.node_id, &config.cluster_secret)
    else {
        return Err(ClusterError::Config("redis_url needs node_id and cluster_secret"));
    };
    let client = redis_client(url, config.backend_ca_file.as_deref())?;
    let settings = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2);
    let conn = client.get_connection_manager_with_config(settings).await?;
    let boot = rand::random::<u64>() >> 1;
    let link =
        Link { me: node.as_str().into(), boot, metrics, key: Arc::new(BusKey::new(secret.as_bytes())), conn };
    directory::write_entry(&link, directory::Entry { boot, draining: false, sessions: 0 }).await?;
    let (proxy_tx, proxy_rx) = mpsc::unbounded_channel();
    let cluster = Arc::new(Cluster {
        link: link.clone(),
        locals: Mutex::default(),
        proxies: proxy_tx,
        store,
        cc_key,
        core: core.clone(),
        services: config.services.iter().map(|s| s.id.clone()).collect(),
        draining: AtomicBool::new(false),
        owners: Mutex::default(),
        rejoin: AtomicBool::new(false),
        replays: Mutex::default(),
        handovers: Mutex::default(),
        lingers_until: Mutex::default(),
    });
    tokio::spawn(proxies::run(cluster.proxies.clone(), proxy_rx, core, committed, link));
    tokio::spawn(listen(client, cluster.clone(), stop.clone()));
    tokio::spawn(heartbeat(cluster.clone(), stop));
    tracing::info!(node = %node, "joined the deployment");
    Ok(cluster)
}

/// A client of the Redis at `url`: over TLS for `rediss://`, its certificate checked
/// against `ca_file`'s CAs (else the system's).
fn redis_client(url: &str, ca_file: Option<&std::path::Path>) -> Result<redis::Client, ClusterError> {
    if !url.starts_with("rediss://") {
        return Ok(redis::Client::open(url)?);
    }
    // The Redis client builds its TLS with the process's crypto provider: the one the
    // server's own TLS uses.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let root_cert = match ca_file {
        Some(path) => {
            let pem =
                std::fs::read(path).map_err(|e| ClusterError::Tls(format!("{}: {e}", path.display())))?;
            if crate::backend_tls::pem_certs(&pem).map_err(ClusterError::Tls)?.is_empty() {
                return Err(ClusterError::Tls(format!("{}: no certificate in it", path.display())));
            }
            Some(pem)
        }
        None => None,
    };
    Ok(redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert })?)
}

/// A node whose registry entry was missing this many times in a row (a second apart) is
/// gone.
const MISSES: u32 = 5;
/// A node whose registry entry expired and that has written nothing to the database for
/// this long is dead: its calls and rooms are taken over. Its store writes every second.
const SILENT_MS: u64 = 3_000;
/// Every this many heartbeats, the node places its live rooms again (their placement
/// outlives a quiet day, and comes back after Redis lost it).
const PLACE_EVERY: u32 = 30;
/// Every this many heartbeats (an hour), the node lists its sessions again.
const RELIST_EVERY: u32 = 3600;

/// Keeps the registry entry fresh; lists this node's sessions and places its rooms again
/// when Redis lost them; and ends the proxies of clients whose node is gone.
async fn heartbeat(cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(ALIVE_EVERY);
    let mut missed: HashMap<String, u32> = HashMap::new();
    let mut beats = 0u32;
    let mut rejoining: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        beats = beats.wrapping_add(1);
        match directory::write_entry(&cluster.link, cluster.entry()).await {
            Ok(true) => {}
            Ok(false) => {
                // Redis restarted (or this node was cut off from it): what it held of this
                // node is gone, and the other nodes' entries may be back only soon.
                tracing::warn!("this node's registry entry was gone: listing its sessions and rooms again");
                missed.clear();
                cluster.rejoin.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot write this node's registry entry");
                missed.clear();
                continue;
            }
        }
        // Presence expires a day after its last write: long sessions are listed again.
        if beats.is_multiple_of(RELIST_EVERY) {
            cluster.rejoin.store(true, Ordering::Relaxed);
        }
        if cluster.rejoin.load(Ordering::Relaxed) && rejoining.as_ref().is_none_or(|t| t.is_finished()) {
            // Apart from the beats, which must go on whatever this takes.
            let c = cluster.clone();
            rejoining = Some(tokio::spawn(async move {
                if c.rejoin().await {
                    c.rejoin.store(false, Ordering::Relaxed);
                }
            }));
        } else if beats.is_multiple_of(PLACE_EVERY) {
            let c = cluster.clone();
            tokio::spawn(async move { c.place_rooms().await });
        }
        let (tx, rx) = oneshot::channel();
        if cluster.proxies.send(ProxyCmd::Edges(tx)).is_err() {
            return;
        }
        let Ok(edges) = rx.await else { return };
        let owners: Vec<String> =
            cluster.owners.lock().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        let mut nodes: Vec<String> = edges.iter().map(|(n, _)| n.clone()).collect();
        nodes.extend(owners.iter().cloned());
        match directory::nodes(&cluster.link).await {
            Ok(all) => nodes.extend(all.into_iter().filter(|n| *n != *cluster.link.me)),
            Err(e) => tracing::debug!(error = %e, "cannot list the nodes"),
        }
        nodes.sort();
        nodes.dedup();
        let Ok(up) = directory::entries(&cluster.link, &nodes).await else { continue };
        // A node whose entry expired may have died: if the database says so too, its calls
        // and rooms go on here (or on the node that claimed them first).
        let mut moved = HashSet::new();
        // A draining node takes nothing over: it is about to go itself.
        for node in nodes.iter().filter(|n| !up.contains_key(*n) && !cluster.draining()) {
            if cluster.take_over(node).await {
                moved.insert(node.clone());
                cluster.owner_gone(node, true);
            }
        }
        missed.retain(|n, _| nodes.contains(n));
        // Missing for three beats in a row: gone.
        let mut silent = HashSet::new();
        for node in nodes.iter().filter(|n| !up.contains_key(*n)).collect::<HashSet<_>>() {
            let n = missed.entry(node.clone()).or_default();
            *n += 1;
            if *n >= MISSES {
                silent.insert(node.clone());
            }
        }
        up.keys().for_each(|n| {
            missed.remove(n);
        });
        // The node started again: what its earlier process held is gone too.
        let gone: Vec<(String, u64)> = edges
            .into_iter()
            .filter(|(n, boot)| silent.contains(n) || up.get(n).is_some_and(|e| e.boot != *boot))
            .collect();
        if !gone.is_empty() {
            let _ = cluster.proxies.send(ProxyCmd::EdgesGone(gone));
        }
        for node in owners.into_iter().filter(|n| silent.contains(n) && !moved.contains(n)) {
            cluster.owner_gone(&node, false);
        }
        silent.iter().for_each(|n| {
            missed.remove(n);
        });
    }
}

/// How long a draining node waits for the node it hands its calls to.
const HANDOVER_WAIT: Duration = Duration::from_secs(5);
/// How long a node that handed its calls over stays up: its relay carries their media
/// until each client's new connection to the new owner is up (well under a second).
const LINGER: Duration = Duration::from_secs(3);

/// Takes the calls and rooms a draining node (`from`) handed over that it still holds
/// (their live rows become this node's, and they run on here before that is seen), tells
/// it which, and places the rooms here.
async fn take_handover(
    core: CoreHandle,
    link: Link,
    store: Store,
    from: String,
    id: u64,
    calls: Vec<crate::records::LiveCall>,
    rooms: Vec<crate::records::LiveRoom>,
) {
    let names: Vec<String> =
        calls.iter().map(|c| c.sid.to_string()).chain(rooms.iter().map(|r| r.sid.to_string())).collect();
    let run = core.clone();
    let (offered_calls, offered_rooms) = (calls.clone(), rooms.clone());
    let adopt = Box::new(move |moved: &[String]| {
        let calls =
            offered_calls.into_iter().filter(|c| moved.iter().any(|m| *m == c.sid.as_str())).collect();
        let rooms =
            offered_rooms.into_iter().filter(|r| moved.iter().any(|m| *m == r.sid.as_str())).collect();
        let adopt = Input::Adopt { calls, rooms, group_calls: Vec::new(), since_ms: now_ms() };
        run.try_send(CoreCmd::Input(adopt)).is_ok()
    });
    let taken = match store.take_handed(names, &from, adopt).await {
        Ok(taken) => taken,
        Err(e) => {
            tracing::warn!(node = %from, error = %e, "cannot take a draining node's calls over");
            Vec::new()
        }
    };
    tracing::info!(node = %from, taken = taken.len(), "took over a draining node's calls and rooms");
    let placed: Vec<(String, String)> = rooms
        .iter()
        .filter(|r| taken.iter().any(|t| *t == r.sid.as_str()))
        .map(|r| (r.service_id.clone(), r.room_id.clone()))
        .collect();
    link.send(&from, &BusMsg::TookOver { id, sids: taken }, TO_OWNER).await;
    for (service_id, room_id) in placed {
        if let Err(e) = directory::move_room(&link, &service_id, &room_id).await {
            tracing::warn!(error = %e, "cannot place a room handed over; placed again later");
        }
    }
}

/// Listens on this node's bus channel, subscribing again after Redis comes back.
async fn listen(client: redis::Client, cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
    let mut delay = Duration::from_millis(100);
    loop {
        let run = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(bus::channel(&cluster.link.me)).await?;
            tracing::info!("listening on the bus");
            delay = Duration::from_millis(100);
            let mut messages = pubsub.on_message();
            while let Some(m) = messages.next().await {
                cluster.take(m.get_payload_bytes());
            }
            Ok::<(), redis::RedisError>(())
        };
        tokio::select! {
            r = run => match r {
                Ok(()) => tracing::warn!("bus subscription ended; subscribing again"),
                Err(e) => tracing::warn!(error = %e, "bus subscription failed; trying again"),
            },
            _ = stop.changed() => return,
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

impl Cluster {
    /// This node's name.
    pub fn node(&self) -> &str {
        &self.link.me
    }

    /// A message off the bus.
    fn take(&self, bytes: &[u8]) {
        let now = now_ms();
        let opened = self.link.key.open(&self.link.me, now, bytes).and_then(|m| {
            let first = self.replays.lock().map(|mut r| r.first(now, bytes)).unwrap_or(false);
            if first {
                Ok(m)
            } else {
                Err(bus::Refused::Replayed)
            }
        });
        let (from, msg) = match opened {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "bus: a message refused");
                self.link.metrics.bus_refused.inc();
                return;
            }
        };
        self.link.metrics.bus_received.inc();
        let (client, relayed) = match msg {
            BusMsg::Frame { client, text, overtakes } => {
                (client, Relayed::Frame { from: from.clone(), text, overtakes })
            }
            BusMsg::Adopted { client } => (client, Relayed::Owner { from: from.clone() }),
            BusMsg::Dropped { client } => (client, Relayed::Dropped { from: from.clone() }),
            BusMsg::Moved { client, to, sids } => (client, Relayed::Moved { to, sids }),
            BusMsg::Handover { id, calls, rooms } => {
                let (core, link, store) = (self.core.clone(), self.link.clone(), self.store.clone());
                tokio::spawn(take_handover(core, link, store, from, id, calls, rooms));
                return;
            }
            BusMsg::TookOver { id, sids } => {
                if let Some(done) = self.handovers.lock().ok().and_then(|mut h| h.remove(&id)) {
                    let _ = done.send(sids);
                }
                return;
            }
            msg => {
                let _ = self.proxies.send(ProxyCmd::Bus { from, msg });
                return;
            }
        };
        let session = client.session;
        let tx = (client.boot == self.link.boot)
            .then(|| self.locals.lock().ok().and_then(|l| l.get(&session).map(|l| l.tx.clone())))
            .flatten();
        match tx.map(|tx| tx.try_send(relayed)) {
            Some(Ok(())) => {}
            Some(Err(mpsc::error::TrySendError::Full(_))) => {
                // It reads nothing: as a session whose frames pile up, it is let go.
                tracing::warn!(session, %from, "a client that reads nothing loses its session");
                if let Ok(mut locals) = self.locals.lock() {
                    locals.remove(&session);
                }
            }
            Some(Err(mpsc::error::TrySendError::Closed(_))) | None => {
                let link = self.link.clone();
                tokio::spawn(async move { link.send(&from, &BusMsg::Gone { client }, ENDED).await });
            }
        }
    }

    /// Lists `session` of this node: frames from other nodes reach it, and (signed in
    /// with a token) calls from other nodes ring it.
    async fn attach(&self, session: u64, remote: Remote) -> mpsc::Receiver<Relayed> {
        let (tx, rx) = mpsc::channel(256);
        let token = remote.auth == SessionAuth::Token;
        // Listed here before it is listed in Redis: a ring from another node finds it.
        if let Ok(mut locals) = self.locals.lock() {
            locals.insert(session, Local { tx, remote: remote.clone() });
        }
        if token {
            if let Err(e) = directory::present(&self.link, session, &remote).await {
                tracing::warn!(session, error = %e, "cannot write the session's presence");
            }
        }
        rx
    }

    /// `session` of this node ended.
    async fn detach(&self, session: u64, remote: &Remote) {
        if let Ok(mut locals) = self.locals.lock() {
            locals.remove(&session);
        }
        if remote.auth == SessionAuth::Token {
            if let Err(e) = directory::absent(&self.link, session, &remote.party).await {
                tracing::warn!(error = %e, "cannot clear a session's presence");
            }
        }
    }

    /// Writes again what Redis held of this node: its sessions' presence, its rooms'
    /// placement. Whether all of it was written.
    async fn rejoin(&self) -> bool {
        let sessions: Vec<(u64, Remote)> = match self.locals.lock() {
            Ok(l) => l
                .iter()
                .filter(|(_, l)| l.remote.auth == SessionAuth::Token)
                .map(|(s, l)| (*s, l.remote.clone()))
                .collect(),
            Err(_) => Vec::new(),
        };
        if let Err(e) = directory::present_all(&self.link, &sessions).await {
            tracing::warn!(error = %e, "cannot list the sessions again; trying at the next beat");
            return false;
        }
        self.place_rooms().await
    }

    /// Places this node's live rooms on it again (a room another node holds now is a
    /// conflict, logged: Redis lost the placement and a join went elsewhere meanwhile).
    async fn place_rooms(&self) -> bool {
        for service in &self.services {
            let (service_id, svc) = (service.clone(), service.clone());
            let rooms = self
                .core
                .ask(|reply| CoreCmd::Room(RoomRequest::List { service_id, reply }))
                .await
                .unwrap_or_default();
            for room in rooms {
                match directory::place_room(&self.link, &svc, &room.room_id, &self.link.me).await {
                    Ok(node) if node == *self.link.me => {}
                    Ok(node) => {
                        tracing::error!(room = %room.room_id, %node, "a room of this node is placed on another")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot place the rooms again");
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Makes the devices `users` have signed in on other nodes sessions of this node's
    /// core (proxies), so that a call from here rings them.
    async fn adopt_devices(&self, users: &[Party]) -> Result<(), redis::RedisError> {
        for (edge, client, remote) in directory::devices(&self.link, users).await? {
            let (done, adopted) = oneshot::channel();
            if self.proxies.send(ProxyCmd::Adopt { edge, client, remote, done }).is_err() {
                break;
            }
            let _ = adopted.await;
        }
        Ok(())
    }

    /// `node` holds a proxy of this node's `session` (when it dies, the session hears).
    pub(crate) fn watch_owner(&self, node: &str, session: u64) {
        if let Ok(mut o) = self.owners.lock() {
            o.entry(node.to_string()).or_default().insert(session);
        }
    }

    /// `session` of this node ended: the nodes holding a proxy of it need no watching
    /// for it.
    pub(crate) fn unwatch(&self, session: u64, nodes: impl Iterator<Item = String>) {
        if let Ok(mut o) = self.owners.lock() {
            for node in nodes {
                if let Some(sessions) = o.get_mut(&node) {
                    sessions.remove(&session);
                    if sessions.is_empty() {
                        o.remove(&node);
                    }
                }
            }
        }
    }

    /// Takes over the calls and rooms of `dead`, whose registry entry expired, if the
    /// database says it is silent too; whether it was (what it owned is this node's now,
    /// or another's that claimed it first).
    async fn take_over(&self, dead: &str) -> bool {
        let core = self.core.clone();
        let adopt = Box::new(move |c: &crate::store::Claimed| {
            let adopt = Input::Adopt {
                calls: c.calls.clone(),
                rooms: c.rooms.clone(),
                group_calls: c.group_calls.clone(),
                since_ms: c.since_ms,
            };
            core.try_send(CoreCmd::Input(adopt)).is_ok()
        });
        let claimed = match self.store.claim(dead, now_ms().saturating_sub(SILENT_MS), adopt).await {
            Ok(Some(c)) => c,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(node = dead, error = %e, "cannot take over a silent node's calls; trying again");
                return false;
            }
        };
        let (calls, rooms, group_calls) =
            (claimed.calls.len(), claimed.rooms.len(), claimed.group_calls.len());
        if calls + rooms > 0 {
            tracing::warn!(
                node = dead,
                calls,
                rooms,
                group_calls,
                "took over the calls and rooms of a node that died"
            );
        }
        let placed: Vec<(String, String)> =
            claimed.rooms.iter().map(|r| (r.service_id.clone(), r.room_id.clone())).collect();
        for (service_id, room_id) in placed {
            match directory::place_room(&self.link, &service_id, &room_id, &self.link.me).await {
                Ok(node) if node == *self.link.me => {}
                Ok(node) => {
                    tracing::error!(room = %room_id, %node, "a room taken over is placed on another node")
                }
                Err(e) => tracing::warn!(error = %e, "cannot place a room taken over; placed again later"),
            }
        }
        directory::forget_node(&self.link, dead).await;
        true
    }

    /// `node` died: this node's sessions in calls and rooms there hear that they ended,
    /// or (`moved`: another node took them over) come back to resume them there.
    fn owner_gone(&self, node: &str, moved: bool) {
        let sessions = self.owners.lock().ok().and_then(|mut o| o.remove(node)).unwrap_or_default();
        tracing::warn!(
            node,
            sessions = sessions.len(),
            "a node that held calls of this node's clients is gone"
        );
        let Ok(locals) = self.locals.lock() else { return };
        for session in sessions {
            if let Some(l) = locals.get(&session) {
                let _ = l.tx.try_send(Relayed::OwnerGone { from: node.to_string(), moved });
            }
        }
    }

    /// Hands this draining node's connected calls and rooms over to the least loaded
    /// node that takes calls: their live rows become its, it runs them on from their
    /// snapshots, and this node lets go of them and of the sessions in them (their
    /// clients come back and resume there, and start new media). Its relay carries their
    /// media meanwhile, for [`LINGER`] more; whether anything was handed over.
    async fn hand_over(&self) -> bool {
        let to = match directory::pick(&self.link).await {
            Ok(Some(node)) => node,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot pick a node to hand the calls over to");
                return false;
            }
        };
        let Ok((calls, rooms)) = self.core.ask(CoreCmd::Movable).await else { return false };
        if calls.is_empty() && rooms.is_empty() {
            return false;
        }
        let names: Vec<String> =
            calls.iter().map(|c| c.sid.to_string()).chain(rooms.iter().map(|r| r.sid.to_string())).collect();
        let id = rand::random::<u64>();
        let (done, taken) = oneshot::channel();
        if let Ok(mut h) = self.handovers.lock() {
            h.insert(id, done);
        }
        let sent = self.link.send(&to, &BusMsg::Handover { id, calls, rooms }, TO_OWNER).await;
        let acked = match sent {
            true => tokio::time::timeout(HANDOVER_WAIT, taken).await.ok().and_then(Result::ok),
            false => None,
        };
        if let Ok(mut h) = self.handovers.lock() {
            h.remove(&id);
        }
        // Without its word (lost, or late), the database says which it took: it runs
        // exactly those whose live rows it made its own.
        let taken: Vec<String> = match acked {
            Some(taken) => taken,
            None => {
                let mut taken = Vec::new();
                for sid in &names {
                    if self.store.owner(sid).await.ok().flatten().as_deref() == Some(to.as_str()) {
                        taken.push(sid.clone());
                    }
                }
                taken
            }
        };
        if taken.is_empty() {
            tracing::warn!(node = %to, "the handover was not taken up; the calls stay here");
            return false;
        }
        if let Ok(mut l) = self.lingers_until.lock() {
            *l = Some(tokio::time::Instant::now() + LINGER);
        }
        let sids: Vec<Sid> = taken.iter().map(|s| Sid::new(s.as_str())).collect();
        let Ok(sessions) = self.core.ask(|reply| CoreCmd::Release(sids, reply)).await else { return false };
        // Each client's node resumes its calls on the new owner for it: no reconnect, and
        // this relay carries the media until the client's new connection is up.
        for session in sessions {
            if session.0 >= proxies::FIRST_PROXY {
                let moved = ProxyCmd::Moved { proxy: session, to: to.clone(), sids: taken.clone() };
                let _ = self.proxies.send(moved);
            } else if let Some(l) =
                self.locals.lock().ok().and_then(|l| l.get(&session.0).map(|l| l.tx.clone()))
            {
                let _ = l.try_send(Relayed::Moved { to: to.clone(), sids: taken.clone() });
            }
        }
        tracing::info!(node = %to, moved = taken.len(), of = names.len(), "handed calls and rooms over");
        true
    }

    /// Whether this node stays up for the media of calls it handed over.
    pub fn lingering(&self) -> bool {
        self.lingers_until.lock().ok().and_then(|l| *l).is_some_and(|t| tokio::time::Instant::now() < t)
    }

    /// This node's registry entry now.
    fn entry(&self) -> directory::Entry {
        let sessions = self.locals.lock().map(|l| l.len() as u64).unwrap_or(0);
        directory::Entry { boot: self.link.boot, draining: self.draining(), sessions }
    }

    /// Whether this node takes no new calls or rooms.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The node drains: its clients' new calls and rooms go to other nodes from now on
    /// (and the other nodes hear so at once).
    pub async fn drain(self: &Arc<Self>) {
        self.draining.store(true, Ordering::Relaxed);
        if let Err(e) = directory::write_entry(&self.link, self.entry()).await {
            tracing::warn!(error = %e, "cannot say in the registry that this node drains");
        }
        let me = self.clone();
        tokio::spawn(async move { me.hand_over().await });
    }
}
