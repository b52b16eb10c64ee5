//! One simulated participant: the shared fake Calls client ([`FakePeer`]) on its own
//! loopback UDP socket, signalling over the plugin WebSocket like the current Calls client
//! (offer over the WebSocket, server offers answered over the data channel), sending
//! Opus-sized audio at 50 packets/s when it speaks and a VP8-sized screen stream at a set
//! bitrate when it shares.
//!
//! Owns: one peer's event loop (a tokio task: many peers share each runtime thread) and its
//! receive statistics. Every payload ends with the send time (µs since the run's epoch) so
//! receivers measure one-way latency.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::stats::ReceiveStats;
pub use crate::sfu::testkit::peer::{AUDIO_PAYLOAD, VIDEO_PAYLOAD};
use crate::sfu::testkit::peer::{FakePeer, HIGH, LOW, PeerError, PeerSpec};
use crate::ws::codec::{RtcMessage, rtc_type};
use rtc::peer_connection::state::RTCPeerConnectionState;

/// Audio packet interval.
pub const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// Screen frames per second.
const VIDEO_FPS: u32 = 15;

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
    let spec = PeerSpec {
        id: plan.session_id.clone(),
        local: socket.local_addr().map_err(|e| e.to_string())?,
        speaker: plan.speaker,
        screen: plan.screen_bps.is_some(),
        srtp: Some(plan.srtp.dtls_profile()),
    };
    let (mut peer, offer) = FakePeer::new(Instant::now(), &spec).map_err(|e| e.to_string())?;
    peer.keep_rtp = true;
    // As the client: announce the screen stream and unmute before the offer carrying them.
    let mut announcements = Vec::new();
    if plan.screen_bps.is_some() {
        let data = serde_json::json!({ "screenStreamID": spec.screen_stream_id() }).to_string();
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
    let stamp = || context.epoch.elapsed().as_micros() as u64;
    loop {
        publish(&mut peer, &socket, context, status).await;
        let timeout = peer
            .next_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        let step = tokio::select! {
            _ = context.stop.cancelled() => return Ok(()),
            received = socket.recv_from(&mut buf) => {
                let (len, from) = received.map_err(|e| format!("recv: {e}"))?;
                peer.handle_datagram(Instant::now(), from, BytesMut::from(&buf[..len]))
            }
            message = inbox.recv() => {
                let Some(message) = message else { return Ok(()) };
                // A signaling message the peer cannot apply fails it.
                signal(&mut peer, plan, outbox, message).await.map_err(|e| e.to_string())?;
                Ok(())
            }
            _ = tokio::time::sleep_until(timeout.into()) => peer.handle_timeout(Instant::now()),
            _ = audio_tick.tick(), if plan.speaker && peer.connected => {
                status.sent.fetch_add(1, Ordering::Relaxed);
                peer.send_audio(Instant::now(), stamp())
            }
            _ = video_tick.tick(), if high_per_frame > 0 && peer.connected => {
                let now = Instant::now();
                let mut sent = high_per_frame;
                let mut step = peer.send_frame(now, HIGH, high_per_frame, stamp());
                if step.is_ok() && video_frames.is_multiple_of(LOW_LAYER_DIVISOR) {
                    step = peer.send_frame(now, LOW, low_per_frame, stamp());
                    sent += low_per_frame;
                }
                video_frames = video_frames.wrapping_add(1);
                status.sent.fetch_add(sent, Ordering::Relaxed);
                step
            }
        };
        if let Err(err) = step {
            tracing::debug!(session_id = %plan.session_id, "peer: {err}");
        }
    }
}

/// Sends what the peer wants sent and records what it received.
async fn publish(
    peer: &mut FakePeer,
    socket: &tokio::net::UdpSocket,
    context: &PeerContext,
    status: &PeerStatus,
) {
    for (to, data) in peer.take_transmits() {
        let _ = socket.send_to(&data, to).await;
    }
    if peer.connected && !status.connected.load(Ordering::Relaxed) {
        status.connected.store(true, Ordering::Relaxed);
    }
    if matches!(
        peer.state,
        Some(RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed)
    ) {
        status.failed.store(true, Ordering::Relaxed);
    }
    let mut packets = peer.take_rtp().peekable();
    if packets.peek().is_none() {
        return;
    }
    let now_us = context.epoch.elapsed().as_micros() as u64;
    let measuring = context.measuring.load(Ordering::Relaxed);
    if let Ok(mut stats) = status.stats.lock() {
        for packet in packets {
            stats.record(&packet, now_us, measuring);
        }
    }
}

/// A signaling message from the SFU (over the plugin WebSocket): an answer, an offer (answered
/// there), or a candidate.
async fn signal(
    peer: &mut FakePeer,
    plan: &PeerPlan,
    outbox: &mpsc::Sender<Outgoing>,
    message: RtcMessage,
) -> Result<(), PeerError> {
    let data = String::from_utf8_lossy(&message.data.unwrap_or_default()).into_owned();
    match message.msg_type {
        rtc_type::SDP => {
            if let Some(answer) = peer.handle_sdp(Instant::now(), &data)? {
                outbox
                    .send(Outgoing::Rtc(rtc_message(plan, rtc_type::SDP, answer)))
                    .await
                    .map_err(|_| PeerError::Unexpected("plugin connection gone".into()))?;
            }
            Ok(())
        }
        rtc_type::ICE => peer.handle_candidate(&data),
        _ => Ok(()),
    }
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
