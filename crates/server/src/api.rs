//! The REST API for app servers (`/v1/calls`, `/v1/callbacks`), HTTP Basic with
//! `api_key:api_secret`; a service sees only its own calls and callbacks. Also
//! `/metrics` and the OpenAPI document.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::call::LiveCall;
use crate::call::MAX_USER_REL_CODE_BYTES;
use crate::clock::now_ms;
use crate::config::ServiceConfig;
use crate::handles::{CoreCmd, DeliveryCmd, RoomRequest, Shared};
use crate::room::RoomInfo;
use crate::store::RecordQuery;

/// The OpenAPI 3 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

const MAX_PAGE: u32 = 500;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/calls", get(list_calls))
        .route("/v1/calls/{sid}", get(get_call).delete(end_call))
        .route("/v1/rooms", get(list_rooms))
        .route("/v1/rooms/{room_id}", get(get_room).delete(close_room))
        .route("/v1/rooms/{room_id}/kick", post(kick))
        .route("/v1/rooms/{room_id}/messages", post(room_message))
        .route("/v1/callbacks", get(list_callbacks))
        .route("/v1/callbacks/{id}/retry", post(retry_callback))
        .route("/v1/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], shared.metrics.render()).into_response()
}

/// An API error: status, stable code and words.
#[derive(Debug)]
pub(crate) enum ApiError {
    Unauthorized,
    TooManyRequests,
    BadRequest(String),
    NotFound(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "HTTP Basic with api_key:api_secret required".to_string(),
            ),
            ApiError::TooManyRequests => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests for this service".to_string(),
            ),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", m),
        };
        let mut resp = (status, Json(json!({ "error": code, "message": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"switchboard\""),
            );
        }
        resp
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// The authenticated service of a request.
pub(crate) struct Authed(ServiceConfig);

impl FromRequestParts<Arc<Shared>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        let creds = header
            .strip_prefix("Basic ")
            .and_then(|b| STANDARD.decode(b.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(ApiError::Unauthorized)?;
        let (key, secret) = creds.split_once(':').ok_or(ApiError::Unauthorized)?;
        let service = shared
            .services
            .values()
            .find(|s| {
                s.api_key == key && crate::auth::constant_time_eq(s.api_secret.as_bytes(), secret.as_bytes())
            })
            .ok_or(ApiError::Unauthorized)?;
        // Valid credentials: the connection no longer counts as unauthenticated.
        if let Some(pending) = parts.extensions.get::<crate::listener::Pending>() {
            pending.release();
        }
        let allowed = shared.api_limiter.lock().map(|mut l| l.allow(&service.id, now_ms())).unwrap_or(true);
        if !allowed {
            return Err(ApiError::TooManyRequests);
        }
        Ok(Authed(service.clone()))
    }
}

fn valid_sid(sid: &str) -> Result<(), ApiError> {
    let ok = sid.len() == 36 && sid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!("{sid:?} is not a call sid (a UUID with dashes)")))
    }
}

fn live_json(live: &LiveCall) -> Value {
    json!({
        "sid": live.sid,
        "from_service_id": live.from_service_id,
        "from_user_id": live.from_user_id,
        "to_service_id": live.to_service_id,
        "to_user_id": live.to_user_id,
        "type": live.media_type,
        "stid": live.app_data,
        "setup_time": live.setup_ms / 1000,
        "start_time": live.start_ms.map_or(0, |s| s / 1000),
        "end_time": 0,
        "duration": 0,
        "srcip": live.srcip,
        "dstip": live.dstip,
        "terminate": 0,
        "rel_code": 0,
        "rel_code_str": "",
        "user_rel_code": null,
        "billing_sec": 0,
        "rc_idc": live.rc_idc,
        "disconnect_reason": 0,
        "releaser_type": 0,
        "app_svr_data": live.app_data,
        "state": live.state(),
    })
}

async fn ask_core<T>(
    shared: &Shared,
    make: impl FnOnce(oneshot::Sender<T>) -> CoreCmd,
) -> Result<T, ApiError> {
    shared.core.ask(make).await.map_err(|_| ApiError::Internal("server is stopping".into()))
}

async fn get_call(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    Path(sid): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&[])?;
    valid_sid(&sid)?;
    let live = ask_core(&shared, |reply| CoreCmd::GetCall {
        service_id: service.id.clone(),
        sid: sid.clone(),
        reply,
    })
    .await?;
    if let Some(live) = live {
        return Ok(Json(live_json(&live)));
    }
    match shared.store.get(&service.id, &sid).await? {
        Some(mut v) => {
            v["state"] = json!("ended");
            Ok(Json(v))
        }
        None => Err(ApiError::NotFound(format!("no call {sid}"))),
    }
}

/// The query parameters of a request, each given at most once.
pub(crate) struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or("");
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            // `?user_id=a&user_id=b` is ambiguous: proxies and frameworks disagree on
            // which one wins, so neither does.
            if map.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(ApiError::BadRequest(format!("parameter {k:?} is given more than once")));
            }
        }
        Ok(Params(map))
    }
}

impl Params {
    /// Refuses any parameter not in `known`.
    fn only(self, known: &[&str]) -> Result<HashMap<String, String>, ApiError> {
        match self.0.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(ApiError::BadRequest(format!("unknown parameter {unknown:?}"))),
            None => Ok(self.0),
        }
    }
}

fn parse_u64(q: &HashMap<String, String>, name: &str) -> Result<Option<u64>, ApiError> {
    q.get(name)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("{name} must be a non-negative integer")))
        })
        .transpose()
}

fn parse_cursor(c: &str) -> Result<(u64, String), ApiError> {
    let bad = || ApiError::BadRequest("cursor is not one this API returned".into());
    let (t, sid) = c.split_once('_').ok_or_else(bad)?;
    let t = t.parse().map_err(|_| bad())?;
    valid_sid(sid).map_err(|_| bad())?;
    Ok((t, sid.to_string()))
}

async fn list_calls(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let q = params.only(&["user_id", "from", "to", "limit", "cursor"])?;
    let user_id = q.get("user_id").cloned();
    if user_id.as_ref().is_some_and(|u| !switchboard_protocol::ids::is_valid_user_id(u)) {
        return Err(ApiError::BadRequest("user_id must match [A-Za-z0-9_-]{1,64}".into()));
    }
    let limit = parse_u64(&q, "limit")?.unwrap_or(50);
    if limit == 0 || limit > u64::from(MAX_PAGE) {
        return Err(ApiError::BadRequest(format!("limit must be 1..={MAX_PAGE}")));
    }
    let (from, to) = (parse_u64(&q, "from")?, parse_u64(&q, "to")?);
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            return Err(ApiError::BadRequest("from must not be after to".into()));
        }
    }
    let cursor = q.get("cursor").map(|c| parse_cursor(c)).transpose()?;
    let query = RecordQuery { user_id, from, to, limit: limit as u32, cursor };
    let calls = shared.store.list(&service.id, query).await?;
    let next_cursor = (calls.len() as u64 == limit)
        .then(|| calls.last())
        .flatten()
        .and_then(|last| Some(format!("{}_{}", last["setup_time"].as_u64()?, last["sid"].as_str()?)));
    Ok(Json(json!({ "calls": calls, "next_cursor": next_cursor })))
}

async fn end_call(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    Path(sid): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let q = params.only(&["user_rel_code"])?;
    valid_sid(&sid)?;
    let code = q.get("user_rel_code").cloned();
    if code.as_ref().is_some_and(|c| c.is_empty() || c.len() > MAX_USER_REL_CODE_BYTES) {
        return Err(ApiError::BadRequest(format!(
            "user_rel_code must be 1..={MAX_USER_REL_CODE_BYTES} bytes"
        )));
    }
    let found = ask_core(&shared, |reply| CoreCmd::ForceEnd {
        service_id: service.id.clone(),
        sid: sid.clone(),
        user_rel_code: code.clone(),
        reply,
    })
    .await?;
    if !found {
        return Err(ApiError::NotFound(format!("no live call {sid}")));
    }
    Ok(Json(
        json!({ "sid": sid, "ended": true, "disconnect_reason": 1110, "releaser_type": 5, "user_rel_code": code }),
    ))
}

async fn list_callbacks(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let q = params.only(&["state", "limit"])?;
    let state = q.get("state").map(String::as_str).unwrap_or("pending");
    if !["pending", "failed", "delivered", "dropped"].contains(&state) {
        return Err(ApiError::BadRequest("state must be pending, failed, delivered or dropped".into()));
    }
    let limit = parse_u64(&q, "limit")?.unwrap_or(100);
    if limit == 0 || limit > u64::from(MAX_PAGE) {
        return Err(ApiError::BadRequest(format!("limit must be 1..={MAX_PAGE}")));
    }
    let rows = shared.store.callbacks(&service.id, state, limit as u32).await?;
    Ok(Json(json!({ "callbacks": rows })))
}

async fn retry_callback(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    params.only(&[])?;
    let id: i64 = id.parse().map_err(|_| ApiError::BadRequest("callback id must be an integer".into()))?;
    let Some(row) = shared.store.retrigger(&service.id, id, now_ms()).await? else {
        return Err(ApiError::NotFound(format!("no failed callback {id}")));
    };
    let body = json!({ "callback": row });
    let _ = shared.delivery.send(DeliveryCmd::Enqueue(vec![row]));
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

fn valid_room_id(room_id: &str) -> Result<(), ApiError> {
    if switchboard_protocol::ids::is_valid_room_id(room_id) {
        Ok(())
    } else {
        Err(ApiError::BadRequest("room_id must match [A-Za-z0-9_-]{1,64}".into()))
    }
}

fn valid_rel_code(code: &Option<String>) -> Result<(), ApiError> {
    if code.as_ref().is_some_and(|c| c.is_empty() || c.len() > MAX_USER_REL_CODE_BYTES) {
        return Err(ApiError::BadRequest(format!(
            "user_rel_code must be 1..={MAX_USER_REL_CODE_BYTES} bytes"
        )));
    }
    Ok(())
}

fn room_json(room: &RoomInfo, with_participants: bool) -> Value {
    let mut v = json!({
        "room_id": room.room_id,
        "sid": room.sid,
        "media_type": room.media_type.letter(),
        "online": room.online,
        "host_id": room.host_id,
        "setup_time": room.setup_time,
    });
    if with_participants {
        v["participants"] = room
            .participants
            .iter()
            .map(|p| {
                json!({
                    "user_id": p.user_id,
                    "display_name": p.display_name,
                    "ue_type": p.ue_type,
                    "mic_muted": p.mic_muted,
                    "video_state": if p.video_enabled { "enabled" } else { "disabled" },
                    "joined_ms": p.joined_ms,
                })
            })
            .collect();
    }
    v
}

/// A JSON request body read in our words: a body that does not parse is a 400 with
/// what was wrong, never the parser's text (which quotes the body).
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "a field is missing or has the wrong type",
            _ => "the body is not valid JSON",
        };
        ApiError::BadRequest(format!("{what} (line {}, column {})", e.line(), e.column()))
    })
}

async fn list_rooms(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&[])?;
    let service_id = service.id.clone();
    let rooms = ask_core(&shared, |reply| CoreCmd::Room(RoomRequest::List { service_id, reply })).await?;
    Ok(Json(json!({ "rooms": rooms.iter().map(|r| room_json(r, false)).collect::<Vec<_>>() })))
}

async fn get_room(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    Path(room_id): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.only(&[])?;
    valid_room_id(&room_id)?;
    let (service_id, id) = (service.id.clone(), room_id.clone());
    let room =
        ask_core(&shared, |reply| CoreCmd::Room(RoomRequest::Get { service_id, room_id: id, reply })).await?;
    match room {
        Some(room) => Ok(Json(room_json(&room, true))),
        None => Err(ApiError::NotFound(format!("no live room {room_id}"))),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KickBody {
    user_ids: Vec<String>,
    #[serde(default)]
    user_rel_code: Option<String>,
}

async fn kick(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    Path(room_id): Path<String>,
    params: Params,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    params.only(&[])?;
    valid_room_id(&room_id)?;
    let KickBody { user_ids, user_rel_code } = json_body(&body)?;
    if user_ids.is_empty() || user_ids.len() > 500 {
        return Err(ApiError::BadRequest("user_ids must list 1 to 500 users".into()));
    }
    if user_ids.iter().any(|u| !switchboard_protocol::ids::is_valid_user_id(u)) {
        return Err(ApiError::BadRequest("every user ID must match [A-Za-z0-9_-]{1,64}".into()));
    }
    valid_rel_code(&user_rel_code)?;
    let (service_id, id, code) = (service.id.clone(), room_id.clone(), user_rel_code.clone());
    let kicked = ask_core(&shared, |reply| {
        CoreCmd::Room(RoomRequest::Kick { service_id, room_id: id, user_ids, user_rel_code: code, reply })
    })
    .await?;
    match kicked {
        Some(kicked) => Ok(Json(json!({
            "room_id": room_id, "kicked": kicked, "disconnect_reason": 1110, "releaser_type": 5,
            "user_rel_code": user_rel_code,
        }))),
        None => Err(ApiError::NotFound(format!("no live room {room_id}"))),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    #[serde(default)]
    user_ids: Option<Vec<String>>,
    data: String,
}

async fn room_message(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    Path(room_id): Path<String>,
    params: Params,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    params.only(&[])?;
    valid_room_id(&room_id)?;
    let MessageBody { user_ids, data } = json_body(&body)?;
    let max = switchboard_protocol::MAX_APP_CONTROL_BYTES;
    if data.is_empty() || data.len() > max {
        return Err(ApiError::BadRequest(format!("data must be 1..={max} bytes")));
    }
    let (service_id, id) = (service.id.clone(), room_id.clone());
    let reached = ask_core(&shared, |reply| {
        CoreCmd::Room(RoomRequest::Message { service_id, room_id: id, user_ids, data, reply })
    })
    .await?;
    match reached {
        Some(n) => Ok(Json(json!({ "room_id": room_id, "delivered": n }))),
        None => Err(ApiError::NotFound(format!("no live room {room_id}"))),
    }
}

async fn close_room(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    Path(room_id): Path<String>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let q = params.only(&["user_rel_code"])?;
    valid_room_id(&room_id)?;
    let code = q.get("user_rel_code").cloned();
    valid_rel_code(&code)?;
    let (service_id, id, user_rel_code) = (service.id.clone(), room_id.clone(), code.clone());
    let found = ask_core(&shared, |reply| {
        CoreCmd::Room(RoomRequest::Close { service_id, room_id: id, user_rel_code, reply })
    })
    .await?;
    if !found {
        return Err(ApiError::NotFound(format!("no live room {room_id}")));
    }
    Ok(Json(json!({
        "room_id": room_id, "ended": true, "disconnect_reason": 1110, "releaser_type": 5, "user_rel_code": code,
    })))
}
