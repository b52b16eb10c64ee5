//! A test participant built on the same WebRTC core (`rtc`), driven over a real UDP socket on
//! loopback: it offers a `calls-dc` data channel as the Calls client does, trickles its host
//! candidate, and exposes what arrives on the data channel.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::data_channel::RTCDataChannelId;
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
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

/// ICE-TCP (active) state of a TCP-only peer.
struct TcpLink {
    stream: Option<std::net::TcpStream>,
    local: Option<SocketAddr>,
    pending: Vec<u8>,
}

pub struct RtcPeer {
    pub pc: RTCPeerConnection,
    socket: UdpSocket,
    local: SocketAddr,
    tcp: Option<TcpLink>,
    dc: RTCDataChannelId,
    pub dc_open: bool,
    pub connected: bool,
    pub state: Option<RTCPeerConnectionState>,
    pub dc_messages: Vec<Vec<u8>>,
    /// Our audio sender, when created with audio.
    audio: Option<(RTCRtpSenderId, u32)>,
    seq: u16,
    /// RTP packets received, by track ID.
    pub received: std::collections::HashMap<String, usize>,
    /// Received packets that carried an RFC 6464 audio level (one-byte extension, any ID).
    pub received_with_level: usize,
    /// Audio level to send with each packet (alternating makes "speech").
    pub level_pattern: Vec<u8>,
    /// MediaMaps received (raw), and server offers answered over the data channel.
    pub media_maps: Vec<Vec<u8>>,
    pub server_offers: usize,
    /// Order of arrival: 'm' for MediaMap, 'o' for offer.
    pub order: String,
    /// When set, UDP datagrams from any other source are dropped (a network where only this
    /// address, e.g. a TURN relay, reaches the peer).
    pub only_from: Option<SocketAddr>,
    /// When set, every n-th audio packet is lost on the way (its sequence number is skipped).
    pub lose_every: Option<u16>,
}

impl RtcPeer {
    /// A peer with a `calls-dc` channel; returns it and its offer JSON.
    pub fn new() -> (Self, String) {
        Self::with_audio(false)
    }

    /// Like [`RtcPeer::new`], optionally also sending an Opus track (stream ID "mic").
    pub fn with_audio(audio: bool) -> (Self, String) {
        Self::build(audio, false, "127.0.0.1")
    }

    /// A UDP peer on IPv6 loopback.
    pub fn ipv6() -> (Self, String) {
        Self::build(false, false, "::1")
    }

    /// A peer that connects only over ICE-TCP (active), as a browser does when UDP is blocked.
    pub fn tcp_only() -> (Self, String) {
        Self::build(false, true, "127.0.0.1")
    }

    fn build(audio: bool, tcp: bool, ip: &str) -> (Self, String) {
        let socket = UdpSocket::bind((ip, 0)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let local = socket.local_addr().unwrap();
        let mut engine = rtc::peer_connection::configuration::media_engine::MediaEngine::default();
        engine.register_default_codecs().unwrap();
        engine
            .register_header_extension(
                rtc::rtp_transceiver::rtp_sender::RTCRtpHeaderExtensionCapability {
                    uri: "urn:ietf:params:rtp-hdrext:ssrc-audio-level".into(),
                },
                RtpCodecKind::Audio,
                None,
            )
            .unwrap();
        let registry = register_default_interceptors(Registry::new(), &mut engine).unwrap();
        let mut settings =
            rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder::new();
        if tcp {
            settings = settings.with_network_types(vec![rtc::ice::network_type::NetworkType::Tcp4]);
        }
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(settings.build())
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .build(Instant::now())
            .unwrap();
        let dc = pc.create_data_channel("calls-dc", None).unwrap().id();
        let audio = audio.then(|| {
            let ssrc: u32 = 0x1234_5678;
            let track = MediaStreamTrack::new(
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
            );
            (pc.add_track(track).unwrap(), ssrc)
        });
        let offer = pc.create_offer(None).unwrap();
        pc.set_local_description(Instant::now(), offer).unwrap();
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: if tcp { "tcp".into() } else { "udp".into() },
                address: local.ip().to_string(),
                // Active TCP candidates do not listen: port 9 is the conventional placeholder.
                port: if tcp { 9 } else { local.port() },
                component: 1,
                ..Default::default()
            },
            tcp_type: if tcp {
                rtc::ice::tcp_type::TcpType::Active
            } else {
                Default::default()
            },
        }
        .new_candidate_host()
        .unwrap();
        pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json().unwrap())
            .unwrap();
        let offer = serde_json::to_string(&pc.local_description().unwrap()).unwrap();
        (
            Self {
                pc,
                socket,
                local,
                tcp: tcp.then(|| TcpLink {
                    stream: None,
                    local: None,
                    pending: Vec::new(),
                }),
                dc,
                dc_open: false,
                connected: false,
                state: None,
                dc_messages: Vec::new(),
                audio,
                seq: 0,
                received: Default::default(),
                received_with_level: 0,
                level_pattern: Vec::new(),
                media_maps: Vec::new(),
                server_offers: 0,
                order: String::new(),
                only_from: None,
                lose_every: None,
            },
            offer,
        )
    }

    /// Applies the SFU's answer.
    pub fn apply_answer(&mut self, json: &str) {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["type"], "answer", "{json}");
        let answer =
            RTCSessionDescription::answer(value["sdp"].as_str().unwrap().to_owned()).unwrap();
        self.pc
            .set_remote_description(Instant::now(), answer)
            .unwrap();
    }

    /// Adds a trickled SFU candidate (`{"type":"candidate","candidate":{…}}`).
    pub fn add_candidate(&mut self, json: &str) {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["type"], "candidate", "{json}");
        let init: RTCIceCandidateInit = serde_json::from_value(value["candidate"].clone()).unwrap();
        if let Some(link) = &mut self.tcp
            && link.stream.is_none()
            && init.candidate.contains(" tcp ")
            && init.candidate.contains("tcptype passive")
        {
            // candidate:<foundation> <component> tcp <priority> <ip> <port> typ host tcptype passive
            let fields: Vec<&str> = init.candidate.split_whitespace().collect();
            let addr: SocketAddr = format!("{}:{}", fields[4], fields[5]).parse().unwrap();
            let stream = std::net::TcpStream::connect(addr).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_millis(5)))
                .unwrap();
            stream.set_nodelay(true).unwrap();
            link.local = Some(stream.local_addr().unwrap());
            link.stream = Some(stream);
        }
        self.pc.add_remote_candidate(init).unwrap();
    }

    /// Sends one 20 ms Opus-sized packet on our audio track.
    pub fn send_audio(&mut self) {
        let Some((sender, ssrc)) = self.audio else {
            return;
        };
        self.seq = self.seq.wrapping_add(1);
        if self.lose_every.is_some_and(|n| self.seq.is_multiple_of(n)) {
            return;
        }
        let packet = rtc::rtp::packet::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: 111,
                sequence_number: self.seq,
                timestamp: u32::from(self.seq) * 960,
                ssrc,
                ..Default::default()
            },
            payload: bytes::Bytes::from(vec![0xfc; 80]),
        };
        let mut packet = packet;
        if let Some(mut sender) = self.pc.rtp_sender(sender) {
            let level_id = sender
                .get_parameters()
                .rtp_parameters
                .header_extensions
                .iter()
                .find(|e| e.uri.contains("ssrc-audio-level"))
                .map(|e| e.id as u8);
            if let (Some(id), false) = (level_id, self.level_pattern.is_empty()) {
                let level = self.level_pattern[self.seq as usize % self.level_pattern.len()];
                packet
                    .header
                    .set_extension(id, bytes::Bytes::copy_from_slice(&[level]))
                    .unwrap();
            }
            let _ = sender.write_rtp(Instant::now(), packet);
        }
    }

    pub fn send_dc(&mut self, bytes: &[u8]) {
        let mut dc = self.pc.data_channel(self.dc).expect("data channel");
        dc.send(Instant::now(), BytesMut::from(bytes)).unwrap();
    }

    /// Runs the peer for up to `duration` or until `done` holds.
    pub fn run_until(&mut self, duration: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + duration;
        let mut buf = vec![0u8; 2048];
        while Instant::now() < deadline {
            self.flush();
            if done(self) {
                return true;
            }
            if self.tcp.is_some() {
                self.read_tcp(&mut buf);
                continue;
            }
            match self.socket.recv_from(&mut buf) {
                Ok((_, peer)) if self.only_from.is_some_and(|only| only != peer) => {}
                Ok((n, peer)) => {
                    let _ = self.pc.handle_read(TaggedBytesMut {
                        now: Instant::now(),
                        transport: TransportContext {
                            local_addr: self.local,
                            peer_addr: peer,
                            transport_protocol: TransportProtocol::UDP,
                            ecn: None,
                        },
                        message: BytesMut::from(&buf[..n]),
                    });
                }
                Err(_) => {
                    let now = Instant::now();
                    if self.pc.poll_timeout().is_some_and(|t| t <= now) {
                        let _ = self.pc.handle_timeout(now);
                    }
                }
            }
        }
        self.flush();
        done(self)
    }

    /// Handles SFU → client data-channel traffic: MediaMap and server offers (answered over
    /// the data channel, as the Calls client does with dcSignaling).
    fn on_dc(&mut self, data: Vec<u8>) {
        match data.get(..2) {
            Some([0xcc, 0x09]) => {
                self.order.push('m');
                self.media_maps.push(data);
            }
            Some([0xcc, 0x03]) => {
                self.order.push('o');
                let mut rd = &data[2..];
                let rmpv::Value::Binary(compressed) = rmpv::decode::read_value(&mut rd).unwrap()
                else {
                    panic!("SDP payload is not bin")
                };
                let json = rtcd::sfu::dc_protocol::inflate(&compressed).unwrap();
                let value: serde_json::Value = serde_json::from_str(&json).unwrap();
                assert_eq!(value["type"], "offer");
                let offer = RTCSessionDescription::offer(value["sdp"].as_str().unwrap().to_owned())
                    .unwrap();
                self.pc
                    .set_remote_description(Instant::now(), offer)
                    .unwrap();
                let answer = self.pc.create_answer(None).unwrap();
                self.pc
                    .set_local_description(Instant::now(), answer)
                    .unwrap();
                let answer = serde_json::to_string(&self.pc.local_description().unwrap()).unwrap();
                self.send_dc(&rtcd::sfu::dc_protocol::encode_sdp(&answer));
                self.server_offers += 1;
            }
            _ => self.dc_messages.push(data),
        }
    }

    fn read_tcp(&mut self, buf: &mut [u8]) {
        use std::io::Read as _;
        let link = self.tcp.as_mut().unwrap();
        let (Some(stream), Some(local)) = (link.stream.as_mut(), link.local) else {
            std::thread::sleep(Duration::from_millis(5));
            let now = Instant::now();
            if self.pc.poll_timeout().is_some_and(|t| t <= now) {
                let _ = self.pc.handle_timeout(now);
            }
            return;
        };
        let peer = stream.peer_addr().unwrap();
        match stream.read(buf) {
            Ok(n) if n > 0 => link.pending.extend_from_slice(&buf[..n]),
            _ => {
                let now = Instant::now();
                if self.pc.poll_timeout().is_some_and(|t| t <= now) {
                    let _ = self.pc.handle_timeout(now);
                }
                return;
            }
        }
        while link.pending.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([link.pending[0], link.pending[1]]));
            if link.pending.len() < 2 + len {
                break;
            }
            let packet: Vec<u8> = link.pending.drain(..2 + len).skip(2).collect();
            let _ = self.pc.handle_read(TaggedBytesMut {
                now: Instant::now(),
                transport: TransportContext {
                    local_addr: local,
                    peer_addr: peer,
                    transport_protocol: TransportProtocol::TCP,
                    ecn: None,
                },
                message: BytesMut::from(&packet[..]),
            });
        }
    }

    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.pc.poll_write() {
                progressed = true;
                match self.tcp.as_mut().and_then(|l| l.stream.as_mut()) {
                    Some(stream) => {
                        use std::io::Write as _;
                        let mut framed = (t.message.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&t.message);
                        let _ = stream.write_all(&framed);
                    }
                    None => {
                        let _ = self.socket.send_to(&t.message, t.transport.peer_addr);
                    }
                }
            }
            while let Some(event) = self.pc.poll_event() {
                progressed = true;
                match event {
                    RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                        self.connected |= state == RTCPeerConnectionState::Connected;
                        self.state = Some(state);
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
                    RTCMessage::DataChannelMessage(_, msg) => self.on_dc(msg.data.to_vec()),
                    RTCMessage::RtpPacket(track_id, packet) => {
                        if packet.header.extension && !packet.header.extensions.is_empty() {
                            self.received_with_level += 1;
                        }
                        *self.received.entry(track_id).or_default() += 1;
                    }
                    _ => {}
                }
            }
            if !progressed {
                break;
            }
        }
    }
}

/// Sends `offer` (SDP JSON) for `session` over the plugin WebSocket, as the plugin relays it.
pub async fn send_offer(ws: &mut rtcd::client::WsClient, session: &str, offer: String) {
    ws.rtc(&rtcd::ws::codec::RtcMessage {
        session_id: session.into(),
        msg_type: rtcd::ws::codec::rtc_type::SDP,
        data: Some(offer.into_bytes()),
        ..Default::default()
    })
    .await
    .unwrap();
}

/// Sends `offer` for `session` over the plugin WebSocket, then applies the SFU's answer and
/// both trickled candidates (UDP, TCP) to `peer`; other sessions' messages are skipped.
/// Returns the candidate messages.
pub async fn negotiate(
    ws: &mut rtcd::client::WsClient,
    session: &str,
    peer: &mut RtcPeer,
    offer: String,
) -> Vec<String> {
    use rtcd::ws::codec::ServerMessage;
    send_offer(ws, session, offer).await;
    let mut answered = false;
    let mut candidates = Vec::new();
    while !answered || candidates.len() < 2 {
        match ws.recv_timeout(Duration::from_secs(5)).await.unwrap() {
            ServerMessage::Rtc(msg) if msg.session_id == session && msg.msg_type == 2 => {
                peer.apply_answer(&String::from_utf8(msg.data.unwrap()).unwrap());
                answered = true;
            }
            ServerMessage::Rtc(msg) if msg.session_id == session && msg.msg_type == 1 => {
                candidates.push(String::from_utf8(msg.data.unwrap()).unwrap());
            }
            _ => {}
        }
    }
    for candidate in &candidates {
        peer.add_candidate(candidate);
    }
    candidates
}

/// Joins `session` into `call` over the plugin WebSocket and connects a peer (see
/// [`negotiate`]).
pub async fn connect(
    ws: &mut rtcd::client::WsClient,
    call: &str,
    session: &str,
    audio: bool,
) -> RtcPeer {
    ws.join(&rtcd::ws::codec::JoinData {
        call_id: call.into(),
        user_id: format!("user-{session}"),
        session_id: session.into(),
        channel_id: serde_json::Value::String(format!("channel-{call}")),
        av1_support: serde_json::Value::Bool(false),
        dc_signaling: serde_json::Value::Bool(true),
    })
    .await
    .unwrap();
    let (mut peer, offer) = RtcPeer::with_audio(audio);
    negotiate(ws, session, &mut peer, offer).await;
    peer
}
