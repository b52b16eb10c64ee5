//! A media worker's input queue and sleep: a bounded lock-free queue (crossbeam) whose consumer
//! sleeps in its own `epoll` set (mio), so the same sleep also waits for the worker's own
//! sockets; producers wake it through an eventfd registered in that set.
//!
//! Owns: waking a worker without spinning and without a system call per item. Blocking
//! receives on the channel itself spin and `sched_yield` before they sleep, which at media
//! packet rates cost more CPU than the work. The consumer announces that it is about to sleep
//! (a flag) and re-checks the queue; a producer writes the eventfd only when it takes that flag,
//! so a running worker costs producers one atomic operation and a sleeping one is woken once.
//!
//! Beside the datagram queue, a worker has a control queue ([`ControlQueue`]) for commands
//! (create, close, signal): a flood of datagrams can never push a command out, and a command is
//! either queued or refused to its caller at once, never silently dropped. Commands that must
//! not fail (closing a session) are always queued; there is at most one per session, so the
//! queue stays bounded by the sessions that exist.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

/// The token of the wake-up eventfd in the consumer's poll set.
pub const WAKE_TOKEN: mio::Token = mio::Token(usize::MAX);

/// What producers share with the consumer to wake it.
struct Alarm {
    /// Set by the consumer right before it sleeps; taken by the producer that wakes it.
    sleeping: AtomicBool,
    waker: mio::Waker,
}

/// Producer side (cloneable: the receive threads, ICE-TCP tasks, the control plane).
pub struct WorkerQueue<T> {
    tx: Sender<T>,
    alarm: Arc<Alarm>,
}

impl<T> Clone for WorkerQueue<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            alarm: self.alarm.clone(),
        }
    }
}

/// Producer side of a worker's command queue (the control plane, ICE-TCP tasks).
pub struct ControlQueue<C> {
    tx: Sender<C>,
    alarm: Arc<Alarm>,
    /// Commands queued and not yet taken by the worker.
    pending: Arc<AtomicUsize>,
    capacity: usize,
}

impl<C> Clone for ControlQueue<C> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            alarm: self.alarm.clone(),
            pending: self.pending.clone(),
            capacity: self.capacity,
        }
    }
}

/// A command was refused: the worker has `capacity` commands waiting already (or is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("media worker busy: {0} commands waiting")]
pub struct ControlFull(pub usize);

impl<C> ControlQueue<C> {
    /// Queues `command` unless `capacity` commands are already waiting; wakes the worker.
    pub fn try_send(&self, command: C) -> Result<(), ControlFull> {
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(ControlFull(self.capacity));
        }
        self.push(command)
    }

    /// Queues `command` whatever the queue holds (for commands that must not be lost and are
    /// bounded by other means, such as one close per session).
    pub fn send_always(&self, command: C) -> Result<(), ControlFull> {
        self.pending.fetch_add(1, Ordering::AcqRel);
        self.push(command)
    }

    fn push(&self, command: C) -> Result<(), ControlFull> {
        if self.tx.send(command).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(ControlFull(0)); // the worker has stopped
        }
        if self.alarm.sleeping.swap(false, Ordering::SeqCst) {
            let _ = self.alarm.waker.wake();
        }
        Ok(())
    }

    /// Commands waiting.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

/// Consumer side (the worker thread): the queues and the poll set it sleeps in.
pub struct WorkerInbox<T, C = ()> {
    rx: Receiver<T>,
    control: Receiver<C>,
    pending: Arc<AtomicUsize>,
    alarm: Arc<Alarm>,
    poll: mio::Poll,
}

/// A queue holding at most `capacity` items, with a fresh poll set for its consumer.
pub fn bounded<T>(capacity: usize) -> std::io::Result<(WorkerQueue<T>, WorkerInbox<T>)> {
    let (queue, _, inbox) = with_control(capacity, 0)?;
    Ok((queue, inbox))
}

/// The producers' and the consumer's ends of a worker's queues.
pub type WorkerQueues<T, C> = (WorkerQueue<T>, ControlQueue<C>, WorkerInbox<T, C>);

/// A datagram queue of `capacity` items and a command queue that refuses new commands past
/// `control_capacity` waiting ones, both waking the same consumer.
pub fn with_control<T, C>(
    capacity: usize,
    control_capacity: usize,
) -> std::io::Result<WorkerQueues<T, C>> {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let (control_tx, control) = crossbeam_channel::unbounded();
    let poll = mio::Poll::new()?;
    let alarm = Arc::new(Alarm {
        sleeping: AtomicBool::new(false),
        waker: mio::Waker::new(poll.registry(), WAKE_TOKEN)?,
    });
    let pending = Arc::new(AtomicUsize::new(0));
    Ok((
        WorkerQueue {
            tx,
            alarm: alarm.clone(),
        },
        ControlQueue {
            tx: control_tx,
            alarm: alarm.clone(),
            pending: pending.clone(),
            capacity: control_capacity,
        },
        WorkerInbox {
            rx,
            control,
            pending,
            alarm,
            poll,
        },
    ))
}

impl<T> WorkerQueue<T> {
    /// Queues `item` without blocking and wakes the worker.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        self.try_send_quietly(item)?;
        self.wake();
        Ok(())
    }

    /// Queues `item` without waking the worker: a producer that queues a batch calls
    /// [`wake`](Self::wake) once after it, so the worker wakes once for the whole batch.
    pub fn try_send_quietly(&self, item: T) -> Result<(), TrySendError<T>> {
        self.tx.try_send(item)
    }

    /// Wakes the worker (one atomic operation if it is running).
    pub fn wake(&self) {
        if self.alarm.sleeping.swap(false, Ordering::SeqCst) {
            // A failed write means the eventfd counter is saturated: the worker is woken anyway.
            let _ = self.alarm.waker.wake();
        }
    }

    /// Queues `item`, retrying for up to `patience` while the queue is full.
    pub fn send_patiently(&self, mut item: T, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        loop {
            match self.try_send(item) {
                Ok(()) => return true,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    item = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
    }
}

impl<T, C> WorkerInbox<T, C> {
    /// Where the consumer registers its own sockets (never with [`WAKE_TOKEN`]).
    pub fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    /// Sleeps until an item is queued, one of the registered sockets is ready (in `events`)
    /// or `deadline` passes; returns at once (after collecting ready sockets) when items are
    /// already queued. Items are then taken with [`try_iter`](Self::try_iter).
    pub fn wait(&mut self, deadline: Instant, events: &mut mio::Events) {
        self.alarm.sleeping.store(true, Ordering::SeqCst);
        let timeout = if self.rx.is_empty() && self.control.is_empty() {
            deadline.saturating_duration_since(Instant::now())
        } else {
            Duration::ZERO
        };
        if let Err(e) = self.poll.poll(events, Some(timeout)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::warn!("media worker poll failed: {e}");
                std::thread::sleep(Duration::from_millis(1));
            }
            events.clear();
        }
        self.alarm.sleeping.store(false, Ordering::SeqCst);
    }

    /// Items already queued, without waiting.
    pub fn try_iter(&self) -> crossbeam_channel::TryIter<'_, T> {
        self.rx.try_iter()
    }

    /// The next command already queued, without waiting.
    pub fn try_command(&self) -> Option<C> {
        let command = self.control.try_recv().ok()?;
        self.pending.fetch_sub(1, Ordering::AcqRel);
        Some(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The next item, sleeping until one arrives or `deadline` passes (`None`).
    fn recv_deadline<T>(
        inbox: &mut WorkerInbox<T>,
        deadline: Instant,
        events: &mut mio::Events,
    ) -> Option<T> {
        loop {
            if let Some(item) = inbox.try_iter().next() {
                return Some(item);
            }
            if Instant::now() >= deadline {
                return None;
            }
            inbox.wait(deadline, events);
        }
    }

    #[test]
    fn a_sleeping_worker_wakes_for_each_item_and_times_out_when_idle() {
        let (queue, mut inbox) = bounded::<u32>(4).unwrap();
        let worker = std::thread::spawn(move || {
            let mut events = mio::Events::with_capacity(8);
            let mut got = Vec::new();
            while got.len() < 3 {
                let deadline = Instant::now() + Duration::from_secs(5);
                if let Some(item) = recv_deadline(&mut inbox, deadline, &mut events) {
                    got.push(item);
                }
            }
            let idle_started = Instant::now();
            let deadline = Instant::now() + Duration::from_millis(50);
            let nothing = recv_deadline(&mut inbox, deadline, &mut events);
            (got, nothing, idle_started.elapsed())
        });
        for item in 0..3 {
            std::thread::sleep(Duration::from_millis(20));
            queue.try_send(item).unwrap();
        }
        let (got, nothing, idle) = worker.join().unwrap();
        assert_eq!(got, [0, 1, 2]);
        assert_eq!(nothing, None);
        assert!(idle >= Duration::from_millis(50), "{idle:?}");
    }

    #[test]
    fn a_registered_socket_wakes_the_worker_too() {
        let (_queue, mut inbox) = bounded::<u32>(4).unwrap();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
        inbox
            .registry()
            .register(
                &mut mio::unix::SourceFd(&fd),
                mio::Token(7),
                mio::Interest::READABLE,
            )
            .unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"x", socket.local_addr().unwrap()).unwrap();
        let mut events = mio::Events::with_capacity(8);
        let started = Instant::now();
        inbox.wait(started + Duration::from_secs(5), &mut events);
        assert!(started.elapsed() < Duration::from_secs(4));
        assert!(events.iter().any(|e| e.token() == mio::Token(7)));
    }

    #[test]
    fn commands_are_refused_past_capacity_except_the_ones_that_must_pass() {
        let (_queue, control, mut inbox) = with_control::<u32, &str>(4, 2).unwrap();
        control.try_send("create 1").unwrap();
        control.try_send("create 2").unwrap();
        assert_eq!(control.try_send("create 3"), Err(ControlFull(2)));
        control.send_always("close 1").unwrap();
        assert_eq!(control.pending(), 3);
        // A sleeping worker wakes for commands.
        let mut events = mio::Events::with_capacity(8);
        let started = Instant::now();
        inbox.wait(started + Duration::from_secs(5), &mut events);
        assert!(started.elapsed() < Duration::from_secs(4));
        let taken: Vec<_> = std::iter::from_fn(|| inbox.try_command()).collect();
        assert_eq!(taken, ["create 1", "create 2", "close 1"]);
        assert_eq!(control.pending(), 0);
        control.try_send("create 4").unwrap();
        drop(inbox);
        assert_eq!(control.try_send("create 5"), Err(ControlFull(0)));
    }

    #[test]
    fn a_full_queue_refuses_without_blocking() {
        let (queue, _inbox) = bounded::<u32>(1).unwrap();
        queue.try_send(1).unwrap();
        assert!(matches!(queue.try_send(2), Err(TrySendError::Full(2))));
        assert!(!queue.send_patiently(3, Duration::from_millis(5)));
    }
}
