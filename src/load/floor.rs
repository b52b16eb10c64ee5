//! The floor: the least work any SFU must do per forwarded packet, on the same machine and
//! under the same load shape as an rtcd run. One thread (`floor-fwd`): `recvmmsg` → SRTP
//! AES-GCM decrypt once → per receiver copy + re-encrypt → `sendmmsg`. No ICE, DTLS, RTCP,
//! interceptors or signaling. Its participants are plain UDP sockets with pre-shared keys,
//! sending and checking the same packets (sizes, rates, embedded send times) as the WebRTC
//! peers of an rtcd run; its CPU is measured from `/proc` exactly as the daemon's.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::LoadError;
use super::peer::{AUDIO_INTERVAL, AUDIO_PAYLOAD, PeerStatus, VIDEO_PAYLOAD};
use super::report::{self, CpuProbe, RunFacts, Summary};
use super::scenario::Scenario;
use crate::net::batch::{BATCH, RecvBatch, SLOT, SendBatch};
use crate::sfu::srtp_gcm::SrtpGcm;

/// Name of the forwarding thread (what the CPU accounting reads).
pub const FORWARDER_THREAD: &str = "floor-fwd";
const VIDEO_FPS: u64 = 15;

/// Who a datagram's sender is and who gets copies.
struct Route {
    from: SrtpGcm,
    call: usize,
}

struct Receiver {
    addr: SocketAddr,
    to: SrtpGcm,
}

/// The forwarder's tables (built before it starts; immutable while it runs).
struct Tables {
    routes: HashMap<SocketAddr, Route>,
    calls: Vec<Vec<Receiver>>,
}

fn forward(socket: &UdpSocket, tables: &Tables, stop: &AtomicBool) {
    let mut receive = RecvBatch::new();
    let mut send = SendBatch::new();
    let mut out = vec![0u8; BATCH * SLOT];
    let mut queued: Vec<(SocketAddr, usize)> = Vec::with_capacity(BATCH);
    let flush = |send: &mut SendBatch, out: &[u8], queued: &mut Vec<(SocketAddr, usize)>| {
        send.send(
            socket,
            queued
                .iter()
                .enumerate()
                .map(|(slot, (addr, len))| (*addr, &out[slot * SLOT..slot * SLOT + len])),
        );
        queued.clear();
    };
    while !stop.load(Ordering::Relaxed) {
        let _ = receive.recv(socket, |peer, mut data| {
            let Some(route) = tables.routes.get(&peer) else {
                return;
            };
            let Some(plain) = route.from.unprotect(&mut data, 0) else {
                return;
            };
            for receiver in &tables.calls[route.call] {
                if receiver.addr == peer {
                    continue;
                }
                if queued.len() == BATCH {
                    flush(&mut send, &out, &mut queued);
                }
                let slot = &mut out[queued.len() * SLOT..(queued.len() + 1) * SLOT];
                slot[..plain].copy_from_slice(&data[..plain]);
                if let Some(len) = receiver.to.protect(slot, plain, 0) {
                    queued.push((receiver.addr, len));
                }
            }
        });
        if !queued.is_empty() {
            flush(&mut send, &out, &mut queued);
        }
    }
}

/// One participant's socket and keys.
struct Participant {
    socket: Arc<tokio::net::UdpSocket>,
    /// Encrypts what it sends (the forwarder holds the twin).
    send: SrtpGcm,
    /// Decrypts what it receives.
    receive: SrtpGcm,
    speaker: bool,
    screen_bps: Option<u64>,
}

/// Runs the scenario through the floor forwarder.
pub async fn run(
    scenario: &Scenario,
    interrupted: CancellationToken,
) -> Result<Summary, LoadError> {
    scenario.validate()?;
    let io = |e: std::io::Error| LoadError::Connect(format!("floor socket: {e}"));
    let forwarder = UdpSocket::bind((scenario.bind_ip, 0)).map_err(io)?;
    forwarder
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(io)?;
    let forwarder_addr = forwarder.local_addr().map_err(io)?;

    let plans = scenario.plans();
    let mut call_index: HashMap<String, usize> = HashMap::new();
    let mut tables = Tables {
        routes: HashMap::new(),
        calls: Vec::new(),
    };
    let mut participants = Vec::new();
    for plan in &plans {
        let socket = tokio::net::UdpSocket::bind((scenario.bind_ip, 0))
            .await
            .map_err(io)?;
        let addr = socket.local_addr().map_err(io)?;
        let (send_key, send_salt): ([u8; 16], [u8; 12]) = (rand::random(), rand::random());
        let (receive_key, receive_salt): ([u8; 16], [u8; 12]) = (rand::random(), rand::random());
        let next = call_index.len();
        let call = *call_index.entry(plan.call_id.clone()).or_insert(next);
        if call == tables.calls.len() {
            tables.calls.push(Vec::new());
        }
        tables.calls[call].push(Receiver {
            addr,
            to: SrtpGcm::new(&receive_key, &receive_salt),
        });
        tables.routes.insert(
            addr,
            Route {
                from: SrtpGcm::new(&send_key, &send_salt),
                call,
            },
        );
        participants.push(Participant {
            socket: Arc::new(socket),
            send: SrtpGcm::new(&send_key, &send_salt),
            receive: SrtpGcm::new(&receive_key, &receive_salt),
            speaker: plan.speaker,
            screen_bps: plan.screen_bps,
        });
    }

    let stop_forwarder = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop_forwarder.clone();
        std::thread::Builder::new()
            .name(FORWARDER_THREAD.into())
            .spawn(move || forward(&forwarder, &tables, &stop))
            .map_err(io)?
    };

    let epoch = Instant::now();
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = CancellationToken::new();
    let statuses: Vec<Arc<PeerStatus>> = participants.iter().map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    for (participant, status) in participants.into_iter().zip(&statuses) {
        status.connected.store(true, Ordering::Relaxed);
        tasks.push(tokio::spawn(participant_loop(
            participant,
            forwarder_addr,
            epoch,
            measuring.clone(),
            stop.clone(),
            status.clone(),
        )));
    }

    let started = Instant::now();
    let mut partial = false;
    tokio::select! {
        _ = interrupted.cancelled() => partial = true,
        _ = tokio::time::sleep(scenario.warmup) => {}
    }
    let (start, end, window) = report::steady_window(
        scenario,
        &statuses,
        &measuring,
        &interrupted,
        CpuProbe::OwnThreads(FORWARDER_THREAD),
        &mut partial,
    )
    .await;

    stop.cancel();
    for task in tasks {
        let _ = task.await;
    }
    stop_forwarder.store(true, Ordering::Relaxed);
    let _ = thread.join();
    let facts = RunFacts {
        connected_after: started.duration_since(epoch),
        window,
        partial,
        baseline_rss_kib: None,
    };
    Ok(Summary::from_peers(
        scenario, "floor", &plans, &statuses, &start, &end, &facts,
    ))
}

/// Sends (when speaking/sharing) and receives for one participant.
async fn participant_loop(
    participant: Participant,
    forwarder: SocketAddr,
    epoch: Instant,
    measuring: Arc<AtomicBool>,
    stop: CancellationToken,
    status: Arc<PeerStatus>,
) {
    let ssrc: u32 = rand::random();
    let mut seq: u16 = 0;
    let mut audio = tokio::time::interval(AUDIO_INTERVAL);
    let mut video = tokio::time::interval(Duration::from_millis(1_000 / VIDEO_FPS));
    let packets_per_frame = participant.screen_bps.map_or(0, |bps| {
        (bps / VIDEO_FPS / (VIDEO_PAYLOAD as u64 * 8)).max(1)
    });
    let mut out = vec![0u8; SLOT];
    let mut buf = vec![0u8; SLOT];
    let mut picture_id: u16 = 0;
    let mut send = |size: usize, pt: u8, out: &mut [u8]| {
        seq = seq.wrapping_add(1);
        let sent_us = epoch.elapsed().as_micros() as u64;
        out[0] = 0x80;
        out[1] = pt;
        out[2..4].copy_from_slice(&seq.to_be_bytes());
        out[4..8].copy_from_slice(&((sent_us * 48 / 1_000) as u32).to_be_bytes());
        out[8..12].copy_from_slice(&ssrc.to_be_bytes());
        out[12 + size - 8..12 + size].copy_from_slice(&sent_us.to_be_bytes());
        participant.send.protect(out, 12 + size, 0)
    };
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = audio.tick(), if participant.speaker => {
                if let Some(len) = send(AUDIO_PAYLOAD, 111, &mut out) {
                    let _ = participant.socket.send_to(&out[..len], forwarder).await;
                    status.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ = video.tick(), if packets_per_frame > 0 => {
                picture_id = (picture_id + 1) & 0x7fff;
                for index in 0..packets_per_frame {
                    // The same VP8 descriptor as the SFU load's screen packets: X=1 (S on a
                    // frame's first packet), I=1 with a 15-bit picture ID.
                    out[12] = if index == 0 { 0x90 } else { 0x80 };
                    out[13] = 0x80;
                    out[14..16].copy_from_slice(&(0x8000 | picture_id).to_be_bytes());
                    if let Some(len) = send(VIDEO_PAYLOAD, 96, &mut out) {
                        let _ = participant.socket.send_to(&out[..len], forwarder).await;
                    }
                }
                status.sent.fetch_add(packets_per_frame, Ordering::Relaxed);
            }
            received = participant.socket.recv_from(&mut buf) => {
                let Ok((len, _)) = received else { continue };
                let Some(plain) = participant.receive.unprotect(&mut buf[..len], 0) else { continue };
                let mut bytes = &buf[..plain];
                let Ok(packet) = <rtc::rtp::packet::Packet as rtc::shared::marshal::Unmarshal>::unmarshal(&mut bytes) else { continue };
                let now_us = epoch.elapsed().as_micros() as u64;
                if let Ok(mut stats) = status.stats.lock() {
                    stats.record(&packet, now_us, measuring.load(Ordering::Relaxed));
                }
            }
        }
    }
}
