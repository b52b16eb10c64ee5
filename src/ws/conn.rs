//! One upgraded plugin WebSocket connection.
//!
//! Owns: the `hello` greeting, the read loop (binary frames → codec → hub; bad frames are
//! logged and dropped, the connection stays), the keepalive (ping every 10 s, read deadline
//! 20 s after upgrade and after each pong), the 1 MiB message limit (close 1009) and the writer
//! draining the connection's bounded outbound queue with a per-frame write deadline.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::codec;
use super::hub::{Connected, Hub};
use crate::calls::ConnId;
use crate::limits::LogThrottle;

/// Largest inbound message accepted (larger closes the connection with 1009).
pub const MAX_MESSAGE_SIZE: usize = 1 << 20;
/// Interval of server pings.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Read deadline, extended by each pong.
pub const PONG_DEADLINE: Duration = Duration::from_secs(20);
/// Deadline for writing one frame.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// WebSocket close code for an oversize message.
const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
/// WebSocket close code sent when the daemon shuts down.
const CLOSE_GOING_AWAY: u16 = 1001;
/// How long a shutting-down connection waits for the peer's close frame.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Serves a registered connection until it ends or `shutdown` fires.
pub async fn serve(socket: WebSocket, mut connected: Connected, shutdown: CancellationToken) {
    let hub = connected.hub().clone();
    let conn_id = connected.conn_id.clone();
    let client_id = connected.client_id.clone();
    let mut outbound = connected
        .outbound
        .take()
        .expect("a fresh connection has its queue");
    tracing::info!(conn_id = %conn_id, client_id, "plugin connected");
    hub.hello(&conn_id, &client_id);

    let (mut sink, mut stream) = socket.split();
    let reader_done = CancellationToken::new();
    // The library queues the pong for a received ping; the writer flushes it out.
    let pong_pending = Arc::new(tokio::sync::Notify::new());
    let close_code = Arc::new(std::sync::Mutex::new(None::<(u16, &'static str)>));

    let writer = {
        let reader_done = reader_done.clone();
        let shutdown = shutdown.clone();
        let close_code = close_code.clone();
        let conn_id = conn_id.clone();
        let pong_pending = pong_pending.clone();
        async move {
            let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
            loop {
                let message = tokio::select! {
                    frame = outbound.recv() => match frame {
                        Some(frame) => Message::Binary(frame.into()),
                        None => break,
                    },
                    _ = ping.tick() => Message::Ping(Default::default()),
                    _ = pong_pending.notified() => {
                        if !matches!(tokio::time::timeout(WRITE_DEADLINE, sink.flush()).await, Ok(Ok(()))) {
                            break;
                        }
                        continue;
                    }
                    _ = reader_done.cancelled() => {
                        let close = *close_code.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some((code, reason)) = close {
                            let frame = CloseFrame { code, reason: reason.into() };
                            let _ = tokio::time::timeout(WRITE_DEADLINE, sink.send(Message::Close(Some(frame)))).await;
                        }
                        break;
                    }
                    // Shutdown: deliver what is already queued (e.g. the last `close`), then
                    // a close frame (1001); the reader waits briefly for the peer's close so the
                    // TCP connection ends with a FIN, not a reset that could discard the frames.
                    _ = shutdown.cancelled() => {
                        while let Ok(frame) = outbound.try_recv() {
                            let send = sink.send(Message::Binary(frame.into()));
                            if !matches!(tokio::time::timeout(WRITE_DEADLINE, send).await, Ok(Ok(()))) {
                                break;
                            }
                        }
                        let frame = CloseFrame { code: CLOSE_GOING_AWAY, reason: "server shutting down".into() };
                        let _ = tokio::time::timeout(WRITE_DEADLINE, sink.send(Message::Close(Some(frame)))).await;
                        break;
                    }
                };
                match tokio::time::timeout(WRITE_DEADLINE, sink.send(message)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => {
                        tracing::debug!(conn_id = %conn_id, "write failed: {err}");
                        break;
                    }
                    Err(_) => {
                        tracing::warn!(conn_id = %conn_id, "write deadline exceeded, closing");
                        break;
                    }
                }
            }
        }
    };

    let reader = async {
        let mut deadline = Instant::now() + PONG_DEADLINE;
        let mut shutting_down = false;
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout_at(deadline, stream.next()) => next,
                _ = shutdown.cancelled(), if !shutting_down => {
                    shutting_down = true;
                    deadline = deadline.min(Instant::now() + SHUTDOWN_GRACE);
                    continue;
                }
            };
            let message = match next {
                Err(_) if shutting_down => break,
                Err(_) => {
                    tracing::info!(conn_id = %conn_id, "no pong within {PONG_DEADLINE:?}, closing");
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(err))) => {
                    if is_capacity_error(&err) {
                        tracing::warn!(conn_id = %conn_id, "message over {MAX_MESSAGE_SIZE} bytes, closing");
                        *close_code.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some((CLOSE_MESSAGE_TOO_BIG, "message too big"));
                    } else {
                        tracing::debug!(conn_id = %conn_id, "read failed: {err}");
                    }
                    break;
                }
                Ok(Some(Ok(message))) => message,
            };
            match message {
                Message::Binary(frame) => handle_frame(&hub, &conn_id, &client_id, &frame),
                Message::Text(_) => {
                    tracing::warn!(conn_id = %conn_id, "unexpected text frame ignored")
                }
                Message::Pong(_) => {
                    tracing::trace!(conn_id = %conn_id, "pong");
                    deadline = Instant::now() + PONG_DEADLINE;
                }
                Message::Ping(_) => pong_pending.notify_one(),
                Message::Close(_) => break,
            }
        }
        reader_done.cancel();
    };

    tokio::join!(reader, writer);
    drop(connected);
    tracing::info!(conn_id = %conn_id, client_id, "plugin disconnected");
}

fn handle_frame(hub: &Hub, conn_id: &ConnId, client_id: &str, frame: &[u8]) {
    match codec::decode_client(frame) {
        Ok(message) => hub.handle(conn_id, client_id, message),
        Err(err) => {
            static THROTTLE: LogThrottle = LogThrottle::new();
            if let Some(suppressed) = THROTTLE.allow() {
                tracing::warn!(conn_id = %conn_id, client_id, len = frame.len(), suppressed, "message dropped: {err}")
            }
        }
    }
}

fn is_capacity_error(err: &axum::Error) -> bool {
    use std::error::Error as _;
    let mut source: Option<&(dyn std::error::Error + 'static)> = err.source();
    while let Some(e) = source {
        if let Some(ws) = e.downcast_ref::<tokio_tungstenite::tungstenite::Error>() {
            return matches!(ws, tokio_tungstenite::tungstenite::Error::Capacity(_));
        }
        source = e.source();
    }
    err.to_string().contains("Space limit exceeded") || err.to_string().contains("too long")
}
