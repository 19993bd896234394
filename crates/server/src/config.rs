//! Server configuration: TOML file, environment overrides for secrets, and the
//! embedded defaults (SQLite in the data dir, a demo service).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The TOML is invalid.
    #[error("invalid config: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value breaks a rule.
    #[error("invalid config: {0}")]
    Invalid(String),
    /// The data dir could not be prepared.
    #[error("data dir {path}: {source}")]
    DataDir {
        /// The dir.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
}

/// One tenant (`[[service]]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Service ID (`[A-Za-z0-9.-]+`, ≤ 64 bytes).
    pub id: String,
    /// API key: the `iss` of its access tokens and the REST user name.
    pub api_key: String,
    /// API secret (64 lowercase hex chars): signs tokens and callbacks.
    pub api_secret: String,
    /// notify_cb URL (HTTP GET). Without it the callee can only be rung directly.
    #[serde(default)]
    pub notify_cb_url: Option<String>,
    /// on_call_evt_cb URL (HTTP GET).
    #[serde(default)]
    pub on_call_evt_cb_url: Option<String>,
    /// on_gcall_evt_cb URL (HTTP GET).
    #[serde(default)]
    pub on_gcall_evt_cb_url: Option<String>,
    /// on_group_call_evt_cb URL (HTTP GET): the record of each call-engine group call.
    #[serde(default)]
    pub on_group_call_evt_cb_url: Option<String>,
    /// Seconds a call rings before NOANSWER.
    #[serde(default = "default_ring_timeout")]
    pub ring_timeout_secs: u32,
    /// Longest connected time before MAX_CALL_TIME_EXCEEDED; 0 = no limit.
    #[serde(default)]
    pub max_call_secs: u32,
    /// Region code written to call records (`rc_idc`).
    #[serde(default = "default_rc_idc")]
    pub rc_idc: String,
    /// Most participants in one room; one more is refused with ROOM_IS_FULL.
    #[serde(default = "default_max_room_participants")]
    pub max_room_participants: u32,
    /// Most speakers heard at once in a room: above it only the loudest are forwarded
    /// (by the RTP audio level they send).
    #[serde(default = "default_max_room_speakers")]
    pub max_room_speakers: u32,
    /// Seconds a participant may stay alone in a room before ALONE_KICK_OUT; 0 = no limit.
    #[serde(default = "default_alone_kick_out")]
    pub alone_kick_out_secs: u32,
}

fn default_max_room_participants() -> u32 {
    50
}
fn default_max_room_speakers() -> u32 {
    6
}
fn default_alone_kick_out() -> u32 {
    300
}

fn default_ring_timeout() -> u32 {
    60
}
fn default_rc_idc() -> String {
    "KR".into()
}

/// Rate limits (token buckets).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// New signaling connections per second from one IP address.
    pub connects_per_ip_per_sec: f64,
    /// Burst of new connections from one IP address.
    pub connects_per_ip_burst: f64,
    /// Messages per second on one session.
    pub messages_per_session_per_sec: f64,
    /// Burst of messages on one session.
    pub messages_per_session_burst: f64,
    /// `make_call` / `verify_call` per second per user.
    pub calls_per_user_per_sec: f64,
    /// Burst of `make_call` / `verify_call` per user.
    pub calls_per_user_burst: f64,
    /// REST API requests per second per service.
    pub api_per_service_per_sec: f64,
    /// Burst of REST API requests per service.
    pub api_per_service_burst: f64,
    /// A connection must send a complete HTTP request head within this many ms
    /// (idle keep-alive connections too), or it is closed.
    pub header_timeout_ms: u64,
    /// Connections from one address (an IPv6 /64) that have not authenticated yet
    /// (no `hello` accepted, no REST request with valid credentials); more are closed
    /// at once.
    pub pending_per_ip: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            connects_per_ip_per_sec: 50.0,
            connects_per_ip_burst: 200.0,
            messages_per_session_per_sec: 50.0,
            messages_per_session_burst: 100.0,
            calls_per_user_per_sec: 2.0,
            calls_per_user_burst: 10.0,
            api_per_service_per_sec: 100.0,
            api_per_service_burst: 100.0,
            header_timeout_ms: 5_000,
            pending_per_ip: 64,
        }
    }
}

/// Callback delivery.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CallbacksConfig {
    /// Base delay of the first retry, ms (actual: 50-100 % of it).
    pub retry_first_ms: u64,
    /// Longest delay between retries, ms.
    pub retry_max_ms: u64,
    /// Give up on a callback this long after it was queued, seconds.
    pub give_up_secs: u64,
    /// Requests in flight at once per service.
    pub per_service_concurrency: usize,
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        Self {
            retry_first_ms: 1_000,
            retry_max_ms: 300_000,
            give_up_secs: 86_400,
            per_service_concurrency: 32,
        }
    }
}

/// The whole server configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP/WebSocket listen address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where the database and generated secrets live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Below this many free bytes on the data directory's filesystem, new calls and
    /// room joins are refused with SERVICE_BUSY, so the records of live calls still
    /// have room. 0 turns the check off.
    #[serde(default = "default_min_free_disk")]
    pub min_free_disk_bytes: u64,
    /// PostgreSQL instead of the embedded SQLite file in `data_dir`:
    /// `postgres://user:password@host:port/db`. Nodes of one deployment share it; each
    /// has its own `node_id`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// This node's name in a deployment of several (needed with `database_url`): the
    /// calls and rooms it owns and the callbacks it delivers are marked with it. Keep it
    /// across restarts: a node that comes back closes what it left live.
    #[serde(default)]
    pub node_id: Option<String>,
    /// How long a node's hold on a pending callback lasts without being renewed (it
    /// renews every third of it). When a node dies, another takes over its callbacks once
    /// this has run out: every callback is delivered, none by two nodes at once.
    #[serde(default = "default_outbox_lease_ms")]
    pub outbox_lease_ms: u64,
    /// With `database_url`: a node whose heartbeat in the database is older than this
    /// counts as gone, and another node closes the calls and rooms it left live (their
    /// records and callbacks, each once). Keep the nodes' clocks in sync (NTP).
    #[serde(default = "default_node_timeout_ms")]
    pub node_timeout_ms: u64,
    /// With `database_url`: the Redis that joins the nodes of one deployment
    /// (`redis://:password@host:port/db`, or `rediss://` over TLS). Any node then takes any
    /// client: a call or room lives on one node, and the others carry their clients'
    /// signaling to it. Needs `cluster_secret`.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// The deployment's shared secret (at least 32 bytes, the same on every node):
    /// messages between nodes are signed with it, and the `cc_param`s a node mints are
    /// good on every other.
    #[serde(default)]
    pub cluster_secret: Option<String>,
    /// The CA certificates (PEM) that the TLS certificates of PostgreSQL (with
    /// `sslmode=require` in `database_url`) and Redis (a `rediss://` URL) chain to; by
    /// default the system's roots (`SSL_CERT_FILE` names another bundle). The
    /// certificate must name the host the URL connects to.
    #[serde(default)]
    pub backend_ca_file: Option<PathBuf>,
    /// On SIGTERM the server drains: it takes no new calls or rooms
    /// (SERVICE_MAINTENANCE), lets the live ones end, and stops when none is left or
    /// after this many seconds, whichever comes first. A second SIGTERM (or Ctrl-C)
    /// stops it at once.
    #[serde(default = "default_drain_timeout_secs")]
    pub drain_timeout_secs: u64,
    /// Clients send `ping` at least this often (seconds).
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u32,
    /// A session silent this long is dead (seconds).
    #[serde(default = "default_session_timeout")]
    pub session_timeout_secs: u32,
    /// A party whose sessions are all gone may reconnect within this long before
    /// the call ends with NETWORK_UNSTABLE (milliseconds).
    #[serde(default = "default_grace")]
    pub reconnect_grace_ms: u64,
    /// Deadline of a notify_cb request (milliseconds); past it the push failed.
    #[serde(default = "default_notify_timeout")]
    pub notify_timeout_ms: u64,
    /// Deadline of other callback requests (milliseconds).
    #[serde(default = "default_callback_timeout")]
    pub callback_timeout_ms: u64,
    /// UDP address of the media relay (one port for all media). Port 0 picks one at
    /// start; production wants a fixed port opened in the firewall.
    #[serde(default = "default_media_bind")]
    pub media_bind: SocketAddr,
    /// The address clients reach the media port at (default: the bind address):
    /// `"203.0.113.10"`, or with a port when a NAT or load balancer maps another one
    /// (`"203.0.113.10:40000"`).
    #[serde(default)]
    pub media_advertise: Option<Advertise>,
    /// A connected party whose media stops this long ends the call (NETWORK_UNSTABLE).
    #[serde(default = "default_media_timeout")]
    pub media_timeout_ms: u64,
    /// `SO_RCVBUF` and `SO_SNDBUF` of the media socket, bytes: room for bursts while
    /// the relay is busy (capped by the kernel's `net.core.rmem_max`/`wmem_max`
    /// unless the server runs as root).
    #[serde(default = "default_media_socket_buffer")]
    pub media_socket_buffer_bytes: usize,
    /// Relay shards: threads, each with a UDP port of its own (`media_bind`'s port +
    /// shard number when that port is set) and the sessions placed on it. 0: one per
    /// core.
    #[serde(default)]
    pub media_shards: usize,
    /// Passive ICE-TCP (RFC 6544) for clients whose network drops UDP: a TCP port on
    /// `media_bind`'s address (shard `i` listens on port + `i`; 0: an ephemeral port
    /// per shard), offered beside UDP at a lower priority. Production: a fixed port
    /// (7881) opened in the firewall.
    #[serde(default)]
    pub media_tcp_port: u16,
    /// Offer ICE-TCP at all (default true).
    #[serde(default = "yes")]
    pub media_tcp: bool,
    /// The embedded TURN server (RFC 8656) for networks that let only a TURN server
    /// through: UDP and TCP on this port of `media_bind`'s address (0: one picked at
    /// start; production: 3478). It relays only to the relay's own media addresses.
    #[serde(default)]
    pub turn_port: u16,
    /// Run the embedded TURN server (default true).
    #[serde(default = "yes")]
    pub turn: bool,
    /// Where allocations' relayed sockets bind (default: `media_bind`'s address).
    #[serde(default)]
    pub turn_relay_ip: Option<std::net::IpAddr>,
    /// How long the TURN credentials in `welcome` are good, seconds (they are checked
    /// at each allocation and refresh, so a call needs them for its whole length).
    #[serde(default = "default_turn_ttl")]
    pub turn_credential_ttl_secs: u64,
    /// Allocations one user may hold at once.
    #[serde(default = "default_turn_allocations")]
    pub turn_allocations_per_user: usize,
    /// Bytes per second one allocation may relay each way.
    #[serde(default = "default_turn_bytes_per_sec")]
    pub turn_bytes_per_sec: u64,
    /// TLS in the server itself: with a certificate chain and its key (PEM files), the
    /// signaling listener serves https and wss (a small deployment needs no proxy), and
    /// the embedded TURN server answers TURN over TLS on that same port too (a STUN
    /// message after the handshake goes to TURN, anything else is HTTP), so a firewall
    /// that lets only 443 through still carries calls.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// TURN over TLS on a port of its own as well (needs `tls_cert`; 0: one picked at
    /// start). Production: 5349, or 443 on an address of its own.
    #[serde(default)]
    pub turn_tls_port: Option<u16>,
    /// A `turns:` URL to hand out when TLS is terminated in front of the server (a load
    /// balancer that forwards the decrypted stream to `turn_port` over TCP), e.g.
    /// `turns:turn.example.com:443?transport=tcp`. Needs no certificate here.
    #[serde(default)]
    pub turn_tls_url: Option<String>,
    /// TURN servers run apart from Switchboard (coturn with `use-auth-secret`): each gets
    /// TURN REST credentials in `welcome`, made with its shared secret.
    #[serde(default)]
    pub turn_servers: Vec<ExternalTurn>,
    /// Load balancers in front of the server (addresses or networks, `10.0.0.0/8`):
    /// from them, and only from them, the client address a `Forwarded` or
    /// `X-Forwarded-For` header names counts (for `srcip`/`dstip` in records and the
    /// per-address connection limits).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The header the trusted proxies write the client into: `x-forwarded-for` (nginx,
    /// HAProxy, the cloud balancers) or `forwarded` (RFC 7239). Only that one is read: the
    /// other, passed through untouched, is the client's to forge.
    #[serde(default = "default_forwarded_header")]
    pub forwarded_header: String,
    /// The trusted proxies speak the PROXY protocol (HAProxy's v1 or v2, as TCP load
    /// balancers do): every connection from them starts with a header naming the client,
    /// who is then counted (`pending_per_ip` too) and recorded as if it had connected
    /// itself. Connections from other addresses are served as they are.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Rate limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Callback delivery.
    #[serde(default)]
    pub callbacks: CallbacksConfig,
    /// The tenants.
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceConfig>,
    /// Set when the server runs on embedded defaults with the generated demo service.
    #[serde(skip)]
    pub demo: bool,
}

/// A TURN server run apart from Switchboard, sharing a secret with it (TURN REST
/// credentials: coturn's `use-auth-secret` and `static-auth-secret`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ExternalTurn {
    /// Its `turn:` / `turns:` URLs as the clients are to use them.
    pub urls: Vec<String>,
    /// The shared secret.
    pub secret: String,
}

fn default_forwarded_header() -> String {
    "x-forwarded-for".into()
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7880))
}
fn default_media_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
fn yes() -> bool {
    true
}
fn default_turn_ttl() -> u64 {
    12 * 3600
}
fn default_turn_allocations() -> usize {
    10
}
fn default_turn_bytes_per_sec() -> u64 {
    // 4 Mbit/s: a 720p video call with room to spare.
    500_000
}
fn default_media_socket_buffer() -> usize {
    4 * 1024 * 1024
}

fn default_drain_timeout_secs() -> u64 {
    1800
}
fn default_node_timeout_ms() -> u64 {
    30_000
}
fn default_outbox_lease_ms() -> u64 {
    30_000
}
fn default_min_free_disk() -> u64 {
    16 * 1024 * 1024
}
fn default_media_timeout() -> u64 {
    15_000
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_heartbeat() -> u32 {
    10
}
fn default_session_timeout() -> u32 {
    30
}
fn default_grace() -> u64 {
    15_000
}
fn default_notify_timeout() -> u64 {
    5_000
}
fn default_callback_timeout() -> u64 {
    10_000
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            data_dir: default_data_dir(),
            heartbeat_secs: default_heartbeat(),
            session_timeout_secs: default_session_timeout(),
            reconnect_grace_ms: default_grace(),
            notify_timeout_ms: default_notify_timeout(),
            callback_timeout_ms: default_callback_timeout(),
            media_bind: default_media_bind(),
            media_advertise: None,
            media_timeout_ms: default_media_timeout(),
            media_socket_buffer_bytes: default_media_socket_buffer(),
            min_free_disk_bytes: default_min_free_disk(),
            database_url: None,
            node_id: None,
            redis_url: None,
            cluster_secret: None,
            backend_ca_file: None,
            outbox_lease_ms: default_outbox_lease_ms(),
            node_timeout_ms: default_node_timeout_ms(),
            drain_timeout_secs: default_drain_timeout_secs(),
            media_shards: 0,
            media_tcp_port: 0,
            media_tcp: true,
            turn_port: 0,
            turn: true,
            turn_relay_ip: None,
            turn_credential_ttl_secs: default_turn_ttl(),
            turn_allocations_per_user: default_turn_allocations(),
            turn_bytes_per_sec: default_turn_bytes_per_sec(),
            tls_cert: None,
            tls_key: None,
            turn_tls_port: None,
            turn_tls_url: None,
            turn_servers: Vec::new(),
            trusted_proxies: Vec::new(),
            forwarded_header: default_forwarded_header(),
            proxy_protocol: false,
            limits: LimitsConfig::default(),
            callbacks: CallbacksConfig::default(),
            services: Vec::new(),
            demo: false,
        }
    }
}

/// ID of the generated demo service.
pub const DEMO_SERVICE_ID: &str = "demo";

impl Config {
    /// Parses TOML text, then applies environment overrides and checks every rule.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let mut c: Config = toml::from_str(text)?;
        c.apply_env(|k| std::env::var(k).ok());
        c.validate()?;
        Ok(c)
    }

    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text)
    }

    /// Secrets may come from the environment instead of the file:
    /// `SWITCHBOARD_<SERVICE>_API_SECRET` and `SWITCHBOARD_<SERVICE>_API_KEY`, where
    /// `<SERVICE>` is the service ID upper-cased with `.` and `-` turned into `_`; and
    /// `SWITCHBOARD_DATABASE_URL` (it carries PostgreSQL's password),
    /// `SWITCHBOARD_REDIS_URL` and `SWITCHBOARD_CLUSTER_SECRET`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(url) = get("SWITCHBOARD_DATABASE_URL") {
            self.database_url = Some(url);
        }
        if let Some(url) = get("SWITCHBOARD_REDIS_URL") {
            self.redis_url = Some(url);
        }
        if let Some(secret) = get("SWITCHBOARD_CLUSTER_SECRET") {
            self.cluster_secret = Some(secret);
        }
        for s in &mut self.services {
            let stem = env_stem(&s.id);
            if let Some(v) = get(&format!("SWITCHBOARD_{stem}_API_SECRET")) {
                s.api_secret = v;
            }
            if let Some(v) = get(&format!("SWITCHBOARD_{stem}_API_KEY")) {
                s.api_key = v;
            }
        }
    }

    /// Checks IDs, secrets, URLs and numbers.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if let Some(url) = &self.database_url {
            if url.parse::<postgres::Config>().is_err() {
                return bad(
                    "database_url is no PostgreSQL URL (postgres://user:password@host:port/db)".into()
                );
            }
            let node_ok = self.node_id.as_deref().is_some_and(|n| {
                (1..=64).contains(&n.len())
                    && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            });
            if !node_ok {
                return bad("database_url needs node_id, this node's name: [A-Za-z0-9._-]{1,64}".into());
            }
        } else if self.node_id.is_some() {
            return bad("node_id names a node of a deployment on PostgreSQL: set database_url too".into());
        }
        if let Some(url) = &self.redis_url {
            if self.database_url.is_none() {
                return bad(
                    "redis_url joins nodes that share a PostgreSQL database: set database_url too".into()
                );
            }
            if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                return bad(
                    "redis_url is no Redis URL (redis://:password@host:port/db, rediss:// for TLS)".into()
                );
            }
            if self.cluster_secret.as_ref().is_none_or(|s| s.len() < 32) {
                return bad(
                    "redis_url needs cluster_secret, at least 32 bytes, the same on every node".into()
                );
            }
        } else if self.cluster_secret.is_some() {
            return bad("cluster_secret signs messages between nodes: set redis_url too".into());
        }
        const DAY_MS: u64 = 86_400_000;
        if !(1000..=DAY_MS).contains(&self.outbox_lease_ms) {
            return bad("outbox_lease_ms must be between 1000 and 86400000".into());
        }
        // A node writes its heartbeat once a second; a short blip of the database must
        // not pass for its death.
        if !(3000..=DAY_MS).contains(&self.node_timeout_ms) {
            return bad("node_timeout_ms must be between 3000 and 86400000".into());
        }
        if self.drain_timeout_secs > 7 * 86_400 {
            return bad("drain_timeout_secs must be at most 604800 (a week)".into());
        }
        let mut ids = std::collections::HashSet::new();
        for s in &self.services {
            if !switchboard_protocol::ids::is_valid_service_id(&s.id) {
                return bad(format!("service id {:?} must match [A-Za-z0-9.-]{{1,64}}", s.id));
            }
            if !ids.insert(&s.id) {
                return bad(format!("service id {:?} appears twice", s.id));
            }
            if s.api_secret.len() != 64
                || !s.api_secret.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return bad(format!("service {:?}: api_secret must be 64 lowercase hex chars", s.id));
            }
            if s.api_key.is_empty() {
                return bad(format!("service {:?}: api_key is empty", s.id));
            }
            for (name, url) in [
                ("notify_cb_url", &s.notify_cb_url),
                ("on_call_evt_cb_url", &s.on_call_evt_cb_url),
                ("on_gcall_evt_cb_url", &s.on_gcall_evt_cb_url),
                ("on_group_call_evt_cb_url", &s.on_group_call_evt_cb_url),
            ] {
                if let Some(u) = url {
                    if !(u.starts_with("http://") || u.starts_with("https://")) {
                        return bad(format!("service {:?}: {name} must be an http(s) URL", s.id));
                    }
                }
            }
            if s.ring_timeout_secs == 0 {
                return bad(format!("service {:?}: ring_timeout_secs must be > 0", s.id));
            }
            if s.rc_idc.len() != 2 || !s.rc_idc.bytes().all(|b| b.is_ascii_uppercase()) {
                return bad(format!("service {:?}: rc_idc must be two upper-case letters", s.id));
            }
        }
        if self.media_bind.ip().is_unspecified() && self.media_advertise.is_none() {
            return bad(
                "media_bind is a wildcard address: set media_advertise to the address clients reach".into()
            );
        }
        if let Err(e) = crate::proxies::TrustedProxies::parse(&self.trusted_proxies, &self.forwarded_header) {
            return bad(format!(
                "trusted_proxies: {e:?} is no address or network (or forwarded_header names neither \"x-forwarded-for\" nor \"forwarded\")"
            ));
        }
        if self.proxy_protocol && self.trusted_proxies.is_empty() {
            return bad("proxy_protocol needs trusted_proxies (the load balancers that send it)".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls_cert and tls_key go together".into());
        }
        if self.turn_tls_port.is_some() && (self.tls_cert.is_none() || !self.turn) {
            return bad("turn_tls_port needs tls_cert and tls_key, and turn".into());
        }
        if let Some(u) = &self.turn_tls_url {
            if !u.starts_with("turns:") {
                return bad(format!("turn_tls_url {u:?} must be a turns: URL"));
            }
        }
        for t in &self.turn_servers {
            if t.urls.is_empty() || t.secret.is_empty() {
                return bad("turn_servers: each needs urls and a secret".into());
            }
            if let Some(u) = t.urls.iter().find(|u| !(u.starts_with("turn:") || u.starts_with("turns:"))) {
                return bad(format!("turn_servers: {u:?} is not a turn: or turns: URL"));
            }
        }
        let cb = &self.callbacks;
        if cb.retry_first_ms == 0 || cb.retry_max_ms < cb.retry_first_ms || cb.per_service_concurrency == 0 {
            return bad(
                "callbacks: need 0 < retry_first_ms <= retry_max_ms and per_service_concurrency > 0".into()
            );
        }
        if self.heartbeat_secs == 0 || self.session_timeout_secs <= self.heartbeat_secs {
            return bad("session_timeout_secs must exceed heartbeat_secs > 0".into());
        }
        if self.limits.header_timeout_ms == 0 || self.limits.pending_per_ip == 0 {
            return bad("limits: header_timeout_ms and pending_per_ip must be > 0".into());
        }
        Ok(())
    }

    /// The service with this ID.
    pub fn service(&self, id: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.id == id)
    }
}

fn env_stem(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// Generated credentials of the demo service, kept in the data dir.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
struct DemoCredentials {
    api_key: String,
    api_secret: String,
}

impl Config {
    /// The database: PostgreSQL with `database_url`, else `switchboard.db` in
    /// `data_dir`.
    pub fn database(&self) -> crate::store::Database {
        let mut db = match (&self.database_url, &self.node_id) {
            (Some(url), Some(node)) => {
                let mut db = crate::store::Database::postgres(url, node);
                db.place = crate::store::Place::Postgres(url.clone(), self.backend_ca_file.clone());
                db
            }
            _ => crate::store::Database::sqlite(&self.data_dir.join("switchboard.db")),
        };
        db.lease = Duration::from_millis(self.outbox_lease_ms);
        db.node_timeout = Duration::from_millis(self.node_timeout_ms);
        db
    }
}

/// Creates the data dir and, when `config` has no services, adds the demo service
/// with credentials generated once and kept in `<data_dir>/demo-service.json`.
pub fn prepare_data_dir(config: &mut Config) -> Result<(), ConfigError> {
    let dir = config.data_dir.clone();
    let io = |source| ConfigError::DataDir { path: dir.clone(), source };
    secure_data_dir(&dir, &[]).map_err(io)?;
    if !config.services.is_empty() {
        return Ok(());
    }
    let path = dir.join("demo-service.json");
    let creds = match read_demo_credentials(&path)? {
        Some(creds) => creds,
        None => {
            let creds =
                DemoCredentials { api_key: format!("demo-{}", &random_hex(8)), api_secret: random_hex(32) };
            write_private(&path, &serde_json::to_vec_pretty(&creds).unwrap_or_default()).map_err(io)?;
            creds
        }
    };
    add_demo_service(config, creds)
}

/// The demo service of a data dir that `serve` prepared, without creating anything:
/// for commands that only read it (`switchboard token`). With a config that has
/// services, those are used.
pub fn load_demo_service(config: &mut Config) -> Result<(), ConfigError> {
    if !config.services.is_empty() {
        return Ok(());
    }
    let path = config.data_dir.join("demo-service.json");
    match read_demo_credentials(&path)? {
        Some(creds) => add_demo_service(config, creds),
        None => Err(ConfigError::Invalid(format!(
            "no demo service credentials at {} (run `switchboard serve` there first, or pass the \
             server's --data-dir or --config)",
            path.display()
        ))),
    }
}

fn read_demo_credentials(path: &Path) -> Result<Option<DemoCredentials>, ConfigError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<DemoCredentials>(&bytes)
            .map(Some)
            .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::DataDir { path: path.to_path_buf(), source }),
    }
}

fn add_demo_service(config: &mut Config, creds: DemoCredentials) -> Result<(), ConfigError> {
    config.services.push(ServiceConfig {
        id: DEMO_SERVICE_ID.into(),
        api_key: creds.api_key,
        api_secret: creds.api_secret,
        notify_cb_url: None,
        on_call_evt_cb_url: None,
        on_gcall_evt_cb_url: None,
        on_group_call_evt_cb_url: None,
        ring_timeout_secs: default_ring_timeout(),
        max_call_secs: 0,
        rc_idc: default_rc_idc(),
        max_room_participants: default_max_room_participants(),
        max_room_speakers: default_max_room_speakers(),
        alone_kick_out_secs: default_alone_kick_out(),
    });
    config.demo = true;
    config.validate()
}

/// The server's own secret (signs `cc_param`s), generated once per data dir.
pub fn server_secret(data_dir: &Path) -> Result<Vec<u8>, ConfigError> {
    if let Ok(v) = std::env::var("SWITCHBOARD_SERVER_SECRET") {
        return Ok(v.into_bytes());
    }
    let path = data_dir.join("server-secret");
    let io = |source| ConfigError::DataDir { path: path.clone(), source };
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => Ok(s.trim().as_bytes().to_vec()),
        _ => {
            let s = random_hex(32);
            write_private(&path, s.as_bytes()).map_err(io)?;
            Ok(s.into_bytes())
        }
    }
}

/// Creates the data dir (owner-only, when this creates it) and makes the database
/// files owner-only: they hold live `cc_param`s and call records. SQLite gives its
/// `-wal` and `-shm` files the mode of the database file, so that one is created
/// 0600 before SQLite opens it; files left by an older version are tightened.
pub fn secure_data_dir(dir: &Path, db_files: &[PathBuf]) -> std::io::Result<()> {
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir)?;
    }
    #[cfg(unix)]
    for (i, path) in db_files.iter().enumerate() {
        use std::os::unix::fs::PermissionsExt;
        if i == 0 && !path.exists() {
            write_private(path, b"")?;
        }
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(bytes)
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    crate::auth::to_hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_services_with_defaults_and_env_override() {
        let text = format!(
            "listen = \"127.0.0.1:9000\"\n[[service]]\nid = \"acme\"\napi_key = \"k\"\napi_secret = \"{SECRET}\"\nnotify_cb_url = \"http://127.0.0.1:1/n\"\n"
        );
        let mut c: Config = toml::from_str(&text).unwrap();
        c.apply_env(|k| (k == "SWITCHBOARD_ACME_API_SECRET").then(|| SECRET.replace('0', "f")));
        c.validate().unwrap();
        let s = c.service("acme").unwrap();
        assert_eq!((s.ring_timeout_secs, s.max_call_secs, s.rc_idc.as_str()), (60, 0, "KR"));
        assert!(s.api_secret.starts_with('f'));
    }

    #[test]
    fn a_deployment_on_redis_needs_postgres_a_node_id_and_a_long_secret() {
        let pg = "database_url = \"postgres://u:p@127.0.0.1:5432/db\"\nnode_id = \"n1\"\n";
        let redis = "redis_url = \"redis://:pw@127.0.0.1:6379/\"\n";
        let secret = "cluster_secret = \"0123456789abcdef0123456789abcdef\"\n";
        assert!(Config::from_toml(&format!("{pg}{redis}{secret}")).is_ok());
        assert!(Config::from_toml(&format!("{redis}{secret}")).is_err(), "no database");
        assert!(Config::from_toml(&format!("{pg}{redis}")).is_err(), "no secret");
        assert!(Config::from_toml(&format!("{pg}{redis}cluster_secret = \"short\"\n")).is_err());
        assert!(Config::from_toml(&format!("{pg}{secret}")).is_err(), "a secret for no Redis");
        assert!(Config::from_toml(&format!("{pg}redis_url = \"http://x\"\n{secret}")).is_err());
        let mut c = Config::from_toml(pg).unwrap();
        c.apply_env(|k| match k {
            "SWITCHBOARD_REDIS_URL" => Some("redis://127.0.0.1:1/".into()),
            "SWITCHBOARD_CLUSTER_SECRET" => Some("x".repeat(40)),
            _ => None,
        });
        c.validate().unwrap();
        assert_eq!(c.redis_url.as_deref(), Some("redis://127.0.0.1:1/"));
    }

    #[test]
    fn media_advertise_takes_an_address_with_or_without_a_port() {
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let c = Config::from_toml("media_advertise = \"203.0.113.10\"").unwrap();
        assert_eq!(Advertise::address(c.media_advertise, local), "203.0.113.10:5000".parse().unwrap());
        let c = Config::from_toml("media_advertise = \"203.0.113.10:40000\"").unwrap();
        assert_eq!(Advertise::address(c.media_advertise, local), "203.0.113.10:40000".parse().unwrap());
        let c = Config::from_toml("media_advertise = \"[2001:db8::1]:40000\"").unwrap();
        assert_eq!(Advertise::address(c.media_advertise, local), "[2001:db8::1]:40000".parse().unwrap());
        assert_eq!(Advertise::address(None, local), local);
        assert!(Config::from_toml("media_advertise = \"example.com\"").is_err());
    }

    #[test]
    fn rejects_bad_values() {
        let text = "[[service]]\nid = \"a_b\"\napi_key = \"k\"\napi_secret = \"short\"\n";
        assert!(Config::from_toml(text).is_err());
        assert!(Config::from_toml("bogus = 1").is_err());
    }

    #[test]
    fn demo_service_is_generated_once() {
        let dir = std::env::temp_dir().join(format!("sb-cfg-{}", random_hex(6)));
        let mut a = Config { data_dir: dir.clone(), ..Config::default() };
        prepare_data_dir(&mut a).unwrap();
        let mut b = Config { data_dir: dir.clone(), ..Config::default() };
        prepare_data_dir(&mut b).unwrap();
        assert!(a.demo);
        assert_eq!(a.services, b.services);
        std::fs::remove_dir_all(dir).ok();
    }
}

/// Where clients reach the media relay: an address, and a port when it differs from
/// the bound one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct Advertise {
    /// The address put in the relay's SDP answers.
    pub ip: std::net::IpAddr,
    /// The port, if not the bound port.
    pub port: Option<u16>,
}

impl TryFrom<String> for Advertise {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Advertise { ip: addr.ip(), port: Some(addr.port()) });
        }
        let ip = s.trim_start_matches('[').trim_end_matches(']');
        ip.parse()
            .map(|ip| Advertise { ip, port: None })
            .map_err(|_| format!("media_advertise {s:?}: expected an IP address, optionally with :port"))
    }
}

impl Advertise {
    /// The advertised address of a relay bound at `local`.
    pub fn address(advertise: Option<Advertise>, local: SocketAddr) -> SocketAddr {
        match advertise {
            Some(a) => SocketAddr::new(a.ip, a.port.unwrap_or(local.port())),
            None => local,
        }
    }
}
