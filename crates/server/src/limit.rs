//! Token-bucket rate limits, on caller-supplied time so they run on simulated time, and
//! how a client address is counted for the per-address limits.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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

/// Connections per address that have not proved who they are yet (signaling before
/// `hello`, TLS handshakes), each held by a [`Pending`] place.
#[derive(Debug)]
pub(crate) struct PendingCounts {
    cap: u32,
    counts: Mutex<HashMap<IpAddr, u32>>,
}

impl PendingCounts {
    pub(crate) fn new(cap: u32) -> Arc<Self> {
        Arc::new(PendingCounts { cap, counts: Mutex::new(HashMap::new()) })
    }

    /// Counts a new connection from `ip`, or refuses it when its address is at the cap.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Pending> {
        let key = address_key(ip);
        let mut counts = self.counts.lock().ok()?;
        let n = counts.entry(key).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Pending(Arc::new(PendingInner { counts: self.clone(), key, released: AtomicBool::new(false) })))
    }

    fn release(&self, key: IpAddr) {
        if let Ok(mut counts) = self.counts.lock() {
            if let Some(n) = counts.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(&key);
                }
            }
        }
    }

    /// Pending connections of `ip`'s address now.
    #[cfg(test)]
    fn count(&self, ip: IpAddr) -> u32 {
        self.counts.lock().map(|c| c.get(&address_key(ip)).copied().unwrap_or(0)).unwrap_or(0)
    }
}

/// One pending connection's place in its address's count. It is given back when the
/// connection authenticates ([`Pending::release`]) or ends, whichever comes first.
#[derive(Debug, Clone)]
pub(crate) struct Pending(Arc<PendingInner>);

#[derive(Debug)]
struct PendingInner {
    counts: Arc<PendingCounts>,
    key: IpAddr,
    released: AtomicBool,
}

impl Pending {
    /// The connection proved who it is: it no longer counts as pending.
    pub(crate) fn release(&self) {
        if !self.0.released.swap(true, Ordering::AcqRel) {
            self.0.counts.release(self.0.key);
        }
    }
}

impl Drop for PendingInner {
    fn drop(&mut self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.counts.release(self.key);
        }
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

    #[test]
    fn pending_cap_counts_addresses_and_frees_on_release_or_drop() {
        let counts = PendingCounts::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = counts.admit(a).unwrap();
        let second = counts.admit(a).unwrap();
        assert!(counts.admit(a).is_none(), "third connection from one address is refused");
        assert!(counts.admit(b).is_some(), "another address has its own count");
        first.release();
        first.release();
        assert_eq!(counts.count(a), 1, "release counts once");
        drop(first);
        assert_eq!(counts.count(a), 1, "dropping a released guard changes nothing");
        let copy = second.clone();
        drop(second);
        assert_eq!(counts.count(a), 1, "a clone still holds the place");
        drop(copy);
        assert_eq!(counts.count(a), 0);
    }

    #[test]
    fn ipv6_counts_by_slash_64() {
        let counts = PendingCounts::new(1);
        let _one = counts.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert!(counts.admit("2001:db8::2".parse().unwrap()).is_none());
        assert!(counts.admit("2001:db8:0:1::1".parse().unwrap()).is_some());
    }
}
