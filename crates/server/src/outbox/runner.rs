//! The delivery task: owns the [`Dispatcher`], does the HTTP attempts (each on its
//! own task, at most `per_service_concurrency` per service, so a slow app server only
//! slows its own service), records progress in the store, and reports pushes'
//! outcomes on its `pushes` channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use super::{Action, DeliveryCmd, DeliveryHandle, Dispatcher, Failure, PushOutcome, RetryPolicy};
use crate::callbacks::Callbacks;
use crate::clock::now_ms;
use crate::config::{Config, ServiceConfig};
use crate::metrics::Metrics;
use crate::records::{CallbackKind as Kind, CallbackRow};
use crate::store::Store;

struct ServiceLane {
    config: ServiceConfig,
    permits: Arc<Semaphore>,
}

pub(crate) struct DeliveryRunner {
    dispatcher: Dispatcher,
    lanes: HashMap<String, ServiceLane>,
    callbacks: Callbacks,
    store: Store,
    pushes: mpsc::UnboundedSender<PushOutcome>,
    me: DeliveryHandle,
    metrics: Arc<Metrics>,
    timeout: Duration,
    /// This node's hold on its callbacks (several nodes on PostgreSQL; `None` for one
    /// SQLite file, which no other node shares).
    lease: Option<LeaseClock>,
    /// Attempts due while the lease was not held, made once it is again.
    parked: Vec<CallbackRow>,
}

/// Until when this node may start attempts: its leases were last renewed with a third
/// of their length to spare. Past it (the database out of reach), another node may have
/// taken them over. Shared with the attempts, which check it again once they get their
/// turn, and end their request before the lease itself can have run out.
#[derive(Clone)]
struct LeaseClock {
    epoch: tokio::time::Instant,
    /// Milliseconds after `epoch`.
    until_ms: Arc<AtomicU64>,
    length: Duration,
}

impl LeaseClock {
    fn set(&self, until: tokio::time::Instant) {
        let ms = u64::try_from(until.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX);
        self.until_ms.store(ms, Ordering::Relaxed);
    }

    /// How long attempts may still start (zero: not now).
    fn left(&self) -> Duration {
        let until = self.epoch + Duration::from_millis(self.until_ms.load(Ordering::Relaxed));
        until.saturating_duration_since(tokio::time::Instant::now())
    }
}

impl DeliveryRunner {
    pub(crate) fn new(
        config: &Config,
        callbacks: Callbacks,
        store: Store,
        pushes: mpsc::UnboundedSender<PushOutcome>,
        me: DeliveryHandle,
        metrics: Arc<Metrics>,
    ) -> Self {
        let cb = &config.callbacks;
        let policy = RetryPolicy {
            first_ms: cb.retry_first_ms,
            max_ms: cb.retry_max_ms,
            give_up_ms: cb.give_up_secs * 1000,
        };
        let lanes = config
            .services
            .iter()
            .map(|s| {
                (
                    s.id.clone(),
                    ServiceLane {
                        config: s.clone(),
                        permits: Arc::new(Semaphore::new(cb.per_service_concurrency)),
                    },
                )
            })
            .collect();
        Self {
            dispatcher: Dispatcher::new(policy),
            lanes,
            callbacks,
            store,
            pushes,
            me,
            metrics,
            timeout: Duration::from_millis(config.callback_timeout_ms),
            lease: config.database_url.is_some().then(|| {
                let clock = LeaseClock {
                    epoch: tokio::time::Instant::now(),
                    until_ms: Arc::default(),
                    length: config.database().lease,
                };
                // Recovery renewed them just now.
                clock.set(tokio::time::Instant::now() + clock.length * 2 / 3);
                clock
            }),
            parked: Vec::new(),
        }
    }

    /// Delivers until `stop` turns true (the server shuts down); what is not delivered
    /// by then stays in the outbox for the next start.
    pub(crate) async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<DeliveryCmd>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut batch = Vec::with_capacity(256);
        let mut renew = tokio::time::interval(self.store.lease() / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewing: Option<tokio::task::JoinHandle<_>> = None;
        loop {
            let wake = self
                .dispatcher
                .poll_timeout()
                .map(|at| tokio::time::Instant::now() + Duration::from_millis(at.saturating_sub(now_ms())));
            tokio::select! {
                _ = renew.tick(), if renewing.is_none() && self.lease.is_some() => {
                    let store = self.store.clone();
                    renewing = Some(tokio::spawn(async move {
                        let asked = (tokio::time::Instant::now(), now_ms());
                        (asked, store.leases(asked.1).await)
                    }));
                }
                done = async { renewing.as_mut().expect("guarded").await }, if renewing.is_some() => {
                    renewing = None;
                    match done {
                        Ok((asked, Ok(leases))) => self.renewed(asked, leases),
                        Ok((_, Err(e))) => tracing::warn!(error = %e, "callback leases not renewed"),
                        Err(e) => tracing::warn!(error = %e, "callback lease renewal failed"),
                    }
                }
                n = rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break;
                    }
                    for cmd in batch.drain(..) {
                        self.apply(cmd);
                    }
                }
                _ = crate::clock::sleep_until(wake), if wake.is_some() => {
                    self.dispatcher.handle_timeout(now_ms());
                }
                _ = stop.wait_for(|s| *s) => break,
            }
            self.drain();
        }
    }

    /// The leases were renewed at `asked` (monotonic, epoch ms): attempts may start again;
    /// what another node holds now is forgotten, what this node holds but did not know
    /// (a takeover or a write whose answer was lost) is fetched and queued.
    fn renewed(&mut self, asked: (tokio::time::Instant, u64), leases: crate::store::Leases) {
        let now = now_ms();
        if let (Some(clock), Some(held)) = (&self.lease, leases.held) {
            clock.set(asked.0 + clock.length * 2 / 3);
            let held: std::collections::HashSet<i64> = held.into_iter().collect();
            // Only what was queued well before the renewal: a callback committed while it
            // ran is this node's even if the renewal did not see it.
            let gone =
                self.dispatcher.forget(now, |r| !held.contains(&r.id) && r.created_ms + 5_000 < asked.1);
            if gone > 0 {
                tracing::warn!(callbacks = gone, "callbacks taken over by another node; left to it");
            }
            let known = self.dispatcher.ids();
            let taken: std::collections::HashSet<i64> = leases.taken.iter().map(|r| r.id).collect();
            let unknown: Vec<i64> =
                held.into_iter().filter(|id| !known.contains(id) && !taken.contains(id)).collect();
            if !unknown.is_empty() {
                let (store, me) = (self.store.clone(), self.me.clone());
                tokio::spawn(async move {
                    if let Ok(rows) = store.rows(unknown).await {
                        me.send(DeliveryCmd::Enqueue(rows));
                    }
                });
            }
        }
        self.take_over(leases.taken);
        let parked = std::mem::take(&mut self.parked);
        let queued = self.dispatcher.ids();
        for row in parked.into_iter().filter(|r| queued.contains(&r.id)) {
            self.attempt(row);
        }
    }

    /// Callbacks of a node that died, now this node's to deliver. Its pushes are not
    /// sent: their calls went with it.
    fn take_over(&mut self, rows: Vec<CallbackRow>) {
        let now = now_ms();
        for row in rows {
            if row.kind == Kind::Notify {
                self.store.gave_up(row.id, row.attempts, "its node died; the call is gone".into(), true);
            } else {
                self.dispatcher.enqueue(now, row);
            }
        }
    }

    fn apply(&mut self, cmd: DeliveryCmd) {
        let now = now_ms();
        match cmd {
            DeliveryCmd::Enqueue(rows) => {
                for row in rows {
                    self.dispatcher.enqueue(now, row);
                }
            }
            DeliveryCmd::Done { service_id, key, id, result } => {
                self.dispatcher.handle_result(now, (&service_id, &key, id), result, rand::random::<f64>());
            }
        }
    }

    fn drain(&mut self) {
        while let Some(action) = self.dispatcher.poll_action() {
            match action {
                Action::Attempt(row) if self.lease.as_ref().is_some_and(|l| l.left().is_zero()) => {
                    self.parked.push(row);
                }
                Action::Attempt(row) => self.attempt(row),
                Action::Delivered { row, latency_ms } => {
                    self.metrics.delivered(latency_ms);
                    self.store.delivered(row.id, now_ms(), row.attempts);
                }
                Action::Retry { id, attempts, next_ms, error } => {
                    self.metrics.callbacks_retried.inc();
                    tracing::debug!(id, attempts, %error, "callback failed; will retry");
                    self.store.retry(id, attempts, next_ms, error);
                }
                Action::GaveUp { row, error, dropped } => {
                    if dropped {
                        self.metrics.callbacks_dropped.inc();
                    } else {
                        self.metrics.callbacks_failed.inc();
                        tracing::warn!(id = row.id, cb_id = %row.cb_id, service = %row.service_id, %error, "callback gave up");
                    }
                    self.store.gave_up(row.id, row.attempts, error, dropped);
                }
                Action::Push { sid, user, ok } => {
                    let _ = self.pushes.send(PushOutcome { sid, user, ok });
                }
            }
        }
    }

    fn attempt(&self, row: CallbackRow) {
        let me = self.me.clone();
        let done = move |row: &CallbackRow, result| DeliveryCmd::Done {
            service_id: row.service_id.clone(),
            key: row.key.clone(),
            id: row.id,
            result,
        };
        let Some(lane) = self.lanes.get(&row.service_id) else {
            let _ = me.send(done(&row, Err(Failure::Permanent("service no longer configured".into()))));
            return;
        };
        let url = match row.kind {
            Kind::Notify => lane.config.notify_cb_url.clone(),
            Kind::Call => lane.config.on_call_evt_cb_url.clone(),
            Kind::Gcall => lane.config.on_gcall_evt_cb_url.clone(),
            Kind::GroupCall => lane.config.on_group_call_evt_cb_url.clone(),
        };
        let Some(url) = url else {
            let _ = me.send(done(&row, Err(Failure::Permanent("no callback URL configured".into()))));
            return;
        };
        let secret = lane.config.api_secret.clone();
        let permits = lane.permits.clone();
        let callbacks = self.callbacks.clone();
        let mut timeout = self.timeout;
        if let Some(deadline) = row.deadline_ms {
            timeout = timeout.min(Duration::from_millis(deadline.saturating_sub(now_ms()).max(1)));
        }
        let lease = self.lease.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else { return };
            // Its turn may come late: the lease must still be held, and the request
            // ends before the lease itself can have passed to another node.
            if let Some(lease) = &lease {
                let left = lease.left();
                if left.is_zero() {
                    let _ =
                        me.send(done(&row, Err(Failure::Retry("this node's lease was not renewed".into()))));
                    return;
                }
                timeout = timeout.min(left + lease.length / 3);
            }
            let result = callbacks
                .get(&url, &row.query, &row.cb_id, &secret, timeout)
                .await
                .map(|_| ())
                .map_err(|e| Failure::Retry(e.to_string()));
            let _ = me.send(done(&row, result));
        });
    }
}
