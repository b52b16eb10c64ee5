//! Public-IP discovery through a real STUN server (Debian's coturn on loopback): with
//! `ice_servers` naming it and no host override, rtcd asks it for each served IP's mapped
//! address at startup and advertises that.

mod common;

use common::coturn::Coturn;
use common::{Daemon, base_config};

#[test]
fn discovers_the_mapped_address_from_coturn() {
    let coturn = Coturn::start(&["--stun-only"]);
    let config = base_config(&format!(
        "[rtc]\nice_servers = [\"stun:127.0.0.1:{}\"]",
        coturn.port
    ));
    let daemon = Daemon::start(&config, &[]);
    let log = daemon.log_text();
    assert!(
        log.contains("discovered public IP through STUN") && log.contains("public_ip=127.0.0.1"),
        "{log}"
    );
}
