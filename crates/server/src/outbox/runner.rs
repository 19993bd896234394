//! The delivery task: owns the [`Dispatcher`], does the HTTP attempts (each on its
//! own task, at most `per_service_concurrency` per service, so a slow app server only
//! slows its own service), records progress in the store, and reports pushes'
//! outcomes on its `pushes` channel.

use std::collections::HashMap;
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
    /// Attempts start only until then: this node's leases on its callbacks were last
    /// renewed with a third of their length to spare. Past it (the database out of
    /// reach), another node may have taken them over.
    leased_until: tokio::time::Instant,
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
            leased_until: tokio::time::Instant::now() + config.database().lease * 2 / 3,
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
        let lease = self.store.lease();
        let mut renew = tokio::time::interval(lease / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewing: Option<tokio::task::JoinHandle<_>> = None;
        loop {
            let wake = self
                .dispatcher
                .poll_timeout()
                .map(|at| tokio::time::Instant::now() + Duration::from_millis(at.saturating_sub(now_ms())));
            let held = tokio::time::Instant::now() >= self.leased_until;
            tokio::select! {
                _ = renew.tick(), if renewing.is_none() => {
                    let (store, asked) = (self.store.clone(), tokio::time::Instant::now());
                    renewing = Some(tokio::spawn(async move { (asked, store.leases(now_ms()).await) }));
                }
                done = async { renewing.as_mut().expect("guarded").await }, if renewing.is_some() => {
                    renewing = None;
                    match done {
                        Ok((asked, Ok(claimed))) => {
                            self.leased_until = asked + lease * 2 / 3;
                            self.take_over(claimed);
                        }
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
                _ = crate::clock::sleep_until(wake), if wake.is_some() && !held => {
                    self.dispatcher.handle_timeout(now_ms());
                }
                _ = stop.wait_for(|s| *s) => break,
            }
            if tokio::time::Instant::now() < self.leased_until {
                self.drain();
            }
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
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else { return };
            let result = callbacks
                .get(&url, &row.query, &row.cb_id, &secret, timeout)
                .await
                .map(|_| ())
                .map_err(|e| Failure::Retry(e.to_string()));
            let _ = me.send(done(&row, result));
        });
    }
}
