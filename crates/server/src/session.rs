//! One signaling session's protocol, sans IO: the deadline for `hello`, the heartbeat
//! (a session silent past its timeout is closed), the access token's warning and expiry
//! (`token_expiring` a minute before, the session closed once it expired without a
//! `refresh_token`), the per-session message rate (refused messages are answered, a
//! flood is closed), and the frames the core sent, held until the journal has written
//! the step that sent them (see `crate::store::journal`).
//!
//! The WebSocket task in [`crate::signal`] is its shell: it reads frames and the clock,
//! feeds them in, and carries out the [`Action`]s. Tests drive it on simulated time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use switchboard_protocol::{DisconnectReason, ErrorCode, ServerMessage};

use crate::auth::CLOCK_SKEW_SECS;
use crate::clock::Now;
use crate::handles::Frame;
use crate::limit::Bucket;

/// How long a new connection has to send `hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Warn this long before the access token expires.
pub const TOKEN_WARNING_SECS: u64 = 60;
/// Close a session that keeps flooding after this many refused messages in a row.
pub const MAX_REFUSED_IN_A_ROW: u32 = 200;
/// Frames held for the journal past which the session stops taking more from the core
/// (whose queue to it then fills, and the core lets the session go).
pub const MAX_HELD_FRAMES: usize = 4096;
/// Timers further out than this (a token valid for centuries) wait this long instead.
const MAX_TIMER: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Close code for authentication failures and floods (RFC 6455 "policy violation").
pub const CLOSE_POLICY: u16 = 1008;
/// Close code for a session that went silent (RFC 6455 "going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// The limits a session runs under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A session silent this long is closed.
    pub silence: Duration,
    /// Messages per second.
    pub rate: f64,
    /// Their burst.
    pub burst: f64,
}

/// What the shell is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this text frame.
    Send(String),
    /// Close the connection with this code and reason; `why` is for the log.
    Close {
        /// RFC 6455 close code.
        code: u16,
        /// The close frame's reason.
        reason: &'static str,
        /// What the log says.
        why: &'static str,
    },
}

/// What to do with a frame the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// Take it (parse it, answer it or pass it to the core).
    Take,
    /// Refused (the rate): an error is queued; read on.
    Refused,
    /// Refused, and the session is being closed (a flood).
    Closed,
}

/// One session. See the module docs.
#[derive(Debug)]
pub struct Session {
    limits: Limits,
    hello_by: Option<Instant>,
    silent_at: Option<Instant>,
    /// The access token's expiry (epoch seconds), while the session has a token.
    token_exp: Option<u64>,
    warn_at: Option<Instant>,
    expire_at: Option<Instant>,
    bucket: Bucket,
    /// The rate limiter's milliseconds count from here.
    epoch: Instant,
    refused_in_a_row: u32,
    /// Frames from the core waiting for the journal, in order.
    held: VecDeque<Frame>,
    /// The last journal step on disk.
    committed: u64,
    out: VecDeque<Action>,
    /// The core's first frame (`welcome`) went out: from then on the session speaks.
    welcomed: bool,
    closed: bool,
}

impl Session {
    /// A connection opened at `now`: it has [`HELLO_TIMEOUT`] to say `hello`.
    pub fn new(now: Now, limits: Limits) -> Session {
        Session {
            limits,
            hello_by: Some(now.at + HELLO_TIMEOUT),
            silent_at: None,
            token_exp: None,
            warn_at: None,
            expire_at: None,
            bucket: Bucket::new(limits.burst, 0),
            epoch: now.at,
            refused_in_a_row: 0,
            held: VecDeque::new(),
            committed: 0,
            out: VecDeque::new(),
            welcomed: false,
            closed: false,
        }
    }

    /// `hello` was accepted at `now`; `token_exp` is its token's expiry (epoch seconds),
    /// `None` for a cc_param session.
    pub fn authenticated(&mut self, now: Now, token_exp: Option<u64>) {
        self.hello_by = None;
        self.silent_at = Some(now.at + self.limits.silence);
        self.set_token(now, token_exp);
    }

    /// `refresh_token` was accepted at `now`: the new expiry, warned again before it.
    pub fn refreshed(&mut self, now: Now, token_exp: u64) {
        self.set_token(now, Some(token_exp));
    }

    /// The token's expiry, if it has one.
    pub fn token_exp(&self) -> Option<u64> {
        self.token_exp
    }

    fn set_token(&mut self, now: Now, exp: Option<u64>) {
        self.token_exp = exp;
        // Wall-clock expiry, set on the monotonic clock as of now: when the warning and
        // the close are due.
        let in_ms = |epoch_secs: u64| {
            let ms = epoch_secs.saturating_mul(1000).saturating_sub(now.wall_ms);
            now.at + Duration::from_millis(ms).min(MAX_TIMER)
        };
        self.warn_at = exp.map(|e| in_ms(e.saturating_sub(TOKEN_WARNING_SECS)));
        // A session lives no longer than its token (with the clock skew `hello` allows).
        self.expire_at = exp.map(|e| in_ms(e.saturating_add(CLOCK_SKEW_SECS)));
    }

    /// The client sent something at `now` (any frame, a ping included): it is alive.
    pub fn heard(&mut self, now: Now) {
        if self.hello_by.is_none() {
            self.silent_at = Some(now.at + self.limits.silence);
        }
    }

    /// The client sent a message frame at `now` (text or binary): within the rate?
    pub fn message(&mut self, now: Now) -> Inbound {
        self.heard(now);
        let ms = now.at.saturating_duration_since(self.epoch).as_millis() as u64;
        if self.bucket.take(self.limits.rate, self.limits.burst, ms) {
            self.refused_in_a_row = 0;
            return Inbound::Take;
        }
        self.refused_in_a_row += 1;
        if self.refused_in_a_row > MAX_REFUSED_IN_A_ROW {
            self.close(
                CLOSE_POLICY,
                "SERVICE_TOO_MANY_REQUESTS",
                "closing session: flooding past the message rate",
            );
            return Inbound::Closed;
        }
        let m = ServerMessage::Error {
            req: None,
            error: ErrorCode::RateLimited,
            reason: Some(DisconnectReason::ServiceTooManyRequests),
            message: "too many messages on this session".into(),
        };
        self.out.push_back(Action::Send(m.to_json()));
        Inbound::Refused
    }

    /// A frame from the core: sent once the journal wrote its step (at once if it
    /// waits for nothing, or goes stale and may overtake the frames held before it).
    pub fn frame(&mut self, frame: Frame) {
        self.welcomed = true;
        if frame.overtakes || (self.held.is_empty() && frame.after <= self.committed) {
            self.out.push_back(Action::Send(frame.text));
        } else {
            self.held.push_back(frame);
        }
    }

    /// The journal wrote every step up to `step`: the frames waiting for them go.
    pub fn committed(&mut self, step: u64) {
        self.committed = self.committed.max(step);
        while self.held.front().is_some_and(|f| f.after <= self.committed) {
            if let Some(f) = self.held.pop_front() {
                self.out.push_back(Action::Send(f.text));
            }
        }
    }

    /// Frames waiting for the journal.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Whether the core's first frame (`welcome`) came: until then the session says
    /// nothing of its own and reads nothing from the client.
    pub fn welcomed(&self) -> bool {
        self.welcomed
    }

    /// When [`Session::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let token = [self.warn_at, self.expire_at].into_iter().filter(|_| self.welcomed);
        [self.hello_by, self.silent_at].into_iter().chain(token).flatten().min()
    }

    /// Time passed: a missing hello, silence, the token's warning or expiry.
    pub fn handle_timeout(&mut self, now: Now) {
        if self.closed {
            return;
        }
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now.at);
        if due(self.hello_by) {
            return self.close(CLOSE_POLICY, "hello expected", "closing connection: no hello");
        }
        if due(self.silent_at) {
            return self.close(
                CLOSE_GOING_AWAY,
                "heartbeat timeout",
                "session silent past the heartbeat timeout; closing",
            );
        }
        if !self.welcomed {
            return;
        }
        if due(self.expire_at) {
            let m = ServerMessage::Error {
                req: None,
                error: ErrorCode::Auth,
                reason: Some(DisconnectReason::AuthError),
                message: "access token expired; connect again with a fresh token".into(),
            };
            self.out.push_back(Action::Send(m.to_json()));
            return self.close(
                CLOSE_POLICY,
                DisconnectReason::AuthError.name(),
                "closing session: its access token expired without refresh_token",
            );
        }
        if due(self.warn_at) {
            self.warn_at = None;
            if let Some(expires_at) = self.token_exp {
                self.out.push_back(Action::Send(ServerMessage::TokenExpiring { expires_at }.to_json()));
            }
        }
    }

    fn close(&mut self, code: u16, reason: &'static str, why: &'static str) {
        self.closed = true;
        self.out.push_back(Action::Close { code, reason, why });
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALL: u64 = 1_800_000_000_000;

    fn limits() -> Limits {
        Limits { silence: Duration::from_secs(30), rate: 2.0, burst: 4.0 }
    }

    struct T {
        s: Session,
        now: Now,
    }

    impl T {
        fn new() -> T {
            let now = Now { at: Instant::now(), wall_ms: WALL };
            T { s: Session::new(now, limits()), now }
        }

        /// `ms` pass; every due timer runs; what the session asks for.
        fn pass(&mut self, ms: u64) -> Vec<Action> {
            let end = self.now.after(Duration::from_millis(ms));
            while let Some(at) = self.s.poll_timeout().filter(|t| *t <= end.at) {
                self.now = self.now.after(at.saturating_duration_since(self.now.at));
                self.s.handle_timeout(self.now);
            }
            self.now = end;
            self.actions()
        }

        fn actions(&mut self) -> Vec<Action> {
            std::iter::from_fn(|| self.s.poll_action()).collect()
        }
    }

    fn closed(actions: &[Action]) -> Option<u16> {
        actions.iter().find_map(|a| match a {
            Action::Close { code, .. } => Some(*code),
            _ => None,
        })
    }

    fn sent(actions: &[Action]) -> Vec<serde_json::Value> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(t) => serde_json::from_str(t).ok(),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn no_hello_within_ten_seconds_closes_the_connection() {
        let mut t = T::new();
        assert!(t.pass(9_999).is_empty());
        let a = t.pass(1);
        assert_eq!(closed(&a), Some(CLOSE_POLICY));
        assert_eq!(t.s.poll_timeout(), None, "nothing more once closed");
    }

    fn welcome(t: &mut T) {
        t.s.frame(Frame { after: 0, text: "welcome".into(), overtakes: false });
        assert_eq!(t.actions(), [Action::Send("welcome".into())]);
    }

    #[test]
    fn a_silent_session_is_closed_after_its_timeout_and_any_frame_keeps_it_open() {
        let mut t = T::new();
        t.pass(1_000);
        t.s.authenticated(t.now, None);
        welcome(&mut t);
        assert!(t.pass(29_000).is_empty());
        t.s.heard(t.now); // a ping
        assert!(t.pass(29_999).is_empty(), "the ping reset the clock");
        assert_eq!(closed(&t.pass(1)), Some(CLOSE_GOING_AWAY));
    }

    #[test]
    fn the_token_is_warned_of_then_closes_the_session_unless_refreshed() {
        let mut t = T::new();
        let exp = WALL / 1000 + 300;
        t.s.authenticated(t.now, Some(exp));
        welcome(&mut t);
        let keep_alive = |t: &mut T, ms: u64| {
            let mut all = Vec::new();
            for _ in 0..ms / 10_000 {
                all.extend(t.pass(10_000));
                t.s.heard(t.now);
            }
            all
        };
        // Warned 60 s before its expiry, once.
        let a = keep_alive(&mut t, 230_000);
        assert!(sent(&a).is_empty() && closed(&a).is_none());
        let a = keep_alive(&mut t, 10_000);
        assert_eq!(sent(&a), [serde_json::json!({"type":"token_expiring","expires_at":exp})]);
        // Refreshed: warned again before the new expiry, and not closed at the old one.
        t.s.refreshed(t.now, exp + 600);
        let a = keep_alive(&mut t, 600_000);
        assert_eq!(sent(&a).len(), 1, "one warning before the new expiry: {a:?}");
        assert!(closed(&a).is_none());
        // Not refreshed again: closed once expired (with the 30 s of clock skew allowed).
        let a = keep_alive(&mut t, 60_000);
        assert!(closed(&a).is_none(), "{a:?}");
        let a = keep_alive(&mut t, 30_000);
        assert_eq!(closed(&a), Some(CLOSE_POLICY));
        assert_eq!(sent(&a)[0]["reason"]["code"], 1303);
    }

    #[test]
    fn messages_past_the_rate_are_refused_and_a_flood_is_closed() {
        let mut t = T::new();
        t.s.authenticated(t.now, None);
        welcome(&mut t);
        let verdicts: Vec<Inbound> = (0..6).map(|_| t.s.message(t.now)).collect();
        assert_eq!(verdicts[..4], [Inbound::Take; 4], "the burst");
        assert_eq!(verdicts[4..], [Inbound::Refused; 2]);
        let a = t.actions();
        assert!(sent(&a).iter().all(|m| m["error"] == "rate_limited" && m["reason"]["code"] == 1512));
        // Half a second later one more token.
        t.pass(500);
        assert_eq!(t.s.message(t.now), Inbound::Take);
        // A flood: refused up to the limit in a row, then closed.
        let mut last = Inbound::Take;
        for _ in 0..=MAX_REFUSED_IN_A_ROW + 1 {
            last = t.s.message(t.now);
            if last == Inbound::Closed {
                break;
            }
        }
        assert_eq!(last, Inbound::Closed);
        assert_eq!(closed(&t.actions()), Some(CLOSE_POLICY));
    }

    #[test]
    fn frames_wait_for_their_step_in_order_but_levels_overtake() {
        let mut t = T::new();
        t.s.authenticated(t.now, None);
        let f = |after: u64, text: &str, overtakes: bool| Frame { after, text: text.into(), overtakes };
        t.s.frame(f(0, "welcome", false));
        t.s.frame(f(3, "connected", false));
        t.s.frame(f(0, "media_answer", false)); // after `connected`, though it waits for nothing
        t.s.frame(f(0, "levels", true));
        assert_eq!(t.actions(), [Action::Send("welcome".into()), Action::Send("levels".into())]);
        assert_eq!(t.s.held(), 2);
        t.s.committed(2);
        assert!(t.actions().is_empty(), "step 3 not written yet");
        t.s.committed(3);
        assert_eq!(t.actions(), [Action::Send("connected".into()), Action::Send("media_answer".into())]);
        t.s.frame(f(3, "late", false));
        assert_eq!(t.actions(), [Action::Send("late".into())], "its step is already written");
    }
}
