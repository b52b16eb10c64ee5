//! What the session sends that is not forwarded media: feedback for its direct legs (NACK,
//! TWCC), sender reports, the core's pending writes, the selected route.

use super::*;

impl Session {
    /// NACKs and transport-wide feedback from this receiver about the video legs the session
    /// sends itself (`direct_video`): retransmissions within the leg's budget, or a keyframe
    /// request where none can help; the feedback drives the session's estimate.
    pub(super) fn handle_send_side_feedback(
        &mut self,
        now: Instant,
        packets: &[Box<dyn rtc::rtcp::Packet>],
        out: &mut Outputs,
    ) {
        use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
        use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
        let (Some(sender), Some(route), Some(estimate)) =
            (&self.direct, self.media_route, &mut self.estimate)
        else {
            return; // no direct video sent yet
        };
        for packet in packets {
            let any = packet.as_any();
            if let Some(feedback) = any.downcast_ref::<TransportLayerCc>() {
                estimate.on_feedback(now, feedback);
                continue;
            }
            let Some(nack) = any.downcast_ref::<TransportLayerNack>() else {
                continue;
            };
            let Some(leg) = self
                .legs
                .values_mut()
                .find(|leg| leg.ssrc == nack.media_ssrc)
            else {
                continue;
            };
            let Some((video, mut wire)) =
                leg.direct_video((sender, estimate), &mut out.direct_arena, now)
            else {
                continue; // the core's stream: its responder answers
            };
            let transmits = &mut out.driver.transmits;
            let resent = video.resend(&mut wire, nack, &self.refused_retransmissions, |data| {
                transmits.push(route.transmit(data))
            });
            self.direct_retransmitted += resent.packets;
            if resent.keyframe_wanted {
                out.call.keyframe_requests.push(KeyframeRequest {
                    publisher: leg.track.publisher.clone(),
                    source_id: leg.track.source_id.clone(),
                    layer: leg.switcher.as_ref().and_then(LayerSwitcher::current),
                });
            }
        }
    }

    /// Sender reports for the legs the session sends itself (the core reports only what it
    /// sent), one compound packet per leg through the core's RTCP path.
    pub(super) fn send_sender_reports(&mut self, now: Instant) {
        let wall = self.wall_clock.at(now);
        let mut video = false;
        for leg in self.legs.values() {
            let clock_rate = if leg.direct { 48_000 } else { 90_000 };
            let Some(report) = leg.sent.report(leg.ssrc, clock_rate, now, wall) else {
                continue;
            };
            video |= !leg.direct;
            if let Some(mut sender) = self.pc.rtp_sender(leg.sender)
                && let Err(err) = sender.write_rtcp(now, vec![Box::new(report)])
            {
                tracing::trace!(session_id = %self.config.session_id, "sender report: {err}");
            }
        }
        let period = if video {
            sender_reports::VIDEO_REPORT_PERIOD
        } else {
            sender_reports::AUDIO_REPORT_PERIOD
        };
        self.timers.arm(Timer::SenderReports, now + period);
    }

    /// Moves the datagrams the peer connection wants to send into `out` (not for relayed
    /// sessions: their traffic must pass through the TURN client, see [`Session::drain`]).
    pub(super) fn drain_writes(&mut self, now: Instant, out: &mut Outputs) {
        if !self.relays.is_empty() {
            return self.drain(now, out);
        }
        while let Some(transmit) = self.pc.poll_write() {
            self.note_route(&transmit, out);
            out.driver.transmits.push(Transmit::from(transmit));
        }
    }

    /// Adds the direct path's packets since the last report to the metrics (per sample, not
    /// per packet: a shared counter per copy would bounce its cache line between workers).
    pub(super) fn report_direct_packets(&mut self) {
        let quality = &self.metrics.quality;
        quality
            .direct_audio_packets
            .inc_by(std::mem::take(&mut self.unreported_direct_packets));
        quality
            .direct_video_packets
            .inc_by(std::mem::take(&mut self.unreported_direct_video_packets));
    }

    /// Remembers where the core sends DTLS and SRTP/SRTCP (RFC 7983 first bytes 20–63 and
    /// 128–191): the selected candidate pair, which the direct audio path follows. STUN
    /// (0–3) may go to other pairs while ICE checks them.
    /// A new UDP route is also offered to the driver for a connected socket.
    pub(super) fn note_route(&mut self, transmit: &TaggedBytesMut, out: &mut Outputs) {
        if matches!(transmit.message.first(), Some(20..=63 | 128..=191)) {
            let transport = &transmit.transport;
            let route = Route {
                local: transport.local_addr,
                peer: transport.peer_addr,
                protocol: protocol_of(transport),
            };
            if self.media_route != Some(route)
                && route.protocol == Protocol::Udp
                && self.connected_routes < MAX_CONNECTED_ROUTES
            {
                self.connected_routes += 1;
                out.driver.connect_flows.push((route.local, route.peer));
            }
            self.media_route = Some(route);
        }
    }
}
