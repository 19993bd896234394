//! The WebSocket edge: one task per connection, the IO shell of the session protocol
//! ([`crate::session`]). It authenticates the `hello`, answers heartbeats and token
//! refreshes itself, enforces the frame size, passes call messages to the core task,
//! and writes the core's frames once the journal has them.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use switchboard_protocol::{
    ids, ClientMessage, DisconnectReason, ErrorCode, ServerMessage, MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::auth::{self, TokenError};
use crate::clock::{now_ms, sleep_until, Now};
use crate::cluster::edge::{Edge, FromNodes, Routed};
use crate::cluster::Nodes;
use crate::core::{ClientInfo, Input, SessionAuth};
use crate::handles::{CoreCmd, Frame, Shared};
use crate::ids::{Party, SessionId};
use crate::listener::Pending;
use crate::session::{self, Inbound, Session, CLOSE_POLICY};

/// Close code for frames over the limit (RFC 6455 "message too big").
const CLOSE_TOO_BIG: u16 = 1009;
/// Close code for a text frame that is not UTF-8 (RFC 6455 "invalid frame payload data").
const CLOSE_NOT_UTF8: u16 = 1007;
/// Close code for a broken WebSocket framing (RFC 6455 "protocol error").
const CLOSE_PROTOCOL: u16 = 1002;

/// `GET /v1/signal`: upgrades to a signaling session after the per-IP rate check.
pub(crate) async fn upgrade(
    ws: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(shared): State<Arc<Shared>>,
    pending: Option<Extension<Pending>>,
    Extension(nodes): Extension<Nodes>,
    headers: axum::http::HeaderMap,
) -> Response {
    // Behind a trusted load balancer, the client it names (for the limits and records).
    // With the PROXY protocol the listener has done that already, and HTTP headers come
    // from the client (a TCP balancer writes none): they are not read.
    let client =
        if shared.config.proxy_protocol { peer.ip() } else { shared.proxies.client_ip(peer.ip(), &headers) };
    let peer = if client == peer.ip() { peer } else { SocketAddr::new(client, 0) };
    let allowed = shared.ip_limiter.lock().map(|mut l| l.allow(&peer.ip(), now_ms())).unwrap_or(true);
    if !allowed {
        let body = serde_json::json!({
            "error": "rate_limited",
            "reason": DisconnectReason::ServiceTooManyRequests,
            "message": "too many connections from this address",
        });
        return (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    }
    // The host the client reached us by: `turns:` URLs name it (its certificate does).
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.len() <= 255)
        .map(str::to_owned);
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .on_upgrade(move |socket| session(socket, peer, host, shared, nodes, pending.map(|Extension(p)| p)))
}

struct Authed {
    party: Party,
    auth: SessionAuth,
    token_exp: Option<u64>,
    client: ClientInfo,
}

/// Longest `instance` a `hello` may name.
const MAX_INSTANCE_BYTES: usize = 64;

/// Device kinds of on_gcall_evt_cb's `ue_type`; anything else is undefined.
const UE_TYPES: &[&str] =
    &["UE_TYPE_UNDEFINED", "ANDROID", "IOS", "DESKTOPMAC", "DESKTOPWIN", "BROWSER", "SIP_TERMINAL"];

struct Refused {
    reason: DisconnectReason,
    message: String,
}

fn refuse(reason: DisconnectReason, message: impl Into<String>) -> Refused {
    Refused { reason, message: message.into() }
}

/// Who an access token names, if it is good now (for REST routes a user calls itself).
pub(crate) fn user_of_token(shared: &Shared, token: &str) -> Result<Party, String> {
    check_token(shared, token, now_ms() / 1000).map(|(party, _)| party).map_err(|r| r.message)
}

fn check_token(shared: &Shared, token: &str, now: u64) -> Result<(Party, u64), Refused> {
    let claims = auth::peek_claims(token)
        .map_err(|e| refuse(DisconnectReason::ServiceAccessTokenError, e.to_string()))?;
    let Some(service) = shared.services.get(&claims.sub) else {
        return Err(refuse(DisconnectReason::ServiceInvalidId, format!("unknown service {:?}", claims.sub)));
    };
    let claims =
        auth::verify_token(token, &service.api_secret, &service.api_key, now).map_err(|e| match e {
            TokenError::Expired | TokenError::Mismatch(_) => {
                refuse(DisconnectReason::AuthError, e.to_string())
            }
            TokenError::Invalid(_) => refuse(DisconnectReason::ServiceAccessTokenError, e.to_string()),
        })?;
    if !ids::is_valid_user_id(&claims.uid) {
        return Err(refuse(DisconnectReason::ServiceInvalidId, "uid breaks the user ID rules"));
    }
    Ok((Party::new(claims.sub, claims.uid), claims.exp))
}

fn authenticate(shared: &Shared, hello: ClientMessage) -> Result<Authed, Refused> {
    let ClientMessage::Hello {
        v,
        token,
        service_id,
        user_id,
        cc_param,
        ue_type,
        engine,
        multi_device,
        instance,
    } = hello
    else {
        return Err(refuse(DisconnectReason::AuthError, "the first message must be hello"));
    };
    if v < PROTOCOL_VERSION {
        return Err(refuse(
            DisconnectReason::ServiceIncompatiblePlanetkitVer,
            format!("protocol v{v} is too old; this server speaks v{PROTOCOL_VERSION}"),
        ));
    }
    let now = now_ms() / 1000;
    let authed = match (token, cc_param) {
        (Some(token), _) => {
            let (party, exp) = check_token(shared, &token, now)?;
            Authed { party, auth: SessionAuth::Token, token_exp: Some(exp), client: ClientInfo::default() }
        }
        (None, Some(param)) => {
            let claims = shared
                .cc_key
                .open(&param)
                .ok_or_else(|| refuse(DisconnectReason::AuthError, "cc_param is not valid"))?;
            if !shared.services.contains_key(&claims.service_id) {
                return Err(refuse(DisconnectReason::ServiceInvalidId, "cc_param names no service here"));
            }
            if claims.exp < now {
                return Err(refuse(DisconnectReason::ReleasedCall, "cc_param has expired"));
            }
            Authed {
                party: Party::new(claims.service_id, claims.user_id),
                auth: SessionAuth::CallParam { sid: claims.sid, device: claims.device },
                token_exp: None,
                client: ClientInfo::default(),
            }
        }
        (None, None) => {
            return Err(refuse(
                DisconnectReason::ServiceAccessTokenError,
                "hello needs a token or a cc_param",
            ))
        }
    };
    if let Some(s) = service_id.filter(|s| *s != authed.party.service_id) {
        return Err(refuse(DisconnectReason::AuthError, format!("credential is not for service {s:?}")));
    }
    if let Some(u) = user_id.filter(|u| *u != authed.party.user_id) {
        return Err(refuse(DisconnectReason::AuthError, format!("credential is not for user {u:?}")));
    }
    let ue_type = ue_type.filter(|u| UE_TYPES.contains(&u.as_str())).unwrap_or_else(|| UE_TYPES[0].into());
    if instance.as_ref().is_some_and(|i| i.len() > MAX_INSTANCE_BYTES) {
        return Err(refuse(DisconnectReason::AuthError, "instance is over 64 bytes"));
    }
    Ok(Authed { client: ClientInfo { ue_type, engine, multi_device, instance, proxy: false }, ..authed })
}

/// A client that does not take a frame within this long (its TCP window stays shut)
/// loses its session: the session's timers and the call core must not wait on it.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one frame; false if the connection is gone or the client does not read.
async fn send_frame(ws: &mut WebSocket, m: Message) -> bool {
    match tokio::time::timeout(SEND_TIMEOUT, ws.send(m)).await {
        Ok(r) => r.is_ok(),
        Err(_) => {
            tracing::info!("dropping a connection whose client has read nothing for 10 s");
            false
        }
    }
}

async fn send_msg(ws: &mut WebSocket, msg: &ServerMessage) -> bool {
    send_frame(ws, Message::Text(msg.to_json().into())).await
}

/// How long a closing session waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Closes with `code`, then waits (briefly) for the client's close frame, discarding
/// what it sent meanwhile (RFC 6455 §7.1.1): a socket closed with unread data is
/// reset by the kernel, and the client would lose our close frame with it.
async fn close(ws: &mut WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame { code, reason: reason.to_string().into() };
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if !send_frame(ws, Message::Close(Some(frame))).await {
            return;
        }
        let mut reads = 0;
        loop {
            match ws.recv().await {
                Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => reads += 1,
                // After a read error the stream yields nothing more, though the rest of
                // the bad frame may still sit unread in the socket: give the client a
                // moment to read our close frame before the reset that dropping causes.
                Some(Err(_)) | None => {
                    if reads == 0 {
                        tokio::time::sleep(CLOSE_WAIT).await;
                    }
                    break;
                }
            }
        }
    })
    .await;
}

fn error_msg(
    req: Option<u64>,
    error: ErrorCode,
    reason: Option<DisconnectReason>,
    message: String,
) -> ServerMessage {
    ServerMessage::Error { req, error, reason, message }
}

/// What a failed read means for the connection.
fn read_error(e: axum::Error) -> Read {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match e.into_inner().downcast::<WsError>().map(|b| *b) {
        Ok(WsError::Capacity(_)) => Read::TooBig,
        Ok(WsError::Utf8(_)) => Read::Broken(CLOSE_NOT_UTF8, "text frame is not valid UTF-8"),
        // The TCP connection ended without a close frame: an app killed, a network gone.
        Ok(WsError::Protocol(
            tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        )) => Read::Lost,
        Ok(WsError::Protocol(p)) => {
            tracing::debug!(error = %p, "websocket protocol error");
            Read::Broken(CLOSE_PROTOCOL, "websocket protocol error")
        }
        _ => Read::Lost,
    }
}

enum Read {
    Text(String),
    Binary,
    Skip,
    TooBig,
    /// The client closed the WebSocket (its close code, if it sent one).
    Closed(Option<u16>),
    /// The connection broke without a close frame.
    Lost,
    /// The client broke the WebSocket protocol: close with this code and reason.
    Broken(u16, &'static str),
}

async fn read(ws: &mut WebSocket) -> Read {
    match ws.recv().await {
        Some(Ok(Message::Text(t))) => Read::Text(t.to_string()),
        Some(Ok(Message::Binary(_))) => Read::Binary,
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Read::Skip,
        Some(Ok(Message::Close(frame))) => Read::Closed(frame.map(|f| f.code)),
        None => Read::Lost,
        Some(Err(e)) => read_error(e),
    }
}

/// Ends the WebSocket after a read that was not a frame: answers the client's close,
/// or closes with the code the failure calls for. Every end is logged.
async fn end_after(ws: &mut WebSocket, read: Read, session_id: Option<u64>, peer: SocketAddr) {
    match read {
        Read::Closed(code) => {
            tracing::debug!(?session_id, %peer, ?code, "client closed the session");
            // Flushes the reply to the client's close frame (queued by the WebSocket).
            send_frame(ws, Message::Close(None)).await;
        }
        Read::Lost => tracing::debug!(?session_id, %peer, "connection lost without a close frame"),
        Read::Broken(code, why) => {
            tracing::info!(?session_id, %peer, code, why, "closing session: bad frame");
            close(ws, code, why).await;
        }
        Read::TooBig => {
            tracing::info!(?session_id, %peer, "closing session: frame over 64 KiB");
            let m = error_msg(None, ErrorCode::FrameTooLarge, None, "frames are limited to 64 KiB".into());
            send_msg(ws, &m).await;
            close(ws, CLOSE_TOO_BIG, "frame too large").await;
        }
        Read::Text(_) | Read::Binary | Read::Skip => {}
    }
}

async fn session(
    mut ws: WebSocket,
    peer: SocketAddr,
    host: Option<String>,
    shared: Arc<Shared>,
    nodes: Nodes,
    pending: Option<Pending>,
) {
    let limits = session::Limits {
        silence: Duration::from_secs(u64::from(shared.config.session_timeout_secs)),
        rate: shared.config.limits.messages_per_session_per_sec,
        burst: shared.config.limits.messages_per_session_burst,
    };
    let mut proto = Session::new(Now::system(), limits);
    let hello_by = proto.poll_timeout().map(Instant::from_std).unwrap_or_else(Instant::now);
    let first = loop {
        match tokio::time::timeout_at(hello_by, read(&mut ws)).await {
            Ok(Read::Text(t)) => break t,
            // WebSocket pings before hello are fine (axum answers them).
            Ok(Read::Skip) => continue,
            Ok(end @ (Read::TooBig | Read::Closed(_) | Read::Lost | Read::Broken(..))) => {
                return end_after(&mut ws, end, None, peer).await;
            }
            Ok(Read::Binary) | Err(_) => {
                tracing::info!(%peer, "closing connection: no hello");
                return close(&mut ws, CLOSE_POLICY, "hello expected").await;
            }
        }
    };
    let authed = match ClientMessage::parse(&first) {
        Ok(hello @ ClientMessage::Hello { .. }) => authenticate(&shared, hello),
        Ok(_) => Err(refuse(DisconnectReason::AuthError, "the first message must be hello")),
        Err(e) => Err(refuse(DisconnectReason::AuthError, e.message)),
    };
    let authed = match authed {
        Ok(a) => {
            // Authenticated: no longer counts against the address's pending cap.
            if let Some(p) = &pending {
                p.release();
            }
            a
        }
        Err(r) => {
            tracing::info!(%peer, reason = %r.reason, message = %r.message, "session refused");
            send_msg(&mut ws, &error_msg(None, ErrorCode::Auth, Some(r.reason), r.message)).await;
            return close(&mut ws, CLOSE_POLICY, r.reason.name()).await;
        }
    };
    proto.authenticated(Now::system(), authed.token_exp);
    let session_id = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let welcome = ServerMessage::Welcome {
        v: PROTOCOL_VERSION,
        session_id: session_id.to_string(),
        service_id: authed.party.service_id.clone(),
        user_id: authed.party.user_id.clone(),
        heartbeat_secs: shared.config.heartbeat_secs,
        token_expires_at: authed.token_exp,
        reconnect_grace_ms: Some(shared.config.reconnect_grace_ms),
        ice_servers: crate::handles::ice_servers(
            &shared,
            &format!("{}:{}", authed.party.service_id, authed.party.user_id),
            host.as_deref(),
            crate::clock::now_ms() / 1000,
        ),
    };
    let (tx, mut rx) = mpsc::channel::<Frame>(256);
    let open = CoreCmd::Open {
        session: SessionId(session_id),
        party: authed.party.clone(),
        auth: authed.auth.clone(),
        ip: peer.ip().to_string(),
        client: authed.client.clone(),
        tx,
        welcome: Some(welcome),
    };
    if shared.core.send(open).await.is_err() {
        tracing::info!(session_id, "closing session: the server is stopping");
        return close(&mut ws, 1001, "server stopping").await;
    }
    // In a deployment of several nodes: the calls and rooms on other nodes it takes
    // part in.
    let mut edge = match &nodes.0 {
        Some(cluster) => {
            let remote = crate::cluster::bus::Remote {
                party: authed.party.clone(),
                auth: authed.auth.clone(),
                ip: peer.ip().to_string(),
                client: authed.client.clone(),
            };
            Some(Edge::start(cluster.clone(), session_id, remote).await)
        }
        None => None,
    };
    tracing::debug!(session_id, service = %authed.party.service_id, user = %authed.party.user_id, %peer, "session open");
    shared.metrics.sessions.inc();
    let mut committed = shared.committed.clone();
    'session: loop {
        while let Some(action) = proto.poll_action() {
            match action {
                session::Action::Send(text) => {
                    if !send_frame(&mut ws, Message::Text(text.into())).await {
                        tracing::debug!(session_id, %peer, "connection lost while sending");
                        break 'session;
                    }
                }
                session::Action::Close { code, reason, why } => {
                    tracing::info!(session_id, %peer, why);
                    close(&mut ws, code, reason).await;
                    break 'session;
                }
            }
        }
        let wake = proto.poll_timeout().map(Instant::from_std);
        tokio::select! {
            // Until the core has sent `welcome`, this task says nothing of its own.
            frame = read(&mut ws), if proto.welcomed() => {
                let now = Now::system();
                let text = match frame {
                    Read::Text(t) => Some(t),
                    Read::Binary => None,
                    Read::Skip => { proto.heard(now); continue }
                    end => {
                        end_after(&mut ws, end, Some(session_id), peer).await;
                        break;
                    }
                };
                if proto.message(now) != Inbound::Take {
                    continue;
                }
                let Some(text) = text else {
                    let m = error_msg(None, ErrorCode::Malformed, None, "binary frames are not part of the protocol; send JSON text".into());
                    if !send_msg(&mut ws, &m).await { break; }
                    continue;
                };
                let reply = match ClientMessage::parse(&text) {
                    Err(e) => Some(error_msg(e.req, e.code, None, e.message)),
                    Ok(ClientMessage::Ping {}) => Some(ServerMessage::Pong {}),
                    Ok(ClientMessage::Hello { .. }) => Some(error_msg(None, ErrorCode::WrongState, None, "already said hello".into())),
                    Ok(ClientMessage::RefreshToken { req, token }) => {
                        let reply = refresh(&shared, &authed, host.as_deref(), req, &token);
                        if let ServerMessage::TokenRefreshed { expires_at, .. } = &reply {
                            proto.refreshed(now, *expires_at);
                        }
                        Some(reply)
                    }
                    Ok(msg) => {
                        let routed = match &mut edge {
                            Some(edge) => edge.route(msg, &text).await,
                            None => Routed::Here(msg),
                        };
                        match routed {
                            Routed::Here(msg) => {
                                let input = CoreCmd::Input(Input::Message { session: SessionId(session_id), msg });
                                if shared.core.send(input).await.is_err() { break; }
                                None
                            }
                            Routed::Sent => None,
                            Routed::Refused(reply) => Some(reply),
                        }
                    }
                };
                if let Some(reply) = reply {
                    if !send_msg(&mut ws, &reply).await { break; }
                }
            }
            out = rx.recv(), if proto.held() < session::MAX_HELD_FRAMES => {
                let Some(frame) = out else {
                    // The core let go of this session: it did not read what it was sent.
                    tracing::warn!(session_id, %peer, "closing session: frames unread past the outbox limit");
                    close(&mut ws, CLOSE_POLICY, "too many unread frames").await;
                    break;
                };
                proto.committed(*committed.borrow_and_update());
                if let Some(edge) = &mut edge {
                    edge.learn(&frame);
                }
                proto.frame(frame);
            }
            relayed = relayed(&mut edge), if proto.held() < session::MAX_HELD_FRAMES => {
                let resumed = match (relayed, &mut edge) {
                    (Some(FromNodes::Frame(frame)), _) => {
                        proto.frame(frame);
                        true
                    }
                    (Some(FromNodes::Resume(sids)), Some(edge)) => edge.resume_for_client(sids).await,
                    _ => false,
                };
                if !resumed {
                    // A node let go of it (or this one: it read nothing), or its calls
                    // moved and only it can resume them: the client comes back on a new
                    // session and resumes.
                    close(&mut ws, CLOSE_POLICY, "session dropped; reconnect").await;
                    break;
                }
            }
            changed = committed.changed(), if proto.held() > 0 => {
                // A journal that is gone holds nothing back any more.
                let step = if changed.is_ok() { *committed.borrow_and_update() } else { u64::MAX };
                proto.committed(step);
            }
            _ = sleep_until(wake), if wake.is_some() => proto.handle_timeout(Now::system()),
        }
    }
    shared.metrics.sessions.dec();
    tracing::debug!(session_id, "session ended");
    let _ = shared.core.send(CoreCmd::Input(Input::Closed { session: SessionId(session_id) })).await;
    if let Some(edge) = edge {
        edge.end().await;
    }
}

/// What other nodes have for the session next; never, on a single node.
async fn relayed(edge: &mut Option<Edge>) -> Option<FromNodes> {
    match edge {
        Some(edge) => edge.relayed().await,
        None => std::future::pending().await,
    }
}

/// `refresh_token`: `token_refreshed` with the new token's expiry and fresh TURN
/// credentials (a call longer than their lifetime keeps its relay), or the error to
/// answer with.
fn refresh(
    shared: &Shared,
    authed: &Authed,
    host: Option<&str>,
    req: Option<u64>,
    token: &str,
) -> ServerMessage {
    if authed.auth != SessionAuth::Token {
        return error_msg(
            req,
            ErrorCode::WrongState,
            None,
            "a cc_param session has no token to refresh".into(),
        );
    }
    match check_token(shared, token, now_ms() / 1000) {
        Ok((party, exp)) if party == authed.party => ServerMessage::TokenRefreshed {
            req,
            expires_at: exp,
            ice_servers: crate::handles::ice_servers(
                shared,
                &format!("{}:{}", party.service_id, party.user_id),
                host,
                now_ms() / 1000,
            ),
        },
        Ok(_) => error_msg(
            req,
            ErrorCode::Auth,
            Some(DisconnectReason::AuthError),
            "the new token is for another user".into(),
        ),
        Err(r) => error_msg(req, ErrorCode::Auth, Some(r.reason), r.message),
    }
}
