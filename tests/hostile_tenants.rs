//! Hostile input from an authenticated tenant (a registered client) never reaches another
//! tenant, never loses a command, and leaves nothing behind: join floods, too many
//! connections, long IDs, candidate floods, unregistering with live sessions. Each test keeps
//! a legitimate client working during the attack. (Scaled-down counts; `build/stress.sh` runs
//! the full ones.)

mod common;
#[path = "common/rtc_peer.rs"]
mod rtc_peer;

use std::time::{Duration, Instant};

use common::{Daemon, KEY, base_config, join, metric_value};
use rtcd::client::Client;
use rtcd::ws::codec::{RtcMessage, ServerMessage, rtc_type};

fn daemon(env: &[(&str, &str)]) -> Daemon {
    Daemon::start(
        &base_config("[api.security]\nallow_self_registration = true"),
        env,
    )
}

async fn registered(daemon: &Daemon, id: &str) -> Client {
    let client = daemon.client_as(id, KEY);
    client.register(id, KEY).await.unwrap();
    client
}

async fn metrics(client: &Client) -> String {
    client
        .request(hyper::Method::GET, "/metrics", None, None)
        .await
        .unwrap()
        .text()
}

fn value(metrics: &str, series: &str) -> f64 {
    metric_value(metrics, &format!("{series} ")).unwrap_or(0.0)
}

/// A legitimate tenant's participant joins, connects over UDP and hears a speaker: the proof
/// that the daemon keeps serving everyone else.
async fn legitimate_call_works(daemon: &Daemon, id: &str) {
    let client = daemon.client_as(id, KEY);
    let _ = client.register(id, KEY).await; // may be registered already
    let mut ws = client.connect().await.unwrap();
    let call = format!("{id}-call");
    let listener = rtc_peer::connect(&mut ws, &call, &format!("{id}-listener"), false).await;
    let speaker = rtc_peer::connect(&mut ws, &call, &format!("{id}-speaker"), true).await;
    let speaker = std::thread::spawn(move || {
        let mut speaker = speaker;
        assert!(speaker.run_until(Duration::from_secs(15), |p| p.connected));
        for _ in 0..100 {
            speaker.send_audio();
            speaker.run_until(Duration::from_millis(20), |_| false);
        }
    });
    let listener = std::thread::spawn(move || {
        let mut listener = listener;
        listener.run_until(Duration::from_secs(20), |p| {
            p.received.values().any(|n| *n >= 30)
        });
        listener
    });
    speaker.join().unwrap();
    let listener = listener.join().unwrap();
    let got: usize = listener.received.values().sum();
    assert!(got >= 30, "the legitimate call got only {got} packets");
    for session in ["listener", "speaker"] {
        ws.leave(&format!("{id}-{session}")).await.unwrap();
    }
}

/// Joins on one WebSocket as fast as it takes them, never offering: first the per-client
/// rate limit refuses most; with the rate limit lifted, the media workers' command queues
/// fill and refuse the excess. Either way, every join that was accepted has a media session,
/// every one that was not got a `close`, and all of them end after the offer timeout, so a
/// SIGTERM drain ends when the legitimate calls do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_flood_is_refused_or_served_and_leaves_nothing_behind() {
    let counts = [
        (false, common::scaled(3_000, 60_000)),
        (true, common::scaled(4_000, 60_000)),
    ];
    for (lift_rate_limit, joins) in counts {
        let env: &[(&str, &str)] = if lift_rate_limit {
            &[
                ("RTCD_LIMITS_JOINRATEPERCLIENT", "1000000"),
                ("RTCD_LIMITS_JOINBURSTPERCLIENT", "1000000"),
            ]
        } else {
            &[]
        };
        let mut daemon = daemon(env);
        let attacker = registered(&daemon, "flooder").await;
        let mut flood = attacker.connect().await.unwrap();
        let started = Instant::now();
        let mut closes = 0;
        for i in 0..joins {
            flood
                .join(&join("flood-call", "u", &format!("flood-{i:06}")))
                .await
                .unwrap();
            // Read the refusals now and then: the connection's outbound queue is bounded.
            if i % 500 == 499 {
                while let Ok(message) = flood.recv_timeout(Duration::from_millis(50)).await {
                    closes += usize::from(matches!(message, ServerMessage::Close { .. }));
                }
            }
        }
        let sent_in = started.elapsed();
        let rss_after_flood = daemon.rss_kib();
        // Count the closes the flood gets back while the legitimate tenant works.
        let closes = tokio::spawn(async move {
            while let Ok(message) = flood.recv_timeout(Duration::from_secs(20)).await {
                if matches!(message, ServerMessage::Close { .. }) {
                    closes += 1;
                }
            }
            (closes, flood)
        });
        legitimate_call_works(&daemon, "bystander").await;

        let observer = daemon.client();
        let registry_equals_media = common::eventually(Duration::from_secs(30), || async {
            let m = metrics(&observer).await;
            let registered = value(&m, "rtcd_rtc_sessions_total{groupID=\"flooder\"}")
                + value(&m, "rtcd_rtc_sessions_total{groupID=\"bystander\"}");
            (registered == value(&m, "rtcd_rtc_media_sessions")).then_some(m)
        })
        .await
        .expect("the registry and the media plane disagree after the flood");
        let refused_rate = value(
            &registry_equals_media,
            "rtcd_limit_refusals_total{limit=\"join_rate\"}",
        );
        let refused_busy = value(
            &registry_equals_media,
            "rtcd_limit_refusals_total{limit=\"media_busy\"}",
        );
        eprintln!(
            "{joins} joins sent in {sent_in:?}: refused by rate {refused_rate}, by busy workers {refused_busy}"
        );
        if lift_rate_limit {
            assert_eq!(refused_rate, 0.0);
        } else {
            // At most the burst (2,000) plus the rate (1,000/s) over the flood's duration got in.
            let admitted_at_most = 2_000.0 + 1_000.0 * sent_in.as_secs_f64() + 50.0;
            assert!(
                refused_rate >= joins as f64 - admitted_at_most,
                "rate limit refused only {refused_rate} of {joins} in {sent_in:?}"
            );
        }
        // Every flood session ends on its own (no offer within 10 s); nothing is left behind.
        let drained = common::eventually(Duration::from_secs(120), || async {
            let m = metrics(&observer).await;
            (value(&m, "rtcd_rtc_media_sessions") == 0.0
                && value(&m, "rtcd_rtc_sessions_total{groupID=\"flooder\"}") == 0.0)
                .then_some(())
        })
        .await;
        assert!(drained.is_some(), "flood sessions left behind");
        eprintln!(
            "RSS {rss_after_flood} KiB right after the flood, {} KiB once its sessions ended; {} fds",
            daemon.rss_kib(),
            daemon.open_fds()
        );
        let (closes, _flood) = closes.await.unwrap();
        assert_eq!(
            closes, joins,
            "every join gets a close: refused at once, or when its session ended"
        );
        // The drain has nothing to wait for.
        daemon.signal("TERM");
        let status = daemon.wait_exit(Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| s.success()),
            "drain did not end: {status:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_connection_and_session_limits_touch_no_other_tenant() {
    let daemon = daemon(&[
        ("RTCD_LIMITS_MAXCONNECTIONSPERCLIENT", "3"),
        ("RTCD_LIMITS_MAXSESSIONSPERCLIENT", "5"),
    ]);
    let greedy = registered(&daemon, "greedy").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(greedy.connect().await.unwrap());
    }
    let refused = greedy.connect().await.err().expect("a 4th connection");
    assert!(
        refused.to_string().contains("429"),
        "refusal is a 429: {refused}"
    );
    // Closing one makes room again.
    open.pop().unwrap().close().await;
    let reopened = common::eventually(Duration::from_secs(5), || async {
        greedy.connect().await.ok()
    })
    .await;
    open.push(reopened.expect("a slot freed by a closed connection"));

    let ws = &mut open[0];
    for i in 0..7 {
        ws.join(&join("greedy-call", "u", &format!("greedy-{i}")))
            .await
            .unwrap();
    }
    let mut closed = Vec::new();
    while let Ok(message) = ws.recv_timeout(Duration::from_millis(500)).await {
        if let ServerMessage::Close { session_id } = message {
            closed.push(session_id);
        }
    }
    assert_eq!(
        closed,
        ["greedy-5", "greedy-6"],
        "joins past the limit get an immediate close"
    );
    let sessions = greedy.call_sessions("greedy-call").await.unwrap();
    assert_eq!(sessions.json().unwrap().as_array().unwrap().len(), 5);

    // Another tenant has its own budgets.
    let other = registered(&daemon, "neighbour").await;
    let mut conns = Vec::new();
    for _ in 0..2 {
        conns.push(other.connect().await.unwrap());
    }
    // Its third connection carries a call.
    legitimate_call_works(&daemon, "neighbour").await;
    let m = metrics(&daemon.client()).await;
    // At least the 4th connection; a retry racing the close may have been refused too.
    assert!(
        value(
            &m,
            "rtcd_limit_refusals_total{limit=\"connections_per_client\"}"
        ) >= 1.0
    );
    assert_eq!(
        value(
            &m,
            "rtcd_limit_refusals_total{limit=\"sessions_per_client\"}"
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_ids_are_refused_and_never_flood_the_log() {
    let daemon = daemon(&[]);
    let client = registered(&daemon, "long-ids").await;
    let mut ws = client.connect().await.unwrap();
    let long = "x".repeat(129);
    let huge = "y".repeat(400_000);
    ws.join(&join("call", "u", &long)).await.unwrap();
    ws.join(&join(&huge, "u", "s-1")).await.unwrap();
    // Joins with ~480 kB IDs (the attack table's 300 under build/stress.sh); their refusals
    // are logged a few times a second at most.
    let rss_before = daemon.rss_kib();
    let huge_session = "w".repeat(480_000);
    for i in 0..common::scaled(3, 300) {
        ws.join(&join("call", "u", &format!("{i}{huge_session}")))
            .await
            .unwrap();
    }
    for _ in 0..50 {
        ws.leave(&huge).await.unwrap();
    }
    ws.join(&join("call", "u", &"z".repeat(128))).await.unwrap();
    let joined = common::eventually(Duration::from_secs(5), || async {
        let sessions = client.call_sessions("call").await.ok()?;
        (sessions.status == 200).then(|| sessions.json().unwrap())
    })
    .await
    .expect("a 128-byte session ID is accepted");
    assert_eq!(joined.as_array().unwrap().len(), 1);
    assert_eq!(joined[0]["SessionID"], "z".repeat(128));
    assert_eq!(
        client.call_sessions(&"y".repeat(100)).await.unwrap().status,
        404
    );

    eprintln!(
        "RSS {rss_before} KiB before the long-ID joins, {} KiB after",
        daemon.rss_kib()
    );
    let log = daemon.log_text();
    assert!(
        log.contains("sessionID of 129 bytes is longer than 128"),
        "{log}"
    );
    assert!(log.contains("callID of 400000 bytes"));
    let longest = log.lines().map(str::len).max().unwrap();
    assert!(longest < 1_000, "a log line of {longest} bytes");
    legitimate_call_works(&daemon, "bystander").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_candidates_beyond_the_limit_are_refused() {
    let daemon = daemon(&[("RTCD_LIMITS_MAXREMOTECANDIDATES", "10")]);
    let client = registered(&daemon, "candidates").await;
    let mut ws = client.connect().await.unwrap();
    ws.join(&join("call", "u", "s")).await.unwrap();
    for i in 0..25 {
        let candidate = format!(
            r#"{{"candidate":"candidate:{i} 1 udp 2130706431 192.0.2.{i} 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}"#
        );
        ws.rtc(&RtcMessage {
            session_id: "s".into(),
            msg_type: rtc_type::ICE,
            data: Some(candidate.into_bytes()),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let refused = common::eventually(Duration::from_secs(5), || async {
        let m = metrics(&client).await;
        let n = value(&m, "rtcd_limit_refusals_total{limit=\"remote_candidates\"}");
        (n == 15.0).then_some(n)
    })
    .await;
    assert_eq!(refused, Some(15.0));
    // An offer carrying more candidates than the limit allows fails the session.
    let (_peer, offer) = rtc_peer::RtcPeer::new();
    let mut description: serde_json::Value = serde_json::from_str(&offer).unwrap();
    let mut sdp = description["sdp"].as_str().unwrap().to_owned();
    for i in 0..20 {
        sdp.push_str(&format!(
            "a=candidate:{i} 1 udp 2130706431 192.0.2.{i} 5000 typ host\r\n"
        ));
    }
    description["sdp"] = sdp.into();
    ws.join(&join("call", "u", "s2")).await.unwrap();
    rtc_peer::send_offer(&mut ws, "s2", description.to_string()).await;
    let closed = loop {
        match ws.recv_timeout(Duration::from_secs(5)).await.unwrap() {
            ServerMessage::Close { session_id } => break session_id,
            _ => continue,
        }
    };
    assert_eq!(closed, "s2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistering_keeps_live_sessions_and_then_removes_the_clients_series() {
    let daemon = daemon(&[]);
    let client = registered(&daemon, "leaving").await;
    let mut ws = client.connect().await.unwrap();
    ws.join(&join("call", "u", "s")).await.unwrap();
    let observer = daemon.client();
    let seen = common::eventually(Duration::from_secs(5), || async {
        let m = metrics(&observer).await;
        m.contains("groupID=\"leaving\"").then_some(())
    })
    .await;
    assert!(seen.is_some());
    client.unregister("leaving").await.unwrap();
    // The session and the connection live on: the series stay.
    let m = metrics(&observer).await;
    assert_eq!(
        value(&m, "rtcd_rtc_sessions_total{groupID=\"leaving\"}"),
        1.0
    );
    assert!(m.contains("clientID=\"leaving\""));
    ws.leave("s").await.unwrap();
    ws.close().await;
    let gone = common::eventually(Duration::from_secs(5), || async {
        let m = metrics(&observer).await;
        (!m.contains("\"leaving\"")).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "series of the unregistered client remain:\n{}",
        metrics(&observer)
            .await
            .lines()
            .filter(|l| l.contains("leaving"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
