//! RTCP sender reports (RFC 3550 §6.4.1) for the streams the session sends itself on the
//! direct path: the core reports only streams it wrote packets for.
//!
//! Owns: per outgoing stream, what a report says ([`SentStream`]: packet and octet counts, the
//! RTP timestamp of the latest frame and when it left) and how a report is built from it: the
//! wall clock as NTP time, the RTP time extrapolated to the same instant. Receivers use the
//! pair for audio/video synchronisation and their remote-outbound statistics.

use std::time::{Duration, Instant, SystemTime};

use rtc::rtcp::sender_report::SenderReport;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// How often a session reports streams that carry video; audio-only sessions report every
/// [`AUDIO_REPORT_PERIOD`] (libwebrtc's cadence for each).
pub const VIDEO_REPORT_PERIOD: Duration = Duration::from_secs(1);
pub const AUDIO_REPORT_PERIOD: Duration = Duration::from_secs(5);

/// What an outgoing stream has sent, for its sender reports.
#[derive(Debug, Default, Clone, Copy)]
pub struct SentStream {
    packets: u32,
    octets: u32,
    /// RTP timestamp of the newest frame, and when its first packet was sent.
    latest: Option<(u32, Instant)>,
}

impl SentStream {
    /// A media packet with `timestamp` and `payload_len` payload bytes was sent at `now`.
    pub fn on_sent(&mut self, timestamp: u32, payload_len: usize, now: Instant) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
        // The first packet of a frame dates it: a frame's later packets leave a little later
        // and would skew the mapping by the time spent sending it.
        if self.latest.is_none_or(|(latest, _)| latest != timestamp) {
            self.latest = Some((timestamp, now));
        }
    }

    /// The report for `ssrc` at `now` (`wall`: the wall clock at `now`), once anything was
    /// sent.
    pub fn report(
        &self,
        ssrc: u32,
        clock_rate: u32,
        now: Instant,
        wall: SystemTime,
    ) -> Option<SenderReport> {
        let (timestamp, sent_at) = self.latest?;
        let elapsed = now.saturating_duration_since(sent_at).as_secs_f64();
        Some(SenderReport {
            ssrc,
            ntp_time: ntp_time(wall),
            rtp_time: timestamp.wrapping_add((elapsed * f64::from(clock_rate)) as u32),
            packet_count: self.packets,
            octet_count: self.octets,
            ..Default::default()
        })
    }
}

/// `wall` as a 64-bit NTP timestamp (32.32 fixed point seconds since 1900).
fn ntp_time(wall: SystemTime) -> u64 {
    let since_unix = wall
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since_unix.as_secs() + NTP_UNIX_OFFSET;
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_count_packets_and_map_wall_clock_to_rtp_time() {
        let t0 = Instant::now();
        let mut stream = SentStream::default();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        assert!(stream.report(1, 90_000, t0, wall).is_none(), "nothing sent");

        // Two frames of three packets, 100 ms apart; each frame dated by its first packet.
        for (frame, at) in [(3_000u32, t0), (12_000, t0 + Duration::from_millis(100))] {
            for i in 0..3 {
                stream.on_sent(frame, 1_000, at + Duration::from_millis(i * 2));
            }
        }
        let now = t0 + Duration::from_millis(150);
        let report = stream.report(7, 90_000, now, wall).unwrap();
        assert_eq!(report.ssrc, 7);
        assert_eq!(report.packet_count, 6);
        assert_eq!(report.octet_count, 6_000);
        // 50 ms after the second frame's first packet: 4,500 ticks of 90 kHz later.
        assert_eq!(report.rtp_time, 12_000 + 4_500);
        // 1,700,000,000.5 s after 1970: the NTP seconds, and half a second as the fraction.
        assert_eq!(report.ntp_time >> 32, 1_700_000_000 + NTP_UNIX_OFFSET);
        assert_eq!(report.ntp_time & 0xffff_ffff, 1 << 31);
    }
}
