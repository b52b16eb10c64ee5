//! The session core on a virtual clock: scenarios that take seconds of call time (and real
//! time, through the binary) run here in milliseconds, with no sockets and no sleeps.

use super::*;
use crate::media::CloseReason;
use crate::media::Signal;
use crate::sfu::session::{CLIENT_LOCK_TIMEOUT, INITIAL_OFFER_TIMEOUT};

/// Audio packets participant `index` has received, over all tracks.
fn heard(net: &Net, index: usize) -> usize {
    net.participants[index].peer.received.values().sum()
}

fn connected(net: &Net) -> bool {
    net.participants
        .iter()
        .all(|p| p.peer.connected && p.peer.dc_open)
}

#[test]
fn two_participants_connect_and_hear_each_other() {
    let started = std::time::Instant::now();
    let mut net = Net::new();
    let speaker = net.join("call", true).unwrap();
    let listener = net.join("call", true).unwrap();
    assert!(
        net.run_until(Duration::from_secs(5), connected).unwrap(),
        "ICE, DTLS and the data channel complete in memory"
    );
    // Once the speaker's track arrives, the SFU offers it to the listener over the data
    // channel, and forwards it.
    net.speak(speaker, true);
    assert!(
        net.run_until(Duration::from_secs(2), |n| n.participants[listener]
            .peer
            .server_offers
            >= 1)
            .unwrap()
    );
    net.run_for(Duration::from_millis(500)).unwrap();
    let before = heard(&net, listener);
    assert!(before > 0, "forwarding started");
    net.run_for(Duration::from_secs(2)).unwrap();
    let got = heard(&net, listener) - before;
    // 100 packets in 2 s, none lost on this network.
    assert!(
        (99..=101).contains(&got),
        "listener heard {got} packets in 2 s"
    );
    assert_eq!(heard(&net, speaker), 0, "nobody else spoke");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "virtual time: {:?} of wall time",
        started.elapsed()
    );
}

#[test]
fn a_session_without_an_offer_closes_after_ten_seconds() {
    let mut net = Net::new();
    net.join_silently("call").unwrap();
    net.run_for(INITIAL_OFFER_TIMEOUT - Duration::from_millis(1))
        .unwrap();
    assert!(net.events.is_empty(), "{:?}", net.events);
    net.run_for(Duration::from_millis(2)).unwrap();
    assert!(
        net.events.iter().any(|e| matches!(
            e,
            MediaEvent::Closed {
                reason: CloseReason::NoOffer,
                ..
            }
        )),
        "{:?}",
        net.events
    );
    assert_eq!(net.worker.session_count(), 0);
}

#[test]
fn a_lock_the_client_never_releases_is_released_after_fifteen_seconds() {
    let mut net = Net::new();
    let holder = net.join("call", false).unwrap();
    assert!(net.run_until(Duration::from_secs(5), connected).unwrap());
    let now = net.now;
    net.participants[holder].peer.send_dc(now, &[0x07]).unwrap(); // Lock
    net.run_for(Duration::from_millis(100)).unwrap();
    let locked_at = net.now;
    // A second participant publishes: the SFU must offer its track to the holder, and waits.
    let speaker = net.join("call", true).unwrap();
    net.speak(speaker, true);
    net.run_for(CLIENT_LOCK_TIMEOUT - Duration::from_secs(1))
        .unwrap();
    assert_eq!(net.participants[holder].peer.server_offers, 0);
    assert!(
        net.run_until(Duration::from_secs(3), |n| n.participants[holder]
            .peer
            .server_offers
            >= 1)
            .unwrap(),
        "the lock is released and the offer sent"
    );
    let waited = net.now - locked_at;
    assert!(
        waited >= CLIENT_LOCK_TIMEOUT && waited < CLIENT_LOCK_TIMEOUT + Duration::from_secs(1),
        "released after {waited:?}"
    );
    net.run_for(Duration::from_secs(1)).unwrap();
    assert!(heard(&net, holder) > 0, "the holder hears the speaker");
    let timeouts = net
        .metrics
        .rtc_errors
        .get_or_create(&crate::metrics::RtcErrorLabels {
            groupID: "group".into(),
            r#type: crate::metrics::RtcErrorKind::signaling_lock_timeout,
        })
        .get();
    assert_eq!(
        timeouts, 1,
        "rtcd_rtc_errors_total{{type=\"signaling_lock_timeout\"}}"
    );
}

#[test]
fn audio_survives_loss_on_the_way_to_the_receivers() {
    let mut net = Net::new();
    let speaker = net.join("call", true).unwrap();
    let listener = net.join("call", true).unwrap();
    assert!(net.run_until(Duration::from_secs(5), connected).unwrap());
    net.run_for(Duration::from_secs(1)).unwrap();
    net.lose_every_nth_to_peers = Some(10);
    net.speak(speaker, true);
    net.run_for(Duration::from_secs(4)).unwrap();
    let got = heard(&net, listener);
    // 200 packets sent, every tenth datagram to the peers lost (audio is not retransmitted).
    assert!((160..=190).contains(&got), "listener heard {got} packets");
}

#[test]
fn the_same_inputs_give_the_same_run() {
    fn run() -> (usize, usize) {
        let mut net = Net::new();
        let speaker = net.join("call", true).unwrap();
        let listener = net.join("call", true).unwrap();
        assert!(net.run_until(Duration::from_secs(5), connected).unwrap());
        net.speak(speaker, true);
        net.run_for(Duration::from_secs(1)).unwrap();
        (
            heard(&net, listener),
            net.participants[listener].peer.server_offers,
        )
    }
    assert_eq!(run(), run());
}

#[test]
fn two_installations_with_the_same_call_id_never_hear_each_other() {
    let mut net = Net::new();
    let speaker_a = net
        .join_in("installation-a", "same-call", true, false)
        .unwrap();
    let listener_a = net
        .join_in("installation-a", "same-call", false, false)
        .unwrap();
    let listener_b = net
        .join_in("installation-b", "same-call", false, false)
        .unwrap();
    assert!(net.run_until(Duration::from_secs(5), connected).unwrap());
    net.speak(speaker_a, true);
    net.run_for(Duration::from_secs(2)).unwrap();
    assert!(heard(&net, listener_a) >= 80, "{}", heard(&net, listener_a));
    assert_eq!(heard(&net, listener_b), 0);
    assert_eq!(net.participants[listener_b].peer.server_offers, 0);
}

/// Video packets participant `index` has received (track IDs of screen tracks).
fn seen_video(net: &Net, index: usize) -> usize {
    net.participants[index]
        .peer
        .received
        .iter()
        .filter(|(track, _)| track.contains("screen"))
        .map(|(_, n)| n)
        .sum()
}

/// A sharer and a viewer in one call, connected, the screen reaching the viewer.
fn screen_call(mut net: Net) -> (Net, usize, usize) {
    let sharer = net.join_in("group", "call", false, true).unwrap();
    let viewer = net.join("call", false).unwrap();
    assert!(net.run_until(Duration::from_secs(5), connected).unwrap());
    net.share(sharer, true);
    assert!(
        net.run_until(Duration::from_secs(3), |n| seen_video(n, viewer) > 0)
            .unwrap()
    );
    (net, sharer, viewer)
}

#[test]
fn mute_stops_forwarding_and_unmute_resumes_it() {
    let mut net = Net::new();
    let speaker = net.join("call", true).unwrap();
    let listener = net.join("call", false).unwrap();
    assert!(net.run_until(Duration::from_secs(5), connected).unwrap());
    net.speak(speaker, true);
    net.run_for(Duration::from_secs(1)).unwrap();
    assert!(heard(&net, listener) > 0);
    assert!(
        net.events
            .iter()
            .any(|e| matches!(e, MediaEvent::VoiceActivity { on: true, .. }))
    );
    let events = net.events.len();
    net.signal(speaker, Signal::Mute).unwrap();
    assert!(
        matches!(
            net.events.get(events),
            Some(MediaEvent::VoiceActivity { on: false, .. })
        ),
        "mute turns voice off at once: {:?}",
        &net.events[events..]
    );
    net.run_for(Duration::from_millis(100)).unwrap();
    let muted_at = heard(&net, listener);
    net.run_for(Duration::from_secs(1)).unwrap();
    assert_eq!(
        heard(&net, listener),
        muted_at,
        "nothing forwarded while muted"
    );
    net.signal(speaker, Signal::Unmute).unwrap();
    net.run_for(Duration::from_secs(1)).unwrap();
    let resumed = heard(&net, listener) - muted_at;
    assert!(
        (45..=51).contains(&resumed),
        "{resumed} packets after unmute"
    );
}

#[test]
fn a_late_viewer_gets_the_screen_from_a_requested_keyframe() {
    let mut net = Net::new();
    let sharer = net.join_in("group", "call", false, true).unwrap();
    assert!(net.run_until(Duration::from_secs(5), connected).unwrap());
    net.share(sharer, true);
    net.run_for(Duration::from_millis(700)).unwrap();
    let periodic = net.participants[sharer].peer.keyframes_sent[peer::HIGH];
    let viewer = net.join("call", false).unwrap();
    net.participants[viewer].peer.keep_rtp = true;
    assert!(
        net.run_until(Duration::from_secs(1), |n| seen_video(n, viewer) > 0)
            .unwrap(),
        "video within a second, long before the next periodic keyframe (every 2 s)"
    );
    let sharer_peer = &net.participants[sharer].peer;
    assert!(
        sharer_peer.keyframe_requests >= 1,
        "the SFU asked the sharer for a keyframe"
    );
    assert!(sharer_peer.keyframes_sent[peer::HIGH] > periodic);
    let first: Vec<_> = net.participants[viewer].peer.take_rtp().collect();
    let video = first
        .iter()
        .find(|p| p.payload.len() == peer::VIDEO_PAYLOAD)
        .expect("a video packet");

    assert_eq!(video.payload[0] & 0x10, 0x10, "starts a frame");
    assert_eq!(video.payload[5] & 0x01, 0, "the first frame is a keyframe");
}

#[test]
fn lost_video_is_retransmitted_after_nacks() {
    let (mut net, _, viewer) = screen_call(Net::new());
    net.run_for(Duration::from_secs(1)).unwrap();
    net.participants[viewer].peer.keep_rtp = true;
    net.lose_every_nth_to_peers = Some(15);
    net.run_for(Duration::from_secs(3)).unwrap();
    net.lose_every_nth_to_peers = None;
    net.run_for(Duration::from_millis(500)).unwrap();
    // Every 15th datagram to the peers was lost for 3 s (~20 of the viewer's ~315 packets):
    // NACKed and resent, so no sequence number is missing in the end.
    let packets: Vec<_> = net.participants[viewer].peer.take_rtp().collect();
    let first = packets[0].header.sequence_number;
    let offsets: std::collections::BTreeSet<u16> = packets
        .iter()
        .map(|p| p.header.sequence_number.wrapping_sub(first))
        .filter(|offset| *offset < 0x8000)
        .collect();
    let span = usize::from(*offsets.last().unwrap()) + 1;
    assert!(span > 300, "{span}");
    assert_eq!(offsets.len(), span, "holes left in {span} packets");
}

#[test]
fn a_nack_storm_is_answered_only_within_the_budget() {
    let (mut net, _, viewer) = screen_call(Net::new());
    net.run_for(Duration::from_secs(1)).unwrap();
    // A normal second, then a second with 300 NACKs (5,100 packets asked for).
    let sent = net.sent_to_peers;
    net.run_for(Duration::from_secs(1)).unwrap();
    let normal = net.sent_to_peers - sent;
    let now = net.now;
    let asked = net.participants[viewer]
        .peer
        .send_nack_storm(now, 300)
        .unwrap();
    assert_eq!(asked, 5_100);
    let sent = net.sent_to_peers;
    net.run_for(Duration::from_secs(1)).unwrap();
    let stormy = net.sent_to_peers - sent;
    let refused = net.metrics.quality.refused_retransmissions.get();
    assert!(refused > 4_000, "refused {refused} of {asked}");
    assert!(
        stormy < normal + 2 * crate::sfu::nack_budget::MAX_SAVED as u64,
        "{stormy} datagrams in the storm's second, {normal} in a normal one"
    );
    // The stream goes on.
    let before = seen_video(&net, viewer);
    net.run_for(Duration::from_secs(1)).unwrap();
    assert!(seen_video(&net, viewer) - before >= 100);
}

#[test]
fn a_hole_too_old_to_resend_becomes_a_keyframe_request() {
    // A NACK history of 32 packets per video stream: a burst of 100 lost is beyond it.
    let (mut net, sharer, viewer) = screen_call(Net::with_settings(|s| s.nack_buffer_size = 32));
    net.run_for(Duration::from_millis(500)).unwrap();
    let requests = net.participants[sharer].peer.keyframe_requests;
    // ~0.8 s of video lost; the receiver NACKs the hole, and once it asks again after
    // HOLE_GRACE for packets no longer in the history, the publisher is asked for a keyframe.
    net.lose_next_to(viewer, 100);
    let lost_at = net.now;
    assert!(
        net.run_until(Duration::from_secs(4), |n| n.participants[sharer]
            .peer
            .keyframe_requests
            > requests)
            .unwrap(),
        "the sharer was asked for a keyframe"
    );
    assert!(net.now - lost_at >= crate::sfu::nack_budget::HOLE_GRACE);
}

#[test]
fn a_client_that_stops_answering_is_closed_for_lost_consent() {
    let mut net = Net::new();
    let gone = net.join("call", true).unwrap();
    let stays = net.join("call", true).unwrap();
    assert!(net.run_until(Duration::from_secs(5), connected).unwrap());
    net.cut_off(gone, true);
    net.run_for(Duration::from_secs(20)).unwrap();
    assert!(
        net.events
            .iter()
            .all(|e| !matches!(e, MediaEvent::Closed { .. }))
    );
    assert!(
        net.run_until(Duration::from_secs(20), |n| n
            .events
            .iter()
            .any(|e| matches!(e, MediaEvent::Closed { .. })))
            .unwrap()
    );
    let closed: Vec<_> = net
        .events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Closed { session_id, reason } => Some((session_id.clone(), reason)),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].0, net.participants[gone].session_id);
    assert!(
        matches!(closed[0].1, CloseReason::Failed(why) if why.starts_with("consent lost")),
        "{closed:?}"
    );
    assert_eq!(net.worker.session_count(), 1);
    let _ = stays;
}

#[test]
fn a_participant_leaving_mid_call_is_removed_from_the_others() {
    let mut net = Net::new();
    let leaver = net.join("call", true).unwrap();
    let stays = net.join("call", false).unwrap();
    assert!(net.run_until(Duration::from_secs(5), connected).unwrap());
    net.speak(leaver, true);
    net.run_for(Duration::from_secs(1)).unwrap();
    let offers = net.participants[stays].peer.server_offers;
    assert!(heard(&net, stays) > 0);
    net.leave(leaver).unwrap();
    net.run_for(Duration::from_millis(500)).unwrap();
    let at_leave = heard(&net, stays);
    assert!(
        net.participants[stays].peer.server_offers > offers,
        "an offer without the track"
    );
    net.run_for(Duration::from_secs(1)).unwrap();
    assert_eq!(heard(&net, stays), at_leave);
    assert_eq!(net.worker.session_count(), 1);
    // A leave is not reported back: the control plane asked for it.
    assert!(
        net.events
            .iter()
            .all(|e| !matches!(e, MediaEvent::Closed { .. }))
    );
}

#[test]
fn a_panic_in_one_session_ends_only_that_session() {
    let mut net = Net::new();
    let speaker = net.join("call", true).unwrap();
    let listener = net.join("call", false).unwrap();
    let doomed = net.join("other-call", false).unwrap();
    assert!(net.run_until(Duration::from_secs(5), connected).unwrap());
    net.speak(speaker, true);
    net.run_for(Duration::from_secs(1)).unwrap();
    let doomed_id = net.participants[doomed].session_id.clone();
    let now = net.now;
    net.worker.panic_in(now, &doomed_id);
    net.run_for(Duration::from_millis(10)).unwrap();
    let before = heard(&net, listener);
    net.run_for(Duration::from_secs(1)).unwrap();
    assert!(heard(&net, listener) - before >= 45, "the call goes on");
    assert!(net.events.iter().any(|e| matches!(
        e,
        MediaEvent::Closed { session_id, reason: CloseReason::Failed(_) } if *session_id == doomed_id
    )));
    assert_eq!(net.worker.session_count(), 2);
}

#[test]
fn a_viewer_on_a_lossy_path_moves_to_the_low_layer_at_its_keyframe() {
    let (mut net, _, viewer) = screen_call(Net::new());
    net.run_for(Duration::from_secs(2)).unwrap();
    let rate = |net: &mut Net| {
        let before = seen_video(net, viewer);
        net.run_for(Duration::from_secs(1)).unwrap();
        seen_video(net, viewer) - before
    };
    let high = rate(&mut net);
    assert!(
        (95..=115).contains(&high),
        "{high} packets/s on the high layer"
    );
    // A quarter of everything to the viewer lost: its transport-wide feedback brings the
    // SFU's estimate down, and the viewer moves to the low layer (~10 packets/s).
    net.participants[viewer].peer.keep_rtp = true;
    net.lose_every_nth_to_peers = Some(4);
    let mut seconds = 0;
    while rate(&mut net) > 20 {
        seconds += 1;
        assert!(seconds < 10, "still on the high layer after {seconds} s");
    }
    let packets: Vec<_> = net.participants[viewer].peer.take_rtp().collect();
    let stamp = |p: &rtc::rtp::packet::Packet| {
        let tail = &p.payload[p.payload.len() - 8..];
        u64::from_be_bytes(tail.try_into().unwrap())
    };
    let first_low = packets
        .iter()
        .position(|p| stamp(p) & LOW_LAYER_STAMP != 0)
        .expect("low-layer packets");
    let switch = &packets[first_low].payload;
    assert!(
        crate::sfu::vp8::is_keyframe(switch),
        "the switch happens at a keyframe: {:02x?}",
        &switch[..6]
    );
    // One layer at a time: what arrives of the high layer after the switch are resends of
    // packets from before it (NACKed on the lossy path), never new ones.
    let switch_seq = packets[first_low].header.sequence_number;
    let late_high: Vec<u16> = packets[first_low..]
        .iter()
        .filter(|p| stamp(p) & LOW_LAYER_STAMP == 0)
        .map(|p| p.header.sequence_number)
        .collect();
    assert!(
        late_high
            .iter()
            .all(|seq| switch_seq.wrapping_sub(*seq) < 0x8000),
        "high-layer packets after the switch at {switch_seq}: {late_high:?}"
    );
}
