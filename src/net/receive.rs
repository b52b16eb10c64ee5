//! The shared UDP media sockets and their receive threads: one socket per served local IP,
//! one thread per socket that routes each datagram to the worker owning its session (STUN
//! ufrag prefix for checks, then the flows the workers learned) or drops it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::TrySendError;

use super::addresses::{Advertised, Protocol};
use super::batch::RecvBatch;
use super::flows::{self};
use super::learned::{FlowNote, LearnedFlows};
use super::queue::WorkerQueue;
use super::runtime::{IDLE_WAKEUP, Input, NetError, SOCKET_BUFFER_BYTES};
use super::stun;
use crate::wire::Datagram;

/// Cap of each receive thread's learned-flow table (the oldest flow is evicted when full).
pub(super) const MAX_LEARNED_FLOWS: usize = 200_000;

/// Whether established flows get connected sockets here (logged either way).
pub(super) fn use_connected_flows() -> bool {
    let connected_flows = flows::supported();
    if connected_flows {
        flows::raise_descriptor_limit();
        tracing::info!(
            "rtc: established UDP flows get a connected socket read by their media worker"
        );
    } else {
        tracing::info!(
            "rtc: every datagram goes through the shared media socket (connected flow sockets \
             need Linux >= 6.13, which finds them by 4-tuple hash)"
        );
    }
    connected_flows
}

/// The media plane's UDP sockets, one per served local IP.
pub(super) struct UdpSockets {
    /// Advertised UDP address → its socket (what the workers send on).
    pub(super) sockets: HashMap<SocketAddr, Arc<UdpSocket>>,
    /// Advertised UDP address → the notes channel of its socket's receive thread.
    pub(super) flow_notes: HashMap<SocketAddr, crossbeam_channel::Sender<FlowNote>>,
    /// Per socket: the socket, its advertised address, and the receive thread's notes.
    pub(super) bound: Vec<(
        Arc<UdpSocket>,
        Option<SocketAddr>,
        crossbeam_channel::Receiver<FlowNote>,
    )>,
}

/// Binds one UDP socket per served local IP; each socket's receive thread learns its flows
/// from the workers' notes.
pub(super) fn bind_udp_sockets(
    local_ips: &[IpAddr],
    advertised: &[Advertised],
    udp_port: u16,
    connected_flows: bool,
) -> Result<UdpSockets, NetError> {
    let mut sockets = HashMap::new();
    let mut flow_notes = HashMap::new();
    let mut bound = Vec::new();
    for ip in local_ips {
        let socket = Arc::new(bind_udp(SocketAddr::new(*ip, udp_port), connected_flows)?);
        let (notes, notes_rx) = crossbeam_channel::unbounded();
        for a in advertised
            .iter()
            .filter(|a| a.protocol == Protocol::Udp && a.local_ip == *ip)
        {
            sockets.insert(a.address, socket.clone());
            flow_notes.insert(a.address, notes.clone());
        }
        bound.push((socket, advertised_udp(advertised, *ip), notes_rx));
    }
    Ok(UdpSockets {
        sockets,
        flow_notes,
        bound,
    })
}

pub(super) fn advertised_udp(advertised: &[Advertised], ip: IpAddr) -> Option<SocketAddr> {
    advertised
        .iter()
        .find(|a| a.protocol == Protocol::Udp && a.local_ip == ip)
        .map(|a| a.address)
}

/// The shared media socket of `addr`. With connected flows it needs `SO_REUSEPORT`, which
/// would also let a second daemon bind the port unnoticed: a plain bind first proves the port
/// is free, so that mistake still fails with "address in use".
pub(super) fn bind_udp(addr: SocketAddr, connected_flows: bool) -> Result<UdpSocket, NetError> {
    let err = |source| NetError::BindUdp { addr, source };
    if connected_flows {
        drop(UdpSocket::bind(addr).map_err(err)?);
    }
    let socket = flows::bound_udp_socket(addr, connected_flows).map_err(err)?;
    // Failures here are only warnings: Linux silently caps the size anyway.
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::warn!("SO_RCVBUF on {addr}: {e}");
    }
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::warn!("SO_SNDBUF on {addr}: {e}");
    }
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(IDLE_WAKEUP)).map_err(err)?;
    Ok(socket)
}

/// Receive loop of one UDP socket: route each datagram to its worker or drop it. Binding
/// requests go to the worker their ufrag names; anything else only along a flow a worker
/// learned (after authenticating a check from it), which the workers' notes announce.
pub(super) fn run_udp_receiver(
    socket: &UdpSocket,
    local: SocketAddr,
    workers: &[WorkerQueue<Input>],
    notes: &crossbeam_channel::Receiver<FlowNote>,
    stopping: &AtomicBool,
) {
    let mut learned = LearnedFlows::new(MAX_LEARNED_FLOWS);
    let mut batch = RecvBatch::new();
    let mut dropped: u64 = 0;
    while !stopping.load(Ordering::Relaxed) {
        // Workers that got datagrams of this batch, woken once after it (bit per worker;
        // workers past 64 are woken per datagram).
        let mut to_wake: u64 = 0;
        let mut first = true;
        let result = batch.recv(socket, |peer, data| {
            // Notes sent before this batch arrived (a worker learns a flow before it answers
            // the check that makes the client send DTLS) are applied before it is routed.
            if std::mem::take(&mut first) {
                for note in notes.try_iter() {
                    learned.apply(note);
                }
            }
            let worker = match stun::local_ufrag(&data).and_then(worker_of_ufrag) {
                Some(worker) if worker < workers.len() => worker,
                _ => match learned.get(&peer) {
                    Some(worker) => worker,
                    None => {
                        dropped += 1;
                        if dropped.is_power_of_two() {
                            tracing::debug!(%peer, dropped, "dropping datagrams from unknown peers");
                        }
                        return;
                    }
                },
            };
            let datagram = Datagram {
                local,
                peer,
                protocol: Protocol::Udp,
                data,
            };
            let queue = &workers[worker];
            let sent = if worker < 64 {
                to_wake |= 1 << worker;
                queue.try_send_quietly(Input::Datagram(datagram))
            } else {
                queue.try_send(Input::Datagram(datagram))
            };
            if let Err(TrySendError::Full(_)) = sent {
                dropped += 1;
            }
        });
        if first {
            // Nothing arrived: keep the table current anyway.
            for note in notes.try_iter() {
                learned.apply(note);
            }
        }
        while to_wake != 0 {
            let worker = to_wake.trailing_zeros() as usize;
            workers[worker].wake();
            to_wake &= to_wake - 1;
        }
        match result {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => tracing::debug!("udp receive error: {e}"),
        }
    }
}

/// The worker index encoded in the first two (hex) characters of our ufrags.
pub(super) fn worker_of_ufrag(ufrag: &str) -> Option<usize> {
    usize::from_str_radix(ufrag.get(..2)?, 16).ok()
}
