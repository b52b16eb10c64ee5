//! Receivers' RTCP feedback before the core's NACK responder sees it: a retransmission budget
//! per outgoing stream, and tallies of what receivers report.
//!
//! Owns: an interceptor between the wire and the responder that (0) hands PLI/FIR to the
//! application (`engine::deliver_keyframe_requests`), (1) trims Generic NACKs
//! (RFC 4585) to a token budget earned by the stream's own media packets and (2) counts the
//! NACKs, the worst receiver-report loss fraction and the congestion controller's target
//! bitrate into a [`FeedbackTally`] its session reads (the `rtc` 0.21.1 core never feeds
//! inbound RTCP into its own statistics, and reports the estimate only in full reports).
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
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use rustc_hash::FxHashMap as HashMap;

/// Retransmissions earned per media packet sent: a quarter of the stream's packet rate.
pub const RETRANSMIT_SHARE: f64 = 0.25;
/// Most retransmissions one stream can save up (a lost keyframe is a burst).
pub const MAX_SAVED: f64 = 128.0;

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
    /// Tokens (retransmissions allowed) per outgoing media SSRC.
    streams: HashMap<u32, f64>,
    /// Requested packets refused for lack of budget.
    refused: Counter,
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl NackBudget {
    pub fn new(refused: Counter, tally: Arc<FeedbackTally>) -> Self {
        Self {
            tally,
            streams: HashMap::default(),
            refused,
            reads: VecDeque::new(),
            writes: VecDeque::new(),
        }
    }

    /// The NACK as far as the budget of its stream goes (`None`: nothing left of it).
    fn trim(&mut self, nack: &TransportLayerNack) -> Trimmed {
        let Some(tokens) = self.streams.get_mut(&nack.media_ssrc) else {
            return Trimmed::Whole; // not one of our streams: the core decides
        };
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
        self.refused.inc_by((total - kept_cost) as u64);
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
}

enum Trimmed {
    Whole,
    Part(TransportLayerNack),
    Nothing,
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for NackBudget {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        super::engine::deliver_keyframe_requests(&mut msg);
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
        if let Packet::Rtcp(packets) = &mut msg.message.packet
            && packets
                .iter()
                .any(|p| p.as_any().is::<TransportLayerNack>())
        {
            let mut kept: Vec<Box<dyn rtc::rtcp::Packet>> = Vec::with_capacity(packets.len());
            for packet in packets.drain(..) {
                let trimmed = match packet.as_any().downcast_ref::<TransportLayerNack>() {
                    Some(nack) => self.trim(nack),
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
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(packet) = &msg.message.packet
            && let Some(tokens) = self.streams.get_mut(&packet.header.ssrc)
        {
            *tokens = (*tokens + RETRANSMIT_SHARE).min(MAX_SAVED);
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
        self.streams.insert(info.ssrc, MAX_SAVED / 4.0);
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

    #[test]
    fn trims_to_the_budget_keeping_the_newest_requests() {
        let refused = Counter::default();
        let mut budget = NackBudget::new(refused.clone(), Arc::default());
        budget.streams.insert(7, 5.0);
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
        budget.streams.insert(7, 2.0);
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
        budget.streams.insert(7, MAX_SAVED);
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
        assert!(budget.streams[&7] < 17.0, "less than one full pair left");
        // Streams that are not ours pass untouched.
        let mut other = nack(&[(1, 0xffff)]);
        other.media_ssrc = 99;
        assert!(matches!(budget.trim(&other), Trimmed::Whole));
    }
}
