//! `/v1/calls`: call records, live calls, force-ending.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ask_core, page_limit, ApiError, Authed, ErrorBody, Params};
use crate::core::call::MAX_USER_REL_CODE_BYTES;
use crate::handles::{CoreCmd, Shared};
use crate::ids::Sid;
use crate::records::LiveCall;
use crate::store::RecordQuery;

/// A call, live or ended: the fields of on_call_evt_cb plus `state`. A live call has
/// `end_time`, `duration`, `terminate`, `rel_code`, `billing_sec`, `disconnect_reason`
/// and `releaser_type` 0 and `rel_code_str` empty.
#[derive(Serialize, Deserialize, ToSchema)]
#[schema(as = Call)]
pub(crate) struct CallView {
    /// Call ID (UUID with dashes).
    #[schema(value_type = String)]
    sid: Sid,
    from_service_id: String,
    from_user_id: String,
    to_service_id: String,
    to_user_id: String,
    /// `A` (audio) or `V` (video).
    #[serde(rename = "type")]
    media_type: String,
    /// The caller's app data.
    stid: Option<String>,
    /// Created, epoch seconds.
    setup_time: u64,
    /// Answered, epoch seconds (0 if never).
    start_time: u64,
    /// Ended, epoch seconds.
    end_time: u64,
    /// Seconds connected.
    duration: u64,
    /// Caller's IP address.
    srcip: String,
    /// Callee's IP address (the answering device).
    dstip: String,
    /// Q.850 cause.
    terminate: u16,
    /// Debug release code.
    rel_code: u16,
    /// Its name.
    rel_code_str: String,
    /// The app's release code, with USER_ERROR (1110).
    user_rel_code: Option<String>,
    /// Billable seconds.
    billing_sec: u64,
    /// Region that handled the caller.
    rc_idc: String,
    /// Disconnect reason number (SPEC §3).
    disconnect_reason: u16,
    /// Disconnect source number.
    releaser_type: u8,
    /// The caller's app data.
    app_svr_data: Option<String>,
    /// `ringing`, `connected` or `ended`.
    #[serde(default = "ended")]
    state: String,
}

fn ended() -> String {
    "ended".into()
}

/// The record of an ended call-engine group call (the query of on_group_call_evt_cb,
/// as JSON).
#[derive(Serialize, Deserialize, ToSchema)]
pub(crate) struct GroupCallView {
    /// Always `group`.
    kind: String,
    /// The call's ID (its room's sid, 32 hex digits).
    #[schema(value_type = String)]
    call_id: Sid,
    service_id: String,
    caller_id: String,
    /// `A` (audio) or `V` (video).
    media_type: String,
    /// The call's room number (`roomID`).
    room_id: u32,
    group_id: String,
    user_data: Option<String>,
    /// Created, epoch milliseconds.
    setup_ms: u64,
    /// First accepted, epoch milliseconds (0 if nobody did).
    begin_ms: u64,
    /// Ended, epoch milliseconds (0 while live).
    end_ms: u64,
    /// Call-engine end reason: 1 hangup, 2 reject, 3 no response, 4 offline, 5 line
    /// busy, 6 cancelled, 9 ended by the server (0 while live).
    end_reason: u8,
    /// The caller and every invitee: `user_id`, `role`, `inviter`, `result` (`joined`,
    /// `rejected`, `no_response`, `line_busy`, `cancelled`; `inviting` while live),
    /// `invited_ms`, `answered_ms`, `joined_ms`, `left_ms` (0 while in the call),
    /// `in_call_ms` (so far).
    #[schema(value_type = Vec<Object>)]
    members: Vec<serde_json::Value>,
    /// `ringing` (nobody accepted yet), `connected` or `ended`.
    #[serde(default = "ended")]
    state: String,
}

/// A 1-to-1 call, or a group call by its 32-hex ID.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum AnyCallView {
    /// A 1-to-1 call, live or ended.
    Call(CallView),
    /// A group call, live or ended.
    Group(GroupCallView),
}

impl CallView {
    fn live(live: &LiveCall) -> Self {
        CallView {
            sid: live.sid.clone(),
            from_service_id: live.from_service_id.clone(),
            from_user_id: live.from_user_id.clone(),
            to_service_id: live.to_service_id.clone(),
            to_user_id: live.to_user_id.clone(),
            media_type: live.media_type.clone(),
            stid: live.app_data.clone(),
            setup_time: live.setup_ms / 1000,
            start_time: live.start_ms.map_or(0, |s| s / 1000),
            end_time: 0,
            duration: 0,
            srcip: live.srcip.clone(),
            dstip: live.dstip.clone(),
            terminate: 0,
            rel_code: 0,
            rel_code_str: String::new(),
            user_rel_code: None,
            billing_sec: 0,
            rc_idc: live.rc_idc.clone(),
            disconnect_reason: 0,
            releaser_type: 0,
            app_svr_data: live.app_data.clone(),
            state: live.state().into(),
        }
    }

    /// A stored record (the JSON of on_call_evt_cb).
    fn record(v: serde_json::Value) -> Result<Self, ApiError> {
        serde_json::from_value(v).map_err(|_| ApiError::Internal("a stored call record is unreadable".into()))
    }
}

/// A page of call records.
#[derive(Serialize, ToSchema)]
pub(crate) struct CallPage {
    calls: Vec<CallView>,
    /// Set when the page is full: pass it as `cursor` for the next page.
    next_cursor: Option<String>,
}

/// A force-ended call.
#[derive(Serialize, ToSchema)]
pub(crate) struct CallEnded {
    #[schema(value_type = String)]
    sid: Sid,
    ended: bool,
    /// USER_ERROR (1110).
    disconnect_reason: u16,
    /// app_server (5).
    releaser_type: u8,
    user_rel_code: Option<String>,
}

/// Which calls to list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only calls where this user is caller or callee.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    user_id: Option<String>,
    /// `setup_time >= from` (epoch seconds).
    from: Option<u64>,
    /// `setup_time < to` (epoch seconds).
    to: Option<u64>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The code a force-end gives.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EndQuery {
    /// The app's release code, reported as `user_rel_code` (1 to 128 bytes).
    #[param(max_length = 128)]
    user_rel_code: Option<String>,
}

/// A call's path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct SidPath {
    /// Call ID (UUID with dashes; a group call's: 32 hex digits).
    #[param(pattern = "^([0-9a-fA-F-]{36}|[0-9a-f]{32})$", value_type = String)]
    sid: Sid,
}

fn valid_sid(sid: &Sid) -> Result<(), ApiError> {
    let ok = sid.len() == 36 && sid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!("{sid:?} is not a call sid (a UUID with dashes)")))
    }
}

/// Checks an app release code's length.
pub(super) fn valid_rel_code(code: &Option<String>) -> Result<(), ApiError> {
    if code.as_ref().is_some_and(|c| c.is_empty() || c.len() > MAX_USER_REL_CODE_BYTES) {
        return Err(ApiError::BadRequest(format!(
            "user_rel_code must be 1..={MAX_USER_REL_CODE_BYTES} bytes"
        )));
    }
    Ok(())
}

fn parse_cursor(c: &str) -> Result<(u64, Sid), ApiError> {
    let bad = || ApiError::BadRequest("cursor is not one this API returned".into());
    let (t, sid) = c.split_once('_').ok_or_else(bad)?;
    let t = t.parse().map_err(|_| bad())?;
    let sid = Sid::new(sid);
    valid_sid(&sid).map_err(|_| bad())?;
    Ok((t, sid))
}

/// One call, live or ended.
#[utoipa::path(get, path = "/v1/calls/{sid}", operation_id = "getCall", tag = "calls",
    params(SidPath),
    responses(
        (status = 200, description = "The call.", body = AnyCallView),
        (status = 400, description = "`sid` is not a UUID with dashes (nor a group call's 32 hex digits).", body = ErrorBody),
        (status = 404, description = "This service has no such call.", body = ErrorBody),
    ))]
pub(crate) async fn get_call(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    Path(SidPath { sid }): Path<SidPath>,
    params: Params,
) -> Result<Json<AnyCallView>, ApiError> {
    params.none()?;
    if sid.is_room_shaped() {
        let live = ask_core(&shared, |reply| CoreCmd::GetGroupCall {
            service_id: service.id.clone(),
            sid: sid.clone(),
            reply,
        })
        .await?;
        if let Some((record, begun)) = live {
            let mut view: GroupCallView = serde_json::from_value(record.to_json())
                .map_err(|e| ApiError::Internal(format!("live group call: {e}")))?;
            view.state = if begun { "connected" } else { "ringing" }.into();
            return Ok(Json(AnyCallView::Group(view)));
        }
        let Some(v) = shared.store.get(&service.id, &sid).await? else {
            return Err(ApiError::NotFound(format!("no group call {sid}")));
        };
        let view = serde_json::from_value(v)
            .map_err(|e| ApiError::Internal(format!("stored group call record: {e}")))?;
        return Ok(Json(AnyCallView::Group(view)));
    }
    valid_sid(&sid)?;
    let live = ask_core(&shared, |reply| CoreCmd::GetCall {
        service_id: service.id.clone(),
        sid: sid.clone(),
        reply,
    })
    .await?;
    if let Some(live) = live {
        return Ok(Json(AnyCallView::Call(CallView::live(&live))));
    }
    match shared.store.get(&service.id, &sid).await? {
        Some(v) => Ok(Json(AnyCallView::Call(CallView::record(v)?))),
        None => Err(ApiError::NotFound(format!("no call {sid}"))),
    }
}

/// A page of call records, newest first.
#[utoipa::path(get, path = "/v1/calls", operation_id = "listCalls", tag = "calls",
    params(ListQuery),
    responses(
        (status = 200, description = "A page.", body = CallPage),
        (status = 400, description = "A malformed, unknown or repeated parameter.", body = ErrorBody),
    ))]
pub(crate) async fn list_calls(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    params: Params,
) -> Result<Json<CallPage>, ApiError> {
    let q: ListQuery = params.parse()?;
    if q.user_id.as_ref().is_some_and(|u| !switchboard_protocol::ids::is_valid_user_id(u)) {
        return Err(ApiError::BadRequest("user_id must match [A-Za-z0-9_-]{1,64}".into()));
    }
    let limit = page_limit(q.limit, 50)?;
    if let (Some(f), Some(t)) = (q.from, q.to) {
        if f > t {
            return Err(ApiError::BadRequest("from must not be after to".into()));
        }
    }
    let cursor = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let query = RecordQuery { user_id: q.user_id, from: q.from, to: q.to, limit, cursor };
    let calls = shared
        .store
        .list(&service.id, query)
        .await?
        .into_iter()
        .map(CallView::record)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = (calls.len() == limit as usize)
        .then(|| calls.last())
        .flatten()
        .map(|last| format!("{}_{}", last.setup_time, last.sid));
    Ok(Json(CallPage { calls, next_cursor }))
}

/// Force-end a live call: both parties get USER_ERROR (1110), source app_server (5).
#[utoipa::path(delete, path = "/v1/calls/{sid}", operation_id = "endCall", tag = "calls",
    params(SidPath, EndQuery),
    responses(
        (status = 200, description = "Ended.", body = CallEnded),
        (status = 400, description = "A malformed parameter.", body = ErrorBody),
        (status = 404, description = "This service has no such live call.", body = ErrorBody),
    ))]
pub(crate) async fn end_call(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    Path(SidPath { sid }): Path<SidPath>,
    params: Params,
) -> Result<Json<CallEnded>, ApiError> {
    let EndQuery { user_rel_code } = params.parse()?;
    valid_sid(&sid)?;
    valid_rel_code(&user_rel_code)?;
    let found = ask_core(&shared, |reply| CoreCmd::ForceEnd {
        service_id: service.id.clone(),
        sid: sid.clone(),
        user_rel_code: user_rel_code.clone(),
        reply,
    })
    .await?;
    if !found {
        return Err(ApiError::NotFound(format!("no live call {sid}")));
    }
    Ok(Json(CallEnded { sid, ended: true, disconnect_reason: 1110, releaser_type: 5, user_rel_code }))
}
