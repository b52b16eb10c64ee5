//! Connected UDP sockets for established media flows, read by the worker that owns the flow.
//!
//! Owns: one socket per selected candidate pair, bound to the media port with `SO_REUSEPORT`
//! and connected to the client, so the kernel hands that client's datagrams straight to the
//! worker's poll set instead of the shared socket's receive thread (one thread hand-over and
//! wake-up less per inbound batch). Replies still leave through the shared socket (`sendmmsg`
//! batches across clients). Only on kernels that look connected UDP sockets up by their
//! 4-tuple (Linux ≥ 6.13): older kernels scan every socket of the port per datagram, so there
//! the shared socket keeps receiving everything. A flow without a socket (any failure, the
//! descriptor limit, TURN, ICE-TCP) simply stays on the shared socket.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use bytes::BytesMut;

use super::batch::{BATCH, RecvBatch};

/// Batches read from one flow per worker turn before the others' turn (a flooding client
/// cannot starve the worker's timers); the rest is read next turn.
const MAX_BATCHES_PER_TURN: usize = 4;

/// Kernel release from which connected UDP sockets are found by a 4-tuple hash.
const HASH4_KERNEL: (u32, u32) = (6, 13);

/// Whether this kernel routes datagrams to connected UDP sockets in constant time.
pub fn supported() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|release| kernel_version(&release))
        .is_some_and(|version| version >= HASH4_KERNEL)
}

/// `major.minor` of a kernel release string such as `6.18.44-fc-v1045`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Raises the soft open-files limit to the hard one (one descriptor per connected flow).
pub fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::debug!(
                    "open-files limit not raised: {}",
                    io::Error::last_os_error()
                );
            }
        }
    }
}

/// A socket bound to the shared media socket's address with `SO_REUSEPORT` (required on every
/// socket of the port, the shared one included) and connected to `peer`.
fn connected_socket(bind: SocketAddr, peer: SocketAddr) -> io::Result<UdpSocket> {
    let socket = bound_udp_socket(bind, true)?;
    socket.connect(&peer.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// A UDP socket bound to `addr` (IPv6 only for IPv6 addresses), with `SO_REUSEPORT` set
/// before the bind when `reuse_port`.
pub fn bound_udp_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// One connected flow.
struct FlowSocket {
    socket: UdpSocket,
    /// The advertised address the flow was addressed to (what sessions know it by).
    local: SocketAddr,
    peer: SocketAddr,
}

/// A worker's connected flow sockets; the poll token of each is its slot index.
#[derive(Default)]
pub struct FlowSockets {
    slots: Vec<Option<FlowSocket>>,
    free: Vec<usize>,
    by_flow: HashMap<(SocketAddr, SocketAddr), usize>,
    batch: RecvBatch,
    /// Set after the first refused socket (logged once).
    refused: bool,
}

impl FlowSockets {
    /// Open flows.
    pub fn len(&self) -> usize {
        self.by_flow.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_flow.is_empty()
    }

    /// Opens a socket for the flow `local` (advertised) ↔ `peer`, bound to `bind`, and
    /// registers it; a flow already open is left as it is.
    pub fn open(
        &mut self,
        registry: &mio::Registry,
        local: SocketAddr,
        bind: SocketAddr,
        peer: SocketAddr,
    ) {
        if self.by_flow.contains_key(&(local, peer)) {
            return;
        }
        let socket = match connected_socket(bind, peer) {
            Ok(socket) => socket,
            Err(e) => {
                if !self.refused {
                    self.refused = true;
                    tracing::warn!(%peer, "media flow stays on the shared socket: {e}");
                }
                return;
            }
        };
        let slot = self.free.pop().unwrap_or(self.slots.len());
        let fd = socket.as_raw_fd();
        if let Err(e) = registry.register(
            &mut mio::unix::SourceFd(&fd),
            mio::Token(slot),
            mio::Interest::READABLE,
        ) {
            tracing::warn!(%peer, "media flow socket not polled: {e}");
            self.free.push(slot);
            return;
        }
        if slot == self.slots.len() {
            self.slots.push(None);
        }
        self.slots[slot] = Some(FlowSocket {
            socket,
            local,
            peer,
        });
        self.by_flow.insert((local, peer), slot);
    }

    /// Closes the flow's socket (its client's datagrams go back to the shared socket).
    pub fn close(&mut self, registry: &mio::Registry, local: SocketAddr, peer: SocketAddr) {
        let Some(slot) = self.by_flow.remove(&(local, peer)) else {
            return;
        };
        if let Some(flow) = self.slots[slot].take() {
            let _ = registry.deregister(&mut mio::unix::SourceFd(&flow.socket.as_raw_fd()));
        }
        self.free.push(slot);
    }

    /// Reads what is queued on the flow of poll token `token`; `each` gets the advertised
    /// local address, the peer and the bytes. Polling is edge-triggered, so the socket must be
    /// drained: `true` means it stopped at [`MAX_BATCHES_PER_TURN`] and must be read again.
    pub fn read(
        &mut self,
        token: mio::Token,
        mut each: impl FnMut(SocketAddr, SocketAddr, BytesMut),
    ) -> bool {
        let Some(Some(flow)) = self.slots.get(token.0) else {
            return false;
        };
        let (local, peer) = (flow.local, flow.peer);
        for _ in 0..MAX_BATCHES_PER_TURN {
            match self
                .batch
                .recv(&flow.socket, |from, data| each(local, from, data))
            {
                Ok(received) if received == BATCH => continue,
                Ok(_) => return false,
                // An ICMP error for an earlier send: reported once, the flow goes on.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    tracing::debug!(%peer, "media flow receive error: {e}");
                    return false;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(kernel_version("6.18.44-fc-v1045\n"), Some((6, 18)));
        assert_eq!(kernel_version("6.1.0-28-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("5.15.0"), Some((5, 15)));
        assert_eq!(kernel_version("garbage"), None);
        assert!((6, 13) <= (6, 18) && (6, 1) < HASH4_KERNEL && (5, 19) < HASH4_KERNEL);
    }

    /// The kernel hands a connected client's datagrams to its flow socket and everyone else's
    /// to the shared socket; a closed flow falls back to the shared socket.
    #[test]
    fn a_connected_flow_takes_its_clients_datagrams_from_the_shared_socket() {
        let shared: UdpSocket = bound_udp_socket("127.0.0.1:0".parse().unwrap(), true)
            .unwrap()
            .into();
        shared
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let bind = shared.local_addr().unwrap();
        let advertised: SocketAddr = "203.0.113.7:8443".parse().unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = client.local_addr().unwrap();

        let poll = mio::Poll::new().unwrap();
        let mut flows = FlowSockets::default();
        flows.open(poll.registry(), advertised, bind, peer);
        flows.open(poll.registry(), advertised, bind, peer); // already open: no second socket
        assert_eq!(flows.len(), 1);

        client.send_to(b"from the client", bind).unwrap();
        other.send_to(b"from someone else", bind).unwrap();
        let mut buf = [0u8; 64];
        let (len, from) = shared.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..len], from),
            (&b"from someone else"[..], other.local_addr().unwrap())
        );

        let mut got = Vec::new();
        for _ in 0..50 {
            let more = flows.read(mio::Token(0), |local, from, data| {
                got.push((local, from, data.to_vec()))
            });
            assert!(!more);
            if !got.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(got, [(advertised, peer, b"from the client".to_vec())]);

        flows.close(poll.registry(), advertised, peer);
        assert!(flows.is_empty());
        client.send_to(b"after close", bind).unwrap();
        let (len, from) = shared.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..len], from), (&b"after close"[..], peer));
    }
}
