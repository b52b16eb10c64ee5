//! Typed configuration tree of the daemon.
//!
//! Owns: the config structs with their built-in defaults (spec control-plane §3.2), loading
//! (defaults < TOML file < environment, [`load`]), validation ([`Config::validate`]) and the
//! masked rendering used by `rtcd check-config`. Must not touch: sockets, the store, logging
//! setup (messages meant for the log are returned to the caller instead).

use serde::{Deserialize, Serialize};

mod env;
mod keys;
mod load;
mod validate;

pub use load::{ConfigError, Loaded, Override, OverrideSource, load, load_text, load_with_env};
pub use validate::{LOG_LEVELS, PortOverride, ValidationError};

/// Root of the configuration (`[api]`, `[rtc]`, `[store]`, `[logger]`, `[limits]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    pub api: ApiConfig,
    pub rtc: RtcConfig,
    pub store: StoreConfig,
    pub logger: LoggerConfig,
    pub limits: LimitsConfig,
}

/// `[limits]` (new in this port): what one tenant, one connection or one address may use, so
/// that hostile input cannot exhaust the daemon for everyone else. Defaults are far above what
/// a real installation needs (an HA Mattermost cluster opens one WebSocket per node under one
/// client ID; a big meeting starts with hundreds of joins a second). See `docs/security.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    /// Live RTC sessions of one client (Mattermost installation).
    pub max_sessions_per_client: u64,
    /// Open plugin WebSocket connections of one client.
    pub max_connections_per_client: u64,
    /// Joins per second of one client (token bucket refill rate) ...
    pub join_rate_per_client: u64,
    /// ... and the bucket's size (joins accepted at once after a quiet period).
    pub join_burst_per_client: u64,
    /// Longest client, call, user or session ID accepted, in bytes (upstream IDs are 26).
    pub max_id_length: u64,
    /// Remote ICE candidates one session may add (trickled and in its offers).
    pub max_remote_candidates: u64,
    /// Open HTTP connections to the API in all; more are closed at once.
    pub max_http_connections: u64,
    /// Open HTTP connections to the API from one IP address.
    pub max_http_connections_per_ip: u64,
    /// Time a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open (upstream: read timeout 30 s, idle 30 s).
    pub http_header_timeout_seconds: u64,
    /// ICE-TCP connections from one IP address that have not yet authenticated.
    pub ice_tcp_pending_per_ip: u64,
    /// An ICE-TCP connection that sends nothing for this long is closed.
    pub ice_tcp_idle_timeout_seconds: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_sessions_per_client: 10_000,
            max_connections_per_client: 64,
            join_rate_per_client: 1_000,
            join_burst_per_client: 2_000,
            max_id_length: 128,
            max_remote_candidates: 64,
            max_http_connections: 10_000,
            max_http_connections_per_ip: 256,
            http_header_timeout_seconds: 30,
            ice_tcp_pending_per_ip: 64,
            ice_tcp_idle_timeout_seconds: 30,
        }
    }
}

/// `[api]`: the HTTP/WebSocket API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ApiConfig {
    pub http: HttpConfig,
    pub security: SecurityConfig,
}

/// `[api.http]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// `host:port`, `:port` (all interfaces) or `[v6]:port`. Default `":8045"`.
    pub listen_address: String,
    pub tls: TlsConfig,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen_address: ":8045".into(),
            tls: TlsConfig::default(),
        }
    }
}

/// `[api.http.tls]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct TlsConfig {
    pub enable: bool,
    pub cert_file: String,
    pub cert_key: String,
}

/// `[api.security]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SecurityConfig {
    pub enable_admin: bool,
    pub admin_secret_key: String,
    pub allow_self_registration: bool,
    pub session_cache: SessionCacheConfig,
}

/// `[api.security.session_cache]`: bearer tokens issued by `/login`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionCacheConfig {
    pub expiration_minutes: i64,
}

impl Default for SessionCacheConfig {
    fn default() -> Self {
        Self {
            expiration_minutes: 1440,
        }
    }
}

/// One STUN/TURN server entry of `rtc.ice_servers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// `[rtc.turn]`: SFU-side TURN REST credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TurnConfig {
    pub static_auth_secret: String,
    pub credentials_expiration_minutes: i64,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            static_auth_secret: String::new(),
            credentials_expiration_minutes: 1440,
        }
    }
}

/// `[rtc]`: the media plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RtcConfig {
    /// Comma-separated local IPs for UDP media; empty = every interface.
    pub ice_address_udp: String,
    pub ice_port_udp: i64,
    /// Comma-separated local IPs for ICE-TCP; empty = every interface.
    pub ice_address_tcp: String,
    pub ice_port_tcp: i64,
    pub enable_ipv6: bool,
    pub ice_host_override: String,
    /// A single port (`"30443"`; a TOML integer is normalised to its string) or a mapping
    /// `"localIP/port,localIP/port"`. Empty = no override.
    pub ice_host_port_override: String,
    pub ice_servers: Vec<IceServer>,
    pub turn: TurnConfig,
    pub udp_sockets_count: i64,
    pub nack_buffer_size: u16,
    pub nack_disable_copy: bool,
    /// New in this port: how long a SIGTERM drain waits for sessions; 0 = forever.
    pub drain_timeout_minutes: u64,
}

impl Default for RtcConfig {
    fn default() -> Self {
        Self {
            ice_address_udp: String::new(),
            ice_port_udp: 8443,
            ice_address_tcp: String::new(),
            ice_port_tcp: 8443,
            enable_ipv6: false,
            ice_host_override: String::new(),
            ice_host_port_override: String::new(),
            ice_servers: Vec::new(),
            turn: TurnConfig::default(),
            udp_sockets_count: default_udp_sockets_count(),
            nack_buffer_size: 256,
            nack_disable_copy: true,
            drain_timeout_minutes: 0,
        }
    }
}

/// Number of CPUs × 100, as upstream.
pub fn default_udp_sockets_count() -> i64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as i64 * 100
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Directory holding the SQLite database (created if missing).
    pub data_source: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_source: "/tmp/rtcd_db".into(),
        }
    }
}

/// `[logger]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoggerConfig {
    pub enable_console: bool,
    pub console_json: bool,
    pub console_level: String,
    pub enable_file: bool,
    pub file_json: bool,
    pub file_level: String,
    pub file_location: String,
    pub enable_color: bool,
    /// New in this port: the log file is rotated (gzip-compressed) when it reaches this
    /// size in MB (upstream: 100).
    pub file_max_size_mb: u64,
    /// New in this port: rotated files kept (oldest deleted); 0 = keep every one (upstream).
    pub file_max_backups: u64,
}

impl Default for LoggerConfig {
    fn default() -> Self {
        Self {
            enable_console: true,
            console_json: false,
            console_level: "INFO".into(),
            enable_file: true,
            file_json: true,
            file_level: "DEBUG".into(),
            file_location: "rtcd.log".into(),
            enable_color: false,
            file_max_size_mb: 100,
            file_max_backups: 10,
        }
    }
}
