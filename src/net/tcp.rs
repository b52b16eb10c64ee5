//! ICE-TCP on the media port (RFC 6544 passive candidates, RFC 4571 framing): the fallback
//! when UDP is blocked.
//!
//! Owns: the TCP listeners, per connection a reader that deframes packets and routes the
//! connection to the worker named by the ufrag of its first STUN binding request (connections
//! that send none within 30 s, or junk, are closed), and a writer fed by a bounded queue that
//! drops packets for a slow client instead of blocking the media worker.

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
use crate::sfu::session::Datagram;

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

/// Accepts ICE-TCP connections on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    advertised: SocketAddr,
    workers: Vec<WorkerLink>,
    stop: CancellationToken,
) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
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
            tracing::warn!(%peer, "ice-tcp: {MAX_CONNECTIONS} connections open, refusing another");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let workers = workers.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(why) = connection(stream, peer, advertised, &workers, stop).await {
                tracing::debug!(%peer, "ice-tcp connection closed: {why}");
            }
        });
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    workers: &[WorkerLink],
    stop: CancellationToken,
) -> Result<(), String> {
    let (mut reader, mut writer) = stream.into_split();
    let mut buf = BytesMut::with_capacity(4096);

    // The first frame must be a STUN binding request naming one of our sessions.
    let first = tokio::time::timeout(FIRST_STUN_TIMEOUT, read_frame(&mut reader, &mut buf))
        .await
        .map_err(|_| "no STUN binding request within 30 s".to_owned())??;
    let worker = stun::local_ufrag(&first)
        .and_then(|ufrag| usize::from_str_radix(ufrag.get(..2)?, 16).ok())
        .filter(|w| *w < workers.len())
        .ok_or("first frame is not a binding request for a known worker")?;
    let worker = &workers[worker];

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
            next = read_frame(&mut reader, &mut buf) => match next {
                Ok(frame) => frame,
                Err(why) => break Err(why),
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

/// Reads one RFC 4571 frame (2-byte big-endian length, then the packet).
async fn read_frame(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
) -> Result<BytesMut, String> {
    loop {
        if buf.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
            if len == 0 || len > MAX_FRAME {
                return Err("bad frame length".into());
            }
            if buf.len() >= 2 + len {
                let _ = buf.split_to(2);
                return Ok(buf.split_to(len));
            }
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
