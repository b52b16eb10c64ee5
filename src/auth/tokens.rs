//! Bearer tokens issued by `/login` (spec control-plane §5.5): in memory only, one per
//! client, fixed lifetime, expired entries dropped when looked up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// Why a bearer token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is invalid")]
    Invalid,
    #[error("session is expired")]
    Expired,
}

struct Entry {
    client_id: String,
    expires_at: Instant,
}

#[derive(Default)]
struct Tables {
    by_token: HashMap<String, Entry>,
    by_client: HashMap<String, String>,
}

/// The token cache.
pub struct TokenCache {
    lifetime: Duration,
    tables: Mutex<Tables>,
}

impl TokenCache {
    pub fn new(lifetime: Duration) -> Self {
        Self {
            lifetime,
            tables: Mutex::new(Tables::default()),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Issues a fresh token for `client_id`, revoking its previous one.
    pub fn issue(&self, client_id: &str) -> String {
        // 24 random bytes → 32 base64url characters (~192 bits).
        let token =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
        let mut tables = self.tables();
        if let Some(old) = tables.by_client.insert(client_id.to_owned(), token.clone()) {
            tables.by_token.remove(&old);
        }
        tables.by_token.insert(
            token.clone(),
            Entry {
                client_id: client_id.to_owned(),
                expires_at: Instant::now() + self.lifetime,
            },
        );
        token
    }

    /// The client a token belongs to.
    pub fn lookup(&self, token: &str) -> Result<String, TokenError> {
        let mut tables = self.tables();
        let entry = tables.by_token.get(token).ok_or(TokenError::Invalid)?;
        if Instant::now() < entry.expires_at {
            return Ok(entry.client_id.clone());
        }
        let client_id = entry.client_id.clone();
        tables.by_token.remove(token);
        tables.by_client.remove(&client_id);
        Err(TokenError::Expired)
    }

    /// Revokes the token of `client_id`, if any.
    pub fn revoke(&self, client_id: &str) {
        let mut tables = self.tables();
        if let Some(token) = tables.by_client.remove(client_id) {
            tables.by_token.remove(&token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_token_per_client_and_expiry() {
        let cache = TokenCache::new(Duration::from_secs(60));
        let first = cache.issue("a");
        assert_eq!(first.len(), 32);
        assert!(
            first
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(cache.lookup(&first).unwrap(), "a");
        let second = cache.issue("a");
        assert_eq!(cache.lookup(&first), Err(TokenError::Invalid));
        assert_eq!(cache.lookup(&second).unwrap(), "a");
        cache.revoke("a");
        assert_eq!(cache.lookup(&second), Err(TokenError::Invalid));

        let short = TokenCache::new(Duration::ZERO);
        let token = short.issue("b");
        assert_eq!(short.lookup(&token), Err(TokenError::Expired));
        assert_eq!(short.lookup(&token), Err(TokenError::Invalid));
    }
}
