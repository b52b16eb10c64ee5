//! Legs and fan-out: the tracks this session receives from the rest of its call, keyframe waits
//! and requests, simulcast layer choice, and each forwarded packet's way out (the session's own
//! SRTP or the core's).

use super::*;

impl Session {
    /// Starts forwarding `track` to this participant (renegotiates).
    pub fn add_forwarded(&mut self, now: Instant, track: &PublishedTrack, out: &mut Outputs) {
        let key = track.key.clone();
        if self.legs.contains_key(&key) || self.closed.is_some() {
            return;
        }
        let is_audio = track.mime.starts_with("audio/");
        let codec = engine::codec_for(&track.mime);
        let ssrc: u32 = rand::random();
        // Named here so the direct video path knows it (the core mints one otherwise).
        let rtx_ssrc = (!is_audio).then(rand::random::<u32>);
        let out_track = MediaStreamTrack::new(
            track.publisher.clone(),
            track.out_id.clone(),
            track.out_id.clone(),
            if is_audio {
                RtpCodecKind::Audio
            } else {
                RtpCodecKind::Video
            },
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    rtx: rtx_ssrc.map(|ssrc| RTCRtpRtxParameters { ssrc }),
                    ..Default::default()
                },
                codec: codec.unwrap_or_else(|| RTCRtpCodec {
                    mime_type: track.mime.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
        );
        match self.pc.add_track(out_track) {
            Ok(sender) => {
                self.track_gauge(Direction::Out, &track.mime, 1);
                self.legs.insert(
                    key,
                    Leg {
                        track: track.clone(),
                        sender,
                        ssrc,
                        offered: false,
                        payload_type: None,
                        audio_level_ext: None,
                        // No bandwidth estimate yet: receivers get the high layer, and the
                        // low one only while the high layer is paused by the publisher.
                        switcher: track
                            .simulcast
                            .then(|| LayerSwitcher::new(Layer::High, now)),
                        added_at: now,
                        awaiting_keyframe: (!track.simulcast && detects_keyframes(&track.mime))
                            .then_some(now),
                        direct: is_audio,
                        rollover: Rollover::default(),
                        video: VideoPath::Undecided,
                        rtx_ssrc,
                        rtx_payload_type: None,
                        transport_ext: None,
                        sent: SentStream::default(),
                    },
                );
                if track.simulcast {
                    // Layer choice follows the bandwidth estimate.
                    self.timers
                        .arm_if_idle(Timer::Estimate, now + ESTIMATE_PERIOD);
                }
                self.negotiate(now, out);
            }
            Err(err) => {
                tracing::warn!(session_id = %self.config.session_id, out_track = %track.out_id, "cannot add forwarded track: {err}");
                self.count_error(RtcErrorKind::track);
            }
        }
    }

    /// Stops forwarding one track (renegotiates).
    pub fn remove_forwarded(
        &mut self,
        now: Instant,
        publisher: &str,
        source_id: &str,
        out: &mut Outputs,
    ) {
        if let Some(leg) = self.legs.remove(&TrackKey::new(publisher, source_id)) {
            let _ = self.pc.remove_track(leg.sender);
            self.track_gauge(Direction::Out, &leg.track.mime, -1);
            self.negotiate(now, out);
        }
    }

    /// Stops forwarding every track published by `publisher` (renegotiates for video).
    pub fn remove_publisher(&mut self, now: Instant, publisher: &str, out: &mut Outputs) {
        let keys: Vec<_> = self
            .legs
            .keys()
            .filter(|key| key.publisher() == publisher)
            .cloned()
            .collect();
        let mut changed = false;
        for key in keys {
            if let Some(leg) = self.legs.remove(&key) {
                let _ = self.pc.remove_track(leg.sender);
                self.track_gauge(Direction::Out, &leg.track.mime, -1);
                changed = true;
            }
        }
        if changed {
            self.negotiate(now, out);
        }
    }

    /// Sends a PLI for one of our published video tracks (at most one per second).
    pub fn request_keyframe(
        &mut self,
        now: Instant,
        source_id: &str,
        layer: Option<Layer>,
        out: &mut Outputs,
    ) {
        const MIN_INTERVAL: Duration = Duration::from_secs(1);
        let Some(source) = self.video_sources.get_mut(source_id) else {
            return;
        };
        let Some(&(_, ssrc)) = source
            .ssrcs
            .iter()
            .find(|(l, _)| *l == layer)
            .or(source.ssrcs.first())
        else {
            return;
        };
        let last = &mut source.last_pli[usize::from(layer == Some(Layer::High))];
        if last.is_some_and(|t| now.duration_since(t) < MIN_INTERVAL) {
            return;
        }
        *last = Some(now);
        tracing::debug!(session_id = %self.config.session_id, source_id, ssrc, "keyframe requested (PLI)");
        let receiver = source.receiver;
        if let Some(mut receiver) = self.pc.rtp_receiver(receiver) {
            let pli =
                rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc: ssrc,
                };
            if let Err(err) = receiver.write_rtcp(now, vec![Box::new(pli)]) {
                tracing::debug!(session_id = %self.config.session_id, "PLI not sent: {err}");
            }
        }
        self.drain(now, out);
    }

    /// PLI/FIR from this receiver for a forwarded track → a keyframe request to its publisher.
    pub(super) fn relay_keyframe_requests(
        &mut self,
        packets: &[Box<dyn rtc::rtcp::Packet>],
        out: &mut Outputs,
    ) {
        use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
        use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
        for packet in packets {
            let media_ssrcs: Vec<u32> =
                if let Some(pli) = packet.as_any().downcast_ref::<PictureLossIndication>() {
                    vec![pli.media_ssrc]
                } else if let Some(fir) = packet.as_any().downcast_ref::<FullIntraRequest>() {
                    fir.fir
                        .iter()
                        .map(|e| e.ssrc)
                        .chain([fir.media_ssrc])
                        .collect()
                } else {
                    continue;
                };
            for leg in self.legs.values().filter(|l| media_ssrcs.contains(&l.ssrc)) {
                out.call.keyframe_requests.push(KeyframeRequest {
                    publisher: leg.track.publisher.clone(),
                    source_id: leg.track.source_id.clone(),
                    layer: leg.switcher.as_ref().and_then(LayerSwitcher::current),
                });
            }
        }
    }

    /// Forwards one packet of a published track to this participant.
    /// Forwards one packet of a track this session receives. One write in
    /// [`WRITE_TIME_SAMPLE`] is timed for `rtcd_rtc_rtp_tracks_writes_time` (the others read
    /// no clock).
    pub fn forward(&mut self, now: Instant, inbound: &InboundRtp, out: &mut Outputs) {
        self.writes_until_sample = self.writes_until_sample.saturating_sub(1);
        if self.writes_until_sample > 0 {
            self.forward_packet(now, inbound, out);
            return;
        }
        self.writes_until_sample = WRITE_TIME_SAMPLE;
        let started = (self.stopwatch)();
        self.forward_packet(now, inbound, out);
        let elapsed = (self.stopwatch)().duration_since(started).as_secs_f64();
        if let Some(kind) = self.legs.get(&inbound.key).map(|leg| leg.track.kind) {
            self.write_time(kind).observe(elapsed);
        }
    }

    /// The writes-time histogram of forwarded tracks of `kind` (resolved once per kind).
    pub(super) fn write_time(&mut self, kind: TrackKind) -> &Histogram {
        let slot = &mut self.write_times[kind as usize];
        slot.get_or_insert_with(|| {
            self.metrics.rtc_rtp_tracks_writes_time.get_or_create_owned(
                &crate::metrics::TrackKindLabels {
                    groupID: self.config.group_id.clone(),
                    r#type: kind.as_str().to_owned(),
                },
            )
        })
    }

    /// One packet to one receiver: the leg's negotiated parameters, then the direct audio
    /// path, the keyframe wait, the simulcast layer, the direct video path, or the core.
    pub(super) fn forward_packet(&mut self, now: Instant, inbound: &InboundRtp, out: &mut Outputs) {
        if self.closed.is_some() {
            return;
        }
        let Some(leg) = self.legs.get_mut(&inbound.key) else {
            return;
        };
        let Some(payload_type) = leg.payload_type else {
            return; // not negotiated yet
        };
        if (leg.direct || matches!(leg.video, VideoPath::Undecided))
            && self.direct.is_none()
            && self.relays.is_empty()
        {
            self.direct = self.srtp_keys.local_keys().map(DirectSender::new);
            if self.direct.is_some() {
                // The first reports are due one period after the session started.
                self.timers.arm(
                    Timer::SenderReports,
                    self.created_at + sender_reports::AUDIO_REPORT_PERIOD,
                );
            }
        }
        if leg.direct
            && let (Some(direct), Some(route)) = (&self.direct, self.media_route)
        {
            if let Some(sent) =
                leg.send_direct_audio(direct, route, inbound, payload_type, now, out)
            {
                self.direct_bytes_sent += sent as u64;
                self.unreported_direct_packets += 1;
            }
            return;
        }
        let session_id = &self.config.session_id;
        if !leg.keyframe_seen(now, inbound, &self.metrics, session_id, out) {
            return;
        }
        let Some(mut packet) =
            leg.outgoing_packet(now, inbound, payload_type, (&self.metrics, session_id), out)
        else {
            return;
        };
        if !leg.direct {
            if matches!(leg.video, VideoPath::Undecided) {
                leg.video = match (&self.direct, self.media_route) {
                    (Some(_), Some(_)) => VideoPath::Direct(Box::new(VideoLeg::new(
                        payload_type,
                        self.nack_history,
                        leg.rtx_ssrc.zip(leg.rtx_payload_type),
                    ))),
                    // Connected without keys (another profile), or relayed: the core sends.
                    _ if self.connected_at.is_some() || !self.relays.is_empty() => VideoPath::Core,
                    // Before DTLS completes nothing can be sent, by the core either.
                    _ => return,
                };
                tracing::debug!(session_id = %self.config.session_id, publisher = %leg.track.publisher, path = ?leg.video, rtx = ?leg.rtx_ssrc.zip(leg.rtx_payload_type), transport_ext = ?leg.transport_ext, "video leg sent by");
            }
            if matches!(leg.video, VideoPath::Direct(_)) {
                let (Some(sender), Some(route)) = (&self.direct, self.media_route) else {
                    return;
                };
                let estimate = self.estimate.get_or_insert_with(|| {
                    self.timers
                        .arm_if_idle(Timer::Estimate, now + ESTIMATE_PERIOD);
                    SendSideEstimate::new(engine::estimator())
                });
                if let Some(sent) =
                    leg.send_direct_video((sender, route, estimate), &packet, now, out)
                {
                    self.direct_bytes_sent += sent as u64;
                    self.unreported_direct_video_packets += 1;
                }
                return;
            }
        }
        if let (Some(id), Some(level)) = (leg.audio_level_ext, inbound.audio_level) {
            let level = usize::from(level);
            let _ = packet.header.set_extension(
                id,
                bytes::Bytes::from_static(&AUDIO_LEVEL_BYTES[level..=level]),
            );
        }
        let sender = leg.sender;
        if let Some(mut sender) = self.pc.rtp_sender(sender)
            && let Err(err) = sender.write_rtp(now, packet)
        {
            tracing::trace!(session_id = %self.config.session_id, "write_rtp: {err}");
            self.count_error(RtcErrorKind::rtp);
        }
        // Writing RTP produces only datagrams: no events or reads to pump.
        self.drain_writes(now, out);
    }
}

impl Leg {
    /// Seals an audio packet with the session's own SRTP (the direct path) and queues it;
    /// the payload length when sent.
    fn send_direct_audio(
        &mut self,
        direct: &DirectSender,
        route: Route,
        inbound: &InboundRtp,
        payload_type: u8,
        now: Instant,
        out: &mut Outputs,
    ) -> Option<usize> {
        let header = DirectHeader {
            marker: inbound.packet.header.marker,
            payload_type,
            sequence_number: inbound.packet.header.sequence_number,
            timestamp: inbound.packet.header.timestamp,
            ssrc: self.ssrc,
            audio_level: self.audio_level_ext.zip(inbound.audio_level),
            transport_sequence: None,
            original_sequence: None,
        };
        let payload = &inbound.packet.payload;
        let data = direct.seal(&header, payload, &mut self.rollover, &mut out.direct_arena)?;
        self.sent.on_sent(header.timestamp, payload.len(), now);
        out.driver.transmits.push(route.transmit(data));
        Some(payload.len())
    }

    /// Sends a video packet of a leg on the direct path (numbering, history for NACKs, the
    /// send-side estimate); the payload length when sent.
    fn send_direct_video(
        &mut self,
        (sender, route, estimate): (&DirectSender, Route, &mut SendSideEstimate),
        packet: &rtc::rtp::packet::Packet,
        now: Instant,
        out: &mut Outputs,
    ) -> Option<usize> {
        let header = DirectHeader {
            marker: packet.header.marker,
            payload_type: packet.header.payload_type,
            sequence_number: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            ssrc: self.ssrc,
            audio_level: None,
            transport_sequence: None,
            original_sequence: None,
        };
        let (video, mut wire) =
            self.direct_video((sender, estimate), &mut out.direct_arena, now)?;
        let data = video.send(&mut wire, header, &packet.payload)?;
        self.sent
            .on_sent(header.timestamp, packet.payload.len(), now);
        out.driver.transmits.push(route.transmit(data));
        Some(packet.payload.len())
    }

    /// Reads what negotiation decided for this leg from its sender: payload type, the
    /// audio-level and transport-wide extension IDs, and RTX (the core keeps an encoding's RTX
    /// SSRC only if the receiver accepted RTX; the payload type is the one our offer gave it).
    pub(super) fn resolve_parameters(
        &mut self,
        send_parameters: &rtc::rtp_transceiver::rtp_sender::RTCRtpSendParameters,
    ) {
        let parameters = &send_parameters.rtp_parameters;
        let mime = &self.track.mime;
        self.payload_type = engine::payload_type(parameters, mime);
        self.audio_level_ext = engine::extension_id(parameters, engine::AUDIO_LEVEL_URI);
        self.transport_ext = engine::extension_id(parameters, engine::TWCC_URI);
        let rtx_negotiated = send_parameters
            .encodings
            .first()
            .is_some_and(|e| e.rtp_coding_parameters.rtx.is_some());
        self.rtx_payload_type = self
            .payload_type
            .filter(|_| rtx_negotiated)
            .and_then(engine::rtx_payload_type_for);
    }

    /// Whether the leg may forward `inbound`: a leg waiting for its first keyframe drops
    /// everything else and asks for one every [`KEYFRAME_RETRY`].
    fn keyframe_seen(
        &mut self,
        now: Instant,
        inbound: &InboundRtp,
        metrics: &Metrics,
        session_id: &str,
        out: &mut Outputs,
    ) -> bool {
        let Some(last_request) = self.awaiting_keyframe.as_mut() else {
            return true;
        };
        if !inbound.keyframe {
            if now.duration_since(*last_request) >= KEYFRAME_RETRY {
                *last_request = now;
                out.call.keyframe_requests.push(KeyframeRequest {
                    publisher: self.track.publisher.clone(),
                    source_id: self.track.source_id.clone(),
                    layer: None,
                });
            }
            return false;
        }
        self.awaiting_keyframe = None;
        first_keyframe(metrics, session_id, self, now);
        true
    }

    /// The packet as this receiver gets it: the leg's SSRC and payload type, no inbound
    /// extensions, and for simulcast the chosen layer only, switched at keyframes with
    /// rebased numbering; `None` when this receiver does not get it.
    fn outgoing_packet(
        &mut self,
        now: Instant,
        inbound: &InboundRtp,
        payload_type: u8,
        (metrics, session_id): (&Metrics, &str),
        out: &mut Outputs,
    ) -> Option<rtc::rtp::packet::Packet> {
        let source = &inbound.packet.header;
        // The library takes the packet by value: a fresh header (no CSRC/extension vectors
        // to copy) sharing the payload. Extension IDs are per leg: the inbound ones are
        // dropped and the audio level re-added with this receiver's ID (for level meters).
        let mut packet = rtc::rtp::packet::Packet {
            header: rtc::rtp::header::Header {
                version: source.version,
                padding: source.padding,
                marker: source.marker,
                payload_type,
                sequence_number: source.sequence_number,
                timestamp: source.timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: inbound.packet.payload.clone(),
        };
        let (Some(switcher), Some(layer)) = (self.switcher.as_mut(), inbound.layer) else {
            return Some(packet);
        };
        let descriptor = inbound.vp8;
        let before = switcher.current();
        let verdict = switcher.on_packet(
            now,
            layer,
            inbound.packet.payload.len(),
            source.sequence_number,
            source.timestamp,
            descriptor.as_ref(),
            inbound.keyframe,
        );
        let after = switcher.current();
        let wanted = switcher.keyframe_request(now);
        if before.is_none() && after.is_some() {
            first_keyframe(metrics, session_id, self, now);
        }
        if after != before {
            tracing::debug!(
                session_id = %session_id,
                publisher = %self.track.publisher,
                from = before.map(Layer::as_str),
                layer = layer.as_str(),
                "simulcast: forwarding layer"
            );
        }
        if let Some(wanted) = wanted {
            out.call.keyframe_requests.push(KeyframeRequest {
                publisher: self.track.publisher.clone(),
                source_id: self.track.source_id.clone(),
                layer: Some(wanted),
            });
        }
        let Verdict::Forward(rewritten) = verdict else {
            return None;
        };
        packet.header.sequence_number = rewritten.seq;
        packet.header.timestamp = rewritten.timestamp;
        // Copy the payload only when the rewritten IDs differ (after a switch), not for the
        // layer a receiver started on.
        let unchanged = descriptor.as_ref().is_none_or(|d| {
            d.picture_id.map(|(_, _, id)| id) == rewritten.picture_id
                && d.tl0.map(|(_, v)| v) == rewritten.tl0
        });
        if let Some(descriptor) = descriptor.filter(|_| !unchanged) {
            packet.payload = crate::sfu::vp8::rewrite(
                &packet.payload,
                &descriptor,
                rewritten.picture_id,
                rewritten.tl0,
            );
        }
        Some(packet)
    }
}
