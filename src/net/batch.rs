//! Batched UDP I/O for the media sockets: `recvmmsg` and `sendmmsg` (Linux), one system call
//! per batch of datagrams instead of one per datagram.
//!
//! Owns: the only `unsafe` code of the media path, the `mmsghdr`/`iovec`/`sockaddr` plumbing.
//! Received datagrams land in slots of a shared receive arena and are handed out as
//! `BytesMut` views of it, so receiving allocates once per arena (64 datagrams), not per
//! datagram. The header arrays are reused between calls; nothing here allocates per datagram.
//!
//! Written on `libc` directly: nix's `recvmmsg`/`sendmmsg` wrappers tie every buffer to one
//! lifetime, which forces a fresh slice array per call.
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

use bytes::BytesMut;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Room per received datagram (larger datagrams are truncated and dropped).
pub const SLOT: usize = 2048;
/// Slots per receive arena.
const ARENA_SLOTS: usize = 64;

/// Receives up to [`BATCH`] datagrams per call.
pub struct RecvBatch {
    arena: BytesMut,
    headers: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
    addresses: Vec<libc::sockaddr_storage>,
}

// SAFETY: the raw pointers inside `headers`/`iovecs` are rewritten before every call and only
// point into memory owned by the same value.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    pub fn new() -> Self {
        Self {
            arena: BytesMut::new(),
            // SAFETY: all-zero is a valid mmsghdr/iovec/sockaddr_storage (null pointers, zero
            // lengths); every field used is set before a call.
            headers: unsafe { zeroed_batch() },
            iovecs: unsafe { zeroed_batch() },
            addresses: unsafe { zeroed_batch() },
        }
    }

    /// Blocks (up to the socket's read timeout) for at least one datagram, then takes what is
    /// queued, up to [`BATCH`]; `each` gets every datagram with its source.
    pub fn recv(
        &mut self,
        socket: &UdpSocket,
        mut each: impl FnMut(SocketAddr, BytesMut),
    ) -> io::Result<usize> {
        if self.arena.len() < BATCH * SLOT {
            // The previous arena stays alive as long as datagrams handed out from it.
            let mut arena = BytesMut::with_capacity(ARENA_SLOTS * SLOT);
            arena.resize(ARENA_SLOTS * SLOT, 0);
            self.arena = arena;
        }
        let base = self.arena.as_mut_ptr();
        for i in 0..BATCH {
            self.iovecs[i] = libc::iovec {
                // SAFETY: slot i lies within the arena's initialised length (checked above).
                iov_base: unsafe { base.add(i * SLOT) }.cast(),
                iov_len: SLOT,
            };
            point(
                &mut self.headers[i],
                (&raw mut self.addresses[i]).cast(),
                std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
                &raw mut self.iovecs[i],
            );
        }
        // SAFETY: every header points at live buffers owned by `self` for the whole call.
        let received = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        let received = received as usize;
        for i in 0..received {
            let mut slot = self.arena.split_to(SLOT);
            let header = &self.headers[i];
            if header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                continue; // larger than any media datagram we accept
            }
            slot.truncate(header.msg_len as usize);
            if let Some(peer) = socket_addr(&self.addresses[i]) {
                each(peer, slot);
            }
        }
        Ok(received)
    }
}

/// Sends datagrams from one socket with `sendmmsg`, [`BATCH`] per call.
pub struct SendBatch {
    headers: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
    addresses: Vec<socket2::SockAddr>,
}

// SAFETY: as for `RecvBatch`; the pointers are only valid during `send`.
unsafe impl Send for SendBatch {}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    pub fn new() -> Self {
        Self {
            // SAFETY: all-zero is a valid mmsghdr/iovec.
            headers: unsafe { zeroed_batch() },
            iovecs: unsafe { zeroed_batch() },
            addresses: Vec::with_capacity(BATCH),
        }
    }

    /// Sends every `(destination, payload)`; a datagram the kernel refuses is skipped (and
    /// counted), the rest still go out. Returns how many were refused.
    pub fn send<'a>(
        &mut self,
        socket: &UdpSocket,
        datagrams: impl Iterator<Item = (SocketAddr, &'a [u8])>,
    ) -> usize {
        let mut refused = 0;
        let mut datagrams = datagrams.peekable();
        while datagrams.peek().is_some() {
            self.addresses.clear();
            let mut count = 0;
            for (peer, payload) in datagrams.by_ref().take(BATCH) {
                self.addresses.push(socket2::SockAddr::from(peer));
                self.iovecs[count] = libc::iovec {
                    iov_base: payload.as_ptr().cast_mut().cast(),
                    iov_len: payload.len(),
                };
                count += 1;
            }
            for i in 0..count {
                point(
                    &mut self.headers[i],
                    self.addresses[i].as_ptr().cast_mut().cast(),
                    self.addresses[i].len(),
                    &raw mut self.iovecs[i],
                );
            }
            let mut sent = 0;
            while sent < count {
                // SAFETY: headers [sent, count) point at addresses and payloads that outlive
                // the call (payloads are borrowed for 'a, addresses owned by self).
                let result = unsafe {
                    libc::sendmmsg(
                        socket.as_raw_fd(),
                        self.headers.as_mut_ptr().add(sent),
                        (count - sent) as libc::c_uint,
                        0,
                    )
                };
                if result < 0 {
                    let error = io::Error::last_os_error();
                    if error.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    // The first remaining datagram failed: skip it, send the rest.
                    tracing::debug!("udp send failed: {error}");
                    refused += 1;
                    sent += 1;
                } else {
                    sent += result as usize;
                }
            }
        }
        refused
    }
}

/// [`BATCH`] all-zero values of a C struct.
///
/// # Safety
///
/// All-zero bytes must be a valid `T` (plain C structs of integers and pointers).
unsafe fn zeroed_batch<T: Copy>() -> Vec<T> {
    // SAFETY: the caller guarantees all-zero is a valid `T`.
    vec![unsafe { MaybeUninit::<T>::zeroed().assume_init() }; BATCH]
}

/// Points `header` at one address and one buffer (no control data).
fn point(
    header: &mut libc::mmsghdr,
    name: *mut libc::c_void,
    namelen: libc::socklen_t,
    iov: *mut libc::iovec,
) {
    header.msg_len = 0;
    let header = &mut header.msg_hdr;
    header.msg_name = name;
    header.msg_namelen = namelen;
    header.msg_iov = iov;
    header.msg_iovlen = 1;
    header.msg_control = std::ptr::null_mut();
    header.msg_controllen = 0;
    header.msg_flags = 0;
}

/// A kernel socket address as a std one (IPv4 and IPv6 only).
fn socket_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let v4 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                u32::from_be(v4.sin_addr.s_addr).into(),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let v6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                v6.sin6_addr.s6_addr.into(),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_batch_round_trips_over_loopback() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..70u8).map(|i| vec![i; 10 + i as usize]).collect();
        let refused = SendBatch::new().send(&sender, payloads.iter().map(|p| (to, p.as_slice())));
        assert_eq!(refused, 0);

        let mut batch = RecvBatch::new();
        let mut got: Vec<(SocketAddr, BytesMut)> = Vec::new();
        while got.len() < payloads.len() {
            batch
                .recv(&receiver, |peer, data| got.push((peer, data)))
                .unwrap();
        }
        for (i, (peer, data)) in got.iter().enumerate() {
            assert_eq!(*peer, sender.local_addr().unwrap());
            assert_eq!(&data[..], &payloads[i][..], "datagram {i}");
        }
    }

    #[test]
    fn refused_datagrams_do_not_stop_the_batch() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        // An IPv6 destination on an IPv4 socket is refused by the kernel.
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        let batch = [(to, &b"one"[..]), (v6, &b"refused"[..]), (to, &b"two"[..])];
        let refused = SendBatch::new().send(&sender, batch.into_iter());
        assert_eq!(refused, 1);
        let mut got = Vec::new();
        let mut receive = RecvBatch::new();
        while got.len() < 2 {
            receive
                .recv(&receiver, |_, data| got.push(data.to_vec()))
                .unwrap();
        }
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec()]);
    }
}
