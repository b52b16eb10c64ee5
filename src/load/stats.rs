//! What a simulated receiver measured: packets and bytes, loss from RTP sequence gaps per
//! source, one-way latency from the send time embedded in every payload, and RFC 3550-style
//! interarrival jitter computed on those send times.

use std::collections::HashMap;

/// Per-source sequence state.
#[derive(Debug, Default, Clone)]
struct Source {
    /// Extended (wrap-counted) sequence numbers.
    first: u64,
    highest: u64,
    received: u64,
    last_transit_us: Option<i64>,
    /// Smoothed |ΔD| in µs (RFC 3550 §A.8 on microseconds).
    jitter_us: f64,
    /// Last VP8 picture ID seen (screen packets).
    picture_id: Option<u16>,
}

/// A receiver's statistics.
#[derive(Debug, Default, Clone)]
pub struct ReceiveStats {
    pub packets: u64,
    pub bytes: u64,
    sources: HashMap<u32, Source>,
    /// One-way latencies (µs) of packets received while measuring.
    pub latencies_us: Vec<u32>,
    /// Screen packets, and those whose VP8 picture ID ran backwards on their stream (a
    /// receiver must see one continuous stream, also across simulcast layer switches).
    pub video_packets: u64,
    pub picture_id_regressions: u64,
}

/// Counters at one instant (for window deltas).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Totals {
    pub packets: u64,
    pub video_packets: u64,
    pub picture_id_regressions: u64,
    pub bytes: u64,
    /// Packets the sequence numbers say should have arrived.
    pub expected: u64,
    /// Sum of the sources' jitter (µs) and their count, for an average.
    pub jitter_us_sum: f64,
    pub sources: u64,
}

impl ReceiveStats {
    /// Records one received packet; `now_us` is on the same clock as the embedded send time.
    pub fn record(&mut self, packet: &rtc::rtp::packet::Packet, now_us: u64, measuring: bool) {
        self.packets += 1;
        self.bytes += packet.payload.len() as u64;
        let sent_us = packet
            .payload
            .len()
            .checked_sub(8)
            .and_then(|at| <[u8; 8]>::try_from(&packet.payload[at..]).ok())
            .map(u64::from_be_bytes);
        let seq = packet.header.sequence_number;
        let source = self.sources.entry(packet.header.ssrc).or_insert(Source {
            first: u64::from(seq) + (1 << 16),
            highest: u64::from(seq) + (1 << 16),
            ..Default::default()
        });
        source.received += 1;
        // Extend with the wrap count nearest to the highest seen.
        let highest = source.highest;
        let candidate = (highest & !0xffff) | u64::from(seq);
        let extended = [
            candidate.wrapping_sub(1 << 16),
            candidate,
            candidate + (1 << 16),
        ]
        .into_iter()
        .min_by_key(|c| c.abs_diff(highest))
        .unwrap_or(candidate);
        // Picture IDs are checked on packets that are new in sequence order only: a
        // retransmission legitimately carries an older picture ID.
        let newest = extended > highest || source.received == 1;
        if packet.payload.len() == super::peer::VIDEO_PAYLOAD
            && let Some((_, _, id)) =
                crate::sfu::vp8::descriptor(&packet.payload).and_then(|d| d.picture_id)
        {
            self.video_packets += 1;
            if newest {
                if let Some(last) = source.picture_id {
                    let behind = last.wrapping_sub(id) & 0x7fff;
                    if behind != 0 && behind < 0x4000 {
                        self.picture_id_regressions += 1;
                    }
                }
                source.picture_id = Some(id);
            }
        }
        source.highest = source.highest.max(extended);
        source.first = source.first.min(extended);
        if let Some(sent_us) = sent_us.filter(|s| *s <= now_us) {
            let transit = now_us as i64 - sent_us as i64;
            if let Some(last) = source.last_transit_us {
                let d = (transit - last).unsigned_abs() as f64;
                source.jitter_us += (d - source.jitter_us) / 16.0;
            }
            source.last_transit_us = Some(transit);
            if measuring {
                self.latencies_us
                    .push(u32::try_from(now_us - sent_us).unwrap_or(u32::MAX));
            }
        }
    }

    pub fn totals(&self) -> Totals {
        let mut totals = Totals {
            packets: self.packets,
            video_packets: self.video_packets,
            picture_id_regressions: self.picture_id_regressions,
            bytes: self.bytes,
            ..Default::default()
        };
        for source in self.sources.values() {
            totals.expected += source.highest - source.first + 1;
            totals.jitter_us_sum += source.jitter_us;
            totals.sources += 1;
        }
        totals
    }
}

/// The `p`-th percentile (0–100) of `samples` (sorted in place), in the samples' unit.
pub fn percentile(samples: &mut [u32], p: f64) -> Option<u32> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples.get(rank.min(samples.len() - 1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(ssrc: u32, seq: u16, sent_us: u64) -> rtc::rtp::packet::Packet {
        let mut payload = vec![0u8; 20];
        payload[12..].copy_from_slice(&sent_us.to_be_bytes());
        rtc::rtp::packet::Packet {
            header: rtc::rtp::header::Header {
                ssrc,
                sequence_number: seq,
                ..Default::default()
            },
            payload: payload.into(),
        }
    }

    #[test]
    fn loss_counts_gaps_across_the_sequence_wrap() {
        let mut stats = ReceiveStats::default();
        for (i, seq) in [65_534u16, 65_535, 1, 2].into_iter().enumerate() {
            stats.record(
                &packet(7, seq, 1_000 * i as u64),
                1_000 * i as u64 + 300,
                true,
            );
        }
        let totals = stats.totals();
        assert_eq!((totals.packets, totals.expected), (4, 5)); // seq 0 lost
        let mut latencies = stats.latencies_us.clone();
        assert_eq!(percentile(&mut latencies, 50.0), Some(300));
    }

    #[test]
    fn reordering_is_not_loss() {
        let mut stats = ReceiveStats::default();
        for seq in [10u16, 12, 11, 13] {
            stats.record(&packet(1, seq, 0), 10, false);
        }
        let totals = stats.totals();
        assert_eq!((totals.packets, totals.expected), (4, 4));
        assert!(stats.latencies_us.is_empty());
    }
}
