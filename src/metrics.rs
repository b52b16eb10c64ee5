//! Prometheus registry of the daemon and its typed metric handles.
//!
//! Owns: metric names, help texts, label sets and buckets (upstream names of spec
//! control-plane §13), the process collector (`rtcd_process_*`) and the text encoding served
//! on `/metrics`. Labels are typed structs/enums; never per-packet label allocation on a hot
//! path (callers resolve a family entry once and keep the handle).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets of upstream (seconds).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0,
];
/// Loss-rate buckets of upstream (fraction).
pub const LOSS_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0,
];
/// Prometheus' default buckets (seconds).
pub const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Bitrate buckets (bit/s): 8 kbit/s to ~8 Mbit/s.
pub const BITRATE_BUCKETS: [f64; 11] = [
    8e3, 16e3, 32e3, 64e3, 128e3, 256e3, 512e3, 1e6, 2e6, 4e6, 8e6,
];

/// Call quality measured by the SFU, aggregated over sessions (no per-session or per-call
/// labels: bounded cardinality). One sample per session per sampling period.
#[derive(Debug, Clone)]
pub struct QualityMetrics {
    pub loss: Histogram,
    pub jitter: Histogram,
    pub rtt: Histogram,
    pub receive_bitrate: Histogram,
    pub send_bitrate: Histogram,
    /// Fraction of the SFU's packets a client reports lost (its RTCP receiver reports).
    pub remote_loss: Histogram,
    /// Generic NACKs received from clients (for the SFU's forwarded streams).
    pub nacks_received: Counter,
    /// Generic NACKs the SFU sent to publishers.
    pub nacks_sent: Counter,
    /// Packets the SFU retransmitted on RTX after a client's NACK.
    pub retransmitted_packets: Counter,
    /// Packets clients asked for again that the retransmission budget refused.
    pub refused_retransmissions: Counter,
    /// Forwarded audio packets the SFU encrypted and sent itself (the direct path).
    pub direct_audio_packets: Counter,
    /// Forwarded video packets (retransmissions not included) the SFU sent itself.
    pub direct_video_packets: Counter,
    /// UDP flows read from their own connected socket by their worker (`net::flows`).
    pub connected_flows: Gauge,
    /// From adding a video track to a receiver to forwarding its first keyframe (seconds).
    pub keyframe_wait: Histogram,
}

impl Default for QualityMetrics {
    fn default() -> Self {
        Self {
            loss: Histogram::new(LOSS_BUCKETS.iter().copied()),
            jitter: Histogram::new(LATENCY_BUCKETS.iter().copied()),
            rtt: Histogram::new(LATENCY_BUCKETS.iter().copied()),
            receive_bitrate: Histogram::new(BITRATE_BUCKETS.iter().copied()),
            send_bitrate: Histogram::new(BITRATE_BUCKETS.iter().copied()),
            remote_loss: Histogram::new(LOSS_BUCKETS.iter().copied()),
            nacks_received: Counter::default(),
            nacks_sent: Counter::default(),
            retransmitted_packets: Counter::default(),
            refused_retransmissions: Counter::default(),
            direct_audio_packets: Counter::default(),
            direct_video_packets: Counter::default(),
            connected_flows: Gauge::default(),
            keyframe_wait: Histogram::new(LATENCY_BUCKETS.iter().copied()),
        }
    }
}

/// `{groupID}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
#[allow(non_snake_case)]
pub struct GroupLabels {
    pub groupID: String,
}

/// `{clientID}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
#[allow(non_snake_case)]
pub struct ClientLabels {
    pub clientID: String,
}

/// Message or track direction (`in` / `out`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl EncodeLabelValue for Direction {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        encoder.write_str(match self {
            Direction::In => "in",
            Direction::Out => "out",
        })
    }
}

/// `{clientID, type, direction}` of `rtcd_ws_messages_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
#[allow(non_snake_case)]
pub struct WsMessageLabels {
    pub clientID: String,
    pub r#type: String,
    pub direction: Direction,
}

/// Peer-connection states counted by `rtcd_rtc_conn_states_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ConnState {
    connected,
    disconnected,
    failed,
    closed,
}

/// `{type}` of `rtcd_rtc_conn_states_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnStateLabels {
    pub r#type: ConnState,
}

/// Error kinds of `rtcd_rtc_errors_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RtcErrorKind {
    rtp,
    signaling,
    track,
    ice,
    signaling_lock_timeout,
}

/// `{groupID, type}` of `rtcd_rtc_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
#[allow(non_snake_case)]
pub struct RtcErrorLabels {
    pub groupID: String,
    pub r#type: RtcErrorKind,
}

/// `{groupID, direction, type}` of `rtcd_rtc_rtp_tracks_total` (type = codec MIME type).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
#[allow(non_snake_case)]
pub struct TrackLabels {
    pub groupID: String,
    pub direction: Direction,
    pub r#type: String,
}

/// `{groupID, type}` of `rtcd_rtc_rtp_tracks_writes_time` (type = track kind).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
#[allow(non_snake_case)]
pub struct TrackKindLabels {
    pub groupID: String,
    pub r#type: String,
}

/// Why a session failed (`cause` of `rtcd_rtc_session_failures_total`; `docs/troubleshooting.md`
/// says what each means and how to fix it).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum FailureCause {
    /// No SDP offer within 10 s of the join.
    no_offer,
    /// The client's first offer could not be applied.
    bad_offer,
    /// Not one ICE check arrived: the media port is unreachable or the advertised address
    /// is wrong.
    no_ice_check,
    /// Checks arrived but no candidate pair worked.
    ice_failed,
    /// ICE connected, DTLS did not.
    dtls_failed,
    /// Connected, then the client's consent checks stopped.
    consent_lost,
}

/// `{cause}` of `rtcd_rtc_session_failures_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub cause: FailureCause,
}

/// `{limit}` of `rtcd_limit_refusals_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: crate::limits::Limit,
}

/// Builds histograms with a fixed bucket list for a [`Family`].
#[derive(Clone, Copy)]
pub struct Buckets(&'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

type HistogramFamily<L> = Family<L, Histogram, Buckets>;

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    pub ws_connections: Family<ClientLabels, Gauge>,
    pub ws_messages: Family<WsMessageLabels, Counter>,
    pub rtc_sessions: Family<GroupLabels, Gauge>,
    pub rtc_conn_states: Family<ConnStateLabels, Counter>,
    pub rtc_errors: Family<RtcErrorLabels, Counter>,
    pub rtc_rtp_tracks: Family<TrackLabels, Gauge>,
    pub rtc_rtp_tracks_writes_time: HistogramFamily<TrackKindLabels>,
    pub rtc_connection_time: HistogramFamily<GroupLabels>,
    pub rtc_dc_open_time: HistogramFamily<GroupLabels>,
    pub rtc_signaling_lock_grab_time: HistogramFamily<GroupLabels>,
    pub rtc_signaling_lock_locked_time: HistogramFamily<GroupLabels>,
    pub rtc_client_loss_rate: HistogramFamily<GroupLabels>,
    pub rtc_client_rtt: HistogramFamily<GroupLabels>,
    pub rtc_client_jitter: HistogramFamily<GroupLabels>,
    pub quality: QualityMetrics,
    /// Requests, messages and connections refused by a `[limits]` limit.
    pub limit_refusals: Family<LimitLabels, Counter>,
    /// Sessions that failed, by cause.
    pub session_failures: Family<FailureLabels, Counter>,
    /// Sessions that exist in the media plane (equal to `rtc_sessions_total` summed over
    /// groups whenever no command is in flight).
    pub media_sessions: Gauge,
    /// Codec types seen in `rtc_rtp_tracks_total` labels (to remove a tenant's label sets).
    track_types: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rtcd");
        fn latency<L: Clone + std::hash::Hash + Eq>() -> HistogramFamily<L> {
            HistogramFamily::new_with_constructor(Buckets(&LATENCY_BUCKETS))
        }
        fn default<L: Clone + std::hash::Hash + Eq>() -> HistogramFamily<L> {
            HistogramFamily::new_with_constructor(Buckets(&DEFAULT_BUCKETS))
        }
        let metrics = Self {
            ws_connections: Family::default(),
            ws_messages: Family::default(),
            rtc_sessions: Family::default(),
            rtc_conn_states: Family::default(),
            rtc_errors: Family::default(),
            rtc_rtp_tracks: Family::default(),
            rtc_rtp_tracks_writes_time: latency(),
            rtc_connection_time: default(),
            rtc_dc_open_time: default(),
            rtc_signaling_lock_grab_time: default(),
            rtc_signaling_lock_locked_time: default(),
            rtc_client_loss_rate: HistogramFamily::new_with_constructor(Buckets(&LOSS_BUCKETS)),
            rtc_client_rtt: latency(),
            rtc_client_jitter: latency(),
            quality: QualityMetrics::default(),
            limit_refusals: Family::default(),
            session_failures: Family::default(),
            media_sessions: Gauge::default(),
            track_types: Default::default(),
            registry: Registry::default(),
        };
        registry.register(
            "limit_refusals",
            "Requests, messages and connections refused by a [limits] limit",
            metrics.limit_refusals.clone(),
        );
        registry.register(
            "rtc_session_failures",
            "Sessions that failed, by cause (see docs/troubleshooting.md)",
            metrics.session_failures.clone(),
        );
        registry.register(
            "rtc_media_sessions",
            "Sessions that exist in the media plane",
            metrics.media_sessions.clone(),
        );
        // Counters get their `_total` suffix from the encoder; gauges keep upstream's names.
        registry.register(
            "ws_connections_total",
            "Open plugin WebSocket connections",
            metrics.ws_connections.clone(),
        );
        registry.register(
            "ws_messages",
            "WebSocket messages by envelope type and direction",
            metrics.ws_messages.clone(),
        );
        registry.register(
            "rtc_sessions_total",
            "RTC sessions",
            metrics.rtc_sessions.clone(),
        );
        registry.register(
            "rtc_conn_states",
            "Peer connection state transitions",
            metrics.rtc_conn_states.clone(),
        );
        registry.register(
            "rtc_errors",
            "RTC errors by type",
            metrics.rtc_errors.clone(),
        );
        registry.register(
            "rtc_rtp_tracks_total",
            "RTP tracks by direction and codec",
            metrics.rtc_rtp_tracks.clone(),
        );
        registry.register(
            "rtc_rtp_tracks_writes_time",
            "Time to write one forwarded RTP packet (seconds)",
            metrics.rtc_rtp_tracks_writes_time.clone(),
        );
        registry.register(
            "rtc_connection_time",
            "Session start to peer connection connected (seconds)",
            metrics.rtc_connection_time.clone(),
        );
        registry.register(
            "rtc_dc_open_time",
            "Initial answer to data channel open (seconds)",
            metrics.rtc_dc_open_time.clone(),
        );
        registry.register(
            "rtc_signaling_lock_grab_time",
            "Time waiting for the signaling lock (seconds)",
            metrics.rtc_signaling_lock_grab_time.clone(),
        );
        registry.register(
            "rtc_signaling_lock_locked_time",
            "Time the signaling lock was held (seconds)",
            metrics.rtc_signaling_lock_locked_time.clone(),
        );
        registry.register(
            "rtc_client_loss_rate",
            "Loss rate reported by clients (fraction)",
            metrics.rtc_client_loss_rate.clone(),
        );
        registry.register(
            "rtc_client_rtt",
            "Round-trip time reported by clients (seconds)",
            metrics.rtc_client_rtt.clone(),
        );
        registry.register(
            "rtc_client_jitter",
            "Jitter reported by clients (seconds)",
            metrics.rtc_client_jitter.clone(),
        );
        // New in this port: quality the SFU measures itself, per session every few seconds.
        let quality = &metrics.quality;
        registry.register(
            "rtc_session_loss_ratio",
            "Fraction of a client's packets lost on the way to the SFU, per sampling period",
            quality.loss.clone(),
        );
        registry.register(
            "rtc_session_jitter_seconds",
            "Interarrival jitter of a client's streams at the SFU (largest stream), per sample",
            quality.jitter.clone(),
        );
        registry.register(
            "rtc_session_rtt_seconds",
            "Round-trip time to the client (ICE), per sample",
            quality.rtt.clone(),
        );
        registry.register(
            "rtc_session_receive_bitrate_bps",
            "Media bitrate from a client to the SFU, per sample",
            quality.receive_bitrate.clone(),
        );
        registry.register(
            "rtc_session_send_bitrate_bps",
            "Media bitrate from the SFU to a client, per sample",
            quality.send_bitrate.clone(),
        );
        registry.register(
            "rtc_session_remote_loss_ratio",
            "Fraction of the SFU's packets lost on the way to a client (its receiver reports), per sample",
            quality.remote_loss.clone(),
        );
        registry.register(
            "rtc_retransmissions_refused",
            "Packets clients asked for again (NACK) beyond the retransmission budget of their stream",
            quality.refused_retransmissions.clone(),
        );
        registry.register(
            "rtc_keyframe_wait_seconds",
            "Time from adding a video track to a receiver to its first forwarded keyframe",
            quality.keyframe_wait.clone(),
        );
        registry.register(
            "rtc_nacks_received",
            "Generic NACKs received from clients for forwarded streams",
            quality.nacks_received.clone(),
        );
        registry.register(
            "rtc_nacks_sent",
            "Generic NACKs sent to publishers for packets missing at the SFU",
            quality.nacks_sent.clone(),
        );
        registry.register(
            "rtc_retransmitted_packets",
            "Packets retransmitted to clients (RTX) in answer to their NACKs",
            quality.retransmitted_packets.clone(),
        );
        registry.register(
            "rtc_direct_audio_packets",
            "Forwarded audio packets the SFU encrypted and sent itself rather than through the WebRTC core (counted per session every quality sample and at its end)",
            quality.direct_audio_packets.clone(),
        );
        registry.register(
            "rtc_direct_video_packets",
            "Forwarded video packets the SFU encrypted and sent itself, with its own NACK history, RTX and send-side estimate (counted per session every quality sample and at its end; retransmissions not included)",
            quality.direct_video_packets.clone(),
        );
        registry.register(
            "rtc_connected_flows",
            "Client UDP flows received on their own connected socket by the media worker that owns them (the others arrive through the shared media socket)",
            quality.connected_flows.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        Self {
            registry,
            ..metrics
        }
    }

    /// Prometheus text exposition (format 0.0.4).
    /// Counts one failed session.
    pub fn session_failed(&self, cause: FailureCause) {
        self.session_failures
            .get_or_create(&FailureLabels { cause })
            .inc();
    }

    /// Counts one refusal by `limit`.
    pub fn refused(&self, limit: crate::limits::Limit) {
        self.limit_refusals
            .get_or_create(&LimitLabels { limit })
            .inc();
    }

    /// Adds `delta` to the tracks gauge of `group` (remembering the codec type, so that
    /// [`Metrics::forget_tenant`] can find the label set again).
    pub fn track_gauge(&self, group: &str, direction: Direction, mime: &str, delta: i64) {
        {
            let mut types = self.track_types.lock().unwrap_or_else(|e| e.into_inner());
            if !types.contains(mime) {
                types.insert(mime.to_owned());
            }
        }
        self.rtc_rtp_tracks
            .get_or_create(&TrackLabels {
                groupID: group.to_owned(),
                direction,
                r#type: mime.to_owned(),
            })
            .inc_by(delta);
    }

    /// Removes every label set of client (group) `id`: called once an unregistered client has
    /// no connection and no session left, so its series stop being exported.
    pub fn forget_tenant(&self, id: &str) {
        let client = ClientLabels {
            clientID: id.to_owned(),
        };
        self.ws_connections.remove(&client);
        for direction in [Direction::In, Direction::Out] {
            for kind in crate::ws::codec::ENVELOPE_TYPES {
                self.ws_messages.remove(&WsMessageLabels {
                    clientID: id.to_owned(),
                    r#type: (*kind).to_owned(),
                    direction,
                });
            }
            let types = self.track_types.lock().unwrap_or_else(|e| e.into_inner());
            for mime in types.iter() {
                self.rtc_rtp_tracks.remove(&TrackLabels {
                    groupID: id.to_owned(),
                    direction,
                    r#type: mime.clone(),
                });
            }
        }
        for kind in [
            RtcErrorKind::rtp,
            RtcErrorKind::signaling,
            RtcErrorKind::track,
            RtcErrorKind::ice,
            RtcErrorKind::signaling_lock_timeout,
        ] {
            self.rtc_errors.remove(&RtcErrorLabels {
                groupID: id.to_owned(),
                r#type: kind,
            });
        }
        for kind in ["voice", "screen", "screen_audio", "video"] {
            self.rtc_rtp_tracks_writes_time.remove(&TrackKindLabels {
                groupID: id.to_owned(),
                r#type: kind.to_owned(),
            });
        }
        let group = GroupLabels {
            groupID: id.to_owned(),
        };
        self.rtc_sessions.remove(&group);
        for family in [
            &self.rtc_connection_time,
            &self.rtc_dc_open_time,
            &self.rtc_signaling_lock_grab_time,
            &self.rtc_signaling_lock_locked_time,
            &self.rtc_client_loss_rate,
            &self.rtc_client_rtt,
            &self.rtc_client_jitter,
        ] {
            family.remove(&group);
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// Content type of [`Metrics::encode`].
    pub const CONTENT_TYPE: &'static str =
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
}

/// `rtcd_process_*`: CPU, memory, file descriptors and start time of this process, read from
/// `/proc/self` on each scrape.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stat) = ProcessStat::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(stat.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                stat.rss_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stat.vsize_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                stat.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                stat.max_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                stat.start_time_seconds,
            ),
        ] {
            let gauge = ConstGauge::new(value as i64);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

struct ProcessStat {
    cpu_seconds: f64,
    rss_bytes: u64,
    vsize_bytes: u64,
    open_fds: u64,
    max_fds: u64,
    start_time_seconds: u64,
}

/// The kernel's page size and clock-tick rate as it told this process (the ELF auxiliary
/// vector, `/proc/self/auxv`: `AT_PAGESZ`, `AT_CLKTCK`), read once; 4096 and 100 if absent.
fn page_size_and_ticks() -> (u64, u64) {
    static VALUES: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    *VALUES.get_or_init(|| {
        const AT_PAGESZ: u64 = 6;
        const AT_CLKTCK: u64 = 17;
        let (mut page, mut ticks) = (4096, 100);
        if let Ok(auxv) = std::fs::read("/proc/self/auxv") {
            for pair in auxv.chunks_exact(16) {
                let key = u64::from_ne_bytes(pair[..8].try_into().unwrap_or_default());
                let value = u64::from_ne_bytes(pair[8..].try_into().unwrap_or_default());
                match key {
                    AT_PAGESZ if value > 0 => page = value,
                    AT_CLKTCK if value > 0 => ticks = value,
                    _ => {}
                }
            }
        }
        (page, ticks)
    })
}

/// The soft limit on open files (`/proc/self/limits`).
fn max_open_files() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

impl ProcessStat {
    fn read() -> Option<Self> {
        let (page_size, ticks) = page_size_and_ticks();
        let ticks_per_second = ticks as f64;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name; index 0 is field 3 (state).
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
        Some(Self {
            cpu_seconds: (field(14)? + field(15)?) as f64 / ticks_per_second,
            vsize_bytes: field(23)?,
            rss_bytes: field(24)? * page_size,
            open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
            max_fds: max_open_files().unwrap_or(0),
            start_time_seconds: boot_time + (field(22)? as f64 / ticks_per_second) as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_and_clock_ticks_come_from_the_kernel() {
        let (page, ticks) = page_size_and_ticks();
        assert!(page.is_power_of_two() && page >= 4096, "{page}");
        assert!((1..=10_000).contains(&ticks), "{ticks}");
        assert!(max_open_files().is_some_and(|n| n > 0));
    }

    #[test]
    fn exports_upstream_names() {
        let metrics = Metrics::new();
        metrics
            .ws_connections
            .get_or_create(&ClientLabels {
                clientID: "c1".into(),
            })
            .inc();
        metrics
            .rtc_errors
            .get_or_create(&RtcErrorLabels {
                groupID: "g".into(),
                r#type: RtcErrorKind::signaling_lock_timeout,
            })
            .inc();
        metrics
            .rtc_client_rtt
            .get_or_create(&GroupLabels {
                groupID: "g".into(),
            })
            .observe(0.02);
        let text = metrics.encode();
        for needle in [
            "rtcd_ws_connections_total{clientID=\"c1\"} 1",
            "rtcd_rtc_errors_total{groupID=\"g\",type=\"signaling_lock_timeout\"} 1",
            "rtcd_rtc_client_rtt_bucket{groupID=\"g\",le=\"0.025\"} 1",
            "# TYPE rtcd_process_cpu_seconds_total counter",
            "rtcd_process_resident_memory_bytes ",
            "rtcd_process_max_fds ",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
