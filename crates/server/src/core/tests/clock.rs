//! Timers run on the monotonic clock: a step of the wall clock (NTP correcting it, an
//! operator setting it) fires none of them early or late; the wall clock only goes into
//! what is recorded.

use switchboard_protocol::DisconnectReason as R;
use switchboard_protocol::ServerMessage;

use super::{rules, sent, H, T0};
use crate::core::Output;
use crate::records::Entry;

const HOUR_MS: u64 = 3_600_000;

fn disconnect(out: &[Output], session: u64) -> Option<R> {
    sent(out, session).into_iter().find_map(|m| match m {
        ServerMessage::Disconnected { reason, .. } => Some(reason),
        _ => None,
    })
}

fn record_of(out: &[Output]) -> Option<switchboard_protocol::record::CallRecord> {
    out.iter().find_map(|o| match o {
        Output::Journal(Entry::CallEnded { record, .. }) => Some(record.clone()),
        _ => None,
    })
}

impl H {
    /// The wall clock jumps by `ms` (forwards, or backwards when negative); the
    /// monotonic clock does not move.
    fn step_wall(&mut self, ms: i64) {
        self.now.wall_ms = self.now.wall_ms.saturating_add_signed(ms);
    }
}

#[test]
fn a_wall_clock_step_of_an_hour_fires_no_timer_early() {
    let mut h = H::new(rules(60, 120, false));
    h.open(1, "alice");
    h.open(2, "bob");
    h.msg(1, r#"{"type":"make_call","to_user_id":"bob","media_type":"audio"}"#);
    h.drain();
    let ring_deadline = h.core.poll_timeout().expect("the ring timer");

    // One second in, the wall clock jumps an hour ahead; the next input comes at the
    // new wall time. The ring timer (60 s) stays where it was.
    h.tick(1_000);
    h.step_wall(HOUR_MS as i64);
    h.open(3, "carol");
    assert_eq!(h.core.poll_timeout(), Some(ring_deadline));
    h.advance(58_999);
    assert!(disconnect(&h.drain(), 1).is_none(), "rang 59 s of its 60: not over");
    h.advance(1);
    let out = h.drain();
    assert_eq!(disconnect(&out, 1), Some(R::NoAnswer));
    // The record says what the wall clock said: set up at T0, ended after the step.
    let r = record_of(&out).expect("a record");
    assert_eq!((r.setup_time, r.end_time), (T0 / 1000, (T0 + HOUR_MS + 60_000) / 1000));
}

#[test]
fn grace_and_maximum_time_run_on_the_monotonic_clock_and_billing_with_them() {
    let mut h = H::new(rules(60, 120, false));
    h.open(1, "alice");
    h.open(2, "bob");
    h.msg(1, r#"{"type":"make_call","to_user_id":"bob","media_type":"audio"}"#);
    let out = h.drain();
    let (sid, cc) = sent(&out, 2)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::IncomingCall { sid, cc_param, .. } => Some((sid, cc_param)),
            _ => None,
        })
        .expect("bob rings");
    h.msg(2, &format!(r#"{{"type":"verify_call","cc_param":"{cc}"}}"#));
    h.msg(2, &format!(r#"{{"type":"accept_call","sid":"{sid}"}}"#));
    h.drain();

    // Bob's connection drops; the wall clock jumps back an hour: his reconnect grace
    // (10 s) still runs out 10 s later, not an hour later.
    h.tick(30_000);
    h.closed(2);
    h.step_wall(-(HOUR_MS as i64));
    h.advance(9_000);
    assert!(disconnect(&h.drain(), 1).is_none());
    h.open(4, "bob");
    h.msg(4, &format!(r#"{{"type":"resume","sid":"{sid}"}}"#));
    h.drain();
    // And a jump forward does not bring the maximum call time (120 s) early.
    h.step_wall(2 * HOUR_MS as i64);
    h.advance(80_999);
    assert!(disconnect(&h.drain(), 1).is_none(), "connected 119.999 s of its 120");
    h.advance(1);
    let out = h.drain();
    assert_eq!(disconnect(&out, 1), Some(R::MaxCallTimeExceeded));
    // Billed: 120 s connected, less the 9 s bob was gone, whatever the wall clock did.
    let r = record_of(&out).expect("a record");
    assert_eq!(r.billing_sec, 111, "{r:?}");
}

#[test]
fn a_room_alone_timer_ignores_wall_clock_steps() {
    let mut h = H::new(rules(60, 0, false));
    h.open(1, "ann");
    h.msg(1, r#"{"type":"join_room","room_id":"r","media_type":"audio"}"#);
    h.drain();
    // Alone kick-out after 300 s. The wall clock jumps a day ahead at once.
    h.step_wall(24 * HOUR_MS as i64);
    h.advance(299_999);
    assert!(disconnect(&h.drain(), 1).is_none());
    h.advance(1);
    assert_eq!(disconnect(&h.drain(), 1), Some(R::AloneKickOut));
}
