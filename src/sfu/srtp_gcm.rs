//! Minimal SRTP with AEAD_AES_128_GCM (RFC 7714), in place and without allocation: what the
//! SFU's direct audio path (`direct_rtp`) and the load tool's floor forwarder encrypt with.
//!
//! Owns: one direction's SRTP packet protection from session keys (key derivation is the
//! core's, see `srtp_keys`) and the rollover counter of an outgoing stream ([`Rollover`]). No
//! SRTCP: RTCP stays with the WebRTC core.

use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// GCM tag length appended to every packet.
pub const TAG_LEN: usize = 16;

/// One direction's SRTP context.
pub struct SrtpGcm {
    key: LessSafeKey,
    salt: [u8; 12],
}

impl SrtpGcm {
    pub fn new(key: &[u8; 16], salt: &[u8; 12]) -> Self {
        let key = UnboundKey::new(&AES_128_GCM, key).expect("16-byte AES-128 key");
        Self {
            key: LessSafeKey::new(key),
            salt: *salt,
        }
    }

    /// A context with a random key and salt.
    pub fn random() -> Self {
        Self::new(&rand::random(), &rand::random())
    }

    /// RFC 7714 §8.1: (0x0000 ‖ SSRC ‖ ROC ‖ SEQ) XOR salt.
    fn nonce(&self, ssrc: u32, roc: u32, seq: u16) -> Nonce {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&roc.to_be_bytes());
        iv[10..12].copy_from_slice(&seq.to_be_bytes());
        for (byte, salt) in iv.iter_mut().zip(self.salt) {
            *byte ^= salt;
        }
        Nonce::assume_unique_for_key(iv)
    }

    /// Encrypts the RTP packet in `buf[..len]` in place and appends the tag; `buf` needs
    /// [`TAG_LEN`] spare bytes. `roc` is the stream's rollover counter for this packet's
    /// sequence number. Returns the SRTP length, or `None` for a malformed packet.
    pub fn protect(&self, buf: &mut [u8], len: usize, roc: u32) -> Option<usize> {
        let header = header_len(&buf[..len])?;
        if buf.len() < len + TAG_LEN {
            return None;
        }
        let (ssrc, seq) = ids(buf);
        let (head, rest) = buf.split_at_mut(header);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                self.nonce(ssrc, roc, seq),
                Aad::from(&*head),
                &mut rest[..len - header],
            )
            .ok()?;
        rest[len - header..len - header + TAG_LEN].copy_from_slice(tag.as_ref());
        Some(len + TAG_LEN)
    }

    /// Authenticates and decrypts the SRTP packet in `buf` in place (rollover counter `roc`).
    /// Returns the RTP length.
    pub fn unprotect(&self, buf: &mut [u8], roc: u32) -> Option<usize> {
        let header = header_len(buf)?;
        if buf.len() < header + TAG_LEN {
            return None;
        }
        let (ssrc, seq) = ids(buf);
        let (head, rest) = buf.split_at_mut(header);
        let plain = self
            .key
            .open_in_place(self.nonce(ssrc, roc, seq), Aad::from(&*head), rest)
            .ok()?
            .len();
        Some(header + plain)
    }
}

/// The rollover counter of one outgoing stream (RFC 3711 §3.3.1): the packet index is
/// estimated from the highest sequence number sent so far, so reordered and repeated
/// sequence numbers keep the counter they were first sent with.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rollover {
    highest: Option<u64>,
}

impl Rollover {
    /// The rollover counter for sending `seq`, which becomes part of the stream.
    pub fn roc_for(&mut self, seq: u16) -> u32 {
        let Some(highest) = self.highest else {
            self.highest = Some(u64::from(seq));
            return 0;
        };
        let delta = i64::from(seq.wrapping_sub(highest as u16) as i16);
        let index = (highest as i64 + delta).max(0) as u64;
        if index > highest {
            self.highest = Some(index);
        }
        (index >> 16) as u32
    }
}

pub(super) fn ids(packet: &[u8]) -> (u32, u16) {
    (
        u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        u16::from_be_bytes([packet[2], packet[3]]),
    )
}

/// Length of the RTP header (fixed part, CSRCs, extension).
pub(super) fn header_len(packet: &[u8]) -> Option<usize> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(packet[0] & 0x0f);
    if packet[0] & 0x10 != 0 {
        let words = packet.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (len <= packet.len()).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut packet = vec![0x80, 111];
        packet.extend_from_slice(&seq.to_be_bytes());
        packet.extend_from_slice(&[0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef]);
        packet.extend_from_slice(payload);
        packet
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let sender = SrtpGcm::new(&[7; 16], &[9; 12]);
        let receiver = SrtpGcm::new(&[7; 16], &[9; 12]);
        let plain = rtp(42, b"opus-ish payload");
        let mut buf = plain.clone();
        buf.resize(plain.len() + TAG_LEN, 0);
        let len = sender.protect(&mut buf, plain.len(), 0).unwrap();
        assert_eq!(len, plain.len() + TAG_LEN);
        assert_ne!(&buf[12..plain.len()], &plain[12..]);
        let mut tampered = buf.clone();
        tampered[20] ^= 1;
        assert_eq!(receiver.unprotect(&mut tampered, 0), None);
        let len = receiver.unprotect(&mut buf, 0).unwrap();
        assert_eq!(&buf[..len], &plain[..]);
        let other = SrtpGcm::new(&[8; 16], &[9; 12]);
        let mut again = plain.clone();
        again.resize(plain.len() + TAG_LEN, 0);
        sender.protect(&mut again, plain.len(), 0).unwrap();
        assert_eq!(other.unprotect(&mut again, 0), None);
    }

    #[test]
    fn rollover_counts_wraps_and_keeps_late_packets_on_their_counter() {
        let mut rollover = Rollover::default();
        assert_eq!(rollover.roc_for(65_530), 0);
        assert_eq!(rollover.roc_for(65_535), 0);
        assert_eq!(rollover.roc_for(2), 1);
        // A late packet from before the wrap keeps ROC 0; the stream stays on 1.
        assert_eq!(rollover.roc_for(65_534), 0);
        assert_eq!(rollover.roc_for(3), 1);
        // A stream starting low never goes below 0 for a late packet.
        let mut fresh = Rollover::default();
        assert_eq!(fresh.roc_for(5), 0);
        assert_eq!(fresh.roc_for(65_000), 0);
    }

    #[test]
    fn the_rollover_counter_is_part_of_the_nonce() {
        let context = SrtpGcm::new(&[7; 16], &[9; 12]);
        let plain = rtp(1, b"payload");
        let mut buf = plain.clone();
        buf.resize(plain.len() + TAG_LEN, 0);
        context.protect(&mut buf, plain.len(), 1).unwrap();
        assert_eq!(context.unprotect(&mut buf.clone(), 0), None);
        assert!(context.unprotect(&mut buf, 1).is_some());
    }
}
