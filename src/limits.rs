//! Building blocks of the hostile-input limits (`[limits]`, `docs/security.md`).
//!
//! Owns: the names of the limits ([`Limit`], the label of `rtcd_limit_refusals_total`), a token
//! bucket for per-tenant rates ([`TokenBucket`]), a keyed set of buckets with a bounded size
//! ([`KeyedBuckets`]), WARN lines that cannot flood the log ([`LogThrottle`]) and IDs shortened
//! for log lines ([`short`]). The checks themselves live where the input arrives (hub, API,
//! ICE-TCP, sessions); this module holds no policy.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelValue;

/// Which limit refused something (`limit` label of `rtcd_limit_refusals_total`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Limit {
    /// `limits.max_sessions_per_client`.
    sessions_per_client,
    /// `limits.max_connections_per_client`.
    connections_per_client,
    /// `limits.join_rate_per_client` / `join_burst_per_client`.
    join_rate,
    /// `limits.max_id_length`.
    id_length,
    /// `limits.max_remote_candidates`.
    remote_candidates,
    /// `limits.max_http_connections`.
    http_connections,
    /// `limits.max_http_connections_per_ip`.
    http_connections_per_ip,
    /// `limits.ice_tcp_pending_per_ip`.
    ice_tcp_pending_per_ip,
    /// An ICE-TCP connection whose first frame was not an authenticated check for a live
    /// session.
    ice_tcp_unauthenticated,
    /// `limits.ice_tcp_idle_timeout_seconds`.
    ice_tcp_idle,
    /// A media worker's command queue was full.
    media_busy,
    /// The key-verification rate limiter (per client ID, per source IP, or in all).
    auth_rate,
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        Self {
            rate: rate.max(1) as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled completely (it can be forgotten: a new one is equal).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }
}

/// Token buckets by key (client ID, source address), at most `capacity` of them: when full,
/// buckets that have refilled are forgotten (a fresh bucket would be the same); if none has,
/// the new key is refused, so a flood of distinct keys cannot grow the table.
#[derive(Debug)]
pub struct KeyedBuckets<K> {
    buckets: HashMap<K, TokenBucket>,
    rate: u64,
    burst: u64,
    capacity: usize,
}

impl<K: Hash + Eq + Clone> KeyedBuckets<K> {
    pub fn new(rate: u64, burst: u64, capacity: usize) -> Self {
        Self {
            buckets: HashMap::new(),
            rate,
            burst,
            capacity,
        }
    }

    /// Takes a token from `key`'s bucket.
    pub fn try_take(&mut self, key: &K, now: Instant) -> bool {
        if let Some(bucket) = self.buckets.get_mut(key) {
            return bucket.try_take(now);
        }
        if self.buckets.len() >= self.capacity {
            self.buckets.retain(|_, b| !b.is_full(now));
            if self.buckets.len() >= self.capacity {
                return false;
            }
        }
        let mut bucket = TokenBucket::new(self.rate, self.burst, now);
        let taken = bucket.try_take(now);
        self.buckets.insert(key.clone(), bucket);
        taken
    }

    /// Forgets `key` (its client was removed).
    pub fn forget(&mut self, key: &K) {
        self.buckets.remove(key);
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Counts of things held per key (connections per source address), each capped: a
/// [`Slot`] is one place, given back when dropped.
#[derive(Debug)]
pub struct PerKeySlots<K: Hash + Eq> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    max: usize,
}

impl<K: Hash + Eq> Clone for PerKeySlots<K> {
    fn clone(&self) -> Self {
        Self {
            counts: self.counts.clone(),
            max: self.max,
        }
    }
}

/// One place of a [`PerKeySlots`].
#[derive(Debug)]
pub struct Slot<K: Hash + Eq> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: Hash + Eq + Clone> PerKeySlots<K> {
    pub fn new(max: usize) -> Self {
        Self {
            counts: Arc::default(),
            max,
        }
    }

    /// A place for `key`, unless `key` holds `max` already.
    pub fn take(&self, key: K) -> Option<Slot<K>> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(key.clone()).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            counts: self.counts.clone(),
            key,
        })
    }

    /// Places `key` holds.
    pub fn held(&self, key: &K) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(key).copied().unwrap_or(0)
    }
}

impl<K: Hash + Eq> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// At most [`LogThrottle::PER_SECOND`] lines a second from one call site; the next line that
/// passes says how many were suppressed. Lock-free: one static per call site.
pub struct LogThrottle {
    /// Second (since the process's first use of any throttle) of the current window.
    window: AtomicU64,
    /// Lines let through in the current window.
    passed: AtomicU64,
    /// Lines suppressed since the last one let through.
    suppressed: AtomicU64,
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self::new()
    }
}

impl LogThrottle {
    /// Lines let through per second.
    pub const PER_SECOND: u64 = 5;

    pub const fn new() -> Self {
        Self {
            window: AtomicU64::new(0),
            passed: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed)` if a line may be written now (with the number of lines suppressed
    /// since the previous one), `None` if it must be dropped.
    pub fn allow(&self) -> Option<u64> {
        let second = process_seconds();
        if self.window.swap(second, Ordering::Relaxed) != second {
            self.passed.store(0, Ordering::Relaxed);
        }
        if self.passed.fetch_add(1, Ordering::Relaxed) < Self::PER_SECOND {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Whole seconds since the first call (a monotonic clock shared by every throttle).
fn process_seconds() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs() + 1
}

/// Longest ID written whole into a log line.
pub const LOGGED_ID_CHARS: usize = 64;

/// An ID for a log line: whole if short, else its first [`LOGGED_ID_CHARS`] characters and its
/// length (a hostile 500 kB ID must not become a 500 kB log line).
pub fn short(id: &str) -> std::borrow::Cow<'_, str> {
    match id.char_indices().nth(LOGGED_ID_CHARS) {
        None => id.into(),
        Some((cut, _)) => format!("{}…({} bytes)", &id[..cut], id.len()).into(),
    }
}

/// `seconds` as a duration (config values are whole seconds).
pub fn seconds(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 3, start);
        assert_eq!(
            (0..5).filter(|_| bucket.try_take(start)).count(),
            3,
            "burst"
        );
        let later = start + Duration::from_millis(250);
        assert_eq!((0..5).filter(|_| bucket.try_take(later)).count(), 2);
        assert!(!bucket.is_full(later));
        assert!(bucket.is_full(later + Duration::from_secs(1)));
    }

    #[test]
    fn keyed_buckets_are_separate_and_bounded() {
        let now = Instant::now();
        let mut buckets = KeyedBuckets::new(1, 2, 2);
        assert!(buckets.try_take(&"a", now));
        assert!(buckets.try_take(&"a", now));
        assert!(!buckets.try_take(&"a", now), "a's bucket is empty");
        assert!(buckets.try_take(&"b", now), "b has its own");
        // Full table, no bucket refilled: a third key is refused rather than growing it.
        assert!(!buckets.try_take(&"c", now));
        // Once a's and b's buckets refill, they are forgotten and c gets one.
        let later = now + Duration::from_secs(5);
        assert!(buckets.try_take(&"c", later));
        assert_eq!(buckets.len(), 1);
        buckets.forget(&"c");
        assert!(buckets.is_empty());
    }

    #[test]
    fn per_key_slots_are_capped_and_given_back() {
        let slots = PerKeySlots::new(2);
        let a1 = slots.take("a").unwrap();
        let _a2 = slots.take("a").unwrap();
        assert!(slots.take("a").is_none());
        let _b = slots.take("b").unwrap();
        drop(a1);
        assert_eq!(slots.held(&"a"), 1);
        assert!(slots.take("a").is_some());
    }

    #[test]
    fn throttle_lets_a_few_lines_through_per_second() {
        let throttle = LogThrottle::new();
        let passed = (0..100).filter(|_| throttle.allow().is_some()).count();
        // One window, or two if the second changed during the loop.
        assert!(
            passed as u64 >= LogThrottle::PER_SECOND
                && passed as u64 <= 2 * LogThrottle::PER_SECOND,
            "{passed}"
        );
    }

    #[test]
    fn long_ids_are_shortened_in_logs() {
        assert_eq!(short("abc"), "abc");
        let long = "x".repeat(500_000);
        let logged = short(&long);
        assert!(logged.len() < 100, "{logged}");
        assert!(logged.ends_with("…(500000 bytes)"));
        let multibyte = "é".repeat(100);
        assert!(short(&multibyte).starts_with(&"é".repeat(LOGGED_ID_CHARS)));
    }
}
