//! A participant's media session over the real UDP media port: the SFU answers the first
//! offer (WebSocket), trickles its candidates, ICE/DTLS/SCTP connect, and the data-channel
//! protocol answers ping and lock requests.

mod common;
#[path = "common/rtc_peer.rs"]
mod rtc_peer;

use std::time::Duration;

use common::{Daemon, KEY, base_config, join};
use rtc_peer::RtcPeer;
use rtcd::ws::codec::ServerMessage;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_answer_ice_dtls_and_data_channel() {
    let (daemon, _plugin, mut ws) = common::registered_plugin().await;
    ws.join(&join("call", "user", "sess")).await.unwrap();

    let (mut peer, offer) = RtcPeer::new();
    rtc_peer::send_offer(&mut ws, "sess", offer).await;

    // Collect the answer and the trickled candidates.
    let mut answer = None;
    let mut candidates = Vec::new();
    while answer.is_none() || candidates.len() < 2 {
        match ws.recv_timeout(Duration::from_secs(5)).await.unwrap() {
            ServerMessage::Rtc(msg) if msg.msg_type == 2 => {
                answer = Some(String::from_utf8(msg.data.unwrap()).unwrap());
            }
            ServerMessage::Rtc(msg) if msg.msg_type == 1 => {
                assert_eq!(
                    (
                        msg.group_id.as_str(),
                        msg.call_id.as_str(),
                        msg.user_id.as_str()
                    ),
                    ("mm", "call", "user")
                );
                candidates.push(String::from_utf8(msg.data.unwrap()).unwrap());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let answer = answer.unwrap();
    assert!(answer.contains("a=setup:active"), "{answer}");
    peer.apply_answer(&answer);
    for candidate in &candidates {
        peer.add_candidate(candidate);
    }
    assert!(
        candidates
            .iter()
            .any(|c| c.contains(" udp ") || c.contains(" UDP ")),
        "{candidates:?}"
    );

    let peer = tokio::task::spawn_blocking(move || {
        let open = peer.run_until(Duration::from_secs(10), |p| p.dc_open);
        assert!(open, "data channel did not open (state {:?})", peer.state);
        peer.send_dc(&[0x01]); // ping (browser encoding)
        peer.send_dc(&[0x07]); // lock
        peer.send_dc(&[0x07]); // lock again: refused
        peer.send_dc(&[0x08]); // unlock
        peer.send_dc(b"ping"); // legacy text ping
        let replied = peer.run_until(Duration::from_secs(5), |p| p.dc_messages.len() >= 4);
        assert!(replied, "replies: {:?}", peer.dc_messages);
        peer
    })
    .await
    .unwrap();
    assert!(peer.connected);
    assert_eq!(peer.dc_messages[0], [0xcc, 0x02]);
    assert_eq!(peer.dc_messages[1], [0xcc, 0x07, 0xc3]);
    assert_eq!(peer.dc_messages[2], [0xcc, 0x07, 0xc2]);
    assert_eq!(peer.dc_messages[3], b"pong");
    assert!(
        daemon.wait_log("media connected", Duration::from_secs(2)),
        "{}",
        daemon.log_text()
    );

    // Leaving closes the media session too.
    ws.leave("sess").await.unwrap();
    assert_eq!(
        ws.recv_timeout(Duration::from_secs(5)).await.unwrap(),
        ServerMessage::Close {
            session_id: "sess".into()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_tcp_when_udp_is_not_an_option() {
    let (_daemon, _plugin, mut ws) = common::registered_plugin().await;
    ws.join(&join("call", "user", "tcp-sess")).await.unwrap();
    let (mut peer, offer) = RtcPeer::tcp_only();
    let candidates = rtc_peer::negotiate(&mut ws, "tcp-sess", &mut peer, offer).await;
    let tcp = candidates
        .iter()
        .find(|c| c.contains("tcptype passive"))
        .expect("a passive TCP candidate");
    assert!(
        tcp.contains(" 1671430143 "),
        "pion's TCP host priority: {tcp}"
    );
    let peer = tokio::task::spawn_blocking(move || {
        let open = peer.run_until(Duration::from_secs(10), |p| p.dc_open);
        assert!(
            open,
            "data channel over ICE-TCP did not open (state {:?})",
            peer.state
        );
        peer.send_dc(&[0x01]);
        assert!(peer.run_until(Duration::from_secs(5), |p| !p.dc_messages.is_empty()));
        peer
    })
    .await
    .unwrap();
    assert_eq!(peer.dc_messages[0], [0xcc, 0x02]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_loopback_when_enabled() {
    let env = [
        ("RTCD_RTC_ENABLEIPV6", "true"),
        ("RTCD_RTC_ICEADDRESSUDP", "::1"),
        ("RTCD_RTC_ICEADDRESSTCP", "::1"),
    ];
    let daemon = Daemon::start(
        &base_config("[api.security]\nallow_self_registration = true"),
        &env,
    );
    let plugin = daemon.client_as("mm", KEY);
    plugin.register("mm", KEY).await.unwrap();
    let mut ws = plugin.connect().await.unwrap();
    ws.join(&join("call", "user", "v6")).await.unwrap();
    let (mut peer, offer) = RtcPeer::ipv6();
    let candidates = rtc_peer::negotiate(&mut ws, "v6", &mut peer, offer).await;
    assert!(
        candidates.iter().all(|c| c.contains(" ::1 ")),
        "{candidates:?}"
    );
    let peer = tokio::task::spawn_blocking(move || {
        assert!(
            peer.run_until(Duration::from_secs(10), |p| p.dc_open),
            "no connection over ::1 ({:?})",
            peer.state
        );
        peer
    })
    .await
    .unwrap();
    assert!(peer.connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_offers_close_only_that_session() {
    let (_daemon, plugin, mut ws) = common::registered_plugin().await;
    // A healthy participant first.
    let good = rtc_peer::connect(&mut ws, "call", "good", false).await;
    let good = tokio::task::spawn_blocking(move || {
        let mut good = good;
        assert!(good.run_until(Duration::from_secs(10), |p| p.dc_open));
        good
    })
    .await
    .unwrap();

    let broken = [
        ("not-json", "this is not json".to_owned()),
        (
            "pranswer",
            r#"{"type":"pranswer","sdp":"v=0\r\n"}"#.to_owned(),
        ),
        (
            "garbage-sdp",
            r#"{"type":"offer","sdp":"garbage\r\nm=nonsense\r\n"}"#.to_owned(),
        ),
        ("no-fingerprint", {
            let (_, offer) = RtcPeer::new();
            let value: serde_json::Value = serde_json::from_str(&offer).unwrap();
            let sdp: String = value["sdp"]
                .as_str()
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with("a=fingerprint"))
                .map(|l| format!("{l}\r\n"))
                .collect();
            serde_json::json!({"type": "offer", "sdp": sdp}).to_string()
        }),
    ];
    for (session, offer) in &broken {
        ws.join(&join("call", "u", session)).await.unwrap();
        rtc_peer::send_offer(&mut ws, session, offer.clone()).await;
    }
    let started = std::time::Instant::now();
    let mut closed = Vec::new();
    while closed.len() < broken.len() {
        match ws.recv_timeout(Duration::from_secs(15)).await.unwrap() {
            ServerMessage::Close { session_id } => closed.push(session_id),
            ServerMessage::Rtc(msg) => assert_ne!(
                msg.msg_type, 2,
                "answered a broken offer for {}",
                msg.session_id
            ),
            _ => {}
        }
    }
    closed.sort();
    let mut expected: Vec<String> = broken.iter().map(|(s, _)| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(closed, expected);
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    // The healthy session is untouched and still answers on its data channel.
    let good = tokio::task::spawn_blocking(move || {
        let mut good = good;
        good.send_dc(&[0x01]);
        assert!(good.run_until(Duration::from_secs(5), |p| !p.dc_messages.is_empty()));
        good
    })
    .await
    .unwrap();
    assert_eq!(good.dc_messages[0], [0xcc, 0x02]);
    let sessions = plugin.call_sessions("call").await.unwrap().json().unwrap();
    assert_eq!(sessions.as_array().unwrap().len(), 1);
}

/// ICE failure ends the session, tells the plugin (`close`) and frees its routes, and the log
/// says why: one client never sends a single check, another connects and then goes silent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sessions_close_with_their_cause() {
    let (daemon, plugin, mut ws) = common::registered_plugin().await;
    ws.join(&join("call", "mute-peer", "never")).await.unwrap();
    ws.join(&join("call", "gone-peer", "vanishes"))
        .await
        .unwrap();

    // "never" answers nothing: its peer is never run.
    let (mut silent, offer) = RtcPeer::new();
    rtc_peer::negotiate(&mut ws, "never", &mut silent, offer).await;
    // "vanishes" connects, then stops answering.
    let (mut peer, offer) = RtcPeer::new();
    rtc_peer::negotiate(&mut ws, "vanishes", &mut peer, offer).await;
    let peer = tokio::task::spawn_blocking(move || {
        assert!(peer.run_until(Duration::from_secs(10), |p| p.dc_open));
        peer
    })
    .await
    .unwrap();
    drop(peer);
    let started = std::time::Instant::now();

    let mut closed = Vec::new();
    while closed.len() < 2 {
        if let ServerMessage::Close { session_id } =
            ws.recv_timeout(Duration::from_secs(45)).await.unwrap()
        {
            closed.push(session_id);
        }
    }
    closed.sort();
    assert_eq!(closed, ["never", "vanishes"]);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(40),
        "failure detected after {waited:?}"
    );
    // The cause is logged as the session closes: the plugin's `close` may arrive first.
    for cause in ["no ICE check received from the client", "consent lost"] {
        assert!(
            daemon.wait_log(cause, Duration::from_secs(3)),
            "{cause}: {}",
            daemon.log_text()
        );
    }
    // Routes freed: the call has no sessions left.
    let sessions = plugin.call_sessions("call").await.unwrap();
    assert_eq!(sessions.status, 404, "{:?}", sessions.body);
    // Each cause is counted under its label; the session that connected logged its pair.
    let metrics = plugin
        .request(hyper::Method::GET, "/metrics", None, None)
        .await
        .unwrap()
        .text();
    for cause in ["no_ice_check", "consent_lost"] {
        assert_eq!(
            common::metric_value(
                &metrics,
                &format!("rtcd_rtc_session_failures_total{{cause=\"{cause}\"}} ")
            ),
            Some(1.0),
            "{cause}: {metrics}"
        );
    }
    let connected = daemon
        .log_text()
        .lines()
        .find(|l| l.contains("selected candidate pair"))
        .map(str::to_owned)
        .expect("the selected candidate pair is logged");
    assert!(
        connected.contains("protocol=\"udp\"") || connected.contains("protocol=udp"),
        "{connected}"
    );
    assert!(connected.contains("INFO"), "{connected}");
    drop(silent);
}
