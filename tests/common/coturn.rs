//! Debian's coturn (`turnserver`) on loopback, for STUN discovery and SFU-side TURN tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running turnserver; killed on drop.
pub struct Coturn {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Coturn {
    /// Starts turnserver on `127.0.0.1:<free port>` with `args` and waits until it answers a
    /// STUN binding request.
    pub fn start(args: &[&str]) -> Coturn {
        let turnserver = which("turnserver")
            .expect("coturn's turnserver is not installed (build/test.sh installs it)");
        let port = super::free_port();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("turnserver.log");
        let child = Command::new(turnserver)
            .args([
                "-n",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--listening-ip=127.0.0.1",
            ])
            .arg(format!("--listening-port={port}"))
            .arg(format!("--log-file={}", log.display()))
            .args(["--simple-log", "--verbose"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let up = super::poll(Duration::from_secs(10), || {
            let request = [
                0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
            ];
            let _ = probe.send_to(&request, ("127.0.0.1", port));
            probe.recv_from(&mut [0u8; 512]).is_ok()
        });
        assert!(up, "coturn did not answer on port {port}");
        Coturn {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    /// What coturn logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!path.is_empty()).then_some(path)
}
