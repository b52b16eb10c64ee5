//! Registration, unregistration, login and request authentication over HTTP: status codes,
//! JSON error bodies, admin semantics and the auth rate limiter.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, KEY, base_config};
use hyper::Method;
use rtcd::auth::basic_header;
use rtcd::client::Client;

async fn post(client: &Client, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let response = client
        .request(Method::POST, path, auth, Some(body.as_bytes().to_vec()))
        .await
        .unwrap();
    if response.status != 404 {
        assert_eq!(response.content_type, "application/json", "{path}");
    }
    (response.status.as_u16(), response.text())
}

#[tokio::test]
async fn registration_rules_with_admin_only() {
    let daemon = Daemon::start(
        &base_config("[api.security]\nenable_admin = true\nadmin_secret_key = \"operator-secret\""),
        &[],
    );
    let c = daemon.client();
    let admin = basic_header("", "operator-secret");
    let body = |id: &str, key: &str| format!(r#"{{"clientID":"{id}","authKey":"{key}"}}"#);

    // Self-registration is off: the plugin's own (unregistered) credentials are refused.
    let own = basic_header("mm", KEY);
    assert_eq!(
        post(&c, "/register", Some(&own), &body("mm", KEY)).await,
        (
            401,
            "{\"code\":\"401\",\"error\":\"authentication failed\"}\n".into()
        )
    );
    assert_eq!(
        post(&c, "/register", None, &body("mm", KEY)).await,
        (
            401,
            "{\"code\":\"401\",\"error\":\"authentication failed: invalid auth header\"}\n".into()
        )
    );
    assert_eq!(
        post(
            &c,
            "/register",
            Some(&basic_header("", "wrong")),
            &body("mm", KEY)
        )
        .await,
        (
            401,
            "{\"code\":\"401\",\"error\":\"authentication failed: unauthorized\"}\n".into()
        )
    );
    // The admin (any username, secret as password) registers clients.
    assert_eq!(
        post(&c, "/register", Some(&admin), &body("mm", KEY)).await,
        (201, "{\"clientID\":\"mm\",\"code\":\"201\"}\n".into())
    );
    let cases = [
        (body("mm", KEY), "registration failed: already registered"),
        (
            body("x", "short"),
            "registration failed: key not long enough",
        ),
        (
            r#"{"authKey":"q7Zt0-Lm3Xa_9vKpR2wBn8YcE5uHs1Dj"}"#.to_owned(),
            "registration failed: error: empty key",
        ),
        (
            body(&"i".repeat(65), KEY),
            "registration failed: failed to set key: error: key too large",
        ),
        (
            body("x", &"k".repeat(1025)),
            "registration failed: key too long (at most 1024 bytes)",
        ),
        ("".to_owned(), "EOF"),
    ];
    for (request, error) in cases {
        let (status, text) = post(&c, "/register", Some(&admin), &request).await;
        assert_eq!(status, 400, "{request}");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"code": "400", "error": error}),
            "{request}"
        );
    }
    let (status, text) = post(&c, "/register", Some(&admin), r#"{"clientID":5}"#).await;
    assert_eq!(status, 400, "{text}");
    // A 1 KiB key and a 64-byte clientID are fine (no bcrypt 72-byte cap).
    let long_key = "k".repeat(1024);
    assert_eq!(
        post(
            &c,
            "/register",
            Some(&admin),
            &body(&"i".repeat(64), &long_key)
        )
        .await
        .0,
        201
    );
    // Any registered client may register others when self-registration is off (upstream).
    assert_eq!(
        post(&c, "/register", Some(&own), &body("second", KEY))
            .await
            .0,
        201
    );

    // Unregister: a client may remove only itself; the admin anyone.
    assert_eq!(
        post(&c, "/unregister", Some(&own), r#"{"clientID":"second"}"#).await,
        (
            403,
            "{\"code\":\"403\",\"error\":\"client id not valid\"}\n".into()
        )
    );
    assert_eq!(
        post(&c, "/unregister", Some(&admin), r#"{"clientID":""}"#).await,
        (
            400,
            "{\"code\":\"400\",\"error\":\"client id should not be empty\"}\n".into()
        )
    );
    assert_eq!(
        post(&c, "/unregister", Some(&admin), r#"{"clientID":"second"}"#)
            .await
            .0,
        200
    );
    assert_eq!(
        post(&c, "/unregister", Some(&admin), r#"{"clientID":"second"}"#).await,
        (
            400,
            "{\"code\":\"400\",\"error\":\"unregister failed: error: not found\"}\n".into()
        )
    );

    // Login: failures are 400 (upstream); an unknown client reads like a wrong key (upstream
    // said "…: error: not found", which told which IDs exist); a bearer token then
    // authenticates.
    assert_eq!(
        post(&c, "/login", None, &body("nobody", KEY)).await,
        (
            400,
            "{\"code\":\"400\",\"error\":\"login failed: authentication failed\"}\n".into()
        )
    );
    assert_eq!(
        post(
            &c,
            "/login",
            None,
            &body("mm", "wrong-key-wrong-key-wrong-key-xx")
        )
        .await,
        (
            400,
            "{\"code\":\"400\",\"error\":\"login failed: authentication failed\"}\n".into()
        )
    );
    let (status, text) = post(&c, "/login", None, &body("mm", KEY)).await;
    assert_eq!(status, 200);
    let token = serde_json::from_str::<serde_json::Value>(&text).unwrap()["bearerToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(token.len(), 32);
    let bearer = format!("Bearer {token}");
    let sessions = c
        .request(Method::GET, "/calls/x/sessions", Some(&bearer), None)
        .await
        .unwrap();
    assert_eq!(
        (sessions.status.as_u16(), sessions.text()),
        (
            404,
            "failed to get session configs: group not found\n".into()
        )
    );
    let bad = c
        .request(Method::GET, "/calls/x/sessions", Some("Bearer nope"), None)
        .await
        .unwrap();
    assert_eq!(
        (bad.status.as_u16(), bad.text()),
        (401, "unauthorized\n".into())
    );
    // The admin has no group: the sessions API refuses it.
    let as_admin = c
        .request(Method::GET, "/calls/x/sessions", Some(&admin), None)
        .await
        .unwrap();
    assert_eq!(as_admin.status, 401);

    // Unknown paths and wrong methods are Go-style 404s.
    for (method, path) in [
        (Method::GET, "/nope"),
        (Method::POST, "/version"),
        (Method::GET, "/register"),
        (Method::GET, "/version/"),
    ] {
        let r = c.request(method.clone(), path, None, None).await.unwrap();
        assert_eq!(
            (r.status.as_u16(), r.text()),
            (404, "404 page not found\n".into()),
            "{method} {path}"
        );
        assert_eq!(r.content_type, "text/plain; charset=utf-8");
    }
}

#[tokio::test]
async fn unregister_needs_admin_or_self_registration() {
    let daemon = Daemon::start(&base_config(""), &[]);
    assert_eq!(
        post(&daemon.client(), "/unregister", None, r#"{"clientID":"a"}"#).await,
        (
            403,
            "{\"code\":\"403\",\"error\":\"unregister not enabled\"}\n".into()
        )
    );
}

#[tokio::test]
async fn wrong_keys_are_rate_limited() {
    let daemon = Daemon::start(
        &base_config("[api.security]\nallow_self_registration = true"),
        &[],
    );
    let c = daemon.client();
    c.register("mm", KEY).await.unwrap();
    // More wrong keys for one client at once than its budget allows (burst 20, 10/s; then
    // upstream's 12 × CPUs per second in all).
    let attempts = 60;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..attempts {
        let c = daemon.client_as("mm", "wrong-key-wrong-key-wrong-key-xx");
        tasks.push(tokio::spawn(async move { c.connect().await.is_err() }));
    }
    for task in tasks {
        assert!(task.await.unwrap(), "wrong key accepted");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let metrics = c
        .request(hyper::Method::GET, "/metrics", None, None)
        .await
        .unwrap()
        .text();
    let refused = common::metric_value(&metrics, "rtcd_limit_refusals_total{limit=\"auth_rate\"} ")
        .unwrap_or(0.0);
    let admitted_at_most = 20.0 + 10.0 * elapsed + 1.0;
    assert!(
        refused >= attempts as f64 - admitted_at_most,
        "only {refused} of {attempts} refused in {elapsed:.2} s"
    );
    // The client's budget refills: its right key works a moment later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The right key still works afterwards.
    daemon.client_as("mm", KEY).connect().await.unwrap();
}
