//! `/v1/rooms`: live rooms, kick-out, app control messages, force-close.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::calls::valid_rel_code;
use super::{ask_core, ApiError, Authed, ErrorBody, Params};
use crate::core::RoomInfo;
use crate::handles::{CoreCmd, RoomRequest, Shared};

/// A live room.
#[derive(Serialize, ToSchema)]
#[schema(as = Room)]
pub(crate) struct RoomView {
    room_id: String,
    /// Room session ID (32 hex chars), as in on_gcall_evt_cb.
    #[schema(value_type = String)]
    sid: crate::ids::Sid,
    /// `A` (audio) or `V` (video).
    media_type: String,
    /// Participants now.
    online: u32,
    /// The first joiner.
    host_id: String,
    /// Created, epoch seconds.
    setup_time: u64,
}

impl From<&RoomInfo> for RoomView {
    fn from(room: &RoomInfo) -> Self {
        RoomView {
            room_id: room.room_id.clone(),
            sid: room.sid.clone(),
            media_type: room.media_type.letter().into(),
            online: room.online,
            host_id: room.host_id.clone(),
            setup_time: room.setup_time,
        }
    }
}

/// A live room and its participants.
#[derive(Serialize, ToSchema)]
#[schema(as = RoomDetail)]
pub(crate) struct RoomDetailView {
    #[serde(flatten)]
    room: RoomView,
    participants: Vec<ParticipantView>,
}

/// A participant of a live room.
#[derive(Serialize, ToSchema)]
#[schema(as = Participant)]
pub(crate) struct ParticipantView {
    user_id: String,
    display_name: Option<String>,
    /// Kind of device (`BROWSER`, `RUST`, …).
    ue_type: String,
    mic_muted: bool,
    video_state: VideoState,
    /// Joined, epoch milliseconds.
    joined_ms: u64,
}

/// Whether a participant's camera is on.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum VideoState {
    Enabled,
    Disabled,
}

/// This service's live rooms.
#[derive(Serialize, ToSchema)]
pub(crate) struct RoomList {
    rooms: Vec<RoomView>,
}

/// Who to kick out of a room.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct KickBody {
    /// 1 to 500 user IDs.
    #[schema(min_items = 1, max_items = 500)]
    user_ids: Vec<String>,
    /// Reported as `user_rel_code` (1 to 128 bytes).
    #[serde(default)]
    #[schema(max_length = 128)]
    user_rel_code: Option<String>,
}

/// Who was kicked out.
#[derive(Serialize, ToSchema)]
pub(crate) struct Kicked {
    room_id: String,
    /// The users that were in the room and are out now.
    kicked: Vec<String>,
    /// USER_ERROR (1110).
    disconnect_reason: u16,
    /// app_server (5).
    releaser_type: u8,
    user_rel_code: Option<String>,
}

/// An app control message.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessageBody {
    /// The participants to send it to; absent: everyone.
    #[serde(default)]
    user_ids: Option<Vec<String>>,
    /// 1 to 3,072 bytes (UTF-8).
    #[schema(min_length = 1, max_length = 3072)]
    data: String,
}

/// A sent app control message.
#[derive(Serialize, ToSchema)]
pub(crate) struct MessageSent {
    room_id: String,
    /// Sessions the message went to.
    delivered: usize,
}

/// A force-closed room.
#[derive(Serialize, ToSchema)]
pub(crate) struct RoomClosed {
    room_id: String,
    ended: bool,
    /// USER_ERROR (1110).
    disconnect_reason: u16,
    /// app_server (5).
    releaser_type: u8,
    user_rel_code: Option<String>,
}

/// A room's path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct RoomPath {
    /// Room ID.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    room_id: String,
}

/// The code a force-close gives.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CloseQuery {
    /// The app's release code, reported as `user_rel_code` (1 to 128 bytes).
    #[param(max_length = 128)]
    user_rel_code: Option<String>,
}

fn valid_room_id(room_id: &str) -> Result<(), ApiError> {
    if switchboard_protocol::ids::is_valid_room_id(room_id) {
        Ok(())
    } else {
        Err(ApiError::BadRequest("room_id must match [A-Za-z0-9_-]{1,64}".into()))
    }
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

/// This service's live rooms.
#[utoipa::path(get, path = "/v1/rooms", operation_id = "listRooms", tag = "rooms",
    responses((status = 200, description = "Live rooms.", body = RoomList)))]
pub(crate) async fn list_rooms(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    params: Params,
) -> Result<Json<RoomList>, ApiError> {
    params.none()?;
    let service_id = service.id.clone();
    let rooms = ask_core(&shared, |reply| CoreCmd::Room(RoomRequest::List { service_id, reply })).await?;
    Ok(Json(RoomList { rooms: rooms.iter().map(RoomView::from).collect() }))
}

/// A live room and its participants.
#[utoipa::path(get, path = "/v1/rooms/{room_id}", operation_id = "getRoom", tag = "rooms",
    params(RoomPath),
    responses(
        (status = 200, description = "The room.", body = RoomDetailView),
        (status = 400, description = "A malformed room ID.", body = ErrorBody),
        (status = 404, description = "This service has no such live room.", body = ErrorBody),
    ))]
pub(crate) async fn get_room(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    Path(RoomPath { room_id }): Path<RoomPath>,
    params: Params,
) -> Result<Json<RoomDetailView>, ApiError> {
    params.none()?;
    valid_room_id(&room_id)?;
    let (service_id, id) = (service.id.clone(), room_id.clone());
    let room =
        ask_core(&shared, |reply| CoreCmd::Room(RoomRequest::Get { service_id, room_id: id, reply })).await?;
    let Some(room) = room else {
        return Err(ApiError::NotFound(format!("no live room {room_id}")));
    };
    let participants = room
        .participants
        .iter()
        .map(|p| ParticipantView {
            user_id: p.user_id.clone(),
            display_name: p.display_name.clone(),
            ue_type: p.ue_type.clone(),
            mic_muted: p.mic_muted,
            video_state: if p.video_enabled { VideoState::Enabled } else { VideoState::Disabled },
            joined_ms: p.joined_ms,
        })
        .collect();
    Ok(Json(RoomDetailView { room: RoomView::from(&room), participants }))
}

/// Kick participants out: they end with USER_ERROR (1110), source app_server (5), the
/// code as `user_rel_code`.
#[utoipa::path(post, path = "/v1/rooms/{room_id}/kick", operation_id = "kickParticipants", tag = "rooms",
    params(RoomPath),
    request_body = KickBody,
    responses(
        (status = 200, description = "The users that were in the room and are out now.", body = Kicked),
        (status = 400, description = "A malformed room ID or body.", body = ErrorBody),
        (status = 404, description = "This service has no such live room.", body = ErrorBody),
    ))]
pub(crate) async fn kick(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    Path(RoomPath { room_id }): Path<RoomPath>,
    params: Params,
    body: axum::body::Bytes,
) -> Result<Json<Kicked>, ApiError> {
    params.none()?;
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
        Some(kicked) => {
            Ok(Json(Kicked { room_id, kicked, disconnect_reason: 1110, releaser_type: 5, user_rel_code }))
        }
        None => Err(ApiError::NotFound(format!("no live room {room_id}"))),
    }
}

/// Send an app control message to the room, or to listed participants
/// (`evtAppControlMessageReceived`).
#[utoipa::path(post, path = "/v1/rooms/{room_id}/messages", operation_id = "messageRoom", tag = "rooms",
    params(RoomPath),
    request_body = MessageBody,
    responses(
        (status = 200, description = "Sent.", body = MessageSent),
        (status = 400, description = "A malformed room ID or body.", body = ErrorBody),
        (status = 404, description = "This service has no such live room.", body = ErrorBody),
    ))]
pub(crate) async fn room_message(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    Path(RoomPath { room_id }): Path<RoomPath>,
    params: Params,
    body: axum::body::Bytes,
) -> Result<Json<MessageSent>, ApiError> {
    params.none()?;
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
        Some(delivered) => Ok(Json(MessageSent { room_id, delivered })),
        None => Err(ApiError::NotFound(format!("no live room {room_id}"))),
    }
}

/// Force-close a room: everyone ends with USER_ERROR (1110), source app_server (5).
#[utoipa::path(delete, path = "/v1/rooms/{room_id}", operation_id = "closeRoom", tag = "rooms",
    params(RoomPath, CloseQuery),
    responses(
        (status = 200, description = "Closed.", body = RoomClosed),
        (status = 400, description = "A malformed parameter.", body = ErrorBody),
        (status = 404, description = "This service has no such live room.", body = ErrorBody),
    ))]
pub(crate) async fn close_room(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    Path(RoomPath { room_id }): Path<RoomPath>,
    params: Params,
) -> Result<Json<RoomClosed>, ApiError> {
    let CloseQuery { user_rel_code } = params.parse()?;
    valid_room_id(&room_id)?;
    valid_rel_code(&user_rel_code)?;
    let (service_id, id, code) = (service.id.clone(), room_id.clone(), user_rel_code.clone());
    let found = ask_core(&shared, |reply| {
        CoreCmd::Room(RoomRequest::Close { service_id, room_id: id, user_rel_code: code, reply })
    })
    .await?;
    if !found {
        return Err(ApiError::NotFound(format!("no live room {room_id}")));
    }
    Ok(Json(RoomClosed { room_id, ended: true, disconnect_reason: 1110, releaser_type: 5, user_rel_code }))
}
