//! The API and the plugin WebSocket over TLS (`api.http.tls.*`).

mod common;

use std::sync::Arc;

use common::{Daemon, KEY, base_config};
use rtcd::client::Client;

#[tokio::test]
async fn https_and_wss_with_a_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, generated.cert.pem()).unwrap();
    std::fs::write(&key_path, generated.signing_key.serialize_pem()).unwrap();
    let config = base_config(&format!(
        "[api.http.tls]\nenable = true\ncert_file = \"{}\"\ncert_key = \"{}\"\n[api.security]\nallow_self_registration = true",
        cert_path.display(),
        key_path.display()
    ));
    let daemon = Daemon::start_in(dir.path(), &config, &[]);
    assert!(
        daemon.url.starts_with("https://127.0.0.1:"),
        "{}",
        daemon.url
    );
    let port = daemon.url.rsplit(':').next().unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(generated.cert.der().clone()).unwrap();
    let tls = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let client = Client::new(&format!("https://mm:{KEY}@localhost:{port}"))
        .unwrap()
        .with_tls_config(tls);
    assert!(
        client
            .version()
            .await
            .unwrap()
            .build_version
            .starts_with("v1.2.6")
    );
    client.register("mm", KEY).await.unwrap();
    let ws = client.connect().await.unwrap();
    assert_eq!(ws.client_id, "mm");

    // Plain HTTP to the TLS port gets no API response.
    let plain = Client::new(&format!("http://localhost:{port}"))
        .unwrap()
        .with_timeout(std::time::Duration::from_secs(3));
    assert!(plain.version().await.is_err());
    ws.close().await;
}
