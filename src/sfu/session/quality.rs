//! Call quality: the bandwidth estimate applied to simulcast legs, the periodic quality sample,
//! and why a connection failed.

use super::*;

impl Session {
    /// Feeds the send-side bandwidth estimate to the simulcast legs (layer choice).
    pub(super) fn apply_estimate(&mut self, now: Instant) {
        // The estimate starts at the maximum; the controller reports it once it changes.
        let estimate = match &self.estimate {
            Some(own) => own.target_bitrate(),
            None => self.feedback.estimate().unwrap_or(engine::BWE_MAX_BPS),
        };
        tracing::trace!(session_id = %self.config.session_id, estimate_bps = estimate as u64, "bandwidth estimate");
        for leg in self.legs.values_mut() {
            if let Some(layer) = leg
                .switcher
                .as_mut()
                .and_then(|s| s.on_estimate(now, estimate))
            {
                tracing::info!(
                    session_id = %self.config.session_id,
                    publisher = %leg.track.publisher,
                    estimate_bps = estimate as u64,
                    layer = layer.as_str(),
                    "simulcast: receiver target layer"
                );
            }
        }
    }

    /// Samples call quality from the core's statistics, reports it to the control plane and
    /// into the quality histograms.
    pub(super) fn sample_quality(
        &mut self,
        now: Instant,
        report: &RTCStatsReport,
        out: &mut Outputs,
    ) {
        let mut counters = QualityCounters {
            at: now,
            bytes_received: 0,
            bytes_sent: 0,
            nacks_sent: 0,
            retransmitted_packets: 0,
        };
        let mut jitter: f64 = 0.0;
        // Loss is per stream and the worst stream counts: video losses are mostly repaired
        // by retransmission (repaired packets count as received), audio ones are not, and a
        // sum over both would hide the audio loss behind the video's packet count.
        let mut worst_loss: f64 = 0.0;
        for stream in report.inbound_rtp_streams() {
            counters.nacks_sent += u64::from(stream.nack_count);
            let received = &stream.received_rtp_stream_stats;
            let now_counts = (received.packets_received, received.packets_lost);
            if let Some((was_received, was_lost)) = self
                .stream_counters
                .insert(received.rtp_stream_stats.ssrc, now_counts)
            {
                let got = now_counts.0.saturating_sub(was_received) as f64;
                let lost = (now_counts.1 - was_lost).max(0) as f64;
                // Ignore streams too quiet in this period to say anything.
                if got + lost >= MIN_PACKETS_FOR_LOSS {
                    worst_loss = worst_loss.max(lost / (got + lost));
                }
            }
            counters.bytes_received += stream.bytes_received;
            // rtc 0.21.1 documents this as seconds but stores the RTCP report's value, which is
            // in RTP timestamp units (measured: ~240 for 5 ms of Opus jitter).
            let clock_rate = match received.rtp_stream_stats.kind {
                RtpCodecKind::Audio => 48_000.0,
                _ => 90_000.0,
            };
            jitter = jitter.max(received.jitter / clock_rate);
        }
        for stream in report.outbound_rtp_streams() {
            counters.bytes_sent += stream.sent_rtp_stream_stats.bytes_sent;
            counters.retransmitted_packets += stream.retransmitted_packets_sent;
        }
        // Media on the direct path bypasses the core: its statistics miss those bytes.
        counters.bytes_sent += self.direct_bytes_sent;
        counters.retransmitted_packets += self.direct_retransmitted;
        // The core's statistics never see inbound RTCP: NACKs and receiver-report loss come
        // from our feedback interceptor, per period.
        let (nacks_received, remote_loss) = self.feedback.take();
        let rtt = report
            .candidate_pairs()
            .filter(|p| p.nominated && p.current_round_trip_time > 0.0)
            .map(|p| p.current_round_trip_time)
            .next();
        let previous = self.quality_counters.replace(counters);
        let Some(previous) = previous else {
            return; // the first sample only sets the baseline
        };
        let seconds = now.duration_since(previous.at).as_secs_f64().max(1e-3);
        let quality = SessionQuality {
            loss_ratio: worst_loss,
            jitter_seconds: jitter,
            rtt_seconds: rtt,
            receive_bps: counters
                .bytes_received
                .saturating_sub(previous.bytes_received) as f64
                * 8.0
                / seconds,
            send_bps: counters.bytes_sent.saturating_sub(previous.bytes_sent) as f64 * 8.0
                / seconds,
            remote_loss_ratio: remote_loss,
            // Already per period: the tally is taken at every sample.
            nacks_received,
            nacks_sent: counters.nacks_sent.saturating_sub(previous.nacks_sent),
            retransmitted_packets: counters
                .retransmitted_packets
                .saturating_sub(previous.retransmitted_packets),
        };
        let histograms = &self.metrics.quality;
        histograms.loss.observe(quality.loss_ratio);
        histograms.jitter.observe(quality.jitter_seconds);
        if let Some(rtt) = quality.rtt_seconds {
            histograms.rtt.observe(rtt);
        }
        histograms.receive_bitrate.observe(quality.receive_bps);
        histograms.send_bitrate.observe(quality.send_bps);
        histograms.remote_loss.observe(quality.remote_loss_ratio);
        histograms.nacks_received.inc_by(quality.nacks_received);
        histograms.nacks_sent.inc_by(quality.nacks_sent);
        histograms
            .retransmitted_packets
            .inc_by(quality.retransmitted_packets);
        self.report_direct_packets();
        out.driver.events.push(MediaEvent::Quality {
            session_id: self.config.session_id.clone(),
            quality,
        });
    }

    /// Why a connection failed, from what was seen of it.
    pub(super) fn failure_cause(&self) -> (FailureCause, &'static str) {
        match (
            self.connected_at.is_some(),
            self.ice_connected,
            self.first_datagram_at.is_some(),
        ) {
            (true, _, _) => (
                FailureCause::consent_lost,
                "consent lost: no ICE keepalive from the client within 25 s",
            ),
            (false, true, _) => (
                FailureCause::dtls_failed,
                "DTLS handshake failed after ICE connected",
            ),
            (false, false, true) => (
                FailureCause::ice_failed,
                "ICE checks failed: no candidate pair worked",
            ),
            (false, false, false) => (
                FailureCause::no_ice_check,
                "no ICE check received from the client (media port unreachable, or the advertised address is wrong)",
            ),
        }
    }
}
