//! Scenario-test harness: the real server in-process on 127.0.0.1, a real HTTP app
//! server that records every callback, and real SDK clients.

pub mod balancer;
pub mod postgres;
pub mod redis;
pub mod room_media;
pub mod tied;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use axum::Router;
use switchboard_client::{Client, Credentials, Event, Events, MediaEvent, Sid};
use switchboard_server::auth::{mint_token, Claims};
use switchboard_server::config::{Config, LimitsConfig, ServiceConfig};
use switchboard_server::ServerHandle;
use tokio::sync::Notify;

/// Secret of the `acme` test service.
pub const ACME_SECRET: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
/// Secret of the `other` test service.
pub const OTHER_SECRET: &str = "ffffffffffffffffffffffffffffffff00000000000000000000000000000000";

/// One request the app server received.
#[derive(Debug, Clone)]
pub struct Hit {
    /// `/notify`, `/call_evt` or `/gcall_evt`.
    pub path: String,
    /// The raw query string.
    pub raw_query: String,
    /// Decoded query parameters.
    pub query: HashMap<String, String>,
    /// Parameter names in the order they were sent.
    pub names: Vec<String>,
    /// `X-Switchboard-Id`.
    pub id: String,
    /// `X-Switchboard-Signature`.
    pub signature: String,
    /// The status the app server answered.
    pub status: u16,
}

#[derive(Default)]
struct AppState {
    hits: Mutex<Vec<Hit>>,
    changed: Notify,
    notify_status: AtomicU16,
    /// Non-zero: every path answers this status.
    all_status: AtomicU16,
}

/// A real HTTP app server on 127.0.0.1 that records every request.
#[derive(Clone)]
pub struct AppServer {
    /// Base URL.
    pub url: String,
    addr: SocketAddr,
    state: Arc<AppState>,
    stop: Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
}

async fn record(
    State(s): State<Arc<AppState>>,
    uri: Uri,
    headers: axum::http::HeaderMap,
    RawQuery(q): RawQuery,
) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let raw_query = q.unwrap_or_default();
    let pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(raw_query.as_bytes()).into_owned().collect();
    let hit = Hit {
        path: uri.path().to_string(),
        names: pairs.iter().map(|(k, _)| k.clone()).collect(),
        query: pairs.into_iter().collect(),
        raw_query,
        id: header("x-switchboard-id"),
        signature: header("x-switchboard-signature"),
        status: 0,
    };
    let all = s.all_status.load(Ordering::Relaxed);
    let status = if all != 0 {
        all
    } else if hit.path == "/notify" {
        s.notify_status.load(Ordering::Relaxed)
    } else {
        200
    };
    if let Ok(mut h) = s.hits.lock() {
        h.push(Hit { status, ..hit });
    }
    s.changed.notify_waiters();
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

impl AppServer {
    /// Starts one on an ephemeral port.
    pub async fn start() -> AppServer {
        Self::start_on("127.0.0.1:0".parse().expect("addr")).await
    }

    /// Starts one on `addr` (a port of a stopped one, to bring it back).
    pub async fn start_on(addr: SocketAddr) -> AppServer {
        let state = Arc::new(AppState { notify_status: AtomicU16::new(200), ..AppState::default() });
        let mut app = AppServer { url: String::new(), addr, state, stop: Arc::default() };
        app.listen(addr).await;
        app
    }

    async fn listen(&mut self, addr: SocketAddr) {
        let router = Router::new().fallback(get(record)).with_state(self.state.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind app server");
        let addr = listener.local_addr().expect("app server addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        if let Ok(mut s) = self.stop.lock() {
            *s = Some(tx);
        }
        self.addr = addr;
        self.url = format!("http://{addr}");
    }

    /// Stops listening: requests are refused until [`AppServer::restart`].
    pub async fn stop(&self) {
        if let Some(tx) = self.stop.lock().ok().and_then(|mut s| s.take()) {
            let _ = tx.send(());
        }
        // Until the listener is closed, connections might still be accepted.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("app server did not stop");
    }

    /// Listens again on the same port, keeping what it recorded.
    pub async fn restart(&mut self) {
        let addr = self.addr;
        self.listen(addr).await;
    }

    /// Makes every path answer `status` (0: back to normal).
    pub fn set_status_all(&self, status: u16) {
        self.state.all_status.store(status, Ordering::Relaxed);
    }

    /// Makes notify_cb answer with this status from now on.
    pub fn set_notify_status(&self, status: u16) {
        self.state.notify_status.store(status, Ordering::Relaxed);
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Requests to `path` so far.
    pub fn hits_on(&self, path: &str) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| h.path == path).collect()
    }

    /// Waits (up to 10 s) for a request to `path` matching `pred`.
    pub async fn wait_for(&self, path: &str, pred: impl Fn(&Hit) -> bool) -> Hit {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let changed = self.state.changed.notified();
            if let Some(h) = self.hits().into_iter().find(|h| h.path == path && pred(h)) {
                return h;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("no {path} request matched within 10 s; got {:#?}", self.hits());
            }
        }
    }

    /// The notify_cb of a call to `to_user`.
    pub async fn notify_for(&self, to_user: &str) -> Hit {
        self.wait_for("/notify", |h| h.query.get("to_user_id").map(String::as_str) == Some(to_user)).await
    }

    /// Requests that the app server answered with 2xx.
    pub fn successes(&self) -> Vec<Hit> {
        self.hits().into_iter().filter(|h| (200..300).contains(&h.status)).collect()
    }
}

/// Verifies a callback exactly as docs/callbacks.md tells app servers to: split the
/// `X-Switchboard-Signature` header into `t` and `v1`, refuse a `t` more than
/// `tolerance` seconds from now, compute HMAC-SHA256 with the service's API secret
/// over `<t>.<raw query string>`, and compare in constant time.
pub fn verify_as_documented(
    api_secret: &str,
    header: &str,
    raw_query: &str,
    now: u64,
    tolerance: u64,
) -> bool {
    use hmac::Mac;
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        if let Some(x) = part.strip_prefix("t=") {
            t = x.parse::<u64>().ok();
        } else if let Some(x) = part.strip_prefix("v1=") {
            v1 = Some(x);
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    if t.abs_diff(now) > tolerance {
        return false;
    }
    let Ok(expected) = (0..v1.len())
        .step_by(2)
        .map(|i| v1.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or(()))
        .collect::<Result<Vec<u8>, ()>>()
    else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(api_secret.as_bytes()) else { return false };
    mac.update(format!("{t}.{raw_query}").as_bytes());
    mac.verify_slice(&expected).is_ok()
}

impl AppServer {
    /// Successful deliveries per `X-Switchboard-Id`.
    pub fn success_counts(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for h in self.successes() {
            *m.entry(h.id).or_insert(0) += 1;
        }
        m
    }

    /// The call record of `sid` (its successful delivery).
    pub async fn record_for(&self, sid: &str) -> Hit {
        self.wait_for("/call_evt", |h| h.status == 200 && h.query.get("sid").map(String::as_str) == Some(sid))
            .await
    }
}

/// A test service with its callbacks on `app`.
pub fn service(id: &str, secret: &str, app: &AppServer) -> ServiceConfig {
    ServiceConfig {
        id: id.into(),
        api_key: format!("{id}-key"),
        api_secret: secret.into(),
        notify_cb_url: Some(format!("{}/notify", app.url)),
        on_call_evt_cb_url: Some(format!("{}/call_evt", app.url)),
        on_gcall_evt_cb_url: Some(format!("{}/gcall_evt", app.url)),
        on_group_call_evt_cb_url: Some(format!("{}/group_call_evt", app.url)),
        ring_timeout_secs: 60,
        max_call_secs: 0,
        rc_idc: "JP".into(),
        max_room_participants: 50,
        max_room_speakers: 6,
        alone_kick_out_secs: 300,
    }
}

static DIRS: AtomicU64 = AtomicU64::new(0);

/// A fresh data dir under the system temp dir.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    let n = DIRS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("switchboard-test-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The real server, configured for tests: services `acme` and `other`, both
/// calling back to one app server.
pub struct Harness {
    /// The server.
    pub server: ServerHandle,
    /// The app server.
    pub app: AppServer,
    /// The config it runs with.
    pub config: Config,
    /// Its data dir, removed with it.
    pub data_dir: RemovedOnDrop,
}

/// A directory removed when this goes: a test leaves nothing behind (its server may still
/// hold the database open then; on Linux that is no obstacle).
pub struct RemovedOnDrop(pub std::path::PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Harness {
    /// Starts with default test settings.
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    /// Starts after `tune` adjusts the config.
    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Harness {
        init_tracing();
        let app = AppServer::start().await;
        let mut config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: temp_dir("srv"),
            services: vec![service("acme", ACME_SECRET, &app), service("other", OTHER_SECRET, &app)],
            limits: LimitsConfig {
                connects_per_ip_per_sec: 1000.0,
                connects_per_ip_burst: 1000.0,
                calls_per_user_per_sec: 100.0,
                calls_per_user_burst: 100.0,
                ..LimitsConfig::default()
            },
            reconnect_grace_ms: 500,
            notify_timeout_ms: 1500,
            media_timeout_ms: 60_000,
            ..Config::default()
        };
        tune(&mut config);
        config.validate().expect("valid test config");
        let server = switchboard_server::start(config.clone()).await.expect("server starts");
        let data_dir = RemovedOnDrop(config.data_dir.clone());
        Harness { server, app, config, data_dir }
    }

    /// Waits (up to 15 s) until no callback of any service is pending: everything the
    /// server queued so far was delivered, given up or dropped. A client that saw a
    /// frame can count on what the step before it queued being in the outbox (frames go
    /// out after the commit), so after this the app server's hits are final for it.
    pub async fn settled(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let mut pending = 0;
            for s in &self.config.services {
                pending += self.server.store().callbacks(&s.id, "pending", 1).await.map_or(1, |c| c.len());
            }
            if pending == 0 {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "callbacks still pending after 15 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 10 s) until the server counts at most `n` open sessions.
    pub async fn sessions_down_to(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.server.census().await.sessions > n {
            assert!(tokio::time::Instant::now() < deadline, "sessions still open after 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Base URL of the server.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// A valid token for `user` of `service`.
    pub fn token(&self, service: &str, user: &str) -> String {
        self.token_with(service, user, 3600)
    }

    /// A token valid for `ttl` seconds from now (negative: already expired).
    pub fn token_with(&self, service: &str, user: &str, ttl: i64) -> String {
        let s = self.config.service(service).expect("known service");
        let now = switchboard_server::server::now_ms() / 1000;
        let claims = Claims {
            iat: now.saturating_sub(10),
            exp: (now as i64 + ttl).max(0) as u64,
            ..Claims::new(&s.id, user, &s.api_key, now, 0)
        };
        mint_token(&s.api_secret, &claims)
    }

    /// A connected client of `acme`.
    pub async fn user(&self, user: &str) -> (Client, Events) {
        self.user_of("acme", user).await
    }

    /// A connected client of `service`.
    pub async fn user_of(&self, service: &str, user: &str) -> (Client, Events) {
        Client::connect(&self.url(), Credentials::token(service, user, self.token(service, user)))
            .await
            .unwrap_or_else(|e| panic!("{user} connects: {e}"))
    }

    /// A session with only a `cc_param`.
    pub async fn callee_by_cc_param(&self, param: &str) -> (Client, Events) {
        Client::connect(&self.url(), Credentials::CcParam(param.into()))
            .await
            .expect("cc_param session connects")
    }
}

/// The next event within 10 s, skipping none.
pub async fn next_event(events: &mut Events) -> Event {
    tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("event stream open")
}

/// Waits for the first event that `pick` accepts, skipping the others.
pub async fn wait_event<T>(events: &mut Events, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    loop {
        let ev = next_event(events).await;
        if let Some(t) = pick(&ev) {
            return t;
        }
    }
}

/// What a `Disconnected` event said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// The call.
    pub sid: Sid,
    /// Reason.
    pub reason: switchboard_client::DisconnectReason,
    /// Source.
    pub source: switchboard_client::DisconnectSource,
    /// By the remote party.
    pub by_remote: bool,
    /// App release code.
    pub user_rel_code: Option<String>,
}

/// Waits for the session's next `Disconnected`.
pub async fn disconnected(events: &mut Events) -> Ended {
    wait_event(events, |e| match e {
        Event::Disconnected { sid, reason, source, by_remote, user_rel_code } => Some(Ended {
            sid: sid.clone(),
            reason: *reason,
            source: *source,
            by_remote: *by_remote,
            user_rel_code: user_rel_code.clone(),
        }),
        _ => None,
    })
    .await
}

/// Waits for an `IncomingCall` and returns `(sid, cc_param)`.
pub async fn incoming(events: &mut Events) -> (Sid, String) {
    wait_event(events, |e| match e {
        Event::IncomingCall { sid, cc_param, .. } => Some((sid.clone(), cc_param.clone())),
        _ => None,
    })
    .await
}

/// The callee answers the call ringing on its device: waits for `incoming_call`,
/// verifies, accepts, and waits until the caller is connected too. Returns the sid.
pub async fn pick_up(callee: &Client, callee_ev: &mut Events, caller_ev: &mut Events) -> Sid {
    let (sid, cc) = incoming(callee_ev).await;
    callee.verify_call(&cc).await.expect("verified");
    callee.accept_call(&sid).await.expect("accepted");
    assert_eq!(connected(caller_ev).await, sid);
    sid
}

/// Waits for `Connected`.
pub async fn connected(events: &mut Events) -> Sid {
    wait_event(events, |e| match e {
        Event::Connected { sid, .. } => Some(sid.clone()),
        _ => None,
    })
    .await
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

type RawWs = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A hand-driven WebSocket session, for sending what no SDK would.
pub struct RawSession {
    ws: RawWs,
}

/// How a raw session's next read ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RawFrame {
    /// A JSON text frame.
    Json(serde_json::Value),
    /// A close frame with its code.
    Close(Option<u16>),
    /// The connection ended without a close frame.
    Gone,
}

impl RawSession {
    /// Opens the WebSocket without saying hello.
    pub async fn open(h: &Harness) -> RawSession {
        Self::open_with_headers(h, &[]).await
    }

    /// Opens the WebSocket, the upgrade request carrying these headers too.
    pub async fn open_with_headers(h: &Harness, headers: &[(&'static str, &str)]) -> RawSession {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("ws://{}{}", h.server.addr, switchboard_protocol::SIGNAL_PATH);
        let mut request = url.as_str().into_client_request().expect("a request");
        for (name, value) in headers {
            request.headers_mut().append(*name, value.parse().expect("a header value"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("raw connect");
        RawSession { ws }
    }

    /// Opens and says hello as `user` of `acme`.
    pub async fn connect(h: &Harness, user: &str) -> RawSession {
        Self::connect_with_headers(h, user, &[]).await
    }

    /// [`RawSession::connect`], the upgrade request carrying these headers too.
    pub async fn connect_with_headers(
        h: &Harness,
        user: &str,
        headers: &[(&'static str, &str)],
    ) -> RawSession {
        let mut s = Self::open_with_headers(h, headers).await;
        s.send(&format!(r#"{{"type":"hello","v":1,"token":"{}"}}"#, h.token("acme", user))).await;
        s.wait_for("welcome").await;
        s
    }

    /// Opens and says hello as `user` of `acme`, as a call-engine session.
    pub async fn engine(h: &Harness, user: &str) -> RawSession {
        let mut s = Self::open(h).await;
        let token = h.token("acme", user);
        s.send(&format!(r#"{{"type":"hello","v":1,"token":"{token}","engine":true}}"#)).await;
        s.wait_for("welcome").await;
        s
    }

    /// Waits for the call-engine event `name` (a `call_event` frame), skipping other
    /// frames; the frame.
    pub async fn wait_event(&mut self, name: &str) -> serde_json::Value {
        loop {
            match self.next().await {
                RawFrame::Json(v) if v["type"] == "call_event" && v["event"]["name"] == name => return v,
                RawFrame::Json(_) => continue,
                other => panic!("waiting for {name}, got {other:?}"),
            }
        }
    }

    /// Sends a text frame.
    pub async fn send(&mut self, text: &str) {
        use futures_util::SinkExt;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::Text(text.to_string().into()))
            .await
            .expect("raw send");
    }

    /// Sends any frame; false if the connection is gone.
    pub async fn send_frame(&mut self, m: tokio_tungstenite::tungstenite::Message) -> bool {
        use futures_util::SinkExt;
        self.ws.send(m).await.is_ok()
    }

    /// The next frame (10 s at most).
    pub async fn next(&mut self) -> RawFrame {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let f = tokio::time::timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("a frame within 10 s");
            return match f {
                Some(Ok(Message::Text(t))) => {
                    RawFrame::Json(serde_json::from_str(&t).expect("server sends JSON"))
                }
                Some(Ok(Message::Close(c))) => RawFrame::Close(c.map(|c| u16::from(c.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => RawFrame::Gone,
            };
        }
    }

    /// Waits for a frame of `type`, skipping others.
    pub async fn wait_for(&mut self, kind: &str) -> serde_json::Value {
        loop {
            match self.next().await {
                RawFrame::Json(v) if v["type"] == kind => return v,
                RawFrame::Json(_) => continue,
                other => panic!("waiting for {kind}, got {other:?}"),
            }
        }
    }
}

/// Waits (up to 10 s) for the media event `want` names; panics with `what` otherwise.
pub async fn media_event(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<MediaEvent>,
    want: fn(&MediaEvent) -> bool,
    what: &str,
) {
    let wait = async {
        while let Some(ev) = rx.recv().await {
            if want(&ev) {
                return true;
            }
        }
        false
    };
    match tokio::time::timeout(Duration::from_secs(10), wait).await {
        Ok(true) => {}
        Ok(false) => panic!("media ended before: {what}"),
        Err(_) => panic!("no {what} within 10 s"),
    }
}

/// Sends a tone for `secs` seconds, paced in real time.
pub fn send_tone(
    media: std::sync::Arc<switchboard_client::Media>,
    hz: f64,
    secs: u32,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut enc = switchboard_client::tone::ToneEncoder::new(hz).expect("encoder");
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for _ in 0..secs * 50 {
            tick.tick().await;
            media.send_audio(enc.next_frame().expect("encode"), 960);
        }
    })
}

/// Decodes received audio until `frames` frames arrived.
pub async fn receive_tone(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<MediaEvent>,
    frames: usize,
) -> Vec<f32> {
    let mut dec = switchboard_client::tone::Decoder::new().expect("decoder");
    let mut pcm = Vec::new();
    let mut n = 0;
    let wait = async {
        while let Some(ev) = rx.recv().await {
            if let MediaEvent::Audio { payload, .. } = ev {
                dec.decode(&payload, &mut pcm);
                n += 1;
                if n >= frames {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), wait).await.expect("audio arrives");
    pcm
}
