//! HTTP callbacks to the app server (notify_cb, on_call_evt_cb).
//!
//! Callbacks are HTTP GET requests with every field in the query string. Sending
//! never blocks signaling: the shell spawns each request on its own task.

use std::time::Duration;

/// Why a callback was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// The request failed (refused, timed out, bad URL, TLS…). The text never holds
    /// the URL: its query carries the call's `cc_param`.
    #[error("request failed: {0}")]
    Request(String),
    /// The app server answered with a status other than 2xx.
    #[error("app server answered {0}")]
    Status(u16),
}

impl From<reqwest::Error> for CallbackError {
    fn from(e: reqwest::Error) -> Self {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else if e.is_builder() {
            "the callback URL is not usable"
        } else {
            "no valid HTTP answer"
        };
        // The innermost cause (an OS error, a TLS alert) names no URL.
        let detail = std::error::Error::source(&e).map(|first| {
            let mut cause = first;
            while let Some(next) = cause.source() {
                cause = next;
            }
            format!(" ({cause})")
        });
        CallbackError::Request(format!("{what}{}", detail.unwrap_or_default()))
    }
}

/// An HTTP client for callbacks, pooled per host.
#[derive(Clone)]
pub struct Callbacks {
    client: reqwest::Client,
}

impl Callbacks {
    /// A new client.
    pub fn new() -> Result<Self, CallbackError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(64)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { client })
    }

    /// GETs `url` with `query` appended, signed with the service's API secret;
    /// Ok on any 2xx within `timeout`. `id` is the callback's stable ID.
    pub async fn get(
        &self,
        url: &str,
        query: &str,
        id: &str,
        secret: &str,
        timeout: Duration,
    ) -> Result<u16, CallbackError> {
        let full = join_query(url, query);
        // Sign the whole query string as the app server receives it, including any
        // query the configured URL carries itself.
        let sent_query = full.split_once('?').map_or(query, |(_, q)| q);
        let now = crate::clock::now_ms() / 1000;
        let resp = self
            .client
            .get(&full)
            .header(ID_HEADER, id)
            .header(SIGNATURE_HEADER, signature(secret, now, sent_query))
            .timeout(timeout)
            .send()
            .await?;
        let status = resp.status().as_u16();
        // Drain the body so the connection goes back to the pool.
        let _ = resp.bytes().await;
        if (200..300).contains(&status) {
            Ok(status)
        } else {
            Err(CallbackError::Status(status))
        }
    }
}

/// Header carrying the callback's stable ID (the same on every retry).
pub const ID_HEADER: &str = "X-Switchboard-Id";
/// Header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "X-Switchboard-Signature";

/// The signature header value: HMAC-SHA256 under the service's API secret over
/// `<t>.<query>`, where `query` is the raw query string exactly as sent.
pub fn signature(secret: &str, t: u64, query: &str) -> String {
    let mac = crate::auth::hmac_sha256(secret.as_bytes(), format!("{t}.{query}").as_bytes());
    format!("t={t},v1={}", crate::auth::to_hex(&mac))
}

/// Checks a signature header against the raw query, as an app server would: the
/// MAC must match and `t` must be within `tolerance_secs` of `now`.
pub fn verify_signature(secret: &str, header: &str, query: &str, now: u64, tolerance_secs: u64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", x)) => t = x.parse::<u64>().ok(),
            Some(("v1", x)) => v1 = Some(x.to_string()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    if t.abs_diff(now) > tolerance_secs {
        return false;
    }
    let want = signature(secret, t, query);
    let got = format!("t={t},v1={v1}");
    crate::auth::constant_time_eq(want.as_bytes(), got.as_bytes())
}

/// `url` with `query` appended after `?` (or `&` when the URL already has a query).
pub fn join_query(url: &str, query: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

#[cfg(test)]
mod tests {
    use super::join_query;

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let sig = super::signature("secret", 1000, "a=1&b=2");
        assert!(super::verify_signature("secret", &sig, "a=1&b=2", 1010, 300));
        assert!(!super::verify_signature("secret", &sig, "a=1&b=3", 1010, 300));
        assert!(!super::verify_signature("other", &sig, "a=1&b=2", 1010, 300));
        assert!(!super::verify_signature("secret", &sig, "a=1&b=2", 2000, 300), "stale");
        assert!(!super::verify_signature("secret", "garbage", "a=1&b=2", 1000, 300));
    }

    #[test]
    fn joins_queries() {
        assert_eq!(join_query("http://h/cb", "a=1"), "http://h/cb?a=1");
        assert_eq!(join_query("http://h/cb?k=v", "a=1"), "http://h/cb?k=v&a=1");
    }
}
