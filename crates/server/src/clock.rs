//! The clock every task reads, and the optional deadline they wait on: a leaf module
//! (it imports nothing of the server), so edges and stores need not import the shell.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock epoch milliseconds: the core's clock.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Waits until `at`, or forever when there is no deadline (a `select!` branch that
/// never fires).
pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
