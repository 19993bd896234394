//! Media relay metrics for `/metrics`, per shard: the relay core's counters (published
//! by each shard's thread), its loop's busy time, and the kernel's drop count of its
//! UDP socket.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::relay::RelayStats;

/// A metric family of both media kinds: name, help, and how to read it.
type ByKind = (&'static str, &'static str, fn(&RelayStats) -> [u64; 2]);
/// A metric family of one value: name, type, help, and how to read it.
type Single = (&'static str, &'static str, &'static str, fn(&RelayStats) -> u64);

/// Upper bounds (seconds) of the loop busy-time histogram.
const LAG_BUCKETS: [f64; 10] = [0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

/// The relay's figures: one [`ShardMetrics`] per shard, once the relay has started.
#[derive(Default)]
pub struct MediaMetrics {
    shards: OnceLock<Vec<Arc<ShardMetrics>>>,
}

/// What one relay shard publishes.
#[derive(Default)]
pub struct ShardMetrics {
    stats: Mutex<RelayStats>,
    lag_buckets: [AtomicU64; LAG_BUCKETS.len()],
    lag_count: AtomicU64,
    lag_sum_ns: AtomicU64,
    /// Datagrams the shard could not send (its socket's send buffer was full).
    pub send_dropped: AtomicU64,
    /// Local UDP port of the shard's socket (for the kernel's drop counter).
    pub port: AtomicU64,
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
        let secs = busy.as_secs_f64();
        for (i, b) in LAG_BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.lag_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.lag_count.fetch_add(1, Ordering::Relaxed);
        self.lag_sum_ns.fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
    }
}

impl MediaMetrics {
    /// Makes the metrics of `n` shards (once; later calls get the same ones).
    pub fn init_shards(&self, n: usize) -> Vec<Arc<ShardMetrics>> {
        self.shards.get_or_init(|| (0..n).map(|_| Arc::default()).collect()).clone()
    }

    /// The Prometheus text of every media metric.
    pub fn render(&self, s: &mut String) {
        let Some(shards) = self.shards.get() else { return };
        let stats: Vec<RelayStats> =
            shards.iter().map(|m| m.stats.lock().map(|s| s.clone()).unwrap_or_default()).collect();
        let family = |s: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let by_kind: [ByKind; 4] = [
            ("switchboard_media_packets_in_total", "Media packets received from parties.", |st| {
                st.packets_in
            }),
            ("switchboard_media_packets_out_total", "Media packets forwarded to parties.", |st| {
                st.packets_out
            }),
            ("switchboard_media_bytes_in_total", "Media payload bytes received.", |st| st.bytes_in),
            ("switchboard_media_bytes_out_total", "Media payload bytes forwarded.", |st| st.bytes_out),
        ];
        for (name, help, get) in by_kind {
            family(s, name, "counter", help);
            for (i, st) in stats.iter().enumerate() {
                let v = get(st);
                let _ = writeln!(s, "{name}{{shard=\"{i}\",kind=\"audio\"}} {}", v[0]);
                let _ = writeln!(s, "{name}{{shard=\"{i}\",kind=\"video\"}} {}", v[1]);
            }
        }
        let name = "switchboard_media_dropped_total";
        family(s, name, "counter", "Datagrams or media the relay dropped, by why.");
        for (i, (st, m)) in stats.iter().zip(shards.iter()).enumerate() {
            for (why, v) in [
                ("unknown_source", st.dropped_unknown_source),
                ("bad_input", st.dropped_bad_input),
                ("no_route", st.dropped_no_route),
                ("send_buffer_full", m.send_dropped.load(Ordering::Relaxed)),
                ("socket_overflow", udp_drops(m.port.load(Ordering::Relaxed) as u16)),
            ] {
                let _ = writeln!(s, "{name}{{shard=\"{i}\",reason=\"{why}\"}} {v}");
            }
        }
        let singles: [Single; 5] = [
            (
                "switchboard_media_keyframe_requests_total",
                "counter",
                "Keyframe requests (PLI/FIR) passed from receivers to sources.",
                |st| st.keyframe_requests,
            ),
            (
                "switchboard_media_keyframes_for_new_receivers_total",
                "counter",
                "Keyframes asked of a source because a receiver started getting it.",
                |st| st.keyframes_for_new_receivers,
            ),
            ("switchboard_media_offers_total", "counter", "Offers the relay sent to parties.", |st| {
                st.offers
            }),
            (
                "switchboard_media_answers_refused_total",
                "counter",
                "Answers to relay offers that could not be applied.",
                |st| st.answers_refused,
            ),
            ("switchboard_media_connections", "gauge", "Media connections (parties) on the relay.", |st| {
                st.connections
            }),
        ];
        for (name, kind, help, get) in singles {
            family(s, name, kind, help);
            for (i, st) in stats.iter().enumerate() {
                let _ = writeln!(s, "{name}{{shard=\"{i}\"}} {}", get(st));
            }
        }
        let name = "switchboard_media_loop_busy_seconds";
        family(
            s,
            name,
            "histogram",
            "Time of one turn of a relay shard's loop (its forwarding waits meanwhile).",
        );
        for (i, m) in shards.iter().enumerate() {
            for (b, bucket) in LAG_BUCKETS.iter().zip(m.lag_buckets.iter()) {
                let _ = writeln!(
                    s,
                    "{name}_bucket{{shard=\"{i}\",le=\"{b}\"}} {}",
                    bucket.load(Ordering::Relaxed)
                );
            }
            let count = m.lag_count.load(Ordering::Relaxed);
            let _ = writeln!(s, "{name}_bucket{{shard=\"{i}\",le=\"+Inf\"}} {count}");
            let _ = writeln!(
                s,
                "{name}_sum{{shard=\"{i}\"}} {}",
                m.lag_sum_ns.load(Ordering::Relaxed) as f64 / 1e9
            );
            let _ = writeln!(s, "{name}_count{{shard=\"{i}\"}} {count}");
        }
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
        let mut s = String::new();
        m.render(&mut s);
        assert!(s.contains("switchboard_media_packets_in_total{shard=\"1\",kind=\"audio\"} 5\n"), "{s}");
        assert!(s.contains("switchboard_media_packets_in_total{shard=\"0\",kind=\"audio\"} 0\n"), "{s}");
        assert!(s.contains("switchboard_media_connections{shard=\"1\"} 2\n"));
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
