//! Media relay metrics for `/metrics`: the relay core's counters (published by the
//! relay task), its loop lag, and the kernel's drop count of the relay's UDP socket.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::relay::RelayStats;

/// Upper bounds (seconds) of the loop-lag histogram.
const LAG_BUCKETS: [f64; 10] = [0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

/// What the relay task publishes.
#[derive(Default)]
pub struct MediaMetrics {
    stats: Mutex<RelayStats>,
    lag_buckets: [AtomicU64; LAG_BUCKETS.len()],
    lag_count: AtomicU64,
    lag_sum_ns: AtomicU64,
    /// Datagrams the relay could not send (its socket's send buffer was full).
    pub send_dropped: AtomicU64,
    /// Local UDP port of the relay socket (for the kernel's drop counter).
    pub port: AtomicU64,
}

impl MediaMetrics {
    /// Publishes the relay core's counters.
    pub fn publish(&self, stats: RelayStats) {
        if let Ok(mut s) = self.stats.lock() {
            *s = stats;
        }
    }

    /// One turn of the relay loop took `busy`: nothing was forwarded meanwhile.
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

    /// The Prometheus text of every media metric.
    pub fn render(&self, s: &mut String) {
        let st = self.stats.lock().map(|s| s.clone()).unwrap_or_default();
        let by_kind = [
            ("switchboard_media_packets_in_total", "Media packets received from parties.", st.packets_in),
            ("switchboard_media_packets_out_total", "Media packets forwarded to parties.", st.packets_out),
            ("switchboard_media_bytes_in_total", "Media payload bytes received.", st.bytes_in),
            ("switchboard_media_bytes_out_total", "Media payload bytes forwarded.", st.bytes_out),
        ];
        for (name, help, v) in by_kind {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(s, "{name}{{kind=\"audio\"}} {}", v[0]);
            let _ = writeln!(s, "{name}{{kind=\"video\"}} {}", v[1]);
        }
        let name = "switchboard_media_dropped_total";
        let _ =
            writeln!(s, "# HELP {name} Datagrams or media the relay dropped, by why.\n# TYPE {name} counter");
        for (why, v) in [
            ("unknown_source", st.dropped_unknown_source),
            ("bad_input", st.dropped_bad_input),
            ("no_route", st.dropped_no_route),
            ("send_buffer_full", self.send_dropped.load(Ordering::Relaxed)),
            ("socket_overflow", udp_drops(self.port.load(Ordering::Relaxed) as u16)),
        ] {
            let _ = writeln!(s, "{name}{{reason=\"{why}\"}} {v}");
        }
        for (name, help, v) in [
            (
                "switchboard_media_keyframe_requests_total",
                "Keyframe requests (PLI/FIR) passed from receivers to sources.",
                st.keyframe_requests,
            ),
            (
                "switchboard_media_keyframes_for_new_receivers_total",
                "Keyframes asked of a source because a receiver started getting it.",
                st.keyframes_for_new_receivers,
            ),
            ("switchboard_media_offers_total", "Offers the relay sent to parties.", st.offers),
            (
                "switchboard_media_answers_refused_total",
                "Answers to relay offers that could not be applied.",
                st.answers_refused,
            ),
        ] {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        }
        let name = "switchboard_media_connections";
        let _ = writeln!(s, "# HELP {name} Media connections (parties) on the relay.\n# TYPE {name} gauge");
        let _ = writeln!(s, "{name} {}", st.connections);
        let name = "switchboard_media_loop_busy_seconds";
        let _ = writeln!(
            s,
            "# HELP {name} Time of one turn of the relay loop (forwarding waits meanwhile).\n# TYPE {name} histogram"
        );
        for (i, b) in LAG_BUCKETS.iter().enumerate() {
            let _ =
                writeln!(s, "{name}_bucket{{le=\"{b}\"}} {}", self.lag_buckets[i].load(Ordering::Relaxed));
        }
        let count = self.lag_count.load(Ordering::Relaxed);
        let _ = writeln!(s, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(s, "{name}_sum {}", self.lag_sum_ns.load(Ordering::Relaxed) as f64 / 1e9);
        let _ = writeln!(s, "{name}_count {count}");
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
    fn renders_media_counters_and_lag() {
        let m = MediaMetrics::default();
        m.publish(RelayStats { packets_in: [5, 1], connections: 2, ..RelayStats::default() });
        m.lag(Duration::from_micros(300));
        m.lag(Duration::from_millis(30));
        let mut s = String::new();
        m.render(&mut s);
        assert!(s.contains("switchboard_media_packets_in_total{kind=\"audio\"} 5\n"), "{s}");
        assert!(s.contains("switchboard_media_connections 2\n"));
        assert!(s.contains("switchboard_media_loop_busy_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(s.contains("switchboard_media_loop_busy_seconds_bucket{le=\"0.05\"} 2\n"));
        assert!(s.contains("switchboard_media_loop_busy_seconds_count 2\n"));
    }

    #[test]
    fn reads_the_kernel_drop_counter_of_a_socket() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        assert_eq!(udp_drops(port), 0);
    }
}
