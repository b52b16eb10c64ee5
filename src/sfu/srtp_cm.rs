//! Minimal SRTP with AES_CM_128_HMAC_SHA1_80 (RFC 3711), in place and without allocation:
//! the direct path's cipher for clients that negotiate it (Chromium does by default, though
//! we offer AEAD_AES_128_GCM first).
//!
//! Owns: one direction's SRTP packet protection from session keys (the encryption key, salt
//! and authentication key; key derivation is the core's, see `srtp_keys`). AES in counter
//! mode from RustCrypto's `aes`/`ctr` (ring has no raw counter mode), HMAC-SHA1 from ring. No
//! SRTCP: RTCP stays with the WebRTC core.

use aes::Aes128;
use ctr::cipher::{InnerIvInit, KeyInit, StreamCipher};
use ring::hmac;

use super::srtp_gcm::{header_len, ids};

/// HMAC-SHA1 tag length of the `_80` profile (10 bytes).
pub const CM_TAG_LEN: usize = 10;

/// One direction's SRTP context.
pub struct SrtpCm {
    cipher: Aes128,
    salt: [u8; 14],
    auth: hmac::Key,
}

impl SrtpCm {
    pub fn new(key: &[u8; 16], salt: &[u8; 14], auth_key: &[u8; 20]) -> Self {
        Self {
            cipher: Aes128::new(key.into()),
            salt: *salt,
            auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_key),
        }
    }

    /// RFC 3711 §4.1.1: IV = (salt · 2^16) XOR (SSRC · 2^64) XOR (index · 2^16).
    fn counter(&self, ssrc: u32, roc: u32, seq: u16) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (byte, x) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *byte ^= x;
        }
        for (byte, x) in iv[8..12].iter_mut().zip(roc.to_be_bytes()) {
            *byte ^= x;
        }
        for (byte, x) in iv[12..14].iter_mut().zip(seq.to_be_bytes()) {
            *byte ^= x;
        }
        iv
    }

    /// Encrypts the RTP packet in `buf[..len]` in place and appends the tag; `buf` needs
    /// [`CM_TAG_LEN`] spare bytes. `roc` is the stream's rollover counter for this packet's
    /// sequence number. Returns the SRTP length, or `None` for a malformed packet.
    pub fn protect(&self, buf: &mut [u8], len: usize, roc: u32) -> Option<usize> {
        let header = header_len(&buf[..len])?;
        if buf.len() < len + CM_TAG_LEN {
            return None;
        }
        let (ssrc, seq) = ids(buf);
        let counter = self.counter(ssrc, roc, seq);
        let core = ctr::CtrCore::<Aes128, ctr::flavors::Ctr128BE>::inner_iv_init(
            self.cipher.clone(),
            &counter.into(),
        );
        let mut keystream = ctr::Ctr128BE::<Aes128>::from_core(core);
        keystream.apply_keystream(&mut buf[header..len]);
        // The tag covers the packet and the rollover counter (RFC 3711 §4.2).
        let mut mac = hmac::Context::with_key(&self.auth);
        mac.update(&buf[..len]);
        mac.update(&roc.to_be_bytes());
        let tag = mac.sign();
        buf[len..len + CM_TAG_LEN].copy_from_slice(&tag.as_ref()[..CM_TAG_LEN]);
        Some(len + CM_TAG_LEN)
    }
}
