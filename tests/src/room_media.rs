//! Hearing a room: each participant sends a tone of its own, and each decodes every
//! line it receives on its own and knows, from the line owners the server told it,
//! whose it is.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchboard_client::tone::{dominant, Decoder, ToneEncoder};
use switchboard_client::{Client, Event, Events, Media, MediaEvent, Sid};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::media_event;

/// A participant's media: it sends a tone (for 30 s) and receives the others' lines.
pub struct Speaker {
    /// Its media connection.
    pub media: Arc<Media>,
    /// What arrives on it.
    pub rx: UnboundedReceiver<MediaEvent>,
    /// The task sending the tone.
    pub sender: tokio::task::JoinHandle<()>,
}

/// Starts `c`'s media in the room `sid` and sends `hz` on it once it is connected.
pub async fn start_tone(c: &Client, sid: &Sid, hz: f64) -> Speaker {
    let (media, mut rx) = c.start_media(sid, false).await.expect("media starts");
    media_event(&mut rx, |e| matches!(e, MediaEvent::Connected), "media connected").await;
    let media = Arc::new(media);
    let m = media.clone();
    let sender = tokio::spawn(async move {
        let mut enc = ToneEncoder::new(hz).expect("encoder");
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for _ in 0..50 * 30 {
            tick.tick().await;
            m.send_audio(enc.next_frame().expect("encode"), 960);
        }
    });
    Speaker { media, rx, sender }
}

/// Decodes what arrives for `secs` seconds; the dominant frequency per line (mid).
pub async fn listen(p: &mut Speaker, secs: u64) -> HashMap<String, f64> {
    let mut lines: HashMap<String, (Decoder, Vec<f32>)> = HashMap::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while let Ok(Some(ev)) = tokio::time::timeout_at(end, p.rx.recv()).await {
        if let MediaEvent::Audio { mid, payload } = ev {
            let (dec, pcm) =
                lines.entry(mid).or_insert_with(|| (Decoder::new().expect("decoder"), Vec::new()));
            dec.decode(&payload, pcm);
        }
    }
    lines
        .into_iter()
        .filter(|(_, (_, pcm))| pcm.len() >= 48_000)
        .map(|(mid, (_, pcm))| (mid, dominant(&pcm[pcm.len() - 48_000..])))
        .collect()
}

/// Reads the session's pending events: the line owners the server told it (mid → user).
pub async fn line_owners(ev: &mut Events, sid: &Sid, known: &mut HashMap<String, String>) {
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(20), ev.next()).await {
        if let Event::MediaLines { sid: s, lines } = e {
            if s == *sid {
                known.extend(lines.into_iter().map(|l| (l.mid, l.user_id)));
            }
        }
    }
}

/// One participant of [`everyone_hears_everyone`]: its user ID, its tone, its events and
/// its media.
pub struct Hearer<'a> {
    /// The user.
    pub user: &'a str,
    /// The tone it sends.
    pub hz: f64,
    /// Its session's events (the line owners).
    pub events: &'a mut Events,
    /// Its media.
    pub speaker: &'a mut Speaker,
}

/// Each participant of the room `sid` hears every other one's tone, each on a line the
/// server said is that user's (listening `secs` seconds each).
pub async fn everyone_hears_everyone(sid: &Sid, hearers: &mut [Hearer<'_>], secs: u64) {
    // Everyone listens at once.
    let heard = futures_util::future::join_all(hearers.iter_mut().map(|h| listen(h.speaker, secs))).await;
    let tones: Vec<(String, f64)> = hearers.iter().map(|h| (h.user.to_string(), h.hz)).collect();
    for (h, heard) in hearers.iter_mut().zip(heard) {
        let mut who = HashMap::new();
        line_owners(h.events, sid, &mut who).await;
        let mut got: Vec<(String, f64)> = heard
            .iter()
            .map(|(mid, hz)| (who.get(mid).cloned().unwrap_or_else(|| format!("?{mid}")), *hz))
            .collect();
        got.sort_by(|x, y| x.0.cmp(&y.0));
        let mut want: Vec<&(String, f64)> = tones.iter().filter(|(u, _)| u != h.user).collect();
        want.sort_by(|x, y| x.0.cmp(&y.0));
        let me = h.user;
        assert_eq!(got.len(), want.len(), "{me} hears {} lines: {got:?}", want.len());
        for ((gu, ghz), (wu, whz)) in got.iter().zip(want) {
            assert_eq!(gu, wu, "{me}: line owners {got:?}");
            assert!((ghz - whz).abs() <= 10.0, "{me} hears {gu} at {ghz} Hz, want {whz}: {got:?}");
        }
    }
}
