//! What crosses between the media sockets (`net`) and the SFU core (`sfu`): a leaf module that
//! both use and that uses neither, so the two never import each other.
//!
//! Owns: datagrams in ([`Datagram`]) and out ([`Transmit`]), the transport of a candidate
//! ([`Protocol`]) and the host candidates the SFU advertises ([`Advertised`]), the few bytes of
//! STUN both sides read ([`stun`]), and the live sessions' ICE credentials both sides check
//! ([`credentials`]).

pub mod credentials;
pub mod stun;

use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;

/// Transport of a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Udp,
    Tcp,
}

/// One host candidate the SFU advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Advertised {
    pub protocol: Protocol,
    /// The local IP the socket is bound to.
    pub local_ip: IpAddr,
    /// The address written into the candidate (after NAT mapping and port override).
    pub address: SocketAddr,
}

/// A datagram for a session.
#[derive(Debug)]
pub struct Datagram {
    /// The advertised address it was sent to (what our candidate says).
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub protocol: Protocol,
    pub data: BytesMut,
}

/// A datagram to send.
#[derive(Debug)]
pub struct Transmit {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub protocol: Protocol,
    pub data: BytesMut,
}
