//! What stands between a caller and the expensive key hashing (spec control-plane §5.4, and
//! `docs/security.md` for where this deviates).
//!
//! Owns: the order of the checks a key verification passes, and their state:
//! 1. [`VerifiedKeys`]: a client whose key verified recently is let through without hashing
//!    again, so a flood of wrong keys never locks out a client that is already working;
//! 2. per source address, then per client ID, a token bucket that refuses at once
//!    ([`PER_SOURCE`], [`PER_CLIENT`]): one caller's wrong keys use up its own budgets, never
//!    another client's;
//! 3. the process-wide limiter of upstream ([`RateLimiter`], 12 × CPUs per second, 10 s
//!    deadline), which bounds the CPU spent on hashing in all.
//!
//! Unknown client IDs pass the same checks and cost the same hashing as known ones, so
//! neither the answer nor its timing tells which IDs exist.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::limiter::RateLimiter;
use crate::limits::KeyedBuckets;

/// A (rate per second, burst) budget.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub rate: u64,
    pub burst: u64,
}

/// Key verifications one source address may ask for (an address may front several clients,
/// e.g. a NATed Mattermost cluster).
pub const PER_SOURCE: Budget = Budget {
    rate: 10,
    burst: 40,
};
/// Key verifications for one client ID (an HA cluster connects once per node).
pub const PER_CLIENT: Budget = Budget {
    rate: 10,
    burst: 20,
};
/// Most budgets kept per kind (sources, client IDs); refilled ones are dropped first.
const MAX_BUDGETS: usize = 100_000;
/// How long a verified key is remembered after its last use.
pub const VERIFIED_TTL: Duration = Duration::from_secs(600);

/// Which budget refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    Source,
    Client,
    /// The process-wide limiter: waiting would exceed its deadline.
    Global,
}

/// Budgets and the process-wide limiter.
pub struct VerifyGuard {
    sources: Mutex<KeyedBuckets<IpAddr>>,
    clients: Mutex<KeyedBuckets<String>>,
    global: RateLimiter,
}

impl VerifyGuard {
    pub fn new(global: RateLimiter) -> Self {
        Self {
            sources: Mutex::new(KeyedBuckets::new(
                PER_SOURCE.rate,
                PER_SOURCE.burst,
                MAX_BUDGETS,
            )),
            clients: Mutex::new(KeyedBuckets::new(
                PER_CLIENT.rate,
                PER_CLIENT.burst,
                MAX_BUDGETS,
            )),
            global,
        }
    }

    /// Waits for the right to hash one key for `client_id` from `source`.
    pub async fn admit(&self, client_id: &str, source: IpAddr) -> Result<(), Exhausted> {
        let now = Instant::now();
        let source = budget_key(source);
        if !lock(&self.sources).try_take(&source, now) {
            return Err(Exhausted::Source);
        }
        if !lock(&self.clients).try_take(&client_id.to_owned(), now) {
            return Err(Exhausted::Client);
        }
        self.global.acquire().await.map_err(|_| Exhausted::Global)
    }

    /// Forgets a removed client's budget.
    pub fn forget(&self, client_id: &str) {
        lock(&self.clients).forget(&client_id.to_owned());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// IPv4 addresses count one by one; IPv6 ones by their /64 (one host usually owns a whole /64,
/// so counting single addresses would give it billions of budgets).
fn budget_key(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V4(_) => source,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
    }
}

/// Keys that verified recently, by client: SHA-256 of the key and when it verified. Compared
/// in constant time; an entry is dropped when its client is unregistered.
#[derive(Default)]
pub struct VerifiedKeys {
    keys: Mutex<HashMap<String, ([u8; 32], Instant)>>,
}

impl VerifiedKeys {
    /// Whether `key` verified for `client_id` and was used within [`VERIFIED_TTL`] (a use
    /// extends it: a working client keeps its place while an attacker guesses its key).
    pub fn contains(&self, client_id: &str, key: &str) -> bool {
        let mut keys = lock(&self.keys);
        let Some((digest, at)) = keys.get_mut(client_id) else {
            return false;
        };
        let valid = at.elapsed() < VERIFIED_TTL
            && bool::from(subtle::ConstantTimeEq::ct_eq(&digest[..], &sha256(key)[..]));
        if valid {
            *at = Instant::now();
        }
        valid
    }

    /// Remembers that `key` verified for `client_id`.
    pub fn insert(&self, client_id: &str, key: &str) {
        let mut keys = lock(&self.keys);
        let now = Instant::now();
        if keys.len() >= MAX_BUDGETS {
            keys.retain(|_, (_, at)| now.duration_since(*at) < VERIFIED_TTL);
        }
        keys.insert(client_id.to_owned(), (sha256(key), now));
    }

    /// Forgets `client_id`'s key (unregistered).
    pub fn remove(&self, client_id: &str) {
        lock(&self.keys).remove(client_id);
    }
}

fn sha256(key: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_sources_and_one_clients_budgets_are_their_own() {
        let guard = VerifyGuard::new(RateLimiter::new(1000, Duration::from_secs(1)));
        let attacker: IpAddr = "192.0.2.1".parse().unwrap();
        let admitted = {
            let mut n = 0;
            for _ in 0..100 {
                if guard.admit("victim", attacker).await.is_ok() {
                    n += 1;
                }
            }
            n
        };
        assert_eq!(admitted, PER_CLIENT.burst, "the client ID's burst");
        // Another source may still try other clients...
        let neighbour: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(guard.admit("neighbour", neighbour).await.is_ok());
        // ...but not the exhausted client ID.
        assert_eq!(
            guard.admit("victim", neighbour).await,
            Err(Exhausted::Client)
        );
        // Many client IDs from one source: the source's budget ends it.
        let scanner: IpAddr = "192.0.2.3".parse().unwrap();
        let mut refused = None;
        for i in 0..100 {
            if let Err(e) = guard.admit(&format!("id-{i}"), scanner).await {
                refused = Some((i, e));
                break;
            }
        }
        assert_eq!(
            refused,
            Some((PER_SOURCE.burst as usize, Exhausted::Source))
        );
    }

    #[test]
    fn ipv6_sources_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(budget_key(a), budget_key(b));
        assert_ne!(budget_key(a), budget_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(budget_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn verified_keys_match_only_the_same_key() {
        let keys = VerifiedKeys::default();
        keys.insert("c", "right");
        assert!(keys.contains("c", "right"));
        assert!(!keys.contains("c", "wrong"));
        assert!(!keys.contains("d", "right"));
        keys.remove("c");
        assert!(!keys.contains("c", "right"));
    }
}
