//! The session's own deadlines in one table.
//!
//! Owns: which of the session's timers are armed and when each is due, the earliest of them
//! (what the worker schedules), and disarming a timer as it fires. What a timer does when it
//! fires stays with the concern that armed it; the peer connection and the TURN relays keep
//! their own deadlines (the session asks them beside this table).
//!
//! Every timer is one-shot: a periodic one is armed again by the code that handles it, so a
//! timer nobody needs any more simply stops waking the session.

use std::time::Instant;

/// One of the session's timers, in the order [`super::Session::handle_timeout`] runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// No offer answered within [`super::INITIAL_OFFER_TIMEOUT`] of creation: the session
    /// closes.
    FirstOffer,
    /// The SFU's own offer unanswered for [`super::ANSWER_TIMEOUT`]: the lock is released.
    Answer,
    /// The client has held the signaling lock for [`super::CLIENT_LOCK_TIMEOUT`]: released.
    ClientLock,
    /// The next read of the send-side bandwidth estimate (sessions receiving simulcast or
    /// video on the direct path), every [`super::ESTIMATE_PERIOD`].
    Estimate,
    /// The next sender reports of the direct path.
    SenderReports,
    /// The next call-quality sample of a connected session, every [`super::QUALITY_PERIOD`].
    Quality,
}

impl Timer {
    const COUNT: usize = 6;

    fn index(self) -> usize {
        self as usize
    }
}

/// When each armed timer is due.
#[derive(Debug, Default)]
pub(super) struct Timers {
    due: [Option<Instant>; Timer::COUNT],
}

impl Timers {
    /// Arms `timer` for `at` (replacing an earlier deadline).
    pub fn arm(&mut self, timer: Timer, at: Instant) {
        self.due[timer.index()] = Some(at);
    }

    /// Arms `timer` for `at` unless it is armed already.
    pub fn arm_if_idle(&mut self, timer: Timer, at: Instant) {
        self.due[timer.index()].get_or_insert(at);
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.due[timer.index()] = None;
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.due.iter().flatten().min().copied()
    }

    /// True, and `timer` disarmed, when it is armed and due at `now`.
    pub fn fire(&mut self, timer: Timer, now: Instant) -> bool {
        let slot = &mut self.due[timer.index()];
        if slot.is_some_and(|at| at <= now) {
            *slot = None;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn next_is_the_earliest_armed_deadline() {
        let start = Instant::now();
        let mut timers = Timers::default();
        assert_eq!(timers.next(), None);
        timers.arm(Timer::Quality, start + Duration::from_secs(5));
        timers.arm(Timer::FirstOffer, start + Duration::from_secs(10));
        assert_eq!(timers.next(), Some(start + Duration::from_secs(5)));
        timers.stop(Timer::Quality);
        assert_eq!(timers.next(), Some(start + Duration::from_secs(10)));
        timers.arm(Timer::FirstOffer, start + Duration::from_secs(1));
        assert_eq!(timers.next(), Some(start + Duration::from_secs(1)));
    }

    #[test]
    fn a_timer_fires_once_when_due() {
        let start = Instant::now();
        let mut timers = Timers::default();
        timers.arm(Timer::Answer, start + Duration::from_secs(10));
        assert!(!timers.fire(Timer::Answer, start + Duration::from_secs(9)));
        assert_eq!(timers.next(), Some(start + Duration::from_secs(10)));
        assert!(timers.fire(Timer::Answer, start + Duration::from_secs(10)));
        assert_eq!(timers.next(), None);
        assert!(!timers.fire(Timer::Answer, start + Duration::from_secs(20)));
        assert!(!timers.fire(Timer::ClientLock, start + Duration::from_secs(20)));
    }

    #[test]
    fn arm_if_idle_keeps_an_earlier_deadline() {
        let start = Instant::now();
        let mut timers = Timers::default();
        timers.arm_if_idle(Timer::SenderReports, start);
        timers.arm_if_idle(Timer::SenderReports, start + Duration::from_secs(1));
        assert_eq!(timers.next(), Some(start));
    }
}
