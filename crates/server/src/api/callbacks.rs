//! `/v1/callbacks`: the delivery state of callbacks, and retrying those that gave up.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{page_limit, ApiError, Authed, ErrorBody, Params};
use crate::clock::now_ms;
use crate::handles::Shared;
use crate::outbox::DeliveryCmd;
use crate::records::CallbackRow;

/// Callbacks in one delivery state.
#[derive(Serialize, ToSchema)]
pub(crate) struct CallbackList {
    callbacks: Vec<CallbackRow>,
}

/// A callback queued again.
#[derive(Serialize, ToSchema)]
pub(crate) struct Retried {
    callback: CallbackRow,
}

/// A delivery state.
#[derive(Deserialize, ToSchema, Clone, Copy, Default)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeliveryState {
    /// Not delivered yet; will be tried.
    #[default]
    Pending,
    /// Gave up.
    Failed,
    /// Delivered (2xx).
    Delivered,
    /// No longer wanted (a push for a call that is over).
    Dropped,
}

impl DeliveryState {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Failed => "failed",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dropped => "dropped",
        }
    }
}

/// Which callbacks to list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Delivery state (default `pending`).
    #[param(inline)]
    state: Option<DeliveryState>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// A callback's path.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct IdPath {
    /// The callback's `id`.
    #[param(value_type = i64)]
    id: String,
}

/// Callbacks in a delivery state, oldest first.
#[utoipa::path(get, path = "/v1/callbacks", operation_id = "listCallbacks", tag = "callbacks",
    params(ListQuery),
    responses(
        (status = 200, description = "Callbacks.", body = CallbackList),
        (status = 400, description = "A malformed, unknown or repeated parameter.", body = ErrorBody),
    ))]
pub(crate) async fn list_callbacks(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    params: Params,
) -> Result<Json<CallbackList>, ApiError> {
    let q: ListQuery = params.parse()?;
    let limit = page_limit(q.limit, 100)?;
    let state = q.state.unwrap_or_default().as_str();
    let callbacks = shared.store.callbacks(&service.id, state, limit).await?;
    Ok(Json(CallbackList { callbacks }))
}

/// Retry a callback that gave up.
#[utoipa::path(post, path = "/v1/callbacks/{id}/retry", operation_id = "retryCallback", tag = "callbacks",
    params(IdPath),
    responses(
        (status = 202, description = "Queued again.", body = Retried),
        (status = 400, description = "`id` is not an integer.", body = ErrorBody),
        (status = 404, description = "This service has no such failed callback.", body = ErrorBody),
    ))]
pub(crate) async fn retry_callback(
    State(shared): State<Arc<Shared>>,
    Authed(service): Authed,
    Path(IdPath { id }): Path<IdPath>,
    params: Params,
) -> Result<(StatusCode, Json<Retried>), ApiError> {
    params.none()?;
    let id: i64 = id.parse().map_err(|_| ApiError::BadRequest("callback id must be an integer".into()))?;
    let Some(callback) = shared.store.retrigger(&service.id, id, now_ms()).await? else {
        return Err(ApiError::NotFound(format!("no failed callback {id}")));
    };
    let _ = shared.delivery.send(DeliveryCmd::Enqueue(vec![callback.clone()]));
    Ok((StatusCode::ACCEPTED, Json(Retried { callback })))
}
