//! Static files the server hands to browsers: the web SDK.

use axum::http::header;
use axum::response::IntoResponse;

/// The browser SDK (`sdk/web/switchboard.js`).
const SDK_JS: &str = include_str!("../../../sdk/web/switchboard.js");
/// Its types (`sdk/web/switchboard.d.ts`).
const SDK_DTS: &str = include_str!("../../../sdk/web/switchboard.d.ts");

/// `GET /sdk/switchboard.js`.
pub(crate) async fn sdk_js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], SDK_JS)
}

/// `GET /sdk/switchboard.d.ts`.
pub(crate) async fn sdk_dts() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/typescript; charset=utf-8")], SDK_DTS)
}
