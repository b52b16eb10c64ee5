//! Per-session configuration of the WebRTC core: codecs (plus RTX for video, unlike
//! upstream), header extensions, interceptors and ICE/DTLS settings (spec media-plane §1.1,
//! §3.3, §3.5, §3.6).
//!
//! Owns: what a session's peer connection negotiates. Everything library-specific about
//! building a peer connection lives here so the session logic stays library-neutral in shape.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;

use rtc::interceptor::Registry;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_AV1, MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};

/// RFC 6464 audio level.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// Transport-wide congestion control sequence numbers.
pub const TWCC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// The negotiated ID of header extension `uri` in `parameters`, if negotiated.
pub fn extension_id(
    parameters: &rtc::rtp_transceiver::rtp_sender::RTCRtpParameters,
    uri: &str,
) -> Option<u8> {
    parameters
        .header_extensions
        .iter()
        .find(|e| e.uri == uri)
        .and_then(|e| u8::try_from(e.id).ok())
}

/// The negotiated payload type of codec `mime` in `parameters`, if negotiated.
pub fn payload_type(
    parameters: &rtc::rtp_transceiver::rtp_sender::RTCRtpParameters,
    mime: &str,
) -> Option<u8> {
    parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
        .map(|c| c.payload_type)
}

/// How often the SFU asks a publisher for one missing packet.
pub const MAX_NACKS_PER_PACKET: u16 = 10;

/// Bounds of the send-side estimate (upstream: 0.5 × the low layer's and 1.5 × the high
/// layer's nominal rate).
pub const BWE_MIN_BPS: f64 = 250_000.0;
pub const BWE_MAX_BPS: f64 = 3_750_000.0;

/// The send-side estimator, for the core's congestion controller and for the session's own
/// (`direct_video`): starts at the maximum and comes down on congestion.
pub fn estimator() -> rtc::interceptor::Gcc {
    rtc::interceptor::Gcc::new(BWE_MAX_BPS, BWE_MIN_BPS, BWE_MAX_BPS)
}

/// Opus / VP8 / AV1 payload types upstream registers.
pub const OPUS_PT: u8 = 111;
pub const VP8_PT: u8 = 96;
pub const AV1_PT: u8 = 45;
/// RTX (RFC 4588) payload types for VP8 and AV1 (as Chromium numbers them). Upstream
/// registers no RTX; we do for what we send, so retransmissions travel on their own SSRC and
/// a receiver's statistics tell them apart from late originals (publishers retransmit on the
/// media SSRC: see `offer_filter`).
pub const VP8_RTX_PT: u8 = 97;
pub const AV1_RTX_PT: u8 = 46;

fn video_feedback() -> Vec<RTCPFeedback> {
    [
        ("goog-remb", ""),
        ("ccm", "fir"),
        ("nack", ""),
        ("nack", "pli"),
        ("transport-cc", ""),
    ]
    .into_iter()
    .map(|(typ, parameter)| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    })
    .collect()
}

/// The codec we register for a MIME type (used for forwarded tracks).
pub fn codec_for(mime: &str) -> Option<RTCRtpCodec> {
    let (clock_rate, channels, fmtp, feedback) = if mime.eq_ignore_ascii_case(MIME_TYPE_OPUS) {
        (
            48_000,
            2,
            "minptime=10;useinbandfec=1",
            vec![RTCPFeedback {
                typ: "transport-cc".into(),
                parameter: String::new(),
            }],
        )
    } else if mime.eq_ignore_ascii_case(MIME_TYPE_VP8) || mime.eq_ignore_ascii_case(MIME_TYPE_AV1) {
        (90_000, 0, "", video_feedback())
    } else {
        return None;
    };
    Some(RTCRtpCodec {
        mime_type: mime.to_owned(),
        clock_rate,
        channels,
        sdp_fmtp_line: fmtp.to_owned(),
        rtcp_feedback: feedback,
    })
}

/// The RTX payload type we register for a video payload type.
pub fn rtx_payload_type_for(payload_type: u8) -> Option<u8> {
    match payload_type {
        VP8_PT => Some(VP8_RTX_PT),
        AV1_PT => Some(AV1_RTX_PT),
        _ => None,
    }
}

/// The codecs and extensions of spec media-plane §3.3/§3.5.
pub fn media_engine() -> Result<MediaEngine, rtc::shared::error::Error> {
    let mut engine = MediaEngine::default();
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48_000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
                rtcp_feedback: vec![RTCPFeedback {
                    typ: "transport-cc".to_owned(),
                    parameter: String::new(),
                }],
            },
            payload_type: OPUS_PT,
        },
        RtpCodecKind::Audio,
    )?;
    for (mime, pt) in [(MIME_TYPE_VP8, VP8_PT), (MIME_TYPE_AV1, AV1_PT)] {
        engine.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: mime.to_owned(),
                    clock_rate: 90_000,
                    channels: 0,
                    sdp_fmtp_line: String::new(),
                    rtcp_feedback: video_feedback(),
                },
                payload_type: pt,
            },
            RtpCodecKind::Video,
        )?;
    }
    for (apt, pt) in [(VP8_PT, VP8_RTX_PT), (AV1_PT, AV1_RTX_PT)] {
        engine.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: MIME_TYPE_RTX.to_owned(),
                    clock_rate: 90_000,
                    channels: 0,
                    sdp_fmtp_line: format!("apt={apt}"),
                    rtcp_feedback: Vec::new(),
                },
                payload_type: pt,
            },
            RtpCodecKind::Video,
        )?;
    }
    for (uri, kind) in [
        (AUDIO_LEVEL_URI, RtpCodecKind::Audio),
        (TWCC_URI, RtpCodecKind::Audio),
        (TWCC_URI, RtpCodecKind::Video),
    ] {
        engine.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: uri.to_owned(),
            },
            kind,
            None,
        )?;
    }
    Ok(engine)
}

thread_local! {
    static CERTIFICATE: std::cell::OnceCell<RTCCertificate> = const { std::cell::OnceCell::new() };
}

/// The DTLS certificate of this media thread, generated once and shared by its sessions (as a
/// server's TLS certificate is): a fresh ECDSA key per session costs CPU at every join and
/// memory per session, and buys nothing for an SFU. rcgen's default validity runs to 4096.
fn thread_certificate() -> Result<RTCCertificate, rtc::shared::error::Error> {
    CERTIFICATE.with(|cell| {
        if let Some(certificate) = cell.get() {
            return Ok(certificate.clone());
        }
        let provider = rtc::crypto::default_provider()
            .map_err(|e| rtc::shared::error::Error::Other(e.to_string()))?;
        let params = CertificateParams::new(vec!["rtcd".to_owned()])
            .map_err(|e| rtc::shared::error::Error::Other(e.to_string()))?;
        let certificate = RTCCertificate::generate(
            provider.crypto(),
            rtc::crypto::SignatureScheme::EcdsaP256Sha256,
            params,
        )?;
        Ok(cell.get_or_init(|| certificate).clone())
    })
}

/// Builds a session's peer connection with our ICE credentials (ufrag, password) and a NACK
/// history of `history` packets per outgoing stream. Gathering is ours: the caller adds the
/// advertised host candidates. `keys` learns the connection's outbound SRTP keys.
pub fn peer_connection(
    (ufrag, pwd): (&str, &str),
    history: u16,
    refused_retransmissions: prometheus_client::metrics::counter::Counter,
    feedback: std::sync::Arc<super::nack_budget::FeedbackTally>,
    keys: std::sync::Arc<super::srtp_keys::KeyCapture>,
    now: Instant,
) -> Result<RTCPeerConnection, rtc::shared::error::Error> {
    let mut engine = media_engine()?;
    let registry = register_default_interceptors(Registry::new(), &mut engine)?
        // Send-side bandwidth estimation from the receivers' TWCC feedback (spec media-plane
        // §3.6), used only to choose simulcast layers: no pacer, nothing is delayed or dropped.
        // It starts at the maximum and comes down on congestion (upstream started at the
        // minimum, which kept every receiver on the low layer until the estimate climbed).
        // Upstream's NACK buffer size (`rtc.nack_buffer_size`) instead of the core's 1,024
        // packets per outgoing video stream.
        .with(
            rtc::interceptor::Slot::NackResponder,
            rtc::interceptor::NackResponderBuilder::new()
                .with_size(history)
                .build(),
        )
        // A packet missing from a publisher is asked for at most 10 times (libwebrtc's limit),
        // once per 100 ms: the core's default asks until the packet leaves its 512-packet log,
        // so a packet whose retransmissions were lost too was NACKed for seconds.
        .with(
            rtc::interceptor::Slot::NackGenerator,
            rtc::interceptor::NackGeneratorBuilder::new()
                .with_max_nacks_per_packet(MAX_NACKS_PER_PACKET)
                .build(),
        )
        // Receivers' NACKs pass a retransmission budget before the responder sees them; the
        // same interceptor hands their PLI/FIR to us (see `KeyframeRequestsToApp`).
        .with(
            rtc::interceptor::Slot::from(3_500),
            super::nack_budget::NackBudget::new(refused_retransmissions, feedback, history),
        )
        .with(
            rtc::interceptor::Slot::TwccSender,
            rtc::interceptor::TwccSenderBuilder::new().build(),
        )
        .with(
            rtc::interceptor::Slot::CongestionControl,
            rtc::interceptor::CongestionControlBuilder::new(estimator()).build(),
        );
    let settings = SettingEngineBuilder::new()
        .with_ice_credentials(ufrag.to_owned(), pwd.to_owned())
        // AEAD_AES_128_GCM first: 2-3x cheaper per packet than AES-CM + HMAC-SHA1, which stays
        // available for clients that lack GCM.
        .with_srtp_protection_profiles(vec![
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
        ])
        // As answerer we are the DTLS client (a=setup:active), as upstream (pion default).
        .with_answering_dtls_role(RTCDtlsRole::Client)
        // Never emit or resolve mDNS names (rtcd disables mDNS).
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        // pion's defaults: disconnected after 5 s, failed 25 s later, keepalive every 2 s.
        .with_ice_timeouts(
            Some(Duration::from_secs(5)),
            Some(Duration::from_secs(25)),
            Some(Duration::from_secs(2)),
        )
        // Our own provider for this connection only, to learn the local SRTP keys the direct
        // audio path encrypts with (see `srtp_keys`).
        .with_crypto_provider(keys)
        .build();
    RTCPeerConnectionBuilder::new()
        .with_configuration(
            RTCConfigurationBuilder::new()
                .with_certificates(vec![thread_certificate()?])
                .build(),
        )
        .with_setting_engine(settings)
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .build(now)
}

/// Tags inbound RTCP carrying PLI/FIR for the application: the library drops inbound RTCP
/// before `poll_read` unless it is tagged, and receivers' keyframe requests must reach us to
/// be relayed to publishers.
pub fn deliver_keyframe_requests(msg: &mut TaggedPacket) {
    if let Packet::Rtcp(packets) = &msg.message.packet
        && packets.iter().any(|p| {
            p.as_any().is::<PictureLossIndication>() || p.as_any().is::<FullIntraRequest>()
        })
    {
        msg.message.add(Attribute::DeliverToApplication);
    }
}

/// Interceptor that only does [`deliver_keyframe_requests`], for peers without our feedback
/// interceptor (the load tool's sharers answer PLI with a keyframe).
#[derive(Default)]
pub struct KeyframeRequestsToApp {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestsToApp {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        deliver_keyframe_requests(&mut msg);
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.writes.pop_front()
    }
}

impl Interceptor for KeyframeRequestsToApp {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}
