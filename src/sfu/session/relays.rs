//! SFU-side TURN relays (spec media-plane §1.8): their sockets, datagrams and candidates.

use super::*;

impl Session {
    /// Our sockets toward TURN servers (the driver closes them when the session ends).
    pub fn relay_sockets(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.relays.iter().map(Relay::local)
    }

    /// A datagram from a TURN server on our relay socket `local`.
    pub fn handle_relay_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        data: BytesMut,
        out: &mut Outputs,
    ) {
        if self.closed.is_some() {
            return;
        }
        if let Some(relay) = self.relays.iter_mut().find(|r| r.local() == local) {
            relay.handle_datagram(now, data);
        }
        self.drain(now, out);
    }

    /// Handles what the TURN allocations reported. Returns true if anything happened.
    pub(super) fn poll_relays(&mut self, now: Instant, out: &mut Outputs) -> bool {
        let mut progressed = false;
        for index in 0..self.relays.len() {
            while let Some(event) = self.relays[index].poll_event() {
                progressed = true;
                let url = self.relays[index].url().to_owned();
                match event {
                    RelayEvent::Allocated { relayed } => {
                        tracing::info!(session_id = %self.config.session_id, url, %relayed, "TURN relay allocated");
                        let base = self.relays[index].local();
                        match self.add_relay_candidate(relayed, base) {
                            Ok(trickle) if self.answered => {
                                out.driver.events.push(MediaEvent::Outbound {
                                    session_id: self.config.session_id.clone(),
                                    kind: OutboundKind::Ice,
                                    data: trickle,
                                })
                            }
                            Ok(trickle) => self.pending_relay_candidates.push(trickle),
                            Err(err) => {
                                tracing::warn!(session_id = %self.config.session_id, "relay candidate rejected: {err}")
                            }
                        }
                    }
                    RelayEvent::Failed(why) => {
                        tracing::warn!(session_id = %self.config.session_id, url, "TURN allocation failed: {why}");
                        self.count_error(RtcErrorKind::ice);
                    }
                    RelayEvent::Data { peer, data } => {
                        let Some(relayed) = self.relays[index].relayed() else {
                            continue;
                        };
                        self.first_datagram_at.get_or_insert(now);
                        let input = TaggedBytesMut {
                            now,
                            transport: TransportContext {
                                local_addr: relayed,
                                peer_addr: peer,
                                transport_protocol: TransportProtocol::UDP,
                                ecn: None,
                            },
                            message: data,
                        };
                        if let Err(err) = self.pc.handle_read(input) {
                            tracing::debug!(session_id = %self.config.session_id, %peer, "relayed datagram rejected: {err}");
                        }
                    }
                }
            }
        }
        progressed
    }

    /// Adds a relay candidate (pion's relay priority) and returns its trickle message.
    pub(super) fn add_relay_candidate(
        &mut self,
        relayed: SocketAddr,
        base: SocketAddr,
    ) -> Result<String, SessionError> {
        let candidate = CandidateRelayConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: relayed.ip().to_string(),
                port: relayed.port(),
                component: 1,
                priority: 16_777_215,
                ..Default::default()
            },
            rel_addr: base.ip().to_string(),
            rel_port: base.port(),
            ..Default::default()
        }
        .new_candidate_relay()?;
        let init = RTCIceCandidate::from(&candidate).to_json()?;
        self.pc.add_local_candidate(init.clone())?;
        Ok(trickle_message(&init))
    }

    /// Gives TURN allocations back to their servers.
    pub(super) fn release_relays(&mut self, now: Instant, out: &mut Outputs) {
        for relay in &mut self.relays {
            relay.release(now);
            relay.drain_transmits(&mut out.driver.transmits);
        }
    }
}
