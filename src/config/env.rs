//! Environment-variable overrides (spec control-plane §3.4).
//!
//! Owns: the variable names (`RTCD_` + upstream field-name chain, with the unprefixed name as a
//! fallback — a deliberate deviation from upstream), Go `strconv` bool/int parsing, the JSON
//! form of `RTCD_RTC_ICESERVERS`, and the envconfig-style conversion errors.

use serde_json::Value as Json;

use super::IceServer;
use super::keys::{KEYS, Kind, Layer, Typed};
use super::load::{ConfigError, Override, OverrideSource};

/// Read every known variable through `env` (in upstream's field order) into a layer, and
/// record which variable set each key. Unset = keep; set-to-empty = applied (and a parse
/// error for non-string keys). The first conversion error wins.
pub(crate) fn collect(
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Layer, Vec<Override>), ConfigError> {
    let mut layer = Layer {
        origin: "the environment".to_owned(),
        values: Vec::new(),
    };
    let mut overrides = Vec::new();
    for spec in KEYS {
        let prefixed = format!("RTCD_{}", spec.env);
        let (variable, raw, source) = if let Some(v) = env(&prefixed) {
            (prefixed, v, OverrideSource::Prefixed)
        } else if let Some(v) = env(spec.env) {
            (spec.env.to_owned(), v, OverrideSource::Unprefixed)
        } else {
            continue;
        };
        let typed = convert(spec.kind, &raw).map_err(|details| ConfigError::Env {
            variable: variable.clone(),
            field: spec.field,
            value: if spec.kind == Kind::IceServers {
                "<redacted>".to_owned()
            } else {
                raw.clone()
            },
            go_type: spec.kind.go_type(),
            details,
        })?;
        layer.set(spec.key, typed);
        overrides.push(Override {
            key: spec.key,
            variable,
            source,
        });
    }
    Ok((layer, overrides))
}

/// Convert one raw value; the error is the `details` part of the message.
fn convert(kind: Kind, raw: &str) -> Result<Typed, String> {
    Ok(match kind {
        Kind::Str | Kind::PortOverride => Typed::Str(raw.to_owned()),
        Kind::Bool => Typed::Bool(parse_bool(raw)?),
        Kind::Int => Typed::Int(parse_int(raw)?),
        Kind::U16 => Typed::Uint(parse_uint(raw, u16::MAX.into())?),
        Kind::U64 => Typed::Uint(parse_uint(raw, u64::MAX)?),
        Kind::IceServers => Typed::Servers(parse_ice_servers(raw)?),
    })
}

/// Go `strconv.ParseBool`.
pub(crate) fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {s:?}: invalid syntax")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumError {
    Syntax,
    Range,
}

fn num_error(func: &str, s: &str, e: NumError) -> String {
    let why = match e {
        NumError::Syntax => "invalid syntax",
        NumError::Range => "value out of range",
    };
    format!("strconv.{func}: parsing {s:?}: {why}")
}

/// Go `strconv.ParseInt(s, 0, 64)`.
pub(crate) fn parse_int(s: &str) -> Result<i64, String> {
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let err = |e| num_error("ParseInt", s, e);
    let n = match uint_base0(digits, u64::MAX) {
        Ok(n) => n,
        Err(e) => return Err(err(e)),
    };
    const CUTOFF: u64 = 1 << 63;
    match (neg, n) {
        (false, n) if n >= CUTOFF => Err(err(NumError::Range)),
        (true, n) if n > CUTOFF => Err(err(NumError::Range)),
        // Two's complement: -(2^63) wraps correctly.
        (true, n) => Ok((n as i64).wrapping_neg()),
        (false, n) => Ok(n as i64),
    }
}

/// Go `strconv.ParseUint(s, 0, bits)` with `max` = the largest value of that bit size.
pub(crate) fn parse_uint(s: &str, max: u64) -> Result<u64, String> {
    uint_base0(s, max).map_err(|e| num_error("ParseUint", s, e))
}

/// Unsigned parse with Go's base prefix detection (`0x`, `0o`, `0b`, leading `0` = octal) and
/// `_` separators.
fn uint_base0(s: &str, max: u64) -> Result<u64, NumError> {
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(NumError::Syntax);
    }
    let (base, digits) = if b[0] == b'0' {
        match b.get(1).map(u8::to_ascii_lowercase) {
            Some(b'b') if b.len() >= 3 => (2, &b[2..]),
            Some(b'o') if b.len() >= 3 => (8, &b[2..]),
            Some(b'x') if b.len() >= 3 => (16, &b[2..]),
            _ => (8, &b[1..]),
        }
    } else {
        (10, b)
    };
    let mut n: u64 = 0;
    let mut underscores = false;
    for &c in digits {
        let d = match c {
            b'_' => {
                underscores = true;
                continue;
            }
            b'0'..=b'9' => c - b'0',
            b'a'..=b'z' => c - b'a' + 10,
            b'A'..=b'Z' => c - b'A' + 10,
            _ => return Err(NumError::Syntax),
        };
        if u64::from(d) >= base {
            return Err(NumError::Syntax);
        }
        n = n
            .checked_mul(base)
            .and_then(|n| n.checked_add(d.into()))
            .filter(|&n| n <= max)
            .ok_or(NumError::Range)?;
    }
    if underscores && !underscore_ok(b) {
        return Err(NumError::Syntax);
    }
    Ok(n)
}

/// Go's rule for `_` in integer literals: only between digits, or right after a base prefix.
fn underscore_ok(s: &[u8]) -> bool {
    // Last class seen: '^' start, '0' digit or base prefix, '_' underscore, '!' other.
    let mut saw = b'^';
    let mut i = 0;
    let hex = s.len() >= 2 && s[0] == b'0' && s[1].eq_ignore_ascii_case(&b'x');
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
    }
    for &c in &s[i..] {
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
    }
    saw != b'_'
}

/// `RTCD_RTC_ICESERVERS`: a JSON array of URL strings (one entry holding all of them; `[]` =
/// no servers) or a JSON array of `{urls, username?, credential?}` objects.
pub(crate) fn parse_ice_servers(s: &str) -> Result<Vec<IceServer>, String> {
    const SHAPE: &str = "expected a JSON array of URL strings or of {\"urls\": [...], \"username\": ..., \"credential\": ...} objects";
    let value: Json = serde_json::from_str(s).map_err(|e| e.to_string())?;
    let Json::Array(items) = value else {
        return Err(SHAPE.to_owned());
    };
    if items.is_empty() {
        return Ok(Vec::new());
    }
    if items.iter().all(Json::is_string) {
        let urls = items
            .iter()
            .filter_map(Json::as_str)
            .map(str::to_owned)
            .collect();
        return Ok(vec![IceServer {
            urls,
            ..IceServer::default()
        }]);
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let Json::Object(fields) = item else {
                return Err(format!("element {i}: {SHAPE}"));
            };
            let mut server = IceServer::default();
            // Field names match case-insensitively and unknown fields are ignored, like Go's
            // encoding/json.
            for (name, v) in fields {
                let string = |v: &Json| match v {
                    Json::Null => Ok(String::new()),
                    Json::String(s) => Ok(s.clone()),
                    _ => Err(format!("element {i}: \"{name}\" must be a string")),
                };
                match name.to_lowercase().as_str() {
                    "urls" => {
                        server.urls = match v {
                            Json::Null => Vec::new(),
                            Json::Array(urls) => urls
                                .iter()
                                .map(|u| u.as_str().map(str::to_owned))
                                .collect::<Option<_>>()
                                .ok_or_else(|| {
                                    format!("element {i}: \"urls\" must be an array of strings")
                                })?,
                            _ => {
                                return Err(format!(
                                    "element {i}: \"urls\" must be an array of strings"
                                ));
                            }
                        }
                    }
                    "username" => server.username = string(v)?,
                    "credential" => server.credential = string(v)?,
                    _ => {}
                }
            }
            Ok(server)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn load(vars: &[(&str, &str)]) -> Result<super::super::Loaded, ConfigError> {
        super::super::load_with_env(std::path::Path::new(""), env_of(vars))
    }

    #[test]
    fn bools() {
        for s in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(s), Ok(true), "{s}");
        }
        for s in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(s), Ok(false), "{s}");
        }
        for s in ["", "yes", "tRUE", " true", "on", "2"] {
            assert!(parse_bool(s).is_err(), "{s}");
        }
        assert_eq!(
            parse_bool("yes"),
            Err("strconv.ParseBool: parsing \"yes\": invalid syntax".to_owned())
        );
    }

    #[test]
    fn ints() {
        let ok = [
            ("0", 0),
            ("42", 42),
            ("+42", 42),
            ("-42", -42),
            ("010", 8),
            ("0o17", 15),
            ("0O17", 15),
            ("0x1F", 31),
            ("0X1f", 31),
            ("-0x10", -16),
            ("0b101", 5),
            ("1_000", 1000),
            ("0x_1F", 31),
            ("0_10", 8),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ];
        for (s, n) in ok {
            assert_eq!(parse_int(s), Ok(n), "{s}");
        }
        let syntax = [
            "", "abc", " 1", "1 ", "+", "-", "0x", "08", "1__0", "_1", "1_", "0b2", "1.5", "0x1g",
        ];
        for s in syntax {
            assert_eq!(
                parse_int(s),
                Err(format!("strconv.ParseInt: parsing {s:?}: invalid syntax")),
                "{s}"
            );
        }
        for s in [
            "9223372036854775808",
            "-9223372036854775809",
            "0xFFFFFFFFFFFFFFFFF",
        ] {
            assert_eq!(
                parse_int(s),
                Err(format!(
                    "strconv.ParseInt: parsing {s:?}: value out of range"
                )),
                "{s}"
            );
        }
    }

    #[test]
    fn uints() {
        assert_eq!(parse_uint("65535", 65535), Ok(65535));
        assert_eq!(parse_uint("0x100", 65535), Ok(256));
        assert_eq!(
            parse_uint("65536", 65535),
            Err("strconv.ParseUint: parsing \"65536\": value out of range".to_owned())
        );
        assert_eq!(
            parse_uint("+5", 65535),
            Err("strconv.ParseUint: parsing \"+5\": invalid syntax".to_owned())
        );
        assert!(parse_uint("-1", u64::MAX).is_err());
    }

    #[test]
    fn every_key_is_applied() {
        let cfg = load(&[
            ("RTCD_API_HTTP_LISTENADDRESS", "127.0.0.1:9"),
            ("RTCD_API_HTTP_TLS_ENABLE", "true"),
            ("RTCD_API_HTTP_TLS_CERTFILE", "c"),
            ("RTCD_API_HTTP_TLS_CERTKEY", "k"),
            ("RTCD_API_SECURITY_ENABLEADMIN", "1"),
            ("RTCD_API_SECURITY_ADMINSECRETKEY", "sec"),
            ("RTCD_API_SECURITY_ALLOWSELFREGISTRATION", "T"),
            ("RTCD_API_SECURITY_SESSIONCACHE_EXPIRATIONMINUTES", "60"),
            ("RTCD_RTC_ICEADDRESSUDP", "1.2.3.4, 5.6.7.8"),
            ("RTCD_RTC_ICEPORTUDP", "9000"),
            ("RTCD_RTC_ICEADDRESSTCP", "::1"),
            ("RTCD_RTC_ICEPORTTCP", "9001"),
            ("RTCD_RTC_ICEHOSTOVERRIDE", "h.example.com"),
            ("RTCD_RTC_ICEHOSTPORTOVERRIDE", "30443"),
            ("RTCD_RTC_ICESERVERS", "[\"stun:a:1\",\"stun:b:2\"]"),
            ("RTCD_RTC_TURNCONFIG_STATICAUTHSECRET", "ts"),
            ("RTCD_RTC_TURNCONFIG_CREDENTIALSEXPIRATIONMINUTES", "30"),
            ("RTCD_RTC_ENABLEIPV6", "true"),
            ("RTCD_RTC_UDPSOCKETSCOUNT", "4"),
            ("RTCD_RTC_NACKBUFFERSIZE", "1024"),
            ("RTCD_RTC_NACKDISABLECOPY", "false"),
            ("RTCD_RTC_DRAINTIMEOUTMINUTES", "15"),
            ("RTCD_STORE_DATASOURCE", "/data"),
            ("RTCD_LOGGER_ENABLECONSOLE", "false"),
            ("RTCD_LOGGER_CONSOLEJSON", "true"),
            ("RTCD_LOGGER_CONSOLELEVEL", "debug"),
            ("RTCD_LOGGER_ENABLEFILE", "false"),
            ("RTCD_LOGGER_FILEJSON", "false"),
            ("RTCD_LOGGER_FILELEVEL", "warn"),
            ("RTCD_LOGGER_FILELOCATION", "/l.log"),
            ("RTCD_LOGGER_ENABLECOLOR", "true"),
            ("RTCD_LOGGER_FILEMAXSIZEMB", "5"),
            ("RTCD_LOGGER_FILEMAXBACKUPS", "0"),
            ("RTCD_LIMITS_MAXSESSIONSPERCLIENT", "11"),
            ("RTCD_LIMITS_MAXCONNECTIONSPERCLIENT", "12"),
            ("RTCD_LIMITS_JOINRATEPERCLIENT", "13"),
            ("RTCD_LIMITS_JOINBURSTPERCLIENT", "14"),
            ("RTCD_LIMITS_MAXIDLENGTH", "15"),
            ("RTCD_LIMITS_MAXREMOTECANDIDATES", "16"),
            ("RTCD_LIMITS_MAXHTTPCONNECTIONS", "17"),
            ("RTCD_LIMITS_MAXHTTPCONNECTIONSPERIP", "21"),
            ("RTCD_LIMITS_HTTPHEADERTIMEOUTSECONDS", "18"),
            ("RTCD_LIMITS_ICETCPPENDINGPERIP", "19"),
            ("RTCD_LIMITS_ICETCPIDLETIMEOUTSECONDS", "20"),
        ])
        .expect("load");
        assert_eq!(cfg.overrides.len(), KEYS.len());
        assert_eq!(
            (
                cfg.config.logger.file_max_size_mb,
                cfg.config.logger.file_max_backups
            ),
            (5, 0)
        );
        let l = &cfg.config.limits;
        assert_eq!(
            [
                l.max_sessions_per_client,
                l.max_connections_per_client,
                l.join_rate_per_client,
                l.join_burst_per_client,
                l.max_id_length,
                l.max_remote_candidates,
                l.max_http_connections,
                l.max_http_connections_per_ip,
                l.http_header_timeout_seconds,
                l.ice_tcp_pending_per_ip,
                l.ice_tcp_idle_timeout_seconds,
            ],
            [11, 12, 13, 14, 15, 16, 17, 21, 18, 19, 20]
        );
        assert!(
            cfg.overrides
                .iter()
                .all(|o| o.source == OverrideSource::Prefixed)
        );
        let c = cfg.config;
        assert_eq!(c.api.http.listen_address, "127.0.0.1:9");
        assert!(c.api.http.tls.enable);
        assert_eq!(
            (
                c.api.http.tls.cert_file.as_str(),
                c.api.http.tls.cert_key.as_str()
            ),
            ("c", "k")
        );
        assert!(c.api.security.enable_admin && c.api.security.allow_self_registration);
        assert_eq!(c.api.security.admin_secret_key, "sec");
        assert_eq!(c.api.security.session_cache.expiration_minutes, 60);
        assert_eq!(c.rtc.ice_address_udp, "1.2.3.4, 5.6.7.8");
        assert_eq!((c.rtc.ice_port_udp, c.rtc.ice_port_tcp), (9000, 9001));
        assert_eq!(c.rtc.ice_address_tcp, "::1");
        assert_eq!(c.rtc.ice_host_override, "h.example.com");
        assert_eq!(c.rtc.ice_host_port_override, "30443");
        assert_eq!(c.rtc.ice_servers.len(), 1);
        assert_eq!(c.rtc.ice_servers[0].urls, vec!["stun:a:1", "stun:b:2"]);
        assert_eq!(c.rtc.turn.static_auth_secret, "ts");
        assert_eq!(c.rtc.turn.credentials_expiration_minutes, 30);
        assert!(c.rtc.enable_ipv6);
        assert_eq!(c.rtc.udp_sockets_count, 4);
        assert_eq!(c.rtc.nack_buffer_size, 1024);
        assert!(!c.rtc.nack_disable_copy);
        assert_eq!(c.rtc.drain_timeout_minutes, 15);
        assert_eq!(c.store.data_source, "/data");
        assert!(!c.logger.enable_console && !c.logger.enable_file);
        assert!(c.logger.console_json && !c.logger.file_json && c.logger.enable_color);
        assert_eq!(c.logger.console_level, "debug");
        assert_eq!(c.logger.file_level, "warn");
        assert_eq!(c.logger.file_location, "/l.log");
    }

    #[test]
    fn unprefixed_fallback_and_prefixed_precedence() {
        let loaded = load(&[
            ("API_SECURITY_ALLOWSELFREGISTRATION", "true"),
            ("LOGGER_ENABLEFILE", "false"),
            ("RTCD_LOGGER_ENABLEFILE", "true"),
        ])
        .expect("load");
        assert!(loaded.config.api.security.allow_self_registration);
        assert!(loaded.config.logger.enable_file);
        assert_eq!(
            loaded.overrides,
            vec![
                Override {
                    key: "api.security.allow_self_registration",
                    variable: "API_SECURITY_ALLOWSELFREGISTRATION".into(),
                    source: OverrideSource::Unprefixed,
                },
                Override {
                    key: "logger.enable_file",
                    variable: "RTCD_LOGGER_ENABLEFILE".into(),
                    source: OverrideSource::Prefixed,
                },
            ]
        );
    }

    #[test]
    fn empty_values() {
        let loaded = load(&[
            ("RTCD_STORE_DATASOURCE", ""),
            ("RTCD_RTC_ICEHOSTOVERRIDE", ""),
        ])
        .expect("load");
        assert_eq!(loaded.config.store.data_source, "");
        assert_eq!(loaded.overrides.len(), 2);
        let err = load(&[("RTCD_LOGGER_ENABLEFILE", "")]).expect_err("empty bool");
        assert_eq!(
            err.to_string(),
            "envconfig.Process: assigning RTCD_LOGGER_ENABLEFILE to EnableFile: converting '' to type bool. details: strconv.ParseBool: parsing \"\": invalid syntax"
        );
        assert!(load(&[("RTCD_RTC_ICEPORTUDP", "")]).is_err());
        assert!(load(&[("RTCD_RTC_ICESERVERS", "")]).is_err());
    }

    #[test]
    fn conversion_errors_name_variable_and_value() {
        let err = load(&[("RTCD_RTC_ICEPORTUDP", "abc")]).expect_err("bad int");
        assert_eq!(
            err.to_string(),
            "envconfig.Process: assigning RTCD_RTC_ICEPORTUDP to ICEPortUDP: converting 'abc' to type int. details: strconv.ParseInt: parsing \"abc\": invalid syntax"
        );
        let err = load(&[("RTC_NACKBUFFERSIZE", "70000")]).expect_err("bad u16");
        assert_eq!(
            err.to_string(),
            "envconfig.Process: assigning RTC_NACKBUFFERSIZE to NACKBufferSize: converting '70000' to type uint16. details: strconv.ParseUint: parsing \"70000\": value out of range"
        );
        let err = load(&[("RTCD_RTC_ICESERVERS", "stun:a:3478")]).expect_err("not json");
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "envconfig.Process: assigning RTCD_RTC_ICESERVERS to ICEServers: converting '<redacted>' to type rtc.ICEServers. details: "
            ),
            "{msg}"
        );
    }

    #[test]
    fn ice_servers_json() {
        assert_eq!(
            parse_ice_servers(r#"["stun:a:3478","stun:b:3478"]"#),
            Ok(vec![IceServer {
                urls: vec!["stun:a:3478".into(), "stun:b:3478".into()],
                ..IceServer::default()
            }])
        );
        assert_eq!(
            parse_ice_servers(
                r#"[{"urls":["turn:t:3478"],"username":"u","credential":"p"},{"URLs":["stun:s:1"],"extra":1}]"#
            ),
            Ok(vec![
                IceServer {
                    urls: vec!["turn:t:3478".into()],
                    username: "u".into(),
                    credential: "p".into(),
                },
                IceServer {
                    urls: vec!["stun:s:1".into()],
                    ..IceServer::default()
                },
            ])
        );
        assert_eq!(parse_ice_servers("[]"), Ok(vec![]));
        for bad in [
            "",
            "stun:a",
            "{}",
            "null",
            "\"stun:a\"",
            "[1]",
            r#"["a",{"urls":[]}]"#,
            r#"[{"urls":"x"}]"#,
            r#"[{"username":1}]"#,
        ] {
            assert!(parse_ice_servers(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_ice_servers("{}"),
            Err("expected a JSON array of URL strings or of {\"urls\": [...], \"username\": ..., \"credential\": ...} objects".to_owned())
        );
    }
}
