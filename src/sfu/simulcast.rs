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
            switches: 0,
        }
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
    pub fn on_packet(
        &mut self,
        now: Instant,
        layer: Layer,
        seq: u16,
        timestamp: u32,
        vp8: Option<&Descriptor>,
        keyframe: bool,
    ) -> Verdict {
        self.last_seen[layer.index()] = Some(now);
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
            s.on_packet(t0, Layer::Low, 10, 1000, None, true),
            Verdict::Drop
        );
        assert_eq!(
            s.on_packet(t0, Layer::High, 500, 9000, None, false),
            Verdict::Drop
        );
        assert_eq!(s.keyframe_request(t0), Some(Layer::High));
        assert_eq!(s.keyframe_request(t0), None, "throttled");
        let first = forward(s.on_packet(t0, Layer::High, 501, 9000, None, true));
        assert_eq!(
            (first.seq, first.timestamp),
            (501, 9000),
            "no rebase for the first layer"
        );
        assert_eq!(
            s.on_packet(t0, Layer::Low, 11, 1000, None, false),
            Verdict::Drop
        );
        assert_eq!(
            forward(s.on_packet(t0, Layer::High, 502, 9000, None, false)).seq,
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
            65_534,
            4_294_967_000,
            Some(&vp8(32_766, 250)),
            true,
        ));
        let last = forward(s.on_packet(
            t0,
            Layer::High,
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
            s.on_packet(t1, Layer::Low, 7, 100, Some(&vp8(3, 9)), false),
            Verdict::Drop
        );
        let switched = forward(s.on_packet(t1, Layer::Low, 8, 100, Some(&vp8(4, 9)), true));
        assert_eq!(switched.seq, 0, "continues after 65535 (wrapping)");
        assert_eq!(
            switched.timestamp,
            4_294_967_000u32.wrapping_add(4_500),
            "+50 ms at 90 kHz"
        );
        assert_eq!(switched.picture_id, Some(0), "15-bit picture ID wraps");
        assert_eq!(switched.tl0, Some(0), "TL0PICIDX continues after 255");
        let next = forward(s.on_packet(t1, Layer::Low, 9, 3_100, Some(&vp8(5, 10)), false));
        assert_eq!(
            (next.seq, next.timestamp.wrapping_sub(switched.timestamp)),
            (1, 3_000)
        );
        assert_eq!((next.picture_id, next.tl0), (Some(1), Some(1)));
        assert_eq!(
            s.on_packet(t1, Layer::High, 1, 0, None, true),
            Verdict::Drop
        );
        assert_eq!(s.switches, 1);
    }

    #[test]
    fn a_silent_target_falls_back_to_the_layer_that_flows() {
        let t0 = Instant::now();
        let mut s = LayerSwitcher::new(Layer::High, t0);
        forward(s.on_packet(t0, Layer::High, 1, 0, None, true));
        // High stops (the publisher's encoder paused it); low keeps flowing.
        let later = t0 + LAYER_SILENCE + Duration::from_millis(10);
        assert_eq!(s.keyframe_request(later), None, "low not seen yet");
        assert_eq!(
            s.on_packet(later, Layer::Low, 50, 0, None, false),
            Verdict::Drop
        );
        assert_eq!(s.keyframe_request(later), Some(Layer::Low));
        let fallback = forward(s.on_packet(later, Layer::Low, 51, 0, None, true));
        assert_eq!(fallback.seq, 2);
        assert_eq!(s.current(), Some(Layer::Low));
        // High resumes: back to the target at its next keyframe.
        let resumed = later + Duration::from_millis(100);
        assert_eq!(
            s.on_packet(resumed, Layer::High, 9, 0, None, false),
            Verdict::Drop
        );
        assert_eq!(
            forward(s.on_packet(resumed, Layer::High, 10, 0, None, true)).seq,
            3
        );
        assert_eq!(s.switches, 2);
    }

    #[test]
    fn rids() {
        assert_eq!(Layer::from_rid("l"), Some(Layer::Low));
        assert_eq!(Layer::from_rid("h"), Some(Layer::High));
        assert_eq!(Layer::from_rid("q"), None);
        assert_eq!(Layer::High.as_str(), "h");
    }
}
