//! One participant's RTC session: its peer connection and the signaling around it.
//!
//! Owns: answering the client's offers (WebSocket or data channel), trickling our candidates,
//! queueing remote candidates until the first answer, the data-channel protocol (ping/pong,
//! signaling lock, zlib SDP), connection-state tracking and the initial-offer deadline.
//! Sans-IO: inputs carry `now`; outputs are pushed into [`Outputs`].

use rustc_hash::FxHashMap as HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::data_channel::RTCDataChannelId;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{
    RTCIceConnectionState, RTCPeerConnectionState, RTCSignalingState,
};
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, CandidateRelayConfig, RTCIceCandidate,
    RTCIceCandidateInit,
};
use rtc::sansio::Protocol as _;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::statistics::report::RTCStatsReport;

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_AV1, MIME_TYPE_VP8};
use rtc::peer_connection::event::RTCTrackEvent;
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RTCRtpRtxParameters,
    RtpCodecKind,
};

use super::dc_protocol::{self, ClientDcMessage, MediaMapEntry};
use super::direct_rtp::{DirectHeader, DirectSender, Route};
use super::direct_video::{SendSideEstimate, VideoLeg, Wire};
use super::engine;
use super::relay::{Relay, RelayEvent, RelayTransport};
use super::sender_reports::{self, SentStream};
use super::simulcast::{Layer, LayerSwitcher, Verdict};
use super::srtp_gcm::Rollover;
use super::srtp_keys::KeyCapture;
use super::tracks::{self, PublishedTrack, TrackKey, TrackKind};
use crate::calls::SessionConfig;
use crate::media::{CloseReason, MediaEvent, OutboundKind, SessionQuality};
use crate::metrics::{
    ConnState, ConnStateLabels, Direction, FailureCause, GroupLabels, Metrics, RtcErrorKind,
    RtcErrorLabels,
};
use crate::net::addresses::{Advertised, Protocol};
use prometheus_client::metrics::histogram::Histogram;

/// How long a new session waits for its first SDP offer.
pub const INITIAL_OFFER_TIMEOUT: Duration = Duration::from_secs(10);
/// Remote candidates queued before the first answer (upstream: 40).
pub const MAX_QUEUED_CANDIDATES: usize = 40;
/// Remote ICE candidates a session takes unless its worker says otherwise
/// (`limits.max_remote_candidates`).
pub const DEFAULT_MAX_REMOTE_CANDIDATES: usize = 64;

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

impl Route {
    /// A datagram of the direct path on this route.
    fn transmit(self, data: BytesMut) -> Transmit {
        Transmit {
            local: self.local,
            peer: self.peer,
            protocol: self.protocol,
            data,
        }
    }
}

impl From<TaggedBytesMut> for Transmit {
    fn from(transmit: TaggedBytesMut) -> Self {
        Self {
            local: transmit.transport.local_addr,
            peer: transmit.transport.peer_addr,
            protocol: protocol_of(&transmit.transport),
            data: transmit.message,
        }
    }
}

fn protocol_of(transport: &TransportContext) -> Protocol {
    match transport.transport_protocol {
        TransportProtocol::TCP => Protocol::Tcp,
        _ => Protocol::Udp,
    }
}

/// Where session outputs go.
#[derive(Debug, Default)]
pub struct Outputs {
    pub transmits: Vec<Transmit>,
    pub events: Vec<MediaEvent>,
    /// Tracks a session started publishing (the worker offers them to the call).
    pub published: Vec<PublishedTrack>,
    /// Sessions whose data channel just opened (ready for server offers).
    pub ready: Vec<String>,
    /// Media to fan out.
    pub rtp: Vec<InboundRtp>,
    /// Keyframes wanted from publishers.
    pub keyframe_requests: Vec<KeyframeRequest>,
    /// Tracks no longer published: (publisher session, source track ID).
    pub unpublished: Vec<(String, String)>,
    /// Relay sockets of ended sessions (the driver closes them after sending the transmits).
    pub released_relay_sockets: Vec<SocketAddr>,
    /// UDP flows (advertised local address, peer) that became a session's selected candidate
    /// pair: the driver may give them a connected socket (`net::flows`).
    pub connect_flows: Vec<(SocketAddr, SocketAddr)>,
    /// UDP flows (advertised local address, peer) whose session authenticated a check from
    /// them: the driver tells the receive thread which worker owns them (`net::learned`).
    pub learned_flows: Vec<(SocketAddr, SocketAddr)>,
    /// UDP flows of ended sessions (the driver closes their connected sockets and tells the
    /// receive thread to forget them).
    pub released_flows: Vec<(SocketAddr, SocketAddr)>,
    /// Scratch block the direct audio path carves its packets from (kept across turns).
    pub direct_arena: BytesMut,
}

/// A keyframe wanted from a publisher's track (a simulcast layer of it, if given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyframeRequest {
    pub publisher: String,
    pub source_id: String,
    pub layer: Option<Layer>,
}

/// A published video track's receiver, its SSRCs (per simulcast layer) and PLI throttling.
#[derive(Debug)]
struct VideoSource {
    receiver: rtc::rtp_transceiver::RTCRtpReceiverId,
    ssrcs: Vec<(Option<Layer>, u32)>,
    /// Last PLI per layer (index 0: no layer/low, 1: high).
    last_pli: [Option<Instant>; 2],
}

impl VideoSource {
    fn layer_of(&self, ssrc: u32) -> Option<Layer> {
        self.ssrcs
            .iter()
            .find(|(_, s)| *s == ssrc)
            .and_then(|(layer, _)| *layer)
    }
}

/// A packet of a published track, to forward to the rest of the call.
#[derive(Debug)]
pub struct InboundRtp {
    /// `(publisher session, source track ID)` of the track (shared, not allocated per packet).
    pub key: TrackKey,
    pub packet: rtc::rtp::packet::Packet,
    /// RFC 6464 level byte of a voice packet, re-added with each receiver's extension ID.
    pub audio_level: Option<u8>,
    /// The simulcast layer the packet belongs to.
    pub layer: Option<Layer>,
    /// VP8 payload descriptor of a simulcast packet, parsed once here rather than by every
    /// receiver.
    pub vp8: Option<super::vp8::Descriptor>,
    /// The packet starts a keyframe (VP8 or AV1 video; always false for other codecs).
    pub keyframe: bool,
}

/// An outgoing (forwarded) track on this session's connection.
#[derive(Debug)]
struct Leg {
    track: PublishedTrack,
    sender: RTCRtpSenderId,
    ssrc: u32,
    /// Payload type negotiated for the codec on this leg (resolved after negotiation).
    payload_type: Option<u8>,
    /// Audio-level extension ID negotiated on this leg, if any.
    audio_level_ext: Option<u8>,
    /// Layer choice and rebasing for a simulcast track.
    switcher: Option<LayerSwitcher>,
    /// When the leg was added (for the time to its first keyframe).
    added_at: Instant,
    /// A non-simulcast VP8/AV1 leg forwards nothing before its first keyframe (the receiver
    /// could not decode it); meanwhile keyframes are asked for every [`KEYFRAME_RETRY`].
    /// Holds the last request.
    awaiting_keyframe: Option<Instant>,
    /// Audio legs are sent by the session itself once the SRTP keys are known (see
    /// `direct_rtp`), packet by packet (the core sends any audio before that).
    direct: bool,
    /// Rollover counter of the leg's SSRC on the direct audio path.
    rollover: Rollover,
    /// How a video leg is sent, decided at its first packet and kept (the NACK history and
    /// the transport-wide numbering cannot move between the core and the session).
    video: VideoPath,
    /// The RTX SSRC we named for a video leg (used if the receiver negotiates RTX).
    rtx_ssrc: Option<u32>,
    /// Negotiated on this leg: RTX payload type and transport-wide extension ID.
    rtx_payload_type: Option<u8>,
    transport_ext: Option<u8>,
    /// What the direct path sent on the leg's SSRC, for its sender reports.
    sent: SentStream,
}

impl Leg {
    /// The transport-wide extension ID to stamp this leg's direct packets with: only simulcast
    /// legs, the one use of the send-side estimate (layer choice). Other video goes unstamped,
    /// which spares the history per packet here and the receiver's feedback for it.
    fn stamped_ext(&self) -> Option<u8> {
        self.transport_ext.filter(|_| self.switcher.is_some())
    }
}

/// Who sends a video leg's packets.
enum VideoPath {
    Undecided,
    /// The session (`direct_video`).
    Direct(Box<VideoLeg>),
    /// The core (sessions with SFU-side TURN relays, whose media goes through the relay,
    /// and SRTP profiles whose keys we do not learn).
    Core,
}

impl std::fmt::Debug for VideoPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Undecided => "Undecided",
            Self::Direct(_) => "Direct",
            Self::Core => "Core",
        })
    }
}

/// How long a receiver waits between keyframe requests while it has none.
pub const KEYFRAME_RETRY: Duration = Duration::from_millis(500);

/// A stream needs this many packets in a sampling period for its loss ratio to count.
const MIN_PACKETS_FOR_LOSS: f64 = 20.0;

/// Selected-pair changes per session that get a connected socket (later ones stay on the
/// shared socket).
const MAX_CONNECTED_ROUTES: u8 = 4;

/// Records the time a receiver waited for the first keyframe of a leg.
fn first_keyframe(metrics: &Metrics, session_id: &str, leg: &Leg, now: Instant) {
    let waited = now.duration_since(leg.added_at);
    metrics.quality.keyframe_wait.observe(waited.as_secs_f64());
    tracing::debug!(
        session_id,
        publisher = %leg.track.publisher,
        waited_ms = waited.as_millis() as u64,
        "first keyframe forwarded"
    );
}

/// Whether packets of this codec carry a keyframe marker we can read.
fn detects_keyframes(mime: &str) -> bool {
    mime.eq_ignore_ascii_case(MIME_TYPE_VP8) || mime.eq_ignore_ascii_case(MIME_TYPE_AV1)
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

/// One forwarded write in this many is timed (`rtcd_rtc_rtp_tracks_writes_time`).
pub const WRITE_TIME_SAMPLE: u32 = 64;

/// The two signaling-lock durations upstream reports.
#[derive(Debug, Clone, Copy)]
enum LockTime {
    /// From wanting the lock (a renegotiation is due) to taking it.
    Grab,
    /// From taking it to releasing it (answer received or given up).
    Held,
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
    /// The call's key in the worker's tables (group and call ID, [`crate::calls::call_key`]).
    pub call: Arc<str>,
    metrics: Arc<Metrics>,
    answered_at: Option<Instant>,
    pub ufrag: String,
    /// Set while the session waits in its worker's list of timers to recompute.
    pub timer_dirty: bool,
    pc: RTCPeerConnection,
    candidates: Vec<Advertised>,
    created_at: Instant,
    /// Set once the first offer has been answered.
    answered: bool,
    queued_candidates: Vec<RTCIceCandidateInit>,
    /// Remote ICE candidates taken so far (trickled and in offers), and how many may be.
    remote_candidates: usize,
    pub max_remote_candidates: usize,
    signaling: RTCSignalingState,
    /// Our own offer awaiting the client's answer.
    making_offer: bool,
    dc: Option<RTCDataChannelId>,
    /// The signaling lock (client Lock/Unlock, SFU renegotiation).
    locked: bool,
    /// Since when the SFU has wanted the lock for a renegotiation it could not start yet, and
    /// since when it has held it (`rtcd_rtc_signaling_lock_{grab,locked}_time`).
    lock_wanted_since: Option<Instant>,
    lock_held_since: Option<Instant>,
    /// Forwarded writes until the next timed one, and the writes-time histogram per track
    /// kind ([`TrackKind`] order).
    writes_until_sample: u32,
    write_times: [Option<Histogram>; 4],
    /// When the client took the lock (auto-released after [`CLIENT_LOCK_TIMEOUT`]).
    client_lock_since: Option<Instant>,
    connected_at: Option<Instant>,
    /// First datagram from the client (directly or relayed), and ICE success: what a failure
    /// is blamed on.
    first_datagram_at: Option<Instant>,
    ice_connected: bool,
    closed: Option<CloseReason>,
    /// Tracks this participant publishes, by source track ID.
    published: Vec<PublishedTrack>,
    /// Forwarded tracks, keyed by (publisher, source track ID).
    legs: HashMap<TrackKey, Leg>,
    /// A server offer is wanted once the lock and state allow.
    renegotiation_pending: bool,
    offer_sent_at: Option<Instant>,
    muted: bool,
    /// Published video tracks: source track ID → (receiver, media SSRC, last PLI sent).
    video_sources: HashMap<String, VideoSource>,
    /// Voice activity of the voice track, and the audio-level extension ID it carries.
    vad: super::vad::VoiceActivity,
    voice_level_ext: Option<u8>,
    screen_stream: Option<String>,
    video_stream: Option<String>,
    /// SFU-side TURN allocations (spec media-plane §1.8).
    relays: Vec<Relay>,
    /// Next call-quality sample, and the counters of the previous one.
    quality_due: Instant,
    quality_counters: Option<QualityCounters>,
    /// Per inbound SSRC: packets received and lost at the last quality sample.
    stream_counters: HashMap<u32, (u64, i64)>,
    /// What this client's RTCP reported (NACKs, loss), tallied by the feedback interceptor.
    feedback: Arc<super::nack_budget::FeedbackTally>,
    /// Next read of the send-side bandwidth estimate (sessions receiving simulcast).
    estimate_due: Instant,
    /// Relay candidates allocated before the first answer (trickled right after it).
    pending_relay_candidates: Vec<String>,
    /// Learns the connection's outbound SRTP keys from the core.
    srtp_keys: Arc<KeyCapture>,
    /// The direct audio path, once the keys are known (AES-128-GCM sessions without
    /// SFU-side TURN relays).
    direct: Option<DirectSender>,
    /// Where the core last sent DTLS or SRTP: the selected candidate pair.
    media_route: Option<Route>,
    /// Routes offered to the driver for a connected socket (at most [`MAX_CONNECTED_ROUTES`]:
    /// a client switching pairs again and again cannot make the SFU open sockets without end).
    connected_routes: u8,
    /// Payload bytes sent on the direct path (the core's statistics do not see them).
    direct_bytes_sent: u64,
    /// Retransmissions sent on the direct video path.
    direct_retransmitted: u64,
    /// Audio and video packets sent on the direct path since the metrics last got them.
    unreported_direct_packets: u64,
    unreported_direct_video_packets: u64,
    /// Transport-wide numbering and the send-side estimate of the direct video path.
    estimate: Option<SendSideEstimate>,
    /// Receivers' NACKs refused for lack of budget (shared with the core's streams).
    refused_retransmissions: prometheus_client::metrics::counter::Counter,
    /// Next sender reports for the streams on the direct path.
    reports_due: Instant,
}

/// Longest a client may hold the signaling lock before the SFU releases it (upstream waited
/// forever, silently dropping every server change for that session).
pub const CLIENT_LOCK_TIMEOUT: Duration = Duration::from_secs(15);

/// How often a session receiving simulcast reads its bandwidth estimate (an atomic load, not
/// a statistics report: measured with Chromium, reading it once per second put up to a
/// second between the estimate's drop and the move to the low layer).
pub const ESTIMATE_PERIOD: Duration = Duration::from_millis(200);

/// How often a connected session samples its call quality.
pub const QUALITY_PERIOD: Duration = Duration::from_secs(5);

/// Cumulative counters behind a quality sample.
#[derive(Debug, Clone, Copy)]
struct QualityCounters {
    at: Instant,
    bytes_received: u64,
    bytes_sent: u64,
    nacks_sent: u64,
    retransmitted_packets: u64,
}

/// How long the SFU waits for the answer to its offer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

impl Session {
    /// Creates the session and its peer connection; it waits for the client's first offer.
    pub fn new(
        config: Arc<SessionConfig>,
        ufrag: String,
        pwd: &str,
        candidates: Vec<Advertised>,
        relays: Vec<RelayTransport>,
        metrics: Arc<Metrics>,
        now: Instant,
    ) -> Result<Self, SessionError> {
        let feedback = Arc::<super::nack_budget::FeedbackTally>::default();
        let refused_retransmissions = metrics.quality.refused_retransmissions.clone();
        let srtp_keys = KeyCapture::new().map_err(|e| SessionError::Rtc(e.to_string()))?;
        let pc = engine::peer_connection(
            &ufrag,
            pwd,
            refused_retransmissions.clone(),
            feedback.clone(),
            srtp_keys.clone(),
            now,
        )?;
        let relays = relays
            .into_iter()
            .filter_map(|transport| {
                let url = transport.url.clone();
                Relay::start(transport, now)
                    .inspect_err(|err| tracing::warn!(session_id = %config.session_id, url, "TURN allocation not started: {err}"))
                    .ok()
            })
            .collect();
        Ok(Self {
            call: Arc::from(config.call_key()),
            config,
            metrics,
            answered_at: None,
            ufrag,
            timer_dirty: false,
            pc,
            candidates,
            created_at: now,
            answered: false,
            queued_candidates: Vec::new(),
            remote_candidates: 0,
            max_remote_candidates: DEFAULT_MAX_REMOTE_CANDIDATES,
            signaling: RTCSignalingState::Stable,
            making_offer: false,
            dc: None,
            locked: false,
            lock_wanted_since: None,
            lock_held_since: None,
            writes_until_sample: WRITE_TIME_SAMPLE,
            write_times: Default::default(),
            client_lock_since: None,
            connected_at: None,
            first_datagram_at: None,
            ice_connected: false,
            closed: None,
            published: Vec::new(),
            legs: HashMap::default(),
            renegotiation_pending: false,
            offer_sent_at: None,
            muted: false,
            video_sources: HashMap::default(),
            vad: super::vad::VoiceActivity::default(),
            voice_level_ext: None,
            screen_stream: None,
            video_stream: None,
            relays,
            pending_relay_candidates: Vec::new(),
            quality_due: now + QUALITY_PERIOD,
            quality_counters: None,
            stream_counters: HashMap::default(),
            feedback,
            estimate_due: now + ESTIMATE_PERIOD,
            srtp_keys,
            direct: None,
            media_route: None,
            connected_routes: 0,
            direct_bytes_sent: 0,
            direct_retransmitted: 0,
            unreported_direct_packets: 0,
            unreported_direct_video_packets: 0,
            estimate: None,
            refused_retransmissions,
            reports_due: now + sender_reports::AUDIO_REPORT_PERIOD,
        })
    }

    /// Feeds the send-side bandwidth estimate to the simulcast legs (layer choice).
    fn apply_estimate(&mut self, now: Instant) {
        // The estimate starts at the maximum; the controller reports it once it changes.
        let estimate = match &self.estimate {
            Some(own) => own.target_bitrate(),
            None => self.feedback.estimate().unwrap_or(engine::BWE_MAX_BPS),
        };
        tracing::trace!(session_id = %self.config.session_id, estimate_bps = estimate as u64, "bandwidth estimate");
        for leg in self.legs.values_mut() {
            if let Some(layer) = leg
                .switcher
                .as_mut()
                .and_then(|s| s.on_estimate(now, estimate))
            {
                tracing::info!(
                    session_id = %self.config.session_id,
                    publisher = %leg.track.publisher,
                    estimate_bps = estimate as u64,
                    layer = layer.as_str(),
                    "simulcast: receiver target layer"
                );
            }
        }
    }

    /// Samples call quality from the core's statistics, reports it to the control plane and
    /// into the quality histograms.
    fn sample_quality(&mut self, now: Instant, report: &RTCStatsReport, out: &mut Outputs) {
        let mut counters = QualityCounters {
            at: now,
            bytes_received: 0,
            bytes_sent: 0,
            nacks_sent: 0,
            retransmitted_packets: 0,
        };
        let mut jitter: f64 = 0.0;
        // Loss is per stream and the worst stream counts: video losses are mostly repaired
        // by retransmission (repaired packets count as received), audio ones are not, and a
        // sum over both would hide the audio loss behind the video's packet count.
        let mut worst_loss: f64 = 0.0;
        for stream in report.inbound_rtp_streams() {
            counters.nacks_sent += u64::from(stream.nack_count);
            let received = &stream.received_rtp_stream_stats;
            let now_counts = (received.packets_received, received.packets_lost);
            if let Some((was_received, was_lost)) = self
                .stream_counters
                .insert(received.rtp_stream_stats.ssrc, now_counts)
            {
                let got = now_counts.0.saturating_sub(was_received) as f64;
                let lost = (now_counts.1 - was_lost).max(0) as f64;
                // Ignore streams too quiet in this period to say anything.
                if got + lost >= MIN_PACKETS_FOR_LOSS {
                    worst_loss = worst_loss.max(lost / (got + lost));
                }
            }
            counters.bytes_received += stream.bytes_received;
            // rtc 0.21.1 documents this as seconds but stores the RTCP report's value, which is
            // in RTP timestamp units (measured: ~240 for 5 ms of Opus jitter).
            let clock_rate = match received.rtp_stream_stats.kind {
                RtpCodecKind::Audio => 48_000.0,
                _ => 90_000.0,
            };
            jitter = jitter.max(received.jitter / clock_rate);
        }
        for stream in report.outbound_rtp_streams() {
            counters.bytes_sent += stream.sent_rtp_stream_stats.bytes_sent;
            counters.retransmitted_packets += stream.retransmitted_packets_sent;
        }
        // Media on the direct path bypasses the core: its statistics miss those bytes.
        counters.bytes_sent += self.direct_bytes_sent;
        counters.retransmitted_packets += self.direct_retransmitted;
        // The core's statistics never see inbound RTCP: NACKs and receiver-report loss come
        // from our feedback interceptor, per period.
        let (nacks_received, remote_loss) = self.feedback.take();
        let rtt = report
            .candidate_pairs()
            .filter(|p| p.nominated && p.current_round_trip_time > 0.0)
            .map(|p| p.current_round_trip_time)
            .next();
        let previous = self.quality_counters.replace(counters);
        let Some(previous) = previous else {
            return; // the first sample only sets the baseline
        };
        let seconds = now.duration_since(previous.at).as_secs_f64().max(1e-3);
        let quality = SessionQuality {
            loss_ratio: worst_loss,
            jitter_seconds: jitter,
            rtt_seconds: rtt,
            receive_bps: counters
                .bytes_received
                .saturating_sub(previous.bytes_received) as f64
                * 8.0
                / seconds,
            send_bps: counters.bytes_sent.saturating_sub(previous.bytes_sent) as f64 * 8.0
                / seconds,
            remote_loss_ratio: remote_loss,
            // Already per period: the tally is taken at every sample.
            nacks_received,
            nacks_sent: counters.nacks_sent.saturating_sub(previous.nacks_sent),
            retransmitted_packets: counters
                .retransmitted_packets
                .saturating_sub(previous.retransmitted_packets),
        };
        let histograms = &self.metrics.quality;
        histograms.loss.observe(quality.loss_ratio);
        histograms.jitter.observe(quality.jitter_seconds);
        if let Some(rtt) = quality.rtt_seconds {
            histograms.rtt.observe(rtt);
        }
        histograms.receive_bitrate.observe(quality.receive_bps);
        histograms.send_bitrate.observe(quality.send_bps);
        histograms.remote_loss.observe(quality.remote_loss_ratio);
        histograms.nacks_received.inc_by(quality.nacks_received);
        histograms.nacks_sent.inc_by(quality.nacks_sent);
        histograms
            .retransmitted_packets
            .inc_by(quality.retransmitted_packets);
        self.report_direct_packets();
        out.events.push(MediaEvent::Quality {
            session_id: self.config.session_id.clone(),
            quality,
        });
    }

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
    fn poll_relays(&mut self, now: Instant, out: &mut Outputs) -> bool {
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
                            Ok(trickle) if self.answered => out.events.push(MediaEvent::Outbound {
                                session_id: self.config.session_id.clone(),
                                kind: OutboundKind::Ice,
                                data: trickle,
                            }),
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
    fn add_relay_candidate(
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

    /// True once the data channel is open: server offers may be sent.
    pub fn is_ready(&self) -> bool {
        self.dc.is_some() && self.closed.is_none()
    }

    /// True while this participant shares its screen.
    pub fn is_sharing(&self) -> bool {
        self.screen_stream.is_some()
    }

    /// Tracks this session publishes.
    pub fn published(&self) -> &[PublishedTrack] {
        &self.published
    }

    /// Mute/unmute/screen/video signals from the plugin.
    pub fn handle_media_signal(&mut self, signal: &crate::media::Signal, out: &mut Outputs) {
        use crate::media::Signal;
        match signal {
            Signal::Mute => {
                self.muted = true;
                self.vad.reset();
                out.events.push(MediaEvent::VoiceActivity {
                    session_id: self.config.session_id.clone(),
                    on: false,
                });
            }
            Signal::Unmute => self.muted = false,
            Signal::ScreenOn { stream_id } => self.screen_stream = Some(stream_id.clone()),
            Signal::ScreenOff => {
                self.screen_stream = None;
                // Receivers drop the screen and its audio (upstream kept a silent screen-audio
                // m-line; removing it is the recommended behaviour).
                let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.published)
                    .into_iter()
                    .partition(|t| matches!(t.kind, TrackKind::Screen | TrackKind::ScreenAudio));
                self.published = kept;
                for track in gone {
                    self.track_gauge(Direction::In, &track.mime, -1);
                    self.video_sources.remove(&track.source_id);
                    out.unpublished.push((track.publisher, track.source_id));
                }
            }
            Signal::VideoOn { stream_id } => self.video_stream = Some(stream_id.clone()),
            Signal::VideoOff | Signal::Ice(_) | Signal::Sdp(_) => {}
        }
    }

    /// Starts forwarding `track` to this participant (renegotiates).
    pub fn add_forwarded(&mut self, now: Instant, track: &PublishedTrack, out: &mut Outputs) {
        let key = track.key.clone();
        if self.legs.contains_key(&key) || self.closed.is_some() {
            return;
        }
        let is_audio = track.mime.starts_with("audio/");
        let codec = engine::codec_for(&track.mime);
        let ssrc: u32 = rand::random();
        // Named here so the direct video path knows it (the core mints one otherwise).
        let rtx_ssrc = (!is_audio).then(rand::random::<u32>);
        let out_track = MediaStreamTrack::new(
            track.publisher.clone(),
            track.out_id.clone(),
            track.out_id.clone(),
            if is_audio {
                RtpCodecKind::Audio
            } else {
                RtpCodecKind::Video
            },
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    rtx: rtx_ssrc.map(|ssrc| RTCRtpRtxParameters { ssrc }),
                    ..Default::default()
                },
                codec: codec.unwrap_or_else(|| RTCRtpCodec {
                    mime_type: track.mime.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
        );
        match self.pc.add_track(out_track) {
            Ok(sender) => {
                self.track_gauge(Direction::Out, &track.mime, 1);
                self.legs.insert(
                    key,
                    Leg {
                        track: track.clone(),
                        sender,
                        ssrc,
                        payload_type: None,
                        audio_level_ext: None,
                        // No bandwidth estimate yet: receivers get the high layer, and the
                        // low one only while the high layer is paused by the publisher.
                        switcher: track
                            .simulcast
                            .then(|| LayerSwitcher::new(Layer::High, now)),
                        added_at: now,
                        awaiting_keyframe: (!track.simulcast && detects_keyframes(&track.mime))
                            .then_some(now),
                        direct: is_audio,
                        rollover: Rollover::default(),
                        video: VideoPath::Undecided,
                        rtx_ssrc,
                        rtx_payload_type: None,
                        transport_ext: None,
                        sent: SentStream::default(),
                    },
                );
                self.negotiate(now, out);
            }
            Err(err) => {
                tracing::warn!(session_id = %self.config.session_id, out_track = %track.out_id, "cannot add forwarded track: {err}");
                self.count_error(RtcErrorKind::track);
            }
        }
    }

    /// Stops forwarding one track (renegotiates).
    pub fn remove_forwarded(
        &mut self,
        now: Instant,
        publisher: &str,
        source_id: &str,
        out: &mut Outputs,
    ) {
        if let Some(leg) = self.legs.remove(&TrackKey::new(publisher, source_id)) {
            let _ = self.pc.remove_track(leg.sender);
            self.track_gauge(Direction::Out, &leg.track.mime, -1);
            self.negotiate(now, out);
        }
    }

    /// Stops forwarding every track published by `publisher` (renegotiates for video).
    pub fn remove_publisher(&mut self, now: Instant, publisher: &str, out: &mut Outputs) {
        let keys: Vec<_> = self
            .legs
            .keys()
            .filter(|key| key.publisher() == publisher)
            .cloned()
            .collect();
        let mut changed = false;
        for key in keys {
            if let Some(leg) = self.legs.remove(&key) {
                let _ = self.pc.remove_track(leg.sender);
                self.track_gauge(Direction::Out, &leg.track.mime, -1);
                changed = true;
            }
        }
        if changed {
            self.negotiate(now, out);
        }
    }

    /// Sends a server offer now if allowed, or marks one as pending.
    fn negotiate(&mut self, now: Instant, out: &mut Outputs) {
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
        self.locked = true;
        self.making_offer = true;
        self.offer_sent_at = Some(now);
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

    fn media_map(&mut self) -> Vec<MediaMapEntry> {
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

    /// Sends a PLI for one of our published video tracks (at most one per second).
    pub fn request_keyframe(
        &mut self,
        now: Instant,
        source_id: &str,
        layer: Option<Layer>,
        out: &mut Outputs,
    ) {
        const MIN_INTERVAL: Duration = Duration::from_secs(1);
        let Some(source) = self.video_sources.get_mut(source_id) else {
            return;
        };
        let Some(&(_, ssrc)) = source
            .ssrcs
            .iter()
            .find(|(l, _)| *l == layer)
            .or(source.ssrcs.first())
        else {
            return;
        };
        let last = &mut source.last_pli[usize::from(layer == Some(Layer::High))];
        if last.is_some_and(|t| now.duration_since(t) < MIN_INTERVAL) {
            return;
        }
        *last = Some(now);
        tracing::debug!(session_id = %self.config.session_id, source_id, ssrc, "keyframe requested (PLI)");
        let receiver = source.receiver;
        if let Some(mut receiver) = self.pc.rtp_receiver(receiver) {
            let pli =
                rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc: ssrc,
                };
            if let Err(err) = receiver.write_rtcp(now, vec![Box::new(pli)]) {
                tracing::debug!(session_id = %self.config.session_id, "PLI not sent: {err}");
            }
        }
        self.drain(now, out);
    }

    /// PLI/FIR from this receiver for a forwarded track → a keyframe request to its publisher.
    fn relay_keyframe_requests(
        &mut self,
        packets: &[Box<dyn rtc::rtcp::Packet>],
        out: &mut Outputs,
    ) {
        use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
        use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
        for packet in packets {
            let media_ssrcs: Vec<u32> =
                if let Some(pli) = packet.as_any().downcast_ref::<PictureLossIndication>() {
                    vec![pli.media_ssrc]
                } else if let Some(fir) = packet.as_any().downcast_ref::<FullIntraRequest>() {
                    fir.fir
                        .iter()
                        .map(|e| e.ssrc)
                        .chain([fir.media_ssrc])
                        .collect()
                } else {
                    continue;
                };
            for leg in self.legs.values().filter(|l| media_ssrcs.contains(&l.ssrc)) {
                out.keyframe_requests.push(KeyframeRequest {
                    publisher: leg.track.publisher.clone(),
                    source_id: leg.track.source_id.clone(),
                    layer: leg.switcher.as_ref().and_then(LayerSwitcher::current),
                });
            }
        }
    }

    /// NACKs and transport-wide feedback from this receiver about the video legs the session
    /// sends itself (`direct_video`): retransmissions within the leg's budget, or a keyframe
    /// request where none can help; the feedback drives the session's estimate.
    fn handle_send_side_feedback(
        &mut self,
        now: Instant,
        packets: &[Box<dyn rtc::rtcp::Packet>],
        out: &mut Outputs,
    ) {
        use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
        use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
        let (Some(sender), Some(route), Some(estimate)) =
            (&self.direct, self.media_route, &mut self.estimate)
        else {
            return; // no direct video sent yet
        };
        for packet in packets {
            let any = packet.as_any();
            if let Some(feedback) = any.downcast_ref::<TransportLayerCc>() {
                estimate.on_feedback(now, feedback);
                continue;
            }
            let Some(nack) = any.downcast_ref::<TransportLayerNack>() else {
                continue;
            };
            let Some(leg) = self
                .legs
                .values_mut()
                .find(|leg| leg.ssrc == nack.media_ssrc)
            else {
                continue;
            };
            let transport_ext = leg.stamped_ext();
            let VideoPath::Direct(video) = &mut leg.video else {
                continue; // the core's stream: its responder answers
            };
            let mut wire = Wire {
                sender,
                estimate,
                transport_ext,
                arena: &mut out.direct_arena,
                now,
            };
            let transmits = &mut out.transmits;
            let resent = video.resend(&mut wire, nack, &self.refused_retransmissions, |data| {
                transmits.push(route.transmit(data))
            });
            self.direct_retransmitted += resent.packets;
            if resent.keyframe_wanted {
                out.keyframe_requests.push(KeyframeRequest {
                    publisher: leg.track.publisher.clone(),
                    source_id: leg.track.source_id.clone(),
                    layer: leg.switcher.as_ref().and_then(LayerSwitcher::current),
                });
            }
        }
    }

    /// Sender reports for the legs the session sends itself (the core reports only what it
    /// sent), one compound packet per leg through the core's RTCP path.
    fn send_sender_reports(&mut self, now: Instant) {
        let wall = std::time::SystemTime::now();
        let mut video = false;
        for leg in self.legs.values() {
            let clock_rate = if leg.direct { 48_000 } else { 90_000 };
            let Some(report) = leg.sent.report(leg.ssrc, clock_rate, now, wall) else {
                continue;
            };
            video |= !leg.direct;
            if let Some(mut sender) = self.pc.rtp_sender(leg.sender)
                && let Err(err) = sender.write_rtcp(now, vec![Box::new(report)])
            {
                tracing::trace!(session_id = %self.config.session_id, "sender report: {err}");
            }
        }
        self.reports_due = now
            + if video {
                sender_reports::VIDEO_REPORT_PERIOD
            } else {
                sender_reports::AUDIO_REPORT_PERIOD
            };
    }

    /// Forwards one packet of a published track to this participant.
    /// Forwards one packet of a track this session receives. One write in
    /// [`WRITE_TIME_SAMPLE`] is timed for `rtcd_rtc_rtp_tracks_writes_time` (the others read
    /// no clock).
    pub fn forward(&mut self, now: Instant, inbound: &InboundRtp, out: &mut Outputs) {
        self.writes_until_sample = self.writes_until_sample.saturating_sub(1);
        if self.writes_until_sample > 0 {
            self.forward_packet(now, inbound, out);
            return;
        }
        self.writes_until_sample = WRITE_TIME_SAMPLE;
        let started = std::time::Instant::now();
        self.forward_packet(now, inbound, out);
        let elapsed = started.elapsed().as_secs_f64();
        if let Some(kind) = self.legs.get(&inbound.key).map(|leg| leg.track.kind) {
            self.write_time(kind).observe(elapsed);
        }
    }

    /// The writes-time histogram of forwarded tracks of `kind` (resolved once per kind).
    fn write_time(&mut self, kind: TrackKind) -> &Histogram {
        let slot = &mut self.write_times[kind as usize];
        slot.get_or_insert_with(|| {
            self.metrics.rtc_rtp_tracks_writes_time.get_or_create_owned(
                &crate::metrics::TrackKindLabels {
                    groupID: self.config.group_id.clone(),
                    r#type: kind.as_str().to_owned(),
                },
            )
        })
    }

    fn forward_packet(&mut self, now: Instant, inbound: &InboundRtp, out: &mut Outputs) {
        if self.closed.is_some() {
            return;
        }
        let Some(leg) = self.legs.get_mut(&inbound.key) else {
            return;
        };
        if leg.payload_type.is_none() {
            let mime = leg.track.mime.clone();
            if let Some(mut sender) = self.pc.rtp_sender(leg.sender) {
                let send_parameters = sender.get_parameters();
                let parameters = &send_parameters.rtp_parameters;
                leg.payload_type = parameters
                    .codecs
                    .iter()
                    .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(&mime))
                    .map(|c| c.payload_type);
                let extension = |uri: &str| {
                    parameters
                        .header_extensions
                        .iter()
                        .find(|e| e.uri == uri)
                        .and_then(|e| u8::try_from(e.id).ok())
                };
                leg.audio_level_ext = extension(engine::AUDIO_LEVEL_URI);
                leg.transport_ext = extension(engine::TWCC_URI);
                // The core keeps an encoding's RTX SSRC only if the receiver accepted RTX;
                // the payload type is the one our offer gave it.
                let rtx_negotiated = send_parameters
                    .encodings
                    .first()
                    .is_some_and(|e| e.rtp_coding_parameters.rtx.is_some());
                leg.rtx_payload_type = leg
                    .payload_type
                    .filter(|_| rtx_negotiated)
                    .and_then(engine::rtx_payload_type_for);
            }
        }
        let Some(payload_type) = leg.payload_type else {
            return; // not negotiated yet
        };
        let source = &inbound.packet.header;
        if leg.direct {
            if self.direct.is_none() && self.relays.is_empty() {
                self.direct = self.srtp_keys.local_keys().map(DirectSender::new);
            }
            if let (Some(direct), Some(route)) = (&self.direct, self.media_route) {
                let header = DirectHeader {
                    marker: source.marker,
                    payload_type,
                    sequence_number: source.sequence_number,
                    timestamp: source.timestamp,
                    ssrc: leg.ssrc,
                    audio_level: leg.audio_level_ext.zip(inbound.audio_level),
                    transport_sequence: None,
                    original_sequence: None,
                };
                let payload = &inbound.packet.payload;
                if let Some(data) =
                    direct.seal(&header, payload, &mut leg.rollover, &mut out.direct_arena)
                {
                    leg.sent.on_sent(header.timestamp, payload.len(), now);
                    self.direct_bytes_sent += payload.len() as u64;
                    self.unreported_direct_packets += 1;
                    out.transmits.push(route.transmit(data));
                }
                return;
            }
        }
        // The library takes the packet by value: a fresh header (no CSRC/extension vectors
        // to copy) sharing the payload. Extension IDs are per leg: the inbound ones are
        // dropped and the audio level re-added with this receiver's ID (for level meters).
        let mut packet = rtc::rtp::packet::Packet {
            header: rtc::rtp::header::Header {
                version: source.version,
                padding: source.padding,
                marker: source.marker,
                payload_type,
                sequence_number: source.sequence_number,
                timestamp: source.timestamp,
                ssrc: leg.ssrc,
                ..Default::default()
            },
            payload: inbound.packet.payload.clone(),
        };
        // Simulcast: one layer per receiver, switched at keyframes with rebased numbering.
        if let Some(last_request) = leg.awaiting_keyframe.as_mut() {
            if !inbound.keyframe {
                if now.duration_since(*last_request) >= KEYFRAME_RETRY {
                    *last_request = now;
                    out.keyframe_requests.push(KeyframeRequest {
                        publisher: leg.track.publisher.clone(),
                        source_id: leg.track.source_id.clone(),
                        layer: None,
                    });
                }
                return;
            }
            leg.awaiting_keyframe = None;
            first_keyframe(&self.metrics, &self.config.session_id, leg, now);
        }
        if let (Some(switcher), Some(layer)) = (leg.switcher.as_mut(), inbound.layer) {
            let descriptor = inbound.vp8;
            let keyframe = inbound.keyframe;
            let before = switcher.current();
            let verdict = switcher.on_packet(
                now,
                layer,
                inbound.packet.payload.len(),
                source.sequence_number,
                source.timestamp,
                descriptor.as_ref(),
                keyframe,
            );
            let after = switcher.current();
            if before.is_none() && after.is_some() {
                first_keyframe(&self.metrics, &self.config.session_id, leg, now);
            }
            let switcher = leg.switcher.as_mut().expect("simulcast leg");
            if after != before {
                tracing::debug!(
                    session_id = %self.config.session_id,
                    publisher = %leg.track.publisher,
                    from = before.map(Layer::as_str),
                    layer = layer.as_str(),
                    "simulcast: forwarding layer"
                );
            }
            if let Some(wanted) = switcher.keyframe_request(now) {
                out.keyframe_requests.push(KeyframeRequest {
                    publisher: leg.track.publisher.clone(),
                    source_id: leg.track.source_id.clone(),
                    layer: Some(wanted),
                });
            }
            let Verdict::Forward(rewritten) = verdict else {
                return;
            };
            packet.header.sequence_number = rewritten.seq;
            packet.header.timestamp = rewritten.timestamp;
            // Copy the payload only when the rewritten IDs differ (after a switch), not for
            // the layer a receiver started on.
            let unchanged = descriptor.as_ref().is_none_or(|d| {
                d.picture_id.map(|(_, _, id)| id) == rewritten.picture_id
                    && d.tl0.map(|(_, v)| v) == rewritten.tl0
            });
            if let Some(descriptor) = descriptor.filter(|_| !unchanged) {
                packet.payload = super::vp8::rewrite(
                    &packet.payload,
                    &descriptor,
                    rewritten.picture_id,
                    rewritten.tl0,
                );
            }
        }
        if !leg.direct {
            if matches!(leg.video, VideoPath::Undecided) {
                if self.direct.is_none() && self.relays.is_empty() {
                    self.direct = self.srtp_keys.local_keys().map(DirectSender::new);
                }
                leg.video = match (&self.direct, self.media_route) {
                    (Some(_), Some(_)) => VideoPath::Direct(Box::new(VideoLeg::new(
                        payload_type,
                        engine::nack_buffer_size(),
                        leg.rtx_ssrc.zip(leg.rtx_payload_type),
                    ))),
                    // Connected without keys (another profile), or relayed: the core sends.
                    _ if self.connected_at.is_some() || !self.relays.is_empty() => VideoPath::Core,
                    // Before DTLS completes nothing can be sent, by the core either.
                    _ => return,
                };
                tracing::debug!(session_id = %self.config.session_id, publisher = %leg.track.publisher, path = ?leg.video, rtx = ?leg.rtx_ssrc.zip(leg.rtx_payload_type), transport_ext = ?leg.transport_ext, "video leg sent by");
            }
            let transport_ext = leg.stamped_ext();
            if let VideoPath::Direct(video) = &mut leg.video {
                let (Some(sender), Some(route)) = (&self.direct, self.media_route) else {
                    return;
                };
                let estimate = self
                    .estimate
                    .get_or_insert_with(|| SendSideEstimate::new(engine::estimator()));
                let mut wire = Wire {
                    sender,
                    estimate,
                    transport_ext,
                    arena: &mut out.direct_arena,
                    now,
                };
                let header = DirectHeader {
                    marker: packet.header.marker,
                    payload_type,
                    sequence_number: packet.header.sequence_number,
                    timestamp: packet.header.timestamp,
                    ssrc: leg.ssrc,
                    audio_level: None,
                    transport_sequence: None,
                    original_sequence: None,
                };
                if let Some(data) = video.send(&mut wire, header, &packet.payload) {
                    leg.sent
                        .on_sent(header.timestamp, packet.payload.len(), now);
                    self.direct_bytes_sent += packet.payload.len() as u64;
                    self.unreported_direct_video_packets += 1;
                    out.transmits.push(route.transmit(data));
                }
                return;
            }
        }
        if let (Some(id), Some(level)) = (leg.audio_level_ext, inbound.audio_level) {
            let level = usize::from(level);
            let _ = packet.header.set_extension(
                id,
                bytes::Bytes::from_static(&AUDIO_LEVEL_BYTES[level..=level]),
            );
        }
        let sender = leg.sender;
        if let Some(mut sender) = self.pc.rtp_sender(sender)
            && let Err(err) = sender.write_rtp(now, packet)
        {
            tracing::trace!(session_id = %self.config.session_id, "write_rtp: {err}");
            self.count_error(RtcErrorKind::rtp);
        }
        // Writing RTP produces only datagrams: no events or reads to pump.
        self.drain_writes(now, out);
    }

    pub fn session_id(&self) -> &str {
        &self.config.session_id
    }

    /// Why the session ended, once it has.
    pub fn closed(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    fn group(&self) -> GroupLabels {
        GroupLabels {
            groupID: self.config.group_id.clone(),
        }
    }

    /// The SFU gave up the lock it took for a renegotiation.
    fn release_lock(&mut self, now: Instant) {
        if let Some(since) = self.lock_held_since.take() {
            self.lock_histogram(LockTime::Held)
                .observe(now.saturating_duration_since(since).as_secs_f64());
        }
    }

    fn lock_histogram(&self, which: LockTime) -> Histogram {
        let family = match which {
            LockTime::Grab => &self.metrics.rtc_signaling_lock_grab_time,
            LockTime::Held => &self.metrics.rtc_signaling_lock_locked_time,
        };
        family.get_or_create_owned(&GroupLabels {
            groupID: self.config.group_id.clone(),
        })
    }

    fn count_error(&self, kind: RtcErrorKind) {
        self.metrics
            .rtc_errors
            .get_or_create(&RtcErrorLabels {
                groupID: self.config.group_id.clone(),
                r#type: kind,
            })
            .inc();
    }

    fn track_gauge(&self, direction: Direction, mime: &str, delta: i64) {
        self.metrics
            .track_gauge(&self.config.group_id, direction, mime, delta);
    }

    /// Releases the per-session gauges (tracks in and out) when the session ends.
    fn release_gauges(&mut self) {
        for track in std::mem::take(&mut self.published) {
            self.track_gauge(Direction::In, &track.mime, -1);
        }
        for (_, leg) in std::mem::take(&mut self.legs) {
            self.track_gauge(Direction::Out, &leg.track.mime, -1);
        }
        self.report_direct_packets();
    }

    fn close_with(&mut self, reason: CloseReason, out: &mut Outputs) {
        if self.closed.is_some() {
            return;
        }
        let _ = self.pc.close();
        self.release_gauges();
        self.release_relays(Instant::now(), out);
        out.events.push(MediaEvent::Closed {
            session_id: self.config.session_id.clone(),
            reason: reason.clone(),
        });
        self.closed = Some(reason);
    }

    /// Ends the session from outside (leave, shutdown); emits no event.
    pub fn close(&mut self, reason: CloseReason, out: &mut Outputs) {
        if self.closed.is_none() {
            let _ = self.pc.close();
            self.release_gauges();
            self.release_relays(Instant::now(), out);
            self.closed = Some(reason);
        }
    }

    /// Why a connection failed, from what was seen of it.
    fn failure_cause(&self) -> (FailureCause, &'static str) {
        match (
            self.connected_at.is_some(),
            self.ice_connected,
            self.first_datagram_at.is_some(),
        ) {
            (true, _, _) => (
                FailureCause::consent_lost,
                "consent lost: no ICE keepalive from the client within 25 s",
            ),
            (false, true, _) => (
                FailureCause::dtls_failed,
                "DTLS handshake failed after ICE connected",
            ),
            (false, false, true) => (
                FailureCause::ice_failed,
                "ICE checks failed: no candidate pair worked",
            ),
            (false, false, false) => (
                FailureCause::no_ice_check,
                "no ICE check received from the client (media port unreachable, or the advertised address is wrong)",
            ),
        }
    }

    /// Gives TURN allocations back to their servers.
    fn release_relays(&mut self, now: Instant, out: &mut Outputs) {
        for relay in &mut self.relays {
            relay.release(now);
            relay.drain_transmits(&mut out.transmits);
        }
    }

    /// The earliest time [`Session::handle_timeout`] must run.
    pub fn next_timeout(&mut self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        let offer_deadline = (!self.answered).then(|| self.created_at + INITIAL_OFFER_TIMEOUT);
        let answer_deadline = self
            .offer_sent_at
            .filter(|_| self.making_offer)
            .map(|t| t + ANSWER_TIMEOUT);
        let lock_deadline = self.client_lock_since.map(|t| t + CLIENT_LOCK_TIMEOUT);
        let relay_deadline = self.relays.iter_mut().filter_map(Relay::poll_timeout).min();
        let quality_deadline = self.connected_at.map(|_| self.quality_due);
        let estimate_deadline = (self.estimate.is_some()
            || self.legs.values().any(|l| l.switcher.is_some()))
        .then_some(self.estimate_due);
        let reports_deadline = self.direct.as_ref().map(|_| self.reports_due);
        [
            self.pc.poll_timeout(),
            offer_deadline,
            answer_deadline,
            lock_deadline,
            relay_deadline,
            quality_deadline,
            estimate_deadline,
            reports_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Outputs) {
        if self.closed.is_some() {
            return;
        }
        if !self.answered && now >= self.created_at + INITIAL_OFFER_TIMEOUT {
            self.count_error(RtcErrorKind::signaling);
            self.metrics.session_failed(FailureCause::no_offer);
            self.close_with(CloseReason::NoOffer, out);
            return;
        }
        if self.making_offer
            && self
                .offer_sent_at
                .is_some_and(|t| now >= t + ANSWER_TIMEOUT)
        {
            tracing::warn!(session_id = %self.config.session_id, "no answer to the server offer within {ANSWER_TIMEOUT:?}");
            self.making_offer = false;
            self.locked = false;
            self.offer_sent_at = None;
            self.count_error(RtcErrorKind::signaling_lock_timeout);
            self.release_lock(now);
        }
        if self
            .client_lock_since
            .is_some_and(|t| now >= t + CLIENT_LOCK_TIMEOUT)
        {
            tracing::warn!(session_id = %self.config.session_id, "client held the signaling lock for {CLIENT_LOCK_TIMEOUT:?}; releasing it");
            self.client_lock_since = None;
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
        let quality_due = self.connected_at.is_some() && now >= self.quality_due;
        let estimate_due = now >= self.estimate_due;
        if estimate_due {
            self.estimate_due = now + ESTIMATE_PERIOD;
        }
        if estimate_due && let Some(estimate) = &mut self.estimate {
            estimate.prune(now);
        }
        if self.direct.is_some() && now >= self.reports_due {
            self.send_sender_reports(now);
        }
        if estimate_due && self.legs.values().any(|l| l.switcher.is_some()) {
            self.apply_estimate(now);
        }
        if quality_due {
            let report = self.pc.get_stats(now, rtc::statistics::StatsSelector::None);
            self.quality_due = now + QUALITY_PERIOD;
            self.sample_quality(now, &report, out);
        }
        self.drain(now, out);
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
                let sdp = super::offer_filter::without_publisher_rtx(&description.sdp)
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
                    out.events.push(MediaEvent::Outbound {
                        session_id: self.config.session_id.clone(),
                        kind: OutboundKind::Ice,
                        data: candidate,
                    });
                }
                if first {
                    self.answered = true;
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
                self.offer_sent_at = None;
                self.release_lock(now);
                // Payload types may have changed with this negotiation.
                for leg in self.legs.values_mut() {
                    leg.payload_type = None;
                    // A receiver that just got a video track needs a keyframe to start decoding.
                    if leg.track.mime.starts_with("video/") {
                        out.keyframe_requests.push(KeyframeRequest {
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

    /// Adds our host candidates; returns them as trickle messages for the client.
    fn add_local_candidates(&mut self) -> Result<Vec<String>, SessionError> {
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

    fn add_remote_candidate(&mut self, init: RTCIceCandidateInit) {
        if let Err(err) = self.pc.add_remote_candidate(init) {
            tracing::debug!(session_id = %self.config.session_id, "remote candidate rejected: {err}");
            self.count_error(RtcErrorKind::ice);
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
                    self.client_lock_since = Some(now);
                }
                self.send_dc(now, dc, &dc_protocol::encode_lock_reply(acquired));
            }
            ClientDcMessage::Unlock => {
                if !self.locked {
                    tracing::debug!(session_id = %self.config.session_id, "unlock of a free lock ignored");
                }
                self.locked = false;
                self.client_lock_since = None;
                if self.renegotiation_pending {
                    self.negotiate(now, out);
                }
            }
            ClientDcMessage::Sdp(json) => {
                if let Err(err) = self.apply_sdp(now, &json, Path::DataChannel, out) {
                    tracing::warn!(session_id = %self.config.session_id, "signaling over data channel failed: {err}");
                }
            }
            ClientDcMessage::LossRate(v) => self
                .metrics
                .rtc_client_loss_rate
                .get_or_create(&self.group())
                .observe(v),
            ClientDcMessage::RoundTripTime(v) => self
                .metrics
                .rtc_client_rtt
                .get_or_create(&self.group())
                .observe(v),
            ClientDcMessage::Jitter(v) => self
                .metrics
                .rtc_client_jitter
                .get_or_create(&self.group())
                .observe(v),
            ClientDcMessage::Other(code) => {
                tracing::debug!(session_id = %self.config.session_id, "unexpected dc message type: {code}");
            }
        }
    }

    /// Moves the datagrams the peer connection wants to send into `out` (not for relayed
    /// sessions: their traffic must pass through the TURN client, see [`Session::drain`]).
    fn drain_writes(&mut self, now: Instant, out: &mut Outputs) {
        if !self.relays.is_empty() {
            return self.drain(now, out);
        }
        while let Some(transmit) = self.pc.poll_write() {
            self.note_route(&transmit, out);
            out.transmits.push(Transmit::from(transmit));
        }
    }

    /// Adds the direct path's packets since the last report to the metrics (per sample, not
    /// per packet: a shared counter per copy would bounce its cache line between workers).
    fn report_direct_packets(&mut self) {
        let quality = &self.metrics.quality;
        quality
            .direct_audio_packets
            .inc_by(std::mem::take(&mut self.unreported_direct_packets));
        quality
            .direct_video_packets
            .inc_by(std::mem::take(&mut self.unreported_direct_video_packets));
    }

    /// Remembers where the core sends DTLS and SRTP/SRTCP (RFC 7983 first bytes 20–63 and
    /// 128–191): the selected candidate pair, which the direct audio path follows. STUN
    /// (0–3) may go to other pairs while ICE checks them.
    /// A new UDP route is also offered to the driver for a connected socket.
    fn note_route(&mut self, transmit: &TaggedBytesMut, out: &mut Outputs) {
        if matches!(transmit.message.first(), Some(20..=63 | 128..=191)) {
            let transport = &transmit.transport;
            let route = Route {
                local: transport.local_addr,
                peer: transport.peer_addr,
                protocol: protocol_of(transport),
            };
            if self.media_route != Some(route)
                && route.protocol == Protocol::Udp
                && self.connected_routes < MAX_CONNECTED_ROUTES
            {
                self.connected_routes += 1;
                out.connect_flows.push((route.local, route.peer));
            }
            self.media_route = Some(route);
        }
    }

    /// Drains everything the peer connection produced.
    fn drain(&mut self, now: Instant, out: &mut Outputs) {
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
                out.transmits.push(Transmit::from(transmit));
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
                                out.events.push(MediaEvent::VoiceActivity {
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
                            .then(|| super::vp8::descriptor(&packet.payload))
                            .flatten();
                        let keyframe = if is_vp8 {
                            descriptor
                                .is_some_and(|d| super::vp8::is_keyframe_after(&packet.payload, &d))
                        } else {
                            track.mime.eq_ignore_ascii_case(MIME_TYPE_AV1)
                                && super::av1::is_keyframe(&packet.payload)
                        };
                        let key = track.key.clone();
                        out.rtp.push(InboundRtp {
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
            relay.drain_transmits(&mut out.transmits);
        }
    }

    /// A new incoming track: classify it and publish it (once per track; `OnOpen` repeats
    /// per simulcast layer and after renegotiations).
    fn track_opened(
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
        let level_ext = receiver
            .get_parameters()
            .rtp_parameters
            .header_extensions
            .iter()
            .find(|e| e.uri == engine::AUDIO_LEVEL_URI)
            .and_then(|e| u8::try_from(e.id).ok());
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
        out.published.push(published);
    }

    fn handle_event(&mut self, now: Instant, event: RTCPeerConnectionEvent, out: &mut Outputs) {
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
                            None if !self.relays.is_empty() => {
                                ("turn-relay", "-".into(), "-".into())
                            }
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
                        self.close_with(CloseReason::Failed(why.into()), out);
                    }
                    RTCPeerConnectionState::Closed => {
                        self.close_with(CloseReason::Failed("peer connection closed".into()), out)
                    }
                    _ => {}
                }
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
                self.dc = Some(dc);
                if let Some(answered_at) = self.answered_at {
                    self.metrics
                        .rtc_dc_open_time
                        .get_or_create(&GroupLabels {
                            groupID: self.config.group_id.clone(),
                        })
                        .observe(now.duration_since(answered_at).as_secs_f64());
                }
                tracing::debug!(session_id, "data channel open");
                out.ready.push(session_id.clone());
                if self.renegotiation_pending {
                    self.negotiate(now, out);
                }
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
}

/// Every possible audio-level byte, so re-adding the extension shares static memory.
static AUDIO_LEVEL_BYTES: [u8; 256] = {
    let mut bytes = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        bytes[i] = i as u8;
        i += 1;
    }
    bytes
};

/// The trickle message for one of our candidates, as the Calls client parses it.
fn trickle_message(init: &RTCIceCandidateInit) -> String {
    serde_json::json!({
        "type": "candidate",
        "candidate": {
            "candidate": init.candidate,
            "sdpMid": init.sdp_mid.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| "0".into()),
            "sdpMLineIndex": init.sdp_mline_index.unwrap_or(0),
            "usernameFragment": null,
        },
    })
    .to_string()
}
