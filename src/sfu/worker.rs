//! One shard of the SFU: every session of the calls assigned to it, owned by one thread.
//!
//! Owns: sessions of its calls, routing of datagrams to sessions (STUN ufrag first, then the
//! 5-tuple learned from it), signals from the control plane, timers, and panic isolation (a
//! panic inside the WebRTC library ends only that session). Sans-IO: the thread that runs it
//! feeds inputs with `now` and drains [`Outputs`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap as HashMap;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use super::relay::RelayTransport;
use super::session::{
    Datagram, DriverOutputs, InboundRtp, Outputs, Path, Session, SessionSettings,
};
use super::tracks::{self, PublishedTrack};
use crate::calls::SessionConfig;
use crate::media::{CloseReason, MediaError, MediaEvent, Signal};
use crate::wire::Protocol;
use crate::wire::credentials::IceCredentials;
use crate::wire::stun;

/// Routing key of an established flow.
type FlowKey = (SocketAddr, SocketAddr, Protocol);

/// Flows one session may have (candidate pairs a client checks: a few per interface and
/// protocol); past it the session's oldest flow is forgotten.
pub const MAX_FLOWS_PER_SESSION: usize = 8;

/// A shard.
pub struct Worker {
    index: u8,
    metrics: Arc<crate::metrics::Metrics>,
    /// What sessions are set up with.
    settings: SessionSettings,
    /// Sessions by ID; the key is the one shared name every other table holds.
    sessions: HashMap<Arc<str>, Session>,
    /// Our ufrag → the session and its ICE password (checks are authenticated with it before
    /// a flow is learned).
    by_ufrag: HashMap<String, (Arc<str>, String)>,
    /// The same credentials, shared with the ICE-TCP acceptor.
    credentials: IceCredentials,
    /// Learned flows → their session (shared name: routing a datagram allocates nothing).
    /// A flow is learned only from a check the session authenticates.
    by_flow: HashMap<FlowKey, Arc<str>>,
    flows_of: HashMap<String, Vec<FlowKey>>,
    /// Our TURN sockets → the session allocating through them.
    by_relay_socket: HashMap<SocketAddr, Arc<str>>,
    /// call key (group and call ID, [`crate::calls::call_key`]) → its sessions (all on this
    /// worker). Two tenants' calls never share an entry, whatever their call IDs.
    calls: HashMap<Arc<str>, Vec<Arc<str>>>,
    /// Reused list of a call's other sessions (control-plane events).
    receivers: Vec<Arc<str>>,
    /// Sessions that ended while a packet was fanned out (removed after it).
    ended: Vec<Arc<str>>,
    /// Session timers: the current deadline of each session, a min-heap of deadlines (stale
    /// entries are skipped lazily), and the sessions touched since their deadline was read.
    deadlines: HashMap<Arc<str>, Instant>,
    timers: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
    timers_dirty: Vec<Arc<str>>,
    timers_due: Vec<Arc<str>>,
    /// What sessions produced this turn: the driver's part is read through
    /// [`Worker::driver_outputs`]; the call's part is settled inside the worker.
    out: Outputs,
}

impl Worker {
    pub fn new(
        index: u8,
        metrics: Arc<crate::metrics::Metrics>,
        settings: SessionSettings,
        credentials: IceCredentials,
    ) -> Self {
        Self {
            index,
            metrics,
            settings,
            sessions: HashMap::default(),
            by_ufrag: HashMap::default(),
            credentials,
            by_flow: HashMap::default(),
            flows_of: HashMap::default(),
            by_relay_socket: HashMap::default(),
            calls: HashMap::default(),
            receivers: Vec::new(),
            ended: Vec::new(),
            deadlines: HashMap::default(),
            timers: BinaryHeap::new(),
            timers_dirty: Vec::new(),
            timers_due: Vec::new(),
            out: Outputs::default(),
        }
    }

    /// What the driver must send, open, close and report after this turn.
    pub fn driver_outputs(&mut self) -> &mut DriverOutputs {
        &mut self.out.driver
    }

    /// Makes `session_id`'s next step panic, as a bug in the WebRTC core would (tests of the
    /// isolation).
    #[cfg(test)]
    pub(crate) fn panic_in(&mut self, now: Instant, session_id: &str) {
        self.with_session(now, session_id, |_, _| panic!("injected panic"));
        self.settle(now);
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// A fresh ufrag that names this worker in its first two characters (the receive thread
    /// routes new flows by it without a shared table).
    fn new_ufrag(&self) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let random: [u8; 14] = rand::random();
        let suffix: String = random
            .iter()
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect();
        format!("{:02x}{suffix}", self.index)
    }

    /// A participant joined; `relays` are TURN sockets the driver opened for it.
    pub fn create(
        &mut self,
        now: Instant,
        config: Arc<SessionConfig>,
        relays: Vec<RelayTransport>,
    ) -> Result<(), MediaError> {
        if self.sessions.contains_key(config.session_id.as_str()) {
            return Err(MediaError::SessionExists);
        }
        let ufrag = self.new_ufrag();
        let pwd: String = (0..32)
            .map(|_| (b'a' + rand::random::<u8>() % 26) as char)
            .collect();
        let session = catch_unwind(AssertUnwindSafe(|| {
            Session::new(
                config.clone(),
                ufrag.clone(),
                &pwd,
                &self.settings,
                relays.clone(),
                self.metrics.clone(),
                now,
            )
        }))
        .map_err(|_| MediaError::Other("panic creating the peer connection".into()))?
        .map_err(|e| MediaError::Other(e.to_string()))?;
        self.metrics.media_sessions.inc();
        let name: Arc<str> = Arc::from(config.session_id.as_str());
        self.credentials.insert(&ufrag, &pwd);
        self.by_ufrag.insert(ufrag, (name.clone(), pwd));
        for socket in session.relay_sockets() {
            self.by_relay_socket.insert(socket, name.clone());
        }
        self.calls
            .entry(session.call.clone())
            .or_default()
            .push(name.clone());
        tracing::info!(session_id = %config.session_id, group_id = %config.group_id, call_id = %config.call_id, worker = self.index, "media session created");
        self.sessions.insert(name, session);
        self.mark_timer_dirty(&config.session_id);
        Ok(())
    }

    /// Queues `session_id`'s deadline for recomputation (once per session per turn).
    fn mark_timer_dirty(&mut self, session_id: &str) {
        if let Some(session) = self.sessions.get_mut(session_id)
            && !session.timer_dirty
        {
            session.timer_dirty = true;
            if let Some((name, _)) = self.sessions.get_key_value(session_id) {
                self.timers_dirty.push(name.clone());
            }
        }
    }

    /// Ends a session without reporting it (the control plane already knows).
    pub fn close(&mut self, now: Instant, session_id: &str, reason: CloseReason) {
        if let Some(session) = self.sessions.get_mut(session_id) {
            let out = &mut self.out;
            let _ = catch_unwind(AssertUnwindSafe(|| session.close(now, reason, out)));
        }
        self.remove(now, session_id);
    }

    fn remove(&mut self, now: Instant, session_id: &str) {
        let Some(session) = self.sessions.remove(session_id) else {
            return;
        };
        self.metrics.media_sessions.dec();
        self.deadlines.remove(session_id);
        self.by_ufrag.remove(&session.ufrag);
        self.credentials.remove(&session.ufrag);
        for socket in session.relay_sockets() {
            self.by_relay_socket.remove(&socket);
            self.out.driver.released_relay_sockets.push(socket);
        }
        for flow in self.flows_of.remove(session_id).unwrap_or_default() {
            self.forget_flow(flow);
        }
        let mut others = Vec::new();
        if let Some(members) = self.calls.get_mut(&session.call) {
            members.retain(|m| &**m != session_id);
            others = members.clone();
            if members.is_empty() {
                self.calls.remove(&session.call);
            }
        }
        // The rest of the call stops receiving this participant's tracks.
        for other in others {
            self.with_session(now, &other, |s, out| {
                s.remove_publisher(now, session_id, out)
            });
        }
    }

    /// Whether `receiver` should get `track` (AV1/VP8 variant choice).
    fn wants(&self, receiver: &str, track: &PublishedTrack) -> bool {
        let (Some(receiver), Some(publisher)) = (
            self.sessions.get(receiver),
            self.sessions.get(track.publisher.as_str()),
        ) else {
            return false;
        };
        tracks::receiver_wants(
            track,
            publisher.config.props.av1_support(),
            receiver.config.props.av1_support(),
            publisher.published(),
        )
    }

    /// Fills `self.receivers` with the other sessions of `session_id`'s call.
    fn collect_receivers(&mut self, session_id: &str) {
        let Self {
            sessions,
            calls,
            receivers,
            ..
        } = self;
        receivers.clear();
        let Some(members) = sessions.get(session_id).and_then(|s| calls.get(&s.call)) else {
            return;
        };
        receivers.extend(members.iter().filter(|m| &***m != session_id).cloned());
    }

    /// Applies what sessions reported to the rest of their calls: new tracks, sessions
    /// ready for offers, and media to fan out.
    fn settle(&mut self, now: Instant) {
        loop {
            let published = std::mem::take(&mut self.out.call.published);
            let ready = std::mem::take(&mut self.out.call.ready);
            let rtp = std::mem::take(&mut self.out.call.rtp);
            let keyframes = std::mem::take(&mut self.out.call.keyframe_requests);
            if published.is_empty()
                && ready.is_empty()
                && rtp.is_empty()
                && keyframes.is_empty()
                && self.out.call.unpublished.is_empty()
            {
                return;
            }
            for request in keyframes {
                self.with_session(now, &request.publisher, |s, out| {
                    s.request_keyframe(now, &request.source_id, request.layer, out)
                });
            }
            let unpublished = std::mem::take(&mut self.out.call.unpublished);
            for (publisher, source_id) in unpublished {
                self.collect_receivers(&publisher);
                for receiver in std::mem::take(&mut self.receivers) {
                    self.with_session(now, &receiver, |s, out| {
                        s.remove_forwarded(now, &publisher, &source_id, out)
                    });
                }
            }
            for track in published {
                self.collect_receivers(&track.publisher);
                for receiver in std::mem::take(&mut self.receivers) {
                    if self.sessions.get(&*receiver).is_some_and(Session::is_ready)
                        && self.wants(&receiver, &track)
                    {
                        self.with_session(now, &receiver, |s, out| {
                            s.add_forwarded(now, &track, out)
                        });
                    }
                }
            }
            for session_id in ready {
                self.collect_receivers(&session_id);
                let tracks: Vec<_> = std::mem::take(&mut self.receivers)
                    .iter()
                    .filter_map(|p| self.sessions.get(&**p))
                    .flat_map(|p| p.published().to_vec())
                    .collect();
                for track in tracks {
                    if self.wants(&session_id, &track) {
                        self.with_session(now, &session_id, |s, out| {
                            s.add_forwarded(now, &track, out)
                        });
                    }
                }
            }
            for inbound in rtp {
                self.fan_out(now, &inbound);
            }
        }
    }

    /// Forwards one inbound packet to the other sessions of its publisher's call: one lookup
    /// per receiver and no reference counting per packet (a forward never moves the core's
    /// timers, so deadlines are not re-read).
    fn fan_out(&mut self, now: Instant, inbound: &InboundRtp) {
        let publisher = inbound.key.publisher();
        let Self {
            sessions,
            calls,
            out,
            ended,
            ..
        } = self;
        let Some(members) = sessions.get(publisher).and_then(|s| calls.get(&s.call)) else {
            return;
        };
        ended.clear();
        for member in members.iter().filter(|m| &***m != publisher) {
            if let Some(session) = sessions.get_mut(&**member)
                && isolated(now, member, session, out, |s, out| {
                    s.forward(now, inbound, out)
                })
            {
                ended.push(member.clone());
            }
        }
        for session_id in std::mem::take(&mut self.ended) {
            self.remove(now, &session_id);
        }
    }

    /// Runs `f` on a session, isolating panics; removes sessions that ended.
    fn with_session(
        &mut self,
        now: Instant,
        session_id: &str,
        f: impl FnOnce(&mut Session, &mut Outputs),
    ) {
        self.run_session(now, session_id, true, f);
    }

    /// [`Worker::with_session`]; `timers_may_change: false` skips re-reading the session's
    /// deadline (forwarding a packet does not move the core's timers, and re-reading them per
    /// receiver per packet costs more than the forwarding itself).
    fn run_session(
        &mut self,
        now: Instant,
        session_id: &str,
        timers_may_change: bool,
        f: impl FnOnce(&mut Session, &mut Outputs),
    ) {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        if isolated(now, session_id, session, &mut self.out, f) {
            self.remove(now, session_id);
        } else if timers_may_change {
            self.mark_timer_dirty(session_id);
        }
    }

    /// A client signal relayed by the plugin.
    pub fn signal(&mut self, now: Instant, session_id: &str, signal: Signal) {
        if let Signal::ScreenOn { .. } = signal {
            self.collect_receivers(session_id);
            let others = std::mem::take(&mut self.receivers);
            let busy = others
                .iter()
                .any(|o| self.sessions.get(&**o).is_some_and(Session::is_sharing));
            if busy {
                tracing::warn!(
                    session_id,
                    "screen share refused: another participant is sharing in this call"
                );
                return;
            }
        }
        self.with_session(now, session_id, |session, out| match signal {
            Signal::Sdp(json) => session.handle_sdp(now, &json, Path::WebSocket, out),
            Signal::Ice(json) => session.handle_candidate(&json),
            other => session.handle_media_signal(&other, out),
        });
        self.settle(now);
    }

    /// A datagram from the network.
    pub fn datagram(&mut self, now: Instant, datagram: Datagram) {
        let key = (datagram.local, datagram.peer, datagram.protocol);
        let session_id = match self.by_flow.get(&key) {
            Some(id) => id.clone(),
            None => match self.learn_flow(key, &datagram.data) {
                Some(id) => id,
                None => return,
            },
        };
        self.with_session(now, &session_id, |session, out| {
            session.handle_datagram(now, datagram, out)
        });
        self.settle(now);
    }

    /// A new flow becomes known when it sends a check that names one of our sessions and is
    /// authenticated with that session's ICE password; anything else from an unknown flow is
    /// dropped without leaving state behind. A session keeps at most
    /// [`MAX_FLOWS_PER_SESSION`] flows (its oldest is forgotten).
    fn learn_flow(&mut self, key: FlowKey, data: &[u8]) -> Option<Arc<str>> {
        let (id, password) = stun::local_ufrag(data).and_then(|u| self.by_ufrag.get(u))?;
        if !stun::authenticated(data, password) {
            static THROTTLE: crate::limits::LogThrottle = crate::limits::LogThrottle::new();
            if let Some(suppressed) = THROTTLE.allow() {
                tracing::debug!(session_id = %id, peer = %key.1, suppressed, "binding request with a bad MESSAGE-INTEGRITY dropped");
            }
            return None;
        }
        let id = id.clone();
        let flows = self.flows_of.entry(id.to_string()).or_default();
        let evicted = (flows.len() >= MAX_FLOWS_PER_SESSION).then(|| flows.remove(0));
        flows.push(key);
        if let Some(old) = evicted {
            self.forget_flow(old);
        }
        self.by_flow.insert(key, id.clone());
        if let (local, peer, Protocol::Udp) = key {
            self.out.driver.learned_flows.push((local, peer));
        }
        Some(id)
    }

    fn forget_flow(&mut self, flow: FlowKey) {
        self.by_flow.remove(&flow);
        if let (local, peer, Protocol::Udp) = flow {
            self.out.driver.released_flows.push((local, peer));
        }
    }

    /// A datagram from a TURN server on relay socket `local`.
    pub fn relay_datagram(&mut self, now: Instant, local: SocketAddr, data: bytes::BytesMut) {
        let Some(session_id) = self.by_relay_socket.get(&local).cloned() else {
            return;
        };
        self.with_session(now, &session_id, |session, out| {
            session.handle_relay_datagram(now, local, data, out)
        });
        self.settle(now);
    }

    /// The earliest timer of any session (reads only the sessions touched since last time).
    pub fn next_timeout(&mut self) -> Option<Instant> {
        for name in std::mem::take(&mut self.timers_dirty) {
            let Some(session) = self.sessions.get_mut(&*name) else {
                continue;
            };
            session.timer_dirty = false;
            match session.next_timeout() {
                Some(deadline) => {
                    if self.deadlines.get(&name) != Some(&deadline) {
                        self.deadlines.insert(name.clone(), deadline);
                        self.timers.push(Reverse((deadline, name)));
                    }
                }
                None => {
                    self.deadlines.remove(&name);
                }
            }
        }
        while let Some(Reverse((deadline, name))) = self.timers.peek() {
            if self.deadlines.get(name) == Some(deadline) {
                return Some(*deadline);
            }
            self.timers.pop(); // superseded or ended
        }
        None
    }

    /// Runs every timer due at `now` (each session at most once per call).
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.timers_due);
        while let Some(deadline) = self.next_timeout()
            && deadline <= now
        {
            let Some(Reverse((_, name))) = self.timers.pop() else {
                break;
            };
            self.deadlines.remove(&name);
            due.push(name);
        }
        for name in due.drain(..) {
            self.with_session(now, &name, |session, out| session.handle_timeout(now, out));
        }
        self.timers_due = due;
        self.settle(now);
    }
}

/// Runs `f` on `session`, closing only that session (and reporting it) if the WebRTC core
/// panics; `true` when the session has ended and must be removed.
fn isolated(
    now: Instant,
    session_id: &str,
    session: &mut Session,
    out: &mut Outputs,
    f: impl FnOnce(&mut Session, &mut Outputs),
) -> bool {
    if catch_unwind(AssertUnwindSafe(|| f(session, out))).is_err() {
        tracing::error!(
            session_id,
            "panic in the WebRTC core; closing this session only"
        );
        session.close(now, CloseReason::Failed("internal error".into()), out);
        out.driver.events.push(MediaEvent::Closed {
            session_id: session_id.to_owned(),
            reason: CloseReason::Failed("internal error".into()),
        });
    }
    session.closed().is_some()
}
