//! `/metrics`: every figure the server exports, through `prometheus-client` (Prometheus
//! text format 0.0.4). The tasks that own the events update the metrics (atomics inside);
//! the media relay's figures are read from its shards at scrape time.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use switchboard_protocol::DisconnectReason;

/// Upper bounds (seconds) of the delivery-latency histogram.
const BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0, 3600.0];

/// The `Content-Type` of [`Metrics::render`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A disconnect reason as labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
    code: u16,
}

impl ReasonLabels {
    fn of(r: DisconnectReason) -> Self {
        ReasonLabels { reason: r.name(), code: r.code() }
    }
}

/// Every metric the server exports.
pub struct Metrics {
    /// Callbacks written to the outbox.
    pub callbacks_queued: Counter,
    /// Callbacks delivered (2xx).
    pub callbacks_delivered: Counter,
    /// Failed attempts that will be retried.
    pub callbacks_retried: Counter,
    /// Callbacks that gave up.
    pub callbacks_failed: Counter,
    /// Callbacks no longer wanted (a push for a call that is over).
    pub callbacks_dropped: Counter,
    delivery_seconds: Histogram,
    /// Calls created.
    pub calls_started: Counter,
    calls_ended: Family<ReasonLabels, Counter>,
    /// Open signaling sessions.
    pub sessions: Gauge,
    /// Live rooms.
    pub rooms: Gauge,
    /// Participants in live rooms.
    pub room_participants: Gauge,
    /// Room joins accepted.
    pub room_joins: Counter,
    room_leaves: Family<ReasonLabels, Counter>,
    /// Connections closed at accept: their address had too many unauthenticated ones.
    pub connections_refused: Counter,
    /// Messages this node sent other nodes of its deployment.
    pub bus_sent: Counter,
    /// Messages to other nodes given up (Redis or the addressee away for too long).
    pub bus_undelivered: Counter,
    /// Messages from other nodes taken.
    pub bus_received: Counter,
    /// Messages off the bus refused (not signed by the deployment, stale, misaddressed).
    pub bus_refused: Counter,
    /// Proxy sessions here of clients connected to other nodes.
    pub proxies: Gauge,
    /// The media relay's figures.
    pub media: Arc<crate::media::MediaMetrics>,
    /// The embedded TURN server's figures.
    pub turn: Arc<crate::turn::metrics::TurnMetrics>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            callbacks_queued: Counter::default(),
            callbacks_delivered: Counter::default(),
            callbacks_retried: Counter::default(),
            callbacks_failed: Counter::default(),
            callbacks_dropped: Counter::default(),
            delivery_seconds: Histogram::new(BUCKETS),
            calls_started: Counter::default(),
            calls_ended: Family::default(),
            sessions: Gauge::default(),
            rooms: Gauge::default(),
            room_participants: Gauge::default(),
            room_joins: Counter::default(),
            room_leaves: Family::default(),
            connections_refused: Counter::default(),
            bus_sent: Counter::default(),
            bus_undelivered: Counter::default(),
            bus_received: Counter::default(),
            bus_refused: Counter::default(),
            proxies: Gauge::default(),
            media: Arc::default(),
            turn: Arc::default(),
            registry: Registry::default(),
        };
        let r = &mut m.registry;
        let p = "switchboard_";
        r.register(
            format!("{p}callbacks_queued"),
            "Callbacks written to the outbox",
            m.callbacks_queued.clone(),
        );
        r.register(
            format!("{p}callbacks_delivered"),
            "Callbacks delivered (2xx)",
            m.callbacks_delivered.clone(),
        );
        r.register(
            format!("{p}callbacks_retried"),
            "Failed callback attempts that will be retried",
            m.callbacks_retried.clone(),
        );
        r.register(format!("{p}callbacks_failed"), "Callbacks that gave up", m.callbacks_failed.clone());
        r.register(
            format!("{p}callbacks_dropped"),
            "Callbacks no longer wanted (a push for a call that ended)",
            m.callbacks_dropped.clone(),
        );
        r.register_with_unit(
            format!("{p}callback_delivery"),
            "Time from queueing a callback to its delivery",
            Unit::Seconds,
            m.delivery_seconds.clone(),
        );
        r.register(format!("{p}calls_started"), "1-to-1 calls created", m.calls_started.clone());
        r.register(
            format!("{p}calls_ended"),
            "1-to-1 calls ended, by disconnect reason",
            m.calls_ended.clone(),
        );
        r.register(format!("{p}sessions"), "Open signaling sessions", m.sessions.clone());
        r.register(format!("{p}rooms"), "Live rooms", m.rooms.clone());
        r.register(
            format!("{p}room_participants"),
            "Participants in live rooms",
            m.room_participants.clone(),
        );
        r.register(format!("{p}room_joins"), "Room joins accepted", m.room_joins.clone());
        r.register(
            format!("{p}room_leaves"),
            "Participants that left rooms, by disconnect reason",
            m.room_leaves.clone(),
        );
        r.register(
            format!("{p}connections_refused"),
            "Connections closed at accept: too many unauthenticated ones from their address",
            m.connections_refused.clone(),
        );
        r.register(format!("{p}bus_sent"), "Messages sent to other nodes", m.bus_sent.clone());
        r.register(
            format!("{p}bus_undelivered"),
            "Messages to other nodes given up (Redis or the addressee away too long)",
            m.bus_undelivered.clone(),
        );
        r.register(format!("{p}bus_received"), "Messages from other nodes taken", m.bus_received.clone());
        r.register(
            format!("{p}bus_refused"),
            "Messages off the bus refused (unsigned, stale or misaddressed)",
            m.bus_refused.clone(),
        );
        r.register(format!("{p}proxies"), "Proxy sessions of clients of other nodes", m.proxies.clone());
        r.register_collector(Box::new(m.media.clone()));
        r.register_collector(Box::new(m.turn.clone()));
        m
    }
}

impl Metrics {
    /// Counts a delivery and its latency from queueing.
    pub fn delivered(&self, latency_ms: u64) {
        self.callbacks_delivered.inc();
        self.delivery_seconds.observe(latency_ms as f64 / 1000.0);
    }

    /// Counts an ended call.
    pub fn call_ended(&self, reason_code: u16) {
        if let Some(r) = DisconnectReason::from_code(reason_code) {
            self.calls_ended.get_or_create(&ReasonLabels::of(r)).inc();
        }
    }

    /// Counts a participant leaving a room.
    pub fn room_left(&self, reason: DisconnectReason) {
        self.room_leaves.get_or_create(&ReasonLabels::of(reason)).inc();
    }

    /// The Prometheus text exposition (format 0.0.4, [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(8192);
        // Writing to a String cannot fail; an encoder error would only cut the text short.
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut s, &self.registry) {
            tracing::warn!(error = %e, "metrics text cut short");
        }
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
        m.sessions.inc_by(3);
        let text = m.render();
        assert!(text.contains("switchboard_callbacks_delivered_total 2\n"), "{text}");
        assert!(text.contains("switchboard_callback_delivery_seconds_bucket{le=\"0.01\"} 1\n"), "{text}");
        assert!(text.contains("switchboard_callback_delivery_seconds_bucket{le=\"+Inf\"} 2\n"), "{text}");
        assert!(
            text.contains("switchboard_calls_ended_total{reason=\"NORMAL\",code=\"1001\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("switchboard_sessions 3\n"), "{text}");
        assert!(text.contains("# TYPE switchboard_callbacks_delivered_total counter\n"), "{text}");
    }
}
