//! A registered client survives a clean restart and a `kill -9`; the store is not corrupted.

mod common;

use std::time::Duration;

use common::{Daemon, KEY, base_config};

#[tokio::test]
async fn registration_survives_sigkill_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config("");
    let env = [("RTCD_API_SECURITY_ALLOWSELFREGISTRATION", "true")];

    let mut daemon = Daemon::start_in(dir.path(), &config, &env);
    daemon
        .client_as("mm", KEY)
        .register("mm", KEY)
        .await
        .unwrap();
    daemon.kill9();

    // Restart without self-registration: only the stored record can let the client in.
    let mut daemon = Daemon::start_in(dir.path(), &config, &[]);
    let ws = daemon.client_as("mm", KEY).connect().await.unwrap();
    assert_eq!(ws.client_id, "mm");
    assert!(
        daemon
            .client_as("mm", "another-key-another-key-another-k")
            .connect()
            .await
            .is_err()
    );
    ws.close().await;
    daemon.signal("TERM");
    let status = daemon
        .wait_exit(Duration::from_secs(15))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");

    let daemon = Daemon::start_in(dir.path(), &config, &[]);
    daemon.client_as("mm", KEY).connect().await.unwrap();
    assert!(dir.path().join("data/rtcd.db").exists());
}
