//! Media relay metrics for `/metrics`, per shard: the relay core's counters (published
//! by each shard's thread), its loop's busy time, and the kernel's drop count of its
//! UDP socket. A `prometheus-client` collector reads them at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;

use super::relay::RelayStats;

/// A metric family of both media kinds: name, help, and how to read it.
type ByKind = (&'static str, &'static str, fn(&RelayStats) -> [u64; 2]);
/// A metric family of one value: name, type, help, and how to read it.
type Single = (&'static str, MetricType, &'static str, fn(&RelayStats) -> u64);

/// Upper bounds (seconds) of the loop busy-time histogram.
const LAG_BUCKETS: [f64; 10] = [0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

/// The relay's figures: one [`ShardMetrics`] per shard, once the relay has started.
#[derive(Default, Debug)]
pub struct MediaMetrics {
    shards: OnceLock<Vec<Arc<ShardMetrics>>>,
}

/// What one relay shard publishes.
#[derive(Debug)]
pub struct ShardMetrics {
    stats: Mutex<RelayStats>,
    lag: Histogram,
    /// Datagrams the shard could not send (its socket's send buffer was full).
    pub send_dropped: AtomicU64,
    /// Local UDP port of the shard's socket (for the kernel's drop counter).
    pub port: AtomicU64,
    /// ICE-TCP connections open on the shard.
    pub tcp_connections: AtomicU64,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            stats: Mutex::default(),
            lag: Histogram::new(LAG_BUCKETS),
            send_dropped: AtomicU64::new(0),
            port: AtomicU64::new(0),
            tcp_connections: AtomicU64::new(0),
        }
    }
}

impl ShardMetrics {
    /// Publishes the relay core's counters.
    pub fn publish(&self, stats: RelayStats) {
        if let Ok(mut s) = self.stats.lock() {
            *s = stats;
        }
    }

    /// One turn of the shard's loop took `busy`: nothing was forwarded meanwhile.
    pub fn lag(&self, busy: Duration) {
        self.lag.observe(busy.as_secs_f64());
    }
}

impl MediaMetrics {
    /// Makes the metrics of `n` shards (once; later calls get the same ones).
    pub fn init_shards(&self, n: usize) -> Vec<Arc<ShardMetrics>> {
        self.shards.get_or_init(|| (0..n).map(|_| Arc::default()).collect()).clone()
    }
}

impl Collector for MediaMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(shards) = self.shards.get() else { return Ok(()) };
        let stats: Vec<RelayStats> =
            shards.iter().map(|m| m.stats.lock().map(|s| s.clone()).unwrap_or_default()).collect();
        let shard = |i: usize| ("shard", i.to_string());
        let by_kind: [ByKind; 4] = [
            ("switchboard_media_packets_in", "Media packets received from parties.", |st| st.packets_in),
            ("switchboard_media_packets_out", "Media packets forwarded to parties.", |st| st.packets_out),
            ("switchboard_media_bytes_in", "Media payload bytes received.", |st| st.bytes_in),
            ("switchboard_media_bytes_out", "Media payload bytes forwarded.", |st| st.bytes_out),
        ];
        for (name, help, get) in by_kind {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (i, st) in stats.iter().enumerate() {
                for (kind, v) in [("audio", get(st)[0]), ("video", get(st)[1])] {
                    let labels = [shard(i), ("kind", kind.to_string())];
                    ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "switchboard_media_dropped",
            "Datagrams or media the relay dropped, by why.",
            None,
            MetricType::Counter,
        )?;
        for (i, (st, m)) in stats.iter().zip(shards.iter()).enumerate() {
            for (why, v) in [
                ("unknown_source", st.dropped_unknown_source),
                ("bad_input", st.dropped_bad_input),
                ("no_route", st.dropped_no_route),
                ("send_buffer_full", m.send_dropped.load(Ordering::Relaxed)),
                ("socket_overflow", udp_drops(m.port.load(Ordering::Relaxed) as u16)),
            ] {
                let labels = [shard(i), ("reason", why.to_string())];
                ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
            }
        }
        let singles: [Single; 5] = [
            (
                "switchboard_media_keyframe_requests",
                MetricType::Counter,
                "Keyframe requests (PLI/FIR) passed from receivers to sources.",
                |st| st.keyframe_requests,
            ),
            (
                "switchboard_media_keyframes_for_new_receivers",
                MetricType::Counter,
                "Keyframes asked of a source because a receiver started getting it.",
                |st| st.keyframes_for_new_receivers,
            ),
            ("switchboard_media_offers", MetricType::Counter, "Offers the relay sent to parties.", |st| {
                st.offers
            }),
            (
                "switchboard_media_answers_refused",
                MetricType::Counter,
                "Answers to relay offers that could not be applied.",
                |st| st.answers_refused,
            ),
            (
                "switchboard_media_connections",
                MetricType::Gauge,
                "Media connections (parties) on the relay.",
                |st| st.connections,
            ),
        ];
        for (name, kind, help, get) in singles {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (i, st) in stats.iter().enumerate() {
                let labels = [shard(i)];
                let metric = family.encode_family(&labels)?;
                match kind {
                    MetricType::Gauge => ConstGauge::new(get(st) as i64).encode(metric)?,
                    _ => ConstCounter::new(get(st)).encode(metric)?,
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "switchboard_media_tcp_connections",
            "ICE-TCP connections open (clients whose network drops UDP).",
            None,
            MetricType::Gauge,
        )?;
        for (i, m) in shards.iter().enumerate() {
            let open = m.tcp_connections.load(Ordering::Relaxed);
            ConstGauge::new(open as i64).encode(family.encode_family(&[shard(i)])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "switchboard_media_loop_busy",
            "Time of one turn of a relay shard's loop (its forwarding waits meanwhile).",
            Some(&prometheus_client::registry::Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (i, m) in shards.iter().enumerate() {
            m.lag.encode(family.encode_family(&[shard(i)])?)?;
        }
        Ok(())
    }
}

/// Datagrams the kernel dropped on UDP sockets bound to `port` (their receive buffer
/// was full), from `/proc/net/udp` and `/proc/net/udp6`.
fn udp_drops(port: u16) -> u64 {
    if port == 0 {
        return 0;
    }
    let want = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    let local = cols.get(1)?;
                    local.ends_with(&want).then(|| cols.last()?.parse::<u64>().ok()).flatten()
                })
                .collect::<Vec<_>>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_media_counters_and_lag_per_shard() {
        let m = MediaMetrics::default();
        let shards = m.init_shards(2);
        shards[1].publish(RelayStats { packets_in: [5, 1], connections: 2, ..RelayStats::default() });
        shards[1].lag(Duration::from_micros(300));
        shards[1].lag(Duration::from_millis(30));
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Arc::new(m)));
        let mut s = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut s, &registry).unwrap();
        assert!(s.contains("switchboard_media_packets_in_total{shard=\"1\",kind=\"audio\"} 5\n"), "{s}");
        assert!(s.contains("switchboard_media_packets_in_total{shard=\"0\",kind=\"audio\"} 0\n"), "{s}");
        assert!(s.contains("switchboard_media_connections{shard=\"1\"} 2\n"), "{s}");
        assert!(s.contains("switchboard_media_loop_busy_seconds_bucket{shard=\"1\",le=\"0.0005\"} 1\n"));
        assert!(s.contains("switchboard_media_loop_busy_seconds_bucket{shard=\"1\",le=\"0.05\"} 2\n"));
        assert!(s.contains("switchboard_media_loop_busy_seconds_count{shard=\"1\"} 2\n"));
        assert_eq!(s.matches("# TYPE switchboard_media_connections gauge").count(), 1);
    }

    #[test]
    fn reads_the_kernel_drop_counter_of_a_socket() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        assert_eq!(udp_drops(port), 0);
    }
}
