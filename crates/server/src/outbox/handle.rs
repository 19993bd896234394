//! The way to the delivery task, and what it reports back.

use tokio::sync::mpsc;

use super::Failure;
use crate::ids::Sid;
use crate::records::CallbackRow;

/// Commands to the delivery task.
pub(crate) enum DeliveryCmd {
    /// Stored callbacks to deliver.
    Enqueue(Vec<CallbackRow>),
    /// An attempt finished.
    Done { service_id: String, key: String, id: i64, result: Result<(), Failure> },
}

/// A push (notify_cb) delivered in time, or given up: the call core wants to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushOutcome {
    /// The call.
    pub sid: Sid,
    /// The invitee, for a group call's push.
    pub user: Option<String>,
    /// A 2xx within the deadline.
    pub ok: bool,
}

/// The way to the callback delivery task.
#[derive(Clone)]
pub(crate) struct DeliveryHandle(mpsc::UnboundedSender<DeliveryCmd>);

impl DeliveryHandle {
    pub fn new(tx: mpsc::UnboundedSender<DeliveryCmd>) -> Self {
        Self(tx)
    }

    /// Hands a command to the delivery task; false once it stopped.
    pub fn send(&self, cmd: DeliveryCmd) -> bool {
        self.0.send(cmd).is_ok()
    }
}
