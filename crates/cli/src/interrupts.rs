//! Ctrl-C (SIGINT) and SIGTERM for the client commands, listened for from the start.
//!
//! The commands wait for a signal inside `select!` loops; a listener made afresh in each
//! turn of a loop misses a signal that arrives between two turns (while an event is
//! printed, say), and before the first one the default action kills the process without
//! a word to the server. One listener for the whole process counts the signals instead,
//! and each `interrupted()` takes one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use tokio::sync::watch;

/// How many signals have arrived.
static ARRIVED: OnceLock<watch::Receiver<u64>> = OnceLock::new();
/// How many of them an `interrupted()` has returned for.
static TAKEN: AtomicU64 = AtomicU64::new(0);

/// Starts listening (inside the runtime, before the command prints anything). From now
/// on the signals no longer end the process by themselves: the command decides.
pub fn listen() {
    let (tx, rx) = watch::channel(0u64);
    if ARRIVED.set(rx).is_err() {
        return;
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        // Made here, not in the task, so that they listen from this moment on.
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            Some(()) = int.recv() => {}
                            Some(()) = term.recv() => {}
                            else => return,
                        }
                        tx.send_modify(|n| *n += 1);
                    }
                });
                return;
            }
            (Err(e), _) | (_, Err(e)) => tracing::warn!("cannot listen for signals: {e}"),
        }
    }
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            tx.send_modify(|n| *n += 1);
        }
    });
}

/// Returns when a Ctrl-C or SIGTERM has arrived that no earlier call returned for
/// (at once if it came while nobody was waiting). Never returns without `listen`.
pub async fn interrupted() {
    let Some(arrived) = ARRIVED.get() else {
        return std::future::pending().await;
    };
    let mut arrived = arrived.clone();
    loop {
        let seen = *arrived.borrow_and_update();
        let taken = TAKEN.load(Ordering::Acquire);
        if seen > taken {
            if TAKEN.compare_exchange(taken, taken + 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return;
            }
            continue;
        }
        if arrived.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
