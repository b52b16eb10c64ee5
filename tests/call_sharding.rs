//! Calls are sharded across media workers (one call's sessions on one worker) and calls on
//! different workers forward media at the same time, one of them under heavy load.

mod common;
#[path = "common/rtc_peer.rs"]
mod rtc_peer;

use std::time::Duration;

use rtc_peer::connect;
use rtcd::calls::call_key;
use rtcd::net::runtime::shard;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_different_workers_both_flow() {
    let workers = std::thread::available_parallelism().unwrap().get().min(64);
    if workers < 2 {
        eprintln!("SKIPPED: one CPU, one media worker");
        return;
    }
    // Two call IDs that land on different workers.
    let busy_call = "call-busy".to_owned();
    let quiet_call = (0..)
        .map(|i| format!("call-quiet-{i}"))
        .find(|c| shard(&call_key("mm", c), workers) != shard(&call_key("mm", &busy_call), workers))
        .unwrap();

    let (daemon, _plugin, mut ws) = common::registered_plugin().await;

    let mut peers = Vec::new();
    for (call, session, audio) in [
        (&busy_call, "busy-listener", false),
        (&quiet_call, "quiet-listener", false),
    ] {
        let peer = connect(&mut ws, call, session, audio).await;
        let peer = tokio::task::spawn_blocking(move || {
            let mut peer = peer;
            assert!(peer.run_until(Duration::from_secs(10), |p| p.dc_open));
            peer
        })
        .await
        .unwrap();
        peers.push(peer);
    }
    let busy_speaker = connect(&mut ws, &busy_call, "busy-speaker", true).await;
    let quiet_speaker = connect(&mut ws, &quiet_call, "quiet-speaker", true).await;

    // The busy call's speaker sends 10x the normal packet rate (500/s) for 3 s.
    let busy = std::thread::spawn(move || {
        let mut s = busy_speaker;
        assert!(s.run_until(Duration::from_secs(10), |p| p.connected));
        for _ in 0..150 {
            for _ in 0..10 {
                s.send_audio();
            }
            s.run_until(Duration::from_millis(20), |_| false);
        }
    });
    let quiet = std::thread::spawn(move || {
        let mut s = quiet_speaker;
        assert!(s.run_until(Duration::from_secs(10), |p| p.connected));
        for _ in 0..150 {
            s.send_audio();
            s.run_until(Duration::from_millis(20), |_| false);
        }
    });
    let listeners: Vec<_> = peers
        .into_iter()
        .map(|mut p| {
            std::thread::spawn(move || {
                p.run_until(Duration::from_secs(7), |_| false);
                p
            })
        })
        .collect();
    busy.join().unwrap();
    quiet.join().unwrap();
    let listeners: Vec<_> = listeners.into_iter().map(|t| t.join().unwrap()).collect();
    let busy_got = listeners[0].received.values().max().copied().unwrap_or(0);
    let quiet_got = listeners[1].received.values().max().copied().unwrap_or(0);
    assert!(
        busy_got >= 1000,
        "busy call forwarded only {busy_got} of 1500"
    );
    assert!(
        quiet_got >= 120,
        "quiet call forwarded only {quiet_got} of 150 next to a busy worker"
    );

    // The sessions of each call share a worker, and the two calls use different workers.
    let log = daemon.log_text();
    let worker_of = |session: &str| -> String {
        log.lines()
            .find(|l| {
                l.contains("media session created") && l.contains(&format!("session_id={session} "))
            })
            .and_then(|l| l.split("worker=").nth(1))
            .map(|w| w.split_whitespace().next().unwrap_or("").to_owned())
            .unwrap_or_else(|| panic!("no worker logged for {session}"))
    };
    assert_eq!(worker_of("busy-listener"), worker_of("busy-speaker"));
    assert_eq!(worker_of("quiet-listener"), worker_of("quiet-speaker"));
    assert_ne!(worker_of("busy-listener"), worker_of("quiet-listener"));
}
