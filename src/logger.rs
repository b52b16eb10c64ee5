//! Log output: console (stdout) and file targets, plain or JSON, each with its own level.
//!
//! Owns: building the `tracing` subscriber from `[logger]` (spec control-plane §12) and the
//! guard that flushes the non-blocking writers at exit. `enable_file = false` creates no
//! file; a file that cannot be opened is a startup error naming the path.

use std::fs::OpenOptions;
use std::path::PathBuf;

use tracing::level_filters::LevelFilter;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LoggerConfig;

/// Logger setup failure.
#[derive(Debug, thiserror::Error)]
pub enum LoggerError {
    #[error("failed to open log file {path}: {source}")]
    OpenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid log level {0:?}")]
    Level(String),
    #[error("a global logger is already installed")]
    AlreadyInstalled,
}

/// Keeps the log writers alive; dropping it flushes them.
pub struct LoggerGuard {
    _guards: Vec<WorkerGuard>,
}

/// Maps upstream's level names (case-insensitive) to a filter.
pub fn parse_level(name: &str) -> Option<LevelFilter> {
    Some(match name.to_ascii_lowercase().as_str() {
        "panic" | "fatal" | "error" => LevelFilter::ERROR,
        "warn" => LevelFilter::WARN,
        "info" | "stdlog" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        _ => return None,
    })
}

type BoxedLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

/// Our records at `level`; libraries (WebRTC core, HTTP stack) at most at WARN, since their
/// debug output is per packet.
fn filter(level: LevelFilter) -> Targets {
    // The WebRTC core warns per session about normal conditions (no DTLS server name, early
    // connectivity checks, SCTP before the handshake): errors only from it.
    let webrtc = level.min(LevelFilter::ERROR);
    Targets::new()
        .with_default(level.min(LevelFilter::WARN))
        .with_target("rtc", webrtc)
        .with_target("rtc_dtls", webrtc)
        .with_target("rtc_ice", webrtc)
        .with_target("rtc_sctp", webrtc)
        .with_target("rtc_srtp", webrtc)
        .with_target("rtc_interceptor", webrtc)
        .with_target("rtcd", level)
}

/// One output target: plain (optionally coloured) or JSON lines, filtered at `level`.
fn target_layer(
    writer: tracing_appender::non_blocking::NonBlocking,
    json: bool,
    ansi: bool,
    level: LevelFilter,
) -> BoxedLayer {
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    if json {
        layer
            .json()
            .flatten_event(true)
            .with_filter(filter(level))
            .boxed()
    } else {
        layer.with_ansi(ansi).with_filter(filter(level)).boxed()
    }
}

/// Installs the global subscriber described by `config`.
pub fn init(config: &LoggerConfig) -> Result<LoggerGuard, LoggerError> {
    let mut layers: Vec<BoxedLayer> = Vec::new();
    let mut guards = Vec::new();
    if config.enable_console {
        let level = parse_level(&config.console_level)
            .ok_or_else(|| LoggerError::Level(config.console_level.clone()))?;
        let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
        guards.push(guard);
        layers.push(target_layer(
            writer,
            config.console_json,
            config.enable_color,
            level,
        ));
    }
    if config.enable_file {
        let level = parse_level(&config.file_level)
            .ok_or_else(|| LoggerError::Level(config.file_level.clone()))?;
        let path = PathBuf::from(&config.file_location);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| LoggerError::OpenFile { path, source })?;
        let (writer, guard) = tracing_appender::non_blocking(file);
        guards.push(guard);
        layers.push(target_layer(writer, config.file_json, false, level));
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|_| LoggerError::AlreadyInstalled)?;
    Ok(LoggerGuard { _guards: guards })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names() {
        assert_eq!(parse_level("INFO"), Some(LevelFilter::INFO));
        assert_eq!(parse_level("Fatal"), Some(LevelFilter::ERROR));
        assert_eq!(parse_level("verbose"), None);
    }

    #[test]
    fn unopenable_file_is_an_error() {
        let config = LoggerConfig {
            enable_console: false,
            file_location: "/nonexistent-dir/rtcd.log".into(),
            ..LoggerConfig::default()
        };
        let err = init(&config).err().expect("must fail");
        assert!(
            err.to_string().contains("/nonexistent-dir/rtcd.log"),
            "{err}"
        );
    }
}
