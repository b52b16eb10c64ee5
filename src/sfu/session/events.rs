//! Driving the peer connection: datagrams in, timers, the core's events (tracks, data channels,
//! state changes) and everything it produced.

use super::*;

impl Session {
    /// The earliest time [`Session::handle_timeout`] must run: the session's own timers, the
    /// peer connection's and the TURN relays'.
    pub fn next_timeout(&mut self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        let relay_deadline = self.relays.iter_mut().filter_map(Relay::poll_timeout).min();
        [self.timers.next(), self.pc.poll_timeout(), relay_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Outputs) {
        if self.closed.is_some() {
            return;
        }
        if self.timers.fire(Timer::FirstOffer, now) {
            self.count_error(RtcErrorKind::signaling);
            self.metrics.session_failed(FailureCause::no_offer);
            self.close_with(now, CloseReason::NoOffer, out);
            return;
        }
        if self.timers.fire(Timer::Answer, now) {
            tracing::warn!(session_id = %self.config.session_id, "no answer to the server offer within {ANSWER_TIMEOUT:?}");
            self.making_offer = false;
            self.locked = false;
            self.count_error(RtcErrorKind::signaling_lock_timeout);
            self.release_lock(now);
        }
        if self.timers.fire(Timer::ClientLock, now) {
            tracing::warn!(session_id = %self.config.session_id, "client held the signaling lock for {CLIENT_LOCK_TIMEOUT:?}; releasing it");
            self.locked = false;
            self.count_error(RtcErrorKind::signaling_lock_timeout);
            if self.renegotiation_pending {
                self.negotiate(now, out);
            }
        }
        if self.pc.poll_timeout().is_some_and(|t| t <= now)
            && let Err(err) = self.pc.handle_timeout(now)
        {
            tracing::debug!(session_id = %self.config.session_id, "timeout handling: {err}");
        }
        for relay in &mut self.relays {
            if relay.poll_timeout().is_some_and(|t| t <= now) {
                relay.handle_timeout(now);
            }
        }
        self.run_periodic_timers(now, out);
        self.drain(now, out);
    }

    /// The estimate reads, sender reports and quality samples due at `now`, each armed again
    /// while it is still needed.
    fn run_periodic_timers(&mut self, now: Instant, out: &mut Outputs) {
        let estimate_due = self.timers.fire(Timer::Estimate, now);
        let simulcast = estimate_due && self.legs.values().any(|l| l.switcher.is_some());
        if estimate_due && (self.estimate.is_some() || simulcast) {
            self.timers.arm(Timer::Estimate, now + ESTIMATE_PERIOD);
        }
        if estimate_due && let Some(estimate) = &mut self.estimate {
            estimate.prune(now);
        }
        if self.timers.fire(Timer::SenderReports, now) && self.direct.is_some() {
            self.send_sender_reports(now);
        }
        if simulcast {
            self.apply_estimate(now);
        }
        if self.timers.fire(Timer::Quality, now) {
            self.timers.arm(Timer::Quality, now + QUALITY_PERIOD);
            let report = self.pc.get_stats(now, rtc::statistics::StatsSelector::None);
            self.sample_quality(now, &report, out);
        }
    }

    /// Feeds one datagram addressed to this session.
    pub fn handle_datagram(&mut self, now: Instant, datagram: Datagram, out: &mut Outputs) {
        if self.closed.is_some() {
            return;
        }
        self.first_datagram_at.get_or_insert(now);
        let input = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: datagram.local,
                peer_addr: datagram.peer,
                transport_protocol: match datagram.protocol {
                    Protocol::Udp => TransportProtocol::UDP,
                    Protocol::Tcp => TransportProtocol::TCP,
                },
                ecn: None,
            },
            message: datagram.data,
        };
        if let Err(err) = self.pc.handle_read(input) {
            tracing::debug!(session_id = %self.config.session_id, peer = %datagram.peer, "datagram rejected: {err}");
        }
        self.drain(now, out);
    }

    /// Drains everything the peer connection produced.
    pub(super) fn drain(&mut self, now: Instant, out: &mut Outputs) {
        loop {
            let mut progressed = !self.relays.is_empty() && self.poll_relays(now, out);
            while let Some(transmit) = self.pc.poll_write() {
                progressed = true;
                // ICE traffic from a relay candidate goes through its TURN allocation.
                if let Some(relay) = self
                    .relays
                    .iter_mut()
                    .find(|r| r.relayed() == Some(transmit.transport.local_addr))
                {
                    relay.send(now, transmit.transport.peer_addr, &transmit.message);
                    continue;
                }
                self.note_route(&transmit, out);
                out.driver.transmits.push(Transmit::from(transmit));
            }
            while let Some(event) = self.pc.poll_event() {
                progressed = true;
                self.handle_event(now, event, out);
            }
            while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
                progressed = true;
                match message {
                    RTCMessage::DataChannelMessage(dc, message) => {
                        self.handle_dc_message(now, dc, &message.data, out)
                    }
                    RTCMessage::RtcpPacket(_, packets) => {
                        self.relay_keyframe_requests(&packets, out);
                        self.handle_send_side_feedback(now, &packets, out);
                    }
                    RTCMessage::RtpPacket(track_id, packet) => {
                        let Some(track) = self.published.iter().find(|t| t.source_id == track_id)
                        else {
                            continue;
                        };
                        let mut audio_level = None;
                        if track.kind == TrackKind::Voice {
                            audio_level = self
                                .voice_level_ext
                                .and_then(|id| packet.header.get_extension(id))
                                .and_then(|level| level.first().copied());
                            // VAD runs before the mute drop, as upstream.
                            if let Some(on) = audio_level.and_then(|l| self.vad.push(l, now)) {
                                out.driver.events.push(MediaEvent::VoiceActivity {
                                    session_id: self.config.session_id.clone(),
                                    on,
                                });
                            }
                            if self.muted {
                                continue;
                            }
                        }
                        let layer = if track.simulcast {
                            self.video_sources
                                .get(&track_id)
                                .and_then(|s| s.layer_of(packet.header.ssrc))
                        } else {
                            None
                        };
                        let is_vp8 = track.mime.eq_ignore_ascii_case(MIME_TYPE_VP8);
                        let descriptor = is_vp8
                            .then(|| crate::sfu::vp8::descriptor(&packet.payload))
                            .flatten();
                        let keyframe = if is_vp8 {
                            descriptor.is_some_and(|d| {
                                crate::sfu::vp8::is_keyframe_after(&packet.payload, &d)
                            })
                        } else {
                            track.mime.eq_ignore_ascii_case(MIME_TYPE_AV1)
                                && crate::sfu::av1::is_keyframe(&packet.payload)
                        };
                        let key = track.key.clone();
                        out.call.rtp.push(InboundRtp {
                            key,
                            packet,
                            audio_level,
                            layer,
                            vp8: descriptor.filter(|_| layer.is_some()),
                            keyframe,
                        });
                    }
                    _ => {}
                }
            }
            if !progressed || self.closed.is_some() {
                break;
            }
        }
        for relay in &mut self.relays {
            relay.drain_transmits(&mut out.driver.transmits);
        }
    }

    /// A new incoming track: classify it and publish it (once per track; `OnOpen` repeats
    /// per simulcast layer and after renegotiations).
    pub(super) fn track_opened(
        &mut self,
        init: rtc::peer_connection::event::RTCTrackEventInit,
        out: &mut Outputs,
    ) {
        let layer = init.rid.as_deref().and_then(Layer::from_rid);
        if self.published.iter().any(|t| t.source_id == init.track_id) {
            // Another simulcast layer of a known track (OnOpen fires once per rid).
            if let Some(source) = self.video_sources.get_mut(&init.track_id)
                && !source.ssrcs.iter().any(|(_, s)| *s == init.ssrc)
            {
                tracing::info!(session_id = %self.config.session_id, rid = ?init.rid, ssrc = init.ssrc, "simulcast layer published");
                source.ssrcs.push((layer, init.ssrc));
            }
            return;
        }
        let Some(mut receiver) = self.pc.rtp_receiver(init.receiver_id) else {
            return;
        };
        let level_ext = engine::extension_id(
            &receiver.get_parameters().rtp_parameters,
            engine::AUDIO_LEVEL_URI,
        );
        let track = receiver.track();
        let is_audio = track.kind() == RtpCodecKind::Audio;
        let mime = track
            .codec(init.ssrc)
            .map(|c| c.mime_type.clone())
            .unwrap_or_default();
        let stream_id = init.stream_ids.first().cloned().unwrap_or_default();
        let session_id = self.config.session_id.clone();
        let Some(kind) = tracks::classify(
            is_audio,
            &stream_id,
            self.screen_stream.as_deref(),
            self.video_stream.as_deref(),
        ) else {
            tracing::warn!(
                session_id,
                stream_id,
                mime,
                "received unexpected video track"
            );
            return;
        };
        let published = PublishedTrack {
            publisher: session_id.clone(),
            source_id: init.track_id.clone(),
            kind,
            mime: mime.clone(),
            out_id: tracks::out_track_id(kind, &session_id),
            key: TrackKey::new(&session_id, &init.track_id),
            simulcast: layer.is_some(),
        };
        if kind == TrackKind::Voice {
            self.voice_level_ext = level_ext;
        }
        if !is_audio {
            self.video_sources.insert(
                init.track_id.clone(),
                VideoSource {
                    receiver: init.receiver_id,
                    ssrcs: vec![(layer, init.ssrc)],
                    last_pli: [None; 2],
                },
            );
        }
        tracing::info!(
            session_id,
            kind = kind.as_str(),
            mime,
            audio_level = level_ext.is_some(),
            "track published"
        );
        self.track_gauge(Direction::In, &mime, 1);
        self.published.push(published.clone());
        out.call.published.push(published);
    }

    pub(super) fn handle_event(
        &mut self,
        now: Instant,
        event: RTCPeerConnectionEvent,
        out: &mut Outputs,
    ) {
        let session_id = &self.config.session_id;
        match event {
            RTCPeerConnectionEvent::OnSignalingStateChangeEvent(state) => {
                self.signaling = state;
                // An answer is applied before the core reports the state it leads to: a
                // renegotiation deferred then (tracks added while our offer was out) goes now.
                if state == RTCSignalingState::Stable && self.renegotiation_pending {
                    self.negotiate(now, out);
                }
            }
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                self.connection_state_changed(now, state, out)
            }
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(
                RTCIceConnectionState::Connected | RTCIceConnectionState::Completed,
            ) if !self.ice_connected => {
                self.ice_connected = true;
                tracing::debug!(
                    session_id,
                    ice_ms = now.duration_since(self.created_at).as_millis() as u64,
                    "ICE connected"
                );
            }
            RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(dc)) => {
                self.data_channel_opened(now, dc, out)
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                self.track_opened(init, out)
            }
            RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnClose(dc))
                if self.dc == Some(dc) =>
            {
                self.dc = None;
            }
            _ => {}
        }
    }

    /// The peer connection's state changed: counted, and connected (with the selected pair
    /// logged) or failed (with its cause) or closed.
    fn connection_state_changed(
        &mut self,
        now: Instant,
        state: RTCPeerConnectionState,
        out: &mut Outputs,
    ) {
        let session_id = &self.config.session_id;
        tracing::debug!(session_id, %state, "peer connection state");
        let counted = match state {
            RTCPeerConnectionState::Connected => Some(ConnState::connected),
            RTCPeerConnectionState::Disconnected => Some(ConnState::disconnected),
            RTCPeerConnectionState::Failed => Some(ConnState::failed),
            RTCPeerConnectionState::Closed => Some(ConnState::closed),
            _ => None,
        };
        if let Some(r#type) = counted {
            self.metrics
                .rtc_conn_states
                .get_or_create(&ConnStateLabels { r#type })
                .inc();
        }
        match state {
            RTCPeerConnectionState::Connected if self.connected_at.is_none() => {
                self.connected_at = Some(now);
                // Quality samples start one period after the session did.
                self.timers
                    .arm_if_idle(Timer::Quality, self.created_at + QUALITY_PERIOD);
                self.metrics
                    .rtc_connection_time
                    .get_or_create(&GroupLabels {
                        groupID: self.config.group_id.clone(),
                    })
                    .observe(now.duration_since(self.created_at).as_secs_f64());
                let (protocol, local, remote) = match self.media_route {
                    Some(route) => (
                        match route.protocol {
                            Protocol::Udp => "udp",
                            Protocol::Tcp => "ice-tcp",
                        },
                        route.local.to_string(),
                        route.peer.to_string(),
                    ),
                    None if !self.relays.is_empty() => ("turn-relay", "-".into(), "-".into()),
                    None => ("unknown", "-".into(), "-".into()),
                };
                tracing::info!(
                    session_id,
                    connect_ms = now.duration_since(self.created_at).as_millis() as u64,
                    protocol,
                    local,
                    remote,
                    "media connected: selected candidate pair"
                );
            }
            RTCPeerConnectionState::Failed => {
                let (cause, why) = self.failure_cause();
                self.metrics.session_failed(cause);
                tracing::warn!(
                    session_id,
                    after_ms = now.duration_since(self.created_at).as_millis() as u64,
                    "media connection failed: {why}"
                );
                self.close_with(now, CloseReason::Failed(why.into()), out);
            }
            RTCPeerConnectionState::Closed => self.close_with(
                now,
                CloseReason::Failed("peer connection closed".into()),
                out,
            ),
            _ => {}
        }
    }

    /// The client's data channel opened: the session is ready for server offers.
    fn data_channel_opened(&mut self, now: Instant, dc: RTCDataChannelId, out: &mut Outputs) {
        self.dc = Some(dc);
        if let Some(answered_at) = self.answered_at {
            self.metrics
                .rtc_dc_open_time
                .get_or_create(&GroupLabels {
                    groupID: self.config.group_id.clone(),
                })
                .observe(now.duration_since(answered_at).as_secs_f64());
        }
        tracing::debug!(session_id = self.config.session_id, "data channel open");
        out.call.ready.push(self.config.session_id.clone());
        if self.renegotiation_pending {
            self.negotiate(now, out);
        }
    }
}
