//! Which media line of each party carries which other party's media (a *feed*).
//!
//! Every party of a media session sends on some lines and receives on some lines; a
//! line can do both (a browser's `sendrecv` audio). For every line a party sends on
//! (a *source*), every other party needs one line of the same kind on which the relay
//! sends to it, carrying that source alone. A party's own lines are used first (in a
//! 1-to-1 call each party's `sendrecv` lines carry the other's media, with no
//! renegotiation); when a party runs out, the relay adds `sendonly` lines to its
//! session and offers them to it. Lines whose source left are reused by the next one.
//!
//! This part is pure: it is given the lines and says what to change.

use std::collections::HashMap;

use str0m::media::{Direction, MediaKind, Mid};

/// One media line of a party's session, with directions as the relay sees them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Line {
    pub mid: Mid,
    pub kind: MediaKind,
    pub dir: Direction,
    /// The source this line carries to the party, if any.
    pub feed: Option<Source>,
}

/// One WebRTC connection of the relay (a party's), by the relay's own number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A line some party sends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Source {
    pub party: ConnId,
    pub mid: Mid,
}

/// The relay can send to the party on lines in these directions.
pub(crate) fn relay_sends(dir: Direction) -> bool {
    matches!(dir, Direction::SendOnly | Direction::SendRecv)
}

/// The party sends to the relay on lines in these directions.
pub(crate) fn relay_receives(dir: Direction) -> bool {
    matches!(dir, Direction::RecvOnly | Direction::SendRecv)
}

/// Whether a receiver wants a source: `(receiver, source party, kind)`. In a call every
/// party gets everything; in a room video goes only to those who asked for it.
pub(crate) type Wants<'a> = &'a dyn Fn(ConnId, ConnId, MediaKind) -> bool;

/// Everyone wants everything.
#[cfg(test)]
pub(crate) fn everything(_: ConnId, _: ConnId, _: MediaKind) -> bool {
    true
}

/// Assigns every source of every party to a line of each other party that wants it.
/// Returns, per party, the kinds of the lines it still lacks (to be added and offered
/// to it).
pub(crate) fn assign(
    parties: &mut [(ConnId, &mut Vec<Line>)],
    wants: Wants,
) -> HashMap<ConnId, Vec<MediaKind>> {
    let sources: Vec<(Source, MediaKind)> = parties
        .iter()
        .flat_map(|(party, lines)| {
            lines
                .iter()
                .filter(|l| relay_receives(l.dir))
                .map(|l| (Source { party: *party, mid: l.mid }, l.kind))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut needs: HashMap<ConnId, Vec<MediaKind>> = HashMap::new();
    for (party, lines) in parties.iter_mut() {
        for line in lines.iter_mut() {
            let gone = line.feed.is_some_and(|f| !sources.iter().any(|(s, _)| *s == f));
            let unwanted = line.feed.is_some_and(|f| !wants(*party, f.party, line.kind));
            if gone || unwanted || !relay_sends(line.dir) {
                line.feed = None;
            }
        }
        let wanted = sources.iter().filter(|(s, kind)| s.party != *party && wants(*party, s.party, *kind));
        for (source, kind) in wanted {
            if lines.iter().any(|l| l.feed == Some(*source)) {
                continue;
            }
            match lines.iter_mut().find(|l| l.kind == *kind && relay_sends(l.dir) && l.feed.is_none()) {
                Some(line) => line.feed = Some(*source),
                None => needs.entry(*party).or_default().push(*kind),
            }
        }
    }
    needs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(mid: &str, kind: MediaKind, dir: Direction) -> Line {
        Line { mid: Mid::from(mid), kind, dir, feed: None }
    }

    fn src(party: u64, mid: &str) -> Option<Source> {
        Some(Source { party: ConnId(party), mid: Mid::from(mid) })
    }

    #[test]
    fn one_to_one_uses_each_others_own_lines() {
        let mut a = vec![
            line("0", MediaKind::Audio, Direction::SendRecv),
            line("1", MediaKind::Video, Direction::SendRecv),
        ];
        let mut b = vec![
            line("0", MediaKind::Audio, Direction::SendRecv),
            line("1", MediaKind::Video, Direction::SendRecv),
        ];
        let needs = assign(&mut [(ConnId(1), &mut a), (ConnId(2), &mut b)], &everything);
        assert!(needs.is_empty());
        assert_eq!(a[0].feed, src(2, "0"));
        assert_eq!(a[1].feed, src(2, "1"));
        assert_eq!(b[0].feed, src(1, "0"));
        assert_eq!(b[1].feed, src(1, "1"));
    }

    #[test]
    fn a_third_party_needs_new_lines_and_leaving_frees_them() {
        let mut a = vec![line("0", MediaKind::Audio, Direction::SendRecv)];
        let mut b = vec![line("0", MediaKind::Audio, Direction::SendRecv)];
        let mut c = vec![line("0", MediaKind::Audio, Direction::SendRecv)];
        let needs = assign(&mut [(ConnId(1), &mut a), (ConnId(2), &mut b), (ConnId(3), &mut c)], &everything);
        assert_eq!(needs.len(), 3);
        assert!(needs.values().all(|k| k == &[MediaKind::Audio]));
        // The relay added a sendonly line to each; now everyone hears both others.
        for l in [&mut a, &mut b, &mut c] {
            l.push(line("s1", MediaKind::Audio, Direction::SendOnly));
        }
        assert!(assign(&mut [(ConnId(1), &mut a), (ConnId(2), &mut b), (ConnId(3), &mut c)], &everything)
            .is_empty());
        let fed = |l: &Vec<Line>| l.iter().filter_map(|x| x.feed.map(|f| f.party)).collect::<Vec<_>>();
        assert_eq!(fed(&a).len(), 2);
        assert!(fed(&a).contains(&ConnId(2)) && fed(&a).contains(&ConnId(3)));
        // C leaves: its feeds are freed; a newcomer D reuses them without renegotiation.
        let mut d = vec![line("0", MediaKind::Audio, Direction::SendRecv)];
        d.push(line("s1", MediaKind::Audio, Direction::SendOnly));
        assert!(assign(&mut [(ConnId(1), &mut a), (ConnId(2), &mut b), (ConnId(4), &mut d)], &everything)
            .is_empty());
        assert!(fed(&a).contains(&ConnId(4)) && !fed(&a).contains(&ConnId(3)));
    }

    #[test]
    fn audio_only_party_is_offered_video_when_the_other_sends_it() {
        let mut a = vec![
            line("0", MediaKind::Audio, Direction::SendRecv),
            line("1", MediaKind::Video, Direction::SendRecv),
        ];
        let mut b = vec![line("0", MediaKind::Audio, Direction::SendRecv)];
        let needs = assign(&mut [(ConnId(1), &mut a), (ConnId(2), &mut b)], &everything);
        assert_eq!(needs.get(&ConnId(2)), Some(&vec![MediaKind::Video]));
        assert_eq!(needs.get(&ConnId(1)), None);
        // Receive-only and inactive lines are not sources, and are not fed when inactive.
        let mut c = vec![
            line("0", MediaKind::Audio, Direction::SendOnly),
            line("1", MediaKind::Audio, Direction::Inactive),
        ];
        let needs = assign(&mut [(ConnId(1), &mut a), (ConnId(3), &mut c)], &everything);
        assert_eq!(c[0].feed, src(1, "0"));
        assert_eq!(c[1].feed, None);
        assert_eq!(a[0].feed, None, "c sends nothing");
        assert_eq!(needs.get(&ConnId(3)), Some(&vec![MediaKind::Video]));
    }
}
