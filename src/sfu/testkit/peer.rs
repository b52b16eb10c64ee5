//! A fake Calls client without sockets or clock, shared by the test kit and the load tool
//! (`rtcd-load`): a real WebRTC peer (the `rtc` core: ICE, DTLS, SCTP, SRTP) that signals like
//! the current Calls client (its offer over the plugin WebSocket, the SFU's offers answered
//! over the `calls-dc` data channel), sends Opus-sized audio with a speech level and a
//! two-layer VP8 screen share (`l`, `h`) that answers keyframe requests.
//!
//! Owns: one peer's connection, its senders (payload types and extension IDs read once
//! negotiation completes), what it received, and the datagrams it wants sent. The caller
//! moves datagrams and time: every input carries `now`, outputs are polled. Every payload
//! ends with a stamp the caller gives (the load tool's send time, for one-way latency).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use rtc::data_channel::RTCDataChannelId;
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability,
    RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol as _;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use crate::sfu::dc_protocol;
use crate::sfu::engine::{self, AUDIO_LEVEL_URI};

/// Opus payload size (≈ 32 kbit/s at 50 packets/s).
pub const AUDIO_PAYLOAD: usize = 80;
/// Screen-share packet payload size.
pub const VIDEO_PAYLOAD: usize = 1_100;
/// The RFC 6464 levels speakers alternate between (speech modulates its level, which is what
/// the SFU's voice activity detection keys on; a steady level reads as noise).
pub const SPEECH_LEVELS: [u8; 2] = [20, 60];
/// Frames between keyframes of a screen layer.
pub const KEYFRAME_EVERY: u32 = 30;
/// The screen layers, in [`FakePeer::send_frame`]'s numbering.
pub const LOW: usize = 0;
pub const HIGH: usize = 1;

/// Why a fake peer could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("WebRTC core: {0}")]
    Rtc(#[from] rtc::shared::error::Error),
    #[error("signaling message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unexpected: {0}")]
    Unexpected(String),
}

/// What a fake peer is.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    /// Names its streams (`voice-<id>`, `screen-<id>`): the session ID.
    pub id: String,
    /// Its address (its only host candidate).
    pub local: SocketAddr,
    /// Publishes a voice track.
    pub speaker: bool,
    /// Publishes a two-layer screen share.
    pub screen: bool,
    /// The only SRTP profile it accepts (the core's default list when `None`).
    pub srtp: Option<SrtpProtectionProfile>,
}

impl PeerSpec {
    /// The screen stream's ID, as the client announces it (`screenStreamID`).
    pub fn screen_stream_id(&self) -> String {
        format!("screen-{}", self.id)
    }
}

/// One outgoing RTP stream (a voice track, or one layer of the screen track).
struct Sender {
    id: RTCRtpSenderId,
    ssrc: u32,
    seq: u16,
    payload_type: u8,
    clock_rate: u32,
    level_ext: Option<u8>,
    /// Simulcast: the layer's rid and the mid/rid header extensions that let the SFU map
    /// this SSRC to its layer.
    rid: Option<&'static str>,
    mid_ext: Option<(u8, Bytes)>,
    rid_ext: Option<u8>,
    /// VP8 descriptor state: picture ID, TL0PICIDX, frames sent.
    picture_id: u16,
    tl0: u8,
    frames: u32,
    /// A PLI asked for a keyframe on this layer.
    keyframe_requested: bool,
}

/// A fake participant.
pub struct FakePeer {
    pc: RTCPeerConnection,
    /// RTP timestamps count from here.
    epoch: Instant,
    /// This peer's address.
    pub local: SocketAddr,
    dc: RTCDataChannelId,
    audio: Option<Sender>,
    /// Screen layers: [`LOW`] then [`HIGH`] (one track, two encodings).
    video: Vec<Sender>,
    /// The data channel is open.
    pub dc_open: bool,
    /// The peer connection reached `connected`.
    pub connected: bool,
    /// The last connection state.
    pub state: Option<RTCPeerConnectionState>,
    /// RTP packets received, by track ID.
    pub received: HashMap<String, usize>,
    /// Keep received RTP packets for [`FakePeer::take_rtp`] (the load tool's statistics).
    pub keep_rtp: bool,
    rtp: Vec<rtc::rtp::packet::Packet>,
    /// The SFU's offers answered (over the data channel or the WebSocket).
    pub server_offers: usize,
    /// Keyframe requests (PLI) the SFU sent for our screen layers.
    pub keyframe_requests: usize,
    /// Keyframes and packets sent, per screen layer.
    pub keyframes_sent: [u32; 2],
    pub video_packets_sent: [u64; 2],
    /// Other data-channel messages from the SFU, raw.
    pub dc_messages: Vec<Vec<u8>>,
    /// Receivers of the SFU's tracks, by the SSRC they receive.
    receivers: HashMap<u32, RTCRtpReceiverId>,
    /// Latest sequence number received per video SSRC.
    video_seq: HashMap<u32, u16>,
    /// Datagrams to send: (to, bytes).
    outbox: Vec<(SocketAddr, BytesMut)>,
    payload: Vec<u8>,
}

impl FakePeer {
    /// A peer with a `calls-dc` channel and the tracks of `spec`; returns it and its offer
    /// JSON, its host candidate inline.
    pub fn new(now: Instant, spec: &PeerSpec) -> Result<(Self, String), PeerError> {
        let mut pc = peer_connection(now, spec.srtp)?;
        let dc = pc.create_data_channel("calls-dc", None)?.id();
        let audio = match spec.speaker {
            true => add_track(&mut pc, &spec.id, "voice", RtpCodecKind::Audio, &[None])?.pop(),
            false => None,
        };
        let video = match spec.screen {
            true => add_track(
                &mut pc,
                &spec.id,
                "screen",
                RtpCodecKind::Video,
                &[Some("l"), Some("h")],
            )?,
            false => Vec::new(),
        };
        let offer = pc.create_offer(None)?;
        pc.set_local_description(now, offer)?;
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".into(),
                address: spec.local.ip().to_string(),
                port: spec.local.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()?;
        pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json()?)?;
        let offer = serde_json::to_string(&pc.local_description())?;
        let peer = Self {
            pc,
            epoch: now,
            local: spec.local,
            dc,
            audio,
            video,
            dc_open: false,
            connected: false,
            state: None,
            received: HashMap::new(),
            keep_rtp: false,
            rtp: Vec::new(),
            server_offers: 0,
            keyframe_requests: 0,
            keyframes_sent: [0; 2],
            video_packets_sent: [0; 2],
            dc_messages: Vec::new(),
            receivers: HashMap::new(),
            video_seq: HashMap::new(),
            outbox: Vec::new(),
            payload: vec![0u8; VIDEO_PAYLOAD],
        };
        Ok((peer, offer))
    }

    /// Applies an SDP the SFU sent over the WebSocket: the answer to our offer, or an offer
    /// of its own, whose answer (JSON) is returned for the caller to send back.
    pub fn handle_sdp(&mut self, now: Instant, json: &str) -> Result<Option<String>, PeerError> {
        let value: serde_json::Value = serde_json::from_str(json)?;
        let sdp = value["sdp"].as_str().unwrap_or_default().to_owned();
        let answer = match value["type"].as_str() {
            Some("answer") => {
                self.pc
                    .set_remote_description(now, RTCSessionDescription::answer(sdp)?)?;
                None
            }
            Some("offer") => Some(self.answer(now, sdp)?),
            _ => return Err(PeerError::Unexpected(json.chars().take(80).collect())),
        };
        self.flush(now)?;
        Ok(answer)
    }

    /// Adds a candidate the SFU trickled (`{"type":"candidate","candidate":{…}}`).
    pub fn handle_candidate(&mut self, json: &str) -> Result<(), PeerError> {
        let value: serde_json::Value = serde_json::from_str(json)?;
        let init: RTCIceCandidateInit = serde_json::from_value(value["candidate"].clone())?;
        if !init.candidate.is_empty() {
            self.pc.add_remote_candidate(init)?;
        }
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

    /// Sends one 20 ms Opus-sized packet at [`SPEECH_LEVELS`], its payload ending with `stamp`.
    pub fn send_audio(&mut self, now: Instant, stamp: u64) -> Result<(), PeerError> {
        if let Some(sender) = self.audio.as_mut() {
            let media_us = (now - self.epoch).as_micros() as u64;
            let payload = (&mut self.payload[..AUDIO_PAYLOAD], stamp);
            send(&mut self.pc, now, sender, payload, media_us);
        }
        self.flush(now)
    }

    /// One frame of screen layer `layer` ([`LOW`], [`HIGH`]) in `packets` packets, each with a
    /// VP8 payload descriptor and ending with `stamp`; a keyframe every [`KEYFRAME_EVERY`]
    /// frames and on the frame after a keyframe request.
    pub fn send_frame(
        &mut self,
        now: Instant,
        layer: usize,
        packets: u64,
        stamp: u64,
    ) -> Result<(), PeerError> {
        let Some(sender) = self.video.get_mut(layer) else {
            return Ok(());
        };
        let keyframe = sender.frames.is_multiple_of(KEYFRAME_EVERY)
            || std::mem::take(&mut sender.keyframe_requested);
        self.keyframes_sent[layer] += u32::from(keyframe);
        self.video_packets_sent[layer] += packets;
        sender.frames = sender.frames.wrapping_add(1);
        sender.picture_id = (sender.picture_id + 1) & 0x7fff;
        sender.tl0 = sender.tl0.wrapping_add(1);
        for index in 0..packets {
            let start = index == 0;
            // X=1, S on the first packet; I=1 (15-bit picture ID), L=1 (TL0PICIDX).
            self.payload[0] = if start { 0x90 } else { 0x80 };
            self.payload[1] = 0xc0;
            self.payload[2] = 0x80 | (sender.picture_id >> 8) as u8;
            self.payload[3] = sender.picture_id as u8;
            self.payload[4] = sender.tl0;
            // VP8 payload header: P=0 marks a keyframe.
            self.payload[5] = if keyframe { 0x10 } else { 0x11 };
            let media_us = (now - self.epoch).as_micros() as u64;
            let payload = (&mut self.payload[..VIDEO_PAYLOAD], stamp);
            send(&mut self.pc, now, sender, payload, media_us);
        }
        self.flush(now)
    }

    /// Sends a data-channel message (e.g. a Lock, `[0x07]`).
    pub fn send_dc(&mut self, now: Instant, bytes: &[u8]) -> Result<(), PeerError> {
        self.write_dc(now, bytes)?;
        self.flush(now)
    }

    /// Sends `count` NACKs for every video stream received, each asking again for the last
    /// 17 packets (a misbehaving or hostile receiver); returns the packets asked for.
    pub fn send_nack_storm(&mut self, now: Instant, count: usize) -> Result<usize, PeerError> {
        let mut asked = 0;
        for (ssrc, seq) in self.video_seq.clone() {
            let Some(mut receiver) = self
                .receivers
                .get(&ssrc)
                .and_then(|id| self.pc.rtp_receiver(*id))
            else {
                continue;
            };
            for _ in 0..count {
                let nack = TransportLayerNack {
                    sender_ssrc: 1,
                    media_ssrc: ssrc,
                    nacks: vec![NackPair {
                        packet_id: seq.wrapping_sub(16),
                        lost_packets: 0xffff,
                    }],
                };
                receiver.write_rtcp(now, vec![Box::new(nack)])?;
                asked += 17;
            }
        }
        self.flush(now)?;
        Ok(asked)
    }

    /// The datagrams the peer wants sent since the last call: (to, bytes).
    pub fn take_transmits(&mut self) -> std::vec::Drain<'_, (SocketAddr, BytesMut)> {
        self.outbox.drain(..)
    }

    /// The RTP packets received since the last call (kept only with [`FakePeer::keep_rtp`]).
    pub fn take_rtp(&mut self) -> std::vec::Drain<'_, rtc::rtp::packet::Packet> {
        self.rtp.drain(..)
    }

    fn write_dc(&mut self, now: Instant, bytes: &[u8]) -> Result<(), PeerError> {
        let mut channel = self
            .pc
            .data_channel(self.dc)
            .ok_or_else(|| PeerError::Unexpected("no data channel".into()))?;
        channel.send(now, BytesMut::from(bytes))?;
        Ok(())
    }

    /// Applies a server offer; returns our answer (JSON).
    fn answer(&mut self, now: Instant, sdp: String) -> Result<String, PeerError> {
        self.pc
            .set_remote_description(now, RTCSessionDescription::offer(sdp)?)?;
        let answer = self.pc.create_answer(None)?;
        self.pc.set_local_description(now, answer)?;
        self.server_offers += 1;
        self.resolve_senders();
        Ok(serde_json::to_string(&self.pc.local_description())?)
    }

    /// Runs the core until it has nothing more to say: datagrams to the outbox, state changes,
    /// data-channel messages (the SFU's offers are answered), keyframe requests, media.
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
                        if state == RTCPeerConnectionState::Connected && !self.connected {
                            self.connected = true;
                            self.resolve_senders();
                        }
                        self.state = Some(state);
                    }
                    RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(_)) => {
                        self.dc_open = true
                    }
                    RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                        self.receivers.insert(init.ssrc, init.receiver_id);
                    }
                    _ => {}
                }
            }
            while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
                progressed = true;
                match message {
                    RTCMessage::DataChannelMessage(_, msg) => self.on_dc(now, &msg.data)?,
                    RTCMessage::RtpPacket(track_id, packet) => {
                        *self.received.entry(track_id).or_default() += 1;
                        if packet.payload.len() == VIDEO_PAYLOAD {
                            self.video_seq
                                .insert(packet.header.ssrc, packet.header.sequence_number);
                        }
                        if self.keep_rtp {
                            self.rtp.push(packet);
                        }
                    }
                    RTCMessage::RtcpPacket(_, packets) => self.on_rtcp(&packets),
                    _ => {}
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    /// A PLI for one of our screen layers: its next frame is a keyframe, as a browser does.
    fn on_rtcp(&mut self, packets: &[Box<dyn rtc::rtcp::Packet>]) {
        for packet in packets {
            let Some(pli) = packet.as_any().downcast_ref::<PictureLossIndication>() else {
                continue;
            };
            for layer in &mut self.video {
                if layer.ssrc == pli.media_ssrc {
                    layer.keyframe_requested = true;
                    self.keyframe_requests += 1;
                }
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
        let answer = self.answer(now, sdp)?;
        self.write_dc(now, &dc_protocol::encode_sdp(&answer))
    }

    /// Reads the negotiated payload types and extension IDs of our senders.
    fn resolve_senders(&mut self) {
        let video_mid = self.video_mid();
        for sender in self.audio.iter_mut().chain(self.video.iter_mut()) {
            let Some(mut rtp_sender) = self.pc.rtp_sender(sender.id) else {
                continue;
            };
            let parameters = &rtp_sender.get_parameters().rtp_parameters;
            let ext = |uri: &str| engine::extension_id(parameters, uri);
            let mime = if sender.clock_rate == 48_000 {
                "audio/opus"
            } else {
                "video/VP8"
            };
            if let Some(payload_type) = engine::payload_type(parameters, mime) {
                sender.payload_type = payload_type;
            }
            sender.level_ext = ext(AUDIO_LEVEL_URI);
            if sender.rid.is_some() {
                sender.rid_ext = ext("urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id");
                sender.mid_ext = ext("urn:ietf:params:rtp-hdrext:sdes:mid")
                    .zip(video_mid.clone())
                    .map(|(id, mid)| (id, Bytes::from(mid.into_bytes())));
            }
        }
    }

    /// The mid of our video m-line, from our local description.
    fn video_mid(&self) -> Option<String> {
        let sdp = self.pc.local_description()?.sdp.clone();
        let mut in_video = false;
        for line in sdp.lines() {
            if line.starts_with("m=") {
                in_video = line.starts_with("m=video");
            } else if in_video && let Some(mid) = line.strip_prefix("a=mid:") {
                return Some(mid.trim().to_owned());
            }
        }
        None
    }
}

/// A peer connection as the Calls client builds it (default codecs, the audio-level
/// extension, keyframe requests handed to the application).
fn peer_connection(
    now: Instant,
    srtp: Option<SrtpProtectionProfile>,
) -> Result<RTCPeerConnection, PeerError> {
    let mut engine = MediaEngine::default();
    engine.register_default_codecs()?;
    engine.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: AUDIO_LEVEL_URI.into(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    // Keyframe requests from the SFU reach the application (as in the SFU itself), so the
    // fake sharer answers a PLI with a keyframe on that layer's next frame.
    let registry = register_default_interceptors(Registry::new(), &mut engine)?.with(
        rtc::interceptor::Slot::from(14_000),
        crate::sfu::engine::KeyframeRequestsToApp::default(),
    );
    let mut settings = SettingEngineBuilder::new();
    if let Some(profile) = srtp {
        settings = settings.with_srtp_protection_profiles(vec![profile]);
    }
    Ok(RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings.build())
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .build(now)?)
}

/// Adds track `<stream>-<id>` with one encoding per rid; returns a sender per encoding.
fn add_track(
    pc: &mut RTCPeerConnection,
    id: &str,
    stream: &str,
    kind: RtpCodecKind,
    rids: &[Option<&'static str>],
) -> Result<Vec<Sender>, PeerError> {
    let (mime, clock_rate, channels) = match kind {
        RtpCodecKind::Audio => ("audio/opus", 48_000, 2),
        _ => ("video/VP8", 90_000, 0),
    };
    let layers: Vec<(Option<&'static str>, u32)> =
        rids.iter().map(|rid| (*rid, rand::random())).collect();
    let track = MediaStreamTrack::new(
        format!("{stream}-{id}"),
        format!("{stream}-track-{id}"),
        stream.into(),
        kind,
        layers
            .iter()
            .map(|(rid, ssrc)| RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    rid: rid.unwrap_or_default().into(),
                    ssrc: Some(*ssrc),
                    ..Default::default()
                },
                codec: RTCRtpCodec {
                    mime_type: mime.into(),
                    clock_rate,
                    channels,
                    ..Default::default()
                },
                ..Default::default()
            })
            .collect(),
    );
    let sender = pc.add_track(track)?;
    Ok(layers
        .into_iter()
        .map(|(rid, ssrc)| Sender {
            id: sender,
            ssrc,
            seq: rand::random(),
            payload_type: 0,
            clock_rate,
            level_ext: None,
            rid,
            mid_ext: None,
            rid_ext: None,
            picture_id: rand::random::<u16>() & 0x7fff,
            tl0: rand::random(),
            frames: 0,
            keyframe_requested: false,
        })
        .collect())
}

/// Writes one packet on `sender`: the payload ending with the stamp, the RTP timestamp from
/// the media time (µs since the peer started).
fn send(
    pc: &mut RTCPeerConnection,
    now: Instant,
    sender: &mut Sender,
    (payload, stamp): (&mut [u8], u64),
    media_us: u64,
) {
    sender.seq = sender.seq.wrapping_add(1);
    let size = payload.len();
    payload[size - 8..].copy_from_slice(&stamp.to_be_bytes());
    let mut packet = rtc::rtp::packet::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            payload_type: sender.payload_type,
            sequence_number: sender.seq,
            timestamp: (media_us * u64::from(sender.clock_rate) / 1_000_000) as u32,
            ssrc: sender.ssrc,
            ..Default::default()
        },
        payload: Bytes::copy_from_slice(payload),
    };
    if let Some(id) = sender.level_ext {
        let level = &SPEECH_LEVELS[usize::from(sender.seq % 2)..][..1];
        let _ = packet.header.set_extension(id, Bytes::from_static(level));
    }
    if let (Some((id, mid)), Some(rid_id), Some(rid)) =
        (sender.mid_ext.as_ref(), sender.rid_ext, sender.rid)
    {
        let _ = packet.header.set_extension(*id, mid.clone());
        let _ = packet
            .header
            .set_extension(rid_id, Bytes::from_static(rid.as_bytes()));
    }
    if let Some(mut rtp_sender) = pc.rtp_sender(sender.id) {
        let _ = rtp_sender.write_rtp(now, packet);
    }
}
