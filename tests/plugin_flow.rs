//! The Calls plugin's whole conversation with rtcd: version gate, self-registration,
//! WebSocket + hello, joins, sessions API, leave → close, reconnect re-routing, unregister.

mod common;

use std::time::Duration;

use common::{Daemon, KEY, base_config, join};
use rtcd::ws::codec::ServerMessage;

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn plugin_flow_end_to_end() {
    let daemon = Daemon::start(
        &base_config(
            "[api.security]\nallow_self_registration = true\nenable_admin = true\nadmin_secret_key = \"operator-secret\"",
        ),
        &[],
    );
    let plugin = daemon.client_as("mm-installation", KEY);

    // Version gate: a semver >= 1.2.6 (build metadata aside).
    let version = plugin.version().await.unwrap();
    let core = version.build_version.trim_start_matches('v');
    let core = core.split('+').next().unwrap();
    let parts: Vec<u64> = core.split('.').map(|p| p.parse().unwrap()).collect();
    assert!(
        parts >= vec![1, 2, 6],
        "buildVersion {}",
        version.build_version
    );
    assert!(plugin.cpu_load().await.unwrap().is_finite());

    // The plugin first tries the WebSocket; unregistered credentials are refused (401).
    assert!(plugin.connect().await.is_err());
    plugin.register("mm-installation", KEY).await.unwrap();
    let mut ws = plugin.connect().await.unwrap();
    assert_eq!(ws.client_id, "mm-installation");
    assert_eq!(ws.conn_id.len(), 26);

    // Two participants join one call.
    ws.join(&join("call1", "user1", "sess1")).await.unwrap();
    ws.join(&join("call1", "user2", "sess2")).await.unwrap();
    let sessions = common::eventually(T, || async {
        let response = plugin.call_sessions("call1").await.ok()?;
        let sessions = response.json().ok()?;
        (sessions.as_array()?.len() == 2).then_some(sessions)
    })
    .await
    .expect("two sessions listed");
    let mut ids: Vec<_> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["SessionID"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["sess1", "sess2"]);
    let one = plugin
        .request(
            hyper::Method::GET,
            "/calls/call1/sessions/sess1",
            plugin.auth_header().as_deref(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(one.status, 200);
    assert_eq!(
        one.text(),
        "{\"GroupID\":\"mm-installation\",\"CallID\":\"call1\",\"UserID\":\"user1\",\"SessionID\":\"sess1\",\"Props\":{\"av1Support\":false,\"channelID\":\"channel-call1\",\"dcSignaling\":true}}\n"
    );

    // Leave → close on the same connection.
    ws.leave("sess1").await.unwrap();
    assert_eq!(
        ws.recv_timeout(T).await.unwrap(),
        ServerMessage::Close {
            session_id: "sess1".into()
        }
    );

    // The user's Mattermost connection moves to another node: that node's plugin connection
    // sends reconnect, and signaling (here: the close) follows it.
    let mut ws2 = plugin.connect().await.unwrap();
    assert_ne!(ws2.conn_id, ws.conn_id);
    ws2.reconnect("sess2").await.unwrap();
    // Reconnect for an unknown session is ignored (no routing entry created).
    ws2.reconnect("nobody").await.unwrap();
    // Frames of one connection are handled in order, so the leave sent after the reconnect on
    // the new connection finds the route already moved (upstream would still answer the
    // join connection).
    ws2.leave("sess2").await.unwrap();
    assert_eq!(
        ws2.recv_timeout(T).await.unwrap(),
        ServerMessage::Close {
            session_id: "sess2".into()
        }
    );
    assert!(
        ws.recv_timeout(Duration::from_millis(300)).await.is_err(),
        "close went to the old node"
    );

    // The call has ended.
    let ended = plugin.call_sessions("call1").await.unwrap();
    assert_eq!(ended.status, 404);
    assert_eq!(
        ended.text(),
        "failed to get session configs: group not found\n"
    );

    // Metrics carry upstream names.
    let metrics = plugin
        .request(hyper::Method::GET, "/metrics", None, None)
        .await
        .unwrap()
        .text();
    assert!(
        metrics.contains("rtcd_ws_connections_total{clientID=\"mm-installation\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "rtcd_ws_messages_total{clientID=\"mm-installation\",type=\"join\",direction=\"in\"} 2"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("rtcd_rtc_sessions_total{groupID=\"mm-installation\"} 0"),
        "{metrics}"
    );

    // Unregister (the client itself); its credentials stop working for new connections.
    plugin.unregister("mm-installation").await.unwrap();
    assert!(plugin.connect().await.is_err());
    ws.close().await;
    ws2.close().await;
}

#[tokio::test]
async fn session_without_offer_is_closed_after_ten_seconds() {
    let (_daemon, plugin, mut ws) = common::registered_plugin().await;
    let started = std::time::Instant::now();
    ws.join(&join("call", "user", "quiet")).await.unwrap();
    let message = ws.recv_timeout(Duration::from_secs(15)).await.unwrap();
    assert_eq!(
        message,
        ServerMessage::Close {
            session_id: "quiet".into()
        }
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(13),
        "{waited:?}"
    );
    assert_eq!(plugin.call_sessions("call").await.unwrap().status, 404);
}
