//! Metrics of the session: error counts, track gauges, and closing.

use super::*;

impl Session {
    pub(super) fn group(&self) -> GroupLabels {
        GroupLabels {
            groupID: self.config.group_id.clone(),
        }
    }

    pub(super) fn count_error(&self, kind: RtcErrorKind) {
        self.metrics
            .rtc_errors
            .get_or_create(&RtcErrorLabels {
                groupID: self.config.group_id.clone(),
                r#type: kind,
            })
            .inc();
    }

    pub(super) fn track_gauge(&self, direction: Direction, mime: &str, delta: i64) {
        self.metrics
            .track_gauge(&self.config.group_id, direction, mime, delta);
    }

    /// Releases the per-session gauges (tracks in and out) when the session ends.
    pub(super) fn release_gauges(&mut self) {
        for track in std::mem::take(&mut self.published) {
            self.track_gauge(Direction::In, &track.mime, -1);
        }
        for (_, leg) in std::mem::take(&mut self.legs) {
            self.track_gauge(Direction::Out, &leg.track.mime, -1);
        }
        self.report_direct_packets();
    }

    pub(super) fn close_with(&mut self, now: Instant, reason: CloseReason, out: &mut Outputs) {
        if self.closed.is_some() {
            return;
        }
        let _ = self.pc.close();
        self.release_gauges();
        self.release_relays(now, out);
        out.driver.events.push(MediaEvent::Closed {
            session_id: self.config.session_id.clone(),
            reason: reason.clone(),
        });
        self.closed = Some(reason);
    }

    /// Ends the session from outside (leave, shutdown); emits no event.
    pub fn close(&mut self, now: Instant, reason: CloseReason, out: &mut Outputs) {
        if self.closed.is_none() {
            let _ = self.pc.close();
            self.release_gauges();
            self.release_relays(now, out);
            self.closed = Some(reason);
        }
    }
}
