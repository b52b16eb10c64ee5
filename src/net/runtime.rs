//! The media plane's threads and sockets: the [`MediaPlane`] the control plane drives.
//!
//! Owns: binding the UDP media port on every served local IP, one receive thread per socket
//! that routes datagrams to the worker owning their session (STUN ufrag prefix for new flows,
//! then the learned peer address), and one thread per worker running a [`Worker`] shard with its
//! timers; the worker sleeps in its own poll set, which also holds the connected sockets of its
//! established flows ([`flows`]), so their datagrams skip the receive thread. Calls are sharded
//! by call ID so every session of a call lives on one worker.
//! Sessions with SFU-side TURN get one connected socket per TURN server, read by a small
//! tokio task that hands datagrams to the session's worker.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use crossbeam_channel::TrySendError;

use super::addresses::{self, Advertised, Protocol};
use super::batch::{RecvBatch, SendBatch};
use super::flows::{self, FlowSockets};
use super::learned::{FlowNote, LearnedFlows};
use super::plan::{self, AddressPlan};
use super::queue::{self, ControlQueue, WorkerInbox, WorkerQueue};
use super::stun;
use super::tcp::{self, TcpWriter};
use super::turn::{self, TurnServer};
use crate::calls::SessionConfig;
use crate::config::{LimitsConfig, RtcConfig, TurnConfig};
use crate::media::{CloseReason, EventSender, MediaError, MediaEvent, MediaPlane, Signal};
use crate::sfu::relay::RelayTransport;
use crate::sfu::session::{SessionSettings, WallClock};
use crate::sfu::worker::Worker;
use crate::wire::credentials::IceCredentials;
use crate::wire::{Datagram, Transmit};

/// Datagrams queued per worker before the receive thread drops.
pub const WORKER_QUEUE_CAPACITY: usize = 8192;
/// Largest datagram read.
const RECEIVE_BUFFER: usize = 2048;
/// Socket buffer size requested (the kernel caps it at net.core.[rw]mem_max).
pub const SOCKET_BUFFER_BYTES: usize = 16 << 20;
/// How often idle threads check for shutdown.
const IDLE_WAKEUP: Duration = Duration::from_millis(200);
/// Cap of each receive thread's learned-flow table (the oldest flow is evicted when full).
const MAX_LEARNED_FLOWS: usize = 200_000;

/// Media-plane startup failure.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{0}")]
    Address(#[from] addresses::AddressError),
    #[error("failed to bind UDP {addr}: {source}")]
    BindUdp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("failed to listen on TCP {addr}: {source}")]
    BindTcp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("failed to start media thread: {0}")]
    Thread(std::io::Error),
}

/// What a worker thread receives on its datagram queue (dropped when full: media).
pub enum Input {
    Datagram(Datagram),
    /// A datagram from a TURN server on a session's relay socket `local`.
    RelayDatagram {
        local: SocketAddr,
        data: BytesMut,
    },
}

/// What a worker thread receives on its command queue (never dropped: refused to the caller
/// when the queue is full, see [`ControlQueue`]).
pub enum Command {
    Create(Arc<SessionConfig>),
    Close(String),
    Signal(String, Signal),
    /// An ICE-TCP connection routed to this worker, with its write queue.
    TcpOpened {
        local: SocketAddr,
        peer: SocketAddr,
        writer: TcpWriter,
    },
    TcpClosed {
        local: SocketAddr,
        peer: SocketAddr,
    },
    Stop,
}

/// Commands queued per worker before new ones are refused (closes always pass).
pub const COMMAND_QUEUE_CAPACITY: usize = 4096;
/// Commands a worker takes per turn before it reads datagrams again.
const COMMANDS_PER_TURN: usize = 64;

/// The two queues into one worker.
#[derive(Clone)]
pub struct WorkerLink {
    pub data: WorkerQueue<Input>,
    pub control: ControlQueue<Command>,
}

/// The running SFU.
pub struct SfuPlane {
    workers: Vec<WorkerLink>,
    /// session → worker index (control-plane rate, not per packet).
    placement: Mutex<HashMap<String, usize>>,
    stopping: Arc<AtomicBool>,
    tcp_stop: tokio_util::sync::CancellationToken,
    threads: Mutex<Vec<JoinHandle<()>>>,
    advertised: Vec<Advertised>,
}

impl SfuPlane {
    /// Plans addresses, binds the media sockets and starts the threads.
    pub fn start(
        config: &RtcConfig,
        limits: &LimitsConfig,
        events: EventSender,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Arc<Self>, NetError> {
        let AddressPlan {
            local_ips,
            advertised,
            ..
        } = plan::plan(config)?;
        let udp_port = config.ice_port_udp as u16;
        let tcp_port = config.ice_port_tcp as u16;
        log_advertised(&advertised, config);

        let relay_plan = Arc::new(RelayPlan {
            servers: turn::turn_servers(&config.ice_servers, &config.turn, config.enable_ipv6),
            turn: config.turn.clone(),
        });
        let runtime = tokio::runtime::Handle::current();
        let stopping = Arc::new(AtomicBool::new(false));
        let worker_count = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(64);
        let mut threads = Vec::new();
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

        // One socket per served local IP; the advertised UDP address names it for the workers.
        // Each socket's receive thread learns its flows from the workers' notes.
        let mut sockets: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut flow_notes: HashMap<SocketAddr, crossbeam_channel::Sender<FlowNote>> =
            HashMap::new();
        let mut bound = Vec::new();
        for ip in &local_ips {
            let addr = SocketAddr::new(*ip, udp_port);
            let socket = bind_udp(addr, connected_flows)?;
            let socket = Arc::new(socket);
            let (notes, notes_rx) = crossbeam_channel::unbounded();
            for a in advertised
                .iter()
                .filter(|a| a.protocol == Protocol::Udp && a.local_ip == *ip)
            {
                sockets.insert(a.address, socket.clone());
                flow_notes.insert(a.address, notes.clone());
            }
            bound.push((socket, advertised_udp(&advertised, *ip), notes_rx));
        }
        let credentials = IceCredentials::default();

        let mut workers = Vec::new();
        for index in 0..worker_count {
            let (tx, control, rx) =
                queue::with_control(WORKER_QUEUE_CAPACITY, COMMAND_QUEUE_CAPACITY)
                    .map_err(NetError::Thread)?;
            workers.push(WorkerLink {
                data: tx.clone(),
                control,
            });
            let worker = Worker::new(
                index as u8,
                metrics.clone(),
                SessionSettings {
                    candidates: advertised.clone(),
                    nack_buffer_size: config.nack_buffer_size,
                    max_remote_candidates: limits.max_remote_candidates as usize,
                    wall_clock: WallClock {
                        at: Instant::now(),
                        wall: std::time::SystemTime::now(),
                    },
                    stopwatch: Instant::now,
                },
                credentials.clone(),
            );
            let driver = WorkerDriver {
                index,
                sockets: sockets.clone(),
                flow_notes: flow_notes.clone(),
                connected_flows,
                metrics: metrics.clone(),
                events: events.clone(),
                relay_plan: relay_plan.clone(),
                runtime: runtime.clone(),
                own_inputs: tx.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("rtcd-media-{index}"))
                .spawn(move || run_worker(worker, rx, driver))
                .map_err(NetError::Thread)?;
            threads.push(handle);
        }

        for (socket, advertised_addr, notes) in bound {
            let Some(advertised_addr) = advertised_addr else {
                continue;
            };
            let workers: Vec<_> = workers.iter().map(|w| w.data.clone()).collect();
            let stopping = stopping.clone();
            let handle = std::thread::Builder::new()
                .name("rtcd-udp-rx".into())
                .spawn(move || {
                    run_udp_receiver(&socket, advertised_addr, &workers, &notes, &stopping)
                })
                .map_err(NetError::Thread)?;
            threads.push(handle);
        }

        // ICE-TCP: one listener per served IP (must run inside the tokio runtime).
        let tcp_stop = tokio_util::sync::CancellationToken::new();
        for a in advertised.iter().filter(|a| a.protocol == Protocol::Tcp) {
            let addr = SocketAddr::new(a.local_ip, tcp_port);
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(tokio::net::TcpListener::from_std)
                .map_err(|source| NetError::BindTcp { addr, source })?;
            tokio::spawn(tcp::serve(
                listener,
                a.address,
                tcp::Admission {
                    workers: workers.clone(),
                    credentials: credentials.clone(),
                    pending_per_ip: limits.ice_tcp_pending_per_ip as usize,
                    idle_timeout: Duration::from_secs(limits.ice_tcp_idle_timeout_seconds),
                    metrics: metrics.clone(),
                },
                tcp_stop.clone(),
            ));
        }

        Ok(Arc::new(Self {
            workers,
            placement: Mutex::new(HashMap::new()),
            stopping,
            tcp_stop,
            threads: Mutex::new(threads),
            advertised,
        }))
    }

    /// The host candidates sessions advertise.
    pub fn advertised(&self) -> &[Advertised] {
        &self.advertised
    }

    fn worker_of(&self, session_id: &str) -> Option<usize> {
        self.placement
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(session_id)
            .copied()
    }
}

fn advertised_udp(advertised: &[Advertised], ip: IpAddr) -> Option<SocketAddr> {
    advertised
        .iter()
        .find(|a| a.protocol == Protocol::Udp && a.local_ip == ip)
        .map(|a| a.address)
}

fn log_advertised(advertised: &[Advertised], config: &RtcConfig) {
    for a in advertised {
        tracing::info!(protocol = ?a.protocol, local_ip = %a.local_ip, advertised = %a.address, "rtc: advertising host candidate");
    }
    let reachable = advertised
        .iter()
        .any(|a| !addresses::is_private(a.address.ip()));
    if !reachable && config.ice_host_override.is_empty() {
        tracing::warn!(
            "rtc: every advertised media address is private, loopback or a container bridge address; \
             clients on other networks cannot reach it. Set rtc.ice_host_override \
             (RTCD_RTC_ICEHOSTOVERRIDE) to the public IP or hostname clients should use."
        );
    }
}

/// The shared media socket of `addr`. With connected flows it needs `SO_REUSEPORT`, which
/// would also let a second daemon bind the port unnoticed: a plain bind first proves the port
/// is free, so that mistake still fails with "address in use".
fn bind_udp(addr: SocketAddr, connected_flows: bool) -> Result<UdpSocket, NetError> {
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
fn run_udp_receiver(
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
fn worker_of_ufrag(ufrag: &str) -> Option<usize> {
    usize::from_str_radix(ufrag.get(..2)?, 16).ok()
}

/// SFU-side TURN servers and their credential settings.
struct RelayPlan {
    servers: Vec<TurnServer>,
    turn: TurnConfig,
}

/// A session's socket toward a TURN server and the task reading it.
struct RelaySocket {
    socket: UdpSocket,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for RelaySocket {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// What a worker thread does I/O with.
struct WorkerDriver {
    /// This worker's index (named in flow notes).
    index: usize,
    sockets: HashMap<SocketAddr, Arc<UdpSocket>>,
    /// Per advertised UDP address, the notes channel of its receive thread.
    flow_notes: HashMap<SocketAddr, crossbeam_channel::Sender<FlowNote>>,
    /// Whether established flows get connected sockets ([`flows`]).
    connected_flows: bool,
    metrics: Arc<crate::metrics::Metrics>,
    events: EventSender,
    relay_plan: Arc<RelayPlan>,
    runtime: tokio::runtime::Handle,
    /// This worker's own queue, for the relay sockets' reader tasks.
    own_inputs: WorkerQueue<Input>,
}

impl WorkerDriver {
    /// Opens one relay socket per TURN server for a new session.
    fn open_relays(
        &self,
        session_id: &str,
        relay_sockets: &mut HashMap<SocketAddr, RelaySocket>,
    ) -> Vec<RelayTransport> {
        let mut transports = Vec::new();
        for server in &self.relay_plan.servers {
            match self.open_relay_socket(server.address) {
                Ok((local, socket)) => {
                    relay_sockets.insert(local, socket);
                    let credentials = server.credentials(session_id, &self.relay_plan.turn);
                    transports.push(RelayTransport {
                        local,
                        server: server.address,
                        url: server.url.clone(),
                        username: credentials.username,
                        password: credentials.password,
                    });
                }
                Err(e) => {
                    tracing::warn!(session_id, url = %server.url, "TURN socket not opened: {e}")
                }
            }
        }
        transports
    }

    /// A UDP socket connected to `server` (only the server's datagrams arrive on it).
    fn open_relay_socket(&self, server: SocketAddr) -> std::io::Result<(SocketAddr, RelaySocket)> {
        let any: IpAddr = if server.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let socket = UdpSocket::bind((any, 0))?;
        socket.connect(server)?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let reader_socket = socket.try_clone()?;
        let inputs = self.own_inputs.clone();
        let reader = self.runtime.spawn(async move {
            let socket = match tokio::net::UdpSocket::from_std(reader_socket) {
                Ok(socket) => socket,
                Err(e) => {
                    tracing::warn!(%local, "TURN socket not readable: {e}");
                    return;
                }
            };
            let mut buf = vec![0u8; RECEIVE_BUFFER];
            loop {
                match socket.recv(&mut buf).await {
                    Ok(len) => {
                        let data = BytesMut::from(&buf[..len]);
                        if let Err(TrySendError::Disconnected(_)) =
                            inputs.try_send(Input::RelayDatagram { local, data })
                        {
                            return;
                        }
                    }
                    // ICMP errors from the server surface here; the TURN client retransmits.
                    Err(e) => tracing::debug!(%local, "TURN socket receive: {e}"),
                }
            }
        });
        Ok((local, RelaySocket { socket, reader }))
    }
}

/// Pending transmits are sent once this many are queued, not only at the end of a turn: a
/// turn can read hundreds of datagrams, and the first copies would otherwise wait for the
/// last (latency), while `sendmmsg` batches of [`super::batch::BATCH`] stay full.
const SEND_AT: usize = 2 * super::batch::BATCH;

/// Where a worker's transmits go.
struct Outputs<'a> {
    sockets: &'a HashMap<SocketAddr, Arc<UdpSocket>>,
    tcp_writers: &'a HashMap<(SocketAddr, SocketAddr), TcpWriter>,
    relay_sockets: &'a HashMap<SocketAddr, RelaySocket>,
}

impl Outputs<'_> {
    /// Sends the transmits if at least [`SEND_AT`] are pending.
    fn send_some(&self, transmits: &mut Vec<Transmit>, batch: &mut SendBatch) {
        if transmits.len() >= SEND_AT {
            self.send(transmits, batch);
        }
    }

    /// Sends every pending transmit: media sockets in `sendmmsg` batches, ICE-TCP to the
    /// connection's writer, relayed ones through their TURN socket.
    fn send(&self, transmits: &mut Vec<Transmit>, batch: &mut SendBatch) {
        for (local, socket) in self.sockets {
            let mine = transmits
                .iter()
                .filter(|t| t.protocol == Protocol::Udp && t.local == *local)
                .map(|t| (t.peer, &t.data[..]));
            batch.send(socket, mine);
        }
        for transmit in transmits.drain(..) {
            match (transmit.protocol, self.sockets.get(&transmit.local)) {
                (Protocol::Udp, Some(_)) => {} // sent above
                (Protocol::Tcp, _) => {
                    if let Some(writer) = self.tcp_writers.get(&(transmit.local, transmit.peer)) {
                        // A full queue (slow client) drops the packet; the worker never waits.
                        let _ = writer.try_send(transmit.data);
                    }
                }
                (Protocol::Udp, None) => match self.relay_sockets.get(&transmit.local) {
                    Some(relay) => {
                        if let Err(e) = relay.socket.send(&transmit.data) {
                            tracing::debug!(peer = %transmit.peer, "TURN send failed: {e}");
                        }
                    }
                    None => tracing::debug!(local = %transmit.local, "no socket for transmit"),
                },
            }
        }
    }
}

/// Loop of one worker thread.
fn run_worker(mut worker: Worker, mut inputs: WorkerInbox<Input, Command>, driver: WorkerDriver) {
    let WorkerDriver {
        ref sockets,
        ref events,
        connected_flows,
        ..
    } = driver;
    // Where each advertised UDP address is bound (connected flows bind the same address).
    let binds: HashMap<SocketAddr, SocketAddr> = sockets
        .iter()
        .filter_map(|(advertised, socket)| Some((*advertised, socket.local_addr().ok()?)))
        .collect();
    let mut tcp_writers: HashMap<(SocketAddr, SocketAddr), TcpWriter> = HashMap::new();
    let mut relay_sockets: HashMap<SocketAddr, RelaySocket> = HashMap::new();
    let mut flow_sockets = FlowSockets::default();
    let mut ready = mio::Events::with_capacity(256);
    // Flows left with queued datagrams last turn (read again without waiting).
    let mut unfinished: Vec<mio::Token> = Vec::new();
    let mut send_batch = SendBatch::new();
    loop {
        let now = Instant::now();
        let deadline = match worker.next_timeout() {
            _ if !unfinished.is_empty() => now,
            Some(timer) => timer.min(now + IDLE_WAKEUP),
            None => now + IDLE_WAKEUP,
        };
        inputs.wait(deadline, &mut ready);
        let tokens = std::mem::take(&mut unfinished)
            .into_iter()
            .chain(ready.iter().map(|event| event.token()))
            .filter(|token| *token != queue::WAKE_TOKEN);
        let outputs = Outputs {
            sockets,
            tcp_writers: &tcp_writers,
            relay_sockets: &relay_sockets,
        };
        for token in tokens {
            let more = flow_sockets.read(token, |local, peer, data| {
                let datagram = Datagram {
                    local,
                    peer,
                    protocol: Protocol::Udp,
                    data,
                };
                worker.datagram(Instant::now(), datagram);
                outputs.send_some(&mut worker.out.transmits, &mut send_batch);
            });
            if more && !unfinished.contains(&token) {
                unfinished.push(token);
            }
        }
        // Bounded work per turn so timers are never starved; commands first, so a datagram
        // flood cannot delay them.
        for command in std::iter::from_fn(|| inputs.try_command()).take(COMMANDS_PER_TURN) {
            let now = Instant::now();
            match command {
                Command::TcpOpened {
                    local,
                    peer,
                    writer,
                } => {
                    tcp_writers.insert((local, peer), writer);
                }
                Command::TcpClosed { local, peer } => {
                    tcp_writers.remove(&(local, peer));
                }
                Command::Create(config) => {
                    let relays = driver.open_relays(&config.session_id, &mut relay_sockets);
                    let locals: Vec<SocketAddr> = relays.iter().map(|r| r.local).collect();
                    if let Err(err) = worker.create(now, config.clone(), relays) {
                        tracing::warn!(session_id = %config.session_id, "media session not created: {err}");
                        for local in locals {
                            relay_sockets.remove(&local);
                        }
                        // The control plane registered the session: it must learn it is gone.
                        worker.out.events.push(MediaEvent::Closed {
                            session_id: config.session_id.clone(),
                            reason: CloseReason::Failed(format!(
                                "media session not created: {err}"
                            )),
                        });
                    }
                }
                Command::Close(session_id) => worker.close(now, &session_id, CloseReason::Leave),
                Command::Signal(session_id, signal) => worker.signal(now, &session_id, signal),
                Command::Stop => return,
            }
        }
        for input in inputs.try_iter().take(256) {
            let now = Instant::now();
            match input {
                Input::Datagram(datagram) => {
                    worker.datagram(now, datagram);
                    let outputs = Outputs {
                        sockets,
                        tcp_writers: &tcp_writers,
                        relay_sockets: &relay_sockets,
                    };
                    outputs.send_some(&mut worker.out.transmits, &mut send_batch);
                }
                Input::RelayDatagram { local, data } => worker.relay_datagram(now, local, data),
            }
        }
        worker.handle_timeout(Instant::now());
        let outputs = Outputs {
            sockets,
            tcp_writers: &tcp_writers,
            relay_sockets: &relay_sockets,
        };
        outputs.send(&mut worker.out.transmits, &mut send_batch);
        for local in worker.out.released_relay_sockets.drain(..) {
            relay_sockets.remove(&local);
        }
        for (local, peer) in worker.out.learned_flows.drain(..) {
            if let Some(notes) = driver.flow_notes.get(&local) {
                let _ = notes.send(FlowNote::Learn {
                    peer,
                    worker: driver.index,
                });
            }
        }
        let open_flows = flow_sockets.len();
        for (local, peer) in worker.out.released_flows.drain(..) {
            flow_sockets.close(inputs.registry(), local, peer);
            if let Some(notes) = driver.flow_notes.get(&local) {
                let _ = notes.send(FlowNote::Forget { peer });
            }
        }
        for (local, peer) in worker.out.connect_flows.drain(..) {
            if let (true, Some(bind)) = (connected_flows, binds.get(&local)) {
                flow_sockets.open(inputs.registry(), local, *bind, peer);
            }
        }
        if flow_sockets.len() != open_flows {
            let change = flow_sockets.len() as i64 - open_flows as i64;
            driver.metrics.quality.connected_flows.inc_by(change);
        }
        for event in worker.out.events.drain(..) {
            events.send(event);
        }
    }
}

impl MediaPlane for SfuPlane {
    fn create_session(&self, config: Arc<SessionConfig>) -> Result<(), MediaError> {
        let worker = shard(&config.call_key(), self.workers.len());
        let session_id = config.session_id.clone();
        {
            let mut placement = self.placement.lock().unwrap_or_else(|e| e.into_inner());
            if placement.contains_key(&session_id) {
                return Err(MediaError::SessionExists);
            }
            placement.insert(session_id.clone(), worker);
        }
        if let Err(full) = self.workers[worker]
            .control
            .try_send(Command::Create(config))
        {
            self.placement
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&session_id);
            return Err(MediaError::Busy(full.to_string()));
        }
        Ok(())
    }

    fn close_session(&self, session_id: &str) {
        let worker = self
            .placement
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session_id);
        if let Some(worker) = worker {
            // At most one close per created session: always queued, never lost.
            let _ = self.workers[worker]
                .control
                .send_always(Command::Close(session_id.to_owned()));
        }
    }

    fn signal(&self, session_id: &str, signal: Signal) -> Result<(), MediaError> {
        let Some(worker) = self.worker_of(session_id) else {
            return Ok(()); // unknown sessions are ignored
        };
        self.workers[worker]
            .control
            .try_send(Command::Signal(session_id.to_owned(), signal))
            .map_err(|full| MediaError::Busy(full.to_string()))
    }

    fn shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.tcp_stop.cancel();
        for worker in &self.workers {
            let _ = worker.control.send_always(Command::Stop);
        }
        for handle in self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = handle.join();
        }
    }
}

/// The worker of a call, by its key ([`crate::calls::call_key`]; stable for the call's
/// lifetime).
pub fn shard(call_key: &str, workers: usize) -> usize {
    // FNV-1a: stable across runs and platforms.
    let hash = call_key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % workers.max(1) as u64) as usize
}
