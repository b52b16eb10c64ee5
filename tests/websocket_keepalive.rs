//! Keepalive of the plugin WebSocket: rtcd pings every 10 s and drops a connection that sends
//! no pong for 20 s; a client that answers pings stays connected.

mod common;

use std::time::Duration;

use common::{Daemon, KEY, base_config};
use futures_util::StreamExt as _;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest as _};

// Multi-threaded: the answering peer's task must run while this test blocks polling the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_is_dropped_and_answering_peer_stays() {
    let daemon = Daemon::start(
        &base_config("[api.security]\nallow_self_registration = true"),
        &[],
    );
    let plugin = daemon.client_as("mm", KEY);
    plugin.register("mm", KEY).await.unwrap();

    // A peer that reads (so the library answers pings) stays.
    let mut answering = plugin.connect().await.unwrap();
    let answering_task = tokio::spawn(async move {
        // recv() keeps polling the socket; it only returns on a message or an error.
        answering.recv_timeout(Duration::from_secs(24)).await
    });

    // A peer that never reads never sends a pong.
    let url = daemon.url.replace("http://", "ws://") + "/ws";
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        plugin.auth_header().unwrap().parse().unwrap(),
    );
    let (mut silent, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    assert!(
        daemon.wait_log("no pong within", Duration::from_secs(25)),
        "silent connection not dropped; log:\n{}",
        daemon.log_text()
    );
    // The silent peer now sees the server's pings followed by the end of the stream.
    let mut pings = 0;
    while let Some(Ok(message)) = silent.next().await {
        if let Message::Ping(_) = message {
            pings += 1;
        }
    }
    assert!(pings >= 1, "rtcd sent no ping");
    // Only one connection was dropped for missing pongs.
    assert_eq!(daemon.log_text().matches("no pong within").count(), 1);
    let answered = answering_task.await.unwrap();
    assert!(
        matches!(answered, Err(rtcd::client::ClientError::Timeout)),
        "{answered:?}"
    );
}
