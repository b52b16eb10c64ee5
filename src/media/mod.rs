//! The boundary between the control plane and the media plane (the SFU).
//!
//! Owns: the small interface the WebSocket layer drives ([`MediaPlane`]: create/close a
//! session, deliver a client signal) and the events the media plane reports back
//! ([`MediaEvent`]: outbound ICE/SDP, voice activity, session closed). The control plane never
//! sees media types; the media plane never sees WebSocket, HTTP or store types.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::calls::SessionConfig;

/// A message from a participant's client, relayed by the plugin (RTC types of spec
/// control-plane §8.4, already decoded and checked by the WebSocket layer).
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// `RTCIceCandidateInit` JSON.
    Ice(String),
    /// Session description JSON (`{"type":"offer"|"answer","sdp":…}`).
    Sdp(String),
    Mute,
    Unmute,
    ScreenOn {
        stream_id: String,
    },
    ScreenOff,
    VideoOn {
        stream_id: String,
    },
    VideoOff,
}

/// Kind of an outbound signaling message (RTC types 1 and 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundKind {
    Ice = 1,
    Sdp = 2,
}

/// Why a media session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The plugin sent `leave` (or the control plane closed it).
    Leave,
    /// No SDP offer within the signaling timeout after `join`.
    NoOffer,
    /// The media plane failed the session (ICE/DTLS failure, bad offer, …).
    Failed(String),
    /// Daemon shutdown.
    Shutdown,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Leave => f.write_str("leave"),
            CloseReason::NoOffer => f.write_str("timed out waiting for the initial offer"),
            CloseReason::Failed(why) => write!(f, "failed: {why}"),
            CloseReason::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// What the media plane reports to the control plane.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// ICE candidate (wrapped JSON) or SDP for the session's client.
    Outbound {
        session_id: String,
        kind: OutboundKind,
        data: String,
    },
    /// Voice activity changed (`vad` VoiceOn/VoiceOff).
    VoiceActivity { session_id: String, on: bool },
    /// The media plane ended the session on its own.
    Closed {
        session_id: String,
        reason: CloseReason,
    },
    /// A call-quality sample of the session.
    Quality {
        session_id: String,
        quality: SessionQuality,
    },
}

/// Call quality of one session over the last sampling period, as the SFU measures it (RTCP
/// receiver statistics of the client's streams, the ICE round trip, byte counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct SessionQuality {
    /// Fraction of the client's packets lost on the way to the SFU.
    pub loss_ratio: f64,
    /// Interarrival jitter of the client's streams (largest stream), seconds.
    pub jitter_seconds: f64,
    /// ICE round-trip time, seconds (none before the first consent check).
    pub rtt_seconds: Option<f64>,
    /// Media bitrates from and to the client, bit/s.
    pub receive_bps: f64,
    pub send_bps: f64,
    /// Fraction of the SFU's packets lost on the way to the client (the worst stream the
    /// client's receiver reports describe).
    pub remote_loss_ratio: f64,
    /// Loss recovery over the period: NACKs the client sent for our streams, NACKs we sent to
    /// it for its streams, and packets we retransmitted to it (RTX).
    pub nacks_received: u64,
    pub nacks_sent: u64,
    pub retransmitted_packets: u64,
}

/// Capacity of the media → control-plane event queue (upstream: 2000).
pub const EVENT_QUEUE_CAPACITY: usize = 2000;

/// Sender half the media plane uses for [`MediaEvent`]s. Signaling, voice activity and
/// quality go on a bounded queue (a full queue drops them and counts the drop); a session's
/// end goes on a queue of its own that never drops, so the control plane's registry always
/// learns which sessions are gone (there is one such event per session, which bounds it).
#[derive(Clone)]
pub struct EventSender {
    events: mpsc::Sender<MediaEvent>,
    closed: mpsc::UnboundedSender<MediaEvent>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

/// Receiver half: the dispatcher takes session ends first.
pub struct EventReceiver {
    events: mpsc::Receiver<MediaEvent>,
    closed: mpsc::UnboundedReceiver<MediaEvent>,
}

/// A media → control-plane event channel.
pub fn event_channel() -> (EventSender, EventReceiver) {
    let (events, events_rx) = mpsc::channel(EVENT_QUEUE_CAPACITY);
    let (closed, closed_rx) = mpsc::unbounded_channel();
    (
        EventSender {
            events,
            closed,
            dropped: Arc::default(),
        },
        EventReceiver {
            events: events_rx,
            closed: closed_rx,
        },
    )
}

impl EventSender {
    /// Queues `event` without blocking; only events other than a session's end may be
    /// dropped (counted, logged once per power of two).
    pub fn send(&self, event: MediaEvent) {
        if matches!(event, MediaEvent::Closed { .. }) {
            let _ = self.closed.send(event);
            return;
        }
        if self.events.try_send(event).is_err() {
            let dropped = self
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            if dropped.is_power_of_two() {
                tracing::error!(dropped, "media event queue full: events dropped");
            }
        }
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl EventReceiver {
    /// The next event, a session's end before anything else; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<MediaEvent> {
        tokio::select! {
            biased;
            Some(event) = self.closed.recv() => Some(event),
            Some(event) = self.events.recv() => Some(event),
            else => None,
        }
    }
}

/// Error creating a media session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("session already exists")]
    SessionExists,
    /// The media worker's command queue is full; nothing was queued.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Other(String),
}

/// The media plane as the control plane drives it. Implementations must not block: each
/// call hands work to the media threads and returns.
pub trait MediaPlane: Send + Sync + 'static {
    /// A participant joined: prepare its session and wait for its first offer.
    fn create_session(&self, config: Arc<SessionConfig>) -> Result<(), MediaError>;
    /// End a session (idempotent; unknown sessions are ignored). Never lost.
    fn close_session(&self, session_id: &str);
    /// Deliver a client signal to a session (unknown sessions are ignored); fails, without
    /// queuing anything, when the media plane is too busy to take it.
    fn signal(&self, session_id: &str, signal: Signal) -> Result<(), MediaError>;
    /// Stop all media work (daemon shutdown).
    fn shutdown(&self) {}
}
