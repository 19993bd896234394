//! `GET /v1/me/calls`: a user's own recent calls (the engine's `queryRecentCalls`),
//! 1-to-1 and group, authorised by the user's own access token (`Authorization:
//! Bearer`), so that an SDK can ask from a page on any origin. A user sees only the
//! calls it called, was called in or was invited to.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::handles::Shared;

/// The query of `GET /v1/me/calls`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecentQuery {
    /// Set up at or after this, epoch milliseconds.
    begin: Option<u64>,
    /// Set up before this, epoch milliseconds.
    end: Option<u64>,
    /// Only `MISSED`, `INCOMING` or `OUTGOING` calls.
    #[param(pattern = "^(MISSED|INCOMING|OUTGOING)$")]
    result: Option<String>,
    /// At most this many (1-100, default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// One call as `queryRecentCalls` gives it (TUICallEngine's call record).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RecentCall {
    call_id: String,
    /// `SINGLE_CALL` or `GROUP_CALL`.
    scene: &'static str,
    inviter: String,
    invite_list: Vec<String>,
    /// 1 audio, 2 video.
    media_type: u8,
    /// 1 caller, 2 callee.
    role: u8,
    /// `OUTGOING` (I called), `INCOMING` (I answered), `MISSED` (I did not).
    result: &'static str,
    /// Set up, epoch milliseconds.
    begin_time: u64,
    /// Seconds this user was in the call.
    total_time: u64,
}

/// A page of `GET /v1/me/calls`.
#[derive(Serialize, ToSchema)]
pub(crate) struct RecentCalls {
    /// Newest first.
    calls: Vec<RecentCall>,
}

const RESULTS: [&str; 3] = ["MISSED", "INCOMING", "OUTGOING"];

fn media_number(letter: &str) -> u8 {
    if letter == "V" {
        2
    } else {
        1
    }
}

/// The view of a stored record for `user`.
fn view(v: &Value, user: &str) -> Option<RecentCall> {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    if v["kind"] == "group" {
        let members = v["members"].as_array()?;
        let me = members.iter().find(|m| m["user_id"] == user)?;
        let caller = s("caller_id");
        let role = if caller == user { 1 } else { 2 };
        let result = match (role, me["result"].as_str()) {
            (1, _) => "OUTGOING",
            (_, Some("joined")) => "INCOMING",
            _ => "MISSED",
        };
        let invite_list = members
            .iter()
            .filter(|m| m["role"] != "caller")
            .filter_map(|m| m["user_id"].as_str().map(str::to_string))
            .collect();
        return Some(RecentCall {
            call_id: s("call_id"),
            scene: "GROUP_CALL",
            inviter: caller,
            invite_list,
            media_type: media_number(&s("media_type")),
            role,
            result,
            begin_time: n("setup_ms"),
            total_time: me["in_call_ms"].as_u64().unwrap_or(0) / 1000,
        });
    }
    let caller = s("from_user_id");
    let role = if caller == user { 1 } else { 2 };
    let result = match role {
        1 => "OUTGOING",
        _ if n("start_time") > 0 => "INCOMING",
        _ => "MISSED",
    };
    Some(RecentCall {
        call_id: s("sid"),
        scene: "SINGLE_CALL",
        inviter: caller,
        invite_list: vec![s("to_user_id")],
        media_type: media_number(&s("type")),
        role,
        result,
        begin_time: n("setup_time") * 1000,
        total_time: n("duration"),
    })
}

fn cors(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    resp
}

fn refuse(status: StatusCode, message: String) -> Response {
    cors((status, Json(serde_json::json!({"error": "unauthorized", "message": message}))).into_response())
}

/// `OPTIONS /v1/me/calls`: the CORS preflight of a page on another origin (the
/// `Authorization` header is not a simple one). Bearer tokens, no cookies: any origin.
pub(crate) async fn preflight() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    cors(resp)
}

/// `GET /v1/me/calls?begin=&end=&result=&limit=`: the bearer's own calls, newest first.
/// Each user has a request budget of its own, as large as a service's for the app
/// server's API (`api_per_service_*`): a user flooding it gets 429 and neither starves
/// the others nor the app server.
#[utoipa::path(get, path = "/v1/me/calls", operation_id = "queryRecentCalls", tag = "me",
    params(RecentQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's own calls, 1-to-1 and group, newest first.", body = RecentCalls),
        (status = 400, description = "A malformed or unknown parameter.", body = super::ErrorBody),
    ))]
pub(crate) async fn recent_calls(
    State(shared): State<Arc<Shared>>,
    pending: Option<axum::Extension<crate::listener::Pending>>,
    headers: HeaderMap,
    query: Result<Query<RecentQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return refuse(StatusCode::UNAUTHORIZED, "Authorization: Bearer <access token> required".into());
    };
    let party = match crate::signal::user_of_token(&shared, token) {
        Ok(party) => party,
        Err(message) => return refuse(StatusCode::UNAUTHORIZED, message),
    };
    // A valid token: the connection no longer counts as unauthenticated.
    if let Some(axum::Extension(p)) = pending {
        p.release();
    }
    let key = format!("me:{}/{}", party.service_id, party.user_id);
    let allowed =
        shared.api_limiter.lock().map(|mut l| l.allow(&key, crate::clock::now_ms())).unwrap_or(true);
    if !allowed {
        let message = "too many requests for this user; slow down".to_string();
        let body = Json(serde_json::json!({"error": "rate_limited", "message": message}));
        return cors((StatusCode::TOO_MANY_REQUESTS, body).into_response());
    }
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            let message = format!("unknown parameter or wrong type: {}", e.body_text());
            return cors(super::ApiError::BadRequest(message).into_response());
        }
    };
    if q.result.as_deref().is_some_and(|r| !RESULTS.contains(&r)) {
        let message = "result must be MISSED, INCOMING or OUTGOING".to_string();
        return cors(super::ApiError::BadRequest(message).into_response());
    }
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return cors(super::ApiError::BadRequest("limit must be 1..=100".into()).into_response());
    }
    let (from, to) = (q.begin.unwrap_or(0) / 1000, q.end.map_or(u64::MAX, |e| e.div_ceil(1000)));
    // Filtering by result happens on the views: ask for more, keep `limit`.
    let fetch = if q.result.is_some() { (limit * 5).min(500) } else { limit };
    let rows = match shared.store.recent(&party.service_id, &party.user_id, from, to, fetch).await {
        Ok(rows) => rows,
        Err(e) => return cors(super::ApiError::from(e).into_response()),
    };
    let calls: Vec<RecentCall> = rows
        .iter()
        .filter_map(|v| view(v, &party.user_id))
        .filter(|c| q.result.as_deref().is_none_or(|r| r == c.result))
        .filter(|c| q.end.is_none_or(|e| c.begin_time < e) && c.begin_time >= q.begin.unwrap_or(0))
        .take(limit as usize)
        .collect();
    cors(Json(RecentCalls { calls }).into_response())
}
