//! A fake Calls client without sockets or clock: a real WebRTC peer (the `rtc` core: ICE,
//! DTLS, SCTP, SRTP) that signals like the current Calls client (its offer over the plugin
//! WebSocket, the SFU's offers answered over the `calls-dc` data channel) and sends
//! Opus-sized audio when asked.
//!
//! Owns: one peer's connection, what it has received, and the datagrams it wants sent. The
//! caller moves datagrams and time: every input carries `now`, outputs are polled.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use rtc::data_channel::RTCDataChannelId;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability,
    RtpCodecKind,
};
use rtc::sansio::Protocol as _;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use crate::sfu::dc_protocol;

/// Opus payload size of the audio the peer sends (≈ 32 kbit/s at 50 packets/s).
pub const AUDIO_PAYLOAD: usize = 80;

/// Why a fake peer could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("WebRTC core: {0}")]
    Rtc(#[from] rtc::shared::error::Error),
    #[error("signaling message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unexpected signaling message: {0}")]
    Unexpected(String),
}

/// A fake participant.
pub struct FakePeer {
    pc: RTCPeerConnection,
    /// This peer's address (its only host candidate).
    pub local: SocketAddr,
    dc: RTCDataChannelId,
    /// Our audio sender and its SSRC, when created with audio.
    audio: Option<(RTCRtpSenderId, u32)>,
    audio_seq: u16,
    /// The data channel is open.
    pub dc_open: bool,
    /// The peer connection reached `connected`.
    pub connected: bool,
    /// RTP packets received, by track ID.
    pub received: HashMap<String, usize>,
    /// The SFU's offers answered over the data channel.
    pub server_offers: usize,
    /// Other data-channel messages from the SFU, raw.
    pub dc_messages: Vec<Vec<u8>>,
    /// Datagrams to send: (to, bytes).
    outbox: Vec<(SocketAddr, BytesMut)>,
}

impl FakePeer {
    /// A peer at `local` with a `calls-dc` channel (and an Opus track, stream "mic", if
    /// `audio`); returns it and its offer JSON, the candidate inline.
    pub fn new(now: Instant, local: SocketAddr, audio: bool) -> Result<(Self, String), PeerError> {
        let mut engine = MediaEngine::default();
        engine.register_default_codecs()?;
        engine.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: "urn:ietf:params:rtp-hdrext:ssrc-audio-level".into(),
            },
            RtpCodecKind::Audio,
            None,
        )?;
        let registry = register_default_interceptors(Registry::new(), &mut engine)?;
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .build(now)?;
        let dc = pc.create_data_channel("calls-dc", None)?.id();
        let audio = match audio {
            true => {
                let ssrc = 0x1234_0000 | u32::from(local.port());
                Some((pc.add_track(audio_track(ssrc))?, ssrc))
            }
            false => None,
        };
        let offer = pc.create_offer(None)?;
        pc.set_local_description(now, offer)?;
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".into(),
                address: local.ip().to_string(),
                port: local.port(),
                component: 1,
                ..Default::default()
            },
            tcp_type: Default::default(),
        }
        .new_candidate_host()?;
        pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json()?)?;
        let offer = serde_json::to_string(&pc.local_description())?;
        let peer = Self {
            pc,
            local,
            dc,
            audio,
            audio_seq: 0,
            dc_open: false,
            connected: false,
            received: HashMap::new(),
            server_offers: 0,
            dc_messages: Vec::new(),
            outbox: Vec::new(),
        };
        Ok((peer, offer))
    }

    /// Applies an SDP the SFU sent over the WebSocket (the answer to our offer).
    pub fn handle_sdp(&mut self, now: Instant, json: &str) -> Result<(), PeerError> {
        let value: serde_json::Value = serde_json::from_str(json)?;
        let sdp = value["sdp"].as_str().unwrap_or_default().to_owned();
        match value["type"].as_str() {
            Some("answer") => {
                self.pc
                    .set_remote_description(now, RTCSessionDescription::answer(sdp)?)?;
                self.flush(now)
            }
            _ => Err(PeerError::Unexpected(json.chars().take(80).collect())),
        }
    }

    /// Adds a candidate the SFU trickled (`{"type":"candidate","candidate":{…}}`).
    pub fn handle_candidate(&mut self, json: &str) -> Result<(), PeerError> {
        let value: serde_json::Value = serde_json::from_str(json)?;
        let init: RTCIceCandidateInit = serde_json::from_value(value["candidate"].clone())?;
        self.pc.add_remote_candidate(init)?;
        Ok(())
    }

    /// A datagram from `from`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: BytesMut,
    ) -> Result<(), PeerError> {
        // A datagram the core refuses is dropped, as a network stack would.
        let _ = self.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: from,
                transport_protocol: TransportProtocol::UDP,
                ecn: None,
            },
            message: data,
        });
        self.flush(now)
    }

    /// When [`FakePeer::handle_timeout`] must run next.
    pub fn next_timeout(&mut self) -> Option<Instant> {
        self.pc.poll_timeout()
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), PeerError> {
        if self.pc.poll_timeout().is_some_and(|t| t <= now) {
            self.pc.handle_timeout(now)?;
        }
        self.flush(now)
    }

    /// Sends one 20 ms Opus-sized packet with audio level `level` (RFC 6464; low is loud).
    pub fn send_audio(&mut self, now: Instant, level: u8) -> Result<(), PeerError> {
        let Some((sender_id, ssrc)) = self.audio else {
            return Ok(());
        };
        self.audio_seq = self.audio_seq.wrapping_add(1);
        let mut packet = rtc::rtp::packet::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: 111,
                sequence_number: self.audio_seq,
                timestamp: u32::from(self.audio_seq).wrapping_mul(960),
                ssrc,
                ..Default::default()
            },
            payload: bytes::Bytes::from_static(&[0xfc; AUDIO_PAYLOAD]),
        };
        if let Some(mut sender) = self.pc.rtp_sender(sender_id) {
            let level_id = sender
                .get_parameters()
                .rtp_parameters
                .header_extensions
                .iter()
                .find(|e| e.uri.contains("ssrc-audio-level"))
                .map(|e| e.id as u8);
            if let Some(id) = level_id {
                let _ = packet
                    .header
                    .set_extension(id, bytes::Bytes::copy_from_slice(&[level]));
            }
            sender.write_rtp(now, packet)?;
        }
        self.flush(now)
    }

    /// Sends a data-channel message (e.g. [`dc_protocol::code::LOCK`] framed by the caller).
    pub fn send_dc(&mut self, now: Instant, bytes: &[u8]) -> Result<(), PeerError> {
        self.write_dc(now, bytes)?;
        self.flush(now)
    }

    fn write_dc(&mut self, now: Instant, bytes: &[u8]) -> Result<(), PeerError> {
        let mut channel = self
            .pc
            .data_channel(self.dc)
            .ok_or_else(|| PeerError::Unexpected("no data channel".into()))?;
        channel.send(now, BytesMut::from(bytes))?;
        Ok(())
    }

    /// The datagrams the peer wants sent since the last call: (to, bytes).
    pub fn take_transmits(&mut self) -> std::vec::Drain<'_, (SocketAddr, BytesMut)> {
        self.outbox.drain(..)
    }

    /// Runs the core until it has nothing more to say: datagrams to the outbox, state changes,
    /// data-channel messages (the SFU's offers are answered), received media counted.
    fn flush(&mut self, now: Instant) -> Result<(), PeerError> {
        loop {
            let mut progressed = false;
            while let Some(transmit) = self.pc.poll_write() {
                progressed = true;
                self.outbox
                    .push((transmit.transport.peer_addr, transmit.message));
            }
            while let Some(event) = self.pc.poll_event() {
                progressed = true;
                match event {
                    RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                        self.connected |= state == RTCPeerConnectionState::Connected;
                    }
                    RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(_)) => {
                        self.dc_open = true
                    }
                    _ => {}
                }
            }
            while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
                progressed = true;
                match message {
                    RTCMessage::DataChannelMessage(_, msg) => self.on_dc(now, &msg.data)?,
                    RTCMessage::RtpPacket(track_id, _) => {
                        *self.received.entry(track_id).or_default() += 1;
                    }
                    _ => {}
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    /// The SFU's offers (zlib SDP over the data channel) are answered the same way.
    fn on_dc(&mut self, now: Instant, data: &[u8]) -> Result<(), PeerError> {
        // The SFU frames its SDP as the client does (code, zlib-compressed JSON).
        let Ok(dc_protocol::ClientDcMessage::Sdp(json)) = dc_protocol::decode(data) else {
            self.dc_messages.push(data.to_vec());
            return Ok(());
        };
        let value: serde_json::Value = serde_json::from_str(&json)?;
        let sdp = value["sdp"].as_str().unwrap_or_default().to_owned();
        self.pc
            .set_remote_description(now, RTCSessionDescription::offer(sdp)?)?;
        let answer = self.pc.create_answer(None)?;
        self.pc.set_local_description(now, answer)?;
        let answer = serde_json::to_string(&self.pc.local_description())?;
        self.server_offers += 1;
        self.write_dc(now, &dc_protocol::encode_sdp(&answer))
    }
}

/// An Opus track, stream "mic", with a fixed SSRC.
fn audio_track(ssrc: u32) -> MediaStreamTrack {
    MediaStreamTrack::new(
        "mic".into(),
        "mic-track".into(),
        "mic".into(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: RTCRtpCodec {
                mime_type: "audio/opus".into(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
                rtcp_feedback: vec![],
            },
            ..Default::default()
        }],
    )
}
