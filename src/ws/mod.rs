//! Plugin ↔ rtcd WebSocket protocol (spec control-plane §7–§9).
//!
//! `codec` frames envelopes, `hub` routes messages between connections, the session registry
//! and the media plane, `conn` runs one upgraded connection (ping/pong deadlines, size limit,
//! outbound queue). Must not touch: HTTP routing, SQL, media internals.

pub mod codec;
pub mod conn;
pub mod hub;

pub use hub::Hub;
