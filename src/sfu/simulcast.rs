//! Simulcast forwarding for one receiver of one screen track (spec media-plane §4): exactly one
//! layer is forwarded at a time on one outgoing SSRC; a switch happens only at a keyframe of the
//! new layer, and sequence numbers, RTP timestamps and the VP8 picture ID/TL0PICIDX are rebased
//! so the receiver sees one continuous stream. The layer is the receiver's target unless that
//! layer has gone silent (the publisher's encoder paused it), then whichever layer still flows.
//!
//! Owns: the switching state machine. Which target a receiver should have (bandwidth
//! estimation) is decided elsewhere and set with [`LayerSwitcher::set_target`].

use std::time::{Duration, Instant};

use super::vp8::Descriptor;

/// A simulcast layer (the Calls client sends rids `l` and `h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    Low,
    High,
}

impl Layer {
    /// The layer a rid names (`m`, defined but unused by the client, counts as high).
    pub fn from_rid(rid: &str) -> Option<Layer> {
        match rid {
            "l" => Some(Layer::Low),
            "h" | "m" => Some(Layer::High),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Low => "l",
            Layer::High => "h",
        }
    }

    fn index(self) -> usize {
        match self {
            Layer::Low => 0,
            Layer::High => 1,
        }
    }

    fn other(self) -> Layer {
        match self {
            Layer::Low => Layer::High,
            Layer::High => Layer::Low,
        }
    }
}

/// Fraction of the high layer's measured rate the bandwidth estimate must reach for it.
pub const RATE_TOLERANCE: f64 = 0.9;
/// Below this estimate a receiver never moves up (the estimator's floor is 250 kbit/s).
pub const MIN_UPGRADE_ESTIMATE: f64 = 300_000.0;
/// Minimum time on the low layer before trying the high one again; ×1.5 after every
/// downgrade, never reset (upstream's back-off).
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);

/// Bit rate of one layer as received from the publisher, over the last complete second.
#[derive(Debug, Clone, Copy, Default)]
struct RateMeter {
    bucket_start: Option<Instant>,
    current: u64,
    previous: Option<u64>,
}

impl RateMeter {
    fn add(&mut self, now: Instant, bytes: usize) {
        match self.bucket_start {
            Some(start) if now.duration_since(start) < Duration::from_secs(1) => {}
            Some(start) => {
                let gap = now.duration_since(start) >= Duration::from_secs(2);
                self.previous = Some(if gap { 0 } else { self.current });
                self.current = 0;
                self.bucket_start = Some(now);
            }
            None => self.bucket_start = Some(now),
        }
        self.current += bytes as u64;
    }

    fn bits_per_second(&self) -> Option<f64> {
        self.previous.map(|bytes| bytes as f64 * 8.0)
    }
}

/// A layer silent for this long is treated as stopped.
pub const LAYER_SILENCE: Duration = Duration::from_secs(1);
/// Keyframe requests for a wanted layer are repeated at most this often.
pub const KEYFRAME_RETRY: Duration = Duration::from_millis(500);

/// Header fields a forwarded packet gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    pub seq: u16,
    pub timestamp: u32,
    pub picture_id: Option<u16>,
    pub tl0: Option<u8>,
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Drop,
    Forward(Rewritten),
}

#[derive(Debug, Clone, Copy)]
struct LastOut {
    seq: u16,
    timestamp: u32,
    at: Instant,
    picture_id: Option<u16>,
    tl0: Option<u8>,
}

/// The per-receiver state.
#[derive(Debug)]
pub struct LayerSwitcher {
    created: Instant,
    target: Layer,
    current: Option<Layer>,
    last_seen: [Option<Instant>; 2],
    seq_delta: u16,
    ts_delta: u32,
    picture_id_delta: u16,
    tl0_delta: u8,
    last_out: Option<LastOut>,
    last_keyframe_request: Option<Instant>,
    rates: [RateMeter; 2],
    last_decision: Instant,
    backoff: Duration,
    downgrades: u32,
    /// Completed switches between layers.
    pub switches: u32,
}

impl LayerSwitcher {
    pub fn new(target: Layer, now: Instant) -> Self {
        Self {
            created: now,
            target,
            current: None,
            last_seen: [None; 2],
            seq_delta: 0,
            ts_delta: 0,
            picture_id_delta: 0,
            tl0_delta: 0,
            last_out: None,
            last_keyframe_request: None,
            rates: [RateMeter::default(); 2],
            last_decision: now,
            backoff: INITIAL_BACKOFF,
            downgrades: 0,
            switches: 0,
        }
    }

    /// The receiver's target layer.
    pub fn target(&self) -> Layer {
        self.target
    }

    /// Applies a send-side bandwidth estimate for this receiver: down to the low layer when
    /// the estimate no longer carries the high layer's measured rate, back up when it does
    /// again and the back-off since the last downgrade has passed. Returns the new target if
    /// it changed.
    pub fn on_estimate(&mut self, now: Instant, estimate_bps: f64) -> Option<Layer> {
        let high_rate = self.rates[Layer::High.index()].bits_per_second()?;
        if high_rate <= 0.0 {
            return None;
        }
        // An estimate pinned at its floor means heavy congestion, whatever the high layer
        // happens to measure right now (its own sender may be throttled as well).
        let carries_high =
            estimate_bps >= RATE_TOLERANCE * high_rate && estimate_bps > MIN_UPGRADE_ESTIMATE;
        let next = match self.target {
            Layer::High if !carries_high => {
                self.downgrades += 1;
                if self.downgrades > 1 {
                    self.backoff = self.backoff.mul_f64(1.5);
                }
                Layer::Low
            }
            Layer::Low
                if carries_high && now.duration_since(self.last_decision) >= self.backoff =>
            {
                Layer::High
            }
            _ => return None,
        };
        self.target = next;
        self.last_decision = now;
        Some(next)
    }

    pub fn set_target(&mut self, target: Layer) {
        self.target = target;
    }

    /// The layer being forwarded.
    pub fn current(&self) -> Option<Layer> {
        self.current
    }

    /// The layer this receiver should get now: the target, unless it is silent and the other
    /// layer flows. A layer not seen yet gets [`LAYER_SILENCE`] from the start to show up.
    fn desired(&self, now: Instant) -> Layer {
        let flowing = |layer: Layer| match self.last_seen[layer.index()] {
            Some(t) => now.duration_since(t) < LAYER_SILENCE,
            None => now.duration_since(self.created) < LAYER_SILENCE,
        };
        if !flowing(self.target) && flowing(self.target.other()) {
            self.target.other()
        } else {
            self.target
        }
    }

    /// A keyframe of this layer is needed (and was not asked for within
    /// [`KEYFRAME_RETRY`]): the caller asks the publisher.
    pub fn keyframe_request(&mut self, now: Instant) -> Option<Layer> {
        let desired = self.desired(now);
        if self.current == Some(desired)
            || self
                .last_keyframe_request
                .is_some_and(|t| now.duration_since(t) < KEYFRAME_RETRY)
        {
            return None;
        }
        self.last_keyframe_request = Some(now);
        Some(desired)
    }

    /// Decides about one packet of `layer`.
    #[allow(clippy::too_many_arguments)]
    pub fn on_packet(
        &mut self,
        now: Instant,
        layer: Layer,
        size: usize,
        seq: u16,
        timestamp: u32,
        vp8: Option<&Descriptor>,
        keyframe: bool,
    ) -> Verdict {
        self.last_seen[layer.index()] = Some(now);
        self.rates[layer.index()].add(now, size);
        if self.current != Some(layer) {
            if layer != self.desired(now) || !keyframe {
                return Verdict::Drop;
            }
            self.switch_to(layer, seq, timestamp, vp8, now);
        }
        let rewritten = Rewritten {
            seq: seq.wrapping_add(self.seq_delta),
            timestamp: timestamp.wrapping_add(self.ts_delta),
            picture_id: vp8
                .and_then(|d| d.picture_id)
                .map(|(_, wide, id)| mask(id.wrapping_add(self.picture_id_delta), wide)),
            tl0: vp8
                .and_then(|d| d.tl0)
                .map(|(_, v)| v.wrapping_add(self.tl0_delta)),
        };
        self.last_out = Some(LastOut {
            seq: rewritten.seq,
            timestamp: rewritten.timestamp,
            at: now,
            picture_id: rewritten
                .picture_id
                .or(self.last_out.and_then(|o| o.picture_id)),
            tl0: rewritten.tl0.or(self.last_out.and_then(|o| o.tl0)),
        });
        Verdict::Forward(rewritten)
    }

    /// Starts forwarding `layer` from this (key)frame on, continuing the outgoing numbering.
    fn switch_to(
        &mut self,
        layer: Layer,
        seq: u16,
        timestamp: u32,
        vp8: Option<&Descriptor>,
        now: Instant,
    ) {
        if let Some(last) = self.last_out {
            self.seq_delta = last.seq.wrapping_add(1).wrapping_sub(seq);
            // Advance the timestamp by the real time since the last forwarded packet (90 kHz).
            let elapsed = (now.duration_since(last.at).as_micros() * 90 / 1_000).max(1) as u32;
            self.ts_delta = last.timestamp.wrapping_add(elapsed).wrapping_sub(timestamp);
            if let (Some(out), Some((_, wide, id))) =
                (last.picture_id, vp8.and_then(|d| d.picture_id))
            {
                self.picture_id_delta = mask(out.wrapping_add(1).wrapping_sub(id), wide);
            }
            if let (Some(out), Some((_, tl0))) = (last.tl0, vp8.and_then(|d| d.tl0)) {
                self.tl0_delta = out.wrapping_add(1).wrapping_sub(tl0);
            }
        }
        if self.current.is_some() {
            self.switches += 1;
        }
        self.current = Some(layer);
        self.last_keyframe_request = None;
    }
}

fn mask(id: u16, wide: bool) -> u16 {
    if wide { id & 0x7fff } else { id & 0x7f }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vp8(picture_id: u16, tl0: u8) -> Descriptor {
        Descriptor {
            starts_frame: true,
            picture_id: Some((2, true, picture_id)),
            tl0: Some((4, tl0)),
            len: 5,
        }
    }

    fn forward(verdict: Verdict) -> Rewritten {
        match verdict {
            Verdict::Forward(r) => r,
            Verdict::Drop => panic!("dropped"),
        }
    }

    #[test]
    fn starts_at_a_keyframe_of_the_target_and_forwards_only_it() {
        let t0 = Instant::now();
        let mut s = LayerSwitcher::new(Layer::High, t0);
        // Both layers flow; nothing before the target's keyframe.
        assert_eq!(
            s.on_packet(t0, Layer::Low, 1_000, 10, 1000, None, true),
            Verdict::Drop
        );
        assert_eq!(
            s.on_packet(t0, Layer::High, 1_000, 500, 9000, None, false),
            Verdict::Drop
        );
        assert_eq!(s.keyframe_request(t0), Some(Layer::High));
        assert_eq!(s.keyframe_request(t0), None, "throttled");
        let first = forward(s.on_packet(t0, Layer::High, 1_000, 501, 9000, None, true));
        assert_eq!(
            (first.seq, first.timestamp),
            (501, 9000),
            "no rebase for the first layer"
        );
        assert_eq!(
            s.on_packet(t0, Layer::Low, 1_000, 11, 1000, None, false),
            Verdict::Drop
        );
        assert_eq!(
            forward(s.on_packet(t0, Layer::High, 1_000, 502, 9000, None, false)).seq,
            502
        );
        assert_eq!(s.current(), Some(Layer::High));
        assert_eq!(s.switches, 0);
    }

    #[test]
    fn switching_rebases_seq_timestamp_and_picture_id() {
        let t0 = Instant::now();
        let mut s = LayerSwitcher::new(Layer::High, t0);
        forward(s.on_packet(
            t0,
            Layer::High,
            1_000,
            65_534,
            4_294_967_000,
            Some(&vp8(32_766, 250)),
            true,
        ));
        let last = forward(s.on_packet(
            t0,
            Layer::High,
            1_000,
            65_535,
            4_294_967_000,
            Some(&vp8(32_767, 255)),
            false,
        ));
        assert_eq!(last.picture_id, Some(32_767));
        // The receiver's target drops to low: forwarded high packets continue until low's keyframe.
        s.set_target(Layer::Low);
        let t1 = t0 + Duration::from_millis(50);
        assert_eq!(s.keyframe_request(t1), Some(Layer::Low));
        assert_eq!(
            s.on_packet(t1, Layer::Low, 1_000, 7, 100, Some(&vp8(3, 9)), false),
            Verdict::Drop
        );
        let switched = forward(s.on_packet(t1, Layer::Low, 1_000, 8, 100, Some(&vp8(4, 9)), true));
        assert_eq!(switched.seq, 0, "continues after 65535 (wrapping)");
        assert_eq!(
            switched.timestamp,
            4_294_967_000u32.wrapping_add(4_500),
            "+50 ms at 90 kHz"
        );
        assert_eq!(switched.picture_id, Some(0), "15-bit picture ID wraps");
        assert_eq!(switched.tl0, Some(0), "TL0PICIDX continues after 255");
        let next = forward(s.on_packet(t1, Layer::Low, 1_000, 9, 3_100, Some(&vp8(5, 10)), false));
        assert_eq!(
            (next.seq, next.timestamp.wrapping_sub(switched.timestamp)),
            (1, 3_000)
        );
        assert_eq!((next.picture_id, next.tl0), (Some(1), Some(1)));
        assert_eq!(
            s.on_packet(t1, Layer::High, 1_000, 1, 0, None, true),
            Verdict::Drop
        );
        assert_eq!(s.switches, 1);
    }

    #[test]
    fn a_silent_target_falls_back_to_the_layer_that_flows() {
        let t0 = Instant::now();
        let mut s = LayerSwitcher::new(Layer::High, t0);
        forward(s.on_packet(t0, Layer::High, 1_000, 1, 0, None, true));
        // High stops (the publisher's encoder paused it); low keeps flowing.
        let later = t0 + LAYER_SILENCE + Duration::from_millis(10);
        assert_eq!(s.keyframe_request(later), None, "low not seen yet");
        assert_eq!(
            s.on_packet(later, Layer::Low, 1_000, 50, 0, None, false),
            Verdict::Drop
        );
        assert_eq!(s.keyframe_request(later), Some(Layer::Low));
        let fallback = forward(s.on_packet(later, Layer::Low, 1_000, 51, 0, None, true));
        assert_eq!(fallback.seq, 2);
        assert_eq!(s.current(), Some(Layer::Low));
        // High resumes: back to the target at its next keyframe.
        let resumed = later + Duration::from_millis(100);
        assert_eq!(
            s.on_packet(resumed, Layer::High, 1_000, 9, 0, None, false),
            Verdict::Drop
        );
        assert_eq!(
            forward(s.on_packet(resumed, Layer::High, 1_000, 10, 0, None, true)).seq,
            3
        );
        assert_eq!(s.switches, 2);
    }

    /// The high layer at ~2 Mbit/s (2,500 bytes every 10 ms) over `ms` after `t0`.
    fn feed_high(s: &mut LayerSwitcher, t0: Instant, ms: std::ops::Range<u64>) {
        for ms in ms.step_by(10) {
            let at = t0 + Duration::from_millis(ms);
            let _ = s.on_packet(at, Layer::High, 2_500, 1, 0, None, false);
        }
    }

    #[test]
    fn the_estimate_moves_the_target_with_backoff() {
        let t0 = Instant::now();
        let mut s = LayerSwitcher::new(Layer::High, t0);
        feed_high(&mut s, t0, 0..2_100);
        let t = t0 + Duration::from_millis(2_100);
        assert_eq!(s.on_estimate(t, 3_000_000.0), None, "enough: stays high");
        assert_eq!(
            s.on_estimate(t, 1_000_000.0),
            Some(Layer::Low),
            "congested: down"
        );
        assert_eq!(s.target(), Layer::Low);
        // Enough again, but within the back-off: stays low.
        assert_eq!(s.on_estimate(t + Duration::from_secs(5), 3_000_000.0), None);
        // The meter keeps being fed by the high layer (all layers reach every receiver's
        // switcher); after the back-off the target goes up.
        feed_high(&mut s, t0, 2_100..12_500);
        let later = t0 + Duration::from_millis(12_500);
        assert_eq!(s.on_estimate(later, 3_000_000.0), Some(Layer::High));
        // The next downgrade waits 1.5× longer before coming back.
        assert_eq!(s.on_estimate(later, 100_000.0), Some(Layer::Low));
        feed_high(&mut s, t0, 12_500..23_000);
        let after_10s = t0 + Duration::from_millis(23_000);
        assert_eq!(
            s.on_estimate(after_10s, 3_000_000.0),
            None,
            "15 s back-off now"
        );
    }

    #[test]
    fn rids() {
        assert_eq!(Layer::from_rid("l"), Some(Layer::Low));
        assert_eq!(Layer::from_rid("h"), Some(Layer::High));
        assert_eq!(Layer::from_rid("q"), None);
        assert_eq!(Layer::High.as_str(), "h");
    }
}
