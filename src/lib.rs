//! rtcd: a drop-in RTC service for the Mattermost Calls plugin.
//!
//! Module map (each module's doc says what it owns):
//! - [`config`]: typed config, layered load (defaults < TOML < env), validation
//! - [`diagnose`]: `rtcd check-network` (advertised addresses, ports, buffers, STUN/TURN)
//! - [`logger`]: tracing subscriber (console/file, plain/JSON)
//! - [`store`]: SQLite store of registered clients
//! - [`auth`]: credentials, hashing, rate limit, bearer tokens
//! - [`api`]: axum router and handlers
//! - [`ws`]: plugin ↔ rtcd WebSocket protocol and routing
//! - [`calls`]: registry of groups, calls and sessions
//! - [`limits`]: building blocks of the hostile-input limits (buckets, log throttle)
//! - [`media`]: the interface between control plane and media plane
//! - [`sfu`]: the sans-IO SFU core (sessions, tracks, data-channel protocol, VAD)
//! - [`net`]: media sockets and threads (UDP/TCP 8443, demux, workers)
//! - [`wire`]: what crosses between `net` and `sfu` (datagrams, candidates, STUN, ICE
//!   credentials), so the two never import each other
//! - [`metrics`], [`system`], [`version`]: observability
//! - [`service`]: wiring, startup, drain and shutdown
//! - [`client`]: Rust client of this API (tests, load tool)

pub mod api;
pub mod auth;
pub mod calls;
pub mod client;
pub mod config;
pub mod diagnose;
pub mod limits;
pub mod load;
pub mod logger;
pub mod media;
pub mod metrics;
pub mod net;
pub mod service;
pub mod sfu;
pub mod store;
pub mod system;
pub mod version;
pub mod wire;
pub mod ws;

pub use service::{ServiceError, run};
