//! One participant's RTC session: its peer connection and the signaling around it.
//!
//! Owns: answering the client's offers (WebSocket or data channel), trickling our candidates,
//! queueing remote candidates until the first answer, the data-channel protocol (ping/pong,
//! signaling lock, zlib SDP), connection-state tracking and the initial-offer deadline.
//! Sans-IO: inputs carry `now`; outputs are pushed into [`Outputs`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::data_channel::RTCDataChannelId;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCPeerConnectionState, RTCSignalingState};
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::sansio::Protocol as _;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use super::dc_protocol::{self, ClientDcMessage};
use super::engine;
use crate::calls::SessionConfig;
use crate::media::{CloseReason, MediaEvent, OutboundKind};
use crate::net::addresses::{Advertised, Protocol};

/// How long a new session waits for its first SDP offer.
pub const INITIAL_OFFER_TIMEOUT: Duration = Duration::from_secs(10);
/// Remote candidates queued before the first answer (upstream: 40).
pub const MAX_QUEUED_CANDIDATES: usize = 40;

/// A datagram for a session.
#[derive(Debug)]
pub struct Datagram {
    /// The advertised address it was sent to (what our candidate says).
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub protocol: Protocol,
    pub data: BytesMut,
}

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub protocol: Protocol,
    pub data: BytesMut,
}

/// Where session outputs go.
#[derive(Debug, Default)]
pub struct Outputs {
    pub transmits: Vec<Transmit>,
    pub events: Vec<MediaEvent>,
}

/// Signaling path of an offer/answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    WebSocket,
    DataChannel,
}

/// Session failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("webrtc: {0}")]
    Rtc(String),
    #[error("bad session description: {0}")]
    Sdp(String),
}

impl From<rtc::shared::error::Error> for SessionError {
    fn from(e: rtc::shared::error::Error) -> Self {
        SessionError::Rtc(e.to_string())
    }
}

/// Session description as exchanged with clients (`type` matched case-insensitively).
#[derive(serde::Deserialize)]
struct Description {
    #[serde(rename = "type")]
    kind: String,
    sdp: String,
}

/// The session.
pub struct Session {
    pub config: Arc<SessionConfig>,
    pub ufrag: String,
    pc: RTCPeerConnection,
    candidates: Vec<Advertised>,
    created_at: Instant,
    /// Set once the first offer has been answered.
    answered: bool,
    queued_candidates: Vec<RTCIceCandidateInit>,
    signaling: RTCSignalingState,
    /// Our own offer awaiting the client's answer.
    making_offer: bool,
    dc: Option<RTCDataChannelId>,
    dc_opened_at: Option<Instant>,
    /// The signaling lock (client Lock/Unlock, SFU renegotiation).
    locked: bool,
    connected_at: Option<Instant>,
    closed: Option<CloseReason>,
}

impl Session {
    /// Creates the session and its peer connection; it waits for the client's first offer.
    pub fn new(
        config: Arc<SessionConfig>,
        ufrag: String,
        pwd: &str,
        candidates: Vec<Advertised>,
        now: Instant,
    ) -> Result<Self, SessionError> {
        let pc = engine::peer_connection(&ufrag, pwd, now)?;
        Ok(Self {
            config,
            ufrag,
            pc,
            candidates,
            created_at: now,
            answered: false,
            queued_candidates: Vec::new(),
            signaling: RTCSignalingState::Stable,
            making_offer: false,
            dc: None,
            dc_opened_at: None,
            locked: false,
            connected_at: None,
            closed: None,
        })
    }

    pub fn session_id(&self) -> &str {
        &self.config.session_id
    }

    /// Why the session ended, once it has.
    pub fn closed(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    fn close_with(&mut self, reason: CloseReason, out: &mut Outputs) {
        if self.closed.is_some() {
            return;
        }
        let _ = self.pc.close();
        out.events.push(MediaEvent::Closed {
            session_id: self.config.session_id.clone(),
            reason: reason.clone(),
        });
        self.closed = Some(reason);
    }

    /// Ends the session from outside (leave, shutdown); emits nothing.
    pub fn close(&mut self, reason: CloseReason) {
        if self.closed.is_none() {
            let _ = self.pc.close();
            self.closed = Some(reason);
        }
    }

    /// The earliest time [`Session::handle_timeout`] must run.
    pub fn next_timeout(&mut self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        let offer_deadline = (!self.answered).then(|| self.created_at + INITIAL_OFFER_TIMEOUT);
        match (self.pc.poll_timeout(), offer_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Outputs) {
        if self.closed.is_some() {
            return;
        }
        if !self.answered && now >= self.created_at + INITIAL_OFFER_TIMEOUT {
            self.close_with(CloseReason::NoOffer, out);
            return;
        }
        if self.pc.poll_timeout().is_some_and(|t| t <= now)
            && let Err(err) = self.pc.handle_timeout(now)
        {
            tracing::debug!(session_id = %self.config.session_id, "timeout handling: {err}");
        }
        self.drain(now, out);
    }

    /// Feeds one datagram addressed to this session.
    pub fn handle_datagram(&mut self, now: Instant, datagram: Datagram, out: &mut Outputs) {
        if self.closed.is_some() {
            return;
        }
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

    /// An SDP from the client (offer or answer) over `path`.
    pub fn handle_sdp(&mut self, now: Instant, json: &str, path: Path, out: &mut Outputs) {
        if self.closed.is_some() {
            return;
        }
        let result = self.apply_sdp(now, json, path, out);
        if let Err(err) = result {
            tracing::warn!(session_id = %self.config.session_id, "signaling failed: {err}");
            if !self.answered {
                // The first offer could not be processed: the session cannot work.
                self.close_with(CloseReason::Failed(err.to_string()), out);
                return;
            }
        }
        self.drain(now, out);
    }

    fn apply_sdp(
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
                let offer = RTCSessionDescription::offer(description.sdp)?;
                self.pc.set_remote_description(now, offer)?;
                let first = !self.answered;
                if first {
                    self.add_local_candidates(out)?;
                }
                let answer = self.pc.create_answer(None)?;
                self.pc.set_local_description(now, answer)?;
                let local = self
                    .pc
                    .local_description()
                    .ok_or_else(|| SessionError::Rtc("no local description".into()))?;
                let json =
                    serde_json::to_string(&local).map_err(|e| SessionError::Sdp(e.to_string()))?;
                self.send_sdp(now, &json, path, out);
                if first {
                    self.answered = true;
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
                Ok(())
            }
            other => Err(SessionError::Sdp(format!("unexpected sdp type {other:?}"))),
        }
    }

    fn send_sdp(&mut self, now: Instant, json: &str, path: Path, out: &mut Outputs) {
        match (path, self.dc) {
            (Path::DataChannel, Some(dc)) => self.send_dc(now, dc, &dc_protocol::encode_sdp(json)),
            _ => out.events.push(MediaEvent::Outbound {
                session_id: self.config.session_id.clone(),
                kind: OutboundKind::Sdp,
                data: json.to_owned(),
            }),
        }
    }

    /// Adds our host candidates and trickles them to the client.
    fn add_local_candidates(&mut self, out: &mut Outputs) -> Result<(), SessionError> {
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
            let wrapped = serde_json::json!({
                "type": "candidate",
                "candidate": {
                    "candidate": init.candidate,
                    "sdpMid": init.sdp_mid.unwrap_or_else(|| "0".into()),
                    "sdpMLineIndex": init.sdp_mline_index.unwrap_or(0),
                    "usernameFragment": null,
                },
            });
            out.events.push(MediaEvent::Outbound {
                session_id: self.config.session_id.clone(),
                kind: OutboundKind::Ice,
                data: wrapped.to_string(),
            });
        }
        Ok(())
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
        if self.answered {
            self.add_remote_candidate(init);
        } else if self.queued_candidates.len() < MAX_QUEUED_CANDIDATES {
            self.queued_candidates.push(init);
        }
    }

    fn add_remote_candidate(&mut self, init: RTCIceCandidateInit) {
        if let Err(err) = self.pc.add_remote_candidate(init) {
            tracing::debug!(session_id = %self.config.session_id, "remote candidate rejected: {err}");
        }
    }

    fn send_dc(&mut self, now: Instant, dc: RTCDataChannelId, bytes: &[u8]) {
        if let Some(mut channel) = self.pc.data_channel(dc)
            && let Err(err) = channel.send(now, BytesMut::from(bytes))
        {
            tracing::debug!(session_id = %self.config.session_id, "data channel send failed: {err}");
        }
    }

    fn handle_dc_message(
        &mut self,
        now: Instant,
        dc: RTCDataChannelId,
        data: &[u8],
        out: &mut Outputs,
    ) {
        let message = match dc_protocol::decode(data) {
            Ok(message) => message,
            Err(err) => {
                tracing::debug!(session_id = %self.config.session_id, "data channel message dropped: {err}");
                return;
            }
        };
        match message {
            ClientDcMessage::Ping => self.send_dc(now, dc, &dc_protocol::encode_pong()),
            ClientDcMessage::LegacyPing => {
                if let Some(mut channel) = self.pc.data_channel(dc) {
                    let _ = channel.send_text(now, "pong");
                }
            }
            ClientDcMessage::Lock => {
                let acquired = !self.locked && !self.making_offer;
                if acquired {
                    self.locked = true;
                }
                self.send_dc(now, dc, &dc_protocol::encode_lock_reply(acquired));
            }
            ClientDcMessage::Unlock => {
                if !self.locked {
                    tracing::debug!(session_id = %self.config.session_id, "unlock of a free lock ignored");
                }
                self.locked = false;
            }
            ClientDcMessage::Sdp(json) => {
                if let Err(err) = self.apply_sdp(now, &json, Path::DataChannel, out) {
                    tracing::warn!(session_id = %self.config.session_id, "signaling over data channel failed: {err}");
                }
            }
            ClientDcMessage::LossRate(_)
            | ClientDcMessage::RoundTripTime(_)
            | ClientDcMessage::Jitter(_) => {}
            ClientDcMessage::Other(code) => {
                tracing::debug!(session_id = %self.config.session_id, "unexpected dc message type: {code}");
            }
        }
    }

    /// Drains everything the peer connection produced.
    fn drain(&mut self, now: Instant, out: &mut Outputs) {
        loop {
            let mut progressed = false;
            while let Some(transmit) = self.pc.poll_write() {
                progressed = true;
                out.transmits.push(Transmit {
                    local: transmit.transport.local_addr,
                    peer: transmit.transport.peer_addr,
                    protocol: match transmit.transport.transport_protocol {
                        TransportProtocol::TCP => Protocol::Tcp,
                        _ => Protocol::Udp,
                    },
                    data: transmit.message,
                });
            }
            while let Some(event) = self.pc.poll_event() {
                progressed = true;
                self.handle_event(now, event, out);
            }
            while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
                progressed = true;
                if let RTCMessage::DataChannelMessage(dc, message) = message {
                    self.handle_dc_message(now, dc, &message.data, out);
                }
            }
            if !progressed || self.closed.is_some() {
                break;
            }
        }
    }

    fn handle_event(&mut self, now: Instant, event: RTCPeerConnectionEvent, out: &mut Outputs) {
        let session_id = &self.config.session_id;
        match event {
            RTCPeerConnectionEvent::OnSignalingStateChangeEvent(state) => self.signaling = state,
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                tracing::debug!(session_id, %state, "peer connection state");
                match state {
                    RTCPeerConnectionState::Connected if self.connected_at.is_none() => {
                        self.connected_at = Some(now);
                        tracing::info!(
                            session_id,
                            connect_ms = now.duration_since(self.created_at).as_millis() as u64,
                            "media connected"
                        );
                    }
                    RTCPeerConnectionState::Failed => {
                        let why = if self.connected_at.is_some() {
                            "ICE connection lost (consent/keepalive timed out)"
                        } else {
                            "ICE/DTLS never connected"
                        };
                        self.close_with(CloseReason::Failed(why.into()), out);
                    }
                    RTCPeerConnectionState::Closed => {
                        self.close_with(CloseReason::Failed("peer connection closed".into()), out)
                    }
                    _ => {}
                }
            }
            RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(dc)) => {
                self.dc = Some(dc);
                self.dc_opened_at = Some(now);
                tracing::debug!(session_id, "data channel open");
            }
            RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnClose(dc))
                if self.dc == Some(dc) =>
            {
                self.dc = None;
            }
            _ => {}
        }
    }
}
