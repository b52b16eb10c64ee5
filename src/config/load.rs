//! Loading: built-in defaults < TOML file < environment (spec control-plane §3.1, §3.2).
//!
//! Owns: reading and strictly type-checking the TOML file (case-insensitive keys, unknown keys
//! ignored, errors naming file, line and key), layering the three sources with the `config`
//! crate, and the [`ConfigError`] / [`Loaded`] types. Environment parsing lives in `env.rs`.

use std::borrow::Cow;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::keys::{self, Kind, Layer, Typed};
use super::{Config, IceServer, env};

/// A configuration loading failure (file or environment). Validation failures are
/// [`super::ValidationError`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read (permissions, a directory, …).
    #[error("failed to read config file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax error, or a value of the wrong type.
    #[error("failed to decode config file: {}", decode_detail(.path, *.line, *.column, .key.as_deref(), .message))]
    Decode {
        path: PathBuf,
        /// 1-based line of the error (for type errors: where the key is written).
        line: Option<usize>,
        /// 1-based column, given for syntax errors.
        column: Option<usize>,
        /// Dotted key, given for type errors.
        key: Option<String>,
        message: String,
    },
    /// An environment variable could not be converted (upstream envconfig wording).
    #[error(
        "envconfig.Process: assigning {variable} to {field}: converting '{value}' to type {go_type}. details: {details}"
    )]
    Env {
        variable: String,
        field: &'static str,
        /// The raw value (`<redacted>` for `RTCD_RTC_ICESERVERS`, which may hold credentials).
        value: String,
        go_type: &'static str,
        details: String,
    },
    /// Layering the sources failed (not expected once the values are type-checked).
    #[error("failed to merge configuration sources: {0}")]
    Merge(#[from] config::ConfigError),
}

fn decode_detail(
    path: &Path,
    line: Option<usize>,
    column: Option<usize>,
    key: Option<&str>,
    message: &str,
) -> String {
    let mut out = path.display().to_string();
    if let Some(line) = line {
        out.push_str(&format!(", line {line}"));
    }
    if let Some(column) = column {
        out.push_str(&format!(", column {column}"));
    }
    if let Some(key) = key {
        out.push_str(&format!(", key {key}"));
    }
    format!("{out}: {message}")
}

/// The effective configuration plus facts the caller reports once logging is up.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// `false` when the path was empty or did not exist (defaults were used); the caller
    /// prints `config file not found at <path>, using defaults`.
    pub file_found: bool,
    /// Keys set from the environment, in processing order (log names only, never values).
    pub overrides: Vec<Override>,
}

/// One key set from an environment variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// TOML dotted key, e.g. `api.security.allow_self_registration`.
    pub key: &'static str,
    /// The variable actually used, e.g. `RTCD_API_SECURITY_ALLOWSELFREGISTRATION`.
    pub variable: String,
    pub source: OverrideSource,
}

/// Which form of the variable name set a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideSource {
    /// `RTCD_…` (upstream's only form).
    Prefixed,
    /// The same name without `RTCD_`, honoured only when the prefixed one is unset
    /// (a deliberate deviation from upstream).
    Unprefixed,
}

/// Load from `path` and the process environment.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    load_with_env(path, |name| std::env::var(name).ok())
}

/// Load from `path`, reading environment variables through `env` (`None` = unset).
pub fn load_with_env(
    path: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let (file_layer, file_found) = read_file(path)?;
    assemble(file_layer, file_found, env)
}

/// Load from TOML `text` (as if it were the file) and the environment `env`: what the file
/// loader does after reading the file (used by the config fuzz target).
pub fn load_text(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let layer = parse_toml(Path::new("<text>"), text)?;
    assemble(layer, true, env)
}

/// Defaults < file layer < environment.
fn assemble(
    file_layer: Layer,
    file_found: bool,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let (env_layer, overrides) = env::collect(&env)?;
    let config = config::Config::builder()
        .add_source(config::Config::try_from(&Config::default())?)
        .add_source(file_layer)
        .add_source(env_layer)
        .build()?
        .try_deserialize::<Config>()?;
    Ok(Loaded {
        config,
        file_found,
        overrides,
    })
}

/// Read and type-check the file; a missing file (or empty path) yields an empty layer.
fn read_file(path: &Path) -> Result<(Layer, bool), ConfigError> {
    if path.as_os_str().is_empty() {
        return Ok((Layer::default(), false));
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Layer::default(), false));
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let text = String::from_utf8(bytes).map_err(|e| ConfigError::Decode {
        path: path.to_owned(),
        line: None,
        column: None,
        key: None,
        message: format!("file is not valid UTF-8: {e}"),
    })?;
    Ok((parse_toml(path, &text)?, true))
}

/// Parse TOML text into a layer of typed values.
pub(crate) fn parse_toml(path: &Path, text: &str) -> Result<Layer, ConfigError> {
    let doc = DeTable::parse(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unzip();
        ConfigError::Decode {
            path: path.to_owned(),
            line,
            column,
            key: None,
            message: e.message().trim_end().to_owned(),
        }
    })?;
    let mut walker = Walker {
        path,
        text,
        layer: Layer {
            origin: path.display().to_string(),
            values: Vec::new(),
        },
    };
    walker.table(doc.get_ref(), "")?;
    Ok(walker.layer)
}

/// 1-based (line, column) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

struct Walker<'a> {
    path: &'a Path,
    text: &'a str,
    layer: Layer,
}

type DeKey<'i> = Spanned<Cow<'i, str>>;

impl Walker<'_> {
    fn error(&self, span: Range<usize>, key: &str, message: String) -> ConfigError {
        ConfigError::Decode {
            path: self.path.to_owned(),
            line: Some(line_col(self.text, span.start).0),
            column: None,
            key: Some(key.to_owned()),
            message,
        }
    }

    fn table(&mut self, table: &DeTable<'_>, prefix: &str) -> Result<(), ConfigError> {
        for (key, value) in table.iter() {
            let name = key.get_ref().to_lowercase();
            let dotted = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}.{name}")
            };
            if let Some(spec) = keys::find(&dotted) {
                let typed = self.convert(spec.key, spec.kind, key, value)?;
                self.layer.set(spec.key, typed);
            } else if keys::is_section(&dotted) {
                match value.get_ref() {
                    DeValue::Table(t) => self.table(t, &dotted)?,
                    other => {
                        let msg = format!("expected a table, found {}", other.type_str());
                        return Err(self.error(key.span(), &dotted, msg));
                    }
                }
            }
            // Anything else is an unknown key: ignored, as upstream.
        }
        Ok(())
    }

    fn convert(
        &self,
        name: &str,
        kind: Kind,
        key: &DeKey<'_>,
        value: &Spanned<DeValue<'_>>,
    ) -> Result<Typed, ConfigError> {
        let mismatch = |expected: &str| {
            let msg = format!("expected {expected}, found {}", value.get_ref().type_str());
            self.error(key.span(), name, msg)
        };
        let integer = |min: i128, max: i128, what: &str| match value.get_ref() {
            DeValue::Integer(i) => {
                let n = i128::from_str_radix(i.as_str(), i.radix()).ok();
                match n.filter(|n| (min..=max).contains(n)) {
                    Some(n) => Ok(n),
                    None => {
                        let msg = format!("{i} is out of range for {what} [{min}, {max}]");
                        Err(self.error(key.span(), name, msg))
                    }
                }
            }
            _ => Err(mismatch("an integer")),
        };
        Ok(match (kind, value.get_ref()) {
            (Kind::Bool, DeValue::Boolean(b)) => Typed::Bool(*b),
            (Kind::Bool, _) => return Err(mismatch("a boolean")),
            (Kind::Str, DeValue::String(s)) => Typed::Str(s.to_string()),
            (Kind::Str, _) => return Err(mismatch("a string")),
            (Kind::PortOverride, DeValue::String(s)) => Typed::Str(s.to_string()),
            (Kind::PortOverride, DeValue::Integer(_)) => {
                let n = integer(i64::MIN.into(), i64::MAX.into(), "a 64-bit integer")?;
                Typed::Str(n.to_string())
            }
            (Kind::PortOverride, _) => return Err(mismatch("a string or an integer")),
            // The casts below are lossless: `integer` checked the range.
            (Kind::Int, _) => {
                Typed::Int(integer(i64::MIN.into(), i64::MAX.into(), "a 64-bit integer")? as i64)
            }
            (Kind::U16, _) => {
                Typed::Uint(integer(0, u16::MAX.into(), "a 16-bit unsigned integer")? as u64)
            }
            (Kind::U64, _) => {
                Typed::Uint(integer(0, u64::MAX.into(), "a 64-bit unsigned integer")? as u64)
            }
            (Kind::IceServers, DeValue::Array(items)) => {
                let servers = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.ice_server(&format!("{name}[{i}]"), item))
                    .collect::<Result<_, _>>()?;
                Typed::Servers(servers)
            }
            (Kind::IceServers, other) => {
                let msg = format!("invalid type {}: expected an array", other.type_str());
                return Err(self.error(key.span(), name, msg));
            }
        })
    }

    /// One `ice_servers` element: a bare URL string or a `{urls, username, credential}` table.
    fn ice_server(
        &self,
        name: &str,
        item: &Spanned<DeValue<'_>>,
    ) -> Result<IceServer, ConfigError> {
        let table = match item.get_ref() {
            DeValue::String(url) => {
                return Ok(IceServer {
                    urls: vec![url.to_string()],
                    ..IceServer::default()
                });
            }
            DeValue::Table(t) => t,
            other => {
                let msg = format!(
                    "unknown type {}: an element must be a URL string or a table {{urls, username, credential}}",
                    other.type_str()
                );
                return Err(self.error(item.span(), name, msg));
            }
        };
        let mut server = IceServer::default();
        for (key, value) in table.iter() {
            let field = key.get_ref().to_lowercase();
            let dotted = format!("{name}.{field}");
            let string = |v: &Spanned<DeValue<'_>>| match v.get_ref() {
                DeValue::String(s) => Ok(s.to_string()),
                other => {
                    let msg = format!("expected a string, found {}", other.type_str());
                    Err(self.error(v.span(), &dotted, msg))
                }
            };
            match field.as_str() {
                // A non-array `urls` is treated as empty (and then fails validation), as upstream.
                "urls" => {
                    if let DeValue::Array(urls) = value.get_ref() {
                        server.urls = urls.iter().map(string).collect::<Result<_, _>>()?;
                    }
                }
                "username" => server.username = string(value)?,
                "credential" => server.credential = string(value)?,
                _ => {}
            }
        }
        Ok(server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    fn load_text(text: &str) -> Result<Loaded, ConfigError> {
        let f = write(text);
        load_with_env(f.path(), no_env)
    }

    fn load_err(text: &str) -> (String, PathBuf) {
        let f = write(text);
        let err = load_with_env(f.path(), no_env).expect_err("load must fail");
        (err.to_string(), f.path().to_owned())
    }

    #[test]
    fn missing_file_gives_defaults() {
        let dir = tempfile::tempdir().expect("dir");
        let loaded = load_with_env(&dir.path().join("nope.toml"), no_env).expect("load");
        assert!(!loaded.file_found);
        assert_eq!(loaded.config, Config::default());
        assert!(loaded.overrides.is_empty());
        let loaded = load_with_env(Path::new(""), no_env).expect("load");
        assert!(!loaded.file_found);
    }

    #[test]
    fn directory_is_a_read_error() {
        let dir = tempfile::tempdir().expect("dir");
        let err = load_with_env(dir.path(), no_env).expect_err("dir");
        assert!(
            err.to_string().starts_with("failed to read config file"),
            "{err}"
        );
    }

    #[test]
    fn empty_and_unknown_give_defaults() {
        for text in [
            "",
            "[invalid]\nfoo = 1\n",
            "[api]\nnope = \"x\"\n[api.other]\na = 1\n",
        ] {
            let loaded = load_text(text).expect("load");
            assert!(loaded.file_found);
            assert_eq!(loaded.config, Config::default(), "{text:?}");
        }
    }

    #[test]
    fn keys_are_case_insensitive_and_dotted() {
        let cfg = load_text(
            "[API]\nhttp.Listen_Address = \":9000\"\nSecurity.session_cache.expiration_minutes = 5\n\
             [Rtc.TURN]\nstatic_auth_secret = \"s\"\n[rtc]\nice_port_udp = 0x2000\n",
        )
        .expect("load")
        .config;
        assert_eq!(cfg.api.http.listen_address, ":9000");
        assert_eq!(cfg.api.security.session_cache.expiration_minutes, 5);
        assert_eq!(cfg.rtc.turn.static_auth_secret, "s");
        assert_eq!(cfg.rtc.turn.credentials_expiration_minutes, 1440);
        assert_eq!(cfg.rtc.ice_port_udp, 8192);
        assert_eq!(cfg.rtc.ice_port_tcp, 8443);
    }

    #[test]
    fn full_values_round_trip() {
        let cfg = load_text(
            "[rtc]\nnack_buffer_size = 512\nnack_disable_copy = false\ndrain_timeout_minutes = 30\n\
             [logger]\nenable_file = false\nconsole_level = \"debug\"\n[store]\ndata_source = \"/d\"\n",
        )
        .expect("load")
        .config;
        assert_eq!(cfg.rtc.nack_buffer_size, 512);
        assert!(!cfg.rtc.nack_disable_copy);
        assert_eq!(cfg.rtc.drain_timeout_minutes, 30);
        assert!(!cfg.logger.enable_file);
        assert_eq!(cfg.logger.console_level, "debug");
        assert_eq!(cfg.store.data_source, "/d");
    }

    #[test]
    fn type_error_names_file_line_and_key() {
        let (msg, path) = load_err("[rtc]\n\nice_port_udp = \"8443\"\n");
        assert_eq!(
            msg,
            format!(
                "failed to decode config file: {}, line 3, key rtc.ice_port_udp: expected an integer, found string",
                path.display()
            )
        );
        let (msg, path) = load_err("[rtc]\nnack_buffer_size = 70000\n");
        assert_eq!(
            msg,
            format!(
                "failed to decode config file: {}, line 2, key rtc.nack_buffer_size: 70000 is out of range for a 16-bit unsigned integer [0, 65535]",
                path.display()
            )
        );
        let (msg, _) = load_err("[api]\nhttp.tls.enable = \"yes\"\n");
        assert!(
            msg.ends_with(", line 2, key api.http.tls.enable: expected a boolean, found string"),
            "{msg}"
        );
        let (msg, _) = load_err("[rtc]\nnack_buffer_size = -1\n");
        assert!(
            msg.contains("key rtc.nack_buffer_size: -1 is out of range"),
            "{msg}"
        );
        let (msg, _) = load_err("api = 3\n");
        assert!(
            msg.ends_with(", line 1, key api: expected a table, found integer"),
            "{msg}"
        );
    }

    #[test]
    fn ice_servers_type_errors() {
        let (msg, _) = load_err("[rtc]\nice_servers = 5\n");
        assert!(
            msg.ends_with(", line 2, key rtc.ice_servers: invalid type integer: expected an array"),
            "{msg}"
        );
        let (msg, _) = load_err("[rtc]\nice_servers = [\n  \"stun:a:1\",\n  7,\n]\n");
        assert!(
            msg.contains(
                ", line 4, key rtc.ice_servers[1]: unknown type integer: an element must be"
            ),
            "{msg}"
        );
        let (msg, _) = load_err("[rtc]\nice_servers = [{urls = [1]}]\n");
        assert!(
            msg.contains(", line 2, key rtc.ice_servers[0].urls: expected a string, found integer"),
            "{msg}"
        );
    }

    #[test]
    fn syntax_error_names_file_line_and_column() {
        let (msg, path) =
            load_err("[api]\nhttp.listen_address = \":8045\"\nenable_admin = = true\n");
        let prefix = format!(
            "failed to decode config file: {}, line 3, column ",
            path.display()
        );
        assert!(msg.starts_with(&prefix), "{msg}");
    }

    #[test]
    fn ice_servers_forms() {
        let cfg = load_text(
            "[rtc]\nice_servers = [\"stun:s.example.com:3478\", \
             {urls = [\"turn:t.example.com:3478\", \"turns:t.example.com:5349\"], username = \"u\", credential = \"p\"}, \
             {URLs = \"turn:x\"}]\n",
        )
        .expect("load")
        .config;
        assert_eq!(
            cfg.rtc.ice_servers,
            vec![
                IceServer {
                    urls: vec!["stun:s.example.com:3478".into()],
                    ..IceServer::default()
                },
                IceServer {
                    urls: vec![
                        "turn:t.example.com:3478".into(),
                        "turns:t.example.com:5349".into()
                    ],
                    username: "u".into(),
                    credential: "p".into(),
                },
                IceServer::default(),
            ]
        );
        let cfg = load_text("[[rtc.ice_servers]]\nurls = [\"stun:a:1\"]\n")
            .expect("load")
            .config;
        assert_eq!(cfg.rtc.ice_servers[0].urls, vec!["stun:a:1".to_string()]);
    }

    #[test]
    fn port_override_integer_or_string() {
        let cfg = load_text("[rtc]\nice_host_port_override = 30443\n")
            .expect("load")
            .config;
        assert_eq!(cfg.rtc.ice_host_port_override, "30443");
        let cfg = load_text("[rtc]\nice_host_port_override = \"10.0.0.1/30443\"\n")
            .expect("load")
            .config;
        assert_eq!(cfg.rtc.ice_host_port_override, "10.0.0.1/30443");
        let (msg, _) = load_err("[rtc]\nice_host_port_override = true\n");
        assert!(
            msg.ends_with(
                "key rtc.ice_host_port_override: expected a string or an integer, found boolean"
            ),
            "{msg}"
        );
    }

    #[test]
    fn env_beats_file() {
        let f = write("[rtc]\nice_port_udp = 9000\nice_port_tcp = 9001\n");
        let loaded = load_with_env(f.path(), |name| {
            (name == "RTCD_RTC_ICEPORTUDP").then(|| "9100".to_string())
        })
        .expect("load");
        assert_eq!(loaded.config.rtc.ice_port_udp, 9100);
        assert_eq!(loaded.config.rtc.ice_port_tcp, 9001);
        assert_eq!(
            loaded.overrides,
            vec![Override {
                key: "rtc.ice_port_udp",
                variable: "RTCD_RTC_ICEPORTUDP".into(),
                source: OverrideSource::Prefixed,
            }]
        );
    }

    #[test]
    fn sample_file_loads_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/config.sample.toml");
        let loaded = load_with_env(&path, no_env).expect("sample loads");
        assert!(loaded.file_found);
        loaded.config.validate().expect("sample validates");
        let mut expected = Config::default();
        expected.logger.enable_color = true;
        assert_eq!(loaded.config, expected);
    }
}
