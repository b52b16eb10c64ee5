//! The direct video path: what the WebRTC core did around each forwarded video packet, done by
//! the session for the video packets it sends itself (`direct_rtp`).
//!
//! Owns: per forwarded video leg ([`VideoLeg`]), the packets kept for retransmission, the
//! retransmission budget (`nack_budget::StreamBudget`, the same rules as for streams the core
//! sends) and the RTX stream (RFC 4588) retransmissions go out on; per session
//! ([`SendSideEstimate`]), the transport-wide sequence numbers stamped on the direct packets
//! of simulcast legs and the send-side estimate computed from the receiver's feedback (the
//! core's own `History` and `Gcc`, fed by us), which chooses their layers.
//!
//! Not done here: sender reports (`sender_reports`, for audio and video alike) and pacing
//! (there is none on the core's path either).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;
use rtc::interceptor::{BandwidthEstimator, Gcc, History, convert_twcc};
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;

use super::direct_rtp::{DirectHeader, DirectSender};
use super::nack_budget::{StreamBudget, Trimmed};
use super::srtp_gcm::Rollover;

/// Sent packets without feedback are forgotten after this long (the core's horizon).
const FEEDBACK_HORIZON: Duration = Duration::from_secs(2);

/// What a direct video packet is sent with: the session's SRTP context and estimate, the
/// receiver's transport-wide extension ID, and the block packets are carved from.
pub struct Wire<'a> {
    pub sender: &'a DirectSender,
    pub estimate: &'a mut SendSideEstimate,
    pub transport_ext: Option<u8>,
    pub arena: &'a mut BytesMut,
    pub now: Instant,
}

impl Wire<'_> {
    /// Stamps, seals and records one packet in the estimate's history.
    fn seal(
        &mut self,
        mut header: DirectHeader,
        payload: &[u8],
        rollover: &mut Rollover,
    ) -> Option<BytesMut> {
        let transport = self
            .transport_ext
            .map(|id| (id, self.estimate.next_number()));
        header.transport_sequence = transport;
        let sealed = self.sender.seal(&header, payload, rollover, self.arena)?;
        if let Some((_, number)) = transport {
            self.estimate.history.add_outgoing(
                header.ssrc,
                header.sequence_number,
                true,
                number,
                sealed.len(),
                self.now,
            );
        }
        Some(sealed)
    }
}

/// A forwarded video leg on the direct path.
pub struct VideoLeg {
    payload_type: u8,
    rollover: Rollover,
    sent: SentPackets,
    budget: StreamBudget,
    rtx: Option<RtxStream>,
}

/// The RTX stream of a leg: its own SSRC, payload type, numbering and rollover counter.
struct RtxStream {
    ssrc: u32,
    payload_type: u8,
    next_sequence: u16,
    rollover: Rollover,
}

/// What answering one NACK did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resent {
    /// Retransmissions sent.
    pub packets: u64,
    /// The NACK keeps asking for a packet we cannot resend: the publisher's keyframe is the
    /// only repair.
    pub keyframe_wanted: bool,
}

impl VideoLeg {
    /// `history`: packets kept for retransmission (a power of two); `rtx`: the negotiated
    /// RTX `(ssrc, payload type)`, without which retransmissions repeat the original packet.
    pub fn new(payload_type: u8, history: u16, rtx: Option<(u32, u8)>) -> Self {
        Self {
            payload_type,
            rollover: Rollover::default(),
            sent: SentPackets::new(history),
            budget: StreamBudget::new(Some(history)),
            rtx: rtx.map(|(ssrc, payload_type)| RtxStream {
                ssrc,
                payload_type,
                next_sequence: rand::random(),
                rollover: Rollover::default(),
            }),
        }
    }

    /// Sends one media packet (`header` without extensions) and keeps it for resending.
    pub fn send(
        &mut self,
        wire: &mut Wire<'_>,
        header: DirectHeader,
        payload: &Bytes,
    ) -> Option<BytesMut> {
        let sealed = wire.seal(header, payload, &mut self.rollover)?;
        self.sent.insert(SentPacket {
            sequence_number: header.sequence_number,
            timestamp: header.timestamp,
            marker: header.marker,
            ssrc: header.ssrc,
            payload: payload.clone(),
        });
        self.budget.on_sent(header.sequence_number);
        Some(sealed)
    }

    /// Answers a receiver's NACK within the stream's budget (`refused` counts what it cuts),
    /// handing each retransmission to `send`.
    pub fn resend(
        &mut self,
        wire: &mut Wire<'_>,
        nack: &TransportLayerNack,
        refused: &Counter,
        mut send: impl FnMut(BytesMut),
    ) -> Resent {
        let keyframe_wanted = self.budget.keyframe_instead(wire.now, nack);
        let trimmed = self.budget.trim(nack, refused);
        let pairs = match &trimmed {
            Trimmed::Whole => &nack.nacks[..],
            Trimmed::Part(kept) => &kept.nacks[..],
            Trimmed::Nothing => &[],
        };
        let mut packets = 0;
        for seq in pairs.iter().copied().flatten() {
            let Some(original) = self.sent.get(seq) else {
                continue;
            };
            let header = DirectHeader {
                marker: original.marker,
                payload_type: self.payload_type,
                sequence_number: seq,
                timestamp: original.timestamp,
                ssrc: original.ssrc,
                audio_level: None,
                transport_sequence: None,
                original_sequence: None,
            };
            let payload = original.payload.clone();
            let sealed = match &mut self.rtx {
                Some(rtx) => {
                    let header = DirectHeader {
                        payload_type: rtx.payload_type,
                        sequence_number: rtx.next_sequence,
                        ssrc: rtx.ssrc,
                        original_sequence: Some(seq),
                        ..header
                    };
                    rtx.next_sequence = rtx.next_sequence.wrapping_add(1);
                    wire.seal(header, &payload, &mut rtx.rollover)
                }
                None => wire.seal(header, &payload, &mut self.rollover),
            };
            if let Some(sealed) = sealed {
                send(sealed);
                packets += 1;
            }
        }
        Resent {
            packets,
            keyframe_wanted,
        }
    }
}

/// A packet kept for retransmission.
#[derive(Debug, Clone)]
struct SentPacket {
    sequence_number: u16,
    timestamp: u32,
    marker: bool,
    ssrc: u32,
    payload: Bytes,
}

/// The last `size` packets of a stream, by sequence number (a ring, as the core's responder).
struct SentPackets {
    slots: Box<[Option<SentPacket>]>,
    mask: u16,
}

impl SentPackets {
    /// `size` is rounded up to a power of two.
    fn new(size: u16) -> Self {
        let size = size.max(1).checked_next_power_of_two().unwrap_or(1 << 15);
        Self {
            slots: vec![None; usize::from(size)].into_boxed_slice(),
            mask: size - 1,
        }
    }

    fn insert(&mut self, packet: SentPacket) {
        let slot = usize::from(packet.sequence_number & self.mask);
        self.slots[slot] = Some(packet);
    }

    fn get(&self, seq: u16) -> Option<&SentPacket> {
        self.slots[usize::from(seq & self.mask)]
            .as_ref()
            .filter(|p| p.sequence_number == seq)
    }
}

/// A session's transport-wide sequence numbers and the estimate their feedback drives.
pub struct SendSideEstimate {
    next_number: u16,
    history: History,
    estimator: Gcc,
}

impl SendSideEstimate {
    pub fn new(estimator: Gcc) -> Self {
        Self {
            // Not where the core starts: a packet the core stamped before the session took
            // over cannot be mistaken for one of ours.
            next_number: rand::random(),
            history: History::new(),
            estimator,
        }
    }

    fn next_number(&mut self) -> u16 {
        let number = self.next_number;
        self.next_number = number.wrapping_add(1);
        number
    }

    /// Applies a receiver's transport-wide feedback (numbers we never sent are ignored).
    pub fn on_feedback(&mut self, now: Instant, feedback: &TransportLayerCc) {
        for acknowledgement in convert_twcc(feedback) {
            self.history.on_twcc_feedback(now, acknowledgement);
        }
        let reports = self.history.take_reports();
        self.estimator.on_reports(now, &reports);
    }

    /// The estimate, in bits per second.
    pub fn target_bitrate(&self) -> f64 {
        self.estimator.target_bitrate()
    }

    /// Forgets packets the receiver never reported on.
    pub fn prune(&mut self, now: Instant) {
        self.history
            .prune_before(now.checked_sub(FEEDBACK_HORIZON).unwrap_or(now));
    }

    /// Packets sent and not yet reported on.
    #[cfg(test)]
    fn outstanding(&self) -> usize {
        self.history.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sfu::srtp_gcm::SrtpGcm;
    use crate::sfu::srtp_keys::SessionKeys;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::NackPair;

    const KEY: [u8; 16] = [3; 16];
    const SALT: [u8; 12] = [4; 12];

    fn nack(pairs: &[(u16, u16)]) -> TransportLayerNack {
        TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: 0x1000,
            nacks: pairs
                .iter()
                .map(|&(packet_id, lost_packets)| NackPair {
                    packet_id,
                    lost_packets,
                })
                .collect(),
        }
    }

    /// A session's sending side: SRTP context, estimate and arena.
    struct Fixture {
        sender: DirectSender,
        estimate: SendSideEstimate,
        arena: BytesMut,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                sender: DirectSender::new(&SessionKeys::Gcm {
                    key: KEY,
                    salt: SALT,
                }),
                estimate: SendSideEstimate::new(crate::sfu::engine::estimator()),
                arena: BytesMut::new(),
            }
        }

        fn wire(&mut self, transport_ext: Option<u8>) -> Wire<'_> {
            Wire {
                sender: &self.sender,
                estimate: &mut self.estimate,
                transport_ext,
                arena: &mut self.arena,
                now: Instant::now(),
            }
        }
    }

    fn header(seq: u16) -> DirectHeader {
        DirectHeader {
            marker: seq.is_multiple_of(4),
            payload_type: 96,
            sequence_number: seq,
            timestamp: 3000 * u32::from(seq / 4),
            ssrc: 0x1000,
            audio_level: None,
            transport_sequence: None,
            original_sequence: None,
        }
    }

    /// Decrypts with the receiver's view of the stream (rollover 0) and parses.
    fn open(packet: &[u8]) -> rtc::rtp::packet::Packet {
        use rtc::shared::marshal::Unmarshal;
        let mut buf = packet.to_vec();
        let len = SrtpGcm::new(&KEY, &SALT).unprotect(&mut buf, 0).unwrap();
        rtc::rtp::packet::Packet::unmarshal(&mut &buf[..len]).unwrap()
    }

    /// Sent packets are kept and resent on the RTX stream (original sequence number in front
    /// of the payload, the RTX numbering its own), each stamped with a transport-wide number
    /// the estimate's history records; packets never sent or overwritten are skipped.
    #[test]
    fn nacked_packets_are_resent_on_rtx_with_transport_wide_numbers() {
        let mut fixture = Fixture::new();
        let mut wire = fixture.wire(Some(5));
        let mut leg = VideoLeg::new(96, 64, Some((0x2000, 97)));
        let mut numbers = Vec::new();
        for seq in (100..110u16).filter(|&s| s != 105) {
            let payload = Bytes::from(vec![seq as u8; 300]);
            let sent = leg.send(&mut wire, header(seq), &payload).unwrap();
            let packet = open(&sent);
            assert_eq!(packet.header.sequence_number, seq);
            assert_eq!(packet.header.payload_type, 96);
            let number = packet
                .header
                .get_extension(5)
                .expect("transport-wide number");
            numbers.push(u16::from_be_bytes([number[0], number[1]]));
        }
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "{numbers:?}"
        );

        let refused = Counter::default();
        let mut out = Vec::new();
        // 101, 102 and 104 were sent; 105 never was.
        let resent = leg.resend(
            &mut wire,
            &nack(&[(101, 0b0101), (105, 0)]),
            &refused,
            |p| out.push(p),
        );
        assert_eq!(resent.packets, 3);
        assert!(!resent.keyframe_wanted);
        let mut rtx_numbers = Vec::new();
        for (packet, original) in out.iter().map(|p| open(p)).zip([101u16, 102, 104]) {
            assert_eq!(packet.header.ssrc, 0x2000);
            assert_eq!(packet.header.payload_type, 97);
            assert_eq!(packet.header.timestamp, header(original).timestamp);
            assert_eq!(
                &packet.payload[..2],
                &original.to_be_bytes(),
                "original sequence number"
            );
            assert_eq!(&packet.payload[2..], &[original as u8; 300][..]);
            rtx_numbers.push(packet.header.sequence_number);
            let number = packet.header.get_extension(5).unwrap();
            assert_eq!(
                u16::from_be_bytes([number[0], number[1]]),
                numbers
                    .last()
                    .unwrap()
                    .wrapping_add(rtx_numbers.len() as u16)
            );
        }
        assert!(rtx_numbers.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
        assert_eq!(wire.estimate.outstanding(), 9 + 3);

        // The history holds 64: sequence 101's slot now holds 165.
        for seq in 110..=165u16 {
            leg.send(&mut wire, header(seq), &Bytes::from_static(&[0; 10]))
                .unwrap();
        }
        out.clear();
        let resent = leg.resend(&mut wire, &nack(&[(101, 0)]), &refused, |p| out.push(p));
        assert_eq!(resent.packets, 0);
        assert!(out.is_empty());
    }

    /// A receiver asking for everything (a NACK storm) gets no more retransmissions than its
    /// stream's budget; the rest is refused and counted.
    #[test]
    fn a_nack_storm_is_answered_within_the_budget() {
        let mut fixture = Fixture::new();
        let mut wire = fixture.wire(Some(5));
        let mut leg = VideoLeg::new(96, 256, Some((0x2000, 97)));
        for seq in 0..256u16 {
            leg.send(&mut wire, header(seq), &Bytes::from_static(&[1; 100]))
                .unwrap();
        }
        // Every packet, many times over.
        let storm: Vec<(u16, u16)> = (0..2_000u16).map(|i| (i % 256, 0xffff)).collect();
        let refused = Counter::default();
        let mut out = Vec::new();
        let resent = leg.resend(&mut wire, &nack(&storm), &refused, |p| out.push(p));
        // 32 saved at the start plus a quarter per packet sent, at most 128.
        let budget = crate::sfu::nack_budget::MAX_SAVED as u64;
        assert!(
            resent.packets > 0 && resent.packets <= budget,
            "{}",
            resent.packets
        );
        assert_eq!(out.len() as u64, resent.packets);
        assert!(refused.get() > 30_000, "{}", refused.get());
        // Spent: less than one more full pair (17 packets) is left until more media is sent.
        out.clear();
        let again = leg.resend(&mut wire, &nack(&storm), &refused, |p| out.push(p));
        assert!(again.packets < 17, "{}", again.packets);
    }

    /// Without RTX a retransmission repeats the original packet on the media SSRC.
    #[test]
    fn without_rtx_the_original_packet_is_repeated() {
        let mut fixture = Fixture::new();
        let mut wire = fixture.wire(None);
        let mut leg = VideoLeg::new(96, 256, None);
        let payload = Bytes::from_static(b"vp8 frame part");
        let sent = leg.send(&mut wire, header(7), &payload).unwrap();
        let mut out = Vec::new();
        let resent = leg.resend(&mut wire, &nack(&[(7, 0)]), &Counter::default(), |p| {
            out.push(p)
        });
        assert_eq!(resent.packets, 1);
        assert_eq!(&out[0][..], &sent[..], "the same SRTP packet");
        assert_eq!(
            wire.estimate.outstanding(),
            0,
            "no transport-wide extension"
        );
    }
}
