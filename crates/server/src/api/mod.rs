//! The REST API for app servers (`/v1/calls`, `/v1/rooms`, `/v1/callbacks`), HTTP Basic
//! with `api_key:api_secret`; a service sees only its own calls, rooms and callbacks.
//! Also `/metrics`.
//!
//! The OpenAPI document served at `/v1/openapi.json` is generated from the handlers
//! (`#[utoipa::path]`) as the router is built from the same annotations, so a route
//! cannot be served undocumented or documented unserved.

mod callbacks;
mod calls;
mod me;
mod rooms;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;
use tokio::sync::oneshot;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Response as DocResponse, ResponseBuilder};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock::now_ms;
use crate::config::ServiceConfig;
use crate::handles::{CoreCmd, Shared};

const MAX_PAGE: u32 = 500;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard app-server API",
        version = "1",
        description = "Call records, force-ending calls, room control and callback delivery state. \
            HTTP Basic with the service's api_key:api_secret; a service sees only its own data. \
            Rate limited per service (429). `/v1/me/...` is a user's own, with its access token \
            (Bearer), rate limited per user. See docs/api.md."
    ),
    components(schemas(ErrorBody)),
    modifiers(&Common),
    security(("basic" = []))
)]
struct ApiDoc;

/// What every operation shares: the Basic scheme and the 401 and 429 answers.
struct Common;

impl utoipa::Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        for (name, words) in [
            ("Unauthorized", "Missing or wrong credentials (`WWW-Authenticate: Basic`)."),
            ("UnauthorizedUser", "Missing, forged or expired user access token (`Authorization: Bearer`)."),
            ("TooManyRequests", "Over the service's request rate."),
        ] {
            let response = ResponseBuilder::new()
                .description(words)
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build();
            components.responses.insert(name.to_string(), RefOr::T(response));
        }
        for (path, item) in doc.paths.paths.iter_mut() {
            // `/v1/me/…` is the user's, with its own token; the rest the app server's.
            let unauthorized = if path.starts_with("/v1/me/") { "UnauthorizedUser" } else { "Unauthorized" };
            for op in [&mut item.get, &mut item.post, &mut item.delete, &mut item.put, &mut item.patch]
                .into_iter()
                .flatten()
            {
                for (status, name) in [("401", unauthorized), ("429", "TooManyRequests")] {
                    let shared: RefOr<DocResponse> =
                        RefOr::Ref(utoipa::openapi::Ref::new(format!("#/components/responses/{name}")));
                    op.responses.responses.insert(status.to_string(), shared);
                }
            }
        }
    }
}

/// The REST routes and the OpenAPI document generated from them.
fn parts() -> (Router<Arc<Shared>>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::new()
        .routes(routes!(calls::list_calls))
        .routes(routes!(calls::get_call, calls::end_call))
        .routes(routes!(rooms::list_rooms))
        .routes(routes!(rooms::get_room, rooms::close_room))
        .routes(routes!(rooms::kick))
        .routes(routes!(rooms::room_message))
        .routes(routes!(callbacks::list_callbacks))
        .routes(routes!(callbacks::retry_callback))
        .routes(routes!(me::recent_calls))
        .split_for_parts();
    // The annotations give the operations; the document's frame and what every
    // operation shares come after, so they reach every path.
    let mut full = ApiDoc::openapi();
    full.paths = std::mem::take(&mut doc.paths);
    if let (Some(all), Some(found)) = (full.components.as_mut(), doc.components.take()) {
        all.schemas.extend(found.schemas);
        all.responses.extend(found.responses);
    }
    utoipa::Modify::modify(&Common, &mut full);
    (router, full)
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    let (router, doc) = parts();
    let json: Arc<str> = doc.to_pretty_json().unwrap_or_default().into();
    // A user's own calls, with the user's token (docs/api.md): a page on any origin
    // asks, so its CORS preflight is answered too.
    let router = router.route("/v1/me/calls", axum::routing::options(me::preflight));
    router.route(
        "/v1/openapi.json",
        get(move || {
            let json = json.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], json.to_string()) }
        }),
    )
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], shared.metrics.render()).into_response()
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
        let (status, error, message) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "HTTP Basic with api_key:api_secret required".to_string(),
            ),
            ApiError::TooManyRequests => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                "too many requests for this service".to_string(),
            ),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, ErrorCode::NotFound, m),
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, m),
        };
        let mut resp = (status, Json(ErrorBody { error, message })).into_response();
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
    /// Refuses every parameter: the operation takes none.
    fn none(self) -> Result<(), ApiError> {
        match self.0.keys().next() {
            Some(unknown) => Err(ApiError::BadRequest(format!("unknown parameter {unknown:?}"))),
            None => Ok(()),
        }
    }

    /// The parameters as `T`, whose documentation (`IntoParams`) names every parameter
    /// the operation takes: any other is refused, so the document and the parser
    /// cannot disagree.
    fn parse<T: serde::de::DeserializeOwned + IntoParams>(self) -> Result<T, ApiError> {
        let known: Vec<String> = T::into_params(|| Some(utoipa::openapi::path::ParameterIn::Query))
            .into_iter()
            .map(|p| p.name)
            .collect();
        if let Some(unknown) = self.0.keys().find(|k| !known.contains(k)) {
            return Err(ApiError::BadRequest(format!("unknown parameter {unknown:?}")));
        }
        let encode = |pairs: &mut dyn Iterator<Item = (&String, &String)>| {
            form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
        };
        serde_urlencoded::from_str(&encode(&mut self.0.iter())).map_err(|_| {
            // Name the parameter that does not parse (none is required, so each
            // parses alone).
            let bad = self
                .0
                .iter()
                .find(|pair| serde_urlencoded::from_str::<T>(&encode(&mut std::iter::once(*pair))).is_err())
                .map_or_else(String::new, |(k, _)| k.clone());
            ApiError::BadRequest(format!("parameter {bad:?} has the wrong type"))
        })
    }
}

/// An error answer: `{"error": "<code>", "message": "<words>"}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// Stable code: `unauthorized`, `rate_limited`, `bad_request`, `not_found`, `internal`.
    error: ErrorCode,
    /// What was wrong, in words.
    message: String,
}

/// The stable error codes.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ErrorCode {
    Unauthorized,
    RateLimited,
    BadRequest,
    NotFound,
    Internal,
}

async fn ask_core<T>(
    shared: &Shared,
    make: impl FnOnce(oneshot::Sender<T>) -> CoreCmd,
) -> Result<T, ApiError> {
    shared.core.ask(make).await.map_err(|_| ApiError::Internal("server is stopping".into()))
}

/// A page size: 1 to [`MAX_PAGE`], `default` when absent.
fn page_limit(limit: Option<u32>, default: u32) -> Result<u32, ApiError> {
    match limit.unwrap_or(default) {
        l @ 1..=MAX_PAGE => Ok(l),
        _ => Err(ApiError::BadRequest(format!("limit must be 1..={MAX_PAGE}"))),
    }
}
