//! `switchboard engine`: the call-engine face (seed 004) on the command line. Signs in
//! as an engine session, calls one user or several (`--call bob,carol`) or answers the
//! first call that rings (`--on-ring accept|reject|ignore`), and prints one JSON line
//! per event (`{"event":"call","call_id":…,"name":"onUserJoin","userId":…}`); exits
//! when the call is over for this user.

use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::json;
use switchboard_client::{CallEndReason, Calls, Client, EngineEvent, Entered, Event, Sid};

use crate::clients::{interrupted, print, print_error, print_session, start_tone, Outcome};

/// What to do with the first call that rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnRing {
    /// Take it.
    Accept,
    /// Decline it (the caller hears onUserReject).
    Reject,
    /// Let it go as busy (the caller hears onUserLineBusy).
    Ignore,
}

#[derive(clap::Args)]
pub struct EngineArgs {
    #[command(flatten)]
    login: crate::clients::Login,
    /// Call these users (comma-separated): one is a 1-to-1 call, several a group call.
    #[arg(long, value_delimiter = ',')]
    call: Vec<String>,
    /// audio or video.
    #[arg(long, default_value = "audio")]
    media: String,
    /// Wait for a call and do this with the first one that rings.
    #[arg(long, value_enum)]
    on_ring: Option<OnRing>,
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

pub async fn engine(a: EngineArgs) -> Result<Outcome> {
    if a.call.is_empty() == a.on_ring.is_none() {
        bail!("give either --call <users> or --on-ring accept|reject|ignore");
    }
    let l = &a.login;
    let (client, mut events) =
        match Client::connect_engine(&l.server, &l.service, &l.user, &l.token, a.multi_device).await {
            Ok(c) => c,
            Err(e) => {
                print_error(&e);
                bail!("could not connect: {e}");
            }
        };
    print_session(&client);
    let video = a.media == "video";
    let mut current: Option<Sid> = None;
    let mut media = None;
    if !a.call.is_empty() {
        let calls = Calls { media_type: a.media.clone(), ..Calls::audio(a.call.clone()) };
        match client.calls(calls).await {
            Ok(entered) => {
                print(json!({"event": "calls", "entered": entered}));
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
    let mut hangup_at: Option<tokio::time::Instant> = None;
    let mut stopping = false;
    let outcome = loop {
        let sleep = async {
            match hangup_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { bail!("event stream closed") };
                print(serde_json::to_value(&ev).unwrap_or_else(|_| json!({"event": "unprintable"})));
                match ev {
                    Event::Connected { sid, .. } if current.as_ref() == Some(&sid) && media.is_none() => {
                        media = start_tone(&client, &sid, a.tone, video);
                    }
                    Event::Call { call_id: Some(id), call_event: EngineEvent::CallReceived { .. } } if current.is_none() => {
                        match a.on_ring {
                            Some(OnRing::Accept) => match client.accept(&id).await {
                                Ok(entered) => {
                                    print(json!({"event": "accepted", "entered": entered}));
                                    media = start_tone(&client, &id, a.tone, video);
                                    current = Some(id);
                                }
                                Err(e) => print_error(&e),
                            },
                            Some(how) => {
                                let done = if how == OnRing::Reject { client.reject(&id).await } else { client.ignore(&id).await };
                                if let Err(e) = done {
                                    print_error(&e);
                                }
                                break Outcome::AsMeant;
                            }
                            None => {}
                        }
                    }
                    Event::Call { call_id, call_event: EngineEvent::CallBegin { .. } } if call_id == current => {
                        hangup_at = a.hangup_after.map(|h| tokio::time::Instant::now() + Duration::from_secs_f64(h.max(0.0)));
                    }
                    Event::Call { call_id, call_event: EngineEvent::CallEnd { reason, .. } } if call_id == current => {
                        break if reason == CallEndReason::Hangup { Outcome::AsMeant } else { Outcome::Otherwise };
                    }
                    Event::Call { call_id, call_event: EngineEvent::CallNotConnected { reason, .. } } if call_id == current => {
                        break if reason == CallEndReason::Canceled && stopping { Outcome::AsMeant } else { Outcome::Otherwise };
                    }
                    Event::Call { call_event: EngineEvent::KickedOffline {}, .. } => break Outcome::Otherwise,
                    Event::Closed { .. } => bail!("connection closed before the call ended"),
                    _ => {}
                }
            }
            _ = sleep => {
                hangup_at = None;
                if let Some(id) = &current {
                    if let Err(e) = client.hangup(id).await {
                        print_error(&e);
                    }
                }
            }
            // Ctrl-C leaves as the user means it: a call that rings is cancelled, one
            // that began is left.
            _ = interrupted(), if !stopping => {
                stopping = true;
                hangup_at = None;
                match &current {
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
