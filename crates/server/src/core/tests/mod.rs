//! The core on simulated time, through its one Input/Output contract: every
//! server-decided path of calls and rooms, their timers, and the clocks they run on.
//! No sleeps.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use switchboard_protocol::{ClientMessage, ServerMessage};

use super::{ClientInfo, Core, Input, Output, ServiceRules, SessionAuth, Settings};
use crate::auth::CcKey;
use crate::clock::{Millis, Now};
use crate::ids::{CountingIds, Party, SessionId};

mod adopt;
mod calls;
mod clock;
mod devices;
mod engine;
mod engine_one_to_one;
mod rooms;

/// Wall-clock time at the start of every test.
pub(super) const T0: Millis = 1_700_000_000_000;

pub(super) fn rules(ring_s: u64, max_s: u64, has_notify: bool) -> ServiceRules {
    ServiceRules {
        ring_timeout_ms: ring_s * 1000,
        max_call_ms: max_s * 1000,
        rc_idc: "JP".into(),
        has_notify,
        has_call_cb: true,
        has_gcall_cb: true,
        has_group_call_cb: true,
        max_room_participants: 50,
        max_room_speakers: 6,
        alone_kick_out_ms: 300_000,
    }
}

pub(super) fn settings(calls_per_sec: f64, burst: f64) -> Settings {
    Settings {
        reconnect_grace_ms: 10_000,
        calls_per_user_per_sec: calls_per_sec,
        calls_per_user_burst: burst,
        notify_timeout_ms: 5_000,
    }
}

/// A core of one service, `svc`, and its simulated clocks.
pub(super) struct H {
    pub core: Core,
    pub now: Now,
}

impl H {
    pub fn new(r: ServiceRules) -> Self {
        Self::with(settings(2.0, 10.0), r)
    }

    pub fn with(settings: Settings, r: ServiceRules) -> Self {
        let now = Now { at: Instant::now(), wall_ms: T0 };
        let services = HashMap::from([("svc".to_string(), r)]);
        let key = CcKey::new(b"test-key-test-key-test-key-12345".to_vec());
        Self { core: Core::new(now, settings, services, key, Box::new(CountingIds::default())), now }
    }

    pub fn input(&mut self, input: Input) {
        self.core.handle(self.now, input);
    }

    pub fn open(&mut self, session: impl Into<SessionId>, user: &str) {
        self.open_as(session, user, false);
    }

    /// A token session of `user`; `engine`: a call-engine session (with multi-device,
    /// so that several sessions of a user in a test stay signed in).
    pub fn open_as(&mut self, session: impl Into<SessionId>, user: &str, engine: bool) {
        let client = ClientInfo { engine, multi_device: true, ..ClientInfo::default() };
        self.open_with(session, user, client);
    }

    /// A token session of `user` that says `client` of itself.
    pub fn open_with(&mut self, session: impl Into<SessionId>, user: &str, client: ClientInfo) {
        let session: SessionId = session.into();
        let ip = format!("10.0.0.{session}");
        let party = Party::new("svc", user);
        let client = ClientInfo { ue_type: "BROWSER".into(), ..client };
        self.input(Input::Open { session, party, auth: SessionAuth::Token, ip, client });
    }

    pub fn closed(&mut self, session: impl Into<SessionId>) {
        self.input(Input::Closed { session: session.into() });
    }

    pub fn msg(&mut self, session: impl Into<SessionId>, json: &str) {
        let session: SessionId = session.into();
        let msg = ClientMessage::parse(json).expect("test message parses");
        self.input(Input::Message { session, msg });
    }

    pub fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.core.poll_output()).collect()
    }

    /// Both clocks move on by `ms`; no timer runs.
    pub fn tick(&mut self, ms: u64) {
        self.now = self.now.after(Duration::from_millis(ms));
    }

    /// Both clocks move on by `ms`, running every timer due on the way.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now.after(Duration::from_millis(ms));
        while let Some(at) = self.core.poll_timeout().filter(|at| *at <= end.at) {
            let step = at.saturating_duration_since(self.now.at);
            self.now = self.now.after(step);
            self.core.handle_timeout(self.now);
        }
        self.now = end;
    }
}

/// What `session` was sent in `out`.
pub(super) fn sent(out: &[Output], session: impl Into<SessionId>) -> Vec<ServerMessage> {
    let session: SessionId = session.into();
    out.iter()
        .filter_map(|o| match o {
            Output::Send(s, m) if *s == session => Some(m.clone()),
            _ => None,
        })
        .collect()
}
