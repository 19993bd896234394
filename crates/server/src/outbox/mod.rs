//! Callbacks that are never lost: the outbox.
//!
//! Every callback is first written to the database (by the journal, see
//! [`crate::store::journal`]), then handed to the delivery task through its
//! [`DeliveryHandle`]. The decisions of delivery (what to try when, in which order,
//! when to give up) live in the sans-IO [`Dispatcher`]; [`runner`] is the thin async
//! shell that does the HTTP requests and reports each push's outcome
//! ([`PushOutcome`]) to whoever listens (the core task).

mod dispatch;
mod handle;
pub(crate) mod runner;

pub use dispatch::{Action, Dispatcher, Failure, RetryPolicy};
pub(crate) use handle::{DeliveryCmd, DeliveryHandle, PushOutcome};
