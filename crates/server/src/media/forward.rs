//! Forwarding RTP as it came (str0m's RTP mode): no depacketizing, no repacketizing.
//! Each receiving line keeps its own sequence numbers and timestamps: while one source
//! feeds it, packets keep the source's numbering shifted by a fixed offset; when
//! another source takes the line over (a party left and another reuses its line), the
//! offsets are chosen so that numbering continues where it stopped, as a receiver's
//! jitter buffer and SRTP rollover counter require.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::Rtc;

/// One received RTP packet, as the relay forwards it.
pub(crate) struct Packet {
    pub ssrc: Ssrc,
    pub params: PayloadParams,
    pub seq: u64,
    pub time: u32,
    /// Clock rate of `time`, ticks per second.
    pub clock: u32,
    pub marker: bool,
    /// The simulcast layer it belongs to, if the sender sends several.
    pub rid: Option<str0m::media::Rid>,
    pub ext: ExtensionValues,
    pub payload: Arc<[u8]>,
    pub arrived: Instant,
    pub kind: MediaKind,
    /// The payload is RFC 2198 RED around `params`' codec (Opus with redundancy).
    pub red: bool,
}

impl Packet {
    /// Takes what forwarding needs from a received packet; `None` for padding (no
    /// payload) and for payload types the connection did not negotiate.
    pub fn from_rtp(rtc: &Rtc, pkt: RtpPacket, kind: MediaKind) -> Option<Packet> {
        if pkt.payload.is_empty() {
            return None;
        }
        let pt = pkt.header.payload_type;
        let params = *rtc.codec_config().find(|p| p.pt() == pt || p.red() == Some(pt))?;
        let red = params.pt() != pt;
        let mut ext = pkt.header.ext_vals;
        let rid = ext.rid;
        // These name the source's line and stream; the receiving stream sets its own.
        ext.mid = None;
        ext.rid = None;
        ext.rid_repair = None;
        ext.transport_cc = None;
        Some(Packet {
            ssrc: pkt.header.ssrc,
            params,
            seq: *pkt.seq_no,
            time: pkt.header.timestamp,
            clock: pkt.time.frequency().get(),
            marker: pkt.header.marker,
            rid,
            ext,
            payload: pkt.payload,
            arrived: pkt.timestamp,
            kind,
            red,
        })
    }
}

/// The primary (newest) block of an RFC 2198 RED payload: after the 4-byte headers of
/// the redundant blocks and the 1-byte header of the primary, past the redundant data.
/// `None` if the payload is not well formed.
pub(crate) fn red_primary(payload: &[u8]) -> Option<&[u8]> {
    let (mut at, mut redundant) = (0usize, 0usize);
    loop {
        let first = *payload.get(at)?;
        if first & 0x80 == 0 {
            at += 1;
            break;
        }
        let header = payload.get(at..at + 4)?;
        redundant += (usize::from(header[2] & 0x03) << 8) | usize::from(header[3]);
        at += 4;
    }
    payload.get(at + redundant..).filter(|p| !p.is_empty())
}

/// A copy of an RFC 2198 RED payload with the payload type of every block set to `pt`:
/// the receiver's number for the codec inside (browsers differ: Opus is 111 in
/// Chromium, 109 in Firefox). `None` if the payload is not well formed.
pub(crate) fn red_retagged(payload: &[u8], pt: Pt) -> Option<Arc<[u8]>> {
    red_primary(payload)?;
    let mut out = payload.to_vec();
    let mut at = 0;
    loop {
        let first = out.get_mut(at)?;
        let last = *first & 0x80 == 0;
        *first = (*first & 0x80) | (*pt & 0x7f);
        if last {
            return Some(Arc::from(out));
        }
        at += 4;
    }
}

/// How a source's packets go out on a receiving line.
#[derive(Clone, Copy)]
struct Out {
    pt: Pt,
    body: Body,
}

/// What becomes of the payload.
#[derive(Clone, Copy, PartialEq)]
enum Body {
    /// As it came.
    Same,
    /// RED from the source, and the receiver did not take RED: the primary only.
    Unwrap,
    /// RED both ways, but the receiver numbers the codec inside differently.
    Retag(Pt),
}

/// The numbering of one receiving line.
#[derive(Default)]
pub(crate) struct Renumber {
    /// The source SSRC now feeding the line.
    ssrc: Option<Ssrc>,
    seq_offset: i64,
    time_offset: u32,
    /// The first number of the current source: anything that maps below it (a late
    /// packet from before the switch) is dropped rather than reuse a number.
    floor: u64,
    last_seq: Option<u64>,
    last_time: u32,
    last_at: Option<Instant>,
    /// Source payload type (and whether it is RED) → how it goes out on this
    /// connection, for the same codec (of the current source: cleared when the source
    /// changes).
    pts: Vec<((Pt, bool), Option<Out>)>,
}

impl Renumber {
    /// The sequence number and timestamp `p` gets on this line; `None` for a late
    /// packet that would fall before the current source's first number.
    fn map(&mut self, p: &Packet) -> Option<(u64, u32)> {
        if self.ssrc != Some(p.ssrc) {
            let start = match self.last_seq {
                // A new source on a line that carried another: continue its numbering,
                // with the time that passed since its last packet.
                Some(last) => {
                    let elapsed =
                        self.last_at.map_or(0.0, |t| p.arrived.saturating_duration_since(t).as_secs_f64());
                    let gap = ((elapsed * f64::from(p.clock)) as u32).max(1);
                    self.time_offset = self.last_time.wrapping_add(gap).wrapping_sub(p.time);
                    last + 1
                }
                // The line's first source: keep its 16-bit numbering but start the
                // rollover counter at 0, as the receiver's SRTP assumes (the source may
                // have wrapped already: str0m's numbers are extended).
                None => {
                    self.time_offset = 0;
                    p.seq & 0xFFFF
                }
            };
            self.seq_offset = start as i64 - p.seq as i64;
            self.floor = start;
            self.ssrc = Some(p.ssrc);
            self.pts.clear();
        }
        let seq = p.seq as i64 + self.seq_offset;
        if seq < self.floor as i64 {
            return None;
        }
        let seq = seq as u64;
        let time = p.time.wrapping_add(self.time_offset);
        if self.last_seq.is_none_or(|l| seq > l) {
            self.last_seq = Some(seq);
            self.last_time = time;
            self.last_at = Some(p.arrived);
        }
        Some((seq, time))
    }

    fn pt(&mut self, rtc: &Rtc, p: &Packet) -> Option<Out> {
        let src = (p.params.pt(), p.red);
        if let Some((_, out)) = self.pts.iter().find(|(s, _)| *s == src) {
            return *out;
        }
        let out = rtc.codec_config().match_params(p.params).map(|m| match (p.red, m.red()) {
            // RED both ways: forwarded as it came, the receiver recovers from it.
            (true, Some(red)) if m.pt() == p.params.pt() => Out { pt: red, body: Body::Same },
            (true, Some(red)) => Out { pt: red, body: Body::Retag(m.pt()) },
            (true, None) => Out { pt: m.pt(), body: Body::Unwrap },
            (false, _) => Out { pt: m.pt(), body: Body::Same },
        });
        self.pts.push((src, out));
        out
    }
}

/// Per receiving connection: the numbering of each of its lines.
#[derive(Default)]
pub(crate) struct Lines {
    lines: HashMap<Mid, Renumber>,
}

impl Lines {
    /// Writes `p` onto line `mid` of `rtc`; false if the line cannot take it (no such
    /// sending stream yet, or no matching codec).
    pub fn write(&mut self, rtc: &mut Rtc, mid: Mid, p: &Packet) -> bool {
        let r = self.lines.entry(mid).or_default();
        let Some(out) = r.pt(rtc, p) else { return false };
        let payload = match out.body {
            Body::Same => p.payload.clone(),
            Body::Unwrap => match red_primary(&p.payload) {
                Some(primary) => Arc::from(primary),
                None => return false,
            },
            Body::Retag(pt) => match red_retagged(&p.payload, pt) {
                Some(retagged) => retagged,
                None => return false,
            },
        };
        let mut api = rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else { return false };
        // Numbered only once it is certain to be sent: a skipped number would look
        // like a lost packet to the receiver.
        let Some((seq, time)) = r.map(p) else { return false };
        let write = RtpWrite::new(out.pt, SeqNo::from(seq), time, p.arrived, payload)
            .marker(p.marker)
            .ext_vals(p.ext.clone())
            // Video is resent on NACK from the relay's own send buffer; late audio is
            // worse than lost audio.
            .nackable(p.kind == MediaKind::Video);
        tx.write_rtp(write);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn packet(ssrc: u32, seq: u64, time: u32, at: Instant) -> Packet {
        let params = str0m::format::CodecConfig::new_with_defaults().params()[0];
        Packet {
            ssrc: ssrc.into(),
            params,
            seq,
            time,
            clock: 48_000,
            marker: false,
            rid: None,
            ext: ExtensionValues::default(),
            payload: Arc::from(vec![1u8; 10]),
            arrived: at,
            kind: MediaKind::Audio,
            red: false,
        }
    }

    #[test]
    fn the_primary_of_a_red_payload_is_its_last_block() {
        // One redundant block (PT 111, offset 960, 3 bytes), then the primary (PT 111).
        let red = [0x80 | 111, 0x0f, 0x00, 3, 111, 1, 2, 3, 9, 8, 7, 6];
        assert_eq!(red_primary(&red), Some(&[9u8, 8, 7, 6][..]));
        // No redundancy: only the primary's header.
        assert_eq!(red_primary(&[111, 5, 5]), Some(&[5u8, 5][..]));
        // Two redundant blocks of 1 and 2 bytes.
        let two = [0xef, 0, 0, 1, 0xef, 0, 0, 2, 111, 1, 2, 2, 4];
        assert_eq!(red_primary(&two), Some(&[4u8][..]));
        // Cut short, lengths past the end, nothing left for the primary: refused.
        assert_eq!(red_primary(&[0x80 | 111, 0x0f]), None);
        assert_eq!(red_primary(&[0x80 | 111, 0, 0, 50, 111, 1]), None);
        assert_eq!(red_primary(&[111]), None);
        assert_eq!(red_primary(&[]), None);
    }

    #[test]
    fn a_red_payload_retagged_names_the_receivers_codec_in_every_block() {
        let red = [0x80 | 111, 0x0f, 0x00, 3, 111, 1, 2, 3, 9, 8, 7, 6];
        let out = red_retagged(&red, Pt::from(109)).expect("well formed");
        assert_eq!(&out[..], &[0x80 | 109, 0x0f, 0x00, 3, 109, 1, 2, 3, 9, 8, 7, 6][..]);
        assert_eq!(red_primary(&out), red_primary(&red));
        assert!(red_retagged(&[0x80 | 111, 0, 0, 50, 111, 1], Pt::from(109)).is_none());
    }

    #[test]
    fn a_new_source_continues_the_line_numbering() {
        let t0 = Instant::now();
        let mut r = Renumber::default();
        assert_eq!(r.map(&packet(1, 100, 5000, t0)), Some((100, 5000)));
        assert_eq!(r.map(&packet(1, 101, 5960, t0 + Duration::from_millis(20))), Some((101, 5960)));
        // Source 2 takes over 100 ms later, with numbering of its own.
        let (seq, time) = r.map(&packet(2, 40_000, 1_000_000, t0 + Duration::from_millis(120))).unwrap();
        assert_eq!(seq, 102);
        assert_eq!(time, 5960 + 4800);
        assert_eq!(
            r.map(&packet(2, 40_001, 1_000_960, t0 + Duration::from_millis(140))),
            Some((103, 5960 + 4800 + 960))
        );
        // A late packet of the new source keeps its place; the last one stays the last.
        assert_eq!(
            r.map(&packet(2, 40_000, 1_000_000, t0 + Duration::from_millis(141))).map(|m| m.0),
            Some(102)
        );
        assert_eq!(r.last_seq, Some(103));
        // One from before the switch would reuse source 1's numbers: dropped.
        assert_eq!(r.map(&packet(2, 39_999, 999_040, t0 + Duration::from_millis(142))), None);
    }

    #[test]
    fn a_wrapped_source_starts_a_line_at_rollover_zero() {
        let t0 = Instant::now();
        let mut r = Renumber::default();
        // The source has sent 3 * 65,536 + 7 packets: a new receiver's SRTP expects
        // rollover counter 0.
        let first = 3 * 65_536 + 7;
        assert_eq!(r.map(&packet(1, first, 10, t0)).map(|m| m.0), Some(7));
        assert_eq!(r.map(&packet(1, first + 1, 970, t0)).map(|m| m.0), Some(8));
        assert_eq!(r.map(&packet(1, first - 10, 0, t0)), None, "from before the line's first packet");
    }

    #[test]
    fn timestamps_wrap() {
        let t0 = Instant::now();
        let mut r = Renumber::default();
        r.map(&packet(1, 1, u32::MAX - 100, t0));
        let (_, time) = r.map(&packet(2, 9, 7, t0 + Duration::from_millis(10))).unwrap();
        assert_eq!(time, (u32::MAX - 100).wrapping_add(480));
    }
}
