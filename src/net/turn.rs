//! SFU-side TURN (spec media-plane §1.8): which `rtc.ice_servers` entries give sessions relay
//! candidates, where those servers are, and the credentials each session allocates with.
//!
//! Owns: selecting TURN entries (all URLs `turn:`/`turns:`), resolving them once at startup
//! (the media workers never block on DNS), and coturn's `use-auth-secret` REST credentials
//! (`<expiry unix>:<sessionID>` / base64(HMAC-SHA1(secret, username))). The allocation itself
//! is a session's business (`sfu::relay`).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use crate::config::{IceServer, TurnConfig};

/// A TURN server sessions allocate relays on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnServer {
    /// The URL as configured (for logs).
    pub url: String,
    /// The server's resolved UDP address.
    pub address: SocketAddr,
    /// Credentials configured with the entry; `None` = generate REST credentials per session.
    fixed_credentials: Option<(String, String)>,
}

/// Long-term credentials for one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    pub username: String,
    pub password: String,
}

impl TurnServer {
    /// The credentials `session_id` allocates with: the configured ones, or REST credentials
    /// from the static secret valid for `turn.credentials_expiration_minutes`.
    pub fn credentials(&self, session_id: &str, turn: &TurnConfig) -> TurnCredentials {
        match &self.fixed_credentials {
            Some((username, password)) => TurnCredentials {
                username: username.clone(),
                password: password.clone(),
            },
            None => rest_credentials(
                &turn.static_auth_secret,
                session_id,
                Duration::from_secs(turn.credentials_expiration_minutes.max(1) as u64 * 60),
                SystemTime::now(),
            ),
        }
    }
}

/// coturn's REST scheme: username `<expiry>:<name>`, password base64(HMAC-SHA1(secret, username)).
pub fn rest_credentials(
    secret: &str,
    name: &str,
    valid_for: Duration,
    now: SystemTime,
) -> TurnCredentials {
    let expiry = now
        .checked_add(valid_for)
        .unwrap_or(now)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let username = format!("{expiry}:{name}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = ring::hmac::sign(&key, username.as_bytes());
    TurnCredentials {
        password: base64::engine::general_purpose::STANDARD.encode(tag.as_ref()),
        username,
    }
}

/// The TURN servers sessions use. Entries whose URLs are not all TURN are not TURN entries;
/// entries without credentials are skipped when no static secret is set (as upstream). Only
/// UDP transport to the server is supported: `turns:` and `?transport=tcp` URLs are skipped
/// with a warning, as are names that do not resolve.
pub fn turn_servers(servers: &[IceServer], turn: &TurnConfig, ipv6: bool) -> Vec<TurnServer> {
    let mut out = Vec::new();
    for server in servers {
        let is_turn = !server.urls.is_empty()
            && server
                .urls
                .iter()
                .all(|u| u.starts_with("turn:") || u.starts_with("turns:"));
        if !is_turn {
            continue;
        }
        let fixed_credentials = (!server.username.is_empty() || !server.credential.is_empty())
            .then(|| (server.username.clone(), server.credential.clone()));
        if fixed_credentials.is_none() && turn.static_auth_secret.is_empty() {
            tracing::warn!(urls = ?server.urls, "rtc: TURN server without credentials skipped (set rtc.turn.static_auth_secret)");
            continue;
        }
        for url in &server.urls {
            match resolve(url, ipv6) {
                Ok(address) => {
                    tracing::info!(url, %address, "rtc: sessions will gather relay candidates through this TURN server");
                    out.push(TurnServer {
                        url: url.clone(),
                        address,
                        fixed_credentials: fixed_credentials.clone(),
                    });
                }
                Err(why) => tracing::warn!(url, "rtc: TURN server skipped: {why}"),
            }
        }
    }
    out
}

/// `turn:host[:port][?transport=udp]` → the server's UDP address.
fn resolve(url: &str, ipv6: bool) -> Result<SocketAddr, String> {
    if !url.starts_with("turn:") {
        return Err("only turn: over UDP is supported for SFU-side relays".into());
    }
    let query = url.split_once('?').map_or("", |(_, q)| q);
    if query
        .split('&')
        .any(|p| p.eq_ignore_ascii_case("transport=tcp"))
    {
        return Err("only UDP transport is supported for SFU-side relays".into());
    }
    super::discovery::server_address(url, ipv6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(urls: &[&str], username: &str, credential: &str) -> IceServer {
        IceServer {
            urls: urls.iter().map(|u| (*u).to_owned()).collect(),
            username: username.into(),
            credential: credential.into(),
        }
    }

    #[test]
    fn rest_credentials_match_coturn_scheme() {
        // Reference computed independently:
        // python3 -c 'import hmac,hashlib,base64;print(base64.b64encode(hmac.new(b"north",
        //   b"1700000600:session-1",hashlib.sha1).digest()).decode())'
        let creds = rest_credentials(
            "north",
            "session-1",
            Duration::from_secs(600),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        assert_eq!(creds.username, "1700000600:session-1");
        assert_eq!(creds.password, "39gW+WssK1MThWNaCGCVSUbZabg=");
    }

    #[test]
    fn selects_turn_entries_like_upstream() {
        let secret = TurnConfig {
            static_auth_secret: "s".into(),
            credentials_expiration_minutes: 10,
        };
        let servers = [
            entry(&["stun:127.0.0.1:3478"], "", ""),
            entry(
                &["turn:127.0.0.1:3479", "turn:127.0.0.1?transport=udp"],
                "",
                "",
            ),
            entry(&["turns:127.0.0.1:5349"], "", ""),
            entry(&["turn:127.0.0.1:3480?transport=tcp"], "", ""),
            entry(&["turn:127.0.0.1:3481"], "u", "p"),
        ];
        let selected = turn_servers(&servers, &secret, false);
        let addresses: Vec<String> = selected.iter().map(|s| s.address.to_string()).collect();
        assert_eq!(
            addresses,
            ["127.0.0.1:3479", "127.0.0.1:3478", "127.0.0.1:3481"]
        );
        let fixed = selected[2].credentials("x", &secret);
        assert_eq!(
            (fixed.username.as_str(), fixed.password.as_str()),
            ("u", "p")
        );
        let generated = selected[0].credentials("sess", &secret);
        assert!(generated.username.ends_with(":sess"), "{generated:?}");

        // Without a secret only entries with their own credentials remain.
        let no_secret = TurnConfig::default();
        let selected = turn_servers(&servers, &no_secret, false);
        assert_eq!(selected.len(), 1);
        assert_eq!(selected[0].address.to_string(), "127.0.0.1:3481");
    }
}
