//! `rtcd check-network` tells a good setup from a broken one, one line per finding, each
//! problem with its fix: the candidates it would advertise and why, the API and media ports,
//! socket buffers, and the configured STUN server (Debian's coturn on loopback).

mod common;

use std::process::Output;

use common::coturn::Coturn;

fn check_network(dir: &std::path::Path, config: &str) -> Output {
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    common::rtcd_command(dir)
        .arg("-config")
        .arg(&path)
        .arg("check-network")
        .output()
        .unwrap()
}

fn config(api_port: u16, media_port: u16, stun: &str) -> String {
    format!(
        "[api.http]\nlisten_address = \"127.0.0.1:{api_port}\"\n[rtc]\nice_address_udp = \"127.0.0.1\"\nice_address_tcp = \"127.0.0.1\"\nice_port_udp = {media_port}\nice_port_tcp = {media_port}\nice_servers = [\"{stun}\"]\n"
    )
}

#[test]
fn a_good_setup_passes_and_shows_what_it_advertises() {
    let coturn = Coturn::start(&["--stun-only"]);
    let dir = tempfile::tempdir().unwrap();
    let stun = format!("stun:127.0.0.1:{}", coturn.port);
    let output = check_network(
        dir.path(),
        &config(common::free_port(), common::free_port(), &stun),
    );
    let text = String::from_utf8_lossy(&output.stdout);
    eprintln!("{text}");
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains("ok: advertises udp 127.0.0.1:")
            && text.contains("(public IP reported by STUN server"),
        "{text}"
    );
    assert!(text.contains("can be bound"), "{text}");
    assert!(text.contains(&format!("STUN server {stun}")) && text.contains("answered"));
    // Loopback only: a warning that other networks cannot reach it, with the fix.
    assert!(text.contains("warning: every advertised address is private"));
    assert!(text.contains("RTCD_RTC_ICEHOSTOVERRIDE"));
    assert!(text.contains("check-network: 0 problems"));
}

#[test]
fn a_broken_setup_fails_with_one_line_per_problem_and_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    // The media port and the API port are taken; the STUN server does not exist.
    let media = std::net::UdpSocket::bind(("127.0.0.1", common::free_port())).unwrap();
    let api = std::net::TcpListener::bind(("127.0.0.1", common::free_port())).unwrap();
    let dead_stun = common::free_port(); // nothing listens there
    let output = check_network(
        dir.path(),
        &config(
            api.local_addr().unwrap().port(),
            media.local_addr().unwrap().port(),
            &format!("stun:127.0.0.1:{dead_stun}"),
        ),
    );
    let text = String::from_utf8_lossy(&output.stdout);
    eprintln!("{text}");
    assert_eq!(output.status.code(), Some(1), "{text}");
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("problem: "))
        .collect();
    for (needle, fix) in [
        ("cannot bind the media port", "RTCD_RTC_ICEPORTUDP"),
        (
            "cannot listen on the API address",
            "RTCD_API_HTTP_LISTENADDRESS",
        ),
        ("did not answer a binding request", "UDP from this host"),
        ("gave no public IP", "RTCD_RTC_ICEHOSTOVERRIDE"),
    ] {
        let line = problems
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no problem line with {needle:?}:\n{text}"));
        assert!(line.contains("fix:") && line.contains(fix), "{line}");
    }
    assert!(text.contains(&format!("check-network: {} problems", problems.len())));
}
