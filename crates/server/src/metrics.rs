//! Counters for `/metrics` (Prometheus text format). Updated with relaxed atomics by
//! the tasks that own the events; read only when scraped.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use switchboard_protocol::DisconnectReason;

/// Upper bounds (seconds) of the delivery-latency histogram.
const BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0, 3600.0];

/// Every metric the server exports.
pub struct Metrics {
    /// Callbacks written to the outbox.
    pub callbacks_queued: AtomicU64,
    /// Callbacks delivered (2xx).
    pub callbacks_delivered: AtomicU64,
    /// Failed attempts that will be retried.
    pub callbacks_retried: AtomicU64,
    /// Callbacks that gave up.
    pub callbacks_failed: AtomicU64,
    /// Callbacks no longer wanted (a push for a call that is over).
    pub callbacks_dropped: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    /// Calls created.
    pub calls_started: AtomicU64,
    calls_ended: [AtomicU64; DisconnectReason::ALL.len()],
    /// Open signaling sessions.
    pub sessions: AtomicI64,
    /// Live rooms.
    pub rooms: AtomicI64,
    /// Participants in live rooms.
    pub room_participants: AtomicI64,
    /// Room joins accepted.
    pub room_joins: AtomicU64,
    room_leaves: [AtomicU64; DisconnectReason::ALL.len()],
    /// Connections closed at accept: their address had too many unauthenticated ones.
    pub connections_refused: AtomicU64,
    /// The media relay's figures.
    pub media: std::sync::Arc<crate::media::MediaMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            callbacks_queued: AtomicU64::new(0),
            callbacks_delivered: AtomicU64::new(0),
            callbacks_retried: AtomicU64::new(0),
            callbacks_failed: AtomicU64::new(0),
            callbacks_dropped: AtomicU64::new(0),
            latency_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_count: AtomicU64::new(0),
            latency_sum_us: AtomicU64::new(0),
            calls_started: AtomicU64::new(0),
            calls_ended: std::array::from_fn(|_| AtomicU64::new(0)),
            sessions: AtomicI64::new(0),
            rooms: AtomicI64::new(0),
            room_participants: AtomicI64::new(0),
            room_joins: AtomicU64::new(0),
            room_leaves: std::array::from_fn(|_| AtomicU64::new(0)),
            connections_refused: AtomicU64::new(0),
            media: std::sync::Arc::default(),
        }
    }
}

fn reason_index(r: DisconnectReason) -> usize {
    DisconnectReason::ALL.iter().position(|x| *x == r).unwrap_or(0)
}

impl Metrics {
    /// Counts a delivery and its latency from queueing.
    pub fn delivered(&self, latency_ms: u64) {
        self.callbacks_delivered.fetch_add(1, Ordering::Relaxed);
        let secs = latency_ms as f64 / 1000.0;
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(latency_ms * 1000, Ordering::Relaxed);
    }

    /// Counts an ended call.
    pub fn call_ended(&self, reason_code: u16) {
        if let Some(r) = DisconnectReason::from_code(reason_code) {
            self.calls_ended[reason_index(r)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a participant leaving a room.
    pub fn room_left(&self, reason: DisconnectReason) {
        self.room_leaves[reason_index(reason)].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(4096);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, v) in [
            (
                "switchboard_callbacks_queued_total",
                "Callbacks written to the outbox.",
                get(&self.callbacks_queued),
            ),
            (
                "switchboard_callbacks_delivered_total",
                "Callbacks delivered (2xx).",
                get(&self.callbacks_delivered),
            ),
            (
                "switchboard_callbacks_retried_total",
                "Failed callback attempts that will be retried.",
                get(&self.callbacks_retried),
            ),
            ("switchboard_callbacks_failed_total", "Callbacks that gave up.", get(&self.callbacks_failed)),
            (
                "switchboard_callbacks_dropped_total",
                "Callbacks no longer wanted (a push for a call that ended).",
                get(&self.callbacks_dropped),
            ),
            ("switchboard_calls_started_total", "1-to-1 calls created.", get(&self.calls_started)),
            ("switchboard_room_joins_total", "Room joins accepted.", get(&self.room_joins)),
        ] {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        }
        let _ = writeln!(s, "# HELP switchboard_calls_ended_total 1-to-1 calls ended, by disconnect reason.");
        let _ = writeln!(s, "# TYPE switchboard_calls_ended_total counter");
        for (i, r) in DisconnectReason::ALL.iter().enumerate() {
            let v = get(&self.calls_ended[i]);
            if v > 0 {
                let _ = writeln!(
                    s,
                    "switchboard_calls_ended_total{{reason=\"{}\",code=\"{}\"}} {v}",
                    r.name(),
                    r.code()
                );
            }
        }
        let _ = writeln!(
            s,
            "# HELP switchboard_room_leaves_total Participants that left rooms, by disconnect reason."
        );
        let _ = writeln!(s, "# TYPE switchboard_room_leaves_total counter");
        for (i, r) in DisconnectReason::ALL.iter().enumerate() {
            let v = get(&self.room_leaves[i]);
            if v > 0 {
                let _ = writeln!(
                    s,
                    "switchboard_room_leaves_total{{reason=\"{}\",code=\"{}\"}} {v}",
                    r.name(),
                    r.code()
                );
            }
        }
        for (name, help, v) in [
            ("switchboard_rooms", "Live rooms.", &self.rooms),
            ("switchboard_room_participants", "Participants in live rooms.", &self.room_participants),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP switchboard_sessions Open signaling sessions.\n# TYPE switchboard_sessions gauge"
        );
        let _ = writeln!(s, "switchboard_sessions {}", self.sessions.load(Ordering::Relaxed));
        let _ = writeln!(
            s,
            "# HELP switchboard_connections_refused_total Connections closed at accept: too many unauthenticated ones from their address.\n# TYPE switchboard_connections_refused_total counter"
        );
        let _ = writeln!(
            s,
            "switchboard_connections_refused_total {}",
            self.connections_refused.load(Ordering::Relaxed)
        );
        let name = "switchboard_callback_delivery_seconds";
        let _ = writeln!(
            s,
            "# HELP {name} Time from queueing a callback to its delivery.\n# TYPE {name} histogram"
        );
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(s, "{name}_bucket{{le=\"{le}\"}} {}", get(&self.latency_buckets[i]));
        }
        let count = get(&self.latency_count);
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(s, "{name}_sum {}", get(&self.latency_sum_us) as f64 / 1e6);
        let _ = writeln!(s, "{name}_count {count}");
        self.media.render(&mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::default();
        m.delivered(7);
        m.delivered(2000);
        m.call_ended(1001);
        m.sessions.fetch_add(3, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("switchboard_callbacks_delivered_total 2\n"));
        assert!(text.contains("switchboard_callback_delivery_seconds_bucket{le=\"0.01\"} 1\n"));
        assert!(text.contains("switchboard_callback_delivery_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("switchboard_calls_ended_total{reason=\"NORMAL\",code=\"1001\"} 1\n"));
        assert!(text.contains("switchboard_sessions 3\n"));
    }
}
