//! A test kit for the SFU core: one [`Worker`] and fake Calls clients ([`FakePeer`]) on an
//! in-memory network, driven on a virtual clock. No sockets, no threads, no sleeps: ten
//! seconds of a call run in milliseconds, and the same inputs give the same run.
//!
//! Owns: the virtual clock (it jumps to the next thing that happens: a datagram arriving, a
//! worker or peer timer, a speaker's next packet), the network between the worker and the
//! peers (one-way latency, optional loss), and the control plane's part (offers and
//! candidates carried between peers and the worker, other events kept for the test).
//!
//! Modelled on quinn's `Pair` and str0m's two-peer tests.

pub mod peer;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::Value;

pub use peer::{FakePeer, PeerError, PeerSpec};

use crate::calls::{SessionConfig, SessionProps};
use crate::media::{CloseReason, MediaEvent, OutboundKind, Signal};
use crate::sfu::session::{SessionSettings, WallClock};
use crate::sfu::worker::Worker;
use crate::wire::credentials::IceCredentials;
use crate::wire::{Advertised, Datagram, Protocol};

/// The SFU's address on the in-memory network (its one advertised candidate).
pub const SFU_ADDRESS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 8443);

/// Where a datagram in flight goes.
#[derive(Debug)]
enum Hop {
    ToSfu { from: SocketAddr },
    ToPeer { index: usize },
}

/// A participant: its session ID, its peer, and when it next sends media.
pub struct Participant {
    pub session_id: String,
    pub peer: FakePeer,
    /// Audio packets are sent every 20 ms from this instant on, while set.
    next_audio: Option<Instant>,
    /// Screen frames are sent every [`FRAME_INTERVAL`] from this instant on, while set.
    next_frame: Option<Instant>,
    frames: u32,
}

/// A worker and its participants on a virtual clock.
pub struct Net {
    pub now: Instant,
    start: Instant,
    pub worker: Worker,
    /// The worker's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    pub participants: Vec<Participant>,
    /// Events for the control plane other than signaling (sessions closed, VAD, quality).
    pub events: Vec<MediaEvent>,
    /// One-way latency of every datagram.
    pub latency: Duration,
    /// Every n-th datagram from the SFU to a peer is lost, when set.
    pub lose_every_nth_to_peers: Option<u64>,
    /// Datagrams the SFU sent to the peers (lost ones included).
    pub sent_to_peers: u64,
    /// Per participant: how many of the next datagrams the SFU sends it are lost.
    burst_loss: Vec<u64>,
    /// Participants the network no longer reaches (both directions).
    cut_off: Vec<bool>,
    /// Datagrams in flight, by arrival time (then sending order).
    in_flight: BTreeMap<(Instant, u64), (Hop, BytesMut)>,
    sequence: u64,
}

/// How often a speaking participant sends audio.
pub const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// How often a sharing participant sends a frame of its high layer (15 frames/s); the low
/// layer gets every third frame.
pub const FRAME_INTERVAL: Duration = Duration::from_nanos(1_000_000_000 / 15);
/// Packets per frame of the high and low screen layers (~1 Mbit/s and ~90 kbit/s).
pub const HIGH_PACKETS: u64 = 7;
pub const LOW_PACKETS: u64 = 2;
/// Set in the payload stamp of the low layer's packets (a receiver can tell the layers apart).
pub const LOW_LAYER_STAMP: u64 = 1 << 63;

/// Steps one run may take before the kit calls it a livelock.
const MAX_STEPS: usize = 1_000_000;

impl Default for Net {
    fn default() -> Self {
        Self::new()
    }
}

impl Net {
    /// A worker advertising [`SFU_ADDRESS`], 1 ms of latency, no loss.
    pub fn new() -> Self {
        Self::with_settings(|_| {})
    }

    /// Like [`Net::new`], with the sessions' settings changed by `change`.
    pub fn with_settings(change: impl FnOnce(&mut SessionSettings)) -> Self {
        let now = Instant::now();
        let mut settings = SessionSettings {
            candidates: vec![Advertised {
                protocol: Protocol::Udp,
                local_ip: SFU_ADDRESS.ip(),
                address: SFU_ADDRESS,
            }],
            nack_buffer_size: 0,
            max_remote_candidates: 64,
            wall_clock: WallClock {
                at: now,
                wall: std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            },
            stopwatch: Instant::now,
        };
        change(&mut settings);
        let metrics = Arc::new(crate::metrics::Metrics::new());
        Self {
            now,
            start: now,
            worker: Worker::new(0, metrics.clone(), settings, IceCredentials::default()),
            metrics,
            participants: Vec::new(),
            events: Vec::new(),
            latency: Duration::from_millis(1),
            lose_every_nth_to_peers: None,
            sent_to_peers: 0,
            burst_loss: Vec::new(),
            cut_off: Vec::new(),
            in_flight: BTreeMap::new(),
            sequence: 0,
        }
    }

    /// A participant joins `call_id` (group "group"): the session is created, the peer offers
    /// (publishing a voice track if `speaker`) as the Calls client does. Returns its index.
    pub fn join(&mut self, call_id: &str, speaker: bool) -> Result<usize, PeerError> {
        self.join_in("group", call_id, speaker, false)
    }

    /// Like [`Net::join`], in installation (group) `group_id`, and with a screen share
    /// (announced before the offer, as the client does) if `screen`.
    pub fn join_in(
        &mut self,
        group_id: &str,
        call_id: &str,
        speaker: bool,
        screen: bool,
    ) -> Result<usize, PeerError> {
        let (index, offer) = self.create(group_id, call_id, speaker, screen)?;
        let session_id = self.participants[index].session_id.clone();
        if screen {
            let stream_id = format!("screen-{session_id}");
            self.worker
                .signal(self.now, &session_id, Signal::ScreenOn { stream_id });
        }
        self.worker
            .signal(self.now, &session_id, Signal::Sdp(offer));
        self.exchange()?;
        Ok(index)
    }

    /// A participant whose session is created but who never sends its offer (returned).
    pub fn join_silently(&mut self, call_id: &str) -> Result<(usize, String), PeerError> {
        self.create("group", call_id, false, false)
    }

    fn create(
        &mut self,
        group_id: &str,
        call_id: &str,
        speaker: bool,
        screen: bool,
    ) -> Result<(usize, String), PeerError> {
        let index = self.participants.len();
        let session_id = format!("session-{index}");
        let spec = PeerSpec {
            id: session_id.clone(),
            local: SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1 + index as u8)),
                50_000 + index as u16,
            ),
            speaker,
            screen,
            srtp: None,
        };
        let config = SessionConfig {
            group_id: group_id.into(),
            call_id: call_id.into(),
            user_id: format!("user-{index}"),
            session_id: session_id.clone(),
            props: SessionProps {
                av1_support: Value::Bool(false),
                channel_id: Value::String(call_id.into()),
                dc_signaling: Value::Bool(true),
            },
        };
        self.worker
            .create(self.now, Arc::new(config), Vec::new())
            .map_err(|e| PeerError::Unexpected(e.to_string()))?;
        let (peer, offer) = FakePeer::new(self.now, &spec)?;
        self.burst_loss.push(0);
        self.cut_off.push(false);
        self.participants.push(Participant {
            session_id,
            peer,
            next_audio: None,
            next_frame: None,
            frames: 0,
        });
        Ok((index, offer))
    }

    /// Participant `index` starts (or stops) speaking: an audio packet every 20 ms.
    pub fn speak(&mut self, index: usize, on: bool) {
        self.participants[index].next_audio = on.then_some(self.now);
    }

    /// Participant `index` starts (or stops) sending its screen layers.
    pub fn share(&mut self, index: usize, on: bool) {
        self.participants[index].next_frame = on.then_some(self.now);
    }

    /// The next `count` datagrams from the SFU to participant `index` are lost.
    pub fn lose_next_to(&mut self, index: usize, count: u64) {
        self.burst_loss[index] = count;
    }

    /// The network stops (or starts again) carrying participant `index`'s datagrams.
    pub fn cut_off(&mut self, index: usize, cut: bool) {
        self.cut_off[index] = cut;
    }

    /// Participant `index` leaves (the plugin's `leave`).
    pub fn leave(&mut self, index: usize) -> Result<(), PeerError> {
        let session_id = self.participants[index].session_id.clone();
        self.worker.close(self.now, &session_id, CloseReason::Leave);
        self.exchange()
    }

    /// Microseconds since the run started (the stamp in every payload).
    fn stamp(&self) -> u64 {
        (self.now - self.start).as_micros() as u64
    }

    /// Sends a control-plane signal (mute, screen on, …) for participant `index`.
    pub fn signal(&mut self, index: usize, signal: Signal) -> Result<(), PeerError> {
        let session_id = self.participants[index].session_id.clone();
        self.worker.signal(self.now, &session_id, signal);
        self.exchange()
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) -> Result<(), PeerError> {
        self.run_until(duration, |_| false).map(|_| ())
    }

    /// Runs until `done` holds (true) or `limit` of virtual time has passed (false).
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Net) -> bool,
    ) -> Result<bool, PeerError> {
        let end = self.now + limit;
        for _ in 0..MAX_STEPS {
            if done(self) {
                return Ok(true);
            }
            let Some(next) = self.next_event().filter(|t| *t <= end) else {
                self.now = end;
                return Ok(done(self));
            };
            self.now = self.now.max(next);
            self.step()?;
        }
        Err(PeerError::Unexpected(format!(
            "no progress after {MAX_STEPS} steps"
        )))
    }

    /// The earliest thing that happens next.
    fn next_event(&mut self) -> Option<Instant> {
        let arrival = self.in_flight.keys().next().map(|(at, _)| *at);
        let worker = self.worker.next_timeout();
        let peers = self
            .participants
            .iter_mut()
            .filter_map(|p| {
                [p.peer.next_timeout(), p.next_audio, p.next_frame]
                    .into_iter()
                    .flatten()
                    .min()
            })
            .min();
        [arrival, worker, peers].into_iter().flatten().min()
    }

    /// Everything due at `self.now`: arrivals, timers, audio.
    fn step(&mut self) -> Result<(), PeerError> {
        let now = self.now;
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (hop, data) = entry.remove();
            match hop {
                Hop::ToSfu { from } => self.worker.datagram(
                    now,
                    Datagram {
                        local: SFU_ADDRESS,
                        peer: from,
                        protocol: Protocol::Udp,
                        data,
                    },
                ),
                Hop::ToPeer { index } => {
                    self.participants[index]
                        .peer
                        .handle_datagram(now, SFU_ADDRESS, data)?
                }
            }
        }
        if self.worker.next_timeout().is_some_and(|t| t <= now) {
            self.worker.handle_timeout(now);
        }
        let stamp = self.stamp();
        for participant in &mut self.participants {
            if participant.peer.next_timeout().is_some_and(|t| t <= now) {
                participant.peer.handle_timeout(now)?;
            }
            if let Some(at) = participant.next_audio
                && at <= now
            {
                participant.peer.send_audio(now, stamp)?;
                participant.next_audio = Some(at + AUDIO_INTERVAL);
            }
            if let Some(at) = participant.next_frame
                && at <= now
            {
                participant
                    .peer
                    .send_frame(now, peer::HIGH, HIGH_PACKETS, stamp)?;
                if participant.frames.is_multiple_of(3) {
                    participant.peer.send_frame(
                        now,
                        peer::LOW,
                        LOW_PACKETS,
                        stamp | LOW_LAYER_STAMP,
                    )?;
                }
                participant.frames += 1;
                participant.next_frame = Some(at + FRAME_INTERVAL);
            }
        }
        self.exchange()
    }

    /// Moves what the worker and the peers produced, until neither has more: datagrams onto
    /// the network, signaling to the peers, other events to [`Net::events`].
    fn exchange(&mut self) -> Result<(), PeerError> {
        loop {
            self.send_from_peers();
            let out = self.worker.driver_outputs();
            let transmits: Vec<_> = out.transmits.drain(..).collect();
            let events: Vec<_> = out.events.drain(..).collect();
            out.connect_flows.clear();
            out.learned_flows.clear();
            out.released_flows.clear();
            out.released_relay_sockets.clear();
            for transmit in transmits {
                self.send_to_peer(transmit.peer, transmit.data);
            }
            if events.is_empty() {
                return Ok(());
            }
            for event in events {
                self.deliver(event)?;
            }
        }
    }

    fn send_from_peers(&mut self) {
        let arrival = self.now + self.latency;
        for (index, participant) in self.participants.iter_mut().enumerate() {
            let from = participant.peer.local;
            for (to, data) in participant.peer.take_transmits() {
                if to != SFU_ADDRESS || self.cut_off[index] {
                    continue; // nothing else is on this network
                }
                self.sequence += 1;
                let hop = Hop::ToSfu { from };
                self.in_flight.insert((arrival, self.sequence), (hop, data));
            }
        }
    }

    fn send_to_peer(&mut self, to: SocketAddr, data: BytesMut) {
        let Some(index) = self.participants.iter().position(|p| p.peer.local == to) else {
            return;
        };
        self.sent_to_peers += 1;
        if self
            .lose_every_nth_to_peers
            .is_some_and(|n| self.sent_to_peers.is_multiple_of(n))
            || self.cut_off[index]
        {
            return;
        }
        if self.burst_loss[index] > 0 {
            self.burst_loss[index] -= 1;
            return;
        }
        self.sequence += 1;
        let hop = Hop::ToPeer { index };
        self.in_flight
            .insert((self.now + self.latency, self.sequence), (hop, data));
    }

    /// Signaling to its peer; anything else is kept for the test.
    fn deliver(&mut self, event: MediaEvent) -> Result<(), PeerError> {
        let MediaEvent::Outbound {
            session_id,
            kind,
            data,
        } = &event
        else {
            self.events.push(event);
            return Ok(());
        };
        let Some(participant) = self
            .participants
            .iter_mut()
            .find(|p| &p.session_id == session_id)
        else {
            return Ok(());
        };
        match kind {
            OutboundKind::Sdp => {
                if let Some(answer) = participant.peer.handle_sdp(self.now, data)? {
                    let session_id = participant.session_id.clone();
                    self.worker
                        .signal(self.now, &session_id, Signal::Sdp(answer));
                }
                Ok(())
            }
            OutboundKind::Ice => participant.peer.handle_candidate(data),
        }
    }
}

#[cfg(test)]
mod tests;
