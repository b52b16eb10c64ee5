//! Call quality as the SFU measures it: a speaker whose path loses every 10th packet shows up
//! as ~10 % loss in `GET /calls/{id}/stats` and in the aggregated quality histograms on
//! `/metrics` within one sampling period after the baseline; a clean speaker shows none.

mod common;
#[path = "common/rtc_peer.rs"]
mod rtc_peer;

use std::time::Duration;

use rtc_peer::connect;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_loss_appears_in_call_stats_and_metrics() {
    let (daemon, plugin, mut ws) = common::registered_plugin().await;
    // Before any session: 404 like the sessions endpoint.
    assert_eq!(plugin.call_stats("lossy").await.unwrap().status, 404);

    let lossy = connect(&mut ws, "lossy", "lossy-speaker", true).await;
    let clean = connect(&mut ws, "clean", "clean-speaker", true).await;
    let run = |mut peer: rtc_peer::RtcPeer, lose_every: Option<u16>| {
        std::thread::spawn(move || {
            peer.lose_every = lose_every;
            assert!(peer.run_until(Duration::from_secs(10), |p| p.connected));
            // 13 s of 20 ms packets: the SFU samples every 5 s after connecting.
            for _ in 0..650 {
                peer.send_audio();
                peer.run_until(Duration::from_millis(20), |_| false);
            }
            peer
        })
    };
    let lossy = run(lossy, Some(10));
    let clean = run(clean, None);

    let stats = common::eventually(Duration::from_secs(20), || async {
        let response = plugin.call_stats("lossy").await.ok()?;
        let json = response.json().ok()?;
        (json["sampled"].as_u64()? >= 1 && json["loss_ratio"]["max"].as_f64()? > 0.0)
            .then_some(json)
    })
    .await
    .expect("no lossy quality sample within 20 s");
    let _ = lossy.join();
    let _ = clean.join();

    let loss = stats["loss_ratio"]["max"].as_f64().unwrap();
    assert!((0.05..=0.15).contains(&loss), "~10 % expected: {stats}");
    assert_eq!(stats["callID"], "lossy");
    assert_eq!(stats["sessions"], 1);
    assert!(stats["receive_bps"].as_f64().unwrap() > 10_000.0, "{stats}");
    assert!(stats["rtt_seconds"]["max"].as_f64().is_some(), "{stats}");
    let jitter = stats["jitter_seconds"]["max"].as_f64().unwrap();
    assert!(jitter < 0.2, "jitter in seconds, not RTP units: {stats}");
    println!("lossy call: {stats}");

    let clean = plugin.call_stats("clean").await.unwrap().json().unwrap();
    println!("clean call: {clean}");
    assert_eq!(clean["loss_ratio"]["max"].as_f64(), Some(0.0), "{clean}");

    let metrics = daemon
        .client()
        .request(hyper::Method::GET, "/metrics", None, None)
        .await
        .unwrap()
        .text();
    let count = |name: &str| common::metric_value(&metrics, name).unwrap_or(0.0);
    assert!(
        count("rtcd_rtc_session_loss_ratio_count") >= 2.0,
        "{metrics}"
    );
    // At least one lossy sample above the 5 % bucket: count minus the ≤ 0.05 bucket.
    let le_005 =
        common::metric_value(&metrics, "rtcd_rtc_session_loss_ratio_bucket{le=\"0.05\"}").unwrap();
    assert!(
        count("rtcd_rtc_session_loss_ratio_count") > le_005,
        "{metrics}"
    );
    assert!(
        count("rtcd_rtc_session_rtt_seconds_count") >= 1.0,
        "{metrics}"
    );
}
