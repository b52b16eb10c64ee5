//! The receive thread's table of established UDP flows: peer address → the worker that owns
//! its session, so datagrams that are not STUN (DTLS, SRTP) find their worker.
//!
//! Owns: a bounded table that only workers fill — a flow is learned once its session has
//! authenticated a check from it (MESSAGE-INTEGRITY with the session's ICE password), so
//! spoofed or random checks create no state — and that evicts its oldest flow when full
//! instead of forgetting every flow at once. Workers send [`FlowNote`]s; the receive thread
//! applies them between batches (no lock on the datagram path).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// What a worker tells the receive thread of its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowNote {
    /// Datagrams from `peer` belong to worker `worker`.
    Learn { peer: SocketAddr, worker: usize },
    /// The flow's session ended.
    Forget { peer: SocketAddr },
}

/// Peer → worker, at most `capacity` flows, oldest evicted first.
#[derive(Debug)]
pub struct LearnedFlows {
    flows: HashMap<SocketAddr, (usize, u64)>,
    /// Flows in the order they were learned, with the generation they were learned at
    /// (entries whose generation no longer matches are stale and skipped).
    order: VecDeque<(SocketAddr, u64)>,
    generation: u64,
    capacity: usize,
}

impl LearnedFlows {
    pub fn new(capacity: usize) -> Self {
        Self {
            flows: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
            capacity: capacity.max(1),
        }
    }

    /// The worker of `peer`'s flow.
    pub fn get(&self, peer: &SocketAddr) -> Option<usize> {
        self.flows.get(peer).map(|(worker, _)| *worker)
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Applies a worker's note.
    pub fn apply(&mut self, note: FlowNote) {
        match note {
            FlowNote::Learn { peer, worker } => self.learn(peer, worker),
            FlowNote::Forget { peer } => {
                self.flows.remove(&peer);
                self.compact();
            }
        }
    }

    fn learn(&mut self, peer: SocketAddr, worker: usize) {
        self.generation += 1;
        self.flows.insert(peer, (worker, self.generation));
        self.order.push_back((peer, self.generation));
        while self.flows.len() > self.capacity {
            let Some((oldest, generation)) = self.order.pop_front() else {
                break;
            };
            if self
                .flows
                .get(&oldest)
                .is_some_and(|(_, g)| *g == generation)
            {
                self.flows.remove(&oldest);
                tracing::debug!(peer = %oldest, "learned-flow table full: oldest flow evicted");
            }
        }
        self.compact();
    }

    /// Drops stale order entries once they outnumber the live flows (keeps memory bounded).
    fn compact(&mut self) {
        if self.order.len() > 2 * self.flows.len() + 64 {
            let flows = &self.flows;
            self.order
                .retain(|(peer, g)| flows.get(peer).is_some_and(|(_, live)| live == g));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], n))
    }

    #[test]
    fn a_full_table_evicts_its_oldest_flow_only() {
        let mut flows = LearnedFlows::new(3);
        for n in 1..=3 {
            flows.apply(FlowNote::Learn {
                peer: peer(n),
                worker: n as usize,
            });
        }
        // Re-learning a flow makes it young again.
        flows.apply(FlowNote::Learn {
            peer: peer(1),
            worker: 1,
        });
        flows.apply(FlowNote::Learn {
            peer: peer(4),
            worker: 4,
        });
        assert_eq!(flows.len(), 3);
        assert_eq!(flows.get(&peer(2)), None, "the oldest went");
        assert_eq!(flows.get(&peer(1)), Some(1));
        assert_eq!(flows.get(&peer(3)), Some(3));
        assert_eq!(flows.get(&peer(4)), Some(4));
        flows.apply(FlowNote::Forget { peer: peer(3) });
        assert_eq!(flows.get(&peer(3)), None);
    }

    #[test]
    fn churn_keeps_the_order_queue_bounded() {
        let mut flows = LearnedFlows::new(10);
        for n in 0..10_000u16 {
            flows.apply(FlowNote::Learn {
                peer: peer(n % 5),
                worker: 0,
            });
            flows.apply(FlowNote::Forget { peer: peer(n % 7) });
        }
        assert!(flows.order.len() <= 2 * flows.len() + 64 + 1);
    }
}
