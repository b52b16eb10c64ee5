//! Token-bucket limiter for the expensive key-hashing operations (spec control-plane §5.4).
//!
//! Rate `12 × CPUs` per second, burst 1, shared by registration and key verification. A caller
//! reserves the next free slot; if that slot is further away than the deadline the call fails
//! at once instead of waiting (Go's `rate.Limiter.Wait` semantics). Hand-written (a dozen
//! lines) because the "fail immediately when the wait would exceed the deadline" rule is not
//! what the common crates offer.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Error text upstream reports when the limiter refuses a request.
pub const RATE_LIMIT_ERROR: &str = "rate: Wait(n=1) would exceed context deadline";

/// The limiter refused: waiting would exceed the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{RATE_LIMIT_ERROR}")]
pub struct RateLimited;

/// Reservation-based token bucket with burst 1.
pub struct RateLimiter {
    interval: Duration,
    deadline: Duration,
    next_free: Mutex<Instant>,
}

impl RateLimiter {
    /// `per_second` permits per second; waits longer than `deadline` are refused.
    pub fn new(per_second: u32, deadline: Duration) -> Self {
        Self {
            interval: Duration::from_secs(1) / per_second.max(1),
            deadline,
            next_free: Mutex::new(Instant::now()),
        }
    }

    /// Upstream's sizing: 12 permits per second per CPU, 10 s deadline.
    pub fn for_this_machine() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        Self::new(12 * cpus, Duration::from_secs(10))
    }

    /// Waits for a permit, or fails at once if it would come after the deadline.
    pub async fn acquire(&self) -> Result<(), RateLimited> {
        let slot = {
            let mut next = self.next_free.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let slot = (*next).max(now);
            if slot.duration_since(now) > self.deadline {
                return Err(RateLimited);
            }
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;

    #[tokio::test(start_paused = true)]
    async fn spaces_permits_and_refuses_beyond_deadline() {
        let limiter = RateLimiter::new(10, Duration::from_millis(250));
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await.unwrap();
        }
        assert_eq!(start.elapsed(), Duration::from_millis(200));

        // Reserve without waiting: slots at +0, +100, +200 ms fit the 250 ms deadline, +300 not.
        let limiter = RateLimiter::new(10, Duration::from_millis(250));
        let outcomes: Vec<_> = (0..5).map(|_| limiter.acquire().now_or_never()).collect();
        assert_eq!(
            outcomes,
            [
                Some(Ok(())),
                None,
                None,
                Some(Err(RateLimited)),
                Some(Err(RateLimited))
            ]
        );
    }
}
