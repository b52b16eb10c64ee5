//! Log output: console (stdout) and file targets, plain or JSON, each with its own level.
//!
//! Owns: building the `tracing` subscriber from `[logger]` (spec control-plane §12), the log
//! file's size-based rotation with gzip-compressed, bounded backups (`file-rotate`), and the
//! guard that flushes the non-blocking writers at exit. `enable_file = false` creates no file.
//! A log file is never a reason to stop serving: one that cannot be opened is a warning on the
//! console naming the path and the fix (console logging continues), and a later write failure
//! (full disk) is reported the same way, once until writes succeed again.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

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
    /// Why the log file is not written (logged once the subscriber exists).
    pub file_warning: Option<String>,
}

/// The fix named whenever the log file cannot be used.
const FILE_FIX: &str = "set RTCD_LOGGER_ENABLEFILE=false, or RTCD_LOGGER_FILELOCATION to a \
    writable path (it is relative to the working directory)";

/// The rotating log file, reporting write failures on stderr instead of failing the logger.
struct LogFile {
    path: PathBuf,
    file: file_rotate::FileRotate<file_rotate::suffix::AppendCount>,
    /// A write failed and has been reported; cleared by the next successful write.
    failing: bool,
}

impl LogFile {
    /// Opens `path` for appending (checking it can be written), rotating at `max_bytes` and
    /// keeping `backups` gzip-compressed rotated files (0: every one).
    fn open(path: &Path, max_bytes: usize, backups: usize) -> std::io::Result<Self> {
        OpenOptions::new().create(true).append(true).open(path)?;
        let backups = if backups == 0 { usize::MAX } else { backups };
        let file = file_rotate::FileRotate::new(
            path,
            file_rotate::suffix::AppendCount::new(backups),
            file_rotate::ContentLimit::BytesSurpassed(max_bytes),
            file_rotate::compression::Compression::OnRotate(0),
            None,
        );
        Ok(Self {
            path: path.to_owned(),
            file,
            failing: false,
        })
    }

    fn report(&mut self, result: std::io::Result<()>) {
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                eprintln!(
                    "rtcd: log file {} is written again",
                    absolute(&self.path).display()
                );
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                eprintln!(
                    "rtcd: warning: writing log file {} failed: {e}; records are dropped until it \
                     works again (console logging continues). Free disk space, or {FILE_FIX}",
                    absolute(&self.path).display()
                );
            }
            Err(_) => {}
        }
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let result = self.file.write_all(buf);
        self.report(result);
        // The record is consumed either way: a failing file never blocks or fails logging.
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let result = self.file.flush();
        self.report(result);
        Ok(())
    }
}

/// `path` as the operator should look for it (relative paths are relative to the working
/// directory, which under systemd is `/` unless the unit sets one).
fn absolute(path: &Path) -> PathBuf {
    std::env::current_dir()
        .map(|dir| dir.join(path))
        .unwrap_or_else(|_| path.to_owned())
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
    let mut file_warning = None;
    if config.enable_file {
        let level = parse_level(&config.file_level)
            .ok_or_else(|| LoggerError::Level(config.file_level.clone()))?;
        let path = PathBuf::from(&config.file_location);
        let max_bytes = usize::try_from(config.file_max_size_mb.max(1))
            .unwrap_or(usize::MAX / (1 << 20))
            .saturating_mul(1 << 20);
        match LogFile::open(&path, max_bytes, config.file_max_backups as usize) {
            Ok(file) => {
                let (writer, guard) = tracing_appender::non_blocking(file);
                guards.push(guard);
                layers.push(target_layer(writer, config.file_json, false, level));
            }
            Err(source) => {
                let warning = format!(
                    "cannot open log file {}: {source}; logging to the console only. To fix: \
                     {FILE_FIX}",
                    absolute(&path).display()
                );
                eprintln!("rtcd: warning: {warning}");
                file_warning = Some(warning);
            }
        }
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|_| LoggerError::AlreadyInstalled)?;
    Ok(LoggerGuard {
        _guards: guards,
        file_warning,
    })
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
    fn the_file_rotates_by_size_into_bounded_gzip_backups() {
        use std::io::Read as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rtcd.log");
        let mut file = LogFile::open(&path, 1000, 3).unwrap();
        // One write per record, as the logging thread writes them.
        for i in 0..200 {
            let record = format!("record {i:04} {}\n", "x".repeat(40));
            file.write_all(record.as_bytes()).unwrap();
        }
        file.flush().unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "rtcd.log",
                "rtcd.log.1.gz",
                "rtcd.log.2.gz",
                "rtcd.log.3.gz"
            ],
            "three backups kept, older ones pruned"
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(
            std::fs::File::open(dir.path().join("rtcd.log.1.gz")).unwrap(),
        )
        .read_to_string(&mut text)
        .unwrap();
        assert!(text.starts_with("record "), "{text}");
        assert!(
            text.len() >= 1000,
            "rotated at the size limit: {}",
            text.len()
        );
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.ends_with(&format!("record 0199 {}\n", "x".repeat(40))));
    }

    #[test]
    fn an_unopenable_file_is_a_warning_naming_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir/rtcd.log");
        let err = LogFile::open(&path, 1 << 20, 10).err().expect("must fail");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
}
