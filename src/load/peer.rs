//! One simulated participant: a real WebRTC peer (the `rtc` core: ICE, DTLS, SCTP, SRTP) on
//! its own loopback UDP socket, signalling like the current Calls client (offer over the plugin
//! WebSocket, server offers answered over the data channel), sending Opus-sized audio at 50
//! packets/s when it speaks and a VP8-sized screen stream at a set bitrate when it shares.
//!
//! Owns: one peer's event loop (a tokio task: many peers share each runtime thread) and its
//! receive statistics. Every payload starts with the send time (µs since the run's epoch) so
//! receivers measure one-way latency.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
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
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol as _;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::stats::ReceiveStats;
use crate::sfu::dc_protocol;
use crate::ws::codec::{RtcMessage, rtc_type};

/// Opus payload size (≈ 32 kbit/s at 50 packets/s).
pub const AUDIO_PAYLOAD: usize = 80;
/// Screen-share packet payload size.
pub const VIDEO_PAYLOAD: usize = 1_100;
/// Audio packet interval.
pub const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// Screen frames per second.
const VIDEO_FPS: u32 = 15;
/// The RFC 6464 level the speakers send (loud speech: VAD turns on).
const SPEECH_LEVEL: u8 = 20;

/// What a participant does.
#[derive(Debug, Clone)]
pub struct PeerPlan {
    /// Fixed local UDP port, if any.
    pub port: Option<u16>,
    pub session_id: String,
    pub call_id: String,
    pub speaker: bool,
    /// Screen-share bitrate in bit/s, if this participant shares.
    pub screen_bps: Option<u64>,
    /// The only SRTP profile this peer accepts.
    pub srtp: super::scenario::SrtpProfile,
}

/// Messages a peer asks the plugin connection to send.
#[derive(Debug)]
pub enum Outgoing {
    Join(crate::ws::codec::JoinData),
    Rtc(RtcMessage),
}

/// Live state of a peer, shared with the coordinator.
#[derive(Debug, Default)]
pub struct PeerStatus {
    pub connected: AtomicBool,
    pub failed: AtomicBool,
    pub stats: Mutex<ReceiveStats>,
    /// Media packets this peer sent.
    pub sent: std::sync::atomic::AtomicU64,
}

/// Shared run settings.
#[derive(Clone)]
pub struct PeerContext {
    pub epoch: Instant,
    pub bind_ip: IpAddr,
    /// Latency samples are kept only while this is set (the steady window).
    pub measuring: Arc<AtomicBool>,
    pub stop: CancellationToken,
}

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

/// Frames between keyframes of a screen layer.
const KEYFRAME_EVERY: u32 = 30;
/// Frames of the high layer per frame of the low layer (the client's `l` runs at a quarter of
/// `h`'s rate and a fifth of its bitrate).
const LOW_LAYER_DIVISOR: u32 = 3;

/// Runs one participant until `stop` or a close from the SFU.
pub async fn run(
    plan: PeerPlan,
    context: PeerContext,
    mut inbox: mpsc::Receiver<RtcMessage>,
    outbox: mpsc::Sender<Outgoing>,
    status: Arc<PeerStatus>,
) {
    if let Err(err) = drive(&plan, &context, &mut inbox, &outbox, &status).await {
        tracing::warn!(session_id = %plan.session_id, "peer failed: {err}");
        status.failed.store(true, Ordering::Relaxed);
    }
}

async fn drive(
    plan: &PeerPlan,
    context: &PeerContext,
    inbox: &mut mpsc::Receiver<RtcMessage>,
    outbox: &mpsc::Sender<Outgoing>,
    status: &PeerStatus,
) -> Result<(), String> {
    let socket = tokio::net::UdpSocket::bind((context.bind_ip, plan.port.unwrap_or(0)))
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let mut peer = Peer::new(plan)?;
    let offer = peer.offer(local)?;
    // As the client: announce the screen stream and unmute before the offer carrying them.
    let mut announcements = Vec::new();
    if plan.screen_bps.is_some() {
        let data = serde_json::json!({ "screenStreamID": screen_stream_id(plan) }).to_string();
        announcements.push(rtc_message(plan, rtc_type::SCREEN_ON, data));
    }
    if plan.speaker {
        announcements.push(rtc_message(plan, rtc_type::UNMUTE, "{}".into()));
    }
    announcements.push(rtc_message(plan, rtc_type::SDP, offer));
    for message in announcements {
        outbox
            .send(Outgoing::Rtc(message))
            .await
            .map_err(|_| "plugin connection gone")?;
    }

    let mut audio_tick = tokio::time::interval(AUDIO_INTERVAL);
    audio_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let frame_interval = Duration::from_secs(1) / VIDEO_FPS;
    let mut video_tick = tokio::time::interval(frame_interval);
    video_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let per_frame = |bps: u64, fps: u32| (bps / u64::from(fps) / (VIDEO_PAYLOAD as u64 * 8)).max(1);
    let high_per_frame = plan.screen_bps.map_or(0, |bps| per_frame(bps, VIDEO_FPS));
    let low_per_frame = plan
        .screen_bps
        .map_or(0, |bps| per_frame(bps / 5, VIDEO_FPS / LOW_LAYER_DIVISOR));
    let mut video_frames: u32 = 0;
    let mut buf = vec![0u8; 2048];
    loop {
        peer.flush(&socket, context, status).await;
        let timeout = peer
            .pc
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            _ = context.stop.cancelled() => return Ok(()),
            received = socket.recv_from(&mut buf) => {
                let (len, from) = received.map_err(|e| format!("recv: {e}"))?;
                let _ = peer.pc.handle_read(TaggedBytesMut {
                    now: Instant::now(),
                    transport: TransportContext {
                        local_addr: local,
                        peer_addr: from,
                        transport_protocol: TransportProtocol::UDP,
                        ecn: None,
                    },
                    message: BytesMut::from(&buf[..len]),
                });
            }
            message = inbox.recv() => {
                let Some(message) = message else { return Ok(()) };
                peer.signal(plan, outbox, message).await?;
            }
            _ = tokio::time::sleep_until(timeout.into()) => {
                let _ = peer.pc.handle_timeout(Instant::now());
            }
            _ = audio_tick.tick(), if plan.speaker && peer.connected => {
                peer.send_audio(context.epoch);
                status.sent.fetch_add(1, Ordering::Relaxed);
            }
            _ = video_tick.tick(), if high_per_frame > 0 && peer.connected => {
                peer.send_frame(1, high_per_frame, context.epoch);
                let mut sent = high_per_frame;
                if video_frames.is_multiple_of(LOW_LAYER_DIVISOR) {
                    peer.send_frame(0, low_per_frame, context.epoch);
                    sent += low_per_frame;
                }
                video_frames = video_frames.wrapping_add(1);
                status.sent.fetch_add(sent, Ordering::Relaxed);
            }
        }
    }
}

fn screen_stream_id(plan: &PeerPlan) -> String {
    format!("screen-{}", plan.session_id)
}

fn rtc_message(plan: &PeerPlan, msg_type: u64, data: String) -> RtcMessage {
    RtcMessage {
        session_id: plan.session_id.clone(),
        call_id: plan.call_id.clone(),
        msg_type,
        data: Some(data.into_bytes()),
        ..Default::default()
    }
}

struct Peer {
    pc: RTCPeerConnection,
    audio: Option<Sender>,
    /// Screen-share layers: `l` then `h` (one track, two encodings).
    video: Vec<Sender>,
    connected: bool,
    payload: Vec<u8>,
}

impl Peer {
    fn new(plan: &PeerPlan) -> Result<Self, String> {
        let err = |e: rtc::shared::error::Error| e.to_string();
        let mut engine = MediaEngine::default();
        engine.register_default_codecs().map_err(err)?;
        engine
            .register_header_extension(
                rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability {
                    uri: crate::sfu::engine::AUDIO_LEVEL_URI.into(),
                },
                RtpCodecKind::Audio,
                None,
            )
            .map_err(err)?;
        // Keyframe requests from the SFU reach the application (as in the SFU itself), so the
        // simulated sharer answers a PLI with a keyframe on that layer's next frame, as a
        // browser does.
        let registry = register_default_interceptors(Registry::new(), &mut engine)
            .map_err(err)?
            .with(
                rtc::interceptor::Slot::from(14_000),
                crate::sfu::engine::KeyframeRequestsToApp::default(),
            );
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(
                rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder::new()
                    .with_srtp_protection_profiles(vec![plan.srtp.dtls_profile()])
                    .build(),
            )
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .build(Instant::now())
            .map_err(err)?;
        pc.create_data_channel("calls-dc", None).map_err(err)?;
        let mut add = |kind: RtpCodecKind,
                       stream: &str,
                       mime: &str,
                       rate: u32,
                       channels: u16,
                       rids: &[Option<&'static str>]| {
            let layers: Vec<(Option<&'static str>, u32)> =
                rids.iter().map(|rid| (*rid, rand::random())).collect();
            let track = MediaStreamTrack::new(
                format!("{stream}-{}", plan.session_id),
                format!("{stream}-track-{}", plan.session_id),
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
                            clock_rate: rate,
                            channels,
                            ..Default::default()
                        },
                        ..Default::default()
                    })
                    .collect(),
            );
            pc.add_track(track).map(|id| {
                layers
                    .into_iter()
                    .map(|(rid, ssrc)| Sender {
                        id,
                        ssrc,
                        seq: rand::random(),
                        payload_type: 0,
                        clock_rate: rate,
                        level_ext: None,
                        rid,
                        mid_ext: None,
                        rid_ext: None,
                        picture_id: rand::random::<u16>() & 0x7fff,
                        tl0: rand::random(),
                        frames: 0,
                        keyframe_requested: false,
                    })
                    .collect::<Vec<_>>()
            })
        };
        let audio = if plan.speaker {
            add(
                RtpCodecKind::Audio,
                "voice",
                "audio/opus",
                48_000,
                2,
                &[None],
            )
            .map_err(err)?
            .pop()
        } else {
            None
        };
        let video = match plan.screen_bps {
            Some(_) => add(
                RtpCodecKind::Video,
                "screen",
                "video/VP8",
                90_000,
                0,
                &[Some("l"), Some("h")],
            )
            .map_err(err)?,
            None => Vec::new(),
        };
        Ok(Self {
            pc,
            audio,
            video,
            connected: false,
            payload: vec![0u8; VIDEO_PAYLOAD],
        })
    }

    /// Our offer (JSON) with the host candidate of `local` in it.
    fn offer(&mut self, local: SocketAddr) -> Result<String, String> {
        let err = |e: rtc::shared::error::Error| e.to_string();
        let offer = self.pc.create_offer(None).map_err(err)?;
        self.pc
            .set_local_description(Instant::now(), offer)
            .map_err(err)?;
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".into(),
                address: local.ip().to_string(),
                port: local.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .map_err(err)?;
        self.pc
            .add_local_candidate(RTCIceCandidate::from(&candidate).to_json().map_err(err)?)
            .map_err(err)?;
        serde_json::to_string(&self.pc.local_description().ok_or("no local description")?)
            .map_err(|e| e.to_string())
    }

    /// A signaling message from the SFU (over the plugin WebSocket).
    async fn signal(
        &mut self,
        plan: &PeerPlan,
        outbox: &mpsc::Sender<Outgoing>,
        message: RtcMessage,
    ) -> Result<(), String> {
        let data = message.data.unwrap_or_default();
        let value: serde_json::Value =
            serde_json::from_slice(&data).map_err(|e| format!("bad signaling JSON: {e}"))?;
        match message.msg_type {
            rtc_type::SDP => {
                let sdp = value["sdp"].as_str().unwrap_or_default().to_owned();
                if value["type"] == "answer" {
                    let answer = RTCSessionDescription::answer(sdp).map_err(|e| e.to_string())?;
                    self.pc
                        .set_remote_description(Instant::now(), answer)
                        .map_err(|e| e.to_string())?;
                } else {
                    let answer = self.answer(sdp)?;
                    outbox
                        .send(Outgoing::Rtc(rtc_message(plan, rtc_type::SDP, answer)))
                        .await
                        .map_err(|_| "plugin connection gone")?;
                }
            }
            rtc_type::ICE => {
                let init: RTCIceCandidateInit = serde_json::from_value(value["candidate"].clone())
                    .map_err(|e| format!("bad candidate: {e}"))?;
                if !init.candidate.is_empty() {
                    let _ = self.pc.add_remote_candidate(init);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Applies a server offer and returns our answer (JSON).
    fn answer(&mut self, sdp: String) -> Result<String, String> {
        let err = |e: rtc::shared::error::Error| e.to_string();
        let offer = RTCSessionDescription::offer(sdp).map_err(err)?;
        self.pc
            .set_remote_description(Instant::now(), offer)
            .map_err(err)?;
        let answer = self.pc.create_answer(None).map_err(err)?;
        self.pc
            .set_local_description(Instant::now(), answer)
            .map_err(err)?;
        serde_json::to_string(&self.pc.local_description().ok_or("no local description")?)
            .map_err(|e| e.to_string())
    }

    /// Sends what the core produced, handles its events and received media.
    async fn flush(
        &mut self,
        socket: &tokio::net::UdpSocket,
        context: &PeerContext,
        status: &PeerStatus,
    ) {
        loop {
            let mut progressed = false;
            while let Some(transmit) = self.pc.poll_write() {
                progressed = true;
                let _ = socket
                    .send_to(&transmit.message, transmit.transport.peer_addr)
                    .await;
            }
            while let Some(event) = self.pc.poll_event() {
                progressed = true;
                match event {
                    RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => match state {
                        RTCPeerConnectionState::Connected => {
                            self.connected = true;
                            self.resolve_senders();
                            status.connected.store(true, Ordering::Relaxed);
                        }
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                            status.failed.store(true, Ordering::Relaxed);
                        }
                        _ => {}
                    },
                    RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(_)) => {}
                    _ => {}
                }
            }
            while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
                progressed = true;
                match message {
                    RTCMessage::RtpPacket(_, packet) => {
                        let now_us = context.epoch.elapsed().as_micros() as u64;
                        let measuring = context.measuring.load(Ordering::Relaxed);
                        if let Ok(mut stats) = status.stats.lock() {
                            stats.record(&packet, now_us, measuring);
                        }
                    }
                    RTCMessage::DataChannelMessage(dc, message) => {
                        self.on_dc(dc, &message.data);
                    }
                    RTCMessage::RtcpPacket(_, packets) => {
                        for packet in &packets {
                            let Some(pli) = packet
                                .as_any()
                                .downcast_ref::<rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication>()
                            else {
                                continue;
                            };
                            for layer in &mut self.video {
                                if layer.ssrc == pli.media_ssrc {
                                    layer.keyframe_requested = true;
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            if !progressed {
                break;
            }
        }
    }

    /// A server offer over the data channel is answered there (the current client does so).
    fn on_dc(&mut self, dc: rtc::data_channel::RTCDataChannelId, data: &[u8]) {
        if data.get(..2) != Some(&[0xcc, 0x03]) {
            return; // media maps, pongs, lock replies
        }
        let mut rest = &data[2..];
        let Ok(rmpv::Value::Binary(compressed)) = rmpv::decode::read_value(&mut rest) else {
            return;
        };
        let Ok(json) = dc_protocol::inflate(&compressed) else {
            return;
        };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&json) else {
            return;
        };
        let sdp = value["sdp"].as_str().unwrap_or_default().to_owned();
        match self.answer(sdp) {
            Ok(answer) => {
                if let Some(mut channel) = self.pc.data_channel(dc) {
                    let _ = channel.send(
                        Instant::now(),
                        BytesMut::from(&dc_protocol::encode_sdp(&answer)[..]),
                    );
                }
                self.resolve_senders();
            }
            Err(err) => tracing::debug!("server offer not answered: {err}"),
        }
    }

    /// Reads the negotiated payload types and extension IDs of our senders.
    fn resolve_senders(&mut self) {
        let video_mid = self.video_mid();
        for sender in self.audio.iter_mut().chain(self.video.iter_mut()) {
            if let Some(mut rtp_sender) = self.pc.rtp_sender(sender.id) {
                let parameters = &rtp_sender.get_parameters().rtp_parameters;
                let ext = |uri: &str| {
                    parameters
                        .header_extensions
                        .iter()
                        .find(|e| e.uri == uri)
                        .and_then(|e| u8::try_from(e.id).ok())
                };
                let mime = if sender.clock_rate == 48_000 {
                    "audio/opus"
                } else {
                    "video/VP8"
                };
                if let Some(codec) = parameters
                    .codecs
                    .iter()
                    .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
                {
                    sender.payload_type = codec.payload_type;
                }
                sender.level_ext = ext(crate::sfu::engine::AUDIO_LEVEL_URI);
                if sender.rid.is_some() {
                    sender.rid_ext = ext("urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id");
                    sender.mid_ext = ext("urn:ietf:params:rtp-hdrext:sdes:mid")
                        .zip(video_mid.clone())
                        .map(|(id, mid)| (id, Bytes::from(mid.into_bytes())));
                }
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

    fn send_audio(&mut self, epoch: Instant) {
        let Some(sender) = self.audio.as_mut() else {
            return;
        };
        Self::send(
            &mut self.pc,
            sender,
            &mut self.payload,
            AUDIO_PAYLOAD,
            epoch,
        );
    }

    /// One frame of screen layer `layer` (0 = `l`, 1 = `h`) in `packets` packets, each with a
    /// VP8 payload descriptor; a keyframe every [`KEYFRAME_EVERY`] frames.
    fn send_frame(&mut self, layer: usize, packets: u64, epoch: Instant) {
        let Some(sender) = self.video.get_mut(layer) else {
            return;
        };
        let keyframe = sender.frames.is_multiple_of(KEYFRAME_EVERY)
            || std::mem::take(&mut sender.keyframe_requested);
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
            Self::send(
                &mut self.pc,
                sender,
                &mut self.payload,
                VIDEO_PAYLOAD,
                epoch,
            );
        }
    }

    fn send(
        pc: &mut RTCPeerConnection,
        sender: &mut Sender,
        payload: &mut [u8],
        size: usize,
        epoch: Instant,
    ) {
        sender.seq = sender.seq.wrapping_add(1);
        let sent_us = epoch.elapsed().as_micros() as u64;
        // The send time ends the payload (video payloads start with the VP8 descriptor).
        payload[size - 8..size].copy_from_slice(&sent_us.to_be_bytes());
        let mut packet = rtc::rtp::packet::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: sender.payload_type,
                sequence_number: sender.seq,
                timestamp: (sent_us * u64::from(sender.clock_rate) / 1_000_000) as u32,
                ssrc: sender.ssrc,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(&payload[..size]),
        };
        if let Some(id) = sender.level_ext {
            let _ = packet
                .header
                .set_extension(id, Bytes::from_static(&[SPEECH_LEVEL]));
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
            let _ = rtp_sender.write_rtp(Instant::now(), packet);
        }
    }
}
