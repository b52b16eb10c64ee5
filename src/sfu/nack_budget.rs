//! Receivers' RTCP feedback before the core's NACK responder sees it: a retransmission budget
//! per outgoing stream, keyframe requests for holes no retransmission can fill, and tallies
//! of what receivers report.
//!
//! Owns: the per-stream budget rules ([`StreamBudget`], also used by the session for the
//! video it sends itself, `direct_video`) and an interceptor between the wire and the
//! responder that (0) hands PLI/FIR, NACKs and transport-wide feedback to the application,
//! (1) trims Generic NACKs
//! (RFC 4585) to a token budget earned by the stream's own media packets and (2) counts the
//! NACKs, the worst receiver-report loss fraction and the congestion controller's target
//! bitrate into a [`FeedbackTally`] its session reads (the `rtc` 0.21.1 core never feeds
//! inbound RTCP into its own statistics, and reports the estimate only in full reports), and
//! (3) turns a NACK that keeps asking for a packet the responder cannot resend into a PLI
//! for the application ([`SentWindow`] knows what was sent). Measured in the browser loss
//! test: a Chromium publisher stopped answering our NACKs for a while, and both viewers NACKed
//! the same holes for 2 s and longer after the loss ended, requesting no keyframe themselves.
//!
//! Why the budget: Without it a
//! receiver on a congested link asks for every packet the congestion dropped, the
//! retransmissions take the link's whole capacity, and more packets drop: measured with
//! Chromium behind a 1.2 Mbit/s limit, a simulcast viewer already switched to the 0.5 Mbit/s
//! layer stayed saturated by retransmissions for 13 s and decoded almost nothing. Libwebrtc
//! senders cap retransmissions the same way (a rate limiter); pion's responder, which
//! upstream uses, does not.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use rustc_hash::FxHashMap as HashMap;

use super::sent_window::SentWindow;

/// Retransmissions earned per media packet sent: a quarter of the stream's packet rate.
pub const RETRANSMIT_SHARE: f64 = 0.25;
/// Most retransmissions one stream can save up (a lost keyframe is a burst).
pub const MAX_SAVED: f64 = 128.0;
/// Unanswerable NACKs of one stream become a keyframe request at most this often.
pub const KEYFRAME_ASK_INTERVAL: Duration = Duration::from_secs(1);
/// How long a receiver may ask for a packet we lack before we give up on it with the
/// receiver: our own NACKs to the publisher ask 10 times, 100 ms apart
/// (`engine::MAX_NACKS_PER_PACKET`).
pub const HOLE_GRACE: Duration = Duration::from_millis(1_200);
/// Holes not asked for again within this long are forgotten (the receiver gave up too).
pub const HOLE_FORGET: Duration = Duration::from_secs(10);
/// Holes remembered per stream.
pub const MAX_HOLES: usize = 32;

/// What one session's receiver reported since the session last took it.
#[derive(Debug, Default)]
pub struct FeedbackTally {
    /// Generic NACK packets received for our streams.
    nacks: AtomicU64,
    /// Worst `fraction lost` (1/256 units) of the receiver's reports about our streams.
    worst_fraction_lost: AtomicU32,
    /// The congestion controller's latest target bitrate (f64 bits; 0 = none yet). It passes
    /// this interceptor as a packet attribute, so the session reads it without building a
    /// statistics report.
    estimate_bits: AtomicU64,
}

impl FeedbackTally {
    /// NACKs received and the worst reported loss fraction since the last call.
    pub fn take(&self) -> (u64, f64) {
        let nacks = self.nacks.swap(0, Ordering::Relaxed);
        let lost = self.worst_fraction_lost.swap(0, Ordering::Relaxed);
        (nacks, f64::from(lost) / 256.0)
    }

    /// The send-side bandwidth estimate, once the congestion controller has set one.
    pub fn estimate(&self) -> Option<f64> {
        let bits = self.estimate_bits.load(Ordering::Relaxed);
        (bits != 0).then(|| f64::from_bits(bits))
    }

    fn report_loss(&self, fraction_lost: u8) {
        self.worst_fraction_lost
            .fetch_max(u32::from(fraction_lost), Ordering::Relaxed);
    }
}

/// The interceptor. Put it below `Slot::NackResponder` so it reads NACKs first.
pub struct NackBudget {
    tally: Arc<FeedbackTally>,
    /// Budget, sent window and holes per outgoing media SSRC.
    streams: HashMap<u32, StreamBudget>,
    /// Requested packets refused for lack of budget.
    refused: Counter,
    /// Sequence numbers the responder keeps per stream (`rtc.nack_buffer_size`).
    window: u16,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl NackBudget {
    /// `window`: the responder's history size per stream.
    pub fn new(refused: Counter, tally: Arc<FeedbackTally>, window: u16) -> Self {
        Self {
            tally,
            streams: HashMap::default(),
            refused,
            window,
            reads: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }

    /// A PLI for the application when `nack` asks for a packet that will never be resent
    /// (see [`StreamBudget::keyframe_instead`]).
    fn keyframe_instead(
        &mut self,
        now: Instant,
        nack: &TransportLayerNack,
    ) -> Option<PictureLossIndication> {
        let stream = self.streams.get_mut(&nack.media_ssrc)?;
        if !stream.sent_any || !stream.keyframe_instead(now, nack) {
            return None;
        }
        Some(PictureLossIndication {
            sender_ssrc: nack.sender_ssrc,
            media_ssrc: nack.media_ssrc,
        })
    }

    /// The NACK as far as the budget of its stream goes. Streams the core never sent a
    /// packet on (the session sends them itself, see `direct_video`) are not this
    /// interceptor's to trim: their NACKs reach the session whole.
    fn trim(&mut self, nack: &TransportLayerNack) -> Trimmed {
        match self.streams.get_mut(&nack.media_ssrc) {
            Some(stream) if stream.sent_any => stream.trim(nack, &self.refused),
            _ => Trimmed::Whole, // not one of our streams: the core decides
        }
    }
}

/// The retransmission budget, sent window and unanswerable holes of one outgoing stream:
/// kept by the interceptor for streams the core sends, and by the session for the ones it
/// sends itself (`direct_video`).
#[derive(Debug, Clone)]
pub struct StreamBudget {
    /// Retransmissions allowed now.
    tokens: f64,
    /// What can be resent (streams with NACK feedback only).
    sent: Option<SentWindow>,
    /// Whether any packet was sent on the stream.
    sent_any: bool,
    /// When an unanswerable NACK last turned into a keyframe request.
    last_keyframe_ask: Option<Instant>,
    /// Packets receivers asked for that we cannot resend, with when they first did.
    holes: Vec<(u16, Instant)>,
}

impl StreamBudget {
    /// A stream's budget; `window`: the sequence numbers kept for resending, for streams
    /// with NACK feedback.
    pub fn new(window: Option<u16>) -> Self {
        Self::with_tokens(MAX_SAVED / 4.0, window.map(SentWindow::new))
    }

    fn with_tokens(tokens: f64, sent: Option<SentWindow>) -> Self {
        Self {
            tokens,
            sent,
            sent_any: false,
            last_keyframe_ask: None,
            holes: Vec::new(),
        }
    }

    /// A media packet was sent: it earns retransmissions and can be resent.
    pub fn on_sent(&mut self, seq: u16) {
        self.sent_any = true;
        self.tokens = (self.tokens + RETRANSMIT_SHARE).min(MAX_SAVED);
        if let Some(sent) = &mut self.sent {
            sent.sent(seq);
        }
    }

    /// The NACK as far as the budget goes (`refused` counts what is cut).
    pub fn trim(&mut self, nack: &TransportLayerNack, refused: &Counter) -> Trimmed {
        let tokens = &mut self.tokens;
        let cost = |pair: &NackPair| 1.0 + f64::from(pair.lost_packets.count_ones());
        let total: f64 = nack.nacks.iter().map(cost).sum();
        if total <= *tokens {
            *tokens -= total;
            return Trimmed::Whole;
        }
        // Keep the newest requests: older packets are the likeliest to be too late already.
        let mut kept = Vec::new();
        for pair in nack.nacks.iter().rev() {
            let c = cost(pair);
            if c > *tokens {
                break;
            }
            *tokens -= c;
            kept.push(*pair);
        }
        kept.reverse();
        let kept_cost: f64 = kept.iter().map(cost).sum();
        refused.inc_by((total - kept_cost) as u64);
        if kept.is_empty() {
            Trimmed::Nothing
        } else {
            Trimmed::Part(TransportLayerNack {
                sender_ssrc: nack.sender_ssrc,
                media_ssrc: nack.media_ssrc,
                nacks: kept,
            })
        }
    }

    /// Whether `nack` should become a keyframe request: it asks for a packet that will
    /// never be resent (the publisher's packet never reached us and our NACKs for it gave
    /// up, or it left the history). Without a keyframe the receiver NACKs it for seconds and
    /// decodes nothing meanwhile. At most once per [`KEYFRAME_ASK_INTERVAL`]; the session's
    /// keyframe limiter applies on top.
    pub fn keyframe_instead(&mut self, now: Instant, nack: &TransportLayerNack) -> bool {
        if !self.hole_outlived_recovery(now, nack)
            || self
                .last_keyframe_ask
                .is_some_and(|t| now.duration_since(t) < KEYFRAME_ASK_INTERVAL)
        {
            return false;
        }
        self.last_keyframe_ask = Some(now);
        tracing::debug!(
            ssrc = nack.media_ssrc,
            first = nack.nacks.first().map(|p| p.packet_id),
            "receiver asked for a packet we cannot resend: keyframe wanted"
        );
        true
    }

    /// Whether `nack` asks again, [`HOLE_GRACE`] after it first did, for a packet we still
    /// cannot resend: by then our own NACKs to the publisher have given up on it, and the
    /// receiver will not decode again before a keyframe. A packet we are still recovering
    /// from the publisher (it fills the hole when it arrives) is not such a packet.
    fn hole_outlived_recovery(&mut self, now: Instant, nack: &TransportLayerNack) -> bool {
        let Some(sent) = &self.sent else {
            return false;
        };
        let holes = &mut self.holes;
        holes.retain(|(seq, since)| {
            !sent.can_resend(*seq) && now.duration_since(*since) < HOLE_FORGET
        });
        let mut outlived = false;
        let requested = nack.nacks.iter().copied().flatten();
        for seq in requested.filter(|seq| !sent.can_resend(*seq)) {
            match holes.iter().find(|(s, _)| *s == seq) {
                Some((_, since)) => outlived |= now.duration_since(*since) >= HOLE_GRACE,
                None if holes.len() < MAX_HOLES => holes.push((seq, now)),
                None => {}
            }
        }
        if outlived {
            holes.clear();
        }
        outlived
    }
}

/// What is left of a NACK after the budget.
pub enum Trimmed {
    Whole,
    Part(TransportLayerNack),
    Nothing,
}

/// Tags NACKs and transport-wide feedback for the application too: for the streams the
/// session sends itself (`direct_video`) it answers NACKs and runs the estimate.
fn deliver_send_side_feedback(msg: &mut TaggedPacket) {
    if let Packet::Rtcp(packets) = &msg.message.packet
        && packets.iter().any(|p| {
            let any = p.as_any();
            any.is::<TransportLayerNack>() || any.is::<TransportLayerCc>()
        })
    {
        msg.message.add(Attribute::DeliverToApplication);
    }
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for NackBudget {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        super::engine::deliver_keyframe_requests(&mut msg);
        deliver_send_side_feedback(&mut msg);
        for attribute in &msg.message.attributes {
            if let Attribute::TargetBitrateChanged { bits_per_second } = attribute {
                self.tally
                    .estimate_bits
                    .store(bits_per_second.to_bits(), Ordering::Relaxed);
            }
        }
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for packet in packets {
                let any = packet.as_any();
                let reports = if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                    &rr.reports[..]
                } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                    &sr.reports[..]
                } else {
                    if any.is::<TransportLayerNack>() {
                        self.tally.nacks.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                };
                for report in reports
                    .iter()
                    .filter(|r| self.streams.contains_key(&r.ssrc))
                {
                    self.tally.report_loss(report.fraction_lost);
                }
            }
        }
        let mut wants_keyframe = false;
        if let Packet::Rtcp(packets) = &mut msg.message.packet
            && packets
                .iter()
                .any(|p| p.as_any().is::<TransportLayerNack>())
        {
            let mut kept: Vec<Box<dyn rtc::rtcp::Packet>> = Vec::with_capacity(packets.len());
            for packet in packets.drain(..) {
                let trimmed = match packet.as_any().downcast_ref::<TransportLayerNack>() {
                    Some(nack) => {
                        if let Some(pli) = self.keyframe_instead(msg.now, nack) {
                            kept.push(Box::new(pli));
                            wants_keyframe = true;
                        }
                        self.trim(nack)
                    }
                    None => Trimmed::Whole,
                };
                match trimmed {
                    Trimmed::Whole => kept.push(packet),
                    Trimmed::Part(nack) => kept.push(Box::new(nack)),
                    Trimmed::Nothing => {}
                }
            }
            if kept.is_empty() {
                return Ok(()); // only refused NACKs: nothing for the rest of the chain
            }
            *packets = kept;
        }
        if wants_keyframe {
            super::engine::deliver_keyframe_requests(&mut msg);
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(packet) = &msg.message.packet
            && let Some(stream) = self.streams.get_mut(&packet.header.ssrc)
        {
            stream.on_sent(packet.header.sequence_number);
        }
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }
}

impl Interceptor for NackBudget {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        let supports_nack = info
            .rtcp_feedback
            .iter()
            .any(|fb| fb.typ == "nack" && fb.parameter.is_empty());
        self.streams.insert(
            info.ssrc,
            StreamBudget::new(supports_nack.then_some(self.window)),
        );
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.streams.remove(&info.ssrc);
    }
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nack(pairs: &[(u16, u16)]) -> TransportLayerNack {
        TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: 7,
            nacks: pairs
                .iter()
                .map(|&(packet_id, lost_packets)| NackPair {
                    packet_id,
                    lost_packets,
                })
                .collect(),
        }
    }

    /// A stream the core has sent on, with `tokens` saved.
    fn written(tokens: f64) -> StreamBudget {
        let mut stream = StreamBudget::with_tokens(tokens, None);
        stream.sent_any = true;
        stream
    }

    #[test]
    fn trims_to_the_budget_keeping_the_newest_requests() {
        let refused = Counter::default();
        let mut budget = NackBudget::new(refused.clone(), Arc::default(), 256);
        budget.streams.insert(7, written(5.0));
        // Costs 1 + 3 (bits) + 1 = 5: fits exactly.
        assert!(matches!(
            budget.trim(&nack(&[(10, 0b111), (20, 0)])),
            Trimmed::Whole
        ));
        assert_eq!(refused.get(), 0);
        // Out of tokens: nothing passes.
        assert!(matches!(budget.trim(&nack(&[(30, 0)])), Trimmed::Nothing));
        assert_eq!(refused.get(), 1);
        // Earned back by sending: 8 packets → 2 tokens; the newest pair that fits is kept.
        budget.streams.insert(7, written(2.0));
        match budget.trim(&nack(&[(40, 0b1111), (50, 0b1), (60, 0)])) {
            Trimmed::Part(trimmed) => {
                assert_eq!(trimmed.nacks.len(), 1);
                assert_eq!(trimmed.nacks[0].packet_id, 60);
            }
            _ => panic!("expected a trimmed NACK"),
        }
        assert_eq!(refused.get(), 1 + 5 + 2);
        // A storm (a full bitmap on every pair, thousands of pairs) costs only this stream's
        // saved budget: at most MAX_SAVED packets are ever asked of the responder at once.
        budget.streams.insert(7, written(MAX_SAVED));
        let storm: Vec<(u16, u16)> = (0..4000u16).map(|i| (i.wrapping_mul(17), 0xffff)).collect();
        let passed = match budget.trim(&nack(&storm)) {
            Trimmed::Part(trimmed) => trimmed
                .nacks
                .iter()
                .map(|p| 1 + p.lost_packets.count_ones() as usize)
                .sum::<usize>(),
            _ => panic!("expected a trimmed NACK"),
        };
        assert!(passed as f64 <= MAX_SAVED, "{passed}");
        assert!(
            budget.streams[&7].tokens < 17.0,
            "less than one full pair left"
        );
        // Streams that are not ours pass untouched.
        let mut other = nack(&[(1, 0xffff)]);
        other.media_ssrc = 99;
        assert!(matches!(budget.trim(&other), Trimmed::Whole));
    }

    fn tagged(now: Instant, packet: Packet) -> TaggedPacket {
        TaggedPacket {
            now,
            transport: Default::default(),
            message: rtc::interceptor::AttributedPacket::new(packet),
        }
    }

    fn rtp(seq: u16) -> Packet {
        Packet::Rtp(rtc::rtp::packet::Packet {
            header: rtc::rtp::header::Header {
                ssrc: 7,
                sequence_number: seq,
                ..Default::default()
            },
            payload: bytes::Bytes::from_static(&[0; 4]),
        })
    }

    /// Feeds a receiver's NACK; returns whether a PLI tagged for the application came out.
    fn pli_out(budget: &mut NackBudget, now: Instant, pairs: &[(u16, u16)]) -> bool {
        use rtc::sansio::Protocol;
        budget
            .handle_read(tagged(now, Packet::Rtcp(vec![Box::new(nack(pairs))])))
            .unwrap();
        let mut pli = false;
        while let Some(msg) = budget.poll_read() {
            let delivered = msg
                .message
                .attributes
                .iter()
                .any(|a| matches!(a, Attribute::DeliverToApplication));
            if let Packet::Rtcp(packets) = &msg.message.packet {
                pli |= delivered
                    && packets.iter().any(|p| {
                        p.as_any()
                            .downcast_ref::<PictureLossIndication>()
                            .is_some_and(|p| p.media_ssrc == 7)
                    });
            }
        }
        pli
    }

    /// Binds stream 7 with NACK feedback, as the core does for a video leg.
    fn bind_nack_stream(budget: &mut NackBudget) {
        budget.bind_local_stream(&StreamInfo {
            ssrc: 7,
            rtcp_feedback: vec![rtc::interceptor::RTCPFeedback {
                typ: "nack".into(),
                parameter: String::new(),
            }],
            ..Default::default()
        });
    }

    /// A stream the core never sent on is the session's own (`direct_video`): its NACKs are
    /// neither trimmed nor turned into keyframe requests here, and reach the application.
    #[test]
    fn nacks_for_streams_the_session_sends_itself_pass_whole_to_the_application() {
        use rtc::sansio::Protocol;
        let refused = Counter::default();
        let mut budget = NackBudget::new(refused.clone(), Arc::default(), 256);
        bind_nack_stream(&mut budget);
        let t0 = Instant::now();
        let storm: Vec<(u16, u16)> = (0..200u16).map(|i| (i * 17, 0xffff)).collect();
        for t in [t0, t0 + HOLE_GRACE * 2, t0 + HOLE_GRACE * 4] {
            budget
                .handle_read(tagged(t, Packet::Rtcp(vec![Box::new(nack(&storm))])))
                .unwrap();
            let msg = budget.poll_read().expect("passed on");
            assert!(
                msg.message
                    .attributes
                    .iter()
                    .any(|a| matches!(a, Attribute::DeliverToApplication))
            );
            let Packet::Rtcp(packets) = &msg.message.packet else {
                panic!("RTCP expected");
            };
            assert_eq!(packets.len(), 1, "no PLI added");
            let passed = packets[0]
                .as_any()
                .downcast_ref::<TransportLayerNack>()
                .unwrap();
            assert_eq!(passed.nacks.len(), storm.len(), "not trimmed");
        }
        assert_eq!(refused.get(), 0);
    }

    #[test]
    fn a_nack_for_a_packet_never_sent_asks_for_a_keyframe() {
        use rtc::sansio::Protocol;
        let mut budget = NackBudget::new(Counter::default(), Arc::default(), 256);
        bind_nack_stream(&mut budget);
        let t0 = Instant::now();
        // Sequence 105 never reached us from the publisher.
        for seq in (100..=110u16).filter(|&s| s != 105) {
            budget.handle_write(tagged(t0, rtp(seq))).unwrap();
            while budget.poll_write().is_some() {}
        }
        assert!(
            !pli_out(&mut budget, t0, &[(102, 0b1)]),
            "102 and 103 can be resent"
        );
        assert!(
            !pli_out(&mut budget, t0, &[(103, 0b11)]),
            "105 is missing, but our NACKs upstream may still bring it"
        );
        let t1 = t0 + HOLE_GRACE / 2;
        assert!(
            !pli_out(&mut budget, t1, &[(105, 0)]),
            "still within the grace"
        );
        // The late packet arrives: the hole is filled and forgotten.
        budget.handle_write(tagged(t1, rtp(105))).unwrap();
        while budget.poll_write().is_some() {}
        assert!(!pli_out(&mut budget, t0 + HOLE_GRACE, &[(105, 0)]));
        // 111 never comes: asked for again after the grace, it becomes a keyframe request.
        budget.handle_write(tagged(t1, rtp(112))).unwrap();
        while budget.poll_write().is_some() {}
        assert!(!pli_out(&mut budget, t1, &[(111, 0)]));
        let t2 = t1 + HOLE_GRACE;
        assert!(
            pli_out(&mut budget, t2, &[(111, 0)]),
            "the hole outlived recovery"
        );
        assert!(!pli_out(&mut budget, t2, &[(111, 0)]), "asked for already");
        // A packet that left the history cannot be resent either.
        for seq in 113..=400u16 {
            budget.handle_write(tagged(t2, rtp(seq))).unwrap();
            while budget.poll_write().is_some() {}
        }
        let t3 = t2 + KEYFRAME_ASK_INTERVAL;
        assert!(!pli_out(&mut budget, t3, &[(300, 0), (110, 0)]));
        let t4 = t3 + HOLE_GRACE;
        assert!(!pli_out(&mut budget, t4, &[(300, 0)]), "300 can be resent");
        assert!(
            pli_out(&mut budget, t4, &[(110, 0)]),
            "110 left the history"
        );
    }
}
