//! `switchboard join`: a room participant on the command line, one JSON line per event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::json;
use switchboard_client::{Client, ClientError, Event, JoinConference, Sid};

use crate::clients::{print, print_error, Outcome};
use crate::interrupts::interrupted;

#[derive(clap::Args)]
pub struct JoinArgs {
    #[command(flatten)]
    login: crate::clients::Login,
    /// The room ID.
    #[arg(long)]
    room: String,
    /// The room's service (default: mine).
    #[arg(long)]
    room_service: Option<String>,
    /// audio or video.
    #[arg(long, default_value = "audio")]
    media: String,
    /// My name as the others see it.
    #[arg(long)]
    display_name: Option<String>,
    /// App server data, echoed in on_gcall_evt_cb.
    #[arg(long)]
    app_data: Option<String>,
    /// Once in, send a sine tone of this frequency (Opus) and print a `media` line each
    /// second with, per peer, the packets received and the dominant frequency decoded
    /// (needs the `tone` build feature).
    #[arg(long)]
    tone: Option<f64>,
    /// Leave this many seconds after joining.
    #[arg(long)]
    leave_after: Option<f64>,
}

/// Which user each media line of the room connection carries (from `media_lines`).
type LineOwners = Arc<Mutex<HashMap<String, String>>>;

fn print_room_event(ev: &Event) {
    let line = match ev {
        Event::PeerListUpdated { sid, added, removed, total } => json!({
            "event": "peer_list_updated", "sid": sid, "added": added, "removed": removed, "total": total,
        }),
        Event::PeerMediaState { sid, user_id, mic_muted, video_enabled, .. } => {
            let user = user_id.clone().unwrap_or_default();
            if let Some(m) = mic_muted {
                let name = if *m { "peers_mic_muted" } else { "peers_mic_unmuted" };
                print(json!({"event": name, "sid": sid, "peers": [user]}));
            }
            match video_enabled {
                Some(v) => {
                    json!({"event": "peers_video_updated", "sid": sid, "peers": [user], "video_enabled": v})
                }
                None => return,
            }
        }
        Event::MediaLines { .. } => return,
        Event::AudioLevels { sid, levels } => json!({"event": "audio_level", "sid": sid, "levels": levels}),
        other => serde_json::to_value(other).unwrap_or_else(|_| json!({"event": "unprintable"})),
    };
    print(line);
}

pub async fn join(a: JoinArgs) -> Result<Outcome> {
    let (client, mut events) = crate::clients::connect_with_token(&a.login).await?;
    let video = a.media == "video";
    let p = JoinConference {
        room_id: a.room,
        room_service_id: a.room_service,
        media_type: a.media,
        display_name: a.display_name,
        app_data: a.app_data,
        mic_on: true,
        camera_on: true,
    };
    let joined = match client.join_conference(p).await {
        Ok(j) => j,
        Err(e) => {
            print_error(&e);
            // Refused with a disconnect reason (ROOM_IS_FULL, …): not what was meant.
            if matches!(e, ClientError::Disconnected { .. }) {
                return Ok(Outcome::Otherwise);
            }
            bail!("join failed: {e}");
        }
    };
    let sid = joined.sid.clone();
    print(json!({"event": "connected", "sid": sid, "room_id": joined.room_id, "host_id": joined.host_id,
        "media_type": joined.media_type, "peers": joined.peers}));
    let owners: LineOwners = Arc::default();
    let media = a.tone.and_then(|hz| start_tone(&client, &sid, hz, video, owners.clone()));
    let leave_at = a.leave_after.map(|s| tokio::time::Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let mut leaving = false;
    let outcome = loop {
        let leave = async {
            match leave_at.filter(|_| !leaving) {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { bail!("event stream closed") };
                if let Event::MediaLines { sid: s, lines } = &ev {
                    if *s == sid {
                        if let Ok(mut o) = owners.lock() {
                            // A line whose source left keeps its last owner: what it
                            // carried so far is still that peer's.
                            o.extend(lines.iter().map(|l| (l.mid.clone(), l.user_id.clone())));
                        }
                    }
                }
                print_room_event(&ev);
                match &ev {
                    Event::Disconnected { sid: s, reason, .. } if *s == sid => {
                        // Leaving is this side's doing: the expected end.
                        let by_me = leaving && *reason == switchboard_client::DisconnectReason::Normal;
                        break if by_me { Outcome::AsMeant } else { Outcome::of(*reason, true) };
                    }
                    Event::Closed { .. } => bail!("connection closed before leaving the room"),
                    _ => {}
                }
            }
            _ = leave => {
                leaving = true;
                if let Err(e) = client.leave_conference(&sid).await {
                    print_error(&e);
                }
            }
            _ = interrupted(), if !leaving => {
                // Interrupted: leave properly, so the others and the app server see a
                // leave, not a timed-out participant.
                leaving = true;
                if let Err(e) = client.leave_conference(&sid).await {
                    print_error(&e);
                }
            }
        }
    };
    if let Some(m) = media {
        m.abort();
    }
    Ok(outcome)
}

fn start_tone(
    client: &Client,
    sid: &Sid,
    hz: f64,
    video: bool,
    owners: LineOwners,
) -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(feature = "tone")]
    {
        let (client, sid) = (client.clone(), sid.clone());
        Some(tokio::spawn(async move {
            if let Err(e) = tone_media(client, sid, hz, video, owners).await {
                print(json!({"event": "error", "message": format!("media: {e:#}")}));
            }
        }))
    }
    #[cfg(not(feature = "tone"))]
    {
        let _ = (client, sid, hz, video, owners);
        print(
            json!({"event": "error", "message": "this build has no tone support: build with --features tone"}),
        );
        None
    }
}

/// Sends the tone and reports, each second, what arrived from each peer: every peer's
/// audio comes on a line of its own, decoded on its own.
#[cfg(feature = "tone")]
async fn tone_media(client: Client, sid: Sid, hz: f64, video: bool, owners: LineOwners) -> Result<()> {
    use switchboard_client::tone::{dominant, Decoder};
    use switchboard_client::MediaEvent;

    struct Line {
        decoder: Decoder,
        pcm: Vec<f32>,
        packets: u64,
    }
    let (media, mut rx) = client.start_media(&sid, video).await?;
    let media = Arc::new(media);
    let sender = crate::clients::spawn_tone(media.clone(), hz)?;
    let mut lines: HashMap<String, Line> = HashMap::new();
    let mut report = tokio::time::interval(Duration::from_secs(1));
    report.tick().await;
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(MediaEvent::Connected) => print(json!({"event": "media_connected", "sid": sid})),
                Some(MediaEvent::Audio { mid, payload }) => {
                    let line = match lines.entry(mid) {
                        std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            let decoder = Decoder::new().map_err(anyhow::Error::msg)?;
                            v.insert(Line { decoder, pcm: Vec::new(), packets: 0 })
                        }
                    };
                    line.packets += 1;
                    line.decoder.decode(&payload, &mut line.pcm);
                }
                Some(MediaEvent::Video { .. }) | Some(MediaEvent::Renegotiated) => {}
                Some(MediaEvent::Disconnected) | None => break,
            },
            _ = report.tick() => {
                let owners = owners.lock().map(|o| o.clone()).unwrap_or_default();
                let mut peers = serde_json::Map::new();
                for (mid, line) in lines.iter_mut() {
                    let keep = line.pcm.len().saturating_sub(48_000);
                    line.pcm.drain(..keep);
                    let hz = (line.pcm.len() >= 9_600).then(|| dominant(&line.pcm));
                    let who = owners.get(mid).cloned().unwrap_or_else(|| format!("mid:{mid}"));
                    peers.insert(who, json!({"packets_in": line.packets, "dominant_hz": hz}));
                }
                let s = media.stats();
                print(json!({"event": "media", "sid": sid, "packets_out": s.frames_out, "peers": peers}));
            }
        }
    }
    sender.abort();
    Ok(())
}
