//! SIGTERM drains: readiness turns false, `/system` steers new calls away, existing calls still
//! accept joins, and the process exits when the last session ends; a second signal exits at
//! once.

mod common;
#[path = "common/rtc_peer.rs"]
mod rtc_peer;

use std::time::Duration;

use common::{Daemon, KEY, base_config, join};
use hyper::Method;
use rtc_peer::RtcPeer;
use rtcd::ws::codec::ServerMessage;

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn drain_waits_for_sessions_then_exits() {
    let (mut daemon, plugin, mut ws) = common::registered_plugin().await;
    let ready = plugin
        .request(Method::GET, "/readyz", None, None)
        .await
        .unwrap();
    assert_eq!(ready.status, 200);
    ws.join(&join("call", "u1", "s1")).await.unwrap();
    assert!(common::wait_sessions(&plugin, "call", 1).await);

    daemon.signal("TERM");
    assert!(
        common::wait_ready_status(&plugin, 503).await,
        "{}",
        daemon.log_text()
    );
    // Operators see why it stopped taking calls.
    assert!(daemon.wait_log("draining before exiting", T));
    let ready = plugin
        .request(Method::GET, "/readyz", None, None)
        .await
        .unwrap();
    assert_eq!(ready.status, 503);
    assert!(plugin.cpu_load().await.unwrap() >= 1.0e6);
    assert_eq!(
        plugin
            .request(Method::GET, "/healthz", None, None)
            .await
            .unwrap()
            .status,
        200
    );

    // The call goes on: a late participant can still join it.
    ws.join(&join("call", "u2", "s2")).await.unwrap();
    let two = common::eventually(T, || async {
        let sessions = plugin.call_sessions("call").await.ok()?.json().ok()?;
        (sessions.as_array()?.len() == 2).then_some(())
    })
    .await;
    assert!(two.is_some());
    assert!(
        daemon.wait_exit(Duration::from_millis(500)).is_none(),
        "exited while sessions remain"
    );

    ws.leave("s1").await.unwrap();
    ws.leave("s2").await.unwrap();
    assert_eq!(
        ws.recv_timeout(T).await.unwrap(),
        ServerMessage::Close {
            session_id: "s1".into()
        }
    );
    assert_eq!(
        ws.recv_timeout(T).await.unwrap(),
        ServerMessage::Close {
            session_id: "s2".into()
        }
    );
    let status = daemon
        .wait_exit(Duration::from_secs(15))
        .expect("exits after the last session");
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn second_signal_exits_at_once() {
    let (mut daemon, plugin, mut ws) = common::registered_plugin().await;
    ws.join(&join("call", "u1", "s1")).await.unwrap();
    assert!(common::wait_sessions(&plugin, "call", 1).await);
    daemon.signal("INT");
    assert!(common::wait_ready_status(&plugin, 503).await);
    daemon.signal("INT");
    let status = daemon
        .wait_exit(Duration::from_secs(12))
        .expect("second signal exits");
    assert!(status.success(), "{status:?}");
    assert!(daemon.log_text().contains("second stop signal"));
}

#[tokio::test]
async fn drain_timeout_closes_remaining_sessions() {
    let mut daemon = Daemon::start(
        &base_config(
            "[api.security]\nallow_self_registration = true\n[rtc]\ndrain_timeout_minutes = 1",
        ),
        &[],
    );
    let plugin = daemon.client_as("mm", KEY);
    plugin.register("mm", KEY).await.unwrap();
    let mut ws = plugin.connect().await.unwrap();
    // A real participant keeps its media session alive through the drain.
    ws.join(&join("call", "u1", "s1")).await.unwrap();
    let (mut peer, offer) = RtcPeer::new();
    rtc_peer::negotiate(&mut ws, "s1", &mut peer, offer).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peer_stop = stop.clone();
    let peer_task = tokio::task::spawn_blocking(move || {
        peer.run_until(Duration::from_secs(90), |_| {
            peer_stop.load(std::sync::atomic::Ordering::Relaxed)
        })
    });
    assert!(common::wait_sessions(&plugin, "call", 1).await);
    let started = std::time::Instant::now();
    daemon.signal("TERM");
    let closed = ws.recv_timeout(Duration::from_secs(75)).await.unwrap();
    assert_eq!(
        closed,
        ServerMessage::Close {
            session_id: "s1".into()
        }
    );
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(59), "closed after {waited:?}");
    let status = daemon
        .wait_exit(Duration::from_secs(15))
        .expect("exits after the drain timeout");
    assert!(status.success(), "{status:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    peer_task.await.unwrap();
}
