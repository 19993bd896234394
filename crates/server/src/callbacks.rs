//! HTTP callbacks to the app server (notify_cb, on_call_evt_cb).
//!
//! Callbacks are HTTP GET requests with every field in the query string. Sending
//! never blocks signaling: the shell spawns each request on its own task.

use std::time::Duration;

/// Why a callback was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// The request failed (refused, timed out, bad URL, TLS…).
    #[error("request failed: {0}")]
    Request(#[from] reqwest::Error),
    /// The app server answered with a status other than 2xx.
    #[error("app server answered {0}")]
    Status(u16),
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

    /// GETs `url` with `query` appended; Ok on any 2xx within `timeout`.
    pub async fn get(&self, url: &str, query: &str, timeout: Duration) -> Result<u16, CallbackError> {
        let full = join_query(url, query);
        let resp = self.client.get(full).timeout(timeout).send().await?;
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

/// `url` with `query` appended after `?` (or `&` when the URL already has a query).
pub fn join_query(url: &str, query: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

#[cfg(test)]
mod tests {
    use super::join_query;

    #[test]
    fn joins_queries() {
        assert_eq!(join_query("http://h/cb", "a=1"), "http://h/cb?a=1");
        assert_eq!(join_query("http://h/cb?k=v", "a=1"), "http://h/cb?k=v&a=1");
    }
}
