//! What the server hands to browsers: the web SDK, the demo page, and demo tokens
//! (only for the generated demo service of the embedded defaults).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::clock::now_ms;
use crate::config::DEMO_SERVICE_ID;
use crate::handles::Shared;

/// The demo page (`web/index.html`).
const DEMO_PAGE: &str = include_str!("../../../web/index.html");

/// The browser SDK (`sdk/web/switchboard.js`).
const SDK_JS: &str = include_str!("../../../sdk/web/switchboard.js");
/// Its types (`sdk/web/switchboard.d.ts`).
const SDK_DTS: &str = include_str!("../../../sdk/web/switchboard.d.ts");

/// `GET /sdk/switchboard.js`. Any origin may load it: an app's page on its own origin
/// imports the SDK from here (`import … from 'https://calls.example/sdk/switchboard.js'`),
/// and module scripts are fetched with CORS. It is public code and carries no
/// credentials; the signaling WebSocket it opens is not subject to CORS.
pub(crate) async fn sdk_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        SDK_JS,
    )
}

/// `GET /sdk/switchboard.d.ts`, to any origin as the SDK is.
pub(crate) async fn sdk_dts() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/typescript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        SDK_DTS,
    )
}

/// The mark of the demo page's header, as its icon (`/favicon.ico`, which browsers ask
/// for on every page load).
const FAVICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#4f8cff"/><stop offset="1" stop-color="#22c47a"/></linearGradient></defs><rect width="32" height="32" rx="9" fill="url(#g)"/><text x="16" y="22" font-family="system-ui,sans-serif" font-size="17" font-weight="700" text-anchor="middle" fill="#fff">S</text></svg>"##;

/// `GET /favicon.ico` (an SVG: every current browser takes it).
pub(crate) async fn favicon() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "max-age=86400")], FAVICON)
}

/// `GET /`: the demo page.
pub(crate) async fn demo_page() -> Html<&'static str> {
    Html(DEMO_PAGE)
}

/// `GET /demo/token?user=ID`: a one-hour token for a user of the demo service. Only on
/// embedded defaults; a configured service's tokens come from its own app server.
pub(crate) async fn demo_token(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let refuse = |status: StatusCode, message: &str| {
        (status, Json(json!({ "error": "unavailable", "message": message }))).into_response()
    };
    let Some(service) = shared.config.demo.then(|| shared.services.get(DEMO_SERVICE_ID)).flatten() else {
        return refuse(
            StatusCode::NOT_FOUND,
            "This server has no demo service: enter a service ID and an access token from your app server.",
        );
    };
    let user = q.get("user").map(String::as_str).unwrap_or("");
    if !switchboard_protocol::ids::is_valid_user_id(user) {
        return refuse(StatusCode::BAD_REQUEST, "A user ID is 1-64 letters, digits, _ or -.");
    }
    let now = now_ms() / 1000;
    let claims = crate::auth::Claims::new(&service.id, user, &service.api_key, now, 3600);
    Json(json!({ "service_id": service.id, "user_id": user, "token": crate::auth::mint_token(&service.api_secret, &claims) }))
        .into_response()
}
