//! Learning a session's outbound SRTP keys from the WebRTC core.
//!
//! Owns: [`KeyCapture`], a crypto provider for one peer connection that does every operation
//! through the core's default provider and, on the way, notes the local SRTP session keys
//! when the core builds its SRTP contexts after the DTLS handshake. `rtc` 0.21.1 keeps the
//! DTLS-SRTP keying material private; this lets the session encrypt forwarded media itself
//! (see `direct_rtp`) while the core keeps ICE, DTLS, SCTP and RTCP.
//!
//! How a context is recognised (AEAD_AES_128_GCM and AES_CM_128_HMAC_SHA1_80; RFC 3711 §4.3,
//! RFC 7714 §11): the core derives each session key with AES block encryptions under the
//! master key, the first of which takes the master salt as input (the SRTP encryption label
//! is 0, block 0), and then creates the cipher with that key: an AEAD for GCM, a counter-mode
//! stream cipher for AES-CM. A `new_aead`/`new_stream_cipher` whose key equals the output of
//! the preceding derivation's first block therefore identifies (master key, master salt)
//! exactly, and the remaining session keys (salt; for AES-CM the authentication key) follow
//! from them; the DTLS record layer's own AEAD never matches. The core builds the local
//! context before the remote one, so the first match is ours to send with.

use std::sync::{Arc, Mutex, OnceLock};

use rtc::crypto::{
    ActiveKeyExchange, AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CbcCipher,
    CryptoAlgorithm, CryptoError, HashAlgorithm, HmacAlgorithm, KeyExchangeAlgorithm, Mac,
    PublicKey, RTCCrypto, RTCCryptoProvider, RTCRandom, SignatureScheme, SigningKey, StreamCipher,
    StreamCipherAlgorithm,
};

/// SRTP label of the session salt (RFC 3711 §4.3.2).
const LABEL_SRTP_SALT: u8 = 0x02;

/// An outbound SRTP context's session keys.
#[derive(Clone, PartialEq, Eq)]
pub enum SessionKeys {
    /// AEAD_AES_128_GCM: key and 12-byte salt.
    Gcm { key: [u8; 16], salt: [u8; 12] },
    /// AES_CM_128_HMAC_SHA1_80: key, 14-byte salt and HMAC-SHA1 key.
    Cm {
        key: [u8; 16],
        salt: [u8; 14],
        auth: [u8; 20],
    },
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

/// The last master key seen in a key derivation, its first input block (the master salt,
/// zero-padded) and what it derived first.
#[derive(Default)]
struct Derivation {
    master_key: [u8; 16],
    first_input: [u8; 16],
    first_output: [u8; 16],
}

/// SRTP label of the session authentication key (RFC 3711 §4.3.2).
const LABEL_SRTP_AUTH: u8 = 0x01;

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

    /// The local SRTP context's keys, once the handshake has produced them (`None` for
    /// profiles other than AEAD_AES_128_GCM and AES_CM_128_HMAC_SHA1_80: the core keeps
    /// encrypting those).
    pub fn local_keys(&self) -> Option<&SessionKeys> {
        self.local.get()
    }

    fn note_block(&self, key: &[u8], input: &[u8], output: &[u8]) {
        let (Ok(master_key), Ok(first_input), Ok(first_output)) = (
            <[u8; 16]>::try_from(key),
            <[u8; 16]>::try_from(input),
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
        *derivation = Some(Derivation {
            master_key,
            first_input,
            first_output,
        });
    }

    /// One more block of the AES-CM key derivation (RFC 3711 §4.3.3) of `label` over the
    /// master salt, block `index`.
    fn derive_block(
        &self,
        derivation: &Derivation,
        salt_len: usize,
        label: u8,
        index: u8,
    ) -> Option<[u8; 16]> {
        let mut block = [0u8; 16];
        block[..salt_len].copy_from_slice(&derivation.first_input[..salt_len]);
        block[7] ^= label;
        block[15] = index;
        self.inner
            .crypto()
            .block_encrypt(
                BlockCipherAlgorithm::Aes128,
                &derivation.master_key,
                &mut block,
            )
            .ok()?;
        Some(block)
    }

    /// A cipher is being created with `key`: if it is the session key the last derivation
    /// started with, the local context's keys are known.
    fn note_cipher(&self, key: &[u8], profile: Profile) {
        if self.local.get().is_some() {
            return;
        }
        let derivation = self.derivation.lock().unwrap_or_else(|e| e.into_inner());
        let Some(derivation) = derivation.as_ref() else {
            return;
        };
        if derivation.first_output.as_slice() != key {
            return;
        }
        let keys = match profile {
            Profile::Gcm => {
                let Some(block) = self.derive_block(derivation, 12, LABEL_SRTP_SALT, 0) else {
                    return;
                };
                let mut salt = [0; 12];
                salt.copy_from_slice(&block[..12]);
                SessionKeys::Gcm {
                    key: derivation.first_output,
                    salt,
                }
            }
            Profile::Cm => {
                let blocks = (
                    self.derive_block(derivation, 14, LABEL_SRTP_SALT, 0),
                    self.derive_block(derivation, 14, LABEL_SRTP_AUTH, 0),
                    self.derive_block(derivation, 14, LABEL_SRTP_AUTH, 1),
                );
                let (Some(salt_block), Some(auth0), Some(auth1)) = blocks else {
                    return;
                };
                let mut salt = [0; 14];
                salt.copy_from_slice(&salt_block[..14]);
                let mut auth = [0; 20];
                auth[..16].copy_from_slice(&auth0);
                auth[16..].copy_from_slice(&auth1[..4]);
                SessionKeys::Cm {
                    key: derivation.first_output,
                    salt,
                    auth,
                }
            }
        };
        let _ = self.local.set(keys);
    }
}

/// The SRTP profiles whose keys are learned.
#[derive(Debug, Clone, Copy)]
enum Profile {
    Gcm,
    Cm,
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
        if algorithm == StreamCipherAlgorithm::Aes128Ctr {
            self.note_cipher(key, Profile::Cm);
        }
        self.inner.crypto().new_stream_cipher(algorithm, key)
    }

    fn new_aead(
        &self,
        algorithm: AeadAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn AeadCipher>, CryptoError> {
        if algorithm == AeadAlgorithm::Aes128Gcm {
            self.note_cipher(key, Profile::Gcm);
        }
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
