//! The HTTP listener: accepts TCP connections and serves HTTP/1.1 (and WebSocket
//! upgrades) on them, over TLS when configured (where a TURN client's first STUN message
//! sends the connection to the TURN server instead), with two guards that `axum::serve`
//! lacks:
//! - a **header timeout**: a connection must send a complete request head within
//!   `header_timeout_ms`, or it is closed (idle keep-alive connections too);
//! - a **per-address cap on pending connections**: connections that have not
//!   authenticated yet (plain HTTP requests, WebSockets before `hello`) count against
//!   their client's address (an IPv6 /64 counts as one address); past
//!   `pending_per_ip`, new ones are closed at once, so one client cannot take every
//!   file descriptor of the server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

pub(crate) use crate::limit::{Pending, PendingCounts};
use crate::metrics::Metrics;

/// TLS on the listener: the acceptor, and where TURN clients (a STUN message after the
/// handshake) go.
pub(crate) struct TlsMux {
    pub acceptor: crate::tls::TlsAcceptor,
    pub turn: Option<crate::turn::shell::TurnStreams>,
}

/// Settings of the listener.
pub(crate) struct ListenerSettings {
    pub header_timeout: Duration,
    pub pending_per_ip: u32,
    /// Connections from these start with a PROXY protocol header.
    pub proxy_protocol: Option<crate::proxies::TrustedProxies>,
}

/// Serves `app` on `listener` until `stop` fires; then stops accepting, lets every
/// connection finish its request in flight, and returns once they are closed.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ListenerSettings,
    tls: Option<TlsMux>,
    metrics: Arc<Metrics>,
    mut stop: oneshot::Receiver<()>,
) {
    let tls = tls.map(Arc::new);
    let pending = PendingCounts::new(settings.pending_per_ip);
    // Every connection task holds a receiver: `closed()` resolves when all are gone.
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut refusals = LogLimiter::default();
    let mut accept_errors = LogLimiter::default();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stop => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to be freed
                // rather than spin.
                if accept_errors.allow() {
                    tracing::error!(error = %e, "cannot accept connections");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (app, header_timeout, shutdown) = (app.clone(), settings.header_timeout, shutdown_rx.clone());
        if settings.proxy_protocol.as_ref().is_some_and(|p| p.contains(peer.ip())) {
            // A load balancer speaking the PROXY protocol: its header, within the header
            // timeout, names the client, who is then counted and served as if it had
            // connected itself.
            let (pending, metrics, tls) = (pending.clone(), metrics.clone(), tls.clone());
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let read = tokio::time::timeout(header_timeout, crate::proxies::read_proxy_header(tcp)).await;
                let (stream, client) = match read {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "closed a proxied connection"),
                    Err(_) => {
                        return tracing::debug!(%peer, "closed a proxied connection: no PROXY header in time")
                    }
                };
                let peer = client.unwrap_or(peer);
                let Some(guard) = pending.admit(peer.ip()) else {
                    metrics.connections_refused.inc();
                    return;
                };
                match tls {
                    None => {
                        connection(TokioIo::new(stream), peer, app, guard, header_timeout, shutdown).await
                    }
                    Some(tls) => {
                        tls_connection(stream, peer, tls, app, guard, header_timeout, shutdown).await
                    }
                }
            });
            continue;
        }
        let Some(guard) = pending.admit(peer.ip()) else {
            metrics.connections_refused.inc();
            if refusals.allow() {
                tracing::warn!(
                    peer = %peer.ip(),
                    cap = settings.pending_per_ip,
                    "refusing connections: too many unauthenticated connections from this address"
                );
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        match &tls {
            None => {
                tokio::spawn(connection(TokioIo::new(tcp), peer, app, guard, header_timeout, shutdown));
            }
            Some(tls) => {
                tokio::spawn(tls_connection(tcp, peer, tls.clone(), app, guard, header_timeout, shutdown));
            }
        }
    }
    drop(listener);
    let _ = shutdown_tx.send(true);
    drop(shutdown_rx);
    shutdown_tx.closed().await;
}

/// A TLS connection: the handshake and the first byte within the header timeout, then
/// TURN (a STUN message) or HTTP (anything else).
async fn tls_connection<S>(
    tcp: S,
    peer: SocketAddr,
    tls: Arc<TlsMux>,
    app: Router,
    guard: Pending,
    header_timeout: Duration,
    shutdown: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    use tokio::io::AsyncReadExt;
    let first = tokio::time::timeout(header_timeout, async {
        let mut stream = tls.acceptor.accept(tcp).await?;
        let mut first = [0u8; 1];
        let n = stream.read(&mut first).await?;
        Ok::<_, std::io::Error>((stream, first, n))
    })
    .await;
    let (stream, first) = match first {
        Ok(Ok((stream, first, 1))) => (stream, first),
        Ok(Ok(_)) => return,
        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => return tracing::debug!(%peer, "closed a TLS connection that sent nothing in time"),
    };
    let stream = crate::tls::Rewound::new(first.to_vec(), stream);
    if crate::tls::is_stun(first[0]) {
        if let Some(turn) = &tls.turn {
            // TURN has its own limits; this is no pending signaling connection.
            guard.release();
            turn.hand_over(stream, peer);
        }
        return;
    }
    connection(TokioIo::new(stream), peer, app, guard, header_timeout, shutdown).await
}

async fn connection<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    app: Router,
    guard: Pending,
    header_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let request_guard = guard.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(request_guard.clone());
        let mut app = app.clone();
        async move {
            use tower_service::Service as _;
            let res: Result<axum::response::Response, Infallible> =
                app.call(req.map(axum::body::Body::new)).await;
            res
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let conn = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopping(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        if e.is_timeout() {
            tracing::debug!(%peer, "closed a connection that sent no complete request in time");
        } else {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
    drop(guard);
}

/// Resolves when the listener is told to stop.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// At most one log line per second for a repeating condition.
#[derive(Default)]
struct LogLimiter {
    last: Option<std::time::Instant>,
}

impl LogLimiter {
    fn allow(&mut self) -> bool {
        let now = std::time::Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return false;
        }
        self.last = Some(now);
        true
    }
}
