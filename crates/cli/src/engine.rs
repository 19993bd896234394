//! `switchboard engine`: the call-engine face (seed 004) on the command line. Signs in
//! as an engine session, calls one user or several (`--calls bob,carol`) or answers the
//! first call that rings (`--on-call accept|reject|ignore|none`), and prints one JSON
//! line per event with seed 004's names (`{"event":"onUserReject","callId":"…",
//! "userId":"carol"}`) plus the `media` lines of the other commands; exits after
//! `onCallEnd`, `onCallCancelled` or `onCallNotConnected` of its call.

use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::json;
use switchboard_client::{CallEndReason, Calls, Client, EngineEvent, Entered, Event, Sid};

use crate::clients::{print, print_error, print_session, start_tone, Outcome};
use crate::interrupts::interrupted;

/// What to do with the first call that rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnCall {
    /// Take it.
    Accept,
    /// Decline it (the caller hears onUserReject).
    Reject,
    /// Let it go as busy (the caller hears onUserLineBusy).
    Ignore,
    /// Nothing: let it ring out.
    None,
}

#[derive(clap::Args)]
pub struct EngineArgs {
    #[command(flatten)]
    login: crate::clients::Login,
    /// Call these users (comma-separated): one is a 1-to-1 call, several a group call.
    #[arg(long, alias = "call", value_delimiter = ',')]
    calls: Vec<String>,
    /// audio or video.
    #[arg(long, default_value = "audio")]
    media: String,
    /// Each invitation's ring time, seconds (default 30).
    #[arg(long)]
    timeout: Option<u32>,
    /// App data for the invitees and the records.
    #[arg(long)]
    user_data: Option<String>,
    /// The group call's room number.
    #[arg(long)]
    room_id: Option<u32>,
    /// Wait for a call and do this with the first one that rings.
    #[arg(long, alias = "on-ring", value_enum)]
    on_call: Option<OnCall>,
    /// With `--on-call accept`: wait this many seconds before accepting.
    #[arg(long)]
    accept_after: Option<f64>,
    /// Invite these users (comma-separated) into the call `--invite-after` seconds after
    /// it began.
    #[arg(long, value_delimiter = ',')]
    invite: Vec<String>,
    /// See `--invite` (default 1).
    #[arg(long, default_value = "1")]
    invite_after: f64,
    /// Stay signed in beside the user's other devices (without it, this login signs
    /// them out).
    #[arg(long)]
    multi_device: bool,
    /// Once in the call, send a sine tone of this frequency (Opus) and print a `media`
    /// line each second (needs the `tone` build feature).
    #[arg(long)]
    tone: Option<f64>,
    /// Hang up this many seconds after the call began.
    #[arg(long)]
    hangup_after: Option<f64>,
}

/// One JSON line for an event: a call-engine event with seed 004's name as `event`
/// and the call's ID as `callId`; anything else as the other commands print it.
fn print_event(ev: &Event) {
    let line = match ev {
        Event::Call { call_id, call_event } => {
            let mut v = serde_json::to_value(call_event).unwrap_or_else(|_| json!({}));
            if let Some(o) = v.as_object_mut() {
                let name = o.remove("name").unwrap_or_else(|| json!("unknown"));
                o.insert("event".into(), name);
                o.insert("callId".into(), json!(call_id));
            }
            v
        }
        other => serde_json::to_value(other).unwrap_or_else(|_| json!({"event": "unprintable"})),
    };
    print(line);
}

fn at(secs: f64) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs_f64(secs.max(0.0))
}

async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

pub async fn engine(a: EngineArgs) -> Result<Outcome> {
    if a.calls.is_empty() == a.on_call.is_none() {
        bail!("give either --calls <users> or --on-call accept|reject|ignore|none");
    }
    let l = &a.login;
    let (client, mut events) =
        match Client::connect_engine(&l.server, &l.service, &l.user, &l.token, a.multi_device).await {
            Ok((c, e)) => (c.with_ice_transport(l.ice_transport.into()), e),
            Err(e) => {
                print_error(&e);
                bail!("could not connect: {e}");
            }
        };
    print_session(&client);
    let video = a.media == "video";
    let mut current: Option<Sid> = None;
    let mut media = None;
    if !a.calls.is_empty() {
        let calls = Calls {
            user_ids: a.calls.clone(),
            media_type: a.media.clone(),
            timeout_secs: a.timeout,
            user_data: a.user_data.clone(),
            room_id: a.room_id,
            group_id: None,
        };
        match client.calls(calls).await {
            Ok(entered) => {
                print(json!({"event": "calls", "callId": entered.call_id(), "entered": entered}));
                // A group call's media is its room's, from the start; a 1-to-1 call's
                // once it connects.
                if let Entered::Group(room) = &entered {
                    media = start_tone(&client, &room.sid, a.tone, video);
                }
                current = Some(entered.call_id().clone());
            }
            Err(e) => {
                print_error(&e);
                return Ok(Outcome::Otherwise);
            }
        }
    }
    let (mut hangup_at, mut invite_at, mut accept_at) = (None, None, None);
    let mut ringing: Option<Sid> = None;
    let mut stopping = false;
    let outcome = loop {
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { bail!("event stream closed") };
                print_event(&ev);
                let Event::Call { call_id, call_event } = ev else {
                    match ev {
                        Event::Connected { sid, .. } if current.as_ref() == Some(&sid) && media.is_none() => {
                            media = start_tone(&client, &sid, a.tone, video);
                        }
                        Event::Closed { .. } => bail!("connection closed before the call ended"),
                        _ => {}
                    }
                    continue;
                };
                let mine = call_id.is_some() && call_id == current;
                match call_event {
                    EngineEvent::CallReceived { .. } if current.is_none() && ringing.is_none() => {
                        let Some(id) = call_id else { continue };
                        match a.on_call {
                            Some(OnCall::Accept) => {
                                ringing = Some(id);
                                accept_at = Some(at(a.accept_after.unwrap_or(0.0)));
                            }
                            Some(how @ (OnCall::Reject | OnCall::Ignore)) => {
                                let done = if how == OnCall::Reject { client.reject(&id).await } else { client.ignore(&id).await };
                                if let Err(e) = done {
                                    print_error(&e);
                                }
                                current = Some(id);
                            }
                            _ => current = Some(id),
                        }
                    }
                    EngineEvent::CallBegin { .. } if mine => {
                        hangup_at = a.hangup_after.map(at);
                        invite_at = (!a.invite.is_empty()).then(|| at(a.invite_after));
                    }
                    EngineEvent::CallEnd { reason, .. } if mine => {
                        break if reason == CallEndReason::Hangup { Outcome::AsMeant } else { Outcome::Otherwise };
                    }
                    EngineEvent::CallCancelled { .. } if mine || (call_id.is_some() && call_id == ringing) => {
                        // Over before it began: as meant when this side ended it.
                        let by_me = stopping || matches!(a.on_call, Some(OnCall::Reject | OnCall::Ignore));
                        break if by_me { Outcome::AsMeant } else { Outcome::Otherwise };
                    }
                    EngineEvent::KickedOffline {} => break Outcome::Otherwise,
                    _ => {}
                }
            }
            _ = until(accept_at) => {
                accept_at = None;
                if let Some(id) = ringing.take() {
                    match client.accept(&id).await {
                        Ok(entered) => {
                            print(json!({"event": "accepted", "callId": id, "entered": entered}));
                            media = start_tone(&client, &id, a.tone, video);
                            current = Some(id);
                        }
                        Err(e) => print_error(&e),
                    }
                }
            }
            _ = until(invite_at) => {
                invite_at = None;
                if let Some(id) = &current {
                    if let Err(e) = client.invite_user(id, a.invite.clone()).await {
                        print_error(&e);
                    }
                }
            }
            _ = until(hangup_at) => {
                hangup_at = None;
                if let Some(id) = &current {
                    if let Err(e) = client.hangup(id).await {
                        print_error(&e);
                    }
                }
            }
            // Ctrl-C hangs up as the user means it: a call that rings is cancelled (or
            // declined), one that began is left.
            _ = interrupted(), if !stopping => {
                stopping = true;
                hangup_at = None;
                match current.as_ref().or(ringing.as_ref()) {
                    Some(id) => {
                        if let Err(e) = client.hangup(id).await {
                            print_error(&e);
                        }
                    }
                    None => break Outcome::AsMeant,
                }
            }
        }
    };
    if let Some(m) = media {
        m.abort();
    }
    client.close().await;
    Ok(outcome)
}
