//! A media worker's input queue: a bounded lock-free queue (crossbeam) whose consumer sleeps
//! with `park_timeout` and whose producers `unpark` it.
//!
//! Owns: waking a worker without spinning. Blocking receives on the channel itself spin and
//! `sched_yield` before they sleep, which at media packet rates cost more CPU than the work;
//! `unpark` on a running thread is one atomic operation and wakes a parked one with one futex
//! call. Park/unpark tokens make the wakeup race-free (an unpark before the park is kept).

use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

/// Producer side (cloneable: the receive threads, ICE-TCP tasks, the control plane).
pub struct WorkerQueue<T> {
    tx: Sender<T>,
    consumer: Arc<OnceLock<Thread>>,
}

impl<T> Clone for WorkerQueue<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            consumer: self.consumer.clone(),
        }
    }
}

/// Consumer side (the worker thread).
pub struct WorkerInbox<T> {
    rx: Receiver<T>,
    consumer: Arc<OnceLock<Thread>>,
}

/// A queue holding at most `capacity` items.
pub fn bounded<T>(capacity: usize) -> (WorkerQueue<T>, WorkerInbox<T>) {
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    let consumer = Arc::new(OnceLock::new());
    (
        WorkerQueue {
            tx,
            consumer: consumer.clone(),
        },
        WorkerInbox { rx, consumer },
    )
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

    /// Wakes the worker (a no-op beyond one atomic if it is running).
    pub fn wake(&self) {
        if let Some(thread) = self.consumer.get() {
            thread.unpark();
        }
    }

    /// Queues `item`, retrying for up to `patience` while the queue is full.
    pub fn send_patiently(&self, mut item: T, patience: std::time::Duration) -> bool {
        let deadline = Instant::now() + patience;
        loop {
            match self.try_send(item) {
                Ok(()) => return true,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    item = back;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
    }
}

impl<T> WorkerInbox<T> {
    /// Registers the calling thread as the one producers wake. Call once, from the worker.
    pub fn bind_current_thread(&self) {
        let _ = self.consumer.set(std::thread::current());
    }

    /// The next item, sleeping until one arrives or `deadline` passes (`None`).
    pub fn recv_deadline(&self, deadline: Instant) -> Option<T> {
        loop {
            match self.rx.try_recv() {
                Ok(item) => return Some(item),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            std::thread::park_timeout(deadline - now);
        }
    }

    /// Items already queued, without waiting.
    pub fn try_iter(&self) -> crossbeam_channel::TryIter<'_, T> {
        self.rx.try_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_parked_worker_wakes_for_each_item_and_times_out_when_idle() {
        let (queue, inbox) = bounded::<u32>(4);
        let worker = std::thread::spawn(move || {
            inbox.bind_current_thread();
            let mut got = Vec::new();
            while got.len() < 3 {
                if let Some(item) = inbox.recv_deadline(Instant::now() + Duration::from_secs(5)) {
                    got.push(item);
                }
            }
            let idle_started = Instant::now();
            let nothing = inbox.recv_deadline(Instant::now() + Duration::from_millis(50));
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
    fn a_full_queue_refuses_without_blocking() {
        let (queue, _inbox) = bounded::<u32>(1);
        queue.try_send(1).unwrap();
        assert!(matches!(queue.try_send(2), Err(TrySendError::Full(2))));
        assert!(!queue.send_patiently(3, Duration::from_millis(5)));
    }
}
