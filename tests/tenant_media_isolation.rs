//! Two tenants (Mattermost installations) that use the same call ID are two calls in the media
//! plane: no packet, track, voice-activity event or screen-share refusal crosses between them.

mod common;
#[path = "common/rtc_peer.rs"]
mod rtc_peer;

use std::time::Duration;

use common::{Daemon, KEY, base_config};
use rtc_peer::connect;
use rtcd::ws::codec::{RtcMessage, ServerMessage, rtc_type};

const CALL: &str = "the-same-call-id";

fn screen_on(session: &str) -> RtcMessage {
    RtcMessage {
        session_id: session.into(),
        msg_type: rtc_type::SCREEN_ON,
        data: Some(br#"{"screenStreamID":"screen"}"#.to_vec()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_call_id_in_two_groups_is_two_calls() {
    let daemon = Daemon::start(
        &base_config("[api.security]\nallow_self_registration = true"),
        &[],
    );
    let alice = daemon.client_as("install-a", KEY);
    let bob = daemon.client_as("install-b", KEY);
    alice.register("install-a", KEY).await.unwrap();
    bob.register("install-b", KEY).await.unwrap();
    let mut a = alice.connect().await.unwrap();
    let mut b = bob.connect().await.unwrap();

    // Each tenant has a listener in "its" call; the two calls share the call ID.
    let mut listeners = Vec::new();
    for (ws, session) in [(&mut a, "a-listener"), (&mut b, "b-listener")] {
        let peer = connect(ws, CALL, session, false).await;
        let peer = tokio::task::spawn_blocking(move || {
            let mut peer = peer;
            assert!(peer.run_until(Duration::from_secs(10), |p| p.dc_open));
            peer
        })
        .await
        .unwrap();
        listeners.push(peer);
    }
    let speaker = connect(&mut a, CALL, "a-speaker", true).await;

    // Alice's speaker shares a screen: Bob's participant may still share in Bob's call, while
    // a second sharer in Alice's own call is refused (the check that shows refusals happen).
    a.rtc(&screen_on("a-speaker")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.rtc(&screen_on("b-listener")).await.unwrap();
    a.rtc(&screen_on("a-listener")).await.unwrap();

    let speaker_thread = std::thread::spawn(move || {
        let mut speaker = speaker;
        speaker.level_pattern = vec![30, 80];
        assert!(speaker.run_until(Duration::from_secs(10), |p| p.connected));
        for _ in 0..150 {
            speaker.send_audio();
            speaker.run_until(Duration::from_millis(20), |_| false);
        }
    });
    let listener_threads: Vec<_> = listeners
        .into_iter()
        .map(|mut p| {
            std::thread::spawn(move || {
                p.run_until(Duration::from_secs(6), |_| false);
                p
            })
        })
        .collect();
    speaker_thread.join().unwrap();
    let listeners: Vec<_> = listener_threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let (alice_listener, bob_listener) = (&listeners[0], &listeners[1]);

    let alice_got: usize = alice_listener.received.values().sum();
    assert!(
        alice_got >= 50,
        "the same tenant's listener got only {alice_got} packets"
    );
    assert!(
        bob_listener.received.is_empty(),
        "the other tenant's listener received {:?}",
        bob_listener.received
    );
    assert_eq!(
        bob_listener.server_offers, 0,
        "a track was offered across tenants"
    );
    assert!(
        bob_listener
            .media_maps
            .iter()
            .all(|m| !String::from_utf8_lossy(m).contains("a-speaker")),
        "a MediaMap named the other tenant's speaker"
    );

    // Voice activity reached Alice's connection only.
    let mut alice_vad = 0;
    while let Ok(message) = a.recv_timeout(Duration::from_millis(300)).await {
        if let ServerMessage::Vad(msg) = message {
            assert_eq!(msg.group_id, "install-a");
            alice_vad += 1;
        }
    }
    assert!(alice_vad > 0, "no voice activity for Alice's speaker");
    while let Ok(message) = b.recv_timeout(Duration::from_millis(300)).await {
        assert!(
            !matches!(message, ServerMessage::Vad(_)),
            "Bob got a voice event: {message:?}"
        );
    }

    let log = daemon.log_text();
    let refused = |session: &str| {
        log.lines()
            .any(|l| l.contains("screen share refused") && l.contains(session))
    };
    assert!(
        refused("a-listener"),
        "the same call's second sharer was not refused"
    );
    assert!(
        !refused("b-listener"),
        "the other tenant's screen share was refused"
    );
}
