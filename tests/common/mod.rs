//! Test harness: starts the real `rtcd` binary on an ephemeral port with a temporary config,
//! data directory and working directory, and reads its log to learn the bound address.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtcd::client::Client;

pub mod coturn;

pub const KEY: &str = "q7Zt0-Lm3Xa_9vKpR2wBn8YcE5uHs1Dj";
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Base config for tests: loopback, ephemeral port, console only.
pub fn base_config(extra: &str) -> String {
    format!(
        r#"
[api.http]
listen_address = "127.0.0.1:0"

[logger]
enable_file = false
console_level = "DEBUG"

{extra}
"#
    )
}

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    pub dir: PathBuf,
    pub url: String,
    /// The UDP/TCP media port.
    pub media_port: u16,
    pub log: Arc<Mutex<Vec<String>>>,
    _temp: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Starts a daemon in a fresh temporary directory with `config` (TOML) and `env`.
    pub fn start(config: &str, env: &[(&str, &str)]) -> Daemon {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_owned();
        let mut daemon = Self::start_in(&dir, config, env);
        daemon._temp = Some(temp);
        daemon
    }

    /// Starts a daemon in `dir` (reusing its data directory if present).
    pub fn start_in(dir: &Path, config: &str, env: &[(&str, &str)]) -> Daemon {
        let config_path = dir.join("config.toml");
        let data = dir.join("data");
        let config = format!("{config}\n[store]\ndata_source = \"{}\"\n", data.display());
        std::fs::write(&config_path, config).unwrap();
        let mut cmd = rtcd_command(dir);
        cmd.arg("-config").arg(&config_path);
        // Media on loopback and on a port of its own (tests run in parallel).
        let port = free_port();
        cmd.env("RTCD_RTC_ICEADDRESSUDP", "127.0.0.1")
            .env("RTCD_RTC_ICEADDRESSTCP", "127.0.0.1")
            .env("RTCD_RTC_ICEPORTUDP", port.to_string())
            .env("RTCD_RTC_ICEPORTTCP", port.to_string());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let log = log.clone();
            let addr_tx = addr_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("HTTP API listening on ").nth(1) {
                        let _ = addr_tx.send(rest.trim().to_owned());
                    }
                    if std::env::var_os("RTCD_TEST_ECHO").is_some() {
                        eprintln!("[rtcd] {line}");
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let url = match addr_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "daemon did not start; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Daemon {
            child: Some(child),
            dir: dir.to_owned(),
            url,
            media_port: port,
            log,
            _temp: None,
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url).unwrap()
    }

    pub fn client_as(&self, id: &str, key: &str) -> Client {
        self.client().with_credentials(id, key)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The daemon's resident memory (KiB), from /proc.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// The daemon's open file descriptors, from /proc.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Polls the log for a line containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        poll(timeout, || self.log_text().contains(needle))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A command for the rtcd binary, run in `cwd`.
pub fn rtcd_command(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtcd"));
    cmd.current_dir(cwd);
    // Tests never inherit the developer's RTCD_* (or unprefixed fallback) settings.
    for (key, _) in std::env::vars() {
        if key.starts_with("RTCD_")
            || key.starts_with("API_")
            || key.starts_with("RTC_")
            || key.starts_with("LOGGER_")
            || key.starts_with("STORE_")
        {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Whether the full attack counts run (`build/stress.sh` sets `RTCD_STRESS=1`); the regular
/// suite uses scaled-down counts.
pub fn stress() -> bool {
    std::env::var_os("RTCD_STRESS").is_some_and(|v| v == "1")
}

/// `regular` in the regular suite, `full` under `build/stress.sh`.
pub fn scaled(regular: usize, full: usize) -> usize {
    if stress() { full } else { regular }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn poll(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A join as the plugin sends it.
pub fn join(call: &str, user: &str, session: &str) -> rtcd::ws::codec::JoinData {
    rtcd::ws::codec::JoinData {
        call_id: call.into(),
        user_id: user.into(),
        session_id: session.into(),
        channel_id: serde_json::Value::String(format!("channel-{call}")),
        av1_support: serde_json::Value::Bool(false),
        dc_signaling: serde_json::Value::Bool(true),
    }
}

/// The value of the first sample in a Prometheus text exposition whose line starts with
/// `series` (a metric name, optionally with its labels).
pub fn metric_value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}

/// Polls an async check every 20 ms until it yields `Some` or `timeout` passes.
pub async fn eventually<T, Fut: std::future::Future<Output = Option<T>>>(
    timeout: Duration,
    mut check: impl FnMut() -> Fut,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the tenant API lists `count` sessions in `call` (`/calls/{call}/sessions`).
pub async fn wait_sessions(client: &Client, call: &str, count: usize) -> bool {
    eventually(Duration::from_secs(5), || async {
        let sessions = client.call_sessions(call).await.ok()?.json().ok()?;
        (sessions.as_array()?.len() == count).then_some(())
    })
    .await
    .is_some()
}

/// Waits until `/readyz` answers `status` (503 once the daemon drains).
pub async fn wait_ready_status(client: &Client, status: u16) -> bool {
    eventually(Duration::from_secs(5), || async {
        let response = client
            .request(hyper::Method::GET, "/readyz", None, None)
            .await
            .ok()?;
        (response.status == status).then_some(())
    })
    .await
    .is_some()
}

/// A port in the allowed media range that is currently free for both UDP and TCP on loopback.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let port = 20_000 + (rand_u16() % 25_000);
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        if udp.is_ok() && tcp.is_ok() {
            return port;
        }
    }
    panic!("no free port found");
}

fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish() as u16
}

/// A daemon with self-registration on, the plugin client `mm` registered, and its WebSocket
/// (past `hello`): the common start of the call tests.
pub async fn registered_plugin() -> (Daemon, Client, rtcd::client::WsClient) {
    registered_plugin_with("").await
}

/// [`registered_plugin`] with `extra` TOML appended to the config.
pub async fn registered_plugin_with(extra: &str) -> (Daemon, Client, rtcd::client::WsClient) {
    registered_plugin_in(extra, &[]).await
}

/// [`registered_plugin`] with `extra` TOML and environment `env`.
pub async fn registered_plugin_in(
    extra: &str,
    env: &[(&str, &str)],
) -> (Daemon, Client, rtcd::client::WsClient) {
    let daemon = Daemon::start(
        &base_config(&format!(
            "[api.security]\nallow_self_registration = true\n{extra}"
        )),
        env,
    );
    let plugin = daemon.client_as("mm", KEY);
    plugin.register("mm", KEY).await.unwrap();
    let ws = plugin.connect().await.unwrap();
    (daemon, plugin, ws)
}
