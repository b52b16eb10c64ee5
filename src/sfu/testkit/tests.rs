//! The session core on a virtual clock: scenarios that take seconds of call time (and real
//! time, through the binary) run here in milliseconds, with no sockets and no sleeps.

use super::*;
use crate::media::CloseReason;
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
    net.join_silently("call", false).unwrap();
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
    let speaker_a = net.join_in("installation-a", "same-call", true).unwrap();
    let listener_a = net.join_in("installation-a", "same-call", false).unwrap();
    let listener_b = net.join_in("installation-b", "same-call", false).unwrap();
    assert!(net.run_until(Duration::from_secs(5), connected).unwrap());
    net.speak(speaker_a, true);
    net.run_for(Duration::from_secs(2)).unwrap();
    assert!(heard(&net, listener_a) >= 80, "{}", heard(&net, listener_a));
    assert_eq!(heard(&net, listener_b), 0);
    assert_eq!(net.participants[listener_b].peer.server_offers, 0);
}
