//! The IO shell: recovers the database, binds the HTTP/WebSocket listener, and runs the
//! tasks: the core task (the [`Core`], fed by sessions, the REST API, the relay shards
//! and the delivery task), the journal thread, the delivery task and the relay shards.
//! Its `drain` turns the core's outputs into journal steps, relay commands and frames.
//! `docs/architecture.md` draws the tasks and the channels between them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use switchboard_protocol::ServerMessage;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::auth::CcKey;
use crate::callbacks::Callbacks;
use crate::clock::{sleep_until, Now};
use crate::config::{Config, ConfigError, ServiceConfig};
use crate::core::{Census, Core, Input, Output, ServiceRules, Settings};
use crate::handles::{CoreCmd, CoreHandle, Frame, RoomRequest, Shared};
use crate::ids::{RandomIds, SessionId};
use crate::limit::KeyedLimiter;
use crate::media::MediaRelay;
use crate::media_link::RelayEvent;
use crate::metrics::Metrics;
use crate::outbox::runner::DeliveryRunner;
use crate::outbox::{DeliveryCmd, DeliveryHandle, PushOutcome};
use crate::records::{Batch, Entry};
use crate::store::{Journal, Store, StoreError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Configuration or data dir.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Listener.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The IO error.
        source: std::io::Error,
    },
    /// HTTP client.
    #[error(transparent)]
    Callbacks(#[from] crate::callbacks::CallbackError),
    /// Media relay.
    #[error(transparent)]
    Media(#[from] crate::media::MediaError),
    /// The TLS certificate or key.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Joining the deployment (Redis).
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

pub use crate::clock::now_ms;
pub use crate::handles::SessionTx;

/// A running server.
pub struct ServerHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    join: JoinHandle<()>,
    /// Tells the core and the delivery task to stop.
    stop: tokio::sync::watch::Sender<bool>,
    /// The core task (it owns the relay shards and the journal) and the delivery task.
    tasks: Vec<JoinHandle<()>>,
    /// The embedded TURN server (stopped when the handle goes).
    turn: Option<crate::turn::shell::TurnServer>,
    /// The listener serves https and wss.
    tls: bool,
    /// The deployment this node is one of (with `redis_url`).
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl ServerHandle {
    /// Stops taking new calls and rooms: `make_call`, `join_room` and the engine's
    /// `calls` are refused with SERVICE_MAINTENANCE (1503); calls and rooms already live
    /// go on. [`ServerHandle::owns_nothing`] says when they are all over.
    pub async fn drain(&self) {
        let _ = self.shared.core.send(CoreCmd::Drain).await;
        if let Some(cluster) = &self.cluster {
            cluster.drain().await;
        }
    }

    /// Waits (at most `within`) until every step the core took so far is written: what
    /// a stop loses nothing of. False if it was not in time.
    pub async fn flushed(&self, within: Duration) -> bool {
        let Ok(step) = self.shared.core.ask(CoreCmd::Step).await else { return true };
        let mut committed = self.shared.committed.clone();
        let written = tokio::time::timeout(within, committed.wait_for(|s| *s >= step)).await;
        matches!(written, Ok(Ok(_)))
    }

    /// Whether no call or room is live here (a draining node may stop).
    pub async fn owns_nothing(&self) -> bool {
        let c = self.census().await;
        c.calls == 0 && c.rooms.rooms == 0 && !self.cluster.as_ref().is_some_and(|c| c.lingering())
    }

    /// Live counts of sessions and calls.
    pub async fn census(&self) -> Census {
        self.shared.core.census().await
    }

    /// Where the embedded TURN server listens (UDP and TCP), if it runs.
    pub fn turn_addr(&self) -> Option<SocketAddr> {
        self.turn.as_ref().map(|t| t.local)
    }

    /// The embedded TURN server's counters, if it runs.
    pub fn turn_stats(&self) -> Option<crate::turn::TurnStats> {
        self.turn.as_ref().map(|t| t.stats())
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Base URL (`http://addr`).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Where the embedded TURN server's own TLS port listens, if it has one.
    pub fn turn_tls_addr(&self) -> Option<SocketAddr> {
        self.turn.as_ref().and_then(|t| t.tls_local)
    }

    /// Stops everything it started: stops accepting and closes connections, then stops
    /// the core (which ends the relay shards and, once the steps before it are written,
    /// the journal) and the callback delivery, and waits for them. Callbacks not
    /// delivered yet stay in the outbox for the next start.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.join).await;
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }

    /// Waits until the server stops (it runs until shut down).
    pub async fn wait(self) {
        let _ = self.join.await;
    }
}

/// The core's rules for each configured service.
fn service_rules(services: &HashMap<String, ServiceConfig>) -> HashMap<String, ServiceRules> {
    services
        .iter()
        .map(|(id, s)| {
            let rules = ServiceRules {
                ring_timeout_ms: u64::from(s.ring_timeout_secs) * 1000,
                max_call_ms: u64::from(s.max_call_secs) * 1000,
                rc_idc: s.rc_idc.clone(),
                has_notify: s.notify_cb_url.is_some(),
                has_call_cb: s.on_call_evt_cb_url.is_some(),
                has_gcall_cb: s.on_gcall_evt_cb_url.is_some(),
                has_group_call_cb: s.on_group_call_evt_cb_url.is_some(),
                max_room_participants: s.max_room_participants,
                max_room_speakers: s.max_room_speakers as usize,
                alone_kick_out_ms: u64::from(s.alone_kick_out_secs) * 1000,
            };
            (id.clone(), rules)
        })
        .collect()
}

/// Starts a server on `config.listen` (port 0 picks one). `config.services` must be
/// final (see [`crate::config::prepare_data_dir`]). Before it listens, the database
/// is put right after any crash: live calls are closed and recorded, and every
/// callback still pending is queued again.
pub async fn start(config: Config) -> Result<ServerHandle, ServerError> {
    // Bound first: a port taken fails the start before any work, and the ports the
    // relay and TURN draw from the system can never be the configured one.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
    let database = config.database();
    let db_files: Vec<_> =
        ["", "-wal", "-shm"].iter().map(|x| config.data_dir.join(format!("switchboard.db{x}"))).collect();
    crate::config::secure_data_dir(&config.data_dir, &db_files)
        .map_err(|source| ConfigError::DataDir { path: config.data_dir.clone(), source })?;
    let server_secret = crate::config::server_secret(&config.data_dir)?;
    // A deployment's nodes share one: a callee may reach any of them.
    let cc_key = match &config.cluster_secret {
        Some(secret) if config.redis_url.is_some() => crate::cluster::cc_key(secret),
        _ => CcKey::new(server_secret.clone()),
    };
    let callbacks = Callbacks::new()?;
    let metrics = Arc::new(Metrics::default());
    let services: HashMap<String, ServiceConfig> =
        config.services.iter().map(|s| (s.id.clone(), s.clone())).collect();
    let settings = Settings {
        reconnect_grace_ms: config.reconnect_grace_ms,
        calls_per_user_per_sec: config.limits.calls_per_user_per_sec,
        calls_per_user_burst: config.limits.calls_per_user_burst,
        notify_timeout_ms: config.notify_timeout_ms,
    };
    let (delivery_tx, delivery_rx) = mpsc::unbounded_channel();
    let delivery_handle = DeliveryHandle::new(delivery_tx);
    // Committed steps' callbacks go straight from the journal to the delivery task.
    let on_commit = {
        let (delivery, metrics) = (delivery_handle.clone(), metrics.clone());
        Box::new(move |rows: Vec<crate::records::CallbackRow>| {
            metrics.callbacks_queued.inc_by(rows.len() as u64);
            delivery.send(DeliveryCmd::Enqueue(rows));
        })
    };
    let disk = crate::store::DiskGuard { dir: config.data_dir.clone(), min_free: config.min_free_disk_bytes };
    // The free space of the data directory guards an SQLite file only.
    let disk = matches!(database.place, crate::store::Place::Sqlite(_)).then_some(disk);
    // Opening the database blocks (and PostgreSQL's client runs a runtime of its own).
    let wants = Arc::new(CallbackUrls(config.clone()));
    let (recovery, store, journal) = tokio::task::spawn_blocking(move || {
        let recovery = crate::store::recover(&database, now_ms(), wants.as_ref())?;
        let store = Store::open(&database, wants)?;
        Ok::<_, StoreError>((recovery, store, Journal::open(&database, disk, on_commit)?))
    })
    .await
    .map_err(|_| StoreError::Closed)??;
    if !recovery.closed_calls.is_empty()
        || !recovery.closed_rooms.is_empty()
        || !recovery.closed_group_calls.is_empty()
        || !recovery.pending.is_empty()
    {
        tracing::warn!(
            closed_calls = recovery.closed_calls.len(),
            closed_rooms = recovery.closed_rooms.len(),
            closed_group_calls = recovery.closed_group_calls.len(),
            pending_callbacks = recovery.pending.len(),
            dropped_notifies = recovery.dropped_notifies,
            "recovered from an unclean stop"
        );
    }
    let (core_tx, core_rx) = mpsc::channel(8192);
    let core = CoreHandle::new(core_tx);
    let (relay_tx, relay_rx) = mpsc::unbounded_channel::<RelayEvent>();
    let media = MediaRelay::start(
        crate::media::SocketSettings {
            bind: config.media_bind,
            advertise: config.media_advertise,
            buffer_bytes: config.media_socket_buffer_bytes,
            shards: config.media_shards,
            tcp_port: config.media_tcp.then_some(config.media_tcp_port),
        },
        Duration::from_millis(config.media_timeout_ms),
        relay_tx,
        metrics.media.clone(),
    )
    .await?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        _ => None,
    };
    let turn = start_turn(&config, &media, tls.clone(), &server_secret, metrics.turn.clone()).await?;
    let (push_tx, push_rx) = mpsc::unbounded_channel::<PushOutcome>();
    let delivery = DeliveryRunner::new(
        &config,
        callbacks,
        store.clone(),
        push_tx,
        delivery_handle.clone(),
        metrics.clone(),
    );
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let delivery_task = tokio::spawn(delivery.run(delivery_rx, stop_rx.clone()));
    if !recovery.pending.is_empty() {
        delivery_handle.send(DeliveryCmd::Enqueue(recovery.pending));
    }
    let committed = journal.committed();
    let runner = CoreRunner {
        core: Core::new(
            Now::system(),
            settings,
            service_rules(&services),
            cc_key.clone(),
            Box::new(RandomIds),
        ),
        sessions: HashMap::new(),
        journal,
        step: 0,
        draining: false,
        media,
        greetings: Vec::new(),
        metrics: metrics.clone(),
    };
    let core_task = tokio::spawn(runner.run(core_rx, relay_rx, push_rx, stop_rx.clone()));
    let cluster = match config.redis_url {
        Some(_) => Some(
            crate::cluster::start(
                &config,
                core.clone(),
                committed.clone(),
                store.clone(),
                cc_key.clone(),
                metrics.clone(),
                stop_rx,
            )
            .await?,
        ),
        None => None,
    };

    let shared = Arc::new(Shared {
        ip_limiter: Mutex::new(KeyedLimiter::new(
            config.limits.connects_per_ip_per_sec,
            config.limits.connects_per_ip_burst,
        )),
        api_limiter: Mutex::new(KeyedLimiter::new(
            config.limits.api_per_service_per_sec,
            config.limits.api_per_service_burst,
        )),
        services,
        cc_key,
        core,
        delivery: delivery_handle,
        store,
        metrics,
        next_session: AtomicU64::new(1),
        config: config.clone(),
        committed,
        turn: turn.as_ref().map(|(info, _)| info.clone()),
        proxies: crate::proxies::TrustedProxies::parse(&config.trusted_proxies, &config.forwarded_header)
            .map_err(|e| ConfigError::Invalid(format!("trusted_proxies: {e:?} is no address or network")))?,
    });

    let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: config.listen, source })?;
    let app = router(shared.clone(), crate::cluster::Nodes(cluster.clone()));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let settings = crate::listener::ListenerSettings {
        header_timeout: Duration::from_millis(config.limits.header_timeout_ms),
        pending_per_ip: config.limits.pending_per_ip,
        proxy_protocol: config.proxy_protocol.then(|| shared.proxies.clone()),
    };
    let mux = tls.map(|acceptor| crate::listener::TlsMux {
        acceptor,
        turn: turn.as_ref().map(|(_, server)| server.streams()),
    });
    let tls = mux.is_some();
    let join =
        tokio::spawn(crate::listener::serve(listener, app, settings, mux, shared.metrics.clone(), stop_rx));
    tracing::info!(%addr, tls, services = shared.services.len(), "switchboard listening");
    Ok(ServerHandle {
        addr,
        shared,
        shutdown: Some(stop_tx),
        join,
        stop,
        tasks: vec![core_task, delivery_task],
        turn: turn.map(|(_, server)| server),
        tls,
        cluster,
    })
}

fn router(shared: Arc<Shared>, nodes: crate::cluster::Nodes) -> Router {
    Router::new()
        .route(switchboard_protocol::SIGNAL_PATH, get(crate::signal::upgrade).layer(axum::Extension(nodes)))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(crate::api::metrics))
        .route("/", get(crate::web::demo_page))
        .route("/demo/token", get(crate::web::demo_token))
        .route("/sdk/switchboard.js", get(crate::web::sdk_js))
        .route("/sdk/switchboard.d.ts", get(crate::web::sdk_dts))
        .route("/favicon.ico", get(crate::web::favicon))
        .merge(crate::api::router())
        .with_state(shared)
}

/// Owns the [`Core`], the session senders, the journal's intake and the relay's
/// handle; the only task that touches them.
struct CoreRunner {
    core: Core,
    sessions: HashMap<SessionId, crate::handles::SessionTx>,
    journal: Journal,
    /// Steps handed to the journal so far (their numbers are 1, 2, …).
    step: u64,
    /// New calls and rooms are refused (SERVICE_MAINTENANCE): the node is draining.
    draining: bool,
    media: MediaRelay,
    greetings: Vec<(SessionId, ServerMessage)>,
    metrics: Arc<Metrics>,
}

impl CoreRunner {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<CoreCmd>,
        mut relay: mpsc::UnboundedReceiver<RelayEvent>,
        mut pushes: mpsc::UnboundedReceiver<PushOutcome>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut batch = Vec::with_capacity(256);
        let mut events = Vec::with_capacity(256);
        loop {
            let wake = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                n = rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break;
                    }
                    let now = Now::system();
                    for cmd in batch.drain(..) {
                        self.apply(now, cmd);
                    }
                }
                n = relay.recv_many(&mut events, 256), if !relay.is_closed() || !relay.is_empty() => {
                    let now = Now::system();
                    for event in events.drain(..n) {
                        self.core.handle(now, Input::Relay(event));
                    }
                }
                Some(p) = pushes.recv() => {
                    self.core.handle(Now::system(), Input::PushResult { sid: p.sid, user: p.user, ok: p.ok });
                }
                _ = sleep_until(wake), if wake.is_some() => {
                    self.core.handle_timeout(Now::system());
                }
                _ = stop.wait_for(|s| *s) => break,
            }
            self.drain();
        }
        self.media.shutdown().await;
    }

    fn apply(&mut self, now: Now, cmd: CoreCmd) {
        match cmd {
            CoreCmd::Open { session, party, auth, ip, client, tx, welcome } => {
                self.sessions.insert(session, tx);
                self.greetings.extend(welcome.map(|w| (session, w)));
                self.core.handle(now, Input::Open { session, party, auth, ip, client });
            }
            CoreCmd::Input(input) => {
                if let Input::Closed { session } = &input {
                    self.sessions.remove(session);
                }
                if let Input::Message { session, msg } = &input {
                    let refused = (self.draining || !self.journal.healthy())
                        && self.refuse_new(*session, msg, self.draining);
                    if refused {
                        return;
                    }
                }
                self.core.handle(now, input);
            }
            CoreCmd::Census(reply) => {
                let _ = reply.send(self.core.census());
            }
            CoreCmd::GetCall { service_id, sid, reply } => {
                let _ = reply.send(self.core.live_call(now, &service_id, &sid));
            }
            CoreCmd::GetGroupCall { service_id, sid, reply } => {
                let _ = reply.send(self.core.live_group_call(now, &service_id, &sid));
            }
            CoreCmd::Room(request) => self.room_request(now, request),
            CoreCmd::ForceEnd { service_id, sid, user_rel_code, reply } => {
                let _ = reply.send(self.core.force_end(now, &service_id, &sid, user_rel_code));
            }
            CoreCmd::Step(reply) => {
                let _ = reply.send(self.step);
            }
            CoreCmd::Movable(reply) => {
                let _ = reply.send(self.core.movable(now));
            }
            CoreCmd::Release(sids, reply) => {
                let _ = reply.send(self.core.release(&sids));
            }
            CoreCmd::Drain => {
                if !self.draining {
                    self.draining = true;
                    tracing::warn!(
                        "draining: new calls and rooms are refused with SERVICE_MAINTENANCE (1503); live ones go on"
                    );
                }
            }
        }
    }

    /// Refuses what would start a call or room (`make_call`, `join_room`, the engine's
    /// `calls`); false for anything else. While draining: SERVICE_MAINTENANCE (1503),
    /// the node takes nothing new. While the database cannot be written: SERVICE_BUSY
    /// (1504), a call or room whose record could not be kept does not start. Either way
    /// calls already live go on (their steps wait for the disk).
    fn refuse_new(
        &self,
        session: SessionId,
        msg: &switchboard_protocol::ClientMessage,
        draining: bool,
    ) -> bool {
        use switchboard_protocol::{ClientMessage as M, DisconnectReason as R};
        let req = match msg {
            M::MakeCall { req, .. } | M::JoinRoom { req, .. } | M::Calls { req, .. } => *req,
            _ => return false,
        };
        let (reason, message) = if draining {
            (
                R::ServiceMaintenance,
                "this server is draining for maintenance and takes no new calls; try again shortly",
            )
        } else {
            (R::ServiceBusy, "the server cannot store calls right now; try again shortly")
        };
        if let Some(tx) = self.sessions.get(&session) {
            let refusal = ServerMessage::Error {
                req,
                error: switchboard_protocol::ErrorCode::Internal,
                reason: Some(reason),
                message: message.into(),
            };
            let _ = tx.try_send(Frame::new(&refusal, 0));
        }
        true
    }

    fn room_request(&mut self, now: Now, request: RoomRequest) {
        match request {
            RoomRequest::List { service_id, reply } => {
                let _ = reply.send(self.core.rooms(&service_id));
            }
            RoomRequest::Get { service_id, room_id, reply } => {
                let _ = reply.send(self.core.room(&service_id, &room_id));
            }
            RoomRequest::Kick { service_id, room_id, user_ids, user_rel_code, reply } => {
                let _ = reply.send(self.core.kick(now, &service_id, &room_id, &user_ids, user_rel_code));
            }
            RoomRequest::Message { service_id, room_id, user_ids, data, reply } => {
                let _ = reply.send(self.core.app_message(&service_id, &room_id, user_ids.as_deref(), &data));
            }
            RoomRequest::Close { service_id, room_id, user_rel_code, reply } => {
                let _ = reply.send(self.core.close_room(now, &service_id, &room_id, user_rel_code));
            }
        }
    }

    /// One step: what the core decided goes to the journal (numbered), its relay
    /// commands to the shards, its frames to their sessions marked with the step they
    /// wait for (a client that saw `disconnected` can count on the record being on disk;
    /// a step that records nothing, as audio levels or relay offers, waits for nothing).
    fn drain(&mut self) {
        let mut batch = Batch::default();
        let mut sends = std::mem::take(&mut self.greetings);
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Send(session, msg) => {
                    match &msg {
                        ServerMessage::CallCreated { .. } => {
                            self.metrics.calls_started.inc();
                        }
                        ServerMessage::RoomJoined { .. } => {
                            self.metrics.room_joins.inc();
                        }
                        _ => {}
                    }
                    sends.push((session, msg));
                }
                Output::Media(cmd) => self.media.send(cmd),
                Output::Journal(entry) => {
                    if let Entry::CallEnded { record, .. } = &entry {
                        self.metrics.call_ended(record.disconnect_reason);
                    }
                    batch.push(entry);
                }
                Output::RoomLeft { reason } => self.metrics.room_left(reason),
            }
        }
        let rooms = self.core.room_census();
        self.metrics.rooms.set(rooms.rooms as i64);
        self.metrics.room_participants.set(rooms.participants as i64);
        let after = if batch.is_empty() {
            0
        } else {
            self.step += 1;
            self.journal.submit(self.step, batch);
            self.step
        };
        for (session, msg) in sends {
            let Some(tx) = self.sessions.get(&session) else { continue };
            if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(Frame::new(&msg, after)) {
                // A client that does not read its frames loses its session rather than
                // slowing everyone else down.
                tracing::warn!(%session, "session outbox full; dropping session");
                self.sessions.remove(&session);
            }
        }
    }
}

/// The embedded TURN server, if configured: its `welcome` details and the server.
async fn start_turn(
    config: &Config,
    media: &MediaRelay,
    tls: Option<crate::tls::TlsAcceptor>,
    server_secret: &[u8],
    metrics: Arc<crate::turn::metrics::TurnMetrics>,
) -> Result<Option<(crate::handles::TurnInfo, crate::turn::shell::TurnServer)>, ServerError> {
    if !config.turn {
        return Ok(None);
    }
    let secret = crate::turn::secret(server_secret);
    let settings = crate::turn::Settings {
        secret: secret.clone(),
        peers: media.advertised.clone(),
        max_allocations_per_user: config.turn_allocations_per_user,
        bytes_per_sec: config.turn_bytes_per_sec,
    };
    let bind = SocketAddr::new(config.media_bind.ip(), config.turn_port);
    let relay_ip = config.turn_relay_ip.unwrap_or(config.media_bind.ip());
    let own_tls = match (config.turn_tls_port, &tls) {
        (Some(port), Some(acceptor)) => {
            Some((SocketAddr::new(config.media_bind.ip(), port), acceptor.clone()))
        }
        _ => None,
    };
    let server = crate::turn::shell::TurnServer::start(bind, relay_ip, own_tls, settings, metrics)
        .await
        .map_err(|source| ServerError::Bind { addr: bind, source })?;
    // Clients reach it at the media address they are told.
    let host = match media.advertised.first().map(|a| a.ip()) {
        Some(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
        Some(ip) => ip.to_string(),
        None => server.local.ip().to_string(),
    };
    let port = server.local.port();
    let mut urls =
        vec![format!("turn:{host}:{port}?transport=udp"), format!("turn:{host}:{port}?transport=tcp")];
    urls.extend(config.turn_tls_url.iter().cloned());
    let info = crate::handles::TurnInfo {
        urls,
        tls_shared: tls.is_some(),
        tls_port: server.tls_local.map(|a| a.port()),
        secret,
        ttl_secs: config.turn_credential_ttl_secs,
    };
    Ok(Some((info, server)))
}

/// The callbacks each configured service takes, for the records a restart queues.
/// Which callbacks each service takes, from its config (owned: recovery runs off the
/// runtime).
struct CallbackUrls(Config);

impl crate::store::Wants for CallbackUrls {
    fn record(&self, service_id: &str) -> bool {
        self.0.service(service_id).is_some_and(|s| s.on_call_evt_cb_url.is_some())
    }

    fn gcall(&self, service_id: &str) -> bool {
        self.0.service(service_id).is_some_and(|s| s.on_gcall_evt_cb_url.is_some())
    }

    fn group_call(&self, service_id: &str) -> bool {
        self.0.service(service_id).is_some_and(|s| s.on_group_call_evt_cb_url.is_some())
    }
}

#[cfg(test)]
mod tests {
    /// The shell only wires: no module of the server imports it (the edges reach the
    /// core through `handles`), so there is no import circle through it.
    #[test]
    fn no_module_imports_the_shell() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![src.clone()];
        let mut offenders = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("src dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("server.rs")
                    && !path.ends_with("lib.rs")
                {
                    let text = std::fs::read_to_string(&path).expect("source");
                    if text.contains("crate::server") {
                        offenders.push(path.display().to_string());
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "these import server.rs: {offenders:?}");
    }
}
