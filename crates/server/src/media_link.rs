//! What the core and the media relay say to each other, in one leaf module both use:
//! the commands the core sends ([`MediaCmd`]) and the events the relay reports
//! ([`RelayEvent`]), about the parties of a media session ([`PartyKey`]). The core
//! emits and takes these as they are (no translation in between); the relay shards
//! run them.

use std::fmt;

use switchboard_protocol::{MediaLine, MediaType};

use crate::ids::{SessionId, Sid};

/// A party of a media session: a side of a 1-to-1 call, or a room member (by user ID).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartyKey {
    /// The caller of a 1-to-1 call.
    Caller,
    /// The callee of a 1-to-1 call (its answering device).
    Callee,
    /// A room participant, by its user ID.
    Member(String),
}

impl PartyKey {
    /// The user ID of a room member (what a room's clients know it by).
    pub fn member(&self) -> Option<&str> {
        match self {
            PartyKey::Member(user) => Some(user),
            _ => None,
        }
    }
}

impl fmt::Display for PartyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartyKey::Caller => f.write_str("caller"),
            PartyKey::Callee => f.write_str("callee"),
            PartyKey::Member(user) => f.write_str(user),
        }
    }
}

/// Where the relay's answer to an offer goes: the session that sent it, echoing its
/// request number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The session.
    pub session: SessionId,
    /// Its request number.
    pub req: Option<u64>,
}

/// Commands to the relay.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaCmd {
    /// A party's SDP offer; the relay answers with [`RelayEvent::Answer`] carrying
    /// `reply`. An offer with the ICE credentials of the party's current connection
    /// renegotiates it (a line added or changed); other offers replace the party's
    /// connection (a reconnect).
    Offer {
        /// The session.
        sid: Sid,
        /// The party.
        party: PartyKey,
        /// The offer.
        sdp: String,
        /// Where the answer goes.
        reply: Reply,
    },
    /// A party's answer to the relay's offer ([`RelayEvent::Offer`]).
    Answer {
        /// The session.
        sid: Sid,
        /// The party.
        party: PartyKey,
        /// The offer answered; an answer to an older one is ignored.
        offer_id: u64,
        /// The answer.
        sdp: String,
    },
    /// A party wants to send `kind` and has no line for it: the relay adds a `sendrecv`
    /// line and offers it ([`RelayEvent::Offer`]).
    AddLine {
        /// The session.
        sid: Sid,
        /// The party.
        party: PartyKey,
        /// Audio or video.
        kind: MediaType,
    },
    /// `party` receives video only from the parties in `from` (a room participant's
    /// requested peers). May come before the party's first offer.
    VideoFrom {
        /// The session.
        sid: Sid,
        /// The receiving party.
        party: PartyKey,
        /// The parties whose video it wants, with the size asked for (`qvga`, `vga`,
        /// `hd`): the simulcast layer it gets when the sender sends several.
        from: Vec<(PartyKey, Option<String>)>,
    },
    /// A room: forward only the `speakers` loudest speakers and report audio levels.
    /// Comes before any offer (it places the session).
    Room {
        /// The session.
        sid: Sid,
        /// Most speakers forwarded at once.
        speakers: usize,
        /// A video room: its connections estimate their downlink (for simulcast).
        video: bool,
    },
    /// A party left a session that goes on.
    Leave {
        /// The session.
        sid: Sid,
        /// The party.
        party: PartyKey,
    },
    /// The session is over.
    End {
        /// The session.
        sid: Sid,
    },
}

impl MediaCmd {
    /// The session the command is about.
    pub fn sid(&self) -> &Sid {
        match self {
            MediaCmd::Offer { sid, .. }
            | MediaCmd::Answer { sid, .. }
            | MediaCmd::AddLine { sid, .. }
            | MediaCmd::VideoFrom { sid, .. }
            | MediaCmd::Room { sid, .. }
            | MediaCmd::Leave { sid, .. }
            | MediaCmd::End { sid } => sid,
        }
    }
}

/// What the relay tells the core.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayEvent {
    /// The relay's answer to a party's offer ([`MediaCmd::Offer`]), or why the offer was
    /// refused (in our words), for the session and request of `reply`.
    Answer {
        /// The session.
        sid: Sid,
        /// The party.
        party: PartyKey,
        /// Where it goes.
        reply: Reply,
        /// The SDP answer, or what was wrong with the offer.
        result: Result<String, String>,
    },
    /// The relay needs lines added to a party's connection (another party sends more
    /// than it can receive): send this offer to the party and pass back its answer with
    /// [`MediaCmd::Answer`].
    Offer {
        /// The session.
        sid: Sid,
        /// The party.
        party: PartyKey,
        /// Identifies this offer; the answer carries it back.
        offer_id: u64,
        /// The offer.
        sdp: String,
    },
    /// A party's media stopped past the media timeout.
    Lost {
        /// The session.
        sid: Sid,
        /// The party.
        party: PartyKey,
    },
    /// Every party's network quality in a room (0 unknown, 1 excellent … 6 down), every
    /// 2 s.
    Quality {
        /// The session.
        sid: Sid,
        /// Party and grade.
        quality: Vec<(PartyKey, u8)>,
    },
    /// Every party's audio level in a room (0-100) and whether it talks, every 500 ms.
    Levels {
        /// The session.
        sid: Sid,
        /// Party, level, talking.
        levels: Vec<(PartyKey, u8, bool)>,
    },
    /// Which of a party's lines carry which other party's media changed (a room
    /// participant's client learns whose media each line is).
    Lines {
        /// The session.
        sid: Sid,
        /// The party.
        party: PartyKey,
        /// Every line that carries a source now, with the source's user ID.
        lines: Vec<MediaLine>,
    },
}
