//! One shard of the SFU: every session of the calls assigned to it, owned by one thread.
//!
//! Owns: sessions of its calls, routing of datagrams to sessions (STUN ufrag first, then the
//! 5-tuple learned from it), signals from the control plane, timers, and panic isolation (a
//! panic inside the WebRTC library ends only that session). Sans-IO: the thread that runs it
//! feeds inputs with `now` and drains [`Outputs`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use super::session::{Datagram, Outputs, Path, Session};
use crate::calls::SessionConfig;
use crate::media::{CloseReason, MediaError, MediaEvent, Signal};
use crate::net::addresses::{Advertised, Protocol};
use crate::net::stun;

/// Routing key of an established flow.
type FlowKey = (SocketAddr, SocketAddr, Protocol);

/// A shard.
pub struct Worker {
    index: u8,
    candidates: Vec<Advertised>,
    sessions: HashMap<String, Session>,
    by_ufrag: HashMap<String, String>,
    by_flow: HashMap<FlowKey, String>,
    flows_of: HashMap<String, Vec<FlowKey>>,
    /// What the driver must send and report.
    pub out: Outputs,
}

impl Worker {
    pub fn new(index: u8, candidates: Vec<Advertised>) -> Self {
        Self {
            index,
            candidates,
            sessions: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_flow: HashMap::new(),
            flows_of: HashMap::new(),
            out: Outputs::default(),
        }
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

    /// A participant joined.
    pub fn create(&mut self, now: Instant, config: Arc<SessionConfig>) -> Result<(), MediaError> {
        if self.sessions.contains_key(&config.session_id) {
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
                self.candidates.clone(),
                now,
            )
        }))
        .map_err(|_| MediaError::Other("panic creating the peer connection".into()))?
        .map_err(|e| MediaError::Other(e.to_string()))?;
        self.by_ufrag.insert(ufrag, config.session_id.clone());
        self.sessions.insert(config.session_id.clone(), session);
        Ok(())
    }

    /// Ends a session without reporting it (the control plane already knows).
    pub fn close(&mut self, session_id: &str, reason: CloseReason) {
        if let Some(session) = self.sessions.get_mut(session_id) {
            let _ = catch_unwind(AssertUnwindSafe(|| session.close(reason)));
        }
        self.remove(session_id);
    }

    fn remove(&mut self, session_id: &str) {
        if let Some(session) = self.sessions.remove(session_id) {
            self.by_ufrag.remove(&session.ufrag);
        }
        for flow in self.flows_of.remove(session_id).unwrap_or_default() {
            self.by_flow.remove(&flow);
        }
    }

    /// Runs `f` on a session, isolating panics; removes sessions that ended.
    fn with_session(&mut self, session_id: &str, f: impl FnOnce(&mut Session, &mut Outputs)) {
        let Some(session) = self.sessions.get_mut(session_id) else {
            return;
        };
        let out = &mut self.out;
        if catch_unwind(AssertUnwindSafe(|| f(session, out))).is_err() {
            tracing::error!(
                session_id,
                "panic in the WebRTC core; closing this session only"
            );
            session.close(CloseReason::Failed("internal error".into()));
            self.out.events.push(MediaEvent::Closed {
                session_id: session_id.to_owned(),
                reason: CloseReason::Failed("internal error".into()),
            });
        }
        if self
            .sessions
            .get(session_id)
            .is_some_and(|s| s.closed().is_some())
        {
            self.remove(session_id);
        }
    }

    /// A client signal relayed by the plugin.
    pub fn signal(&mut self, now: Instant, session_id: &str, signal: Signal) {
        self.with_session(session_id, |session, out| match signal {
            Signal::Sdp(json) => session.handle_sdp(now, &json, Path::WebSocket, out),
            Signal::Ice(json) => session.handle_candidate(&json),
            other => tracing::debug!(
                session_id = session.session_id(),
                ?other,
                "signal not handled yet"
            ),
        });
    }

    /// A datagram from the network.
    pub fn datagram(&mut self, now: Instant, datagram: Datagram) {
        let key = (datagram.local, datagram.peer, datagram.protocol);
        let session_id = match self.by_flow.get(&key) {
            Some(id) => id.clone(),
            None => {
                let Some(id) = stun::local_ufrag(&datagram.data)
                    .and_then(|u| self.by_ufrag.get(u))
                    .cloned()
                else {
                    return; // unknown flow and not a check for one of our sessions
                };
                self.by_flow.insert(key, id.clone());
                self.flows_of.entry(id.clone()).or_default().push(key);
                id
            }
        };
        self.with_session(&session_id, |session, out| {
            session.handle_datagram(now, datagram, out)
        });
    }

    /// The earliest timer of any session.
    pub fn next_timeout(&mut self) -> Option<Instant> {
        self.sessions
            .values_mut()
            .filter_map(Session::next_timeout)
            .min()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<String> = self
            .sessions
            .iter_mut()
            .filter_map(|(id, s)| {
                s.next_timeout()
                    .is_some_and(|t| t <= now)
                    .then(|| id.clone())
            })
            .collect();
        for id in due {
            self.with_session(&id, |session, out| session.handle_timeout(now, out));
        }
    }
}
