//! The media plane as the control plane drives it ([`MediaPlane`]): starting it (address
//! plan, sockets, threads) and handing commands to the worker that owns each session.
//!
//! Owns: the queues into the workers ([`Input`] for datagrams, [`Command`] for commands, which
//! are refused rather than dropped), session placement (calls are sharded by group and call ID
//! so every session of a call lives on one worker), and shutdown. The shared UDP sockets and
//! their receive threads are `receive`; a worker's thread (its loop, sends, connected flow
//! sockets, TURN sockets) is `worker_thread`; ICE-TCP is [`tcp`].

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::addresses::{self, Advertised, Protocol};
use super::learned::FlowNote;
use super::plan::{self, AddressPlan};
use super::queue::{self, ControlQueue, WorkerQueue};
use super::receive::{UdpSockets, bind_udp_sockets, run_udp_receiver, use_connected_flows};
use super::tcp::{self, TcpWriter};
use super::turn;
use super::worker_thread::{RelayPlan, WorkerDriver, run_worker};
use crate::calls::SessionConfig;
use crate::config::{LimitsConfig, RtcConfig};
use crate::media::{EventSender, MediaError, MediaPlane, Signal};
use crate::sfu::session::{SessionSettings, WallClock};
use crate::sfu::worker::Worker;
use crate::wire::Datagram;
use crate::wire::credentials::IceCredentials;

/// Datagrams queued per worker before the receive thread drops.
pub const WORKER_QUEUE_CAPACITY: usize = 8192;
/// Socket buffer size requested (the kernel caps it at net.core.[rw]mem_max).
pub const SOCKET_BUFFER_BYTES: usize = 16 << 20;
/// How often idle threads check for shutdown.
pub(super) const IDLE_WAKEUP: Duration = Duration::from_millis(200);
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
        let connected_flows = use_connected_flows();
        let UdpSockets {
            sockets,
            flow_notes,
            bound,
        } = bind_udp_sockets(&local_ips, &advertised, udp_port, connected_flows)?;
        let credentials = IceCredentials::default();

        let shared = WorkerShared {
            sockets,
            flow_notes,
            connected_flows,
            metrics: metrics.clone(),
            events,
            relay_plan,
            runtime,
            settings: SessionSettings {
                candidates: advertised.clone(),
                nack_buffer_size: config.nack_buffer_size,
                max_remote_candidates: limits.max_remote_candidates as usize,
                wall_clock: WallClock {
                    at: Instant::now(),
                    wall: std::time::SystemTime::now(),
                },
                stopwatch: Instant::now,
            },
            credentials: credentials.clone(),
        };
        let mut workers = Vec::new();
        for index in 0..worker_count {
            let (link, handle) = spawn_worker(index, &shared)?;
            workers.push(link);
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

        let tcp_stop = tokio_util::sync::CancellationToken::new();
        let admission = tcp::Admission {
            workers: workers.clone(),
            credentials,
            pending_per_ip: limits.ice_tcp_pending_per_ip as usize,
            idle_timeout: Duration::from_secs(limits.ice_tcp_idle_timeout_seconds),
            metrics,
        };
        start_ice_tcp(&advertised, tcp_port, admission, &tcp_stop)?;

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

/// ICE-TCP: one listener per served IP (must run inside the tokio runtime).
fn start_ice_tcp(
    advertised: &[Advertised],
    tcp_port: u16,
    admission: tcp::Admission,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<(), NetError> {
    for a in advertised.iter().filter(|a| a.protocol == Protocol::Tcp) {
        let addr = SocketAddr::new(a.local_ip, tcp_port);
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|source| NetError::BindTcp { addr, source })?;
        tokio::spawn(tcp::serve(
            listener,
            a.address,
            admission.clone(),
            stop.clone(),
        ));
    }
    Ok(())
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

/// What every worker thread gets a share of.
struct WorkerShared {
    sockets: HashMap<SocketAddr, Arc<UdpSocket>>,
    flow_notes: HashMap<SocketAddr, crossbeam_channel::Sender<FlowNote>>,
    connected_flows: bool,
    metrics: Arc<crate::metrics::Metrics>,
    events: EventSender,
    relay_plan: Arc<RelayPlan>,
    runtime: tokio::runtime::Handle,
    settings: SessionSettings,
    credentials: IceCredentials,
}

/// Starts media worker `index`: its queues, its shard and its thread.
fn spawn_worker(
    index: usize,
    shared: &WorkerShared,
) -> Result<(WorkerLink, JoinHandle<()>), NetError> {
    let (tx, control, rx) = queue::with_control(WORKER_QUEUE_CAPACITY, COMMAND_QUEUE_CAPACITY)
        .map_err(NetError::Thread)?;
    let worker = Worker::new(
        index as u8,
        shared.metrics.clone(),
        shared.settings.clone(),
        shared.credentials.clone(),
    );
    let driver = WorkerDriver {
        index,
        sockets: shared.sockets.clone(),
        flow_notes: shared.flow_notes.clone(),
        connected_flows: shared.connected_flows,
        metrics: shared.metrics.clone(),
        events: shared.events.clone(),
        relay_plan: shared.relay_plan.clone(),
        runtime: shared.runtime.clone(),
        own_inputs: tx.clone(),
    };
    let handle = std::thread::Builder::new()
        .name(format!("rtcd-media-{index}"))
        .spawn(move || run_worker(worker, rx, driver))
        .map_err(NetError::Thread)?;
    Ok((WorkerLink { data: tx, control }, handle))
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
