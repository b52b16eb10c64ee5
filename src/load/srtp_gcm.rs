//! Minimal SRTP with AEAD_AES_128_GCM (RFC 7714) for the floor forwarder and its load: the
//! per-packet crypto an SFU cannot avoid, in place, without allocation. Only what the floor
//! needs: pre-shared keys (no key derivation), no RTCP, and the rollover counter fixed at 0
//! (a stream that wraps its sequence would reuse nonces: acceptable only for this local
//! benchmark, never for real media).

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
    fn nonce(&self, ssrc: u32, seq: u16) -> Nonce {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[10..12].copy_from_slice(&seq.to_be_bytes());
        for (byte, salt) in iv.iter_mut().zip(self.salt) {
            *byte ^= salt;
        }
        Nonce::assume_unique_for_key(iv)
    }

    /// Encrypts the RTP packet in `buf[..len]` in place and appends the tag; `buf` needs
    /// [`TAG_LEN`] spare bytes. Returns the SRTP length, or `None` for a malformed packet.
    pub fn protect(&self, buf: &mut [u8], len: usize) -> Option<usize> {
        let header = header_len(&buf[..len])?;
        if buf.len() < len + TAG_LEN {
            return None;
        }
        let (ssrc, seq) = ids(buf);
        let (head, rest) = buf.split_at_mut(header);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                self.nonce(ssrc, seq),
                Aad::from(&*head),
                &mut rest[..len - header],
            )
            .ok()?;
        rest[len - header..len - header + TAG_LEN].copy_from_slice(tag.as_ref());
        Some(len + TAG_LEN)
    }

    /// Authenticates and decrypts the SRTP packet in `buf` in place. Returns the RTP length.
    pub fn unprotect(&self, buf: &mut [u8]) -> Option<usize> {
        let header = header_len(buf)?;
        if buf.len() < header + TAG_LEN {
            return None;
        }
        let (ssrc, seq) = ids(buf);
        let (head, rest) = buf.split_at_mut(header);
        let plain = self
            .key
            .open_in_place(self.nonce(ssrc, seq), Aad::from(&*head), rest)
            .ok()?
            .len();
        Some(header + plain)
    }
}

fn ids(packet: &[u8]) -> (u32, u16) {
    (
        u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        u16::from_be_bytes([packet[2], packet[3]]),
    )
}

/// Length of the RTP header (fixed part, CSRCs, extension).
fn header_len(packet: &[u8]) -> Option<usize> {
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
        let len = sender.protect(&mut buf, plain.len()).unwrap();
        assert_eq!(len, plain.len() + TAG_LEN);
        assert_ne!(&buf[12..plain.len()], &plain[12..]);
        let mut tampered = buf.clone();
        tampered[20] ^= 1;
        assert_eq!(receiver.unprotect(&mut tampered), None);
        let len = receiver.unprotect(&mut buf).unwrap();
        assert_eq!(&buf[..len], &plain[..]);
        let other = SrtpGcm::new(&[8; 16], &[9; 12]);
        let mut again = plain.clone();
        again.resize(plain.len() + TAG_LEN, 0);
        sender.protect(&mut again, plain.len()).unwrap();
        assert_eq!(other.unprotect(&mut again), None);
    }
}
