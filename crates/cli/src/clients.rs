//! `switchboard call` and `switchboard answer`: the SDK on the command line, one JSON
//! line per event on stdout.

use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::json;
use switchboard_client::{Client, ClientError, Credentials, Event, Events, MakeCall, Sid};

use crate::interrupts::interrupted;

/// The service of the embedded defaults: every client command's default.
pub const DEFAULT_SERVICE: &str = "demo";

/// Who signs in, and where: the arguments `call` and `join` share.
#[derive(clap::Args)]
pub struct Login {
    /// Server base URL, e.g. http://127.0.0.1:7880 (ws:// works too).
    #[arg(long)]
    pub server: String,
    /// My service ID.
    #[arg(long, default_value = DEFAULT_SERVICE)]
    pub service: String,
    /// My user ID.
    #[arg(long)]
    pub user: String,
    /// My access token.
    #[arg(long, env = "SWITCHBOARD_TOKEN")]
    pub token: String,
    /// How media reaches the relay: `any` (UDP where it works, else TCP), `udp`, `tcp`
    /// (ICE over TCP, for networks that drop UDP), `turn-udp` or `turn-tcp` (through
    /// the server's TURN server only).
    #[arg(long, value_enum, default_value = "any")]
    pub ice_transport: IceArg,
}

/// `--ice-transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IceArg {
    /// UDP where it works, else TCP.
    Any,
    /// UDP only.
    Udp,
    /// TCP only.
    Tcp,
    /// Through the server's TURN server, over UDP.
    TurnUdp,
    /// Through the server's TURN server, over TCP.
    TurnTcp,
    /// Through a TURN server over TLS (`SSL_CERT_FILE` names a private CA to trust).
    TurnTls,
}

impl From<IceArg> for switchboard_client::IceTransport {
    fn from(a: IceArg) -> Self {
        match a {
            IceArg::Any => switchboard_client::IceTransport::Any,
            IceArg::Udp => switchboard_client::IceTransport::Udp,
            IceArg::Tcp => switchboard_client::IceTransport::Tcp,
            IceArg::TurnUdp => switchboard_client::IceTransport::TurnUdp,
            IceArg::TurnTcp => switchboard_client::IceTransport::TurnTcp,
            IceArg::TurnTls => switchboard_client::IceTransport::TurnTls,
        }
    }
}

#[derive(clap::Args)]
pub struct CallArgs {
    #[command(flatten)]
    login: Login,
    /// The callee's user ID.
    #[arg(long)]
    to: String,
    /// The callee's service (default: mine).
    #[arg(long)]
    to_service: Option<String>,
    /// audio or video.
    #[arg(long, default_value = "audio")]
    media: String,
    /// App server data, echoed in notify_cb and the call record.
    #[arg(long)]
    app_data: Option<String>,
    /// Ring timeout for this call (capped by the service's).
    #[arg(long)]
    ring_timeout: Option<u32>,
    /// Hang up this many seconds after the call connects.
    #[arg(long)]
    hangup_after: Option<f64>,
    /// Once connected, send a sine tone of this frequency (Opus) through the server's
    /// media relay and report what arrives (needs the `tone` build feature).
    #[arg(long)]
    tone: Option<f64>,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["wait", "cc_param"])))]
pub struct AnswerArgs {
    /// Server base URL, e.g. http://127.0.0.1:7880 (ws:// works too).
    #[arg(long)]
    server: String,
    /// My service ID (with --wait: default demo, as `call`; with --cc-param: checked
    /// against the credential when given).
    #[arg(long)]
    service: Option<String>,
    /// My user ID (needed with --wait; with --cc-param: checked against the credential).
    #[arg(long)]
    user: Option<String>,
    /// My access token (with --wait).
    #[arg(long, env = "SWITCHBOARD_TOKEN", requires = "wait")]
    token: Option<String>,
    /// Wait for a call offered directly to this device.
    #[arg(long, requires = "token")]
    wait: bool,
    /// Take the call this cc_param names (from the push), without a token.
    #[arg(long, conflicts_with = "wait")]
    cc_param: Option<String>,
    /// Accept this many seconds after the call is verified (default: at once).
    #[arg(long, default_value_t = 0.0)]
    accept_after: f64,
    /// Decline instead of accepting.
    #[arg(long, conflicts_with = "accept_after")]
    decline: bool,
    /// Hang up this many seconds after the call connects.
    #[arg(long)]
    hangup_after: Option<f64>,
    /// Once connected, send a sine tone of this frequency (Opus) through the server's
    /// media relay and report what arrives (needs the `tone` build feature).
    #[arg(long)]
    tone: Option<f64>,
    /// How media reaches the relay: `any`, `udp` or `tcp` (as `call`).
    #[arg(long, value_enum, default_value = "any")]
    ice_transport: IceArg,
}

pub(crate) fn print(v: serde_json::Value) {
    println!("{v}");
}

fn print_event(e: &Event) {
    print(serde_json::to_value(e).unwrap_or_else(|_| json!({"event": "unprintable"})));
}

pub(crate) fn print_error(e: &ClientError) {
    let v = match e {
        ClientError::StartFailed { reason, message } => {
            json!({"event": "start_failed", "reason": reason.as_str(), "code": reason.native_code(), "message": message})
        }
        ClientError::Refused { reason, message } => {
            json!({"event": "refused", "reason": reason, "message": message})
        }
        ClientError::Disconnected { reason, by } => {
            json!({"event": "disconnected", "reason": reason, "source": by, "by_remote": false})
        }
        other => json!({"event": "error", "message": other.to_string()}),
    };
    print(v);
}

pub(crate) fn print_session(c: &Client) {
    print(
        json!({"event": "session_open", "session_id": c.session_id(), "service_id": c.service_id(), "user_id": c.user_id()}),
    );
}

/// Connects with an access token and prints `session_open`; a refusal is printed as
/// one JSON line and returned as the error.
pub(crate) async fn connect_with_token(login: &Login) -> Result<(Client, Events)> {
    let creds = Credentials::token(&login.service, &login.user, &login.token);
    match Client::connect(&login.server, creds).await {
        Ok((client, events)) => {
            print_session(&client);
            Ok((client.with_ice_transport(login.ice_transport.into()), events))
        }
        Err(e) => {
            print_error(&e);
            bail!("could not connect: {e}");
        }
    }
}

/// Sends an Opus tone of `hz` every 20 ms until aborted, with its RTP audio level.
#[cfg(feature = "tone")]
pub(crate) fn spawn_tone(
    media: std::sync::Arc<switchboard_client::Media>,
    hz: f64,
) -> Result<tokio::task::JoinHandle<()>> {
    let mut enc = switchboard_client::tone::ToneEncoder::new(hz).map_err(anyhow::Error::msg)?;
    let level = enc.level_dbov();
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            match enc.next_frame() {
                Ok(frame) => media.send_audio_with_level(frame, 960, level),
                Err(_) => break,
            }
        }
    }))
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Media of a connected call: sends the tone, prints a `media` line each second with
/// what arrived (packets, bytes, the dominant frequency of the decoded audio).
#[cfg(feature = "tone")]
async fn tone_media(client: Client, sid: Sid, hz: f64, video: bool) -> Result<()> {
    use switchboard_client::tone::{dominant, Decoder};
    use switchboard_client::MediaEvent;
    let (media, mut rx) = client.start_media(&sid, video).await?;
    let media = std::sync::Arc::new(media);
    let sender = spawn_tone(media.clone(), hz)?;
    let mut dec = Decoder::new().map_err(anyhow::Error::msg)?;
    let mut pcm: Vec<f32> = Vec::new();
    let mut video_frames = 0u64;
    let mut report = tokio::time::interval(Duration::from_secs(1));
    report.tick().await;
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(MediaEvent::Connected) => print(json!({"event": "media_connected", "sid": sid})),
                Some(MediaEvent::Audio { payload, .. }) => dec.decode(&payload, &mut pcm),
                Some(MediaEvent::Video { .. }) => video_frames += 1,
                Some(MediaEvent::Renegotiated) => {}
                Some(MediaEvent::Disconnected) | None => break,
            },
            _ = report.tick() => {
                let keep = pcm.len().saturating_sub(48_000);
                pcm.drain(..keep);
                let hz = (pcm.len() >= 9_600).then(|| dominant(&pcm));
                let s = media.stats();
                print(json!({"event": "media", "sid": sid, "packets_in": s.frames_in, "bytes_in": s.bytes_in,
                    "packets_out": s.frames_out, "bytes_out": s.bytes_out, "video_frames_in": video_frames, "dominant_hz": hz}));
            }
        }
    }
    sender.abort();
    Ok(())
}

pub(crate) fn start_tone(
    client: &Client,
    sid: &Sid,
    tone: Option<f64>,
    video: bool,
) -> Option<tokio::task::JoinHandle<()>> {
    let hz = tone?;
    #[cfg(feature = "tone")]
    {
        let (client, sid) = (client.clone(), sid.clone());
        Some(tokio::spawn(async move {
            if let Err(e) = tone_media(client, sid, hz, video).await {
                print(json!({"event": "error", "message": format!("media: {e:#}")}));
            }
        }))
    }
    #[cfg(not(feature = "tone"))]
    {
        let _ = (client, sid, hz, video);
        print(
            json!({"event": "error", "message": "this build has no tone support: build with --features tone"}),
        );
        None
    }
}

/// How a call or a room membership ended, for the exit code: 0 when it ended the
/// expected way (NORMAL, or this side cancelled, declined or left), 2 otherwise (the
/// other side declined or cancelled, busy, no answer, network, kicked out, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// NORMAL, or ended by this side.
    AsMeant,
    /// Any other end.
    Otherwise,
}

impl Outcome {
    /// The outcome of a `disconnected` event.
    pub fn of(reason: switchboard_client::DisconnectReason, by_remote: bool) -> Outcome {
        use switchboard_client::DisconnectReason as R;
        match reason {
            R::Normal => Outcome::AsMeant,
            R::Cancel | R::Decline if !by_remote => Outcome::AsMeant,
            _ => Outcome::Otherwise,
        }
    }

    /// The process exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::AsMeant => 0,
            Outcome::Otherwise => 2,
        }
    }
}

/// Prints events until the call `sid` ends; hangs up `hangup_after` after connect;
/// with `tone`, runs media once connected.
async fn follow(
    client: &Client,
    events: &mut Events,
    sid: &Sid,
    hangup_after: Option<f64>,
    tone: Option<(f64, bool)>,
) -> Result<Outcome> {
    let mut hangup_at: Option<tokio::time::Instant> = None;
    let mut media: Option<tokio::task::JoinHandle<()>> = None;
    let mut stopping = false;
    loop {
        let sleep = async {
            match hangup_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = events.next() => {
                let Some(ev) = ev else { bail!("event stream closed") };
                print_event(&ev);
                match &ev {
                    Event::Connected { sid: s, .. } if s == sid => {
                        hangup_at = hangup_after.map(|h| tokio::time::Instant::now() + secs(h));
                        media = tone.and_then(|(hz, video)| start_tone(client, sid, Some(hz), video));
                    }
                    Event::Disconnected { sid: s, reason, by_remote, .. } if s == sid => {
                        if let Some(m) = media.take() {
                            m.abort();
                        }
                        return Ok(Outcome::of(*reason, *by_remote));
                    }
                    Event::Closed { .. } => bail!("connection closed before the call ended"),
                    _ => {}
                }
            }
            _ = sleep => {
                hangup_at = None;
                if let Err(e) = client.end_call(sid, None, None).await {
                    print_error(&e);
                }
            }
            // Ctrl-C ends the call as the user means it: a ringing call is cancelled
            // (caller) or declined (callee), a connected one hung up; the record says so.
            _ = interrupted(), if !stopping => {
                stopping = true;
                hangup_at = None;
                if let Err(e) = client.end_call(sid, None, None).await {
                    print_error(&e);
                }
            }
        }
    }
}

pub async fn call(a: CallArgs) -> Result<Outcome> {
    let (client, mut events) = connect_with_token(&a.login).await?;
    let p_media_is_video = a.media == "video";
    let p = MakeCall {
        to_user_id: a.to,
        to_service_id: a.to_service,
        media_type: a.media,
        app_data: a.app_data,
        ring_timeout_secs: a.ring_timeout,
    };
    let sid = match client.make_call(p).await {
        Ok(sid) => sid,
        Err(e) => {
            print_error(&e);
            bail!("make_call failed: {e}");
        }
    };
    print(json!({"event": "call_created", "sid": sid}));
    let video = p_media_is_video;
    follow(&client, &mut events, &sid, a.hangup_after, a.tone.map(|hz| (hz, video))).await
}

pub async fn answer(a: AnswerArgs) -> Result<Outcome> {
    let creds = match (&a.cc_param, &a.token) {
        (Some(p), _) => Credentials::CcParam(p.clone()),
        (None, Some(t)) => {
            let Some(user) = &a.user else {
                bail!("--wait needs --user (the user the token is for)");
            };
            Credentials::token(a.service.as_deref().unwrap_or(DEFAULT_SERVICE), user, t)
        }
        (None, None) => bail!("give --token with --wait, or --cc-param"),
    };
    let (client, mut events) = match Client::connect(&a.server, creds).await {
        Ok((c, e)) => (c.with_ice_transport(a.ice_transport.into()), e),
        Err(e) => {
            print_error(&e);
            bail!("could not connect: {e}");
        }
    };
    if a.service.as_deref().is_some_and(|s| s != client.service_id())
        || a.user.as_deref().is_some_and(|u| u != client.user_id())
    {
        bail!("the credential is for {}/{}", client.service_id(), client.user_id());
    }
    print_session(&client);
    let cc_param = match a.cc_param {
        Some(p) => p,
        None => loop {
            let Some(ev) = events.next().await else { bail!("event stream closed") };
            print_event(&ev);
            match ev {
                Event::IncomingCall { cc_param, .. } => break cc_param,
                Event::Closed { .. } => bail!("connection closed while waiting for a call"),
                _ => {}
            }
        },
    };
    let verified = match client.verify_call(&cc_param).await {
        Ok(v) => v,
        Err(e) => {
            print_error(&e);
            if let ClientError::Disconnected { reason, .. } = e {
                return Ok(Outcome::of(reason, true));
            }
            bail!("verify_call failed: {e}");
        }
    };
    let sid = verified.sid;
    if a.decline {
        if let Err(e) = client.end_call(&sid, None, None).await {
            print_error(&e);
        }
    } else {
        // While it rings here: the caller may cancel, and Ctrl-C declines rather than
        // leave it ringing.
        let accept_at = tokio::time::Instant::now() + secs(a.accept_after);
        let interrupted = loop {
            tokio::select! {
                _ = tokio::time::sleep_until(accept_at) => break false,
                _ = interrupted() => break true,
                ev = events.next() => {
                    let Some(ev) = ev else { bail!("event stream closed") };
                    print_event(&ev);
                    match &ev {
                        Event::Disconnected { sid: s, reason, by_remote, .. } if *s == sid => {
                            return Ok(Outcome::of(*reason, *by_remote));
                        }
                        Event::Closed { .. } => bail!("connection closed before the call ended"),
                        _ => {}
                    }
                }
            }
        };
        let done = if interrupted {
            client.end_call(&sid, None, None).await
        } else {
            client.accept_call(&sid).await
        };
        if let Err(e) = done {
            print_error(&e);
        }
    }
    let video = verified.media_type == switchboard_client::MediaType::Video;
    follow(&client, &mut events, &sid, a.hangup_after, a.tone.map(|hz| (hz, video))).await
}
