//! A test participant built on the same WebRTC core (`rtc`), driven over a real UDP socket on
//! loopback: it offers a `calls-dc` data channel as the Calls client does, trickles its host
//! candidate, and exposes what arrives on the data channel.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::data_channel::RTCDataChannelId;
use rtc::interceptor::Registry;
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
use rtc::sansio::Protocol as _;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

pub struct RtcPeer {
    pub pc: RTCPeerConnection,
    socket: UdpSocket,
    local: SocketAddr,
    dc: RTCDataChannelId,
    pub dc_open: bool,
    pub connected: bool,
    pub state: Option<RTCPeerConnectionState>,
    pub dc_messages: Vec<Vec<u8>>,
}

impl RtcPeer {
    /// A peer with a `calls-dc` channel; returns it and its offer JSON.
    pub fn new() -> (Self, String) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let local = socket.local_addr().unwrap();
        let mut engine = rtc::peer_connection::configuration::media_engine::MediaEngine::default();
        engine.register_default_codecs().unwrap();
        let registry = register_default_interceptors(Registry::new(), &mut engine).unwrap();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(engine)
            .with_interceptor_registry(registry)
            .build(Instant::now())
            .unwrap();
        let dc = pc.create_data_channel("calls-dc", None).unwrap().id();
        let offer = pc.create_offer(None).unwrap();
        pc.set_local_description(Instant::now(), offer).unwrap();
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
        .unwrap();
        pc.add_local_candidate(RTCIceCandidate::from(&candidate).to_json().unwrap())
            .unwrap();
        let offer = serde_json::to_string(&pc.local_description().unwrap()).unwrap();
        (
            Self {
                pc,
                socket,
                local,
                dc,
                dc_open: false,
                connected: false,
                state: None,
                dc_messages: Vec::new(),
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
        self.pc.add_remote_candidate(init).unwrap();
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
            match self.socket.recv_from(&mut buf) {
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

    fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.pc.poll_write() {
                progressed = true;
                let _ = self.socket.send_to(&t.message, t.transport.peer_addr);
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
                if let RTCMessage::DataChannelMessage(_, msg) = message {
                    self.dc_messages.push(msg.data.to_vec());
                }
            }
            if !progressed {
                break;
            }
        }
    }
}
