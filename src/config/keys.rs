//! The key catalogue shared by the file loader and the environment overrides.
//!
//! Owns: the list of every configuration key (TOML dotted key, environment variable suffix,
//! upstream Go field name, value kind), the typed value both sources produce and the
//! `config`-crate [`Source`] that layers such values over the defaults.

use config::{Map, Source, Value, ValueKind};

use super::IceServer;

/// How a key's value is typed (drives TOML type checks and environment parsing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    /// Signed 64-bit (Go `int`).
    Int,
    /// Unsigned 16-bit (Go `uint16`).
    U16,
    /// Unsigned 64-bit (Go `uint64`).
    U64,
    Str,
    /// String, or (TOML only) an integer normalised to its decimal string.
    PortOverride,
    IceServers,
}

impl Kind {
    /// The Go type name upstream's envconfig prints in conversion errors.
    pub(crate) fn go_type(self) -> &'static str {
        match self {
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::U16 => "uint16",
            Kind::U64 => "uint64",
            Kind::Str | Kind::PortOverride => "string",
            Kind::IceServers => "rtc.ICEServers",
        }
    }
}

/// One configuration key.
#[derive(Debug)]
pub(crate) struct KeySpec {
    /// TOML dotted key, e.g. `api.http.listen_address`.
    pub key: &'static str,
    /// Environment variable name without the `RTCD_` prefix.
    pub env: &'static str,
    /// Upstream Go struct field name (used in envconfig-style error messages).
    pub field: &'static str,
    pub kind: Kind,
}

const fn k(key: &'static str, env: &'static str, field: &'static str, kind: Kind) -> KeySpec {
    KeySpec {
        key,
        env,
        field,
        kind,
    }
}

/// Every key, in upstream's environment processing order.
#[rustfmt::skip]
pub(crate) const KEYS: &[KeySpec] = &[
    k("api.http.listen_address", "API_HTTP_LISTENADDRESS", "ListenAddress", Kind::Str),
    k("api.http.tls.enable", "API_HTTP_TLS_ENABLE", "Enable", Kind::Bool),
    k("api.http.tls.cert_file", "API_HTTP_TLS_CERTFILE", "CertFile", Kind::Str),
    k("api.http.tls.cert_key", "API_HTTP_TLS_CERTKEY", "CertKey", Kind::Str),
    k("api.security.enable_admin", "API_SECURITY_ENABLEADMIN", "EnableAdmin", Kind::Bool),
    k("api.security.admin_secret_key", "API_SECURITY_ADMINSECRETKEY", "AdminSecretKey", Kind::Str),
    k("api.security.allow_self_registration", "API_SECURITY_ALLOWSELFREGISTRATION", "AllowSelfRegistration", Kind::Bool),
    k("api.security.session_cache.expiration_minutes", "API_SECURITY_SESSIONCACHE_EXPIRATIONMINUTES", "ExpirationMinutes", Kind::Int),
    k("rtc.ice_address_udp", "RTC_ICEADDRESSUDP", "ICEAddressUDP", Kind::Str),
    k("rtc.ice_port_udp", "RTC_ICEPORTUDP", "ICEPortUDP", Kind::Int),
    k("rtc.ice_address_tcp", "RTC_ICEADDRESSTCP", "ICEAddressTCP", Kind::Str),
    k("rtc.ice_port_tcp", "RTC_ICEPORTTCP", "ICEPortTCP", Kind::Int),
    k("rtc.ice_host_override", "RTC_ICEHOSTOVERRIDE", "ICEHostOverride", Kind::Str),
    k("rtc.ice_host_port_override", "RTC_ICEHOSTPORTOVERRIDE", "ICEHostPortOverride", Kind::PortOverride),
    k("rtc.ice_servers", "RTC_ICESERVERS", "ICEServers", Kind::IceServers),
    k("rtc.turn.static_auth_secret", "RTC_TURNCONFIG_STATICAUTHSECRET", "StaticAuthSecret", Kind::Str),
    k("rtc.turn.credentials_expiration_minutes", "RTC_TURNCONFIG_CREDENTIALSEXPIRATIONMINUTES", "CredentialsExpirationMinutes", Kind::Int),
    k("rtc.enable_ipv6", "RTC_ENABLEIPV6", "EnableIPv6", Kind::Bool),
    k("rtc.udp_sockets_count", "RTC_UDPSOCKETSCOUNT", "UDPSocketsCount", Kind::Int),
    k("rtc.nack_buffer_size", "RTC_NACKBUFFERSIZE", "NACKBufferSize", Kind::U16),
    k("rtc.nack_disable_copy", "RTC_NACKDISABLECOPY", "NACKDisableCopy", Kind::Bool),
    k("rtc.drain_timeout_minutes", "RTC_DRAINTIMEOUTMINUTES", "DrainTimeoutMinutes", Kind::U64),
    k("store.data_source", "STORE_DATASOURCE", "DataSource", Kind::Str),
    k("logger.enable_console", "LOGGER_ENABLECONSOLE", "EnableConsole", Kind::Bool),
    k("logger.console_json", "LOGGER_CONSOLEJSON", "ConsoleJSON", Kind::Bool),
    k("logger.console_level", "LOGGER_CONSOLELEVEL", "ConsoleLevel", Kind::Str),
    k("logger.enable_file", "LOGGER_ENABLEFILE", "EnableFile", Kind::Bool),
    k("logger.file_json", "LOGGER_FILEJSON", "FileJSON", Kind::Bool),
    k("logger.file_level", "LOGGER_FILELEVEL", "FileLevel", Kind::Str),
    k("logger.file_location", "LOGGER_FILELOCATION", "FileLocation", Kind::Str),
    k("logger.enable_color", "LOGGER_ENABLECOLOR", "EnableColor", Kind::Bool),
    k("logger.file_max_size_mb", "LOGGER_FILEMAXSIZEMB", "FileMaxSizeMB", Kind::U64),
    k("logger.file_max_backups", "LOGGER_FILEMAXBACKUPS", "FileMaxBackups", Kind::U64),
    // New in this port (no upstream field; the names follow the same scheme).
    k("limits.max_sessions_per_client", "LIMITS_MAXSESSIONSPERCLIENT", "MaxSessionsPerClient", Kind::U64),
    k("limits.max_connections_per_client", "LIMITS_MAXCONNECTIONSPERCLIENT", "MaxConnectionsPerClient", Kind::U64),
    k("limits.join_rate_per_client", "LIMITS_JOINRATEPERCLIENT", "JoinRatePerClient", Kind::U64),
    k("limits.join_burst_per_client", "LIMITS_JOINBURSTPERCLIENT", "JoinBurstPerClient", Kind::U64),
    k("limits.max_id_length", "LIMITS_MAXIDLENGTH", "MaxIDLength", Kind::U64),
    k("limits.max_remote_candidates", "LIMITS_MAXREMOTECANDIDATES", "MaxRemoteCandidates", Kind::U64),
    k("limits.max_http_connections", "LIMITS_MAXHTTPCONNECTIONS", "MaxHTTPConnections", Kind::U64),
    k("limits.max_http_connections_per_ip", "LIMITS_MAXHTTPCONNECTIONSPERIP", "MaxHTTPConnectionsPerIP", Kind::U64),
    k("limits.http_header_timeout_seconds", "LIMITS_HTTPHEADERTIMEOUTSECONDS", "HTTPHeaderTimeoutSeconds", Kind::U64),
    k("limits.ice_tcp_pending_per_ip", "LIMITS_ICETCPPENDINGPERIP", "ICETCPPendingPerIP", Kind::U64),
    k("limits.ice_tcp_idle_timeout_seconds", "LIMITS_ICETCPIDLETIMEOUTSECONDS", "ICETCPIdleTimeoutSeconds", Kind::U64),
];

/// The leaf key spec for a (lower-cased) dotted key.
pub(crate) fn find(dotted: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|s| s.key == dotted)
}

/// Whether `dotted` names a table (`api`, `api.http`, `rtc.turn`, …).
pub(crate) fn is_section(dotted: &str) -> bool {
    KEYS.iter().any(|s| {
        s.key
            .strip_prefix(dotted)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// A value read from the file or the environment, already checked against its [`Kind`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Typed {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Str(String),
    Servers(Vec<IceServer>),
}

impl Typed {
    fn into_value(self, origin: &String) -> Value {
        let origin = Some(origin);
        let str_value = |s: String| Value::new(origin, ValueKind::String(s));
        match self {
            Typed::Bool(b) => Value::new(origin, ValueKind::Boolean(b)),
            Typed::Int(i) => Value::new(origin, ValueKind::I64(i)),
            Typed::Uint(u) => Value::new(origin, ValueKind::U64(u)),
            Typed::Str(s) => str_value(s),
            Typed::Servers(servers) => {
                let entries = servers
                    .into_iter()
                    .map(|s| {
                        let urls = s.urls.into_iter().map(str_value).collect();
                        let mut table = Map::new();
                        table.insert(
                            "urls".to_owned(),
                            Value::new(origin, ValueKind::Array(urls)),
                        );
                        table.insert("username".to_owned(), str_value(s.username));
                        table.insert("credential".to_owned(), str_value(s.credential));
                        Value::new(origin, ValueKind::Table(table))
                    })
                    .collect();
                Value::new(origin, ValueKind::Array(entries))
            }
        }
    }
}

/// A layer of typed values keyed by dotted key, usable as a `config` crate source.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layer {
    /// Where the values come from (file path or "environment"), kept as the values' origin.
    pub origin: String,
    pub values: Vec<(&'static str, Typed)>,
}

impl Layer {
    /// Set a key, replacing an earlier value of the same key.
    pub(crate) fn set(&mut self, key: &'static str, value: Typed) {
        self.values.retain(|(k, _)| *k != key);
        self.values.push((key, value));
    }
}

impl Source for Layer {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        // Dotted keys are expanded into nested tables by the builder.
        Ok(self
            .values
            .iter()
            .map(|(key, v)| ((*key).to_owned(), v.clone().into_value(&self.origin)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => leaves(&key, t, out),
                _ => out.push(key),
            }
        }
    }

    #[test]
    fn catalogue_covers_every_field_once() {
        let table = toml::Table::try_from(super::super::Config::default()).expect("serialize");
        let mut fields = Vec::new();
        leaves("", &table, &mut fields);
        fields.sort();
        let mut keys: Vec<String> = KEYS.iter().map(|s| s.key.to_owned()).collect();
        keys.sort();
        assert_eq!(fields, keys);
        assert!(is_section("api.security.session_cache") && is_section("rtc"));
        assert!(!is_section("rtc.ice_port_udp") && !is_section("api.sec"));
    }
}
