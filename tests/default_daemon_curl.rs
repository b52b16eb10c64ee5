//! The getting-started check: a daemon started with no config file and no environment
//! answers `curl http://localhost:8045/version` with the JSON.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn curl_version_on_a_default_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::rtcd_command(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut body = String::new();
    let answered = common::poll(Duration::from_secs(15), || {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "2", "http://localhost:8045/version"])
            .output()
            .expect("curl is installed");
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success() && !body.is_empty()
    });
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(answered, "no answer on :8045; stderr: {stderr}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    for key in [
        "buildDate",
        "buildVersion",
        "buildHash",
        "goVersion",
        "goOS",
        "goArch",
    ] {
        assert!(json[key].is_string(), "{key} in {body}");
    }
    assert!(stderr.contains("config file not found at config/config.toml, using defaults"));
    // Defaults: a JSON log file in the working directory.
    assert!(dir.path().join("rtcd.log").exists());
}
