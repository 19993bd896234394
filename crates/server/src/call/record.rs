//! Records and billing: what is kept of a live call (for the REST API and for the
//! journal, so a record can be written if the server dies under the call) and the
//! on_call_evt_cb record it becomes when it ends, with the billable seconds.

use switchboard_protocol::record::CallRecord;
use switchboard_protocol::{DisconnectReason, DisconnectSource};

use crate::party::Millis;

/// What is known of a live call: enough to answer `GET /v1/calls/{sid}` and to
/// write its record if the server dies under it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveCall {
    /// The call.
    pub sid: String,
    /// Caller's service.
    pub from_service_id: String,
    /// Caller.
    pub from_user_id: String,
    /// Callee's service.
    pub to_service_id: String,
    /// Callee.
    pub to_user_id: String,
    /// `A` or `V`.
    pub media_type: String,
    /// App server data.
    pub app_data: Option<String>,
    /// Created, epoch ms.
    pub setup_ms: Millis,
    /// Answered, epoch ms.
    pub start_ms: Option<Millis>,
    /// Caller's address.
    pub srcip: String,
    /// Callee's address, once known.
    pub dstip: String,
    /// Region code.
    pub rc_idc: String,
    /// Connected time during which a party had no session (not billed).
    #[serde(default)]
    pub interrupted_ms: Millis,
    /// Since when a party has been without a session, if one is now.
    #[serde(default)]
    pub lost_since_ms: Option<Millis>,
}

impl LiveCall {
    /// `ringing` or `connected`.
    pub fn state(&self) -> &'static str {
        if self.start_ms.is_some() {
            "connected"
        } else {
            "ringing"
        }
    }

    /// The call record if the call ended at `end_ms` for this reason.
    pub fn record(
        &self,
        end_ms: Millis,
        reason: DisconnectReason,
        source: DisconnectSource,
        user_rel_code: Option<String>,
    ) -> CallRecord {
        let (start_time, duration, terminate, billing_sec) = match self.start_ms {
            Some(start_ms) => {
                let start_time = start_ms / 1000;
                let duration = (end_ms / 1000).saturating_sub(start_time);
                // Billable: connected time without the stretches a party was gone.
                let lost_now = self.lost_since_ms.map_or(0, |t| end_ms.saturating_sub(t));
                let billable_ms = end_ms
                    .saturating_sub(start_ms)
                    .saturating_sub(self.interrupted_ms)
                    .saturating_sub(lost_now);
                (start_time, duration, 16, billable_ms.div_ceil(1000).min(duration))
            }
            None => (0, 0, reason.q850_unconnected(), 0),
        };
        let rel = reason.rel_code();
        CallRecord {
            sid: self.sid.clone().into(),
            from_service_id: self.from_service_id.clone(),
            from_user_id: self.from_user_id.clone(),
            to_service_id: self.to_service_id.clone(),
            to_user_id: self.to_user_id.clone(),
            media_type: self.media_type.clone(),
            setup_time: self.setup_ms / 1000,
            start_time,
            end_time: end_ms / 1000,
            duration,
            srcip: self.srcip.clone(),
            dstip: self.dstip.clone(),
            terminate,
            rel_code: rel.code,
            rel_code_str: rel.name.into(),
            user_rel_code,
            billing_sec,
            rc_idc: self.rc_idc.clone(),
            disconnect_reason: reason.code(),
            releaser_type: source.code(),
            app_svr_data: self.app_data.clone(),
        }
    }
}
