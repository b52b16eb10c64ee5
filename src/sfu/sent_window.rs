//! Which of an outgoing stream's most recent sequence numbers were actually sent: the same
//! window the core's NACK responder keeps packets for, as one bit per sequence number.
//!
//! Owns: the bitmap ring and its wrap-around arithmetic. A receiver's NACK for a sequence
//! number outside the window, or inside it but never sent (the publisher's packet never
//! reached us), cannot be answered with a retransmission; [`SentWindow::can_resend`] tells
//! the feedback interceptor so, which then asks the publisher for a keyframe instead.

/// Sequence numbers further apart than this are taken as older, not newer (RFC 3550 A.1).
const HALF_RANGE: u16 = 1 << 15;

/// A ring of `size` bits (a power of two, as the responder's buffer).
#[derive(Debug, Clone)]
pub struct SentWindow {
    bits: Box<[u64]>,
    mask: u16,
    newest: Option<u16>,
}

impl SentWindow {
    /// A window of `size` sequence numbers; `size` is rounded up to a power of two of at
    /// least 64.
    pub fn new(size: u16) -> Self {
        let size = size.max(64).checked_next_power_of_two().unwrap_or(1 << 15);
        Self {
            bits: vec![0; usize::from(size / 64)].into_boxed_slice(),
            mask: size - 1,
            newest: None,
        }
    }

    fn size(&self) -> u16 {
        self.mask.wrapping_add(1)
    }

    fn set(&mut self, seq: u16, sent: bool) {
        let index = usize::from(seq & self.mask);
        let (word, bit) = (index / 64, index % 64);
        if sent {
            self.bits[word] |= 1 << bit;
        } else {
            self.bits[word] &= !(1 << bit);
        }
    }

    fn get(&self, seq: u16) -> bool {
        let index = usize::from(seq & self.mask);
        self.bits[index / 64] & (1 << (index % 64)) != 0
    }

    /// Records that `seq` was sent (late and retransmitted-upstream packets included).
    pub fn sent(&mut self, seq: u16) {
        let Some(newest) = self.newest else {
            self.newest = Some(seq);
            self.set(seq, true);
            return;
        };
        let ahead = seq.wrapping_sub(newest);
        if ahead == 0 {
            return;
        }
        if ahead < HALF_RANGE {
            // Newer: the numbers skipped on the way were not sent (yet).
            if ahead >= self.size() {
                self.bits.fill(0);
            } else {
                let mut skipped = newest.wrapping_add(1);
                while skipped != seq {
                    self.set(skipped, false);
                    skipped = skipped.wrapping_add(1);
                }
            }
            self.newest = Some(seq);
            self.set(seq, true);
        } else if newest.wrapping_sub(seq) < self.size() {
            self.set(seq, true);
        }
    }

    /// Whether a NACK for `seq` can be answered from the window.
    pub fn can_resend(&self, seq: u16) -> bool {
        self.newest
            .is_some_and(|newest| newest.wrapping_sub(seq) < self.size() && self.get(seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_what_was_sent_in_the_window() {
        let mut window = SentWindow::new(64);
        assert!(!window.can_resend(0), "nothing sent yet");
        for seq in [65_530u16, 65_531, 65_533, 65_535, 0, 1] {
            window.sent(seq);
        }
        assert!(window.can_resend(65_531));
        assert!(!window.can_resend(65_532), "a gap the publisher left");
        assert!(!window.can_resend(65_534));
        assert!(window.can_resend(0), "across the wrap");
        assert!(!window.can_resend(2), "not sent yet");
        // A late packet fills its gap.
        window.sent(65_532);
        assert!(window.can_resend(65_532));
        // Packets leave the window as newer ones are sent.
        for seq in 2..=63u16 {
            window.sent(seq);
        }
        assert!(window.can_resend(0));
        assert!(
            !window.can_resend(65_535),
            "64 behind the newest: out of the window"
        );
        // A late packet older than the window is not recorded.
        window.sent(65_000);
        assert!(!window.can_resend(65_000));
        // A jump beyond the window forgets everything before it.
        window.sent(1_000);
        assert!(window.can_resend(1_000));
        assert!(!window.can_resend(63));
        assert!(!window.can_resend(999));
    }

    #[test]
    fn sizes_round_to_a_power_of_two() {
        assert_eq!(SentWindow::new(256).size(), 256);
        assert_eq!(SentWindow::new(100).size(), 128);
        assert_eq!(SentWindow::new(1).size(), 64);
        assert_eq!(SentWindow::new(8192).size(), 8192);
    }
}
