//! The operator's view: with the admin credential, every group's calls are listed and any
//! call's quality can be read; tenants cannot use these routes, and the tenant-scoped
//! `/calls/…` routes keep refusing the admin (401), as upstream's do.

mod common;

use std::time::Duration;

use common::{Daemon, KEY, base_config, join};
use rtcd::auth::basic_header;

const ADMIN_SECRET: &str = "an-admin-secret-for-the-operator";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_sees_every_groups_calls_and_their_quality() {
    let daemon = Daemon::start(
        &base_config(&format!(
            "[api.security]\nallow_self_registration = true\nenable_admin = true\nadmin_secret_key = \"{ADMIN_SECRET}\""
        )),
        &[],
    );
    let mut sockets = Vec::new();
    for (client, call, sessions) in [("install-a", "call-1", 2), ("install-b", "call-9", 1)] {
        let c = daemon.client_as(client, KEY);
        c.register(client, KEY).await.unwrap();
        let mut ws = c.connect().await.unwrap();
        for i in 0..sessions {
            ws.join(&join(call, "u", &format!("{client}-{i}")))
                .await
                .unwrap();
        }
        sockets.push(ws);
    }
    let admin = basic_header("", ADMIN_SECRET);
    let client = daemon.client();
    let calls = common::eventually(Duration::from_secs(5), || async {
        let response = client
            .request(hyper::Method::GET, "/admin/calls", Some(&admin), None)
            .await
            .ok()?;
        let calls = response.json().ok()?;
        (calls.as_array()?.len() == 2).then_some(calls)
    })
    .await
    .expect("both groups' calls listed");
    assert_eq!(
        calls,
        serde_json::json!([
            {"groupID": "install-a", "callID": "call-1", "sessions": 2},
            {"groupID": "install-b", "callID": "call-9", "sessions": 1},
        ])
    );
    let stats = client
        .request(
            hyper::Method::GET,
            "/admin/calls/install-b/call-9/stats",
            Some(&admin),
            None,
        )
        .await
        .unwrap();
    assert_eq!(stats.status, 200);
    assert_eq!(stats.json().unwrap()["sessions"], 1);
    let missing = client
        .request(
            hyper::Method::GET,
            "/admin/calls/install-a/call-9/stats",
            Some(&admin),
            None,
        )
        .await
        .unwrap();
    assert_eq!(missing.status, 404);

    // A tenant cannot use the operator's routes; the admin cannot use the tenants' ones.
    let tenant = basic_header("install-a", KEY);
    for (path, auth) in [
        ("/admin/calls", tenant.as_str()),
        ("/admin/calls/install-a/call-1/stats", tenant.as_str()),
        ("/calls/call-1/sessions", admin.as_str()),
        ("/admin/calls", "Basic bm9ib2R5Om5vcGU="),
    ] {
        let response = client
            .request(hyper::Method::GET, path, Some(auth), None)
            .await
            .unwrap();
        assert_eq!(response.status, 401, "{path}");
    }
}
