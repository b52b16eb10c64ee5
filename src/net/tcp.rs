//! ICE-TCP on the media port (RFC 6544 passive candidates, RFC 4571 framing): the fallback
//! when UDP is blocked.
//!
//! Owns: the TCP listeners, per connection a reader that deframes packets and routes the
//! connection to the worker named by the ufrag of its first STUN binding request, and a writer
//! fed by a bounded queue that drops packets for a slow client instead of blocking the media
//! worker. Admission (`docs/security.md`): a connection is kept only if its first frame is a
//! binding request for a live session authenticated with that session's ICE password
//! (anything else, or nothing within 30 s, closes it); one address may hold at most
//! `limits.ice_tcp_pending_per_ip` connections that have not authenticated yet; a connection
//! silent for `limits.ice_tcp_idle_timeout_seconds` is closed.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use crossbeam_channel::TrySendError;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::addresses::Protocol;
use super::runtime::{Command, Input, WorkerLink};
use super::stun;
use crate::limits::{Limit, LogThrottle, PerKeySlots};
use crate::metrics::Metrics;
use crate::wire::Datagram;
use crate::wire::credentials::IceCredentials;

/// Time a new connection has to send its first STUN binding request (pion's default).
pub const FIRST_STUN_TIMEOUT: Duration = Duration::from_secs(30);
/// Packets queued per connection for writing; more are dropped.
pub const WRITE_QUEUE: usize = 1024;
/// Connections that have not yet been routed to a session (or are routed and open) at most;
/// further connections are closed at once so junk connections cannot exhaust the daemon.
pub const MAX_CONNECTIONS: usize = 4096;
/// Largest RFC 4571 frame.
const MAX_FRAME: usize = u16::MAX as usize;

/// The write side of a TCP media connection, held by the worker.
pub type TcpWriter = mpsc::Sender<BytesMut>;

/// What decides whether a connection is kept, and where it goes.
#[derive(Clone)]
pub struct Admission {
    pub workers: Vec<WorkerLink>,
    /// ICE credentials of the live sessions.
    pub credentials: IceCredentials,
    /// Connections from one IP address that have not authenticated yet.
    pub pending_per_ip: usize,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
    pub metrics: std::sync::Arc<Metrics>,
}

/// Accepts ICE-TCP connections on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    advertised: SocketAddr,
    admission: Admission,
    stop: CancellationToken,
) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let pending = PerKeySlots::new(admission.pending_per_ip);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::debug!("ice-tcp accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            static THROTTLE: LogThrottle = LogThrottle::new();
            if let Some(suppressed) = THROTTLE.allow() {
                tracing::warn!(%peer, suppressed, "ice-tcp: {MAX_CONNECTIONS} connections open, refusing another");
            }
            continue;
        };
        let Some(unauthenticated) = pending.take(peer.ip()) else {
            admission.metrics.refused(Limit::ice_tcp_pending_per_ip);
            static THROTTLE: LogThrottle = LogThrottle::new();
            if let Some(suppressed) = THROTTLE.allow() {
                tracing::warn!(%peer, suppressed, "ice-tcp: {} connections from this address not yet authenticated (limits.ice_tcp_pending_per_ip), refusing another", admission.pending_per_ip);
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let admission = admission.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(why) =
                connection(stream, peer, advertised, &admission, unauthenticated, stop).await
            {
                tracing::debug!(%peer, "ice-tcp connection closed: {why}");
            }
        });
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    admission: &Admission,
    unauthenticated: crate::limits::Slot<std::net::IpAddr>,
    stop: CancellationToken,
) -> Result<(), String> {
    let (mut reader, mut writer) = stream.into_split();
    let mut buf = BytesMut::with_capacity(4096);

    // The first frame must be a binding request authenticated by a live session.
    let first = tokio::time::timeout(FIRST_STUN_TIMEOUT, read_frame(&mut reader, &mut buf))
        .await
        .map_err(|_| "no STUN binding request within 30 s".to_owned())??;
    let worker = match authenticate(&first, admission) {
        Ok(worker) => worker,
        Err(why) => {
            admission.metrics.refused(Limit::ice_tcp_unauthenticated);
            return Err(why.into());
        }
    };
    drop(unauthenticated);
    let worker = &admission.workers[worker];

    let (tx, mut rx) = mpsc::channel::<BytesMut>(WRITE_QUEUE);
    worker
        .control
        .try_send(Command::TcpOpened {
            local,
            peer,
            writer: tx,
        })
        .map_err(|e| e.to_string())?;
    let write_task = tokio::spawn(async move {
        let mut framed = Vec::with_capacity(2048);
        while let Some(packet) = rx.recv().await {
            framed.clear();
            framed.extend_from_slice(&(packet.len() as u16).to_be_bytes());
            framed.extend_from_slice(&packet);
            if writer.write_all(&framed).await.is_err() {
                return;
            }
        }
    });

    let mut frame = first;
    let result = loop {
        let datagram = Datagram {
            local,
            peer,
            protocol: Protocol::Tcp,
            data: frame,
        };
        match worker.data.try_send(Input::Datagram(datagram)) {
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => break Ok(()),
        }
        frame = tokio::select! {
            next = tokio::time::timeout(admission.idle_timeout, read_frame(&mut reader, &mut buf)) => match next {
                Ok(Ok(frame)) => frame,
                Ok(Err(why)) => break Err(why),
                Err(_) => {
                    admission.metrics.refused(Limit::ice_tcp_idle);
                    break Err(format!("nothing received for {:?}", admission.idle_timeout));
                }
            },
            _ = stop.cancelled() => break Ok(()),
        };
    };
    // Always delivered: the worker must drop its writer (one per opened connection).
    let _ = worker
        .control
        .send_always(Command::TcpClosed { local, peer });
    write_task.abort();
    result
}

/// The worker of the live session whose ICE password authenticates `first` (a binding
/// request), or why the connection is refused.
fn authenticate(first: &[u8], admission: &Admission) -> Result<usize, &'static str> {
    let ufrag = stun::local_ufrag(first).ok_or("first frame is not a STUN binding request")?;
    let password = admission
        .credentials
        .password(ufrag)
        .ok_or("first binding request names no live session")?;
    if !stun::authenticated(first, &password) {
        return Err("first binding request is not authenticated by its session's ICE password");
    }
    usize::from_str_radix(ufrag.get(..2).ok_or("bad ufrag")?, 16)
        .ok()
        .filter(|w| *w < admission.workers.len())
        .ok_or("ufrag names no worker")
}

/// Reads one RFC 4571 frame (2-byte big-endian length, then the packet).
async fn read_frame(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
) -> Result<BytesMut, String> {
    loop {
        if let Some(frame) = split_frame(buf)? {
            return Ok(frame);
        }
        if buf.capacity() - buf.len() < 2048 {
            buf.reserve(4096);
        }
        let n = reader.read_buf(buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
    }
}

/// Takes the first complete RFC 4571 frame off `buf`: `None` until it has arrived whole; an
/// error for a frame length no packet has (0).
pub fn split_frame(buf: &mut BytesMut) -> Result<Option<BytesMut>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
    if len == 0 || len > MAX_FRAME {
        return Err("bad frame length".into());
    }
    if buf.len() < 2 + len {
        return Ok(None);
    }
    let _ = buf.split_to(2);
    Ok(Some(buf.split_to(len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_only_when_whole() {
        let mut buf = BytesMut::from(&[0u8, 3, 1, 2][..]);
        assert_eq!(split_frame(&mut buf), Ok(None));
        buf.extend_from_slice(&[3, 0, 2, 9]);
        assert_eq!(split_frame(&mut buf).unwrap().unwrap(), &[1, 2, 3][..]);
        assert_eq!(split_frame(&mut buf), Ok(None));
        let mut zero = BytesMut::from(&[0u8, 0][..]);
        assert!(split_frame(&mut zero).is_err());
    }
}
