//! Simulcast layer choice under a real bandwidth limit: in a fresh network namespace, one of
//! two viewers of a simulcast screen share is limited to 400 kbit/s with `tc` (htb class with
//! a 30-packet queue, selected by its UDP port), then the limit is lifted. The limited viewer
//! moves to the `l` layer and back to `h`; the other viewer stays on `h` throughout; every
//! switch happens at a keyframe with continuous picture IDs. Needs root (`unshare -n`) and
//! `tc` (iproute2).

use std::process::Command;

const PORT_BASE: u16 = 41_000;
const LIFT_AFTER_S: u64 = 15;

/// Seconds of the day of a log line's RFC 3339 timestamp.
fn at(line: &str) -> f64 {
    let time = line.split('T').nth(1).unwrap_or_default();
    let mut parts = time
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .split(':');
    let h: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let m: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let s: f64 = parts
        .next()
        .and_then(|v| v.split('Z').next()?.parse().ok())
        .unwrap_or(0.0);
    h * 3600.0 + m * 60.0 + s
}

#[test]
fn a_limited_viewer_moves_to_the_low_layer_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("rtcd.log");
    let summary = dir.path().join("summary.json");
    let config = dir.path().join("config.toml");
    let lifted_file = dir.path().join("lifted");
    std::fs::write(
        &config,
        format!(
            "[api.http]\nlisten_address = \"127.0.0.1:18045\"\n[api.security]\nallow_self_registration = true\n\
             [rtc]\nice_address_udp = \"127.0.0.1\"\nice_address_tcp = \"127.0.0.1\"\nice_port_udp = 18443\nice_port_tcp = 18443\n\
             [logger]\nenable_file = false\nconsole_level = \"DEBUG\"\n[store]\ndata_source = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let script = format!(
        r#"set -eu
ip link set lo up
tc qdisc add dev lo root handle 1: htb default 10
tc class add dev lo parent 1: classid 1:10 htb rate 10gbit
tc class add dev lo parent 1: classid 1:20 htb rate 400kbit ceil 400kbit
tc qdisc add dev lo parent 1:20 handle 20: pfifo limit 30
tc filter add dev lo parent 1: protocol ip u32 match ip dport {viewer} 0xffff flowid 1:20
"{rtcd}" -config "{config}" > "{log}" 2>&1 &
rtcd=$!
for _ in $(seq 50); do curl -fs http://127.0.0.1:18045/version >/dev/null 2>&1 && break; sleep 0.1; done
(sleep {lift}; tc class change dev lo parent 1: classid 1:20 htb rate 10gbit ceil 10gbit; date -u +T%H:%M:%S.%NZ > "{lifted}") &
"{load}" sfu --url http://127.0.0.1:18045 --register --participants 3 --calls 1 \
    --screen-every 1 --screen-kbps 1500 --duration 40 --warmup 1 \
    --port-base {base} --daemon-pid "$rtcd" --json "{summary}"
kill "$rtcd"
"#,
        viewer = PORT_BASE + 1,
        base = PORT_BASE,
        lift = LIFT_AFTER_S,
        rtcd = env!("CARGO_BIN_EXE_rtcd"),
        load = env!("CARGO_BIN_EXE_rtcd-load"),
        config = config.display(),
        log = log.display(),
        summary = summary.display(),
        lifted = lifted_file.display(),
    );
    let output = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .output()
        .expect("unshare (util-linux) is needed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "needs root and tc: {stdout}\n{stderr}"
    );
    let log = std::fs::read_to_string(&log).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(json["receivers_with_media"], 3, "{stdout}");
    assert_eq!(json["picture_id_regressions"], 0, "{stdout}");

    let lines =
        |needle: &str| -> Vec<&str> { log.lines().filter(|l| l.contains(needle)).collect() };
    let started = lines("simulcast: forwarding layer")
        .first()
        .map(|l| at(l))
        .expect("no simulcast forwarding");
    let targets = lines("simulcast: receiver target layer");
    // Only the limited viewer (participant 1) changes layers; the other stays on h.
    assert!(
        targets.iter().all(|l| l.contains("s00001 ")),
        "only the limited viewer may change layers: {targets:#?}"
    );
    let down = targets
        .iter()
        .find(|l| l.contains("layer=\"l\""))
        .unwrap_or_else(|| panic!("the limited viewer never moved to l:\n{log}"));
    let switched_down = lines("from=\"h\" layer=\"l\"")
        .into_iter()
        .find(|l| l.contains("s00001 "))
        .map(at)
        .expect("no switch to l at a keyframe");
    // While limited, the viewer may retry h after each back-off (10 s, then 15 s, …): the
    // estimate climbs without probing. Once the limit is gone it must end on h.
    let last_target = targets.last().unwrap();
    assert!(
        last_target.contains("layer=\"h\""),
        "the viewer did not end on h: {targets:#?}"
    );
    let last_switch = lines("simulcast: forwarding layer")
        .into_iter()
        .rfind(|l| l.contains("s00001 "))
        .unwrap();
    assert!(last_switch.contains("layer=\"h\""), "{last_switch}");
    // When the limit was really lifted (the timer starts before the participants join).
    let lifted = at(std::fs::read_to_string(&lifted_file)
        .expect("the limit was never lifted")
        .trim());
    let retries_while_limited = targets
        .iter()
        .filter(|l| l.contains("layer=\"h\"") && at(l) < lifted)
        .count();
    println!(
        "limited viewer: target l after {:.1} s, switched {:.2} s later; limit lifted at +{:.1} s; \
         {retries_while_limited} retries of h while limited; last target h at +{:.1} s, switched \
         {:.2} s later; loss {}%, screen copies {}",
        at(down) - started,
        switched_down - at(down),
        lifted - started,
        at(last_target) - started,
        at(last_switch) - at(last_target),
        json["loss_percent"],
        json["video_copies_received"],
    );
    assert!(at(down) - started < 10.0, "too slow to react to the limit");
    assert!(
        switched_down - at(down) < 2.0,
        "keyframe for the switch too slow"
    );
    assert!(
        retries_while_limited <= 1,
        "back-off not respected: {targets:#?}"
    );
}
