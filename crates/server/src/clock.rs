//! Time as the cores see it, and the deadline tasks wait on. A leaf module.
//!
//! Two clocks: a monotonic one ([`Instant`]) for every timer (ring, grace, alone,
//! maximum time), so that a step of the wall clock (NTP, an operator) fires none of
//! them early or late; and the wall clock, only for what is recorded (setup, start and
//! end times of records, `ts` of room callbacks).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Epoch milliseconds of the wall clock.
pub type Millis = u64;

/// One moment on both clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// The monotonic clock: what timers are set on.
    pub at: Instant,
    /// The wall clock, epoch milliseconds: what records say.
    pub wall_ms: Millis,
}

impl Now {
    /// The moment now, on the system's clocks.
    pub fn system() -> Now {
        Now { at: Instant::now(), wall_ms: now_ms() }
    }

    /// `d` later on both clocks (simulated time in tests).
    pub fn after(self, d: Duration) -> Now {
        Now { at: self.at + d, wall_ms: self.wall_ms + d.as_millis() as u64 }
    }

    /// Wall-clock time of the monotonic instant `t` (at or before now), as far as this
    /// moment tells: for recording when something began.
    pub fn wall_of(self, t: Instant) -> Millis {
        self.wall_ms.saturating_sub(self.at.saturating_duration_since(t).as_millis() as u64)
    }

    /// The monotonic instant of the wall-clock time `wall_ms` (at or before now): the
    /// inverse of [`Now::wall_of`], for running on what another process recorded. Now
    /// itself when the monotonic clock does not reach back that far.
    pub fn instant_of(self, wall_ms: Millis) -> Instant {
        self.at.checked_sub(Duration::from_millis(self.wall_ms.saturating_sub(wall_ms))).unwrap_or(self.at)
    }
}

/// Wall-clock epoch milliseconds.
pub fn now_ms() -> Millis {
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
