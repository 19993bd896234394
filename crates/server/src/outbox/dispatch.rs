//! Delivery decisions on caller-supplied time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use crate::ids::Sid;
use crate::records::{CallbackKind as Kind, CallbackRow};

/// Exponential backoff with jitter, capped, with a give-up horizon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Base delay of the first retry (the actual delay is 50-100 % of it).
    pub first_ms: u64,
    /// Longest delay between attempts.
    pub max_ms: u64,
    /// Give up this long after the callback was queued.
    pub give_up_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { first_ms: 1_000, max_ms: 300_000, give_up_ms: 24 * 3600 * 1000 }
    }
}

impl RetryPolicy {
    /// Delay before attempt `failures + 1`, after `failures` ≥ 1 failed attempts.
    /// `jitter` in [0, 1) spreads retries so that a recovering app server is not hit
    /// by every queued callback at the same instant.
    pub fn delay_ms(&self, failures: u32, jitter: f64) -> u64 {
        let exp = failures.saturating_sub(1).min(40);
        let base = self.first_ms.saturating_mul(1u64 << exp).min(self.max_ms);
        let factor = 0.5 + 0.5 * jitter.clamp(0.0, 1.0);
        ((base as f64) * factor) as u64
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth another try (non-2xx, timeout, refused).
    Retry(String),
    /// Never deliverable as configured (no URL for this callback any more).
    Permanent(String),
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Make one HTTP attempt now and report it with [`Dispatcher::handle_result`].
    Attempt(CallbackRow),
    /// Delivered: record it.
    Delivered {
        /// The callback.
        row: CallbackRow,
        /// From queueing to delivery.
        latency_ms: u64,
    },
    /// Failed; record the next attempt time.
    Retry {
        /// Row ID.
        id: i64,
        /// Attempts so far.
        attempts: u32,
        /// Next attempt, epoch ms.
        next_ms: u64,
        /// Why it failed.
        error: String,
    },
    /// No more attempts: `failed` (gave up) or `dropped` (no longer wanted).
    GaveUp {
        /// The callback.
        row: CallbackRow,
        /// Why.
        error: String,
        /// Dropped rather than failed.
        dropped: bool,
    },
    /// A notify_cb outcome for the call core (`PushResult`).
    Push {
        /// The call.
        sid: Sid,
        /// The invitee, for a group call's push (its key is `sid:user`).
        user: Option<String>,
        /// Delivered in time.
        ok: bool,
    },
}

impl Action {
    /// The outcome of the push queued under `key`.
    fn push(key: &str, ok: bool) -> Action {
        match key.split_once(':') {
            Some((sid, user)) => Action::Push { sid: Sid::new(sid), user: Some(user.to_string()), ok },
            None => Action::Push { sid: Sid::new(key), user: None, ok },
        }
    }
}

struct Entry {
    row: CallbackRow,
    in_flight: bool,
    next_ms: u64,
}

/// Per-key FIFO queues: callback N+1 of a call waits for callback N. Different
/// keys (calls, rooms, services) never wait for each other.
pub struct Dispatcher {
    policy: RetryPolicy,
    queues: HashMap<String, VecDeque<Entry>>,
    timers: BinaryHeap<Reverse<(u64, i64, String)>>,
    out: VecDeque<Action>,
}

fn qkey(row: &CallbackRow) -> String {
    format!("{}/{}", row.service_id, row.key)
}

impl Dispatcher {
    /// A dispatcher with this retry policy.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy, queues: HashMap::new(), timers: BinaryHeap::new(), out: VecDeque::new() }
    }

    /// Callbacks queued or in flight.
    pub fn len(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// The next action.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// When [`Dispatcher::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The ids of the callbacks queued or in flight.
    pub fn ids(&self) -> std::collections::HashSet<i64> {
        self.queues.values().flat_map(|q| q.iter().map(|e| e.row.id)).collect()
    }

    /// Drops the callbacks that `drop` says another node now holds (their attempt in
    /// flight, if any, is no longer reported); the number dropped.
    pub fn forget(&mut self, now: u64, drop: impl Fn(&CallbackRow) -> bool) -> usize {
        let mut n = 0;
        let mut changed = Vec::new();
        for (key, queue) in &mut self.queues {
            let before = queue.len();
            queue.retain(|e| !drop(&e.row));
            if queue.len() != before {
                n += before - queue.len();
                changed.push(key.clone());
            }
        }
        for key in changed {
            self.start_head(now, &key);
        }
        n
    }

    /// Queues a stored callback (once: a callback already queued is not queued again).
    pub fn enqueue(&mut self, now: u64, row: CallbackRow) {
        let key = qkey(&row);
        let queue = self.queues.entry(key.clone()).or_default();
        if queue.iter().any(|e| e.row.id == row.id) {
            return;
        }
        // A record behind a notify_cb that is waiting to retry means the call is over:
        // the push is no longer wanted.
        if row.kind != Kind::Notify {
            if let Some(front) = queue.front() {
                if front.row.kind == Kind::Notify && !front.in_flight {
                    let Some(stale) = queue.pop_front() else { return };
                    self.out.push_back(Action::GaveUp {
                        row: stale.row,
                        error: "the call ended before the push was delivered".into(),
                        dropped: true,
                    });
                }
            }
        }
        let next_ms = row.next_attempt_ms;
        queue.push_back(Entry { row, in_flight: false, next_ms });
        self.start_head(now, &key);
    }

    fn start_head(&mut self, now: u64, key: &str) {
        let Some(queue) = self.queues.get_mut(key) else { return };
        let Some(head) = queue.front_mut() else {
            self.queues.remove(key);
            return;
        };
        if head.in_flight {
            return;
        }
        if head.next_ms <= now {
            head.in_flight = true;
            self.out.push_back(Action::Attempt(head.row.clone()));
        } else {
            self.timers.push(Reverse((head.next_ms, head.row.id, key.to_string())));
        }
    }

    /// Fires due retries.
    pub fn handle_timeout(&mut self, now: u64) {
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, id, key))) = self.timers.pop() else { break };
            let due = self.queues.get(&key).and_then(|q| q.front()).is_some_and(|h| h.row.id == id);
            if due {
                self.start_head(now, &key);
            }
        }
    }

    /// The outcome of an attempt of callback `id`. `jitter` in [0, 1).
    pub fn handle_result(
        &mut self,
        now: u64,
        row_key: (&str, &str, i64),
        result: Result<(), Failure>,
        jitter: f64,
    ) {
        let (service_id, key, id) = row_key;
        let key = format!("{service_id}/{key}");
        let Some(queue) = self.queues.get_mut(&key) else { return };
        let call_over = queue.len() > 1;
        let Some(head) = queue.front_mut().filter(|h| h.row.id == id && h.in_flight) else { return };
        head.in_flight = false;
        head.row.attempts += 1;
        match result {
            Ok(()) => {
                let Some(done) = queue.pop_front() else { return };
                if done.row.kind == Kind::Notify {
                    self.out.push_back(Action::push(&done.row.key, true));
                }
                let latency_ms = now.saturating_sub(done.row.created_ms);
                self.out.push_back(Action::Delivered { row: done.row, latency_ms });
            }
            Err(failure) => {
                let (error, permanent) = match failure {
                    Failure::Retry(e) => (e, false),
                    Failure::Permanent(e) => (e, true),
                };
                let delay = self.policy.delay_ms(head.row.attempts, jitter);
                let next_ms = now + delay;
                // A push for a call that is over is no longer wanted (dropped); one the
                // app server kept refusing until its deadline failed, visible to the
                // operator like any other failure.
                let (give_up, dropped) = match head.row.kind {
                    _ if permanent => (true, true),
                    Kind::Notify if call_over => (true, true),
                    Kind::Notify => (head.row.deadline_ms.is_none_or(|d| next_ms >= d), false),
                    _ => (next_ms > head.row.created_ms + self.policy.give_up_ms, false),
                };
                if give_up {
                    let Some(done) = queue.pop_front() else { return };
                    if done.row.kind == Kind::Notify {
                        self.out.push_back(Action::push(&done.row.key, false));
                    }
                    self.out.push_back(Action::GaveUp { row: done.row, error, dropped });
                } else {
                    head.next_ms = next_ms;
                    let attempts = head.row.attempts;
                    self.out.push_back(Action::Retry { id, attempts, next_ms, error });
                }
            }
        }
        self.start_head(now, &key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, kind: Kind, key: &str, created: u64, deadline: Option<u64>) -> CallbackRow {
        CallbackRow {
            id,
            cb_id: format!("cb-{id}"),
            service_id: "svc".into(),
            kind,
            key: key.into(),
            query: format!("n={id}"),
            state: "pending".into(),
            attempts: 0,
            created_ms: created,
            next_attempt_ms: created,
            delivered_ms: None,
            deadline_ms: deadline,
            last_error: None,
        }
    }

    fn drain(d: &mut Dispatcher) -> Vec<Action> {
        std::iter::from_fn(|| d.poll_action()).collect()
    }

    fn attempts(actions: &[Action]) -> Vec<i64> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Attempt(r) => Some(r.id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn backoff_is_exponential_capped_and_jittered() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_ms(1, 0.0), 500);
        assert_eq!(p.delay_ms(1, 0.999_999), 999);
        assert_eq!(p.delay_ms(2, 0.0), 1_000);
        assert_eq!(p.delay_ms(10, 0.0), 150_000);
        assert_eq!(p.delay_ms(30, 0.0), 150_000);
        assert!(p.delay_ms(30, 0.99) <= 300_000);
    }

    #[test]
    fn same_call_in_order_other_calls_in_parallel() {
        let mut d = Dispatcher::new(RetryPolicy::default());
        d.enqueue(0, row(1, Kind::Call, "a", 0, None));
        d.enqueue(0, row(2, Kind::Gcall, "a", 0, None));
        d.enqueue(0, row(3, Kind::Call, "b", 0, None));
        assert_eq!(attempts(&drain(&mut d)), vec![1, 3], "2 waits for 1; b does not");
        d.handle_result(10, ("svc", "a", 1), Err(Failure::Retry("503".into())), 0.0);
        let a = drain(&mut d);
        assert!(matches!(a[0], Action::Retry { id: 1, attempts: 1, next_ms: 510, .. }), "{a:?}");
        d.handle_timeout(509);
        assert!(drain(&mut d).is_empty());
        d.handle_timeout(510);
        assert_eq!(attempts(&drain(&mut d)), vec![1]);
        d.handle_result(600, ("svc", "a", 1), Ok(()), 0.0);
        let a = drain(&mut d);
        assert!(
            matches!(&a[0], Action::Delivered { row, latency_ms: 600 } if row.id == 1 && row.attempts == 2)
        );
        assert_eq!(attempts(&a), vec![2]);
    }

    #[test]
    fn records_give_up_after_the_horizon_and_the_next_one_goes() {
        let policy = RetryPolicy { first_ms: 1000, max_ms: 4000, give_up_ms: 10_000 };
        let mut d = Dispatcher::new(policy);
        d.enqueue(0, row(1, Kind::Call, "a", 0, None));
        d.enqueue(0, row(2, Kind::Call, "a", 0, None));
        drain(&mut d);
        let mut now = 0;
        loop {
            d.handle_result(now, ("svc", "a", 1), Err(Failure::Retry("refused".into())), 0.0);
            let a = drain(&mut d);
            if let Some(Action::GaveUp { row, dropped: false, .. }) = a.first() {
                assert_eq!(row.id, 1);
                assert_eq!(attempts(&a), vec![2]);
                break;
            }
            now = d.poll_timeout().expect("a retry is scheduled");
            assert!(now <= 10_000);
            d.handle_timeout(now);
            assert_eq!(attempts(&drain(&mut d)), vec![1]);
        }
    }

    #[test]
    fn notify_retries_until_its_deadline_then_reports_push_failure() {
        let mut d = Dispatcher::new(RetryPolicy::default());
        d.enqueue(0, row(1, Kind::Notify, "sid1", 0, Some(2_000)));
        drain(&mut d);
        d.handle_result(5, ("svc", "sid1", 1), Err(Failure::Retry("500".into())), 0.0);
        assert!(matches!(drain(&mut d)[0], Action::Retry { next_ms: 505, .. }));
        d.handle_timeout(505);
        drain(&mut d);
        d.handle_result(510, ("svc", "sid1", 1), Err(Failure::Retry("500".into())), 0.0);
        assert!(matches!(drain(&mut d)[0], Action::Retry { next_ms: 1510, .. }));
        d.handle_timeout(1510);
        drain(&mut d);
        d.handle_result(1515, ("svc", "sid1", 1), Err(Failure::Retry("500".into())), 0.0);
        let a = drain(&mut d);
        assert_eq!(a[0], Action::Push { sid: Sid::new("sid1"), user: None, ok: false });
        assert!(
            matches!(&a[1], Action::GaveUp { dropped: false, .. }),
            "failed: the app server kept refusing"
        );
        assert!(d.is_empty());
    }

    #[test]
    fn permanent_failures_are_dropped_at_once() {
        let mut d = Dispatcher::new(RetryPolicy::default());
        d.enqueue(0, row(1, Kind::Call, "a", 0, None));
        d.enqueue(0, row(2, Kind::Call, "a", 0, None));
        drain(&mut d);
        d.handle_result(1, ("svc", "a", 1), Err(Failure::Permanent("no URL".into())), 0.0);
        let a = drain(&mut d);
        assert!(matches!(&a[0], Action::GaveUp { dropped: true, row, .. } if row.id == 1));
        assert_eq!(attempts(&a), vec![2]);
    }

    #[test]
    fn notify_is_not_retried_after_the_call_is_gone() {
        let mut d = Dispatcher::new(RetryPolicy::default());
        d.enqueue(0, row(1, Kind::Notify, "sid1", 0, Some(5_000)));
        drain(&mut d);
        d.handle_result(5, ("svc", "sid1", 1), Err(Failure::Retry("refused".into())), 0.0);
        drain(&mut d);
        // The call ends while the push waits for its retry: its record arrives.
        d.enqueue(100, row(2, Kind::Call, "sid1", 100, None));
        let a = drain(&mut d);
        assert!(matches!(&a[0], Action::GaveUp { row, dropped: true, .. } if row.id == 1));
        assert_eq!(attempts(&a), vec![2]);
        d.handle_timeout(10_000);
        assert!(drain(&mut d).is_empty(), "the dropped notify never comes back");
    }

    #[test]
    fn delivered_notify_tells_the_core() {
        let mut d = Dispatcher::new(RetryPolicy::default());
        d.enqueue(0, row(1, Kind::Notify, "sid1", 0, Some(5_000)));
        drain(&mut d);
        d.handle_result(20, ("svc", "sid1", 1), Ok(()), 0.0);
        assert_eq!(drain(&mut d)[0], Action::Push { sid: "sid1".into(), user: None, ok: true });
    }

    #[test]
    fn recovered_rows_keep_their_schedule() {
        let mut d = Dispatcher::new(RetryPolicy::default());
        let mut r = row(1, Kind::Call, "a", 0, None);
        r.next_attempt_ms = 5_000;
        r.attempts = 3;
        d.enqueue(1_000, r);
        assert!(drain(&mut d).is_empty());
        assert_eq!(d.poll_timeout(), Some(5_000));
        d.handle_timeout(5_000);
        assert_eq!(attempts(&drain(&mut d)), vec![1]);
    }
}
