//! Forwarding: a datagram is claimed by the connection whose ICE credentials it
//! carries, and [`Relay::drive`] polls that connection and every connection its
//! packets are written to, until all of them only wait: RTP from a source goes out on
//! the line of each receiver it is routed to (one simulcast layer each), keyframe
//! requests go back to the source.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::bwe::BweKind;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output};

use super::{kind_index, Relay, DUE_NOW_MAX};
use crate::media::feeds::{ConnId, Source};
use crate::media::forward::Packet;

/// What one party's events ask of the others.
// Held in a buffer reused across packets: boxing the packet would allocate per packet.
#[allow(clippy::large_enum_variant)]
pub(super) enum Relayed {
    Rtp(Mid, Packet),
    Keyframe(Mid, KeyframeRequestKind),
}

impl Relay {
    pub(super) fn receive(
        &mut self,
        now: Instant,
        proto: Protocol,
        source: SocketAddr,
        data: &[u8],
    ) -> Option<ConnId> {
        let Ok(contents) = data.try_into() else {
            self.stats.dropped_bad_input += 1;
            return None;
        };
        // Packets are addressed to our candidate of their transport, the advertised
        // address: behind a NAT or port mapping that is not the socket's own address,
        // and ICE must see the address it announced.
        let destination = match proto {
            Protocol::Tcp => self.tcp_advertised?,
            _ => self.advertised,
        };
        let input = Input::Receive(now, Receive { proto, source, destination, contents });
        // A dead connection's address may come back as a new one's: ask `accepts` again.
        let known = self
            .by_addr
            .get(&(proto, source))
            .copied()
            .filter(|id| self.parties.get(id).is_some_and(|p| p.rtc.is_alive()));
        let id = match known {
            Some(id) => id,
            // A new address: whose ICE credentials does it carry?
            None => {
                let found = self
                    .parties
                    .iter()
                    .find(|(_, p)| p.rtc.is_alive() && p.rtc.accepts(&input))
                    .map(|(id, _)| *id);
                let Some(id) = found else {
                    self.stats.dropped_unknown_source += 1;
                    return None;
                };
                self.by_addr.insert((proto, source), id);
                id
            }
        };
        let p = self.parties.get_mut(&id)?;
        if let Err(e) = p.rtc.handle_input(input) {
            self.stats.dropped_bad_input += 1;
            tracing::debug!(sid = %p.sid, error = %e, "media input failed");
        }
        Some(id)
    }

    /// Polls connection `id` (and every connection its output writes to) until they
    /// only wait, and schedules their wake-ups.
    pub(super) fn drive(&mut self, now: Instant, id: ConnId) {
        // Reused buffers: forwarding allocates nothing of its own per packet.
        let (mut todo, mut relays) = std::mem::take(&mut self.scratch);
        todo.clear();
        todo.push(id);
        while let Some(id) = todo.pop() {
            relays.clear();
            let Some(p) = self.parties.get_mut(&id) else { continue };
            let mut due_now = 0;
            while p.rtc.is_alive() {
                match p.rtc.poll_output() {
                    // Due already: str0m stamps a written packet on a timeout before
                    // it sends it. Run it now, not a loop turn later (that was a timer
                    // turn for every forwarded packet); bounded, should a timer stay due.
                    Ok(Output::Timeout(t)) if t <= now && due_now < DUE_NOW_MAX => {
                        due_now += 1;
                        if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                            tracing::debug!(sid = %p.sid, error = %e, "media timer failed");
                        }
                    }
                    Ok(Output::Timeout(t)) => {
                        if p.wake != Some(t) {
                            if let Some(old) = p.wake.replace(t) {
                                self.wake.remove(&(old, id));
                            }
                            self.wake.insert((t, id));
                        }
                        break;
                    }
                    Ok(Output::Transmit(t)) => self.transmits.push_back(t),
                    Ok(Output::Event(e)) => match e {
                        Event::MediaAdded(m) => {
                            p.set_line(m.mid, m.kind, m.direction);
                            self.dirty.push(p.sid.clone());
                        }
                        Event::MediaChanged(m) => {
                            if let Some(kind) = p.line(m.mid).map(|l| l.kind) {
                                p.set_line(m.mid, kind, m.direction);
                                self.dirty.push(p.sid.clone());
                            }
                        }
                        Event::RtpPacket(pkt) => {
                            p.last_media = now;
                            let Some((mid, kind, rid)) = p.rx_line(pkt.header.ssrc) else {
                                self.stats.dropped_no_route += 1;
                                continue;
                            };
                            let Some(mut packet) = Packet::from_rtp(&p.rtc, pkt, kind) else { continue };
                            packet.rid = packet.rid.or(rid);
                            if kind == MediaKind::Audio {
                                if let Some(s) = self.speakers.get_mut(&p.sid) {
                                    s.heard(now, id, packet.ext.audio_level);
                                }
                            } else if packet.rid.is_some() || p.estimated {
                                let source = Source { party: id, mid };
                                self.layers.packet(now, source, packet.rid, packet.payload.len());
                            }
                            let k = kind_index(kind);
                            self.stats.packets_in[k] += 1;
                            self.stats.bytes_in[k] += packet.payload.len() as u64;
                            relays.push(Relayed::Rtp(mid, packet));
                        }
                        Event::KeyframeRequest(r) => relays.push(Relayed::Keyframe(r.mid, r.kind)),
                        Event::EgressBitrateEstimate(BweKind::Twcc { estimate, can_probe }) => {
                            p.bwe.seen(now, estimate.as_u64(), can_probe)
                        }
                        Event::EgressBitrateEstimate(BweKind::Remb { estimate, .. })
                            if p.bwe.now().is_none() =>
                        {
                            p.bwe.seen(now, estimate.as_u64(), false)
                        }
                        Event::MediaIngressStats(s) => p.net.seen(s.loss, s.rtt),
                        Event::MediaEgressStats(s) => p.net.seen(s.loss, s.rtt),
                        // ICE disconnected: the party's network may be changing. Its
                        // connection stays for an ICE restart; if media does not come
                        // back within the media timeout, the party is lost.
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                            tracing::debug!(sid = %p.sid, party = %p.key, "ICE disconnected")
                        }
                        _ => {}
                    },
                    Err(e) => {
                        tracing::debug!(sid = %p.sid, error = %e, "media session failed");
                        p.rtc.disconnect();
                    }
                }
            }
            for r in relays.drain(..) {
                match r {
                    Relayed::Rtp(mid, packet) => {
                        let source = Source { party: id, mid };
                        let Some(dests) = self.routes.get(&source) else { continue };
                        for &(o, line) in dests {
                            // A simulcast source: each receiver gets one layer.
                            if let Some(rid) = packet.rid {
                                let chosen = match self.chosen.get(&(o, source)) {
                                    Some(c) => Some(*c),
                                    None => {
                                        let pick = self.layers.pick(now, &source, self.want(o, id));
                                        if let Some(p) = pick {
                                            self.chosen.insert((o, source), p);
                                        }
                                        pick
                                    }
                                };
                                if chosen.is_some_and(|c| c != rid) {
                                    continue;
                                }
                            }
                            let Some(q) = self.parties.get_mut(&o) else { continue };
                            if !q.rtc.is_alive() {
                                continue;
                            }
                            let k = kind_index(packet.kind);
                            if q.tx_lines.write(&mut q.rtc, line, &packet) {
                                self.stats.packets_out[k] += 1;
                                self.stats.bytes_out[k] += packet.payload.len() as u64;
                            } else {
                                self.stats.dropped_no_route += 1;
                            }
                            if !todo.contains(&o) {
                                todo.push(o);
                            }
                        }
                    }
                    Relayed::Keyframe(mid, kind) => {
                        // A receiver lost video: ask the line's source for a keyframe.
                        let source = self.parties.get(&id).and_then(|p| p.line(mid)).and_then(|l| l.feed);
                        let Some(source) = source else { continue };
                        let rids = match self.chosen.get(&(id, source)) {
                            Some(r) => vec![*r],
                            None => self.layers.rids(&source),
                        };
                        let Some(q) = self.parties.get_mut(&source.party) else { continue };
                        if q.request_keyframe(source.mid, &rids, kind) {
                            self.stats.keyframe_requests += 1;
                        }
                        if !todo.contains(&source.party) {
                            todo.push(source.party);
                        }
                    }
                }
            }
        }
        self.scratch = (todo, relays);
    }
}
