//! [`CallEngine`]: TUICallEngine's shape in Rust, for apps ported from TUICallKit. One
//! value per signed-in user with the engine's methods (`calls`, `accept`, `reject`,
//! `ignore`, `hangup`, `invite_user`, `join`, `switch_call_media_type`,
//! `set_self_info`, `query_recent_calls`, microphone and camera state, `logout`), and
//! one stream of [`CallEvent`]s whose `event` is seed 004's [`EngineEvent`], for 1-to-1
//! and group calls alike.
//!
//! The server says most events itself; the ones a room already reports in its own
//! words (levels, network quality, who has a microphone or camera on) are derived here
//! from those reports, as the browser SDK's `CallEngine` does, so an app hears one
//! vocabulary.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use switchboard_protocol::engine::{CallMediaType, NetworkQuality, NetworkQualityGrade};
use switchboard_protocol::{EngineEvent, ErrorCode, Sid};

use crate::engine::{Calls, Entered, RecentCall, RecentCallsQuery};
use crate::{Client, ClientError, Event, Events, Media, MediaEvent};

/// `onError` code for a signaling connection that is gone for good (WebPlanetKit's
/// `WEB_SIGNALING_UNEXPECTED_DISCONNECTED`, as the browser SDK reports it).
pub const SIGNALING_LOST: i32 = 1611;

/// A TUICallEvent and the call it is about.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallEvent {
    /// The call's ID (none for `onKickedOffline`, `onUserSigExpired` and `onError`
    /// about the connection).
    pub call_id: Option<Sid>,
    /// The event, with seed 004's name and fields.
    #[serde(flatten)]
    pub event: EngineEvent,
}

/// Options of [`CallEngine::calls`] (TUICallEngine's `CallParams`).
#[derive(Debug, Clone, Default)]
pub struct CallParams {
    /// Each invitation's ring time, seconds (default 30).
    pub timeout_secs: Option<u32>,
    /// App data, in `onCallReceived` and the records.
    pub user_data: Option<String>,
    /// The group call's room number.
    pub room_id: Option<u32>,
    /// The app's group ID (makes even a one-invitee call a group call).
    pub group_id: Option<String>,
}

/// How to sign in ([`CallEngine::login_with`]).
#[derive(Debug, Clone, Default)]
pub struct LoginOptions {
    /// `enableMultiDeviceAbility(true)`: stay signed in beside this user's other
    /// devices, all of which ring (the first to answer wins). Off (the engine's
    /// default), this login signs the user's other engine instances out
    /// (`onKickedOffline`).
    pub multi_device: bool,
}

/// What a [`CallEngine`] and its [`CallEvents`] share.
#[derive(Default)]
struct Shared {
    /// The other user of each 1-to-1 call, for the events the server words without a
    /// user (a 1-to-1 peer's microphone and camera state).
    peers: Mutex<HashMap<Sid, String>>,
    /// `logout` was called: the close that follows is not an error.
    logged_out: AtomicBool,
}

/// A signed-in call-engine user. Cheap to clone; every clone is the same session.
#[derive(Clone)]
pub struct CallEngine {
    client: Client,
    shared: Arc<Shared>,
}

impl CallEngine {
    /// `login`: signs `user_id` of `service_id` in with its access token (`userSig`),
    /// without multi-device.
    pub async fn login(
        server: &str,
        service_id: &str,
        user_id: &str,
        user_sig: &str,
    ) -> Result<(CallEngine, CallEvents), ClientError> {
        Self::login_with(server, service_id, user_id, user_sig, LoginOptions::default()).await
    }

    /// [`CallEngine::login`] with options.
    pub async fn login_with(
        server: &str,
        service_id: &str,
        user_id: &str,
        user_sig: &str,
        options: LoginOptions,
    ) -> Result<(CallEngine, CallEvents), ClientError> {
        let (client, events) =
            Client::connect_engine(server, service_id, user_id, user_sig, options.multi_device).await?;
        let shared = Arc::new(Shared::default());
        let events = CallEvents { events, shared: shared.clone(), queue: VecDeque::new(), quiet: false };
        Ok((CallEngine { client, shared }, events))
    }

    /// My user ID.
    pub fn user_id(&self) -> &str {
        self.client.user_id()
    }

    /// The signaling session underneath (the WebPlanetKit face), for what the engine
    /// does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `calls`: rings `user_ids`; one invitee is a 1-to-1 call, several a group call.
    /// Resolves with the call's ID once it rings (`onCallBegin` follows an answer).
    pub async fn calls<S: Into<String>>(
        &self,
        user_ids: impl IntoIterator<Item = S>,
        media: CallMediaType,
        params: CallParams,
    ) -> Result<Sid, ClientError> {
        let user_ids: Vec<String> = user_ids.into_iter().map(Into::into).collect();
        let only = (user_ids.len() == 1).then(|| user_ids[0].clone());
        let media_type = match media.media() {
            Some(m) => m.as_str().to_string(),
            None => {
                let message = "callMediaType must be 1 (audio) or 2 (video)".to_string();
                return Err(ClientError::Server { error: ErrorCode::InvalidParam, reason: None, message });
            }
        };
        let calls = Calls {
            user_ids,
            media_type,
            timeout_secs: params.timeout_secs,
            user_data: params.user_data,
            room_id: params.room_id,
            group_id: params.group_id,
        };
        let entered = self.client.calls(calls).await?;
        if let (Entered::OneToOne { sid }, Some(peer)) = (&entered, only) {
            self.shared.peers.lock().map_err(|_| ClientError::Closed)?.insert(sid.clone(), peer);
        }
        Ok(entered.call_id().clone())
    }

    /// `accept` of the call that rings (`onCallReceived`'s call ID).
    pub async fn accept(&self, call_id: &Sid) -> Result<(), ClientError> {
        self.client.accept(call_id).await.map(drop)
    }

    /// `reject`: the caller hears `onUserReject`.
    pub async fn reject(&self, call_id: &Sid) -> Result<(), ClientError> {
        self.client.reject(call_id).await
    }

    /// `ignore`: the caller hears `onUserLineBusy`.
    pub async fn ignore(&self, call_id: &Sid) -> Result<(), ClientError> {
        self.client.ignore(call_id).await
    }

    /// `hangup`: leaves the call; the caller before anyone answered cancels it.
    pub async fn hangup(&self, call_id: &Sid) -> Result<(), ClientError> {
        self.client.hangup(call_id).await
    }

    /// `inviteUser`: more invitees into a group call I am in.
    pub async fn invite_user<S: Into<String>>(
        &self,
        call_id: &Sid,
        user_ids: impl IntoIterator<Item = S>,
    ) -> Result<(), ClientError> {
        self.client.invite_user(call_id, user_ids.into_iter().map(Into::into).collect()).await
    }

    /// `join`: back into a live group call that invited me.
    pub async fn join(&self, call_id: &Sid) -> Result<(), ClientError> {
        self.client.join_call(call_id).await.map(drop)
    }

    /// `switchCallMediaType`: everyone in the call hears `onCallMediaTypeChanged`.
    pub async fn switch_call_media_type(
        &self,
        call_id: &Sid,
        media: CallMediaType,
    ) -> Result<(), ClientError> {
        let media_type = media.media().map_or("", |m| m.as_str());
        self.client.switch_call_media(call_id, media_type).await
    }

    /// `setSelfInfo`: my nickname and avatar, in my invitees' `onCallReceived` and in
    /// group call records (empty strings clear them).
    pub async fn set_self_info(
        &self,
        nickname: Option<&str>,
        avatar_url: Option<&str>,
    ) -> Result<(), ClientError> {
        self.client.set_self_info(nickname, avatar_url).await
    }

    /// `queryRecentCalls`: my own recent calls, newest first.
    pub async fn query_recent_calls(&self, q: RecentCallsQuery) -> Result<Vec<RecentCall>, ClientError> {
        self.client.query_recent_calls(q).await
    }

    /// Starts my media in a call that began (`onCallBegin`): audio, and video when
    /// `video`. What to send is the app's ([`Media::send_audio`]).
    pub async fn start_media(
        &self,
        call_id: &Sid,
        video: bool,
    ) -> Result<(Media, tokio::sync::mpsc::UnboundedReceiver<MediaEvent>), ClientError> {
        self.client.start_media(call_id, video).await
    }

    /// `openMicrophone`: the others hear `onUserAudioAvailable` true.
    pub async fn open_microphone(&self, call_id: &Sid) -> Result<(), ClientError> {
        self.client.set_media_state(call_id, Some(false), None).await
    }

    /// `closeMicrophone`: the others hear `onUserAudioAvailable` false.
    pub async fn close_microphone(&self, call_id: &Sid) -> Result<(), ClientError> {
        self.client.set_media_state(call_id, Some(true), None).await
    }

    /// `openCamera`: the others hear `onUserVideoAvailable` true.
    pub async fn open_camera(&self, call_id: &Sid) -> Result<(), ClientError> {
        self.client.set_media_state(call_id, None, Some(true)).await
    }

    /// `closeCamera`: the others hear `onUserVideoAvailable` false.
    pub async fn close_camera(&self, call_id: &Sid) -> Result<(), ClientError> {
        self.client.set_media_state(call_id, None, Some(false)).await
    }

    /// `logout`: signs out (a call in progress ends as if the connection were lost).
    pub async fn logout(&self) {
        self.shared.logged_out.store(true, Ordering::Relaxed);
        self.client.close().await;
    }
}

/// The events of a [`CallEngine`], in the order they happened.
pub struct CallEvents {
    events: Events,
    shared: Arc<Shared>,
    queue: VecDeque<CallEvent>,
    /// The session ended in a way already told (`onKickedOffline`,
    /// `onUserSigExpired`): its close is not an error.
    quiet: bool,
}

impl CallEvents {
    /// The next event; `None` once the session is closed.
    pub async fn next(&mut self) -> Option<CallEvent> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            let event = self.events.next().await?;
            self.translate(event);
        }
    }

    fn peer(&self, sid: &Sid) -> Option<String> {
        self.shared.peers.lock().ok()?.get(sid).cloned()
    }

    fn push(&mut self, call_id: Option<&Sid>, event: EngineEvent) {
        self.queue.push_back(CallEvent { call_id: call_id.cloned(), event });
    }

    fn availability(&mut self, sid: &Sid, user_id: &str, audio: Option<bool>, video: Option<bool>) {
        if let Some(on) = audio {
            let event =
                EngineEvent::UserAudioAvailable { user_id: user_id.to_string(), is_audio_available: on };
            self.push(Some(sid), event);
        }
        if let Some(on) = video {
            let event =
                EngineEvent::UserVideoAvailable { user_id: user_id.to_string(), is_video_available: on };
            self.push(Some(sid), event);
        }
    }

    fn translate(&mut self, event: Event) {
        match event {
            Event::Call { call_id, call_event } => {
                match &call_event {
                    EngineEvent::CallReceived { caller_id, callee_id_list, group_id, .. }
                        if callee_id_list.len() == 1 && group_id.is_empty() =>
                    {
                        if let (Some(id), Ok(mut peers)) = (&call_id, self.shared.peers.lock()) {
                            peers.insert(id.clone(), caller_id.clone());
                        }
                    }
                    EngineEvent::CallEnd { .. } | EngineEvent::CallNotConnected { .. } => {
                        if let (Some(id), Ok(mut peers)) = (&call_id, self.shared.peers.lock()) {
                            peers.remove(id);
                        }
                    }
                    EngineEvent::KickedOffline {} => self.quiet = true,
                    _ => {}
                }
                self.push(call_id.as_ref(), call_event);
            }
            // A room's own reports, in the engine's words (a group call's ID is its
            // room's sid).
            Event::AudioLevels { sid, levels } => {
                self.push(Some(&sid), EngineEvent::UserVoiceVolumeChanged { volume_map: levels })
            }
            Event::NetworkQuality { sid, quality } => {
                let network_quality_list = quality
                    .into_iter()
                    .map(|(user_id, grade)| NetworkQuality {
                        user_id,
                        quality: NetworkQualityGrade::try_from(grade).unwrap_or(NetworkQualityGrade::Unknown),
                    })
                    .collect();
                self.push(Some(&sid), EngineEvent::UserNetworkQualityChanged { network_quality_list })
            }
            Event::PeerListUpdated { sid, added, .. } => {
                for p in added {
                    self.availability(&sid, &p.user_id, Some(!p.mic_muted), Some(p.video_enabled));
                }
            }
            Event::PeerMediaState { sid, user_id, mic_muted, video_enabled, .. } => {
                if let Some(user) = user_id.or_else(|| self.peer(&sid)) {
                    self.availability(&sid, &user, mic_muted.map(|m| !m), video_enabled);
                }
            }
            // A 1-to-1 call connected: the peer's microphone is on until it says not.
            Event::Connected { sid, .. } => {
                if let Some(user) = self.peer(&sid) {
                    self.availability(&sid, &user, Some(true), None);
                }
            }
            Event::Error { error: ErrorCode::Auth, .. } => {
                self.quiet = true;
                self.push(None, EngineEvent::UserSigExpired {});
            }
            Event::Closed { reason } if !self.quiet && !self.shared.logged_out.load(Ordering::Relaxed) => {
                self.push(None, EngineEvent::Error { code: SIGNALING_LOST, msg: reason });
            }
            _ => {}
        }
    }
}
