//! The load tool (`rtcd-load`): acts as the Calls plugin on one WebSocket and simulates N
//! participants in M calls with real WebRTC peers, then reports what every receiver got and
//! what it cost the daemon. Also hosts the floor forwarder the SFU is compared with.
//!
//! Owns: scenario planning and validation (`scenario`), the plugin connection and routing of
//! signaling to peers (here), the peers (`peer`), receive statistics (`stats`), CPU/memory
//! accounting (`cpu`), the floor (`floor`, with the SFU's `srtp_gcm`) and the printed/JSON summary (`report`).

pub mod cpu;
pub mod floor;
pub mod peer;
pub mod report;
pub mod scenario;
pub mod stats;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::ws::codec::{JoinData, RtcMessage, ServerMessage};
use peer::{Outgoing, PeerContext, PeerStatus};
use report::{CpuProbe, Progress, RunFacts, Summary};
use scenario::Scenario;

/// Load-run failure.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid parameters: {0}")]
    Invalid(String),
    #[error("cannot reach rtcd: {0}")]
    Connect(String),
}

/// Where the daemon is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub client_id: String,
    pub auth_key: String,
    /// Register the client first (needs self-registration or an admin key).
    pub register: bool,
    /// The daemon's PID, for CPU and memory accounting.
    pub daemon_pid: Option<u32>,
}

/// Threads of rtcd that forward media (the SFU side of the CPU comparison).
pub const FORWARDING_THREADS: &[&str] = &["rtcd-media", "rtcd-udp-rx"];

/// Runs the scenario against rtcd; `interrupted` ends it early with a partial summary.
pub async fn run(
    scenario: &Scenario,
    target: &Target,
    interrupted: CancellationToken,
) -> Result<Summary, LoadError> {
    scenario.validate()?;
    scenario::require_loopback_url(&target.url)?;
    let client = Client::new(&target.url)
        .map_err(|e| LoadError::Connect(e.to_string()))?
        .with_credentials(&target.client_id, &target.auth_key);
    if target.register {
        // Already registered is fine (the key is then checked by the WebSocket login).
        let _ = client.register(&target.client_id, &target.auth_key).await;
    }
    let mut ws = client
        .connect()
        .await
        .map_err(|e| LoadError::Connect(e.to_string()))?;

    let plans = scenario.plans();
    let baseline_rss_kib = target.daemon_pid.and_then(|pid| cpu::rss_kib(pid).ok());
    let epoch = Instant::now();
    let stop = CancellationToken::new();
    let measuring = Arc::new(AtomicBool::new(false));
    let context = PeerContext {
        epoch,
        bind_ip: scenario.bind_ip,
        measuring: measuring.clone(),
        stop: stop.clone(),
    };
    let (outbox, mut outgoing) = mpsc::channel::<Outgoing>(4096);
    let mut routes: HashMap<String, mpsc::Sender<RtcMessage>> = HashMap::new();
    let mut inboxes = Vec::new();
    let statuses: Vec<Arc<PeerStatus>> = plans.iter().map(|_| Arc::default()).collect();
    let by_session: HashMap<String, Arc<PeerStatus>> = plans
        .iter()
        .zip(&statuses)
        .map(|(p, s)| (p.session_id.clone(), s.clone()))
        .collect();
    for plan in &plans {
        let (tx, rx) = mpsc::channel(64);
        routes.insert(plan.session_id.clone(), tx);
        inboxes.push(rx);
    }

    // The plugin connection: joins and peers' signaling out (one queue, so a join always
    // precedes its peer's offer), the SFU's signaling in.
    let ws_stop = stop.clone();
    let plugin = tokio::spawn(async move {
        let mut joined = Vec::new();
        loop {
            tokio::select! {
                _ = ws_stop.cancelled() => break,
                Some(message) = outgoing.recv() => {
                    let sent = match message {
                        Outgoing::Join(join) => {
                            joined.push(join.session_id.clone());
                            ws.join(&join).await
                        }
                        Outgoing::Rtc(message) => ws.rtc(&message).await,
                    };
                    if sent.is_err() { break; }
                }
                received = ws.recv() => match received {
                    Ok(ServerMessage::Rtc(message)) => {
                        if let Some(route) = routes.get(&message.session_id) {
                            let _ = route.try_send(message);
                        }
                    }
                    Ok(ServerMessage::Close { session_id }) => {
                        if let Some(status) = by_session.get(&session_id) {
                            status.failed.store(true, Ordering::Relaxed);
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!("plugin connection lost: {err}");
                        break;
                    }
                }
            }
        }
        for session_id in joined {
            let _ = ws.leave(&session_id).await;
        }
        ws.close().await;
    });

    let mut progress = Progress::new(scenario);
    let started = Instant::now();
    let join_gap = Duration::from_secs_f64(1.0 / scenario.join_rate);
    let mut partial = false;
    let mut peers = Vec::new();
    for ((plan, inbox), status) in plans.iter().zip(inboxes).zip(&statuses) {
        if interrupted.is_cancelled() {
            partial = true;
            break;
        }
        let join = JoinData {
            call_id: plan.call_id.clone(),
            user_id: format!("user-{}", plan.session_id),
            session_id: plan.session_id.clone(),
            channel_id: serde_json::Value::String(format!("channel-{}", plan.call_id)),
            av1_support: serde_json::Value::Bool(false),
            dc_signaling: serde_json::Value::Bool(true),
        };
        if outbox.send(Outgoing::Join(join)).await.is_err() {
            return Err(LoadError::Connect("plugin connection closed".into()));
        }
        peers.push(tokio::spawn(peer::run(
            plan.clone(),
            context.clone(),
            inbox,
            outbox.clone(),
            status.clone(),
        )));
        progress.joining(peers.len(), &statuses, started.elapsed());
        tokio::time::sleep(join_gap).await;
    }

    // Wait for everyone to connect (or fail), then let media settle.
    let connect_deadline = Instant::now() + scenario.connect_timeout;
    while !partial && Instant::now() < connect_deadline {
        let settled = statuses
            .iter()
            .all(|s| s.connected.load(Ordering::Relaxed) || s.failed.load(Ordering::Relaxed));
        if settled {
            break;
        }
        progress.joining(peers.len(), &statuses, started.elapsed());
        tokio::select! {
            _ = interrupted.cancelled() => partial = true,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    let connected_after = started.elapsed();
    if !partial {
        tokio::select! {
            _ = interrupted.cancelled() => partial = true,
            _ = tokio::time::sleep(scenario.warmup) => {}
        }
    }

    progress.finish();
    let probe = target.daemon_pid.map_or(CpuProbe::None, CpuProbe::Daemon);
    let (start, end, window) = report::steady_window(
        scenario,
        &statuses,
        &measuring,
        &interrupted,
        probe,
        &mut partial,
    )
    .await;

    stop.cancel();
    drop(outbox);
    let _ = tokio::time::timeout(Duration::from_secs(5), plugin).await;
    for peer in peers {
        let _ = tokio::time::timeout(Duration::from_secs(1), peer).await;
    }
    let facts = RunFacts {
        connected_after,
        window,
        partial,
        baseline_rss_kib,
    };
    Ok(Summary::from_peers(
        scenario, "rtcd", &plans, &statuses, &start, &end, &facts,
    ))
}
