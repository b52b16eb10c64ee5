//! Client credentials: registration, verification, bearer tokens, admin identity.
//!
//! Owns: the authentication algorithm of spec control-plane §5.2 (Bearer, then Basic with the
//! admin secret, then store-backed `clientID:authKey`), argon2id hashing of keys, what guards
//! the hashing (per source address, per client ID and process-wide budgets, recently verified
//! keys: [`guard`]) and the token cache (§5.5). Never logs or returns secrets; keys are
//! compared only through argon2 verification or constant-time equality.
//! Must not touch: HTTP types (handlers translate these errors), SQL (goes through `store`).

pub mod guard;
mod limiter;
mod tokens;

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use subtle::ConstantTimeEq;

pub use limiter::{RATE_LIMIT_ERROR, RateLimited, RateLimiter};
pub use tokens::{TokenCache, TokenError};

use crate::config::SecurityConfig;
use crate::store::{Store, StoreError};

/// Shortest accepted auth key, in bytes (upstream).
pub const MIN_KEY_LEN: usize = 32;
/// Longest accepted auth key, in bytes. Upstream's 72-byte cap was a bcrypt artefact.
pub const MAX_KEY_LEN: usize = 1024;

/// Who a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The operator, through `admin_secret_key` (upstream: an empty clientID).
    Admin,
    /// A registered client (Mattermost installation).
    Client(String),
}

impl Identity {
    /// The clientID, empty for the admin (as upstream represents it).
    pub fn client_id(&self) -> &str {
        match self {
            Identity::Admin => "",
            Identity::Client(id) => id,
        }
    }
}

/// Authentication failure. Display strings are upstream's client-visible errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication failed: {0}")]
    Token(TokenError),
    #[error("authentication failed: invalid auth header")]
    InvalidHeader,
    #[error("authentication failed: unauthorized")]
    EmptyUsername,
    /// Unknown client, wrong key or rate limit: the detail is only logged.
    #[error("authentication failed")]
    Failed(CredentialError),
}

/// Why store-backed credentials were rejected (logged, not returned to HTTP clients).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("error: not found")]
    UnknownClient,
    #[error("key mismatch")]
    Mismatch,
    #[error("{RATE_LIMIT_ERROR}")]
    RateLimited,
    #[error("store error: {0}")]
    Store(String),
}

/// Registration failure (`registration failed: …`).
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("registration failed: key not long enough")]
    KeyTooShort,
    #[error("registration failed: key too long (at most {MAX_KEY_LEN} bytes)")]
    KeyTooLong,
    #[error("registration failed: error: empty key")]
    EmptyClientId,
    #[error("registration failed: already registered")]
    AlreadyRegistered,
    #[error("registration failed: {RATE_LIMIT_ERROR}")]
    RateLimited,
    #[error("registration failed: {0}")]
    Store(StoreError),
    #[error("registration failed: {0}")]
    Hash(String),
}

/// Unregistration failure.
#[derive(Debug, thiserror::Error)]
pub enum UnregisterError {
    #[error("unregister failed: error: not found")]
    NotFound,
    #[error("unregister failed: {0}")]
    Store(StoreError),
}

/// Login failure (`login failed: authentication failed…`).
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Answered like a wrong key (upstream's `…: error: not found` told which client IDs
    /// exist; the plugin reads only the status).
    #[error("login failed: authentication failed")]
    UnknownClient,
    #[error("login failed: authentication failed")]
    Mismatch,
    #[error("login failed: authentication failed: {RATE_LIMIT_ERROR}")]
    RateLimited,
    #[error("login failed: authentication failed: {0}")]
    Store(String),
}

/// The authentication service shared by the HTTP and WebSocket handlers.
pub struct Auth {
    store: Arc<Store>,
    guard: guard::VerifyGuard,
    verified: guard::VerifiedKeys,
    tokens: TokenCache,
    admin_secret: Option<String>,
    /// A hash of a random key: unknown client IDs are verified against it, so they cost what
    /// known ones cost.
    decoy: OnceLock<String>,
}

impl Auth {
    pub fn new(store: Arc<Store>, security: &SecurityConfig) -> Self {
        let minutes = security.session_cache.expiration_minutes.max(1) as u64;
        Self {
            store,
            guard: guard::VerifyGuard::new(RateLimiter::for_this_machine()),
            verified: guard::VerifiedKeys::default(),
            tokens: TokenCache::new(Duration::from_secs(minutes * 60)),
            admin_secret: security
                .enable_admin
                .then(|| security.admin_secret_key.clone()),
            decoy: OnceLock::new(),
        }
    }

    /// Authenticates an `Authorization` header value (§5.2) of a request from `source`.
    pub async fn authenticate(
        &self,
        header: Option<&str>,
        source: IpAddr,
    ) -> Result<Identity, AuthError> {
        let header = header.unwrap_or("");
        if let Some(token) = header.strip_prefix("Bearer ") {
            return self
                .tokens
                .lookup(token)
                .map(Identity::Client)
                .map_err(AuthError::Token);
        }
        let (user, password) = parse_basic(header).ok_or(AuthError::InvalidHeader)?;
        if self.is_admin_secret(&password) {
            return Ok(Identity::Admin);
        }
        if user.is_empty() {
            return Err(AuthError::EmptyUsername);
        }
        self.verify(&user, &password, source)
            .await
            .map_err(AuthError::Failed)?;
        Ok(Identity::Client(user))
    }

    fn is_admin_secret(&self, password: &str) -> bool {
        self.admin_secret
            .as_deref()
            .is_some_and(|secret| bool::from(secret.as_bytes().ct_eq(password.as_bytes())))
    }

    /// Checks a client's key against its stored hash: at once if it verified recently, else
    /// within the caller's budgets ([`guard`]). Unknown clients cost the same as known ones.
    pub async fn verify(
        &self,
        client_id: &str,
        key: &str,
        source: IpAddr,
    ) -> Result<(), CredentialError> {
        if self.verified.contains(client_id, key) {
            return Ok(());
        }
        self.guard
            .admit(client_id, source)
            .await
            .map_err(|_| CredentialError::RateLimited)?;
        let store = self.store.clone();
        let id = client_id.to_owned();
        let stored = match blocking(move || store.get(&id)).await {
            Ok(hash) => Some(hash),
            Err(StoreError::NotFound | StoreError::EmptyKey | StoreError::KeyTooLarge) => None,
            Err(other) => return Err(CredentialError::Store(other.to_string())),
        };
        let known = stored.is_some();
        let hash = match stored {
            Some(hash) => hash,
            None => self.decoy().await,
        };
        let candidate = key.to_owned();
        let matches = blocking(move || {
            Ok::<_, ()>(
                Argon2::default()
                    .verify_password(candidate.as_bytes(), hash.as_str())
                    .is_ok(),
            )
        })
        .await
        .unwrap_or(false);
        match (known, matches) {
            (false, _) => Err(CredentialError::UnknownClient),
            (true, true) => {
                self.verified.insert(client_id, key);
                Ok(())
            }
            (true, false) => Err(CredentialError::Mismatch),
        }
    }

    /// The decoy hash (made once, off the async threads).
    async fn decoy(&self) -> String {
        if let Some(hash) = self.decoy.get() {
            return hash.clone();
        }
        let hash = blocking(|| {
            let random: [u8; 32] = rand::random();
            Argon2::default()
                .hash_password(&random)
                .map(|h| h.to_string())
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_default();
        self.decoy.get_or_init(|| hash).clone()
    }

    /// Registers a new client (§4.5 steps 3–7) for a caller at `source`.
    pub async fn register(
        &self,
        client_id: &str,
        key: &str,
        source: IpAddr,
    ) -> Result<(), RegisterError> {
        if key.len() < MIN_KEY_LEN {
            return Err(RegisterError::KeyTooShort);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(RegisterError::KeyTooLong);
        }
        if client_id.is_empty() {
            return Err(RegisterError::EmptyClientId);
        }
        let store = self.store.clone();
        let id = client_id.to_owned();
        match blocking(move || store.get(&id)).await {
            Ok(_) => return Err(RegisterError::AlreadyRegistered),
            Err(StoreError::NotFound) => {}
            Err(StoreError::KeyTooLarge) => {
                return Err(RegisterError::Store(StoreError::KeyTooLarge));
            }
            Err(other) => return Err(RegisterError::Store(other)),
        }
        self.guard
            .admit(client_id, source)
            .await
            .map_err(|_| RegisterError::RateLimited)?;
        let key = key.to_owned();
        let hash = blocking(move || {
            Argon2::default()
                .hash_password(key.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(RegisterError::Hash)?;
        let store = self.store.clone();
        let id = client_id.to_owned();
        blocking(move || store.insert(&id, &hash))
            .await
            .map_err(|e| match e {
                StoreError::Conflict => RegisterError::AlreadyRegistered,
                other => RegisterError::Store(other),
            })
    }

    /// Removes a client and revokes its bearer token.
    pub async fn unregister(&self, client_id: &str) -> Result<(), UnregisterError> {
        let store = self.store.clone();
        let id = client_id.to_owned();
        blocking(move || store.delete(&id))
            .await
            .map_err(|e| match e {
                StoreError::NotFound | StoreError::EmptyKey | StoreError::KeyTooLarge => {
                    UnregisterError::NotFound
                }
                other => UnregisterError::Store(other),
            })?;
        self.tokens.revoke(client_id);
        self.verified.remove(client_id);
        self.guard.forget(client_id);
        Ok(())
    }

    /// Verifies credentials and issues a bearer token (the admin cannot log in).
    pub async fn login(
        &self,
        client_id: &str,
        key: &str,
        source: IpAddr,
    ) -> Result<String, LoginError> {
        self.verify(client_id, key, source)
            .await
            .map_err(|e| match e {
                CredentialError::UnknownClient => LoginError::UnknownClient,
                CredentialError::Mismatch => LoginError::Mismatch,
                CredentialError::RateLimited => LoginError::RateLimited,
                CredentialError::Store(s) => LoginError::Store(s),
            })?;
        Ok(self.tokens.issue(client_id))
    }
}

/// Runs blocking work (SQLite, argon2) off the async worker threads.
async fn blocking<T: Send + 'static, E: Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()))
}

/// Parses `Basic base64(user:password)` as Go's `Request.BasicAuth` does: scheme compared
/// case-insensitively, standard padded base64, split at the first `:`.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    const PREFIX: &str = "basic ";
    let scheme = header.get(..PREFIX.len())?;
    if !scheme.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&header[PREFIX.len()..])
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Builds a Basic `Authorization` header value.
pub fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(enable_admin: bool) -> (tempfile::TempDir, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path(), false).unwrap());
        let security = SecurityConfig {
            enable_admin,
            admin_secret_key: "admin-secret".into(),
            ..SecurityConfig::default()
        };
        (dir, Auth::new(store, &security))
    }

    const KEY: &str = "q7Zt0-Lm3Xa_9vKpR2wBn8YcE5uHs1Dj";
    const SOURCE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    async fn check(auth: &Auth, header: Option<&str>) -> Result<Identity, AuthError> {
        auth.authenticate(header, SOURCE).await
    }

    #[test]
    fn basic_header_parsing() {
        assert_eq!(
            parse_basic(&basic_header("id", "a:b")),
            Some(("id".into(), "a:b".into()))
        );
        assert_eq!(
            parse_basic(&basic_header("", "x")).map(|p| p.0),
            Some(String::new())
        );
        let lower = basic_header("u", "p").replace("Basic", "bAsIc");
        assert!(parse_basic(&lower).is_some());
        assert!(parse_basic("Basic !!!").is_none());
        assert!(parse_basic("Basic dXNlcg==").is_none()); // "user", no colon
        assert!(parse_basic("bearer abc").is_none());
        assert!(parse_basic("").is_none());
    }

    #[tokio::test]
    async fn register_verify_login_unregister() {
        let (_dir, auth) = auth(true);
        assert!(matches!(
            auth.register("c", "short", SOURCE).await,
            Err(RegisterError::KeyTooShort)
        ));
        assert!(matches!(
            auth.register("", KEY, SOURCE).await,
            Err(RegisterError::EmptyClientId)
        ));
        auth.register("c", KEY, SOURCE).await.unwrap();
        assert!(matches!(
            auth.register("c", KEY, SOURCE).await,
            Err(RegisterError::AlreadyRegistered)
        ));
        let long_key = "k".repeat(MAX_KEY_LEN);
        auth.register("long", &long_key, SOURCE).await.unwrap();
        assert_eq!(
            check(&auth, Some(&basic_header("long", &long_key))).await,
            Ok(Identity::Client("long".into()))
        );
        assert_eq!(
            check(&auth, Some(&basic_header("c", KEY))).await,
            Ok(Identity::Client("c".into()))
        );
        assert_eq!(
            check(&auth, Some(&basic_header("c", "wrong"))).await,
            Err(AuthError::Failed(CredentialError::Mismatch))
        );
        assert_eq!(
            check(&auth, Some(&basic_header("nobody", KEY))).await,
            Err(AuthError::Failed(CredentialError::UnknownClient))
        );
        assert_eq!(
            check(&auth, Some(&basic_header("", "admin-secret"))).await,
            Ok(Identity::Admin)
        );
        assert_eq!(
            check(&auth, Some(&basic_header("", "nope"))).await,
            Err(AuthError::EmptyUsername)
        );
        assert_eq!(check(&auth, None).await, Err(AuthError::InvalidHeader));
        let token = auth.login("c", KEY, SOURCE).await.unwrap();
        assert_eq!(
            check(&auth, Some(&format!("Bearer {token}"))).await,
            Ok(Identity::Client("c".into()))
        );
        assert!(matches!(
            auth.login("c", "wrong", SOURCE).await,
            Err(LoginError::Mismatch)
        ));
        auth.unregister("c").await.unwrap();
        assert_eq!(
            check(&auth, Some(&format!("Bearer {token}"))).await,
            Err(AuthError::Token(TokenError::Invalid))
        );
        assert!(matches!(
            auth.unregister("c").await,
            Err(UnregisterError::NotFound)
        ));
    }

    #[tokio::test]
    async fn admin_disabled_ignores_secret() {
        let (_dir, auth) = auth(false);
        assert_eq!(
            check(&auth, Some(&basic_header("", "admin-secret"))).await,
            Err(AuthError::EmptyUsername)
        );
    }
}
