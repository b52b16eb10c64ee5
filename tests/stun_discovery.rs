//! Public-IP discovery through a real STUN server (Debian's coturn on loopback): with
//! `ice_servers` naming it and no host override, rtcd asks it for each served IP's mapped
//! address at startup and advertises that.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Daemon, base_config, free_port};

#[test]
fn discovers_the_mapped_address_from_coturn() {
    let Ok(turnserver) = which("turnserver") else {
        panic!("coturn's turnserver is not installed (build/test.sh installs it)");
    };
    let port = free_port();
    let mut coturn = Command::new(turnserver)
        .args([
            "-n",
            "--no-cli",
            "--stun-only",
            "--no-tls",
            "--no-dtls",
            "--listening-ip=127.0.0.1",
        ])
        .arg(format!("--listening-port={port}"))
        .args(["--log-file=stdout", "--simple-log"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // coturn binds within a few hundred milliseconds; probe it with a real binding request.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let up = common::poll(Duration::from_secs(10), || {
        let request = [
            0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ];
        let _ = probe.send_to(&request, ("127.0.0.1", port));
        probe.recv_from(&mut [0u8; 512]).is_ok()
    });
    assert!(up, "coturn did not answer on port {port}");

    let config = base_config(&format!("[rtc]\nice_servers = [\"stun:127.0.0.1:{port}\"]"));
    let daemon = Daemon::start(&config, &[]);
    let log = daemon.log_text();
    let _ = coturn.kill();
    let _ = coturn.wait();
    assert!(
        log.contains("discovered public IP through STUN") && log.contains("public_ip=127.0.0.1"),
        "{log}"
    );
}

fn which(name: &str) -> Result<String, ()> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map_err(|_| ())?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if path.is_empty() { Err(()) } else { Ok(path) }
}
