//! SFU-side TURN through a real server (Debian's coturn on loopback, REST secret): each session
//! allocates a relay with `<expiry>:<sessionID>` / HMAC-SHA1 credentials and trickles a relay
//! candidate; a peer that only the relay can reach connects, and wrong credentials leave the
//! session on its host candidates with the failure logged.

mod common;
#[path = "common/rtc_peer.rs"]
mod rtc_peer;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::coturn::Coturn;
use common::{join, registered_plugin_with};
use rtc_peer::RtcPeer;
use rtcd::ws::codec::ServerMessage;

const SECRET: &str = "north-wind";

fn coturn() -> Coturn {
    let base = 40_000 + (common::free_port() % 2_000) * 10;
    Coturn::start(&[
        "--use-auth-secret",
        &format!("--static-auth-secret={SECRET}"),
        "--realm=rtcd.test",
        "--relay-ip=127.0.0.1",
        "--allow-loopback-peers",
        &format!("--min-port={base}"),
        &format!("--max-port={}", base + 9),
    ])
}

fn turn_config(port: u16, secret: &str) -> String {
    format!(
        "[rtc]\nice_servers = [{{urls = [\"turn:127.0.0.1:{port}\"]}}]\n\
         [rtc.turn]\nstatic_auth_secret = \"{secret}\"\n"
    )
}

/// Sends the offer and collects the answer plus every trickled candidate for `wait`.
async fn offer_and_collect(
    ws: &mut rtcd::client::WsClient,
    session: &str,
    offer: String,
    wait: Duration,
) -> (String, Vec<String>) {
    rtc_peer::send_offer(ws, session, offer).await;
    let deadline = tokio::time::Instant::now() + wait;
    let mut answer = None;
    let mut candidates = Vec::new();
    while let Ok(Ok(message)) = tokio::time::timeout_at(deadline, ws.recv()).await {
        match message {
            ServerMessage::Rtc(msg) if msg.msg_type == 2 => {
                answer = Some(String::from_utf8(msg.data.unwrap()).unwrap());
            }
            ServerMessage::Rtc(msg) if msg.msg_type == 1 => {
                let candidate = String::from_utf8(msg.data.unwrap()).unwrap();
                let relay = candidate.contains("typ relay");
                candidates.push(candidate);
                if relay && answer.is_some() {
                    break;
                }
            }
            _ => {}
        }
    }
    (answer.expect("no answer"), candidates)
}

/// `candidate:… udp <prio> <ip> <port> typ relay …` → its address.
fn candidate_address(candidate: &str) -> SocketAddr {
    let value: serde_json::Value = serde_json::from_str(candidate).unwrap();
    let line = value["candidate"]["candidate"].as_str().unwrap().to_owned();
    let fields: Vec<&str> = line.split_whitespace().collect();
    format!("{}:{}", fields[4], fields[5]).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_only_the_relay_reaches_connects_through_coturn() {
    let coturn = coturn();
    let (daemon, _plugin, mut ws) = registered_plugin_with(&turn_config(coturn.port, SECRET)).await;
    ws.join(&join("call", "user", "relayed")).await.unwrap();
    let (mut peer, offer) = RtcPeer::new();
    let started = Instant::now();
    let (answer, candidates) =
        offer_and_collect(&mut ws, "relayed", offer, Duration::from_secs(10)).await;
    let relay = candidates
        .iter()
        .find(|c| c.contains("typ relay"))
        .unwrap_or_else(|| {
            panic!(
                "no relay candidate in {candidates:?}\n{}",
                daemon.log_text()
            )
        });
    let relay_gathered = started.elapsed();
    assert!(
        relay.contains(" udp 16777215 "),
        "pion's relay priority: {relay}"
    );
    let relayed = candidate_address(relay);
    assert_ne!(relayed.port(), daemon.media_port, "{relay}");
    assert_ne!(relayed.port(), coturn.port, "{relay}");

    // The peer learns only the relay candidate and hears only from the relay.
    let answer_without_candidates: String = {
        let value: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let sdp: String = value["sdp"]
            .as_str()
            .unwrap()
            .split("\r\n")
            .filter(|l| !l.starts_with("a=candidate"))
            .map(|l| format!("{l}\r\n"))
            .collect();
        serde_json::json!({"type": "answer", "sdp": sdp.trim_end_matches("\r\n").to_owned() + "\r\n"})
            .to_string()
    };
    peer.apply_answer(&answer_without_candidates);
    peer.add_candidate(relay);
    peer.only_from = Some(relayed);

    let peer = tokio::task::spawn_blocking(move || {
        let open = peer.run_until(Duration::from_secs(15), |p| p.dc_open);
        assert!(
            open,
            "data channel did not open over the relay (state {:?})",
            peer.state
        );
        peer.send_dc(&[0x01]); // ping
        let ponged = peer.run_until(Duration::from_secs(5), |p| !p.dc_messages.is_empty());
        assert!(ponged, "no pong over the relay");
        peer
    })
    .await
    .unwrap();
    let connected = started.elapsed();
    assert_eq!(peer.dc_messages[0], [0xcc, 0x02]);
    println!(
        "relay candidate {relayed} after {relay_gathered:?}; connected through coturn after {connected:?}"
    );
    let log = daemon.log_text();
    assert!(log.contains("TURN relay allocated"), "{log}");

    // Leaving releases the allocation (coturn logs the deletion).
    ws.leave("relayed").await.unwrap();
    let released = common::poll(Duration::from_secs(5), || {
        let log = coturn.log_text();
        log.contains("REFRESH processed, success") || log.contains("closed (2nd stage)")
    });
    assert!(
        released,
        "coturn did not see the allocation released:\n{}",
        coturn.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_logged_and_host_candidates_still_work() {
    let coturn = coturn();
    let (daemon, _plugin, mut ws) =
        registered_plugin_with(&turn_config(coturn.port, "not-the-secret")).await;
    ws.join(&join("call", "user", "hostonly")).await.unwrap();
    let (mut peer, offer) = RtcPeer::new();
    let (answer, candidates) =
        offer_and_collect(&mut ws, "hostonly", offer, Duration::from_secs(3)).await;
    assert!(
        candidates.iter().all(|c| !c.contains("typ relay")),
        "{candidates:?}"
    );
    assert!(
        daemon.wait_log("TURN allocation failed", Duration::from_secs(5)),
        "{}",
        daemon.log_text()
    );
    peer.apply_answer(&answer);
    for candidate in &candidates {
        peer.add_candidate(candidate);
    }
    let peer = tokio::task::spawn_blocking(move || {
        peer.run_until(Duration::from_secs(10), |p| p.dc_open);
        peer
    })
    .await
    .unwrap();
    assert!(peer.dc_open, "host path broken by a failed TURN allocation");
    let log = daemon.log_text();
    assert!(log.contains("401"), "the failure names the cause: {log}");
}
