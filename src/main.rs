//! `rtcd` binary: command line, config loading, logging, signals; everything else is the
//! library's `run`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the WebRTC core allocates several small buffers per packet; glibc's allocator
/// fragments across the media threads (higher RSS per session) and is slower at this pattern.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use rtcd::config::{self, OverrideSource};
use rtcd::version::VersionInfo;

#[derive(Parser, Debug)]
#[command(
    name = "rtcd",
    about = "RTC service for the Mattermost Calls plugin",
    disable_version_flag = true
)]
struct Cli {
    /// Path to the TOML config file (a missing file means built-in defaults).
    #[arg(
        long,
        short = 'c',
        value_name = "PATH",
        default_value = "config/config.toml"
    )]
    config: PathBuf,
    /// Print build information and exit.
    #[arg(long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the configuration and print the effective values (secrets masked).
    CheckConfig,
    /// Check what calls need from the network: the candidates rtcd would advertise and why,
    /// the API and media ports, socket buffers, the STUN/TURN servers. Exits 1 on a problem.
    CheckNetwork,
}

/// Accepts Go-style single-dash long flags (`-config x`, `-config=x`, `-help`, `-version`).
fn go_style_args(args: impl Iterator<Item = String>) -> Vec<String> {
    args.enumerate()
        .map(|(i, arg)| {
            if i == 0 {
                return arg;
            }
            for flag in ["config", "help", "version"] {
                let single = format!("-{flag}");
                if arg == single || arg.starts_with(&format!("{single}=")) {
                    return format!("-{arg}");
                }
            }
            arg
        })
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(go_style_args(std::env::args()));
    if cli.version {
        let v = VersionInfo::current();
        println!(
            "rtcd {} (commit {}, built {}, {}, {}/{})",
            v.build_version, v.build_hash, v.build_date, v.go_version, v.go_os, v.go_arch
        );
        return ExitCode::SUCCESS;
    }

    let loaded = match config::load(&cli.config) {
        Ok(loaded) => loaded,
        Err(err) => return fail(&format!("failed to load config: {err}")),
    };
    if !loaded.file_found {
        eprintln!(
            "rtcd: config file not found at {}, using defaults",
            cli.config.display()
        );
    }
    if let Err(err) = loaded.config.validate() {
        return fail(&format!("failed to validate config: {err}"));
    }
    if let Some(Command::CheckConfig) = cli.command {
        for o in &loaded.overrides {
            println!("# {} set by environment variable {}", o.key, o.variable);
        }
        print!("{}", loaded.config.masked().to_toml_string());
        eprintln!("rtcd: configuration is valid");
        return ExitCode::SUCCESS;
    }

    if let Some(Command::CheckNetwork) = cli.command {
        let report = rtcd::diagnose::check_network(&loaded.config);
        for finding in &report.findings {
            println!("{finding}");
        }
        println!(
            "check-network: {} problems, {} warnings (docs/troubleshooting.md explains each)",
            report.problems(),
            report.warnings()
        );
        return if report.problems() == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }

    let _log_guard = match rtcd::logger::init(&loaded.config.logger) {
        Ok(guard) => guard,
        Err(err) => {
            return fail(&format!(
                "failed to create service: failed to init logger: {err}"
            ));
        }
    };
    if let Some(warning) = &_log_guard.file_warning {
        tracing::warn!("{warning}");
    }
    let version = VersionInfo::current();
    tracing::info!(
        build_version = %version.build_version,
        build_hash = %version.build_hash,
        config = %cli.config.display(),
        config_file_found = loaded.file_found,
        "starting up"
    );
    for o in &loaded.overrides {
        match o.source {
            OverrideSource::Prefixed => {
                tracing::info!(key = o.key, variable = %o.variable, "config key set from environment")
            }
            OverrideSource::Unprefixed => tracing::warn!(
                key = o.key,
                variable = %o.variable,
                "config key set from an environment variable without the RTCD_ prefix (honoured as a fallback; prefer RTCD_{})",
                o.variable
            ),
        }
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&format!("failed to create service: {err}")),
    };
    let result = runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(forward_stop_signals(stop_tx));
        rtcd::run(loaded.config, stop_rx).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            fail(&err.to_string())
        }
    }
}

/// Forwards every SIGINT/SIGTERM to the service (first = drain, second = exit now).
async fn forward_stop_signals(stop: tokio::sync::mpsc::UnboundedSender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if stop.send(()).is_err() {
            return;
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("rtcd: {message}");
    ExitCode::FAILURE
}
