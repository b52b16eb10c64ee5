//! Validation of the effective configuration (spec control-plane §3.3, §15.18) and the views
//! derived from it.
//!
//! Owns: the 24 upstream rules in order (first failure wins) plus the session-cache check
//! upstream runs at construction and our listen-address check; TLS pair loading; the masked
//! and TOML renderings used by `rtcd check-config`; the bindable HTTP address; the parsed
//! `ice_host_port_override`.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{Config, HttpConfig, RtcConfig, TlsConfig};

/// A failed validation rule: the upstream message plus the offending key(s) and value(s).
/// Display: `<message> (key <dotted.key> = <value>[, <dotted.key> = <value>])`; secrets are
/// never printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// The exact upstream message, e.g. `invalid ICEPortUDP value: 70000 is not in allowed
    /// range [80, 49151]`.
    pub message: String,
    /// `(dotted key, rendered value)` pairs.
    pub keys: Vec<(String, String)>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for (i, (key, value)) in self.keys.iter().enumerate() {
            let sep = if i == 0 { " (key " } else { ", " };
            write!(f, "{sep}{key} = {value}")?;
        }
        if !self.keys.is_empty() {
            f.write_str(")")?;
        }
        Ok(())
    }
}

fn fail(message: impl Into<String>, key: &str, value: impl fmt::Display) -> ValidationError {
    ValidationError {
        message: message.into(),
        keys: vec![(key.to_owned(), value.to_string())],
    }
}

/// A string rendered as a TOML-style quoted value.
fn q(s: &str) -> String {
    format!("{s:?}")
}

/// A secret rendered without its content.
fn secret(s: &str) -> &'static str {
    if s.is_empty() {
        "\"\" (empty)"
    } else {
        "<redacted>"
    }
}

/// Level names accepted for `console_level` / `file_level` (compared lower-cased).
pub const LOG_LEVELS: &[&str] = &[
    "panic", "fatal", "error", "warn", "info", "debug", "trace", "stdlog",
];

const REDACTED: &str = "<redacted>";
const HTTP: &str = "failed to validate http config: ";
const TLS: &str = "failed to validate http config: invalid TLS config: ";

impl Config {
    /// Check every rule in upstream order; the first failure is returned.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let api = &self.api;
        let sec = &api.security;
        let tls = &api.http.tls;
        let rtc = &self.rtc;
        let log = &self.logger;

        // 1–5: admin and HTTP.
        if sec.enable_admin && sec.admin_secret_key.is_empty() {
            return Err(fail(
                "failed to validate admin config: invalid AdminSecretKey value: should not be empty",
                "api.security.admin_secret_key",
                secret(&sec.admin_secret_key),
            ));
        }
        if api.http.listen_address.is_empty() {
            return Err(fail(
                format!("{HTTP}invalid ListenAddress value: should not be empty"),
                "api.http.listen_address",
                q(""),
            ));
        }
        if tls.enable {
            if tls.cert_file.is_empty() {
                let msg = format!("{TLS}invalid CertFile value: should not be empty");
                return Err(fail(msg, "api.http.tls.cert_file", q("")));
            }
            if tls.cert_key.is_empty() {
                let msg = format!("{TLS}invalid CertKey value: should not be empty");
                return Err(fail(msg, "api.http.tls.cert_key", q("")));
            }
            if let Err(e) = tls.load_server_config() {
                return Err(ValidationError {
                    message: format!("{TLS}failed to load cert files: {e}"),
                    keys: vec![
                        ("api.http.tls.cert_file".into(), q(&tls.cert_file)),
                        ("api.http.tls.cert_key".into(), q(&tls.cert_key)),
                    ],
                });
            }
        }

        // 6–9: ICE addresses and ports.
        for (field, key, value) in [
            ("ICEAddressUDP", "rtc.ice_address_udp", &rtc.ice_address_udp),
            ("ICEAddressTCP", "rtc.ice_address_tcp", &rtc.ice_address_tcp),
        ] {
            if value.is_empty() {
                continue;
            }
            for addr in value.split(',').map(str::trim) {
                if addr.parse::<IpAddr>().is_err() {
                    let msg = format!(
                        "invalid {field} value: invalid ICEAddress value: {addr} is not a valid IP address"
                    );
                    return Err(fail(msg, key, q(value)));
                }
            }
        }
        for (field, key, port) in [
            ("ICEPortUDP", "rtc.ice_port_udp", rtc.ice_port_udp),
            ("ICEPortTCP", "rtc.ice_port_tcp", rtc.ice_port_tcp),
        ] {
            if !(80..=49151).contains(&port) {
                let msg =
                    format!("invalid {field} value: {port} is not in allowed range [80, 49151]");
                return Err(fail(msg, key, port));
            }
        }

        // 10–12: ICE servers, entry by entry.
        for (i, server) in rtc.ice_servers.iter().enumerate() {
            let key = format!("rtc.ice_servers[{i}].urls");
            let urls = &server.urls;
            let problem = if urls.is_empty() {
                Some("invalid empty URLs")
            } else if urls.iter().any(String::is_empty) {
                Some("invalid empty URL")
            } else {
                let all =
                    |a: &str, b: &str| urls.iter().all(|u| u.starts_with(a) || u.starts_with(b));
                (!all("stun:", "stuns:") && !all("turn:", "turns:"))
                    .then_some("URL is not a valid STUN/TURN server")
            };
            if let Some(problem) = problem {
                let msg = format!("invalid ICEServers value: {problem}");
                return Err(fail(msg, &key, format!("{urls:?}")));
            }
        }

        // 13–14: TURN credentials.
        let turn = &rtc.turn;
        if !turn.static_auth_secret.is_empty() {
            let exp = turn.credentials_expiration_minutes;
            let problem = if exp <= 0 {
                Some("should be a positive number")
            } else if exp >= 10080 {
                Some("should be less than 1 week")
            } else {
                None
            };
            if let Some(problem) = problem {
                let msg = format!(
                    "invalid TURNConfig: invalid CredentialsExpirationMinutes value: {problem}"
                );
                return Err(fail(msg, "rtc.turn.credentials_expiration_minutes", exp));
            }
        }

        // 15: host port override.
        if let Err(e) = rtc.port_override() {
            let msg = format!("invalid ICEHostPortOverride value: {e}");
            return Err(fail(
                msg,
                "rtc.ice_host_port_override",
                q(&rtc.ice_host_port_override),
            ));
        }

        // 16–19: sockets and NACK buffer.
        if rtc.udp_sockets_count <= 0 {
            return Err(fail(
                "invalid UDPSocketsCount value: should be greater than 0",
                "rtc.udp_sockets_count",
                rtc.udp_sockets_count,
            ));
        }
        let nack = rtc.nack_buffer_size;
        let problem = if nack != 0 && nack < 32 {
            Some("should be at least 32")
        } else if nack > 8192 {
            Some("should not exceed 8192")
        } else if nack != 0 && !nack.is_power_of_two() {
            Some("must be a power of 2 (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)")
        } else {
            None
        };
        if let Some(problem) = problem {
            let msg = format!("invalid NACKBufferSize value: {problem}");
            return Err(fail(msg, "rtc.nack_buffer_size", nack));
        }

        // 20–24: store and logger.
        if self.store.data_source.is_empty() {
            return Err(fail(
                "invalid DataSource value: should not be empty",
                "store.data_source",
                q(""),
            ));
        }
        if !log.enable_console && !log.enable_file {
            return Err(ValidationError {
                message: "should enable at least one logging target".into(),
                keys: vec![
                    ("logger.enable_console".into(), "false".into()),
                    ("logger.enable_file".into(), "false".into()),
                ],
            });
        }
        let valid_level = |l: &str| LOG_LEVELS.contains(&l.to_lowercase().as_str());
        if log.enable_console && !valid_level(&log.console_level) {
            let msg = format!("invalid ConsoleLevel value {}", q(&log.console_level));
            return Err(fail(msg, "logger.console_level", q(&log.console_level)));
        }
        if log.enable_file && !valid_level(&log.file_level) {
            let msg = format!("invalid FileLevel value {}", q(&log.file_level));
            return Err(fail(msg, "logger.file_level", q(&log.file_level)));
        }
        if log.enable_file && log.file_max_size_mb == 0 {
            return Err(fail(
                "invalid FileMaxSizeMB value: should be greater than 0",
                "logger.file_max_size_mb",
                0,
            ));
        }
        if log.enable_file && log.file_location.is_empty() {
            return Err(fail(
                "invalid FileLocation value: should not be empty",
                "logger.file_location",
                q(""),
            ));
        }

        // Upstream checks this when building the session cache (§15.18).
        let exp = sec.session_cache.expiration_minutes;
        if exp <= 0 {
            return Err(fail(
                "failed to create session cache: invalid ExpirationMinutes value: should be a positive number",
                "api.security.session_cache.expiration_minutes",
                exp,
            ));
        }

        // Ours: every limit is at least 1 (a limit of 0 would refuse everything).
        let limits = &self.limits;
        for (key, value) in [
            (
                "limits.max_sessions_per_client",
                limits.max_sessions_per_client,
            ),
            (
                "limits.max_connections_per_client",
                limits.max_connections_per_client,
            ),
            ("limits.join_rate_per_client", limits.join_rate_per_client),
            ("limits.join_burst_per_client", limits.join_burst_per_client),
            ("limits.max_id_length", limits.max_id_length),
            ("limits.max_remote_candidates", limits.max_remote_candidates),
            ("limits.max_http_connections", limits.max_http_connections),
            (
                "limits.max_http_connections_per_ip",
                limits.max_http_connections_per_ip,
            ),
            (
                "limits.http_header_timeout_seconds",
                limits.http_header_timeout_seconds,
            ),
            (
                "limits.ice_tcp_pending_per_ip",
                limits.ice_tcp_pending_per_ip,
            ),
            (
                "limits.ice_tcp_idle_timeout_seconds",
                limits.ice_tcp_idle_timeout_seconds,
            ),
        ] {
            if value == 0 {
                let name = key.trim_start_matches("limits.");
                let msg = format!("invalid limits.{name} value: should be greater than 0");
                return Err(fail(msg, key, value));
            }
        }

        // Ours: upstream only finds a malformed address when it starts listening.
        if let Err(e) = split_host_port(&api.http.listen_address) {
            let msg = format!("{HTTP}invalid ListenAddress value: {e}");
            return Err(fail(
                msg,
                "api.http.listen_address",
                q(&api.http.listen_address),
            ));
        }
        Ok(())
    }

    /// A copy with secrets (admin secret key, TURN static auth secret, ICE server credentials)
    /// replaced by `"<redacted>"` when non-empty.
    pub fn masked(&self) -> Config {
        let mut c = self.clone();
        let mask = |s: &mut String| {
            if !s.is_empty() {
                *s = REDACTED.to_owned();
            }
        };
        mask(&mut c.api.security.admin_secret_key);
        mask(&mut c.rtc.turn.static_auth_secret);
        for server in &mut c.rtc.ice_servers {
            mask(&mut server.credential);
        }
        c
    }

    /// Pretty TOML of this configuration (loadable again by the loader).
    pub fn to_toml_string(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# failed to render the configuration: {e}\n"))
    }
}

impl HttpConfig {
    /// The address to bind: an empty host (`":8045"`) means every IPv4 interface
    /// (`"0.0.0.0:8045"`); anything else is returned unchanged.
    pub fn socket_addr_string(&self) -> String {
        match split_host_port(&self.listen_address) {
            Ok(("", port)) => format!("0.0.0.0:{port}"),
            _ => self.listen_address.clone(),
        }
    }
}

/// Split `host:port`, `:port` or `[v6]:port` (numeric port 0–65535), like Go's
/// `net.SplitHostPort` but without service names.
fn split_host_port(addr: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("missing ']' in address {}", q(addr)))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{} is not a valid IPv6 address", q(host)));
        }
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("missing port in address {}", q(addr)))?;
        (host, port)
    } else {
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("missing port in address {}", q(addr)))?;
        if host.contains(':') {
            return Err(format!(
                "too many colons in address {} (write IPv6 hosts as [addr]:port)",
                q(addr)
            ));
        }
        (host, port)
    };
    let port = match port.parse::<u16>() {
        Ok(p) if port.bytes().all(|b| b.is_ascii_digit()) => p,
        _ => {
            return Err(format!(
                "invalid port {} (expected a number 0-65535)",
                q(port)
            ));
        }
    };
    Ok((host, port))
}

impl TlsConfig {
    /// Load `cert_file` (PEM chain) and `cert_key` (PEM private key) into a rustls server
    /// config (ring provider, safe default protocol versions, no client auth), proving the
    /// pair matches. The caller may still set ALPN protocols on the result.
    pub fn load_server_config(&self) -> Result<rustls::ServerConfig, String> {
        let certs = CertificateDer::pem_file_iter(&self.cert_file)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("reading certificate {}: {e}", q(&self.cert_file)))?;
        if certs.is_empty() {
            return Err(format!(
                "reading certificate {}: no certificate found",
                q(&self.cert_file)
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.cert_key)
            .map_err(|e| format!("reading private key {}: {e}", q(&self.cert_key)))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| format!("certificate and private key do not match: {e}"))
    }
}

/// `rtc.ice_host_port_override`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortOverride {
    /// Empty: no override.
    None,
    /// One port (in `[80, 49151]`) advertised for every host candidate.
    Port(u16),
    /// `localIP/port` pairs (ports not range-checked, as upstream).
    Mapping(Vec<(String, i64)>),
}

impl RtcConfig {
    /// Parse `ice_host_port_override` (validation rule 15). The error is the text following
    /// `invalid ICEHostPortOverride value: `.
    pub fn port_override(&self) -> Result<PortOverride, String> {
        let s = self.ice_host_port_override.as_str();
        if s.is_empty() {
            return Ok(PortOverride::None);
        }
        // A non-zero integer is a single port; anything else (including "0") is a mapping.
        if let Ok(n) = s.parse::<i64>()
            && n != 0
        {
            return match u16::try_from(n) {
                Ok(p) if (80..=49151).contains(&p) => Ok(PortOverride::Port(p)),
                _ => Err(format!("{n} is not in allowed range [80, 49151]")),
            };
        }
        let mut keys = HashSet::new();
        let mut ports = HashSet::new();
        let mut pairs = Vec::new();
        for pair in s.split(',') {
            let Some((key, port)) = pair.split_once('/').filter(|(_, p)| !p.contains('/')) else {
                return Err("failed to parse mapping: invalid map pairing syntax".into());
            };
            let port = go_atoi(port).map_err(|e| {
                format!("failed to parse mapping: failed to parse port number: {e}")
            })?;
            if !keys.insert(key) {
                return Err(format!(
                    "failed to parse mapping: duplicate mapping found for {key}"
                ));
            }
            if !ports.insert(port) {
                return Err(format!(
                    "failed to parse mapping: duplicate port found for {port}"
                ));
            }
            pairs.push((key.to_owned(), port));
        }
        Ok(PortOverride::Mapping(pairs))
    }
}

/// Go `strconv.Atoi`, with its error text.
fn go_atoi(s: &str) -> Result<i64, String> {
    use std::num::IntErrorKind;
    s.parse::<i64>().map_err(|e| {
        let why = match e.kind() {
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => "value out of range",
            _ => "invalid syntax",
        };
        format!("strconv.Atoi: parsing {s:?}: {why}")
    })
}

#[cfg(test)]
mod tests {
    use super::super::IceServer;
    use super::*;

    fn check(mutate: impl FnOnce(&mut Config)) -> String {
        let mut c = Config::default();
        mutate(&mut c);
        match c.validate() {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        }
    }

    fn servers(urls: &[&[&str]]) -> Vec<IceServer> {
        urls.iter()
            .map(|u| IceServer {
                urls: u.iter().map(|s| (*s).to_owned()).collect(),
                ..IceServer::default()
            })
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(check(|_| {}), "ok");
    }

    #[test]
    fn rules_1_to_4_admin_and_http() {
        assert_eq!(
            check(|c| c.api.security.enable_admin = true),
            "failed to validate admin config: invalid AdminSecretKey value: should not be empty (key api.security.admin_secret_key = \"\" (empty))"
        );
        assert_eq!(
            check(|c| {
                c.api.security.enable_admin = true;
                c.api.security.admin_secret_key = "s3cret".into();
            }),
            "ok"
        );
        assert_eq!(
            check(|c| c.api.http.listen_address.clear()),
            "failed to validate http config: invalid ListenAddress value: should not be empty (key api.http.listen_address = \"\")"
        );
        assert_eq!(
            check(|c| c.api.http.tls.enable = true),
            "failed to validate http config: invalid TLS config: invalid CertFile value: should not be empty (key api.http.tls.cert_file = \"\")"
        );
        assert_eq!(
            check(|c| {
                c.api.http.tls.enable = true;
                c.api.http.tls.cert_file = "c.pem".into();
            }),
            "failed to validate http config: invalid TLS config: invalid CertKey value: should not be empty (key api.http.tls.cert_key = \"\")"
        );
    }

    #[test]
    fn rule_5_tls_pair() {
        let dir = tempfile::tempdir().expect("dir");
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write");
            p.display().to_string()
        };
        let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
        let cert = write("cert.pem", &a.cert.pem());
        let key = write("key.pem", &a.signing_key.serialize_pem());
        let other_key = write("other.pem", &b.signing_key.serialize_pem());
        let missing = dir.path().join("missing.pem").display().to_string();
        let run = |cert: &str, key: &str| {
            check(|c| {
                c.api.http.tls.enable = true;
                c.api.http.tls.cert_file = cert.into();
                c.api.http.tls.cert_key = key.into();
            })
        };
        assert_eq!(run(&cert, &key), "ok");
        let prefix =
            "failed to validate http config: invalid TLS config: failed to load cert files: ";
        let suffix = |c: &str, k: &str| {
            format!(" (key api.http.tls.cert_file = {c:?}, api.http.tls.cert_key = {k:?})")
        };
        let msg = run(&missing, &key);
        assert!(
            msg.starts_with(&format!(
                "{prefix}reading certificate {missing:?}: I/O error: "
            )),
            "{msg}"
        );
        assert!(msg.ends_with(&suffix(&missing, &key)), "{msg}");
        assert_eq!(
            run(&key, &key),
            format!(
                "{prefix}reading certificate {key:?}: no certificate found{}",
                suffix(&key, &key)
            )
        );
        assert_eq!(
            run(&cert, &cert),
            format!(
                "{prefix}reading private key {cert:?}: no items found{}",
                suffix(&cert, &cert)
            )
        );
        let msg = run(&cert, &other_key);
        assert!(
            msg.starts_with(&format!(
                "{prefix}certificate and private key do not match: "
            )),
            "{msg}"
        );
    }

    #[test]
    fn rules_6_to_9_addresses_and_ports() {
        assert_eq!(
            check(|c| c.rtc.ice_address_udp = " 10.0.0.1 , ::1,192.168.1.2".into()),
            "ok"
        );
        assert_eq!(
            check(|c| c.rtc.ice_address_udp = "10.0.0.1,bad".into()),
            "invalid ICEAddressUDP value: invalid ICEAddress value: bad is not a valid IP address (key rtc.ice_address_udp = \"10.0.0.1,bad\")"
        );
        assert_eq!(
            check(|c| c.rtc.ice_address_tcp = "10.0.0.1,".into()),
            "invalid ICEAddressTCP value: invalid ICEAddress value:  is not a valid IP address (key rtc.ice_address_tcp = \"10.0.0.1,\")"
        );
        assert_eq!(
            check(|c| c.rtc.ice_port_udp = 70000),
            "invalid ICEPortUDP value: 70000 is not in allowed range [80, 49151] (key rtc.ice_port_udp = 70000)"
        );
        assert_eq!(
            check(|c| c.rtc.ice_port_tcp = 79),
            "invalid ICEPortTCP value: 79 is not in allowed range [80, 49151] (key rtc.ice_port_tcp = 79)"
        );
        assert_eq!(
            check(|c| (c.rtc.ice_port_udp, c.rtc.ice_port_tcp) = (80, 49151)),
            "ok"
        );
    }

    #[test]
    fn rules_10_to_12_ice_servers() {
        assert_eq!(
            check(|c| c.rtc.ice_servers =
                servers(&[&["stun:a:1", "stuns:b:2"], &["turn:t:1", "turns:t:2"]])),
            "ok"
        );
        assert_eq!(
            check(|c| c.rtc.ice_servers = servers(&[&["stun:a:1"], &[]])),
            "invalid ICEServers value: invalid empty URLs (key rtc.ice_servers[1].urls = [])"
        );
        assert_eq!(
            check(|c| c.rtc.ice_servers = servers(&[&["stun:a:1", ""]])),
            "invalid ICEServers value: invalid empty URL (key rtc.ice_servers[0].urls = [\"stun:a:1\", \"\"])"
        );
        assert_eq!(
            check(|c| c.rtc.ice_servers = servers(&[&["stun:a:1", "turn:b:1"]])),
            "invalid ICEServers value: URL is not a valid STUN/TURN server (key rtc.ice_servers[0].urls = [\"stun:a:1\", \"turn:b:1\"])"
        );
        assert_eq!(
            check(|c| c.rtc.ice_servers = servers(&[&["http://x"]])),
            "invalid ICEServers value: URL is not a valid STUN/TURN server (key rtc.ice_servers[0].urls = [\"http://x\"])"
        );
    }

    #[test]
    fn rules_13_14_turn() {
        assert_eq!(
            check(|c| c.rtc.turn.credentials_expiration_minutes = 0),
            "ok"
        );
        let with = |exp: i64| {
            check(|c| {
                c.rtc.turn.static_auth_secret = "s".into();
                c.rtc.turn.credentials_expiration_minutes = exp;
            })
        };
        assert_eq!(
            with(0),
            "invalid TURNConfig: invalid CredentialsExpirationMinutes value: should be a positive number (key rtc.turn.credentials_expiration_minutes = 0)"
        );
        assert_eq!(
            with(10080),
            "invalid TURNConfig: invalid CredentialsExpirationMinutes value: should be less than 1 week (key rtc.turn.credentials_expiration_minutes = 10080)"
        );
        assert_eq!(with(10079), "ok");
    }

    #[test]
    fn rule_15_port_override() {
        let run = |v: &str| check(|c| c.rtc.ice_host_port_override = v.into());
        let p = "invalid ICEHostPortOverride value: ";
        assert_eq!(run("30443"), "ok");
        assert_eq!(run("10.0.0.1/30443,10.0.0.2/30444"), "ok");
        assert_eq!(
            run("70000"),
            format!(
                "{p}70000 is not in allowed range [80, 49151] (key rtc.ice_host_port_override = \"70000\")"
            )
        );
        assert_eq!(
            run("-5"),
            format!(
                "{p}-5 is not in allowed range [80, 49151] (key rtc.ice_host_port_override = \"-5\")"
            )
        );
        assert_eq!(
            run("0"),
            format!(
                "{p}failed to parse mapping: invalid map pairing syntax (key rtc.ice_host_port_override = \"0\")"
            )
        );
        assert_eq!(
            run("a/1/2"),
            format!(
                "{p}failed to parse mapping: invalid map pairing syntax (key rtc.ice_host_port_override = \"a/1/2\")"
            )
        );
        assert_eq!(
            run("a/x"),
            format!(
                "{p}failed to parse mapping: failed to parse port number: strconv.Atoi: parsing \"x\": invalid syntax (key rtc.ice_host_port_override = \"a/x\")"
            )
        );
        assert_eq!(
            run("a/1,a/2"),
            format!(
                "{p}failed to parse mapping: duplicate mapping found for a (key rtc.ice_host_port_override = \"a/1,a/2\")"
            )
        );
        assert_eq!(
            run("a/1,b/1"),
            format!(
                "{p}failed to parse mapping: duplicate port found for 1 (key rtc.ice_host_port_override = \"a/1,b/1\")"
            )
        );
        let mut rtc = RtcConfig {
            ice_host_port_override: "10.0.0.1/5,10.0.0.2/6".into(),
            ..RtcConfig::default()
        };
        assert_eq!(
            rtc.port_override(),
            Ok(PortOverride::Mapping(vec![
                ("10.0.0.1".into(), 5),
                ("10.0.0.2".into(), 6)
            ]))
        );
        rtc.ice_host_port_override = "30443".into();
        assert_eq!(rtc.port_override(), Ok(PortOverride::Port(30443)));
    }

    #[test]
    fn rules_16_to_19_sockets_and_nack() {
        assert_eq!(
            check(|c| c.rtc.udp_sockets_count = 0),
            "invalid UDPSocketsCount value: should be greater than 0 (key rtc.udp_sockets_count = 0)"
        );
        let nack = |n: u16| check(|c| c.rtc.nack_buffer_size = n);
        for ok in [0, 32, 64, 8192] {
            assert_eq!(nack(ok), "ok", "{ok}");
        }
        assert_eq!(
            nack(16),
            "invalid NACKBufferSize value: should be at least 32 (key rtc.nack_buffer_size = 16)"
        );
        assert_eq!(
            nack(16384),
            "invalid NACKBufferSize value: should not exceed 8192 (key rtc.nack_buffer_size = 16384)"
        );
        assert_eq!(
            nack(100),
            "invalid NACKBufferSize value: must be a power of 2 (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192) (key rtc.nack_buffer_size = 100)"
        );
    }

    #[test]
    fn rules_20_to_24_store_and_logger() {
        assert_eq!(
            check(|c| c.store.data_source.clear()),
            "invalid DataSource value: should not be empty (key store.data_source = \"\")"
        );
        assert_eq!(
            check(|c| (c.logger.enable_console, c.logger.enable_file) = (false, false)),
            "should enable at least one logging target (key logger.enable_console = false, logger.enable_file = false)"
        );
        assert_eq!(
            check(|c| c.logger.console_level = "verbose".into()),
            "invalid ConsoleLevel value \"verbose\" (key logger.console_level = \"verbose\")"
        );
        assert_eq!(
            check(|c| {
                c.logger.enable_console = false;
                c.logger.console_level = "verbose".into();
            }),
            "ok"
        );
        assert_eq!(
            check(|c| c.logger.file_level = "warning".into()),
            "invalid FileLevel value \"warning\" (key logger.file_level = \"warning\")"
        );
        assert_eq!(
            check(|c| c.logger.file_location.clear()),
            "invalid FileLocation value: should not be empty (key logger.file_location = \"\")"
        );
        for level in [
            "Panic", "FATAL", "error", "Warn", "info", "DEBUG", "trace", "stdlog",
        ] {
            assert_eq!(
                check(|c| c.logger.console_level = level.into()),
                "ok",
                "{level}"
            );
        }
    }

    #[test]
    fn limits_must_be_positive() {
        assert_eq!(
            check(|c| c.limits.max_id_length = 0),
            "invalid limits.max_id_length value: should be greater than 0 (key limits.max_id_length = 0)"
        );
        assert_eq!(check(|c| c.limits.join_rate_per_client = 1), "ok");
    }

    #[test]
    fn first_failure_wins() {
        assert_eq!(
            check(|c| {
                c.rtc.ice_port_udp = 1;
                c.store.data_source.clear();
            }),
            "invalid ICEPortUDP value: 1 is not in allowed range [80, 49151] (key rtc.ice_port_udp = 1)"
        );
    }

    #[test]
    fn session_cache_and_listen_address() {
        assert_eq!(
            check(|c| c.api.security.session_cache.expiration_minutes = 0),
            "failed to create session cache: invalid ExpirationMinutes value: should be a positive number (key api.security.session_cache.expiration_minutes = 0)"
        );
        let addr = |a: &str| check(|c| c.api.http.listen_address = a.into());
        for ok in [
            ":8045",
            "127.0.0.1:80",
            "localhost:0",
            "[::1]:8045",
            "[::]:65535",
        ] {
            assert_eq!(addr(ok), "ok", "{ok}");
        }
        let p = "failed to validate http config: invalid ListenAddress value: ";
        assert_eq!(
            addr("8045"),
            format!("{p}missing port in address \"8045\" (key api.http.listen_address = \"8045\")")
        );
        assert_eq!(
            addr(":http"),
            format!(
                "{p}invalid port \"http\" (expected a number 0-65535) (key api.http.listen_address = \":http\")"
            )
        );
        assert_eq!(
            addr(":70000"),
            format!(
                "{p}invalid port \"70000\" (expected a number 0-65535) (key api.http.listen_address = \":70000\")"
            )
        );
        assert!(addr(":+80").starts_with(&format!("{p}invalid port")));
        assert!(addr("::1:80").starts_with(&format!("{p}too many colons")));
        assert!(addr("[nope]:80").starts_with(&format!("{p}\"nope\" is not a valid IPv6 address")));
    }

    #[test]
    fn socket_addr_string() {
        let http = |a: &str| HttpConfig {
            listen_address: a.into(),
            ..HttpConfig::default()
        };
        assert_eq!(http(":8045").socket_addr_string(), "0.0.0.0:8045");
        assert_eq!(
            http("127.0.0.1:8045").socket_addr_string(),
            "127.0.0.1:8045"
        );
        assert_eq!(http("[::1]:8045").socket_addr_string(), "[::1]:8045");
    }

    #[test]
    fn masked_and_toml_round_trip() {
        let mut c = Config::default();
        c.api.security.admin_secret_key = "adm".into();
        c.rtc.turn.static_auth_secret = "turn".into();
        c.rtc.ice_servers = vec![
            IceServer {
                urls: vec!["turn:t:1".into()],
                username: "u".into(),
                credential: "p".into(),
            },
            IceServer {
                urls: vec!["stun:s:1".into()],
                ..IceServer::default()
            },
        ];
        let m = c.masked();
        assert_eq!(m.api.security.admin_secret_key, "<redacted>");
        assert_eq!(m.rtc.turn.static_auth_secret, "<redacted>");
        assert_eq!(m.rtc.ice_servers[0].credential, "<redacted>");
        assert_eq!(m.rtc.ice_servers[0].username, "u");
        assert_eq!(m.rtc.ice_servers[1].credential, "");
        assert_eq!(Config::default().masked(), Config::default());

        let text = c.to_toml_string();
        assert!(text.contains("[api.http]"), "{text}");
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, &text).expect("write");
        let back = super::super::load_with_env(&path, |_| None).expect("reload");
        assert_eq!(back.config, c);
    }
}
