//! How load clients take part: the load service's credentials and tokens, waiting for
//! an event, and the media options every benchmark sends with.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use switchboard_client::{Event, Events};
use switchboard_server::auth::{mint_token, Claims};

/// The API secret of the `load` service of the spawned server.
pub(crate) const SECRET: &str = "4c6f61642d7465737420736563726574206f6e6c792c206e6576657220757365";

/// A token for `user` of the `load` service.
pub(crate) fn token(user: &str) -> String {
    let now = switchboard_server::server::now_ms() / 1000;
    mint_token(SECRET, &Claims::new("load", user, "load-key", now, 7200))
}

/// Waits (up to 30 s) for the event `pick` takes; a closed connection is an error.
pub(crate) async fn wait_for<T>(events: &mut Events, mut pick: impl FnMut(&Event) -> Option<T>) -> Result<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ev = tokio::time::timeout_at(deadline, events.next())
            .await
            .map_err(|_| anyhow!("no event within 30 s"))?
            .ok_or_else(|| anyhow!("event stream closed"))?;
        if let Event::Closed { reason } = &ev {
            bail!("connection closed: {reason}");
        }
        if let Some(t) = pick(&ev) {
            return Ok(t);
        }
    }
}

/// The benchmarks send plain Opus (80-byte payloads), as they did before the SDK sent
/// RED, so that figures stay comparable across builds.
pub(crate) const PLAIN: switchboard_client::MediaOptions = switchboard_client::MediaOptions {
    video: false,
    drop_every: 0,
    plain_opus: true,
    ice: switchboard_client::IceTransport::Udp,
};
