//! The direct path: forwarded packets serialized and encrypted by the session itself instead
//! of passing through the WebRTC core's write path.
//!
//! Owns: [`DirectSender`] (a session's outbound SRTP context, learned by `srtp_keys`, and the
//! route its media takes) and the wire form of one forwarded packet: the RTP header with the
//! receiver's extension IDs (audio level, transport-wide sequence number) and, for an RTX
//! retransmission (RFC 4588), the original sequence number in front of the payload. Per copy
//! this is one buffer, one AES-GCM seal and the header bytes; the core's path costs ~8
//! handlers, the interceptor chain, a parameters lookup that allocates, and moves of its
//! message structs (see docs/performance.md).
//!
//! What the core no longer does for these packets, and who does it instead: for video, the
//! NACK history, retransmissions and the send-side estimate move to `direct_video`; sender
//! reports to `sender_reports`; audio is left out of the estimate, which only chooses
//! simulcast layers, and is not NACKed (Opus legs negotiate no NACK).

use std::net::SocketAddr;

use bytes::BytesMut;

use super::srtp_cm::SrtpCm;
use super::srtp_gcm::{Rollover, SrtpGcm, TAG_LEN};
use super::srtp_keys::SessionKeys;
use crate::wire::Protocol;

/// Where a session's media goes: the selected pair, as the core last sent media on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub protocol: Protocol,
}

/// A session's sender for forwarded media.
pub struct DirectSender {
    srtp: Protection,
}

/// The negotiated SRTP profile's context (boxed: the key schedules are large, and most
/// sessions have one or the other, or none before the handshake).
enum Protection {
    Gcm(Box<SrtpGcm>),
    Cm(Box<SrtpCm>),
}

/// One forwarded packet's header fields (as the receiver's leg numbers them).
#[derive(Debug, Clone, Copy)]
pub struct DirectHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// RFC 6464 level with the receiver's extension ID: `(id, level byte)`.
    pub audio_level: Option<(u8, u8)>,
    /// Transport-wide sequence number with the receiver's extension ID: `(id, number)`.
    pub transport_sequence: Option<(u8, u16)>,
    /// RTX (RFC 4588 §4): the retransmitted packet's sequence number, written in front of
    /// the payload.
    pub original_sequence: Option<u16>,
}

/// Fixed RTP header plus a one-byte-header extension block holding a 1-byte and a 2-byte
/// element, padded to 32 bits.
const MAX_HEADER_LEN: usize = 12 + 4 + 8;

/// Size of the blocks packets are carved from: one allocation per few hundred audio copies,
/// freed once the last packet carved from it has been sent.
const ARENA_BYTES: usize = 32 * 1024;

impl DirectSender {
    pub fn new(keys: &SessionKeys) -> Self {
        let srtp = match keys {
            SessionKeys::Gcm { key, salt } => Protection::Gcm(Box::new(SrtpGcm::new(key, salt))),
            SessionKeys::Cm { key, salt, auth } => {
                Protection::Cm(Box::new(SrtpCm::new(key, salt, auth)))
            }
        };
        Self { srtp }
    }

    /// The SRTP packet for `header` + `payload`, carved from `arena` (a block shared by the
    /// packets of a worker's turn, replaced when full); `rollover` is the stream's counter.
    pub fn seal(
        &self,
        header: &DirectHeader,
        payload: &[u8],
        rollover: &mut Rollover,
        arena: &mut BytesMut,
    ) -> Option<BytesMut> {
        let mut header_bytes = [0u8; MAX_HEADER_LEN];
        let header_len = write_header(&mut header_bytes, header);
        let osn = header.original_sequence.map(u16::to_be_bytes);
        let osn: &[u8] = osn.as_ref().map_or(&[], |b| b);
        let len = header_len + osn.len() + payload.len();
        if arena.capacity() - arena.len() < len + TAG_LEN {
            *arena = BytesMut::with_capacity(ARENA_BYTES.max(len + TAG_LEN));
        }
        arena.extend_from_slice(&header_bytes[..header_len]);
        arena.extend_from_slice(osn);
        arena.extend_from_slice(payload);
        arena.extend_from_slice(&[0; TAG_LEN]);
        let mut buf = arena.split();
        let roc = rollover.roc_for(header.sequence_number);
        // Room for the longer tag (GCM's); AES-CM's is shorter.
        let sealed = match &self.srtp {
            Protection::Gcm(srtp) => srtp.protect(&mut buf, len, roc)?,
            Protection::Cm(srtp) => srtp.protect(&mut buf, len, roc)?,
        };
        buf.truncate(sealed);
        Some(buf)
    }
}

/// Writes the RTP header (RFC 3550 §5.1, extensions RFC 8285 §4.2) and returns its length.
fn write_header(buf: &mut [u8], header: &DirectHeader) -> usize {
    let extension = header.audio_level.is_some() || header.transport_sequence.is_some();
    buf[0] = 0x80 | (u8::from(extension) << 4);
    buf[1] = (u8::from(header.marker) << 7) | (header.payload_type & 0x7f);
    buf[2..4].copy_from_slice(&header.sequence_number.to_be_bytes());
    buf[4..8].copy_from_slice(&header.timestamp.to_be_bytes());
    buf[8..12].copy_from_slice(&header.ssrc.to_be_bytes());
    if !extension {
        return 12;
    }
    // 0xBEDE, then the elements ([id | len-1] data…), zero-padded to whole 32-bit words.
    let mut end = 16;
    if let Some((id, level)) = header.audio_level {
        buf[end..end + 2].copy_from_slice(&[id << 4, level]);
        end += 2;
    }
    if let Some((id, number)) = header.transport_sequence {
        buf[end] = (id << 4) | 1;
        buf[end + 1..end + 3].copy_from_slice(&number.to_be_bytes());
        end += 3;
    }
    let padded = 16 + (end - 16).div_ceil(4) * 4;
    buf[end..padded].fill(0);
    let words = ((padded - 16) / 4) as u16;
    buf[12..14].copy_from_slice(&[0xbe, 0xde]);
    buf[14..16].copy_from_slice(&words.to_be_bytes());
    padded
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp::packet::Packet;
    use rtc::shared::marshal::Unmarshal;

    use crate::sfu::srtp_keys::KeyCapture;

    use rtc::srtp::protection_profile::ProtectionProfile;

    /// The keys learned from the core's own SRTP context encrypt exactly as that context
    /// does, and the core's remote side decrypts what the direct path sends, across a
    /// sequence-number wrap: AEAD_AES_128_GCM.
    #[test]
    fn direct_gcm_packets_match_the_cores_srtp_and_decrypt_with_it() {
        matches_the_core(ProtectionProfile::AeadAes128Gcm, 12, TAG_LEN);
    }

    /// The same for AES_CM_128_HMAC_SHA1_80 (what Chromium negotiates).
    #[test]
    fn direct_aes_cm_packets_match_the_cores_srtp_and_decrypt_with_it() {
        matches_the_core(
            ProtectionProfile::Aes128CmHmacSha1_80,
            14,
            crate::sfu::srtp_cm::CM_TAG_LEN,
        );
    }

    fn matches_the_core(profile: ProtectionProfile, salt_len: usize, tag_len: usize) {
        use rtc::crypto::RTCCryptoProvider;
        use rtc::srtp::context::Context;

        let master_key = [0x11u8; 16];
        let master_salt = vec![0x22u8; salt_len];
        let capture = KeyCapture::new().unwrap();
        let mut core_sender = Context::new(
            &master_key,
            &master_salt,
            profile,
            None,
            None,
            capture.crypto(),
        )
        .unwrap();
        let keys = capture.local_keys().expect("keys learned").clone();
        let provider = rtc::crypto::default_provider().unwrap();
        let mut core_receiver = Context::new(
            &master_key,
            &master_salt,
            profile,
            None,
            None,
            provider.crypto(),
        )
        .unwrap();

        let direct = DirectSender::new(&keys);
        let mut rollover = Rollover::default();
        let mut arena = BytesMut::new();
        for (i, seq) in [65_534u16, 65_535, 0, 1].into_iter().enumerate() {
            // Audio level only, transport-wide number only, both, and an RTX packet.
            let header = DirectHeader {
                marker: i == 0,
                payload_type: if i == 3 { 97 } else { 111 },
                sequence_number: seq,
                timestamp: 960 * i as u32,
                ssrc: 0x1234_5678,
                audio_level: (i % 2 == 0).then_some((1, 0x85)),
                transport_sequence: (i >= 1).then_some((3, 0x0100 + i as u16)),
                original_sequence: (i == 3).then_some(0xabcd),
            };
            let payload = [i as u8; 40];
            let sealed = direct
                .seal(&header, &payload, &mut rollover, &mut arena)
                .unwrap();

            // The core encrypting the same plaintext gives the same bytes.
            let plain_len = sealed.len() - tag_len;
            let mut plain = sealed[..plain_len].to_vec();
            let header_len = write_header(&mut [0; MAX_HEADER_LEN], &header);
            let mut body = header
                .original_sequence
                .map_or(vec![], |n| n.to_be_bytes().to_vec());
            body.extend_from_slice(&payload);
            plain[header_len..].copy_from_slice(&body);
            let by_core = core_sender.encrypt_rtp(&plain).unwrap();
            assert_eq!(&by_core[..], &sealed[..], "packet {i} (seq {seq})");

            let decrypted = core_receiver.decrypt_rtp(&sealed).unwrap();
            let packet = Packet::unmarshal(&mut &decrypted[..]).unwrap();
            assert_eq!(packet.header.sequence_number, seq);
            assert_eq!(packet.header.marker, i == 0);
            assert_eq!(&packet.payload[..], &body[..]);
            assert_eq!(
                packet.header.get_extension(1).map(|b| b.to_vec()),
                (i % 2 == 0).then(|| vec![0x85])
            );
            assert_eq!(
                packet.header.get_extension(3).map(|b| b.to_vec()),
                (i >= 1).then(|| (0x0100 + i as u16).to_be_bytes().to_vec())
            );
        }
    }

    #[test]
    fn no_keys_are_learned_from_other_profiles() {
        use rtc::crypto::RTCCryptoProvider;
        use rtc::srtp::context::Context;

        let capture = KeyCapture::new().unwrap();
        Context::new(
            &[1; 32],
            &[2; 12],
            ProtectionProfile::AeadAes256Gcm,
            None,
            None,
            capture.crypto(),
        )
        .unwrap();
        assert!(capture.local_keys().is_none());
    }
}
