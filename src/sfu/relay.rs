//! A session's TURN allocation (spec media-plane §1.8), sans-IO.
//!
//! Owns: the TURN client of one session on one server (allocate, refresh, permissions,
//! channel bindings, release), turning ICE traffic the peer connection sends from the relay
//! candidate into TURN Send/ChannelData, and relayed data back into datagrams for the peer
//! connection. The socket that reaches the server is the driver's; this only names it.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use rtc::sansio::Protocol as _;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::turn::client::{Client, ClientConfig, Event};

use super::session::Transmit;
use crate::wire::Protocol;

/// What a session needs to allocate on a TURN server through a socket the driver opened.
#[derive(Debug, Clone)]
pub struct RelayTransport {
    /// Our socket's address (unique per session and server: allocations are per 5-tuple).
    pub local: SocketAddr,
    pub server: SocketAddr,
    pub url: String,
    pub username: String,
    pub password: String,
}

/// What happened on the allocation.
#[derive(Debug)]
pub enum RelayEvent {
    /// The server allocated `relayed`: advertise it as a relay candidate.
    Allocated { relayed: SocketAddr },
    /// The allocation failed (credentials, quota, timeout): no relay candidate.
    Failed(String),
    /// A peer's datagram arrived through the relay.
    Data { peer: SocketAddr, data: BytesMut },
}

/// State of one allocation.
pub struct Relay {
    client: Client,
    transport: RelayTransport,
    relayed: Option<SocketAddr>,
    failed: bool,
}

impl Relay {
    /// Starts allocating at `now`.
    pub fn start(transport: RelayTransport, now: Instant) -> Result<Self, String> {
        let provider = rtc::crypto::default_provider().map_err(|e| e.to_string())?;
        let mut client = Client::new(
            ClientConfig {
                turn_serv_addr: transport.server.to_string(),
                local_addr: transport.local,
                transport_protocol: TransportProtocol::UDP,
                username: transport.username.clone(),
                password: transport.password.clone(),
                software: concat!("rtcd-rs ", env!("CARGO_PKG_VERSION")).to_owned(),
                ..Default::default()
            },
            provider,
        )
        .map_err(|e| e.to_string())?;
        client.allocate(now).map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            transport,
            relayed: None,
            failed: false,
        })
    }

    /// Our socket toward the server.
    pub fn local(&self) -> SocketAddr {
        self.transport.local
    }

    /// The relayed address once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.relayed
    }

    /// The configured server URL.
    pub fn url(&self) -> &str {
        &self.transport.url
    }

    /// A datagram from the server on our socket.
    pub fn handle_datagram(&mut self, now: Instant, data: BytesMut) {
        let input = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.transport.local,
                peer_addr: self.transport.server,
                transport_protocol: TransportProtocol::UDP,
                ecn: None,
            },
            message: data,
        };
        if let Err(err) = self.client.handle_read(input) {
            tracing::debug!(url = %self.transport.url, "TURN message rejected: {err}");
        }
    }

    /// Sends `data` from the relayed address to `peer`. Until the server has granted a
    /// permission for the peer, the packet is dropped and the permission requested (ICE
    /// retransmits its checks).
    pub fn send(&mut self, now: Instant, peer: SocketAddr, data: &[u8]) {
        let Some(relayed) = self.relayed else {
            return;
        };
        let Ok(mut relay) = self.client.relay(relayed) else {
            return;
        };
        if relay.send_to(now, data, peer).is_err()
            && let Err(err) = relay.create_permission(now, peer)
        {
            tracing::debug!(url = %self.transport.url, %peer, "TURN permission request failed: {err}");
        }
    }

    /// Next events.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        loop {
            let event = self.client.poll_event()?;
            match event {
                Event::AllocateResponse(_, relayed) => {
                    self.relayed = Some(relayed);
                    return Some(RelayEvent::Allocated { relayed });
                }
                Event::AllocateError(_, err) => {
                    self.failed = true;
                    return Some(RelayEvent::Failed(err.to_string()));
                }
                Event::TransactionTimeout(_) if self.relayed.is_none() && !self.failed => {
                    self.failed = true;
                    return Some(RelayEvent::Failed("no answer from the server".into()));
                }
                Event::DataIndicationOrChannelData(_, peer, data) => {
                    return Some(RelayEvent::Data { peer, data });
                }
                Event::CreatePermissionError(_, err) => {
                    tracing::debug!(url = %self.transport.url, "TURN permission refused: {err}");
                }
                _ => {}
            }
        }
    }

    /// Moves what the client wants to send to the server into `transmits`.
    pub fn drain_transmits(&mut self, transmits: &mut Vec<Transmit>) {
        while let Some(message) = self.client.poll_write() {
            transmits.push(Transmit {
                local: self.transport.local,
                peer: message.transport.peer_addr,
                protocol: Protocol::Udp,
                data: message.message,
            });
        }
    }

    /// When [`Relay::handle_timeout`] must run (retransmissions, refreshes).
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.failed {
            return None;
        }
        self.client.poll_timeout()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Err(err) = self.client.handle_timeout(now) {
            tracing::debug!(url = %self.transport.url, "TURN timer: {err}");
        }
    }

    /// Releases the allocation (a zero-lifetime Refresh), best effort.
    pub fn release(&mut self, now: Instant) {
        if let Some(relayed) = self.relayed.take()
            && let Ok(mut relay) = self.client.relay(relayed)
        {
            let _ = relay.close(now);
        }
    }
}
