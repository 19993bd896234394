//! The app server of the load commands, in the load generator's process: notify_cb
//! hands each `cc_param` to its callee's pair (as a push would), on_call_evt_cb counts
//! records.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use tokio::sync::mpsc;

#[derive(Default)]
pub(crate) struct AppServer {
    pub(crate) pushes: Mutex<HashMap<String, mpsc::UnboundedSender<(String, String)>>>,
    pub(crate) records: AtomicU64,
    pub(crate) notifies: AtomicU64,
}

pub(crate) async fn app_notify(State(app): State<Arc<AppServer>>, RawQuery(q): RawQuery) -> &'static str {
    app.notifies.fetch_add(1, Ordering::Relaxed);
    let q: HashMap<String, String> =
        url::form_urlencoded::parse(q.unwrap_or_default().as_bytes()).into_owned().collect();
    if let (Some(to), Some(sid), Some(param)) = (q.get("to_user_id"), q.get("sid"), q.get("param")) {
        if let Some(tx) = app.pushes.lock().ok().and_then(|p| p.get(to).cloned()) {
            let _ = tx.send((sid.clone(), param.clone()));
        }
    }
    "ok"
}

pub(crate) async fn app_record(State(app): State<Arc<AppServer>>) -> &'static str {
    app.records.fetch_add(1, Ordering::Relaxed);
    "ok"
}
