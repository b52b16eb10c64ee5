//! One participant's RTC session: its peer connection and everything around it.
//!
//! Sans-IO: inputs carry `now`; outputs are pushed into [`Outputs`], typed by who acts on
//! them ([`DriverOutputs`] for the thread owning the sockets, [`CallWork`] for the worker).
//! Timers live in one table (`timers`). This file holds the
//! session's state (one struct, every field documented), the values it exchanges with its
//! worker and construction; each concern is one file:
//! - `signaling`: offers and answers (WebSocket or data channel), the SFU's renegotiations
//!   under the signaling lock, trickled candidates both ways;
//! - `data_channel`: the data-channel protocol (ping/pong, lock, zlib SDP, client statistics);
//! - `forwarding`: legs and fan-out of the call's tracks to this participant, keyframe waits,
//!   simulcast layers, the way out of each forwarded packet;
//! - `egress`: what is sent besides forwarded media (feedback for direct legs, sender reports,
//!   the core's writes, the selected route);
//! - `quality`: bandwidth estimate, quality samples, failure causes;
//! - `relays`: SFU-side TURN relays;
//! - `events`: datagrams in, timers, the core's events and outputs;
//! - `accounting`: metrics and closing.

mod accounting;
mod data_channel;
mod egress;
mod events;
mod forwarding;
mod quality;
mod relays;
mod signaling;
mod timers;

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
use crate::wire::{Advertised, Protocol};
use prometheus_client::metrics::histogram::Histogram;
use timers::{Timer, Timers};

/// How long a new session waits for its first SDP offer.
pub const INITIAL_OFFER_TIMEOUT: Duration = Duration::from_secs(10);
/// Remote candidates queued before the first answer (upstream: 40).
pub const MAX_QUEUED_CANDIDATES: usize = 40;
/// Remote ICE candidates a session takes unless its worker says otherwise
/// (`limits.max_remote_candidates`).
pub const DEFAULT_MAX_REMOTE_CANDIDATES: usize = 64;

pub use crate::wire::{Datagram, Transmit};

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

/// What a session's inputs produced, split by who acts on it.
#[derive(Debug, Default)]
pub struct Outputs {
    /// For the driver, the thread that owns the sockets: datagrams to send, flows and
    /// sockets to open or close, events for the control plane.
    pub driver: DriverOutputs,
    /// For the worker: the rest of the call's follow-up, done within the same turn.
    pub call: CallWork,
    /// Scratch block the direct audio path carves its packets from (kept across turns).
    pub direct_arena: BytesMut,
}

/// What the driver must do after a worker's turn.
#[derive(Debug, Default)]
pub struct DriverOutputs {
    pub transmits: Vec<Transmit>,
    /// Events for the control plane (signaling to relay, sessions that ended, VAD).
    pub events: Vec<MediaEvent>,
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
}

/// What the worker does for the rest of a session's call before its turn ends.
#[derive(Debug, Default)]
pub struct CallWork {
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
    pub vp8: Option<crate::sfu::vp8::Descriptor>,
    /// The packet starts a keyframe (VP8 or AV1 video; always false for other codecs).
    pub keyframe: bool,
}

/// An outgoing (forwarded) track on this session's connection.
#[derive(Debug)]
struct Leg {
    track: PublishedTrack,
    sender: RTCRtpSenderId,
    ssrc: u32,
    /// The leg was in the SFU's latest offer: the answer to it completes its negotiation.
    offered: bool,
    /// Payload type negotiated for the codec on this leg, resolved (with the extension IDs)
    /// when the answer to an offer carrying the leg is applied; nothing is forwarded before.
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

    /// The leg's direct video sender and the wire it writes to, when the session sends this
    /// leg's video itself (`None` for audio and for legs the core sends).
    fn direct_video<'a>(
        &'a mut self,
        (sender, estimate): (&'a DirectSender, &'a mut SendSideEstimate),
        arena: &'a mut BytesMut,
        now: Instant,
    ) -> Option<(&'a mut VideoLeg, Wire<'a>)> {
        let transport_ext = self.stamped_ext();
        let VideoPath::Direct(video) = &mut self.video else {
            return None;
        };
        let wire = Wire {
            sender,
            estimate,
            transport_ext,
            arena,
            now,
        };
        Some((video, wire))
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
    max_remote_candidates: usize,
    /// Packets kept per forwarded video leg for NACK retransmissions.
    nack_history: u16,
    /// Wall time for sender reports, and the clock of the sampled write-time metric.
    wall_clock: WallClock,
    stopwatch: fn() -> Instant,
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
    /// The counters of the previous call-quality sample.
    quality_counters: Option<QualityCounters>,
    /// Per inbound SSRC: packets received and lost at the last quality sample.
    stream_counters: HashMap<u32, (u64, i64)>,
    /// What this client's RTCP reported (NACKs, loss), tallied by the feedback interceptor.
    feedback: Arc<super::nack_budget::FeedbackTally>,
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
    /// The session's own deadlines (offer, answer and lock timeouts, estimate reads, sender
    /// reports, quality samples).
    timers: Timers,
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

/// What every session of a worker is set up with, from the configuration (passed in: the core
/// reads no global settings).
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// The host candidates sessions advertise.
    pub candidates: Vec<Advertised>,
    /// Packets kept per outgoing video stream for NACK retransmissions
    /// (`rtc.nack_buffer_size`; 0 means 256).
    pub nack_buffer_size: u16,
    /// Remote ICE candidates a session may take (`limits.max_remote_candidates`).
    pub max_remote_candidates: usize,
    /// The wall clock (sender reports carry NTP time), anchored by the driver.
    pub wall_clock: WallClock,
    /// Reads the monotonic clock for the sampled write-time metric (a measurement, not
    /// logic: everything the session decides uses the `now` it is given).
    pub stopwatch: fn() -> Instant,
}

/// Wall-clock time at a known instant: the session derives wall time from the `now` it is
/// given instead of reading the system clock.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    pub at: Instant,
    pub wall: std::time::SystemTime,
}

impl WallClock {
    /// The wall-clock time at `now`.
    pub fn at(&self, now: Instant) -> std::time::SystemTime {
        match now.checked_duration_since(self.at) {
            Some(later) => self.wall + later,
            None => self.wall - self.at.duration_since(now),
        }
    }
}

impl SessionSettings {
    /// The NACK history size, 0 meaning the default of 256.
    pub fn nack_history(&self) -> u16 {
        if self.nack_buffer_size == 0 {
            256
        } else {
            self.nack_buffer_size
        }
    }
}

impl Session {
    /// Creates the session and its peer connection; it waits for the client's first offer.
    pub fn new(
        config: Arc<SessionConfig>,
        ufrag: String,
        pwd: &str,
        settings: &SessionSettings,
        relays: Vec<RelayTransport>,
        metrics: Arc<Metrics>,
        now: Instant,
    ) -> Result<Self, SessionError> {
        let feedback = Arc::<super::nack_budget::FeedbackTally>::default();
        let refused_retransmissions = metrics.quality.refused_retransmissions.clone();
        let srtp_keys = KeyCapture::new().map_err(|e| SessionError::Rtc(e.to_string()))?;
        let pc = engine::peer_connection(
            (&ufrag, pwd),
            settings.nack_history(),
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
            candidates: settings.candidates.clone(),
            created_at: now,
            answered: false,
            queued_candidates: Vec::new(),
            remote_candidates: 0,
            max_remote_candidates: settings.max_remote_candidates,
            nack_history: settings.nack_history(),
            wall_clock: settings.wall_clock,
            stopwatch: settings.stopwatch,
            signaling: RTCSignalingState::Stable,
            making_offer: false,
            dc: None,
            locked: false,
            lock_wanted_since: None,
            lock_held_since: None,
            writes_until_sample: WRITE_TIME_SAMPLE,
            write_times: Default::default(),
            connected_at: None,
            first_datagram_at: None,
            ice_connected: false,
            closed: None,
            published: Vec::new(),
            legs: HashMap::default(),
            renegotiation_pending: false,
            muted: false,
            video_sources: HashMap::default(),
            vad: super::vad::VoiceActivity::default(),
            voice_level_ext: None,
            screen_stream: None,
            video_stream: None,
            relays,
            pending_relay_candidates: Vec::new(),
            quality_counters: None,
            stream_counters: HashMap::default(),
            feedback,
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
            timers: {
                let mut timers = Timers::default();
                timers.arm(Timer::FirstOffer, now + INITIAL_OFFER_TIMEOUT);
                timers
            },
        })
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
                out.driver.events.push(MediaEvent::VoiceActivity {
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
                    out.call
                        .unpublished
                        .push((track.publisher, track.source_id));
                }
            }
            Signal::VideoOn { stream_id } => self.video_stream = Some(stream_id.clone()),
            Signal::VideoOff | Signal::Ice(_) | Signal::Sdp(_) => {}
        }
    }

    pub fn session_id(&self) -> &str {
        &self.config.session_id
    }

    /// Why the session ended, once it has.
    pub fn closed(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
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
