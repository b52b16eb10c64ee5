//! Learning a session's outbound SRTP keys from the WebRTC core.
//!
//! Owns: [`KeyCapture`], a crypto provider for one peer connection that does every operation
//! through the core's default provider and, on the way, notes the local SRTP master key and
//! salt when the core builds its SRTP contexts after the DTLS handshake. `rtc` 0.21.1 keeps
//! the DTLS-SRTP keying material private; this lets the session encrypt forwarded audio itself
//! (see `direct_rtp`) while the core keeps ICE, DTLS, SCTP, RTCP and video.
//!
//! How a context is recognised (AEAD_AES_128_GCM only; RFC 3711 §4.3 / RFC 7714 §11): the core
//! derives each session key with one AES block encryption under the master key, whose input
//! is the master salt (the SRTP encryption label is 0), and then creates the AEAD cipher with
//! that key. A `new_aead` whose key equals the output of the preceding `block_encrypt` under
//! a new key therefore identifies (master key, master salt) exactly; the DTLS record layer's
//! own AEAD never matches. The core builds the local context before the remote one, so the
//! first match is ours to send with.

use std::sync::{Arc, Mutex, OnceLock};

use rtc::crypto::{
    ActiveKeyExchange, AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CbcCipher,
    CryptoAlgorithm, CryptoError, HashAlgorithm, HmacAlgorithm, KeyExchangeAlgorithm, Mac,
    PublicKey, RTCCrypto, RTCCryptoProvider, RTCRandom, SignatureScheme, SigningKey, StreamCipher,
    StreamCipherAlgorithm,
};

/// SRTP label of the session salt (RFC 3711 §4.3.2).
const LABEL_SRTP_SALT: u8 = 0x02;

/// An outbound SRTP context's session key and salt (AEAD_AES_128_GCM).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    pub key: [u8; 16],
    pub salt: [u8; 12],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

/// The last master key seen in a key derivation, and what it derived first.
#[derive(Default)]
struct Derivation {
    master_key: [u8; 16],
    master_salt: [u8; 12],
    first_output: [u8; 16],
}

/// A peer connection's crypto provider that remembers its local SRTP keys.
pub struct KeyCapture {
    inner: Arc<dyn RTCCryptoProvider>,
    derivation: Mutex<Option<Derivation>>,
    local: OnceLock<SessionKeys>,
}

impl KeyCapture {
    pub fn new() -> Result<Arc<Self>, CryptoError> {
        Ok(Arc::new(Self {
            inner: rtc::crypto::default_provider()?,
            derivation: Mutex::new(None),
            local: OnceLock::new(),
        }))
    }

    /// The local SRTP context's keys, once the handshake has produced them (AES-128-GCM only:
    /// `None` for the AES-CM profile, whose packets the core keeps encrypting).
    pub fn local_keys(&self) -> Option<&SessionKeys> {
        self.local.get()
    }

    fn note_block(&self, key: &[u8], input: &[u8], output: &[u8]) {
        let (Ok(master_key), Some(salt), Ok(first_output)) = (
            <[u8; 16]>::try_from(key),
            input.get(..12),
            <[u8; 16]>::try_from(output),
        ) else {
            return;
        };
        let mut derivation = self.derivation.lock().unwrap_or_else(|e| e.into_inner());
        if derivation
            .as_ref()
            .is_some_and(|d| d.master_key == master_key)
        {
            return; // a later label of the same derivation
        }
        let mut master_salt = [0; 12];
        master_salt.copy_from_slice(salt);
        *derivation = Some(Derivation {
            master_key,
            master_salt,
            first_output,
        });
    }

    fn note_aead(&self, algorithm: AeadAlgorithm, key: &[u8]) {
        if algorithm != AeadAlgorithm::Aes128Gcm || self.local.get().is_some() {
            return;
        }
        let derivation = self.derivation.lock().unwrap_or_else(|e| e.into_inner());
        let Some(derivation) = derivation.as_ref() else {
            return;
        };
        if derivation.first_output.as_slice() != key {
            return;
        }
        // The session salt: label 2 over the master salt, first 12 bytes of the block.
        let mut block = [0u8; 16];
        block[..12].copy_from_slice(&derivation.master_salt);
        block[7] ^= LABEL_SRTP_SALT;
        if self
            .inner
            .crypto()
            .block_encrypt(
                BlockCipherAlgorithm::Aes128,
                &derivation.master_key,
                &mut block,
            )
            .is_err()
        {
            return;
        }
        let mut salt = [0; 12];
        salt.copy_from_slice(&block[..12]);
        let _ = self.local.set(SessionKeys {
            key: derivation.first_output,
            salt,
        });
    }
}

impl RTCCryptoProvider for KeyCapture {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn crypto(&self) -> &dyn RTCCrypto {
        self
    }

    fn random(&self) -> &dyn RTCRandom {
        self.inner.random()
    }
}

impl RTCCrypto for KeyCapture {
    fn supports(&self, algorithm: CryptoAlgorithm) -> bool {
        self.inner.crypto().supports(algorithm)
    }

    fn hash(&self, algorithm: HashAlgorithm, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.crypto().hash(algorithm, data)
    }

    fn block_encrypt(
        &self,
        algorithm: BlockCipherAlgorithm,
        key: &[u8],
        block: &mut [u8],
    ) -> Result<(), CryptoError> {
        let input: [u8; 16] = block.try_into().unwrap_or([0; 16]);
        self.inner.crypto().block_encrypt(algorithm, key, block)?;
        if algorithm == BlockCipherAlgorithm::Aes128 {
            self.note_block(key, &input, block);
        }
        Ok(())
    }

    fn new_hmac(&self, algorithm: HmacAlgorithm, key: &[u8]) -> Result<Box<dyn Mac>, CryptoError> {
        self.inner.crypto().new_hmac(algorithm, key)
    }

    fn new_stream_cipher(
        &self,
        algorithm: StreamCipherAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn StreamCipher>, CryptoError> {
        self.inner.crypto().new_stream_cipher(algorithm, key)
    }

    fn new_aead(
        &self,
        algorithm: AeadAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn AeadCipher>, CryptoError> {
        self.note_aead(algorithm, key);
        self.inner.crypto().new_aead(algorithm, key)
    }

    fn new_cbc(
        &self,
        algorithm: CbcAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn CbcCipher>, CryptoError> {
        self.inner.crypto().new_cbc(algorithm, key)
    }

    fn start_key_exchange(
        &self,
        algorithm: KeyExchangeAlgorithm,
    ) -> Result<Box<dyn ActiveKeyExchange>, CryptoError> {
        self.inner.crypto().start_key_exchange(algorithm)
    }

    fn generate_signing_key(
        &self,
        scheme: SignatureScheme,
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().generate_signing_key(scheme)
    }

    fn import_signing_key(
        &self,
        scheme: SignatureScheme,
        pkcs8_der: &[u8],
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().import_signing_key(scheme, pkcs8_der)
    }

    fn verify_signature(
        &self,
        scheme: SignatureScheme,
        public_key: PublicKey<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        self.inner
            .crypto()
            .verify_signature(scheme, public_key, message, signature)
    }
}
