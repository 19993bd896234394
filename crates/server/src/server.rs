//! The IO shell: recovers the database, binds the HTTP/WebSocket listener, runs the
//! call core and the callback delivery on their own tasks, and turns the core's
//! outputs into frames, database writes and callbacks.

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
use crate::call::{Census, Input, Millis, Output, ServiceRules, SessionId, Settings, Switch};
use crate::callbacks::Callbacks;
use crate::config::{Config, ConfigError, ServiceConfig};
use crate::limit::KeyedLimiter;
use crate::media::{MediaCmd, MediaRelay, RelayEvent};
use crate::metrics::Metrics;
use crate::outbox::runner::DeliveryRunner;
use crate::store::{Batch, Journal, Kind, NewCallback, Store, StoreError};

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
}

pub use crate::clock::now_ms;
use crate::clock::sleep_until;
pub use crate::handles::SessionTx;
use crate::handles::{CoreCmd, CoreHandle, DeliveryCmd, DeliveryHandle, RoomRequest, Shared};

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
}

impl ServerHandle {
    /// Live counts of sessions and calls.
    pub async fn census(&self) -> Census {
        self.shared.core.census().await
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
        format!("http://{}", self.addr)
    }

    /// Stops everything it started: stops accepting and closes connections, then
    /// stops the call core (which ends the relay shards and, once the steps before it
    /// are written, the journal) and the callback delivery, and waits for them.
    /// Callbacks not delivered yet stay in the outbox for the next start.
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

/// Starts a server on `config.listen` (port 0 picks one). `config.services` must be
/// final (see [`crate::config::prepare_data_dir`]). Before it listens, the database
/// is put right after any crash: live calls are closed and recorded, and every
/// callback still pending is queued again.
pub async fn start(config: Config) -> Result<ServerHandle, ServerError> {
    let db_path = config.data_dir.join("switchboard.db");
    let db_files: Vec<_> =
        ["", "-wal", "-shm"].iter().map(|x| config.data_dir.join(format!("switchboard.db{x}"))).collect();
    crate::config::secure_data_dir(&config.data_dir, &db_files)
        .map_err(|source| ConfigError::DataDir { path: config.data_dir.clone(), source })?;
    let cc_key = CcKey::new(crate::config::server_secret(&config.data_dir)?);
    let wants_record = |id: &str| config.service(id).is_some_and(|s| s.on_call_evt_cb_url.is_some());
    let wants_gcall = |id: &str| config.service(id).is_some_and(|s| s.on_gcall_evt_cb_url.is_some());
    let recovery = crate::store::recover(&db_path, now_ms(), wants_record, wants_gcall)?;
    if !recovery.closed_calls.is_empty() || !recovery.closed_rooms.is_empty() || !recovery.pending.is_empty()
    {
        tracing::warn!(
            closed_calls = recovery.closed_calls.len(),
            closed_rooms = recovery.closed_rooms.len(),
            pending_callbacks = recovery.pending.len(),
            dropped_notifies = recovery.dropped_notifies,
            "recovered from an unclean stop"
        );
    }
    let disk = crate::store::DiskGuard { dir: config.data_dir.clone(), min_free: config.min_free_disk_bytes };
    let journal = Journal::open(&db_path, Some(disk))?;
    let store = Store::open(&db_path)?;
    let callbacks = Callbacks::new()?;
    let metrics = Arc::new(Metrics::default());
    let services: HashMap<String, ServiceConfig> =
        config.services.iter().map(|s| (s.id.clone(), s.clone())).collect();
    let rules = services
        .iter()
        .map(|(id, s)| {
            (
                id.clone(),
                ServiceRules {
                    ring_timeout_ms: u64::from(s.ring_timeout_secs) * 1000,
                    max_call_ms: u64::from(s.max_call_secs) * 1000,
                    rc_idc: s.rc_idc.clone(),
                    has_notify: s.notify_cb_url.is_some(),
                },
            )
        })
        .collect();
    let room_rules = services
        .iter()
        .map(|(id, s)| {
            (
                id.clone(),
                crate::room::RoomRules {
                    max_participants: s.max_room_participants,
                    max_speakers: s.max_room_speakers as usize,
                    alone_kick_out_ms: u64::from(s.alone_kick_out_secs) * 1000,
                    max_call_ms: u64::from(s.max_call_secs) * 1000,
                    has_gcall_cb: s.on_gcall_evt_cb_url.is_some(),
                },
            )
        })
        .collect();
    let settings = Settings {
        reconnect_grace_ms: config.reconnect_grace_ms,
        calls_per_user_per_sec: config.limits.calls_per_user_per_sec,
        calls_per_user_burst: config.limits.calls_per_user_burst,
    };
    let (core_tx, core_rx) = mpsc::channel(8192);
    let core = CoreHandle::new(core_tx);
    let (relay_tx, mut relay_rx) = mpsc::unbounded_channel::<RelayEvent>();
    let media = MediaRelay::start(
        crate::media::SocketSettings {
            bind: config.media_bind,
            advertise: config.media_advertise,
            buffer_bytes: config.media_socket_buffer_bytes,
            shards: config.media_shards,
        },
        Duration::from_millis(config.media_timeout_ms),
        relay_tx,
        metrics.media.clone(),
    )
    .await?;
    {
        let core = core.clone();
        tokio::spawn(async move {
            while let Some(event) = relay_rx.recv().await {
                let input = match event {
                    RelayEvent::Lost { sid, party } => Input::MediaLost { sid, party },
                    RelayEvent::Offer { sid, party, offer_id, sdp } => {
                        Input::RelayOffer { sid, party, offer_id, sdp }
                    }
                    RelayEvent::Lines { sid, party, lines } => Input::RelayLines { sid, party, lines },
                    RelayEvent::Levels { sid, levels } => Input::RelayLevels { sid, levels },
                    RelayEvent::Quality { sid, quality } => Input::RelayQuality { sid, quality },
                };
                let _ = core.send(CoreCmd::Input(input)).await;
            }
        });
    }
    let (delivery_tx, delivery_rx) = mpsc::unbounded_channel();
    let delivery_handle = DeliveryHandle::new(delivery_tx);
    let delivery = DeliveryRunner::new(
        &config,
        callbacks,
        store.clone(),
        core.clone(),
        delivery_handle.clone(),
        metrics.clone(),
    );
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let delivery_task = tokio::spawn(delivery.run(delivery_rx, stop_rx.clone()));
    if !recovery.pending.is_empty() {
        delivery_handle.send(DeliveryCmd::Enqueue(recovery.pending));
    }
    let runner = CoreRunner {
        switch: Switch::with_rooms(settings, rules, room_rules, cc_key.clone()),
        sessions: HashMap::new(),
        services: services.clone(),
        journal,
        media,
        greetings: Vec::new(),
        core: core.clone(),
        delivery: delivery_handle.clone(),
        metrics: metrics.clone(),
        notify_timeout_ms: config.notify_timeout_ms,
    };
    let core_task = tokio::spawn(runner.run(core_rx, stop_rx));

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
    });

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: config.listen, source })?;
    let app = router(shared.clone());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let settings = crate::listener::ListenerSettings {
        header_timeout: Duration::from_millis(config.limits.header_timeout_ms),
        pending_per_ip: config.limits.pending_per_ip,
    };
    let join = tokio::spawn(crate::listener::serve(listener, app, settings, shared.metrics.clone(), stop_rx));
    tracing::info!(%addr, services = shared.services.len(), "switchboard listening");
    Ok(ServerHandle {
        addr,
        shared,
        shutdown: Some(stop_tx),
        join,
        stop,
        tasks: vec![core_task, delivery_task],
    })
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(switchboard_protocol::SIGNAL_PATH, get(crate::signal::upgrade))
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

/// Owns the [`Switch`], the session senders and the core's database connection;
/// the only task that touches them.
struct CoreRunner {
    switch: Switch,
    sessions: HashMap<SessionId, SessionTx>,
    services: HashMap<String, ServiceConfig>,
    journal: Journal,
    media: MediaRelay,
    greetings: Vec<(SessionId, ServerMessage)>,
    core: CoreHandle,
    delivery: DeliveryHandle,
    metrics: Arc<Metrics>,
    notify_timeout_ms: u64,
}

impl CoreRunner {
    async fn run(mut self, mut rx: mpsc::Receiver<CoreCmd>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut batch = Vec::with_capacity(256);
        loop {
            let sleep = self.switch.poll_timeout().map(|at| {
                let wait = at.saturating_sub(now_ms());
                tokio::time::Instant::now() + Duration::from_millis(wait)
            });
            tokio::select! {
                n = rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break;
                    }
                    let now = now_ms();
                    for cmd in batch.drain(..) {
                        self.apply(now, cmd);
                    }
                }
                _ = sleep_until(sleep), if sleep.is_some() => {
                    self.switch.handle_timeout(now_ms());
                }
                _ = stop.wait_for(|s| *s) => break,
            }
            self.drain();
        }
        self.media.shutdown().await;
    }

    fn apply(&mut self, now: Millis, cmd: CoreCmd) {
        match cmd {
            CoreCmd::Open { session, party, auth, ip, ue_type, tx, welcome } => {
                self.sessions.insert(session, tx);
                self.greetings.push((session, welcome));
                self.switch.handle(now, Input::Open { session, party, auth, ip, ue_type });
            }
            CoreCmd::Input(input) => {
                if let Input::Closed { session } = &input {
                    self.sessions.remove(session);
                }
                if let Input::Message { session, msg } = &input {
                    if !self.journal.healthy() && self.refuse_while_store_fails(*session, msg) {
                        return;
                    }
                }
                self.switch.handle(now, input);
            }
            CoreCmd::Census(reply) => {
                let _ = reply.send(self.switch.census());
            }
            CoreCmd::GetCall { service_id, sid, reply } => {
                let _ = reply.send(self.switch.live_call(&service_id, &sid));
            }
            CoreCmd::DropSession(session) => {
                self.sessions.remove(&session);
            }
            CoreCmd::Room(request) => self.room_request(now, request),
            CoreCmd::ForceEnd { service_id, sid, user_rel_code, reply } => {
                let found = self.switch.live_call(&service_id, &sid).is_some();
                if found {
                    self.switch.handle(now, Input::ForceEnd { service_id, sid, user_rel_code });
                }
                let _ = reply.send(found);
            }
        }
    }

    /// While the database cannot be written, nothing new starts: a call or room whose
    /// record could not be kept is refused with SERVICE_BUSY (1504) instead. Calls
    /// already live go on; their steps wait for the disk.
    fn refuse_while_store_fails(
        &self,
        session: SessionId,
        msg: &switchboard_protocol::ClientMessage,
    ) -> bool {
        use switchboard_protocol::ClientMessage as M;
        let req = match msg {
            M::MakeCall { req, .. } | M::JoinRoom { req, .. } => *req,
            _ => return false,
        };
        if let Some(tx) = self.sessions.get(&session) {
            let refusal = ServerMessage::Error {
                req,
                error: switchboard_protocol::ErrorCode::Internal,
                reason: Some(switchboard_protocol::DisconnectReason::ServiceBusy),
                message: "the server cannot store calls right now; try again shortly".into(),
            };
            let _ = tx.try_send(refusal.to_json());
        }
        true
    }

    fn room_request(&mut self, now: Millis, request: RoomRequest) {
        match request {
            RoomRequest::List { service_id, reply } => {
                let _ = reply.send(self.switch.rooms().list(&service_id));
            }
            RoomRequest::Get { service_id, room_id, reply } => {
                let _ = reply.send(self.switch.rooms().get(&service_id, &room_id));
            }
            RoomRequest::Kick { service_id, room_id, user_ids, user_rel_code, reply } => {
                let _ = reply.send(self.switch.kick(now, &service_id, &room_id, &user_ids, user_rel_code));
            }
            RoomRequest::Message { service_id, room_id, user_ids, data, reply } => {
                let _ =
                    reply.send(self.switch.app_message(&service_id, &room_id, user_ids.as_deref(), &data));
            }
            RoomRequest::Close { service_id, room_id, user_rel_code, reply } => {
                let _ = reply.send(self.switch.close_room(now, &service_id, &room_id, user_rel_code));
            }
        }
    }

    fn media_offer(&self, sid: String, party: String, session: SessionId, req: Option<u64>, sdp: String) {
        let Some(tx) = self.sessions.get(&session).cloned() else { return };
        let (reply, answer) = oneshot::channel();
        self.media.send(MediaCmd::Offer { sid: sid.clone(), party, sdp, reply });
        tokio::spawn(async move {
            let msg = match answer.await {
                Ok(Ok(sdp)) => ServerMessage::MediaAnswer { req, sid: sid.into(), sdp },
                Ok(Err(message)) => ServerMessage::Error {
                    req,
                    error: switchboard_protocol::ErrorCode::InvalidParam,
                    reason: None,
                    message,
                },
                Err(_) => return,
            };
            let _ = tx.send(msg.to_json()).await;
        });
    }

    /// Writes what the core decided, then queues callbacks, then tells clients: a
    /// client that saw `disconnected` can count on the record being on disk.
    fn drain(&mut self) {
        let now = now_ms();
        let mut batch = Batch::default();
        let mut sends = std::mem::take(&mut self.greetings);
        while let Some(out) = self.switch.poll_output() {
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
                Output::Live(live) => batch.live.push((live.from_service_id.clone(), live)),
                Output::MediaOffer { sid, party, session, req, sdp } => {
                    self.media_offer(sid, party, session, req, sdp)
                }
                Output::MediaAnswer { sid, party, offer_id, sdp } => {
                    self.media.send(MediaCmd::Answer { sid, party, offer_id, sdp })
                }
                Output::AddMedia { sid, party, kind } => self.media.send(MediaCmd::AddLine {
                    sid,
                    party,
                    kind: match kind {
                        switchboard_protocol::MediaType::Audio => str0m::media::MediaKind::Audio,
                        switchboard_protocol::MediaType::Video => str0m::media::MediaKind::Video,
                    },
                }),
                Output::MediaEnd { sid } => self.media.send(MediaCmd::End { sid }),
                Output::MediaLeave { sid, party } => self.media.send(MediaCmd::Leave { sid, party }),
                Output::RoomLeft { reason } => self.metrics.room_left(reason),
                Output::LiveRoom(room) => batch.live_rooms.push(room),
                Output::RoomGone { sid } => batch.rooms_gone.push(sid),
                Output::VideoFrom { sid, party, from } => {
                    self.media.send(MediaCmd::VideoFrom { sid, party, from })
                }
                Output::RoomMedia { sid, speakers, video } => {
                    self.media.send(MediaCmd::Speakers { sid, limit: speakers, video })
                }
                Output::Gcall { service_id, seq, record } => {
                    if self.services.get(&service_id).is_some_and(|s| s.on_gcall_evt_cb_url.is_some()) {
                        batch.callbacks.push(NewCallback {
                            cb_id: format!("gcall-{}-{seq}", record.sid),
                            key: record.sid.to_string(),
                            kind: Kind::Gcall,
                            query: record.to_query(),
                            deadline_ms: None,
                            service_id,
                        });
                    }
                }
                Output::Notify { service_id, record } => batch.callbacks.push(NewCallback {
                    cb_id: format!("notify-{}", record.sid),
                    key: record.sid.to_string(),
                    kind: Kind::Notify,
                    query: record.to_query(),
                    deadline_ms: Some(now + self.notify_timeout_ms),
                    service_id,
                }),
                Output::Record { service_id, record } => {
                    self.metrics.call_ended(record.disconnect_reason);
                    let deliver =
                        self.services.get(&service_id).is_some_and(|s| s.on_call_evt_cb_url.is_some());
                    batch.add_record(service_id, record, deliver);
                }
            }
        }
        let rooms = self.switch.rooms().census();
        self.metrics.rooms.set(rooms.rooms as i64);
        self.metrics.room_participants.set(rooms.participants as i64);
        // Frames go out only after the step is on disk (the journal runs this once
        // its group commit is done), in step order.
        let frames: Vec<(SessionId, SessionTx, String)> = sends
            .into_iter()
            .filter_map(|(session, msg)| {
                self.sessions.get(&session).map(|tx| (session, tx.clone(), msg.to_json()))
            })
            .collect();
        if batch.is_empty() && frames.is_empty() {
            return;
        }
        let delivery = self.delivery.clone();
        let metrics = self.metrics.clone();
        let core = self.core.clone();
        self.journal.submit(
            batch,
            Box::new(move |rows| {
                if !rows.is_empty() {
                    metrics.callbacks_queued.inc_by(rows.len() as u64);
                    delivery.send(DeliveryCmd::Enqueue(rows));
                }
                for (session, tx, text) in frames {
                    if let Err(e) = tx.try_send(text) {
                        if matches!(e, mpsc::error::TrySendError::Full(_)) {
                            // A client that does not read its frames loses its session
                            // rather than slowing everyone else down.
                            tracing::warn!(%session, "session outbox full; dropping session");
                            core.try_send(CoreCmd::DropSession(session));
                        }
                    }
                }
            }),
        );
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
