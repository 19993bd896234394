//! Callbacks that are never lost: the outbox.
//!
//! Every callback is first written to the database (by the core task, see
//! [`crate::store::CoreDb`]), then handed to the delivery task. The decisions of
//! delivery (what to try when, in which order, when to give up) live in the sans-IO
//! [`Dispatcher`]; [`runner`] is the thin async shell that does the HTTP requests.

mod dispatch;
pub(crate) mod runner;

pub use dispatch::{Action, Dispatcher, Failure, RetryPolicy};
