//! `ice_host_override` (IP, hostname, NAT pairs) and `ice_host_port_override` change the host
//! candidates the SFU advertises to clients (spec media-plane §1.6).

mod common;
#[path = "common/rtc_peer.rs"]
mod rtc_peer;

use std::time::Duration;

use common::{Daemon, join};
use rtc_peer::RtcPeer;
use rtcd::ws::codec::ServerMessage;

/// The candidates trickled to a session joined on a daemon started with `env`.
async fn advertised(env: &[(&str, &str)]) -> (Daemon, Vec<String>) {
    let (daemon, _plugin, mut ws) = common::registered_plugin_in("", env).await;
    ws.join(&join("call", "user", "sess")).await.unwrap();
    let (_peer, offer) = RtcPeer::new();
    rtc_peer::send_offer(&mut ws, "sess", offer).await;
    let mut candidates = Vec::new();
    while candidates.len() < 2 {
        if let ServerMessage::Rtc(msg) = ws.recv_timeout(Duration::from_secs(5)).await.unwrap()
            && msg.msg_type == 1
        {
            let json: serde_json::Value = serde_json::from_slice(&msg.data.unwrap()).unwrap();
            candidates.push(json["candidate"]["candidate"].as_str().unwrap().to_owned());
        }
    }
    candidates.sort_by_key(|c| parts(c).0);
    (daemon, candidates)
}

/// `(protocol, address, port)` of a candidate line.
fn parts(candidate: &str) -> (String, String, String) {
    let f: Vec<&str> = candidate.split_whitespace().collect();
    (f[2].to_lowercase(), f[4].to_owned(), f[5].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_change_the_advertised_candidates() {
    // Defaults: the served loopback address and the listening port.
    let (daemon, c) = advertised(&[]).await;
    let port = daemon.media_port.to_string();
    assert_eq!(
        parts(&c[0]),
        ("tcp".into(), "127.0.0.1".into(), port.clone()),
        "{c:?}"
    );
    assert_eq!(
        parts(&c[1]),
        ("udp".into(), "127.0.0.1".into(), port.clone()),
        "{c:?}"
    );
    assert!(c[0].contains("tcptype passive"));
    assert!(
        daemon
            .log_text()
            .contains("every advertised media address is private")
    );

    // A public IP (documentation range) with a single port override.
    let (daemon, c) = advertised(&[
        ("RTCD_RTC_ICEHOSTOVERRIDE", "203.0.113.7"),
        ("RTCD_RTC_ICEHOSTPORTOVERRIDE", "30443"),
    ])
    .await;
    assert_eq!(
        parts(&c[0]),
        ("tcp".into(), "203.0.113.7".into(), "30443".into()),
        "{c:?}"
    );
    assert_eq!(
        parts(&c[1]),
        ("udp".into(), "203.0.113.7".into(), "30443".into()),
        "{c:?}"
    );
    assert!(
        !daemon
            .log_text()
            .contains("every advertised media address is private")
    );

    // A hostname, resolved at startup; the port override applies to its resolved address.
    let (_daemon, c) = advertised(&[
        ("RTCD_RTC_ICEHOSTOVERRIDE", "localhost"),
        ("RTCD_RTC_ICEHOSTPORTOVERRIDE", "30444"),
    ])
    .await;
    assert_eq!(
        parts(&c[1]),
        ("udp".into(), "127.0.0.1".into(), "30444".into()),
        "{c:?}"
    );

    // NAT pairs `external/internal`, and a per-IP port map.
    let (_daemon, c) = advertised(&[
        ("RTCD_RTC_ICEHOSTOVERRIDE", "198.51.100.20/127.0.0.1"),
        (
            "RTCD_RTC_ICEHOSTPORTOVERRIDE",
            "10.9.9.9/31000,127.0.0.1/32000",
        ),
    ])
    .await;
    assert_eq!(
        parts(&c[1]),
        ("udp".into(), "198.51.100.20".into(), "32000".into()),
        "{c:?}"
    );
}
