//! The ICE credentials of the live sessions, shared with the ICE-TCP acceptor.
//!
//! Owns: ufrag → ICE password of every session that exists, written by the workers when a
//! session is created or removed (control-plane rate) and read once per new ICE-TCP
//! connection, whose first binding request must be authenticated by a live session before the
//! connection is kept. Never read per datagram.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Shared table of live sessions' ICE credentials (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct IceCredentials {
    passwords: Arc<RwLock<HashMap<String, String>>>,
}

impl IceCredentials {
    /// A session with `ufrag` / `password` exists.
    pub fn insert(&self, ufrag: &str, password: &str) {
        self.passwords
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ufrag.to_owned(), password.to_owned());
    }

    /// The session with `ufrag` is gone.
    pub fn remove(&self, ufrag: &str) {
        self.passwords
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(ufrag);
    }

    /// The ICE password of the live session with `ufrag`.
    pub fn password(&self, ufrag: &str) -> Option<String> {
        self.passwords
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(ufrag)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.passwords
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
