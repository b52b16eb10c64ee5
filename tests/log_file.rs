//! The log file never stops the daemon and never fills the disk: one that cannot be opened is
//! a console warning naming the path and the fix while the daemon serves; a written one
//! rotates by size into gzip-compressed backups, the oldest pruned.

mod common;

use std::io::Read as _;
use std::time::Duration;

use common::{Daemon, KEY};
use rtcd::ws::codec::RtcMessage;

fn config(logger: &str) -> String {
    format!(
        "[api.http]\nlisten_address = \"127.0.0.1:0\"\n[api.security]\nallow_self_registration = true\n[logger]\nconsole_level = \"INFO\"\n{logger}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unopenable_log_file_is_a_warning_and_the_daemon_serves() {
    let daemon = Daemon::start(
        &config("enable_file = true\nfile_location = \"missing-dir/rtcd.log\""),
        &[],
    );
    let log = daemon.log_text();
    let warning = log
        .lines()
        .find(|l| l.contains("cannot open log file"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(warning.contains("missing-dir/rtcd.log"), "{warning}");
    assert!(
        warning.contains("RTCD_LOGGER_ENABLEFILE=false"),
        "{warning}"
    );
    assert!(warning.contains("RTCD_LOGGER_FILELOCATION"), "{warning}");
    // Serving, with self-registration working.
    let client = daemon.client_as("mm", KEY);
    client.register("mm", KEY).await.unwrap();
    assert!(client.version().await.is_ok());
    client.connect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_file_rotates_by_size_while_the_daemon_logs() {
    let daemon = Daemon::start(
        &config(
            "enable_file = true\nfile_level = \"DEBUG\"\nfile_location = \"rtcd.log\"\nfile_max_size_mb = 1\nfile_max_backups = 2",
        ),
        &[],
    );
    let client = daemon.client_as("mm", KEY);
    client.register("mm", KEY).await.unwrap();
    let mut ws = client.connect().await.unwrap();
    // Each message for an unknown session is one DEBUG record (~250 bytes): ~4.5 MB in all.
    for i in 0..18_000 {
        ws.rtc(&RtcMessage {
            session_id: format!("no-such-session-{i:06}"),
            msg_type: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let dir = daemon.dir.clone();
    let rotated = common::poll(Duration::from_secs(20), || {
        dir.join("rtcd.log.2.gz").exists()
    });
    assert!(rotated, "no second rotated file in {}", dir.display());
    // Logging goes on; only two backups are kept.
    assert!(client.version().await.is_ok());
    std::thread::sleep(Duration::from_millis(500));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("rtcd.log"))
        .collect();
    names.sort();
    assert_eq!(names, ["rtcd.log", "rtcd.log.1.gz", "rtcd.log.2.gz"]);
    // A rotated file is about the configured size and decompresses to the JSON lines written.
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(dir.join("rtcd.log.1.gz")).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    for name in &names {
        let size = std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
        eprintln!("{name}: {size} bytes");
    }
    eprintln!(
        "rtcd.log.1.gz decompresses to {} bytes; first line: {}",
        text.len(),
        text.lines().next().unwrap_or_default()
    );
    assert!(
        text.len() >= 1 << 20 && text.len() < (1 << 20) + 64 * 1024,
        "{}",
        text.len()
    );
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a whole JSON record per line"))
        .collect();
    assert!(
        records
            .iter()
            .any(|r| r.to_string().contains("no-such-session-")),
        "the rotated file holds the records written"
    );
}
