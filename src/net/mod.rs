//! Media sockets: the only code that does I/O on the media ports (UDP and ICE-TCP 8443).
//!
//! Owns: address planning (`addresses`), the per-datagram demux helpers (`stun`), connected
//! sockets for established flows (`flows`), the receive threads' learned flows (`learned`),
//! and the socket loops. No call logic: packets are
//! routed to the media worker that owns their session and the workers hand back what to send.

pub mod addresses;
pub mod batch;
pub mod discovery;
pub mod flows;
pub mod learned;
pub mod plan;
pub mod queue;
mod receive;
pub mod runtime;
pub use crate::wire::stun;
pub mod tcp;
pub mod turn;
mod worker_thread;
