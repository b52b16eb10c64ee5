//! Voice activity detection from RFC 6464 audio levels (spec media-plane §5).
//!
//! A window of the last 50 levels (≈ 1 s at 20 ms); speech modulates the level, steady noise
//! does not, so the decision keys on the window's sample standard deviation: above 10 turns
//! voice on, below 4 turns it off, but not sooner than 2 s after it turned on.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Levels in the window.
pub const WINDOW: usize = 50;
/// Standard deviation above which voice turns on.
pub const ON_STDDEV: i64 = 10;
/// Standard deviation below which voice turns off.
pub const OFF_STDDEV: i64 = 4;
/// Shortest time voice stays on.
pub const MIN_ON: Duration = Duration::from_secs(2);

/// The detector of one voice track.
#[derive(Debug, Default)]
pub struct VoiceActivity {
    levels: VecDeque<u8>,
    on_since: Option<Instant>,
}

impl VoiceActivity {
    /// Adds one level (0 = loudest … 127 = silence); returns `Some(on)` when the state changes.
    pub fn push(&mut self, level: u8, now: Instant) -> Option<bool> {
        if self.levels.len() == WINDOW {
            self.levels.pop_front();
        }
        self.levels.push_back(level & 0x7f);
        if self.levels.len() < WINDOW {
            return None;
        }
        let stddev = sample_stddev(&self.levels);
        match self.on_since {
            None if stddev > ON_STDDEV => {
                self.on_since = Some(now);
                Some(true)
            }
            Some(since) if stddev < OFF_STDDEV && now.duration_since(since) >= MIN_ON => {
                self.on_since = None;
                Some(false)
            }
            _ => None,
        }
    }

    /// Clears the window and turns voice off (on mute).
    pub fn reset(&mut self) {
        self.levels.clear();
        self.on_since = None;
    }
}

/// Sample standard deviation (n − 1), rounded to an integer, with the mean rounded first.
fn sample_stddev(levels: &VecDeque<u8>) -> i64 {
    let n = levels.len() as f64;
    let mean = (levels.iter().map(|l| f64::from(*l)).sum::<f64>() / n).round();
    let variance = levels
        .iter()
        .map(|l| (f64::from(*l) - mean).powi(2))
        .sum::<f64>()
        / (n - 1.0);
    variance.sqrt().round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_turns_on_and_silence_turns_off_after_two_seconds() {
        let mut vad = VoiceActivity::default();
        let start = Instant::now();
        let at = |i: u64| start + Duration::from_millis(20 * i);
        // Steady background: never on.
        for i in 0..100 {
            assert_eq!(vad.push(90, at(i)), None);
        }
        // Speech: levels swing between 30 and 80.
        let mut changes = Vec::new();
        for i in 100..200 {
            if let Some(on) = vad.push(if i % 2 == 0 { 30 } else { 80 }, at(i)) {
                changes.push((i, on));
            }
        }
        assert_eq!(changes.len(), 1);
        assert!(changes[0].1);
        let on_at = changes[0].0;
        // Silence: the window settles, but off only 2 s after on.
        let mut off = None;
        for i in 200..400 {
            if let Some(false) = vad.push(100, at(i)) {
                off = Some(i);
                break;
            }
        }
        let off = off.expect("voice turned off");
        assert!(at(off).duration_since(at(on_at)) >= MIN_ON);
        vad.reset();
        assert_eq!(vad.push(30, at(500)), None);
    }
}
