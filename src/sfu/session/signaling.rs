//! Offer/answer and candidates: the client's offers (WebSocket or data channel), the SFU's
//! renegotiations under the signaling lock, trickled candidates in both directions.

use super::*;

impl Session {
    /// Sends a server offer now if allowed, or marks one as pending.
    pub(super) fn negotiate(&mut self, now: Instant, out: &mut Outputs) {
        let Some(dc) = self.dc else {
            self.renegotiation_pending = true;
            return;
        };
        if self.making_offer
            || self.locked
            || self.signaling != RTCSignalingState::Stable
            || self.closed.is_some()
        {
            self.renegotiation_pending = true;
            self.lock_wanted_since.get_or_insert(now);
            return;
        }
        self.renegotiation_pending = false;
        let offer = match self
            .pc
            .create_offer(None)
            .and_then(|offer| self.pc.set_local_description(now, offer))
        {
            Ok(()) => self.pc.local_description(),
            Err(err) => {
                tracing::warn!(session_id = %self.config.session_id, "server offer failed: {err}");
                return;
            }
        };
        let Some(offer) = offer else { return };
        let Ok(json) = serde_json::to_string(&offer) else {
            return;
        };
        for leg in self.legs.values_mut() {
            leg.offered = true;
        }
        self.locked = true;
        self.making_offer = true;
        self.timers.arm(Timer::Answer, now + ANSWER_TIMEOUT);
        let wanted = self.lock_wanted_since.take().unwrap_or(now);
        self.lock_histogram(LockTime::Grab)
            .observe(now.saturating_duration_since(wanted).as_secs_f64());
        self.lock_held_since = Some(now);
        // The MediaMap strictly before the offer it describes.
        let entries = self.media_map();
        self.send_dc(now, dc, &dc_protocol::encode_media_map(&entries));
        let path = if self.config.props.dc_signaling() {
            Path::DataChannel
        } else {
            Path::WebSocket
        };
        self.send_sdp(now, &json, path, out);
    }

    pub(super) fn media_map(&mut self) -> Vec<MediaMapEntry> {
        let mut entries = Vec::new();
        for leg in self.legs.values() {
            let transceiver = rtc::rtp_transceiver::RTCRtpTransceiverId::from(leg.sender);
            let mid = self
                .pc
                .rtp_transceiver(transceiver)
                .and_then(|t| t.mid().clone());
            if let Some(mid) = mid {
                entries.push(MediaMapEntry {
                    mid,
                    kind: leg.track.kind.as_str(),
                    sender_id: leg.track.publisher.clone(),
                });
            }
        }
        entries
    }

    /// The SFU gave up the lock it took for a renegotiation.
    pub(super) fn release_lock(&mut self, now: Instant) {
        if let Some(since) = self.lock_held_since.take() {
            self.lock_histogram(LockTime::Held)
                .observe(now.saturating_duration_since(since).as_secs_f64());
        }
    }

    pub(super) fn lock_histogram(&self, which: LockTime) -> Histogram {
        let family = match which {
            LockTime::Grab => &self.metrics.rtc_signaling_lock_grab_time,
            LockTime::Held => &self.metrics.rtc_signaling_lock_locked_time,
        };
        family.get_or_create_owned(&GroupLabels {
            groupID: self.config.group_id.clone(),
        })
    }

    /// An SDP from the client (offer or answer) over `path`.
    pub fn handle_sdp(&mut self, now: Instant, json: &str, path: Path, out: &mut Outputs) {
        if self.closed.is_some() {
            return;
        }
        let result = self.apply_sdp(now, json, path, out);
        if let Err(err) = result {
            tracing::warn!(session_id = %self.config.session_id, "signaling failed: {err}");
            self.count_error(RtcErrorKind::signaling);
            if !self.answered {
                // The first offer could not be processed: the session cannot work.
                self.metrics.session_failed(FailureCause::bad_offer);
                self.close_with(now, CloseReason::Failed(err.to_string()), out);
                return;
            }
        }
        self.drain(now, out);
    }

    pub(super) fn apply_sdp(
        &mut self,
        now: Instant,
        json: &str,
        path: Path,
        out: &mut Outputs,
    ) -> Result<(), SessionError> {
        let description: Description =
            serde_json::from_str(json).map_err(|e| SessionError::Sdp(e.to_string()))?;
        match description.kind.to_ascii_lowercase().as_str() {
            "offer" => {
                if self.making_offer || self.signaling != RTCSignalingState::Stable {
                    // We are the impolite peer: a colliding client offer is ignored.
                    tracing::debug!(session_id = %self.config.session_id, "client offer ignored during our own negotiation");
                    return Ok(());
                }
                let inline = description
                    .sdp
                    .lines()
                    .filter(|l| l.starts_with("a=candidate"))
                    .count();
                if self.remote_candidates + inline > self.max_remote_candidates {
                    self.metrics
                        .refused(crate::limits::Limit::remote_candidates);
                    return Err(SessionError::Sdp(format!(
                        "the offer carries {inline} ICE candidates; the session may have {} (limits.max_remote_candidates)",
                        self.max_remote_candidates
                    )));
                }
                self.remote_candidates += inline;
                let sdp = crate::sfu::offer_filter::without_publisher_rtx(&description.sdp)
                    .unwrap_or(description.sdp);
                let offer = RTCSessionDescription::offer(sdp)?;
                self.pc.set_remote_description(now, offer)?;
                let first = !self.answered;
                let trickle = if first {
                    self.add_local_candidates()?
                } else {
                    Vec::new()
                };
                let answer = self.pc.create_answer(None)?;
                self.pc.set_local_description(now, answer)?;
                let local = self
                    .pc
                    .local_description()
                    .ok_or_else(|| SessionError::Rtc("no local description".into()))?;
                let json =
                    serde_json::to_string(&local).map_err(|e| SessionError::Sdp(e.to_string()))?;
                self.send_sdp(now, &json, path, out);
                // Candidates after the answer: clients add them once a remote description exists.
                for candidate in trickle {
                    out.driver.events.push(MediaEvent::Outbound {
                        session_id: self.config.session_id.clone(),
                        kind: OutboundKind::Ice,
                        data: candidate,
                    });
                }
                if first {
                    self.answered = true;
                    self.timers.stop(Timer::FirstOffer);
                    self.answered_at = Some(now);
                    for candidate in std::mem::take(&mut self.queued_candidates) {
                        self.add_remote_candidate(candidate);
                    }
                }
                Ok(())
            }
            "answer" => {
                if !self.making_offer {
                    tracing::debug!(session_id = %self.config.session_id, "stale answer dropped");
                    return Ok(());
                }
                let answer = RTCSessionDescription::answer(description.sdp)?;
                self.pc.set_remote_description(now, answer)?;
                self.making_offer = false;
                self.locked = false;
                self.timers.stop(Timer::Answer);
                self.release_lock(now);
                // The legs this offer carried are negotiated now: their payload types and
                // extension IDs are read once, here, not per packet.
                for leg in self.legs.values_mut().filter(|leg| leg.offered) {
                    if let Some(mut sender) = self.pc.rtp_sender(leg.sender) {
                        leg.resolve_parameters(sender.get_parameters());
                    }
                    // A receiver that just got a video track needs a keyframe to start decoding.
                    if leg.track.mime.starts_with("video/") {
                        out.call.keyframe_requests.push(KeyframeRequest {
                            publisher: leg.track.publisher.clone(),
                            source_id: leg.track.source_id.clone(),
                            layer: leg.switcher.as_ref().and_then(LayerSwitcher::current),
                        });
                    }
                }
                if self.renegotiation_pending {
                    self.negotiate(now, out);
                }
                Ok(())
            }
            other => Err(SessionError::Sdp(format!("unexpected sdp type {other:?}"))),
        }
    }

    pub(super) fn send_sdp(&mut self, now: Instant, json: &str, path: Path, out: &mut Outputs) {
        match (path, self.dc) {
            (Path::DataChannel, Some(dc)) => self.send_dc(now, dc, &dc_protocol::encode_sdp(json)),
            _ => out.driver.events.push(MediaEvent::Outbound {
                session_id: self.config.session_id.clone(),
                kind: OutboundKind::Sdp,
                data: json.to_owned(),
            }),
        }
    }

    /// Adds our host candidates; returns them as trickle messages for the client.
    pub(super) fn add_local_candidates(&mut self) -> Result<Vec<String>, SessionError> {
        let mut trickle = Vec::new();
        for advertised in self.candidates.clone() {
            let config = CandidateHostConfig {
                base_config: CandidateConfig {
                    network: match advertised.protocol {
                        Protocol::Udp => "udp".to_owned(),
                        Protocol::Tcp => "tcp".to_owned(),
                    },
                    address: advertised.address.ip().to_string(),
                    port: advertised.address.port(),
                    component: 1,
                    // pion's host priorities (UDP above TCP, spec media-plane §1.5).
                    priority: match advertised.protocol {
                        Protocol::Udp => 2_130_706_431,
                        Protocol::Tcp => 1_671_430_143,
                    },
                    ..Default::default()
                },
                tcp_type: match advertised.protocol {
                    Protocol::Udp => rtc::ice::tcp_type::TcpType::Unspecified,
                    Protocol::Tcp => rtc::ice::tcp_type::TcpType::Passive,
                },
            };
            let candidate = config.new_candidate_host()?;
            let init = RTCIceCandidate::from(&candidate).to_json()?;
            self.pc.add_local_candidate(init.clone())?;
            trickle.push(trickle_message(&init));
        }
        // Relays allocated before the offer arrived.
        trickle.append(&mut self.pending_relay_candidates);
        Ok(trickle)
    }

    /// A trickled client candidate (`RTCIceCandidateInit` JSON).
    pub fn handle_candidate(&mut self, json: &str) {
        let init: RTCIceCandidateInit = match serde_json::from_str(json) {
            Ok(init) => init,
            Err(err) => {
                tracing::debug!(session_id = %self.config.session_id, "bad candidate: {err}");
                return;
            }
        };
        if init.candidate.is_empty() {
            return; // end of candidates
        }
        if self.remote_candidates >= self.max_remote_candidates {
            self.metrics
                .refused(crate::limits::Limit::remote_candidates);
            static THROTTLE: crate::limits::LogThrottle = crate::limits::LogThrottle::new();
            if let Some(suppressed) = THROTTLE.allow() {
                tracing::warn!(session_id = %self.config.session_id, suppressed, "remote candidate refused: the session has {} (limits.max_remote_candidates)", self.max_remote_candidates);
            }
            return;
        }
        self.remote_candidates += 1;
        if self.answered {
            self.add_remote_candidate(init);
        } else if self.queued_candidates.len() < MAX_QUEUED_CANDIDATES {
            self.queued_candidates.push(init);
        }
    }

    pub(super) fn add_remote_candidate(&mut self, init: RTCIceCandidateInit) {
        if let Err(err) = self.pc.add_remote_candidate(init) {
            tracing::debug!(session_id = %self.config.session_id, "remote candidate rejected: {err}");
            self.count_error(RtcErrorKind::ice);
        }
    }
}
