//! `rtcd-load`: simulates Calls participants against a local rtcd (acting as the plugin), or
//! against the floor forwarder, and prints what every receiver got and what it cost.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use rtcd::load::scenario::{Scenario, SrtpProfile};
use rtcd::load::{self, Target};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "rtcd-load",
    about = "Load generator for rtcd: N participants in M calls with real WebRTC peers (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the scenario against rtcd, acting as the Calls plugin.
    Sfu {
        #[command(flatten)]
        scenario: ScenarioArgs,
        /// rtcd's HTTP/WebSocket API.
        #[arg(long, default_value = "http://127.0.0.1:8045")]
        url: String,
        #[arg(long, default_value = "rtcd-load")]
        client_id: String,
        /// Auth key of the client (registered first with --register).
        #[arg(long, default_value = "rtcd-load-auth-key-0123456789abcdef")]
        auth_key: String,
        /// Register the client first (needs allow_self_registration).
        #[arg(long)]
        register: bool,
        /// rtcd's PID, to report its CPU per forwarded packet and its memory.
        #[arg(long)]
        daemon_pid: Option<u32>,
    },
    /// Run the same scenario through the minimal forwarder (the floor).
    Floor {
        #[command(flatten)]
        scenario: ScenarioArgs,
    },
}

#[derive(Args, Debug)]
struct ScenarioArgs {
    /// Simulated participants.
    #[arg(long, default_value_t = 20)]
    participants: usize,
    /// Calls they are spread over.
    #[arg(long, default_value_t = 1)]
    calls: usize,
    /// Unmuted participants per call (50 audio packets/s each).
    #[arg(long, default_value_t = 1)]
    speakers_per_call: usize,
    /// One call in every N has a screen share (0 = none).
    #[arg(long, default_value_t = 0)]
    screen_every: usize,
    /// Screen-share bitrate (kbit/s).
    #[arg(long, default_value_t = 1_500)]
    screen_kbps: u64,
    /// Steady measuring window (seconds).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Settling time after everyone connected (seconds).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Joins per second.
    #[arg(long, default_value_t = 100.0)]
    join_rate: f64,
    /// Local (loopback) address of the participants.
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// Participant i binds UDP port BASE+i (default: ephemeral ports).
    #[arg(long, value_name = "BASE")]
    port_base: Option<u16>,
    /// Also write the summary as JSON here.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// SRTP profile the participants negotiate with rtcd (the floor always uses GCM).
    #[arg(long, value_enum, default_value_t = SrtpProfile::Gcm)]
    srtp: SrtpProfile,
}

impl ScenarioArgs {
    fn scenario(&self) -> anyhow::Result<Scenario> {
        let seconds = |name: &str, s: f64| {
            Duration::try_from_secs_f64(s)
                .map_err(|_| anyhow::anyhow!("invalid parameters: --{name} must be a non-negative number of seconds (got {s})"))
        };
        Ok(Scenario {
            participants: self.participants,
            calls: self.calls,
            speakers_per_call: self.speakers_per_call,
            screen_every: self.screen_every,
            screen_kbps: self.screen_kbps,
            duration: seconds("duration", self.duration)?,
            warmup: seconds("warmup", self.warmup)?,
            join_rate: self.join_rate,
            connect_timeout: Duration::from_secs(30)
                + Duration::from_secs_f64(self.participants as f64 / self.join_rate.max(1.0)),
            bind_ip: self.bind_ip,
            port_base: self.port_base,
            srtp: self.srtp,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        // The WebRTC core warns about routine races (checks before the answer): errors only.
        let filter = tracing_subscriber::filter::Targets::new()
            .with_default(tracing::Level::WARN)
            .with_target("rtc", tracing::Level::ERROR);
        tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .with(filter)
            .init();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rtcd-load: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let interrupted = CancellationToken::new();
        let on_signal = interrupted.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupted: finishing with a partial summary");
                on_signal.cancel();
            }
        });
        let (summary, json) = match cli.command {
            Command::Sfu {
                scenario,
                url,
                client_id,
                auth_key,
                register,
                daemon_pid,
            } => {
                let target = Target {
                    url,
                    client_id,
                    auth_key,
                    register,
                    daemon_pid,
                };
                let summary = load::run(&scenario.scenario()?, &target, interrupted).await?;
                (summary, scenario.json)
            }
            Command::Floor { scenario } => {
                let summary = load::floor::run(&scenario.scenario()?, interrupted).await?;
                (summary, scenario.json)
            }
        };
        println!("{summary}");
        if let Some(path) = json {
            let text = serde_json::to_string_pretty(&summary)?;
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    })
}
