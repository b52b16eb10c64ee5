//! The media port (8443) holds up under unauthenticated input from anywhere it is exposed:
//! ICE-TCP connections are kept only once a live session authenticates their first binding
//! request (junk and silence are closed; one address cannot hold many pending ones; an
//! authenticated connection that goes silent is closed), and spoofed binding requests with
//! random ufrags from many sources leave no flow state behind, while real peers keep their
//! media over UDP and ICE-TCP. Attackers use other loopback addresses (127.0.0.x).

mod common;
#[path = "common/rtc_peer.rs"]
mod rtc_peer;

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{metric_value, registered_plugin_in};
use rtc::crypto::providers::RingCrypto;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{BINDING_REQUEST, Message, Setter, TransactionId};
use rtc::stun::textattrs::Username;
use rtc_peer::{RtcPeer, connect};
use rtcd::ws::codec::ServerMessage;

fn from(ip: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, ip))
}

/// A binding request naming `user`, signed with `password` (none: unsigned).
fn binding_request(user: &str, password: Option<&str>) -> Vec<u8> {
    let crypto = RingCrypto;
    let mut message = Message::new();
    let mut setters: Vec<Box<dyn Setter + '_>> = vec![
        Box::new(BINDING_REQUEST),
        Box::new(TransactionId::new()),
        Box::new(Username::new(
            rtc::stun::attributes::ATTR_USERNAME,
            user.to_owned(),
        )),
    ];
    if let Some(password) = password {
        setters.push(Box::new(
            MessageIntegrity::new_short_term_integrity_with_provider(password.to_owned(), &crypto),
        ));
    }
    message.build(&setters).unwrap();
    message.raw.clone()
}

fn framed(packet: &[u8]) -> Vec<u8> {
    let mut out = (packet.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(packet);
    out
}

fn tcp_from(ip: u8, port: u16) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(from(ip), 0).into()).unwrap();
    socket
        .connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    socket.into()
}

/// Time until the server closes `stream` (None if still open after `limit`).
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 2048];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(started.elapsed());
            }
            Err(_) => return None,
        }
    }
}

async fn refusals(client: &rtcd::client::Client, limit: &str) -> f64 {
    let metrics = client
        .request(hyper::Method::GET, "/metrics", None, None)
        .await
        .unwrap()
        .text();
    metric_value(
        &metrics,
        &format!("rtcd_limit_refusals_total{{limit=\"{limit}\"}} "),
    )
    .unwrap_or(0.0)
}

/// The SFU's ICE credentials from its answer to `session`'s offer.
async fn sfu_credentials(
    ws: &mut rtcd::client::WsClient,
    session: &str,
    offer: String,
) -> (String, String) {
    rtc_peer::send_offer(ws, session, offer).await;
    loop {
        if let ServerMessage::Rtc(msg) = ws.recv_timeout(Duration::from_secs(5)).await.unwrap()
            && msg.session_id == session
            && msg.msg_type == 2
        {
            let answer: serde_json::Value = serde_json::from_slice(&msg.data.unwrap()).unwrap();
            let sdp = answer["sdp"].as_str().unwrap();
            let line = |key: &str| {
                sdp.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .unwrap()
                    .trim()
                    .to_owned()
            };
            return (line("a=ice-ufrag:"), line("a=ice-pwd:"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_tcp_keeps_only_authenticated_connections() {
    let (daemon, plugin, mut ws) = registered_plugin_in(
        "",
        &[
            ("RTCD_LIMITS_ICETCPPENDINGPERIP", "20"),
            ("RTCD_LIMITS_ICETCPIDLETIMEOUTSECONDS", "2"),
        ],
    )
    .await;
    let port = daemon.media_port;

    // A session whose credentials the test knows.
    ws.join(&common::join("call", "u", "known")).await.unwrap();
    let (_peer, offer) = RtcPeer::tcp_only();
    let (ufrag, password) = sfu_credentials(&mut ws, "known", offer).await;

    // 300 connections (4,300 from 43 addresses under build/stress.sh), each sending one junk
    // binding request (a valid-looking worker prefix, an unknown ufrag): every one is closed.
    let junk_count = common::scaled(300, 4_300);
    let junk: Vec<_> = (0..junk_count)
        .map(|i| {
            let mut stream = tcp_from(
                if common::stress() {
                    100 + (i / 100) as u8
                } else {
                    2
                },
                port,
            );
            let _ = stream.write_all(&framed(&binding_request(&format!("00junk{i}:x"), None)));
            stream
        })
        .collect();
    for mut stream in junk {
        let closed = closed_within(&mut stream, Duration::from_secs(2));
        assert!(closed.is_some(), "a junk ICE-TCP connection was kept");
    }
    // The live session's ufrag without its password: closed too.
    let mut forged = tcp_from(3, port);
    forged
        .write_all(&framed(&binding_request(
            &format!("{ufrag}:x"),
            Some("not-the-password"),
        )))
        .unwrap();
    assert!(closed_within(&mut forged, Duration::from_secs(2)).is_some());

    // Silent connections: one address holds at most 20; the 21st is closed at once.
    let mut silent: Vec<_> = (0..20).map(|_| tcp_from(4, port)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = tcp_from(4, port);
    let closed = closed_within(&mut extra, Duration::from_secs(1));
    assert!(
        closed.is_some_and(|t| t < Duration::from_millis(500)),
        "the 21st pending connection was not refused: {closed:?}"
    );

    // An authenticated connection is kept, until it stays silent for the idle timeout (2 s).
    let mut authenticated = tcp_from(5, port);
    authenticated
        .write_all(&framed(&binding_request(
            &format!("{ufrag}:x"),
            Some(&password),
        )))
        .unwrap();
    let closed = closed_within(&mut authenticated, Duration::from_secs(6));
    assert!(
        closed.is_some_and(|t| t >= Duration::from_millis(1500)),
        "an authenticated connection must stay until its idle timeout: {closed:?}"
    );

    // Meanwhile, a real ICE-TCP participant connects (its address holds no pending slot).
    ws.join(&common::join("call", "u", "tcp-peer"))
        .await
        .unwrap();
    let (mut peer, offer) = RtcPeer::tcp_only();
    rtc_peer::negotiate(&mut ws, "tcp-peer", &mut peer, offer).await;
    let peer = tokio::task::spawn_blocking(move || {
        assert!(
            peer.run_until(Duration::from_secs(10), |p| p.dc_open),
            "ICE-TCP participant not connected during the attack ({:?})",
            peer.state
        );
        peer
    })
    .await
    .unwrap();
    drop(peer);
    silent.clear();
    // Junk connections were refused for their frame or, arriving faster than they were read,
    // for their address's pending limit.
    let unauthenticated = refusals(&plugin, "ice_tcp_unauthenticated").await;
    let pending = refusals(&plugin, "ice_tcp_pending_per_ip").await;
    assert!(unauthenticated >= 1.0 && pending >= 1.0);
    assert!(
        unauthenticated + pending >= junk_count as f64 + 2.0,
        "{unauthenticated} + {pending}"
    );
    assert!(refusals(&plugin, "ice_tcp_idle").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_binding_requests_leave_real_calls_alone() {
    let (daemon, _plugin, mut ws) = registered_plugin_in("", &[]).await;
    let port = daemon.media_port;
    let listener = connect(&mut ws, "call", "listener", false).await;
    let listener = tokio::task::spawn_blocking(move || {
        let mut listener = listener;
        assert!(listener.run_until(Duration::from_secs(10), |p| p.dc_open));
        listener
    })
    .await
    .unwrap();
    let speaker = connect(&mut ws, "call", "speaker", true).await;

    // 2,000 source addresses (18,000 under build/stress.sh: 450,000 requests) × 25 binding
    // requests with random ufrags naming workers 00/01, paced at about 15,000 a second (the
    // flood thread must not starve the test's own peers of CPU on 2 cores).
    let sources = common::scaled(2_000, 18_000) as u32;
    let flood = std::thread::spawn(move || {
        let target = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        let mut sent = 0u32;
        'sources: for source in 0..sources {
            let due = started + Duration::from_micros(u64::from(sent) * 66);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let ip = from(10 + (source % 200) as u8);
            let Ok(socket) = UdpSocket::bind(SocketAddr::new(ip, 0)) else {
                continue;
            };
            for i in 0..25u32 {
                let user = format!("0{}r{source}x{i}:spoof", source % 2);
                let _ = socket.send_to(&binding_request(&user, None), target);
                sent += 1;
            }
            if started.elapsed() > Duration::from_secs(common::scaled(8, 60) as u64) {
                break 'sources;
            }
        }
        sent
    });
    // The call runs while the flood does (3 s; 30 s under build/stress.sh); the listener
    // listens until 2 s after the speaker's last packet.
    let packets = common::scaled(150, 1_500);
    let spoken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let speaker_done = spoken.clone();
    let speaker_thread = std::thread::spawn(move || {
        let mut speaker = speaker;
        assert!(speaker.run_until(Duration::from_secs(10), |p| p.connected));
        for _ in 0..packets {
            speaker.send_audio();
            speaker.run_until(Duration::from_millis(20), |_| false);
        }
        speaker.run_until(Duration::from_secs(2), |_| false);
        speaker_done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let listener_thread = std::thread::spawn(move || {
        let mut listener = listener;
        let most = Duration::from_millis(40 * packets as u64) + Duration::from_secs(15);
        listener.run_until(most, |_| spoken.load(std::sync::atomic::Ordering::SeqCst));
        listener
    });
    speaker_thread.join().unwrap();
    let sent = flood.join().unwrap();
    let listener = listener_thread.join().unwrap();
    let got: usize = listener.received.values().sum();
    eprintln!("{sent} spoofed binding requests; the listener got {got} of {packets} packets");
    assert!(sent >= 10_000, "the flood sent only {sent}");
    assert!(
        got * 100 >= packets * 93,
        "the real call lost packets: {got} of {packets}"
    );
}
