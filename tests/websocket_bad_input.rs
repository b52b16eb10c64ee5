//! Garbage on the plugin WebSocket: every bad message is dropped and logged while the
//! connection keeps working; only a message over 1 MiB closes (that) connection.

mod common;

use std::time::Duration;

use common::{Daemon, KEY, base_config, join};
use rtcd::ws::codec::{self, RtcMessage, ServerMessage};
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn bad_messages_are_dropped_and_the_connection_stays() {
    let (daemon, plugin, mut ws) = common::registered_plugin().await;
    let mut bystander = plugin.connect().await.unwrap();
    bystander
        .join(&join("call-b", "u", "bystander"))
        .await
        .unwrap();

    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xc1],
        b"\xff\xfe\xfd garbage".to_vec(),
        vec![0xa5, b'l', b'e', b'a'], // truncated type string
        vec![0xa3, b'r', b't', b'c', 0xc6, 0xff, 0xff, 0xff, 0xff], // bin32 claiming 4 GiB
        codec::encode_close("bystander"), // rtcd-only type from a client
        [vec![0xa7], b"unknown".to_vec(), vec![0xc0]].concat(),
        [vec![0xa4], b"join".to_vec(), vec![0xc0]].concat(), // join without data
        [
            vec![0xa4],
            b"join".to_vec(),
            vec![0x81, 0xa6],
            b"callID".to_vec(),
            vec![0xa1, b'c'],
        ]
        .concat(), // missing fields
        [vec![0xa5], b"leave".to_vec(), vec![0x80]].concat(), // empty map
        codec::encode_rtc(&RtcMessage {
            session_id: "ghost".into(),
            msg_type: 2,
            data: Some(b"{}".to_vec()),
            ..Default::default()
        }),
        codec::encode_rtc(&RtcMessage {
            session_id: "bystander".into(),
            msg_type: 99,
            ..Default::default()
        }),
        codec::encode_rtc(&RtcMessage {
            session_id: "bystander".into(),
            msg_type: 5,
            data: Some(b"not json".to_vec()),
            ..Default::default()
        }),
        codec::encode_leave("never-joined"),
    ];
    for frame in garbage {
        ws.send_raw(frame).await.unwrap();
    }
    ws.send(Message::Text("hello?".into())).await.unwrap();

    // Still serving: a valid join on the same connection works.
    ws.join(&join("call-a", "u", "s-a")).await.unwrap();
    let listed = common::eventually(T, || async {
        let r = plugin.call_sessions("call-a").await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    assert!(listed.is_some(), "join after garbage not processed");
    // The bystander's session was not touched by the forged close/rtc frames.
    assert_eq!(plugin.call_sessions("call-b").await.unwrap().status, 200);
    assert!(
        daemon.wait_log("message dropped", T),
        "bad messages must be logged"
    );
    ws.leave("s-a").await.unwrap();
    assert_eq!(
        ws.recv_timeout(T).await.unwrap(),
        ServerMessage::Close {
            session_id: "s-a".into()
        }
    );
}

#[tokio::test]
async fn oversize_message_closes_only_that_connection() {
    let daemon = Daemon::start(
        &base_config("[api.security]\nallow_self_registration = true"),
        &[],
    );
    let plugin = daemon.client_as("mm", KEY);
    plugin.register("mm", KEY).await.unwrap();
    let mut big = plugin.connect().await.unwrap();
    let mut other = plugin.connect().await.unwrap();

    // Exactly at the limit is accepted (and dropped as garbage)...
    big.send_raw(vec![0xc1; 1 << 20]).await.unwrap();
    big.join(&join("call", "u", "s1")).await.unwrap();
    assert!(
        common::eventually(T, || async {
            (plugin.call_sessions("call").await.ok()?.status == 200).then_some(())
        })
        .await
        .is_some()
    );
    // ...one byte more closes the connection with 1009.
    big.send_raw(vec![0xc1; (1 << 20) + 1]).await.unwrap();
    let err = big.recv_timeout(T).await.unwrap_err().to_string();
    assert!(
        err.contains("code: Size"),
        "expected close code 1009, got {err}"
    );

    // The other connection and the stored client are unaffected.
    other.join(&join("call", "u2", "s2")).await.unwrap();
    other.leave("s2").await.unwrap();
    assert_eq!(
        other.recv_timeout(T).await.unwrap(),
        ServerMessage::Close {
            session_id: "s2".into()
        }
    );
    plugin.connect().await.unwrap();
}
