//! What is written down, in one leaf module that the cores (which decide it), the store
//! (which keeps it) and the outbox (which delivers it) all use: the snapshots of live
//! calls and rooms (so their end can be recorded after a crash), the call records, the
//! callbacks queued for the app server, and the [`Entry`] / [`Batch`] a step of the
//! core hands to the journal.

use switchboard_protocol::record::{CallRecord, GcallRecord, GroupCallRecord, NotifyRecord};
use switchboard_protocol::{DisconnectReason, DisconnectSource};

use crate::clock::Millis;
use crate::ids::{Party, Sid};

/// What is known of a live call: enough to answer `GET /v1/calls/{sid}` and to write
/// its record if the server dies under it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveCall {
    /// The call.
    pub sid: Sid,
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
    /// Since when a party has been without a session, if one is now (epoch ms).
    #[serde(default)]
    pub lost_since_ms: Option<Millis>,
    /// The callee device that answered from a cc_param session (the device its
    /// `resume_param` names), so that it can resume the call on another node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callee_device: Option<u64>,
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

    /// The call record if the call ended at `end_ms` for this reason. `billable_ms` is
    /// the connected time without the stretches a party was gone, as the core measured
    /// it on its monotonic clock; without it (a call closed after a crash) it is worked
    /// out from the recorded wall-clock times.
    pub fn record(
        &self,
        end_ms: Millis,
        reason: DisconnectReason,
        source: DisconnectSource,
        user_rel_code: Option<String>,
        billable_ms: Option<Millis>,
    ) -> CallRecord {
        let (start_time, duration, terminate, billing_sec) = match self.start_ms {
            Some(start_ms) => {
                let start_time = start_ms / 1000;
                let duration = (end_ms / 1000).saturating_sub(start_time);
                let billable_ms = billable_ms.unwrap_or_else(|| {
                    let lost_now = self.lost_since_ms.map_or(0, |t| end_ms.saturating_sub(t));
                    end_ms
                        .saturating_sub(start_ms)
                        .saturating_sub(self.interrupted_ms)
                        .saturating_sub(lost_now)
                });
                (start_time, duration, 16, billable_ms.div_ceil(1000).min(duration))
            }
            None => (0, 0, reason.q850_unconnected(), 0),
        };
        let rel = reason.rel_code();
        CallRecord {
            sid: self.sid.clone(),
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

/// What is kept of a live room (with an on_gcall_evt_cb to serve): enough to tell the
/// app server that it ended, participant by participant, after a crash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveRoom {
    /// The room session.
    pub sid: Sid,
    /// The room's service.
    pub service_id: String,
    /// The room ID.
    pub room_id: String,
    /// `A` or `V`.
    pub media_type: String,
    /// The host (first joiner).
    pub host: Party,
    /// Created, epoch ms.
    pub setup_ms: Millis,
    /// Callbacks sent so far (the next is number `callbacks + 1`).
    pub callbacks: u64,
    /// Who is in it.
    pub participants: Vec<LiveParticipant>,
}

/// A participant of a [`LiveRoom`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LiveParticipant {
    /// Who.
    pub party: Party,
    /// Joined, epoch ms.
    pub joined_ms: Millis,
    /// Device kind.
    pub ue_type: String,
    /// Display name.
    pub display_name: Option<String>,
    /// App server data.
    pub app_data: Option<String>,
}

impl LiveRoom {
    /// The callbacks that close the room at `end_ms` for `reason`: a `C`/`D` for each
    /// participant but the last, an `E`/`D` for the last one, numbered after the room's
    /// last callback.
    pub fn closing(
        &self,
        end_ms: Millis,
        reason: DisconnectReason,
        source: DisconnectSource,
    ) -> Vec<(u64, GcallRecord)> {
        let rel = reason.rel_code();
        let n = self.participants.len();
        self.participants
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let online = (n - i - 1) as u32;
                let record = GcallRecord {
                    sid: self.sid.clone(),
                    svc_id: self.service_id.clone(),
                    id: self.room_id.clone(),
                    user_svc_id: p.party.service_id.clone(),
                    user_id: p.party.user_id.clone(),
                    host_svc_id: self.host.service_id.clone(),
                    host_id: self.host.user_id.clone(),
                    sc: if online == 0 { 'E' } else { 'C' },
                    setup_time: self.setup_ms / 1000,
                    start_time: p.joined_ms / 1000,
                    end_time: end_ms.max(p.joined_ms) / 1000,
                    online,
                    media_type: self.media_type.clone(),
                    msc: 'D',
                    ts: end_ms,
                    rel_code: rel.code,
                    rel_code_str: rel.name.into(),
                    ue_type: p.ue_type.clone(),
                    display_name: p.display_name.clone(),
                    disconnect_reason: reason.code(),
                    releaser_type: u16::from(source.code()),
                    app_svr_data: p.app_data.clone(),
                };
                (self.callbacks + 1 + i as u64, record)
            })
            .collect()
    }
}

/// Which callback URL a callback goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Kind)]
pub enum CallbackKind {
    /// notify_cb.
    Notify,
    /// on_call_evt_cb.
    Call,
    /// on_gcall_evt_cb.
    Gcall,
    /// on_group_call_evt_cb.
    GroupCall,
}

impl CallbackKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackKind::Notify => "notify",
            CallbackKind::Call => "call",
            CallbackKind::Gcall => "gcall",
            CallbackKind::GroupCall => "group_call",
        }
    }

    /// The kind with this stored name.
    pub fn parse(s: &str) -> Option<CallbackKind> {
        match s {
            "notify" => Some(CallbackKind::Notify),
            "call" => Some(CallbackKind::Call),
            "gcall" => Some(CallbackKind::Gcall),
            "group_call" => Some(CallbackKind::GroupCall),
            _ => None,
        }
    }
}

/// A callback as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Callback)]
pub struct CallbackRow {
    /// Row ID (the REST API's `{id}`).
    pub id: i64,
    /// `X-Switchboard-Id`: the same on every attempt.
    pub cb_id: String,
    /// The service it goes to.
    pub service_id: String,
    /// Which callback URL.
    pub kind: CallbackKind,
    /// Ordering key: callbacks with the same key are delivered in order (the sid).
    pub key: String,
    /// The query string, exactly as sent.
    pub query: String,
    /// `pending`, `delivered`, `failed` (gave up) or `dropped` (no longer wanted).
    pub state: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Queued at, epoch ms.
    pub created_ms: u64,
    /// Next attempt, epoch ms.
    pub next_attempt_ms: u64,
    /// Delivered at, epoch ms.
    pub delivered_ms: Option<u64>,
    /// notify_cb only: give up (PUSH_ERROR) after this, epoch ms.
    pub deadline_ms: Option<u64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// A callback decided by the core, to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCallback {
    /// `X-Switchboard-Id`.
    pub cb_id: String,
    /// The service.
    pub service_id: String,
    /// Which URL.
    pub kind: CallbackKind,
    /// Ordering key.
    pub key: String,
    /// Query string.
    pub query: String,
    /// notify_cb deadline, epoch ms.
    pub deadline_ms: Option<u64>,
}

impl NewCallback {
    /// A room's callback number `seq` (they are delivered in order per room).
    pub fn gcall(service_id: String, seq: u64, record: &GcallRecord) -> NewCallback {
        NewCallback {
            cb_id: format!("gcall-{}-{seq}", record.sid),
            key: record.sid.to_string(),
            kind: CallbackKind::Gcall,
            query: record.to_query(),
            deadline_ms: None,
            service_id,
        }
    }

    /// The push of a new call, given up at `deadline_ms`. A group call pushes each
    /// invitee under a key of its own (`sid:user`): one slow device does not hold up
    /// the others, and the outcome names the invitee.
    pub fn notify(service_id: String, record: &NotifyRecord, deadline_ms: Millis) -> NewCallback {
        let (cb_id, key) = if record.sid.is_room_shaped() {
            let key = format!("{}:{}", record.sid, record.to_user_id);
            (format!("notify-{}-{}", record.sid, record.to_user_id), key)
        } else {
            (format!("notify-{}", record.sid), record.sid.to_string())
        };
        NewCallback {
            cb_id,
            key,
            kind: CallbackKind::Notify,
            query: record.to_query(),
            deadline_ms: Some(deadline_ms),
            service_id,
        }
    }

    /// The record of an ended group call.
    pub fn group_call(service_id: String, record: &GroupCallRecord) -> NewCallback {
        NewCallback {
            cb_id: format!("group-call-{}", record.call_id),
            key: record.call_id.to_string(),
            kind: CallbackKind::GroupCall,
            query: record.to_query(),
            deadline_ms: None,
            service_id,
        }
    }

    /// The record of an ended call.
    pub fn call(service_id: String, record: &CallRecord) -> NewCallback {
        NewCallback {
            cb_id: format!("call-{}", record.sid),
            key: record.sid.to_string(),
            kind: CallbackKind::Call,
            query: record.to_query(),
            deadline_ms: None,
            service_id,
        }
    }
}

/// One thing a step of the core decided to write down. The journal writes a step's
/// entries in one transaction before anything the step said is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A live call changed: keep its snapshot.
    LiveCall(LiveCall),
    /// A call ended: keep its record, its snapshot goes, and (`deliver`) queue it for
    /// on_call_evt_cb.
    CallEnded {
        /// The caller's service.
        service_id: String,
        /// The record.
        record: CallRecord,
        /// Whether the service takes on_call_evt_cb.
        deliver: bool,
    },
    /// A call started ringing: queue the push to notify_cb.
    Notify {
        /// The caller's service.
        service_id: String,
        /// The record.
        record: NotifyRecord,
        /// Given up (PUSH_ERROR) after this, epoch ms.
        deadline_ms: Millis,
    },
    /// A live room changed: keep its snapshot.
    LiveRoom(LiveRoom),
    /// A room ended: its snapshot goes.
    RoomGone(Sid),
    /// A live group call changed: keep its record as it would be if the call ended now
    /// (a restart after a crash completes it).
    LiveGroupCall {
        /// The call's service.
        service_id: String,
        /// The record so far.
        record: GroupCallRecord,
    },
    /// A group call ended: keep its record (its snapshot goes), and (`deliver`) queue it for
    /// on_group_call_evt_cb.
    GroupCallEnded {
        /// The call's service.
        service_id: String,
        /// The record.
        record: GroupCallRecord,
        /// Whether the service takes on_group_call_evt_cb.
        deliver: bool,
    },
    /// A room changed: queue on_gcall_evt_cb number `seq` of the room.
    Gcall {
        /// The room's service.
        service_id: String,
        /// The room's callback number (1, 2, …).
        seq: u64,
        /// The record.
        record: GcallRecord,
    },
}

/// What one step of the core decided, as the journal writes it.
#[derive(Debug, Default)]
pub struct Batch {
    /// Live-call snapshots to keep, by caller service.
    pub live: Vec<(String, LiveCall)>,
    /// Ended calls' records, by caller service (their snapshots go).
    pub records: Vec<(String, CallRecord)>,
    /// Ended group calls' records, by service (their snapshots go).
    pub group_records: Vec<(String, GroupCallRecord)>,
    /// Live group calls' snapshots, by service (written before `group_records`).
    pub live_group_calls: Vec<(String, GroupCallRecord)>,
    /// Callbacks to queue.
    pub callbacks: Vec<NewCallback>,
    /// Live-room snapshots to keep (written before `rooms_gone`).
    pub live_rooms: Vec<LiveRoom>,
    /// Rooms that ended: their snapshots go.
    pub rooms_gone: Vec<Sid>,
}

impl Batch {
    /// Adds what `entry` says is to be written.
    pub fn push(&mut self, entry: Entry) {
        match entry {
            Entry::LiveCall(live) => self.live.push((live.from_service_id.clone(), live)),
            Entry::CallEnded { service_id, record, deliver } => self.add_record(service_id, record, deliver),
            Entry::Notify { service_id, record, deadline_ms } => {
                self.callbacks.push(NewCallback::notify(service_id, &record, deadline_ms))
            }
            Entry::LiveRoom(room) => self.live_rooms.push(room),
            Entry::RoomGone(sid) => self.rooms_gone.push(sid),
            Entry::Gcall { service_id, seq, record } => {
                self.callbacks.push(NewCallback::gcall(service_id, seq, &record))
            }
            Entry::LiveGroupCall { service_id, record } => self.live_group_calls.push((service_id, record)),
            Entry::GroupCallEnded { service_id, record, deliver } => {
                self.add_group_record(service_id, record, deliver)
            }
        }
    }

    /// Adds an ended group call's record, and its on_group_call_evt_cb when `deliver`.
    pub fn add_group_record(&mut self, service_id: String, record: GroupCallRecord, deliver: bool) {
        if deliver {
            self.callbacks.push(NewCallback::group_call(service_id.clone(), &record));
        }
        self.group_records.push((service_id, record));
    }

    /// Adds an ended call's record, and its on_call_evt_cb when `deliver`.
    pub fn add_record(&mut self, service_id: String, record: CallRecord, deliver: bool) {
        if deliver {
            self.callbacks.push(NewCallback::call(service_id.clone(), &record));
        }
        self.records.push((service_id, record));
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
            && self.records.is_empty()
            && self.group_records.is_empty()
            && self.live_group_calls.is_empty()
            && self.callbacks.is_empty()
            && self.live_rooms.is_empty()
            && self.rooms_gone.is_empty()
    }
}
