//! The data-channel protocol with the client: ping/pong, the signaling lock, SDP over the
//! channel, the client's statistics.

use super::*;

impl Session {
    pub(super) fn send_dc(&mut self, now: Instant, dc: RTCDataChannelId, bytes: &[u8]) {
        if let Some(mut channel) = self.pc.data_channel(dc)
            && let Err(err) = channel.send(now, BytesMut::from(bytes))
        {
            tracing::debug!(session_id = %self.config.session_id, "data channel send failed: {err}");
        }
    }

    pub(super) fn handle_dc_message(
        &mut self,
        now: Instant,
        dc: RTCDataChannelId,
        data: &[u8],
        out: &mut Outputs,
    ) {
        let message = match dc_protocol::decode(data) {
            Ok(message) => message,
            Err(err) => {
                tracing::debug!(session_id = %self.config.session_id, "data channel message dropped: {err}");
                return;
            }
        };
        match message {
            ClientDcMessage::Ping => self.send_dc(now, dc, &dc_protocol::encode_pong()),
            ClientDcMessage::LegacyPing => {
                if let Some(mut channel) = self.pc.data_channel(dc) {
                    let _ = channel.send_text(now, "pong");
                }
            }
            ClientDcMessage::Lock => {
                let acquired = !self.locked && !self.making_offer;
                if acquired {
                    self.locked = true;
                    self.timers
                        .arm(Timer::ClientLock, now + CLIENT_LOCK_TIMEOUT);
                }
                self.send_dc(now, dc, &dc_protocol::encode_lock_reply(acquired));
            }
            ClientDcMessage::Unlock => {
                if !self.locked {
                    tracing::debug!(session_id = %self.config.session_id, "unlock of a free lock ignored");
                }
                self.locked = false;
                self.timers.stop(Timer::ClientLock);
                if self.renegotiation_pending {
                    self.negotiate(now, out);
                }
            }
            ClientDcMessage::Sdp(json) => {
                if let Err(err) = self.apply_sdp(now, &json, Path::DataChannel, out) {
                    tracing::warn!(session_id = %self.config.session_id, "signaling over data channel failed: {err}");
                }
            }
            ClientDcMessage::LossRate(v) => self
                .metrics
                .rtc_client_loss_rate
                .get_or_create(&self.group())
                .observe(v),
            ClientDcMessage::RoundTripTime(v) => self
                .metrics
                .rtc_client_rtt
                .get_or_create(&self.group())
                .observe(v),
            ClientDcMessage::Jitter(v) => self
                .metrics
                .rtc_client_jitter
                .get_or_create(&self.group())
                .observe(v),
            ClientDcMessage::Other(code) => {
                tracing::debug!(session_id = %self.config.session_id, "unexpected dc message type: {code}");
            }
        }
    }
}
