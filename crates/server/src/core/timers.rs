//! One timer wheel for the whole core, on the monotonic clock. Timers are not
//! cancelled: their owner checks, when one fires, that its deadline still stands (a
//! deadline moved or cleared leaves a stale entry that fires and is ignored).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Timers keyed by what they are for.
#[derive(Debug)]
pub(crate) struct Timers<K: Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord> Default for Timers<K> {
    fn default() -> Self {
        Timers { heap: BinaryHeap::new() }
    }
}

impl<K: Ord> Timers<K> {
    /// Sets a timer at `at`.
    pub fn push(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest timer.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The earliest timer due at `now`, taken off the wheel.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|Reverse(t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_timers_come_out_in_order() {
        let t0 = Instant::now();
        let mut w = Timers::default();
        w.push(t0 + Duration::from_secs(3), "c");
        w.push(t0 + Duration::from_secs(1), "a");
        w.push(t0 + Duration::from_secs(2), "b");
        assert_eq!(w.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(w.pop_due(t0), None);
        let due: Vec<&str> =
            std::iter::from_fn(|| w.pop_due(t0 + Duration::from_secs(2))).map(|(_, k)| k).collect();
        assert_eq!(due, ["a", "b"]);
        assert_eq!(w.next(), Some(t0 + Duration::from_secs(3)));
    }
}
