//! Deciding a flow's verdict: the per-packet fast path for settled flows
//! (one atomic load), and the slow path (inspection, catalog, rules,
//! behaviour) run under the flow's own lock, never a table lock.

use super::budget::{Holder, Refusals, Reservation};
use super::ctx::PacketCtx;
use super::decided_by::DecidedBy;
use super::dns_stream::learn_dns_stream;
use super::inspect::{DpiState, Media};
use super::matcher::{Answer, AppId, FlowFacts};
use super::state::{ClassCell, FlowClass};
use super::{Classifier, NameLookup, Verdict, dpi, ip_of};
use crate::config::{CategoryId, Direction};
use crate::flow::Flow;
use crate::packet::FrameKind;

/// Bytes of one direction between two looks at the other's count, for
/// the volume heuristic (see `Classifier::volume_reached`).
pub const VOLUME_CHECK_BYTES: u64 = 64 * 1024;

impl Classifier {
    /// Classifies the packet of `ctx` in `flow` (which the flow table has
    /// counted it in). The fast path, for a settled flow, is one atomic
    /// load and a comparison; the rest runs under the flow's own lock.
    #[inline]
    pub fn classify(
        &self,
        flow: &Flow<ClassCell>,
        ctx: &PacketCtx<'_, '_>,
        names: &dyn NameLookup,
    ) -> Verdict {
        let pkt = ctx.pkt;
        // DNS answers teach names for flows to come, whatever this flow's
        // state (resolvers reuse one port for many queries).
        let mut refused = Refusals::default();
        if pkt.src_port == 53 && !pkt.payload.is_empty() {
            match pkt.protocol {
                17 => names.learn(pkt.payload, ctx.now),
                // Truncated UDP answers are retried over TCP (RFC 7766).
                6 => {
                    let mut state = flow.value.lock();
                    refused = learn_dns_stream(
                        &mut state.dns_stream,
                        pkt.payload,
                        names,
                        ctx.now,
                        &self.budget,
                    );
                    forget_if_retired(&mut state, flow);
                }
                _ => {}
            }
        }
        let p = flow.value.published();
        let len = pkt.frame_len as u64;
        let mut verdict = if p.settled
            && p.generation == self.generation
            && !(p.watch_volume && self.volume_reached(flow, ctx.dir, len))
            && !(p.watch_media && Self::media_check_due(flow.bytes(ctx.dir), len))
        {
            Verdict {
                category: ctx.dir.pick(p.category),
                flow_category: p.category,
                app: p.app,
                decided: None,
                refused: Refusals::default(),
            }
        } else {
            self.locked_path(flow, ctx, names)
        };
        verdict.refused.merge(refused);
        // A Zoom media connection carries a meeting's audio, video and
        // screen share together: each datagram says which, so its audio
        // is voice and the rest video, packet by packet.
        if verdict.app.is_some()
            && verdict.app == self.zoom_media
            && self.targets.is_media(verdict.category)
            && let Some(m) = dpi::zoom::media(pkt.payload)
            && let Some(cat) = match m {
                dpi::zoom::ZoomMedia::Audio => self.targets.voice,
                dpi::zoom::ZoomMedia::Video | dpi::zoom::ZoomMedia::Share => self.targets.video,
            }
        {
            verdict.category = cat;
        }
        verdict
    }

    /// The verdict under the flow's lock: what was published may be out of
    /// date by now (the other direction's thread, perhaps still on the
    /// previous classifier, or a reset, went first), so the state decides.
    #[cold]
    fn locked_path(
        &self,
        flow: &Flow<ClassCell>,
        ctx: &PacketCtx<'_, '_>,
        names: &dyn NameLookup,
    ) -> Verdict {
        let mut state = flow.value.lock();
        let verdict = if state.settled && state.generation == self.generation {
            let len = ctx.pkt.frame_len as u64;
            if state.watch_volume && self.volume_reached(flow, ctx.dir, len) {
                self.volume_switch(&mut state, ctx.dir)
            } else {
                let own = flow.bytes(ctx.dir);
                if state.media_watch.is_some() && Self::media_check_due(own, len) {
                    let packets = flow.packets(ctx.dir);
                    self.media_recheck(&mut state, ctx.dir, ctx.now, own, packets);
                }
                Verdict {
                    category: ctx.dir.pick(state.category),
                    flow_category: state.category,
                    app: state.app,
                    decided: None,
                    refused: Refusals::default(),
                }
            }
        } else {
            self.slow_path(&mut state, flow, ctx, names)
        };
        forget_if_retired(&mut state, flow);
        flow.value.publish(&state);
        verdict
    }

    /// The flow carried `bulk_after_bytes`, counting the packet of `len`
    /// bytes just recorded travelling `dir`. The other direction's count
    /// sits on a cache line the other thread writes on every packet: it is
    /// read only when this direction's count crosses a multiple of
    /// [`VOLUME_CHECK_BYTES`], so a flow whose volume is split between the
    /// directions switches at most that much of this direction's traffic
    /// late (the threshold is tens of megabytes).
    #[inline]
    fn volume_reached(&self, flow: &Flow<ClassCell>, dir: Direction, len: u64) -> bool {
        let own = flow.bytes(dir);
        own >= self.bulk_after_bytes
            || (own / VOLUME_CHECK_BYTES != own.saturating_sub(len) / VOLUME_CHECK_BYTES
                && flow.total_bytes() >= self.bulk_after_bytes)
    }

    /// A settled flow of this generation that reached the volume
    /// threshold: bulk from now on, unless the other direction's thread
    /// switched it already.
    fn volume_switch(&self, c: &mut FlowClass, dir: Direction) -> Verdict {
        let switch = c.watch_volume;
        c.watch_volume = false;
        let mut decided = None;
        if switch && let Some(bulk) = self.targets.bulk {
            c.category = [bulk; 2];
            c.decided_by = DecidedBy::Volume;
            decided = Some(DecidedBy::Volume);
        }
        Verdict {
            category: dir.pick(c.category),
            flow_category: c.category,
            app: c.app,
            decided,
            refused: Refusals::default(),
        }
    }

    fn slow_path(
        &self,
        c: &mut FlowClass,
        flow: &Flow<ClassCell>,
        ctx: &PacketCtx<'_, '_>,
        names: &dyn NameLookup,
    ) -> Verdict {
        let (key, pkt, dir, now) = (&ctx.key, ctx.pkt, ctx.dir, ctx.now);
        let initiator = flow.initiator();
        // The LAN side of the flow: an upload packet's source.
        let lan = match dir {
            Direction::Upload => (pkt.src, pkt.src_port),
            Direction::Download => (pkt.dst, pkt.dst_port),
        };
        let base = ctx.facts(initiator);
        let was_settled = c.settled && c.generation != 0;
        let fresh_generation = c.generation != self.generation;
        // After a reload, a flow that was already settled keeps its facts
        // (host, media) and is not inspected again: its packets are now
        // mid-stream and would only mislead the parsers.
        let reloaded_settled = fresh_generation && c.generation != 0 && c.settled;
        if fresh_generation {
            // New flow, or a reload: (re)derive what the tuple says.
            c.generation = self.generation;
            c.settled = false;
            c.sig_app = self.catalog.app_for_tuple(&base);
            c.inherited = None;
            if c.host.is_none() {
                // A name the client resolved for the server (or, for flows
                // seen from the middle, for the initiator).
                let (src, _) = key.endpoint(initiator);
                let (dst, _) = key.endpoint(initiator.other());
                if let Some(name) = names
                    .name_of(ip_of(dst), now)
                    .or_else(|| names.name_of(ip_of(src), now))
                {
                    c.host = Some(Box::from(&*name));
                    c.host_source = DecidedBy::Dns;
                }
            }
            // UDP that nothing names, from a LAN endpoint a call just
            // used: the call's media, gone peer to peer or to a relay.
            if key.protocol == 17
                && c.sig_app.is_none()
                && c.host.is_none()
                && let Some((app, cat)) = self.endpoints.recall(lan.0, lan.1, now)
            {
                c.sig_app = Some((app, DecidedBy::Endpoint));
                c.inherited = Some(cat);
            }
        }

        if pkt.l2_group && ctx.side == initiator {
            c.l2_group = true;
        }
        let mut refused = Refusals::default();
        let mut dpi_done = !matches!(key.protocol, 6 | 17) || pkt.kind != FrameKind::Ip;
        if !dpi_done && !c.settled && !reloaded_settled {
            let from_initiator = ctx.side == initiator;
            // The state is reserved before it is allocated; when the budget
            // is spent, this packet is inspected with state that lives only
            // on the stack (a ClientHello in one segment is still read).
            let mut one_packet;
            let state: &mut DpiState = match &mut c.dpi {
                Some(state) => state,
                // A packet without payload (a SYN, a bare ACK) teaches a
                // fresh state nothing and leaves it as it was: no state is
                // kept for it, so a flood of SYNs holds no inspection
                // memory and each costs no allocation.
                None if pkt.payload.is_empty() => {
                    one_packet = DpiState::new(Reservation::none());
                    &mut one_packet
                }
                slot => match Reservation::new(&self.budget, size_of::<DpiState>()) {
                    Some(res) => slot.insert(Box::new(DpiState::new(res))),
                    None => {
                        refused.add(Holder::Flow);
                        one_packet = DpiState::new(Reservation::none());
                        &mut one_packet
                    }
                },
            };
            let found = state.inspect(key.protocol, pkt, from_initiator, now, &self.catalog, &base);
            if let Some((host, how)) = found.host
                && how.strength(key.protocol) >= c.host_source.strength(key.protocol)
            {
                c.host = Some(host);
                c.host_source = how;
            }
            // A payload prefix is the strongest signature; the first one stays.
            if let Some(app) = found.payload_app
                && c.sig_app.is_none_or(|(_, how)| how != DecidedBy::Payload)
            {
                c.sig_app = Some((app, DecidedBy::Payload));
            }
            // An HTTP signature ranks with the payload prefix; the payload's
            // (read first, on the request line) stays when both match.
            if let Some(app) = found.http_app
                && c.sig_app
                    .is_none_or(|(_, how)| !matches!(how, DecidedBy::Payload | DecidedBy::Http))
            {
                c.sig_app = Some((app, DecidedBy::Http));
            }
            if found.media != Media::None {
                c.media = found.media;
            }
            dpi_done = found.done;
            refused.merge(found.refused);
            c.inspected = c.inspected.saturating_add(1);
        }
        let settled =
            c.settled || reloaded_settled || dpi_done || c.inspected >= self.inspect_packets;

        // The app: host names beat signatures.
        let host_app = c
            .host
            .as_deref()
            .and_then(|h| self.catalog.app_for_host(h))
            .map(|a| (a, c.host_source));
        let identified = match (host_app, c.sig_app) {
            (Some(h), Some(s)) if s.1.strength(key.protocol) > h.1.strength(key.protocol) => {
                Some(s)
            }
            (Some(h), _) => Some(h),
            (None, s) => s,
        };
        c.app = identified.map(|(a, _)| a);

        let host = c.host.as_deref();
        let mut decisive = true;
        let mut out = [(self.default, DecidedBy::Default); 2];
        for d in Direction::BOTH {
            let facts = FlowFacts {
                direction: d,
                host,
                app: c.app,
                settled,
                ..base
            };
            let (v, sure) = self.decide(
                &facts,
                identified,
                c.inherited,
                c.media,
                pkt.dscp,
                c.l2_group,
            );
            decisive &= sure;
            *d.pick_mut(&mut out) = v;
        }
        c.category = [out[0].0, out[1].0];
        c.decided_by = dir.pick(out).1;
        c.settled = settled || decisive;
        // A call's app and category, for the flows its LAN endpoint opens
        // next (refreshed by each packet the slow path sees).
        if key.protocol == 17
            && let Some(app) = c.app
            && let Some(cat) = c.category.into_iter().find(|c| self.targets.is_media(*c))
        {
            self.endpoints.remember(lan.0, lan.1, app, cat, now);
        }
        if c.settled {
            c.dpi = None;
            c.watch_volume = matches!(c.decided_by, DecidedBy::Default | DecidedBy::Discovery)
                && self.targets.bulk.is_some();
            // A UDP call's direction that behaviour or the catalog put in
            // voice or video is watched for what it turns into; an
            // admin's rule or a trusted DSCP mark is left as decided.
            c.media_watch = None;
            if key.protocol == 17 && self.targets.voice.is_some() && self.targets.video.is_some() {
                for d in Direction::BOTH {
                    let (cat, how) = d.pick(out);
                    if self.targets.is_media(cat)
                        && !matches!(how, DecidedBy::Rule(_) | DecidedBy::Dscp)
                    {
                        c.media_watch.get_or_insert_default().start(
                            d,
                            now,
                            flow.bytes(d),
                            flow.packets(d),
                        );
                    }
                }
            }
        }
        Verdict {
            category: dir.pick(c.category),
            flow_category: c.category,
            app: c.app,
            decided: (c.settled && !was_settled).then_some(c.decided_by),
            refused,
        }
    }

    /// The verdict for one direction, and whether nothing learned later
    /// could change it (a rule matched before any rule that waits for a
    /// host name or app).
    fn decide(
        &self,
        facts: &FlowFacts<'_>,
        identified: Option<(AppId, DecidedBy)>,
        inherited: Option<CategoryId>,
        media: Media,
        dscp: u8,
        l2_group: bool,
    ) -> ((CategoryId, DecidedBy), bool) {
        let mut waiting = false;
        for (i, (m, cat)) in self.rules.iter().enumerate() {
            match m.eval(facts) {
                Answer::Yes => {
                    let sure = !waiting && !m.per_packet();
                    return (
                        (*cat, DecidedBy::Rule(u16::try_from(i).unwrap_or(u16::MAX))),
                        sure,
                    );
                }
                Answer::NotYet => waiting = true,
                Answer::No => {}
            }
        }
        let _ = self.rules_need_identity;
        // UDP to every host or to a group: the LAN's own traffic.
        // (A subnet's broadcast address shows only in the frame's group
        // destination MAC.)
        let to_group = facts.protocol == 17 && (is_group(facts.dst) || l2_group);
        // Real-time media in a UDP flow whose app is only known from a DNS
        // name (the conferencing service's server) or from the LAN
        // endpoint a call used is the call itself.
        let media_over_name = media != Media::None
            && facts.protocol == 17
            && identified
                .is_some_and(|(_, how)| matches!(how, DecidedBy::Dns | DecidedBy::Endpoint));
        if let Some((app, how)) = identified
            && !media_over_name
            && let Some(cat) = inherited
                .filter(|_| how == DecidedBy::Endpoint)
                .or_else(|| self.catalog.app(app).and_then(|a| a.category))
        {
            // An app known by its port alone, sending to every host or a
            // group, is announcing itself on the LAN (a sync client's or a
            // player's discovery), not doing its business.
            if how == DecidedBy::Port
                && to_group
                && let Some(control) = self.targets.control
                && control != cat
            {
                return ((control, DecidedBy::Discovery), false);
            }
            return ((cat, how), false);
        }
        let media_target = match media {
            Media::None => None,
            Media::Rtp { video } | Media::Isochronous { video } => {
                let how = if matches!(media, Media::Rtp { .. }) {
                    DecidedBy::Rtp
                } else {
                    DecidedBy::Heuristic
                };
                let cat = if video {
                    self.targets.video.or(self.targets.voice)
                } else {
                    self.targets.voice
                };
                cat.map(|c| (c, how))
            }
            Media::Stun => self.targets.voice.map(|c| (c, DecidedBy::Stun)),
            Media::Dtls => self.targets.voice.map(|c| (c, DecidedBy::Dtls)),
        };
        if let Some(v) = media_target {
            return (v, false);
        }
        if self.trust_dscp
            && let Some(cat) = match dscp {
                46 | 44 => self.targets.voice,
                32..=38 => self.targets.video,
                1 | 8 => self.targets.bulk,
                _ => None,
            }
        {
            return ((cat, DecidedBy::Dscp), false);
        }
        // UDP to every host or to a group that nothing above named (media
        // was: RTP, MPEG-TS, the catalog): the LAN's discovery and
        // housekeeping (SSDP-alikes, LAN sync, casting, game and printer
        // discovery). Small; a flow of it that grows goes to bulk by
        // volume like a default one.
        if to_group && let Some(cat) = self.targets.control {
            return ((cat, DecidedBy::Discovery), false);
        }
        ((self.default, DecidedBy::Default), false)
    }
}

/// A flow retired from the table while this thread held it (its reset ran
/// before this thread took the lock: retiring marks the flow dead first)
/// must not keep the inspection state this packet just gave it: nothing
/// would reset it again, and it would hold the shared DPI budget until the
/// thread's cache let go of the flow.
fn forget_if_retired(state: &mut FlowClass, flow: &Flow<ClassCell>) {
    if !flow.is_alive() {
        state.dpi = None;
        state.dns_stream = None;
    }
}

/// A broadcast or multicast destination: IPv4 255.255.255.255 or
/// 224.0.0.0/4 (as an IPv4-mapped address), or IPv6 ff00::/8.
pub(super) fn is_group(addr: u128) -> bool {
    if addr >> 32 == 0xffff {
        let v4 = addr as u32;
        v4 == u32::MAX || v4 >> 28 == 0xe
    } else {
        addr >> 120 == 0xff
    }
}
