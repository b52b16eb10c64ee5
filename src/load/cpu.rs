//! CPU time and memory of a process or some of its threads, read from `/proc` (Linux):
//! `schedstat` gives nanosecond CPU time per thread, `comm` its name, `status` the RSS. The
//! load tool and the floor use the same accounting over the same window.

use std::fs;
use std::io;

/// CPU time (ns) of `pid`'s threads whose name starts with one of `prefixes` (all threads
/// when empty).
pub fn threads_cpu_ns(pid: u32, prefixes: &[&str]) -> io::Result<u64> {
    threads_cpu(pid, prefixes).map(|(matched, _)| matched)
}

/// CPU time (ns) of the threads matching `prefixes` and of all threads, read in one pass.
pub fn threads_cpu(pid: u32, prefixes: &[&str]) -> io::Result<(u64, u64)> {
    let (mut matched, mut total) = (0, 0);
    for entry in fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = entry?.path();
        // A thread may exit between listing and reading: it no longer counts.
        let Some(ns) = fs::read_to_string(task.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        else {
            continue;
        };
        total += ns;
        let name = fs::read_to_string(task.join("comm")).unwrap_or_default();
        if prefixes.is_empty() || prefixes.iter().any(|p| name.trim_end().starts_with(p)) {
            matched += ns;
        }
    }
    Ok((matched, total))
}

/// CPU time (ns) of the calling thread.
pub fn current_thread_cpu_ns() -> io::Result<u64> {
    let schedstat = fs::read_to_string("/proc/thread-self/schedstat")?;
    schedstat
        .split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .ok_or_else(|| io::Error::other("unreadable schedstat"))
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        let before = threads_cpu_ns(pid, &[]).unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = threads_cpu_ns(pid, &[]).unwrap();
        assert!(after > before, "{before} → {after}");
        assert!(current_thread_cpu_ns().unwrap() > 0);
        assert!(rss_kib(pid).unwrap() > 100);
    }
}
