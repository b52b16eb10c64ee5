//! The command line and startup configuration: Go-style flags, missing/malformed files, bad
//! environment values, validation failures (non-zero exit, nothing half-started), the
//! unprefixed env fallback, and `check-config` masking secrets.

mod common;

use std::path::Path;
use std::process::Output;

use common::{Daemon, KEY, base_config, rtcd_command};

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = rtcd_command(dir);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn startup_failures_exit_non_zero_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Every failing case points its store into `data` and its log file into `log`: neither may
    // exist afterwards (nothing half-started).
    let write = |name: &str, body: &str| {
        let body = format!("{body}\n[store]\ndata_source = \"{0}/data\"\n", d.display());
        std::fs::write(d.join(name), body).unwrap();
        d.join(name).display().to_string()
    };
    let type_error = write("type.toml", "[rtc]\nice_port_udp = \"abc\"");
    let syntax_error = write("syntax.toml", "[rtc\nice_port_udp = 5");
    let level = write("level.toml", "[logger]\nconsole_level = \"LOUD\"");
    let port = write("port.toml", "[rtc]\nice_port_udp = 70000");
    let tls = write(
        "tls.toml",
        "[api.http.tls]\nenable = true\ncert_file = \"/nonexistent/cert.pem\"\ncert_key = \"/nonexistent/key.pem\"",
    );
    let fine = write("fine.toml", "");
    let port_flag = format!("-config={port}");
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, Vec<String>);
    let cases: Vec<Case> = vec![
        (
            vec!["-config", &type_error],
            vec![],
            vec![
                type_error.clone(),
                "line 2".into(),
                "rtc.ice_port_udp".into(),
            ],
        ),
        (
            vec!["-config", &syntax_error],
            vec![],
            vec![syntax_error.clone(), "line 1".into()],
        ),
        (
            vec!["--config", &level],
            vec![],
            vec![
                "invalid ConsoleLevel value \"LOUD\"".into(),
                "logger.console_level".into(),
            ],
        ),
        (
            vec![&port_flag],
            vec![],
            vec!["invalid ICEPortUDP value: 70000 is not in allowed range [80, 49151]".into()],
        ),
        (
            vec!["-config", &tls],
            vec![],
            vec![
                "failed to load cert files".into(),
                "/nonexistent/cert.pem".into(),
            ],
        ),
        (
            vec!["-config", &fine],
            vec![("RTCD_RTC_ICEPORTUDP", "abc")],
            vec!["RTCD_RTC_ICEPORTUDP".into(), "'abc'".into()],
        ),
        (
            vec!["-config", &fine],
            vec![("RTCD_LOGGER_ENABLEFILE", "yes")],
            vec!["RTCD_LOGGER_ENABLEFILE".into(), "'yes'".into()],
        ),
        (
            vec!["-config", &fine],
            vec![("RTCD_RTC_ICEADDRESSUDP", "1.2.3")],
            vec!["1.2.3 is not a valid IP address".into()],
        ),
        (
            vec!["-config", &fine],
            vec![("RTCD_RTC_ICESERVERS", "stun:a:3478")],
            vec!["RTCD_RTC_ICESERVERS".into()],
        ),
        (
            vec!["-config", &fine],
            vec![("RTCD_API_HTTP_LISTENADDRESS", "")],
            vec!["ListenAddress".into()],
        ),
    ];
    for (args, env, needles) in cases {
        let output = run(d, &args, &env);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?} {env:?}: {err}");
        for needle in &needles {
            assert!(
                err.contains(needle.as_str()),
                "{args:?} {env:?}: {needle:?} not in {err}"
            );
        }
        assert!(
            !d.join("data").exists(),
            "{args:?}: store created before failing"
        );
    }
    assert!(!d.join("rtcd.log").exists());
}

#[test]
fn version_help_and_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let version = run(d, &["--version"], &[]);
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("rtcd v1.2.6+rtcd-rs."));
    assert!(run(d, &["-version"], &[]).status.success());
    let help = run(d, &["-help"], &[]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--config"));
    assert_eq!(run(d, &["--no-such-flag"], &[]).status.code(), Some(2));

    std::fs::write(
        d.join("secrets.toml"),
        "[api.security]\nenable_admin = true\nadmin_secret_key = \"very-secret-admin\"\n\
         [rtc]\nice_servers = [{urls = [\"turn:turn.example.com:3478\"], username = \"u\", credential = \"turn-password\"}]\n\
         [rtc.turn]\nstatic_auth_secret = \"turn-static-secret\"\n",
    )
    .unwrap();
    let checked = run(
        d,
        &["-config", "secrets.toml", "check-config"],
        &[("API_SECURITY_ALLOWSELFREGISTRATION", "true")],
    );
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{}", stderr(&checked));
    for secret in ["very-secret-admin", "turn-password", "turn-static-secret"] {
        assert!(!out.contains(secret), "{secret} leaked:\n{out}");
    }
    assert!(out.contains("admin_secret_key = \"<redacted>\""), "{out}");
    assert!(out.contains("allow_self_registration = true"), "{out}");
    assert!(out.contains("API_SECURITY_ALLOWSELFREGISTRATION"), "{out}");
    // A missing file means defaults, with one line saying so.
    let missing = run(d, &["-config", "absent.toml", "check-config"], &[]);
    assert!(missing.status.success());
    assert!(stderr(&missing).contains("config file not found at absent.toml, using defaults"));
}

#[tokio::test]
async fn unprefixed_env_name_from_the_systemd_unit_is_honoured() {
    let daemon = Daemon::start(
        &base_config(""),
        &[("API_SECURITY_ALLOWSELFREGISTRATION", "true")],
    );
    daemon
        .client_as("mm", KEY)
        .register("mm", KEY)
        .await
        .unwrap();
    assert!(daemon.wait_log(
        "API_SECURITY_ALLOWSELFREGISTRATION",
        std::time::Duration::from_secs(2)
    ));
    // The prefixed form wins when both are set.
    let daemon = Daemon::start(
        &base_config(""),
        &[
            ("API_SECURITY_ALLOWSELFREGISTRATION", "true"),
            ("RTCD_API_SECURITY_ALLOWSELFREGISTRATION", "false"),
        ],
    );
    assert!(
        daemon
            .client_as("mm", KEY)
            .register("mm", KEY)
            .await
            .is_err()
    );
}

#[test]
fn file_logging_disabled_creates_no_file_and_no_warning() {
    let dir = tempfile::tempdir().unwrap();
    // A public (documentation-range) override: no "private address" warning either.
    let public = [("RTCD_RTC_ICEHOSTOVERRIDE", "203.0.113.1")];
    let daemon = Daemon::start_in(dir.path(), &base_config(""), &public);
    assert!(!dir.path().join("rtcd.log").exists());
    assert!(
        !daemon.log_text().to_lowercase().contains("warn"),
        "{}",
        daemon.log_text()
    );
    drop(daemon);
    // With the file target on, JSON lines land in the file.
    let daemon = Daemon::start_in(
        dir.path(),
        &base_config("").replace(
            "enable_file = false",
            "enable_file = true\nfile_location = \"rtcd.log\"",
        ),
        &[],
    );
    let path = dir.path().join("rtcd.log");
    assert!(common::poll(std::time::Duration::from_secs(5), || {
        std::fs::read_to_string(&path).is_ok_and(|t| t.contains("\"level\":\"INFO\""))
    }));
    drop(daemon);
}
