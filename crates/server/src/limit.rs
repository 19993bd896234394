//! Token-bucket rate limits, on caller-supplied time so they run on simulated time, and
//! how a client address is counted for the per-address limits.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

/// How an address is counted: IPv4 addresses one by one, IPv6 by /64 (one host
/// usually holds a whole /64).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// One token bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    last_ms: u64,
}

impl Bucket {
    /// A full bucket.
    pub fn new(burst: f64, now_ms: u64) -> Self {
        Self { tokens: burst, last_ms: now_ms }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, rate: f64, burst: f64, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last_ms = now_ms.max(self.last_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Buckets per key (user, IP address), forgetting idle keys.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    rate: f64,
    burst: f64,
    buckets: HashMap<K, Bucket>,
    last_sweep_ms: u64,
}

impl<K: Eq + Hash + Clone> KeyedLimiter<K> {
    /// `rate` tokens per second, up to `burst`.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self { rate, burst, buckets: HashMap::new(), last_sweep_ms: 0 }
    }

    /// Takes one token for `key`.
    pub fn allow(&mut self, key: &K, now_ms: u64) -> bool {
        self.sweep(now_ms);
        let (rate, burst) = (self.rate, self.burst);
        match self.buckets.get_mut(key) {
            Some(b) => b.take(rate, burst, now_ms),
            None => {
                let mut b = Bucket::new(burst, now_ms);
                let ok = b.take(rate, burst, now_ms);
                self.buckets.insert(key.clone(), b);
                ok
            }
        }
    }

    /// Drops buckets that have refilled completely: they hold no state worth keeping.
    fn sweep(&mut self, now_ms: u64) {
        if now_ms < self.last_sweep_ms + 10_000 {
            return;
        }
        self.last_sweep_ms = now_ms;
        let full_after_ms = if self.rate > 0.0 { (self.burst / self.rate * 1000.0) as u64 } else { u64::MAX };
        self.buckets.retain(|_, b| now_ms.saturating_sub(b.last_ms) < full_after_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_rate() {
        let mut l = KeyedLimiter::new(2.0, 3.0);
        assert!((0..3).all(|_| l.allow(&"u", 0)));
        assert!(!l.allow(&"u", 0));
        assert!(l.allow(&"other", 0));
        assert!(!l.allow(&"u", 400));
        assert!(l.allow(&"u", 500));
    }
}
