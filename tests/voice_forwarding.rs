//! Voice from one participant reaches another through the SFU: the publisher's track is
//! offered to the receiver by a server renegotiation over the data channel (MediaMap first),
//! and the packets arrive on a track named `voice_<publisher>_<8 chars>`.

mod common;
#[path = "common/rtc_peer.rs"]
mod rtc_peer;

use std::time::Duration;

use rtc_peer::connect;
use rtcd::ws::codec::{RtcMessage, ServerMessage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_reaches_the_other_participant() {
    let (daemon, plugin, mut ws) = common::registered_plugin().await;

    let listener = connect(&mut ws, "call", "listener", false).await;
    let listener = tokio::task::spawn_blocking(move || {
        let mut listener = listener;
        assert!(
            listener.run_until(Duration::from_secs(10), |p| p.dc_open),
            "listener not connected"
        );
        listener
    })
    .await
    .unwrap();
    let speaker = connect(&mut ws, "call", "speaker", true).await;

    let speaker_thread = std::thread::spawn(move || {
        let mut speaker = speaker;
        // Speech-like levels: the level swings, so the SFU's VAD turns voice on.
        speaker.level_pattern = vec![30, 80];
        assert!(
            speaker.run_until(Duration::from_secs(10), |p| p.connected),
            "speaker not connected"
        );
        // 3 s of 20 ms packets.
        for _ in 0..150 {
            speaker.send_audio();
            speaker.run_until(Duration::from_millis(20), |_| false);
        }
        speaker
    });
    let listener_thread = std::thread::spawn(move || {
        let mut listener = listener;
        listener.run_until(Duration::from_secs(6), |p| {
            p.received.values().any(|n| *n >= 50)
        });
        listener
    });
    let _speaker = speaker_thread.join().unwrap();
    let listener = listener_thread.join().unwrap();

    assert!(
        listener.server_offers >= 1,
        "no server offer reached the listener"
    );
    assert!(
        listener.order.starts_with("mo"),
        "MediaMap must precede the offer: {}",
        listener.order
    );
    let map = &listener.media_maps[0];
    let map_text = String::from_utf8_lossy(map);
    assert!(
        map_text.contains("voice") && map_text.contains("speaker"),
        "{map:?}"
    );
    let (track, packets) = listener
        .received
        .iter()
        .max_by_key(|(_, n)| **n)
        .expect("no media received");
    assert!(track.starts_with("voice_speaker_"), "track id {track}");
    assert!(*packets >= 50, "only {packets} packets");
    assert!(
        listener.received_with_level >= 50,
        "forwarded audio lost its audio level"
    );

    // The plugin heard VoiceOn for the speaker (with the ids it needs), and VoiceOff on mute.
    let mut voice_on = false;
    while let Ok(message) = ws.recv_timeout(Duration::from_millis(500)).await {
        if let ServerMessage::Vad(msg) = message {
            assert_eq!(
                (
                    msg.session_id.as_str(),
                    msg.user_id.as_str(),
                    msg.call_id.as_str()
                ),
                ("speaker", "user-speaker", "call")
            );
            voice_on |= msg.msg_type == 7;
        }
    }
    assert!(voice_on, "no VoiceOn for the speaker");
    ws.rtc(&RtcMessage {
        session_id: "speaker".into(),
        msg_type: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let off = loop {
        match ws.recv_timeout(Duration::from_secs(3)).await.unwrap() {
            ServerMessage::Vad(msg) => break msg,
            _ => continue,
        }
    };
    assert_eq!((off.session_id.as_str(), off.msg_type), ("speaker", 8));

    // Media metrics under upstream names.
    let metrics = plugin
        .request(hyper::Method::GET, "/metrics", None, None)
        .await
        .unwrap()
        .text();
    for needle in [
        "rtcd_rtc_conn_states_total{type=\"connected\"} 2",
        "rtcd_rtc_rtp_tracks_total{groupID=\"mm\",direction=\"in\",type=\"audio/opus\"} 1",
        "rtcd_rtc_rtp_tracks_total{groupID=\"mm\",direction=\"out\",type=\"audio/opus\"} 1",
        "rtcd_rtc_connection_time_count{groupID=\"mm\"} 2",
        "rtcd_rtc_dc_open_time_count{groupID=\"mm\"} 2",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    // On kernels that hash connected UDP sockets by 4-tuple, both clients' flows were read
    // from their own connected socket by the worker (the voice above came that way).
    if rtcd::net::flows::supported() {
        assert_eq!(
            common::metric_value(&metrics, "rtcd_rtc_connected_flows "),
            Some(2.0),
            "{metrics}"
        );
    }

    // The voice went out on the direct path (the session's own SRTP, not the core's write
    // path): counted at the sessions' next quality sample (every 5 s).
    let direct = common::eventually(Duration::from_secs(10), || async {
        let metrics = plugin
            .request(hyper::Method::GET, "/metrics", None, None)
            .await
            .unwrap()
            .text();
        common::metric_value(&metrics, "rtcd_rtc_direct_audio_packets_total ")
            .filter(|&packets| packets >= 50.0)
    })
    .await;
    assert!(
        direct.is_some(),
        "fewer than 50 packets on the direct audio path within 10 s"
    );

    // The families a Calls dashboard reads have samples: sampled write times of the voice
    // legs, the signaling lock the SFU took for its offer to the listener; and a gzip scrape
    // (what Prometheus asks for) decodes to the same exposition.
    let (headers, body) = scrape_gzip(&daemon.url);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-encoding: gzip"),
        "{headers}"
    );
    let mut metrics = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut metrics)
        .expect("a gzip body");
    for series in [
        "rtcd_rtc_rtp_tracks_writes_time_count{groupID=\"mm\",type=\"voice\"} ",
        "rtcd_rtc_signaling_lock_grab_time_count{groupID=\"mm\"} ",
        "rtcd_rtc_signaling_lock_locked_time_count{groupID=\"mm\"} ",
        "rtcd_process_max_fds ",
    ] {
        let value = common::metric_value(&metrics, series);
        assert!(value.is_some_and(|v| v > 0.0), "{series}: {value:?}");
    }
}

/// `GET /metrics` with `Accept-Encoding: gzip`: the response's headers and raw body.
fn scrape_gzip(url: &str) -> (String, Vec<u8>) {
    use std::io::{Read as _, Write as _};
    let authority = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {authority}\r\nAccept-Encoding: gzip, deflate\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let headers = String::from_utf8_lossy(&response[..split]).into_owned();
    (headers, response[split + 4..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_on_the_media_port_does_not_disturb_a_call() {
    let (daemon, plugin, mut ws) = common::registered_plugin().await;
    let listener = connect(&mut ws, "call", "listener", false).await;
    let listener = tokio::task::spawn_blocking(move || {
        let mut listener = listener;
        assert!(listener.run_until(Duration::from_secs(10), |p| p.dc_open));
        listener
    })
    .await
    .unwrap();
    let speaker = connect(&mut ws, "call", "speaker", true).await;
    let port = daemon.media_port;

    let junk = std::thread::spawn(move || {
        use std::io::Write as _;
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let target = ("127.0.0.1", port);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Bounded: 3000 datagrams and 30 TCP connections over ~2 s.
        for round in 0..30 {
            for i in 0..100 {
                let len = (next() % 1200) as usize + 1;
                let mut packet: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                match i % 4 {
                    0 => packet[0] = 0x80, // RTP-looking
                    1 => packet[0] = 22,   // DTLS-looking
                    2 => {
                        // A STUN binding request naming worker 00 with an unknown ufrag.
                        packet = stun_binding(&format!("00junk{round}{i}:x"));
                    }
                    _ => {}
                }
                let _ = udp.send_to(&packet, target);
            }
            if let Ok(mut tcp) = std::net::TcpStream::connect(target) {
                let garbage: Vec<u8> = match round % 3 {
                    0 => (0..500).map(|_| next() as u8).collect(),
                    1 => vec![0xff, 0xff, 1, 2, 3], // frame longer than what follows
                    _ => [vec![0, 28], stun_binding("00nobody:x")].concat(),
                };
                let _ = tcp.write_all(&garbage);
            }
            std::thread::sleep(Duration::from_millis(60));
        }
    });
    let speaker_thread = std::thread::spawn(move || {
        let mut speaker = speaker;
        assert!(speaker.run_until(Duration::from_secs(10), |p| p.connected));
        for _ in 0..150 {
            speaker.send_audio();
            speaker.run_until(Duration::from_millis(20), |_| false);
        }
    });
    let listener_thread = std::thread::spawn(move || {
        let mut listener = listener;
        listener.run_until(Duration::from_secs(8), |p| {
            p.received.values().any(|n| *n >= 120)
        });
        listener
    });
    junk.join().unwrap();
    speaker_thread.join().unwrap();
    let listener = listener_thread.join().unwrap();
    let best = listener.received.values().max().copied().unwrap_or(0);
    assert!(
        best >= 120,
        "only {best} of 150 packets arrived during the junk"
    );
    // Both sessions are still in the call.
    let sessions = plugin.call_sessions("call").await.unwrap().json().unwrap();
    assert_eq!(sessions.as_array().unwrap().len(), 2);
}

/// A STUN Binding request with a USERNAME attribute.
fn stun_binding(user: &str) -> Vec<u8> {
    let mut attrs = vec![0x00, 0x06];
    attrs.extend_from_slice(&(user.len() as u16).to_be_bytes());
    attrs.extend_from_slice(user.as_bytes());
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    let mut packet = vec![0x00, 0x01];
    packet.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    packet.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    packet.extend_from_slice(&[9; 12]);
    packet.extend_from_slice(&attrs);
    packet
}
