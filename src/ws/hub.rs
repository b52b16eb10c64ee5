//! Routing between plugin connections, the session registry and the media plane.
//!
//! Owns: the set of live plugin connections (connID → clientID + outbound queue), the session
//! registry (behind one mutex; touched per signaling message, never per media packet), the
//! handling of decoded plugin messages (spec control-plane §9) and the delivery of media-plane
//! events (`rtc`, `vad`, `close`) to the connection currently routing each session (§15.5),
//! and the per-tenant limits of `[limits]` (connections, joins per second, sessions, ID
//! lengths): a refusal is counted, logged at most a few times a second, and never touches
//! another tenant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use super::codec::{self, ClientMessage, RtcMessage, rtc_type};
use crate::calls::{ConnId, LookupError, Registry, SessionConfig, SessionProps};
use crate::config::LimitsConfig;
use crate::limits::{Limit, LogThrottle, TokenBucket, short};
use crate::media::{CloseReason, MediaError, MediaEvent, MediaPlane, OutboundKind, Signal};
use crate::metrics::{ClientLabels, Direction, GroupLabels, Metrics, WsMessageLabels};

/// Outbound frames queued per connection; a full queue drops (never blocks the sender).
pub const OUTBOUND_QUEUE_CAPACITY: usize = 1024;

/// A frame queued for a connection's writer.
pub type Frame = Vec<u8>;

struct Connection {
    client_id: String,
    outbound: mpsc::Sender<Frame>,
}

/// What the hub keeps per client (tenant) besides its sessions.
struct Tenant {
    /// Open plugin connections.
    connections: u64,
    /// Joins allowed per second.
    joins: TokenBucket,
    /// The client was unregistered: its metric label sets go once it has nothing left.
    unregistered: bool,
}

/// A refused request: which limit, and the text for the log (and the HTTP answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct Refused {
    pub limit: Limit,
    pub why: String,
}

/// The hub. One per daemon.
pub struct Hub {
    connections: Mutex<HashMap<ConnId, Connection>>,
    registry: Mutex<Registry>,
    tenants: Mutex<HashMap<String, Tenant>>,
    media: Arc<dyn MediaPlane>,
    metrics: Arc<Metrics>,
    limits: LimitsConfig,
    session_count: watch::Sender<usize>,
}

/// A registered plugin connection; dropping it unregisters the connection (whether or not the
/// WebSocket upgrade ever completed).
pub struct Connected {
    hub: Arc<Hub>,
    pub conn_id: ConnId,
    pub client_id: String,
    /// The connection's outbound queue (taken by the writer).
    pub outbound: Option<mpsc::Receiver<Frame>>,
}

impl Connected {
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.hub.disconnect(&self.conn_id);
    }
}

/// One WARN line per call site at most a few times a second.
macro_rules! warn_throttled {
    ($($arg:tt)+) => {{
        static THROTTLE: LogThrottle = LogThrottle::new();
        if let Some(suppressed) = THROTTLE.allow() {
            tracing::warn!(suppressed, $($arg)+);
        }
    }};
}

impl Hub {
    pub fn new(
        media: Arc<dyn MediaPlane>,
        metrics: Arc<Metrics>,
        limits: LimitsConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            connections: Mutex::new(HashMap::new()),
            registry: Mutex::new(Registry::default()),
            tenants: Mutex::new(HashMap::new()),
            media,
            metrics,
            limits,
            session_count: watch::Sender::new(0),
        })
    }

    fn tenants(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tenant>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_tenant(&self) -> Tenant {
        Tenant {
            connections: 0,
            joins: TokenBucket::new(
                self.limits.join_rate_per_client,
                self.limits.join_burst_per_client,
                std::time::Instant::now(),
            ),
            unregistered: false,
        }
    }

    /// A client was unregistered: its live sessions and connections keep working (operators
    /// rotate keys that way); its metric label sets are removed once both are gone.
    pub fn client_unregistered(&self, client_id: &str) {
        let mut tenants = self.tenants();
        match tenants.get_mut(client_id) {
            Some(tenant) => tenant.unregistered = true,
            None => {
                let mut tenant = self.new_tenant();
                tenant.unregistered = true;
                tenants.insert(client_id.to_owned(), tenant);
            }
        }
        drop(tenants);
        self.forget_if_gone(client_id);
    }

    /// Removes an unregistered client's state and metric label sets once it has no
    /// connection and no session.
    fn forget_if_gone(&self, client_id: &str) {
        let sessions = self.registry().sessions_in_group(client_id);
        let mut tenants = self.tenants();
        let gone = tenants
            .get(client_id)
            .is_some_and(|t| t.unregistered && t.connections == 0 && sessions == 0);
        if gone {
            tenants.remove(client_id);
            drop(tenants);
            self.metrics.forget_tenant(client_id);
            tracing::debug!(client_id, "unregistered client's metrics removed");
        }
    }

    fn refuse(&self, limit: Limit, why: String) -> Refused {
        self.metrics.refused(limit);
        Refused { limit, why }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, Connection>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Live session count; changes are observable for the shutdown drain.
    pub fn sessions(&self) -> watch::Receiver<usize> {
        self.session_count.subscribe()
    }

    fn publish_session_count(&self, registry: &Registry) {
        self.session_count.send_replace(registry.len());
    }

    /// Registers a new plugin connection of `client_id`, unless the client already has
    /// `limits.max_connections_per_client` open.
    pub fn connect(self: &Arc<Self>, client_id: &str) -> Result<Connected, Refused> {
        {
            let mut tenants = self.tenants();
            if !tenants.contains_key(client_id) {
                let tenant = self.new_tenant();
                tenants.insert(client_id.to_owned(), tenant);
            }
            let tenant = tenants.get_mut(client_id).expect("inserted above");
            if tenant.connections >= self.limits.max_connections_per_client {
                drop(tenants);
                return Err(self.refuse(
                    Limit::connections_per_client,
                    format!(
                        "client {} already has {} WebSocket connections open (limits.max_connections_per_client)",
                        short(client_id),
                        self.limits.max_connections_per_client
                    ),
                ));
            }
            tenant.connections += 1;
        }
        let (conn_id, outbound) = self.open_connection(client_id);
        Ok(Connected {
            hub: self.clone(),
            conn_id,
            client_id: client_id.to_owned(),
            outbound: Some(outbound),
        })
    }

    fn open_connection(&self, client_id: &str) -> (ConnId, mpsc::Receiver<Frame>) {
        let conn_id: ConnId = new_conn_id().into();
        let (outbound, rx) = mpsc::channel(OUTBOUND_QUEUE_CAPACITY);
        self.connections().insert(
            conn_id.clone(),
            Connection {
                client_id: client_id.to_owned(),
                outbound,
            },
        );
        self.metrics
            .ws_connections
            .get_or_create(&ClientLabels {
                clientID: client_id.to_owned(),
            })
            .inc();
        (conn_id, rx)
    }

    /// Forgets a connection. Its sessions keep running; their routes point at a dead connID
    /// until a `reconnect` arrives (§9.1).
    fn disconnect(&self, conn_id: &ConnId) {
        let Some(conn) = self.connections().remove(conn_id) else {
            return;
        };
        self.metrics
            .ws_connections
            .get_or_create(&ClientLabels {
                clientID: conn.client_id.clone(),
            })
            .dec();
        if let Some(tenant) = self.tenants().get_mut(&conn.client_id) {
            tenant.connections = tenant.connections.saturating_sub(1);
        }
        self.forget_if_gone(&conn.client_id);
    }

    /// Number of live plugin connections.
    pub fn connection_count(&self) -> usize {
        self.connections().len()
    }

    /// Queues a frame for a connection; `counted` names the envelope type for the metric.
    fn send(&self, conn_id: &ConnId, frame: Frame, counted: Option<&'static str>) -> bool {
        let connections = self.connections();
        let Some(conn) = connections.get(conn_id) else {
            tracing::debug!(conn_id = %conn_id, "dropping message for a gone connection");
            return false;
        };
        match conn.outbound.try_send(frame) {
            Ok(()) => {
                if let Some(kind) = counted {
                    self.metrics
                        .ws_messages
                        .get_or_create(&WsMessageLabels {
                            clientID: conn.client_id.clone(),
                            r#type: kind.to_owned(),
                            direction: Direction::Out,
                        })
                        .inc();
                }
                true
            }
            Err(_) => {
                warn_throttled!(conn_id = %conn_id, client_id = %short(&conn.client_id), "outbound queue full, dropping message");
                false
            }
        }
    }

    /// Sends the `hello` greeting.
    pub fn hello(&self, conn_id: &ConnId, client_id: &str) {
        self.send(conn_id, codec::encode_hello(client_id, conn_id), None);
    }

    /// Handles one decoded message from connection `conn_id` of `client_id` (§9).
    pub fn handle(&self, conn_id: &ConnId, client_id: &str, msg: ClientMessage) {
        self.metrics
            .ws_messages
            .get_or_create(&WsMessageLabels {
                clientID: client_id.to_owned(),
                r#type: msg.type_name().to_owned(),
                direction: Direction::In,
            })
            .inc();
        match msg {
            ClientMessage::Join(join) => self.join(conn_id, client_id, join),
            ClientMessage::Leave { session_id } => {
                if self
                    .registry()
                    .get_in_group(client_id, &session_id)
                    .is_some()
                {
                    self.close_session(&session_id, CloseReason::Leave);
                } else {
                    tracing::debug!(conn_id = %conn_id, session_id = %short(&session_id), "leave for an unknown session");
                }
            }
            ClientMessage::Reconnect { session_id } => {
                if !self
                    .registry()
                    .reroute(client_id, &session_id, conn_id.clone())
                {
                    tracing::debug!(conn_id = %conn_id, session_id = %short(&session_id), "reconnect for an unknown session ignored");
                }
            }
            ClientMessage::Rtc(rtc) => self.rtc(conn_id, client_id, rtc),
        }
    }

    fn join(&self, conn_id: &ConnId, client_id: &str, join: codec::JoinData) {
        let max_id = self.limits.max_id_length as usize;
        let too_long = [
            ("callID", &join.call_id),
            ("userID", &join.user_id),
            ("sessionID", &join.session_id),
        ]
        .into_iter()
        .find(|(_, id)| id.len() > max_id);
        if let Some((name, id)) = too_long {
            // No `close`: the ID is not one the plugin could know.
            let refused = self.refuse(
                Limit::id_length,
                format!(
                    "{name} of {} bytes is longer than {max_id} (limits.max_id_length)",
                    id.len()
                ),
            );
            warn_throttled!(conn_id = %conn_id, client_id = %short(client_id), session_id = %short(&join.session_id), "join refused: {refused}");
            return;
        }
        let session_id = join.session_id.clone();
        if let Err(refused) = self.admit_join(client_id) {
            warn_throttled!(conn_id = %conn_id, client_id = %short(client_id), session_id, "join refused: {refused}");
            self.send(conn_id, codec::encode_close(&session_id), None);
            return;
        }
        let config = SessionConfig {
            group_id: client_id.to_owned(),
            call_id: join.call_id,
            user_id: join.user_id,
            session_id: join.session_id,
            props: SessionProps {
                av1_support: join.av1_support,
                channel_id: join.channel_id,
                dc_signaling: join.dc_signaling,
            },
        };
        let mut registry = self.registry();
        let sessions = registry.sessions_in_group(client_id) as u64;
        if sessions >= self.limits.max_sessions_per_client {
            drop(registry);
            let refused = self.refuse(
                Limit::sessions_per_client,
                format!("client has {sessions} sessions (limits.max_sessions_per_client)"),
            );
            warn_throttled!(conn_id = %conn_id, client_id = %short(client_id), session_id, "join refused: {refused}");
            self.send(conn_id, codec::encode_close(&session_id), None);
            return;
        }
        let config = match registry.insert(config, conn_id.clone()) {
            Ok(config) => config,
            Err(err) => {
                drop(registry);
                warn_throttled!(conn_id = %conn_id, client_id = %short(client_id), session_id, "join failed: {err}");
                return;
            }
        };
        if let Err(err) = self.media.create_session(config.clone()) {
            registry.remove(&session_id);
            drop(registry);
            if let MediaError::Busy(_) = err {
                self.metrics.refused(Limit::media_busy);
                self.send(conn_id, codec::encode_close(&session_id), None);
            }
            warn_throttled!(conn_id = %conn_id, client_id = %short(client_id), session_id, "join failed: media session: {err}");
            return;
        }
        self.publish_session_count(&registry);
        drop(registry);
        self.metrics
            .rtc_sessions
            .get_or_create(&GroupLabels {
                groupID: config.group_id.clone(),
            })
            .inc();
        tracing::info!(
            conn_id = %conn_id,
            group_id = %config.group_id,
            call_id = %config.call_id,
            user_id = %config.user_id,
            session_id = %config.session_id,
            "session joined"
        );
    }

    /// Takes a join from the client's per-second budget.
    fn admit_join(&self, client_id: &str) -> Result<(), Refused> {
        let now = std::time::Instant::now();
        let mut tenants = self.tenants();
        if !tenants.contains_key(client_id) {
            let tenant = self.new_tenant();
            tenants.insert(client_id.to_owned(), tenant);
        }
        let tenant = tenants.get_mut(client_id).expect("inserted above");
        if tenant.joins.try_take(now) {
            return Ok(());
        }
        drop(tenants);
        Err(self.refuse(
            Limit::join_rate,
            format!(
                "more than {} joins a second (limits.join_rate_per_client, burst {})",
                self.limits.join_rate_per_client, self.limits.join_burst_per_client
            ),
        ))
    }

    fn rtc(&self, conn_id: &ConnId, client_id: &str, rtc: RtcMessage) {
        if self
            .registry()
            .get_in_group(client_id, &rtc.session_id)
            .is_none()
        {
            tracing::debug!(conn_id = %conn_id, session_id = %short(&rtc.session_id), "rtc message for an unknown session dropped");
            return;
        }
        match to_signal(&rtc) {
            Ok(signal) => {
                if let Err(err) = self.media.signal(&rtc.session_id, signal) {
                    self.metrics.refused(Limit::media_busy);
                    warn_throttled!(conn_id = %conn_id, session_id = rtc.session_id, msg_type = rtc.msg_type, "rtc message refused: {err}");
                }
            }
            Err(why) => {
                warn_throttled!(conn_id = %conn_id, session_id = rtc.session_id, msg_type = rtc.msg_type, "rtc message dropped: {why}")
            }
        }
    }

    /// Ends a session: registry, `close` to the plugin, metrics, media. Idempotent.
    pub fn close_session(&self, session_id: &str, reason: CloseReason) {
        let Some(entry) = self.registry().remove(session_id) else {
            return;
        };
        self.media.close_session(session_id);
        self.metrics
            .rtc_sessions
            .get_or_create(&GroupLabels {
                groupID: entry.config.group_id.clone(),
            })
            .dec();
        let frame = codec::encode_close(session_id);
        if !self.send(entry.close_target(), frame.clone(), None) && entry.join_conn != entry.route {
            self.send(&entry.join_conn, frame, None);
        }
        tracing::info!(session_id, call_id = %entry.config.call_id, %reason, "session closed");
        // Published last: a drain waiting for zero sessions must not shut connections down
        // before this session's `close` is queued.
        self.publish_session_count(&self.registry());
        self.forget_if_gone(&entry.config.group_id);
    }

    /// Delivers one media-plane event.
    pub fn dispatch(&self, event: MediaEvent) {
        match event {
            MediaEvent::Outbound {
                session_id,
                kind,
                data,
            } => {
                let msg_type = match kind {
                    OutboundKind::Ice => rtc_type::ICE,
                    OutboundKind::Sdp => rtc_type::SDP,
                };
                self.deliver(&session_id, msg_type, Some(data.into_bytes()), "rtc");
            }
            MediaEvent::VoiceActivity { session_id, on } => {
                let msg_type = if on {
                    rtc_type::VOICE_ON
                } else {
                    rtc_type::VOICE_OFF
                };
                self.deliver(&session_id, msg_type, None, "vad");
            }
            MediaEvent::Closed { session_id, reason } => self.close_session(&session_id, reason),
            MediaEvent::Quality {
                session_id,
                quality,
            } => self.registry().set_quality(&session_id, quality),
        }
    }

    fn deliver(
        &self,
        session_id: &str,
        msg_type: u64,
        data: Option<Vec<u8>>,
        envelope: &'static str,
    ) {
        let (route, msg) = {
            let registry = self.registry();
            let Some(entry) = registry.get(session_id) else {
                tracing::debug!(session_id, "dropping {envelope} for a closed session");
                return;
            };
            let config = &entry.config;
            (
                entry.route.clone(),
                RtcMessage {
                    group_id: config.group_id.clone(),
                    user_id: config.user_id.clone(),
                    session_id: config.session_id.clone(),
                    call_id: config.call_id.clone(),
                    msg_type,
                    data,
                },
            )
        };
        let frame = if envelope == "vad" {
            codec::encode_vad(&msg)
        } else {
            codec::encode_rtc(&msg)
        };
        self.send(&route, frame, Some(envelope));
    }

    /// Sessions of a call, scoped to the caller's group.
    pub fn call_sessions(
        &self,
        group: &str,
        call_id: &str,
    ) -> Result<Vec<Arc<SessionConfig>>, LookupError> {
        self.registry().call_sessions(group, call_id)
    }

    /// Quality summary of a call, scoped to the caller's group.
    pub fn call_quality(
        &self,
        group: &str,
        call_id: &str,
    ) -> Result<crate::calls::CallQuality, LookupError> {
        self.registry().call_quality(group, call_id)
    }

    /// Every call of every group (the operator's view).
    pub fn all_calls(&self) -> Vec<crate::calls::CallSummary> {
        self.registry().all_calls()
    }

    /// One session of a call, scoped to the caller's group.
    pub fn call_session(
        &self,
        group: &str,
        call_id: &str,
        session_id: &str,
    ) -> Result<Arc<SessionConfig>, LookupError> {
        self.registry().call_session(group, call_id, session_id)
    }

    /// Closes every session (drain timeout / forced shutdown).
    pub fn close_all_sessions(&self, reason: CloseReason) {
        let ids: Vec<String> = {
            let registry = self.registry();
            registry.session_ids().collect()
        };
        for id in ids {
            self.close_session(&id, reason.clone());
        }
    }
}

/// Maps an inbound RTC message to a media signal.
fn to_signal(rtc: &RtcMessage) -> Result<Signal, String> {
    let text = || -> Result<String, String> {
        let data = rtc.data.as_deref().ok_or("missing data")?;
        String::from_utf8(data.to_vec()).map_err(|_| "data is not UTF-8".to_owned())
    };
    let stream_id = |key: &str| -> Result<String, String> {
        let value: serde_json::Value =
            serde_json::from_str(&text()?).map_err(|e| format!("bad JSON: {e}"))?;
        value
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("missing {key}"))
    };
    Ok(match rtc.msg_type {
        rtc_type::ICE => Signal::Ice(text()?),
        rtc_type::SDP => Signal::Sdp(text()?),
        rtc_type::MUTE => Signal::Mute,
        rtc_type::UNMUTE => Signal::Unmute,
        rtc_type::SCREEN_ON => Signal::ScreenOn {
            stream_id: stream_id("screenStreamID")?,
        },
        rtc_type::SCREEN_OFF => Signal::ScreenOff,
        rtc_type::VIDEO_ON => Signal::VideoOn {
            stream_id: stream_id("videoStreamID")?,
        },
        rtc_type::VIDEO_OFF => Signal::VideoOff,
        other => return Err(format!("unexpected rtc message type {other}")),
    })
}

/// A fresh 26-character connection ID: a random 128-bit value in base32 with the alphabet
/// Mattermost IDs use (upstream: UUIDv4 bytes, no padding).
pub fn new_conn_id() -> String {
    const ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";
    let mut bytes: [u8; 16] = rand::random();
    // UUIDv4 version and variant bits, as upstream's IDs carry them.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let value = u128::from_be_bytes(bytes);
    // 128 bits → 26 five-bit groups, most significant first; the last group is the final
    // 3 bits followed by 2 zero bits of padding.
    (0..26)
        .map(|i| {
            let shift = 128 - 5 * i - 5;
            let group = if shift >= 0 {
                value >> shift
            } else {
                value << -shift
            };
            ALPHABET[(group & 0x1f) as usize] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A media plane whose workers are always busy (stands in for full command queues).
    struct BusyMedia;

    impl MediaPlane for BusyMedia {
        fn create_session(&self, _: Arc<SessionConfig>) -> Result<(), MediaError> {
            Err(MediaError::Busy(
                "media worker busy: 4096 commands waiting".into(),
            ))
        }
        fn close_session(&self, _: &str) {}
        fn signal(&self, _: &str, _: Signal) -> Result<(), MediaError> {
            Err(MediaError::Busy(
                "media worker busy: 4096 commands waiting".into(),
            ))
        }
    }

    #[tokio::test]
    async fn a_create_the_media_plane_refuses_rolls_the_registry_back_and_closes() {
        let metrics = Arc::new(Metrics::new());
        let hub = Hub::new(
            Arc::new(BusyMedia),
            metrics.clone(),
            LimitsConfig::default(),
        );
        let mut connected = hub.connect("client").unwrap();
        let join = codec::JoinData {
            call_id: "call".into(),
            user_id: "user".into(),
            session_id: "session".into(),
            channel_id: serde_json::Value::Null,
            av1_support: serde_json::Value::Null,
            dc_signaling: serde_json::Value::Null,
        };
        hub.handle(&connected.conn_id, "client", ClientMessage::Join(join));
        assert_eq!(hub.registry().len(), 0);
        assert_eq!(*hub.sessions().borrow(), 0);
        let frame = connected.outbound.as_mut().unwrap().try_recv().unwrap();
        assert_eq!(
            codec::decode_server(&frame).unwrap(),
            codec::ServerMessage::Close {
                session_id: "session".into()
            }
        );
        let text = metrics.encode();
        assert!(
            text.contains("rtcd_limit_refusals_total{limit=\"media_busy\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn conn_ids_have_the_mattermost_shape() {
        let a = new_conn_id();
        assert_eq!(a.len(), 26);
        assert!(
            a.bytes()
                .all(|c| b"ybndrfg8ejkmcpqxot1uwisza345h769".contains(&c))
        );
        assert_ne!(a, new_conn_id());
    }

    #[test]
    fn signals_from_rtc_messages() {
        let msg = |t, data: Option<&str>| RtcMessage {
            session_id: "s".into(),
            msg_type: t,
            data: data.map(|d| d.as_bytes().to_vec()),
            ..RtcMessage::default()
        };
        assert_eq!(to_signal(&msg(3, None)), Ok(Signal::Mute));
        assert_eq!(
            to_signal(&msg(5, Some(r#"{"screenStreamID":"abc"}"#))),
            Ok(Signal::ScreenOn {
                stream_id: "abc".into()
            })
        );
        assert!(to_signal(&msg(5, Some("nope"))).is_err());
        assert!(to_signal(&msg(2, None)).is_err());
        assert!(to_signal(&msg(7, None)).is_err());
        assert_eq!(to_signal(&msg(1, Some("{}"))), Ok(Signal::Ice("{}".into())));
    }
}
