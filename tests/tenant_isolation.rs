//! One client (Mattermost installation) can never see or act on another client's sessions.

mod common;

use std::time::Duration;

use common::{Daemon, KEY, base_config, join};
use rtcd::ws::codec::{RtcMessage, ServerMessage};

#[tokio::test]
async fn clients_cannot_touch_each_others_sessions() {
    let daemon = Daemon::start(
        &base_config("[api.security]\nallow_self_registration = true"),
        &[],
    );
    let alice = daemon.client_as("install-a", KEY);
    let mallory = daemon.client_as("install-b", KEY);
    alice.register("install-a", KEY).await.unwrap();
    mallory.register("install-b", KEY).await.unwrap();
    let mut a = alice.connect().await.unwrap();
    let mut m = mallory.connect().await.unwrap();

    a.join(&join("shared-call-id", "ua", "victim"))
        .await
        .unwrap();
    let joined = common::eventually(Duration::from_secs(5), || async {
        (alice.call_sessions("shared-call-id").await.ok()?.status == 200).then_some(())
    })
    .await;
    assert!(joined.is_some());
    // Mallory targets the victim's session in every way the protocol allows.
    m.leave("victim").await.unwrap();
    m.reconnect("victim").await.unwrap();
    m.rtc(&RtcMessage {
        session_id: "victim".into(),
        msg_type: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    // And joins with the same session ID into its own group: refused (global session keys).
    m.join(&join("shared-call-id", "um", "victim"))
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen_by_mallory = mallory.call_sessions("shared-call-id").await.unwrap();
    assert_eq!(seen_by_mallory.status, 404);
    let seen_by_alice = alice.call_sessions("shared-call-id").await.unwrap();
    assert_eq!(seen_by_alice.status, 200);
    let sessions = seen_by_alice.json().unwrap();
    assert_eq!(sessions.as_array().unwrap().len(), 1);
    assert_eq!(sessions[0]["GroupID"], "install-a");

    // Routing was not hijacked: the close reaches Alice, nothing reaches Mallory.
    a.leave("victim").await.unwrap();
    assert_eq!(
        a.recv_timeout(Duration::from_secs(5)).await.unwrap(),
        ServerMessage::Close {
            session_id: "victim".into()
        }
    );
    assert!(m.recv_timeout(Duration::from_millis(300)).await.is_err());
}
