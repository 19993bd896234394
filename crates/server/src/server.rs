//! The IO shell: binds the HTTP/WebSocket listener, runs the call core on one task,
//! and turns the core's outputs into frames and HTTP callbacks.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::Router;
use switchboard_protocol::record::{CallRecord, NotifyRecord};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::auth::CcKey;
use crate::call::{Census, Input, Millis, Output, ServiceRules, SessionAuth, SessionId, Settings, Switch};
use crate::callbacks::Callbacks;
use crate::config::{Config, ConfigError, ServiceConfig};
use crate::limit::KeyedLimiter;
use crate::store::{Store, StoreError};

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
}

/// Wall-clock epoch milliseconds: the core's clock.
pub fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as Millis)
}

/// Outbound frames of one session, already serialized.
pub type SessionTx = mpsc::Sender<String>;

/// Commands to the core task.
pub(crate) enum CoreCmd {
    Open { session: SessionId, party: crate::call::Party, auth: SessionAuth, ip: String, tx: SessionTx },
    Input(Input),
    Census(oneshot::Sender<Census>),
}

/// State every connection shares (read-mostly).
pub(crate) struct Shared {
    pub config: Config,
    pub services: HashMap<String, ServiceConfig>,
    pub cc_key: CcKey,
    pub core: mpsc::Sender<CoreCmd>,
    pub next_session: AtomicU64,
    pub ip_limiter: Mutex<KeyedLimiter<IpAddr>>,
}

/// A running server.
pub struct ServerHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    store: Store,
    shutdown: Option<oneshot::Sender<()>>,
    join: JoinHandle<()>,
}

impl ServerHandle {
    /// Live counts of sessions and calls.
    pub async fn census(&self) -> Census {
        let (tx, rx) = oneshot::channel();
        if self.shared.core.send(CoreCmd::Census(tx)).await.is_err() {
            return Census::default();
        }
        rx.await.unwrap_or_default()
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Base URL (`http://addr`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, closes connections and waits for the HTTP task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.join).await;
    }

    /// Waits until the server stops (it runs until shut down).
    pub async fn wait(self) {
        let _ = self.join.await;
    }
}

/// Starts a server on `config.listen` (port 0 picks one). The data dir must exist
/// and `config.services` must be final (see [`crate::config::prepare_data_dir`]).
pub async fn start(config: Config) -> Result<ServerHandle, ServerError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| ConfigError::DataDir { path: config.data_dir.clone(), source })?;
    let cc_key = CcKey::new(crate::config::server_secret(&config.data_dir)?);
    let store = Store::open(&config.data_dir.join("switchboard.db"))?;
    let callbacks = Callbacks::new()?;
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
    let settings = Settings {
        reconnect_grace_ms: config.reconnect_grace_ms,
        calls_per_user_per_sec: config.limits.calls_per_user_per_sec,
        calls_per_user_burst: config.limits.calls_per_user_burst,
    };
    let switch = Switch::new(settings, rules, cc_key.clone());
    let (core_tx, core_rx) = mpsc::channel(8192);
    let shared = Arc::new(Shared {
        ip_limiter: Mutex::new(KeyedLimiter::new(
            config.limits.connects_per_ip_per_sec,
            config.limits.connects_per_ip_burst,
        )),
        services: services.clone(),
        cc_key,
        core: core_tx.clone(),
        next_session: AtomicU64::new(1),
        config: config.clone(),
    });
    let runner = CoreRunner {
        switch,
        sessions: HashMap::new(),
        services,
        callbacks,
        store: store.clone(),
        core_tx,
        notify_timeout: Duration::from_millis(config.notify_timeout_ms),
        callback_timeout: Duration::from_millis(config.callback_timeout_ms),
    };
    tokio::spawn(runner.run(core_rx));

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: config.listen, source })?;
    let app = router(shared.clone());
    // Signaling frames are small and latency-bound: no Nagle delay.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let join = tokio::spawn(async move {
        let serve = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "http server failed");
        }
    });
    tracing::info!(%addr, services = shared.services.len(), "switchboard listening");
    Ok(ServerHandle { addr, shared, store, shutdown: Some(stop_tx), join })
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(switchboard_protocol::SIGNAL_PATH, get(crate::signal::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/", get(crate::signal::index))
        .with_state(shared)
}

/// Owns the [`Switch`] and the session senders; the only task that touches them.
struct CoreRunner {
    switch: Switch,
    sessions: HashMap<SessionId, SessionTx>,
    services: HashMap<String, ServiceConfig>,
    callbacks: Callbacks,
    store: Store,
    core_tx: mpsc::Sender<CoreCmd>,
    notify_timeout: Duration,
    callback_timeout: Duration,
}

impl CoreRunner {
    async fn run(mut self, mut rx: mpsc::Receiver<CoreCmd>) {
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
            }
            self.drain();
        }
    }

    fn apply(&mut self, now: Millis, cmd: CoreCmd) {
        match cmd {
            CoreCmd::Open { session, party, auth, ip, tx } => {
                self.sessions.insert(session, tx);
                self.switch.handle(now, Input::Open { session, party, auth, ip });
            }
            CoreCmd::Input(input) => {
                if let Input::Closed { session } = &input {
                    self.sessions.remove(session);
                }
                self.switch.handle(now, input);
            }
            CoreCmd::Census(reply) => {
                let _ = reply.send(self.switch.census());
            }
        }
    }

    fn drain(&mut self) {
        while let Some(out) = self.switch.poll_output() {
            match out {
                Output::Send(session, msg) => {
                    let Some(tx) = self.sessions.get(&session) else { continue };
                    if let Err(e) = tx.try_send(msg.to_json()) {
                        // A client that does not read its frames loses its session
                        // rather than slowing everyone else down.
                        tracing::warn!(session, error = %e, "session outbox full or closed; dropping session");
                        self.sessions.remove(&session);
                    }
                }
                Output::Notify { service_id, record } => self.notify(&service_id, record),
                Output::Record { service_id, record } => self.record(&service_id, record),
            }
        }
    }

    fn notify(&self, service_id: &str, record: NotifyRecord) {
        let Some(service) = self.services.get(service_id) else { return };
        let Some(url) = service.notify_cb_url.clone() else { return };
        let secret = service.api_secret.clone();
        let callbacks = self.callbacks.clone();
        let core = self.core_tx.clone();
        let timeout = self.notify_timeout;
        tokio::spawn(async move {
            let id = format!("notify-{}", record.sid);
            let result = callbacks.get(&url, &record.to_query(), &id, &secret, timeout).await;
            if let Err(e) = &result {
                tracing::warn!(sid = %record.sid, error = %e, "notify_cb failed");
            }
            let input = Input::PushResult { sid: record.sid, ok: result.is_ok() };
            let _ = core.send(CoreCmd::Input(input)).await;
        });
    }

    fn record(&self, service_id: &str, record: CallRecord) {
        self.store.record(service_id, &record);
        let Some(service) = self.services.get(service_id) else { return };
        let Some(url) = service.on_call_evt_cb_url.clone() else { return };
        let secret = service.api_secret.clone();
        let callbacks = self.callbacks.clone();
        let timeout = self.callback_timeout;
        tokio::spawn(async move {
            let id = format!("call-{}", record.sid);
            if let Err(e) = callbacks.get(&url, &record.to_query(), &id, &secret, timeout).await {
                tracing::warn!(sid = %record.sid, error = %e, "on_call_evt_cb failed");
            }
        });
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
