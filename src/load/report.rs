//! What a load run reports: a one-line progress display while it runs (stderr), counter
//! snapshots at the window's edges, and the summary (a table on stdout, or JSON).
//!
//! The progress line is hand-written (one `\r`-rewritten line); a progress-bar crate would
//! add a terminal stack for one line.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::cpu;
use super::peer::{PeerPlan, PeerStatus};
use super::scenario::Scenario;
use super::stats::{Totals, percentile};

/// Whose CPU and memory a window measures.
#[derive(Debug, Clone, Copy)]
pub enum CpuProbe {
    /// The daemon: its forwarding threads, the whole process, and its RSS.
    Daemon(u32),
    /// Threads of this process with a name prefix (the floor's forwarder).
    OwnThreads(&'static str),
    None,
}

/// Participants whose flag `pick` is set.
pub fn count(statuses: &[Arc<PeerStatus>], pick: impl Fn(&PeerStatus) -> &AtomicBool) -> usize {
    statuses
        .iter()
        .filter(|s| pick(s).load(Ordering::Relaxed))
        .count()
}

/// Measures the steady window: snapshots at both edges, latency samples kept in between,
/// the progress line updated; ends early (`partial`) when `interrupted`.
pub async fn steady_window(
    scenario: &Scenario,
    statuses: &[Arc<PeerStatus>],
    measuring: &AtomicBool,
    interrupted: &tokio_util::sync::CancellationToken,
    probe: CpuProbe,
    partial: &mut bool,
) -> (Window, Window, Duration) {
    let mut progress = Progress::new(scenario);
    let start = Window::snapshot(statuses, probe);
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    while !*partial && started.elapsed() < scenario.duration {
        progress.measuring(started.elapsed(), statuses, start.received);
        tokio::select! {
            _ = interrupted.cancelled() => *partial = true,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    measuring.store(false, Ordering::Relaxed);
    let end = Window::snapshot(statuses, probe);
    let window = started.elapsed();
    progress.finish();
    (start, end, window)
}

/// Counters at one edge of the steady window.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub received: Totals,
    pub sent: u64,
    /// Daemon CPU (ns): forwarding threads, whole process; and RSS (KiB).
    pub forwarding_cpu_ns: Option<u64>,
    pub process_cpu_ns: Option<u64>,
    pub rss_kib: Option<u64>,
}

impl Window {
    pub fn snapshot(statuses: &[Arc<PeerStatus>], probe: CpuProbe) -> Self {
        let mut window = Window::default();
        for status in statuses {
            window.sent += status.sent.load(Ordering::Relaxed);
            if let Ok(stats) = status.stats.lock() {
                let totals = stats.totals();
                window.received.packets += totals.packets;
                window.received.video_packets += totals.video_packets;
                window.received.picture_id_regressions += totals.picture_id_regressions;
                window.received.bytes += totals.bytes;
                window.received.expected += totals.expected;
                window.received.jitter_us_sum += totals.jitter_us_sum;
                window.received.sources += totals.sources;
            }
        }
        match probe {
            CpuProbe::Daemon(pid) => {
                if let Ok((forwarding, process)) = cpu::threads_cpu(pid, super::FORWARDING_THREADS)
                {
                    window.forwarding_cpu_ns = Some(forwarding);
                    window.process_cpu_ns = Some(process);
                }
                window.rss_kib = cpu::rss_kib(pid).ok();
            }
            CpuProbe::OwnThreads(prefix) => {
                let own = cpu::threads_cpu_ns(std::process::id(), &[prefix]).ok();
                window.forwarding_cpu_ns = own;
                window.process_cpu_ns = own;
            }
            CpuProbe::None => {}
        }
        window
    }
}

/// The result of a run (SFU or floor), as printed and as JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub system: String,
    pub participants: usize,
    pub calls: usize,
    pub speakers: usize,
    pub sharing_calls: usize,
    pub connected: usize,
    pub failed: usize,
    /// Participants someone else in their call sends to, and how many of them got media.
    pub receivers_expected: usize,
    pub receivers_with_media: usize,
    /// Participants in a call with a screen share (other than the sharer), and how many of
    /// them got screen packets.
    pub screen_receivers_expected: usize,
    pub screen_receivers_with_video: usize,
    pub partial: bool,
    pub connect_s: f64,
    pub window_s: f64,
    pub packets_sent: u64,
    pub copies_received: u64,
    /// Screen copies received, and those whose VP8 picture ID ran backwards.
    pub video_copies_received: u64,
    pub picture_id_regressions: u64,
    pub copies_expected: u64,
    pub loss_percent: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub jitter_ms: f64,
    /// Forwarding threads' CPU per delivered packet copy.
    pub cpu_us_per_copy: Option<f64>,
    pub process_cpu_us_per_copy: Option<f64>,
    pub forwarding_cpu_percent: Option<f64>,
    pub process_cpu_percent: Option<f64>,
    pub rss_mib: Option<f64>,
    pub kib_per_session: Option<f64>,
}

/// How a run went, besides the counters.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub connected_after: Duration,
    pub window: Duration,
    pub partial: bool,
    /// Daemon RSS before the first join (KiB).
    pub baseline_rss_kib: Option<u64>,
}

impl Summary {
    pub fn from_peers(
        scenario: &Scenario,
        system: &str,
        plans: &[PeerPlan],
        statuses: &[Arc<PeerStatus>],
        start: &Window,
        end: &Window,
        facts: &RunFacts,
    ) -> Self {
        let mut latencies: Vec<u32> = Vec::new();
        for status in statuses {
            if let Ok(stats) = status.stats.lock() {
                latencies.extend_from_slice(&stats.latencies_us);
            }
        }
        let connected = count(statuses, |s| &s.connected);
        let failed = count(statuses, |s| &s.failed);
        let copies = end.received.packets.saturating_sub(start.received.packets);
        let expected = end
            .received
            .expected
            .saturating_sub(start.received.expected);
        let window_s = facts.window.as_secs_f64();
        let delta = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
        let forwarding_ns = delta(start.forwarding_cpu_ns, end.forwarding_cpu_ns);
        let process_ns = delta(start.process_cpu_ns, end.process_cpu_ns);
        let per_copy = |ns: Option<u64>| {
            ns.filter(|_| copies > 0)
                .map(|ns| ns as f64 / 1e3 / copies as f64)
        };
        let percent = |ns: Option<u64>| ns.map(|ns| ns as f64 / 1e9 / window_s.max(1e-9) * 100.0);
        let sessions = connected.max(1) as f64;
        let sends = |p: &PeerPlan| p.speaker || p.screen_bps.is_some();
        let mut receivers_expected = 0;
        let mut receivers_with_media = 0;
        let mut screen_receivers_expected = 0;
        let mut screen_receivers_with_video = 0;
        for (plan, status) in plans.iter().zip(statuses) {
            let others = || {
                plans
                    .iter()
                    .filter(|o| o.call_id == plan.call_id && o.session_id != plan.session_id)
            };
            let (packets, video_packets) = status
                .stats
                .lock()
                .map_or((0, 0), |s| (s.packets, s.video_packets));
            if others().any(sends) {
                receivers_expected += 1;
                receivers_with_media += usize::from(packets > 0);
            }
            if others().any(|o| o.screen_bps.is_some()) {
                screen_receivers_expected += 1;
                screen_receivers_with_video += usize::from(video_packets > 0);
            }
        }
        Summary {
            system: system.to_owned(),
            participants: scenario.participants,
            calls: scenario.calls,
            speakers: scenario.calls * scenario.speakers_per_call,
            sharing_calls: scenario.sharing_calls(),
            connected,
            failed,
            receivers_expected,
            receivers_with_media,
            screen_receivers_expected,
            screen_receivers_with_video,
            partial: facts.partial,
            connect_s: facts.connected_after.as_secs_f64(),
            window_s,
            packets_sent: end.sent.saturating_sub(start.sent),
            copies_received: copies,
            video_copies_received: end
                .received
                .video_packets
                .saturating_sub(start.received.video_packets),
            picture_id_regressions: end.received.picture_id_regressions,
            copies_expected: expected,
            loss_percent: if expected == 0 {
                0.0
            } else {
                expected.saturating_sub(copies) as f64 * 100.0 / expected as f64
            },
            latency_p50_ms: percentile(&mut latencies, 50.0).map(|us| f64::from(us) / 1e3),
            latency_p99_ms: percentile(&mut latencies, 99.0).map(|us| f64::from(us) / 1e3),
            jitter_ms: if end.received.sources == 0 {
                0.0
            } else {
                end.received.jitter_us_sum / end.received.sources as f64 / 1e3
            },
            cpu_us_per_copy: per_copy(forwarding_ns),
            process_cpu_us_per_copy: per_copy(process_ns),
            forwarding_cpu_percent: percent(forwarding_ns),
            process_cpu_percent: percent(process_ns),
            rss_mib: end.rss_kib.map(|k| k as f64 / 1024.0),
            kib_per_session: delta(facts.baseline_rss_kib, end.rss_kib)
                .map(|k| k as f64 / sessions),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
        };
        let rows: Vec<(&str, String)> = vec![
            ("system", self.system.clone()),
            (
                "participants / calls",
                format!("{} / {}", self.participants, self.calls),
            ),
            (
                "speakers / calls sharing",
                format!("{} / {}", self.speakers, self.sharing_calls),
            ),
            (
                "connected / failed",
                format!(
                    "{} / {} (after {:.1} s)",
                    self.connected, self.failed, self.connect_s
                ),
            ),
            (
                "steady window",
                format!(
                    "{:.1} s{}",
                    self.window_s,
                    if self.partial {
                        " (interrupted: partial)"
                    } else {
                        ""
                    }
                ),
            ),
            (
                "receivers with media",
                format!(
                    "{} / {}",
                    self.receivers_with_media, self.receivers_expected
                ),
            ),
            (
                "screen receivers with video",
                format!(
                    "{} / {}",
                    self.screen_receivers_with_video, self.screen_receivers_expected
                ),
            ),
            ("packets sent", self.packets_sent.to_string()),
            (
                "copies received / expected",
                format!("{} / {}", self.copies_received, self.copies_expected),
            ),
            ("loss", format!("{:.3} %", self.loss_percent)),
            (
                "screen copies / picture-ID regressions",
                format!(
                    "{} / {}",
                    self.video_copies_received, self.picture_id_regressions
                ),
            ),
            (
                "latency p50 / p99",
                format!(
                    "{} / {} ms",
                    opt(self.latency_p50_ms, 2),
                    opt(self.latency_p99_ms, 2)
                ),
            ),
            ("jitter (mean)", format!("{:.3} ms", self.jitter_ms)),
            (
                "CPU per copy (forwarding / process)",
                format!(
                    "{} / {} µs",
                    opt(self.cpu_us_per_copy, 2),
                    opt(self.process_cpu_us_per_copy, 2)
                ),
            ),
            (
                "CPU (forwarding / process)",
                format!(
                    "{} / {} % of a core",
                    opt(self.forwarding_cpu_percent, 1),
                    opt(self.process_cpu_percent, 1)
                ),
            ),
            (
                "RSS / per session",
                format!(
                    "{} MiB / {} KiB",
                    opt(self.rss_mib, 1),
                    opt(self.kib_per_session, 1)
                ),
            ),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        writeln!(f, "+-{}-+-{}-+", "-".repeat(width), "-".repeat(44))?;
        for (key, value) in rows {
            writeln!(f, "| {key:<width$} | {value:<44} |")?;
        }
        write!(f, "+-{}-+-{}-+", "-".repeat(width), "-".repeat(44))
    }
}

/// The progress line.
pub struct Progress {
    participants: usize,
    duration: Duration,
    last: Instant,
    enabled: bool,
}

impl Progress {
    pub fn new(scenario: &Scenario) -> Self {
        Self {
            participants: scenario.participants,
            duration: scenario.duration,
            last: Instant::now() - Duration::from_secs(1),
            enabled: std::io::IsTerminal::is_terminal(&std::io::stderr())
                || std::env::var_os("RTCD_LOAD_PROGRESS").is_some(),
        }
    }

    fn show(&mut self, line: String) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last = Instant::now();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line:<100}");
        let _ = err.flush();
    }

    pub fn joining(&mut self, joined: usize, statuses: &[Arc<PeerStatus>], elapsed: Duration) {
        let connected = count(statuses, |s| &s.connected);
        let failed = count(statuses, |s| &s.failed);
        let line = format!(
            "joining {} {joined}/{} joined, {connected} connected, {failed} failed ({:.0} s)",
            bar(connected, self.participants),
            self.participants,
            elapsed.as_secs_f64()
        );
        self.show(line);
    }

    pub fn measuring(&mut self, elapsed: Duration, statuses: &[Arc<PeerStatus>], start: Totals) {
        let received: u64 = statuses
            .iter()
            .filter_map(|s| s.stats.lock().ok().map(|s| s.packets))
            .sum();
        let copies = received.saturating_sub(start.packets);
        let rate = copies as f64 / elapsed.as_secs_f64().max(0.001);
        let line = format!(
            "measuring {} {:.0}/{} s, {copies} copies ({rate:.0}/s)",
            bar(
                elapsed.as_millis() as usize,
                self.duration.as_millis() as usize
            ),
            elapsed.as_secs_f64(),
            self.duration.as_secs()
        );
        self.show(line);
    }

    pub fn finish(&mut self) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "\r{:<100}", "");
        }
    }
}

fn bar(done: usize, total: usize) -> String {
    const WIDTH: usize = 24;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(0).min(WIDTH);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(WIDTH - filled))
}
