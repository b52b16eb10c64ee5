//! Placeholder media plane used until the SFU lands: it tracks sessions and applies the
//! initial-offer timeout of spec control-plane §9.2 (no offer in 10 s → the session is
//! closed), but answers no offer. Lives only behind [`MediaPlane`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::AbortHandle;

use super::{CloseReason, EventSender, MediaError, MediaEvent, MediaPlane, Signal};
use crate::calls::SessionConfig;

/// Time a new session waits for its first SDP offer.
pub const INITIAL_OFFER_TIMEOUT: Duration = Duration::from_secs(10);

/// The stub.
pub struct StubMediaPlane {
    events: EventSender,
    offer_timeout: Duration,
    /// Session → its pending offer timer.
    sessions: Mutex<HashMap<String, Option<AbortHandle>>>,
}

impl StubMediaPlane {
    pub fn new(events: EventSender) -> Arc<Self> {
        Self::with_offer_timeout(events, INITIAL_OFFER_TIMEOUT)
    }

    pub fn with_offer_timeout(events: EventSender, offer_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            events,
            offer_timeout,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<AbortHandle>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl MediaPlane for StubMediaPlane {
    fn create_session(&self, config: Arc<SessionConfig>) -> Result<(), MediaError> {
        let mut sessions = self.sessions();
        if sessions.contains_key(&config.session_id) {
            return Err(MediaError::SessionExists);
        }
        let events = self.events.clone();
        let session_id = config.session_id.clone();
        let timeout = self.offer_timeout;
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let _ = events
                .send(MediaEvent::Closed {
                    session_id,
                    reason: CloseReason::NoOffer,
                })
                .await;
        });
        sessions.insert(config.session_id.clone(), Some(timer.abort_handle()));
        Ok(())
    }

    fn close_session(&self, session_id: &str) {
        if let Some(Some(timer)) = self.sessions().remove(session_id) {
            timer.abort();
        }
    }

    fn signal(&self, session_id: &str, signal: Signal) {
        let mut sessions = self.sessions();
        let Some(timer) = sessions.get_mut(session_id) else {
            return;
        };
        if let Signal::Sdp(_) = signal {
            if let Some(timer) = timer.take() {
                timer.abort();
            }
            tracing::warn!(
                session_id,
                "no media plane in this build: offer not answered"
            );
        }
    }

    fn shutdown(&self) {
        for (_, timer) in self.sessions().drain() {
            if let Some(timer) = timer {
                timer.abort();
            }
        }
    }
}
