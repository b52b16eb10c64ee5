//! Host load sampling for `GET /system` (spec control-plane §4.4).
//!
//! Owns: the 1 s sampler of aggregate idle CPU time from `/proc/stat` and the `cpu_load`
//! value, `wall seconds / idle CPU seconds` over the last interval (lower = less loaded).
//! Always a finite JSON number: a fully busy host reports [`SATURATED_CPU_LOAD`]; a draining
//! daemon reports [`DRAINING_CPU_LOAD`] so the plugin places new calls elsewhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Reported when no idle time was observed in the interval (upstream would report +Inf).
pub const SATURATED_CPU_LOAD: f64 = 1.0e6;
/// Reported while draining: higher than any real load.
pub const DRAINING_CPU_LOAD: f64 = 1.0e9;
/// Sampling interval.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// The shared load value.
#[derive(Debug, Default)]
pub struct CpuLoad {
    bits: AtomicU64,
    draining: AtomicBool,
}

impl CpuLoad {
    /// Current `cpu_load` (0 until two samples exist).
    pub fn get(&self) -> f64 {
        if self.draining.load(Ordering::Relaxed) {
            return DRAINING_CPU_LOAD;
        }
        f64::from_bits(self.bits.load(Ordering::Relaxed))
    }

    /// Marks the daemon as draining.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    fn set(&self, value: f64) {
        self.bits.store(value.to_bits(), Ordering::Relaxed);
    }

    /// Starts the sampler; it stops when `stop` is cancelled.
    pub fn spawn_sampler(self: &Arc<Self>, stop: CancellationToken) {
        let load = self.clone();
        tokio::spawn(async move {
            let mut previous = idle_seconds().map(|idle| (Instant::now(), idle));
            let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let Some(idle) = idle_seconds() else { continue };
                let now = Instant::now();
                if let Some((then, idle_then)) = previous {
                    load.set(cpu_load(
                        now.duration_since(then).as_secs_f64(),
                        idle - idle_then,
                    ));
                }
                previous = Some((now, idle));
            }
        });
    }
}

/// `elapsed / idle`, clamped to a finite value.
pub fn cpu_load(elapsed_seconds: f64, idle_seconds: f64) -> f64 {
    if idle_seconds <= 0.0 || !idle_seconds.is_finite() {
        return SATURATED_CPU_LOAD;
    }
    (elapsed_seconds / idle_seconds).min(SATURATED_CPU_LOAD)
}

/// Aggregate idle time of all CPUs, in seconds.
fn idle_seconds() -> Option<f64> {
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let idle: u64 = cpu.split_whitespace().nth(3)?.parse().ok()?;
    Some(idle as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_formula_and_clamping() {
        assert_eq!(cpu_load(1.0, 4.0), 0.25);
        assert_eq!(cpu_load(1.0, 1.0), 1.0);
        assert_eq!(cpu_load(1.0, 0.0), SATURATED_CPU_LOAD);
        assert!(idle_seconds().is_some());
        let load = CpuLoad::default();
        assert_eq!(load.get(), 0.0);
        load.set_draining();
        assert_eq!(load.get(), DRAINING_CPU_LOAD);
    }
}
