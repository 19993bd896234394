//! The SDP text the relay reads and writes around str0m: the ICE and DTLS identity of
//! an offer, the conventions browsers expect of an ICE-lite peer that never trickles,
//! transport-wide congestion control kept to video lines, and errors in our words.

/// The RTP header extension of transport-wide congestion control.
const TRANSPORT_CC_URI: &str = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// The `a=ice-ufrag` of an SDP (session or first media level).
pub(super) fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|l| l.trim().strip_prefix("a=ice-ufrag:")).map(|u| u.trim().to_string())
}

/// The `a=fingerprint` of an SDP (session or first media level), case-insensitive.
pub(super) fn sdp_fingerprint(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|l| l.trim().strip_prefix("a=fingerprint:")).map(|f| f.trim().to_ascii_uppercase())
}

/// The relay's SDP as browsers expect from a peer that gathers nothing more: it never
/// trickles (its one host candidate is in the SDP), so it does not advertise trickle
/// and ends the candidates of each section that has some with `a=end-of-candidates`
/// (RFC 8840; with BUNDLE that is the bundle-tag section).
pub(super) fn browser_answer(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len() + 64);
    // Whether the current section listed candidates and has not been ended yet.
    let mut open = false;
    for line in sdp.split("\r\n").filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("a=ice-options:") {
            let options: Vec<&str> = rest.split(' ').filter(|o| *o != "trickle" && !o.is_empty()).collect();
            if !options.is_empty() {
                out.push_str(&format!("a=ice-options:{}\r\n", options.join(" ")));
            }
            continue;
        }
        if line.starts_with("m=") && open {
            out.push_str("a=end-of-candidates\r\n");
            open = false;
        }
        if line.starts_with("a=candidate:") {
            open = true;
        }
        if line == "a=end-of-candidates" {
            open = false;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    if open {
        out.push_str("a=end-of-candidates\r\n");
    }
    out
}

/// The relay's own offers follow the same rule as its answers.
pub(super) fn browser_offer(sdp: &str) -> String {
    browser_answer(sdp)
}

/// What was wrong with an SDP offer, in our words: a client is never shown a parser's
/// internals (they can carry memory addresses).
pub(super) fn sdp_problem(e: &str0m::error::SdpError) -> &'static str {
    match e {
        str0m::error::SdpError::ParseError(_) => "the SDP offer could not be parsed",
        str0m::error::SdpError::Inconsistent(_) => "the SDP offer contradicts itself",
    }
}

/// Why the relay refused an offer it could parse, in our words (the details are logged).
pub(super) fn refused_offer(sid: &crate::ids::Sid, e: &str0m::RtcError) -> String {
    tracing::debug!(%sid, error = %e, "SDP offer refused");
    let why = match e {
        str0m::RtcError::Sdp(sdp) => sdp_problem(sdp),
        str0m::RtcError::RemoteSdp(m) if m.contains("m-lines") => "the SDP offer has no media lines",
        str0m::RtcError::RemoteSdp(m) if m.contains("ice-ufrag") => {
            "the SDP offer lacks ICE credentials (a=ice-ufrag, a=ice-pwd)"
        }
        str0m::RtcError::RemoteSdp(m) if m.contains("fingerprint") => {
            "the SDP offer lacks a DTLS fingerprint (a=fingerprint)"
        }
        str0m::RtcError::RemoteSdp(m) if m.contains("ICE-Lite") => {
            "the SDP offer is ICE-lite; the relay is ICE-lite too, so the client must do full ICE"
        }
        _ => "the relay cannot answer this SDP offer",
    };
    why.to_string()
}

/// The SDP with transport-wide congestion control removed from its audio sections (the
/// `transport-wide-cc` header extension and `transport-cc` feedback), as Firefox
/// offers it. Video sections keep it: senders size their video by it, and a video room
/// estimates each downlink with it.
///
/// Audio gains nothing from it here: Opus is sent at the rate the codec is set to, and
/// the relay estimates no downlink for it. But with it every audio connection
/// exchanged a feedback packet each way every 50 ms (str0m's fixed interval), 40 %
/// more datagrams than the audio itself, and a third of the relay's CPU at 150 calls.
/// Applied to every offer before str0m reads it and to the relay's own offers, so the
/// negotiation and str0m's view of it agree.
pub(super) fn without_audio_transport_cc(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    let mut audio = false;
    for line in sdp.split('\n') {
        let text = line.strip_suffix('\r').unwrap_or(line);
        if text.is_empty() {
            continue;
        }
        if text.starts_with("m=") {
            audio = text.starts_with("m=audio ");
        }
        if audio && is_transport_cc(text) {
            continue;
        }
        out.push_str(text);
        out.push_str("\r\n");
    }
    out
}

/// `a=extmap:<id>[/<direction>] <transport-wide-cc>` or `a=rtcp-fb:<pt> transport-cc`.
fn is_transport_cc(line: &str) -> bool {
    if let Some(rest) = line.strip_prefix("a=extmap:") {
        return rest.split_whitespace().nth(1) == Some(TRANSPORT_CC_URI);
    }
    if let Some(rest) = line.strip_prefix("a=rtcp-fb:") {
        return rest.split_whitespace().nth(1) == Some("transport-cc");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_cc_leaves_audio_sections_only() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
            a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
            a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
            a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=rtcp-fb:111 nack\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n\
            a=extmap:3/sendrecv http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
            a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 transport-cc\r\n";
        let out = without_audio_transport_cc(sdp);
        let audio = &out[out.find("m=audio").unwrap()..out.find("m=video").unwrap()];
        let video = &out[out.find("m=video").unwrap()..];
        assert!(!audio.contains("transport"), "{audio}");
        assert!(audio.contains("ssrc-audio-level") && audio.contains("a=rtcp-fb:111 nack"), "{audio}");
        assert!(video.contains("a=extmap:3/sendrecv http") && video.contains("a=rtcp-fb:96 transport-cc"));
        let gone = sdp
            .replacen(
                "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n",
                "",
                1,
            )
            .replacen("a=rtcp-fb:111 transport-cc\r\n", "", 1);
        assert_eq!(out, gone, "only those two lines go");
        // Plain `\n` line ends (some clients) come out as `\r\n`.
        assert_eq!(without_audio_transport_cc(&sdp.replace("\r\n", "\n")), out);
    }
}
