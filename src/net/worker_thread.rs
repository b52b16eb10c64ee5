//! A media worker's thread: the loop that drives one [`Worker`] shard (commands, datagrams
//! from its queue and its connected flow sockets, timers), sends what it produces in batches,
//! and applies its other outputs (relay sockets, flows, events).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use crossbeam_channel::TrySendError;

use super::addresses::Protocol;
use super::batch::SendBatch;
use super::flows::FlowSockets;
use super::learned::FlowNote;
use super::queue::{self, WorkerInbox, WorkerQueue};
use super::runtime::{Command, IDLE_WAKEUP, Input};
use super::tcp::TcpWriter;
use super::turn::TurnServer;
use crate::calls::SessionConfig;
use crate::config::TurnConfig;
use crate::media::{CloseReason, EventSender, MediaEvent};
use crate::sfu::relay::RelayTransport;
use crate::sfu::worker::Worker;
use crate::wire::{Datagram, Transmit};

/// Largest datagram read.
pub(super) const RECEIVE_BUFFER: usize = 2048;

/// Commands a worker takes per turn before it reads datagrams again.
pub(super) const COMMANDS_PER_TURN: usize = 64;

/// SFU-side TURN servers and their credential settings.
pub(super) struct RelayPlan {
    pub(super) servers: Vec<TurnServer>,
    pub(super) turn: TurnConfig,
}

/// A session's socket toward a TURN server and the task reading it.
pub(super) struct RelaySocket {
    socket: UdpSocket,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for RelaySocket {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// What a worker thread does I/O with.
pub(super) struct WorkerDriver {
    /// This worker's index (named in flow notes).
    pub(super) index: usize,
    pub(super) sockets: HashMap<SocketAddr, Arc<UdpSocket>>,
    /// Per advertised UDP address, the notes channel of its receive thread.
    pub(super) flow_notes: HashMap<SocketAddr, crossbeam_channel::Sender<FlowNote>>,
    /// Whether established flows get connected sockets ([`flows`]).
    pub(super) connected_flows: bool,
    pub(super) metrics: Arc<crate::metrics::Metrics>,
    pub(super) events: EventSender,
    pub(super) relay_plan: Arc<RelayPlan>,
    pub(super) runtime: tokio::runtime::Handle,
    /// This worker's own queue, for the relay sockets' reader tasks.
    pub(super) own_inputs: WorkerQueue<Input>,
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
pub(super) const SEND_AT: usize = 2 * super::batch::BATCH;

/// Where a worker's transmits go.
pub(super) struct Senders<'a> {
    sockets: &'a HashMap<SocketAddr, Arc<UdpSocket>>,
    tcp_writers: &'a HashMap<(SocketAddr, SocketAddr), TcpWriter>,
    relay_sockets: &'a HashMap<SocketAddr, RelaySocket>,
}

impl<'a> Senders<'a> {
    /// Where a worker thread's transmits go this turn.
    fn of(
        driver: &'a WorkerDriver,
        tcp_writers: &'a HashMap<(SocketAddr, SocketAddr), TcpWriter>,
        relay_sockets: &'a HashMap<SocketAddr, RelaySocket>,
    ) -> Self {
        Self {
            sockets: &driver.sockets,
            tcp_writers,
            relay_sockets,
        }
    }
}

impl Senders<'_> {
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
pub(super) fn run_worker(
    worker: Worker,
    inputs: WorkerInbox<Input, Command>,
    driver: WorkerDriver,
) {
    // Where each advertised UDP address is bound (connected flows bind the same address).
    let binds = driver
        .sockets
        .iter()
        .filter_map(|(advertised, socket)| Some((*advertised, socket.local_addr().ok()?)))
        .collect();
    WorkerThread {
        worker,
        inputs,
        driver,
        binds,
        tcp_writers: HashMap::new(),
        relay_sockets: HashMap::new(),
        flow_sockets: FlowSockets::default(),
        ready: mio::Events::with_capacity(256),
        unfinished: Vec::new(),
        tokens: Vec::new(),
        send_batch: SendBatch::new(),
    }
    .run();
}

/// A worker thread's state: the shard, its queues and poll set, and its sockets.
pub(super) struct WorkerThread {
    worker: Worker,
    inputs: WorkerInbox<Input, Command>,
    driver: WorkerDriver,
    /// Advertised UDP address → the address its socket is bound to.
    binds: HashMap<SocketAddr, SocketAddr>,
    tcp_writers: HashMap<(SocketAddr, SocketAddr), TcpWriter>,
    relay_sockets: HashMap<SocketAddr, RelaySocket>,
    flow_sockets: FlowSockets,
    ready: mio::Events,
    /// Flows left with queued datagrams last turn (read again without waiting).
    unfinished: Vec<mio::Token>,
    /// The flows to read this turn (reused: no allocation per turn).
    tokens: Vec<mio::Token>,
    send_batch: SendBatch,
}

impl WorkerThread {
    /// Turns until a stop command: sleep until something is due, read the flows that are
    /// ready, take commands first (a datagram flood cannot delay them), then datagrams, both
    /// bounded per turn so timers are never starved; run timers; send and report.
    fn run(mut self) {
        loop {
            let now = Instant::now();
            let deadline = match self.worker.next_timeout() {
                _ if !self.unfinished.is_empty() => now,
                Some(timer) => timer.min(now + IDLE_WAKEUP),
                None => now + IDLE_WAKEUP,
            };
            self.inputs.wait(deadline, &mut self.ready);
            self.read_flows();
            if !self.run_commands() {
                return;
            }
            self.read_inputs();
            self.worker.handle_timeout(Instant::now());
            self.finish_turn();
        }
    }

    /// Datagrams of the connected flow sockets that are ready.
    fn read_flows(&mut self) {
        let mut tokens = std::mem::take(&mut self.tokens);
        tokens.clear();
        tokens.append(&mut self.unfinished);
        tokens.extend(
            self.ready
                .iter()
                .map(|event| event.token())
                .filter(|token| *token != queue::WAKE_TOKEN),
        );
        let Self {
            worker,
            driver,
            tcp_writers,
            relay_sockets,
            flow_sockets,
            unfinished,
            send_batch,
            ..
        } = self;
        let senders = Senders::of(driver, tcp_writers, relay_sockets);
        for &token in &tokens {
            let more = flow_sockets.read(token, |local, peer, data| {
                let datagram = Datagram {
                    local,
                    peer,
                    protocol: Protocol::Udp,
                    data,
                };
                worker.datagram(Instant::now(), datagram);
                senders.send_some(&mut worker.driver_outputs().transmits, send_batch);
            });
            if more && !unfinished.contains(&token) {
                unfinished.push(token);
            }
        }
        self.tokens = tokens;
    }

    /// Up to [`COMMANDS_PER_TURN`] commands; `false` on a stop command.
    fn run_commands(&mut self) -> bool {
        for _ in 0..COMMANDS_PER_TURN {
            let Some(command) = self.inputs.try_command() else {
                break;
            };
            let now = Instant::now();
            match command {
                Command::TcpOpened {
                    local,
                    peer,
                    writer,
                } => {
                    self.tcp_writers.insert((local, peer), writer);
                }
                Command::TcpClosed { local, peer } => {
                    self.tcp_writers.remove(&(local, peer));
                }
                Command::Create(config) => self.create(now, config),
                Command::Close(session_id) => {
                    self.worker.close(now, &session_id, CloseReason::Leave)
                }
                Command::Signal(session_id, signal) => self.worker.signal(now, &session_id, signal),
                Command::Stop => return false,
            }
        }
        true
    }

    /// A new session, with its TURN relay sockets; a failure is reported as the session's end
    /// (the control plane registered it and must learn it is gone).
    fn create(&mut self, now: Instant, config: Arc<SessionConfig>) {
        let relays = self
            .driver
            .open_relays(&config.session_id, &mut self.relay_sockets);
        let locals: Vec<SocketAddr> = relays.iter().map(|r| r.local).collect();
        if let Err(err) = self.worker.create(now, config.clone(), relays) {
            tracing::warn!(session_id = %config.session_id, "media session not created: {err}");
            for local in locals {
                self.relay_sockets.remove(&local);
            }
            self.worker
                .driver_outputs()
                .events
                .push(MediaEvent::Closed {
                    session_id: config.session_id.clone(),
                    reason: CloseReason::Failed(format!("media session not created: {err}")),
                });
        }
    }

    /// Up to 256 queued datagrams (from the receive threads, ICE-TCP and TURN sockets).
    fn read_inputs(&mut self) {
        let Self {
            worker,
            inputs,
            driver,
            tcp_writers,
            relay_sockets,
            send_batch,
            ..
        } = self;
        let senders = Senders::of(driver, tcp_writers, relay_sockets);
        for input in inputs.try_iter().take(256) {
            let now = Instant::now();
            match input {
                Input::Datagram(datagram) => {
                    worker.datagram(now, datagram);
                    senders.send_some(&mut worker.driver_outputs().transmits, send_batch);
                }
                Input::RelayDatagram { local, data } => worker.relay_datagram(now, local, data),
            }
        }
    }

    /// Sends what the turn produced, then applies the worker's other outputs: released relay
    /// sockets, learned and released flows (receive threads' notes, connected sockets), and
    /// events for the control plane.
    fn finish_turn(&mut self) {
        let senders = Senders::of(&self.driver, &self.tcp_writers, &self.relay_sockets);
        senders.send(
            &mut self.worker.driver_outputs().transmits,
            &mut self.send_batch,
        );
        let out = self.worker.driver_outputs();
        for local in out.released_relay_sockets.drain(..) {
            self.relay_sockets.remove(&local);
        }
        let driver = &self.driver;
        for (local, peer) in out.learned_flows.drain(..) {
            if let Some(notes) = driver.flow_notes.get(&local) {
                let _ = notes.send(FlowNote::Learn {
                    peer,
                    worker: driver.index,
                });
            }
        }
        let open_flows = self.flow_sockets.len();
        for (local, peer) in out.released_flows.drain(..) {
            self.flow_sockets.close(self.inputs.registry(), local, peer);
            if let Some(notes) = driver.flow_notes.get(&local) {
                let _ = notes.send(FlowNote::Forget { peer });
            }
        }
        for (local, peer) in out.connect_flows.drain(..) {
            if let (true, Some(bind)) = (driver.connected_flows, self.binds.get(&local)) {
                self.flow_sockets
                    .open(self.inputs.registry(), local, *bind, peer);
            }
        }
        if self.flow_sockets.len() != open_flows {
            let change = self.flow_sockets.len() as i64 - open_flows as i64;
            driver.metrics.quality.connected_flows.inc_by(change);
        }
        for event in out.events.drain(..) {
            driver.events.send(event);
        }
    }
}
