//! The TURN server's figures for `/metrics`: its counters, published by its task every
//! second, and the allocations alive, read at scrape time.

use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::TurnStats;

/// What the TURN task publishes: its counters and live allocations (by the transport
/// their clients came by: UDP, TCP, TLS).
#[derive(Debug, Default)]
pub struct TurnMetrics {
    now: Mutex<(TurnStats, [usize; 3])>,
}

impl TurnMetrics {
    /// The figures as they are now.
    pub fn publish(&self, stats: TurnStats, live: [usize; 3]) {
        if let Ok(mut n) = self.now.lock() {
            *n = (stats, live);
        }
    }

    /// The last published counters.
    pub fn stats(&self) -> TurnStats {
        self.now.lock().map(|n| n.0.clone()).unwrap_or_default()
    }
}

impl Collector for TurnMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (s, live) = self.now.lock().map(|n| n.clone()).unwrap_or_default();
        let f = encoder.encode_descriptor(
            "switchboard_turn_allocations",
            "TURN allocations made.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(s.allocations).encode(f)?;
        let mut f = encoder.encode_descriptor(
            "switchboard_turn_allocations_live",
            "TURN allocations alive now, by the transport their clients came by (udp, tcp, tls).",
            None,
            MetricType::Gauge,
        )?;
        for (transport, n) in ["udp", "tcp", "tls"].into_iter().zip(live) {
            ConstGauge::new(n as i64).encode(f.encode_family(&[("transport", transport)])?)?;
        }
        let mut f = encoder.encode_descriptor(
            "switchboard_turn_refused",
            "TURN requests or packets refused, by why: unauthorized (wrong, expired or stale credentials), forbidden (an address not the relay's), over_budget (bandwidth).",
            None,
            MetricType::Counter,
        )?;
        for (why, v) in
            [("unauthorized", s.unauthorized), ("forbidden", s.forbidden), ("over_budget", s.over_budget)]
        {
            ConstCounter::new(v).encode(f.encode_family(&[("reason", why)])?)?;
        }
        let mut f = encoder.encode_descriptor(
            "switchboard_turn_relayed_packets",
            "Packets the TURN server relayed, by direction.",
            None,
            MetricType::Counter,
        )?;
        for (dir, v) in [("to_peer", s.relayed[0]), ("to_client", s.relayed[1])] {
            ConstCounter::new(v).encode(f.encode_family(&[("direction", dir)])?)?;
        }
        Ok(())
    }
}
