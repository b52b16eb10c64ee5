//! Registry of groups, calls and RTC sessions as the control plane sees them.
//!
//! Owns: session configs (`groupID/callID/userID/sessionID` + props, spec control-plane §9.2),
//! the tenant structure (group = the clientID that joined), and per session the connection it
//! joined on and the connection currently routing its signaling (`connMap`, §9.1).
//! A call exists exactly as long as it has sessions. Plain data: no I/O, no locking (the hub
//! owns the mutex), no media state.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::media::SessionQuality;

/// Identifier of one plugin WebSocket connection (26-char `connID`).
pub type ConnId = Arc<str>;

/// Session props exactly as the `join` carried them (`null` when absent).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionProps {
    #[serde(rename = "av1Support")]
    pub av1_support: Value,
    #[serde(rename = "channelID")]
    pub channel_id: Value,
    #[serde(rename = "dcSignaling")]
    pub dc_signaling: Value,
}

impl SessionProps {
    /// The receiver can decode AV1 (a non-bool value counts as false).
    pub fn av1_support(&self) -> bool {
        self.av1_support == Value::Bool(true)
    }

    /// Server offers go over the data channel (a non-bool value counts as false).
    pub fn dc_signaling(&self) -> bool {
        self.dc_signaling == Value::Bool(true)
    }
}

/// One participant's RTC session, as served by `/calls/{callID}/sessions` (Go-style keys).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionConfig {
    #[serde(rename = "GroupID")]
    pub group_id: String,
    #[serde(rename = "CallID")]
    pub call_id: String,
    #[serde(rename = "UserID")]
    pub user_id: String,
    #[serde(rename = "SessionID")]
    pub session_id: String,
    #[serde(rename = "Props")]
    pub props: SessionProps,
}

impl SessionConfig {
    /// The call this session belongs to, across tenants: see [`call_key`].
    pub fn call_key(&self) -> String {
        call_key(&self.group_id, &self.call_id)
    }

    /// Upstream's join validation (§9.2 step 2).
    pub fn validate(&self) -> Result<(), JoinError> {
        for (value, name) in [
            (&self.group_id, "GroupID"),
            (&self.call_id, "CallID"),
            (&self.user_id, "UserID"),
            (&self.session_id, "SessionID"),
        ] {
            if value.is_empty() {
                return Err(JoinError::Empty(name));
            }
        }
        Ok(())
    }
}

/// The media plane's name of call `call_id` of group `group_id`. Call IDs are chosen by each
/// tenant (Mattermost installation), so the same call ID in two groups is two calls: every
/// media-plane table keyed by call uses this key, never the bare call ID. The group's length
/// comes first, so no choice of IDs makes two different pairs share a key.
pub fn call_key(group_id: &str, call_id: &str) -> String {
    format!("{}:{group_id}/{call_id}", group_id.len())
}

/// Why a join was refused (logged only: the protocol has no error reply).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("invalid {0} value: should not be empty")]
    Empty(&'static str),
    #[error("user session already exists")]
    SessionExists,
}

/// Why a sessions lookup found nothing (texts of the 404 bodies of §4.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("group not found")]
    GroupNotFound,
    #[error("call not found")]
    CallNotFound,
    #[error("no sessions found")]
    NoSessions,
    #[error("session not found")]
    SessionNotFound,
}

/// A registered session.
#[derive(Debug, Clone)]
pub struct SessionEntry {
    pub config: Arc<SessionConfig>,
    /// Connection the `join` arrived on.
    pub join_conn: ConnId,
    /// Connection that currently receives this session's signaling.
    pub route: ConnId,
    /// The latest call-quality sample from the media plane.
    pub quality: Option<SessionQuality>,
}

/// Quality summary of a call (`GET /calls/{callID}/stats`), over its sessions' latest samples.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallQuality {
    #[serde(rename = "callID")]
    pub call_id: String,
    pub sessions: usize,
    /// Sessions with a sample yet (connected for at least two sampling periods).
    pub sampled: usize,
    pub loss_ratio: Spread,
    pub jitter_seconds: Spread,
    pub rtt_seconds: Spread,
    /// Loss on the SFU → client legs, from the clients' receiver reports.
    pub remote_loss_ratio: Spread,
    /// Sum over the call's sessions (bit/s).
    pub receive_bps: f64,
    pub send_bps: f64,
    /// Loss recovery in the latest sampling period, summed over sessions: NACKs from
    /// clients, NACKs to publishers, packets retransmitted (RTX).
    pub nacks_received: u64,
    pub nacks_sent: u64,
    pub retransmitted_packets: u64,
}

/// One call in the operator's list (`GET /admin/calls`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CallSummary {
    #[serde(rename = "groupID")]
    pub group_id: String,
    #[serde(rename = "callID")]
    pub call_id: String,
    pub sessions: usize,
}

/// Mean and worst value over sessions (`null` with no samples).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Spread {
    pub mean: Option<f64>,
    pub max: Option<f64>,
}

impl Spread {
    fn of(values: impl Iterator<Item = f64>) -> Self {
        let (count, sum, max) = values.fold((0usize, 0.0, f64::MIN), |(n, s, m), v| {
            (n + 1, s + v, m.max(v))
        });
        Self {
            mean: (count > 0).then(|| sum / count as f64),
            max: (count > 0).then_some(max),
        }
    }
}

impl SessionEntry {
    /// Where a `close` goes: the current route (upstream used the join connection, §15.5).
    pub fn close_target(&self) -> &ConnId {
        &self.route
    }
}

/// The registry itself.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: HashMap<String, SessionEntry>,
    /// group → call → session ids.
    groups: HashMap<String, HashMap<String, HashSet<String>>>,
    /// group → number of its sessions.
    group_sizes: HashMap<String, usize>,
}

impl Registry {
    /// Number of live sessions (all groups).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Number of live sessions of `group`.
    pub fn sessions_in_group(&self, group: &str) -> usize {
        self.group_sizes.get(group).copied().unwrap_or(0)
    }

    /// Adds a session joined over `conn`. Session IDs are global keys, as upstream.
    pub fn insert(
        &mut self,
        config: SessionConfig,
        conn: ConnId,
    ) -> Result<Arc<SessionConfig>, JoinError> {
        config.validate()?;
        if self.sessions.contains_key(&config.session_id) {
            return Err(JoinError::SessionExists);
        }
        let config = Arc::new(config);
        self.groups
            .entry(config.group_id.clone())
            .or_default()
            .entry(config.call_id.clone())
            .or_default()
            .insert(config.session_id.clone());
        *self.group_sizes.entry(config.group_id.clone()).or_default() += 1;
        self.sessions.insert(
            config.session_id.clone(),
            SessionEntry {
                config: config.clone(),
                join_conn: conn.clone(),
                route: conn,
                quality: None,
            },
        );
        Ok(config)
    }

    /// IDs of every live session.
    pub fn session_ids(&self) -> impl Iterator<Item = String> + '_ {
        self.sessions.keys().cloned()
    }

    /// The session, if it exists and belongs to `group` (tenant isolation, §15.7).
    pub fn get_in_group(&self, group: &str, session_id: &str) -> Option<&SessionEntry> {
        self.sessions
            .get(session_id)
            .filter(|e| e.config.group_id == group)
    }

    /// The session regardless of group (media events carry only the session ID).
    pub fn get(&self, session_id: &str) -> Option<&SessionEntry> {
        self.sessions.get(session_id)
    }

    /// Re-points signaling of a session of `group` to `conn` (`reconnect`, §9.4). Unknown or
    /// foreign sessions are ignored (§15.7, §15.9).
    pub fn reroute(&mut self, group: &str, session_id: &str, conn: ConnId) -> bool {
        match self.sessions.get_mut(session_id) {
            Some(entry) if entry.config.group_id == group => {
                entry.route = conn;
                true
            }
            _ => false,
        }
    }

    /// Removes a session; empty calls and groups disappear with it.
    pub fn remove(&mut self, session_id: &str) -> Option<SessionEntry> {
        let entry = self.sessions.remove(session_id)?;
        let config = &entry.config;
        if let Some(size) = self.group_sizes.get_mut(&config.group_id) {
            *size -= 1;
            if *size == 0 {
                self.group_sizes.remove(&config.group_id);
            }
        }
        if let Some(calls) = self.groups.get_mut(&config.group_id) {
            if let Some(sessions) = calls.get_mut(&config.call_id) {
                sessions.remove(session_id);
                if sessions.is_empty() {
                    calls.remove(&config.call_id);
                }
            }
            if calls.is_empty() {
                self.groups.remove(&config.group_id);
            }
        }
        Some(entry)
    }

    /// Records a session's latest quality sample.
    pub fn set_quality(&mut self, session_id: &str, quality: SessionQuality) {
        if let Some(entry) = self.sessions.get_mut(session_id) {
            entry.quality = Some(quality);
        }
    }

    /// Quality summary of a call of `group`.
    pub fn call_quality(&self, group: &str, call_id: &str) -> Result<CallQuality, LookupError> {
        let ids = self.call(group, call_id)?;
        if ids.is_empty() {
            return Err(LookupError::NoSessions);
        }
        let samples: Vec<SessionQuality> = ids
            .iter()
            .filter_map(|id| self.sessions.get(id)?.quality)
            .collect();
        Ok(CallQuality {
            call_id: call_id.to_owned(),
            sessions: ids.len(),
            sampled: samples.len(),
            loss_ratio: Spread::of(samples.iter().map(|q| q.loss_ratio)),
            jitter_seconds: Spread::of(samples.iter().map(|q| q.jitter_seconds)),
            rtt_seconds: Spread::of(samples.iter().filter_map(|q| q.rtt_seconds)),
            remote_loss_ratio: Spread::of(samples.iter().map(|q| q.remote_loss_ratio)),
            receive_bps: samples.iter().map(|q| q.receive_bps).sum(),
            send_bps: samples.iter().map(|q| q.send_bps).sum(),
            nacks_received: samples.iter().map(|q| q.nacks_received).sum(),
            nacks_sent: samples.iter().map(|q| q.nacks_sent).sum(),
            retransmitted_packets: samples.iter().map(|q| q.retransmitted_packets).sum(),
        })
    }

    /// Every call of every group with its number of sessions (the operator's view), sorted.
    pub fn all_calls(&self) -> Vec<CallSummary> {
        let mut calls: Vec<CallSummary> = self
            .groups
            .iter()
            .flat_map(|(group, calls)| {
                calls.iter().map(|(call, sessions)| CallSummary {
                    group_id: group.clone(),
                    call_id: call.clone(),
                    sessions: sessions.len(),
                })
            })
            .collect();
        calls.sort_by(|a, b| (&a.group_id, &a.call_id).cmp(&(&b.group_id, &b.call_id)));
        calls
    }

    /// All sessions of a call of `group`.
    pub fn call_sessions(
        &self,
        group: &str,
        call_id: &str,
    ) -> Result<Vec<Arc<SessionConfig>>, LookupError> {
        let ids = self.call(group, call_id)?;
        if ids.is_empty() {
            return Err(LookupError::NoSessions);
        }
        Ok(ids
            .iter()
            .filter_map(|id| self.sessions.get(id))
            .map(|e| e.config.clone())
            .collect())
    }

    /// One session of a call of `group`.
    pub fn call_session(
        &self,
        group: &str,
        call_id: &str,
        session_id: &str,
    ) -> Result<Arc<SessionConfig>, LookupError> {
        let ids = self.call(group, call_id)?;
        if !ids.contains(session_id) {
            return Err(LookupError::SessionNotFound);
        }
        self.sessions
            .get(session_id)
            .map(|e| e.config.clone())
            .ok_or(LookupError::SessionNotFound)
    }

    fn call(&self, group: &str, call_id: &str) -> Result<&HashSet<String>, LookupError> {
        self.groups
            .get(group)
            .ok_or(LookupError::GroupNotFound)?
            .get(call_id)
            .ok_or(LookupError::CallNotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(group: &str, call: &str, session: &str) -> SessionConfig {
        SessionConfig {
            group_id: group.into(),
            call_id: call.into(),
            user_id: "u".into(),
            session_id: session.into(),
            props: SessionProps {
                av1_support: Value::Null,
                channel_id: Value::String("ch".into()),
                dc_signaling: Value::Bool(true),
            },
        }
    }

    #[test]
    fn lifecycle_and_isolation() {
        let mut reg = Registry::default();
        let c1: ConnId = "c1".into();
        reg.insert(config("g1", "call", "s1"), c1.clone()).unwrap();
        reg.insert(config("g1", "call", "s2"), c1.clone()).unwrap();
        assert_eq!(
            reg.insert(config("g1", "call", "s1"), c1.clone()),
            Err(JoinError::SessionExists)
        );
        assert_eq!(
            reg.insert(config("", "call", "s3"), c1.clone()),
            Err(JoinError::Empty("GroupID"))
        );
        assert_eq!(reg.call_sessions("g1", "call").unwrap().len(), 2);
        assert_eq!(reg.sessions_in_group("g1"), 2);
        assert_eq!(reg.sessions_in_group("g2"), 0);
        assert_eq!(
            reg.call_sessions("g2", "call"),
            Err(LookupError::GroupNotFound)
        );
        assert_eq!(
            reg.call_sessions("g1", "other"),
            Err(LookupError::CallNotFound)
        );
        assert_eq!(
            reg.call_session("g1", "call", "s9"),
            Err(LookupError::SessionNotFound)
        );
        assert!(reg.get_in_group("g2", "s1").is_none());
        assert!(!reg.reroute("g2", "s1", "c2".into()));
        assert!(!reg.reroute("g1", "unknown", "c2".into()));
        assert!(reg.reroute("g1", "s1", "c2".into()));
        assert_eq!(&*reg.get("s1").unwrap().route, "c2");
        assert_eq!(&*reg.get("s1").unwrap().join_conn, "c1");
        reg.remove("s1").unwrap();
        reg.remove("s2").unwrap();
        assert!(reg.is_empty());
        assert_eq!(reg.sessions_in_group("g1"), 0);
        assert_eq!(
            reg.call_sessions("g1", "call"),
            Err(LookupError::GroupNotFound)
        );
    }

    #[test]
    fn call_keys_separate_groups() {
        assert_ne!(call_key("a", "call"), call_key("b", "call"));
        // Moving the boundary between group and call never yields the same key.
        assert_ne!(call_key("ab", "c"), call_key("a", "bc"));
        assert_ne!(call_key("a/", "c"), call_key("a", "/c"));
        assert_eq!(config("g", "c", "s").call_key(), call_key("g", "c"));
    }

    #[test]
    fn session_json_shape() {
        let json = serde_json::to_string(&config("g", "c", "s")).unwrap();
        assert_eq!(
            json,
            r#"{"GroupID":"g","CallID":"c","UserID":"u","SessionID":"s","Props":{"av1Support":null,"channelID":"ch","dcSignaling":true}}"#
        );
    }
}
